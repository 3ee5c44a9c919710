"""Building million-row databases in chatledger's own schema, fast, with raw ``executemany``.

chatledger creates the schema (``SqliteStore.connect``) and saves one sample
row per table; each column's stored form is then matched against a few
candidate encodings of the sample's Python value. The encoders found turn
generated rows into exactly what chatledger would have written, and the load
itself drops the secondary indexes, inserts in large transactions and
recreates the indexes from their own DDL, so the schema ends as it began.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks import workload
from benchmarks.raw_sql import insert_sql
from benchmarks.workload import Row
from chatledger.entities import ApiCallStatus

__all__ = ["Encoder", "Layout", "LayoutError", "Layouts", "bulk_load", "learn_layouts"]

Encoder = Callable[[Any], Any]
_CHUNK = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LayoutError(RuntimeError):
    """chatledger stored a column in a form none of the candidate encodings reproduces."""


def _opt(encode: Encoder) -> Encoder:
    return lambda value: None if value is None else encode(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
_UUID_ENCODERS: tuple[Encoder, ...] = (str, lambda u: u.hex, lambda u: u.bytes)
_TIME_ENCODERS: tuple[Encoder, ...] = (
    lambda t: t.isoformat(timespec="microseconds"),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f"),
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f"),
    _micros,
    lambda t: t.timestamp(),
)
_DECIMAL_ENCODERS: tuple[Encoder, ...] = (str, float, lambda d: format(d, "f"))


def _candidates(value: Any) -> tuple[Encoder, ...]:
    """The encodings a store might use for a Python value of this type."""
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, Enum)):
        if isinstance(value, bool):
            return (int, lambda v: v)
        return (lambda v: v,)
    if isinstance(value, Enum):
        return (lambda v: v.value,)
    if isinstance(value, uuid.UUID):
        return _UUID_ENCODERS
    if isinstance(value, datetime):
        return _TIME_ENCODERS
    if isinstance(value, Decimal):
        return _DECIMAL_ENCODERS
    if isinstance(value, dict | list):
        return (_json, lambda v: _json(v) if v else None)
    raise TypeError(f"no candidate encodings for {type(value).__name__}")


def _same(stored: Any, encoded: Any) -> bool:
    if isinstance(stored, str | bytes) and isinstance(encoded, str) and encoded[:1] in "{[":
        try:
            return bool(json.loads(stored) == json.loads(encoded))
        except ValueError:
            return False
    return bool(stored == encoded and type(stored) is type(encoded))


@dataclass(frozen=True, slots=True)
class Layout:
    """How one table's rows are stored: its columns and an encoder for each."""

    table: str
    columns: tuple[str, ...]
    encoders: tuple[Encoder | None, ...]  # None: the driver binds the Python value as it is

    def encode(self, row: Row) -> tuple[Any, ...]:
        """The stored form of ``row``, in column order."""
        return tuple(
            row.get(column) if encode is None else encode(row.get(column))
            for column, encode in zip(self.columns, self.encoders, strict=True)
        )

    def param(self, column: str, value: Any) -> Any:
        """The stored form of one value of ``column``, for a query parameter."""
        encode = self.encoders[self.columns.index(column)]
        return value if encode is None else encode(value)


@dataclass(frozen=True, slots=True)
class Layouts:
    """The layouts of the session, message and API-call tables."""

    session: Layout
    message: Layout
    api_call: Layout


def _learn(conn: sqlite3.Connection, table: str, sample: Row, where: str = "1") -> Layout:
    cursor = conn.execute(f"SELECT * FROM {table} WHERE {where}")
    names = tuple(column[0] for column in cursor.description)
    stored_rows = cursor.fetchall()
    if len(stored_rows) != 1:
        raise LayoutError(f"expected the one sample row in {table}, found {len(stored_rows)}")
    encoders: list[Encoder] = []
    for name, stored in zip(names, stored_rows[0], strict=True):
        value = sample.get(name)
        match = next(
            (enc for enc in _candidates(value) if _same(stored, enc(value))),
            None,
        )
        if match is None:
            raise LayoutError(
                f"cannot reproduce {table}.{name}: chatledger stored {stored!r} for {value!r}; "
                "add its encoding to benchmarks/bulk_load.py"
            )
        encoders.append(_opt(match))
    return Layout(table, names, tuple(encoders))


