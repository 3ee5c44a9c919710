"""chatledger.integrations.openai: instrument(client, recorder) on the real OpenAI SDK.

Every test talks over HTTP to the fake OpenAI server. Synchronous clients run
in worker threads (the server lives on the test's event loop).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from pydantic import BaseModel

import chatledger
from chatledger.entities import ApiCallStatus, MessageRole, QueryFilter
from chatledger.integrations import openai as integration
from chatledger.recording import Recorder, id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.testing.fake_openai import (
    FakeOpenAIServer,
    json_reply,
    responses_reply,
    responses_stream,
    responses_usage,
    stream_reply,
    tool_call,
    usage,
)
from provider_corpus import (
    ANSWERED,
    CORPUS,
    MODEL,
    PRICES,
    QUESTION,
    SYSTEM,
    WEATHER_TOOL,
    Scenario,
    check_call,
    check_conversation,
    stored,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


_RESPONSES_TOOL = {"type": "function", **WEATHER_TOOL["function"]}  # the Responses API's form

_ERRORS: dict[str, type[openai.APIError]] = {
    "429 with headers": openai.RateLimitError,
    "500": openai.InternalServerError,
    "timeout": openai.APITimeoutError,
    "stream cut mid-way": openai.APIConnectionError,
}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def recorder(sqlite_store: PersistenceStore) -> AsyncIterator[Recorder]:
    """A recorder on SQLite, pricing at the corpus's prices."""
    made = Recorder(sqlite_store, pricing=PRICES)
    yield made
    await made.close()


def sync_client(server: FakeOpenAIServer, timeout: float | None = None) -> openai.OpenAI:
    """A blocking client of the fake server, one request per call."""
    return openai.OpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=timeout or 10.0
    )


def async_client(server: FakeOpenAIServer, timeout: float | None = None) -> openai.AsyncOpenAI:
    """An async client of the fake server, one request per call."""
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=timeout or 10.0
    )


def request_for(scenario: Scenario) -> dict[str, Any]:
    """The keyword arguments a caller passes for ``scenario``."""
    if scenario.api == "chat":
        request: dict[str, Any] = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION},
            ],
        }
        if scenario.tools:
            request["tools"] = [WEATHER_TOOL]
        if scenario.stream:
            request["stream"] = True
            if scenario.include_usage:
                request["stream_options"] = {"include_usage": True}
        return request
    request = {"model": MODEL, "input": QUESTION, "instructions": SYSTEM}
    if scenario.tools:
        request["tools"] = [_RESPONSES_TOOL]
    if scenario.stream:
        request["stream"] = True
    return request


def play_sync(client: openai.OpenAI, scenario: Scenario) -> tuple[Any, BaseException | None]:
    """Make the scenario's call as a caller would: the result (chunks if streamed) or the error."""
    create: Callable[..., Any] = (
        client.chat.completions.create if scenario.api == "chat" else client.responses.create
    )
    chunks: list[Any] = []
    try:
        result = create(**request_for(scenario))
        if not scenario.stream:
            return result, None
        for chunk in result:
            chunks.append(chunk)
    except openai.APIError as error:
        return chunks, error
    return chunks, None


async def play_async(
    client: openai.AsyncOpenAI, scenario: Scenario
) -> tuple[Any, BaseException | None]:
    """:func:`play_sync` for an async client."""
    create: Callable[..., Any] = (
        client.chat.completions.create if scenario.api == "chat" else client.responses.create
    )
    chunks: list[Any] = []
    try:
        result = await create(**request_for(scenario))
        if not scenario.stream:
            return result, None
        async for chunk in result:
            chunks.append(chunk)
    except openai.APIError as error:
        return chunks, error
    return chunks, None


async def play(
    kind: str, server: FakeOpenAIServer, recorder: Recorder, scenario: Scenario, session: str
) -> tuple[Any, BaseException | None]:
    """Play ``scenario`` once through an instrumented client of ``kind`` in ``session``."""
    server.add(*scenario.script)
    if kind == "sync":

        def in_thread() -> tuple[Any, BaseException | None]:
            with sync_client(server, scenario.timeout) as client:
                integration.instrument(client, recorder)
                with chatledger.scope(session_id=session):
                    return play_sync(client, scenario)

        return await asyncio.to_thread(in_thread)
    async with async_client(server, scenario.timeout) as client:
        integration.instrument(client, recorder)
        with chatledger.scope(session_id=session):
            return await play_async(client, scenario)


