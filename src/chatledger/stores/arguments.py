"""The store methods' arguments, checked once for every backend before any work is done.

A wrong argument (a string where a message or an id belongs, None for a
filter) used to fail deep inside each backend, differently on each: an
``AttributeError`` on one, ``None`` on another, a stored record of the wrong
kind on a third. :func:`check_arguments` wraps every public coroutine of a
store class so that such a call raises ``TypeError`` naming the method, the
parameter and the type it takes, on every backend, before the database is
touched. :class:`~chatledger.stores.base.StoreLifecycle` applies it to each
subclass, so a backend gets it by being one.

What each parameter takes is read from its name, which every backend and the
protocols share (``message``, ``session_id``, ``query``, …). The check is one
``isinstance`` per argument; a batch's items cost one ``isinstance`` each.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from datetime import datetime
from typing import Any

from chatledger.entities import (
    Agent,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    Provider,
    QueryFilter,
    SessionQuery,
)

__all__ = ["check_arguments"]

_Check = Callable[[str, str, Any], None]

_INT64_MAX = 2**63 - 1

# Each entity parameter's class, and how a message names one of it.
_ENTITIES: dict[str, tuple[type[Any], str]] = {
    "message": (LLMMessage, "an LLMMessage"),
    "call": (LLMApiCall, "an LLMApiCall"),
    "session": (ChatSession, "a ChatSession"),
    "provider": (Provider, "a Provider"),
    "agent": (Agent, "an Agent"),
    "query": (QueryFilter, "a QueryFilter"),
}
# A parameter whose type differs in one method: search_sessions' query is a SessionQuery.
_METHOD_ENTITIES: dict[tuple[str, str], tuple[type[Any], str]] = {
    ("search_sessions", "query"): (SessionQuery, "a SessionQuery"),
}
_BATCHES: dict[str, tuple[type[Any], str]] = {
    "messages": _ENTITIES["message"],
    "calls": _ENTITIES["call"],
    "sessions": _ENTITIES["session"],
}
_INTEGERS = frozenset({"offset", "limit", "chunk_size"})
# Parameters that take a sequence of ids.
_ID_BATCHES = frozenset({"message_ids", "session_ids"})
# A parameter that may also be None in one method: a breakdown's limit.
_OPTIONAL_INTEGERS = frozenset({("get_usage_breakdown", "limit")})
_TEXTS = frozenset({"name", "code", "kind"})
_TIMES = frozenset({"before"})
_OPTIONAL_TEXTS = frozenset({"cursor"})


def _shown(value: Any) -> str:
    """The type of a refused argument, and the value itself when it is short text."""
    if isinstance(value, str):
        return f"str {value!r:.60}"
    return type(value).__name__


def _refuse(method: str, parameter: str, wanted: str, value: Any) -> TypeError:
    return TypeError(f"{method}(): {parameter} must be {wanted}, not {_shown(value)}")


def _entity(kind: type[Any], wanted: str) -> _Check:
    def check(method: str, parameter: str, value: Any) -> None:
        if not isinstance(value, kind):
            raise _refuse(method, parameter, wanted, value)

    return check


def _batch(kind: type[Any], wanted: str) -> _Check:
    def check(method: str, parameter: str, value: Any) -> None:
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise _refuse(method, parameter, f"a list or tuple of {kind.__name__}", value)
        for index, item in enumerate(value):
            if not isinstance(item, kind):
                raise _refuse(method, f"{parameter}[{index}]", wanted, item)

    return check


def _identifier(method: str, parameter: str, value: Any) -> None:
    if isinstance(value, uuid.UUID):
        return
    hint = ""
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            hint = "; it is not a UUID at all"
        else:
            hint = "; convert text with uuid.UUID(text)"
    raise TypeError(f"{method}(): {parameter} must be a uuid.UUID, not {_shown(value)}{hint}")


def _integer(method: str, parameter: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _refuse(method, parameter, "an int", value)
    if abs(value) > _INT64_MAX:  # no database binds it; the in-memory store would
        raise ValueError(f"{method}(): {parameter}={value} is out of range (at most 2**63 - 1)")


def _optional_integer(method: str, parameter: str, value: Any) -> None:
    if value is not None:
        _integer(method, parameter, value)


def _identifiers(method: str, parameter: str, value: Any) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise _refuse(method, parameter, "a list or tuple of uuid.UUID", value)
    for index, item in enumerate(value):
        _identifier(method, f"{parameter}[{index}]", item)


def _text(method: str, parameter: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _refuse(method, parameter, "a str", value)


def _optional_text(method: str, parameter: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise _refuse(method, parameter, "a str or None", value)


def _time(method: str, parameter: str, value: Any) -> None:
    if not isinstance(value, datetime):
        raise _refuse(method, parameter, "a timezone-aware datetime", value)


def _check_for(method: str, parameter: str) -> _Check | None:
    """How to check an argument of ``method``'s ``parameter``, or None to leave it alone."""
    if (method, parameter) in _METHOD_ENTITIES:
        return _entity(*_METHOD_ENTITIES[method, parameter])
    if (method, parameter) in _OPTIONAL_INTEGERS:
        return _optional_integer
    if parameter in _ENTITIES:
        return _entity(*_ENTITIES[parameter])
    if parameter in _ID_BATCHES:
        return _identifiers
    if parameter in _BATCHES:
        return _batch(*_BATCHES[parameter])
    if parameter.endswith("_id"):
        return _identifier
    if parameter in _INTEGERS:
        return _integer
    if parameter in _TEXTS:
        return _text
    if parameter in _TIMES:
        return _time
    if parameter in _OPTIONAL_TEXTS:
        return _optional_text
    return None


def _checked(method: Callable[..., Any]) -> Callable[..., Any] | None:
    """``method`` with its arguments checked first, or None when it takes none to check."""
    checks: list[tuple[int, str, _Check]] = []
    parameters = list(inspect.signature(method).parameters.values())[1:]  # after self
    for index, parameter in enumerate(parameters):
        check = _check_for(method.__name__, parameter.name)
        if check is None:
            continue
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        checks.append((index if positional else -1, parameter.name, check))
    if not checks:
        return None
    name = method.__name__

    def check_all(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for index, parameter, check in checks:
            if 0 <= index < len(args):
                check(name, parameter, args[index])
            elif parameter in kwargs:
                check(name, parameter, kwargs[parameter])

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def generate(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            check_all(args, kwargs)  # on the first iteration, as the generator's own checks
            async with aclosing(method(self, *args, **kwargs)) as items:
                async for item in items:
                    yield item

        return generate

    @functools.wraps(method)
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        check_all(args, kwargs)
        return await method(self, *args, **kwargs)

    return run


def check_arguments(cls: type[Any]) -> None:
    """Wrap each public coroutine ``cls`` itself defines so that its arguments are checked."""
    for name, attribute in list(vars(cls).items()):
        if name.startswith("_") or getattr(attribute, "__arguments_checked__", False):
            continue
        if not (inspect.iscoroutinefunction(attribute) or inspect.isasyncgenfunction(attribute)):
            continue  # properties, classmethods and plain functions take no store arguments
        wrapped = _checked(attribute)
        if wrapped is not None:
            wrapped.__arguments_checked__ = True  # type: ignore[attr-defined]
            setattr(cls, name, wrapped)
