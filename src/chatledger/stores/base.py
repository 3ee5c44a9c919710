"""The store protocols every backend implements, and the shapes they share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar, runtime_checkable

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
from chatledger.errors import StoreConnectionError
from chatledger.stores.arguments import check_arguments

__all__ = [
    "Breakdown",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_QUERY_LIMIT",
    "DEFAULT_CHUNK_SIZE",
    "GROUP_BY_KEYS",
    "RECORD_KINDS",
    "AgentStore",
    "ApiCallStore",
    "Bucket",
    "GroupKey",
    "MessageStore",
    "PersistenceStore",
    "ProviderStore",
    "RecordKind",
    "SessionStore",
    "StoreLifecycle",
    "check_breakdown_args",
    "check_breakdown_limit",
    "check_chunk_size",
    "check_cutoff",
    "check_erased_user",
    "check_record_query",
    "first_of_each_id",
]

_R = TypeVar("_R", ChatSession, LLMMessage, LLMApiCall)

DEFAULT_QUERY_LIMIT = 100
"""How many records ``query_api_calls`` and ``list_sessions`` return by default."""

DEFAULT_PAGE_SIZE = 50
"""How many records ``page_api_calls`` and ``search_sessions`` return by default."""

DEFAULT_CHUNK_SIZE = 2000
"""How many records ``export_records`` hands over at a time unless told otherwise."""

GroupKey = Literal["model", "agent", "user", "tenant", "session", "status"]
Bucket = Literal["hour", "day", "week", "month"]
GROUP_BY_KEYS: tuple[GroupKey, ...] = ("model", "agent", "user", "tenant", "session", "status")
_BUCKETS: tuple[Bucket, ...] = ("hour", "day", "week", "month")

# What only API calls have: a filter naming one of these selects no session or message.
_CALL_ONLY_FIELDS = (
    "status",
    "model_name",
    "error_code",
    "min_cost",
    "max_cost",
    "min_latency_ms",
    "max_latency_ms",
)

RecordKind = Literal["sessions", "messages", "api_calls"]
"""What ``count_records`` and ``export_records`` read: sessions, messages or API calls."""
RECORD_KINDS: tuple[RecordKind, ...] = ("sessions", "messages", "api_calls")

Breakdown = tuple[Sequence[GroupKey], Bucket | None, int | None]
"""One breakdown of ``get_usage_breakdowns``: its group_by keys, bucket and limit."""


def check_cutoff(before: datetime) -> datetime:
    """Refuse a naive retention cutoff: which records it keeps would depend on the machine."""
    if before.tzinfo is None or before.utcoffset() is None:
        raise ValueError(
            f"before={before!r} has no timezone; pass an aware time, e.g. datetime.now(UTC)"
        )
    return before


def check_breakdown_args(group_by: Sequence[str], bucket: str | None) -> tuple[GroupKey, ...]:
    """Validate a breakdown's ``group_by`` and ``bucket``; return the keys without repeats."""
    if isinstance(group_by, str):
        raise TypeError("group_by takes a sequence of keys, e.g. ['model'], not a string")
    unknown = [key for key in group_by if key not in GROUP_BY_KEYS]
    if unknown:
        raise ValueError(f"unknown group_by key(s) {unknown!r}; choose from {list(GROUP_BY_KEYS)}")
    if bucket is not None and bucket not in _BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; choose from {list(_BUCKETS)} or None")
    return tuple(dict.fromkeys(group_by))  # type: ignore[arg-type]  # checked above