# --- the corpus ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("scenario", CORPUS, ids=lambda s: s.name)
async def test_every_corpus_scenario_is_stored_exactly(
    kind: str, scenario: Scenario, server: FakeOpenAIServer, corpus_store: PersistenceStore
) -> None:
    """Each scenario's call, field for field, with its request messages and reply once."""
    recorder = Recorder(corpus_store, pricing=PRICES)
    try:
        result, error = await play(kind, server, recorder, scenario, "corpus")
        if scenario.name in _ERRORS:
            assert type(error) is _ERRORS[scenario.name]
        else:
            assert error is None
            assert result
        calls, messages = await stored(corpus_store, recorder, "corpus")
    finally:
        await recorder.close()
    (call,) = calls
    check_call(call, scenario.truth)
    request = server.requests[-1].body
    if scenario.api == "chat" and scenario.stream and not scenario.include_usage:
        assert "stream_options" not in request  # the caller's request is not altered
    check_conversation(call, messages, scenario.truth)


# --- what the caller receives --------------------------------------------------------------------


def _dumped(result: Any) -> Any:
    if isinstance(result, list):
        return [(type(chunk), chunk.model_dump()) for chunk in result]
    return type(result), result.model_dump()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_caller_receives_what_an_uninstrumented_client_returns(
    kind: str, server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """Same types, same contents, same exception classes and messages, scenario by scenario."""
    for scenario in CORPUS:
        server.add(*scenario.script, *scenario.script)
        if kind == "sync":

            def both(scenario: Scenario = scenario) -> list[tuple[Any, BaseException | None]]:
                with (
                    sync_client(server, scenario.timeout) as plain,
                    sync_client(server, scenario.timeout) as recorded,
                ):
                    integration.instrument(recorded, recorder)
                    return [play_sync(plain, scenario), play_sync(recorded, scenario)]

            (expected, expected_error), (got, error) = await asyncio.to_thread(both)
        else:
            async with (
                async_client(server, scenario.timeout) as plain,
                async_client(server, scenario.timeout) as recorded,
            ):
                integration.instrument(recorded, recorder)
                expected, expected_error = await play_async(plain, scenario)
                got, error = await play_async(recorded, scenario)
        assert type(error) is type(expected_error), scenario.name
        assert str(error) == str(expected_error)
        if scenario.stream or error is None:
            assert _dumped(got) == _dumped(expected), scenario.name
        if isinstance(error, openai.APIStatusError):
            assert isinstance(expected_error, openai.APIStatusError)
            assert error.status_code == expected_error.status_code
            assert error.body == expected_error.body
            assert dict(error.response.headers) == dict(expected_error.response.headers)


class _Spy:
    """Stands in for the SDK's method: remembers what it returned, or raises a given error."""

    def __init__(self, method: Callable[..., Any], error: BaseException | None = None) -> None:
        self.method = method
        self.error = error
        self.returned: Any = None
        self.chunks: list[Any] = []

    def __call__(self, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        self.returned = self.method(**kwargs)
        if isinstance(self.returned, openai.Stream):
            inner = self.returned._iterator

            def seen() -> Any:
                for chunk in inner:
                    self.chunks.append(chunk)
                    yield chunk

            self.returned._iterator = seen()
        return self.returned


async def test_the_same_objects_chunks_and_exceptions_reach_the_caller(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """Identity: the SDK's response object, its chunk objects, its exception object."""
    server.add(
        json_reply("Paris.", model=ANSWERED, usage=usage(21, 3)),
        stream_reply(["Par", "is."], model=ANSWERED, usage=usage(12, 2)),
    )
    failure = openai.APIConnectionError(request=httpx2.Request("POST", server.base_url))

    def in_thread() -> None:
        with sync_client(server) as client:
            completions = client.chat.completions
            spy = _Spy(completions.create)
            completions.create = spy  # type: ignore[method-assign]
            integration.instrument(client, recorder)
            request = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}
            assert completions.create(**request) is spy.returned
            stream = completions.create(**request, stream=True)
            assert isinstance(stream, openai.Stream)
            assert stream.response is spy.returned.response
            chunks = list(stream)
            assert len(chunks) == len(spy.chunks) > 2
            assert all(a is b for a, b in zip(chunks, spy.chunks, strict=True))
            integration.uninstrument(client)
            completions.create = _Spy(completions.create, failure)  # type: ignore[method-assign]
            integration.instrument(client, recorder)
            with pytest.raises(openai.APIConnectionError) as raised:
                completions.create(**request)
            assert raised.value is failure

    await asyncio.to_thread(in_thread)
    calls, _ = await stored(recorder.store, recorder, "unused")
    assert calls == []  # no session in scope: the recorder's default session
    everything = await recorder.store.query_api_calls(QueryFilter())
    assert [c.status for c in sorted(everything, key=lambda c: c.create_time)] == [
        ApiCallStatus.SUCCESS,
        ApiCallStatus.SUCCESS,
        ApiCallStatus.FAILED,
    ]


async def test_a_failing_recorder_never_breaks_the_call(
    server: FakeOpenAIServer,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recorder that raises, one that is closed, a reply it cannot read: the call goes on."""
    server.add(
        json_reply("One.", model=ANSWERED, usage=usage(5, 1)),
        stream_reply(["Tw", "o."], model=ANSWERED),
        json_reply("Three.", model=ANSWERED, usage=usage(5, 1)),
        json_reply("Four.", model=ANSWERED, usage=usage(5, 1)),
    )
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Count."}]}

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the spool's disk is gone")

    async with async_client(server) as client:
        integration.instrument(client, recorder)
        with caplog.at_level(logging.WARNING, "chatledger.integrations.openai"):
            monkeypatch.setattr(recorder, "record_exchange", broken)
            one = await client.chat.completions.create(**request)
            assert one.choices[0].message.content == "One."
            stream = await client.chat.completions.create(**request, stream=True)
            assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "Two."
            monkeypatch.undo()

            def unreadable(response: Any) -> Any:
                raise ValueError("an SDK shape this version does not know")

            monkeypatch.setattr(integration, "chat_reply", unreadable)
            three = await client.chat.completions.create(**request)
            assert three.choices[0].message.content == "Three."
            monkeypatch.undo()
            await recorder.close()
            four = await client.chat.completions.create(**request)
            assert four.choices[0].message.content == "Four."
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 4, logged
    assert all("could not" in message for message in logged)


async def test_a_failing_recorder_never_breaks_a_blocking_call(
    server: FakeOpenAIServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The blocking path, with the recorder closed before the call."""
    server.add(json_reply("Fine.", model=ANSWERED, usage=usage(5, 1)))
    await recorder.close()

    def in_thread() -> str | None:
        with sync_client(server) as client:
            integration.instrument(client, recorder)
            reply = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}]
            )
            return reply.choices[0].message.content

    with caplog.at_level(logging.WARNING, "chatledger.integrations.openai"):
        assert await asyncio.to_thread(in_thread) == "Fine."
    assert "could not record a call to gpt-4o-mini" in caplog.text


