"""The write benchmarks: chatledger, raw sqlite3 and the peers saving the same messages."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import (
    chatledger_sqlite,
    chatledger_store,
    langchain_history,
    openai_agents_session,
    raw_sql,
    raw_sqlite,
    workload,
)
from benchmarks.measure import Rate
from benchmarks.report import Cell, Result, Section, Target
from benchmarks.sizes import Sizes
from benchmarks.workload import Row

__all__ = ["Progress", "live_clock", "peer_cell", "rate_cell", "run_writes"]

Progress = Callable[[str], None]
_TURNS = 5  # raw sqlite3 and chatledger alternate this many times in the one-at-a-time run


async def peer_cell(name: str, run: Awaitable[Rate], progress: Progress) -> Cell:
    """A peer's rate, or a note saying how it failed: a failing peer is a finding, not a crash."""
    try:
        rate = await run
    except Exception as exc:
        progress(f"{name} failed: {type(exc).__name__}: {exc}")
        return Cell(None, f"failed ({type(exc).__name__})")
    progress(f"{name}: {rate.per_second:,.0f} rows/s")
    return Cell(rate.per_second)


def rate_cell(name: str, rate: Rate, progress: Progress) -> Cell:
    """A measured rate as a table cell, said on the progress line as well."""
    progress(f"{name}: {rate.per_second:,.0f} rows/s")
    return Cell(rate.per_second)


def live_clock(rng: random.Random) -> workload.Clock:
    """Rows stamped "now" in turn, as a running application writes them."""
    return workload.Clock(rng, timedelta(milliseconds=20), start=datetime(2025, 6, 1, tzinfo=UTC))


def _raw_connection(path: Path, sessions: Sequence[Row]) -> sqlite3.Connection:
    conn = raw_sqlite.connect(path)
    raw_sqlite.create_tables(conn)
    conn.executemany(
        raw_sql.insert_sql("entity_chat_session", raw_sql.SESSION_COLUMNS),
        [raw_sqlite.encode_session(session) for session in sessions],
    )
    return conn


