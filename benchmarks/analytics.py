"""The analytics part: usage statistics from the rollups at ten million calls, and their write cost.

On each backend (an SQLite file; PostgreSQL and MariaDB in scratch databases
of their own) a ledger of API calls over the 90 days before the run is
generated row by row (:class:`Ledger`: 40 tenants, 2,000 users, 120 agents,
12 models) and loaded by the raw bulk loaders the other parts use (SQLite:
executemany with the secondary indexes dropped and rebuilt; PostgreSQL:
COPY; MariaDB: multi-row INSERTs, in primary-key order), then the store
recounts its own rollups (``rebuild_rollups``) and the planner statistics
are refreshed as the dashboard part refreshes them.

Reads: the statistics a dashboard asks for, with bounds as it sets them
(the end at the next whole hour, a range of days starting at UTC midnight),
timed through the store (from the rollups), through the same store inside
``rollups.scan_only()`` (from the calls), and as the raw driver's plain
aggregate over the same calls. Writes: ``save_api_calls`` batches into the
loaded table, beside the same batches with the store's rollup writes switched
off and beside the raw driver's insert into the same tables, in turns.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import uuid
from bisect import bisect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from time import perf_counter
from typing import Any, Protocol

from benchmarks import raw_server, raw_sqlite, workload
from benchmarks.bulk_load import Layout, bulk_load, learn_layouts, reanalyze_sqlite
from benchmarks.dashboard_data import MODELS, Population
from benchmarks.measure import Latency
from benchmarks.raw_mysql import RawMySql
from benchmarks.raw_postgres import COPY, RawPostgres
from benchmarks.raw_sql import AGGREGATE, insert_sql, placeholders
from benchmarks.report import Cell, Environment, Result, Section, Target
from benchmarks.scratch_databases import MYSQL, POSTGRES, Server, ServerUnavailableError
from benchmarks.workload import Row, uuid7_at
from chatledger.entities import ApiCallStatus, LLMApiCall, QueryFilter, UsageStatistics

__all__ = ["FULL", "QUICK", "AnalyticsSizes", "Ledger", "run_analytics"]

Progress = Callable[[str], None]

SEED = 20250414
READ_TARGET_MS = 10.0  # issue 14: statistics for a tenant (30 days) and for everything (90 days)
WRITE_TARGET = 0.80  # issue 14: insert throughput with rollups >= 80% of without
_CALLS = raw_server.TABLES["api_call"]
_PG_SCRATCH = replace(POSTGRES, scratch="chatledger_bench_analytics")
_MY_SCRATCH = replace(MYSQL, scratch="chatledger_bench_analytics")
_REPORT_EVERY = 500_000  # rows between progress lines while loading
_LIVE_GAP = timedelta(milliseconds=10)  # the inserted calls arrive 100 a second
_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}


@dataclass(frozen=True, slots=True)
class AnalyticsSizes:
    """How many calls, and how many reads and batches are timed."""

    name: str
    calls: int  # calls loaded on SQLite and PostgreSQL
    mysql_calls: int  # calls loaded on MariaDB
    tenants: int
    users: int
    agents_per_tenant: int
    warmup: int  # untimed reads of each query first
    repeats: int  # timed reads from the rollups, at most
    min_repeats: int  # ... at least, past the budget
    scan_repeats: int  # timed scans and raw aggregates, at most (after one untimed)
    min_scan_repeats: int  # ... at least, past the budget
    budget_s: float  # seconds of timed reads per query and side, after which the minimum stops it
    batch_size: int  # calls per save_api_calls / raw insert
    batches: int  # timed batches per side and round (each round starts with an untimed one)
    rounds: int  # the sides take turns this many times
    days: int = 90  # the calls are spread over this many days before the run

    def describe(self) -> str:
        """The sizes line of the report."""
        return (
            f"name={self.name}, calls={self.calls:,} on SQLite and PostgreSQL, "
            f"{self.mysql_calls:,} on MariaDB, "
            f"over {self.days} days; tenants={self.tenants}, users={self.users:,}, "
            f"agents={self.tenants * self.agents_per_tenant}, models={len(MODELS)}; reads: "
            f"warmup={self.warmup}, rollups {self.repeats} timed ({self.min_repeats} at least), "
            f"scans and raw aggregates {self.scan_repeats} ({self.min_scan_repeats} at least), "
            f"{self.budget_s:.0f} s budget a query; writes: {self.rounds} rounds x "
            f"{self.batches} batches of {self.batch_size} per side"
        )


FULL = AnalyticsSizes(
    "full", calls=10_000_000, mysql_calls=1_000_000, tenants=40, users=2_000, agents_per_tenant=3,
    warmup=20, repeats=200, min_repeats=50, scan_repeats=5, min_scan_repeats=3, budget_s=60.0,
    batch_size=500, batches=10, rounds=4,
)  # fmt: skip
QUICK = AnalyticsSizes(
    "quick", calls=20_000, mysql_calls=20_000, tenants=40, users=2_000, agents_per_tenant=3,
    warmup=5, repeats=50, min_repeats=20, scan_repeats=5, min_scan_repeats=3, budget_s=10.0,
    batch_size=500, batches=4, rounds=2,
)  # fmt: skip


# --- the data --------------------------------------------------------------------------------

_FAILURE_RATE = 0.05
_FAILURES = (  # status, error code, share among failures
    (ApiCallStatus.RATE_LIMITED, "rate_limit_exceeded", 0.40),
    (ApiCallStatus.FAILED, "server_error", 0.30),
    (ApiCallStatus.TIMEOUT, "timeout", 0.20),
    (ApiCallStatus.CANCELLED, "cancelled", 0.10),
)
_FAILURE_ROLLS = tuple(accumulate(share for _, _, share in _FAILURES))
_GUARD_SHARE = 0.3  # of an agent's calls: its guard model's (small, cheap, fast)
_SESSION_STEP = 0x9E3779B97F4A7C15F39CC0605CEDC835  # one session per user and day
_UUID_SPACE = 1 << 128


class Ledger:
    """``calls`` API calls over the ``days`` days before ``end``, made row by row, in time order.

    Tenants weigh 1/rank^0.8 (a few large, most small), as in the dashboard's
    data; each call is one of its tenant's users' with one of its agents, on
    the agent's model or (30%) its guard model; 5% fail. The same seed gives
    the same rows (times shift with ``end``); nothing is held in memory.
    """

    def __init__(
        self,
        sizes: AnalyticsSizes,
        calls: int,
        *,
        seed: int = SEED,
        days: int = 90,
        end: datetime | None = None,
    ) -> None:
        """The population and the time span; rows are made by :meth:`calls`."""
        self.seed = seed
        self.count = calls
        self.population = Population.make(
            random.Random(seed), sizes.tenants, sizes.users, sizes.agents_per_tenant
        )
        self.end = end or datetime.now(UTC)
        self.start = self.end - timedelta(days=days)
        self._cumulative = tuple(accumulate(self.population.weights))

    @property
    def largest_tenant(self) -> uuid.UUID:
        """The tenant with the most calls."""
        return self.population.tenants[0].id

    @property
    def largest_share(self) -> float:
        """The largest tenant's expected share of the calls."""
        return self._cumulative[0] / self._cumulative[-1]

    def calls(self) -> Iterator[Row]:
        """Every call, oldest first, evenly spread over the span (jittered)."""
        rng = random.Random(self.seed + 1)
        step = (self.end - self.start) / self.count
        for index in range(self.count):
            yield self._call(rng, self.start + step * (index + rng.random()))

    def live(self, count: int, seed: int) -> Iterator[Row]:
        """``count`` more calls after the span, 100 a second: what a live system adds."""
        rng = random.Random(self.seed * 31 + seed)
        moment = self.end
        for _ in range(count):
            moment += _LIVE_GAP
            yield self._call(rng, moment)

    def _call(self, rng: random.Random, moment: datetime) -> Row:
        if moment.microsecond == 0:  # never a whole second, as the other workloads
            moment += timedelta(microseconds=1)
        tenant = self.population.tenants[
            bisect(self._cumulative, rng.random() * self._cumulative[-1])
        ]
        user = tenant.users[int(rng.random() * len(tenant.users))]
        agent, main, guard = tenant.agents[int(rng.random() * len(tenant.agents))]
        model = guard if rng.random() < _GUARD_SHARE else main
        day = (moment - self.start).days
        row: Row = {
            "id": uuid7_at(moment, rng),
            "chat_session_id": uuid.UUID(int=(user.int + (day + 1) * _SESSION_STEP) % _UUID_SPACE),
            "agent_id": agent,
            "user_id": user,
            "tenant_id": tenant.id,
            "request_message_id": uuid7_at(moment, rng),
            "model_name": model,
            "create_time": moment,
        }
        if rng.random() < _FAILURE_RATE:
            status, code, _ = _FAILURES[bisect(_FAILURE_ROLLS, rng.random() * _FAILURE_ROLLS[-1])]
            latency = (
                rng.randint(55_000, 60_000)
                if status is ApiCallStatus.TIMEOUT
                else rng.randint(20, 2_000)
            )
            row["status"] = status
            row.update(workload.failure_columns(code, f"{code}: upstream", latency, moment))
            return row
        in_rate, out_rate, reasons = MODELS[model]
        guarding = model == guard
        prompt = rng.randint(150, 600) if guarding else rng.randint(400, 12_000)
        completion = rng.randint(1, 12) if guarding else rng.randint(20, 900)
        reasoning = rng.randint(completion // 4, completion * 3) if reasons else None
        completion += reasoning or 0
        cached = (
            int(prompt * rng.uniform(0.5, 0.95)) if prompt > 1024 and rng.random() < 0.6 else None
        )
        first_token = rng.randint(150, 900) + (reasoning or 0) // 40
        latency = first_token + int(completion / rng.uniform(30.0, 160.0) * 1000)
        row.update(
            workload.success_columns(
                rng,
                (in_rate, out_rate),
                (prompt, completion, reasoning, cached),
                (first_token, latency),
                moment,
                uuid7_at(moment, rng),
            )
        )
        return row


def _reporting(rows: Iterator[Row], total: int, title: str, progress: Progress) -> Iterator[Row]:
    """``rows``, with a progress line every ``_REPORT_EVERY`` rows and when they run out."""
    start = perf_counter()
    count = 0
    for count, row in enumerate(rows, 1):  # the count is read after the loop
        yield row
        if count % _REPORT_EVERY == 0:
            elapsed = perf_counter() - start
            left = elapsed / count * (total - count)
            progress(
                f"{title}: {count:,} of {total:,} calls loaded ({elapsed:.0f} s, "
                f"about {left:.0f} s to go before the indexes)"
            )
    progress(
        f"{title}: all {count:,} calls made in {perf_counter() - start:.0f} s; "
        "the last chunk and the indexes next"
    )


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a load took, for the notes."""

    calls: int
    rows_s: float  # generating and inserting the rows, indexes rebuilt
    rollups_s: float  # the store's rebuild_rollups
    analyze_s: float  # planner statistics (and VACUUM on PostgreSQL)
    footprint: Footprint

    def text(self, title: str) -> str:
        """One line for the notes."""
        return (
            f"{title}: {self.calls:,} calls loaded in {self.rows_s:.0f} s, rollups rebuilt in "
            f"{self.rollups_s:.0f} s, planner statistics in {self.analyze_s:.0f} s; "
            + self.footprint.text()
        )


@dataclass(frozen=True, slots=True)
class Footprint:
    """How big the loaded tables are: bytes on disk, and the rollups' rows."""

    calls_bytes: int  # the API-call table with its indexes (SQLite: the whole file)
    rollup_bytes: int | None  # the rollup tables with their indexes (None: not known apart)
    rollup_rows: tuple[int, int, int]  # hourly, daily, histogram

    def text(self) -> str:
        """What the notes say of it."""
        hourly, daily, histogram = self.rollup_rows
        size = f"{self.calls_bytes / 2**30:.2f} GiB"
        if self.rollup_bytes is None:
            held = f"a {size} file (calls, indexes, rollups)"
        else:
            held = (
                f"{size} for the calls and their indexes, "
                f"{self.rollup_bytes / 2**20:,.0f} MiB for the rollups"
            )
        return f"{held}; {hourly:,} hourly, {daily:,} daily and {histogram:,} histogram rows"


_ROLLUP_TABLES = ("chatledger_usage_hourly", "chatledger_usage_daily", "chatledger_usage_histogram")


def _sqlite_footprint(path: Path) -> Footprint:
    conn = sqlite3.connect(path)
    try:
        rows = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in _ROLLUP_TABLES]
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    hourly, daily, histogram = rows
    return Footprint(size, None, (hourly, daily, histogram))