def check_breakdown_limit(limit: int | None) -> None:
    """Refuse a breakdown's ``limit`` below 1 (None keeps every group)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for every group), not {limit!r}")


def check_record_query(kind: str, query: QueryFilter) -> RecordKind:
    """Validate a record kind and the filter asked of it; return the kind.

    Sessions and messages have no status, model, error code, cost or
    latency: a filter naming one is a mistake to report, not a condition to
    drop silently.
    """
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r}; choose from {list(RECORD_KINDS)}")
    if kind != "api_calls":
        named = [name for name in _CALL_ONLY_FIELDS if getattr(query, name) is not None]
        if named:
            raise ValueError(
                f"{kind} have no status or model (nor error code, cost or latency); the filter's "
                f"{' and '.join(named)} applies to api_calls only"
            )
    return kind


def first_of_each_id(records: Sequence[_R]) -> list[_R]:
    """``records`` in order without repeated ids: the first record of each id is kept."""
    kept: dict[uuid.UUID, _R] = {}
    for record in records:
        kept.setdefault(record.id, record)
    return list(kept.values())


def check_chunk_size(chunk_size: int) -> int:
    """Refuse an export chunk size below 1."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size!r}")
    return chunk_size


def check_erased_user(user_id: uuid.UUID) -> uuid.UUID:
    """Refuse to erase the nil user: it is no one, and where every erased user's calls go."""
    if user_id.int == 0:
        raise ValueError(
            "the nil user is not a user to erase: it stands for calls without one, and "
            "erased users' calls are kept under it; erase_tenant erases a whole tenant"
        )
    return user_id


