"""GenAI spans recorded as API calls: real instrumentors on a real OpenAI client, and made spans.

The corpus runs through OpenInference's and OpenLLMetry's OpenAI instrumentors,
each reporting to a tracer provider whose only processor feeds chatledger's
exporter. What an instrumentor does not report is stated in
:func:`span_truth` and asserted as such. Instrumentors patch the openai module
globally: each test uninstruments on the way out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from pydantic.warnings import PydanticDeprecatedSince20

from chatledger import QueryFilter
from chatledger.entities import ApiCallStatus, LLMApiCall, MessageRole
from chatledger.integrations.otel import ChatledgerSpanExporter, call_id_for_span
from chatledger.recording import Recorder, id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.testing.fake_openai import FakeOpenAIServer
from provider_corpus import CHAT, PRICES, RESPONSES, WEATHER_TOOL, Scenario, Truth, check_call

ANSWERED = "gpt-4o-mini-2024-07-18"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SENT = [("system", "Answer briefly."), ("user", "Weather in Paris?")]


class Relay(SpanExporter):
    """The exporter a module-wide provider feeds: each test sets the one it relays to."""

    def __init__(self) -> None:
        self.to: SpanExporter | None = None
        self.exported = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS if self.to is None else self.to.export(spans)

    async def wait(self, count: int, seconds: float = 5.0) -> None:
        """Until ``count`` spans came: OpenLLMetry ends some spans moments after the call."""
        for _ in range(int(seconds / 0.01)):
            if self.exported >= count:
                return
            await asyncio.sleep(0.01)


def _openai_methods() -> dict[tuple[type, str], Any]:
    """Every method of the openai SDK's resource classes, to put back what an instrumentor left."""
    import importlib
    import pkgutil

    import openai.resources

    found: dict[tuple[type, str], Any] = {}
    for info in pkgutil.walk_packages(openai.resources.__path__, "openai.resources."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == info.name:
                for name, member in vars(value).items():
                    found[(value, name)] = member
    return found


@pytest.fixture(scope="module", params=["openinference", "openllmetry"])
def instrumented(request: pytest.FixtureRequest) -> Iterator[tuple[str, Relay]]:
    """An instrumentor patching openai for this module's tests, undone after (wholly)."""
    before = _openai_methods()
    relay = Relay()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(relay))
    with warnings.catch_warnings():
        # OpenLLMetry's own pydantic models still use class-based config.
        warnings.simplefilter("ignore", PydanticDeprecatedSince20)
        if request.param == "openinference":
            from openinference.instrumentation.openai import OpenAIInstrumentor
        else:
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
    try:
        yield request.param, relay
    finally:
        instrumentor.uninstrument()
        # OpenLLMetry's uninstrument misses the methods it wrapped on openai 3.x's classes.
        for (cls, name), member in before.items():
            if vars(cls).get(name) is not member:
                setattr(cls, name, member)
        provider.shutdown()


def span_truth(name: str, scenario: Scenario) -> Truth:
    """What an instrumentor's span lets the exporter know of ``scenario``'s call.

    - Neither reports the provider's error code: a 429 is recorded with its HTTP
      status as its code.
    - OpenLLMetry reports a stream's first chunk as an event on streamed chat
      spans only (none on streamed Responses spans), so those have no time to
      first token; a stream cut mid-way is a success to it (status OK, no usage),
      with the text received.
    - OpenLLMetry leaves a call that failed before answering without a model
      but the one asked for, as the truth does.
    """
    truth = scenario.truth
    if truth.error_code == "rate_limit_exceeded":
        truth = dataclasses.replace(truth, error_code="429")
    if name == "openllmetry":
        if scenario.api == "responses" and scenario.stream:
            truth = dataclasses.replace(truth, streamed=False)
        if scenario.name == "stream cut mid-way":
            truth = dataclasses.replace(
                truth, status=ApiCallStatus.SUCCESS, estimated=True, reply_text="Hello"
            )
    return truth


