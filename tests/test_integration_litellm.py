"""chatledger.integrations.litellm: ChatledgerLogger on the real LiteLLM, against the fake server.

LiteLLM reads its model cost map from the network unless told otherwise: the
environment says so before LiteLLM is imported. Its callbacks run after the
call returned, in worker threads and tasks: tests wait for the record with a
bounded poll.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported: no network
os.environ.setdefault("LITELLM_TELEMETRY", "False")

import asyncio
import contextlib
import dataclasses
import inspect
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import litellm
import pytest

import chatledger
from chatledger.entities import ApiCallStatus, LLMApiCall, LLMMessage, QueryFilter
from chatledger.integrations.litellm import ChatledgerLogger
from chatledger.pricing import ModelPrice, StaticPricingRegistry
from chatledger.recording import Recorder, id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.testing.fake_openai import (
    FakeOpenAIServer,
    json_reply,
    stream_reply,
    usage,
)
from provider_corpus import (
    ANSWERED,
    CHAT,
    MODEL,
    PRICES,
    QUESTION,
    SYSTEM,
    WEATHER_TOOL,
    Scenario,
    Truth,
    check_call,
    check_conversation,
)
from provider_corpus import stored as shipped

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

litellm.suppress_debug_info = True  # no "Give Feedback" banners on the errors the corpus makes

# LiteLLM's own warnings, which pytest would turn into errors inside LiteLLM: pydantic's
# about ReadOnly TypedDicts (built lazily, on first use) and about attributes LiteLLM reads.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.* using the `ReadOnly` qualifier"),
    pytest.mark.filterwarnings("ignore:Accessing the .* attribute on the instance is deprecated"),
]


@pytest.fixture(autouse=True)
def no_other_callbacks() -> Iterator[None]:
    """Each test sets litellm.callbacks itself; none leaks into the next.

    LiteLLM copies ``litellm.callbacks`` into lists of its own on first use: all are emptied.
    """
    litellm.logging_callback_manager._reset_all_callbacks()
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


@pytest.fixture(autouse=True)
async def no_cached_clients() -> AsyncIterator[None]:
    """LiteLLM keeps a client per server: each test's server is new, so its clients are closed."""
    yield
    cache = litellm.in_memory_llm_clients_cache
    for client in list(cache.cache_dict.values()):
        close = getattr(client, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):  # a client of a loop that has ended
                closing = close()
                if inspect.isawaitable(closing):
                    await closing
    cache.flush_cache()


def request_for(server: FakeOpenAIServer, scenario: Scenario) -> dict[str, Any]:
    """The keyword arguments a caller passes to ``litellm.completion`` for ``scenario``."""
    request: dict[str, Any] = {
        "model": f"openai/{MODEL}",
        "api_base": server.base_url,
        "api_key": "k",
        "max_retries": 0,
        "num_retries": 0,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
        ],
    }
    if scenario.timeout is not None:
        request["timeout"] = scenario.timeout
    if scenario.tools:
        request["tools"] = [WEATHER_TOOL]
    if scenario.stream:
        request["stream"] = True
        if scenario.include_usage:
            request["stream_options"] = {"include_usage": True}
    return request


async def play(
    kind: str, server: FakeOpenAIServer, scenario: Scenario, session: str
) -> tuple[Any, BaseException | None]:
    """Make the scenario's call through LiteLLM in ``session``: its result or its error."""
    server.add(*scenario.script)
    request = request_for(server, scenario)
    if kind == "sync":

        def in_thread() -> tuple[Any, BaseException | None]:
            with chatledger.scope(session_id=session):
                try:
                    result = litellm.completion(**request)
                    return (list(result) if scenario.stream else result), None
                except Exception as error:  # noqa: BLE001  (whatever LiteLLM raises)
                    return None, error

        return await asyncio.to_thread(in_thread)
    with chatledger.scope(session_id=session):
        try:
            result = await litellm.acompletion(**request)
            if scenario.stream:
                result = [chunk async for chunk in result]
        except Exception as error:  # noqa: BLE001  (whatever LiteLLM raises)
            return None, error
        return result, None