# --- streams stopped early, calls cancelled -----------------------------------------------------


async def test_a_stream_stopped_early_is_recorded_as_cancelled(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """close(), leaving the with block, and a stream dropped unclosed: each one cancelled call."""
    pieces = ["One", " two", " three", " four"]
    for _ in range(3):
        server.add(stream_reply(pieces, model=ANSWERED, response_id="chatcmpl-early"))
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Count"}], "stream": True}

    def in_thread() -> None:
        with sync_client(server) as client, chatledger.scope(session_id="early"):
            integration.instrument(client, recorder)
            stream = client.chat.completions.create(**request)
            next(stream)
            next(stream)
            stream.close()
            with client.chat.completions.create(**request) as stream:
                for number, _ in enumerate(stream):
                    if number == 1:
                        break
            dropped = client.chat.completions.create(**request)
            next(iter(dropped))
            next(dropped)
            del dropped
            gc.collect()

    await asyncio.to_thread(in_thread)
    calls, messages = await stored(recorder.store, recorder, "early")
    assert len(calls) == 3
    for call in calls:
        assert call.status is ApiCallStatus.CANCELLED
        assert call.api_response_id == "chatcmpl-early"
        assert call.model_name == ANSWERED
        assert call.time_to_first_token_ms is not None
        assert call.error_message == "the caller stopped reading the stream"
        # OpenAI bills what was sent and generated: counted here, marked estimated.
        assert call.prompt_tokens > 0
        assert call.prompt_tokens_details is not None
        assert call.prompt_tokens_details.extra["estimated"] is True
    assert [m.content.text for m in messages] == ["Count"]  # no partial reply stored


async def test_an_async_stream_stopped_early_is_recorded_as_cancelled(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """aclose(), async with, a Responses stream; and a call cancelled while awaited."""
    server.add(
        stream_reply(["a", "b", "c"], model=ANSWERED, response_id="chatcmpl-a"),
        responses_stream(["Par", "is."], model=ANSWERED, response_id="resp_early"),
        json_reply("late", model=ANSWERED, delay=5.0),
    )
    async with async_client(server) as client:
        integration.instrument(client, recorder)
        with chatledger.scope(session_id="early-async"):
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Count"}], stream=True
            )
            await stream.__anext__()
            await stream.aclose()
            async with await client.responses.create(
                model=MODEL, input="Capital?", stream=True
            ) as events:
                async for event in events:
                    if event.type == "response.output_text.delta":
                        break
            task = asyncio.create_task(
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "Slow"}]
                )
            )
            while len(server.requests) < 3:  # noqa: ASYNC110  (the server has no event for it)
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    calls, _ = await stored(recorder.store, recorder, "early-async")
    by_id = {c.api_response_id: c for c in calls}
    assert set(by_id) == {"chatcmpl-a", "resp_early", None}
    assert all(c.status is ApiCallStatus.CANCELLED for c in calls)
    assert by_id["resp_early"].model_name == ANSWERED
    assert by_id[None].model_name == MODEL


