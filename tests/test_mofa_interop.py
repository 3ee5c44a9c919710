"""A database shared with a MoFA service: MoFA's tables, MoFA's rows, read and written by both.

The DDL below is MoFA's column layout for the five tables, written here from
its ``scripts/sql/migrations/postgres_init.sql`` and ``mysql_init.sql`` (the
columns, types, keys and checks; not its UUID functions or triggers). Rows
are inserted the way MoFA's Rust backends write them: content as JSON,
lowercase role and status strings. chatledger must read them unchanged, and
what chatledger writes must read back with plain SQL in MoFA's shape. On
MySQL, MoFA's times are ``TIMESTAMP`` (whole seconds), so the rows here use
whole seconds too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic_core import to_json

import chatledger.stores.mysql as mysql_backend
from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    QueryFilter,
    TokenDetails,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.stores.base import RecordKind
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.server import ServerStore
from chatledger.testing.servers import mysql_connect_options

pytestmark = pytest.mark.server
# Imported here, so that `pytest -m "not server"` collects this module without the drivers.
asyncmy = pytest.importorskip(
    "asyncmy", reason="the server drivers: pip install 'chatledger[postgres,mysql]'"
)
asyncpg = pytest.importorskip(
    "asyncpg", reason="the server drivers: pip install 'chatledger[postgres,mysql]'"
)

POSTGRES_DDL = """
CREATE TABLE entity_chat_session (
    id UUID PRIMARY KEY, user_id UUID NOT NULL, agent_id UUID NOT NULL,
    tenant_id UUID NOT NULL, title VARCHAR(255), metadata JSONB DEFAULT '{}',
    create_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL);
CREATE TABLE entity_llm_message (
    id UUID PRIMARY KEY, parent_message_id UUID, chat_session_id UUID NOT NULL,
    agent_id UUID NOT NULL, user_id UUID NOT NULL, tenant_id UUID NOT NULL,
    role VARCHAR(20) NOT NULL, content JSONB NOT NULL,
    create_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT fk_message_session FOREIGN KEY (chat_session_id)
        REFERENCES entity_chat_session(id) ON DELETE CASCADE,
    CONSTRAINT fk_message_parent FOREIGN KEY (parent_message_id)
        REFERENCES entity_llm_message(id) ON DELETE SET NULL);
CREATE INDEX idx_llm_message_session ON entity_llm_message(chat_session_id, create_time);
CREATE TABLE entity_llm_api_call (
    id UUID PRIMARY KEY, chat_session_id UUID NOT NULL, agent_id UUID NOT NULL,
    user_id UUID NOT NULL, tenant_id UUID NOT NULL, request_message_id UUID NOT NULL,
    response_message_id UUID NOT NULL, model_name VARCHAR(100) NOT NULL,
    status VARCHAR(20) DEFAULT 'success' NOT NULL, error_message TEXT, error_code VARCHAR(50),
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0, prompt_tokens_details JSONB,
    completion_tokens_details JSONB, total_price NUMERIC(15, 10), price_details JSONB,
    latency_ms INTEGER, time_to_first_token_ms INTEGER, tokens_per_second DOUBLE PRECISION,
    api_response_id VARCHAR(255),
    create_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT check_tokens_positive
        CHECK (prompt_tokens >= 0 AND completion_tokens >= 0 AND total_tokens >= 0),
    CONSTRAINT check_time_order CHECK (update_time >= create_time));
CREATE INDEX idx_api_call_time ON entity_llm_api_call(create_time DESC);
CREATE TABLE entity_provider (
    id UUID NOT NULL, api_base TEXT NOT NULL, api_key TEXT NOT NULL,
    enabled BOOL DEFAULT true NOT NULL,
    provider_name VARCHAR(255) DEFAULT 'default' NOT NULL,
    provider_type VARCHAR(100) NOT NULL, tenant_id UUID NOT NULL,
    create_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT entity_provider_pkey PRIMARY KEY (id),
    CONSTRAINT uk_entity_provider_tenant UNIQUE (provider_name, tenant_id));