async def call_model(server: FakeOpenAIServer, scenario: Scenario) -> None:
    """Make the scenario's request with a real client; its error is the provider's."""
    async with AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0,
                           timeout=scenario.timeout or 10.0) as client:  # fmt: skip
        try:
            if scenario.api == "chat":
                options: dict[str, Any] = {}
                if scenario.tools:
                    options["tools"] = [WEATHER_TOOL]
                if scenario.stream and scenario.include_usage:
                    options["stream_options"] = {"include_usage": True}
                messages = [{"role": role, "content": text} for role, text in SENT]
                reply: Any = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, stream=scenario.stream, **options
                )
            else:
                tools = [{"type": "function", **WEATHER_TOOL["function"]}] if scenario.tools else []
                reply = await client.responses.create(
                    model="gpt-4o-mini", instructions=SENT[0][1], input=SENT[1][1],
                    stream=scenario.stream, **({"tools": tools} if tools else {}),
                )  # fmt: skip
            if scenario.stream:
                async for _ in reply:
                    pass
        except Exception:  # noqa: BLE001  (the error scenarios: what matters is the record)
            assert scenario.truth.status is not ApiCallStatus.SUCCESS


async def calls_of(store: PersistenceStore) -> list[LLMApiCall]:
    """Every stored call, oldest first."""
    return list(reversed(await store.query_api_calls(QueryFilter())))


@pytest.mark.parametrize("scenario", CHAT + RESPONSES, ids=lambda s: s.name)
async def test_corpus(
    scenario: Scenario,
    corpus_store: PersistenceStore,
    instrumented: tuple[str, Relay],
) -> None:
    """Each scenario through a real instrumentor: the stored call is the truth."""
    name, relay = instrumented
    recorder = Recorder(corpus_store, pricing=PRICES)
    exporter = ChatledgerSpanExporter(recorder)
    relay.to, relay.exported = exporter, 0
    if name == "openllmetry":
        # OpenLLMetry keeps every Responses reply by its id, process-wide, and takes a
        # reused id (each scenario plays once per store) as that reply continued: no span.
        from opentelemetry.instrumentation.openai.v1 import responses_wrappers

        responses_wrappers.responses.clear()
    truth = span_truth(name, scenario)
    async with FakeOpenAIServer() as server:
        server.add(*scenario.script)
        await call_model(server, scenario)
    # OpenLLMetry ends some spans (a broken stream's, a Responses reply's) only when the
    # object it wrapped is collected.
    gc.collect()
    await relay.wait(1)
    assert await asyncio.to_thread(exporter.force_flush)
    relay.to = None
    await recorder.flush()
    (call,) = await calls_of(corpus_store)
    check_call(call, truth)
    stored = await corpus_store.get_session_messages(call.chat_session_id)
    request = [m for m in stored if m.id != call.response_message_id]
    assert [(m.role.value, m.content.text) for m in request] == SENT
    assert call.request_message_id == request[-1].id
    if truth.status is ApiCallStatus.SUCCESS and (truth.reply_text or truth.tool_calls):
        (reply,) = [m for m in stored if m.id == call.response_message_id]
        assert reply.role is MessageRole.ASSISTANT
        assert reply.content.text == truth.reply_text
        assert tuple(c.name for c in reply.content.tool_calls or ()) == truth.tool_calls
    else:
        assert len(stored) == len(SENT)
    await recorder.close()


def made_span(attributes: dict[str, Any], *, name: str = "chat gpt-4o", error: str | None = None,
              events: tuple[tuple[str, int], ...] = ()) -> Any:  # fmt: skip
    """A finished span with ``attributes``, made by a real tracer."""
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    start = 1_800_000_000_000_000_000
    span = tracer.start_span(name, attributes=attributes, start_time=start)
    for event, after_ms in events:
        span.add_event(event, timestamp=start + after_ms * 1_000_000)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=start + 900_000_000)
    (finished,) = memory.get_finished_spans()
    return finished


