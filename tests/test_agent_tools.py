"""Tools in the agent: the tool loop, handlers, errors, round limits, records and history."""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from itertools import pairwise
from typing import Any, Literal

import httpx2
import openai
import pytest

from chatledger.agent import (
    ChatRequest,
    Completion,
    FunctionToolExecutor,
    LLMAgent,
    LLMAgentBuilder,
    ScriptedProvider,
    ScriptedReply,
    ScriptedToolCall,
    StreamEnd,
    Tool,
    ToolCall,
    ToolError,
    ToolExecutor,
    ToolRoundsExceededError,
)
from chatledger.entities import (
    ApiCallStatus,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    QueryFilter,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.ids import NIL_UUID, uuid7
from chatledger.plugin import LLMAgentEventHandler, LLMResponseMetadata, PersistencePlugin
from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore

WEATHER = {"Lisbon": 19, "Oslo": 4}


def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, Any]:
    """The temperature in a city now.

    More prose that the model is not sent.
    """
    if city not in WEATHER:
        raise ValueError(f"no weather station in {city}")
    return {"city": city, "temperature": WEATHER[city], "unit": unit}


async def convert_currency(amount: float, to: str) -> str:
    """Convert euros to another currency."""
    await asyncio.sleep(0)
    return f"{amount * 1.1:.2f} {to}"


def _plugin(store: PersistenceStore, session_id: uuid.UUID | None = None) -> PersistencePlugin:
    return PersistencePlugin.from_store(
        "persistence", store, uuid7(), uuid7(), uuid7(), session_id or uuid7()
    )


def _weather_call(city: str = "Lisbon", call_id: str = "call_1") -> ScriptedReply:
    return ScriptedReply(
        tool_calls=[ScriptedToolCall("get_weather", {"city": city}, id=call_id)],
        prompt_tokens=50,
        completion_tokens=12,
    )


async def _agent(
    provider: Any, plugin: PersistencePlugin | None = None, **options: Any
) -> LLMAgent:
    builder = LLMAgentBuilder().with_provider(provider).with_model("gpt-4o-mini")
    builder = builder.with_tool(Tool.from_function(get_weather)).with_tool(convert_currency)
    if plugin is not None:
        builder = builder.with_persistence_plugin(plugin)
    if "rounds" in options:
        builder = builder.with_max_tool_rounds(options["rounds"])
    for handler in options.get("handlers", ()):
        builder = builder.with_event_handler(handler)
    return await builder.build_async()


async def _records(
    store: PersistenceStore, plugin: PersistencePlugin, session_id: uuid.UUID
) -> tuple[list[LLMMessage], list[LLMApiCall]]:
    await plugin.flush()
    messages = await store.get_session_messages(session_id)
    calls = await store.query_api_calls(QueryFilter(session_id=session_id))
    return messages, sorted(calls, key=lambda call: (call.create_time, call.id))