async def _rebuild(store: Any, title: str, progress: Progress) -> float:
    """The store's own rollups recounted from the loaded calls; the seconds it took."""
    started = perf_counter()

    def step(done: int, total: int) -> None:
        progress(f"{title}: rollups, {done} of {total} weeks ({perf_counter() - started:.0f} s)")

    counted = await store.rebuild_rollups(step)
    seconds = perf_counter() - started
    progress(f"{title}: rollups rebuilt from {counted:,} calls in {seconds:.1f} s")
    return seconds


async def load_sqlite(ledger: Ledger, path: Path, progress: Progress) -> tuple[Layout, Loaded]:
    """chatledger's schema at ``path``, the calls bulk-loaded, its rollups and ANALYZE run."""
    from chatledger.stores.sqlite import SqliteStore

    start = perf_counter()
    layouts = await learn_layouts(path)
    rows = _reporting(ledger.calls(), ledger.count, "SQLite", progress)
    count = bulk_load(path, [(layouts.api_call, rows)])
    loaded = perf_counter() - start
    progress(f"SQLite: {count:,} calls loaded, indexes rebuilt, in {loaded:.0f} s")
    store = await SqliteStore.connect(f"sqlite:///{path}")
    try:
        rollups = await _rebuild(store, "SQLite", progress)
    finally:
        await store.close()
    analyze = await reanalyze_sqlite(path, progress)
    footprint = _sqlite_footprint(path)
    return layouts.api_call, Loaded(count, loaded, rollups, analyze, footprint)


