"""What differs between SQL databases, and nothing else.

The SQL layer (``stores/sql.py``) writes every query once with ``?``
placeholders and calls a :class:`Dialect` for the few things that differ:
column types, placeholder style, integer division, time buckets, and how
values travel to and from the driver. A backend module subclasses it and
overrides only what its database does differently.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from chatledger.stores.paging import LIKE_ESCAPE
from chatledger.stores.schema import Column, ColumnType, Index, Table
from chatledger.stores.statistics import call_cost

__all__ = ["Dialect", "TextProbe", "json_dumps", "utc_text", "uuid_text"]


def json_dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is; NaN or Infinity raises ValueError."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def uuid_text(value: Any) -> str:
    """An id stored as text, in the canonical lowercase form the entity's JSON gives it.

    The 36-character form (what chatledger and MoFA write) is only lowered,
    which costs a tenth of parsing it; other forms (no dashes, braces) are
    parsed. Garbage raises ValueError or TypeError.
    """
    if type(value) is str and len(value) == 36:
        return value.lower()
    if isinstance(value, bytes | bytearray):
        value = value.decode()
    return str(uuid.UUID(str(value)))


def utc_text(value: datetime) -> str:
    """An aware datetime as pydantic's JSON writes it: RFC 3339 in UTC, ``Z``, no zero microseconds.

    A naive datetime raises ValueError: which instant it means is unknown.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"time {value.isoformat()!r} has no timezone")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat()[:-6] + "Z"  # isoformat leaves out zero microseconds, as pydantic


@dataclass(frozen=True, slots=True)
class TextProbe:
    """How a substring index narrows a session search to the messages that may match.

    ``candidates`` selects (as column ``k``) a row per message the index
    finds for one parameter, ``value`` of the searched text; it may find
    more than match, never fewer. ``sessions`` selects the
    ``chat_session_id`` of those candidates (a CTE named ``probe``) whose
    text does contain the text, taking the LIKE pattern as its one
    parameter when ``rechecks``. ``ready`` is an SQL condition that the
    index exists, tested once per search. Texts shorter than ``shortest``
    characters have no trigram to look up: they are searched by a scan.
    """

    candidates: str
    value: Callable[[str], str]
    sessions: str
    rechecks: bool
    ready: str = "1 = 1"
    shortest: int = 3


