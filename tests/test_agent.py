"""The agent with the scripted provider: chats, streams, sessions, handlers, records."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import httpx2
import openai
import pytest

from chatledger.agent import LLMAgentBuilder, ScriptedProvider, ScriptedReply, ScriptedToolCall
from chatledger.entities import ApiCallStatus, MessageRole, QueryFilter
from chatledger.ids import uuid7
from chatledger.plugin import LLMAgentEventHandler, LLMResponseMetadata, PersistencePlugin
from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore


def _plugin(store: PersistenceStore) -> PersistencePlugin:
    return PersistencePlugin.from_store("persistence", store, uuid7(), uuid7(), uuid7(), uuid7())


async def test_chat_records_each_turn_with_the_reported_usage(any_store: PersistenceStore) -> None:
    """Two turns: four messages, two calls with the provider's tokens, history kept."""
    provider = ScriptedProvider(
        [
            ScriptedReply("Hello!", prompt_tokens=12, completion_tokens=3, cached_tokens=8),
            ScriptedReply("Paris.", prompt_tokens=20, completion_tokens=2, reasoning_tokens=1),
        ]
    )
    plugin = _plugin(any_store)
    agent = await (
        LLMAgentBuilder()
        .with_provider(provider)
        .with_model("gpt-4o-mini")
        .with_system_prompt("Be brief.")
        .with_persistence_plugin(plugin)
        .build_async()
    )
    assert await agent.chat("Hi") == "Hello!"
    assert await agent.chat("Capital of France?") == "Paris."
    assert [m.content for m in agent.history] == ["Hi", "Hello!", "Capital of France?", "Paris."]
    sent = provider.requests[1].messages
    assert [(m.role, m.content) for m in sent] == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
        ("user", "Capital of France?"),
    ]  # fmt: skip
    await plugin.flush()  # what the hooks spooled is in the store once shipped
    calls = await any_store.query_api_calls(QueryFilter(session_id=agent.current_session_id))
    by_tokens = {call.prompt_tokens: call for call in calls}
    assert set(by_tokens) == {12, 20}
    assert by_tokens[12].prompt_tokens_details is not None
    assert by_tokens[12].prompt_tokens_details.cached_tokens == 8
    assert by_tokens[12].time_to_first_token_ms is None  # not streamed
    messages = await any_store.get_session_messages(agent.current_session_id)
    assert [m.role for m in messages] == [MessageRole.USER, MessageRole.ASSISTANT] * 2
    await agent.close()


async def test_a_stream_yields_pieces_and_records_the_time_to_first_token() -> None:
    """chat_stream yields the reply in pieces; the call has a time to first token."""
    store = InMemoryStore()
    plugin = _plugin(store)
    provider = ScriptedProvider(
        [ScriptedReply("one two three", prompt_tokens=5, completion_tokens=3, delay=0.02)]
    )
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_persistence_plugin(plugin)
    ).build_async()
    pieces = [piece async for piece in agent.chat_stream("count")]
    assert pieces == ["one ", "two ", "three"]
    (call,) = await store.query_api_calls(QueryFilter(session_id=agent.current_session_id))
    assert call.time_to_first_token_ms is not None
    assert call.time_to_first_token_ms >= 15
    assert call.completion_tokens == 3


async def test_without_reported_usage_the_agent_counts_and_says_so() -> None:
    """A provider that reports no usage: tokens counted by the agent, marked estimated."""
    store = InMemoryStore()
    plugin = _plugin(store)
    agent = await (
        LLMAgentBuilder()
        .with_provider(ScriptedProvider(["a reply of some length"]))
        .with_model("m")
        .with_persistence_plugin(plugin)
    ).build_async()
    await agent.chat("a question")
    (call,) = await store.query_api_calls(QueryFilter(session_id=agent.current_session_id))
    assert call.prompt_tokens > 0
    assert call.completion_tokens > 0
    assert call.completion_tokens_details is not None
    assert call.completion_tokens_details.extra["estimated"] is True


