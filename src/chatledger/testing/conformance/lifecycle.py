"""Conformance of a store's life: open, ``async with``, closed; and its arguments checked first.

The closed-store and wrong-argument tests call every method of every
protocol the store implements (:mod:`chatledger.stores.base`), and only
those: a ledger-only store is checked on the ledger's methods.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import pytest

from chatledger.entities import QueryFilter, SessionQuery
from chatledger.errors import StoreConnectionError
from chatledger.ids import uuid7
from chatledger.stores.base import (
    RECORD_KINDS,
    AgentStore,
    ApiCallStore,
    MessageStore,
    PersistenceStore,
    ProviderStore,
    SessionStore,
)
from chatledger.stores.schema import MIGRATIONS
from chatledger.testing.conformance.capability import CapabilityConformance, requires
from chatledger.testing.conformance.expectations import drain, unchecked
from chatledger.testing.factories import (
    BASE_TIME,
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)

__all__ = ["ClosableStore", "LifecycleConformance"]

Operation = Callable[[], Awaitable[Any]]


@runtime_checkable
class ClosableStore(Protocol):
    """A store's life, as ``PersistenceStore`` has it: its name, open or closed, its schema."""

    @property
    def backend_name(self) -> str:
        """A short, lower-case name of the backend."""
        ...

    @property
    def is_connected(self) -> bool:
        """True until ``close()`` has been called."""
        ...

    async def close(self) -> None:
        """Release what the store holds; safe to call twice."""
        ...

    async def schema_version(self) -> int:
        """The newest schema migration the data is at."""
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


# -- every method of each protocol, called on a closed store -------------------------


def _closed_message_operations(store: MessageStore) -> list[Operation]:
    session = make_session()
    message = make_message(session)
    some_id = uuid7()
    return [
        lambda: store.save_message(message),
        lambda: store.save_messages([message]),
        lambda: store.get_message(some_id),
        lambda: store.get_session_messages(some_id),
        lambda: store.get_session_messages_paginated(some_id, 0, 10),
        lambda: store.get_recent_messages(some_id, 10),
        lambda: store.delete_message(some_id),
        lambda: store.delete_session_messages(some_id),
        lambda: store.count_session_messages(some_id),
    ]


def _closed_call_operations(store: ApiCallStore) -> list[Operation]:
    call = make_api_call(make_session())
    some_id = uuid7()
    return [
        lambda: store.save_api_call(call),
        lambda: store.save_api_calls([call]),
        lambda: store.get_api_call(some_id),
        lambda: store.query_api_calls(QueryFilter()),
        lambda: store.get_statistics(QueryFilter()),
        lambda: store.get_usage_breakdown(QueryFilter(), ["model"], "day"),
        lambda: store.page_api_calls(QueryFilter()),
        lambda: store.delete_api_call(some_id),
        lambda: store.cleanup_old_records(BASE_TIME),
    ]


def _closed_session_operations(store: SessionStore) -> list[Operation]:
    session = make_session()
    some_id = uuid7()
    return [
        lambda: store.create_session(session),
        lambda: store.get_session(some_id),
        lambda: store.get_user_sessions(some_id),
        lambda: store.update_session(session),
        lambda: store.delete_session(some_id),
        lambda: store.list_sessions(QueryFilter()),
        lambda: store.cleanup_old_sessions(BASE_TIME),
        lambda: store.search_sessions(SessionQuery()),
    ]


def _closed_provider_operations(store: ProviderStore) -> list[Operation]:
    provider = make_provider()
    some_id = uuid7()
    return [
        lambda: store.save_provider(provider),
        lambda: store.get_provider(some_id),
        lambda: store.get_provider_by_name(some_id, "openai"),
        lambda: store.list_providers(some_id),
        lambda: store.get_enabled_providers(some_id),
        lambda: store.delete_provider(some_id),
    ]


