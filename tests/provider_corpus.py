"""Real-shaped provider responses, each with the ledger record it must produce, field for field.

Every integration's test plays these through the fake OpenAI server and checks
the stored :class:`~chatledger.entities.LLMApiCall` against ``Truth``: the same
corpus for the OpenAI SDK, LiteLLM, LangChain, the Agents SDK and OpenTelemetry
paths, so they cannot drift apart.

A scenario's ``script`` is what the server sends, once: clients in these tests
are made without retries (``max_retries=0``), so one request is one call.
Prices are checked against :data:`PRICES` (cached input at its own rate), as
``Decimal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from chatledger.entities import ApiCallStatus, LLMApiCall, LLMMessage, MessageRole, QueryFilter
from chatledger.pricing import ModelPrice, StaticPricingRegistry
from chatledger.recording import Recorder, id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.testing.fake_openai import (
    Script,
    error_reply,
    json_reply,
    responses_reply,
    responses_stream,
    responses_usage,
    stream_reply,
    tool_call,
    usage,
)

__all__ = [
    "QUESTION",
    "SYSTEM",
    "CHAT",
    "CORPUS",
    "MODEL",
    "PRICES",
    "RESPONSES",
    "Scenario",
    "Truth",
    "check_call",
    "check_conversation",
    "stored",
]

MODEL = "gpt-4o-mini"
"""The model asked for; the server answers as :data:`ANSWERED`, a dated snapshot (as OpenAI)."""

ANSWERED = "gpt-4o-mini-2024-07-18"

SYSTEM = "Be brief."
QUESTION = "What is the capital of France?"
"""The conversation every scenario's request carries: a system prompt and one question."""

PRICES = StaticPricingRegistry(
    {("openai", ANSWERED): ModelPrice("0.15", "0.60", cached_input_per_million="0.075")},
    name="corpus prices",
)
"""What the corpus's calls cost: per million tokens, cached input at half the input rate."""