def logging_to(recorder: Recorder) -> ChatledgerLogger:
    """A logger into ``recorder``, the only callback LiteLLM calls."""
    logger = ChatledgerLogger(recorder)
    litellm.callbacks = [logger]
    return logger


async def stored(
    store: PersistenceStore, recorder: Recorder, session: str
) -> tuple[list[LLMApiCall], list[LLMMessage]]:
    """The calls and messages of ``session``, once LiteLLM's hooks ran and records shipped."""
    (logger,) = litellm.callbacks
    # LiteLLM calls its loggers in the background, after the call returned.
    assert await asyncio.to_thread(logger.wait, 10.0)
    return await shipped(store, recorder, session)


# --- the corpus ----------------------------------------------------------------------------------


def truth_for(scenario: Scenario) -> Truth:
    """The scenario's truth, less what LiteLLM does not tell its loggers.

    A stream cut mid-way reaches the failure hook with the connection error
    and none of the chunks: not the model the provider named, nor the
    response id it had sent.
    """
    if scenario.name == "stream cut mid-way":
        return dataclasses.replace(scenario.truth, model=MODEL, response_id=None)
    return scenario.truth


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("scenario", CHAT, ids=lambda s: s.name)
async def test_every_chat_scenario_is_stored_exactly(
    kind: str, scenario: Scenario, server: FakeOpenAIServer, corpus_store: PersistenceStore
) -> None:
    """Each Chat Completions scenario, field for field, with its request and reply once."""
    recorder = Recorder(corpus_store, pricing=PRICES)
    logging_to(recorder)
    try:
        _, error = await play(kind, server, scenario, "corpus")
        assert (error is None) == (scenario.truth.status is ApiCallStatus.SUCCESS), error
        calls, messages = await stored(corpus_store, recorder, "corpus")
    finally:
        await recorder.close()
    (call,) = calls
    check_call(call, truth_for(scenario))
    check_conversation(call, messages, truth_for(scenario))


# --- details -------------------------------------------------------------------------------------