@runtime_checkable
class MessageStore(Protocol):
    """Keeps the messages of chat sessions."""

    async def save_message(self, message: LLMMessage) -> None:
        """Store one message; its session must exist."""
        ...

    async def save_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Store all of ``messages`` in one transaction, or none of them."""
        ...

    async def get_message(self, message_id: uuid.UUID) -> LLMMessage | None:
        """The message with ``message_id``, or None."""
        ...

    async def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        """Every message of a session, oldest first."""
        ...

    async def get_session_messages_paginated(
        self, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[LLMMessage]:
        """A page of a session's messages, oldest first."""
        ...

    async def get_recent_messages(self, session_id: uuid.UUID, limit: int) -> list[LLMMessage]:
        """The newest ``limit`` messages of a session, returned oldest first."""
        ...

    async def delete_message(self, message_id: uuid.UUID) -> bool:
        """Delete one message; True when it existed."""
        ...

    async def delete_session_messages(self, session_id: uuid.UUID) -> int:
        """Delete a session's messages; return how many there were."""
        ...

    async def count_session_messages(self, session_id: uuid.UUID) -> int:
        """How many messages a session has."""
        ...

    async def count_messages_by_session(
        self, session_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """How many messages each of ``session_ids`` has (0 for one without any), in one query."""
        ...


@runtime_checkable
class ApiCallStore(Protocol):
    """Keeps the ledger of LLM API calls."""

    async def save_api_call(self, call: LLMApiCall) -> None:
        """Store one API-call record."""
        ...

    async def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store all of ``calls`` in one transaction, or none of them."""
        ...

    async def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The API call with ``call_id``, or None."""
        ...

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Calls matching ``query``, newest first (limit 100 unless it says otherwise)."""
        ...

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over every call matching ``query``; offset and limit do not apply."""
        ...

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Statistics per group of ``group_by`` keys and per UTC time bucket.

        Rows come by bucket start, then by their keys' string forms. With
        ``limit``, only the ``limit`` groups (combinations of key values,
        over every bucket) with the most calls are kept, ties broken by
        their keys' string forms; ``limit < 1`` raises ValueError.
        """
        ...

    async def get_usage_breakdowns(
        self, query: QueryFilter, breakdowns: Sequence[Breakdown]
    ) -> list[list[UsageBucket]]:
        """Several breakdowns of one filter at once, each as ``get_usage_breakdown`` answers it.

        ``breakdowns`` holds ``(group_by, bucket, limit)`` triples; the answers
        come in their order. A backend may read what they share once (the
        dashboard's overview asks for seven over the same calls).
        """
        ...

    async def calls_for_messages(self, message_ids: Sequence[uuid.UUID]) -> list[LLMApiCall]:
        """The calls whose response or request message is among ``message_ids``.

        Each call once, oldest first (then by id): a conversation shows each
        call under the reply it produced.
        """
        ...

    async def page_api_calls(
        self,
        query: QueryFilter,
        *,
        sort: CallSort | str = CallSort.NEWEST,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> CallPage:
        """One page of the calls matching ``query`` in ``sort`` order, after ``cursor``.

        Keyset pagination: ``next_cursor`` (None on the last page) reads the
        next page. Ties are broken by create_time then id, in the sort's
        direction; calls without the sort's value come after all the others.
        The filter's offset and limit are ignored. A cursor of another sort,
        or a damaged one, an unknown sort or ``limit < 1`` raise ValueError.
        """
        ...

    async def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one API-call record; True when it existed."""
        ...

    async def cleanup_old_records(self, before: datetime) -> int:
        """Delete API-call records with ``create_time < before``; return how many."""
        ...

    async def rebuild_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Recount the usage rollups from the API calls; return how many calls they count.

        Needed only when calls were written or deleted around chatledger (by
        SQL of one's own, or by MoFA): every store write keeps the rollups
        current. ``progress(done, total)`` is called after each step.
        """
        ...

    async def seal_periods(self) -> int:
        """Sum each complete month's and week's rollups into rows of their own; return how many.

        Breakdowns over long ranges then read a row per month or week instead
        of one per day. Every answer stays the same; a write into a sealed
        period unseals it. The dashboard seals on start and hourly;
        ``rebuild_rollups`` seals too. A store without rollups seals nothing (0).
        """
        ...


@runtime_checkable
class SessionStore(Protocol):
    """Keeps chat sessions."""

    async def create_session(self, session: ChatSession) -> None:
        """Store a new session."""
        ...

    async def get_session(self, session_id: uuid.UUID) -> ChatSession | None:
        """The session with ``session_id``, or None."""
        ...

    async def get_user_sessions(self, user_id: uuid.UUID) -> list[ChatSession]:
        """A user's sessions, most recently updated first."""
        ...

    async def update_session(self, session: ChatSession) -> None:
        """Replace a stored session; NotFoundError when it does not exist."""
        ...

    async def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete a session and its messages (API calls stay); True when it existed."""
        ...

    async def list_sessions(self, query: QueryFilter) -> list[ChatSession]:
        """Sessions matching ``query``, most recently active first (limit 100 by default).

        The filter's ``session_id`` is the session's own id and its time range
        applies to ``update_time`` (last activity): ``start <= update_time < end``.
        A filter with ``status`` or ``model_name`` raises ValueError.
        """
        ...

    async def cleanup_old_sessions(self, before: datetime) -> int:
        """Delete sessions with ``update_time < before`` and their messages; return how many.

        API-call records stay: they are the ledger. One transaction.
        """
        ...

    async def search_sessions(
        self,
        query: SessionQuery,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> SessionPage:
        """One page of the sessions ``query`` selects, newest first (create_time, then id).

        ``query.text`` matches, case-insensitively and literally, part of the
        title or of any of the session's messages' text. ``next_cursor``
        (None on the last page) reads the next page; a damaged cursor, or one
        made by ``page_api_calls``, or ``limit < 1`` raise ValueError.
        """
        ...


@runtime_checkable
class ProviderStore(Protocol):
    """Keeps LLM provider accounts."""

    async def save_provider(self, provider: Provider) -> None:
        """Insert or replace a provider."""
        ...

    async def get_provider(self, provider_id: uuid.UUID) -> Provider | None:
        """The provider with ``provider_id``, or None."""
        ...

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        """A tenant's provider called ``name``, or None."""
        ...

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's providers, by name."""
        ...

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's enabled providers, by name."""
        ...

    async def delete_provider(self, provider_id: uuid.UUID) -> bool:
        """Delete a provider and its agents; True when it existed."""
        ...


@runtime_checkable
class AgentStore(Protocol):
    """Keeps agent definitions."""

    async def save_agent(self, agent: Agent) -> None:
        """Insert or replace an agent; its provider must exist."""
        ...

    async def get_agent(self, agent_id: uuid.UUID) -> Agent | None:
        """The agent with ``agent_id``, or None."""
        ...

    async def get_agent_by_code(self, code: str) -> Agent | None:
        """The agent with ``code``, or None."""
        ...

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        """A tenant's agent with ``code``, or None."""
        ...

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's agents, by order then code."""
        ...

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's active agents, by order then code."""
        ...

    async def get_agent_with_provider(self, agent_id: uuid.UUID) -> AgentConfig | None:
        """An agent and its provider, or None."""
        ...

    async def get_agent_by_code_with_provider(self, code: str) -> AgentConfig | None:
        """The agent with ``code`` and its provider, or None."""
        ...

    async def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID, code: str
    ) -> AgentConfig | None:
        """A tenant's agent with ``code`` and its provider, or None."""
        ...

    async def delete_agent(self, agent_id: uuid.UUID) -> bool:
        """Delete an agent; True when it existed."""
        ...


@runtime_checkable
class PersistenceStore(
    MessageStore, ApiCallStore, SessionStore, ProviderStore, AgentStore, Protocol
):
    """All five stores behind one connection, usable as an async context manager."""

    @property
    def backend_name(self) -> str:
        """A short name of the backend: memory, sqlite, postgres or mysql."""
        ...

    @property
    def is_connected(self) -> bool:
        """True until ``close()`` has been called."""
        ...

    def for_tenant(self, tenant_id: uuid.UUID | str) -> PersistenceStore:
        """This store as one tenant sees it: its records only, other tenants' writes refused.

        ``tenant_id`` is a UUID, or a key as ``chatledger.scope`` takes one. See
        :mod:`chatledger.stores.tenancy`; closing the view leaves this store open.
        """
        ...

    async def close(self) -> None:
        """Release connections and threads; safe to call twice."""
        ...

    async def schema_version(self) -> int:
        """The newest schema migration the data is at (0: no chatledger tables).

        A store without a schema of its own (memory) is always current.
        """
        ...

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        """Store, in one transaction, every record whose id is not stored yet: sessions, then messages, then calls; records already stored are skipped, so a batch shipped twice is stored once.

        What a durable spool's shipper calls: a write that committed but whose
        acknowledgement was lost is shipped again and must not fail. A stored
        session is left as it is, not updated; of ids repeated inside the batch
        the first record is kept. Messages come in the given order (a parent
        before its replies) and move their session's ``update_time`` forward
        as ``save_messages`` does. Anything else that is wrong raises what
        ``create_session``, ``save_messages`` or ``save_api_calls`` would
        (ConstraintError for a missing session or parent, SerializationError
        for a NUL character, …) and stores nothing of the batch.
        """  # noqa: E501  (the first line is the contract, word for word)
        ...

    async def count_records(self, kind: RecordKind, query: QueryFilter) -> int:
        """How many records ``export_records(kind, query)`` yields (offset and limit ignored)."""
        ...

    def export_records(
        self, kind: RecordKind, query: QueryFilter, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every record of ``kind`` matching ``query``, in id order, ``chunk_size`` at a time.

        ``kind`` is "sessions", "messages" or "api_calls". For API calls the
        filter means what it means to ``query_api_calls``; for messages it
        selects by tenant, user, agent, session and ``create_time``; for
        sessions as ``list_sessions`` does (time range on ``update_time``).
        Offset and limit are ignored. Each record is a JSON-ready dict equal to
        the entity's ``model_dump(mode="json")``: the same keys in the same
        order, ids and times as text, money as float, so ``pydantic_core.to_json``
        of it is the entity's ``model_dump_json()``. Records are not validated
        into entities on the way. Chunks are read one query each, so a record
        saved during the export may appear in it and one deleted may not.
        An unknown kind, a filter on what only API calls have (status, model,
        error code, cost, latency) for sessions or messages, or
        ``chunk_size < 1`` raises ValueError on the first iteration.
        """
        ...

    # -- erasure (issue 14) ------------------------------------------------------------

    async def erase_user(self, user_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Delete a user's sessions and messages and anonymise their API calls, in one transaction.

        Deleted: every session of the user with its messages, and every
        message of theirs in other sessions (replies to one lose their
        parent). Kept for the ledger, anonymised: each API call of the user
        gets the nil UUID as its user, session, request and response message,
        and loses its error message and provider response id; tokens, cost,
        model, agent, tenant, status and times stay, so totals and rollups
        add up as before. An unknown user gives a report of zeros; the nil
        user (where anonymised calls go) raises ValueError. ``dry_run``
        counts what would be erased and changes nothing.
        """
        ...

    async def erase_tenant(self, tenant_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase every user of a tenant as ``erase_user`` does; delete its providers and agents.

        Every session and message of the tenant is deleted, every API call of
        the tenant anonymised as ``erase_user`` does; the calls keep
        ``tenant_id``, the operator's key for what the tenant is billed. Its
        providers (which hold API keys) and its agents (and any agent of
        another tenant served by one of its providers) are deleted.
        ``dry_run`` counts what would be erased and changes nothing. One transaction.
        """
        ...

    async def __aenter__(self) -> Self:
        """Return the store itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...


class StoreLifecycle:
    """Open/closed state and ``async with`` shared by every backend.

    A subclass names itself in ``backend_name`` and releases what it holds
    in ``_release()``; every public method starts with ``_check_open()``.
    Every public coroutine a subclass defines gets its arguments checked
    first (see :mod:`chatledger.stores.arguments`): the same ``TypeError``
    for the same wrong argument on every backend.
    """

    backend_name: ClassVar[str]
    _closed: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the arguments of every public coroutine ``cls`` defines."""
        super().__init_subclass__(**kwargs)
        check_arguments(cls)

    @property
    def is_connected(self) -> bool:
        """True until ``close()`` has been called."""
        return not self._closed

    async def close(self) -> None:
        """Release connections, threads or records; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        """Free what the store holds; called once, by ``close()``."""

    async def schema_version(self) -> int:
        """The newest schema migration the data is at: a store without a schema is current."""
        from chatledger.stores.schema import MIGRATIONS  # schema imports nothing of ours back

        self._check_open()
        return MIGRATIONS[-1].version

    def _check_open(self) -> None:
        if self._closed:
            raise StoreConnectionError(
                f"the {self.backend_name} store is closed; open a new one to go on"
            )

    async def __aenter__(self) -> Self:
        """Return the store itself."""
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        await self.close()

    async def get_usage_breakdowns(
        self, query: QueryFilter, breakdowns: Sequence[Breakdown]
    ) -> list[list[UsageBucket]]:
        """Several breakdowns of one filter, in order: each asked of ``get_usage_breakdown``."""
        store: Any = self  # every subclass is a whole PersistenceStore
        return list(
            await asyncio.gather(
                *(
                    store.get_usage_breakdown(query, keys, bucket, limit)
                    for keys, bucket, limit in breakdowns
                )
            )
        )

    def for_tenant(self, tenant_id: uuid.UUID | str) -> PersistenceStore:
        """This store as one tenant sees it: its records only, other tenants' writes refused.

        ``tenant_id`` is a UUID, or a key as ``chatledger.scope`` takes one. See
        :mod:`chatledger.stores.tenancy`; closing the view leaves this store open.
        """
        from chatledger.stores.tenancy import TenantStore  # tenancy builds on this module

        # Every subclass is a whole PersistenceStore; this base alone does not say so.
        store: Any = self
        return TenantStore(store, tenant_id)