@dataclass(frozen=True, slots=True)
class Truth:
    """What the stored call must say; ``None`` token details mean absent (not reported)."""

    status: ApiCallStatus = ApiCallStatus.SUCCESS
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    estimated: bool = False  # counted locally: tokens are > 0 but not checked exactly
    response_id: str | None = None
    error_code: str | None = None
    streamed: bool = False  # a time to first token is set for streams only
    model: str = ANSWERED
    reply_text: str | None = None  # the stored reply message's text (None: no reply message)
    tool_calls: tuple[str, ...] = ()  # names of the tool calls in the reply

    def price(self) -> Decimal | None:
        """The exact price of a successful, reported call at :data:`PRICES`."""
        if self.status is not ApiCallStatus.SUCCESS or self.estimated:
            return None
        cached = self.cached_tokens or 0
        return (
            Decimal(self.prompt_tokens - cached) * Decimal("0.15")
            + Decimal(cached) * Decimal("0.075")
            + Decimal(self.completion_tokens) * Decimal("0.60")
        ) / Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One provider behaviour: what the server sends, whether to stream, what must be stored."""

    name: str
    api: str  # "chat" (Chat Completions) or "responses"
    script: tuple[Script, ...]
    truth: Truth
    stream: bool = False
    include_usage: bool = True  # chat streams: whether the caller asks for the usage chunk
    tools: bool = False  # whether the request offers the weather tool
    timeout: float | None = None  # the client's timeout, for the timeout scenario
    headers: dict[str, str] = field(default_factory=dict)


_RATE_HEADERS = (
    ("retry-after", "20"),
    ("x-ratelimit-limit-requests", "500"),
    ("x-ratelimit-remaining-requests", "0"),
    ("x-ratelimit-reset-requests", "20s"),
)

_WEATHER = tool_call("get_weather", '{"city": "Paris"}', call_id="call_weather")


CHAT: tuple[Scenario, ...] = (
    Scenario(
        "plain",
        "chat",
        (json_reply("Paris.", model=ANSWERED, response_id="chatcmpl-plain", usage=usage(21, 3)),),
        Truth(
            prompt_tokens=21, completion_tokens=3, response_id="chatcmpl-plain", reply_text="Paris."
        ),
    ),
    Scenario(
        "cached prompt tokens",
        "chat",
        (
            json_reply(
                "Cached.",
                model=ANSWERED,
                response_id="chatcmpl-cached",
                usage=usage(2048, 5, cached=1920),
            ),
        ),
        Truth(
            prompt_tokens=2048,
            completion_tokens=5,
            cached_tokens=1920,
            response_id="chatcmpl-cached",
            reply_text="Cached.",
        ),
    ),
    Scenario(
        "reasoning tokens",
        "chat",
        (
            json_reply(
                "42.",
                model=ANSWERED,
                response_id="chatcmpl-reasoning",
                usage=usage(30, 410, reasoning=384),
            ),
        ),
        Truth(
            prompt_tokens=30,
            completion_tokens=410,
            reasoning_tokens=384,
            response_id="chatcmpl-reasoning",
            reply_text="42.",
        ),
    ),
    Scenario(
        "streamed with a usage chunk",
        "chat",
        (
            stream_reply(
                ["Hel", "lo", "!"],
                model=ANSWERED,
                response_id="chatcmpl-stream",
                usage=usage(12, 3, cached=0),
                chunk_delay=0.01,
            ),
        ),
        Truth(
            prompt_tokens=12,
            completion_tokens=3,
            cached_tokens=0,
            response_id="chatcmpl-stream",
            streamed=True,
            reply_text="Hello!",
        ),
        stream=True,
    ),
    Scenario(
        "streamed without include_usage",
        "chat",
        (
            stream_reply(
                ["Hel", "lo", "!"],
                model=ANSWERED,
                response_id="chatcmpl-nousage",
                usage=usage(12, 3),
            ),
        ),
        Truth(estimated=True, response_id="chatcmpl-nousage", streamed=True, reply_text="Hello!"),
        stream=True,
        include_usage=False,
    ),
    Scenario(
        "tool calls",
        "chat",
        (
            json_reply(
                None,
                model=ANSWERED,
                response_id="chatcmpl-tools",
                usage=usage(80, 17),
                tool_calls=[_WEATHER],
            ),
        ),
        Truth(
            prompt_tokens=80,
            completion_tokens=17,
            response_id="chatcmpl-tools",
            tool_calls=("get_weather",),
        ),
        tools=True,
    ),
    Scenario(
        "streamed tool calls",
        "chat",
        (
            stream_reply(
                [],
                model=ANSWERED,
                response_id="chatcmpl-stream-tools",
                usage=usage(80, 17),
                tool_calls=[_WEATHER],
                chunk_delay=0.01,
            ),
        ),
        Truth(
            prompt_tokens=80,
            completion_tokens=17,
            response_id="chatcmpl-stream-tools",
            streamed=True,
            tool_calls=("get_weather",),
        ),
        stream=True,
        tools=True,
    ),
    Scenario(
        "429 with headers",
        "chat",
        (
            error_reply(
                429,
                "Rate limit reached for gpt-4o-mini on requests per min (RPM)",
                error_type="requests",
                code="rate_limit_exceeded",
                headers=_RATE_HEADERS,
            ),
        ),
        Truth(status=ApiCallStatus.RATE_LIMITED, error_code="rate_limit_exceeded", model=MODEL),
    ),
    Scenario(
        "500",
        "chat",
        (error_reply(500, "The server had an error", error_type="server_error", code=None),),
        Truth(status=ApiCallStatus.FAILED, error_code="500", model=MODEL),
    ),
    Scenario(
        "timeout",
        "chat",
        (json_reply("late", model=ANSWERED, usage=usage(1, 1), delay=2.0),),
        Truth(status=ApiCallStatus.TIMEOUT, model=MODEL),
        timeout=0.3,
    ),
    Scenario(
        "stream cut mid-way",
        "chat",
        (
            stream_reply(
                ["Hel", "lo", " wor", "ld"],
                model=ANSWERED,
                response_id="chatcmpl-cut",
                usage=usage(12, 4),
                cut_after=3,
            ),
        ),
        Truth(status=ApiCallStatus.FAILED, response_id="chatcmpl-cut", streamed=True),
        stream=True,
    ),
)
"""Chat Completions scenarios: every path speaking Chat Completions plays these."""

RESPONSES: tuple[Scenario, ...] = (
    Scenario(
        "responses plain",
        "responses",
        (
            responses_reply(
                "Paris.",
                model=ANSWERED,
                response_id="resp_plain",
                usage=responses_usage(25, 60, cached=0, reasoning=52),
                reasoning=True,
            ),
        ),
        Truth(
            prompt_tokens=25,
            completion_tokens=60,
            cached_tokens=0,
            reasoning_tokens=52,
            response_id="resp_plain",
            reply_text="Paris.",
        ),
    ),
    Scenario(
        "responses streamed",
        "responses",
        (
            responses_stream(
                ["Par", "is."],
                model=ANSWERED,
                response_id="resp_stream",
                usage=responses_usage(1500, 4, cached=1024),
                chunk_delay=0.01,
            ),
        ),
        Truth(
            prompt_tokens=1500,
            completion_tokens=4,
            cached_tokens=1024,
            reasoning_tokens=0,
            response_id="resp_stream",
            streamed=True,
            reply_text="Paris.",
        ),
        stream=True,
    ),
    Scenario(
        "responses tool calls",
        "responses",
        (
            responses_reply(
                None,
                model=ANSWERED,
                response_id="resp_tools",
                usage=responses_usage(90, 20),
                tool_calls=[_WEATHER],
            ),
        ),
        Truth(
            prompt_tokens=90,
            completion_tokens=20,
            cached_tokens=0,
            reasoning_tokens=0,
            response_id="resp_tools",
            tool_calls=("get_weather",),
        ),
        tools=True,
    ),
)
"""Responses API scenarios."""

CORPUS = CHAT + RESPONSES

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
"""The tool a ``tools`` scenario offers, in Chat Completions' form."""


