"""chatledger's ``SqliteStore`` at work: saves one at a time, concurrent and batched; reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from benchmarks import workload
from benchmarks.measure import Latency, Rate, time_async_calls
from benchmarks.sql_trace import traced_connections
from benchmarks.workload import Row
from chatledger.entities import LLMMessage, QueryFilter, UsageStatistics

if TYPE_CHECKING:
    from chatledger.stores.sqlite import SqliteStore

__all__ = [
    "batched_api_call_saves",
    "batched_message_saves",
    "check_history",
    "concurrent_saves",
    "connect_pragmas",
    "create_sessions",
    "open_store",
    "recent_history",
    "single_saves",
    "statistics",
    "statistics_sql",
]


async def open_store(path: Path) -> SqliteStore:
    """``SqliteStore.connect`` on a file, with its defaults (WAL, synchronous=FULL)."""
    from chatledger.stores.sqlite import SqliteStore

    return await SqliteStore.connect(f"sqlite:///{path}")


async def connect_pragmas(path: Path) -> list[str]:
    """The PRAGMA statements ``SqliteStore.connect`` runs, as evidence of its settings."""
    with traced_connections() as statements:
        store = await open_store(path)
        ran = list(statements)
        await store.close()
    pragmas = [sql.strip() for sql in ran if sql.lstrip().upper().startswith("PRAGMA")]
    return list(dict.fromkeys(pragmas))  # each connection runs them: say each once


async def create_sessions(store: SqliteStore, sessions: Sequence[Row]) -> None:
    """Create the sessions that messages will be saved into."""
    for session in sessions:
        await store.create_session(workload.to_chat_session(session))


async def single_saves(store: SqliteStore, messages: Sequence[LLMMessage]) -> Rate:
    """``await save_message`` once per message, one caller."""
    start = perf_counter()
    for message in messages:
        await store.save_message(message)
    return Rate(len(messages), perf_counter() - start)


async def concurrent_saves(
    path: Path, sessions: Sequence[Row], conversations: Sequence[Sequence[Row]]
) -> Rate:
    """One caller per conversation, all at once (``asyncio.gather``), one message per call."""
    store = await open_store(path)
    work = [[workload.to_llm_message(row) for row in rows] for rows in conversations]

    async def caller(messages: Sequence[LLMMessage]) -> None:
        for message in messages:
            await store.save_message(message)

    try:
        await create_sessions(store, sessions)
        start = perf_counter()
        await asyncio.gather(*(caller(messages) for messages in work))
        return Rate(sum(map(len, work)), perf_counter() - start)
    finally:
        await store.close()


async def _timed_batches(
    batches: Sequence[Sequence[Any]],
    save: Callable[[Sequence[Any]], Awaitable[None]],
    warmup: int,
) -> Rate:
    """``save(batch)`` once per batch, the first ``warmup`` batches untimed."""
    for batch in batches[:warmup]:
        await save(batch)
    timed = batches[warmup:]
    start = perf_counter()
    for batch in timed:
        await save(batch)
    return Rate(sum(map(len, timed)), perf_counter() - start)


async def batched_message_saves(
    path: Path, sessions: Sequence[Row], batches: Sequence[Sequence[Row]], warmup: int
) -> Rate:
    """``save_messages(batch)`` once per batch (each batch one conversation); the first untimed."""
    store = await open_store(path)
    work = [[workload.to_llm_message(row) for row in batch] for batch in batches]
    try:
        await create_sessions(store, sessions)
        return await _timed_batches(work, store.save_messages, warmup)
    finally:
        await store.close()


async def batched_api_call_saves(path: Path, batches: Sequence[Sequence[Row]], warmup: int) -> Rate:
    """``save_api_calls(batch)`` once per batch; the first ``warmup`` batches untimed."""
    store = await open_store(path)
    work = [[workload.to_api_call(row) for row in batch] for batch in batches]
    try:
        return await _timed_batches(work, store.save_api_calls, warmup)
    finally:
        await store.close()


async def recent_history(
    path: Path, session_ids: Sequence[uuid.UUID], limit: int, warmup: int
) -> Latency:
    """``get_recent_messages(session, limit)`` latency over ``session_ids``, after a warm-up."""
    store = await open_store(path)
    position = 0

    async def read() -> None:
        nonlocal position
        messages = await store.get_recent_messages(session_ids[position % len(session_ids)], limit)
        position += 1
        if len(messages) != limit:
            raise AssertionError(f"get_recent_messages returned {len(messages)}, expected {limit}")

    try:
        await time_async_calls(read, warmup)
        position = 0
        return await time_async_calls(read, len(session_ids))
    finally:
        await store.close()


async def check_history(path: Path, session_id: uuid.UUID, expected: Sequence[uuid.UUID]) -> None:
    """Fail unless chatledger reads back ``expected`` (ids, oldest first) as the newest messages."""
    store = await open_store(path)
    try:
        got = [m.id for m in await store.get_recent_messages(session_id, len(expected))]
    finally:
        await store.close()
    if got != list(expected):
        raise AssertionError("the bulk-loaded history does not read back as chatledger wrote it")


async def statistics(
    path: Path, query: QueryFilter, repeats: int, warmup: int
) -> tuple[Latency, UsageStatistics]:
    """``get_statistics(query)`` latency over ``repeats`` runs, and its answer."""
    store = await open_store(path)
    answer: list[UsageStatistics] = []

    async def run() -> None:
        answer.append(await store.get_statistics(query))

    try:
        await time_async_calls(run, warmup)
        return await time_async_calls(run, repeats), answer[-1]
    finally:
        await store.close()


async def statistics_sql(path: Path, query: QueryFilter) -> list[str]:
    """The SELECT statements ``get_statistics(query)`` runs, parameters bound in."""
    with traced_connections() as statements:
        store = await open_store(path)
        try:
            await store.get_statistics(query)
            statements.clear()
            await store.get_statistics(query)
            ran = list(statements)
        finally:
            await store.close()
    return [sql for sql in ran if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
