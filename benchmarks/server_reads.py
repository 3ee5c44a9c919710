"""Server reads: recent history over a million messages, statistics over a million API calls.

Each runs in a scratch database of its own: chatledger creates its schema,
the raw driver loads the rows fast into chatledger's tables, and chatledger
reads them back (and must agree with the raw driver) before anything is timed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from time import perf_counter
from typing import Any

from benchmarks import (
    chatledger_store,
    langchain_postgres_history,
    openai_agents_sqlalchemy_session,
    raw_postgres,
    raw_server,
    workload,
)
from benchmarks.bulk_load import rebuild_rollups
from benchmarks.measure import Latency, time_async_calls, time_cycling_reads
from benchmarks.report import Cell, Result, Section, Target
from benchmarks.server_writes import Backend
from benchmarks.sizes import Sizes
from benchmarks.sql_trace import traced_server
from benchmarks.sqlite_reads import PEER_SESSIONS, SEED, history_results, timed
from benchmarks.sqlite_writes import Progress
from chatledger.entities import QueryFilter

__all__ = ["run_server_reads"]

_SESSIONS = raw_server.TABLES["session"]
_MESSAGES = raw_server.TABLES["message"]
_API_CALLS = raw_server.TABLES["api_call"]


async def _history(
    backend: Backend, sizes: Sizes, progress: Progress
) -> tuple[list[Result], Target]:
    history = workload.History(sizes, SEED)
    limit = sizes.history_limit
    picks = random.Random(SEED + 1).choices(history.sessions, k=sizes.history_queries)
    async with backend.server.scratch_database() as url:
        await (await backend.opener(url, 1)()).close()  # chatledger creates its schema
        raw = await backend.open_raw(url, 1)
        try:
            start = perf_counter()
            loaded = await raw.bulk_load(
                [(_MESSAGES, history.messages()), (_SESSIONS, history.sessions)]
            )
            progress(
                f"loaded {loaded:,} rows in chatledger's schema in {perf_counter() - start:.1f} s"
            )
            await chatledger_store.check_history(
                backend.opener(url, 1), history.sessions[0]["id"], history.newest[-limit:]
            )
            params = [raw.param(_MESSAGES, "chat_session_id", s["id"]) for s in picks]
            raw_latency = timed(
                f"{raw.name} recent messages",
                await time_cycling_reads(
                    params,
                    lambda param: raw.recent_messages(param, limit),
                    expected=limit,
                    who="the raw SELECT",
                    repeats=len(params),
                    warmup=sizes.warmup,
                ),
                progress,
            )
        finally:
            await raw.close()
        ours = timed(
            "chatledger get_recent_messages",
            await chatledger_store.recent_history(
                backend.opener(url, 1), [s["id"] for s in picks], limit, sizes.warmup
            ),
            progress,
        )
        agents: Latency | Cell = Cell()
        langchain: Latency | Cell = Cell()
        if backend.peers:
            agents, langchain = await _peer_histories(url, sizes, progress)

    label = f"get_recent_messages({limit}) {{}}, {sizes.history_messages:,} msgs [c]"
    return history_results(label, ours, raw_latency, agents, langchain)


async def _peer_histories(
    url: str, sizes: Sizes, progress: Progress
) -> tuple[Latency | Cell, Latency | Cell]:
    """The peers' history reads on the same volume, each in its own tables."""
    conn = await raw_postgres.connect(url)
    try:
        await conn.execute("SET synchronous_commit = off")  # a fixture: nothing to keep
        agents = await _peer_history(
            "SQLAlchemySession get_items",
            _agents_history(url, conn, sizes, progress),
            progress,
        )
        langchain = await _peer_history(
            "PostgresChatMessageHistory aget_messages",
            _langchain_history(url, conn, sizes, progress),
            progress,
        )
    finally:
        await conn.close()
    return agents, langchain


async def _peer_history(name: str, run: Any, progress: Progress) -> Latency | Cell:
    try:
        return timed(name, await run, progress)
    except Exception as exc:
        progress(f"{name} failed: {type(exc).__name__}: {exc}")
        return Cell(None, f"failed ({type(exc).__name__})")


