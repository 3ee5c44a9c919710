"""The baseline's SQL, written once with ``?`` placeholders for sqlite3, asyncpg and asyncmy.

Every raw baseline runs these statements (in its driver's placeholder style)
against tables with chatledger's column names, so the raw figures of every
backend measure the same statements.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AGGREGATE",
    "API_CALL_COLUMNS",
    "MESSAGE_COLUMNS",
    "RECENT_MESSAGES",
    "SESSION_COLUMNS",
    "TOUCH_SESSION",
    "insert_sql",
    "placeholders",
]

SESSION_COLUMNS = (
    "id", "user_id", "agent_id", "tenant_id", "title", "metadata", "create_time", "update_time",
)  # fmt: skip
MESSAGE_COLUMNS = (
    "id", "parent_message_id", "chat_session_id", "agent_id", "user_id", "tenant_id", "role",
    "content", "create_time", "update_time",
)  # fmt: skip
API_CALL_COLUMNS = (
    "id", "chat_session_id", "agent_id", "user_id", "tenant_id", "request_message_id",
    "response_message_id", "model_name", "status", "error_message", "error_code",
    "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
    "completion_tokens_details", "total_price", "price_details", "latency_ms",
    "time_to_first_token_ms", "tokens_per_second", "api_response_id", "create_time",
    "update_time", "cached_tokens", "reasoning_tokens",
)  # fmt: skip

# What saving a message does besides the INSERT: move its session's update_time forward.
TOUCH_SESSION = "UPDATE entity_chat_session SET update_time = ? WHERE id = ?"

RECENT_MESSAGES = (
    f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM entity_llm_message WHERE chat_session_id = ? "
    "ORDER BY create_time DESC, id DESC LIMIT ?"
)

AGGREGATE = """SELECT COUNT(*),
    SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END),
    SUM(total_tokens), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_price),
    AVG(latency_ms), AVG(tokens_per_second)
FROM entity_llm_api_call"""


def insert_sql(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)``."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def placeholders(sql: str, style: str) -> str:
    """``sql`` with its ``?`` placeholders as ``$1, $2, ...`` (asyncpg) or ``%s`` (asyncmy)."""
    if style == "format":
        return sql.replace("%", "%%").replace("?", "%s")
    if style != "numeric":
        raise ValueError(f"unknown placeholder style {style!r}")
    parts = sql.split("?")
    return parts[0] + "".join(f"${number}{part}" for number, part in enumerate(parts[1:], 1))
