"""The write benchmarks on a database server: chatledger, the raw driver and (PostgreSQL) the peers.

chatledger and the raw driver write into the same tables (the ones the store
created on a scratch database), each side into sessions of its own, with the
same number of connections: the store's pool is opened with
``min_size = max_size = callers`` and so is the raw driver's.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import (
    chatledger_store,
    langchain_postgres_history,
    openai_agents_sqlalchemy_session,
    raw_server,
    workload,
)
from benchmarks.chatledger_store import Opener
from benchmarks.measure import Rate
from benchmarks.raw_mysql import RawMySql
from benchmarks.raw_postgres import RawPostgres
from benchmarks.raw_server import RawServer
from benchmarks.report import Cell, Result, Section, Target
from benchmarks.scratch_databases import MYSQL, POSTGRES, Server
from benchmarks.sizes import Sizes
from benchmarks.sql_trace import traced_server
from benchmarks.sqlite_writes import Progress, live_clock, peer_cell, rate_cell
from benchmarks.workload import Row

__all__ = ["BACKENDS", "Backend", "run_server_writes"]

_TURNS = 5  # sides take turns this many times when their pools can be open at once
# Both sides' pools open at once only while they stay well inside the server's
# connection limit (PostgreSQL's default max_connections is 100, and tests may run
# beside the benchmark): 8 callers take turns, 50 callers run one side after the other.
_MAX_OPEN = 32
_MESSAGES = raw_server.TABLES["message"]
_API_CALLS = raw_server.TABLES["api_call"]


@dataclass(frozen=True, slots=True)
class Backend:
    """A server backend as the benchmarks see it: the server, the store, the raw driver."""

    key: str  # "postgres" or "mysql": chatledger.stores' module and --only's name
    server: Server
    store: str  # the store's class in that module
    open_raw: Callable[[str, int], Awaitable[RawServer]]
    peers: bool  # whether the peer libraries run on this server (PostgreSQL only)

    def opener(self, url: str, connections: int) -> Opener:
        """An ``Opener`` of chatledger's store on ``url`` with a pool of ``connections``."""

        async def open_store() -> Any:
            store_class = getattr(importlib.import_module(f"chatledger.stores.{self.key}"),
                                  self.store)  # fmt: skip
            return await store_class.connect(url, min_size=connections, max_size=connections)

        return open_store


BACKENDS = (
    Backend("postgres", POSTGRES, "PostgresStore", RawPostgres.open, peers=True),
    Backend("mysql", MYSQL, "MySqlStore", RawMySql.open, peers=False),
)

Save = Callable[[Sequence[Sequence[Any]]], Awaitable[Rate]]


