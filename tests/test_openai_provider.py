"""OpenAIProvider through the real openai SDK, over HTTP, against a local fake server.

Every test starts ``FakeOpenAIServer`` on 127.0.0.1 and drives an agent with a
persistence plugin through it, then checks each field the plugin stored and
what the server was sent. Nothing leaves this machine.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from chatledger.agent import (
    ChatMessage,
    ChatRequest,
    LLMAgent,
    LLMAgentBuilder,
    LLMProvider,
    OpenAIProvider,
    StreamEnd,
    Tool,
    ToolCall,
)
from chatledger.entities import ApiCallStatus, LLMApiCall, MessageRole, QueryFilter
from chatledger.ids import NIL_UUID, uuid7
from chatledger.plugin import PersistencePlugin
from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore
from chatledger.testing.fake_openai import (
    FakeOpenAIServer,
    error_reply,
    json_reply,
    stream_reply,
    tool_call,
    usage,
)
from chatledger.usage import count_tokens, tokens_per_second

ASKED = "gpt-4o"
ANSWERED = "gpt-4o-2024-08-06"  # the server names the snapshot that answered
TIMEOUT = 0.3


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    """A fake OpenAI server on a free port of 127.0.0.1."""
    async with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
async def provider(server: FakeOpenAIServer) -> AsyncIterator[OpenAIProvider]:
    """A provider pointed at the fake server: no retries, a short timeout."""
    async with OpenAIProvider(
        base_url=server.base_url, api_key="test", max_retries=0, timeout=TIMEOUT
    ) as made:
        yield made


async def _agent(
    provider: OpenAIProvider, store: PersistenceStore
) -> tuple[LLMAgent, PersistencePlugin]:
    plugin = PersistencePlugin.from_store("persistence", store, uuid7(), uuid7(), uuid7(), uuid7())
    agent = await (
        LLMAgentBuilder()
        .with_provider(provider)
        .with_model(ASKED)
        .with_system_prompt("Be brief.")
        .with_persistence_plugin(plugin)
        .build_async()
    )
    return agent, plugin


async def _calls(store: PersistenceStore, session_id: uuid.UUID) -> list[LLMApiCall]:
    calls = await store.query_api_calls(QueryFilter(session_id=session_id))
    return sorted(calls, key=lambda call: (call.create_time, call.id))


async def _one_turn(agent: LLMAgent, message: str, *, streamed: bool) -> str:
    """One chat turn, whole or streamed; the reply."""
    if streamed:
        return "".join([piece async for piece in agent.chat_stream(message)])
    return await agent.chat(message)


def _assert_owned(call: LLMApiCall, plugin: PersistencePlugin) -> None:
    """The call belongs to the plugin's session, agent, user and tenant."""
    assert call.chat_session_id == plugin.session_id
    assert call.agent_id == plugin.agent_id
    assert call.user_id == plugin.user_id
    assert call.tenant_id == plugin.tenant_id


def _assert_speed(call: LLMApiCall) -> None:
    """Latency is set and tokens/s follows the plugin's rule from the stored fields."""
    assert call.latency_ms is not None
    assert call.latency_ms >= 0
    expected = tokens_per_second(
        call.completion_tokens, call.latency_ms, call.time_to_first_token_ms
    )
    if expected is None:
        assert call.tokens_per_second is None
    else:
        assert call.tokens_per_second == pytest.approx(expected)


def test_the_provider_is_an_llm_provider_with_a_settable_name() -> None:
    """It satisfies the protocol; its name is "openai" unless told otherwise."""
    made = OpenAIProvider(api_key="test", base_url="http://127.0.0.1:9/v1")
    assert isinstance(made, LLMProvider)
    assert made.name == "openai"
    made.name = "vllm"
    assert made.name == "vllm"
    assert OpenAIProvider(api_key="test", name="groq", base_url="http://127.0.0.1:9/v1").name == (
        "groq"
    )


def test_without_the_sdk_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """With openai not importable, making a provider says to install the extra."""
    monkeypatch.setitem(sys.modules, "openai", None)  # None in sys.modules: ImportError
    with pytest.raises(ImportError, match=r"pip install 'chatledger\[openai\]'"):
        OpenAIProvider(api_key="test")