async def _single(sizes: Sizes, tmp: Path, rng: random.Random, progress: Progress) -> Result:
    population = workload.Population.make(rng, users=1)
    session = workload.sessions(population, rng, 1)[0]
    messages = list(workload.conversation(session, rng, sizes.warmup + sizes.single_saves))
    warmup, rows = messages[: sizes.warmup], messages[sizes.warmup :]

    # Raw and chatledger take turns, so a drift in the disk's fsync time hits both alike.
    conn = _raw_connection(tmp / "raw-single.db", [session])
    store = await chatledger_sqlite.open_store(tmp / "cl-single.db")
    raw_runs: list[Rate] = []
    our_runs: list[Rate] = []
    try:
        await chatledger_store.create_sessions(store, [session])
        raw_sqlite.per_row_commits(conn, warmup)
        await chatledger_store.single_saves(store, [workload.to_llm_message(r) for r in warmup])
        for turn in range(_TURNS):
            part = rows[turn * len(rows) // _TURNS : (turn + 1) * len(rows) // _TURNS]
            entities = [workload.to_llm_message(row) for row in part]
            raw_runs.append(raw_sqlite.per_row_commits(conn, part))
            our_runs.append(await chatledger_store.single_saves(store, entities))
    finally:
        conn.close()
        await store.close()
    raw = rate_cell("raw sqlite3, per-row commit", Rate.combined(raw_runs), progress)
    ours = Rate.combined(our_runs)
    return Result(
        f"save_message, 1 caller ({len(rows):,} msgs)",
        "rows/s",
        chatledger=rate_cell("chatledger save_message, 1 caller", ours, progress),
        raw=raw,
        agents=await peer_cell(
            "SQLiteSession add_items, 1 caller",
            openai_agents_session.single_saves(tmp / "agents-single.db", rows, warmup),
            progress,
        ),
        langchain=await peer_cell(
            "SQLChatMessageHistory aadd_message, 1 caller",
            langchain_history.single_saves(tmp / "langchain-single.db", rows, warmup),
            progress,
        ),
    )


async def _concurrent(
    sizes: Sizes, tmp: Path, rng: random.Random, raw: Cell, progress: Progress
) -> Result:
    population = workload.Population.make(rng, users=sizes.callers)
    sessions = workload.sessions(population, rng, sizes.callers)
    conversations = [
        list(workload.conversation(session, rng, sizes.saves_per_caller)) for session in sessions
    ]
    total = sizes.callers * sizes.saves_per_caller
    ours = await chatledger_store.concurrent_saves(
        chatledger_sqlite.opener(tmp / "cl-concurrent.db"), sessions, conversations
    )
    return Result(
        f"save_message, {sizes.callers} callers ({total:,} msgs) [a]",
        "rows/s",
        chatledger=rate_cell(f"chatledger save_message, {sizes.callers} callers", ours, progress),
        raw=Cell(raw.value, raw.note),
        agents=await peer_cell(
            f"SQLiteSession add_items, {sizes.callers} callers",
            openai_agents_session.concurrent_saves(tmp / "agents-concurrent.db", conversations),
            progress,
        ),
        langchain=await peer_cell(
            f"SQLChatMessageHistory aadd_message, {sizes.callers} callers",
            langchain_history.concurrent_saves(tmp / "langchain-concurrent.db", conversations),
            progress,
        ),
    )


async def _message_batches(
    sizes: Sizes, tmp: Path, rng: random.Random, progress: Progress
) -> list[Result]:
    population = workload.Population.make(rng, users=10)
    sessions = workload.sessions(population, rng, sizes.batches + 1, live_clock(rng))
    batches = [list(workload.conversation(s, rng, sizes.batch_size)) for s in sessions]
    rows = sizes.batches * sizes.batch_size

    conn = _raw_connection(tmp / "raw-batches.db", sessions)
    try:
        raw_rate = _raw_batches(conn, "message", batches)
    finally:
        conn.close()
    raw = rate_cell("raw sqlite3 executemany, messages", raw_rate, progress)
    own_schema = await _raw_into_own_schema(
        tmp / "raw-own-messages.db", sessions, batches, "message"
    )
    ours = rate_cell(
        "chatledger save_messages",
        await chatledger_store.batched_message_saves(
            chatledger_sqlite.opener(tmp / "cl-batches.db"), sessions, batches, 1
        ),
        progress,
    )
    label = f"save_messages, {sizes.batch_size}/batch ({rows:,} msgs)"
    return [
        Result(
            label,
            "rows/s",
            chatledger=ours,
            raw=raw,
            agents=await peer_cell(
                "SQLiteSession add_items(batch)",
                openai_agents_session.batched_saves(tmp / "agents-batches.db", batches, 1),
                progress,
            ),
            langchain=await peer_cell(
                "SQLChatMessageHistory aadd_messages(batch)",
                langchain_history.batched_saves(tmp / "langchain-batches.db", batches, 1),
                progress,
            ),
        ),
        Result("  same, raw into chatledger's own tables [b]", "rows/s", ours, own_schema),
    ]


async def _api_call_batches(
    sizes: Sizes, tmp: Path, rng: random.Random, progress: Progress
) -> list[Result]:
    population = workload.Population.make(rng, users=10)
    sessions = workload.sessions(population, rng, 50)
    count = (sizes.batches + 1) * sizes.batch_size
    calls = list(workload.api_call_rows(sessions, rng, count, live_clock(rng)))
    batches = [calls[i : i + sizes.batch_size] for i in range(0, len(calls), sizes.batch_size)]
    rows = sizes.batches * sizes.batch_size

    conn = _raw_connection(tmp / "raw-calls.db", [])
    try:
        raw_rate = _raw_batches(conn, "api_call", batches)
    finally:
        conn.close()
    raw = rate_cell("raw sqlite3 executemany, API calls", raw_rate, progress)
    own_schema = await _raw_into_own_schema(tmp / "raw-own-calls.db", [], batches, "api_call")
    ours = rate_cell(
        "chatledger save_api_calls",
        await chatledger_store.batched_api_call_saves(
            chatledger_sqlite.opener(tmp / "cl-calls.db"), batches, 1
        ),
        progress,
    )
    return [
        Result(f"save_api_calls, {sizes.batch_size}/batch ({rows:,} calls)", "rows/s", ours, raw),
        Result("  same, raw into chatledger's own tables [b]", "rows/s", ours, own_schema),
    ]


async def _raw_into_own_schema(
    path: Path, sessions: Sequence[Row], batches: Sequence[Sequence[Row]], table: str
) -> Cell:
    """The same raw executemany + COMMIT per batch, into the tables chatledger created."""
    await (await chatledger_sqlite.open_store(path)).close()  # chatledger creates its schema
    conn = raw_sqlite.connect(path)
    try:
        conn.executemany(
            raw_sql.insert_sql("entity_chat_session", raw_sql.SESSION_COLUMNS),
            [raw_sqlite.encode_session(session) for session in sessions],
        )
        rate = _raw_batches(conn, table, batches)
    finally:
        conn.close()
    return Cell(rate.per_second)


def _raw_batches(conn: sqlite3.Connection, table: str, batches: Sequence[Sequence[Row]]) -> Rate:
    """Raw executemany + COMMIT per batch; the first batch untimed."""
    if table == "message":
        sql = raw_sql.insert_sql("entity_llm_message", raw_sql.MESSAGE_COLUMNS)
        encode, touch = raw_sqlite.encode_message, True
    else:
        sql = raw_sql.insert_sql("entity_llm_api_call", raw_sql.API_CALL_COLUMNS)
        encode, touch = raw_sqlite.encode_api_call, False
    raw_sqlite.batched_inserts(conn, sql, batches[:1], encode, touch_session=touch)
    return raw_sqlite.batched_inserts(conn, sql, batches[1:], encode, touch_session=touch)


def _vs(result: Result, peer: Cell) -> float | None:
    if result.chatledger.value is None or not peer.value:
        return None
    return result.chatledger.value / peer.value


async def run_writes(sizes: Sizes, tmp: Path, progress: Progress) -> Section:
    """Every write benchmark: table rows, targets and notes."""
    rng = random.Random(20250101)
    single = await _single(sizes, tmp, rng, progress)
    concurrent = await _concurrent(sizes, tmp, rng, single.raw, progress)
    messages = await _message_batches(sizes, tmp, rng, progress)
    calls = await _api_call_batches(sizes, tmp, rng, progress)
    pragmas = await chatledger_sqlite.connect_pragmas(tmp / "cl-pragmas.db")
    targets = []
    for result, who in ((single, "1 caller"), (concurrent, f"{sizes.callers} callers")):
        targets += [
            Target(f"save_message, {who}: vs raw per-row commit", result.ratio, 0.50, True),
            Target(
                f"save_message, {who}: vs SQLiteSession",
                _vs(result, result.agents),
                3.0,
                True,
            ),
        ]
    targets += [
        Target("save_messages batches: vs raw executemany", messages[0].ratio, 0.60, True),
        Target("save_api_calls batches: vs raw executemany", calls[0].ratio, 0.60, True),
    ]
    notes = [
        "durability: chatledger and raw sqlite3 use WAL + synchronous=FULL; chatledger's "
        f"connect ran: {'; '.join(pragmas) or '(no PRAGMA seen)'}",
        f"SQLiteSession: {openai_agents_session.SETTINGS}",
        f"LangChain SQLChatMessageHistory: {langchain_history.SETTINGS}",
        f"[a] raw sqlite3 for {sizes.callers} callers is the figure of the row above: one "
        "connection, each row its own committed transaction, serialised (no group commit)",
        f"[b] {raw_sqlite.INDEXES_NOTE}; this row inserts with raw executemany into the "
        "tables chatledger itself created, with every index it keeps",
    ]
    return Section([single, concurrent, *messages, *calls], targets, notes)
