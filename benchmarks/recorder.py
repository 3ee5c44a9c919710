"""The recorder part: what durable recording costs a chat turn, and how fast records get stored.

Three measures, in one run:

1. **Time added per turn.** The same ``LLMAgent`` (``ScriptedProvider`` at
   0 ms and at 50 ms) with and without ``PersistencePlugin``, with 1 and 100
   concurrent chats, on SQLite and PostgreSQL: the plugin on its default
   durable path (``spool="auto"``: each hook returns once its records are in
   the local spool) and, for comparison, with direct writes (``spool=None``:
   each hook waits for the store).
2. **Durable records per second.** 100 chats record through one
   :class:`~chatledger.recording.Recorder` (one plugin per chat, all sharing
   it) until ``flush()`` says every record is in the database, against the
   raw driver's group commit of the very same rows (see
   :mod:`benchmarks.raw_group_commit`).
3. **Shipping.** The store is switched off while 100 chats fill the spool;
   then it comes back and the time to ship everything into PostgreSQL is
   measured, against asyncpg inserting the same rows in batches of the same
   size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks import raw_group_commit
from benchmarks.measure import Latency, Rate
from benchmarks.raw_group_commit import COPY, EXECUTEMANY, TABLES, Rows
from benchmarks.report import Cell, Result, Section, Target
from chatledger.agent import LLMAgent, LLMAgentBuilder, ScriptedProvider, ScriptedReply
from chatledger.errors import StoreConnectionError
from chatledger.ids import uuid7
from chatledger.plugin import PersistencePlugin
from chatledger.plugin.events import LLMResponseMetadata
from chatledger.recording import Recorder
from chatledger.recording.shipper import _PARSED_KEPT, BATCH_SIZE
from chatledger.stores.base import PersistenceStore

__all__ = ["FULL", "QUICK", "Database", "RecorderSizes", "run_recorder", "spool_root"]

Progress = Callable[[str], None]

CHATS = 100  # the concurrent chats of the targets
DELAYS = (0.0, 0.05)  # the scripted model's delay before it answers, in seconds
_MODEL = "gpt-4o-mini"
_TEXT = "Sure, here is the answer."
_WINDOW = 4  # rounds of history the agent sends: a turn's own cost stays flat as history grows
_POOL = 10  # PostgreSQL connections of each store


@dataclass(frozen=True, slots=True)
class RecorderSizes:
    """How much work each measure of the recorder part does."""

    name: str
    turns: int  # timed turns per side at 0 ms, and with 100 chats at 50 ms
    slow_turns: int  # timed turns per side of one chat at 50 ms (each takes the delay)
    throughput_turns: int  # timed turns per chat of the durable-records measure
    ship_turns: int  # turns per chat spooled while the store is off

    def describe(self) -> str:
        """The sizes as the report's ``sizes`` line says them."""
        return (
            f"turns={self.turns:,} per side at 0 ms and with {CHATS} chats at 50 ms, "
            f"{self.slow_turns:,} with 1 chat at 50 ms; durable records: {CHATS} chats x "
            f"{self.throughput_turns:,} turns; shipping: {CHATS} chats x {self.ship_turns:,} "
            f"turns ({CHATS * self.ship_turns * 3 + CHATS:,} records), batches of {BATCH_SIZE}"
        )


FULL = RecorderSizes("full", turns=2_000, slow_turns=100, throughput_turns=100, ship_turns=1_000)
QUICK = RecorderSizes("quick", turns=200, slow_turns=10, throughput_turns=5, ship_turns=20)


# --- the databases ---------------------------------------------------------------------------


