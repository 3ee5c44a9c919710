"""Who a record belongs to: :func:`scope`, :func:`current_scope` and the frozen :class:`Scope`.

A scope names the tenant, user, agent and session that records made inside
it belong to. It lives in a context variable, so each asyncio task and each
thread sees its own (a task copies its parent's context when it starts;
a thread starts with none). Scopes nest: an inner one overrides only what it
sets.

Frameworks name sessions with their own keys (``"user-42"``, a LangChain
session id). Such a key maps to a stable UUID (UUIDv5 under
:data:`KEY_NAMESPACE`), the same in every process, and the session created
for it keeps the key in ``metadata["key"]``.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass, fields

__all__ = ["KEY_NAMESPACE", "Scope", "current_scope", "id_for_key", "scope"]

KEY_NAMESPACE = uuid.UUID("6f1b4a52-3c1e-5d2a-9a7e-0c6a1e3b7d40")
"""The UUIDv5 namespace under which a non-UUID key becomes an id; fixed forever."""

IdLike = uuid.UUID | str


def id_for_key(value: IdLike) -> uuid.UUID:
    """The id a scope value stands for: a UUID, a UUID string parsed, or a key hashed (UUIDv5)."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise TypeError(f"an id must be a uuid.UUID or a str, not {type(value).__name__}")
    if not value:
        raise ValueError("an id or key cannot be empty")
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(KEY_NAMESPACE, value)


def _key(value: IdLike | None) -> str | None:
    """The framework key behind ``value``, when it is not a UUID itself."""
    if value is None or isinstance(value, uuid.UUID):
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    return None


@dataclass(frozen=True, slots=True)
class Scope:
    """The tenant, user, agent and session in force; None where nothing set one."""

    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    session_key: str | None = None
    """The framework's own session key, when the session was named by one."""

    def over(self, outer: Scope) -> Scope:
        """This scope with what it leaves unset taken from ``outer``."""
        if outer is _EMPTY:
            return self
        session_id, session_key = self.session_id, self.session_key
        if session_id is None:  # the key belongs to its session: both come from one scope
            session_id, session_key = outer.session_id, outer.session_key
        return Scope(
            self.tenant_id or outer.tenant_id,
            self.user_id or outer.user_id,
            self.agent_id or outer.agent_id,
            session_id,
            session_key,
        )


_EMPTY = Scope()
_SCOPE: contextvars.ContextVar[Scope] = contextvars.ContextVar(
    "chatledger_scope",
    default=_EMPTY,
)


def current_scope() -> Scope:
    """The scope in force in this task or thread (every field None outside any scope)."""
    return _SCOPE.get()


class scope:  # noqa: N801  (used like a function: `with chatledger.scope(user_id=...)`)
    """Records made inside belong to these ids; ``with`` and ``async with``, nesting.

    Each id is a :class:`uuid.UUID` or a string; a string that is not a UUID
    is a key and maps to a stable UUID (:func:`id_for_key`).
    """

    __slots__ = ("_scope", "_tokens")

    def __init__(
        self,
        *,
        tenant_id: IdLike | None = None,
        user_id: IdLike | None = None,
        agent_id: IdLike | None = None,
        session_id: IdLike | None = None,
    ) -> None:
        """Prepare a scope; it takes effect on entering."""
        self._scope = Scope(
            tenant_id=None if tenant_id is None else id_for_key(tenant_id),
            user_id=None if user_id is None else id_for_key(user_id),
            agent_id=None if agent_id is None else id_for_key(agent_id),
            session_id=None if session_id is None else id_for_key(session_id),
            session_key=_key(session_id),
        )
        self._tokens: list[contextvars.Token[Scope]] = []

    @property
    def ids(self) -> Scope:
        """What this scope sets, without what encloses it."""
        return self._scope

    def __enter__(self) -> Scope:
        """Enter: the scope in force becomes this one over the enclosing one."""
        merged = self._scope.over(_SCOPE.get())
        self._tokens.append(_SCOPE.set(merged))
        return merged

    def __exit__(self, *exc_info: object) -> None:
        """Leave: the enclosing scope is in force again."""
        _SCOPE.reset(self._tokens.pop())

    async def __aenter__(self) -> Scope:
        """As ``with``, for ``async with``."""
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        """As ``with``, for ``async with``."""
        self.__exit__(*exc_info)

    def __repr__(self) -> str:
        set_ids = {f.name: getattr(self._scope, f.name) for f in fields(self._scope)}
        shown = ", ".join(f"{k}={v!r}" for k, v in set_ids.items() if v is not None)
        return f"scope({shown})"
