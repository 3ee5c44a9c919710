"""Conformance of the whole store's own methods: batch ingest, counting and exporting records.

``ingest_records``, ``count_records`` and ``export_records`` belong to
``PersistenceStore`` (no single protocol has them): a store that keeps
every kind of record runs these tests, any other skips them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest

from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    PriceDetails,
    QueryFilter,
    TokenDetails,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.errors import ConstraintError, SerializationError
from chatledger.ids import uuid7
from chatledger.stores.base import RECORD_KINDS, PersistenceStore, RecordKind
from chatledger.testing.conformance.capability import CapabilityConformance
from chatledger.testing.conformance.expectations import assert_exported_as_saved, drain, exported
from chatledger.testing.conformance.population import (
    Population,
    call_filters,
    session_filters,
    sessions_over_time,
)
from chatledger.testing.factories import BASE_TIME, make_api_call, make_message, make_session

__all__ = ["RecordConformance"]


class RecordConformance(CapabilityConformance):
    """Batch ingest (a batch shipped twice stored once), counts and exports of every kind."""

    protocols: ClassVar[tuple[type, ...]] = (PersistenceStore,)

    # -- batch ingest ------------------------------------------------------------------

    @staticmethod
    def _ingest_batch() -> tuple[list[ChatSession], list[LLMMessage], list[LLMApiCall]]:
        """Two sessions, six messages alternating between them (each replying to the one
        before it in its session), four API calls."""
        sessions = [make_session(create_time=BASE_TIME) for _ in range(2)]
        messages: list[LLMMessage] = []
        last: dict[UUID, UUID] = {}
        for i in range(6):
            session = sessions[i % 2]
            message = make_message(
                session,
                f"m{i}",
                create_time=BASE_TIME + timedelta(minutes=i + 1),
                parent_message_id=last.get(session.id),
            )
            last[session.id] = message.id
            messages.append(message)
        calls = [
            make_api_call(sessions[i % 2], request_message_id=messages[i].id, prompt_tokens=i)
            for i in range(4)
        ]
        return sessions, messages, calls

    async def _assert_stored_once(
        self,
        store: PersistenceStore,
        sessions: Sequence[ChatSession],
        messages: Sequence[LLMMessage],
        calls: Sequence[LLMApiCall],
    ) -> None:
        """Exactly these records are stored, each once; a session's update_time is its newest
        message's, as save_messages leaves it."""
        assert await store.count_records("sessions", QueryFilter()) == len(sessions)
        assert await store.count_records("messages", QueryFilter()) == len(messages)
        assert await store.count_records("api_calls", QueryFilter()) == len(calls)
        for session in sessions:
            own = [m for m in messages if m.chat_session_id == session.id]
            newest = max([session.update_time, *(m.update_time for m in own)])
            assert await store.get_session(session.id) == session._replace(update_time=newest)
            assert await store.get_session_messages(session.id) == own
        for call in calls:
            assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_ingest_twice_stores_once(self, store: PersistenceStore) -> None:
        """A batch ingested twice (its acknowledgement lost) is stored once, without an error."""
        sessions, messages, calls = self._ingest_batch()
        await store.ingest_records(sessions, messages, calls)
        await self._assert_stored_once(store, sessions, messages, calls)
        await store.ingest_records(sessions, messages, calls)
        await self._assert_stored_once(store, sessions, messages, calls)
        await store.ingest_records(sessions=sessions, messages=messages[2:], calls=calls[:1])
        await self._assert_stored_once(store, sessions, messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_stores_the_part_not_stored_yet(self, store: PersistenceStore) -> None:
        """Stored records are skipped and the rest stored; a stored session stays as it is."""
        sessions, messages, calls = self._ingest_batch()
        kept = sessions[0].with_title("stored first")
        await store.create_session(kept)
        await store.save_messages([m for m in messages if m.chat_session_id == kept.id][:2])
        await store.save_api_calls(calls[::2])
        await store.ingest_records(sessions, messages, calls)
        await self._assert_stored_once(store, [kept, sessions[1]], messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_of_mixed_kinds_one_at_a_time(self, store: PersistenceStore) -> None:
        """Any kind may come alone; an empty ingest does nothing; keywords work."""
        sessions, messages, calls = self._ingest_batch()
        await store.ingest_records()
        await store.ingest_records(calls=calls)
        await store.ingest_records(sessions=sessions[:1])
        await store.ingest_records(sessions[1:], messages)
        await self._assert_stored_once(store, sessions, messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_keeps_the_first_of_repeated_ids(self, store: PersistenceStore) -> None:
        """An id repeated inside one batch is stored once, as its first record."""
        session = make_session(title="first")
        message = make_message(session, "first")
        call = make_api_call(session, prompt_tokens=1)
        await store.ingest_records(
            [session, session.with_title("second")],
            [message, message._replace(content=MessageContent(text="second")), message],
            [call, make_api_call(session, id=call.id, prompt_tokens=2)],
        )
        await self._assert_stored_once(store, [session], [message], [call])

    @pytest.mark.asyncio
    async def test_ingest_that_fails_stores_nothing(self, store: PersistenceStore) -> None:
        """A missing session or parent (ConstraintError) or a NUL (SerializationError) anywhere
        in the batch stores none of it, stored ids or not."""
        stored = await self._session(store)
        sessions, messages, calls = self._ingest_batch()
        orphan = make_message(make_session())
        lost_parent = make_message(sessions[0], parent_message_id=uuid7())
        before = (await store.get_session(stored.id), await store.get_session_messages(stored.id))
        for bad_messages, error in (
            ([*messages, orphan], ConstraintError),
            ([lost_parent, *messages], ConstraintError),
            ([make_message(stored), orphan], ConstraintError),
            ([*messages, make_message(sessions[1], "nul \x00")], SerializationError),
        ):
            with pytest.raises(error):
                await store.ingest_records([*sessions, stored], bad_messages, calls)
            assert await store.count_records("sessions", QueryFilter()) == 1
            assert await store.count_records("messages", QueryFilter()) == 0
            assert await store.count_records("api_calls", QueryFilter()) == 0
            after = (
                await store.get_session(stored.id),
                await store.get_session_messages(stored.id),
            )
            assert after == before
        with pytest.raises(SerializationError):
            await store.ingest_records(
                sessions, messages, [*calls, make_api_call(model_name="\x00")]
            )
        with pytest.raises(SerializationError):
            await store.ingest_records([*sessions, make_session(title="\x00")], messages, calls)
        assert await store.count_records("sessions", QueryFilter()) == 1
        assert await store.count_records("api_calls", QueryFilter()) == 0
        await store.ingest_records(sessions, messages, calls)  # the good batch still goes in
        await self._assert_stored_once(store, [stored, *sessions], messages, calls)

    @pytest.mark.asyncio
    async def test_concurrent_ingests_of_one_batch_store_it_once(
        self, store: PersistenceStore
    ) -> None:
        """The same batch shipped by four writers at once: no error, every record once."""
        sessions, messages, calls = self._ingest_batch()
        await asyncio.gather(*(store.ingest_records(sessions, messages, calls) for _ in range(4)))
        await self._assert_stored_once(store, sessions, messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_of_a_large_half_stored_batch(self, store: PersistenceStore) -> None:
        """120 sessions, 700 messages and 700 calls, half stored already: the rest lands once."""
        session = await self._session(store)
        others = [make_session(title=f"s{i}", metadata={"i": [i, "ü"]}) for i in range(120)]
        for other in others[::2]:
            await store.create_session(other)
        start = datetime.now(UTC)
        messages = [
            make_message(session, f"m{i}", create_time=start + timedelta(microseconds=i))
            for i in range(700)
        ]
        calls = [make_api_call(session, prompt_tokens=i) for i in range(700)]
        await store.save_messages(messages[::2])
        await store.save_api_calls(calls[1::2])
        await store.ingest_records([session, *others], messages, calls)
        await store.ingest_records([session, *others], messages, calls)
        assert await store.get_session_messages(session.id) == messages
        assert await store.count_records("sessions", QueryFilter()) == 121
        for other in others:
            assert await store.get_session(other.id) == other
        assert await store.count_records("api_calls", QueryFilter()) == 700
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_prompt_tokens == sum(range(700))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == messages[-1].update_time

    # -- counting and exporting --------------------------------------------------------

    async def _one_of_each_kind(
        self, store: PersistenceStore, kind: RecordKind, count: int
    ) -> list[UUID]:
        """``count`` records of ``kind`` saved out of id order; their ids, in id order."""
        if kind == "sessions":
            records: list[Any] = [make_session() for _ in range(count)]
        elif kind == "messages":
            session = await self._session(store)
            records = [make_message(session, f"m{i}") for i in range(count)]
        else:
            records = [make_api_call() for _ in range(count)]
        shuffled = list(records)
        random.Random(count).shuffle(shuffled)  # noqa: S311  (test data)
        for record in shuffled:
            if kind == "sessions":
                await store.create_session(record)
            elif kind == "messages":
                await store.save_message(record)
            else:
                await store.save_api_call(record)
        return sorted(record.id for record in records)

    @pytest.mark.parametrize("kind", RECORD_KINDS)
    @pytest.mark.asyncio
    async def test_export_comes_in_id_order_and_full_chunks(
        self, store: PersistenceStore, kind: RecordKind
    ) -> None:
        """7 records by chunks of 3 come as 3, 3, 1 in id order; no empty chunk ever."""
        assert await drain(store.export_records(kind, QueryFilter(), chunk_size=3)) == []
        ids = await self._one_of_each_kind(store, kind, 7)
        for size, shape in ((3, [3, 3, 1]), (7, [7]), (1, [1] * 7), (1000, [7])):
            chunks = await drain(store.export_records(kind, QueryFilter(), chunk_size=size))
            assert [len(chunk) for chunk in chunks] == shape
            assert [record["id"] for chunk in chunks for record in chunk] == [str(i) for i in ids]
        assert await store.count_records(kind, QueryFilter()) == 7

    @pytest.mark.parametrize("kind", RECORD_KINDS)
    @pytest.mark.asyncio
    async def test_export_of_an_exact_multiple_of_the_chunk_size(
        self, store: PersistenceStore, kind: RecordKind
    ) -> None:
        """6 records by chunks of 3 come as 3 and 3, with no trailing empty chunk."""
        ids = await self._one_of_each_kind(store, kind, 6)
        chunks = await drain(store.export_records(kind, QueryFilter(), chunk_size=3))
        assert [[record["id"] for record in chunk] for chunk in chunks] == [
            [str(i) for i in ids[:3]],
            [str(i) for i in ids[3:]],
        ]

    @pytest.mark.asyncio
    async def test_export_order_is_id_order_not_time_order(self, store: PersistenceStore) -> None:
        """Records whose times run against their ids are still exported by id."""
        calls = [make_api_call(create_time=BASE_TIME - timedelta(minutes=i)) for i in range(5)]
        await store.save_api_calls(calls)
        assert [r["id"] for r in await exported(store, "api_calls")] == [str(c.id) for c in calls]

    @pytest.mark.parametrize("kind", RECORD_KINDS)
    @pytest.mark.asyncio
    async def test_export_and_count_ignore_offset_and_limit(
        self, store: PersistenceStore, kind: RecordKind
    ) -> None:
        """A filter's offset and limit change neither what is counted nor what is exported."""
        ids = await self._one_of_each_kind(store, kind, 5)
        for query in (QueryFilter().paginate(2, 1), QueryFilter(limit=0), QueryFilter(offset=9)):
            assert await store.count_records(kind, query) == 5
            assert [r["id"] for r in await exported(store, kind, query)] == [str(i) for i in ids]

    @pytest.mark.asyncio
    async def test_export_and_count_refuse_bad_arguments(self, store: PersistenceStore) -> None:
        """Unknown kind, status or model on sessions or messages, chunk_size < 1: ValueError."""
        unknown: Any = "calls"
        with pytest.raises(ValueError, match="'sessions', 'messages', 'api_calls'"):
            await store.count_records(unknown, QueryFilter())
        with pytest.raises(ValueError, match="'sessions', 'messages', 'api_calls'"):
            await drain(store.export_records(unknown, QueryFilter()))
        kinds: list[RecordKind] = ["sessions", "messages"]
        for kind in kinds:
            for query in (
                QueryFilter().with_status("failed"),
                QueryFilter().model("gpt-4o"),
                QueryFilter().with_error_code("server_error"),
                QueryFilter().cost_range(Decimal(0), None),
                QueryFilter().latency_range(None, 10),
            ):
                with pytest.raises(ValueError, match="status or model"):
                    await store.count_records(kind, query)
                with pytest.raises(ValueError, match="status or model"):
                    await drain(store.export_records(kind, query))
        for size in (0, -1):
            with pytest.raises(ValueError, match="chunk_size"):
                await drain(store.export_records("api_calls", QueryFilter(), chunk_size=size))
        # API calls do have a status and a model
        assert await store.count_records("api_calls", QueryFilter().with_status("failed")) == 0

    @pytest.mark.asyncio
    async def test_count_and_export_api_calls_with_each_filter_field(
        self, store: PersistenceStore
    ) -> None:
        """API calls are counted and exported by the filter query_api_calls uses, in id order."""
        population = Population(seed=5, count=300)
        await store.save_api_calls(population.calls)
        everything: tuple[QueryFilter, Callable[[LLMApiCall], bool]] = (
            QueryFilter(),
            lambda c: True,
        )
        for query, keep in [everything, *call_filters(population)]:
            expected = sorted(c.id for c in population.calls if keep(c))
            assert expected, "the population should cover every filter"
            assert await store.count_records("api_calls", query) == len(expected)
            got = await drain(store.export_records("api_calls", query, chunk_size=16))
            assert [r["id"] for chunk in got for r in chunk] == [str(i) for i in expected]

    @pytest.mark.asyncio
    async def test_count_and_export_sessions_as_list_sessions_filters_them(
        self, store: PersistenceStore
    ) -> None:
        """Sessions are counted and exported by the filter of list_sessions (update_time range)."""
        sessions = await sessions_over_time(store)
        for query, keep in session_filters(sessions):
            expected = sorted(s.id for s in sessions if keep(s))
            assert await store.count_records("sessions", query) == len(expected)
            got = await exported(store, "sessions", query)
            assert [r["id"] for r in got] == [str(i) for i in expected]

    @pytest.mark.asyncio
    async def test_count_and_export_messages_with_each_filter_field(
        self, store: PersistenceStore
    ) -> None:
        """Messages are counted and exported by tenant, user, agent, session and create_time."""
        tenant, user, agent = uuid7(), uuid7(), uuid7()
        sessions = [
            await self._session(store, tenant_id=tenant, user_id=user, agent_id=agent),
            await self._session(store, tenant_id=tenant, user_id=user),
            await self._session(store, tenant_id=tenant, agent_id=agent),
            await self._session(store, user_id=user),
        ]
        messages = [
            make_message(session, f"{n}", create_time=BASE_TIME + timedelta(hours=n * 5 + i))
            for n in range(4)
            for i, session in enumerate(sessions)
        ]
        await store.save_messages(messages)
        start, end = BASE_TIME + timedelta(hours=5), BASE_TIME + timedelta(hours=12)
        cases: list[tuple[QueryFilter, Callable[[LLMMessage], bool]]] = [
            (QueryFilter(), lambda m: True),
            (QueryFilter().tenant(tenant), lambda m: m.tenant_id == tenant),
            (QueryFilter().user(user), lambda m: m.user_id == user),
            (QueryFilter().agent(agent), lambda m: m.agent_id == agent),
            (QueryFilter().session(sessions[1].id), lambda m: m.chat_session_id == sessions[1].id),
            (QueryFilter().time_range(start, end), lambda m: start <= m.create_time < end),
            (
                QueryFilter().tenant(tenant).agent(agent).time_range(None, end),
                lambda m: m.tenant_id == tenant and m.agent_id == agent and m.create_time < end,
            ),
        ]
        for query, keep in cases:
            expected = sorted(m.id for m in messages if keep(m))
            assert expected, "the messages should cover every filter"
            assert await store.count_records("messages", query) == len(expected)
            got = await exported(store, "messages", query)
            assert [r["id"] for r in got] == [str(i) for i in expected]

    @pytest.mark.asyncio
    async def test_exported_api_calls_are_their_entities_json(
        self, store: PersistenceStore
    ) -> None:
        """Every API call exports as its entity's JSON: optional fields absent, money as float."""
        whole_second = BASE_TIME.replace(microsecond=0)
        calls = [
            make_api_call(),
            make_api_call(latency_ms=None, create_time=whole_second),
            make_api_call(
                model_name="深度求索-chat",
                prompt_tokens=1200,
                completion_tokens=300,
                prompt_tokens_details=TokenDetails(cached_tokens=1000, audio_tokens=7),
                completion_tokens_details=TokenDetails(reasoning_tokens=120),
                total_price=Decimal("0.0123456789"),
                price_details=PriceDetails(
                    input_price=Decimal("0.01"), output_price=Decimal("0.0023456789"), tier="batch"
                ),
                time_to_first_token_ms=321,
                tokens_per_second=243.125,
                api_response_id="chatcmpl-abc123",
                create_time=BASE_TIME.replace(microsecond=670_000),
                update_time=whole_second + timedelta(seconds=2),
            ),
            make_api_call(
                prompt_tokens_details=TokenDetails(),
                completion_tokens_details=TokenDetails(reasoning_tokens=0),
                total_price=Decimal("1"),
                price_details=PriceDetails(),
                tokens_per_second=0.0,
            ),
            make_api_call(total_price=Decimal("0"), price_details=PriceDetails(currency="EUR")),
            LLMApiCall.failed(
                uuid7(),
                uuid7(),
                uuid7(),
                uuid7(),
                uuid7(),
                "gpt-4o",
                'Rate limit "reached" ⏳',
                "429",
                BASE_TIME,
                status=ApiCallStatus.RATE_LIMITED,
            ),
            LLMApiCall.failed(
                uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), "gpt-4o", "", None, whole_second
            ),
        ]
        await store.save_api_calls(calls)
        await assert_exported_as_saved(store, "api_calls", calls, store.get_api_call)

    @pytest.mark.asyncio
    async def test_exported_messages_are_their_entities_json(self, store: PersistenceStore) -> None:
        """Every message exports as its entity's JSON: parent absent when none, content as saved."""
        session = await self._session(store)
        whole_second = BASE_TIME.replace(microsecond=0)
        first = make_message(session, "Weather in 巴黎? ☀️", create_time=whole_second)
        contents = [
            MessageContent.from_tool_calls(
                [
                    ToolCallContent(id="c1", name="weather", arguments={"city": "Paris", "n": 1}),
                    ToolCallContent(id="c2", name="echo", arguments="raw text"),
                ]
            ),
            MessageContent.from_tool_result(ToolResultContent(tool_call_id="c1", content="18°C")),
            MessageContent.from_tool_result(
                ToolResultContent(tool_call_id="c2", content="boom", is_error=True)
            ),
            MessageContent(text="hi", lang="en", meta={"z": [1, None], "a": True}),
            MessageContent(text=""),
            MessageContent(),
        ]
        roles = [MessageRole.ASSISTANT, MessageRole.TOOL, MessageRole.TOOL, MessageRole.SYSTEM]
        messages = [first]
        for i, content in enumerate(contents):
            messages.append(
                make_message(
                    session,
                    role=roles[i % len(roles)],
                    content=content,
                    create_time=BASE_TIME + timedelta(seconds=i, microseconds=i * 1000),
                    parent_message_id=messages[-1].id if i % 2 == 0 else None,
                )
            )
        await store.save_messages(messages)
        await assert_exported_as_saved(store, "messages", messages, store.get_message)

    @pytest.mark.asyncio
    async def test_exported_sessions_are_their_entities_json(self, store: PersistenceStore) -> None:
        """Every session exports as its entity's JSON: a null title kept, metadata as saved."""
        whole_second = BASE_TIME.replace(microsecond=0)
        sessions = [
            make_session(),
            make_session(create_time=whole_second),
            make_session(
                title="Trip to 東京 ✈️",
                metadata={"topic": "travel", "tags": ["a", "b"], "depth": {"n": 1, "ok": None}},
                update_time=BASE_TIME + timedelta(days=1, microseconds=1),
            ),
            make_session(title="", metadata={"z": 1, "a": 2}),
        ]
        for session in sessions:
            await store.create_session(session)
        await assert_exported_as_saved(store, "sessions", sessions, store.get_session)

    @pytest.mark.asyncio
    async def test_export_stopped_early_leaves_the_store_usable(
        self, store: PersistenceStore
    ) -> None:
        """Leaving an export after its first chunk releases it; the store goes on working."""
        await self._one_of_each_kind(store, "api_calls", 5)
        chunks = store.export_records("api_calls", QueryFilter(), chunk_size=2)
        async for chunk in chunks:
            assert len(chunk) == 2
            break
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()
        assert await store.count_records("api_calls", QueryFilter()) == 5
        assert len(await exported(store, "api_calls")) == 5