class Database:
    """A backend as this part uses it: fresh stores, row counts, the rows, the raw baseline."""

    name: str  # "SQLite" or "PostgreSQL"
    raw_name: str  # the raw baseline's name in the notes

    async def open_store(self) -> PersistenceStore:
        """A chatledger store on this database (on SQLite, a new file each time)."""
        raise NotImplementedError

    async def reset(self) -> None:
        """Empty the tables the next measure writes into."""

    async def count(self) -> int:
        """Sessions, messages and API calls in the database the last store was opened on."""
        raise NotImplementedError

    async def rows(self) -> Rows:
        """Every row of the last store's database, as the raw driver reads it."""
        raise NotImplementedError

    async def raw_writers(self, rows: Rows, warm: int) -> Rate:
        """The raw group commit of ``rows``: one writer per chat (see raw_group_commit)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the database holds."""


class SqliteDatabase(Database):
    """A new SQLite file per store, in ``folder``."""

    name = "SQLite"
    raw_name = "raw sqlite3"

    def __init__(self, folder: Path) -> None:
        """Files go in ``folder``."""
        self._folder = folder
        self._files = 0
        self.path = folder / "none.db"

    def _new_path(self) -> Path:
        self._files += 1
        return self._folder / f"recorder-{self._files}.db"

    async def open_store(self) -> PersistenceStore:
        """chatledger's SqliteStore on a new file."""
        from chatledger.stores.sqlite import SqliteStore

        self.path = self._new_path()
        return await SqliteStore.connect(self.path)

    async def count(self) -> int:
        """Rows in the last file's three tables."""
        return _sqlite_count(self.path)

    async def rows(self) -> Rows:
        """The last file's rows."""
        return raw_group_commit.sqlite_rows(self.path)

    async def raw_writers(self, rows: Rows, warm: int) -> Rate:
        """sqlite3 group commit into a new file whose schema chatledger created."""
        from chatledger.stores.sqlite import SqliteStore

        path = self._new_path()
        await (await SqliteStore.connect(path)).close()
        committer = raw_group_commit.SqliteGroupCommit(path, rows.columns)
        try:
            rate = await raw_group_commit.writers_rate(rows, committer.submit, warm)
        finally:
            committer.close()
        _check(_sqlite_count(path), rows.count, "raw sqlite3")
        return rate


def _sqlite_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES)
    finally:
        conn.close()


def _check(found: int, expected: int, who: str) -> None:
    if found != expected:
        raise AssertionError(f"{who} stored {found} rows, expected {expected}")


class PostgresDatabase(Database):
    """The scratch database; its tables are emptied before each measure that counts rows."""

    name = "PostgreSQL"
    raw_name = "raw asyncpg"

    def __init__(self, url: str, conn: Any) -> None:
        """Stores on ``url``; ``conn`` (asyncpg) counts, reads and writes raw."""
        self.url = url
        self.conn = conn

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:
        """The database at ``url``, its schema created by chatledger."""
        import asyncpg

        self = cls(url, None)
        await (await self.open_store()).close()
        self.conn = await asyncpg.connect(url)
        return self

    async def open_store(self) -> PersistenceStore:
        """chatledger's PostgresStore with a pool of ``_POOL`` connections."""
        from chatledger.stores.postgres import PostgresStore

        return await PostgresStore.connect(self.url, min_size=_POOL, max_size=_POOL)

    async def reset(self) -> None:
        """TRUNCATE the three tables."""
        await self.conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")

    async def count(self) -> int:
        """Rows in the three tables."""
        total = 0
        for table in TABLES:
            total += await self.conn.fetchval(f"SELECT count(*) FROM {table}")
        return int(total)

    async def rows(self) -> Rows:
        """The three tables' rows."""
        return await raw_group_commit.postgres_rows(self.conn)

    async def raw_writers(self, rows: Rows, warm: int) -> Rate:
        """asyncpg group commit into the emptied tables."""
        await self.reset()
        committer = raw_group_commit.PostgresGroupCommit(self.conn, rows.columns)
        try:
            rate = await raw_group_commit.writers_rate(rows, committer.submit, warm)
        finally:
            await committer.close()
        _check(await self.count(), rows.count, "raw asyncpg")
        return rate

    async def settings(self) -> str:
        """The server's version and what decides what a commit costs."""
        from benchmarks.raw_postgres import server_settings

        return await server_settings(self.conn)

    async def close(self) -> None:
        """Close the raw connection."""
        await self.conn.close()