async def _agents_history(url: str, conn: Any, sizes: Sizes, progress: Progress) -> Latency:
    history = workload.History(sizes, SEED)
    ids = [str(s["id"]) for s in history.sessions]
    start = perf_counter()
    rows = await openai_agents_sqlalchemy_session.bulk_load(url, conn, ids, history.messages())
    await conn.execute("ANALYZE agent_messages")
    progress(
        f"loaded {rows:,} rows in SQLAlchemySession's schema in {perf_counter() - start:.1f} s"
    )
    picks = random.Random(SEED + 1).sample(ids, k=min(PEER_SESSIONS, len(ids)))
    return await openai_agents_sqlalchemy_session.recent_history(
        url, picks, sizes.history_limit, sizes.history_queries, max(sizes.warmup, len(picks))
    )


async def _langchain_history(url: str, conn: Any, sizes: Sizes, progress: Progress) -> Latency:
    history = workload.History(sizes, SEED)
    start = perf_counter()
    rows = await langchain_postgres_history.bulk_load(url, conn, history.messages())
    await conn.execute(f"ANALYZE {langchain_postgres_history.TABLE}")
    progress(f"loaded {rows:,} rows in LangChain's schema in {perf_counter() - start:.1f} s")
    ids = [str(s["id"]) for s in history.sessions]
    picks = random.Random(SEED + 1).sample(ids, k=min(PEER_SESSIONS, len(ids)))
    return await langchain_postgres_history.history(
        url, picks, sizes.messages_per_session, sizes.history_queries, sizes.warmup
    )


async def _statistics(
    backend: Backend, sizes: Sizes, progress: Progress
) -> tuple[list[Result], list[Target]]:
    ledger = workload.Ledger(sizes, SEED + 2)
    results: list[Result] = []
    targets: list[Target] = []
    async with backend.server.scratch_database() as url:
        await (await backend.opener(url, 1)()).close()  # chatledger creates its schema
        raw = await backend.open_raw(url, 1)
        try:
            start = perf_counter()
            loaded = await raw.bulk_load([(_API_CALLS, ledger.calls())])
            progress(
                f"loaded {loaded:,} API calls in chatledger's schema "
                f"in {perf_counter() - start:.1f} s"
            )
            store = await backend.opener(url, 1)()
            try:
                await rebuild_rollups(store, backend.store, progress)
            finally:
                await store.close()
            user = ledger.population.user_ids[0]
            week_start = ledger.week_start
            if week_start is None:
                raise AssertionError("loading the ledger did not reach its last week")
            queries: Sequence[tuple[QueryFilter, str, tuple[Any, ...], str]] = (
                (QueryFilter(), "", (), "all calls"),
                (
                    QueryFilter().user(user),
                    " WHERE user_id = ?",
                    (raw.param(_API_CALLS, "user_id", user),),
                    "one user",
                ),
                (
                    QueryFilter().time_range(week_start, None),
                    " WHERE create_time >= ?",
                    (raw.param(_API_CALLS, "create_time", week_start),),
                    "last 7 of 90 days",
                ),
            )
            for query, where, params, label in queries:
                ours, answer = await chatledger_store.statistics(
                    backend.opener(url, 1), query, sizes.stats_repeats, 1
                )
                expected = await raw.aggregate(where, params)
                if (answer.total_calls, answer.total_tokens) != (expected[0], int(expected[2])):
                    raise AssertionError(
                        f"get_statistics ({label}) counted {answer.total_calls} calls and "
                        f"{answer.total_tokens} tokens; the raw aggregate {expected[0]} and "
                        f"{expected[2]}"
                    )

                async def plain(where: str = where, params: tuple[Any, ...] = params) -> None:
                    await raw.aggregate(where, params)

                await plain()
                latency = await time_async_calls(plain, sizes.stats_repeats)
                statements = await _statistics_reads(backend.opener(url, 1), query)

                async def replay(statements: Sequence[Any] = statements) -> None:
                    await raw.replay(statements)

                await replay()
                replayed = await time_async_calls(replay, sizes.stats_repeats)
                progress(
                    f"statistics, {label}: chatledger {ours.median:.1f} ms, raw aggregate "
                    f"{latency.median:.1f} ms, replay of its {len(statements)} statement(s) "
                    f"{replayed.median:.1f} ms"
                )
                head = Result(
                    f"get_statistics, {label} ({answer.total_calls:,} of {sizes.api_calls:,}) [d]",
                    "ms",
                    Cell(ours.median),
                    Cell(latency.median),
                )
                results += [
                    head,
                    Result(
                        "  same, raw replay of chatledger's own SQL [e]",
                        "ms",
                        Cell(ours.median),
                        Cell(replayed.median),
                    ),
                ]
                targets.append(
                    Target(f"get_statistics, {label}: vs raw aggregate", head.ratio, 1.3, False)
                )
        finally:
            await raw.close()
    return results, targets


