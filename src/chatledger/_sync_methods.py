"""Blocking twins of the store protocols' coroutines: generated, do not edit.

Written by scripts/generate_sync.py from chatledger/stores/base.py; tests/test_sync.py
fails when this file is out of date.
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

from chatledger.entities import (
    Agent,
    AgentConfig,
    CallPage,
    CallSort,
    ChatSession,
    ErasureReport,
    LLMApiCall,
    LLMMessage,
    Provider,
    QueryFilter,
    SessionPage,
    SessionQuery,
    UsageBucket,
    UsageStatistics,
)
from chatledger.stores.base import (
    DEFAULT_PAGE_SIZE,
    Breakdown,
    Bucket,
    GroupKey,
    PersistenceStore,
    RecordKind,
)

__all__ = ["SyncMethods"]

_T = TypeVar("_T")


class SyncMethods:
    """Each store coroutine as a method that blocks until it is done (see chatledger.sync)."""

    __slots__ = ()

    @property
    @abstractmethod
    def _async_store(self) -> PersistenceStore:
        """The async store the calls go to."""

    @abstractmethod
    def _wait(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the store's loop; its result."""

    def save_message(self, message: LLMMessage) -> None:
        """Store one message; its session must exist."""
        return self._wait(self._async_store.save_message(message))

    def save_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Store all of ``messages`` in one transaction, or none of them."""
        return self._wait(self._async_store.save_messages(messages))

    def get_message(self, message_id: uuid.UUID) -> LLMMessage | None:
        """The message with ``message_id``, or None."""
        return self._wait(self._async_store.get_message(message_id))

    def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        """Every message of a session, oldest first."""
        return self._wait(self._async_store.get_session_messages(session_id))

    def get_session_messages_paginated(
        self, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[LLMMessage]:
        """A page of a session's messages, oldest first."""
        return self._wait(
            self._async_store.get_session_messages_paginated(session_id, offset, limit)
        )

    def get_recent_messages(self, session_id: uuid.UUID, limit: int) -> list[LLMMessage]:
        """The newest ``limit`` messages of a session, returned oldest first."""
        return self._wait(self._async_store.get_recent_messages(session_id, limit))

    def delete_message(self, message_id: uuid.UUID) -> bool:
        """Delete one message; True when it existed."""
        return self._wait(self._async_store.delete_message(message_id))

    def delete_session_messages(self, session_id: uuid.UUID) -> int:
        """Delete a session's messages; return how many there were."""
        return self._wait(self._async_store.delete_session_messages(session_id))

    def count_session_messages(self, session_id: uuid.UUID) -> int:
        """How many messages a session has."""
        return self._wait(self._async_store.count_session_messages(session_id))

    def count_messages_by_session(self, session_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many messages each of ``session_ids`` has (0 for one without any), in one query."""
        return self._wait(self._async_store.count_messages_by_session(session_ids))

    def save_api_call(self, call: LLMApiCall) -> None:
        """Store one API-call record."""
        return self._wait(self._async_store.save_api_call(call))

    def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store all of ``calls`` in one transaction, or none of them."""
        return self._wait(self._async_store.save_api_calls(calls))

    def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The API call with ``call_id``, or None."""
        return self._wait(self._async_store.get_api_call(call_id))

    def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Calls matching ``query``, newest first (limit 100 unless it says otherwise)."""
        return self._wait(self._async_store.query_api_calls(query))

    def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over every call matching ``query``; offset and limit do not apply."""
        return self._wait(self._async_store.get_statistics(query))

    def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Statistics per group of ``group_by`` keys and per UTC time bucket."""
        return self._wait(self._async_store.get_usage_breakdown(query, group_by, bucket, limit))

    def get_usage_breakdowns(
        self, query: QueryFilter, breakdowns: Sequence[Breakdown]
    ) -> list[list[UsageBucket]]:
        """Several breakdowns of one filter at once, each as ``get_usage_breakdown`` answers it."""
        return self._wait(self._async_store.get_usage_breakdowns(query, breakdowns))

    def calls_for_messages(self, message_ids: Sequence[uuid.UUID]) -> list[LLMApiCall]:
        """The calls whose response or request message is among ``message_ids``."""
        return self._wait(self._async_store.calls_for_messages(message_ids))

    def page_api_calls(
        self,
        query: QueryFilter,
        *,
        sort: CallSort | str = CallSort.NEWEST,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> CallPage:
        """One page of the calls matching ``query`` in ``sort`` order, after ``cursor``."""
        return self._wait(
            self._async_store.page_api_calls(query, sort=sort, cursor=cursor, limit=limit)
        )

    def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one API-call record; True when it existed."""
        return self._wait(self._async_store.delete_api_call(call_id))

    def cleanup_old_records(self, before: datetime) -> int:
        """Delete API-call records with ``create_time < before``; return how many."""
        return self._wait(self._async_store.cleanup_old_records(before))

    def rebuild_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Recount the usage rollups from the API calls; return how many calls they count."""
        return self._wait(self._async_store.rebuild_rollups(progress))

    def seal_periods(self) -> int:
        """Sum each complete month's and week's rollups into rows of their own; return how many."""
        return self._wait(self._async_store.seal_periods())

    def create_session(self, session: ChatSession) -> None:
        """Store a new session."""
        return self._wait(self._async_store.create_session(session))

    def get_session(self, session_id: uuid.UUID) -> ChatSession | None:
        """The session with ``session_id``, or None."""
        return self._wait(self._async_store.get_session(session_id))

    def get_user_sessions(self, user_id: uuid.UUID) -> list[ChatSession]:
        """A user's sessions, most recently updated first."""
        return self._wait(self._async_store.get_user_sessions(user_id))

    def update_session(self, session: ChatSession) -> None:
        """Replace a stored session; NotFoundError when it does not exist."""
        return self._wait(self._async_store.update_session(session))

    def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete a session and its messages (API calls stay); True when it existed."""
        return self._wait(self._async_store.delete_session(session_id))

    def list_sessions(self, query: QueryFilter) -> list[ChatSession]:
        """Sessions matching ``query``, most recently active first (limit 100 by default)."""
        return self._wait(self._async_store.list_sessions(query))

    def cleanup_old_sessions(self, before: datetime) -> int:
        """Delete sessions with ``update_time < before`` and their messages; return how many."""
        return self._wait(self._async_store.cleanup_old_sessions(before))

    def search_sessions(
        self, query: SessionQuery, *, cursor: str | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> SessionPage:
        """One page of the sessions ``query`` selects, newest first (create_time, then id)."""
        return self._wait(self._async_store.search_sessions(query, cursor=cursor, limit=limit))

    def save_provider(self, provider: Provider) -> None:
        """Insert or replace a provider."""
        return self._wait(self._async_store.save_provider(provider))

    def get_provider(self, provider_id: uuid.UUID) -> Provider | None:
        """The provider with ``provider_id``, or None."""
        return self._wait(self._async_store.get_provider(provider_id))

    def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        """A tenant's provider called ``name``, or None."""
        return self._wait(self._async_store.get_provider_by_name(tenant_id, name))

    def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's providers, by name."""
        return self._wait(self._async_store.list_providers(tenant_id))

    def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's enabled providers, by name."""
        return self._wait(self._async_store.get_enabled_providers(tenant_id))

    def delete_provider(self, provider_id: uuid.UUID) -> bool:
        """Delete a provider and its agents; True when it existed."""
        return self._wait(self._async_store.delete_provider(provider_id))

    def save_agent(self, agent: Agent) -> None:
        """Insert or replace an agent; its provider must exist."""
        return self._wait(self._async_store.save_agent(agent))

    def get_agent(self, agent_id: uuid.UUID) -> Agent | None:
        """The agent with ``agent_id``, or None."""
        return self._wait(self._async_store.get_agent(agent_id))

    def get_agent_by_code(self, code: str) -> Agent | None:
        """The agent with ``code``, or None."""
        return self._wait(self._async_store.get_agent_by_code(code))

    def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        """A tenant's agent with ``code``, or None."""
        return self._wait(self._async_store.get_agent_by_code_and_tenant(tenant_id, code))

    def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's agents, by order then code."""
        return self._wait(self._async_store.list_agents(tenant_id))

    def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's active agents, by order then code."""
        return self._wait(self._async_store.get_active_agents(tenant_id))

    def get_agent_with_provider(self, agent_id: uuid.UUID) -> AgentConfig | None:
        """An agent and its provider, or None."""
        return self._wait(self._async_store.get_agent_with_provider(agent_id))

    def get_agent_by_code_with_provider(self, code: str) -> AgentConfig | None:
        """The agent with ``code`` and its provider, or None."""
        return self._wait(self._async_store.get_agent_by_code_with_provider(code))

    def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID, code: str
    ) -> AgentConfig | None:
        """A tenant's agent with ``code`` and its provider, or None."""
        return self._wait(
            self._async_store.get_agent_by_code_and_tenant_with_provider(tenant_id, code)
        )

    def delete_agent(self, agent_id: uuid.UUID) -> bool:
        """Delete an agent; True when it existed."""
        return self._wait(self._async_store.delete_agent(agent_id))

    def schema_version(self) -> int:
        """The newest schema migration the data is at (0: no chatledger tables)."""
        return self._wait(self._async_store.schema_version())

    def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        """Store, in one transaction, every record whose id is not stored yet: sessions, then
        messages, then calls; records already stored are skipped, so a batch shipped twice is
        stored once.
        """
        return self._wait(self._async_store.ingest_records(sessions, messages, calls))

    def count_records(self, kind: RecordKind, query: QueryFilter) -> int:
        """How many records ``export_records(kind, query)`` yields (offset and limit ignored)."""
        return self._wait(self._async_store.count_records(kind, query))

    def erase_user(self, user_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Delete a user's sessions and messages and anonymise their API calls, in one
        transaction.
        """
        return self._wait(self._async_store.erase_user(user_id, dry_run=dry_run))

    def erase_tenant(self, tenant_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase every user of a tenant as ``erase_user`` does; delete its providers and agents."""
        return self._wait(self._async_store.erase_tenant(tenant_id, dry_run=dry_run))