async def test_plain_replies_record_every_field(
    any_store: PersistenceStore, server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """Two turns on every backend: messages linked in order, calls with the server's usage."""
    server.add(
        json_reply(
            "Hello!",
            model=ANSWERED,
            response_id="chatcmpl-1",
            usage=usage(12, 7, cached=8, reasoning=4),
        ),
        json_reply("Paris.", model=ANSWERED, response_id="chatcmpl-2", usage=usage(25, 2)),
    )
    agent, plugin = await _agent(provider, any_store)
    assert await agent.chat("Hi") == "Hello!"
    assert await agent.chat("Capital of France?") == "Paris."

    # What the server was sent: the system prompt, the history, the new message.
    assert len(server.requests) == 2
    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer test"
    assert first.body["model"] == ASKED
    assert first.body.get("stream", False) is False
    assert "temperature" not in first.body  # unset options are left to the server
    assert "max_tokens" not in first.body
    assert first.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert second.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"},
    ]

    await agent.flush()  # the records the hooks spooled, shipped
    messages = await any_store.get_session_messages(agent.current_session_id)
    assert [(m.role, m.content.text) for m in messages] == [
        (MessageRole.USER, "Hi"), (MessageRole.ASSISTANT, "Hello!"),
        (MessageRole.USER, "Capital of France?"), (MessageRole.ASSISTANT, "Paris."),
    ]  # fmt: skip
    assert [m.parent_message_id for m in messages] == [None, *(m.id for m in messages[:-1])]
    assert all(m.chat_session_id == plugin.session_id for m in messages)
    assert all(m.tenant_id == plugin.tenant_id for m in messages)

    calls = await _calls(any_store, agent.current_session_id)
    assert len(calls) == 2
    hello, paris = calls
    for call, (request, response) in zip(calls, [messages[0:2], messages[2:4]], strict=True):
        _assert_owned(call, plugin)
        assert call.request_message_id == request.id
        assert call.response_message_id == response.id
        assert call.model_name == ANSWERED
        assert call.status is ApiCallStatus.SUCCESS
        assert call.error_code is None
        assert call.error_message is None
        assert call.time_to_first_token_ms is None  # not streamed
        assert call.total_price is None  # the plugin was given no prices
        assert call.price_details is None
        _assert_speed(call)

    assert (hello.api_response_id, paris.api_response_id) == ("chatcmpl-1", "chatcmpl-2")
    assert (hello.prompt_tokens, hello.completion_tokens, hello.total_tokens) == (12, 7, 19)
    assert hello.prompt_tokens_details is not None
    assert hello.prompt_tokens_details.cached_tokens == 8
    assert "estimated" not in hello.prompt_tokens_details.extra
    assert hello.completion_tokens_details is not None
    assert hello.completion_tokens_details.reasoning_tokens == 4
    assert (paris.prompt_tokens, paris.completion_tokens, paris.total_tokens) == (25, 2, 27)
    assert paris.prompt_tokens_details is None  # the server gave no details
    assert paris.completion_tokens_details is None
    await agent.close()