async def test_errors_are_recorded_and_raised_unless_a_handler_answers() -> None:
    """A 429 is recorded as rate-limited and raised; a handler's reply can stand in."""
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    limited = openai.RateLimitError(
        "slow down", response=httpx2.Response(429, request=request), body=None
    )
    store = InMemoryStore()
    plugin = _plugin(store)
    provider = ScriptedProvider([ScriptedReply(error=limited), ScriptedReply(error=limited)])
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_persistence_plugin(plugin)
    ).build_async()
    with pytest.raises(openai.RateLimitError):
        await agent.chat("hi")
    (call,) = await store.query_api_calls(QueryFilter(session_id=agent.current_session_id))
    assert (call.status, call.error_code) == (ApiCallStatus.RATE_LIMITED, "429")

    class Apologise(LLMAgentEventHandler):
        async def on_error(self, error: BaseException) -> str | None:
            return "Sorry, try again in a minute."

    polite = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_event_handler(Apologise())
    ).build_async()
    assert await polite.chat("hi") == "Sorry, try again in a minute."


async def test_handlers_rewrite_text_in_order() -> None:
    """before_chat rewrites what is sent; after_chat_with_metadata what is returned."""

    class Shout(LLMAgentEventHandler):
        async def before_chat(self, message: str) -> str | None:
            return message.upper()

        async def after_chat_with_metadata(
            self, response: str, metadata: LLMResponseMetadata
        ) -> str | None:
            return f"{response} [{metadata.model}]"

    provider = ScriptedProvider(["ok"])
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_event_handler(Shout())
    ).build_async()
    assert await agent.chat("quiet") == "ok [m]"
    assert provider.requests[0].messages[-1].content == "QUIET"


async def test_sliding_window_sends_only_the_last_rounds() -> None:
    """With a window of one round, the model sees the previous exchange and the new message."""
    provider = ScriptedProvider(["r1", "r2", "r3"])
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_sliding_window(1)
    ).build_async()
    for text in ("a", "b", "c"):
        await agent.chat(text)
    assert [m.content for m in provider.requests[2].messages] == ["b", "r2", "c"]
    with pytest.raises(ValueError, match="at least one round"):
        LLMAgentBuilder().with_sliding_window(0)


async def test_a_sliding_window_keeps_a_round_with_its_tool_calls_whole() -> None:
    """A round is counted from its user message: its tool call and result go with it."""

    def clock() -> str:
        """The time now."""
        return "12:00"

    provider = ScriptedProvider(
        ["r1", ScriptedReply(tool_calls=[ScriptedToolCall("clock", id="c1")]), "noon", "r3"]
    )
    agent = await (
        LLMAgentBuilder()
        .with_provider(provider)
        .with_model("m")
        .with_tool(clock)
        .with_sliding_window(1)
    ).build_async()
    for text in ("a", "time?", "c"):
        await agent.chat(text)
    sent = provider.requests[-1].messages
    assert [(m.role, m.content) for m in sent] == [
        ("user", "time?"), ("assistant", ""), ("tool", "12:00"), ("assistant", "noon"),
        ("user", "c"),
    ]  # fmt: skip


async def test_a_handler_that_only_knows_on_error_still_hears_of_errors() -> None:
    """on_error_with_metadata's default calls on_error: handlers written before it keep working."""
    heard: list[BaseException] = []

    class Old(LLMAgentEventHandler):
        async def on_error(self, error: BaseException) -> str | None:
            heard.append(error)
            return None

    boom = RuntimeError("boom")
    agent = await (
        LLMAgentBuilder()
        .with_provider(ScriptedProvider([ScriptedReply(error=boom)]))
        .with_model("m")
        .with_event_handler(Old())
    ).build_async()
    with pytest.raises(RuntimeError, match="boom"):
        await agent.chat("hi")
    assert heard == [boom]