CREATE TABLE entity_agent (
    id UUID NOT NULL, tenant_id UUID NOT NULL, agent_code VARCHAR(255) NOT NULL,
    agent_name VARCHAR(255) NOT NULL, agent_order INT4 DEFAULT 0 NOT NULL,
    agent_status BOOL DEFAULT true NOT NULL, context_limit INT4 DEFAULT 1 NULL,
    custom_params JSONB NULL, max_completion_tokens INT4 DEFAULT 16384 NULL,
    model_name VARCHAR(255) NOT NULL, provider_id UUID NOT NULL,
    response_format VARCHAR(50) DEFAULT 'text' NULL, system_prompt TEXT NOT NULL,
    temperature FLOAT4 DEFAULT 0.7 NULL, stream BOOL DEFAULT true NULL, thinking JSONB NULL,
    create_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT entity_agent_pkey PRIMARY KEY (id),
    CONSTRAINT uk_entity_agent_code UNIQUE (agent_code),
    CONSTRAINT entity_provider_id_fkey FOREIGN KEY (provider_id)
        REFERENCES entity_provider(id) ON DELETE CASCADE);
"""

_MYSQL_TABLE = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
MYSQL_DDL = f"""
CREATE TABLE entity_chat_session (
    id CHAR(36) PRIMARY KEY, user_id CHAR(36) NOT NULL, agent_id CHAR(36) NOT NULL,
    tenant_id CHAR(36) NOT NULL, title VARCHAR(255), metadata JSON,
    create_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP NOT NULL,
    INDEX idx_chat_session_user (user_id)){_MYSQL_TABLE};
CREATE TABLE entity_llm_message (
    id CHAR(36) PRIMARY KEY, parent_message_id CHAR(36), chat_session_id CHAR(36) NOT NULL,
    agent_id CHAR(36) NOT NULL, user_id CHAR(36) NOT NULL, tenant_id CHAR(36) NOT NULL,
    role VARCHAR(20) NOT NULL, content JSON NOT NULL,
    create_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP NOT NULL,
    INDEX idx_llm_message_session (chat_session_id, create_time),
    CONSTRAINT fk_message_session FOREIGN KEY (chat_session_id)
        REFERENCES entity_chat_session(id) ON DELETE CASCADE,
    CONSTRAINT fk_message_parent FOREIGN KEY (parent_message_id)
        REFERENCES entity_llm_message(id) ON DELETE SET NULL){_MYSQL_TABLE};
CREATE TABLE entity_llm_api_call (
    id CHAR(36) PRIMARY KEY, chat_session_id CHAR(36) NOT NULL, agent_id CHAR(36) NOT NULL,
    user_id CHAR(36) NOT NULL, tenant_id CHAR(36) NOT NULL,
    request_message_id CHAR(36) NOT NULL, response_message_id CHAR(36) NOT NULL,
    model_name VARCHAR(100) NOT NULL,
    status ENUM('success', 'failed', 'timeout', 'rate_limited', 'cancelled')
        DEFAULT 'success' NOT NULL,
    error_message TEXT, error_code VARCHAR(50),
    prompt_tokens INT NOT NULL DEFAULT 0, completion_tokens INT NOT NULL DEFAULT 0,
    total_tokens INT NOT NULL DEFAULT 0, prompt_tokens_details JSON,
    completion_tokens_details JSON, total_price DECIMAL(15, 10), price_details JSON,
    latency_ms INT, time_to_first_token_ms INT, tokens_per_second DOUBLE,
    api_response_id VARCHAR(255),
    create_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP NOT NULL,
    INDEX idx_api_call_time (create_time DESC),
    CONSTRAINT check_tokens_positive
        CHECK (prompt_tokens >= 0 AND completion_tokens >= 0 AND total_tokens >= 0),
    CONSTRAINT check_time_order CHECK (update_time >= create_time)){_MYSQL_TABLE};
CREATE TABLE entity_provider (
    id CHAR(36) PRIMARY KEY, tenant_id CHAR(36) NOT NULL, provider_name VARCHAR(255) NOT NULL,
    provider_type VARCHAR(100) NOT NULL, api_base TEXT NOT NULL, api_key TEXT NOT NULL,
    enabled BOOLEAN DEFAULT TRUE NOT NULL,
    create_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT uk_entity_provider_tenant UNIQUE (provider_name, tenant_id)){_MYSQL_TABLE};