def _assert_chained(messages: list[LLMMessage]) -> None:
    """Each message's parent is the message before it."""
    assert messages[0].parent_message_id is None
    for before, message in pairwise(messages):
        assert message.parent_message_id == before.id


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_a_tool_turn_records_the_call_the_result_and_the_answer(
    any_store: PersistenceStore, streamed: bool
) -> None:
    """User, tool-call message, tool result, answer: chained; one API call per round trip."""
    provider = ScriptedProvider(
        [_weather_call(), ScriptedReply("It is 19°C in Lisbon.", 90, 9, delay=0.01)]
    )
    plugin = _plugin(any_store)
    agent = await _agent(provider, plugin)
    question = "How warm is Lisbon?"
    if streamed:
        pieces = [piece async for piece in agent.chat_stream(question)]
        assert pieces == ["It ", "is ", "19°C ", "in ", "Lisbon."]  # only the answer's text
    else:
        assert await agent.chat(question) == "It is 19°C in Lisbon."

    # The model was told about the tools, then sent the call and its result.
    first, second = provider.requests
    assert [tool.name for tool in first.tools] == ["get_weather", "convert_currency"]
    asked, result = second.messages[-2:]
    assert (asked.role, asked.tool_calls) == (
        "assistant", (ToolCall("call_1", "get_weather", '{"city": "Lisbon"}'),),
    )  # fmt: skip
    assert (result.role, result.tool_call_id) == ("tool", "call_1")
    assert json.loads(result.content) == {"city": "Lisbon", "temperature": 19, "unit": "C"}
    assert [m.role for m in agent.history] == ["user", "assistant", "tool", "assistant"]

    messages, calls = await _records(any_store, plugin, agent.current_session_id)
    assert [m.role for m in messages] == [
        MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL, MessageRole.ASSISTANT,
    ]  # fmt: skip
    _assert_chained(messages)
    user, tool_calls, tool, answer = messages
    assert tool_calls.content.tool_calls == [
        ToolCallContent(id="call_1", name="get_weather", arguments={"city": "Lisbon"})
    ]
    assert tool_calls.content.text is None
    assert tool.content.tool_result is not None
    assert tool.content.tool_result.tool_call_id == "call_1"
    assert tool.content.tool_result.is_error is False
    assert json.loads(tool.content.tool_result.content)["temperature"] == 19
    assert answer.content.text == "It is 19°C in Lisbon."

    assert len(calls) == 2
    asking, answering = calls
    assert (asking.request_message_id, asking.response_message_id) == (user.id, tool_calls.id)
    assert (answering.request_message_id, answering.response_message_id) == (tool.id, answer.id)
    assert (asking.prompt_tokens, asking.completion_tokens) == (50, 12)
    assert (answering.prompt_tokens, answering.completion_tokens) == (90, 9)
    assert all(call.status is ApiCallStatus.SUCCESS for call in calls)
    assert answering.create_time >= tool.create_time  # the second call began after the result
    if streamed:
        assert asking.time_to_first_token_ms is not None
        assert answering.time_to_first_token_ms is not None
    await agent.close()


async def test_several_calls_run_in_order_and_each_result_is_linked() -> None:
    """Two calls in one reply (one async tool): run in order, two tool messages, chained."""
    provider = ScriptedProvider(
        [
            ScriptedReply(
                "Let me check.",
                tool_calls=[
                    ScriptedToolCall("get_weather", '{"city": "Oslo"}', id="a"),
                    ScriptedToolCall("convert_currency", {"amount": 10, "to": "NOK"}, id="b"),
                ],
            ),
            "4°C, and 10 euros are 11.00 NOK.",
        ]
    )
    store = InMemoryStore()
    plugin = _plugin(store)
    agent = await _agent(provider, plugin)
    assert await agent.chat("Oslo?") == "4°C, and 10 euros are 11.00 NOK."
    sent = provider.requests[1].messages
    assert [(m.role, m.tool_call_id) for m in sent[-3:]] == [
        ("assistant", None), ("tool", "a"), ("tool", "b"),
    ]  # fmt: skip
    assert sent[-1].content == "11.00 NOK"
    messages, calls = await _records(store, plugin, agent.current_session_id)
    _assert_chained(messages)
    assert messages[1].content.text == "Let me check."
    results = [m.content.tool_result for m in messages if m.role is MessageRole.TOOL]
    assert [(r.tool_call_id, r.content) for r in results if r] == [
        ("a", sent[-2].content), ("b", "11.00 NOK"),
    ]  # fmt: skip
    assert calls[1].request_message_id == messages[3].id  # the last tool result
    # No usage reported: tokens counted, tool-call arguments included.
    assert calls[0].completion_tokens > 0
    assert calls[0].completion_tokens_details is not None
    assert calls[0].completion_tokens_details.extra["estimated"] is True


async def test_a_tool_that_raises_gives_the_model_its_error() -> None:
    """The tool's error becomes its result, marked is_error; the chat goes on."""
    provider = ScriptedProvider([_weather_call("Atlantis"), "I could not find Atlantis."])
    store = InMemoryStore()
    plugin = _plugin(store)
    agent = await _agent(provider, plugin)
    assert await agent.chat("Atlantis?") == "I could not find Atlantis."
    told = provider.requests[1].messages[-1]
    assert told.content == "Error: ValueError: no weather station in Atlantis"
    messages, calls = await _records(store, plugin, agent.current_session_id)
    result = messages[2].content.tool_result
    assert result is not None
    assert (result.is_error, result.content) == (True, told.content)
    assert [call.status for call in calls] == [ApiCallStatus.SUCCESS] * 2


