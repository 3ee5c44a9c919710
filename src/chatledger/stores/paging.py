"""Keyset pages of API calls and sessions: sort orders, cursors, and the order itself.

A page is read after the last row of the page before it, never with an
OFFSET, so page 1,000 costs what page 1 costs. A cursor names that row: the
sort, the row's sort value, its create_time and its id, as compact JSON in
URL-safe base64. It is opaque to callers and checked when it comes back: a
cursor of another sort, or one that does not decode, raises ``ValueError``.

Every order ends with ``create_time`` then ``id`` in the sort's direction, so
it is total. Calls without a value for the sort key (no price, no latency)
come after every call with one, in both directions; every backend reads such
a page in two steps, the calls with a value then those without, which keeps
each step a plain index walk (no ``NULLS LAST``, which MySQL lacks).

The in-memory store orders with :func:`ordered_calls` and :func:`after_cursor`;
the SQL stores read the same order from the database (``queries.call_page``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from chatledger.entities import CallSort, ChatSession, LLMApiCall

__all__ = [
    "CALL_SORTS",
    "LIKE_ESCAPE",
    "Cursor",
    "SortSpec",
    "after_cursor",
    "call_cursor",
    "check_page_limit",
    "check_sort",
    "decode_call_cursor",
    "decode_session_cursor",
    "like_pattern",
    "ordered_calls",
    "session_cursor",
]

_SESSIONS = "sessions"  # the sort name a session cursor carries
_MAX_CURSOR = 512  # characters: far more than any cursor made here
LIKE_ESCAPE = "!"
"""The escape character of every LIKE pattern: one no dialect treats specially."""


def _no_value(call: LLMApiCall) -> None:
    return None


@dataclass(frozen=True, slots=True)
class SortSpec:
    """How one ``CallSort`` orders calls: by which value, in which direction."""

    descending: bool
    column: str | None = None  # None: by create_time (then id) alone
    nullable: bool = False
    value: Callable[[LLMApiCall], Any] = _no_value


def _price(call: LLMApiCall) -> Decimal | None:
    return call.total_price


def _latency(call: LLMApiCall) -> int | None:
    return call.latency_ms


def _tokens(call: LLMApiCall) -> int:
    return call.total_tokens


CALL_SORTS: dict[CallSort, SortSpec] = {
    CallSort.NEWEST: SortSpec(descending=True),
    CallSort.OLDEST: SortSpec(descending=False),
    CallSort.COST_DESC: SortSpec(True, "total_price", nullable=True, value=_price),
    CallSort.COST_ASC: SortSpec(False, "total_price", nullable=True, value=_price),
    CallSort.LATENCY_DESC: SortSpec(True, "latency_ms", nullable=True, value=_latency),
    CallSort.LATENCY_ASC: SortSpec(False, "latency_ms", nullable=True, value=_latency),
    CallSort.TOKENS_DESC: SortSpec(True, "total_tokens", value=_tokens),
    CallSort.TOKENS_ASC: SortSpec(False, "total_tokens", value=_tokens),
}
"""Each sort's direction and key; the ids of the key columns are the API-call table's."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last row's sort value (None: it has none), time and id."""

    value: Any
    create_time: datetime
    id: uuid.UUID


def check_sort(sort: CallSort | str) -> CallSort:
    """``sort`` as a CallSort; an unknown name raises ValueError listing the known ones."""
    try:
        return CallSort(sort)
    except ValueError:
        raise ValueError(
            f"unknown sort {sort!r}; choose from {[item.value for item in CallSort]}"
        ) from None


def check_page_limit(limit: int) -> int:
    """Refuse a page size below 1."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit!r}")
    return limit


def _encode(parts: list[Any]) -> str:
    text = json.dumps(parts, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str, tag: str) -> list[Any]:
    """The parts of a cursor made for ``tag``; ValueError for anything else."""
    if not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR:
        raise ValueError("bad cursor: not one this store made")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError("bad cursor: it does not decode") from None
    if not isinstance(parts, list) or len(parts) != 4 or not isinstance(parts[0], str):
        raise ValueError("bad cursor: not one this store made")
    if parts[0] != tag:
        raise ValueError(f"bad cursor: it was made for {parts[0]!r}, not {tag!r}")
    return parts


def _time_and_id(parts: list[Any]) -> tuple[datetime, uuid.UUID]:
    try:
        moment = datetime.fromisoformat(parts[2])
        ident = uuid.UUID(parts[3])
    except (TypeError, ValueError):
        raise ValueError("bad cursor: its time or id does not read") from None
    if moment.tzinfo is None:
        raise ValueError("bad cursor: its time has no timezone")
    return moment, ident


def call_cursor(sort: CallSort, call: LLMApiCall) -> str:
    """The cursor of the page that follows ``call`` in ``sort`` order."""
    value = CALL_SORTS[sort].value(call)
    if isinstance(value, Decimal):
        value = str(value)
    return _encode([sort.value, value, call.create_time.isoformat(), str(call.id)])


def decode_call_cursor(sort: CallSort, cursor: str) -> Cursor:
    """A cursor made by :func:`call_cursor` for ``sort``; ValueError for any other."""
    parts = _decode(cursor, sort.value)
    spec = CALL_SORTS[sort]
    value = parts[1]
    if spec.column is None:
        if value is not None:
            raise ValueError("bad cursor: a time order has no sort value")
    elif value is None:
        if not spec.nullable:
            raise ValueError("bad cursor: its sort value is missing")
    elif spec.column == "total_price":
        try:
            value = Decimal(value) if isinstance(value, str) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite():
            raise ValueError("bad cursor: its price does not read")
    elif not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("bad cursor: its sort value is not a whole number")
    moment, ident = _time_and_id(parts)
    return Cursor(value, moment, ident)


def session_cursor(session: ChatSession) -> str:
    """The cursor of the page of sessions that follows ``session``."""
    return _encode([_SESSIONS, None, session.create_time.isoformat(), str(session.id)])


def decode_session_cursor(cursor: str) -> Cursor:
    """A cursor made by :func:`session_cursor`; ValueError for any other."""
    parts = _decode(cursor, _SESSIONS)
    if parts[1] is not None:
        raise ValueError("bad cursor: not one this store made")
    moment, ident = _time_and_id(parts)
    return Cursor(None, moment, ident)


def ordered_calls(calls: Iterable[LLMApiCall], sort: CallSort) -> list[LLMApiCall]:
    """``calls`` in ``sort`` order: those with a sort value first, then those without."""
    spec = CALL_SORTS[sort]
    valued: list[LLMApiCall] = []
    empty: list[LLMApiCall] = []
    for call in calls:
        (empty if spec.value(call) is None else valued).append(call)
    valued.sort(key=lambda c: (spec.value(c), c.create_time, c.id), reverse=spec.descending)
    empty.sort(key=lambda c: (c.create_time, c.id), reverse=spec.descending)
    return valued + empty


def after_cursor(call: LLMApiCall, sort: CallSort, cursor: Cursor) -> bool:
    """True when ``call`` comes after the row ``cursor`` names, in ``sort`` order."""
    spec = CALL_SORTS[sort]
    value = spec.value(call)
    if cursor.value is None:  # the cursor is among the calls without a value
        if value is not None:
            return False
        mine: tuple[Any, ...] = (call.create_time, call.id)
        theirs: tuple[Any, ...] = (cursor.create_time, cursor.id)
    else:
        if value is None:
            return True
        mine = (value, call.create_time, call.id)
        theirs = (cursor.value, cursor.create_time, cursor.id)
    return mine < theirs if spec.descending else mine > theirs


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards matched literally."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"
