"""LangChain's ``PostgresChatMessageHistory`` (langchain-postgres) on psycopg 3, async API.

Each history object works on one psycopg ``AsyncConnection``; ``aadd_messages``
runs ``executemany`` and commits. Its table holds a serial id, the session id
(indexed), the message as JSONB and a creation time; it has no "newest N"
read: ``aget_messages`` returns a session's whole history.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from benchmarks.langchain_history import stored_messages, to_message
from benchmarks.measure import Latency, Rate, callers_rate, time_cycling_reads
from benchmarks.raw_postgres import copy_rows
from benchmarks.workload import Row

if TYPE_CHECKING:
    import asyncpg
    import psycopg
    from langchain_postgres import PostgresChatMessageHistory

__all__ = ["SETTINGS", "TABLE", "bulk_load", "concurrent_saves", "history", "single_saves"]

TABLE = "langchain_chat_history"
SETTINGS = "psycopg 3 AsyncConnection per history object; executemany and commit per call"


def _history_class() -> type[PostgresChatMessageHistory]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_postgres import PostgresChatMessageHistory
    except ImportError as exc:
        raise ImportError(
            "the PostgreSQL peer benchmarks need langchain-postgres and psycopg: "
            "pip install -e '.[bench]'"
        ) from exc
    return PostgresChatMessageHistory


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    import psycopg

    return await psycopg.AsyncConnection.connect(url)


async def create_table(url: str) -> None:
    """Create the history table (and its session index) once, before anyone races to."""
    conn = await _connect(url)
    try:
        await _history_class().acreate_tables(conn, TABLE)
    finally:
        await conn.close()


async def single_saves(url: str, rows: Sequence[Row], warmup: Sequence[Row]) -> Rate:
    """``aadd_messages([message])`` once per message, one caller."""
    await create_table(url)
    conn = await _connect(url)
    try:
        chat = _history_class()(TABLE, str(rows[0]["chat_session_id"]), async_connection=conn)
        for row in warmup:
            await chat.aadd_messages([to_message(row)])
        messages = [to_message(row) for row in rows]
        start = perf_counter()
        for message in messages:
            await chat.aadd_messages([message])
        return Rate(len(messages), perf_counter() - start)
    finally:
        await conn.close()


async def concurrent_saves(url: str, conversations: Sequence[Sequence[Row]]) -> Rate:
    """One history (and connection) per conversation, all at once, one message per call."""
    await create_table(url)
    history_class = _history_class()
    conns = await asyncio.gather(*(_connect(url) for _ in conversations))
    try:
        chats = [
            history_class(TABLE, str(rows[0]["chat_session_id"]), async_connection=conn)
            for rows, conn in zip(conversations, conns, strict=True)
        ]
        work = [[(chat, to_message(row)) for row in rows]
                for chat, rows in zip(chats, conversations, strict=True)]  # fmt: skip
        return await callers_rate(work, lambda pair: pair[0].aadd_messages([pair[1]]))
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))


async def bulk_load(url: str, conn: asyncpg.Connection[Any], rows: Iterable[Row]) -> int:
    """Create the history table and ``COPY`` ``rows`` into it; return the rows loaded."""
    await create_table(url)
    return await copy_rows(conn, TABLE, ("session_id", "message"), stored_messages(rows))


async def history(
    url: str, session_ids: Sequence[str], expected: int, queries: int, warmup: int
) -> Latency:
    """``aget_messages()`` latency (a session's whole history), cycling over ``session_ids``."""
    conn = await _connect(url)
    history_class = _history_class()
    chats = [history_class(TABLE, session_id, async_connection=conn) for session_id in session_ids]
    try:
        return await time_cycling_reads(
            chats,
            lambda chat: chat.aget_messages(),
            expected=expected,
            who="PostgresChatMessageHistory",
            repeats=queries,
            warmup=warmup,
        )
    finally:
        await conn.close()