async def test_a_handler_reply_stands_in_for_the_tool() -> None:
    """on_tool_call gets the name and JSON text; its reply is the result, the tool never runs."""
    seen: list[tuple[str, str]] = []
    results: list[ToolResultContent] = []

    class Cache(LLMAgentEventHandler):
        async def on_tool_call(self, name: str, arguments: str) -> str | None:
            seen.append((name, arguments))
            return "cached: 21°C"

        async def on_tool_result(self, call: ToolCallContent, result: ToolResultContent) -> None:
            results.append(result)

    provider = ScriptedProvider([_weather_call("Atlantis"), "21°C."])
    agent = await _agent(provider, handlers=[Cache()])
    assert await agent.chat("Atlantis?") == "21°C."
    assert seen == [("get_weather", '{"city": "Atlantis"}')]
    assert results == [ToolResultContent(tool_call_id="call_1", content="cached: 21°C")]
    assert provider.requests[1].messages[-1].content == "cached: 21°C"


async def test_a_model_that_keeps_asking_for_tools_is_stopped(any_store: PersistenceStore) -> None:
    """After max_tool_rounds the turn fails clearly; the failed call links the last result."""
    provider = ScriptedProvider([_weather_call()])  # the last entry repeats: always a tool call
    plugin = _plugin(any_store)
    agent = await _agent(provider, plugin, rounds=2)
    with pytest.raises(ToolRoundsExceededError, match="after 2 rounds"):
        await agent.chat("Loop?")
    assert len(provider.requests) == 3
    assert agent.history == []  # a failed turn does not enter the conversation
    messages, calls = await _records(any_store, plugin, agent.current_session_id)
    assert [m.role for m in messages] == [
        MessageRole.USER, *[MessageRole.ASSISTANT, MessageRole.TOOL] * 2,
    ]  # fmt: skip
    _assert_chained(messages)
    assert [call.status for call in calls] == [ApiCallStatus.SUCCESS] * 2 + [ApiCallStatus.FAILED]
    failed = calls[-1]
    assert failed.request_message_id == messages[-1].id
    assert failed.response_message_id == NIL_UUID
    assert failed.error_message is not None
    assert "after 2 rounds" in failed.error_message
    # The refused round trip did answer: its id and the tokens it spent stay in the ledger.
    assert failed.api_response_id is not None
    assert (failed.prompt_tokens, failed.completion_tokens) == (50, 12)
    with pytest.raises(ValueError, match="at least one round"):
        LLMAgentBuilder().with_max_tool_rounds(0)


async def test_a_later_round_that_fails_is_recorded_against_the_last_result() -> None:
    """The second model call is refused: a rate-limited call linked to the tool result."""
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    limited = openai.RateLimitError(
        "slow down", response=httpx2.Response(429, request=request), body=None
    )
    provider = ScriptedProvider([_weather_call(), ScriptedReply(error=limited)])
    store = InMemoryStore()
    plugin = _plugin(store)

    class Apologise(LLMAgentEventHandler):
        async def on_error(self, error: BaseException) -> str | None:
            return "Sorry, the weather service is busy."

    agent = await _agent(provider, plugin, handlers=[Apologise()])
    assert await agent.chat("Lisbon?") == "Sorry, the weather service is busy."
    assert [m.role for m in agent.history] == ["user", "assistant", "tool", "assistant"]
    messages, calls = await _records(store, plugin, agent.current_session_id)
    assert len(messages) == 3
    assert [call.status for call in calls] == [ApiCallStatus.SUCCESS, ApiCallStatus.RATE_LIMITED]
    assert calls[1].request_message_id == messages[2].id