def _closed_agent_operations(store: AgentStore) -> list[Operation]:
    agent = make_agent(make_provider())
    some_id = uuid7()
    return [
        lambda: store.save_agent(agent),
        lambda: store.get_agent(some_id),
        lambda: store.get_agent_by_code("x"),
        lambda: store.get_agent_by_code_and_tenant(some_id, "x"),
        lambda: store.list_agents(some_id),
        lambda: store.get_active_agents(some_id),
        lambda: store.get_agent_with_provider(some_id),
        lambda: store.get_agent_by_code_with_provider("x"),
        lambda: store.get_agent_by_code_and_tenant_with_provider(some_id, "x"),
        lambda: store.delete_agent(some_id),
    ]


def _closed_record_operations(store: PersistenceStore) -> list[Operation]:
    session = make_session()
    message = make_message(session)
    call = make_api_call(session)
    return [
        lambda: store.count_records("api_calls", QueryFilter()),
        lambda: drain(store.export_records("messages", QueryFilter())),
        lambda: store.ingest_records([session], [message], [call]),
    ]


# -- calls with an argument of the wrong type, each with the parameter it gets wrong ---

Wrong = tuple[str, Operation]


def _wrong_message_arguments(store: MessageStore) -> list[Wrong]:
    session = make_session()
    message = make_message(session)
    call = make_api_call(session)
    some_id = uuid7()
    text_id = str(some_id)
    return [
        ("message", lambda: store.save_message(unchecked("x"))),
        ("message", lambda: store.save_message(unchecked(call))),
        ("messages", lambda: store.save_messages(unchecked("xy"))),
        ("messages[1]", lambda: store.save_messages([message, unchecked(call)])),
        ("messages", lambda: store.save_messages(unchecked(m for m in [message]))),
        ("message_id", lambda: store.get_message(unchecked("not-a-uuid"))),
        ("session_id", lambda: store.get_session_messages(unchecked(text_id))),
        ("offset", lambda: store.get_session_messages_paginated(some_id, unchecked("0"), 10)),
        ("limit", lambda: store.get_session_messages_paginated(some_id, 0, unchecked(2.5))),
        ("limit", lambda: store.get_recent_messages(some_id, unchecked(None))),
        ("message_id", lambda: store.delete_message(unchecked("x"))),
        ("session_id", lambda: store.delete_session_messages(unchecked(7))),
        ("session_id", lambda: store.count_session_messages(unchecked(None))),
    ]


def _wrong_call_arguments(store: ApiCallStore) -> list[Wrong]:
    session = make_session()
    message = make_message(session)
    call = make_api_call(session)
    some_id = uuid7()
    text_id = str(some_id)
    return [
        ("call", lambda: store.save_api_call(unchecked(message))),
        ("calls", lambda: store.save_api_calls(unchecked(call))),
        ("calls[0]", lambda: store.save_api_calls([unchecked(message)])),
        ("call_id", lambda: store.get_api_call(unchecked(text_id))),
        ("query", lambda: store.query_api_calls(unchecked(None))),
        ("query", lambda: store.get_statistics(unchecked({"tenant_id": some_id}))),
        ("query", lambda: store.get_usage_breakdown(unchecked(None), ["model"])),
        ("query", lambda: store.page_api_calls(unchecked(SessionQuery()))),
        ("limit", lambda: store.page_api_calls(QueryFilter(), limit=unchecked("50"))),
        ("cursor", lambda: store.page_api_calls(QueryFilter(), cursor=unchecked(7))),
        ("call_id", lambda: store.delete_api_call(unchecked("x"))),
        ("before", lambda: store.cleanup_old_records(unchecked("2024-01-01"))),
    ]


def _wrong_session_arguments(store: SessionStore) -> list[Wrong]:
    message = make_message(make_session())
    text_id = str(uuid7())
    return [
        ("query", lambda: store.search_sessions(unchecked(QueryFilter()))),
        ("cursor", lambda: store.search_sessions(SessionQuery(), cursor=unchecked(b"x"))),
        ("limit", lambda: store.search_sessions(SessionQuery(), limit=unchecked(None))),
        ("session", lambda: store.create_session(unchecked(None))),
        ("session", lambda: store.create_session(unchecked(message))),
        ("session_id", lambda: store.get_session(unchecked("not-a-uuid"))),
        ("session_id", lambda: store.get_session(unchecked(text_id))),
        ("user_id", lambda: store.get_user_sessions(unchecked(None))),
        ("session", lambda: store.update_session(unchecked(None))),
        ("session_id", lambda: store.delete_session(unchecked("x"))),
        ("query", lambda: store.list_sessions(unchecked(None))),
        ("before", lambda: store.cleanup_old_sessions(unchecked(None))),
    ]