def _samples() -> tuple[Row, list[Row], Row]:
    import random

    rng = random.Random(7)
    population = workload.Population.make(rng, users=1)
    session = workload.sessions(population, rng, 1)[0]
    session["title"] = "sample"
    session["metadata"] = {"k": "v"}
    messages = list(workload.conversation(session, rng, 2))  # the second one has a parent
    session["update_time"] = messages[-1]["update_time"]  # what saving them leaves behind
    call = next(
        row
        for row in workload.api_call_rows(
            [session], rng, 1_000, workload.Clock(rng, timedelta(seconds=1))
        )
        if row["status"] is ApiCallStatus.SUCCESS
    )
    call.update(
        prompt_tokens_details={"cached_tokens": 7},
        cached_tokens=7,
        completion_tokens_details={"reasoning_tokens": 5},
        reasoning_tokens=5,
        error_message="sample error",
        error_code="E_SAMPLE",
    )
    return session, messages, call


async def learn_layouts(path: Path) -> Layouts:
    """Create chatledger's schema at ``path``, save one sample per table and learn its layouts."""
    from chatledger.stores.sqlite import SqliteStore

    session, messages, call = _samples()
    store = await SqliteStore.connect(f"sqlite:///{path}")
    try:
        await store.create_session(workload.to_chat_session(session))
        for message in messages:
            await store.save_message(workload.to_llm_message(message))
        await store.save_api_call(workload.to_api_call(call))
    finally:
        await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        layouts = Layouts(
            session=_learn(conn, "entity_chat_session", session),
            message=_learn(
                conn, "entity_llm_message", messages[1], "parent_message_id IS NOT NULL"
            ),
            api_call=_learn(conn, "entity_llm_api_call", call),
        )
        for table in ("entity_llm_api_call", "entity_llm_message", "entity_chat_session"):
            conn.execute(f"DELETE FROM {table}")
    finally:
        conn.close()
    return layouts


async def reanalyze_sqlite(path: Path, progress: Callable[[str], None]) -> float:
    """Drop a loaded file's planner statistics and open the store, which analyzes; seconds.

    The store analyzes the tables it plans by (the calls, and the rollups that
    grow with them) when they outgrow their statistics; an open before the
    rollups were rebuilt analyzed the calls alone. Without statistics, the
    next open analyzes them all, as a store that had written the rows would.
    """
    from chatledger.stores.sqlite import SqliteStore

    conn = sqlite3.connect(path)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
            conn.execute("DELETE FROM sqlite_stat1")
            conn.commit()
    finally:
        conn.close()
    started = perf_counter()
    await (await SqliteStore.connect(f"sqlite:///{path}")).close()
    took = perf_counter() - started
    progress(f"SQLite: store opened (its ANALYZE) in {took:.1f} s")
    return took


async def rebuild_rollups(store: Any, title: str, progress: Callable[[str], None]) -> None:
    """The store's usage rollups recounted from the loaded calls (the loaders bypass them).

    A store that wrote these calls itself would have kept its rollups as it
    went; a bulk load writes the tables only (and :func:`learn_layouts`
    deletes its sample call behind the store's back), so the store recounts
    them before anything reads its statistics.
    """
    rebuild = getattr(store, "rebuild_rollups", None)
    if rebuild is None:  # a chatledger without rollups
        return
    started = perf_counter()
    counted = await rebuild()
    progress(f"{title}: rollups rebuilt from {counted:,} calls in {perf_counter() - started:.1f} s")


async def index_pending_text(store: Any, title: str, progress: Callable[[str], None]) -> None:
    """The loaded messages' text indexed for the session search, before anything is timed.

    SQLite's store indexes written messages from a pending list while its
    writer is idle (schema version 7): after a bulk load it would do so for
    a while, competing with whatever is measured next.
    """
    index = getattr(store, "index_pending_text", None)  # None: indexed as written
    started = perf_counter()
    indexed = 0
    while index is not None and (taken := await index(100_000)):
        indexed += taken
        progress(
            f"{title}: text of {indexed:,} messages indexed ({perf_counter() - started:.0f} s)"
        )


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def bulk_load(path: Path, loads: Sequence[tuple[Layout, Iterable[Row]]]) -> int:
    """Insert each ``(layout, rows)`` into its table with its indexes rebuilt after; return rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    total = 0
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture: nothing to keep on a crash
        conn.execute("PRAGMA cache_size=-1000000")
        for layout, rows in loads:
            indexes = conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (layout.table,),
            ).fetchall()
            for name, _ in indexes:
                conn.execute(f"DROP INDEX {name}")
            sql = insert_sql(layout.table, layout.columns)
            for chunk in _chunks(rows, _CHUNK):
                conn.execute("BEGIN")
                conn.executemany(sql, [layout.encode(row) for row in chunk])
                conn.execute("COMMIT")
                total += len(chunk)
            for _, ddl in indexes:
                conn.execute(ddl)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return total