async def load_postgres(ledger: Ledger, url: str, progress: Progress) -> Loaded:
    """chatledger's schema in the scratch database, COPY'd calls, rollups, VACUUM (ANALYZE)."""
    import asyncpg

    from chatledger.stores.postgres import PostgresStore

    await (await PostgresStore.connect(url, min_size=1, max_size=1)).close()  # the schema
    start = perf_counter()
    raw = await RawPostgres.open(url, 1)
    try:  # COPY in chunks, indexes dropped and rebuilt, ANALYZE
        rows = _reporting(ledger.calls(), ledger.count, "PostgreSQL", progress)
        count = await raw.bulk_load([(_CALLS, rows)])
    finally:
        await raw.close()
    loaded = perf_counter() - start
    progress(f"PostgreSQL: {count:,} calls loaded, indexes rebuilt, in {loaded:.0f} s")
    store = await PostgresStore.connect(url, min_size=1, max_size=1)
    try:
        rollups = await _rebuild(store, "PostgreSQL", progress)
    finally:
        await store.close()
    conn = await asyncpg.connect(url)
    try:  # what autovacuum does after bulk inserts: the visibility map, fresh statistics
        started = perf_counter()
        await conn.execute("VACUUM (ANALYZE)")
        analyze = perf_counter() - started
        progress(f"PostgreSQL: VACUUM (ANALYZE) in {analyze:.1f} s")
        size = "SELECT pg_total_relation_size($1::regclass)"
        rows = [await conn.fetchval(f"SELECT COUNT(*) FROM {t}") for t in _ROLLUP_TABLES]
        footprint = Footprint(
            await conn.fetchval(size, _CALLS),
            sum([await conn.fetchval(size, table) for table in _ROLLUP_TABLES]),
            (rows[0], rows[1], rows[2]),
        )
    finally:
        await conn.close()
    return Loaded(count, loaded, rollups, analyze, footprint)


