"""The baseline: the same work done with the standard library's ``sqlite3`` and nothing else.

Writes go to tables of their own with chatledger's columns, a primary key
and one secondary index each (chatledger keeps more: see ``INDEXES_NOTE``).
Reads run against the very database file chatledger built, with the same
WAL journal and ``synchronous=FULL``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks.measure import Rate
from benchmarks.raw_sql import (
    AGGREGATE,
    MESSAGE_COLUMNS,
    RECENT_MESSAGES,
    TOUCH_SESSION,
    insert_sql,
)
from benchmarks.workload import Row

__all__ = [
    "INDEXES_NOTE",
    "aggregate",
    "batched_inserts",
    "connect",
    "create_tables",
    "encode_api_call",
    "encode_message",
    "encode_session",
    "per_row_commits",
    "recent_messages",
]

INDEXES_NOTE = (
    "raw tables: primary key + one index each (messages: chat_session_id, create_time; "
    "API calls: user_id, create_time)"
)

_DDL = (
    """CREATE TABLE entity_chat_session (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL, agent_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL, title TEXT, metadata TEXT,
        create_time TEXT NOT NULL, update_time TEXT NOT NULL)""",
    """CREATE TABLE entity_llm_message (
        id TEXT PRIMARY KEY, parent_message_id TEXT,
        chat_session_id TEXT NOT NULL REFERENCES entity_chat_session(id) ON DELETE CASCADE,
        agent_id TEXT NOT NULL, user_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
        role TEXT NOT NULL, content TEXT NOT NULL,
        create_time TEXT NOT NULL, update_time TEXT NOT NULL)""",
    "CREATE INDEX idx_raw_message_session ON entity_llm_message (chat_session_id, create_time)",
    """CREATE TABLE entity_llm_api_call (
        id TEXT PRIMARY KEY, chat_session_id TEXT NOT NULL, agent_id TEXT NOT NULL,
        user_id TEXT NOT NULL, tenant_id TEXT NOT NULL, request_message_id TEXT NOT NULL,
        response_message_id TEXT NOT NULL, model_name TEXT NOT NULL, status TEXT NOT NULL,
        error_message TEXT, error_code TEXT, prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
        prompt_tokens_details TEXT, completion_tokens_details TEXT, total_price REAL,
        price_details TEXT, latency_ms INTEGER, time_to_first_token_ms INTEGER,
        tokens_per_second REAL, api_response_id TEXT, create_time TEXT NOT NULL,
        update_time TEXT NOT NULL, cached_tokens INTEGER, reasoning_tokens INTEGER)""",
    "CREATE INDEX idx_raw_api_call_user ON entity_llm_api_call (user_id, create_time)",
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode with WAL, ``synchronous=FULL`` and foreign keys on."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create_tables(conn: sqlite3.Connection) -> None:
    """Create the baseline's session, message and API-call tables."""
    for statement in _DDL:
        conn.execute(statement)


def _uuid(value: Any) -> str | None:
    return None if value is None else str(value)


def _time(value: datetime) -> str:
    return value.isoformat()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def encode_session(row: Row) -> tuple[Any, ...]:
    """A session row as sqlite3 parameters."""
    return (
        str(row["id"]), str(row["user_id"]), str(row["agent_id"]), str(row["tenant_id"]),
        row["title"], _json(row["metadata"]), _time(row["create_time"]), _time(row["update_time"]),
    )  # fmt: skip


def encode_message(row: Row) -> tuple[Any, ...]:
    """A message row as sqlite3 parameters."""
    return (
        str(row["id"]), _uuid(row["parent_message_id"]), str(row["chat_session_id"]),
        str(row["agent_id"]), str(row["user_id"]), str(row["tenant_id"]), row["role"].value,
        _json(row["content"]), _time(row["create_time"]), _time(row["update_time"]),
    )  # fmt: skip


def encode_api_call(row: Row) -> tuple[Any, ...]:
    """An API-call row as sqlite3 parameters."""
    price = row["total_price"]
    return (
        str(row["id"]), str(row["chat_session_id"]), str(row["agent_id"]), str(row["user_id"]),
        str(row["tenant_id"]), str(row["request_message_id"]), str(row["response_message_id"]),
        row["model_name"], row["status"].value, row["error_message"], row["error_code"],
        row["prompt_tokens"], row["completion_tokens"], row["total_tokens"],
        _json(row["prompt_tokens_details"]), _json(row["completion_tokens_details"]),
        None if price is None else float(price), _json(row["price_details"]), row["latency_ms"],
        row["time_to_first_token_ms"], row["tokens_per_second"], row["api_response_id"],
        _time(row["create_time"]), _time(row["update_time"]), row["cached_tokens"],
        row["reasoning_tokens"],
    )  # fmt: skip


_INSERT_MESSAGE = insert_sql("entity_llm_message", MESSAGE_COLUMNS)


def per_row_commits(conn: sqlite3.Connection, rows: Sequence[Row]) -> Rate:
    """Save messages one transaction each: INSERT, move the session's update_time, COMMIT."""
    start = perf_counter()
    for row in rows:
        params = encode_message(row)
        conn.execute("BEGIN")
        conn.execute(_INSERT_MESSAGE, params)
        conn.execute(TOUCH_SESSION, (params[8], params[2]))
        conn.execute("COMMIT")
    return Rate(len(rows), perf_counter() - start)


def batched_inserts(
    conn: sqlite3.Connection,
    sql: str,
    batches: Iterable[Sequence[Row]],
    encode: Callable[[Row], tuple[Any, ...]],
    *,
    touch_session: bool,
) -> Rate:
    """Save each batch with one ``executemany`` and one COMMIT (and one session update)."""
    rows = 0
    start = perf_counter()
    for batch in batches:
        params = [encode(row) for row in batch]
        conn.execute("BEGIN")
        conn.executemany(sql, params)
        if touch_session:
            conn.execute(TOUCH_SESSION, (params[-1][8], params[-1][2]))
        conn.execute("COMMIT")
        rows += len(params)
    return Rate(rows, perf_counter() - start)


def recent_messages(
    conn: sqlite3.Connection, session_param: Any, limit: int
) -> list[tuple[Any, ...]]:
    """A session's newest ``limit`` messages, oldest first, with their content decoded."""
    rows = conn.execute(RECENT_MESSAGES, (session_param, limit)).fetchall()
    rows.reverse()
    return [(*row[:7], json.loads(row[7]), *row[8:]) for row in rows]


def aggregate(
    conn: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = ()
) -> tuple[Any, ...]:
    """The plain usage aggregate (counts, sums, averages; no percentiles) over ``where``."""
    return tuple(conn.execute(AGGREGATE + where, params).fetchone())
