"""PersistencePlugin: every turn and API call recorded, correctly linked, never failing a chat."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from chatledger.entities import (
    ApiCallStatus,
    LLMApiCall,
    MessageRole,
    QueryFilter,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.errors import StoreConnectionError
from chatledger.ids import NIL_UUID, uuid7
from chatledger.plugin import LLMResponseMetadata, PluginType
from chatledger.plugin.persistence import PersistencePlugin
from chatledger.pricing import ModelPrice, StaticPricingRegistry
from chatledger.recording import shipper
from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore


def _plugin(store: Any, **options: Any) -> PersistencePlugin:
    return PersistencePlugin.from_store(
        "persistence", store, uuid7(), uuid7(), uuid7(), uuid7(), **options
    )


async def _calls(store: PersistenceStore, plugin: PersistencePlugin) -> list[LLMApiCall]:
    return await store.query_api_calls(QueryFilter(session_id=plugin.session_id, limit=10_000))


async def test_a_turn_is_two_linked_messages_and_one_call_with_every_figure(
    any_store: PersistenceStore,
) -> None:
    """User message, reply (its child), and an API call with model, tokens, timing and id."""
    store = any_store
    plugin = _plugin(store)
    assert plugin.metadata.plugin_type is PluginType.STORAGE
    assert set(plugin.metadata.capabilities) == {
        "message_persistence",
        "api_call_logging",
        "session_history",
    }
    await plugin.before_chat_with_model("What is 2 + 2?", "gpt-4o-mini")
    metadata = LLMResponseMetadata(
        id="chatcmpl-1",
        model="gpt-4o-mini-2024-07-18",
        prompt_tokens=120,
        completion_tokens=30,
        cached_tokens=100,
        reasoning_tokens=10,
        finish_reason="stop",
        time_to_first_token_ms=0,
    )
    await plugin.after_chat_with_metadata("4", metadata)
    assert await plugin.flush() == 0  # the hooks returned once durable; now they are stored

    session = await store.get_session(plugin.session_id)
    assert session is not None
    assert session.tenant_id == plugin.tenant_id  # MoFA left it nil
    question, answer = await store.get_session_messages(plugin.session_id)
    assert (question.role, question.content.text) == (MessageRole.USER, "What is 2 + 2?")
    assert (answer.role, answer.content.text) == (MessageRole.ASSISTANT, "4")
    assert answer.parent_message_id == question.id
    (call,) = await _calls(store, plugin)
    assert (call.request_message_id, call.response_message_id) == (question.id, answer.id)
    assert call.model_name == "gpt-4o-mini-2024-07-18"  # the model that answered
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (120, 30, 150)
    assert call.prompt_tokens_details is not None
    assert call.prompt_tokens_details.cached_tokens == 100
    assert call.completion_tokens_details is not None
    assert call.completion_tokens_details.reasoning_tokens == 10
    assert (call.api_response_id, call.time_to_first_token_ms) == ("chatcmpl-1", 0)
    assert call.status is ApiCallStatus.SUCCESS
    assert call.latency_ms is not None
    assert plugin.stats()["messages_saved"] == 2
    assert plugin.stats()["api_calls_saved"] == 1


async def test_two_hundred_concurrent_chats_each_link_their_own_records(
    any_store: PersistenceStore,
) -> None:
    """Chats interleaving at random through one plugin never swap requests or replies."""
    store = any_store
    plugin = _plugin(store)
    rng = random.Random(3)

    async def chat(number: int) -> None:
        await plugin.before_chat(f"question {number}")
        await asyncio.sleep(rng.random() / 200)
        metadata = LLMResponseMetadata(
            model="m", prompt_tokens=number, completion_tokens=number + 1
        )
        await plugin.after_chat_with_metadata(f"answer {number}", metadata)

    await asyncio.gather(*(chat(number) for number in range(200)))
    await plugin.flush()
    messages = {m.id: m for m in await store.get_session_messages(plugin.session_id)}
    calls = await _calls(store, plugin)
    assert len(messages) == 400
    assert len(calls) == 200
    for call in calls:
        request = messages[call.request_message_id].content.text
        response = messages[call.response_message_id].content.text
        assert request == f"question {call.prompt_tokens}"
        assert response == f"answer {call.prompt_tokens}"
        assert call.completion_tokens == call.prompt_tokens + 1
        assert messages[call.response_message_id].parent_message_id == call.request_message_id


def _status_error(status: int, body: Any = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, request=request)
    if status == 429:
        return openai.RateLimitError("slow down", response=response, body=body)
    return openai.InternalServerError("server error", response=response, body=body)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (TimeoutError("read timed out"), ApiCallStatus.TIMEOUT, None),
        (_status_error(429, {"code": "rate_limit_exceeded"}), ApiCallStatus.RATE_LIMITED,
         "rate_limit_exceeded"),
        (asyncio.CancelledError(), ApiCallStatus.CANCELLED, None),
        (_status_error(500), ApiCallStatus.FAILED, "500"),
    ],
)  # fmt: skip
async def test_a_failed_call_is_recorded_with_its_status_and_code(
    error: BaseException, status: ApiCallStatus, code: str | None
) -> None:
    """on_error stores a non-success call linked to its request, with no reply."""
    store = InMemoryStore()
    plugin = _plugin(store)
    await plugin.before_chat_with_model("hello", "gpt-4o")
    await plugin.on_error(error)
    (call,) = await _calls(store, plugin)
    (request,) = await store.get_session_messages(plugin.session_id)
    assert (call.status, call.error_code) == (status, code)
    assert call.request_message_id == request.id
    assert call.model_name == "gpt-4o"
    assert call.error_message


async def test_without_usage_tokens_are_counted_and_marked_estimated() -> None:
    """after_chat alone (no metadata): tokens counted locally, details say estimated."""
    store = InMemoryStore()
    plugin = _plugin(store)
    await plugin.before_chat("x" * 40)
    await plugin.after_chat("y" * 8)
    (call,) = await _calls(store, plugin)
    assert call.prompt_tokens > 0
    assert call.completion_tokens > 0
    for details in (call.prompt_tokens_details, call.completion_tokens_details):
        assert details is not None
        assert details.extra["estimated"] is True


async def test_calls_are_priced_with_cached_input_at_its_own_rate() -> None:
    """A pricing registry fills total_price and price_details, in Decimal."""
    prices = StaticPricingRegistry(
        {("openai", "gpt-4o"): ModelPrice(Decimal(2), Decimal(8), Decimal("0.5"))}
    )
    store = InMemoryStore()
    plugin = _plugin(store, pricing=prices, provider="openai")
    await plugin.before_chat("q")
    metadata = LLMResponseMetadata(
        model="gpt-4o", prompt_tokens=1_000_000, completion_tokens=100_000, cached_tokens=500_000
    )
    await plugin.after_chat_with_metadata("a", metadata)
    (call,) = await _calls(store, plugin)
    # 500,000 fresh at 2/M + 500,000 cached at 0.5/M + 100,000 out at 8/M
    assert call.total_price == Decimal("1.0") + Decimal("0.25") + Decimal("0.8")
    assert call.price_details is not None
    assert call.price_details.input_price == Decimal("1.25")


class _FlakyStore(InMemoryStore):
    """Unreachable while ``down``: every write fails as a lost connection would."""

    down = False

    async def ingest_records(self, *args: Any, **kwargs: Any) -> None:
        if self.down:
            raise StoreConnectionError("the database is down")
        await super().ingest_records(*args, **kwargs)


@pytest.mark.parametrize("spool", ["auto", None])
async def test_a_store_failure_never_fails_the_chat_and_the_records_come_later(
    spool: str | None,
) -> None:
    """While the store is down hooks still return; the records wait, in order, and land."""
    store = _FlakyStore()
    plugin = _plugin(store, spool=spool)
    store.down = True
    await plugin.before_chat("asked while the store was down")
    await plugin.after_chat_with_metadata(
        "answered", LLMResponseMetadata(model="m", prompt_tokens=3, completion_tokens=1)
    )
    assert await plugin.flush() == 4  # the session, the message, the reply and the call
    stats = plugin.stats()
    assert stats["store_failures"] >= 1
    assert stats["pending"] == 4
    assert await store.get_session(plugin.session_id) is None

    store.down = False
    await plugin.before_chat("asked after it came back")
    assert await plugin.flush() == 0
    assert plugin.stats()["pending"] == 0
    texts = [m.content.text for m in await store.get_session_messages(plugin.session_id)]
    assert texts == ["asked while the store was down", "answered", "asked after it came back"]
    assert len(await _calls(store, plugin)) == 1
    await plugin.close()


async def test_close_ships_what_waits() -> None:
    """close() stores the waiting records when the store is back."""
    store = _FlakyStore()
    plugin = _plugin(store)
    store.down = True
    await plugin.save_user_message("kept for later")
    store.down = False
    await plugin.close()
    assert plugin.stats()["pending"] == 0
    assert [m.content.text for m in await store.get_session_messages(plugin.session_id)] == [
        "kept for later"
    ]


async def test_history_is_loaded_and_new_messages_link_after_it() -> None:
    """load_history returns the session's messages; the next message's parent is the last."""
    store = InMemoryStore()
    first = _plugin(store)
    await first.save_user_message("one")
    reply = await first.save_assistant_message("two")
    again = PersistencePlugin.from_store(
        "again", store, first.user_id, first.tenant_id, first.agent_id, first.session_id
    )
    history = await again.load_history()
    assert [m.content.text for m in history] == ["one", "two"]
    following = await again.save_user_message("three")
    assert following.parent_message_id == reply.id
    moved = again.with_session_id(uuid7())
    assert moved.session_id != first.session_id
    assert (await moved.save_user_message("elsewhere")).parent_message_id is None


async def test_background_is_an_alias_and_every_hook_is_durable(
    any_store: PersistenceStore,
) -> None:
    """background=True (older code) changes nothing: records are durable and all ship."""
    plugin = PersistencePlugin.from_store(
        "bg", any_store, uuid7(), uuid7(), uuid7(), uuid7(), background=True
    )

    async def chat(number: int) -> None:
        await plugin.before_chat(f"question {number}")
        metadata = LLMResponseMetadata(model="m", prompt_tokens=number, completion_tokens=1)
        await plugin.after_chat_with_metadata(f"answer {number}", metadata)

    await asyncio.gather(*(chat(number) for number in range(150)))
    assert await plugin.flush() == 0
    messages = {m.id: m for m in await any_store.get_session_messages(plugin.session_id)}
    calls = await _calls(any_store, plugin)
    assert (len(messages), len(calls)) == (300, 150)
    for call in calls:
        assert messages[call.request_message_id].content.text == f"question {call.prompt_tokens}"
        assert messages[call.response_message_id].content.text == f"answer {call.prompt_tokens}"
    assert plugin.stats()["messages_saved"] == 300
    assert plugin.stats()["api_calls_saved"] == 150
    await plugin.close()


async def test_waiting_records_are_retried_on_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """No further chat needed: once the store is back, a timed retry stores what waited."""
    monkeypatch.setattr(shipper, "_PAUSE_FIRST", 0.01)
    store = _FlakyStore()
    plugin = _plugin(store)
    store.down = True
    await plugin.save_user_message("stored later")
    for _ in range(3000):  # until a few timed retries have failed (30 s at most)
        if plugin.stats()["store_failures"] >= 3:
            break
        await asyncio.sleep(0.01)
    assert plugin.stats()["store_failures"] >= 3
    assert plugin.stats()["pending"] == 2
    store.down = False
    for _ in range(200):
        if not plugin.stats()["pending"]:
            break
        await asyncio.sleep(0.02)
    assert plugin.stats()["pending"] == 0
    texts = [m.content.text for m in await store.get_session_messages(plugin.session_id)]
    assert texts == ["stored later"]
    await plugin.close()


async def test_stats_name_the_plugin_type_and_its_ids_as_mofa_does() -> None:
    """MoFA's PersistencePlugin stats carry plugin_type, user_id, tenant_id and agent_id."""
    plugin = _plugin(InMemoryStore())
    stats = plugin.stats()
    assert stats["plugin_type"] == "storage"
    assert stats["user_id"] == str(plugin.user_id)
    assert stats["tenant_id"] == str(plugin.tenant_id)
    assert stats["agent_id"] == str(plugin.agent_id)
    await plugin.close()