async def _statistics_reads(
    open_store: chatledger_store.Opener, query: QueryFilter
) -> list[tuple[str, tuple[Any, ...]]]:
    """The reads ``get_statistics(query)`` sends to the server, as its driver receives them."""
    store = await open_store()
    try:
        await store.get_statistics(query)
        with traced_server("read") as calls:
            await store.get_statistics(query)
    finally:
        await store.close()
    return [statement for call in calls for statement in call]


async def run_server_reads(backend: Backend, sizes: Sizes, progress: Progress) -> Section:
    """Every read benchmark on ``backend``'s server: table rows, targets and notes."""
    progress(f"{backend.server.title}: history")
    history, history_target = await _history(backend, sizes, progress)
    progress(f"{backend.server.title}: statistics")
    statistics, statistics_targets = await _statistics(backend, sizes, progress)
    loader = (
        "COPY (binary, 50,000 rows a call) with the secondary indexes dropped and rebuilt, "
        "foreign-key triggers off (session_replication_role = replica)"
        if backend.key == "postgres"
        else "multi-row INSERTs (executemany, 10,000 rows a transaction) with the indexes no "
        "foreign key needs dropped and rebuilt, foreign_key_checks = 0"
    )
    notes = [
        f"[c] history: {sizes.history_sessions:,} sessions x {sizes.messages_per_session} "
        "messages, interleaved as live chats write them, loaded into chatledger's tables "
        f"by {loader}, then ANALYZE; chatledger reads the loaded rows back before timing. "
        f"{sizes.history_queries:,} reads of random sessions per side, one connection each. "
        "The raw SELECT is the SQLite benchmark's (WHERE chat_session_id = ? ORDER BY "
        "create_time DESC, id DESC LIMIT ?), its rows left as the driver returns them",
    ]
    if backend.peers:
        notes.append(
            f"peers' history: the same messages COPY'd into their own tables; SQLAlchemySession "
            f"get_items(limit={sizes.history_limit}) over {PEER_SESSIONS} session objects; "
            "PostgresChatMessageHistory has no 'newest N' read: aget_messages() returns all "
            f"{sizes.messages_per_session} messages of a session (its session_id is indexed)"
        )
    notes.append(
        f"[d] {sizes.api_calls:,} API calls over 90 days, loaded the same way; raw aggregate: "
        "SELECT COUNT(*), SUM(success), SUM(tokens x3), SUM(total_price), AVG(latency_ms), "
        "AVG(tokens_per_second) [WHERE user_id = ? | create_time >= ?] - no percentiles, no "
        f"status breakdown; median of {sizes.stats_repeats} runs; chatledger's answer is "
        "checked against it (calls and tokens)"
    )
    notes.append(
        "[e] the reads get_statistics sent to the server (captured where chatledger hands them "
        "to its pool), run again with the raw driver on one connection, every row fetched"
    )
    return Section(history + statistics, [history_target, *statistics_targets], notes)
