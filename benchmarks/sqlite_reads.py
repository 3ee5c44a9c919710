"""The read benchmarks: recent history over a million messages, statistics over a million calls."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from time import perf_counter

from benchmarks import (
    chatledger_sqlite,
    chatledger_store,
    langchain_history,
    openai_agents_session,
    raw_sqlite,
    workload,
)
from benchmarks.bulk_load import bulk_load, index_pending_text, learn_layouts, rebuild_rollups
from benchmarks.measure import Latency, time_calls
from benchmarks.report import Cell, Result, Section, Target
from benchmarks.sizes import Sizes
from benchmarks.sqlite_writes import Progress
from chatledger.entities import QueryFilter

__all__ = ["PEER_SESSIONS", "SEED", "history_results", "run_reads", "timed"]

SEED = 20250202
PEER_SESSIONS = 100  # SQLiteSession objects each hold thread-local connections: keep it bounded


def timed(name: str, latency: Latency, progress: Progress) -> Latency:
    """``latency``, after reporting its p50 and p99 as ``name``'s."""
    progress(f"{name}: p50 {latency.p50:.3f} ms, p99 {latency.p99:.3f} ms")
    return latency


def history_results(
    label: str, ours: Latency, raw: Latency, agents: Latency | Cell, langchain: Latency | Cell
) -> tuple[list[Result], Target]:
    """The p50 and p99 rows of a history read (``label`` has ``{}`` for which), and its target.

    A peer that was not measured is the ``Cell`` saying why.
    """

    def cell(latency: Latency | Cell, p99: bool) -> Cell:
        if isinstance(latency, Cell):
            return latency
        return Cell(latency.p99 if p99 else latency.p50)

    results = [
        Result(
            label.format("p99" if p99 else "p50"),
            "ms",
            cell(ours, p99),
            cell(raw, p99),
            cell(agents, p99),
            cell(langchain, p99),
        )
        for p99 in (False, True)
    ]
    return results, Target("get_recent_messages p99: vs raw SELECT", results[1].ratio, 2.0, False)


def _raw_connection(path: Path) -> sqlite3.Connection:
    conn = raw_sqlite.connect(path)
    conn.execute("PRAGMA query_only=ON")
    return conn


async def _history(sizes: Sizes, tmp: Path, progress: Progress) -> tuple[list[Result], Target]:
    history = workload.History(sizes, SEED)
    path = tmp / "cl-history.db"
    start = perf_counter()
    layouts = await learn_layouts(path)
    rows = bulk_load(
        path, [(layouts.message, history.messages()), (layouts.session, history.sessions)]
    )
    progress(f"loaded {rows:,} rows in chatledger's schema in {perf_counter() - start:.1f} s")
    store = await chatledger_sqlite.opener(path)()
    try:
        await index_pending_text(store, "SQLite", progress)
    finally:
        await store.close()
    limit = sizes.history_limit
    await chatledger_store.check_history(
        chatledger_sqlite.opener(path), history.sessions[0]["id"], history.newest[-limit:]
    )

    picks = random.Random(SEED + 1).choices(history.sessions, k=sizes.history_queries)
    conn = _raw_connection(path)
    try:
        params = [layouts.message.param("chat_session_id", s["id"]) for s in picks]
        position = 0

        def raw_read() -> None:
            nonlocal position
            raw_sqlite.recent_messages(conn, params[position % len(params)], limit)
            position += 1

        time_calls(raw_read, sizes.warmup)
        position = 0
        raw = timed("raw sqlite3 recent messages", time_calls(raw_read, len(params)), progress)
    finally:
        conn.close()
    ours = timed(
        "chatledger get_recent_messages",
        await chatledger_store.recent_history(
            chatledger_sqlite.opener(path), [s["id"] for s in picks], limit, sizes.warmup
        ),
        progress,
    )
    agents = await _agents_history(sizes, tmp, progress)
    langchain = await _langchain_history(sizes, tmp, progress)
    label = f"get_recent_messages({limit}) {{}}, {sizes.history_messages:,} msgs"
    return history_results(label, ours, raw, agents, langchain)


async def _agents_history(sizes: Sizes, tmp: Path, progress: Progress) -> Latency | Cell:
    try:
        history = workload.History(sizes, SEED)
        path = tmp / "agents-history.db"
        ids = [str(s["id"]) for s in history.sessions]
        start = perf_counter()
        rows = openai_agents_session.bulk_load(path, ids, history.messages())
        progress(
            f"loaded {rows:,} rows in SQLiteSession's schema in {perf_counter() - start:.1f} s"
        )
        picks = random.Random(SEED + 1).sample(ids, k=min(PEER_SESSIONS, len(ids)))
        latency = await openai_agents_session.recent_history(
            path, picks, sizes.history_limit, sizes.history_queries, sizes.warmup
        )
    except Exception as exc:
        progress(f"SQLiteSession history failed: {type(exc).__name__}: {exc}")
        return Cell(None, f"failed ({type(exc).__name__})")
    return timed("SQLiteSession get_items", latency, progress)