async def test_separate_message_and_call_stores_are_refused_clearly() -> None:
    """Everything goes through one recorder, into one store: two stores are a clear error."""
    with pytest.raises(ValueError, match="one store"):
        PersistencePlugin(
            "two", InMemoryStore(), InMemoryStore(), uuid7(), uuid7(), uuid7(), uuid7()
        )


async def test_plugins_of_one_store_share_one_recorder_and_one_spool(tmp_path: Any) -> None:
    """An app making a plugin per user or session gets one spool file, not one per plugin."""
    from chatledger.stores.sqlite import SqliteStore

    store = await SqliteStore.connect(tmp_path / "shared.db")
    plugins = [_plugin(store) for _ in range(20)]
    assert len({id(plugin.recorder) for plugin in plugins}) == 1
    for number, plugin in enumerate(plugins):
        await plugin.save_user_message(f"from plugin {number}")
    for plugin in plugins:
        await plugin.close()
    assert plugins[0].stats()["messages_saved"] == 20
    spool = plugins[0].stats()["spool"]
    assert spool is not None
    assert len(list(Path(spool).parent.glob("*.spool"))) == 1
    await plugins[0].recorder.close()
    await store.close()


def test_a_second_asyncio_run_gets_a_recorder_on_its_own_loop(tmp_path: Any) -> None:
    """An app calling asyncio.run twice on one store: nothing recorded in the first run is lost."""
    import asyncio

    from chatledger.stores.sqlite import SqliteStore

    async def open_store() -> SqliteStore:
        return await SqliteStore.connect(tmp_path / "twice.db")

    store = asyncio.run(open_store())
    session = uuid7()

    async def chat(text: str, *, flush: bool) -> None:
        plugin = PersistencePlugin.from_store("p", store, uuid7(), uuid7(), uuid7(), session)
        await plugin.save_user_message(text)
        if flush:
            assert await plugin.flush() == 0

    asyncio.run(chat("first run, never flushed", flush=False))
    asyncio.run(chat("second run", flush=True))

    async def read() -> list[str | None]:
        return [m.content.text for m in await store.get_session_messages(session)]

    assert asyncio.run(read()) == ["first run, never flushed", "second run"]
    asyncio.run(store.close())