class Dialect:
    """ANSI-flavoured defaults; subclasses override what their database does differently."""

    name: ClassVar[str] = "sql"
    column_types: ClassVar[dict[ColumnType, str]] = {}
    #: how the driver wants placeholders: "qmark" (?), "numeric" ($1) or "format" (%s)
    paramstyle: ClassVar[str] = "qmark"
    #: appended to CREATE TABLE (MySQL: engine and character set)
    table_suffix: ClassVar[str] = ""

    # --- statements ------------------------------------------------------------------

    def sql(self, text: str) -> str:
        """Rewrite a query written with ``?`` placeholders into this driver's style."""
        if self.paramstyle == "qmark":
            return text
        if self.paramstyle == "format":
            return text.replace("%", "%%").replace("?", "%s")
        parts = text.split("?")
        out = [parts[0]]
        for number, part in enumerate(parts[1:], start=1):
            out.append(f"${number}{part}")
        return "".join(out)

    def column_type(self, column: Column) -> str:
        """The DDL type of ``column``."""
        kind = self.column_types[column.type]
        return kind.format(length=column.length)

    def column_ddl(self, column: Column) -> str:
        """``name TYPE [NOT NULL] [DEFAULT x]``."""
        ddl = f"{column.name} {self.column_type(column)}"
        if not column.nullable:
            ddl += " NOT NULL"
        if column.default is not None:
            ddl += f" DEFAULT {column.default}"
        return ddl

    def create_table(self, table: Table) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for ``table``, keys and checks included."""
        lines = [self.column_ddl(column) for column in table.columns]
        lines.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
        lines.extend(f"UNIQUE ({', '.join(columns)})" for columns in table.unique)
        lines.extend(f"CHECK ({check})" for check in table.checks)
        lines.extend(
            f"FOREIGN KEY ({fk.column}) REFERENCES {fk.table}(id) ON DELETE {fk.on_delete}"
            for fk in table.foreign_keys
        )
        body = ",\n    ".join(lines)
        return f"CREATE TABLE IF NOT EXISTS {table.name} (\n    {body}\n){self.table_suffix}"

    def create_index(self, table: Table, index: Index) -> str:
        """``CREATE INDEX IF NOT EXISTS`` for ``index``, partial when it has a condition."""
        partial = "" if index.where is None else f" WHERE {index.where}"
        return (
            f"CREATE INDEX IF NOT EXISTS {index.name} ON {table.name} "
            f"({', '.join(index.columns)}){partial}"
        )

    def drop_index(self, table: Table, name: str) -> str:
        """``DROP INDEX IF EXISTS`` for index ``name`` of ``table``."""
        return f"DROP INDEX IF EXISTS {name}"

    def add_column(self, table: Table, column: Column) -> str:
        """``ALTER TABLE … ADD COLUMN`` for ``column``."""
        return f"ALTER TABLE {table.name} ADD COLUMN {self.column_ddl(column)}"

    def upsert(self, table: Table) -> list[tuple[str, tuple[int, ...]]]:
        """Statements that insert a full row or replace the row with the same id.

        Each comes with the positions, in the row's column order, of the
        values it binds to its ``?`` placeholders. Only a clash on ``id``
        replaces; a clash on another unique key is a constraint error, never
        a silent update of some other row.
        """
        names = table.column_names
        updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        return [(sql, tuple(range(len(names))))]

    def accumulate(self, table: Table, keys: Sequence[str], sums: Sequence[str]) -> str:
        """What follows an INSERT into ``table`` so that a row whose ``keys`` exist adds to it.

        Each of ``sums`` of the existing row gets the inserted row's value
        added (a negative one subtracts).
        """
        updates = ", ".join(f"{name} = {table.name}.{name} + excluded.{name}" for name in sums)
        return f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"

    def from_arrays(self, table: Table, columns: Sequence[str]) -> str | None:
        """A SELECT of rows of ``table``'s ``columns`` from one array parameter per column.

        None where the database has no such thing: the rows then go one by
        one (a prepared statement each, or a multi-row INSERT on MySQL).
        """
        return None

    def rollup_lock(self, tables: Sequence[str]) -> str | None:
        """A statement that keeps writers out of ``tables`` until the transaction ends, if needed.

        A rollup rebuild of a time range deletes and recounts its rows: a call
        written meanwhile must be counted by exactly one of the two. SQLite
        needs none: its writes are serialised already.
        """
        return None

    def update_then_insert(self, update: str, insert: str) -> str | None:
        """One statement running ``update`` then ``insert`` atomically, or None if there is none.

        Its parameters are the update's, then the insert's.
        """
        return None

    def migration_lock(self) -> str | None:
        """A statement that makes concurrent migrations wait for each other, if needed.

        It runs first in each migration's transaction and holds until that
        transaction ends. SQLite needs none: its writes are serialised already.
        """
        return None

    def text_search_backlog(self, message: Table) -> list[str]:
        """Migration 7: statements that index ``message``'s text in the background instead.

        None by default: only a dialect whose index is kept by triggers
        (SQLite) has writes to take the indexing off.
        """
        return []

    def text_probe(self) -> TextProbe | None:
        """How the session search uses that index, or None where there is none."""
        return None

    def version_table(self, name: str) -> str:
        """DDL of the table that records applied migrations."""
        return (
            f"CREATE TABLE IF NOT EXISTS {name} (version INTEGER NOT NULL PRIMARY KEY, "
            f"description {self.column_types[ColumnType.TEXT]} NOT NULL, "
            f"applied_at {self.column_types[ColumnType.TIME]} NOT NULL){self.table_suffix}"
        )

    # --- expressions -----------------------------------------------------------------

    def intdiv(self, dividend: str, divisor: str) -> str:
        """Integer division, truncating, of two non-negative integer expressions."""
        return f"(({dividend}) / ({divisor}))"

    def as_integer(self, expression: str) -> str:
        """``expression`` (a sum of counts) as an integer, for cheap arithmetic on it."""
        return expression

    def percentile_aggregates(self, column: str, percents: Sequence[int]) -> list[str] | None:
        """Ordered-set aggregates giving ``column``'s percentiles, or None without them."""
        return None

    def json_int(self, column: str, key: str) -> str:
        """An integer read from key ``key`` of JSON column ``column``."""
        return f"CAST(json_extract({column}, '$.{key}') AS INTEGER)"

    def json_text(self, column: str, key: str) -> str:
        """The text at key ``key`` of JSON column ``column`` (NULL when absent)."""
        return f"json_extract({column}, '$.{key}')"

    def contains(self, expression: str) -> str:
        """``expression`` matches one LIKE pattern parameter, escaped with ``!``, any case."""
        return f"{expression} LIKE ? ESCAPE '{LIKE_ESCAPE}'"

    def keyset_after(self, columns: Sequence[str], *, descending: bool) -> str:
        """Rows after a keyset position in ``columns`` order; one parameter per column.

        A row-value comparison, which PostgreSQL and SQLite turn into one
        index range over an index on ``columns``.
        """
        marks = ", ".join("?" * len(columns))
        return f"({', '.join(columns)}) {'<' if descending else '>'} ({marks})"

    def unindexed(self, column: str) -> str:
        """``column`` as an expression the planner will not serve from an index."""
        return column

    def group_key(self, column: str) -> str:
        """``column`` as a text group key whose order the planner need not take from an index."""
        return column

    def uuid_key(self, column: str) -> str:
        """An id column as the rollups key it: lowercase text where ids are text."""
        return f"LOWER({column})"

    def uuid_as_text(self, column: str) -> str:
        """An id column as lowercase canonical text (a daily rollup's dimension value)."""
        return f"LOWER({column})"

    def cost_parts(self, column: str) -> tuple[str, str]:
        """A price column as the two parts a rollup sums: money, and 1e-10 units.

        Where the price column is exact, the money part is the price and the
        units are 0; see :meth:`money_parts` for the same split in Python.
        """
        return column, "0"

    @staticmethod
    def money_parts(price: Decimal) -> tuple[Any, int]:
        """A price as :meth:`cost_parts` splits it once stored: its stored amount, and 0."""
        return call_cost(price), 0

    def bucket_start(self, column: str, bucket: str) -> str:
        """The start of ``column``'s UTC hour, day, ISO week (Monday) or month."""
        raise NotImplementedError

    # --- keyset exports --------------------------------------------------------------
    # An export reads chunk after chunk by primary key (`id > ? ORDER BY id LIMIT ?`).
    # A plan that serves the filter from another index must sort every match again
    # for each chunk, which grows with the square of the matches.

    def keyset_filter(self, column: str) -> str:
        """``column`` as an export chunk's filter names it; the planner's choice by default."""
        return column

    #: whether a filtered or grouped statistic reads the matching calls' latency and
    #: time-to-first-token values and leaves their percentiles to the caller, where
    #: the database has no percentile aggregate and sorts slowly (SQLite)
    percentiles_from_values: ClassVar[bool] = False

    #: what follows a SELECT to lock the rows it reads until the transaction ends
    #: (``" FOR UPDATE"``); empty where a writer already has the database to itself
    lock_rows: ClassVar[str] = ""

    #: whether a list of ids binds as one array parameter (``id = ANY(?)``); else
    #: a query names each id with its own placeholder (``id IN (?, ?, …)``)
    id_arrays: ClassVar[bool] = False

    #: a statement run before each export chunk, in its transaction, so that the
    #: chunk is planned for its own values; None where every query already is
    per_value_plan: ClassVar[str | None] = None

    # --- values ----------------------------------------------------------------------
    # Encoders turn Python values into what the driver binds; decoders undo what the
    # driver returns. The defaults suit a driver that understands the native types.

    encode_uuid: Callable[[uuid.UUID], Any] = staticmethod(lambda value: value)
    encode_time: Callable[[datetime], Any] = staticmethod(lambda value: value)
    encode_json: Callable[[Any], Any] = staticmethod(json_dumps)
    encode_bool: Callable[[bool], Any] = staticmethod(lambda value: value)
    encode_money: Callable[[Decimal], Any] = staticmethod(lambda value: value)
    #: an id column's value as canonical text; ``str`` of the driver's UUID object by default
    record_uuid: Callable[[Any], str] = staticmethod(str)

    def decode_json(self, value: Any) -> Any:
        """A JSON column's value as Python data."""
        if value is None:
            return None
        if isinstance(value, bytes | bytearray):
            value = value.decode("utf-8")
        if isinstance(value, str):
            return json.loads(value)
        return value

    def decode_time(self, value: Any) -> Any:
        """A time column's value as something pydantic reads as an aware datetime."""
        return value

    def record_time(self, value: Any) -> str:
        """A time column's value as the text the entity's JSON gives that time."""
        return utc_text(self.decode_time(value))

    def decode_money(self, value: Any) -> Decimal | None:
        """A money value (column or SUM) as a Decimal."""
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        return Decimal(str(value))