CREATE TABLE entity_agent (
    id CHAR(36) PRIMARY KEY, tenant_id CHAR(36) NOT NULL,
    agent_code VARCHAR(255) NOT NULL UNIQUE, agent_name VARCHAR(255) NOT NULL,
    agent_order INT DEFAULT 0 NOT NULL, agent_status BOOLEAN DEFAULT TRUE NOT NULL,
    context_limit INT, custom_params JSON, max_completion_tokens INT,
    model_name VARCHAR(255) NOT NULL, provider_id CHAR(36) NOT NULL,
    response_format VARCHAR(50), system_prompt TEXT NOT NULL, temperature FLOAT,
    stream BOOLEAN, thinking JSON,
    create_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL,
    update_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT entity_agent_provider_fkey FOREIGN KEY (provider_id)
        REFERENCES entity_provider(id) ON DELETE CASCADE){_MYSQL_TABLE};
"""


@dataclass
class MofaDatabase:
    """A database laid out by MoFA's DDL, reachable with plain SQL."""

    kind: str
    url: str

    @property
    def store(self) -> type[ServerStore]:
        """chatledger's store for this server."""
        return PostgresStore if self.kind == "postgresql" else MySqlStore

    async def run(self, sql: str, *rows: Sequence[Any]) -> list[Sequence[Any]]:
        """Run ``sql`` (``?`` placeholders) once per row of parameters, or once; return rows."""
        if self.kind == "postgresql":
            numbered = sql
            for number in range(1, sql.count("?") + 1):
                numbered = numbered.replace("?", f"${number}", 1)
            conn = await asyncpg.connect(self.url)
            try:
                if not rows:
                    return list(await conn.fetch(numbered))
                for row in rows:
                    await conn.execute(numbered, *row)
                return []
            finally:
                await conn.close()
        conn = await asyncmy.connect(**mysql_connect_options(self.url))
        try:
            async with conn.cursor() as cursor:
                await cursor.execute("SET time_zone = '+00:00'")  # TIMESTAMP values in UTC
                if not rows:
                    await cursor.execute(sql.replace("?", "%s"))
                    return list(await cursor.fetchall())
                for row in rows:
                    await cursor.execute(sql.replace("?", "%s"), row)
                return []
        finally:
            conn.close()

    def uuid(self, value: uuid.UUID) -> Any:
        """A UUID as this server's MoFA columns hold it."""
        return value if self.kind == "postgresql" else str(value)

    def time(self, value: datetime) -> Any:
        """A time as this server's MoFA columns take it."""
        return value if self.kind == "postgresql" else value.replace(tzinfo=None)


