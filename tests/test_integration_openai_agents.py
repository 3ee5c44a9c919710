"""The Agents SDK's model calls recorded from its trace spans: real agents, the fake server.

Each test runs a real ``agents.Agent`` with ``Runner`` against the local fake
OpenAI server, with only chatledger's processor installed (the SDK's upload to
OpenAI is replaced, so nothing leaves the machine).

The corpus runs through both of the SDK's OpenAI models: the Responses model
plays the RESPONSES scenarios and the Chat Completions model the CHAT ones.
What the spans cannot carry is stated in :func:`sdk_truth`, scenario by
scenario, and asserted as such.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
    set_trace_processors,
)
from openai import AsyncOpenAI

import chatledger
import chatledger.sync
from chatledger import QueryFilter
from chatledger.entities import ApiCallStatus, LLMApiCall, MessageRole
from chatledger.integrations.openai_agents import ChatledgerTracingProcessor
from chatledger.recording import Recorder, id_for_key, scope
from chatledger.stores.base import PersistenceStore
from chatledger.testing.fake_openai import (
    FakeOpenAIServer,
    json_reply,
    responses_reply,
    responses_stream,
    responses_usage,
    tool_call,
    usage,
)
from provider_corpus import CHAT, MODEL, PRICES, RESPONSES, Scenario, Truth, check_call

ANSWERED = "gpt-4o-mini-2024-07-18"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


@pytest.fixture
def tracing() -> Iterator[list[ChatledgerTracingProcessor]]:
    """Install processors in the SDK (only ours); the SDK's default comes back empty after."""
    installed: list[ChatledgerTracingProcessor] = []

    yield installed
    set_trace_processors([])


def install(
    installed: list[ChatledgerTracingProcessor], recorder: Recorder
) -> ChatledgerTracingProcessor:
    """Our processor as the SDK's only one."""
    processor = ChatledgerTracingProcessor(recorder)
    set_trace_processors([processor])
    installed.append(processor)
    return processor


def client(server: FakeOpenAIServer, timeout: float | None = None) -> AsyncOpenAI:
    """An OpenAI client on the fake server: no retries (one request, one call)."""
    return AsyncOpenAI(
        base_url=server.base_url, api_key="k", max_retries=0, timeout=timeout or 10.0
    )


def sdk_truth(scenario: Scenario) -> Truth:
    """What the SDK's spans let the processor know of ``scenario``'s call.

    - No span carries a time to first token: calls are recorded as unstreamed.
    - Chat Completions spans carry no response id for a whole reply (the SDK
      keeps a streamed reply's chunk id, which is recorded) and none for a
      failed stream; they carry the SDK's usage, where an unreported detail
      reads 0, so zero details are recorded as absent.
    - The model is the one asked for on Chat Completions spans; the tests ask
      for the one the truth names (the dated snapshot for successes).
    """
    truth = dataclasses.replace(scenario.truth, streamed=False)
    if scenario.api == "chat":
        succeeded = truth.status is ApiCallStatus.SUCCESS
        truth = dataclasses.replace(
            truth,
            response_id=truth.response_id if scenario.stream and succeeded else None,
            cached_tokens=truth.cached_tokens or None,
            reasoning_tokens=truth.reasoning_tokens or None,
        )
    return truth


async def run(agent: Agent[Any], question: str, *, stream: bool, **options: Any) -> Any:
    """Run ``agent`` as its users do, streamed (reading every event) or not."""
    if stream:
        result = Runner.run_streamed(agent, question, **options)
        async for _ in result.stream_events():
            pass
        return result
    return await Runner.run(agent, question, **options)


async def calls_of(store: PersistenceStore) -> list[LLMApiCall]:
    """Every stored call, oldest first."""
    return list(reversed(await store.query_api_calls(QueryFilter())))


@pytest.mark.parametrize("scenario", CHAT + RESPONSES, ids=lambda s: s.name)
async def test_corpus(
    scenario: Scenario,
    corpus_store: PersistenceStore,
    tracing: list[ChatledgerTracingProcessor],
) -> None:
    """Each scenario through the SDK's model for its API: the stored call is the truth."""
    recorder = Recorder(corpus_store, pricing=PRICES)
    processor = install(tracing, recorder)
    truth = sdk_truth(scenario)
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(FakeOpenAIServer())
        server.add(*scenario.script)
        openai = await stack.enter_async_context(client(server, scenario.timeout))
        model: Any
        if scenario.api == "chat":
            model = OpenAIChatCompletionsModel(model=truth.model, openai_client=openai)
        else:
            model = OpenAIResponsesModel(model=MODEL, openai_client=openai)
        agent = Agent(
            name="Corpus agent",
            instructions="Answer briefly.",
            model=model,
            tools=[get_weather] if scenario.tools else [],
            tool_use_behavior="stop_on_first_tool",  # one model call per scenario
            # Not OpenAI's own URL: the SDK asks a chat stream for usage only when told.
            model_settings=ModelSettings(include_usage=scenario.include_usage or None),
        )
        if truth.status is ApiCallStatus.SUCCESS:
            await run(agent, "Weather in Paris?", stream=scenario.stream)
        else:
            with pytest.raises(Exception):  # noqa: B017,PT011  (the provider's own error)
                await run(agent, "Weather in Paris?", stream=scenario.stream)
        await processor.flush()
    await recorder.flush()
    (call,) = await calls_of(corpus_store)
    check_call(call, truth)
    assert call.agent_id == id_for_key("Corpus agent")
    stored = await corpus_store.get_session_messages(call.chat_session_id)
    request = [m for m in stored if m.id != call.response_message_id]
    sent = [("user", "Weather in Paris?")]
    if scenario.api == "chat":  # the Responses API's instructions come back only if echoed
        sent.insert(0, ("system", "Answer briefly."))
    assert [(m.role.value, m.content.text) for m in request] == sent
    assert call.request_message_id == request[-1].id
    if truth.status is ApiCallStatus.SUCCESS:
        (reply,) = [m for m in stored if m.id == call.response_message_id]
        assert reply.role is MessageRole.ASSISTANT
        assert reply.content.text == truth.reply_text
        names = tuple(c.name for c in reply.content.tool_calls or ())
        assert names == truth.tool_calls
    else:
        assert len(stored) == len(sent)
    await recorder.close()


