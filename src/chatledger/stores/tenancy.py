"""One store seen by one tenant: :class:`TenantStore`, what ``store.for_tenant(tenant_id)`` returns.

SPEC §9: every read is filtered to the tenant, a write for another tenant
raises ``ConstraintError``, and another tenant's ids behave as missing. The
view wraps any :class:`~chatledger.stores.base.PersistenceStore` and goes
through its public methods only, so a third-party backend gets tenancy by
being a store; it holds no SQL and no records of its own.

- By-id reads (``get_session``, ``get_message``, ``get_api_call``,
  ``get_provider``, ``get_agent``, ...) answer None for another tenant's
  record, as for an unknown id. A session's messages are read, counted and
  deleted with their session: the session's tenant is checked first.
- Queries (``QueryFilter``, ``SessionQuery``) have their ``tenant_id`` set to
  the view's; a query naming another tenant selects nothing (the store is
  still asked, with a filter no record meets, so that it validates the rest
  of the query and answers its own "nothing").
- Methods taking a tenant (``list_providers(tenant_id)``, ...) answer
  nothing for another tenant; ``get_agent_by_code(code)`` answers the
  tenant's agent only.
- Writes of a record whose ``tenant_id`` is another tenant's, of a message
  into another tenant's session or after its message, of an agent naming
  another tenant's provider, or reusing another tenant's id, raise
  ``ConstraintError`` before anything is written. ``update_session`` and the
  deletes treat another tenant's ids as unknown (``NotFoundError``, False, 0).
- Maintenance: ``cleanup_old_records`` and ``cleanup_old_sessions`` delete the
  tenant's records only, one record at a time through the store's own
  deletes (not in one transaction, unlike the store's). ``rebuild_rollups``
  recounts every tenant's usage and cannot be scoped: the view refuses it
  with ``ConstraintError``; run it on the store itself.

The checks read before they write (a message's session, an agent's
provider), so a view costs a read or two more per write than the store.
Closing the view closes the view only: the store underneath stays open and
is closed by whoever opened it. ``backend_name`` is the store's, and
``is_connected`` is False once either is closed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
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
from chatledger.errors import ConstraintError, NotFoundError, StoreConnectionError
from chatledger.recording.scope import id_for_key
from chatledger.stores.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    RECORD_KINDS,
    Breakdown,
    Bucket,
    GroupKey,
    PersistenceStore,
    RecordKind,
    StoreLifecycle,
    check_cutoff,
    check_erased_user,
)

__all__ = ["TenantStore"]

_Owned = TypeVar("_Owned", ChatSession, LLMMessage, LLMApiCall, Provider, Agent)

# Where a query naming another tenant is pointed: an empty range (start == end) on this
# tenant, which no record meets on any backend whatever else the query says.
_NOWHERE = datetime(2000, 1, 1, tzinfo=UTC)
# How many of a tenant's old API calls a cleanup reads, then deletes, at a time.
_CLEANUP_BATCH = 500


def _distinct(ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


class TenantStore(StoreLifecycle):
    """A store seen by one tenant: reads filtered to it, its ids only, others' writes refused.

    Made by ``store.for_tenant(tenant_id)``; see :mod:`chatledger.stores.tenancy`.
    """

    def __init__(self, store: PersistenceStore, tenant_id: uuid.UUID | str) -> None:
        """See ``store`` as tenant ``tenant_id``: a UUID, or a key as ``chatledger.scope`` takes."""
        self._store = store
        self._tenant_id = id_for_key(tenant_id)

    # -- the view itself ------------------------------------------------------------

    @property
    # The base class names one backend per class; a view names its store's.
    def backend_name(self) -> str:  # type: ignore[override]
        """The backend of the store underneath."""
        return self._store.backend_name

    @property
    def is_connected(self) -> bool:
        """True until the view or the store underneath is closed."""
        return not self._closed and self._store.is_connected

    @property
    def tenant_id(self) -> uuid.UUID:
        """The tenant this view is scoped to."""
        return self._tenant_id

    async def schema_version(self) -> int:
        """The schema version of the store underneath."""
        self._check_open()
        return await self._store.schema_version()

    @property
    def store(self) -> PersistenceStore:
        """The store underneath, unscoped."""
        return self._store

    def for_tenant(self, tenant_id: uuid.UUID | str) -> PersistenceStore:
        """This view for its own tenant; ConstraintError for any other."""
        if id_for_key(tenant_id) != self._tenant_id:
            raise ConstraintError(
                f"this store is scoped to tenant {self._tenant_id}; it cannot be seen as "
                f"tenant {id_for_key(tenant_id)}: call for_tenant on the store itself"
            )
        return self

    def _check_open(self) -> None:
        if self._closed:
            raise StoreConnectionError(
                f"this view of tenant {self._tenant_id} is closed; "
                "call for_tenant on the store again to go on"
            )

    def __repr__(self) -> str:
        """The tenant and the store underneath."""
        state = "closed" if self._closed else "open"
        return f"<TenantStore {state} tenant={self._tenant_id} of {self._store!r}>"

    # -- what is the tenant's ---------------------------------------------------------

    def _mine(self, record: _Owned | None) -> _Owned | None:
        """``record`` when it is this tenant's, else None (another tenant's is missing)."""
        return record if record is not None and record.tenant_id == self._tenant_id else None

    def _all_mine(self, records: Iterable[_Owned]) -> list[_Owned]:
        return [record for record in records if record.tenant_id == self._tenant_id]

    def _refuse_foreign(self, records: Iterable[_Owned], kind: str) -> None:
        """Raise ConstraintError when any of ``records`` is for another tenant."""
        for record in records:
            if record.tenant_id != self._tenant_id:
                raise ConstraintError(
                    f"{kind} {record.id} is for tenant {record.tenant_id}, but this store is "
                    f"scoped to tenant {self._tenant_id}"
                )

    def _is_mine(self, tenant_id: uuid.UUID) -> bool:
        return tenant_id == self._tenant_id

    async def _own_session(self, session_id: uuid.UUID) -> bool:
        return self._mine(await self._store.get_session(session_id)) is not None

    def _scoped(self, query: QueryFilter) -> QueryFilter:
        """``query`` on this tenant; one that names another tenant selects nothing."""
        if query.tenant_id is None or query.tenant_id == self._tenant_id:
            return query.tenant(self._tenant_id)
        return query.tenant(self._tenant_id).time_range(_NOWHERE, _NOWHERE)

    def _scoped_search(self, query: SessionQuery) -> SessionQuery:
        """A session search on this tenant; one that names another tenant selects nothing."""
        if query.tenant_id is None or query.tenant_id == self._tenant_id:
            return query.model_copy(update={"tenant_id": self._tenant_id})
        nowhere = {"tenant_id": self._tenant_id, "start_time": _NOWHERE, "end_time": _NOWHERE}
        return query.model_copy(update=nowhere)

    async def _check_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Refuse messages for another tenant, in its session, or after its message.

        A session or parent that does not exist is left to the store, which
        refuses it (or finds it in the batch being stored).
        """
        self._refuse_foreign(messages, "message")
        sessions = _distinct(message.chat_session_id for message in messages)
        in_batch = {message.id for message in messages}
        parents = _distinct(
            message.parent_message_id
            for message in messages
            if message.parent_message_id is not None and message.parent_message_id not in in_batch
        )
        found_sessions, found_parents = await asyncio.gather(
            asyncio.gather(*(self._store.get_session(s) for s in sessions)),
            asyncio.gather(*(self._store.get_message(p) for p in parents)),
        )
        for session_id, session in zip(sessions, found_sessions, strict=True):
            if session is not None and session.tenant_id != self._tenant_id:
                raise ConstraintError(
                    f"a message names session {session_id}, which does not exist; "
                    "create the session first"
                )
        for parent_id, parent in zip(parents, found_parents, strict=True):
            if parent is not None and parent.tenant_id != self._tenant_id:
                raise ConstraintError(
                    f"a message names parent message {parent_id}, which does not exist; "
                    "save the parent first"
                )

    # -- messages -------------------------------------------------------------------

    async def save_message(self, message: LLMMessage) -> None:
        """Store one of the tenant's messages in one of its sessions."""
        self._check_open()
        await self._check_messages((message,))
        await self._store.save_message(message)

    async def save_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Store all of ``messages`` (the tenant's, in its sessions), or none of them."""
        self._check_open()
        await self._check_messages(messages)
        await self._store.save_messages(messages)

    async def get_message(self, message_id: uuid.UUID) -> LLMMessage | None:
        """The tenant's message with ``message_id``, or None."""
        self._check_open()
        return self._mine(await self._store.get_message(message_id))

    async def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        """Every message of one of the tenant's sessions, oldest first ([] for another's)."""
        self._check_open()
        if not await self._own_session(session_id):
            return []
        return await self._store.get_session_messages(session_id)

    async def get_session_messages_paginated(
        self, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[LLMMessage]:
        """A page of one of the tenant's sessions' messages, oldest first."""
        self._check_open()
        if not await self._own_session(session_id):
            return []
        return await self._store.get_session_messages_paginated(session_id, offset, limit)

    async def get_recent_messages(self, session_id: uuid.UUID, limit: int) -> list[LLMMessage]:
        """The newest ``limit`` messages of one of the tenant's sessions, oldest first."""
        self._check_open()
        if not await self._own_session(session_id):
            return []
        return await self._store.get_recent_messages(session_id, limit)

    async def delete_message(self, message_id: uuid.UUID) -> bool:
        """Delete one of the tenant's messages; False for another tenant's, as for none."""
        self._check_open()
        if self._mine(await self._store.get_message(message_id)) is None:
            return False
        return await self._store.delete_message(message_id)

    async def delete_session_messages(self, session_id: uuid.UUID) -> int:
        """Delete the messages of one of the tenant's sessions; 0 for another tenant's."""
        self._check_open()
        if not await self._own_session(session_id):
            return 0
        return await self._store.delete_session_messages(session_id)

    async def count_session_messages(self, session_id: uuid.UUID) -> int:
        """How many messages one of the tenant's sessions has; 0 for another tenant's."""
        self._check_open()
        if not await self._own_session(session_id):
            return 0
        return await self._store.count_session_messages(session_id)

    async def count_messages_by_session(
        self, session_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """How many messages each of ``session_ids`` has; 0 for another tenant's.

        One read per session to find its tenant, then one count.
        """
        self._check_open()
        asked = _distinct(session_ids)
        found = await asyncio.gather(*(self._store.get_session(s) for s in asked))
        own = [s for s, session in zip(asked, found, strict=True) if self._mine(session)]
        counts = await self._store.count_messages_by_session(own) if own else {}
        return {session_id: counts.get(session_id, 0) for session_id in session_ids}

    # -- API calls ------------------------------------------------------------------

    async def save_api_call(self, call: LLMApiCall) -> None:
        """Store one of the tenant's API-call records."""
        self._check_open()
        self._refuse_foreign((call,), "API call")
        await self._store.save_api_call(call)

    async def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store all of ``calls`` (the tenant's), or none of them."""
        self._check_open()
        self._refuse_foreign(calls, "API call")
        await self._store.save_api_calls(calls)

    async def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The tenant's API call with ``call_id``, or None."""
        self._check_open()
        return self._mine(await self._store.get_api_call(call_id))

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """The tenant's calls matching ``query``, newest first (limit 100 unless it says)."""
        self._check_open()
        return await self._store.query_api_calls(self._scoped(query))

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over the tenant's calls matching ``query``."""
        self._check_open()
        return await self._store.get_statistics(self._scoped(query))

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Statistics of the tenant's calls per group of ``group_by`` keys and per time bucket."""
        self._check_open()
        return await self._store.get_usage_breakdown(self._scoped(query), group_by, bucket, limit)

    async def get_usage_breakdowns(
        self, query: QueryFilter, breakdowns: Sequence[Breakdown]
    ) -> list[list[UsageBucket]]:
        """Several breakdowns of the tenant's calls, in order (``get_usage_breakdown`` each)."""
        self._check_open()
        return await self._store.get_usage_breakdowns(self._scoped(query), breakdowns)

    async def calls_for_messages(self, message_ids: Sequence[uuid.UUID]) -> list[LLMApiCall]:
        """The tenant's calls whose response or request message is among ``message_ids``."""
        self._check_open()
        return self._all_mine(await self._store.calls_for_messages(message_ids))

    async def page_api_calls(
        self,
        query: QueryFilter,
        *,
        sort: CallSort | str = CallSort.NEWEST,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> CallPage:
        """One page of the tenant's calls matching ``query`` in ``sort`` order, after ``cursor``."""
        self._check_open()
        return await self._store.page_api_calls(
            self._scoped(query), sort=sort, cursor=cursor, limit=limit
        )

    async def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one of the tenant's API-call records; False for another tenant's."""
        self._check_open()
        if self._mine(await self._store.get_api_call(call_id)) is None:
            return False
        return await self._store.delete_api_call(call_id)

    async def cleanup_old_records(self, before: datetime) -> int:
        """Delete the tenant's API-call records with ``create_time < before``; return how many.

        Call by call, a batch read at a time: not one transaction.
        """
        self._check_open()
        check_cutoff(before)
        old = QueryFilter(tenant_id=self._tenant_id, end_time=before, limit=_CLEANUP_BATCH)
        deleted = 0
        while batch := await self._store.query_api_calls(old):
            for call in batch:
                deleted += await self._store.delete_api_call(call.id)
        return deleted

    async def rebuild_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Refused: the rollups hold every tenant's usage; rebuild them on the store itself."""
        self._check_open()
        raise ConstraintError(
            "rebuild_rollups recounts every tenant's usage, so a view of one tenant "
            f"(tenant {self._tenant_id}) cannot run it; run it on the store itself"
        )

    async def seal_periods(self) -> int:
        """Seal the store's complete periods: that changes no answer, any tenant's included."""
        self._check_open()
        return await self._store.seal_periods()

    # -- sessions -------------------------------------------------------------------

    async def create_session(self, session: ChatSession) -> None:
        """Store a new session of the tenant."""
        self._check_open()
        self._refuse_foreign((session,), "session")
        await self._store.create_session(session)

    async def get_session(self, session_id: uuid.UUID) -> ChatSession | None:
        """The tenant's session with ``session_id``, or None."""
        self._check_open()
        return self._mine(await self._store.get_session(session_id))

    async def get_user_sessions(self, user_id: uuid.UUID) -> list[ChatSession]:
        """A user's sessions in this tenant, most recently updated first."""
        self._check_open()
        return self._all_mine(await self._store.get_user_sessions(user_id))

    async def update_session(self, session: ChatSession) -> None:
        """Replace one of the tenant's sessions; NotFoundError for another tenant's."""
        self._check_open()
        if not await self._own_session(session.id):
            raise NotFoundError(f"session {session.id} does not exist")
        self._refuse_foreign((session,), "session")
        await self._store.update_session(session)

    async def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete one of the tenant's sessions and its messages; False for another tenant's."""
        self._check_open()
        if not await self._own_session(session_id):
            return False
        return await self._store.delete_session(session_id)

    async def list_sessions(self, query: QueryFilter) -> list[ChatSession]:
        """The tenant's sessions matching ``query``, most recently active first."""
        self._check_open()
        return await self._store.list_sessions(self._scoped(query))

    async def cleanup_old_sessions(self, before: datetime) -> int:
        """Delete the tenant's sessions with ``update_time < before`` and their messages.

        Session by session, a batch read at a time: not one transaction.
        """
        self._check_open()
        check_cutoff(before)
        old = QueryFilter(tenant_id=self._tenant_id, end_time=before, limit=_CLEANUP_BATCH)
        deleted = 0
        while batch := await self._store.list_sessions(old):
            for session in batch:
                deleted += await self._store.delete_session(session.id)
        return deleted

    async def search_sessions(
        self,
        query: SessionQuery,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> SessionPage:
        """One page of the tenant's sessions ``query`` selects, newest first."""
        self._check_open()
        return await self._store.search_sessions(
            self._scoped_search(query), cursor=cursor, limit=limit
        )

    # -- batch ingest, counting and exporting ---------------------------------------------

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        """Store every record not stored yet, as the store does; all must be the tenant's.

        A message naming another tenant's session or message is refused
        even when the batch carries a session of that id (which the store
        would skip as stored).
        """
        self._check_open()
        self._refuse_foreign(sessions, "session")
        self._refuse_foreign(calls, "API call")
        await self._check_messages(messages)
        await self._store.ingest_records(sessions, messages, calls)

    async def count_records(self, kind: RecordKind, query: QueryFilter) -> int:
        """How many of the tenant's records ``export_records(kind, query)`` yields."""
        self._check_open()
        return await self._store.count_records(kind, self._scoped(query))

    async def export_records(
        self, kind: RecordKind, query: QueryFilter, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every one of the tenant's records of ``kind`` matching ``query``, in id order."""
        self._check_open()
        chunks = self._store.export_records(kind, self._scoped(query), chunk_size=chunk_size)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            finish = getattr(chunks, "aclose", None)  # an async generator holds a frame to end
            if finish is not None:
                await finish()

    # -- providers ------------------------------------------------------------------

    async def save_provider(self, provider: Provider) -> None:
        """Insert or replace one of the tenant's providers."""
        self._check_open()
        self._refuse_foreign((provider,), "provider")
        stored = await self._store.get_provider(provider.id)
        if stored is not None and stored.tenant_id != self._tenant_id:  # not ours to replace
            raise ConstraintError(f"a provider with id {provider.id} already exists")
        await self._store.save_provider(provider)

    async def get_provider(self, provider_id: uuid.UUID) -> Provider | None:
        """The tenant's provider with ``provider_id``, or None."""
        self._check_open()
        return self._mine(await self._store.get_provider(provider_id))

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        """The tenant's provider called ``name``; None for another tenant."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return None
        return self._mine(await self._store.get_provider_by_name(tenant_id, name))

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """The tenant's providers, by name; [] for another tenant."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return []
        return self._all_mine(await self._store.list_providers(tenant_id))

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """The tenant's enabled providers, by name; [] for another tenant."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return []
        return self._all_mine(await self._store.get_enabled_providers(tenant_id))

    async def delete_provider(self, provider_id: uuid.UUID) -> bool:
        """Delete one of the tenant's providers and its agents; False for another tenant's."""
        self._check_open()
        if self._mine(await self._store.get_provider(provider_id)) is None:
            return False
        return await self._store.delete_provider(provider_id)

    # -- agents ---------------------------------------------------------------------

    async def save_agent(self, agent: Agent) -> None:
        """Insert or replace one of the tenant's agents; its provider must be the tenant's."""
        self._check_open()
        self._refuse_foreign((agent,), "agent")
        stored, provider, same_code = await asyncio.gather(
            self._store.get_agent(agent.id),
            self._store.get_provider(agent.provider_id),
            self._store.get_agent_by_code(agent.agent_code),
        )
        if stored is not None and stored.tenant_id != self._tenant_id:
            raise ConstraintError(f"an agent with id {agent.id} already exists")
        if self._mine(provider) is None:
            raise ConstraintError(
                f"agent {agent.id} names provider {agent.provider_id}, which does not exist; "
                "save the provider first"
            )
        if (
            same_code is not None
            and same_code.id != agent.id
            and same_code.tenant_id != self._tenant_id
        ):  # codes are unique across tenants (MoFA's schema): say so, but not whose it is
            raise ConstraintError(f"an agent with code {agent.agent_code!r} already exists")
        await self._store.save_agent(agent)

    async def get_agent(self, agent_id: uuid.UUID) -> Agent | None:
        """The tenant's agent with ``agent_id``, or None."""
        self._check_open()
        return self._mine(await self._store.get_agent(agent_id))

    async def get_agent_by_code(self, code: str) -> Agent | None:
        """The tenant's agent with ``code``, or None."""
        self._check_open()
        return self._mine(await self._store.get_agent_by_code(code))

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        """The tenant's agent with ``code``; None for another tenant."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return None
        return self._mine(await self._store.get_agent_by_code_and_tenant(tenant_id, code))

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """The tenant's agents, by order then code; [] for another tenant."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return []
        return self._all_mine(await self._store.list_agents(tenant_id))

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """The tenant's active agents, by order then code; [] for another tenant."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return []
        return self._all_mine(await self._store.get_active_agents(tenant_id))

    def _config(self, config: AgentConfig | None) -> AgentConfig | None:
        """``config`` when both its agent and its provider are the tenant's, else None."""
        if config is None or self._mine(config.agent) is None:
            return None
        return config if self._mine(config.provider) is not None else None

    async def get_agent_with_provider(self, agent_id: uuid.UUID) -> AgentConfig | None:
        """The tenant's agent and its provider (the tenant's too), or None."""
        self._check_open()
        return self._config(await self._store.get_agent_with_provider(agent_id))

    async def get_agent_by_code_with_provider(self, code: str) -> AgentConfig | None:
        """The tenant's agent with ``code`` and its provider, or None."""
        self._check_open()
        return self._config(await self._store.get_agent_by_code_with_provider(code))

    async def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID, code: str
    ) -> AgentConfig | None:
        """The tenant's agent with ``code`` and its provider; None for another tenant."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return None
        return self._config(
            await self._store.get_agent_by_code_and_tenant_with_provider(tenant_id, code)
        )

    async def delete_agent(self, agent_id: uuid.UUID) -> bool:
        """Delete one of the tenant's agents; False for another tenant's."""
        self._check_open()
        if self._mine(await self._store.get_agent(agent_id)) is None:
            return False
        return await self._store.delete_agent(agent_id)

    # -- erasure ----------------------------------------------------------------------

    async def erase_user(self, user_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase one of the tenant's users as the store does; nothing for another tenant's.

        A user with records in other tenants too raises ConstraintError: the
        store erases a user everywhere at once, which a view of one tenant
        may not do.
        """
        self._check_open()
        check_erased_user(user_id)
        everywhere = QueryFilter(user_id=user_id)
        here = everywhere.tenant(self._tenant_id)
        counts = await asyncio.gather(
            *(
                self._store.count_records(kind, query)
                for kind in RECORD_KINDS
                for query in (everywhere, here)
            )
        )
        ours, all_of_them = sum(counts[1::2]), sum(counts[0::2])
        if ours == 0:
            return ErasureReport(user_id=user_id, dry_run=dry_run)
        if ours != all_of_them:
            raise ConstraintError(
                f"user {user_id} has records in other tenants too, and a view of tenant "
                f"{self._tenant_id} erases only the tenant's own users: erase through the store"
            )
        return await self._store.erase_user(user_id, dry_run=dry_run)

    async def erase_tenant(self, tenant_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase this tenant as the store does; another tenant is unknown here: a report of 0s."""
        self._check_open()
        if not self._is_mine(tenant_id):
            return ErasureReport(tenant_id=tenant_id, dry_run=dry_run)
        return await self._store.erase_tenant(tenant_id, dry_run=dry_run)
