"""The SQL store: every query written once, for every SQL backend.

:class:`SqlStore` implements the whole :class:`~chatledger.stores.base.PersistenceStore`
over a :class:`Database`, a thin driver adapter that runs statements and maps
driver errors to :mod:`chatledger.errors`. What differs between databases
lives in the :class:`~chatledger.stores.dialect.Dialect`; backend modules
(``sqlite.py``, ``postgres.py``, ``mysql.py``) hold only that and the driver.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from chatledger.entities import (
    Agent,
    AgentConfig,
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    Provider,
    QueryFilter,
    UsageBucket,
    UsageStatistics,
)
from chatledger.errors import (
    NotFoundError,
    PersistenceError,
    SerializationError,
)
from chatledger.stores.base import (
    DEFAULT_QUERY_LIMIT,
    Bucket,
    GroupKey,
    StoreLifecycle,
    check_breakdown_args,
)
from chatledger.stores.dialect import Dialect
from chatledger.stores.encoding import ensure_storable_text
from chatledger.stores.schema import (
    AGENT,
    API_CALL,
    MESSAGE,
    MIGRATIONS,
    PROVIDER,
    SCHEMA_VERSION_TABLE,
    SESSION,
    TOKEN_SUBSET_COLUMNS,
    Table,
)
from chatledger.stores.statistics import quantize_cost, sort_breakdown

__all__ = ["API_CALL_COLUMNS", "Database", "Read", "SqlStore", "Write"]

_E = TypeVar("_E")
_M = TypeVar("_M", LLMMessage, LLMApiCall, ChatSession, Provider, Agent)

logger = logging.getLogger(__name__)

_PERCENTILES = (("p50_latency_ms", 50), ("p95_latency_ms", 95), ("p99_latency_ms", 99))
_GROUP_COLUMNS: dict[str, str] = {
    "model": "model_name",
    "agent": "agent_id",
    "user": "user_id",
    "tenant": "tenant_id",
    "session": "chat_session_id",
    "status": "status",
}
_UUID_GROUPS = frozenset({"agent", "user", "tenant", "session"})
_DETAIL_FIELDS = ("prompt_tokens_details", "completion_tokens_details", "price_details")
API_CALL_COLUMNS = API_CALL.column_names + tuple(c.name for c in TOKEN_SUBSET_COLUMNS)


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of a write transaction: single parameters, or ``many`` rows of them."""

    sql: str
    params: Sequence[Any] = ()
    many: Sequence[Sequence[Any]] | None = None


@dataclass(frozen=True, slots=True)
class Read:
    """One query of a read; its rows come back as sequences in column order."""

    sql: str
    params: Sequence[Any] = ()