GENAI_SPAN = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": ANSWERED,
    "gen_ai.response.id": "chatcmpl-made",
    "gen_ai.usage.input_tokens": 2048,
    "gen_ai.usage.output_tokens": 410,
    "gen_ai.usage.cache_read.input_tokens": 1920,
    "gen_ai.usage.cache_creation.input_tokens": 64,
    "gen_ai.usage.reasoning.output_tokens": 384,
    "gen_ai.conversation.id": "conversation-3",
    "gen_ai.response.time_to_first_chunk": 0.25,
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
    "gen_ai.input.messages": json.dumps([
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
        {"role": "assistant", "parts": [
            {"type": "tool_call", "id": "call_1", "name": "get_weather",
             "arguments": {"city": "Paris"}}]},
        {"role": "tool", "parts": [
            {"type": "tool_call_response", "id": "call_1", "response": "Sunny"}]},
    ]),
    "gen_ai.output.messages": json.dumps([
        {"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}],
         "finish_reason": "stop"}]),
}  # fmt: skip


async def test_the_genai_conventions(sqlite_store: PersistenceStore) -> None:
    """Every GenAI-convention name read: usage with its subsets, ids, session, messages, TTFT."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    exporter = ChatledgerSpanExporter(recorder)
    span = made_span(GENAI_SPAN)
    assert await asyncio.to_thread(exporter.export, [span]) is SpanExportResult.SUCCESS
    await recorder.flush()
    (call,) = await calls_of(sqlite_store)
    context = span.get_span_context()
    assert call.id == call_id_for_span(context.trace_id, context.span_id, span.start_time)
    assert call.id.version == 8
    assert (call.model_name, call.api_response_id) == (ANSWERED, "chatcmpl-made")
    assert (call.prompt_tokens, call.completion_tokens) == (2048, 410)
    assert call.prompt_tokens_details is not None
    assert call.prompt_tokens_details.cached_tokens == 1920
    assert call.prompt_tokens_details.cache_write_tokens == 64
    assert call.completion_tokens_details is not None
    assert call.completion_tokens_details.reasoning_tokens == 384
    assert (call.time_to_first_token_ms, call.latency_ms) == (250, 900)
    assert call.chat_session_id == id_for_key("conversation-3")
    messages = await sqlite_store.get_session_messages(call.chat_session_id)
    assert [m.role for m in messages] == [
        MessageRole.SYSTEM, MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL,
        MessageRole.ASSISTANT,
    ]  # fmt: skip
    assert messages[2].content.tool_calls[0].arguments == {"city": "Paris"}  # type: ignore[index]
    assert messages[3].content.tool_result.tool_call_id == "call_1"  # type: ignore[union-attr]
    assert (call.request_message_id, call.response_message_id) == (messages[3].id, messages[4].id)
    await recorder.close()


async def test_openllmetry_legacy_and_openinference_names(sqlite_store: PersistenceStore) -> None:
    """OpenLLMetry's older names and OpenInference's: usage, messages, user and session."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    exporter = ChatledgerSpanExporter(recorder)
    legacy = made_span({
        "llm.request.type": "chat", "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": ANSWERED,
        "gen_ai.usage.prompt_tokens": 100, "gen_ai.usage.completion_tokens": 7,
        "llm.usage.total_tokens": 107, "gen_ai.usage.cache_read_input_tokens": 40,
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Weather?",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.tool_calls.0.id": "call_9",
        "gen_ai.completion.0.tool_calls.0.name": "get_weather",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Rome"}',
        "session.id": "legacy-session",
    }, events=(("gen_ai.content.completion.chunk", 120),))  # fmt: skip
    openinference = made_span({
        "openinference.span.kind": "LLM", "llm.model_name": ANSWERED,
        "llm.token_count.prompt": 50, "llm.token_count.completion": 30,
        "llm.token_count.prompt_details.cache_read": 10,
        "llm.token_count.prompt_details.cache_write": 5,
        "llm.token_count.completion_details.reasoning": 20,
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "Hi",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.contents.0.message_content.type": "text",
        "llm.output_messages.0.message.contents.0.message_content.text": "Hello.",
        "session.id": "oi-session", "user.id": "user-5",
    }, name="ChatCompletion")  # fmt: skip
    await asyncio.to_thread(exporter.export, [legacy, openinference])
    await recorder.flush()
    first, second = sorted(await calls_of(sqlite_store), key=lambda c: c.prompt_tokens,
                           reverse=True)  # fmt: skip
    assert (first.prompt_tokens, first.completion_tokens, first.model_name) == (100, 7, ANSWERED)
    assert first.prompt_tokens_details.cached_tokens == 40  # type: ignore[union-attr]
    assert first.time_to_first_token_ms == 120
    assert first.chat_session_id == id_for_key("legacy-session")
    (_, reply) = await sqlite_store.get_session_messages(first.chat_session_id)
    assert reply.content.tool_calls[0].arguments == {"city": "Rome"}  # type: ignore[index]
    assert (second.prompt_tokens, second.completion_tokens) == (50, 30)
    assert second.prompt_tokens_details.cache_write_tokens == 5  # type: ignore[union-attr]
    assert second.completion_tokens_details.reasoning_tokens == 20  # type: ignore[union-attr]
    assert second.time_to_first_token_ms is None
    assert (second.user_id, second.chat_session_id) == (
        id_for_key("user-5"),
        id_for_key("oi-session"),
    )
    (_, hello) = await sqlite_store.get_session_messages(second.chat_session_id)
    assert hello.content.text == "Hello."
    await recorder.close()