async def test_history_loaded_from_the_store_keeps_tool_calls_and_results(
    any_store: PersistenceStore,
) -> None:
    """A rebuilt agent sends the stored tool call and result back to the model."""
    session = uuid7()
    plugin = _plugin(any_store, session)
    provider = ScriptedProvider([_weather_call(), "19°C.", "Yes."])
    agent = await _agent(provider, plugin)
    await agent.chat("Lisbon?")
    await agent.close()

    again = PersistencePlugin.from_store(
        "again", any_store, plugin.user_id, plugin.tenant_id, plugin.agent_id, session
    )
    rebuilt = await _agent(provider, again)
    assert rebuilt.history == agent.history
    assert await rebuilt.chat("Warm enough?") == "Yes."
    sent = provider.requests[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[1].tool_calls == (ToolCall("call_1", "get_weather", '{"city": "Lisbon"}'),)
    await rebuilt.close()


async def test_a_tool_call_without_its_stored_result_is_left_out_of_the_history() -> None:
    """A turn cut short (a call with no result) is not sent back: the APIs would refuse it."""
    store = InMemoryStore()
    plugin = _plugin(store)
    await plugin.save_user_message("Lisbon?")
    await plugin.flush()  # the session exists: the cut turn's messages are saved after it

    async def save(role: MessageRole, content: MessageContent) -> None:
        ids = (plugin.session_id, plugin.agent_id, plugin.user_id, plugin.tenant_id)
        await store.save_message(LLMMessage.new(*ids, role, content))

    asked = ToolCallContent(id="x", name="get_weather", arguments={})
    await save(MessageRole.ASSISTANT, MessageContent.from_tool_calls([asked]))
    await save(MessageRole.USER, MessageContent.from_text("Hello?"))
    orphan = ToolResultContent(tool_call_id="orphan", content="?")
    await save(MessageRole.TOOL, MessageContent.from_tool_result(orphan))
    agent = await _agent(ScriptedProvider(["ok"]), plugin)
    assert [(m.role, m.content) for m in agent.history] == [
        ("user", "Lisbon?"), ("user", "Hello?"),
    ]  # fmt: skip


async def test_concurrent_tool_turns_through_one_plugin_stay_apart() -> None:
    """Twenty tool turns at once: every tool result and answer links to its own turn."""

    class Weatherman:
        """Asks for the weather of the city in the question, then repeats the tool's answer."""

        name = "weatherman"

        async def complete(self, request: ChatRequest) -> Completion:
            last = request.messages[-1]
            await asyncio.sleep(0.001 * (zlib.crc32(str(last.content).encode()) % 4))  # every run
            metadata = LLMResponseMetadata(model="w", prompt_tokens=3, completion_tokens=2)
            if last.role == "user":
                call = ToolCall(f"call_{last.content}", "echo", json.dumps({"text": last.content}))
                return Completion("", metadata, tool_calls=(call,))
            return Completion(f"answer to {last.content}", metadata)

        def stream(self, request: ChatRequest) -> Any:
            raise NotImplementedError

    def echo(text: str) -> str:
        """Say it back."""
        return text

    store = InMemoryStore()
    plugin = _plugin(store)
    agent = await (
        LLMAgentBuilder()
        .with_provider(Weatherman())
        .with_model("w")
        .with_tool(echo)
        .with_persistence_plugin(plugin)
    ).build_async()
    replies = await asyncio.gather(*(agent.chat(f"q{i}") for i in range(20)))
    assert sorted(replies) == sorted(f"answer to q{i}" for i in range(20))
    messages = {m.id: m for m in await store.get_session_messages(agent.current_session_id)}
    calls = await store.query_api_calls(QueryFilter(session_id=agent.current_session_id))
    assert len(calls) == 40
    for call in calls:
        request, response = messages[call.request_message_id], messages[call.response_message_id]
        assert response.parent_message_id == request.id
        if request.role is MessageRole.TOOL:
            assert request.content.tool_result is not None
            question = request.content.tool_result.content
            assert response.content.text == f"answer to {question}"
            asked = messages[request.parent_message_id or NIL_UUID]
            assert asked.content.tool_calls is not None
            assert asked.content.tool_calls[0].id == f"call_{question}"
            assert messages[asked.parent_message_id or NIL_UUID].content.text == question


async def test_a_scripted_stream_of_only_tool_calls_has_a_first_token() -> None:
    """The scripted stream ends with the calls; its time to first token is the delay."""
    provider = ScriptedProvider(
        [ScriptedReply(tool_calls=[ScriptedToolCall("get_weather")], delay=0.02)]
    )
    request = ChatRequest(model="m", messages=[])
    items = [item async for item in provider.stream(request)]
    (end,) = items
    assert isinstance(end, StreamEnd)
    assert [call.name for call in end.tool_calls] == ["get_weather"]
    assert end.tool_calls[0].id.startswith("call_")
    assert end.metadata.finish_reason == "tool_calls"
    assert end.metadata.time_to_first_token_ms is not None
    assert end.metadata.time_to_first_token_ms >= 15


# --- tools and executors --------------------------------------------------------------------


def test_a_tool_from_a_function_reads_its_signature_and_docstring() -> None:
    """Name, first docstring paragraph, JSON types, enums, optionals and required parameters."""

    def search(
        query: str, limit: int = 5, ratio: float | None = None, tags: list[str] | None = None,
        exact: bool = False, where: dict[str, Any] | None = None, anything: Any = None,
    ) -> str:  # fmt: skip
        """Search the notes."""
        return query

    tool = Tool.from_function(search)
    assert (tool.name, tool.description) == ("search", "Search the notes.")
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer"},
            "ratio": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "exact": {"type": "boolean"},
            "where": {"type": "object"},
            "anything": {},
        },
        "required": ["query"],
    }
    weather = Tool.from_function(get_weather, name="weather", description="Now.")
    assert (weather.name, weather.description) == ("weather", "Now.")
    assert weather.parameters["properties"]["unit"] == {"enum": ["C", "F"]}
    assert weather.to_openai() == {
        "type": "function",
        "function": {"name": "weather", "description": "Now.", "parameters": weather.parameters},
    }
    with pytest.raises(ValueError, match="1 to 64 characters"):
        Tool("")