async def load_mysql(ledger: Ledger, url: str, progress: Progress) -> Loaded:
    """chatledger's schema in the scratch database, the calls by multi-row INSERTs, rollups.

    As ``RawMySql.bulk_load`` (the droppable indexes dropped and rebuilt,
    checks off, ANALYZE), but streamed: the rows come in time order with
    UUIDv7 ids, which is already the primary key's order, so nothing is
    sorted in memory.
    """
    import asyncmy

    from benchmarks.raw_mysql import _droppable_keys, _insert
    from chatledger.stores.mysql import MySqlStore
    from chatledger.testing.servers import mysql_connect_options

    await (await MySqlStore.connect(url, min_size=1, max_size=1)).close()  # the schema
    start = perf_counter()
    raw = await RawMySql.open(url, 1)
    layout = raw.layout(_CALLS)
    await raw.close()
    insert = placeholders(insert_sql(_CALLS, layout.columns), "format")
    conn = await asyncmy.connect(**mysql_connect_options(url))
    count = 0
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SET foreign_key_checks = 0, unique_checks = 0")
            keys = await _droppable_keys(cursor, _CALLS)
            if keys:
                await cursor.execute(
                    f"ALTER TABLE {_CALLS} " + ", ".join(f"DROP INDEX {name}" for name, _ in keys)
                )
            chunk: list[tuple[Any, ...]] = []
            for row in _reporting(ledger.calls(), ledger.count, "MariaDB", progress):
                chunk.append(layout.encode(row))
                if len(chunk) == 10_000:
                    count += await _insert(conn, cursor, insert, chunk)
                    chunk = []
            count += await _insert(conn, cursor, insert, chunk)
            if keys:
                await cursor.execute(
                    f"ALTER TABLE {_CALLS} " + ", ".join(f"ADD {ddl}" for _, ddl in keys)
                )
            await cursor.execute(f"ANALYZE TABLE {_CALLS}")
            await cursor.fetchall()
            await cursor.execute("SET foreign_key_checks = 1, unique_checks = 1")
    finally:
        conn.close()
    loaded = perf_counter() - start
    progress(f"MariaDB: {count:,} calls loaded, indexes rebuilt, in {loaded:.0f} s")
    store = await MySqlStore.connect(url, min_size=1, max_size=1)
    try:
        rollups = await _rebuild(store, "MariaDB", progress)
    finally:
        await store.close()
    conn = await asyncmy.connect(**mysql_connect_options(url))
    try:
        started = perf_counter()
        async with conn.cursor() as cursor:
            for table in _ROLLUP_TABLES:
                await cursor.execute(f"ANALYZE TABLE {table}")
                await cursor.fetchall()
        analyze = perf_counter() - started
        footprint = await _mysql_footprint(conn)
    finally:
        conn.close()
    return Loaded(count, loaded, rollups, analyze, footprint)


async def _mysql_footprint(conn: Any) -> Footprint:
    """Sizes from information_schema (InnoDB's estimate), rows counted."""
    async with conn.cursor() as cursor:
        await cursor.execute(
            "SELECT table_name, data_length + index_length FROM information_schema.tables "
            "WHERE table_schema = DATABASE()"
        )
        sizes = {name: int(size or 0) for name, size in await cursor.fetchall()}
        rows = []
        for table in _ROLLUP_TABLES:
            await cursor.execute(f"SELECT COUNT(*) FROM {table}")
            rows.append(int((await cursor.fetchone())[0]))
    return Footprint(
        sizes.get(_CALLS, 0),
        sum(sizes.get(table, 0) for table in _ROLLUP_TABLES),
        (rows[0], rows[1], rows[2]),
    )


# --- the raw driver --------------------------------------------------------------------------


class _Raw(Protocol):
    """The raw driver on the loaded tables: the plain aggregate, any SELECT, a batch insert."""

    name: str  # "raw sqlite3", ...
    insert_name: str  # how it inserts a batch
    day: str  # SQL: a call's UTC day

    def param(self, column: str, value: Any) -> Any:
        """``value`` of an API-call column as the driver binds it."""
        ...

    async def aggregate(self, where: str, params: Sequence[Any]) -> Sequence[Any]:
        """``raw_sql.AGGREGATE`` + ``where`` (``?`` placeholders): its one row."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any]) -> None:
        """Run ``sql`` (``?`` placeholders) and fetch every row."""
        ...

    async def insert(self, rows: Sequence[Row]) -> None:
        """Insert ``rows`` into the API-call table in one transaction."""
        ...

    async def settings(self) -> str:
        """The server's version and the settings that decide what a commit costs."""
        ...

    async def close(self) -> None:
        """Let go of the connection."""
        ...