@contextlib.contextmanager
def spool_root(folder: Path) -> Iterator[Path]:
    """``spool="auto"`` puts its spools in ``folder`` for the block (CHATLEDGER_SPOOL_DIR)."""
    old = os.environ.get("CHATLEDGER_SPOOL_DIR")
    os.environ["CHATLEDGER_SPOOL_DIR"] = str(folder)
    try:
        yield folder
    finally:
        if old is None:
            os.environ.pop("CHATLEDGER_SPOOL_DIR", None)
        else:
            os.environ["CHATLEDGER_SPOOL_DIR"] = old


# --- 1. time added per turn -------------------------------------------------------------------

_BARE = "without plugin"
_DURABLE = "auto"
Mode = str | None  # _BARE, _DURABLE ("auto") or None (direct writes)


@dataclass(frozen=True, slots=True)
class Turns:
    """Turns per second (the clock stops once every record is stored) and each turn's time."""

    rate: float
    latency: Latency


async def _agent(
    store: PersistenceStore | None, spool: Mode, delay: float
) -> tuple[LLMAgent, PersistencePlugin | None]:
    reply = ScriptedReply(_TEXT, prompt_tokens=40, completion_tokens=8, delay=delay)
    builder = (
        LLMAgentBuilder()
        .with_provider(ScriptedProvider([reply]))
        .with_model(_MODEL)
        .with_sliding_window(_WINDOW)
    )
    plugin = None
    if store is not None:
        plugin = PersistencePlugin.from_store(
            "bench", store, uuid7(), uuid7(), uuid7(), uuid7(), spool=spool
        )
        builder = builder.with_persistence_plugin(plugin)
    return await builder.build_async(), plugin


