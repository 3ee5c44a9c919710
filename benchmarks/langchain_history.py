"""LangChain's ``SQLChatMessageHistory`` (langchain-community) on a SQLite file, async API.

It runs on SQLAlchemy's async engine over aiosqlite with the driver's
defaults: rollback journal (``journal_mode=DELETE``), ``synchronous=FULL``,
an ORM session and a commit per call. Its table has no index on
``session_id`` and it has no "newest N" read: ``aget_messages`` returns a
session's whole history.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from benchmarks.measure import Latency, Rate, time_cycling_reads
from benchmarks.workload import Row

if TYPE_CHECKING:
    from langchain_community.chat_message_histories import SQLChatMessageHistory
    from langchain_core.messages import BaseMessage
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "SETTINGS",
    "batched_saves",
    "bulk_load",
    "concurrent_saves",
    "history",
    "single_saves",
    "stored_messages",
    "to_message",
]

SETTINGS = (
    "async API on aiosqlite; journal=DELETE, synchronous=FULL (driver defaults); "
    "ORM session and commit per call"
)


def _history_class() -> type[SQLChatMessageHistory]:
    try:
        with warnings.catch_warnings():
            # langchain-community warns on import that it is being sunset.
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_community.chat_message_histories import SQLChatMessageHistory
    except ImportError as exc:
        raise ImportError(
            "the peer benchmarks need langchain-community, sqlalchemy and aiosqlite: "
            "pip install -e '.[bench]'"
        ) from exc
    return SQLChatMessageHistory


def _engine(path: Path) -> AsyncEngine:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(f"sqlite+aiosqlite:///{path}")


def to_message(row: Row) -> BaseMessage:
    """The LangChain message a message row stands for (human or AI)."""
    from langchain_core.messages import AIMessage, HumanMessage

    kind = HumanMessage if row["role"].value == "user" else AIMessage
    return kind(content=row["content"]["text"])


async def single_saves(path: Path, rows: Sequence[Row], warmup: Sequence[Row]) -> Rate:
    """``aadd_message`` once per message, one caller."""
    engine = _engine(path)
    try:
        chat = _history_class()(str(rows[0]["chat_session_id"]), connection=engine)
        for row in warmup:
            await chat.aadd_message(to_message(row))
        messages = [to_message(row) for row in rows]
        start = perf_counter()
        for message in messages:
            await chat.aadd_message(message)
        return Rate(len(messages), perf_counter() - start)
    finally:
        await engine.dispose()


async def concurrent_saves(path: Path, conversations: Sequence[Sequence[Row]]) -> Rate:
    """One history per conversation on one shared engine, all at once, one message per call."""
    engine = _engine(path)
    history_class = _history_class()
    chats = [
        history_class(str(rows[0]["chat_session_id"]), connection=engine) for rows in conversations
    ]
    work = [[to_message(row) for row in rows] for rows in conversations]

    async def caller(chat: SQLChatMessageHistory, messages: list[BaseMessage]) -> None:
        for message in messages:
            await chat.aadd_message(message)

    try:
        await chats[0].aget_messages()  # creates the table before the callers race to
        start = perf_counter()
        await asyncio.gather(*(caller(c, m) for c, m in zip(chats, work, strict=True)))
        return Rate(sum(map(len, work)), perf_counter() - start)
    finally:
        await engine.dispose()


async def batched_saves(path: Path, batches: Sequence[Sequence[Row]], warmup: int) -> Rate:
    """``aadd_messages(batch)`` once per batch (each one conversation); the first untimed."""
    engine = _engine(path)
    history_class = _history_class()
    chats = [
        history_class(str(batch[0]["chat_session_id"]), connection=engine) for batch in batches
    ]
    work = [[to_message(row) for row in batch] for batch in batches]
    try:
        for chat, messages in zip(chats[:warmup], work[:warmup], strict=True):
            await chat.aadd_messages(messages)
        chats, work = chats[warmup:], work[warmup:]
        start = perf_counter()
        for chat, messages in zip(chats, work, strict=True):
            await chat.aadd_messages(messages)
        return Rate(sum(map(len, work)), perf_counter() - start)
    finally:
        await engine.dispose()


def bulk_load(path: Path, rows: Iterable[Row]) -> int:
    """Create the history table at ``path`` and insert ``rows`` with raw executemany."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{path}")
    try:
        _history_class()("schema", connection=engine)  # creates message_store
    finally:
        engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    count = 0
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture: nothing to keep on a crash
        conn.execute("BEGIN")
        batch: list[tuple[str, str]] = []
        for stored in stored_messages(rows):
            batch.append(stored)
            if len(batch) == 50_000:
                conn.executemany(
                    "INSERT INTO message_store (session_id, message) VALUES (?, ?)", batch
                )
                count += len(batch)
                batch = []
        conn.executemany("INSERT INTO message_store (session_id, message) VALUES (?, ?)", batch)
        conn.execute("COMMIT")
        return count + len(batch)
    finally:
        conn.close()


def stored_messages(rows: Iterable[Row]) -> Iterator[tuple[str, str]]:
    """``(session id, message JSON)`` of each row, as LangChain's histories store them."""
    from langchain_core.messages import message_to_dict

    # message_to_dict once per role; each row only swaps in its text.
    templates = {
        role: message_to_dict(to_message({"role": role_enum, "content": {"text": ""}}))
        for role, role_enum in _roles()
    }
    for row in rows:
        template = templates[row["role"].value]
        stored = {
            "type": template["type"],
            "data": {**template["data"], "content": row["content"]["text"]},
        }
        yield str(row["chat_session_id"]), json.dumps(stored)


def _roles() -> list[tuple[str, Any]]:
    from chatledger.entities import MessageRole

    return [(role.value, role) for role in (MessageRole.USER, MessageRole.ASSISTANT)]


async def history(
    path: Path, session_ids: Sequence[str], expected: int, queries: int, warmup: int
) -> Latency:
    """``aget_messages()`` latency (a session's whole history), cycling over ``session_ids``."""
    engine = _engine(path)
    history_class = _history_class()
    chats = [history_class(session_id, connection=engine) for session_id in session_ids]
    try:
        return await time_cycling_reads(
            chats,
            lambda chat: chat.aget_messages(),
            expected=expected,
            who="SQLChatMessageHistory",
            repeats=queries,
            warmup=warmup,
        )
    finally:
        await engine.dispose()