@pytest.fixture(params=["postgresql", "mysql", "mysql-8-ddl"])
async def mofa(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> MofaDatabase:
    """This module's scratch database with MoFA's five tables in it.

    ``mysql-8-ddl`` runs on MariaDB with chatledger taking it for MySQL 8,
    whose DDL has no ``IF NOT EXISTS`` for indexes and columns: the migration
    must then skip MoFA's same-named indexes by itself.
    """
    if request.param == "mysql-8-ddl":
        monkeypatch.setattr(mysql_backend, "is_mariadb", lambda version: False)
    if request.param == "postgresql":
        database = MofaDatabase("postgresql", request.getfixturevalue("postgres_url"))
        ddl = POSTGRES_DDL
    else:
        database = MofaDatabase("mysql", request.getfixturevalue("mysql_url"))
        ddl = MYSQL_DDL
    tables = ("entity_agent", "entity_provider", "entity_llm_api_call", "entity_llm_message")
    for statement in [
        *(f"DROP TABLE IF EXISTS {table}" for table in tables),
        "DROP TABLE IF EXISTS entity_chat_session",
        "DROP TABLE IF EXISTS chatledger_schema_version",
        *(part for part in ddl.split(";") if part.strip()),
    ]:
        await database.run(statement)
    return database


T0 = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)  # whole seconds: MoFA's MySQL keeps no more
IDS = {name: uuid.uuid4() for name in ("session", "user", "agent", "tenant", "provider")}
MESSAGE_IDS = [uuid.uuid4() for _ in range(4)]
CALL_ID = uuid.uuid4()
MOFA_CONTENTS = [
    ("system", {"text": "You are a weather bot."}),
    ("user", {"text": "Weather in Paris? 巴黎 ☀️"}),
    (
        "assistant",
        {"tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
    ),
    ("tool", {"tool_result": {"tool_call_id": "call_1", "content": "18°C", "is_error": False}}),
]


async def _write_like_mofa(db: MofaDatabase) -> None:
    u, t = db.uuid, db.time
    await db.run(
        "INSERT INTO entity_chat_session (id, user_id, agent_id, tenant_id, title, metadata, "
        "create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            u(IDS["session"]), u(IDS["user"]), u(IDS["agent"]), u(IDS["tenant"]), "From MoFA",
            json.dumps({"channel": "cli"}), t(T0), t(T0 + timedelta(seconds=4)),
        ),
    )  # fmt: skip
    await db.run(
        "INSERT INTO entity_llm_message (id, parent_message_id, chat_session_id, agent_id, "
        "user_id, tenant_id, role, content, create_time, update_time) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        *[
            (
                u(MESSAGE_IDS[i]), None if i == 0 else u(MESSAGE_IDS[i - 1]), u(IDS["session"]),
                u(IDS["agent"]), u(IDS["user"]), u(IDS["tenant"]), role, json.dumps(content),
                t(T0 + timedelta(seconds=i)), t(T0 + timedelta(seconds=i)),
            )
            for i, (role, content) in enumerate(MOFA_CONTENTS)
        ],
    )  # fmt: skip
    await db.run(
        "INSERT INTO entity_llm_api_call (id, chat_session_id, agent_id, user_id, tenant_id, "
        "request_message_id, response_message_id, model_name, status, error_message, error_code, "
        "prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details, "
        "completion_tokens_details, total_price, price_details, latency_ms, "
        "time_to_first_token_ms, tokens_per_second, api_response_id, create_time, update_time) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            u(CALL_ID), u(IDS["session"]), u(IDS["agent"]), u(IDS["user"]), u(IDS["tenant"]),
            u(MESSAGE_IDS[1]), u(MESSAGE_IDS[2]), "gpt-4o", "success", None, None, 120, 30, 150,
            json.dumps({"cached_tokens": 100}), json.dumps({"reasoning_tokens": 10}),
            Decimal("0.0012345678"),
            json.dumps({"input_price": 0.0009, "output_price": 0.0003345678, "currency": "USD"}),
            850, 210, 35.29, "chatcmpl-abc", t(T0 + timedelta(seconds=1)),
            t(T0 + timedelta(seconds=2)),
        ),
    )  # fmt: skip


async def test_chatledger_reads_what_mofa_wrote(mofa: MofaDatabase) -> None:
    """Rows MoFA wrote into its own tables read back through chatledger unchanged."""
    await _write_like_mofa(mofa)
    store = await mofa.store.connect(mofa.url)  # migrates MoFA's tables in place
    try:
        session = await store.get_session(IDS["session"])
        assert session is not None
        assert (session.title, session.metadata) == ("From MoFA", {"channel": "cli"})
        assert (session.tenant_id, session.create_time) == (IDS["tenant"], T0)
        messages = await store.get_session_messages(IDS["session"])
        assert [m.id for m in messages] == MESSAGE_IDS
        assert [m.role for m in messages] == [MessageRole(role) for role, _ in MOFA_CONTENTS]
        assert [m.parent_message_id for m in messages] == [None, *MESSAGE_IDS[:3]]
        assert messages[1].content == MessageContent.from_text("Weather in Paris? 巴黎 ☀️")
        assert messages[2].content == MessageContent.from_tool_calls(
            [ToolCallContent(id="call_1", name="get_weather", arguments={"city": "Paris"})]
        )
        assert messages[3].content == MessageContent.from_tool_result(
            ToolResultContent(tool_call_id="call_1", content="18°C")
        )
        call = await store.get_api_call(CALL_ID)
        assert call is not None
        assert call.status is ApiCallStatus.SUCCESS
        assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (120, 30, 150)
        assert call.prompt_tokens_details == TokenDetails(cached_tokens=100)
        assert call.completion_tokens_details == TokenDetails(reasoning_tokens=10)
        assert call.total_price == Decimal("0.0012345678")
        assert call.price_details is not None
        assert call.price_details.output_price == Decimal("0.0003345678")
        assert (call.latency_ms, call.time_to_first_token_ms) == (850, 210)
        assert call.tokens_per_second == pytest.approx(35.29)
        assert call.create_time == T0 + timedelta(seconds=1)
        stats = await store.get_statistics(QueryFilter(tenant_id=IDS["tenant"]))
        assert (stats.total_calls, stats.total_tokens) == (1, 150)
        assert (stats.total_cached_tokens, stats.total_reasoning_tokens) == (100, 10)
    finally:
        await store.close()