# --- conversations ------------------------------------------------------------------------------


async def test_a_tool_conversation_is_stored_once_in_order(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """user -> tool call -> tool result -> answer -> next user turn: each message once, linked."""
    weather = tool_call("get_weather", '{"city": "Paris"}', call_id="call_w")
    server.add(
        json_reply(None, model=ANSWERED, usage=usage(50, 10), tool_calls=[weather]),
        json_reply("18°C and sunny.", model=ANSWERED, usage=usage(70, 6)),
        json_reply("Rain.", model=ANSWERED, usage=usage(90, 2)),
    )
    async with async_client(server) as client:
        integration.instrument(client, recorder)
        with chatledger.scope(session_id="tools"):
            messages: list[Any] = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "Weather in Paris?"},
            ]
            first = await client.chat.completions.create(
                model=MODEL, messages=messages, tools=[WEATHER_TOOL]
            )
            messages.append(first.choices[0].message)  # the SDK's object, as the docs do
            messages.append({"role": "tool", "tool_call_id": "call_w", "content": "18C, sun"})
            second = await client.chat.completions.create(
                model=MODEL, messages=messages, tools=[WEATHER_TOOL]
            )
            messages.append(second.choices[0].message.model_dump(exclude_none=True))
            messages.append({"role": "user", "content": "And tomorrow?"})
            await client.chat.completions.create(model=MODEL, messages=iter(messages))
    calls, stored_messages = await stored(recorder.store, recorder, "tools")
    assert [(m.role, m.content.text) for m in stored_messages] == [
        (MessageRole.SYSTEM, SYSTEM),
        (MessageRole.USER, "Weather in Paris?"),
        (MessageRole.ASSISTANT, None),
        (MessageRole.TOOL, None),
        (MessageRole.ASSISTANT, "18°C and sunny."),
        (MessageRole.USER, "And tomorrow?"),
        (MessageRole.ASSISTANT, "Rain."),
    ]
    assert stored_messages[2].content.tool_calls is not None
    assert stored_messages[2].content.tool_calls[0].id == "call_w"
    assert stored_messages[3].content.tool_result is not None
    assert stored_messages[3].content.tool_result.tool_call_id == "call_w"
    parents = [m.parent_message_id for m in stored_messages]
    assert parents == [None, *(m.id for m in stored_messages[:-1])]
    assert sorted(c.prompt_tokens for c in calls) == [50, 70, 90]
    replies = {c.response_message_id for c in calls}
    assert replies == {stored_messages[i].id for i in (2, 4, 6)}
    # The last request was a one-shot iterator: the server got it whole all the same.
    assert len(server.requests[-1].body["messages"]) == 6