async def test_the_function_executor_runs_sync_and_async_tools_and_refuses_bad_calls() -> None:
    """Results as text (JSON when not a string); unknown tools and bad arguments raise ToolError."""
    executor = FunctionToolExecutor(
        [Tool.from_function(get_weather), Tool.from_function(convert_currency)]
    )
    assert isinstance(executor, ToolExecutor)
    assert json.loads(await executor.execute("get_weather", '{"city": "Oslo"}'))["temperature"] == 4
    assert await executor.execute("convert_currency", '{"amount": 1, "to": "USD"}') == "1.10 USD"
    with pytest.raises(ToolError, match="no tool named 'nope'"):
        await executor.execute("nope", "{}")
    with pytest.raises(ToolError, match="not JSON"):
        await executor.execute("get_weather", "{city")
    with pytest.raises(ToolError, match="not a JSON object"):
        await executor.execute("get_weather", "[1]")
    with pytest.raises(ValueError, match="no function"):
        FunctionToolExecutor([Tool("bare")])


async def test_an_executor_runs_tools_and_may_describe_them() -> None:
    """with_tool_executor: its tools are sent when the agent was given none; it runs the calls."""

    class Remote:
        def __init__(self) -> None:
            self.ran: list[tuple[str, str]] = []

        async def available_tools(self) -> list[Tool]:
            return [Tool("lookup", "Look a word up.")]

        async def execute(self, name: str, arguments: str) -> str:
            self.ran.append((name, arguments))
            return "a small rodent"

    remote = Remote()
    provider = ScriptedProvider(
        [ScriptedReply(tool_calls=[ScriptedToolCall("lookup", '{"word": "vole"}')]), "A rodent."]
    )
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_model("m").with_tool_executor(remote)
    ).build_async()
    assert [tool.name for tool in agent.tools] == ["lookup"]
    assert await agent.chat("vole?") == "A rodent."
    assert remote.ran == [("lookup", '{"word": "vole"}')]
    assert provider.requests[1].messages[-1].content == "a small rodent"


async def test_the_builder_refuses_tools_it_cannot_run_or_tell_apart() -> None:
    """A tool without a function needs an executor; two tools may not share a name."""
    builder = LLMAgentBuilder().with_provider(ScriptedProvider(["x"])).with_model("m")
    with pytest.raises(ValueError, match="have no function"):
        await builder.with_tool(Tool("bare")).build_async()
    twice = LLMAgentBuilder().with_provider(ScriptedProvider(["x"])).with_model("m")
    with pytest.raises(ValueError, match="share a name"):
        await twice.with_tools([get_weather, get_weather]).build_async()


async def test_a_tool_nobody_can_run_is_an_error_result() -> None:
    """An executor that does not know the tool: the model is told, the chat goes on."""
    provider = ScriptedProvider(
        [ScriptedReply(tool_calls=[ScriptedToolCall("teleport")]), "I cannot teleport."]
    )
    agent = await _agent(provider)
    assert await agent.chat("Beam me up") == "I cannot teleport."
    told = provider.requests[1].messages[-1].content
    assert told.startswith("Error: ToolError: no tool named 'teleport'")