def _wrong_record_arguments(store: PersistenceStore) -> list[Wrong]:
    session = make_session()
    call = make_api_call(session)
    return [
        ("query", lambda: store.count_records("api_calls", unchecked(None))),
        ("kind", lambda: store.count_records(unchecked(None), QueryFilter())),
        ("query", lambda: drain(store.export_records("api_calls", unchecked(None)))),
        (
            "chunk_size",
            lambda: drain(
                store.export_records("api_calls", QueryFilter(), chunk_size=unchecked("9"))
            ),
        ),
        ("sessions", lambda: store.ingest_records(unchecked(session))),
        ("messages[0]", lambda: store.ingest_records([session], [unchecked(call)])),
        ("calls", lambda: store.ingest_records(calls=unchecked("x"))),
    ]


def _wrong_provider_arguments(store: ProviderStore) -> list[Wrong]:
    some_id = uuid7()
    text_id = str(some_id)
    return [
        ("provider", lambda: store.save_provider(unchecked(None))),
        ("provider_id", lambda: store.get_provider(unchecked("x"))),
        ("name", lambda: store.get_provider_by_name(some_id, unchecked(None))),
        ("tenant_id", lambda: store.list_providers(unchecked(text_id))),
        ("tenant_id", lambda: store.get_enabled_providers(unchecked(None))),
        ("provider_id", lambda: store.delete_provider(unchecked(None))),
    ]


def _wrong_agent_arguments(store: AgentStore) -> list[Wrong]:
    provider = make_provider()
    some_id = uuid7()
    return [
        ("agent", lambda: store.save_agent(unchecked(provider))),
        ("agent_id", lambda: store.get_agent(unchecked("x"))),
        ("code", lambda: store.get_agent_by_code(unchecked(None))),
        ("tenant_id", lambda: store.get_agent_by_code_and_tenant(unchecked("x"), "code")),
        ("tenant_id", lambda: store.list_agents(unchecked(None))),
        ("tenant_id", lambda: store.get_active_agents(unchecked(None))),
        ("agent_id", lambda: store.get_agent_with_provider(unchecked("x"))),
        ("code", lambda: store.get_agent_by_code_with_provider(unchecked(3))),
        (
            "code",
            lambda: store.get_agent_by_code_and_tenant_with_provider(some_id, unchecked(3)),
        ),
        ("agent_id", lambda: store.delete_agent(unchecked(None))),
    ]


# Per protocol, in the order the tests call them: every method ready to call on a closed
# store, and wrong arguments to each method with the parameter they are wrong for.
_BY_PROTOCOL: tuple[
    tuple[type, Callable[[Any], list[Operation]], Callable[[Any], list[Wrong]]], ...
] = (
    (MessageStore, _closed_message_operations, _wrong_message_arguments),
    (ApiCallStore, _closed_call_operations, _wrong_call_arguments),
    (SessionStore, _closed_session_operations, _wrong_session_arguments),
    (PersistenceStore, _closed_record_operations, _wrong_record_arguments),
    (ProviderStore, _closed_provider_operations, _wrong_provider_arguments),
    (AgentStore, _closed_agent_operations, _wrong_agent_arguments),
)


def _closed_operations(store: object) -> list[Operation]:
    """Every method of every protocol ``store`` implements, ready to call."""
    return [
        op for kind, closed, _ in _BY_PROTOCOL if isinstance(store, kind) for op in closed(store)
    ]


def _wrong_arguments(store: object) -> list[Wrong]:
    """Wrong arguments to every protocol ``store`` implements, each with its parameter."""
    return [
        bad for kind, _, wrong in _BY_PROTOCOL if isinstance(store, kind) for bad in wrong(store)
    ]


