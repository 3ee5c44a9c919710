"""The in-memory backend: the reference every other backend is tested against.

``InMemoryStore`` keeps every record in process memory and implements all of
``PersistenceStore`` with the same behaviour as the SQL backends: the same
errors for the same misuse, the same order, all-or-nothing batches and the
same statistics. It is meant for tests, demos and short-lived agents; nothing
survives the process.

Every mutation runs without an ``await`` between its checks and its writes,
so it is atomic with respect to other tasks on the event loop: any number of
concurrent tasks may share one store. Entities are frozen pydantic models and
are kept as they are given.
"""

from __future__ import annotations

import logging
import uuid
from bisect import bisect_left, insort
from collections.abc import AsyncIterator, Callable, Container, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

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
from chatledger.errors import Failure, NotFoundError, failure_error
from chatledger.ids import NIL_UUID
from chatledger.stores.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    DEFAULT_QUERY_LIMIT,
    Bucket,
    GroupKey,
    RecordKind,
    StoreLifecycle,
    check_breakdown_args,
    check_breakdown_limit,
    check_chunk_size,
    check_cutoff,
    check_erased_user,
    check_record_query,
    first_of_each_id,
)
from chatledger.stores.encoding import ensure_storable_text, storable_json
from chatledger.stores.filtering import call_conditions, meets
from chatledger.stores.paging import (
    after_cursor,
    call_cursor,
    check_page_limit,
    check_sort,
    decode_call_cursor,
    decode_session_cursor,
    ordered_calls,
    session_cursor,
)
from chatledger.stores.statistics import compute_breakdown, compute_statistics

