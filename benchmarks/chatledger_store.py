"""chatledger's stores at work on any backend: saves one at a time, concurrent, batched; reads.

Functions that open their own store take an ``Opener``: an async callable
that opens the store under test (a SQLite file, a PostgreSQL or MariaDB pool
of a given size). What is specific to one backend lives in its own module
(``chatledger_sqlite``; the servers' openers in ``server_writes``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING

from benchmarks import workload
from benchmarks.measure import (
    Latency,
    Rate,
    callers_rate,
    time_async_calls,
    time_cycling_reads,
    timed_batches,
)
from benchmarks.workload import Row
from chatledger.entities import LLMMessage, QueryFilter, UsageStatistics

if TYPE_CHECKING:
    from chatledger.stores.base import PersistenceStore

__all__ = [
    "Opener",
    "batched_api_call_saves",
    "batched_message_saves",
    "callers_save",
    "check_history",
    "concurrent_saves",
    "create_sessions",
    "recent_history",
    "single_saves",
    "statistics",
]

Opener = Callable[[], Awaitable["PersistenceStore"]]
"""Opens the store under test; the caller closes it."""


async def create_sessions(store: PersistenceStore, sessions: Sequence[Row]) -> None:
    """Create the sessions that messages will be saved into."""
    for session in sessions:
        await store.create_session(workload.to_chat_session(session))


async def single_saves(store: PersistenceStore, messages: Sequence[LLMMessage]) -> Rate:
    """``await save_message`` once per message, one caller."""
    start = perf_counter()
    for message in messages:
        await store.save_message(message)
    return Rate(len(messages), perf_counter() - start)


async def callers_save(store: PersistenceStore, work: Sequence[Sequence[LLMMessage]]) -> Rate:
    """One caller per list of messages, all at once (``asyncio.gather``), one message per call."""
    return await callers_rate(work, store.save_message)


async def concurrent_saves(
    open_store: Opener, sessions: Sequence[Row], conversations: Sequence[Sequence[Row]]
) -> Rate:
    """Create ``sessions``, then one caller per conversation, all at once, one message per call."""
    store = await open_store()
    work = [[workload.to_llm_message(row) for row in rows] for rows in conversations]
    try:
        await create_sessions(store, sessions)
        return await callers_save(store, work)
    finally:
        await store.close()


async def batched_message_saves(
    open_store: Opener, sessions: Sequence[Row], batches: Sequence[Sequence[Row]], warmup: int
) -> Rate:
    """``save_messages(batch)`` once per batch (each batch one conversation); the first untimed."""
    store = await open_store()
    work = [[workload.to_llm_message(row) for row in batch] for batch in batches]
    try:
        await create_sessions(store, sessions)
        return await timed_batches(work, store.save_messages, warmup)
    finally:
        await store.close()


async def batched_api_call_saves(
    open_store: Opener, batches: Sequence[Sequence[Row]], warmup: int
) -> Rate:
    """``save_api_calls(batch)`` once per batch; the first ``warmup`` batches untimed."""
    store = await open_store()
    work = [[workload.to_api_call(row) for row in batch] for batch in batches]
    try:
        return await timed_batches(work, store.save_api_calls, warmup)
    finally:
        await store.close()


async def recent_history(
    open_store: Opener, session_ids: Sequence[uuid.UUID], limit: int, warmup: int
) -> Latency:
    """``get_recent_messages(session, limit)`` latency over ``session_ids``, after a warm-up."""
    store = await open_store()
    try:
        return await time_cycling_reads(
            session_ids,
            lambda session_id: store.get_recent_messages(session_id, limit),
            expected=limit,
            who="get_recent_messages",
            repeats=len(session_ids),
            warmup=warmup,
        )
    finally:
        await store.close()


async def check_history(
    open_store: Opener, session_id: uuid.UUID, expected: Sequence[uuid.UUID]
) -> None:
    """Fail unless chatledger reads back ``expected`` (ids, oldest first) as the newest messages."""
    store = await open_store()
    try:
        got = [m.id for m in await store.get_recent_messages(session_id, len(expected))]
    finally:
        await store.close()
    if got != list(expected):
        raise AssertionError("the bulk-loaded history does not read back as chatledger wrote it")


async def statistics(
    open_store: Opener, query: QueryFilter, repeats: int, warmup: int
) -> tuple[Latency, UsageStatistics]:
    """``get_statistics(query)`` latency over ``repeats`` runs, and its answer."""
    store = await open_store()
    answer: list[UsageStatistics] = []

    async def run() -> None:
        answer.append(await store.get_statistics(query))

    try:
        await time_async_calls(run, warmup)
        return await time_async_calls(run, repeats), answer[-1]
    finally:
        await store.close()