async def test_what_mofa_wrote_exports_as_the_entities_dump(mofa: MofaDatabase) -> None:
    """MoFA's rows, in its column types (NUMERIC(15, 10), TIMESTAMP, ENUM), export as JSON
    exactly as the entities chatledger reads from them dump."""
    await _write_like_mofa(mofa)
    store = await mofa.store.connect(mofa.url)
    try:
        session, call = await store.get_session(IDS["session"]), await store.get_api_call(CALL_ID)
        assert session is not None
        assert call is not None
        entities: dict[RecordKind, list[ChatSession | LLMMessage | LLMApiCall]] = {
            "sessions": [session],
            "messages": list(await store.get_session_messages(IDS["session"])),
            "api_calls": [call],
        }
        for kind, expected in entities.items():
            chunks = [chunk async for chunk in store.export_records(kind, QueryFilter())]
            records = [record for chunk in chunks for record in chunk]
            assert [record["id"] for record in records] == sorted(str(e.id) for e in expected)
            by_id = {record["id"]: record for record in records}
            for entity in expected:
                record = by_id[str(entity.id)]
                assert record == entity.model_dump(mode="json")
                assert list(record) == list(entity.model_dump(mode="json"))
                assert to_json(record) == entity.model_dump_json().encode()
            assert await store.count_records(kind, QueryFilter()) == len(expected)
    finally:
        await store.close()


async def test_mofa_reads_what_chatledger_wrote(mofa: MofaDatabase) -> None:
    """What chatledger writes into MoFA's tables reads back with plain SQL in MoFA's shape."""
    await _write_like_mofa(mofa)
    store = await mofa.store.connect(mofa.url)
    session = await store.get_session(IDS["session"])
    assert session is not None
    reply_id, call_id = uuid.uuid4(), uuid.uuid4()
    later = T0 + timedelta(minutes=5)
    try:
        await store.save_message(
            (await store.get_session_messages(IDS["session"]))[-1]._replace(
                id=reply_id,
                parent_message_id=MESSAGE_IDS[-1],
                role=MessageRole.ASSISTANT,
                content=MessageContent.from_text("It is 18°C in Paris."),
                create_time=later,
                update_time=later,
            )
        )
        await store.save_api_call(
            LLMApiCall(
                id=call_id, chat_session_id=IDS["session"], agent_id=IDS["agent"],
                user_id=IDS["user"], tenant_id=IDS["tenant"],
                request_message_id=MESSAGE_IDS[-1], response_message_id=reply_id,
                model_name="gpt-4o", status=ApiCallStatus.RATE_LIMITED,
                error_message="Rate limit reached", error_code="429",
                prompt_tokens=0, completion_tokens=0, total_tokens=0,
                create_time=later, update_time=later,
            )
        )  # fmt: skip
    finally:
        await store.close()

    u = mofa.uuid
    rows = await mofa.run(
        f"SELECT role, content, parent_message_id, create_time FROM entity_llm_message "
        f"WHERE id = '{u(reply_id)}'"
    )
    role, content, parent, created = rows[0]
    assert role == "assistant"
    assert (json.loads(content) if isinstance(content, str | bytes) else content) == {
        "text": "It is 18°C in Paris."
    }
    assert str(parent) == str(MESSAGE_IDS[-1])
    assert created.replace(tzinfo=UTC) == later
    rows = await mofa.run(
        "SELECT status, error_code, error_message, total_tokens, response_message_id "
        f"FROM entity_llm_api_call WHERE id = '{u(call_id)}'"
    )
    assert tuple(rows[0][:4]) == ("rate_limited", "429", "Rate limit reached", 0)
    assert str(rows[0][4]) == str(reply_id)
    rows = await mofa.run(
        f"SELECT update_time FROM entity_chat_session WHERE id = '{u(IDS['session'])}'"
    )
    assert rows[0][0].replace(tzinfo=UTC) == later  # the reply moved the session forward
