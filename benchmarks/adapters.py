"""The adapters part: chatledger as each framework's memory, beside that framework's own SQL store.

Three adapters, each on SQLite and PostgreSQL, against the framework's
built-in store on the same backend, in the same run:

- Agents SDK: ``ChatledgerSession.add_items`` / ``get_items(limit=20)`` against
  ``SQLiteSession`` (SQLite) and ``SQLAlchemySession`` (PostgreSQL, asyncpg).
- LangChain: ``ChatledgerChatMessageHistory.aadd_messages`` / ``aget_messages``
  against ``SQLChatMessageHistory`` (aiosqlite; asyncpg), and on PostgreSQL also
  langchain-postgres' ``PostgresChatMessageHistory`` for reads.
- LlamaIndex: ``ChatledgerChatStore.async_add_message`` / ``aget_messages``.
  llama-index-core has no SQL chat store (its SQL stores are separate
  packages), so the peer is LangChain's ``SQLChatMessageHistory`` on the same
  backend, called the same way (one message per call, a session's whole
  history per read).

Writes: one turn is two items (a user message and the reply). Agents and
LangChain write a turn in one call (as their runners do); LlamaIndex's memory
calls ``add_message`` once per message, so a turn is two calls on both its
sides. Rates count items per second, one session and 50 concurrent sessions
(one task each, all on one event loop), each side on a fresh database.

Reads: a database per side holding ``sessions x messages_per_session``
messages (1M at full size), loaded by each side's fastest bulk path
(chatledger's tables by raw executemany / COPY of exactly what the adapter
writes; the peers' by their executemany / COPY helpers), then the p99 of one
framework read per call, cycling over sessions picked at random.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence, Sized
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks import (
    langchain_history,
    langchain_postgres_history,
    openai_agents_session,
    openai_agents_sqlalchemy_session,
    raw_postgres,
    raw_server,
    workload,
)
from benchmarks.bulk_load import bulk_load, learn_layouts
from benchmarks.measure import Latency, Rate, callers_rate, time_cycling_reads
from benchmarks.report import Cell, Result, Section, Target
from benchmarks.scratch_databases import POSTGRES, Server, ServerUnavailableError
from benchmarks.workload import Row
from chatledger.entities import MessageContent, MessageRole

__all__ = ["FULL", "QUICK", "AdapterSizes", "run_adapters"]

Progress = Callable[[str], None]

SEED = 20250312
_WRITE_TARGET = 3.0  # x the built-in store's items/s
_READ_TARGET = 1.0  # x the built-in store's p99
_POOL = 16  # connections each side may use on PostgreSQL (50 sessions share them)
# The part's own scratch database: other parts may run on the same server at the same time.
_SERVER = dataclasses.replace(POSTGRES, scratch="chatledger_bench_adapters")


@dataclass(frozen=True, slots=True)
class AdapterSizes:
    """How much work the adapters part does."""

    name: str
    single_turns: int  # turns written by one session, timed
    callers: int  # concurrent sessions
    turns_per_caller: int  # turns each concurrent session writes, timed
    warm_turns: int  # untimed turns first, per session
    history_sessions: int  # sessions in each read database
    messages_per_session: int
    limit: int  # get_items(limit)
    queries: int  # timed reads per side
    scan_queries: int  # timed reads of a peer that scans its whole table per read
    read_sessions: int  # distinct sessions the reads cycle over
    warmup: int  # untimed reads first

    @property
    def history_messages(self) -> int:
        """Messages in each read database."""
        return self.history_sessions * self.messages_per_session

    def describe(self) -> str:
        """The sizes as the report says them."""
        return (
            f"writes: {self.single_turns:,} turns by 1 session, {self.callers} sessions x "
            f"{self.turns_per_caller} turns (2 items a turn, after {self.warm_turns} untimed "
            f"turns per session); reads: {self.history_messages:,} messages "
            f"({self.history_sessions:,} sessions x {self.messages_per_session}) per database, "
            f"{self.queries:,} reads per side over {self.read_sessions} sessions "
            f"({self.scan_queries} for a peer that scans its table)"
        )


FULL = AdapterSizes(
    "full", single_turns=1_000, callers=50, turns_per_caller=20, warm_turns=1,
    history_sessions=10_000, messages_per_session=100, limit=20, queries=2_000,
    scan_queries=30, read_sessions=100, warmup=50,
)  # fmt: skip
QUICK = AdapterSizes(
    "quick", single_turns=100, callers=50, turns_per_caller=2, warm_turns=1,
    history_sessions=300, messages_per_session=100, limit=20, queries=200,
    scan_queries=10, read_sessions=50, warmup=10,
)  # fmt: skip

Turn = tuple[str, str]  # the user's text, the reply's


# --- each framework's objects --------------------------------------------------------------------


def _quiet_imports() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import langchain_community.chat_message_histories  # noqa: F401


def _agents_turn(turn: Turn) -> list[Any]:
    return [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]


def _langchain_turn(turn: Turn) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    return [HumanMessage(content=turn[0]), AIMessage(content=turn[1])]


def _llama_turn(turn: Turn) -> list[Any]:
    from llama_index.core.llms import ChatMessage

    return [
        ChatMessage(role="user", content=turn[0]),
        ChatMessage(role="assistant", content=turn[1]),
    ]


_SENTINEL = "\x01text\x01"


def _content_templates(framework: str) -> dict[MessageRole, Any]:
    """The content column the adapter writes for a user and an assistant text (a placeholder)."""
    from chatledger.integrations import langchain, llama_index, openai_agents

    made: dict[MessageRole, MessageContent] = {}
    for role, turn_index in ((MessageRole.USER, 0), (MessageRole.ASSISTANT, 1)):
        if framework == "agents":
            item = _agents_turn((_SENTINEL, _SENTINEL))[turn_index]
            made[role] = openai_agents._message_of(item)[1]
        elif framework == "langchain":
            made[role] = langchain._stored(_langchain_turn((_SENTINEL, _SENTINEL))[turn_index])[1]
        else:
            made[role] = llama_index._stored(_llama_turn((_SENTINEL, _SENTINEL))[turn_index])[1]
    # What the store keeps: the content's JSON (the same keys, Nones left out).
    return {role: json.loads(content.model_dump_json()) for role, content in made.items()}


def _fill(template: Any, text: str) -> Any:
    if isinstance(template, str):
        return text if template == _SENTINEL else template
    if isinstance(template, dict):
        return {key: _fill(value, text) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, text) for value in template]
    return template


# --- the sides: how each one opens a session, writes a turn and reads ----------------------------


@dataclass(frozen=True, slots=True)
class Side:
    """One store as a framework sees it: open a session by key, write one turn, read."""

    name: str
    open: Callable[[str], Any]
    write: Callable[[Any, list[Any]], Awaitable[object]]  # one turn's framework objects
    read: Callable[[Any], Awaitable[Sized]]
    objects: Callable[[Turn], list[Any]]  # a turn as this side's framework objects


def _agents_side(name: str, make: Callable[[str], Any], limit: int) -> Side:
    async def write(session: Any, items: list[Any]) -> None:
        await session.add_items(items)

    return Side(name, make, write, lambda session: session.get_items(limit=limit), _agents_turn)


def _history_side(name: str, make: Callable[[str], Any]) -> Side:
    async def write(chat: Any, messages: list[Any]) -> None:
        await chat.aadd_messages(messages)

    return Side(name, make, write, lambda chat: chat.aget_messages(), _langchain_turn)


def _one_per_call(side: Side) -> Side:
    """``side`` writing a turn's messages one call each (as LlamaIndex's memory does)."""

    async def write(handle: Any, messages: list[Any]) -> None:
        for message in messages:
            await side.write(handle, [message])

    return Side(side.name, side.open, write, side.read, side.objects)


def _llama_side(store: Any) -> Side:
    from chatledger.integrations.llama_index import ChatledgerChatStore

    chat_store = ChatledgerChatStore(store)

    async def write(key: str, messages: list[Any]) -> None:
        for message in messages:
            await chat_store.async_add_message(key, message)

    return Side(
        "ChatledgerChatStore", lambda key: key, write, chat_store.aget_messages, _llama_turn
    )


def _chatledger_sides(store: Any, limit: int) -> dict[str, Side]:
    from chatledger.integrations.langchain import ChatledgerChatMessageHistory
    from chatledger.integrations.openai_agents import ChatledgerSession

    return {
        "agents": _agents_side("ChatledgerSession", lambda k: ChatledgerSession(k, store), limit),
        "langchain": _history_side(
            "ChatledgerChatMessageHistory", lambda k: ChatledgerChatMessageHistory(k, store)
        ),
        "llama": _llama_side(store),
    }


def _sql_history(engine: Any) -> Side:
    _quiet_imports()
    from langchain_community.chat_message_histories import SQLChatMessageHistory

    return _history_side(
        "SQLChatMessageHistory", lambda key: SQLChatMessageHistory(key, connection=engine)
    )


@asynccontextmanager
async def _sqlite_sides(folder: Path, limit: int) -> AsyncIterator[tuple[dict, dict]]:
    """chatledger's adapters and the built-in stores, each on its own SQLite file."""
    from agents.memory import SQLiteSession
    from sqlalchemy.ext.asyncio import create_async_engine

    from chatledger.stores.sqlite import SqliteStore

    store = await SqliteStore.connect(f"sqlite:///{folder / 'chatledger.db'}")
    engine = create_async_engine(f"sqlite+aiosqlite:///{folder / 'langchain.db'}")
    opened: list[Any] = []

    def agents_session(key: str) -> Any:
        opened.append(SQLiteSession(key, folder / "agents.db"))
        return opened[-1]

    try:
        langchain = _sql_history(engine)
        await langchain.read(langchain.open("schema"))  # creates its table before any race
        peers = {
            "agents": _agents_side("SQLiteSession", agents_session, limit),
            "langchain": langchain,
            "llama": _one_per_call(langchain),
        }
        yield _chatledger_sides(store, limit), peers
    finally:
        for session in opened:
            session.close()
        await engine.dispose()
        await store.close()


