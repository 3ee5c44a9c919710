"""The OpenAI Agents SDK's ``SQLAlchemySession`` on PostgreSQL, over SQLAlchemy's asyncpg dialect.

Each ``add_items`` call is one ORM session and one transaction: it makes sure
the session row exists (and locks it ``FOR UPDATE``), inserts the items and
moves the session's ``updated_at``. Its engine's pool holds as many
connections as there are callers. ``get_items(limit)`` reads the newest items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from benchmarks.measure import Latency, Rate, callers_rate, time_cycling_reads
from benchmarks.openai_agents_session import to_item
from benchmarks.raw_postgres import copy_rows
from benchmarks.workload import Row

if TYPE_CHECKING:
    import asyncpg
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SETTINGS", "bulk_load", "concurrent_saves", "recent_history", "single_saves"]

SETTINGS = (
    "SQLAlchemy async engine on asyncpg, one pooled connection per caller; per call an ORM "
    "session, a SELECT ... FOR UPDATE of the session row, the INSERT and an UPDATE, one commit"
)


def _engine(url: str, connections: int) -> AsyncEngine:
    from sqlalchemy.ext.asyncio import create_async_engine

    dsn = "postgresql+asyncpg://" + url.split("://", 1)[1]
    return create_async_engine(dsn, pool_size=connections, max_overflow=0)


def _session(session_id: str, engine: AsyncEngine) -> SQLAlchemySession:
    try:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
    except ImportError as exc:
        raise ImportError(
            "the PostgreSQL peer benchmarks need openai-agents and sqlalchemy[asyncio]: "
            "pip install -e '.[bench]'"
        ) from exc
    return SQLAlchemySession(session_id, engine=engine, create_tables=True)


async def _create_tables(engine: AsyncEngine) -> None:
    await _session("schema", engine).get_items()  # creates its tables on first use


async def single_saves(url: str, rows: Sequence[Row], warmup: Sequence[Row]) -> Rate:
    """``add_items([item])`` once per message, one caller."""
    engine = _engine(url, 1)
    try:
        await _create_tables(engine)
        session = _session(str(rows[0]["chat_session_id"]), engine)
        for row in warmup:
            await session.add_items([to_item(row)])
        items = [to_item(row) for row in rows]
        start = perf_counter()
        for item in items:
            await session.add_items([item])
        return Rate(len(items), perf_counter() - start)
    finally:
        await engine.dispose()


async def concurrent_saves(url: str, conversations: Sequence[Sequence[Row]]) -> Rate:
    """One session object per conversation on one engine, all at once, one item per call."""
    engine = _engine(url, len(conversations))
    try:
        await _create_tables(engine)
        work = [
            [(session, to_item(row)) for row in rows]
            for session, rows in (
                (_session(str(rows[0]["chat_session_id"]), engine), rows) for rows in conversations
            )
        ]
        return await callers_rate(work, lambda pair: pair[0].add_items([pair[1]]))
    finally:
        await engine.dispose()


async def bulk_load(
    url: str, conn: asyncpg.Connection[Any], session_ids: Sequence[str], rows: Iterable[Row]
) -> int:
    """Create SQLAlchemySession's tables and ``COPY`` the sessions and ``rows`` into them."""
    engine = _engine(url, 1)
    try:
        await _create_tables(engine)
    finally:
        await engine.dispose()
    await copy_rows(conn, "agent_sessions", ("session_id",), ((s,) for s in session_ids))
    return await copy_rows(
        conn,
        "agent_messages",
        ("session_id", "message_data"),
        ((str(row["chat_session_id"]), json.dumps(to_item(row))) for row in rows),
    )


async def recent_history(
    url: str, session_ids: Sequence[str], limit: int, queries: int, warmup: int
) -> Latency:
    """``get_items(limit=limit)`` latency, cycling over ``session_ids`` (one object each)."""
    engine = _engine(url, 1)
    sessions = [_session(session_id, engine) for session_id in session_ids]
    try:
        return await time_cycling_reads(
            sessions,
            lambda session: session.get_items(limit=limit),
            expected=limit,
            who="SQLAlchemySession",
            repeats=queries,
            warmup=warmup,
        )
    finally:
        await engine.dispose()
