"""What the raw PostgreSQL and MariaDB baselines share: their interface, and how they encode rows.

Both baselines write into the very tables chatledger created on the scratch
database (same columns, indexes, keys and checks), so a raw figure and
chatledger's differ by the library alone. Each column's encoder follows from
what chatledger's schema says the column holds and what type the server's
catalog says it was given; a column the driver binds natively gets none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Protocol

from benchmarks.bulk_load import Encoder, Layout, Layouts
from benchmarks.measure import Rate
from benchmarks.raw_sql import RECENT_MESSAGES, TOUCH_SESSION, insert_sql, placeholders
from benchmarks.workload import Row
from chatledger.stores import schema

__all__ = [
    "TABLES",
    "RawServer",
    "RawTables",
    "as_float",
    "json_text",
    "layouts",
    "naive_utc",
    "text",
]

TABLES = {"session": "entity_chat_session", "message": "entity_llm_message",
          "api_call": "entity_llm_api_call"}  # fmt: skip
_SCHEMA = {
    table.name: {column.name: column for column in table.columns}
    for table in (schema.SESSION, schema.MESSAGE, schema.API_CALL)
}
_SCHEMA[schema.API_CALL.name].update({c.name: c for c in schema.TOKEN_SUBSET_COLUMNS})


def naive_utc(value: datetime | None) -> datetime | None:
    """An aware time as a naive one in UTC."""
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def as_float(value: Any) -> float | None:
    """A number (a Decimal price, say) as a float."""
    return None if value is None else float(value)


def json_text(value: Any) -> str | None:
    """A JSON column's value as compact text, as chatledger writes it."""
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text(value: Any) -> Any:
    """A text column's value: an enum's value, a UUID as its canonical string, text as it is."""
    if value is None or type(value) is str:
        return value
    return value.value if isinstance(value, Enum) else str(value)


def layouts(
    catalog: Iterable[tuple[str, str, str]],
    encoder: Callable[[schema.Column, str], Encoder | None],
) -> Layouts:
    """The session, message and API-call layouts from ``(table, column, type)`` catalog rows."""
    columns: dict[str, list[tuple[str, Encoder | None]]] = {name: [] for name in _SCHEMA}
    for table, column, kind in catalog:
        if table in columns:
            columns[table].append((column, encoder(_SCHEMA[table][column], kind.lower())))
    for table, found in columns.items():
        if not found:
            raise RuntimeError(f"the scratch database has no table {table}: did the store connect?")

    def layout(table: str) -> Layout:
        names, encoders = zip(*columns[table], strict=True)
        return Layout(table, tuple(names), tuple(encoders))

    return Layouts(
        session=layout(TABLES["session"]),
        message=layout(TABLES["message"]),
        api_call=layout(TABLES["api_call"]),
    )


class RawServer(Protocol):
    """A raw driver's pool of connections on a scratch database, doing the benchmark's work."""

    name: str  # the table's column header, e.g. "raw asyncpg"
    batch_methods: tuple[str, ...]  # how it can insert a batch; the first is the target's

    def param(self, table: str, column: str, value: Any) -> Any:
        """``value`` of ``table.column`` as this driver binds it."""
        ...

    async def save_each(self, work: Sequence[Sequence[Row]], *, touch_session: bool) -> Rate:
        """One caller per list of messages, each INSERT (and session update) one transaction."""
        ...

    async def save_batches(
        self, table: str, batches: Sequence[Sequence[Row]], method: str, *, touch_session: bool
    ) -> Rate:
        """Each batch in one transaction with ``method``; the first batch untimed."""
        ...

    async def recent_messages(self, session_id: Any, limit: int) -> list[Any]:
        """The raw history SELECT: the newest ``limit`` rows, oldest first, nothing decoded."""
        ...

    async def aggregate(self, where: str, params: Sequence[Any]) -> Sequence[Any]:
        """The plain usage aggregate over ``where`` (``?`` placeholders)."""
        ...

    async def replay(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``(sql, params)`` as given (this driver's placeholders), fetching every row."""
        ...

    async def bulk_load(self, loads: Sequence[tuple[str, Iterable[Row]]]) -> int:
        """Load ``(table, rows)`` fast, indexes rebuilt after; return the rows loaded."""
        ...

    async def settings(self) -> str:
        """The server's version and the settings that decide what a commit costs."""
        ...

    async def close(self) -> None:
        """Close the pool."""
        ...


class RawTables:
    """What both raw baselines hold: a pool, chatledger's tables, their statements.

    A subclass sets ``paramstyle`` to its driver's ("numeric" or "format").
    """

    paramstyle: ClassVar[str]

    def __init__(self, pool: Any, layouts: Layouts) -> None:
        """Work on ``pool`` with chatledger's tables as ``layouts`` describe them."""
        self._pool = pool
        self._layouts = {
            layout.table: layout for layout in (layouts.session, layouts.message, layouts.api_call)
        }
        self._sql = {
            table: placeholders(insert_sql(table, layout.columns), self.paramstyle)
            for table, layout in self._layouts.items()
        }
        self._touch = placeholders(TOUCH_SESSION, self.paramstyle)
        self._recent = placeholders(RECENT_MESSAGES, self.paramstyle)
        message = layouts.message.columns
        self._touch_from = (message.index("create_time"), message.index("chat_session_id"))

    def layout(self, table: str) -> Layout:
        """How rows of ``table`` are bound."""
        return self._layouts[table]

    def param(self, table: str, column: str, value: Any) -> Any:
        """``value`` of ``table.column`` as the driver binds it."""
        return self._layouts[table].param(column, value)