async def test_a_tool_turn_through_the_hooks_is_chained_with_a_call_per_round_trip(
    any_store: PersistenceStore,
) -> None:
    """Tool-call message, two tool results and the answer: chained; two calls, each linked."""
    plugin = _plugin(any_store)
    await plugin.before_chat_with_model("Weather in Lisbon and Porto?", "gpt-4o")
    calls = [
        ToolCallContent(id="call_a", name="get_weather", arguments={"city": "Lisbon"}),
        ToolCallContent(id="call_b", name="get_weather", arguments={"city": "Porto"}),
    ]
    asking = LLMResponseMetadata(
        id="chatcmpl-1", model="gpt-4o-2024-08-06", prompt_tokens=60, completion_tokens=30,
        finish_reason="tool_calls", time_to_first_token_ms=40,
    )  # fmt: skip
    await plugin.after_chat_with_tool_calls("Checking both.", calls, asking)
    lisbon = ToolResultContent(tool_call_id="call_a", content="19°C")
    porto = ToolResultContent(tool_call_id="call_b", content="station down", is_error=True)
    await plugin.on_tool_result(calls[0], lisbon)
    await plugin.on_tool_result(calls[1], porto)
    answering = LLMResponseMetadata(
        id="chatcmpl-2", model="gpt-4o-2024-08-06", prompt_tokens=110, completion_tokens=12
    )
    await plugin.after_chat_with_metadata("Lisbon: 19°C; Porto: unknown.", answering)
    assert await plugin.flush() == 0

    messages = await any_store.get_session_messages(plugin.session_id)
    assert [m.role for m in messages] == [
        MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL, MessageRole.TOOL,
        MessageRole.ASSISTANT,
    ]  # fmt: skip
    assert [m.parent_message_id for m in messages] == [None, *(m.id for m in messages[:-1])]
    user, asked, first, second, answer = messages
    assert (asked.content.text, asked.content.tool_calls) == ("Checking both.", calls)
    assert (first.content.tool_result, second.content.tool_result) == (lisbon, porto)
    assert answer.content.text == "Lisbon: 19°C; Porto: unknown."
    recorded = sorted(await _calls(any_store, plugin), key=lambda c: (c.create_time, c.id))
    assert [(c.request_message_id, c.response_message_id) for c in recorded] == [
        (user.id, asked.id), (second.id, answer.id),
    ]  # fmt: skip
    assert [c.api_response_id for c in recorded] == ["chatcmpl-1", "chatcmpl-2"]
    assert [(c.prompt_tokens, c.completion_tokens) for c in recorded] == [(60, 30), (110, 12)]
    assert recorded[0].time_to_first_token_ms == 40
    assert recorded[1].create_time >= second.create_time  # timed from the last result
    assert all(c.status is ApiCallStatus.SUCCESS for c in recorded)


async def test_a_failure_with_what_had_arrived_keeps_the_response_id_and_first_token(
    any_store: PersistenceStore,
) -> None:
    """on_error_with_metadata: a failed call with the stream's id, model and first token."""
    plugin = _plugin(any_store)
    await plugin.before_chat_with_model("Tell me a story", "gpt-4o")
    arrived = LLMResponseMetadata(
        id="chatcmpl-cut", model="gpt-4o-2024-08-06", time_to_first_token_ms=35
    )
    await asyncio.sleep(0.05)
    await plugin.on_error_with_metadata(ConnectionResetError("peer closed"), arrived)
    await plugin.flush()
    (question,) = await any_store.get_session_messages(plugin.session_id)
    (call,) = await _calls(any_store, plugin)
    assert call.status is ApiCallStatus.FAILED
    assert (call.request_message_id, call.response_message_id) == (question.id, NIL_UUID)
    assert (call.api_response_id, call.model_name) == ("chatcmpl-cut", "gpt-4o-2024-08-06")
    assert call.time_to_first_token_ms == 35
    assert call.latency_ms is not None
    assert call.latency_ms >= 45
    assert call.tokens_per_second is None
    assert call.error_message == "peer closed"
