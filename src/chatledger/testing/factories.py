"""Factories for valid chatledger records, for the conformance suite and your own tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from chatledger.entities import (
    Agent,
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    Provider,
)
from chatledger.ids import uuid7

__all__ = [
    "BASE_TIME",
    "make_agent",
    "make_api_call",
    "make_message",
    "make_provider",
    "make_session",
]

BASE_TIME = datetime(2024, 5, 6, 12, 0, 0, 123456, tzinfo=UTC)
"""A fixed, microsecond-bearing time the factories stamp records with by default."""


# -- factories -----------------------------------------------------------------


def make_session(
    *,
    user_id: UUID | None = None,
    agent_id: UUID | None = None,
    tenant_id: UUID | None = None,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
    create_time: datetime = BASE_TIME,
    update_time: datetime | None = None,
) -> ChatSession:
    """A chat session with fresh ids unless given, stamped ``BASE_TIME`` by default."""
    return ChatSession(
        id=uuid7(),
        user_id=user_id or uuid7(),
        agent_id=agent_id or uuid7(),
        tenant_id=tenant_id or uuid7(),
        title=title,
        metadata=metadata or {},
        create_time=create_time,
        update_time=update_time or create_time,
    )


def make_message(
    session: ChatSession,
    text: str = "hello",
    *,
    role: MessageRole = MessageRole.USER,
    content: MessageContent | None = None,
    create_time: datetime | None = None,
    parent_message_id: UUID | None = None,
) -> LLMMessage:
    """A message in ``session`` with a fresh UUIDv7 id, stamped now unless ``create_time``."""
    moment = create_time or datetime.now(UTC)
    return LLMMessage(
        id=uuid7(),
        parent_message_id=parent_message_id,
        chat_session_id=session.id,
        agent_id=session.agent_id,
        user_id=session.user_id,
        tenant_id=session.tenant_id,
        role=role,
        content=content or MessageContent(text=text),
        create_time=moment,
        update_time=moment,
    )


def make_api_call(session: ChatSession | None = None, **fields: Any) -> LLMApiCall:
    """A successful API call (10 + 5 tokens, 250 ms) in ``session``; ``fields`` override any field.

    Without a session the call gets fresh ids (the ledger needs no session).
    ``total_tokens`` defaults to prompt + completion and ``update_time`` to
    ``create_time``.
    """
    values: dict[str, Any] = {
        "id": uuid7(),
        "chat_session_id": session.id if session else uuid7(),
        "agent_id": session.agent_id if session else uuid7(),
        "user_id": session.user_id if session else uuid7(),
        "tenant_id": session.tenant_id if session else uuid7(),
        "request_message_id": uuid7(),
        "response_message_id": uuid7(),
        "model_name": "gpt-4o-mini",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 250,
        "status": ApiCallStatus.SUCCESS,
        "create_time": BASE_TIME,
    }
    values.update(fields)
    values.setdefault("total_tokens", values["prompt_tokens"] + values["completion_tokens"])
    values.setdefault("update_time", values["create_time"])
    return LLMApiCall(**values)


def make_provider(
    *,
    tenant_id: UUID | None = None,
    name: str = "openai",
    enabled: bool = True,
    api_key: str = "sk-test-not-a-real-key",
) -> Provider:
    """A provider account with a fresh id."""
    return Provider(
        id=uuid7(),
        tenant_id=tenant_id or uuid7(),
        provider_name=name,
        provider_type="openai",
        api_base="https://api.example.com/v1",
        api_key=api_key,
        enabled=enabled,
        create_time=BASE_TIME,
        update_time=BASE_TIME,
    )


def make_agent(
    provider: Provider,
    *,
    code: str | None = None,
    order: int = 0,
    active: bool = True,
    tenant_id: UUID | None = None,
) -> Agent:
    """An agent served by ``provider`` (in its tenant unless ``tenant_id`` says otherwise)."""
    agent_id = uuid7()
    return Agent(
        id=agent_id,
        tenant_id=tenant_id or provider.tenant_id,
        agent_code=code or f"agent-{agent_id.hex[-12:]}",
        agent_name="Helpful assistant",
        agent_order=order,
        agent_status=active,
        context_limit=8192,
        custom_params={"top_p": 0.9, "stop": ["\n\n"]},
        max_completion_tokens=1024,
        model_name="gpt-4o-mini",
        provider_id=provider.id,
        response_format="text",
        system_prompt="You are helpful. 你好 👋",
        temperature=0.7,
        stream=True,
        thinking={"budget_tokens": 512},
        create_time=BASE_TIME,
        update_time=BASE_TIME,
    )