def _asyncpg_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


@asynccontextmanager
async def _postgres_sides(url: str, limit: int, pool: int) -> AsyncIterator[tuple[dict, dict]]:
    """chatledger's adapters and the built-in stores on one scratch database, ``pool`` each."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from chatledger.stores.postgres import PostgresStore

    sqlalchemy_session = openai_agents_sqlalchemy_session
    store = await PostgresStore.connect(url, min_size=pool, max_size=pool)
    agents_engine = sqlalchemy_session._engine(url, pool)
    engine = create_async_engine(_asyncpg_url(url), pool_size=pool, max_overflow=0)
    try:
        await sqlalchemy_session._create_tables(agents_engine)
        langchain = _sql_history(engine)
        await langchain.read(langchain.open("schema"))
        peers = {
            "agents": _agents_side(
                "SQLAlchemySession", lambda k: sqlalchemy_session._session(k, agents_engine), limit
            ),
            "langchain": langchain,
            "llama": _one_per_call(langchain),
        }
        yield _chatledger_sides(store, limit), peers
    finally:
        await engine.dispose()
        await agents_engine.dispose()
        await store.close()


# --- writes --------------------------------------------------------------------------------------

_FRAMEWORKS = {"agents": "Agents SDK", "langchain": "LangChain", "llama": "LlamaIndex"}
_WRITE_CALLS = {
    "agents": "add_items (1 call a turn)",
    "langchain": "add_messages (1 call a turn)",
    "llama": "add_message (2 calls a turn)",
}
_READ_CALLS = {
    "agents": "get_items(limit={limit})",
    "langchain": "messages (whole session)",
    "llama": "get_messages (whole session)",
}


def _turns(rng: random.Random, count: int) -> list[Turn]:
    return [(workload._text(rng), workload._text(rng)) for _ in range(count)]


async def _write_rate(side: Side, keys: Sequence[str], work: Sequence[Sequence[list[Any]]],
                      warm: int) -> Rate:  # fmt: skip
    """Items per second of ``side`` writing each session's turns, all sessions at once."""
    handles = [side.open(key) for key in keys]
    await asyncio.gather(*(side.write(handle, turn) for handle, turns in zip(handles, work,
                                                                             strict=True)
                           for turn in turns[:warm]))  # fmt: skip
    timed = [[(handle, turn) for turn in turns[warm:]]
             for handle, turns in zip(handles, work, strict=True)]  # fmt: skip
    rate = await callers_rate(timed, lambda pair: side.write(*pair))
    items = sum(len(turn) for turns in work for turn in turns[warm:])
    return Rate(items, rate.seconds)