async def test_complete_maps_the_response_and_passes_options(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """complete(): text, id, answering model, finish reason, usage; temperature and max_tokens."""
    server.add(
        json_reply(
            "Truncat",
            model=ANSWERED,
            response_id="chatcmpl-len",
            usage=usage(9, 3, cached=0, reasoning=0),
            finish_reason="length",
        )
    )
    request = ChatRequest(
        model=ASKED, messages=[ChatMessage("user", "Go")], temperature=0.2, max_tokens=3
    )
    completion = await provider.complete(request)
    assert completion.text == "Truncat"
    assert completion.usage_reported is True
    meta = completion.metadata
    assert (meta.id, meta.model, meta.finish_reason) == ("chatcmpl-len", ANSWERED, "length")
    assert (meta.prompt_tokens, meta.completion_tokens) == (9, 3)
    assert (meta.cached_tokens, meta.reasoning_tokens) == (0, 0)
    assert meta.time_to_first_token_ms is None
    assert meta.estimated is False
    (sent,) = server.requests
    assert sent.body["temperature"] == 0.2
    assert sent.body["max_tokens"] == 3


async def test_a_stream_records_its_usage_and_time_to_first_token(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """SSE: pieces arrive in order; the final usage chunk and the first-token time are kept."""
    server.add(
        stream_reply(
            ["The ", "capital ", "is ", "Paris."],
            model=ANSWERED,
            response_id="chatcmpl-s1",
            usage=usage(30, 12, cached=16, reasoning=5),
            delay=0.05,
            chunk_delay=0.01,
        )
    )
    store = InMemoryStore()
    agent, plugin = await _agent(provider, store)
    pieces = [piece async for piece in agent.chat_stream("Capital of France?")]
    assert pieces == ["The ", "capital ", "is ", "Paris."]
    assert [m.content for m in agent.history] == ["Capital of France?", "The capital is Paris."]

    (sent,) = server.requests
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]

    question, answer = await store.get_session_messages(agent.current_session_id)
    assert (question.role, question.content.text) == (MessageRole.USER, "Capital of France?")
    assert (answer.role, answer.content.text) == (MessageRole.ASSISTANT, "The capital is Paris.")
    assert (question.parent_message_id, answer.parent_message_id) == (None, question.id)

    (call,) = await _calls(store, agent.current_session_id)
    _assert_owned(call, plugin)
    assert (call.request_message_id, call.response_message_id) == (question.id, answer.id)
    assert call.model_name == ANSWERED
    assert call.api_response_id == "chatcmpl-s1"
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (30, 12, 42)
    assert call.prompt_tokens_details is not None
    assert call.prompt_tokens_details.cached_tokens == 16
    assert call.completion_tokens_details is not None
    assert call.completion_tokens_details.reasoning_tokens == 5
    assert (call.status, call.error_code, call.error_message) == (ApiCallStatus.SUCCESS, None, None)
    assert call.time_to_first_token_ms is not None
    assert call.time_to_first_token_ms >= 45  # the server waits 50 ms before answering
    assert call.latency_ms is not None
    assert call.latency_ms >= call.time_to_first_token_ms
    _assert_speed(call)
    assert call.tokens_per_second is not None  # four 10 ms gaps after the first token
    await agent.close()


async def test_the_stream_ends_with_the_response_metadata(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """stream(): text deltas only (no empty role delta), then a StreamEnd with everything."""
    server.add(
        stream_reply(["a", "b"], model=ANSWERED, response_id="chatcmpl-s2", usage=usage(4, 2))
    )
    request = ChatRequest(model=ASKED, messages=[ChatMessage("user", "ab")])
    items = [item async for item in provider.stream(request)]
    assert items[:2] == ["a", "b"]
    (end,) = items[2:]
    assert isinstance(end, StreamEnd)
    assert end.usage_reported is True
    meta = end.metadata
    assert (meta.id, meta.model, meta.finish_reason) == ("chatcmpl-s2", ANSWERED, "stop")
    assert (meta.prompt_tokens, meta.completion_tokens) == (4, 2)
    assert (meta.cached_tokens, meta.reasoning_tokens) == (None, None)
    assert meta.time_to_first_token_ms is not None


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_without_usage_the_tokens_are_estimated_and_marked(
    server: FakeOpenAIServer, provider: OpenAIProvider, streamed: bool
) -> None:
    """No usage from the server: the agent counts the tokens and the record says so."""
    reply = "It is Paris, of course."
    if streamed:
        server.add(stream_reply(["It is Paris, ", "of course."], model=ANSWERED, usage=None))
    else:
        server.add(json_reply(reply, model=ANSWERED, usage=None))
    store = InMemoryStore()
    agent, _ = await _agent(provider, store)
    assert await _one_turn(agent, "Capital?", streamed=streamed) == reply

    (call,) = await _calls(store, agent.current_session_id)
    prompt = sum(count_tokens(text, ANSWERED)[0] for text in ("Be brief.", "Capital?"))
    completion = count_tokens(reply, ANSWERED)[0]
    assert call.model_name == ANSWERED
    assert (call.prompt_tokens, call.completion_tokens) == (prompt, completion)
    assert call.total_tokens == prompt + completion
    for details in (call.prompt_tokens_details, call.completion_tokens_details):
        assert details is not None
        assert details.extra["estimated"] is True
        assert details.cached_tokens is None
        assert details.reasoning_tokens is None
    assert call.status is ApiCallStatus.SUCCESS
    assert (call.time_to_first_token_ms is not None) is streamed
    _assert_speed(call)
    await agent.close()


ERRORS: dict[str, tuple[Any, type[Exception], ApiCallStatus, str | None]] = {
    "429": (
        error_reply(
            429,
            "Rate limit reached for gpt-4o: try again in 20s.",
            error_type="requests",
            code="rate_limit_exceeded",
            headers=(("retry-after", "20"),),
        ),
        openai.RateLimitError,
        ApiCallStatus.RATE_LIMITED,
        "rate_limit_exceeded",
    ),
    "500": (
        error_reply(500, "The server had an error.", error_type="server_error", code=None),
        openai.InternalServerError,
        ApiCallStatus.FAILED,
        "500",
    ),
    "timeout": (
        json_reply("too late", model=ANSWERED, usage=usage(1, 1), delay=5.0),
        openai.APITimeoutError,
        ApiCallStatus.TIMEOUT,
        None,
    ),
}


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize("case", list(ERRORS))
async def test_errors_are_raised_and_recorded_with_their_status(
    server: FakeOpenAIServer, provider: OpenAIProvider, case: str, streamed: bool
) -> None:
    """429, 500 and a timeout: the SDK's error reaches the caller; the call says why."""
    script, error_type, status, code = ERRORS[case]
    server.add(script)
    store = InMemoryStore()
    agent, plugin = await _agent(provider, store)
    # A timeout is APITimeoutError: the client gave up before the server's reply (after 5 s).
    with pytest.raises(error_type):
        await _one_turn(agent, "Hi", streamed=streamed)
    assert len(server.requests) == 1  # max_retries=0: no second try

    (question,) = await store.get_session_messages(agent.current_session_id)
    assert (question.role, question.content.text, question.parent_message_id) == (
        MessageRole.USER, "Hi", None,
    )  # fmt: skip
    (call,) = await _calls(store, agent.current_session_id)
    _assert_owned(call, plugin)
    assert call.status is status
    assert call.error_code == code
    assert call.error_message
    if case != "timeout":
        assert ERRORS[case][0].body["error"]["message"] in call.error_message
    assert call.model_name == ASKED  # nothing answered: the model asked for
    assert call.request_message_id == question.id
    assert call.response_message_id == NIL_UUID
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (0, 0, 0)
    assert call.prompt_tokens_details is None
    assert call.completion_tokens_details is None
    assert call.api_response_id is None
    assert call.time_to_first_token_ms is None
    assert call.tokens_per_second is None
    assert call.latency_ms is not None
    if case == "timeout":
        assert call.latency_ms >= TIMEOUT * 1000 * 0.9
    assert agent.history == []  # a failed turn does not enter the conversation
    await agent.close()


async def test_concurrent_chats_through_one_client_stay_apart(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """Five chats at once over the SDK's pooled connections: each call links its own turn."""
    for index in range(5):
        server.add(
            json_reply(
                f"reply {index}",
                model=ANSWERED,
                response_id=f"chatcmpl-c{index}",
                usage=usage(10, 2),
                delay=0.02,
            )
        )
    store = InMemoryStore()
    agent, _ = await _agent(provider, store)
    replies = await asyncio.gather(*(agent.chat(f"question {i}") for i in range(5)))
    assert sorted(replies) == [f"reply {i}" for i in range(5)]
    messages = {m.id: m for m in await store.get_session_messages(agent.current_session_id)}
    calls = await _calls(store, agent.current_session_id)
    assert len(calls) == 5
    assert len({call.api_response_id for call in calls}) == 5
    for call in calls:
        request = messages[call.request_message_id]
        response = messages[call.response_message_id]
        assert request.role is MessageRole.USER
        assert response.role is MessageRole.ASSISTANT
        assert response.parent_message_id == request.id
    await agent.close()


def get_weather(city: str) -> str:
    """The weather in a city now."""
    return f"19°C and sunny in {city}"


async def _tool_agent(
    provider: OpenAIProvider, store: PersistenceStore
) -> tuple[LLMAgent, PersistencePlugin]:
    plugin = PersistencePlugin.from_store("persistence", store, uuid7(), uuid7(), uuid7(), uuid7())
    agent = await (
        LLMAgentBuilder()
        .with_provider(provider)
        .with_model(ASKED)
        .with_tool(Tool.from_function(get_weather))
        .with_persistence_plugin(plugin)
        .build_async()
    )
    return agent, plugin


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_a_tool_turn_goes_over_the_wire_in_openais_form(
    any_store: PersistenceStore, server: FakeOpenAIServer, provider: OpenAIProvider, streamed: bool
) -> None:
    """Tools sent as functions; the call and its result sent back; two calls, four messages."""
    arguments = '{"city": "Lisbon"}'
    asked = [tool_call("get_weather", arguments, call_id="call_w1")]
    if streamed:
        server.add(
            stream_reply([], model=ANSWERED, response_id="chatcmpl-t1", usage=usage(40, 15),
                         tool_calls=asked, delay=0.03, chunk_delay=0.02),
            stream_reply(["19°C ", "and sunny."], model=ANSWERED, response_id="chatcmpl-t2",
                         usage=usage(70, 5)),
        )  # fmt: skip
    else:
        server.add(
            json_reply(None, model=ANSWERED, response_id="chatcmpl-t1", usage=usage(40, 15),
                       tool_calls=asked),
            json_reply("19°C and sunny.", model=ANSWERED, response_id="chatcmpl-t2",
                       usage=usage(70, 5)),
        )  # fmt: skip
    agent, plugin = await _tool_agent(provider, any_store)
    assert await _one_turn(agent, "Weather in Lisbon?", streamed=streamed) == "19°C and sunny."

    first, second = server.requests
    assert first.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city now.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    assert second.body["messages"] == [
        {"role": "user", "content": "Weather in Lisbon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": "19°C and sunny in Lisbon"},
    ]

    await agent.flush()
    messages = await any_store.get_session_messages(agent.current_session_id)
    assert [m.role for m in messages] == [
        MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL, MessageRole.ASSISTANT,
    ]  # fmt: skip
    assert [m.parent_message_id for m in messages] == [None, *(m.id for m in messages[:-1])]
    assert messages[1].content.tool_calls is not None
    assert messages[1].content.tool_calls[0].arguments == {"city": "Lisbon"}
    calls = await _calls(any_store, agent.current_session_id)
    assert [call.api_response_id for call in calls] == ["chatcmpl-t1", "chatcmpl-t2"]
    assert [(c.request_message_id, c.response_message_id) for c in calls] == [
        (messages[0].id, messages[1].id), (messages[2].id, messages[3].id),
    ]  # fmt: skip
    assert [(c.prompt_tokens, c.completion_tokens) for c in calls] == [(40, 15), (70, 5)]
    for call in calls:
        _assert_owned(call, plugin)
        _assert_speed(call)
    if streamed:
        # The first tool-call delta is the first token: not the whole latency.
        tools_call = calls[0]
        assert tools_call.time_to_first_token_ms is not None
        assert tools_call.latency_ms is not None
        assert 25 <= tools_call.time_to_first_token_ms < tools_call.latency_ms - 20
        assert tools_call.tokens_per_second is not None
    await agent.close()


async def test_streamed_tool_call_arguments_are_gathered_by_index(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """Two calls streamed in pieces: the StreamEnd holds each whole, in order; no text."""
    server.add(
        stream_reply(
            [],
            model=ANSWERED,
            usage=usage(10, 20),
            tool_calls=[
                tool_call("get_weather", '{"city": "Lisbon"}', call_id="call_a"),
                tool_call("get_weather", '{"city": "Porto"}', call_id="call_b"),
            ],
        )
    )
    tools = [Tool.from_function(get_weather)]
    request = ChatRequest(model=ASKED, messages=[ChatMessage("user", "both")], tools=tools)
    items = [item async for item in provider.stream(request)]
    (end,) = items
    assert isinstance(end, StreamEnd)
    assert end.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city": "Lisbon"}'),
        ToolCall("call_b", "get_weather", '{"city": "Porto"}'),
    )
    assert end.metadata.finish_reason == "tool_calls"
    completion_request = ChatRequest(model=ASKED, messages=[ChatMessage("user", "x")])
    server.add(json_reply("plain", model=ANSWERED, usage=usage(1, 1)))
    completion = await provider.complete(completion_request)
    assert completion.tool_calls == ()
    assert "tools" not in server.requests[-1].body  # no tools: none sent


async def test_a_stream_cut_midway_keeps_its_response_id_and_first_token(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """The connection drops after two pieces: the failed call keeps its id and first token."""
    server.add(
        stream_reply(
            ["The ", "capital ", "is ", "Paris."],
            model=ANSWERED,
            response_id="chatcmpl-cut",
            delay=0.03,
            chunk_delay=0.01,
            cut_after=3,
        )
    )
    store = InMemoryStore()
    agent, plugin = await _agent(provider, store)
    pieces: list[str] = []

    async def read() -> None:
        async for piece in agent.chat_stream("Capital of France?"):
            pieces.append(piece)

    with pytest.raises(openai.APIError):
        await read()
    assert pieces == ["The ", "capital "]
    (question,) = await store.get_session_messages(agent.current_session_id)
    (call,) = await _calls(store, agent.current_session_id)
    _assert_owned(call, plugin)
    assert call.status is ApiCallStatus.FAILED
    assert call.request_message_id == question.id
    assert call.response_message_id == NIL_UUID
    assert call.api_response_id == "chatcmpl-cut"
    assert call.model_name == ANSWERED  # the stream had said which model answered
    assert call.time_to_first_token_ms is not None
    assert call.time_to_first_token_ms >= 25
    assert call.latency_ms is not None
    assert call.latency_ms >= call.time_to_first_token_ms
    assert call.error_message
    await agent.close()