class _RawSqlite:
    """sqlite3 on the store's file, with the store's settings (WAL, synchronous=FULL)."""

    name = "raw sqlite3"
    insert_name = "executemany"
    day = "substr(create_time, 1, 10)"

    def __init__(self, path: Path, layout: Layout) -> None:
        self._conn = raw_sqlite.connect(path)
        self._layout = layout
        self._insert = insert_sql(layout.table, layout.columns)

    def param(self, column: str, value: Any) -> Any:
        return self._layout.param(column, value)

    async def aggregate(self, where: str, params: Sequence[Any]) -> Sequence[Any]:
        return raw_sqlite.aggregate(self._conn, where, tuple(params))

    async def fetch(self, sql: str, params: Sequence[Any]) -> None:
        self._conn.execute(sql, tuple(params)).fetchall()

    async def insert(self, rows: Sequence[Row]) -> None:
        encoded = [self._layout.encode(row) for row in rows]
        self._conn.execute("BEGIN")
        self._conn.executemany(self._insert, encoded)
        self._conn.execute("COMMIT")

    async def settings(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    async def close(self) -> None:
        self._conn.close()


class _RawServer:
    """asyncpg or asyncmy (one connection) on the scratch database's tables."""

    def __init__(self, raw: RawPostgres | RawMySql, method: str, day: str) -> None:
        self._raw = raw
        self._method = method
        self.name = raw.name
        self.insert_name = method
        self.day = day

    def param(self, column: str, value: Any) -> Any:
        return self._raw.param(_CALLS, column, value)

    async def aggregate(self, where: str, params: Sequence[Any]) -> Sequence[Any]:
        return await self._raw.aggregate(where, params)

    async def fetch(self, sql: str, params: Sequence[Any]) -> None:
        await self._raw.replay([(placeholders(sql, self._raw.paramstyle), params)])

    async def insert(self, rows: Sequence[Row]) -> None:
        # save_batches leaves its first batch untimed: the one batch given, its transaction
        await self._raw.save_batches(_CALLS, [rows], self._method, touch_session=False)

    async def settings(self) -> str:
        return await self._raw.settings()

    async def close(self) -> None:
        await self._raw.close()


# --- reads -----------------------------------------------------------------------------------


async def _timed(
    call: Callable[[], Awaitable[object]], warmup: int, most: int, least: int, budget_s: float
) -> Latency:
    """``warmup`` untimed calls, then up to ``most`` timed (``least`` even past the budget)."""
    for _ in range(warmup):
        await call()
    samples: list[float] = []
    deadline = perf_counter() + budget_s
    while len(samples) < most and (len(samples) < least or perf_counter() < deadline):
        start = perf_counter()
        await call()
        samples.append((perf_counter() - start) * 1000.0)
    return Latency.of(samples)


@dataclass(frozen=True, slots=True)
class _Read:
    """One statistic a dashboard asks for, the store's way and the raw driver's."""

    label: str
    query: QueryFilter
    breakdown: bool  # by model and day, else get_statistics
    raw_where: str | None  # the raw aggregate's WHERE (None: not timed, as the row above)
    raw_params: tuple[Any, ...]
    target: str  # the target's goal

    def raw_sql(self, day: str) -> str:
        """The raw driver's statement: the plain aggregate, grouped by model and ``day``."""
        assert self.raw_where is not None
        if not self.breakdown:
            return AGGREGATE + self.raw_where
        columns = f"SELECT model_name, {day}, "
        return AGGREGATE.replace("SELECT ", columns, 1) + self.raw_where + " GROUP BY 1, 2"


def _bounds(now: datetime, days: int, midnight: bool) -> tuple[datetime, datetime]:
    """A dashboard's range of ``days`` days: to the end of this hour, from a midnight or not."""
    end = now.replace(minute=0, second=0, microsecond=0)
    if end < now:
        end += timedelta(hours=1)
    start = end - timedelta(days=days)
    return (start.replace(hour=0) if midnight else start), end


def _reads(ledger: Ledger, raw: _Raw) -> list[_Read]:
    now = datetime.now(UTC)
    tenant = ledger.largest_tenant
    month_start, end = _bounds(now, 30, midnight=True)
    hour_start, _ = _bounds(now, 30, midnight=False)
    all_start, _ = _bounds(now, 90, midnight=True)
    in_range = " WHERE create_time >= ? AND create_time < ?"
    by_tenant = " WHERE tenant_id = ? AND create_time >= ? AND create_time < ?"
    share = f"{ledger.largest_share:.0%} of calls"

    def when(*moments: datetime) -> tuple[Any, ...]:
        return tuple(raw.param("create_time", moment) for moment in moments)

    return [
        _Read(
            f"get_statistics, the largest tenant ({share}), last 30 days",
            QueryFilter(tenant_id=tenant, start_time=month_start, end_time=end),
            False,
            by_tenant,
            (raw.param("tenant_id", tenant), *when(month_start, end)),
            "get_statistics, a tenant, 30 days",
        ),
        _Read(
            "  same, from an hour 30 days ago (not midnight) [h]",
            QueryFilter(tenant_id=tenant, start_time=hour_start, end_time=end),
            False,
            None,
            (),
            "get_statistics, a tenant, 30 days from an hour",
        ),
        _Read(
            "get_statistics, everything, last 90 days",
            QueryFilter(start_time=all_start, end_time=end),
            False,
            in_range,
            when(all_start, end),
            "get_statistics, everything, 90 days",
        ),
        _Read(
            "get_usage_breakdown by model by day, last 30 days [g]",
            QueryFilter(start_time=month_start, end_time=end),
            True,
            in_range,
            when(month_start, end),
            "get_usage_breakdown, model x day, 30 days",
        ),
    ]


def _figures(stats: UsageStatistics) -> tuple[int, int, int, int]:
    return (stats.total_calls, stats.success_count, stats.total_tokens, stats.total_prompt_tokens)


async def _answer(store: Any, read: _Read) -> list[tuple[Any, ...]]:
    """What the store answers to ``read``, reduced to exact figures to compare."""
    if read.breakdown:
        found = await store.get_usage_breakdown(read.query, ["model"], "day")
        return sorted(
            (tuple(row.keys.items()), row.bucket_start, *_figures(row.stats)) for row in found
        )
    return [_figures(await store.get_statistics(read.query))]


async def _measure_reads(
    title: str, store: Any, raw: _Raw, ledger: Ledger, sizes: AnalyticsSizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    from chatledger.stores.rollups import scan_only

    results: list[Result] = []
    targets: list[Target] = []
    scanned: Latency | None = None
    plain: Latency | None = None
    for read in _reads(ledger, raw):
        rolled = await _answer(store, read)
        with scan_only():
            answer = await _answer(store, read)
        if rolled != answer:
            raise AssertionError(
                f"{title}: {read.label.strip()}: the rollups answered {rolled[:3]}..., "
                f"a scan of the calls {answer[:3]}..."
            )
        calls = sum(row[-4] for row in answer)
        if read.raw_where is not None:
            counted = (await raw.aggregate(read.raw_where, read.raw_params))[0]
            if counted != calls:
                raise AssertionError(
                    f"{title}: {read.label}: the store counted {calls}, SQL {counted}"
                )

        async def from_rollups(read: _Read = read) -> None:
            await _answer(store, read)

        async def from_calls(read: _Read = read) -> None:
            with scan_only():
                await _answer(store, read)

        async def raw_read(read: _Read = read) -> None:
            await raw.fetch(read.raw_sql(raw.day), read.raw_params)

        ours = await _timed(
            from_rollups, sizes.warmup, sizes.repeats, sizes.min_repeats, sizes.budget_s
        )
        measured = read.raw_where is not None
        if measured:
            scanned = await _timed(
                from_calls, 1, sizes.scan_repeats, sizes.min_scan_repeats, sizes.budget_s
            )
            plain = await _timed(
                raw_read, 1, sizes.scan_repeats, sizes.min_scan_repeats, sizes.budget_s
            )
        progress(
            f"{title}: {read.label.strip()} ({calls:,} calls): rollups p50 {ours.p50:.2f} ms, "
            f"p95 {ours.p95:.2f} ms"
            + (
                f"; scan p95 {scanned.p95:.0f} ms; {raw.name} p95 {plain.p95:.0f} ms"
                if measured and scanned is not None and plain is not None
                else " (scan and raw: as the row above)"
            )
        )
        label = read.label if read.label.startswith("  ") else f"{title}: {read.label}"
        results.append(
            Result(
                f"{label} ({calls:,} calls)",
                "p95 ms",
                Cell(ours.p95),
                Cell(plain.p95) if measured and plain else Cell(None, "as above"),
                Cell(scanned.p95) if measured and scanned else Cell(None, "as above"),
                Cell(ours.p50),
            )
        )
        targets.append(
            Target(f"{title}: {read.target}, p95", ours.p95, READ_TARGET_MS, False, "ms")
        )
    return results, targets


# --- writes ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _rollup_writes_off(store: Any) -> Iterator[None]:
    """The store's rollup writes switched off, on this instance only, for the block.

    src/ has no switch for it: the store's private ``_rollup_writes`` (what a
    batch adds to the rollups, in its transaction) is replaced by one that
    adds nothing. Everything else a save does is left as it is.
    """
    store._rollup_writes = lambda calls, *, joinable=False: []
    try:
        yield
    finally:
        del store._rollup_writes


async def _measure_writes(
    title: str, store: Any, raw: _Raw, ledger: Ledger, sizes: AnalyticsSizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    sides = ("with rollups", "rollups off", raw.name)
    per_round = sizes.batches + 1  # the first of each turn untimed
    total = len(sides) * sizes.rounds * per_round * sizes.batch_size
    live = ledger.live(total, seed=len(title))
    # Batch i goes to side i % 3: each side's batches hold calls of the same minutes.
    work: list[list[list[Row]]] = [[] for _ in sides]
    for index in range(len(sides) * sizes.rounds * per_round):
        work[index % len(sides)].append([next(live) for _ in range(sizes.batch_size)])
    entities: list[list[list[LLMApiCall]]] = [
        [[workload.to_api_call(row) for row in batch] for batch in batches] for batches in work[:2]
    ]
    switchable = hasattr(type(store), "_rollup_writes")

    async def save(side: int, batch: int) -> None:
        if side == 0:
            await store.save_api_calls(entities[0][batch])
        elif side == 1:
            with _rollup_writes_off(store):
                await store.save_api_calls(entities[1][batch])
        else:
            await raw.insert(work[2][batch])

    seconds = [0.0] * len(sides)
    rows = [0] * len(sides)
    for turn in range(sizes.rounds):
        order = [(turn + shift) % len(sides) for shift in range(len(sides))]
        for side in order:
            if side == 1 and not switchable:
                continue
            first = turn * per_round
            await save(side, first)  # untimed
            start = perf_counter()
            for batch in range(first + 1, first + per_round):
                await save(side, batch)
            seconds[side] += perf_counter() - start
            rows[side] += sizes.batches * sizes.batch_size
    # The rollups counted the first side's calls and no other's; the table holds them all.
    side_calls = sizes.rounds * per_round * sizes.batch_size
    rolled = (await store.get_statistics(QueryFilter())).total_calls
    stored = (await raw.aggregate("", ()))[0]
    if rolled != ledger.count + side_calls or stored != ledger.count + side_calls * (
        2 + switchable
    ):
        raise AssertionError(
            f"{title}: after the batches the rollups count {rolled:,} calls and the table "
            f"holds {stored:,}: expected {ledger.count + side_calls:,} and "
            f"{ledger.count + side_calls * (2 + switchable):,}"
        )
    rates = [count / spent if spent else None for count, spent in zip(rows, seconds, strict=True)]
    with_rollups, without, plain = rates
    progress(
        f"{title}: save_api_calls with rollups {with_rollups or 0:,.0f} rows/s, rollup writes "
        f"off {without or 0:,.0f} rows/s, {raw.name} {raw.insert_name} {plain or 0:,.0f} rows/s"
    )
    result = Result(
        f"{title}: save_api_calls, {sizes.batch_size}/batch, into {ledger.count:,} calls [w]",
        "rows/s",
        Cell(with_rollups),
        Cell(plain),
        Cell(without) if without is not None else Cell(None, "no hook"),
        Cell(None, "n/a"),
    )
    targets = [
        Target(
            f"{title}: inserts with rollups vs the store with its rollup writes off",
            None if not (with_rollups and without) else with_rollups / without,
            WRITE_TARGET,
            True,
        ),
        Target(
            f"{title}: inserts with rollups vs {raw.name} {raw.insert_name}, same tables",
            result.ratio,
            WRITE_TARGET,
            True,
        ),
    ]
    return [result], targets


# --- one backend, and all of them ------------------------------------------------------------


async def _measure(
    title: str, url: str, raw: _Raw, ledger: Ledger, sizes: AnalyticsSizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    import chatledger

    store: Any = await chatledger.connect(url)
    try:
        results, targets = await _measure_reads(title, store, raw, ledger, sizes, progress)
        more = await _measure_writes(title, store, raw, ledger, sizes, progress)
    finally:
        await store.close()
        await raw.close()
    return results + more[0], targets + more[1]


def _backends() -> tuple[str, ...]:
    chosen = os.environ.get("CHATLEDGER_BENCH_ANALYTICS_BACKENDS", "sqlite,postgres,mysql")
    names = tuple(name.strip() for name in chosen.split(",") if name.strip())
    unknown = set(names) - {"sqlite", "postgres", "mysql"}
    if unknown:
        raise ValueError(f"CHATLEDGER_BENCH_ANALYTICS_BACKENDS: unknown {', '.join(unknown)}")
    return names


def sizes_from_env(sizes: AnalyticsSizes) -> AnalyticsSizes:
    """``sizes`` with CHATLEDGER_BENCH_ANALYTICS_CALLS (every backend's calls) and _DAYS, if set.

    With fewer days at the same calls a day (say 555,555 calls over 5 days,
    10 million over 90 days' daily volume), a run shows what the reads that
    depend on a day's calls (today's hours, a partial first day) cost at
    that volume, without loading the whole of it.
    """
    changes: dict[str, Any] = {}
    calls = os.environ.get("CHATLEDGER_BENCH_ANALYTICS_CALLS")
    if calls:
        count = int(calls.replace("_", ""))
        changes.update(calls=count, mysql_calls=count)
    days = os.environ.get("CHATLEDGER_BENCH_ANALYTICS_DAYS")
    if days:
        changes["days"] = int(days)
    if not changes:
        return sizes
    names = " and ".join(f"CHATLEDGER_BENCH_ANALYTICS_{key.upper()}" for key in changes
                         if key != "mysql_calls")  # fmt: skip
    return replace(sizes, name=f"{sizes.name} ({names} set)", **changes)


async def run_analytics(tmp: Path, sizes: AnalyticsSizes, progress: Progress) -> Section:
    """Rollup reads and writes on SQLite, PostgreSQL and MariaDB (those that answer)."""
    results: list[Result] = []
    targets: list[Target] = []
    notes: list[str] = []
    loads: list[str] = []
    backends = _backends()

    if "sqlite" in backends:
        ledger = Ledger(sizes, sizes.calls, days=sizes.days)
        path = tmp / "analytics.db"
        progress(f"SQLite: {ledger.count:,} calls to load into {path}")
        layout, loaded = await load_sqlite(ledger, path, progress)
        loads.append(loaded.text("SQLite"))
        found = await _measure(
            "SQLite", f"sqlite:///{path}", _RawSqlite(path, layout), ledger, sizes, progress
        )
        results += found[0]
        targets += found[1]
        for suffix in ("", "-wal", "-shm"):  # 10M calls are gigabytes: not kept to the end
            with contextlib.suppress(OSError):
                os.unlink(f"{path}{suffix}")

    servers: list[tuple[str, Server, int]] = [
        ("postgres", _PG_SCRATCH, sizes.calls),
        ("mysql", _MY_SCRATCH, sizes.mysql_calls),
    ]
    for key, server, count in servers:
        if key not in backends:
            continue
        title = server.title
        try:
            await server.probe()
        except ServerUnavailableError as exc:
            progress(f"skipping {title}: {exc}")
            notes.append(f"{title} skipped: {exc}")
            continue
        ledger = Ledger(sizes, count, days=sizes.days)
        async with server.scratch_database() as url:
            progress(f"{title}: {ledger.count:,} calls to load into {server.scratch}")
            if key == "postgres":
                loaded = await load_postgres(ledger, url, progress)
                raw: _Raw = _RawServer(
                    await RawPostgres.open(url, 1), COPY, "(create_time AT TIME ZONE 'UTC')::date"
                )
            else:
                loaded = await load_mysql(ledger, url, progress)
                raw = _RawServer(await RawMySql.open(url, 1), "executemany", "DATE(create_time)")
            loads.append(loaded.text(title) + f"; {await raw.settings()}")
            found = await _measure(title, url, raw, ledger, sizes, progress)
            results += found[0]
            targets += found[1]

    skipped = [name for name in ("sqlite", "postgres", "mysql") if name not in backends]
    notes[:0] = [
        "data (benchmarks/analytics.py, Ledger): API calls evenly spread over the "
        f"{sizes.days} days "
        f"before the run, in time order; {sizes.tenants} tenants weighted 1/rank^0.8 (the "
        f"largest has about {Ledger(sizes, 1).largest_share:.0%} of the calls), "
        f"{sizes.users:,} users, {sizes.tenants * sizes.agents_per_tenant} agents each on one of "
        f"11 models plus a guard model (30% of its calls; {len(MODELS)} models in all); 5% of "
        "calls fail (rate limits, 5xx, timeouts, cancels); no messages or sessions",
        "loading: the raw bulk loaders of the other parts (SQLite: executemany in 50,000-row "
        "transactions with the secondary indexes dropped and rebuilt; PostgreSQL: COPY, the same, "
        "then ANALYZE; MariaDB: multi-row INSERTs in primary-key order, checks off, indexes "
        "dropped and rebuilt); then the store's own rebuild_rollups (a week a transaction), "
        "then planner statistics (SQLite: the store's ANALYZE on open; PostgreSQL: VACUUM "
        "(ANALYZE); MariaDB: ANALYZE TABLE of the rollups)",
        *loads,
        "reads: bounds as the dashboard sets them (ui/params.py): the end at the next whole "
        "hour, a range of days from UTC midnight; chatledger is the store (chatledger.connect "
        "with its defaults) answering from its rollups, p95 of up to "
        f"{sizes.repeats} timed calls after {sizes.warmup} untimed ({sizes.min_repeats} at least, "
        f"{sizes.budget_s:.0f} s budget); 'without rollups' is the same call inside "
        "chatledger.stores.rollups.scan_only() (the store's statistics from the calls: totals "
        "and exact percentiles), and the raw column the driver's plain aggregate "
        "(raw_sql.AGGREGATE: COUNT, SUM(success), SUM(tokens x3), SUM(total_price), "
        "AVG(latency_ms), AVG(tokens_per_second), no percentiles) over the same calls, "
        f"each {sizes.scan_repeats} timed runs after one untimed ({sizes.min_scan_repeats} at "
        "least); the last column is the rollups' p50. Before timing, the rollups' answer is "
        "checked against the scan's (calls, successes, tokens: equal) and the raw count",
        "[h] a range from the same hour 30 days ago: the hours before the first midnight come "
        "from the hourly rollup, and their percentiles from their calls",
        "[g] one row per model and day (30-31 days x 12 models); raw: the same aggregate "
        "GROUP BY model_name and the UTC day",
        "[w] each side in turn, "
        f"{sizes.rounds} rounds of one untimed and {sizes.batches} timed batches of "
        f"{sizes.batch_size} new calls (dated after the loaded ones, 100 a second), each batch "
        "one transaction, into the loaded table with all its indexes: chatledger is "
        "save_api_calls (the calls and their rollup rows in one transaction); 'without "
        "rollups' the same store with its rollup writes switched off by the benchmark "
        "(src/ has no switch: the store's private _rollup_writes is replaced on that instance "
        "for those batches, so the calls are written exactly as before and nothing is added "
        "to the rollups); raw: the driver's insert of the same kind of rows into the same "
        "table (sqlite3 and asyncmy executemany, asyncpg COPY, which is what the store uses "
        "for batches there), encoding included",
        f"targets: the issue's, p95 <= {READ_TARGET_MS:.0f} ms for the statistics (applied "
        f"to the [h] and [g] rows too) and inserts with rollups >= {WRITE_TARGET:.0%} of "
        "without (against the store with rollup writes off, and against the raw insert)",
        f"machine: {Environment().machine}, shared with other jobs; p95s carry their noise",
    ]
    if skipped:
        notes.append(
            "not run here (CHATLEDGER_BENCH_ANALYTICS_BACKENDS): "
            + ", ".join(_TITLES[name] for name in skipped)
        )
    return Section(results, targets, notes)