async def _langchain_history(sizes: Sizes, tmp: Path, progress: Progress) -> Latency | Cell:
    try:
        history = workload.History(sizes, SEED)
        path = tmp / "langchain-history.db"
        start = perf_counter()
        rows = langchain_history.bulk_load(path, history.messages())
        progress(f"loaded {rows:,} rows in LangChain's schema in {perf_counter() - start:.1f} s")
        ids = [str(s["id"]) for s in history.sessions]
        picks = random.Random(SEED + 1).sample(ids, k=min(10, len(ids)))
        latency = await langchain_history.history(
            path, picks, sizes.messages_per_session, sizes.full_scan_queries, warmup=2
        )
    except Exception as exc:
        progress(f"SQLChatMessageHistory history failed: {type(exc).__name__}: {exc}")
        return Cell(None, f"failed ({type(exc).__name__})")
    return timed("SQLChatMessageHistory aget_messages", latency, progress)


async def _statistics(
    sizes: Sizes, tmp: Path, progress: Progress
) -> tuple[list[Result], list[Target]]:
    ledger = workload.Ledger(sizes, SEED + 2)
    path = tmp / "cl-stats.db"
    start = perf_counter()
    layouts = await learn_layouts(path)
    rows = bulk_load(path, [(layouts.api_call, ledger.calls())])
    progress(f"loaded {rows:,} API calls in chatledger's schema in {perf_counter() - start:.1f} s")
    store = await chatledger_sqlite.opener(path)()
    try:
        await rebuild_rollups(store, "SQLite", progress)
    finally:
        await store.close()

    user = ledger.population.user_ids[0]
    week_start = ledger.week_start
    assert week_start is not None  # set by loading the calls
    results: list[Result] = []
    targets: list[Target] = []
    conn = _raw_connection(path)
    try:
        for query, where, params, label in (
            (QueryFilter(), "", (), "all calls"),
            (
                QueryFilter().user(user),
                " WHERE user_id = ?",
                (layouts.api_call.param("user_id", user),),
                "one user",
            ),
            (
                QueryFilter().time_range(week_start, None),
                " WHERE create_time >= ?",
                (layouts.api_call.param("create_time", week_start),),
                "last 7 of 90 days",
            ),
        ):
            ours, answer = await chatledger_store.statistics(
                chatledger_sqlite.opener(path), query, sizes.stats_repeats, 1
            )
            expected = raw_sqlite.aggregate(conn, where, params)[0]
            if answer.total_calls != expected:
                raise AssertionError(f"get_statistics counted {answer.total_calls}, SQL {expected}")
            plain = time_calls(
                partial(raw_sqlite.aggregate, conn, where, params), sizes.stats_repeats
            )
            statements = await chatledger_sqlite.statistics_sql(path, query)
            replay = _replay(conn, statements, sizes.stats_repeats)
            progress(
                f"statistics, {label}: chatledger {ours.median:.1f} ms, raw aggregate "
                f"{plain.median:.1f} ms, replay of its {len(statements)} statement(s) "
                + (f"{replay.median:.1f} ms" if replay else "n/a")
            )
            head = Result(
                f"get_statistics, {label} ({answer.total_calls:,} of {sizes.api_calls:,}) [c]",
                "ms",
                Cell(ours.median),
                Cell(plain.median),
            )
            results += [
                head,
                Result(
                    "  same, raw replay of chatledger's own SQL [d]",
                    "ms",
                    Cell(ours.median),
                    Cell(replay.median) if replay else Cell(None, "not captured"),
                ),
            ]
            targets.append(
                Target(f"get_statistics, {label}: vs raw aggregate", head.ratio, 1.3, False)
            )
    finally:
        conn.close()
    return results, targets


def _replay(conn: sqlite3.Connection, statements: Sequence[str], repeats: int) -> Latency | None:
    """Run the captured statements with raw sqlite3, fetching every row, ``repeats`` times."""
    if not statements:
        return None

    def run() -> None:
        for sql in statements:
            conn.execute(sql).fetchall()

    run()
    return time_calls(run, repeats)


async def run_reads(sizes: Sizes, tmp: Path, progress: Progress) -> Section:
    """Every read benchmark: table rows, targets and notes."""
    history, history_target = await _history(sizes, tmp, progress)
    statistics, statistics_targets = await _statistics(sizes, tmp, progress)
    notes = [
        f"history: {sizes.history_sessions:,} sessions x {sizes.messages_per_session} messages, "
        "inserted interleaved (message 1 of every session, then message 2, ...) as live chats "
        f"write them; {sizes.history_queries:,} reads of random sessions per side. raw sqlite3: "
        "SELECT ... WHERE chat_session_id = ? ORDER BY create_time DESC, id DESC LIMIT ? on "
        "chatledger's own file, json.loads of each content",
        f"SQLiteSession: get_items(limit={sizes.history_limit}) on the same volume in its own "
        f"schema, cycling over {PEER_SESSIONS} session objects",
        "LangChain: no 'newest N' read; aget_messages() returns all "
        f"{sizes.messages_per_session} messages of a session, and its table has no index on "
        f"session_id (a full scan per read), so {sizes.full_scan_queries} reads only",
        "[c] raw sqlite3: SELECT COUNT(*), SUM(success), SUM(tokens x3), SUM(total_price), "
        "AVG(latency_ms), AVG(tokens_per_second) [WHERE user_id = ? | create_time >= ?] - no "
        "percentiles, no "
        f"status breakdown; median of {sizes.stats_repeats} runs",
        "[d] the SELECT statements get_statistics ran (captured with sqlite3's trace callback), "
        "run again with raw sqlite3, every row fetched",
    ]
    return Section(history + statistics, [history_target, *statistics_targets], notes)