async def _writes(
    backend: str,
    sides: Callable[[], Any],
    floor: Callable[[Sequence[Turn]], Awaitable[Rate]],
    sizes: AdapterSizes,
    progress: Progress,
) -> tuple[list[Result], list[Target]]:
    results: list[Result] = []
    targets: list[Target] = []
    single_peers: dict[str, float] = {}  # each built-in store's 1-session rate
    async with sides() as (ours, peers):
        for framework in _FRAMEWORKS:
            for callers, turns in (
                (1, sizes.single_turns),
                (sizes.callers, sizes.turns_per_caller),
            ):
                rng = random.Random(SEED + callers)
                plan = [_turns(rng, sizes.warm_turns + turns) for _ in range(callers)]
                rates = []
                for side in (ours[framework], peers[framework]):
                    keys = [
                        f"{framework}-{callers}-{side.name}-{index}" for index in range(callers)
                    ]
                    work = [[side.objects(turn) for turn in session] for session in plan]
                    progress(f"adapters {backend}: {side.name} writes, {callers} session(s)")
                    rates.append(await _write_rate(side, keys, work, sizes.warm_turns))
                sessions = "1 session" if callers == 1 else f"{callers} concurrent sessions"
                label = f"{backend} {_FRAMEWORKS[framework]} {_WRITE_CALLS[framework]}, {sessions}"
                ours_rate, peer_rate = (rate.per_second for rate in rates)
                if callers == 1:
                    single_peers.setdefault(peers[framework].name, peer_rate)
                results.append(Result(label, "items/s", Cell(ours_rate), Cell(peer_rate)))
                targets.append(Target(
                    f"{backend} {_FRAMEWORKS[framework]} writes, {sessions}, vs "
                    f"{peers[framework].name}", ours_rate / peer_rate, _WRITE_TARGET, True,
                ))  # fmt: skip
    progress(f"adapters {backend}: the raw driver's durable commits")
    rng = random.Random(SEED)
    results += _floor_results(backend, await floor(_turns(rng, sizes.single_turns)), single_peers)
    return results, targets