async def test_other_spans_are_ignored_and_a_span_twice_is_one_call(
    sqlite_store: PersistenceStore,
) -> None:
    """HTTP, embedding, tool and chain spans are no calls; exporting a span again adds nothing."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    exporter = ChatledgerSpanExporter(recorder)
    others = [
        made_span({"http.request.method": "POST", "url.full": "http://x/v1/chat"}),
        made_span({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e-3"}),
        made_span({"openinference.span.kind": "TOOL", "llm.model_name": ANSWERED}),
        made_span({"llm.request.type": "embedding", "gen_ai.request.model": "e-3"}),
    ]
    span = made_span(GENAI_SPAN)
    for batch in (others, [span], [span], [span, *others]):
        assert await asyncio.to_thread(exporter.export, batch) is SpanExportResult.SUCCESS
    second = ChatledgerSpanExporter(recorder)  # a second pipeline exporting the same span
    await asyncio.to_thread(second.export, [span])
    await recorder.flush()
    (call,) = await calls_of(sqlite_store)
    assert len(await sqlite_store.get_session_messages(call.chat_session_id)) == 5
    await recorder.close()


async def test_a_failed_span_without_http_status(sqlite_store: PersistenceStore) -> None:
    """error.type names the failure; no HTTP status: no error code; the asked model."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    exporter = ChatledgerSpanExporter(recorder)
    span = made_span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                      "error.type": "timeout"}, error="deadline passed")  # fmt: skip
    await asyncio.to_thread(exporter.export, [span])
    await recorder.flush()
    (call,) = await calls_of(sqlite_store)
    assert (call.status, call.error_code, call.model_name) == (
        ApiCallStatus.TIMEOUT,
        None,
        "gpt-4o-mini",
    )
    assert call.error_message == "deadline passed"
    await recorder.close()


async def test_export_never_raises(sqlite_store: PersistenceStore) -> None:
    """A closed recorder: export reports failure, nothing raises; after shutdown it refuses."""
    recorder = Recorder(sqlite_store)
    await recorder.close()
    exporter = ChatledgerSpanExporter(recorder)
    span = made_span(GENAI_SPAN)
    assert await asyncio.to_thread(exporter.export, [span]) is SpanExportResult.FAILURE
    await asyncio.to_thread(exporter.shutdown)
    assert exporter.export([span]) is SpanExportResult.FAILURE
