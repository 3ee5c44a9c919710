"""Conformance of what records hold: any text, JSON and time kept as given, or refused whole.

A NUL, a lone surrogate, NaN or Infinity cannot be kept by every database:
every backend refuses them with SerializationError and stores nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar

import pytest

from chatledger.entities import (
    MessageContent,
    PriceDetails,
    QueryFilter,
    TokenDetails,
    ToolCallContent,
)
from chatledger.errors import SerializationError
from chatledger.stores.base import (
    AgentStore,
    ApiCallStore,
    MessageStore,
    PersistenceStore,
    ProviderStore,
    SessionStore,
)
from chatledger.testing.conformance.capability import CapabilityConformance, requires
from chatledger.testing.factories import (
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)

__all__ = ["ValueConformance"]


class ValueConformance(CapabilityConformance):
    """Text, JSON values and times across the kinds of record, kept exactly or refused.

    Each test writes several kinds of record (sessions with messages and
    API calls, providers with agents) and runs when the store implements
    every protocol it writes through; it is skipped otherwise.
    """

    protocols: ClassVar[tuple[type, ...]] = ()

    @requires(SessionStore, MessageStore, ApiCallStore)
    @pytest.mark.asyncio
    async def test_unicode_text_round_trips(self, store: PersistenceStore) -> None:
        """Emoji, CJK, RTL and combining characters round-trip unchanged in messages and calls."""
        text = 'Hello 👋🏽 世界 こんにちは 안녕 مرحبا e\u0301 𝄞 🀄 \t\n\\ "quoted" \''
        session = await self._session(store, title="标题 🎉")
        message = make_message(session, text)
        await store.save_message(message)
        got = await store.get_message(message.id)
        assert got is not None
        assert got.content.text == text
        call = make_api_call(session, model_name="模型-🚀", error_message=text)
        await store.save_api_call(call)
        got_call = await store.get_api_call(call.id)
        assert got_call is not None
        assert got_call.error_message == text
        assert got_call.model_name == "模型-🚀"

    @requires(SessionStore, MessageStore)
    @pytest.mark.asyncio
    async def test_text_that_spells_nan_round_trips(self, store: PersistenceStore) -> None:
        """The words NaN and Infinity in text are text, stored as they are."""
        session = await self._session(store, metadata={"NaN": "Infinity", "n": [-0.5, 2.5e-3]})
        assert await store.get_session(session.id) == session
        message = make_message(session, "NaN or -Infinity?")
        await store.save_message(message)
        assert await store.get_message(message.id) == message

    @requires(SessionStore, MessageStore, ApiCallStore)
    @pytest.mark.asyncio
    async def test_times_at_the_edges_of_the_range_round_trip(
        self, store: PersistenceStore
    ) -> None:
        """Times from 1000-01-01T00:00Z to just before datetime.max (UTC) come back unchanged."""
        earliest = datetime(1000, 1, 1, tzinfo=UTC)
        latest = datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC)
        session = await self._session(store, create_time=earliest, update_time=latest)
        assert await store.get_session(session.id) == session
        message = make_message(session, create_time=earliest)
        await store.save_message(message)
        assert await store.get_message(message.id) == message
        call = make_api_call(session, create_time=earliest, update_time=latest, latency_ms=None)
        await store.save_api_call(call)
        assert await store.get_api_call(call.id) == call
        assert await store.query_api_calls(QueryFilter().session(session.id)) == [call]

    @requires(SessionStore, MessageStore, ApiCallStore)
    @pytest.mark.asyncio
    async def test_lone_surrogate_raises_serialization_error(self, store: PersistenceStore) -> None:
        """Text that is not valid UTF-8 (a lone surrogate) raises SerializationError."""
        session = await self._session(store)
        message = make_message(session, "broken \ud800 text")
        with pytest.raises(SerializationError):
            await store.save_message(message)
        assert await store.count_session_messages(session.id) == 0
        call = make_api_call(session, error_message="\udfff")
        with pytest.raises(SerializationError):
            await store.save_api_call(call)
        assert await store.get_api_call(call.id) is None

    @requires(SessionStore, ApiCallStore)
    @pytest.mark.asyncio
    async def test_nul_in_session_and_call_raises_serialization_error(
        self, store: PersistenceStore
    ) -> None:
        """NUL in a session's title or metadata or an API call's text raises SerializationError."""
        bad_sessions = [make_session(title="t\x00"), make_session(metadata={"k": ["v\x00"]})]
        for session in bad_sessions:
            with pytest.raises(SerializationError):
                await store.create_session(session)
            assert await store.get_session(session.id) is None

        stored = await self._session(store, title="clean")
        with pytest.raises(SerializationError):
            await store.update_session(stored.with_title("dirty\x00"))
        got = await store.get_session(stored.id)
        assert got is not None
        assert got.title == "clean"

        bad_calls = [
            make_api_call(error_message="oops\x00"),
            make_api_call(model_name="gpt\x00"),
            make_api_call(api_response_id="resp\x00"),
            make_api_call().with_token_details(TokenDetails(cached_tokens=1, note="n\x00"), None),
            make_api_call().with_token_details(None, TokenDetails(source="\ud800")),
            make_api_call().with_price(Decimal("0.01"), PriceDetails(currency="US\x00D")),
        ]
        for call in bad_calls:
            with pytest.raises(SerializationError):
                await store.save_api_call(call)
            assert await store.get_api_call(call.id) is None

    @requires(SessionStore, MessageStore, ApiCallStore, ProviderStore, AgentStore)
    @pytest.mark.asyncio
    async def test_nan_or_infinity_in_json_raises_serialization_error(
        self, store: PersistenceStore
    ) -> None:
        """NaN or ±Infinity in any JSON value raises SerializationError; nothing is stored.

        PostgreSQL's JSONB and MySQL's JSON check refuse them; SQLite and the
        in-memory store would keep what the others cannot, so every backend refuses.
        """
        nan, inf = float("nan"), float("inf")
        for metadata in ({"score": nan}, {"deep": [1, {"x": -inf}]}, {"k": inf}):
            bad_session = make_session(metadata=metadata)
            with pytest.raises(SerializationError):
                await store.create_session(bad_session)
            assert await store.get_session(bad_session.id) is None
        session = await self._session(store, metadata={"fine": 1.5})
        with pytest.raises(SerializationError):
            await store.update_session(session.with_metadata("x", nan))
        assert await store.get_session(session.id) == session

        bad_contents = [
            MessageContent(text="ok", score=inf),
            MessageContent(tool_calls=[ToolCallContent(id="c", name="f", arguments={"t": nan})]),
            MessageContent(tool_calls=[ToolCallContent(id="c", name="f", arguments=[-inf])]),
        ]
        for content in bad_contents:
            message = make_message(session, content=content)
            with pytest.raises(SerializationError):
                await store.save_message(message)
            with pytest.raises(SerializationError):
                await store.save_messages([make_message(session), message])
        assert await store.count_session_messages(session.id) == 0

        bad_calls = [
            make_api_call().with_token_details(TokenDetails(cached_tokens=1, ratio=nan), None),
            make_api_call().with_price(Decimal("0.01"), PriceDetails(rate=inf)),
        ]
        for call in bad_calls:
            with pytest.raises(SerializationError):
                await store.save_api_call(call)
            assert await store.get_api_call(call.id) is None

        provider = make_provider()
        await store.save_provider(provider)
        for agent in (
            make_agent(provider)._replace(custom_params={"top_p": nan}),
            make_agent(provider)._replace(thinking={"budget": inf}),
        ):
            with pytest.raises(SerializationError):
                await store.save_agent(agent)
            assert await store.get_agent(agent.id) is None