# --- the floor: the raw driver's durable commit -------------------------------------------------

_FLOOR_TABLE = (
    "CREATE TABLE floor_items (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, "
    "body TEXT NOT NULL)"
)


async def _sqlite_floor(folder: Path, turns: Sequence[Turn]) -> Rate:
    """One durable commit of a turn's 2 rows by sqlite3 itself, on the loop's own thread."""
    import sqlite3

    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_FLOOR_TABLE)
        conn.execute("CREATE INDEX floor_items_session ON floor_items (session_id, id)")
        start = perf_counter()
        for user, reply in turns:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO floor_items (session_id, body) VALUES (?, ?)",
                             [("s", user), ("s", reply)])  # fmt: skip
            conn.execute("COMMIT")
        return Rate(2 * len(turns), perf_counter() - start)
    finally:
        conn.close()


async def _postgres_floor(url: str, turns: Sequence[Turn]) -> Rate:
    """One transaction of a turn's 2 rows by asyncpg itself (one pipelined executemany)."""
    conn = await raw_postgres.connect(url)
    try:
        await conn.execute(_FLOOR_TABLE.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY"))
        await conn.execute("CREATE INDEX floor_items_session ON floor_items (session_id, id)")
        start = perf_counter()
        for user, reply in turns:
            async with conn.transaction():
                await conn.executemany("INSERT INTO floor_items (session_id, body) "
                                       "VALUES ($1, $2)", [("s", user), ("s", reply)])  # fmt: skip
        return Rate(2 * len(turns), perf_counter() - start)
    finally:
        await conn.close()


def _floor_results(backend: str, floor: Rate, peers: dict[str, float]) -> list[Result]:
    """The raw driver's 1-session rate beside each built-in store's: the most any store can gain."""
    label = "{} ceiling: raw driver, 1 durable transaction a turn, vs {}, 1 session"
    return [
        Result(label.format(backend, name), "items/s", Cell(floor.per_second), Cell(rate))
        for name, rate in peers.items()
    ]


# --- reads ---------------------------------------------------------------------------------------


@dataclass
class _History:
    """The read databases' sessions and messages, each session belonging to one framework."""

    sizes: AdapterSizes

    def __post_init__(self) -> None:
        sizes = self.sizes
        shape = dataclasses.make_dataclass(
            "Shape", [("history_sessions", int), ("messages_per_session", int), ("users", int)]
        )(sizes.history_sessions, sizes.messages_per_session, 1)
        self.workload = workload.History(shape, SEED)  # type: ignore[arg-type]
        self.sessions = self.workload.sessions
        self.framework = {s["id"]: tuple(_FRAMEWORKS)[i % 3] for i, s in enumerate(self.sessions)}
        rng = random.Random(SEED + 1)
        self.picks = {
            framework: [str(s["id"]) for s in rng.sample(
                [s for s in self.sessions if self.framework[s["id"]] == framework],
                min(sizes.read_sessions, sizes.history_sessions // 3),
            )]
            for framework in _FRAMEWORKS
        }  # fmt: skip
        self._rows: list[Row] | None = None

    def rows(self) -> list[Row]:
        """The messages (text only), generated once, interleaved as live chats write them."""
        if self._rows is None:
            self._rows = list(self.workload.messages())
        return self._rows

    def chatledger_rows(self) -> Iterator[Row]:
        """The messages as the adapters store them: each framework's own object in the content."""
        templates = {framework: _content_templates(framework) for framework in _FRAMEWORKS}
        for row in self.rows():
            template = templates[self.framework[row["chat_session_id"]]][row["role"]]
            yield {**row, "content": _fill(template, row["content"]["text"])}


async def _read_p99(side: Side, keys: Sequence[str], expected: int, queries: int,
                    warmup: int) -> Latency:  # fmt: skip
    handles = [side.open(key) for key in keys]
    return await time_cycling_reads(
        handles, side.read, expected=expected, who=side.name, repeats=queries, warmup=warmup
    )


async def _check_kept(store: Any, history: _History) -> None:
    """The loaded rows hold each adapter's own object (the path its reads take), not text only."""
    import uuid

    for framework, key in (("agents", "openai_agents_item"), ("langchain", "langchain_message"),
                           ("llama", "llama_index_message")):  # fmt: skip
        found = await store.get_recent_messages(uuid.UUID(history.picks[framework][0]), 1)
        if key not in (found[0].content.model_extra or {}):
            raise AssertionError(f"{framework}: loaded content lacks the adapter's object")


async def _time_reads(
    backend: str,
    ours: dict[str, Side],
    peers: dict[str, tuple[Side, int]],
    history: _History,
    progress: Progress,
) -> tuple[list[Result], list[Target]]:
    sizes = history.sizes
    results: list[Result] = []
    targets: list[Target] = []
    measured: dict[str, Latency] = {}
    for framework in _FRAMEWORKS:
        expected = sizes.limit if framework == "agents" else sizes.messages_per_session
        keys = history.picks[framework]
        progress(f"adapters {backend}: {ours[framework].name} reads")
        mine = await _read_p99(ours[framework], keys, expected, sizes.queries, sizes.warmup)
        peer, queries = peers[framework]
        if peer.name not in measured:
            progress(f"adapters {backend}: {peer.name} reads ({queries})")
            measured[peer.name] = await _read_p99(
                peer, keys, expected, queries, min(sizes.warmup, queries)
            )
        theirs = measured[peer.name]
        call = _READ_CALLS[framework].format(limit=sizes.limit)
        label = f"{backend} {_FRAMEWORKS[framework]} {call}: p99"
        results.append(Result(label, "ms", Cell(mine.p99), Cell(theirs.p99)))
        results.append(Result("  p50", "ms", Cell(mine.p50), Cell(theirs.p50)))
        targets.append(Target(
            f"{backend} {_FRAMEWORKS[framework]} read p99 vs {peer.name}",
            mine.p99 / theirs.p99, _READ_TARGET, False,
        ))  # fmt: skip
    return results, targets


async def _sqlite_reads(
    folder: Path, history: _History, progress: Progress
) -> tuple[list[Result], list[Target]]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from chatledger.stores.sqlite import SqliteStore

    sizes = history.sizes
    path = folder / "chatledger-reads.db"
    start = perf_counter()
    layouts = await learn_layouts(path)
    loaded = bulk_load(path, [(layouts.message, history.chatledger_rows()),
                              (layouts.session, history.sessions)])  # fmt: skip
    progress(f"adapters SQLite: {loaded:,} rows in chatledger in {perf_counter() - start:.0f} s")
    start = perf_counter()
    ids = [str(s["id"]) for s in history.sessions]
    agents_path = folder / "agents-reads.db"
    loaded = openai_agents_session.bulk_load(agents_path, ids, history.rows())
    langchain_path = folder / "langchain-reads.db"
    loaded += langchain_history.bulk_load(langchain_path, history.rows())
    progress(f"adapters SQLite: {loaded:,} rows in the peers in {perf_counter() - start:.0f} s")

    from agents.memory import SQLiteSession

    store = await SqliteStore.connect(f"sqlite:///{path}")
    engine = create_async_engine(f"sqlite+aiosqlite:///{langchain_path}")
    opened: list[Any] = []

    def agents_session(key: str) -> Any:
        opened.append(SQLiteSession(key, agents_path))
        return opened[-1]

    try:
        await _check_kept(store, history)
        langchain = _sql_history(engine)
        peers = {
            "agents": (_agents_side("SQLiteSession", agents_session, sizes.limit), sizes.queries),
            "langchain": (langchain, sizes.scan_queries),  # no index on session_id: full scans
            "llama": (langchain, sizes.scan_queries),
        }
        return await _time_reads("SQLite", _chatledger_sides(store, sizes.limit), peers,
                                 history, progress)  # fmt: skip
    finally:
        for session in opened:
            session.close()
        await engine.dispose()
        await store.close()


async def _postgres_reads(
    url: str, history: _History, progress: Progress
) -> tuple[list[Result], list[Target]]:
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine

    from chatledger.stores.postgres import PostgresStore

    sizes = history.sizes
    await (await PostgresStore.connect(url, min_size=1, max_size=1)).close()  # its schema
    raw = await raw_postgres.RawPostgres.open(url, 1)
    start = perf_counter()
    try:
        messages = (raw_server.TABLES["message"], history.chatledger_rows())
        loaded = await raw.bulk_load([messages, (raw_server.TABLES["session"], history.sessions)])
    finally:
        await raw.close()
    progress(
        f"adapters PostgreSQL: {loaded:,} rows in chatledger in {perf_counter() - start:.0f} s"
    )
    start = perf_counter()
    conn = await raw_postgres.connect(url)
    try:
        ids = [str(s["id"]) for s in history.sessions]
        loaded = await openai_agents_sqlalchemy_session.bulk_load(url, conn, ids, history.rows())
        sync_engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
        try:
            _quiet_imports()
            from langchain_community.chat_message_histories import SQLChatMessageHistory

            SQLChatMessageHistory("schema", connection=sync_engine)  # creates message_store
        finally:
            sync_engine.dispose()
        loaded += await raw_postgres.copy_rows(
            conn, "message_store", ("session_id", "message"),
            langchain_history.stored_messages(history.rows()),
        )  # fmt: skip
        loaded += await langchain_postgres_history.bulk_load(url, conn, history.rows())
        for table in ("agent_sessions", "agent_messages", "message_store",
                      langchain_postgres_history.TABLE):  # fmt: skip
            await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()
    progress(f"adapters PostgreSQL: {loaded:,} rows in the peers in {perf_counter() - start:.0f} s")

    store = await PostgresStore.connect(url, min_size=1, max_size=1)
    agents_engine = openai_agents_sqlalchemy_session._engine(url, 1)
    engine = create_async_engine(_asyncpg_url(url), pool_size=1, max_overflow=0)
    pg_conn = await langchain_postgres_history._connect(url)
    try:
        await _check_kept(store, history)
        langchain = _sql_history(engine)
        ours = _chatledger_sides(store, sizes.limit)
        peers = {
            "agents": (_agents_side(
                "SQLAlchemySession",
                lambda k: openai_agents_sqlalchemy_session._session(k, agents_engine),
                sizes.limit,
            ), sizes.queries),
            "langchain": (langchain, sizes.scan_queries),  # no index on session_id: full scans
            "llama": (langchain, sizes.scan_queries),
        }  # fmt: skip
        results, targets = await _time_reads("PostgreSQL", ours, peers, history, progress)
        # langchain-postgres' history: an index on session_id, one connection.
        postgres_history = langchain_postgres_history._history_class()
        indexed = _history_side(
            "PostgresChatMessageHistory",
            lambda key: postgres_history(
                langchain_postgres_history.TABLE, key, async_connection=pg_conn
            ),
        )
        progress("adapters PostgreSQL: PostgresChatMessageHistory reads")
        keys = history.picks["langchain"]
        theirs = await _read_p99(
            indexed, keys, sizes.messages_per_session, sizes.queries, sizes.warmup
        )
        mine = results[2].chatledger.value  # the LangChain adapter's p99, measured above
        assert mine is not None
        results.append(Result(
            "PostgreSQL LangChain messages, vs PostgresChatMessageHistory: p99", "ms",
            Cell(mine), Cell(theirs.p99),
        ))  # fmt: skip
        targets.append(Target("PostgreSQL LangChain read p99 vs PostgresChatMessageHistory",
                              mine / theirs.p99, _READ_TARGET, False))  # fmt: skip
        return results, targets
    finally:
        await pg_conn.close()
        await engine.dispose()
        await agents_engine.dispose()
        await store.close()


# --- the part ------------------------------------------------------------------------------------


async def _postgres(
    server: Server, sizes: AdapterSizes, history: _History, progress: Progress
) -> tuple[list[Result], list[Target]]:
    async with server.scratch_database() as url:
        await (await _open_pg(url)).close()
        writes = await _writes(
            "PostgreSQL",
            lambda: _postgres_sides(url, sizes.limit, _POOL),
            lambda turns: _postgres_floor(url, turns),
            sizes,
            progress,
        )
    async with server.scratch_database() as url:
        reads = await _postgres_reads(url, history, progress)
    return writes[0] + reads[0], writes[1] + reads[1]


async def _open_pg(url: str) -> Any:
    from chatledger.stores.postgres import PostgresStore

    return await PostgresStore.connect(url, min_size=1, max_size=1)


async def run_adapters(folder: Path, sizes: AdapterSizes, progress: Progress) -> Section:
    """Every adapter on SQLite and PostgreSQL beside its framework's own store."""
    _quiet_imports()
    history = _History(sizes)
    results: list[Result] = []
    targets: list[Target] = []
    notes: list[str] = []
    writes_folder = folder / "writes"
    writes_folder.mkdir()
    found = await _writes(
        "SQLite",
        lambda: _sqlite_sides(writes_folder, sizes.limit),
        lambda turns: _sqlite_floor(writes_folder, turns),
        sizes,
        progress,
    )
    results += found[0]
    targets += found[1]
    found = await _sqlite_reads(folder, history, progress)
    results += found[0]
    targets += found[1]
    try:
        await _SERVER.probe()
    except ServerUnavailableError as exc:
        notes.append(f"PostgreSQL not measured: {exc}")
    else:
        found = await _postgres(_SERVER, sizes, history, progress)
        results += found[0]
        targets += found[1]
    notes += _NOTES
    return Section(results, targets, notes)


_NOTES = [
    "chatledger: the adapter on chatledger's store (SqliteStore; PostgresStore, pool of "
    f"{_POOL}); built-in store: the framework's own SQL store on the same backend "
    "(SQLite: SQLiteSession, SQLChatMessageHistory on aiosqlite; PostgreSQL: SQLAlchemySession "
    f"and SQLChatMessageHistory on asyncpg, pools of {_POOL}). cl/raw: adapter / built-in.",
    "LlamaIndex: llama-index-core has no SQL chat store (SimpleChatStore keeps a dict in memory "
    "and persists by rewriting one JSON file); its built-in column is LangChain's "
    "SQLChatMessageHistory on the same backend, called as LlamaIndex's memory calls a chat "
    "store: one message per write call, a session's whole history per read.",
    "Writes: a turn is a user message and its reply (2 items); async APIs on both sides "
    "(add_items, aadd_messages, async_add_message), every call durable when it returns. "
    "Each side writes to its own fresh database.",
    "Ceiling rows: the raw driver (sqlite3 in WAL mode with synchronous=FULL on the loop's "
    "thread; asyncpg, one connection) committing each turn's 2 rows in one transaction into "
    "a table of (id, session, text), beside each built-in store's 1-session rate: their "
    "ratio is the most any store that commits each call durably can reach against it.",
    "Reads: async APIs (get_items, aget_messages); each side's database holds the same "
    "messages loaded in bulk, interleaved as live chats write them; the adapter's rows hold "
    "exactly what the adapter writes (the framework's object beside chatledger's columns). "
    "SQLChatMessageHistory's table has no index on session_id, so each of its reads scans the "
    "table: fewer reads, and its p99 is close to its maximum.",
]
