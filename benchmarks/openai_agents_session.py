"""The OpenAI Agents SDK's file-backed ``agents.memory.SQLiteSession`` on the same workload.

It runs each call in ``asyncio.to_thread`` on a thread-local connection, in
WAL mode with SQLite's default ``synchronous=FULL``, and commits every call.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, cast

from benchmarks.measure import Latency, Rate, time_cycling_reads
from benchmarks.workload import Row

if TYPE_CHECKING:
    from agents import TResponseInputItem
    from agents.memory import SQLiteSession

__all__ = [
    "SETTINGS",
    "batched_saves",
    "bulk_load",
    "concurrent_saves",
    "to_item",
    "recent_history",
    "single_saves",
]

SETTINGS = "WAL, synchronous=FULL (its defaults); one thread hop and one commit per call"


def _session(session_id: str, path: Path) -> SQLiteSession:
    try:
        from agents.memory import SQLiteSession
    except ImportError as exc:
        raise ImportError(
            "the peer benchmarks need openai-agents: pip install -e '.[bench]'"
        ) from exc
    return SQLiteSession(session_id, path)


def to_item(row: Row) -> TResponseInputItem:
    """The Agents SDK input item a message row stands for (an easy input message)."""
    item = {"role": row["role"].value, "content": row["content"]["text"]}
    return cast("TResponseInputItem", item)  # an EasyInputMessageParam


async def single_saves(path: Path, rows: Sequence[Row], warmup: Sequence[Row]) -> Rate:
    """``add_items([item])`` once per message, one caller."""
    session = _session(str(rows[0]["chat_session_id"]), path)
    try:
        for row in warmup:
            await session.add_items([to_item(row)])
        items = [to_item(row) for row in rows]
        start = perf_counter()
        for item in items:
            await session.add_items([item])
        return Rate(len(items), perf_counter() - start)
    finally:
        session.close()


async def concurrent_saves(path: Path, conversations: Sequence[Sequence[Row]]) -> Rate:
    """One caller per conversation, all at once, each adding its items one per call."""
    sessions = [_session(str(rows[0]["chat_session_id"]), path) for rows in conversations]
    work = [[to_item(row) for row in rows] for rows in conversations]

    async def caller(session: SQLiteSession, items: list[TResponseInputItem]) -> None:
        for item in items:
            await session.add_items([item])

    try:
        start = perf_counter()
        await asyncio.gather(*(caller(s, items) for s, items in zip(sessions, work, strict=True)))
        return Rate(sum(map(len, work)), perf_counter() - start)
    finally:
        for session in sessions:
            session.close()


async def batched_saves(path: Path, batches: Sequence[Sequence[Row]], warmup: int) -> Rate:
    """``add_items(batch)`` once per batch (each one conversation); the first ``warmup`` untimed."""
    sessions = [_session(str(batch[0]["chat_session_id"]), path) for batch in batches]
    work = [[to_item(row) for row in batch] for batch in batches]
    try:
        for session, items in zip(sessions[:warmup], work[:warmup], strict=True):
            await session.add_items(items)
        sessions, work = sessions[warmup:], work[warmup:]
        start = perf_counter()
        for session, items in zip(sessions, work, strict=True):
            await session.add_items(items)
        return Rate(sum(map(len, work)), perf_counter() - start)
    finally:
        for session in sessions:
            session.close()


def bulk_load(path: Path, session_ids: Sequence[str], rows: Iterable[Row]) -> int:
    """Create SQLiteSession's schema at ``path`` and insert ``rows`` with raw executemany."""
    _session(session_ids[0], path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    count = 0
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture: nothing to keep on a crash
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT OR IGNORE INTO agent_sessions (session_id) VALUES (?)",
            [(session_id,) for session_id in session_ids],
        )
        batch: list[tuple[str, str]] = []
        for row in rows:
            batch.append((str(row["chat_session_id"]), json.dumps(to_item(row))))
            if len(batch) == 50_000:
                conn.executemany(
                    "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", batch
                )
                count += len(batch)
                batch = []
        conn.executemany(
            "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", batch
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return count + len(batch)
    finally:
        conn.close()


async def recent_history(
    path: Path, session_ids: Sequence[str], limit: int, queries: int, warmup: int
) -> Latency:
    """``get_items(limit=limit)`` latency, cycling over ``session_ids`` (one object each)."""
    sessions = [_session(session_id, path) for session_id in session_ids]
    try:
        return await time_cycling_reads(
            sessions,
            lambda session: session.get_items(limit=limit),
            expected=limit,
            who="SQLiteSession",
            repeats=queries,
            warmup=max(warmup, len(sessions)),
        )
    finally:
        for session in sessions:
            session.close()