async def test_a_responses_tool_conversation_is_stored_once_in_order(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """The Responses API: output items resent as input, then a function_call_output."""
    weather = tool_call("get_weather", '{"city": "Paris"}', call_id="call_r")
    server.add(
        responses_reply(
            None,
            model=ANSWERED,
            response_id="resp_1",
            usage=responses_usage(40, 8),
            tool_calls=[weather],
            reasoning=True,
        ),
        responses_reply(
            "Sunny.", model=ANSWERED, response_id="resp_2", usage=responses_usage(60, 2)
        ),
    )

    def in_thread() -> None:
        with sync_client(server) as client, chatledger.scope(session_id="responses-tools"):
            integration.instrument(client, recorder)
            items: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
            first = client.responses.create(
                model=MODEL, input=items, instructions=SYSTEM, tools=[_RESPONSES_TOOL]
            )
            items += first.output
            items.append({"type": "function_call_output", "call_id": "call_r", "output": "sun"})
            client.responses.create(model=MODEL, input=items, instructions=SYSTEM)

    await asyncio.to_thread(in_thread)
    calls, messages = await stored(recorder.store, recorder, "responses-tools")
    assert [m.role for m in messages] == [
        MessageRole.SYSTEM,
        MessageRole.USER,
        MessageRole.ASSISTANT,
        MessageRole.TOOL,
        MessageRole.ASSISTANT,
    ]
    assert messages[-1].content.text == "Sunny."
    assert sorted(c.api_response_id or "" for c in calls) == ["resp_1", "resp_2"]


async def test_scope_decides_the_session_even_for_a_stream_read_outside_it(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """A call in scope goes to its session; one outside to the recorder's default session."""
    server.add(
        stream_reply(["Hi"], model=ANSWERED, usage=usage(3, 1)),
        json_reply("Elsewhere.", model=ANSWERED, usage=usage(3, 1)),
    )
    async with async_client(server) as client:
        integration.instrument(client, recorder)
        with chatledger.scope(session_id="chat-1", user_id="alice"):
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        chunks = [chunk async for chunk in stream]  # read after the scope ended
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}]
        )
    assert chunks
    calls, messages = await stored(recorder.store, recorder, "chat-1")
    (call,) = calls
    assert call.user_id == id_for_key("alice")
    assert [m.content.text for m in messages] == ["Hello", "Hi"]
    everything = await recorder.store.query_api_calls(QueryFilter())
    assert len(everything) == 2
    assert {c.chat_session_id for c in everything} != {id_for_key("chat-1")}


# --- the client's other ways in -----------------------------------------------------------------