__all__ = ["InMemoryStore"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_MessageOrder = tuple[datetime, uuid.UUID]


def _message_order(message: LLMMessage) -> _MessageOrder:
    """Messages sort oldest first; equal times keep save order through UUIDv7 ids."""
    return message.create_time, message.id


def _call_order(call: LLMApiCall) -> tuple[datetime, uuid.UUID]:
    return call.create_time, call.id


def _contains(haystack: str | None, needle: str) -> bool:
    """``needle`` (already lowercased) is part of ``haystack``, case aside."""
    return haystack is not None and needle in haystack.lower()


def _owned_by(record: ChatSession | LLMMessage, query: QueryFilter) -> bool:
    """True when ``record`` belongs to the tenant, user and agent ``query`` names, if any."""
    return (
        (query.tenant_id is None or record.tenant_id == query.tenant_id)
        and (query.user_id is None or record.user_id == query.user_id)
        and (query.agent_id is None or record.agent_id == query.agent_id)
    )


def _in_range(moment: datetime, query: QueryFilter) -> bool:
    """True when ``start <= moment < end`` for the bounds ``query`` sets."""
    return (query.start_time is None or moment >= query.start_time) and (
        query.end_time is None or moment < query.end_time
    )


def session_matches(session: ChatSession, query: QueryFilter) -> bool:
    """True when ``session`` meets ``query``: its own id, and its last activity in the range."""
    return (
        _owned_by(session, query)
        and (query.session_id is None or session.id == query.session_id)
        and _in_range(session.update_time, query)
    )


def message_matches(message: LLMMessage, query: QueryFilter) -> bool:
    """True when ``message`` meets ``query``: its session, and its create_time in the range."""
    return (
        _owned_by(message, query)
        and (query.session_id is None or message.chat_session_id == query.session_id)
        and _in_range(message.create_time, query)
    )


def _check_entity_text(entity: BaseModel, field: str) -> None:
    """Refuse an entity holding what no backend can store (NUL, lone surrogates, NaN)."""
    storable_json(entity, field)


def _check_batch_text(batch: Sequence[BaseModel], name: str) -> None:
    for index, entity in enumerate(batch):
        storable_json(entity, f"{name}[{index}]")


_NAME = "memory"  # how its errors name the store


class InMemoryStore(StoreLifecycle):
    """Every chatledger store in process memory; full parity with the SQL backends."""

    backend_name = _NAME

    def __init__(self) -> None:
        """Create an empty, connected store."""
        self._sessions: dict[uuid.UUID, ChatSession] = {}
        self._messages: dict[uuid.UUID, LLMMessage] = {}
        # session id -> its messages, kept sorted by (create_time, id).
        self._session_messages: dict[uuid.UUID, list[LLMMessage]] = {}
        # message id -> the ids of the messages naming it as their parent.
        self._children: dict[uuid.UUID, set[uuid.UUID]] = {}
        self._api_calls: dict[uuid.UUID, LLMApiCall] = {}
        # session id -> its API calls, so a session's usage is found without a full scan.
        self._session_calls: dict[uuid.UUID, dict[uuid.UUID, LLMApiCall]] = {}
        self._providers: dict[uuid.UUID, Provider] = {}
        self._agents: dict[uuid.UUID, Agent] = {}

    # -- lifecycle -------------------------------------------------------------

    async def _release(self) -> None:
        """Drop every record."""
        self._sessions.clear()
        self._messages.clear()
        self._session_messages.clear()
        self._children.clear()
        self._api_calls.clear()
        self._session_calls.clear()
        self._providers.clear()
        self._agents.clear()
        logger.debug("in-memory store closed")

    def __repr__(self) -> str:
        """Show the backend, its state and how many records it holds."""
        state = "closed" if self._closed else "open"
        return (
            f"<InMemoryStore {state} sessions={len(self._sessions)} "
            f"messages={len(self._messages)} api_calls={len(self._api_calls)}>"
        )

    # -- messages --------------------------------------------------------------

    async def save_message(self, message: LLMMessage) -> None:
        """Store one message; its session must exist and its id must be new."""
        await self.save_messages((message,))

    async def save_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Store all of ``messages``, or none of them when any is refused."""
        self._check_open()
        batch = list(messages)
        _check_batch_text(batch, "messages")
        self._check_messages(batch)
        self._store_messages(batch)

    def _check_messages(
        self, batch: Sequence[LLMMessage], new_sessions: Container[uuid.UUID] = ()
    ) -> None:
        """Refuse a batch whose ids, sessions or parents the SQL backends would refuse.

        A parent is stored already or comes earlier in the batch (or is the
        message itself). ``new_sessions`` are stored with the batch.
        """
        seen: set[uuid.UUID] = set()
        for message in batch:
            if message.id in self._messages or message.id in seen:
                raise failure_error(
                    Failure.ALREADY_USED, _NAME, f"a message with id {message.id} already exists"
                )
            session_id = message.chat_session_id
            if session_id not in self._sessions and session_id not in new_sessions:
                raise failure_error(
                    Failure.MISSING_REFERENCE,
                    _NAME,
                    f"message {message.id} names session {session_id}",
                )
            seen.add(message.id)
            parent = message.parent_message_id
            if parent is not None and parent not in self._messages and parent not in seen:
                raise failure_error(
                    Failure.MISSING_REFERENCE,
                    _NAME,
                    f"message {message.id} names parent message {parent}",
                )

    def _store_messages(self, batch: Sequence[LLMMessage]) -> None:
        """Store checked messages; each moves its session's update_time forward to its own."""
        for message in batch:
            self._messages[message.id] = message
            insort(
                self._session_messages.setdefault(message.chat_session_id, []),
                message,
                key=_message_order,
            )
            if message.parent_message_id is not None:
                self._children.setdefault(message.parent_message_id, set()).add(message.id)
            session = self._sessions[message.chat_session_id]
            if message.update_time > session.update_time:  # as the SQL stores' UPDATE
                self._sessions[session.id] = session.model_copy(
                    update={"update_time": message.update_time}
                )

    async def get_message(self, message_id: uuid.UUID) -> LLMMessage | None:
        """The message with ``message_id``, or None."""
        self._check_open()
        return self._messages.get(message_id)

    async def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        """Every message of a session, oldest first."""
        self._check_open()
        return list(self._session_messages.get(session_id, ()))

    async def get_session_messages_paginated(
        self, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[LLMMessage]:
        """A page of a session's messages, oldest first; [] for offset < 0 or limit <= 0."""
        self._check_open()
        if offset < 0 or limit <= 0:
            return []
        return self._session_messages.get(session_id, [])[offset : offset + limit]

    async def get_recent_messages(self, session_id: uuid.UUID, limit: int) -> list[LLMMessage]:
        """The newest ``limit`` messages of a session, returned oldest first."""
        self._check_open()
        if limit <= 0:
            return []
        return self._session_messages.get(session_id, [])[-limit:]

    async def delete_message(self, message_id: uuid.UUID) -> bool:
        """Delete one message (its replies lose their parent); True when it existed."""
        self._check_open()
        message = self._messages.get(message_id)
        if message is None:
            return False
        ordered = self._session_messages[message.chat_session_id]
        index = bisect_left(ordered, _message_order(message), key=_message_order)
        del ordered[index]
        if not ordered:
            del self._session_messages[message.chat_session_id]
        self._forget_messages([message])
        return True

    async def delete_session_messages(self, session_id: uuid.UUID) -> int:
        """Delete a session's messages; return how many there were."""
        self._check_open()
        return self._drop_session_messages(session_id)

    async def count_messages_by_session(
        self, session_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """How many messages each of ``session_ids`` has (0 for one without any)."""
        self._check_open()
        return {
            session_id: len(self._session_messages.get(session_id, ()))
            for session_id in session_ids
        }

    async def count_session_messages(self, session_id: uuid.UUID) -> int:
        """How many messages a session has."""
        self._check_open()
        return len(self._session_messages.get(session_id, ()))

    def _drop_session_messages(self, session_id: uuid.UUID) -> int:
        ordered = self._session_messages.pop(session_id, [])
        self._forget_messages(ordered)
        return len(ordered)

    def _forget_messages(self, gone: Sequence[LLMMessage]) -> None:
        """Drop ``gone`` (already out of their sessions' lists) from the id indexes.

        The messages that named one of them as their parent lose that parent,
        as the SQL stores' ``ON DELETE SET NULL`` does.
        """
        for message in gone:
            del self._messages[message.id]
            parent = message.parent_message_id
            if parent is not None and (siblings := self._children.get(parent)) is not None:
                siblings.discard(message.id)
                if not siblings:
                    del self._children[parent]
        for message in gone:
            for child_id in self._children.pop(message.id, ()):
                child = self._messages.get(child_id)
                if child is not None:
                    self._replace_message(child.model_copy(update={"parent_message_id": None}))

    def _replace_message(self, message: LLMMessage) -> None:
        """Put a changed copy of a stored message where the original was."""
        self._messages[message.id] = message
        ordered = self._session_messages[message.chat_session_id]
        ordered[bisect_left(ordered, _message_order(message), key=_message_order)] = message

    # -- API calls -------------------------------------------------------------

    async def save_api_call(self, call: LLMApiCall) -> None:
        """Store one API-call record; its id must be new."""
        await self.save_api_calls((call,))

    async def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store all of ``calls``, or none of them when any is refused."""
        self._check_open()
        batch = list(calls)
        _check_batch_text(batch, "api_calls")
        self._check_calls(batch)
        self._store_calls(batch)

    def _check_calls(self, batch: Sequence[LLMApiCall]) -> None:
        seen: set[uuid.UUID] = set()
        for call in batch:
            if call.id in self._api_calls or call.id in seen:
                raise failure_error(
                    Failure.ALREADY_USED, _NAME, f"an API call with id {call.id} already exists"
                )
            seen.add(call.id)

    def _store_calls(self, batch: Sequence[LLMApiCall]) -> None:
        for call in batch:
            self._api_calls[call.id] = call
            self._session_calls.setdefault(call.chat_session_id, {})[call.id] = call

    async def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The API call with ``call_id``, or None."""
        self._check_open()
        return self._api_calls.get(call_id)

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Calls matching ``query``, newest first; limit 100 unless it says otherwise."""
        self._check_open()
        limit = DEFAULT_QUERY_LIMIT if query.limit is None else query.limit
        offset = query.offset or 0
        if limit <= 0:
            return []
        matching = sorted(self._matching_calls(query), key=_call_order, reverse=True)
        return matching[offset : offset + limit]

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over every call matching ``query``; offset and limit do not apply."""
        self._check_open()
        return compute_statistics(self._matching_calls(query))

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Statistics per group of ``group_by`` keys and per UTC time bucket.

        The in-memory store has no rollups: it answers every statistic from
        the calls, through the same computation (exact percentiles).
        """
        keys = check_breakdown_args(group_by, bucket)
        check_breakdown_limit(limit)
        self._check_open()
        return compute_breakdown(self._matching_calls(query), keys, bucket, limit)

    async def calls_for_messages(self, message_ids: Sequence[uuid.UUID]) -> list[LLMApiCall]:
        """The calls whose response or request message is among ``message_ids``, oldest first."""
        self._check_open()
        wanted = set(message_ids)
        found = [
            call
            for call in self._api_calls.values()
            if call.response_message_id in wanted or call.request_message_id in wanted
        ]
        return sorted(found, key=_call_order)

    async def rebuild_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Nothing to rebuild (statistics read the calls); return how many calls there are."""
        self._check_open()
        if progress is not None:
            progress(1, 1)
        return len(self._api_calls)

    async def seal_periods(self) -> int:
        """Nothing to seal (statistics read the calls): 0."""
        self._check_open()
        return 0

    async def page_api_calls(
        self,
        query: QueryFilter,
        *,
        sort: CallSort | str = CallSort.NEWEST,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> CallPage:
        """One page of the calls matching ``query`` in ``sort`` order, after ``cursor``."""
        order = check_sort(sort)
        after = None if cursor is None else decode_call_cursor(order, cursor)
        check_page_limit(limit)
        self._check_open()
        found = ordered_calls(self._matching_calls(query), order)
        if after is not None:
            found = [call for call in found if after_cursor(call, order, after)]
        page = found[:limit]
        more = len(found) > limit
        return CallPage(calls=page, next_cursor=call_cursor(order, page[-1]) if more else None)

    async def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one API-call record; True when it existed."""
        self._check_open()
        return self._drop_api_call(call_id)

    async def cleanup_old_records(self, before: datetime) -> int:
        """Delete API-call records with ``create_time < before``; return how many."""
        self._check_open()
        check_cutoff(before)
        old = [call.id for call in self._api_calls.values() if call.create_time < before]
        for call_id in old:
            self._drop_api_call(call_id)
        logger.debug("deleted %d API-call records older than %s", len(old), before.isoformat())
        return len(old)

    def _matching_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        if query.session_id is None:
            candidates: Iterable[LLMApiCall] = self._api_calls.values()
        else:
            candidates = self._session_calls.get(query.session_id, {}).values()
        conditions = call_conditions(query)
        return [call for call in candidates if meets(call, conditions)]

    def _drop_api_call(self, call_id: uuid.UUID) -> bool:
        call = self._api_calls.pop(call_id, None)
        if call is None:
            return False
        of_session = self._session_calls[call.chat_session_id]
        del of_session[call_id]
        if not of_session:
            del self._session_calls[call.chat_session_id]
        return True

    # -- sessions --------------------------------------------------------------

    async def create_session(self, session: ChatSession) -> None:
        """Store a new session; its id must be new."""
        self._check_open()
        if session.id in self._sessions:
            raise failure_error(
                Failure.ALREADY_USED, _NAME, f"a session with id {session.id} already exists"
            )
        _check_entity_text(session, "session")
        self._sessions[session.id] = session

    async def get_session(self, session_id: uuid.UUID) -> ChatSession | None:
        """The session with ``session_id``, or None."""
        self._check_open()
        return self._sessions.get(session_id)

    async def get_user_sessions(self, user_id: uuid.UUID) -> list[ChatSession]:
        """A user's sessions, most recently updated first."""
        self._check_open()
        mine = [session for session in self._sessions.values() if session.user_id == user_id]
        return sorted(mine, key=lambda s: (s.update_time, s.id), reverse=True)

    async def update_session(self, session: ChatSession) -> None:
        """Replace a stored session; NotFoundError when it does not exist."""
        self._check_open()
        if session.id not in self._sessions:
            raise NotFoundError(f"no session with id {session.id}; create it first")
        _check_entity_text(session, "session")
        self._sessions[session.id] = session

    async def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete a session and its messages (API calls stay); True when it existed."""
        self._check_open()
        if self._sessions.pop(session_id, None) is None:
            return False
        self._drop_session_messages(session_id)
        return True

    async def list_sessions(self, query: QueryFilter) -> list[ChatSession]:
        """Sessions matching ``query``, most recently active first (limit 100 by default)."""
        check_record_query("sessions", query)
        self._check_open()
        limit = DEFAULT_QUERY_LIMIT if query.limit is None else query.limit
        offset = query.offset or 0
        if limit <= 0:
            return []
        found = [s for s in self._sessions.values() if session_matches(s, query)]
        found.sort(key=lambda s: (s.update_time, s.id), reverse=True)
        return found[offset : offset + limit]

    async def search_sessions(
        self,
        query: SessionQuery,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> SessionPage:
        """One page of the sessions ``query`` selects, newest first (create_time, then id)."""
        after = None if cursor is None else decode_session_cursor(cursor)
        check_page_limit(limit)
        self._check_open()
        found = [s for s in self._sessions.values() if self._session_found(s, query)]
        found.sort(key=lambda s: (s.create_time, s.id), reverse=True)
        if after is not None:
            mark = (after.create_time, after.id)
            found = [s for s in found if (s.create_time, s.id) < mark]
        page = found[:limit]
        more = len(found) > limit
        return SessionPage(sessions=page, next_cursor=session_cursor(page[-1]) if more else None)

    def _session_found(self, session: ChatSession, query: SessionQuery) -> bool:
        """True when ``session`` meets every condition of a session search."""
        if not (
            (query.tenant_id is None or session.tenant_id == query.tenant_id)
            and (query.user_id is None or session.user_id == query.user_id)
            and (query.agent_id is None or session.agent_id == query.agent_id)
            and (query.start_time is None or session.create_time >= query.start_time)
            and (query.end_time is None or session.create_time < query.end_time)
        ):
            return False
        if query.text is None:
            return True
        needle = query.text.lower()
        return _contains(session.title, needle) or any(
            _contains(message.content.text, needle)
            for message in self._session_messages.get(session.id, ())
        )

    async def cleanup_old_sessions(self, before: datetime) -> int:
        """Delete sessions with ``update_time < before`` and their messages; return how many."""
        self._check_open()
        check_cutoff(before)
        old = [s.id for s in self._sessions.values() if s.update_time < before]
        for session_id in old:
            del self._sessions[session_id]
            self._drop_session_messages(session_id)
        logger.debug("deleted %d sessions inactive since %s", len(old), before.isoformat())
        return len(old)

    # -- batch ingest ------------------------------------------------------------

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        """Store every record whose id is not stored yet, all at once or none of them.

        Sessions, then messages in order, then calls; a stored id (or a repeat
        inside the batch) is skipped. Every record is checked for what no
        backend can store, skipped or not, as the SQL stores encode them all.
        """
        self._check_open()
        _check_batch_text(sessions, "sessions")
        _check_batch_text(messages, "messages")
        _check_batch_text(calls, "api_calls")
        new_sessions = [s for s in first_of_each_id(sessions) if s.id not in self._sessions]
        new_messages = [m for m in first_of_each_id(messages) if m.id not in self._messages]
        new_calls = [c for c in first_of_each_id(calls) if c.id not in self._api_calls]
        self._check_messages(new_messages, {session.id for session in new_sessions})
        for session in new_sessions:
            self._sessions[session.id] = session
        self._store_messages(new_messages)
        self._store_calls(new_calls)

    # -- counting and exporting ----------------------------------------------------

    async def count_records(self, kind: RecordKind, query: QueryFilter) -> int:
        """How many records ``export_records(kind, query)`` yields (offset and limit ignored)."""
        check_record_query(kind, query)
        self._check_open()
        return len(self._matching_records(kind, query))

    async def export_records(
        self, kind: RecordKind, query: QueryFilter, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every record of ``kind`` matching ``query``, in id order, ``chunk_size`` at a time.

        The matching records are chosen when the export starts; each chunk is
        dumped only when it is asked for.
        """
        check_record_query(kind, query)
        check_chunk_size(chunk_size)
        self._check_open()
        found = sorted(self._matching_records(kind, query), key=lambda record: record.id)
        for start in range(0, len(found), chunk_size):
            self._check_open()
            yield [record.model_dump(mode="json") for record in found[start : start + chunk_size]]

    def _matching_records(
        self, kind: RecordKind, query: QueryFilter
    ) -> Sequence[ChatSession | LLMMessage | LLMApiCall]:
        if kind == "api_calls":
            return self._matching_calls(query)
        if kind == "messages":
            if query.session_id is not None:
                candidates: Iterable[LLMMessage] = self._session_messages.get(query.session_id, ())
            else:
                candidates = self._messages.values()
            return [m for m in candidates if message_matches(m, query)]
        return [s for s in self._sessions.values() if session_matches(s, query)]

    # -- providers -------------------------------------------------------------

    async def save_provider(self, provider: Provider) -> None:
        """Insert or replace a provider; its name must be unique within its tenant."""
        self._check_open()
        for other in self._providers.values():
            if (
                other.id != provider.id
                and other.tenant_id == provider.tenant_id
                and other.provider_name == provider.provider_name
            ):
                raise failure_error(
                    Failure.ALREADY_USED,
                    _NAME,
                    f"tenant {provider.tenant_id} already has a provider named "
                    f"{provider.provider_name!r} (id {other.id})",
                )
        _check_entity_text(provider, "provider")
        ensure_storable_text(provider.api_key.get_secret_value(), "provider.api_key")
        self._providers[provider.id] = provider

    async def get_provider(self, provider_id: uuid.UUID) -> Provider | None:
        """The provider with ``provider_id``, or None."""
        self._check_open()
        return self._providers.get(provider_id)

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        """A tenant's provider called ``name``, or None."""
        self._check_open()
        return _first(
            self._providers.values(),
            lambda p: p.tenant_id == tenant_id and p.provider_name == name,
        )

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's providers, by name then id."""
        self._check_open()
        return self._tenant_providers(tenant_id, enabled_only=False)

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's enabled providers, by name then id."""
        self._check_open()
        return self._tenant_providers(tenant_id, enabled_only=True)

    async def delete_provider(self, provider_id: uuid.UUID) -> bool:
        """Delete a provider and its agents; True when it existed."""
        self._check_open()
        if self._providers.pop(provider_id, None) is None:
            return False
        orphans = [a.id for a in self._agents.values() if a.provider_id == provider_id]
        for agent_id in orphans:
            del self._agents[agent_id]
        return True

    def _tenant_providers(self, tenant_id: uuid.UUID, *, enabled_only: bool) -> list[Provider]:
        found = [
            p
            for p in self._providers.values()
            if p.tenant_id == tenant_id and (p.enabled or not enabled_only)
        ]
        return sorted(found, key=lambda p: (p.provider_name, p.id))

    # -- agents ----------------------------------------------------------------

    async def save_agent(self, agent: Agent) -> None:
        """Insert or replace an agent; its provider must exist and its code be unique."""
        self._check_open()
        if agent.provider_id not in self._providers:
            raise failure_error(
                Failure.MISSING_REFERENCE,
                _NAME,
                f"agent {agent.id} names provider {agent.provider_id}",
            )
        for other in self._agents.values():
            if other.id != agent.id and other.agent_code == agent.agent_code:
                raise failure_error(
                    Failure.ALREADY_USED,
                    _NAME,
                    f"an agent with code {agent.agent_code!r} already exists (id {other.id})",
                )
        _check_entity_text(agent, "agent")
        self._agents[agent.id] = agent

    async def get_agent(self, agent_id: uuid.UUID) -> Agent | None:
        """The agent with ``agent_id``, or None."""
        self._check_open()
        return self._agents.get(agent_id)

    async def get_agent_by_code(self, code: str) -> Agent | None:
        """The agent with ``code``, or None."""
        self._check_open()
        return _first(self._agents.values(), lambda a: a.agent_code == code)

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        """A tenant's agent with ``code``, or None."""
        self._check_open()
        return _first(
            self._agents.values(), lambda a: a.tenant_id == tenant_id and a.agent_code == code
        )

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's agents, by order then code."""
        self._check_open()
        return self._tenant_agents(tenant_id, active_only=False)

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's active agents, by order then code."""
        self._check_open()
        return self._tenant_agents(tenant_id, active_only=True)

    async def get_agent_with_provider(self, agent_id: uuid.UUID) -> AgentConfig | None:
        """An agent and its provider, or None."""
        self._check_open()
        return self._with_provider(self._agents.get(agent_id))

    async def get_agent_by_code_with_provider(self, code: str) -> AgentConfig | None:
        """The agent with ``code`` and its provider, or None."""
        return self._with_provider(await self.get_agent_by_code(code))

    async def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID, code: str
    ) -> AgentConfig | None:
        """A tenant's agent with ``code`` and its provider, or None."""
        return self._with_provider(await self.get_agent_by_code_and_tenant(tenant_id, code))

    async def delete_agent(self, agent_id: uuid.UUID) -> bool:
        """Delete an agent; True when it existed."""
        self._check_open()
        return self._agents.pop(agent_id, None) is not None

    def _tenant_agents(self, tenant_id: uuid.UUID, *, active_only: bool) -> list[Agent]:
        found = [
            a
            for a in self._agents.values()
            if a.tenant_id == tenant_id and (a.agent_status or not active_only)
        ]
        return sorted(found, key=lambda a: (a.agent_order, a.agent_code))

    def _with_provider(self, agent: Agent | None) -> AgentConfig | None:
        if agent is None:
            return None
        provider = self._providers.get(agent.provider_id)
        if provider is None:
            return None
        return AgentConfig(provider=provider, agent=agent)

    # -- erasure ---------------------------------------------------------------------

    async def erase_user(self, user_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Delete a user's sessions and messages and anonymise their API calls, all at once."""
        check_erased_user(user_id)
        self._check_open()
        counts = self._erase(
            [s for s in self._sessions.values() if s.user_id == user_id],
            [m for m in self._messages.values() if m.user_id == user_id],
            [c for c in self._api_calls.values() if c.user_id == user_id],
            dry_run=dry_run,
        )
        return ErasureReport(user_id=user_id, dry_run=dry_run, **counts)

    async def erase_tenant(self, tenant_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase every user of a tenant as ``erase_user`` does; delete its providers and agents."""
        self._check_open()
        providers = [p for p in self._providers.values() if p.tenant_id == tenant_id]
        theirs = {p.id for p in providers}
        counts = self._erase(
            [s for s in self._sessions.values() if s.tenant_id == tenant_id],
            [m for m in self._messages.values() if m.tenant_id == tenant_id],
            [c for c in self._api_calls.values() if c.tenant_id == tenant_id],
            providers,
            [
                a
                for a in self._agents.values()
                if a.tenant_id == tenant_id or a.provider_id in theirs
            ],
            dry_run=dry_run,
        )
        return ErasureReport(tenant_id=tenant_id, dry_run=dry_run, **counts)

    def _erase(
        self,
        sessions: Sequence[ChatSession],
        messages: Sequence[LLMMessage],
        calls: Sequence[LLMApiCall],
        providers: Sequence[Provider] = (),
        agents: Sequence[Agent] = (),
        *,
        dry_run: bool,
    ) -> dict[str, int]:
        """Delete the records given (sessions with their messages), anonymise ``calls``; count.

        Returns the report's counts; a dry run only counts.
        """
        doomed = {session.id for session in sessions}
        gone = {message.id: message for message in messages}
        for session_id in doomed:
            for message in self._session_messages.get(session_id, ()):
                gone.setdefault(message.id, message)
        counts = {
            "sessions_deleted": len(doomed),
            "messages_deleted": len(gone),
            "api_calls_anonymised": len(calls),
            "providers_deleted": len(providers),
            "agents_deleted": len(agents),
        }
        if dry_run:
            return counts
        for session_id in doomed:
            del self._sessions[session_id]
            self._drop_session_messages(session_id)
        strays = [m for m in gone.values() if m.chat_session_id not in doomed]
        for message in strays:
            ordered = self._session_messages[message.chat_session_id]
            del ordered[bisect_left(ordered, _message_order(message), key=_message_order)]
            if not ordered:
                del self._session_messages[message.chat_session_id]
        self._forget_messages(strays)
        for call in calls:
            of_session = self._session_calls[call.chat_session_id]
            del of_session[call.id]
            if not of_session:
                del self._session_calls[call.chat_session_id]
            # Replaced where it stands: sums over the calls keep their order.
            kept = self._api_calls[call.id] = anonymised(call)
            self._session_calls.setdefault(NIL_UUID, {})[call.id] = kept
        for agent in agents:
            del self._agents[agent.id]
        for provider in providers:
            del self._providers[provider.id]
        return counts


def anonymised(call: LLMApiCall) -> LLMApiCall:
    """``call`` as erasure keeps it: no user, session, messages, error text or response id.

    What the ledger adds up stays: tokens, cost, model, agent, tenant, status, times.
    """
    return call.model_copy(
        update={
            "user_id": NIL_UUID,
            "chat_session_id": NIL_UUID,
            "request_message_id": NIL_UUID,
            "response_message_id": NIL_UUID,
            "error_message": None,
            "api_response_id": None,
        }
    )


def _first(items: Iterable[_T], predicate: Callable[[_T], bool]) -> _T | None:
    return next((item for item in items if predicate(item)), None)