def check_call(call: LLMApiCall, truth: Truth) -> None:
    """Assert that a stored call says exactly what ``truth`` says."""
    assert call.status is truth.status, (call.status, call.error_message)
    assert call.model_name == truth.model
    assert call.api_response_id == truth.response_id
    assert call.error_code == truth.error_code
    prompt_details = call.prompt_tokens_details
    completion_details = call.completion_tokens_details
    if truth.estimated:
        assert call.prompt_tokens > 0
        assert call.completion_tokens > 0
        assert prompt_details is not None
        assert prompt_details.extra.get("estimated") is True
    else:
        assert (call.prompt_tokens, call.completion_tokens) == (
            truth.prompt_tokens,
            truth.completion_tokens,
        )
        cached = None if prompt_details is None else prompt_details.cached_tokens
        reasoning = None if completion_details is None else completion_details.reasoning_tokens
        assert (cached, reasoning) == (truth.cached_tokens, truth.reasoning_tokens)
        for details in (prompt_details, completion_details):
            assert details is None or "estimated" not in details.extra
    assert call.total_tokens == call.prompt_tokens + call.completion_tokens
    if truth.streamed and truth.status is ApiCallStatus.SUCCESS:
        assert call.time_to_first_token_ms is not None
        assert call.latency_ms is not None
        assert call.time_to_first_token_ms <= call.latency_ms
    elif not truth.streamed:
        assert call.time_to_first_token_ms is None
    assert call.latency_ms is not None
    if truth.status is ApiCallStatus.SUCCESS:
        if not truth.estimated:
            assert call.total_price == truth.price()
        assert isinstance(call.total_price, Decimal)
        assert call.price_details is not None
        assert call.price_details.price_table == "corpus prices"
    else:
        assert call.total_price is None
        assert call.error_message


async def stored(
    store: PersistenceStore, recorder: Recorder, session: str
) -> tuple[list[LLMApiCall], list[LLMMessage]]:
    """The calls and messages of ``session``, once everything recorded has shipped."""
    assert await recorder.flush() == 0  # records handed over without waiting too
    session_id = id_for_key(session)
    calls = await store.query_api_calls(QueryFilter(session_id=session_id))
    return calls, await store.get_session_messages(session_id)


def check_conversation(call: LLMApiCall, messages: list[LLMMessage], truth: Truth) -> None:
    """Assert the request's messages are stored once, the reply as ``truth`` says, all linked."""
    roles = [m.role for m in messages]
    assert [m.content.text for m in messages][:2] == [SYSTEM, QUESTION]
    if call.status is not ApiCallStatus.SUCCESS:
        assert roles == [MessageRole.SYSTEM, MessageRole.USER]
        assert call.request_message_id == messages[1].id
        return
    assert roles == [MessageRole.SYSTEM, MessageRole.USER, MessageRole.ASSISTANT]
    reply = messages[2]
    assert reply.content.text == truth.reply_text
    names = tuple(c.name for c in reply.content.tool_calls or ())
    assert names == truth.tool_calls
    if names:
        assert reply.content.tool_calls is not None
        assert reply.content.tool_calls[0].arguments == {"city": "Paris"}
        assert reply.content.tool_calls[0].id == "call_weather"
    assert (call.request_message_id, call.response_message_id) == (messages[1].id, reply.id)
    assert reply.parent_message_id == messages[1].id