async def test_helpers_copies_and_instrumenting_twice(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """.stream() and .parse() helpers, with_options() copies; twice instrumented, once recorded."""

    class City(BaseModel):
        city: str

    server.add(
        stream_reply(
            ["Par", "is."], model=ANSWERED, response_id="chatcmpl-helper", usage=usage(9, 2)
        ),
        responses_stream(
            ["Par", "is."], model=ANSWERED, response_id="resp_helper", usage=responses_usage(9, 2)
        ),
        json_reply(
            '{"city": "Paris"}', model=ANSWERED, response_id="chatcmpl-parse", usage=usage(9, 5)
        ),
        json_reply("Copied.", model=ANSWERED, response_id="chatcmpl-copy", usage=usage(9, 1)),
        json_reply("Raw.", model=ANSWERED, response_id="chatcmpl-raw", usage=usage(9, 1)),
    )
    messages = [{"role": "user", "content": "Capital of France?"}]

    def in_thread() -> None:
        with sync_client(server) as client, chatledger.scope(session_id="helpers"):
            integration.instrument(client, recorder)
            integration.instrument(client, recorder)
            with client.chat.completions.stream(
                model=MODEL, messages=messages, stream_options={"include_usage": True}
            ) as stream:
                assert stream.get_final_completion().choices[0].message.content == "Paris."
            with client.responses.stream(model=MODEL, input="Capital of France?") as events:
                assert events.get_final_response().output_text == "Paris."
            parsed = client.chat.completions.parse(
                model=MODEL, messages=messages, response_format=City
            )
            assert parsed.choices[0].message.parsed == City(city="Paris")
            copy = client.with_options(timeout=5.0)
            assert copy.chat.completions.create(model=MODEL, messages=messages).id == (
                "chatcmpl-copy"
            )
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
            assert raw.parse().id == "chatcmpl-raw"  # passes through, not recorded

    await asyncio.to_thread(in_thread)
    calls, _ = await stored(recorder.store, recorder, "helpers")
    assert sorted(c.api_response_id or "" for c in calls) == [
        "chatcmpl-copy",
        "chatcmpl-helper",
        "chatcmpl-parse",
        "resp_helper",
    ]
    assert all(c.status is ApiCallStatus.SUCCESS for c in calls)
    helper = next(c for c in calls if c.api_response_id == "chatcmpl-helper")
    assert (helper.prompt_tokens, helper.completion_tokens) == (9, 2)


async def test_async_stream_helpers_are_recorded(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """The async .stream() helpers of both APIs."""
    server.add(
        stream_reply(["Hi"], model=ANSWERED, response_id="chatcmpl-ah", usage=usage(4, 1)),
        responses_stream(
            ["Hi"], model=ANSWERED, response_id="resp_ah", usage=responses_usage(4, 1)
        ),
    )
    async with async_client(server) as client:
        integration.instrument(client, recorder)
        with chatledger.scope(session_id="async-helpers"):
            async with client.chat.completions.stream(
                model=MODEL,
                messages=[{"role": "user", "content": "Hi"}],
                stream_options={"include_usage": True},
            ) as stream:
                await stream.until_done()
            async with client.responses.stream(model=MODEL, input="Hi") as events:
                await events.until_done()
    calls, _ = await stored(recorder.store, recorder, "async-helpers")
    assert sorted(c.api_response_id or "" for c in calls) == ["chatcmpl-ah", "resp_ah"]
    assert {(c.prompt_tokens, c.completion_tokens) for c in calls} == {(4, 1)}


async def test_a_blocking_client_from_many_threads_and_from_a_loop(
    server: FakeOpenAIServer, recorder: Recorder
) -> None:
    """Eight threads share one client; another thread calls it inside its own event loop."""
    for number in range(8 * 3 + 1):
        server.add(json_reply(f"Reply {number}.", model=ANSWERED, usage=usage(5, 2)))
    barrier = threading.Barrier(8)

    with sync_client(server) as client:
        integration.instrument(client, recorder)

        def work(number: int) -> None:
            barrier.wait()
            with chatledger.scope(session_id=f"thread-{number}"):
                history: list[Any] = []
                for turn in range(3):
                    history.append({"role": "user", "content": f"q{turn}"})
                    reply = client.chat.completions.create(model=MODEL, messages=history)
                    history.append(
                        {"role": "assistant", "content": reply.choices[0].message.content}
                    )

        def run_threads() -> None:
            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        def on_a_loop() -> None:
            async def chat() -> None:  # blocking call in async code: recorded in the background
                with chatledger.scope(session_id="in-a-loop"):
                    message = {"role": "user", "content": "x"}
                    client.chat.completions.create(model=MODEL, messages=[message])

            asyncio.run(chat())

        await asyncio.to_thread(run_threads)
        await asyncio.to_thread(on_a_loop)
    for number in range(8):
        calls, messages = await stored(recorder.store, recorder, f"thread-{number}")
        assert len(calls) == 3
        assert [m.content.text for m in messages][::2] == ["q0", "q1", "q2"]
        assert len(messages) == 6
    calls, messages = await stored(recorder.store, recorder, "in-a-loop")
    assert len(calls) == 1
    assert len(messages) == 2


async def test_azure_clients_are_instrumented_and_anything_else_refused(
    recorder: Recorder,
) -> None:
    """Azure clients are OpenAI clients; uninstrument() restores the SDK's methods."""
    azure = openai.AzureOpenAI(
        azure_endpoint="http://127.0.0.1:9", api_key="k", api_version="2024-10-21"
    )
    async_azure = openai.AsyncAzureOpenAI(
        azure_endpoint="http://127.0.0.1:9", api_key="k", api_version="2024-10-21"
    )
    for client in (azure, async_azure):
        assert integration.instrument(client, recorder) is client
        assert "create" in vars(client.responses)
        assert "with_options" in vars(client)
        integration.uninstrument(client)
        assert "create" not in vars(client.responses)
        assert "with_options" not in vars(client)
    azure.close()
    await async_azure.close()
    with pytest.raises(TypeError, match="OpenAI or AsyncOpenAI"):
        integration.instrument(object(), recorder)