def tool_script_chat() -> list[Any]:
    """A tool call, then the answer: two chat completions."""
    return [
        json_reply(None, model=ANSWERED, response_id="chatcmpl-1", usage=usage(80, 17),
                   tool_calls=[tool_call("get_weather", '{"city": "Paris"}')]),
        json_reply("Sunny in Paris.", model=ANSWERED, response_id="chatcmpl-2",
                   usage=usage(110, 6, cached=64)),
    ]  # fmt: skip


async def test_a_tool_run_is_two_calls_in_the_callers_scope(
    sqlite_store: PersistenceStore, tracing: list[ChatledgerTracingProcessor]
) -> None:
    """Two model calls, each with the agent's name, the caller's user and session; messages once."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    processor = install(tracing, recorder)
    async with FakeOpenAIServer() as server, client(server) as openai:
        server.add(*tool_script_chat())
        model = OpenAIChatCompletionsModel(model=ANSWERED, openai_client=openai)
        agent = Agent(name="Weather bot", instructions="Be brief.", model=model,
                      tools=[get_weather])  # fmt: skip
        async with scope(user_id="user-42", session_id="ticket-7"):
            result = await Runner.run(agent, "Weather in Paris?")
        await processor.flush()
    assert result.final_output == "Sunny in Paris."
    await recorder.flush()
    first, second = await calls_of(sqlite_store)
    for call in (first, second):
        assert call.agent_id == id_for_key("Weather bot")
        assert call.user_id == id_for_key("user-42")
        assert call.chat_session_id == id_for_key("ticket-7")
        assert call.status is ApiCallStatus.SUCCESS
    assert (first.prompt_tokens, first.completion_tokens) == (80, 17)
    assert (second.prompt_tokens, second.prompt_tokens_details.cached_tokens) == (110, 64)  # type: ignore[union-attr]
    messages = await sqlite_store.get_session_messages(id_for_key("ticket-7"))
    assert [m.role for m in messages] == [
        MessageRole.SYSTEM, MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL,
        MessageRole.ASSISTANT,
    ]  # fmt: skip
    assert messages[2].content.tool_calls[0].name == "get_weather"  # type: ignore[index]
    assert messages[3].content.tool_result.content == "Sunny in Paris."  # type: ignore[union-attr]
    assert messages[4].content.text == "Sunny in Paris."
    assert (first.response_message_id, second.request_message_id) == (
        messages[2].id,
        messages[3].id,
    )
    session = await sqlite_store.get_session(id_for_key("ticket-7"))
    assert session is not None
    assert session.metadata["key"] == "ticket-7"
    await recorder.close()


async def test_a_streamed_responses_run_keeps_the_scope(
    sqlite_store: PersistenceStore, tracing: list[ChatledgerTracingProcessor]
) -> None:
    """run_streamed: the agent runs in a task of its own, which inherits the caller's scope."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    processor = install(tracing, recorder)
    weather = tool_call("get_weather", '{"city": "Paris"}', call_id="call_w")
    async with FakeOpenAIServer() as server, client(server) as openai:
        server.add(
            responses_stream([], model=ANSWERED, response_id="resp_1",
                             usage=responses_usage(90, 20), tool_calls=[weather]),
            responses_stream(["Sunny", "."], model=ANSWERED, response_id="resp_2",
                             usage=responses_usage(130, 3, cached=64)),
        )  # fmt: skip
        model = OpenAIResponsesModel(model=MODEL, openai_client=openai)
        agent = Agent(name="Streamer", instructions="Be brief.", model=model, tools=[get_weather])
        async with scope(user_id="user-7"):
            await run(agent, "Weather in Paris?", stream=True)
        await processor.flush()
    await recorder.flush()
    first, second = await calls_of(sqlite_store)
    assert [c.api_response_id for c in (first, second)] == ["resp_1", "resp_2"]
    assert {c.user_id for c in (first, second)} == {id_for_key("user-7")}
    assert {c.agent_id for c in (first, second)} == {id_for_key("Streamer")}
    assert second.prompt_tokens_details.cached_tokens == 64  # type: ignore[union-attr]
    assert first.time_to_first_token_ms is None  # the spans carry none
    messages = await sqlite_store.get_session_messages(first.chat_session_id)
    assert [m.role for m in messages] == [
        MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL, MessageRole.ASSISTANT,
    ]  # fmt: skip
    assert messages[1].content.tool_calls[0].id == "call_w"  # type: ignore[index]
    await recorder.close()