async def _chat_turns(
    agent: LLMAgent,
    plugin: PersistencePlugin | None,
    turns: int,
    concurrency: int,
    stagger: float = 0.0,
) -> Turns:
    """``turns`` turns over ``concurrency`` chats at once; the clock stops once all is stored.

    With ``stagger``, chat ``i`` starts ``i / concurrency * stagger`` seconds late, so
    the chats' replies do not all arrive in the same instant.
    """
    durations: list[float] = []

    async def chat(count: int, late: float) -> None:
        if late:
            await asyncio.sleep(late)
        for number in range(count):
            start = perf_counter()
            await agent.chat(f"question {number}")
            durations.append((perf_counter() - start) * 1000)

    per_chat = max(1, turns // concurrency)
    start = perf_counter()
    await asyncio.gather(*(chat(per_chat, i / concurrency * stagger) for i in range(concurrency)))
    if plugin is not None and await plugin.flush():
        raise AssertionError("the plugin could not store every record")
    elapsed = perf_counter() - start
    return Turns(per_chat * concurrency / elapsed, Latency.of(durations))


async def _turn_side(
    db: Database, mode: Mode, delay: float, turns: int, concurrency: int, stagger: float
) -> Turns:
    store = None if mode == _BARE else await db.open_store()
    agent, plugin = await _agent(store, mode, delay)
    try:
        warm = max(2 * concurrency, turns // 10)
        await _chat_turns(agent, plugin, warm, concurrency, stagger)
        return await _chat_turns(agent, plugin, turns, concurrency, stagger)
    finally:
        await agent.close()
        if store is not None:
            await store.close()


def _chats(count: int) -> str:
    return f"{count} chat{'s' if count > 1 else ''}"


async def _added_per_turn(
    db: Database, sizes: RecorderSizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    results: list[Result] = []
    targets: list[Target] = []
    for concurrency in (1, CHATS):
        for delay in DELAYS:
            turns = sizes.slow_turns if delay and concurrency == 1 else sizes.turns
            sides = [await _turn_side(db, mode, delay, turns, concurrency, stagger=delay)
                     for mode in (_BARE, _DURABLE, None)]  # fmt: skip
            bare, durable, direct = sides
            label = f"{db.name}, {_chats(concurrency)}, {delay * 1000:.0f} ms"
            p50 = durable.latency.p50 - bare.latency.p50
            p99 = durable.latency.p99 - bare.latency.p99
            progress(
                f"{label}: spool +{p50:.3f} ms p50, +{p99:.3f} ms p99, {durable.rate:,.0f} "
                f"turns/s; direct +{direct.latency.p50 - bare.latency.p50:.3f} ms p50, "
                f"{direct.rate:,.0f} turns/s; without plugin {bare.latency.p50:.3f} ms p50, "
                f"{bare.rate:,.0f} turns/s"
            )
            results += [
                Result(f"turns/s, {label}", "turns/s", Cell(durable.rate), Cell(direct.rate),
                       agents=Cell(bare.rate)),
                Result("  time added per turn, p50", "ms", Cell(p50),
                       Cell(direct.latency.p50 - bare.latency.p50), agents=Cell(bare.latency.p50)),
                Result("  time added per turn, p99", "ms", Cell(p99),
                       Cell(direct.latency.p99 - bare.latency.p99), agents=Cell(bare.latency.p99)),
            ]  # fmt: skip
            if concurrency == CHATS:
                targets += [
                    Target(f"p50 time added per turn, {label}", p50, 1.0, False, "ms"),
                    Target(f"p99 time added per turn, {label}", p99, 5.0, False, "ms"),
                ]
    return results, targets


# --- 2. durable records per second ------------------------------------------------------------

_META = LLMResponseMetadata(
    id="scripted", model=_MODEL, prompt_tokens=40, completion_tokens=8, finish_reason="stop"
)


def _plugins(store: Any, recorder: Recorder, count: int) -> list[PersistencePlugin]:
    """One plugin per chat (its own user, agent and session), all recording through ``recorder``."""
    return [
        PersistencePlugin.from_store(
            f"bench-{i}", store, uuid7(), uuid7(), uuid7(), uuid7(), recorder=recorder
        )
        for i in range(count)
    ]


async def _hook_turns(plugin: PersistencePlugin, count: int) -> None:
    """``count`` turns of the plugin's hooks, as the agent calls them around a model call."""
    for number in range(count):
        await plugin.before_chat_with_model(f"question {number}", _MODEL)
        await plugin.after_chat_with_metadata(_TEXT, _META)


async def _recorded(db: Database, turns: int) -> tuple[Rate, Rows]:
    """Records stored per second by 100 chats through one recorder, ``flush()`` included."""
    await db.reset()
    store = await db.open_store()
    recorder = Recorder(store, spool="auto")
    try:
        plugins = _plugins(store, recorder, CHATS)
        await asyncio.gather(*(_hook_turns(p, 1) for p in plugins))  # warm-up: one turn each
        if await recorder.flush():
            raise AssertionError("the recorder could not store the warm-up")
        before = await db.count()
        start = perf_counter()
        await asyncio.gather(*(_hook_turns(p, turns) for p in plugins))
        left = await plugins[0].flush()
        elapsed = perf_counter() - start
        if left:
            raise AssertionError(f"{left} records still wait after flush()")
        stored = await db.count() - before
        _check(stored, 3 * CHATS * turns, "the recorder")
    finally:
        await recorder.close()
        await store.close()
    return Rate(stored, elapsed), await db.rows()


async def _durable_records(
    db: Database, sizes: RecorderSizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    recorded, rows = await _recorded(db, sizes.throughput_turns)
    raw = await db.raw_writers(rows, warm=2)  # the warm-up turn: [session, user], [reply, call]
    _check(raw.rows, recorded.rows, "the raw baseline's timed part")
    label = f"durable records/s, {db.name}, {CHATS} chats (raw: {db.raw_name} group commit)"
    progress(f"{label}: recorder {recorded.per_second:,.0f}, raw {raw.per_second:,.0f}")
    result = Result(label, "records/s", Cell(recorded.per_second), Cell(raw.per_second))
    target = Target(f"durable records/s on {db.name}: vs raw group commit", result.ratio, 0.5, True)
    return [result], [target]


# --- 3. shipping -------------------------------------------------------------------------------


class _Switch:
    """A store behind a switch: while ``down``, every ingest fails as a lost connection does."""

    def __init__(self, store: PersistenceStore) -> None:
        self._store = store
        self.down = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def ingest_records(self, *args: Any, **kwargs: Any) -> None:
        if self.down:
            raise StoreConnectionError("the benchmark switched the store off")
        await self._store.ingest_records(*args, **kwargs)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The shipper's retry warnings, expected while the store is off, are not printed."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _shipping(
    db: PostgresDatabase, sizes: RecorderSizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    await db.reset()
    store = await db.open_store()
    switch = _Switch(store)
    recorder = Recorder(switch, spool="auto")  # type: ignore[arg-type]  # a store, switched
    try:
        with _quiet("chatledger.recording.shipper"):
            start = perf_counter()
            await asyncio.gather(
                *(_hook_turns(p, sizes.ship_turns) for p in _plugins(switch, recorder, CHATS))
            )
            filled = perf_counter() - start
        waiting = len(recorder.spool)
        _check(waiting, CHATS * (1 + 3 * sizes.ship_turns), "the spool")
        failures = recorder.stats()["store_failures"]
        progress(f"spooled {waiting:,} records with the store off in {filled:.1f} s "
                 f"({waiting / filled:,.0f}/s; {failures:,} failed shipping attempts)")  # fmt: skip
        switch.down = False
        start = perf_counter()
        left = await recorder.flush()
        shipped = Rate(waiting, perf_counter() - start)
        if left:
            raise AssertionError(f"{left} records still wait after flush()")
    finally:
        await recorder.close()
        await store.close()
    _check(await db.count(), waiting, "the shipper")
    rows = await db.rows()
    order = raw_group_commit.interleaved(rows)
    raw: dict[str, Rate] = {}
    for method in (COPY, EXECUTEMANY):
        await db.reset()
        raw[method] = await raw_group_commit.postgres_batches(
            db.conn, rows, order, BATCH_SIZE, method
        )
        _check(await db.count(), waiting, f"raw {method}")
    best = max(raw, key=lambda m: raw[m].per_second)
    progress(
        f"shipped {shipped.per_second:,.0f} records/s; raw COPY {raw[COPY].per_second:,.0f}, "
        f"executemany {raw[EXECUTEMANY].per_second:,.0f}"
    )
    label = f"shipping a spool of {waiting:,} records into PostgreSQL"
    results = [
        Result(f"{label} (raw: asyncpg {best}, {BATCH_SIZE}/batch)", "records/s",
               Cell(shipped.per_second), Cell(raw[best].per_second)),
        *(Result(f"  same, raw asyncpg {method}", "records/s", Cell(shipped.per_second),
                 Cell(raw[method].per_second)) for method in raw if method != best),
        Result(f"filling the spool, store off, {CHATS} chats (no baseline)", "records/s",
               Cell(waiting / filled), Cell(None)),
    ]  # fmt: skip
    target = Target(f"shipping into PostgreSQL: vs raw asyncpg {best} in batches of {BATCH_SIZE}",
                    results[0].ratio, 0.6, True)  # fmt: skip
    return results, [target]


# --- the part ----------------------------------------------------------------------------------


async def run_recorder(
    databases: list[Database], sizes: RecorderSizes, progress: Progress
) -> Section:
    """The three measures on each database (shipping on PostgreSQL only)."""
    results: list[Result] = []
    targets: list[Target] = []
    for db in databases:
        progress(f"recorder: time added per turn on {db.name}")
        rows, goals = await _added_per_turn(db, sizes, progress)
        results += rows
        targets += goals
    for db in databases:
        progress(f"recorder: durable records per second on {db.name}")
        rows, goals = await _durable_records(db, sizes, progress)
        results += rows
        targets += goals
    postgres = [db for db in databases if isinstance(db, PostgresDatabase)]
    if postgres:
        progress("recorder: shipping a spool into PostgreSQL")
        rows, goals = await _shipping(postgres[0], sizes, progress)
        results += rows
        targets += goals
    else:
        targets.append(Target("shipping into PostgreSQL: vs raw asyncpg (no server)", None,
                              0.6, True))  # fmt: skip
    return Section(results, targets, _NOTES)


_NOTES = [
    'columns: chatledger is the plugin on its default durable path (spool="auto": a hook '
    "returns once its records are committed in the local spool, an SQLite WAL file with "
    "synchronous=FULL and group commit; a shipper moves them to the store in batches of "
    f"{BATCH_SIZE}); baseline is, for the turn rows, the plugin with direct writes "
    "(spool=None: a hook returns once the store committed) and, for the records/s rows, the "
    "raw driver named in the row; without plugin is the same agent alone (for the added-time "
    "rows: its own turn p50/p99, from which the added time is measured)",
    "time added per turn: LLMAgent with ScriptedProvider (the delay before it answers: 0 or "
    f"50 ms; {_WINDOW} rounds of history sent) with and without PersistencePlugin.from_store, "
    "each side on a new store and plugin after a warm-up, all in this run; the plugin records "
    "the user's message before the model call and the reply with its API call after it (two "
    "waits, three records a turn, and the session once); added = p50 (p99) of the turns with "
    "the plugin minus p50 (p99) of the turns without, a difference of percentiles; turns/s: "
    "the clock stops only once flush() has every record in the database; at 50 ms the chats "
    "start spread over the first 50 ms (both sides), so 100 replies do not land in one instant",
    "0 ms with 100 chats is a closed loop without think time: every chat is always queued on "
    "the write path, so a turn waits for the other 99 chats' recording work (CPU per turn x "
    "100, on one interpreter: the GIL) and for their spool fsyncs. The added time there is the "
    "write path's capacity seen from one chat, not what one turn costs; the 50 ms rows are the "
    "closer picture of a real model, whose answers take hundreds of ms",
    f"durable records/s: {CHATS} chats, one PersistencePlugin each (its own user, agent and "
    f'session), all recording through one Recorder(store, spool="auto"); their hooks are '
    "called as the agent calls them (no agent, no model); after a warm-up turn per chat the "
    "clock runs from the first hook until `await plugin.flush()` returns 0; records = rows "
    "added to the session, message and API-call tables (checked: 3 a turn)",
    "raw group commit: the same rows, read back from the recorder's database as the driver "
    f"returns them, written by {CHATS} concurrent writers, one per chat, each handing over a "
    "turn's rows as the hooks do ([the session and] the user's message, then the reply and its "
    "API call) and going on only once they are committed, into tables chatledger created (same "
    "columns, keys, foreign keys and indexes). raw sqlite3: one writer thread commits "
    "everything queued in one transaction (executemany per table), WAL + synchronous=FULL + "
    "foreign_keys=ON, the store's own settings; raw asyncpg: one connection, a committer task "
    "runs everything queued in one transaction (executemany per table), synchronous_commit=on "
    "for both sides. Same rows, same durability before a writer goes on, same concurrency: "
    "what it leaves out is the recorder's own work: building entities, JSON, the spool "
    "(every record written, fsynced, read back and deleted once more)",
    "shipping: the store is switched off (its ingest_records raises StoreConnectionError, as "
    f"a lost connection does) while {CHATS} chats fill the spool through their plugins; then it "
    "is switched on and the clock runs from `flush()` until it returns 0 with every record in "
    "PostgreSQL (checked by count). The shipper parses each record's JSON back unless it still "
    f"holds the entity it was made from (at most {_PARSED_KEPT:,} records). raw asyncpg: the "
    "same rows (read back), in the order the chats recorded them, "
    f"{BATCH_SIZE} per transaction, by COPY (copy_records_to_table) and by executemany; the "
    "faster is the baseline; it starts from tuples in memory (no spool to read and empty, no "
    "JSON, no entities)",
]