class LifecycleConformance(CapabilityConformance):
    """A store's life and its argument checks: what every backend subclasses.

    Open until ``close()`` (twice is fine), ``async with``, the schema
    version, StoreConnectionError from every method once closed, TypeError
    naming the parameter for a wrong argument, before any other check. Any
    store with ``ClosableStore``'s members runs it, over whichever of the
    five protocols it implements.
    """

    protocols: ClassVar[tuple[type, ...]] = (ClosableStore,)

    @requires(PersistenceStore)
    @pytest.mark.asyncio
    async def test_store_implements_the_protocol(self, store: PersistenceStore) -> None:
        """The store satisfies PersistenceStore and names its backend."""
        assert isinstance(store, PersistenceStore)
        assert isinstance(store.backend_name, str)
        assert store.backend_name
        assert store.backend_name == store.backend_name.lower()
        if self.expected_backend_name is not None:
            assert store.backend_name == self.expected_backend_name

    @pytest.mark.asyncio
    async def test_is_connected_until_close_and_close_is_idempotent(
        self, store: ClosableStore
    ) -> None:
        """is_connected is True until close(); a second close() does nothing."""
        assert store.is_connected is True
        await store.close()
        assert store.is_connected is False
        await store.close()
        assert store.is_connected is False

    @pytest.mark.asyncio
    async def test_a_store_opened_by_connect_is_at_the_latest_schema(
        self, store: ClosableStore
    ) -> None:
        """schema_version(): the newest migration (a store without a schema is always current)."""
        assert await store.schema_version() == MIGRATIONS[-1].version
        await store.close()
        with pytest.raises(StoreConnectionError):
            await store.schema_version()

    @pytest.mark.asyncio
    async def test_async_with_returns_the_store_and_closes_it(self, store: ClosableStore) -> None:
        """`async with store` yields the store itself and closes it on exit."""
        async with store as entered:
            assert entered is store
            # a write, of whatever the store keeps
            if isinstance(entered, SessionStore):
                await entered.create_session(make_session())
            elif isinstance(entered, ApiCallStore):
                await entered.save_api_call(make_api_call())
            else:
                await entered.schema_version()
        assert store.is_connected is False

    @pytest.mark.asyncio
    async def test_closed_store_raises_store_connection_error(self, store: ClosableStore) -> None:
        """Every method of a closed store raises StoreConnectionError."""
        operations = _closed_operations(store)
        await store.close()
        for operation in operations:
            with pytest.raises(StoreConnectionError):
                await operation()

    @pytest.mark.asyncio
    async def test_wrong_argument_types_raise_type_error(self, store: ClosableStore) -> None:
        """A str for an entity or id, None for a filter, …: TypeError naming the parameter.

        The same on every backend, and nothing is stored: a message where an API
        call belongs is not kept as a call, a text id is not looked up.
        """
        for parameter, operation in _wrong_arguments(store):
            with pytest.raises(TypeError, match=re.escape(f"{parameter} must be")):
                await operation()
        if isinstance(store, PersistenceStore):
            for kind in RECORD_KINDS:
                assert await store.count_records(kind, QueryFilter()) == 0
        if isinstance(store, ApiCallStore):
            assert (await store.get_statistics(QueryFilter())).total_calls == 0

    @pytest.mark.asyncio
    async def test_wrong_arguments_are_refused_before_the_database(
        self, store: ClosableStore
    ) -> None:
        """The check comes first: a closed store answers TypeError, not StoreConnectionError."""
        await store.close()
        for _, operation in _wrong_arguments(store):
            with pytest.raises(TypeError):
                await operation()

    @requires(SessionStore)
    @pytest.mark.asyncio
    async def test_text_id_hint_says_how_to_convert(self, store: SessionStore) -> None:
        """A well-formed id passed as text is refused with how to convert it, not looked up."""
        session = await self._session(store)
        with pytest.raises(TypeError, match=r"uuid\.UUID\(text\)"):
            await store.get_session(str(session.id))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not a UUID"):
            await store.get_session("not-a-uuid")  # type: ignore[arg-type]