def test_run_sync_records_in_the_callers_scope(
    tmp_path: Path, tracing: list[ChatledgerTracingProcessor]
) -> None:
    """Runner.run_sync from plain code on a blocking store: both calls, in the caller's scope."""
    import asyncio
    import threading

    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            async with FakeOpenAIServer() as server:
                server.add(*tool_script_chat())
                holder["server"], holder["stop"] = server, asyncio.Event()
                holder["loop"] = asyncio.get_running_loop()
                ready.set()
                await holder["stop"].wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    ready.wait(10)
    try:
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        with chatledger.sync.connect(url) as store, Recorder(store, pricing=PRICES) as recorder:
            install(tracing, recorder)
            openai = client(holder["server"])
            model = OpenAIChatCompletionsModel(model=ANSWERED, openai_client=openai)
            agent = Agent(name="Sync bot", model=model, tools=[get_weather])
            with scope(user_id="sync-user"):
                result = Runner.run_sync(agent, "Weather in Paris?")
            assert result.final_output == "Sunny in Paris."
            # run_sync's loop (which it keeps for the next run) closes the client's sockets.
            loop = asyncio.get_event_loop_policy().get_event_loop()
            loop.run_until_complete(openai.close())
            loop.close()
            asyncio.set_event_loop(None)
            tracing[0].force_flush()
            recorder.flush_sync()
            calls = store.query_api_calls(QueryFilter())
            assert len(calls) == 2
            assert {c.user_id for c in calls} == {id_for_key("sync-user")}
            assert {c.agent_id for c in calls} == {id_for_key("Sync bot")}
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


async def test_the_trace_group_is_the_session_and_a_scoped_agent_wins(
    sqlite_store: PersistenceStore, tracing: list[ChatledgerTracingProcessor]
) -> None:
    """RunConfig(group_id=...) names the session when no scope does; a scope's agent_id stays."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    processor = install(tracing, recorder)
    agent_id = uuid.uuid4()
    async with FakeOpenAIServer() as server, client(server) as openai:
        server.add(responses_reply("Hi.", model=ANSWERED, response_id="resp_g",
                                   usage=responses_usage(10, 2)))  # fmt: skip
        model = OpenAIResponsesModel(model=MODEL, openai_client=openai)
        agent = Agent(name="Greeter", model=model)
        async with scope(agent_id=agent_id):
            await Runner.run(agent, "Hello", run_config=RunConfig(group_id="conversation-9"))
        await processor.flush()
    await recorder.flush()
    (call,) = await calls_of(sqlite_store)
    assert call.chat_session_id == id_for_key("conversation-9")
    assert call.agent_id == agent_id
    session = await sqlite_store.get_session(call.chat_session_id)
    assert session is not None
    assert session.metadata["key"] == "conversation-9"
    await recorder.close()


async def test_without_sensitive_data_the_call_is_recorded_without_messages(
    sqlite_store: PersistenceStore, tracing: list[ChatledgerTracingProcessor]
) -> None:
    """trace_include_sensitive_data=False: usage and model, no messages."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    processor = install(tracing, recorder)
    async with FakeOpenAIServer() as server, client(server) as openai:
        server.add(json_reply("Hi.", model=ANSWERED, usage=usage(10, 2)))
        model = OpenAIChatCompletionsModel(model=ANSWERED, openai_client=openai)
        config = RunConfig(trace_include_sensitive_data=False)
        await Runner.run(Agent(name="Quiet", model=model), "Hello", run_config=config)
        await processor.flush()
    await recorder.flush()
    (call,) = await calls_of(sqlite_store)
    assert (call.model_name, call.prompt_tokens, call.completion_tokens) == (ANSWERED, 10, 2)
    assert call.total_price is not None
    assert await sqlite_store.get_session_messages(call.chat_session_id) == []
    await recorder.close()


async def test_recording_never_breaks_the_run(
    sqlite_store: PersistenceStore,
    tracing: list[ChatledgerTracingProcessor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A closed recorder: the run goes on, and the failure is logged."""
    recorder = Recorder(sqlite_store)
    await recorder.close()
    processor = install(tracing, recorder)
    async with FakeOpenAIServer() as server, client(server) as openai:
        server.add(json_reply("Hi.", model=ANSWERED, usage=usage(10, 2)))
        model = OpenAIChatCompletionsModel(model=ANSWERED, openai_client=openai)
        result = await Runner.run(Agent(name="A", model=model), "Hello")
        await processor.flush()
    assert result.final_output == "Hi."
    assert "could not record an Agents SDK model call" in caplog.text