async def _take_turns(
    sides: Sequence[tuple[Save, Sequence[Sequence[Any]]]], warm: int, turns: int
) -> list[Rate]:
    """Each side saves its first ``warm`` items per caller untimed, then its share in turns."""
    for save, work in sides:
        await save([items[:warm] for items in work])
    runs: list[list[Rate]] = [[] for _ in sides]
    for turn in range(turns):
        for (save, work), rates in zip(sides, runs, strict=True):
            timed = [items[warm:] for items in work]
            part = [items[turn * len(items) // turns : (turn + 1) * len(items) // turns]
                    for items in timed]  # fmt: skip
            rates.append(await save(part))
    return [Rate.combined(rates) for rates in runs]


async def _saves(
    backend: Backend, url: str, sizes: Sizes, callers: int, progress: Progress
) -> tuple[list[Result], list[Target]]:
    rng = random.Random(20250303 + callers)
    population = workload.Population.make(rng, users=callers)
    per_caller = sizes.server_saves // callers
    warm = max(2, sizes.warmup // callers)

    def conversations() -> tuple[list[Row], list[list[Row]]]:
        sessions = workload.sessions(population, rng, callers, live_clock(rng))
        return sessions, [list(workload.conversation(s, rng, warm + per_caller)) for s in sessions]

    (insert_sessions, insert_work), (touch_sessions, touch_work) = conversations(), conversations()
    our_sessions, our_rows = conversations()
    ours_work = [[workload.to_llm_message(row) for row in rows] for rows in our_rows]
    setup = await backend.opener(url, 1)()
    try:  # every side saves into sessions that exist, as the workload says
        await chatledger_store.create_sessions(setup, insert_sessions + touch_sessions)
    finally:
        await setup.close()

    raw = await backend.open_raw(url, callers)
    raw_name = raw.name
    store: Any = None

    async def insert_only(work: Sequence[Sequence[Any]]) -> Rate:
        return await raw.save_each(work, touch_session=False)

    async def insert_touch(work: Sequence[Sequence[Any]]) -> Rate:
        return await raw.save_each(work, touch_session=True)

    async def ours(work: Sequence[Sequence[Any]]) -> Rate:
        return await chatledger_store.callers_save(store, work)

    raw_sides: list[tuple[Save, Sequence[Sequence[Any]]]] = [
        (insert_only, insert_work),
        (insert_touch, touch_work),
    ]
    try:
        if 2 * callers <= _MAX_OPEN:
            store = await backend.opener(url, callers)()
            await chatledger_store.create_sessions(store, our_sessions)
            insert, touch, mine = await _take_turns([*raw_sides, (ours, ours_work)], warm, _TURNS)
        else:
            insert, touch = await _take_turns(raw_sides, warm, _TURNS)
    finally:
        await raw.close()
        if store is not None:
            await store.close()
    if store is None:  # one side after the other: chatledger's pool opens after the raw one closed
        store = await backend.opener(url, callers)()
        try:
            await chatledger_store.create_sessions(store, our_sessions)
            (mine,) = await _take_turns([(ours, ours_work)], warm, _TURNS)
        finally:
            await store.close()

    who = "1 caller" if callers == 1 else f"{callers} callers"
    agents, langchain = Cell(), Cell()
    if backend.peers:
        agents, langchain = await _peer_saves(url, sizes, rng, population, callers, warm, progress)
    ours_cell = rate_cell(f"chatledger save_message, {who}", mine, progress)
    head = Result(
        f"save_message, {who} ({per_caller * callers:,} msgs) [a]",
        "rows/s",
        ours_cell,
        rate_cell(f"{raw_name} INSERT + session update, {who}", touch, progress),
        agents,
        langchain,
    )
    results = [
        head,
        Result(
            "  same, raw INSERT only, autocommit [a]",
            "rows/s",
            ours_cell,
            rate_cell(f"{raw_name} INSERT only, {who}", insert, progress),
        ),
    ]
    targets = [
        Target(f"save_message, {who}: vs raw INSERT + session update", head.ratio, 0.8, True)
    ]
    if backend.peers:
        for name, peer in (
            ("SQLAlchemySession", agents),
            ("PostgresChatMessageHistory", langchain),
        ):
            targets.append(Target(f"save_message, {who}: vs {name}", _vs(head, peer), 3.0, True))
    return results, targets


async def _peer_saves(
    url: str,
    sizes: Sizes,
    rng: random.Random,
    population: workload.Population,
    callers: int,
    warm: int,
    progress: Progress,
) -> tuple[Cell, Cell]:
    """The peers' rates for the same number of callers, each into sessions of its own."""
    per_caller = sizes.server_saves // callers
    cells = []
    for name, single, concurrent in (
        (
            "SQLAlchemySession add_items",
            openai_agents_sqlalchemy_session.single_saves,
            openai_agents_sqlalchemy_session.concurrent_saves,
        ),
        (
            "PostgresChatMessageHistory aadd_messages",
            langchain_postgres_history.single_saves,
            langchain_postgres_history.concurrent_saves,
        ),
    ):
        sessions = workload.sessions(population, rng, callers, live_clock(rng))
        work = [list(workload.conversation(s, rng, warm + per_caller)) for s in sessions]
        if callers == 1:
            run = single(url, work[0][warm:], work[0][:warm])
        else:
            run = concurrent(url, [rows[warm:] for rows in work])
        cells.append(await peer_cell(f"{name}, {callers} caller(s)", run, progress))
    return cells[0], cells[1]


async def _batches(
    backend: Backend, url: str, sizes: Sizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    rng = random.Random(20250404)
    population = workload.Population.make(rng, users=10)
    count = sizes.batches + 1  # the first batch of each side is untimed
    rows = sizes.batches * sizes.batch_size
    raw = await backend.open_raw(url, 1)
    methods = raw.batch_methods

    def conversations() -> tuple[list[Row], list[list[Row]]]:
        sessions = workload.sessions(population, rng, count, live_clock(rng))
        return sessions, [list(workload.conversation(s, rng, sizes.batch_size)) for s in sessions]

    def calls() -> list[list[Row]]:
        made = list(workload.api_call_rows(
            workload.sessions(population, rng, 50), rng, count * sizes.batch_size, live_clock(rng)
        ))  # fmt: skip
        return [made[i : i + sizes.batch_size] for i in range(0, len(made), sizes.batch_size)]

    try:
        raw_messages = {method: conversations() for method in methods}
        setup = await backend.opener(url, 1)()
        try:
            for sessions, _ in raw_messages.values():
                await chatledger_store.create_sessions(setup, sessions)
        finally:
            await setup.close()
        message_rates = {
            method: await raw.save_batches(_MESSAGES, batches, method, touch_session=True)
            for method, (_, batches) in raw_messages.items()
        }
        call_rates = {
            method: await raw.save_batches(_API_CALLS, calls(), method, touch_session=False)
            for method in methods
        }
    finally:
        await raw.close()
    our_sessions, our_batches = conversations()
    our_messages = await chatledger_store.batched_message_saves(
        backend.opener(url, 1), our_sessions, our_batches, 1
    )
    our_calls = await chatledger_store.batched_api_call_saves(backend.opener(url, 1), calls(), 1)

    results: list[Result] = []
    targets: list[Target] = []
    for kind, noun, ours, rates in (
        ("save_messages", "msgs", our_messages, message_rates),
        ("save_api_calls", "calls", our_calls, call_rates),
    ):
        ours_cell = rate_cell(f"chatledger {kind}", ours, progress)
        for index, method in enumerate(methods):
            raw_cell = rate_cell(f"{raw.name} {method}, {kind}", rates[method], progress)
            if index == 0:
                label = f"{kind}, {sizes.batch_size}/batch ({rows:,} {noun}) vs {method} [b]"
                results.append(Result(label, "rows/s", ours_cell, raw_cell))
                targets.append(
                    Target(f"{kind} batches: vs raw {method}", results[-1].ratio, 0.6, True)
                )
            else:
                results.append(
                    Result(f"  same, vs raw {method} [b]", "rows/s", ours_cell, raw_cell)
                )
    return results, targets


async def _save_message_statements(backend: Backend, url: str) -> str:
    """What one ``save_message`` sends the server, as evidence of the work it does."""
    rng = random.Random(20250505)
    session = workload.sessions(workload.Population.make(rng, users=1), rng, 1)[0]
    message = workload.to_llm_message(next(workload.conversation(session, rng, 1)))
    store = await backend.opener(url, 1)()
    try:
        await chatledger_store.create_sessions(store, [session])
        with traced_server("write") as calls:
            await store.save_message(message)
    finally:
        await store.close()
    statements = [" ".join(sql.split()) for call in calls for sql, _ in call]
    shown = "; ".join(s if len(s) <= 90 else s[:87] + "..." for s in statements)
    where = "one transaction" if len(statements) > 1 else "autocommit"
    return f"{len(statements)} statement(s) in {where}: {shown}"


def _vs(result: Result, peer: Cell) -> float | None:
    if result.chatledger.value is None or not peer.value:
        return None
    return result.chatledger.value / peer.value


async def run_server_writes(
    backend: Backend, sizes: Sizes, settings: str, progress: Progress
) -> Section:
    """Every write benchmark on ``backend``'s server: table rows, targets and notes."""
    results: list[Result] = []
    targets: list[Target] = []
    async with backend.server.scratch_database() as url:
        for callers in (1, *sizes.server_callers):
            progress(f"{backend.server.title}: save_message, {callers} caller(s)")
            rows, goals = await _saves(backend, url, sizes, callers, progress)
            results += rows
            targets += goals
        progress(f"{backend.server.title}: batches")
        rows, goals = await _batches(backend, url, sizes, progress)
        results += rows
        targets += goals
        sent = await _save_message_statements(backend, url)
    raw_name = "asyncpg" if backend.key == "postgres" else "asyncmy"
    notes = [
        f"server: {settings}; every side writes into the tables chatledger created (all its "
        "indexes, keys and checks) on a scratch database, each into sessions of its own",
        f"[a] raw {raw_name}: a pool of as many connections as callers (chatledger's store: "
        "min_size = max_size = callers), one connection from it per message; the main row runs "
        "INSERT + UPDATE entity_chat_session SET update_time in one transaction, the work "
        "save_message does, and the target compares with it; the sub-row is the INSERT alone, "
        f"autocommitted. chatledger's save_message sent {sent}; sides take turns "
        f"({_TURNS} each) where both pools fit in {_MAX_OPEN} connections, else run one after "
        f"the other; the first max(2, {sizes.warmup} / callers) saves per caller are untimed",
        "[b] one transaction per batch (a batch of messages is one conversation, then its "
        "session's update_time; API calls have no session update); the first batch untimed; "
        + (
            "COPY is asyncpg's copy_records_to_table (binary), executemany its pipelined "
            "prepared INSERT"
            if backend.key == "postgres"
            else "asyncmy's executemany sends multi-row INSERTs of up to ~1 MB"
        ),
    ]
    if backend.peers:
        notes += [
            f"SQLAlchemySession (openai-agents): {openai_agents_sqlalchemy_session.SETTINGS}",
            "LangChain is langchain-postgres' PostgresChatMessageHistory: "
            + langchain_postgres_history.SETTINGS,
        ]
    return Section(results, targets, notes)