async def test_anthropic_style_cache_writes_are_kept(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """``cache_creation_input_tokens`` (gateways report Anthropic's so) is cache_write_tokens."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    logging_to(recorder)
    server.add(
        json_reply(
            "Ok.",
            model=ANSWERED,
            response_id="chatcmpl-w",
            usage=usage(3000, 2, cached=1000, cache_write=1500),
        )
    )
    scenario = Scenario("cache write", "chat", (), CHAT[0].truth)
    try:
        _, error = await play("async", server, scenario, "writes")
        assert error is None
        (call,), _ = await stored(sqlite_store, recorder, "writes")
    finally:
        await recorder.close()
    assert call.prompt_tokens_details is not None
    assert call.prompt_tokens_details.cached_tokens == 1000
    assert call.prompt_tokens_details.cache_write_tokens == 1500


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_scope_of_the_call_is_kept_and_history_is_stored_once(
    kind: str, server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """Three calls resending a growing history: each message once, in the caller's scope."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    logging_to(recorder)
    history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    try:
        for turn, answer in enumerate(["Paris.", "Rome.", "Bye."]):
            history.append({"role": "user", "content": f"question {turn}"})
            server.add(
                stream_reply(
                    [answer], model=ANSWERED, response_id=f"chatcmpl-{turn}", usage=usage(10, 2)
                )
            )
            request = {
                "model": f"openai/{MODEL}",
                "api_base": server.base_url,
                "api_key": "k",
                "max_retries": 0,
                "messages": list(history),
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            if kind == "sync":

                def call(request: dict[str, Any] = request) -> str:
                    with chatledger.scope(session_id="ticket-9", user_id="user-1"):
                        chunks = list(litellm.completion(**request))
                    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

                text = await asyncio.to_thread(call)
            else:
                async with chatledger.scope(session_id="ticket-9", user_id="user-1"):
                    stream = await litellm.acompletion(**request)
                    chunks = [chunk async for chunk in stream]
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            history.append({"role": "assistant", "content": text})
        calls, messages = await stored(sqlite_store, recorder, "ticket-9")
    finally:
        await recorder.close()
    assert len(calls) == 3
    assert {c.user_id for c in calls} == {id_for_key("user-1")}
    assert [m.content.text for m in messages] == [
        SYSTEM,
        "question 0",
        "Paris.",
        "question 1",
        "Rome.",
        "question 2",
        "Bye.",
    ]


def test_litellm_times_are_read_as_local_and_made_utc() -> None:
    """LiteLLM's naive local datetimes become the same instant, aware, in UTC."""
    from chatledger.integrations.litellm import _utc

    local = datetime(2025, 3, 1, 12, 30, 0)
    made = _utc(local)
    assert made is not None
    assert made.tzinfo is UTC
    assert made == local.astimezone(UTC)
    assert _utc(local.astimezone(UTC)) == made
    assert _utc(made.timestamp()) == made
    assert _utc(None) is None


async def test_a_recorder_that_fails_does_not_reach_the_caller(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed recorder: the call still returns what LiteLLM returns, and the loss is logged."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    await recorder.close()
    logger = logging_to(recorder)
    server.add(json_reply("Paris.", model=ANSWERED, usage=usage(21, 3)))
    caplog.set_level("WARNING", logger="chatledger.integrations.litellm")
    result = await litellm.acompletion(**request_for(server, CHAT[0]))
    assert result.choices[0].message.content == "Paris."
    assert await asyncio.to_thread(logger.wait, 10.0)
    assert "could not record a LiteLLM call" in caplog.text


async def test_the_time_to_first_token_is_the_first_chunk(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """A stream whose first content comes late: its time to first token says so."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    logging_to(recorder)
    server.add(
        stream_reply(["a", "b"], model=ANSWERED, usage=usage(5, 2), delay=0.3, chunk_delay=0.1)
    )
    scenario = next(s for s in CHAT if s.name == "streamed with a usage chunk")
    try:
        _, error = await play("async", server, scenario, "ttft")
        assert error is None
        (call,), _ = await stored(sqlite_store, recorder, "ttft")
    finally:
        await recorder.close()
    assert call.time_to_first_token_ms is not None
    assert call.latency_ms is not None
    assert 250 <= call.time_to_first_token_ms < call.latency_ms
    assert call.create_time > datetime.now(UTC) - timedelta(minutes=1)


# --- importing without LiteLLM, and the example -------------------------------------------------


async def test_a_call_both_hooks_report_is_recorded_once(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """LiteLLM may fire the sync and the async hook for one call: one record."""
    seen: list[tuple[Any, ...]] = []

    class Remembering(ChatledgerLogger):
        async def async_log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            seen.append((kwargs, response_obj, start_time, end_time))
            await super().async_log_success_event(kwargs, response_obj, start_time, end_time)

    recorder = Recorder(sqlite_store, pricing=PRICES)
    logger = Remembering(recorder)
    litellm.callbacks = [logger]
    server.add(json_reply("Paris.", model=ANSWERED, usage=usage(21, 3)))
    try:
        with chatledger.scope(session_id="twice"):
            await litellm.acompletion(**request_for(server, CHAT[0]))
        assert await asyncio.to_thread(logger.wait, 10.0)
        (args,) = seen
        await asyncio.to_thread(logger.log_success_event, *args)  # the twin, late
        await logger.async_log_success_event(*args)
        assert await recorder.flush() == 0
        calls = await sqlite_store.query_api_calls(QueryFilter(session_id=id_for_key("twice")))
    finally:
        await recorder.close()
    assert len(calls) == 1


async def test_the_provider_litellm_routed_to_prices_the_call(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """LiteLLM's custom_llm_provider, not the recorder's default, chooses the price list."""
    prices = StaticPricingRegistry(
        {("openai", ANSWERED): ModelPrice("0.15", "0.60")}, name="openai prices"
    )
    recorder = Recorder(sqlite_store, pricing=prices, provider="anthropic")
    logging_to(recorder)
    server.add(json_reply("Paris.", model=ANSWERED, usage=usage(1_000_000, 0)))
    try:
        _, error = await play("async", server, Scenario("p", "chat", (), CHAT[0].truth), "priced")
        assert error is None
        (call,), _ = await stored(sqlite_store, recorder, "priced")
    finally:
        await recorder.close()
    assert call.total_price == Decimal("0.15")