class Database(Protocol):
    """A driver adapter: runs statements, maps driver errors to chatledger's."""

    dialect: Dialect

    async def read(self, reads: Sequence[Read]) -> list[list[Sequence[Any]]]:
        """Run ``reads`` against one consistent snapshot; return each one's rows."""
        ...

    async def write(self, writes: Sequence[Write]) -> list[int]:
        """Run ``writes`` in one transaction, all or nothing; return each one's row count."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _insert(table: Table, columns: Sequence[str] | None = None) -> str:
    names = columns or table.column_names
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({_placeholders(len(names))})"


def _select(table: Table, columns: Sequence[str] | None = None) -> str:
    return f"SELECT {', '.join(columns or table.column_names)} FROM {table.name}"


class SqlStore(StoreLifecycle):
    """A :class:`~chatledger.stores.base.PersistenceStore` over any SQL :class:`Database`."""

    backend_name = "sql"

    def __init__(self, database: Database) -> None:
        """Wrap an open ``database`` whose schema is current (see :meth:`migrate`)."""
        self._db = database
        dialect = database.dialect
        self._dialect = dialect
        q = dialect.sql
        self._u = dialect.encode_uuid
        self._t = dialect.encode_time
        self._j = dialect.encode_json

        message_cols = MESSAGE.column_names
        self._q_insert_message = q(_insert(MESSAGE))
        self._q_touch_session = q(
            f"UPDATE {SESSION.name} SET update_time = ? WHERE id = ? AND update_time < ?"
        )
        select_message = _select(MESSAGE)
        self._q_get_message = q(f"{select_message} WHERE id = ?")
        self._q_session_messages = q(
            f"{select_message} WHERE chat_session_id = ? ORDER BY create_time, id"
        )
        self._q_session_messages_page = q(
            f"{select_message} WHERE chat_session_id = ? ORDER BY create_time, id LIMIT ? OFFSET ?"
        )
        self._q_recent_messages = q(
            f"{select_message} WHERE chat_session_id = ? ORDER BY create_time DESC, id DESC LIMIT ?"
        )
        self._q_delete_message = q(f"DELETE FROM {MESSAGE.name} WHERE id = ?")
        self._q_delete_session_messages = q(f"DELETE FROM {MESSAGE.name} WHERE chat_session_id = ?")
        self._q_count_messages = q(f"SELECT COUNT(*) FROM {MESSAGE.name} WHERE chat_session_id = ?")
        self._message_cols = message_cols

        self._q_insert_call = q(_insert(API_CALL, API_CALL_COLUMNS))
        self._q_get_call = q(f"{_select(API_CALL, API_CALL_COLUMNS)} WHERE id = ?")
        self._q_delete_call = q(f"DELETE FROM {API_CALL.name} WHERE id = ?")
        self._q_cleanup_calls = q(f"DELETE FROM {API_CALL.name} WHERE create_time < ?")

        self._q_insert_session = q(_insert(SESSION))
        self._q_get_session = q(f"{_select(SESSION)} WHERE id = ?")
        self._q_user_sessions = q(
            f"{_select(SESSION)} WHERE user_id = ? ORDER BY update_time DESC, id DESC"
        )
        self._q_update_session = q(
            f"UPDATE {SESSION.name} SET user_id = ?, agent_id = ?, tenant_id = ?, title = ?, "
            "metadata = ?, create_time = ?, update_time = ? WHERE id = ?"
        )
        self._q_delete_session = q(f"DELETE FROM {SESSION.name} WHERE id = ?")

        select_provider = _select(PROVIDER)
        self._q_get_provider = q(f"{select_provider} WHERE id = ?")
        self._q_provider_by_name = q(f"{select_provider} WHERE tenant_id = ? AND provider_name = ?")
        self._q_list_providers = q(
            f"{select_provider} WHERE tenant_id = ? ORDER BY provider_name, id"
        )
        self._q_enabled_providers = q(
            f"{select_provider} WHERE tenant_id = ? AND enabled = ? ORDER BY provider_name, id"
        )
        self._q_delete_provider = q(f"DELETE FROM {PROVIDER.name} WHERE id = ?")
        # MoFA's own SQLite tables have no foreign keys, so cascades are spelled out.
        self._q_delete_provider_agents = q(f"DELETE FROM {AGENT.name} WHERE provider_id = ?")

        select_agent = _select(AGENT)
        self._q_get_agent = q(f"{select_agent} WHERE id = ?")
        self._q_agent_by_code = q(f"{select_agent} WHERE agent_code = ?")
        self._q_agent_by_code_tenant = q(f"{select_agent} WHERE tenant_id = ? AND agent_code = ?")
        self._q_list_agents = q(
            f"{select_agent} WHERE tenant_id = ? ORDER BY agent_order, agent_code"
        )
        self._q_active_agents = q(
            f"{select_agent} WHERE tenant_id = ? AND agent_status = ? "
            "ORDER BY agent_order, agent_code"
        )
        self._q_delete_agent = q(f"DELETE FROM {AGENT.name} WHERE id = ?")

    # --- lifecycle ---------------------------------------------------------------------

    async def _release(self) -> None:
        """Release the database's connections and threads."""
        await self._db.close()

    def _open(self) -> Database:
        self._check_open()
        return self._db

    async def _read(self, sql: str, *params: Any) -> list[Sequence[Any]]:
        return (await self._open().read([Read(sql, params)]))[0]

    async def _write(self, *writes: Write) -> list[int]:
        return await self._open().write(writes)

    # --- schema ------------------------------------------------------------------------

    @staticmethod
    async def migrate(database: Database) -> int:
        """Bring ``database``'s schema to the newest version; return that version.

        Each migration runs in its own transaction together with the row that
        records it, so a migration that another process applied first is seen
        as done when that row exists.
        """
        dialect = database.dialect
        await database.write([Write(dialect.version_table(SCHEMA_VERSION_TABLE))])
        current = await SqlStore.schema_version(database)
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            record = Write(
                dialect.sql(
                    f"INSERT INTO {SCHEMA_VERSION_TABLE} (version, description, applied_at) "
                    "VALUES (?, ?, ?)"
                ),
                (migration.version, migration.description, dialect.encode_time(datetime.now(UTC))),
            )
            statements = [Write(sql) for sql in migration.statements(dialect)]
            try:
                await database.write([*statements, record])
            except PersistenceError:
                if await SqlStore.schema_version(database) >= migration.version:
                    continue  # another connection applied it meanwhile
                raise
            logger.info(
                "schema migrated to version %d: %s", migration.version, migration.description
            )
            current = migration.version
        return current

    @staticmethod
    async def schema_version(database: Database) -> int:
        """The newest migration recorded in ``database`` (0 for a new database)."""
        rows = (await database.read([Read(f"SELECT MAX(version) FROM {SCHEMA_VERSION_TABLE}")]))[0]
        return int(rows[0][0] or 0) if rows else 0

    # --- messages ----------------------------------------------------------------------

    def _message_row(self, message: LLMMessage) -> tuple[Any, ...]:
        u = self._u
        content = message.content.model_dump_json()
        if "\\u0000" in content:  # cheap screen; the walk below is exact
            ensure_storable_text(message.content.model_dump(), "content")
        parent = message.parent_message_id
        return (
            u(message.id),
            None if parent is None else u(parent),
            u(message.chat_session_id),
            u(message.agent_id),
            u(message.user_id),
            u(message.tenant_id),
            message.role.value,
            content,
            self._t(message.create_time),
            self._t(message.update_time),
        )

    def _rows_to_messages(self, rows: Sequence[Sequence[Any]]) -> list[LLMMessage]:
        cols = self._message_cols
        decode_json, decode_time = self._dialect.decode_json, self._dialect.decode_time
        messages: list[dict[str, Any]] = []
        for row in rows:
            data = dict(zip(cols, row, strict=True))
            data["content"] = decode_json(data["content"])
            data["create_time"] = decode_time(data["create_time"])
            data["update_time"] = decode_time(data["update_time"])
            messages.append(data)
        return _decode(LLMMessage, messages)

    async def save_message(self, message: LLMMessage) -> None:
        """Store one message and move its session's update_time forward."""
        row = _encode(self._message_row, message)
        await self._write(
            Write(self._q_insert_message, row),
            Write(self._q_touch_session, (row[9], row[2], row[9])),
        )

    async def save_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Store all of ``messages`` in one transaction, or none of them."""
        if not messages:
            return
        rows = [_encode(self._message_row, message) for message in messages]
        newest: dict[Any, tuple[datetime, Any]] = {}
        for message, row in zip(messages, rows, strict=True):
            seen = newest.get(row[2])
            if seen is None or message.update_time > seen[0]:
                newest[row[2]] = (message.update_time, row[9])
        touches = [(time, session, time) for session, (_, time) in newest.items()]
        await self._write(
            Write(self._q_insert_message, many=rows),
            Write(self._q_touch_session, many=touches),
        )

    async def get_message(self, message_id: uuid.UUID) -> LLMMessage | None:
        """The message with ``message_id``, or None."""
        rows = await self._read(self._q_get_message, self._u(message_id))
        return self._rows_to_messages(rows)[0] if rows else None

    async def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        """Every message of a session, oldest first."""
        return self._rows_to_messages(
            await self._read(self._q_session_messages, self._u(session_id))
        )

    async def get_session_messages_paginated(
        self, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[LLMMessage]:
        """A page of a session's messages, oldest first."""
        if offset < 0 or limit <= 0:
            return []
        rows = await self._read(self._q_session_messages_page, self._u(session_id), limit, offset)
        return self._rows_to_messages(rows)

    async def get_recent_messages(self, session_id: uuid.UUID, limit: int) -> list[LLMMessage]:
        """The newest ``limit`` messages of a session, returned oldest first."""
        if limit <= 0:
            return []
        rows = await self._read(self._q_recent_messages, self._u(session_id), limit)
        rows.reverse()
        return self._rows_to_messages(rows)

    async def delete_message(self, message_id: uuid.UUID) -> bool:
        """Delete one message; True when it existed."""
        (count,) = await self._write(Write(self._q_delete_message, (self._u(message_id),)))
        return count > 0

    async def delete_session_messages(self, session_id: uuid.UUID) -> int:
        """Delete a session's messages; return how many there were."""
        (count,) = await self._write(Write(self._q_delete_session_messages, (self._u(session_id),)))
        return count

    async def count_session_messages(self, session_id: uuid.UUID) -> int:
        """How many messages a session has."""
        rows = await self._read(self._q_count_messages, self._u(session_id))
        return int(rows[0][0])

    # --- API calls ---------------------------------------------------------------------

    def _call_row(self, call: LLMApiCall) -> tuple[Any, ...]:
        u, t, j = self._u, self._t, self._j
        for name in ("model_name", "error_message", "error_code", "api_response_id"):
            ensure_storable_text(getattr(call, name), name)
        prompt_details = call.prompt_tokens_details
        completion_details = call.completion_tokens_details
        details = []
        for name in _DETAIL_FIELDS:
            value = getattr(call, name)
            if value is not None:
                value = value.model_dump(mode="json")
                ensure_storable_text(value, name)
            details.append(value)
        return (
            u(call.id),
            u(call.chat_session_id),
            u(call.agent_id),
            u(call.user_id),
            u(call.tenant_id),
            u(call.request_message_id),
            u(call.response_message_id),
            call.model_name,
            call.status.value,
            call.error_message,
            call.error_code,
            call.prompt_tokens,
            call.completion_tokens,
            call.total_tokens,
            None if details[0] is None else j(details[0]),
            None if details[1] is None else j(details[1]),
            None if call.total_price is None else self._dialect.encode_money(call.total_price),
            None if details[2] is None else j(details[2]),
            call.latency_ms,
            call.time_to_first_token_ms,
            call.tokens_per_second,
            call.api_response_id,
            t(call.create_time),
            t(call.update_time),
            None if prompt_details is None else prompt_details.cached_tokens,
            None if completion_details is None else completion_details.reasoning_tokens,
        )

    def _rows_to_calls(self, rows: Sequence[Sequence[Any]]) -> list[LLMApiCall]:
        dialect = self._dialect
        calls: list[dict[str, Any]] = []
        for row in rows:
            data = dict(zip(API_CALL_COLUMNS, row, strict=True))
            del data["cached_tokens"], data["reasoning_tokens"]
            for name in ("prompt_tokens_details", "completion_tokens_details", "price_details"):
                data[name] = dialect.decode_json(data[name])
            data["total_price"] = dialect.decode_money(data["total_price"])
            data["create_time"] = dialect.decode_time(data["create_time"])
            data["update_time"] = dialect.decode_time(data["update_time"])
            calls.append(data)
        return _decode(LLMApiCall, calls)

    async def save_api_call(self, call: LLMApiCall) -> None:
        """Store one API-call record."""
        await self._write(Write(self._q_insert_call, _encode(self._call_row, call)))

    async def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store all of ``calls`` in one transaction, or none of them."""
        if calls:
            rows = [_encode(self._call_row, call) for call in calls]
            await self._write(Write(self._q_insert_call, many=rows))

    async def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The API call with ``call_id``, or None."""
        rows = await self._read(self._q_get_call, self._u(call_id))
        return self._rows_to_calls(rows)[0] if rows else None

    def _where(self, query: QueryFilter, *extra: str) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        u = self._u
        for column, value in (
            ("tenant_id", query.tenant_id),
            ("user_id", query.user_id),
            ("chat_session_id", query.session_id),
            ("agent_id", query.agent_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(u(value))
        if query.status is not None:
            clauses.append("status = ?")
            params.append(query.status.value)
        if query.model_name is not None:
            clauses.append("model_name = ?")
            params.append(query.model_name)
        if query.start_time is not None:
            clauses.append("create_time >= ?")
            params.append(self._t(query.start_time))
        if query.end_time is not None:
            clauses.append("create_time < ?")
            params.append(self._t(query.end_time))
        clauses.extend(extra)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Calls matching ``query``, newest first (limit 100 unless it says otherwise)."""
        limit = DEFAULT_QUERY_LIMIT if query.limit is None else query.limit
        if limit <= 0:
            return []
        where, params = self._where(query)
        sql = (
            f"{_select(API_CALL, API_CALL_COLUMNS)}{where} "
            "ORDER BY create_time DESC, id DESC LIMIT ? OFFSET ?"
        )
        rows = await self._read(self._dialect.sql(sql), *params, limit, query.offset or 0)
        return self._rows_to_calls(rows)

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over every call matching ``query``; offset and limit do not apply."""
        (bucket,) = await self._breakdown(query, (), None)
        return bucket.stats

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
    ) -> list[UsageBucket]:
        """Statistics per group of ``group_by`` keys and per UTC time bucket."""
        keys = check_breakdown_args(group_by, bucket)
        return await self._breakdown(query, keys, bucket)

    async def _breakdown(
        self, query: QueryFilter, keys: Sequence[GroupKey], bucket: Bucket | None
    ) -> list[UsageBucket]:
        """Aggregates and latency percentiles per group, both computed by the database."""
        dialect = self._dialect
        group_exprs = [_GROUP_COLUMNS[key] for key in keys]
        if bucket is not None:
            group_exprs.append(dialect.bucket_start("create_time", bucket))
        width = len(group_exprs)
        selected = ", ".join(f"{expr} AS g{i}" for i, expr in enumerate(group_exprs))
        group_by = f" GROUP BY {', '.join(group_exprs)}" if group_exprs else ""
        where, params = self._where(query)
        statuses = ", ".join(
            f"SUM(CASE WHEN status = '{status.value}' THEN 1 ELSE 0 END)"
            for status in ApiCallStatus
        )
        aggregates = (
            f"COUNT(*), {statuses}, SUM(total_tokens), SUM(prompt_tokens), "
            "SUM(completion_tokens), SUM(total_price), COUNT(total_price), AVG(latency_ms), "
            "AVG(tokens_per_second), AVG(time_to_first_token_ms), SUM(cached_tokens), "
            "SUM(reasoning_tokens)"
        )
        totals_sql = (
            f"SELECT {selected + ', ' if selected else ''}{aggregates} "
            f"FROM {API_CALL.name}{where}{group_by}"
        )

        p_where, p_params = self._where(query, "latency_ms IS NOT NULL")
        partition = f"PARTITION BY {', '.join(group_exprs)} " if group_exprs else ""
        outer_keys = ", ".join(f"g{i}" for i in range(width))
        percentiles = []
        for _, percent in _PERCENTILES:
            low = dialect.intdiv(f"(n - 1) * {percent}", "100")
            frac = f"(((n - 1) * {percent} - {low} * 100) / 100.0)"
            percentiles.append(
                f"SUM(CASE WHEN rn = {low} + 1 THEN v * (1 - {frac}) "
                f"WHEN rn = {low} + 2 THEN v * {frac} ELSE 0 END)"
            )
        percentile_sql = (
            f"SELECT {outer_keys + ', ' if outer_keys else ''}{', '.join(percentiles)} FROM ("
            f"SELECT {selected + ', ' if selected else ''}latency_ms AS v, "
            f"ROW_NUMBER() OVER ({partition}ORDER BY latency_ms) AS rn, "
            f"COUNT(*) OVER ({partition.strip()}) AS n "
            f"FROM {API_CALL.name}{p_where}) ranked"
            f"{' GROUP BY ' + outer_keys if outer_keys else ''}"
        )
        totals, percentile_rows = await self._open().read(
            [Read(dialect.sql(totals_sql), params), Read(dialect.sql(percentile_sql), p_params)]
        )
        by_key = {tuple(row[:width]): row[width:] for row in percentile_rows}
        buckets = []
        for row in totals:
            stats = self._statistics(row[width:], by_key.get(tuple(row[:width])))
            group_values = dict(zip(keys, row[: len(keys)], strict=True))
            buckets.append(
                UsageBucket(
                    keys={
                        key: self._group_value(key, value) for key, value in group_values.items()
                    },
                    bucket_start=None if bucket is None else dialect.decode_time(row[width - 1]),
                    stats=stats,
                )
            )
        return sort_breakdown(buckets, keys)

    def _group_value(self, key: str, value: Any) -> Any:
        if key in _UUID_GROUPS:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if key == "status":
            return ApiCallStatus(value)
        return value

    def _statistics(self, row: Sequence[Any], percentiles: Sequence[Any] | None) -> UsageStatistics:
        total_calls = int(row[0])
        status_counts = {
            status: int(count or 0) for status, count in zip(ApiCallStatus, row[1:6], strict=True)
        }
        (tokens, prompt, completion, cost, priced, latency, tps, ttft, cached, reasoning) = row[
            6:16
        ]
        total_cost = quantize_cost(self._dialect.decode_money(cost)) if priced else None
        values = dict.fromkeys((name for name, _ in _PERCENTILES), None)
        if percentiles is not None:
            values = {
                name: None if value is None else float(value)
                for (name, _), value in zip(_PERCENTILES, percentiles, strict=True)
            }
        return UsageStatistics(
            total_calls=total_calls,
            success_count=status_counts[ApiCallStatus.SUCCESS],
            failed_count=total_calls - status_counts[ApiCallStatus.SUCCESS],
            total_tokens=int(tokens or 0),
            total_prompt_tokens=int(prompt or 0),
            total_completion_tokens=int(completion or 0),
            total_cost=total_cost,
            avg_latency_ms=_float(latency),
            avg_tokens_per_second=_float(tps),
            status_counts=status_counts,
            total_cached_tokens=int(cached or 0),
            total_reasoning_tokens=int(reasoning or 0),
            avg_time_to_first_token_ms=_float(ttft),
            **values,
        )

    async def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one API-call record; True when it existed."""
        (count,) = await self._write(Write(self._q_delete_call, (self._u(call_id),)))
        return count > 0

    async def cleanup_old_records(self, before: datetime) -> int:
        """Delete API-call records with ``create_time < before``; return how many."""
        if before.tzinfo is None:
            raise ValueError("before must be a timezone-aware datetime (e.g. datetime.now(UTC))")
        (count,) = await self._write(Write(self._q_cleanup_calls, (self._t(before),)))
        return count

    # --- sessions ----------------------------------------------------------------------

    def _session_row(self, session: ChatSession) -> tuple[Any, ...]:
        ensure_storable_text(session.title, "title")
        ensure_storable_text(session.metadata, "metadata")
        u, t = self._u, self._t
        return (
            u(session.id),
            u(session.user_id),
            u(session.agent_id),
            u(session.tenant_id),
            session.title,
            self._j(session.metadata),
            t(session.create_time),
            t(session.update_time),
        )

    def _rows_to_sessions(self, rows: Sequence[Sequence[Any]]) -> list[ChatSession]:
        dialect = self._dialect
        sessions: list[dict[str, Any]] = []
        for row in rows:
            data = dict(zip(SESSION.column_names, row, strict=True))
            data["metadata"] = dialect.decode_json(data["metadata"]) or {}
            data["create_time"] = dialect.decode_time(data["create_time"])
            data["update_time"] = dialect.decode_time(data["update_time"])
            sessions.append(data)
        return _decode(ChatSession, sessions)

    async def create_session(self, session: ChatSession) -> None:
        """Store a new session."""
        await self._write(Write(self._q_insert_session, _encode(self._session_row, session)))

    async def get_session(self, session_id: uuid.UUID) -> ChatSession | None:
        """The session with ``session_id``, or None."""
        rows = await self._read(self._q_get_session, self._u(session_id))
        return self._rows_to_sessions(rows)[0] if rows else None

    async def get_user_sessions(self, user_id: uuid.UUID) -> list[ChatSession]:
        """A user's sessions, most recently updated first."""
        return self._rows_to_sessions(await self._read(self._q_user_sessions, self._u(user_id)))

    async def update_session(self, session: ChatSession) -> None:
        """Replace a stored session; NotFoundError when it does not exist."""
        row = _encode(self._session_row, session)
        (count,) = await self._write(Write(self._q_update_session, (*row[1:], row[0])))
        if count == 0:
            raise NotFoundError(f"session {session.id} does not exist")

    async def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete a session and its messages (API calls stay); True when it existed."""
        key = self._u(session_id)
        _, count = await self._write(
            Write(self._q_delete_session_messages, (key,)), Write(self._q_delete_session, (key,))
        )
        return count > 0

    # --- providers ---------------------------------------------------------------------

    def _provider_row(self, provider: Provider) -> tuple[Any, ...]:
        secret = provider.api_key.get_secret_value()
        for name in ("provider_name", "provider_type", "api_base"):
            ensure_storable_text(getattr(provider, name), name)
        ensure_storable_text(secret, "api_key")
        u, t = self._u, self._t
        return (
            u(provider.id),
            u(provider.tenant_id),
            provider.provider_name,
            provider.provider_type,
            provider.api_base,
            secret,
            self._dialect.encode_bool(provider.enabled),
            t(provider.create_time),
            t(provider.update_time),
        )

    def _rows_to_providers(self, rows: Sequence[Sequence[Any]]) -> list[Provider]:
        decode_time = self._dialect.decode_time
        providers: list[dict[str, Any]] = []
        for row in rows:
            data = dict(zip(PROVIDER.column_names, row, strict=True))
            data["enabled"] = bool(data["enabled"])
            data["create_time"] = decode_time(data["create_time"])
            data["update_time"] = decode_time(data["update_time"])
            providers.append(data)
        return _decode(Provider, providers)

    async def _upsert(self, table: Table, row: tuple[Any, ...]) -> None:
        await self._write(*(Write(sql, params) for sql, params in self._dialect.upsert(table, row)))

    async def save_provider(self, provider: Provider) -> None:
        """Insert or replace a provider."""
        await self._upsert(PROVIDER, _encode(self._provider_row, provider))

    async def get_provider(self, provider_id: uuid.UUID) -> Provider | None:
        """The provider with ``provider_id``, or None."""
        rows = await self._read(self._q_get_provider, self._u(provider_id))
        return self._rows_to_providers(rows)[0] if rows else None

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        """A tenant's provider called ``name``, or None."""
        rows = await self._read(self._q_provider_by_name, self._u(tenant_id), name)
        return self._rows_to_providers(rows)[0] if rows else None

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's providers, by name."""
        return self._rows_to_providers(await self._read(self._q_list_providers, self._u(tenant_id)))

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's enabled providers, by name."""
        rows = await self._read(
            self._q_enabled_providers, self._u(tenant_id), self._dialect.encode_bool(True)
        )
        return self._rows_to_providers(rows)

    async def delete_provider(self, provider_id: uuid.UUID) -> bool:
        """Delete a provider and its agents; True when it existed."""
        key = self._u(provider_id)
        _, count = await self._write(
            Write(self._q_delete_provider_agents, (key,)), Write(self._q_delete_provider, (key,))
        )
        return count > 0

    # --- agents ------------------------------------------------------------------------

    def _agent_row(self, agent: Agent) -> tuple[Any, ...]:
        for name in ("agent_code", "agent_name", "model_name", "response_format", "system_prompt"):
            ensure_storable_text(getattr(agent, name), name)
        ensure_storable_text(agent.custom_params, "custom_params")
        ensure_storable_text(agent.thinking, "thinking")
        u, t, j, b = self._u, self._t, self._j, self._dialect.encode_bool
        return (
            u(agent.id),
            u(agent.tenant_id),
            agent.agent_code,
            agent.agent_name,
            agent.agent_order,
            b(agent.agent_status),
            agent.context_limit,
            None if agent.custom_params is None else j(agent.custom_params),
            agent.max_completion_tokens,
            agent.model_name,
            u(agent.provider_id),
            agent.response_format,
            agent.system_prompt,
            agent.temperature,
            None if agent.stream is None else b(agent.stream),
            None if agent.thinking is None else j(agent.thinking),
            t(agent.create_time),
            t(agent.update_time),
        )

    def _rows_to_agents(self, rows: Sequence[Sequence[Any]]) -> list[Agent]:
        dialect = self._dialect
        agents: list[dict[str, Any]] = []
        for row in rows:
            data = dict(zip(AGENT.column_names, row, strict=True))
            data["agent_status"] = bool(data["agent_status"])
            if data["stream"] is not None:
                data["stream"] = bool(data["stream"])
            data["custom_params"] = dialect.decode_json(data["custom_params"])
            data["thinking"] = dialect.decode_json(data["thinking"])
            data["create_time"] = dialect.decode_time(data["create_time"])
            data["update_time"] = dialect.decode_time(data["update_time"])
            agents.append(data)
        return _decode(Agent, agents)

    async def save_agent(self, agent: Agent) -> None:
        """Insert or replace an agent; its provider must exist."""
        await self._upsert(AGENT, _encode(self._agent_row, agent))

    async def _one_agent(self, sql: str, *params: Any) -> Agent | None:
        rows = await self._read(sql, *params)
        return self._rows_to_agents(rows)[0] if rows else None

    async def get_agent(self, agent_id: uuid.UUID) -> Agent | None:
        """The agent with ``agent_id``, or None."""
        return await self._one_agent(self._q_get_agent, self._u(agent_id))

    async def get_agent_by_code(self, code: str) -> Agent | None:
        """The agent with ``code``, or None."""
        return await self._one_agent(self._q_agent_by_code, code)

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        """A tenant's agent with ``code``, or None."""
        return await self._one_agent(self._q_agent_by_code_tenant, self._u(tenant_id), code)

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's agents, by order then code."""
        return self._rows_to_agents(await self._read(self._q_list_agents, self._u(tenant_id)))

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's active agents, by order then code."""
        rows = await self._read(
            self._q_active_agents, self._u(tenant_id), self._dialect.encode_bool(True)
        )
        return self._rows_to_agents(rows)

    async def _with_provider(self, agent: Agent | None) -> AgentConfig | None:
        if agent is None:
            return None
        provider = await self.get_provider(agent.provider_id)
        return None if provider is None else AgentConfig(provider=provider, agent=agent)

    async def get_agent_with_provider(self, agent_id: uuid.UUID) -> AgentConfig | None:
        """An agent and its provider, or None."""
        return await self._with_provider(await self.get_agent(agent_id))

    async def get_agent_by_code_with_provider(self, code: str) -> AgentConfig | None:
        """The agent with ``code`` and its provider, or None."""
        return await self._with_provider(await self.get_agent_by_code(code))

    async def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID, code: str
    ) -> AgentConfig | None:
        """A tenant's agent with ``code`` and its provider, or None."""
        return await self._with_provider(await self.get_agent_by_code_and_tenant(tenant_id, code))

    async def delete_agent(self, agent_id: uuid.UUID) -> bool:
        """Delete an agent; True when it existed."""
        (count,) = await self._write(Write(self._q_delete_agent, (self._u(agent_id),)))
        return count > 0


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _encode(encode: Callable[[_E], tuple[Any, ...]], entity: _E) -> tuple[Any, ...]:
    """Run an entity encoder, turning what it cannot encode into SerializationError."""
    try:
        return encode(entity)
    except (UnicodeError, ValueError) as exc:
        raise SerializationError(f"cannot store {type(entity).__name__}: {exc}") from exc


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _decode(model: type[_M], rows: list[dict[str, Any]]) -> list[_M]:
    """Build entities from rows in one validation pass, naming the row that cannot be read."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    try:
        result: list[_M] = adapter.validate_python(rows)
    except ValidationError as exc:
        index = exc.errors()[0]["loc"][0]
        row_id = rows[index].get("id") if isinstance(index, int) else None
        raise SerializationError(
            f"row {row_id!r} of {model.__name__} cannot be read: {exc}"
        ) from exc
    return result