async def test_sessions_are_created_switched_listed_and_deleted(
    any_store: PersistenceStore,
) -> None:
    """Switching back loads a session's history from the store."""
    plugin = _plugin(any_store)
    provider = ScriptedProvider(["first answer", "second answer"])
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_persistence_plugin(plugin)
    ).build_async()
    first = agent.current_session_id
    await agent.chat("first question")
    second = await agent.create_session()
    assert agent.history == []
    await agent.chat("second question")
    await agent.switch_session(first)
    assert [m.content for m in agent.history] == ["first question", "first answer"]
    assert {s.id for s in await agent.list_sessions()} == {first, second}
    assert await agent.delete_session(second) is True
    assert {s.id for s in await agent.list_sessions()} == {first}
    rebuilt = await (
        LLMAgentBuilder()
        .with_provider(provider)
        .with_model("m")
        .with_persistence_plugin(_plugin_for(any_store, plugin))
        .with_session_id(first)
    ).build_async()
    assert [m.content for m in rebuilt.history] == ["first question", "first answer"]


def _plugin_for(store: PersistenceStore, like: PersistencePlugin) -> PersistencePlugin:
    return PersistencePlugin.from_store(
        "again", store, like.user_id, like.tenant_id, like.agent_id, like.session_id
    )


async def test_concurrent_chats_through_one_agent_are_recorded_apart() -> None:
    """Fifty chats at once through one agent: each call links its own question and answer."""
    store = InMemoryStore()
    plugin = _plugin(store)

    class Echo:
        name = "echo"

        async def complete(self, request: Any) -> Any:
            from chatledger.agent import Completion

            text = request.messages[-1].content
            await asyncio.sleep(0.001 * (zlib.crc32(text.encode()) % 5))  # the same every run
            metadata = LLMResponseMetadata(model="echo", prompt_tokens=1, completion_tokens=1)
            return Completion(f"echo: {text}", metadata)

        def stream(self, request: Any) -> Any:
            raise NotImplementedError

    agent = await (
        LLMAgentBuilder().with_provider(Echo()).with_model("echo").with_persistence_plugin(plugin)
    ).build_async()
    await asyncio.gather(*(agent.chat(f"q{i}") for i in range(50)))
    messages = {m.id: m for m in await store.get_session_messages(agent.current_session_id)}
    calls = await store.query_api_calls(QueryFilter(session_id=agent.current_session_id))
    assert len(calls) == 50
    for call in calls:
        question = messages[call.request_message_id].content.text
        assert messages[call.response_message_id].content.text == f"echo: {question}"


async def test_a_stream_the_reader_stops_is_recorded_as_cancelled() -> None:
    """Breaking out of chat_stream records a cancelled call, and closes the provider's stream."""
    store = InMemoryStore()
    plugin = _plugin(store)
    provider = ScriptedProvider([ScriptedReply("one two three", piece_delay=0.01)])
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_persistence_plugin(plugin)
    ).build_async()
    stream = agent.chat_stream("hi")
    async for _ in stream:
        break
    await stream.aclose()
    (call,) = await store.query_api_calls(QueryFilter(session_id=agent.current_session_id))
    assert call.status is ApiCallStatus.CANCELLED


async def test_sessions_without_a_store_live_in_the_agent() -> None:
    """No persistence plugin: sessions and their histories are kept in memory."""
    agent = await (
        LLMAgentBuilder().with_provider(ScriptedProvider(["one", "two"])).with_model("m")
    ).build_async()
    first = agent.current_session_id
    await agent.chat("a")
    second = await agent.create_session()
    await agent.chat("b")
    assert {s.id for s in await agent.list_sessions()} == {first, second}
    await agent.switch_session(first)
    assert [m.content for m in agent.history] == ["a", "one"]
    assert await agent.delete_session(second) is True
    assert [s.id for s in await agent.list_sessions()] == [first]
    agent.clear_history()
    assert agent.history == []
