"""chatledger.integrations.langchain: ChatledgerCallbackHandler on langchain-openai's ChatOpenAI.

Every test talks over HTTP to the fake OpenAI server. Synchronous runs go in
worker threads (the server lives on the test's event loop). Runs ended on an
event loop are handed to the recorder's loop: ``recorder.flush()`` waits for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI

import chatledger
from chatledger.entities import ApiCallStatus, MessageRole, QueryFilter
from chatledger.integrations.langchain import ChatledgerCallbackHandler
from chatledger.recording import Recorder, id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.testing.fake_openai import (
    FakeOpenAIServer,
    json_reply,
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
    Truth,
    check_call,
    check_conversation,
    stored,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def chat_model(server: FakeOpenAIServer, scenario: Scenario | None = None, **options: Any) -> Any:
    """ChatOpenAI on the fake server, one request per call, as ``scenario`` asks."""
    if scenario is not None:
        options.setdefault("stream_usage", scenario.include_usage)
        if scenario.timeout is not None:
            options["timeout"] = scenario.timeout
        if scenario.api == "responses":
            options["use_responses_api"] = True
    model = ChatOpenAI(model=MODEL, base_url=server.base_url, api_key="k", max_retries=0, **options)
    if scenario is not None and scenario.tools:
        return model.bind_tools([WEATHER_TOOL])
    return model


def truth_for(scenario: Scenario) -> Truth:
    """The scenario's truth, less what LangChain does not pass on to callbacks.

    langchain-openai reads a Chat Completions stream's chunks without their
    ``id`` (the message id is LangChain's run id), and the model a stream
    names comes in its finish chunk, which a cut stream never sends.
    """
    truth = scenario.truth
    if scenario.api == "chat" and scenario.stream:
        truth = dataclasses.replace(truth, response_id=None)
    if scenario.name == "stream cut mid-way":
        truth = dataclasses.replace(truth, model=MODEL)
    return truth


PROMPT = [SystemMessage(SYSTEM), HumanMessage(QUESTION)]


async def play(
    kind: str, model: Any, scenario: Scenario, session: str, handler: ChatledgerCallbackHandler
) -> tuple[Any, BaseException | None]:
    """Run the scenario's call through ``model`` in ``session``: its result or its error."""
    config: Any = {"callbacks": [handler]}
    if kind == "sync":

        def in_thread() -> tuple[Any, BaseException | None]:
            with chatledger.scope(session_id=session):
                try:
                    if scenario.stream:
                        return list(model.stream(PROMPT, config=config)), None
                    return model.invoke(PROMPT, config=config), None
                except Exception as error:  # noqa: BLE001  (whatever the provider raised)
                    return None, error

        return await asyncio.to_thread(in_thread)
    async with chatledger.scope(session_id=session):
        try:
            if scenario.stream:
                result: Any = [chunk async for chunk in model.astream(PROMPT, config=config)]
            else:
                result = await model.ainvoke(PROMPT, config=config)
        except Exception as error:  # noqa: BLE001  (whatever the provider raised)
            return None, error
    return result, None


# --- the corpus ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("scenario", CORPUS, ids=lambda s: s.name)
async def test_every_corpus_scenario_is_stored_exactly(
    kind: str, scenario: Scenario, server: FakeOpenAIServer, corpus_store: PersistenceStore
) -> None:
    """Each scenario's call, field for field, with its request messages and reply once."""
    recorder = Recorder(corpus_store, pricing=PRICES)
    handler = ChatledgerCallbackHandler(recorder)
    server.add(*scenario.script)
    try:
        _, error = await play(kind, chat_model(server, scenario), scenario, "corpus", handler)
        assert (error is None) == (scenario.truth.status is ApiCallStatus.SUCCESS), error
        calls, messages = await stored(corpus_store, recorder, "corpus")
    finally:
        await recorder.close()
    (call,) = calls
    check_call(call, truth_for(scenario))
    check_conversation(call, messages, truth_for(scenario))


# --- conversations, scopes, batches --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_tool_round_resent_is_stored_once_each(
    kind: str, server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """The reply LangChain returned, resent with a tool result: every message once, in order."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    handler = ChatledgerCallbackHandler(recorder)
    weather = tool_call("get_weather", '{"city": "Paris"}', call_id="call_weather")
    server.add(
        json_reply(None, model=ANSWERED, usage=usage(80, 17), tool_calls=[weather]),
        stream_reply(["18°C and sunny."], model=ANSWERED, usage=usage(95, 6)),
    )
    model = chat_model(server, stream_usage=True).bind_tools([WEATHER_TOOL])
    config: Any = {"callbacks": [handler], "metadata": {"chatledger_session_id": "trip"}}
    history: list[Any] = [SystemMessage(SYSTEM), HumanMessage("Weather in Paris?")]

    def run_sync() -> None:
        history.append(model.invoke(history, config=config))
        history.append(ToolMessage("18°C, sun", tool_call_id="call_weather"))
        chunks = list(model.stream(history, config=config))
        history.append(AIMessage("".join(str(c.content) for c in chunks)))

    try:
        if kind == "sync":
            await asyncio.to_thread(run_sync)
        else:
            history.append(await model.ainvoke(history, config=config))
            history.append(ToolMessage("18°C, sun", tool_call_id="call_weather"))
            chunks = [c async for c in model.astream(history, config=config)]
            history.append(AIMessage("".join(str(c.content) for c in chunks)))
        calls, messages = await stored(sqlite_store, recorder, "trip")
    finally:
        await recorder.close()
    assert len(calls) == 2
    assert [m.role for m in messages] == [
        MessageRole.SYSTEM, MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL,
        MessageRole.ASSISTANT,
    ]  # fmt: skip
    assert messages[2].content.tool_calls is not None
    assert messages[2].content.tool_calls[0].arguments == {"city": "Paris"}
    assert messages[2].content.text is None
    assert messages[3].content.tool_result is not None
    assert messages[3].content.tool_result.tool_call_id == "call_weather"
    assert messages[4].content.text == "18°C and sunny."
    first, second = sorted(calls, key=lambda c: c.create_time)
    assert second.time_to_first_token_ms is not None
    assert first.time_to_first_token_ms is None


async def test_concurrent_async_runs_keep_their_own_scopes(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """Runs gathered on one loop, each in its own scope: each call lands in its own session."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    handler = ChatledgerCallbackHandler(recorder)
    for n in range(4):
        server.add(stream_reply([f"answer {n}"], model=ANSWERED, usage=usage(10, 2),
                                chunk_delay=0.01))  # fmt: skip
    model = chat_model(server, stream_usage=True)

    async def ask(n: int) -> None:
        async with chatledger.scope(session_id=f"user-{n}"):
            async for _ in model.astream([HumanMessage(f"q{n}")], config={"callbacks": [handler]}):
                pass

    try:
        await asyncio.gather(*(ask(n) for n in range(4)))
        assert await recorder.flush() == 0
        for n in range(4):
            session_id = id_for_key(f"user-{n}")
            (call,) = await sqlite_store.query_api_calls(QueryFilter(session_id=session_id))
            messages = await sqlite_store.get_session_messages(session_id)
            assert messages[0].content.text == f"q{n}"
            assert call.time_to_first_token_ms is not None
    finally:
        await recorder.close()


async def test_batch_records_each_input(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore
) -> None:
    """``batch`` runs one call per input, in worker threads: every one recorded in scope."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    handler = ChatledgerCallbackHandler(recorder)
    server.add(*(json_reply(f"a{n}", model=ANSWERED, usage=usage(5, 1)) for n in range(3)))
    model = chat_model(server)

    def run() -> list[Any]:
        with chatledger.scope(session_id="batch"):
            inputs = [[HumanMessage(f"q{n}")] for n in range(3)]
            return list(model.batch(inputs, config={"callbacks": [handler]}))

    try:
        replies = await asyncio.to_thread(run)
        calls, messages = await stored(sqlite_store, recorder, "batch")
    finally:
        await recorder.close()
    assert len(replies) == 3
    assert len(calls) == 3
    assert sorted(m.content.text or "" for m in messages) == ["a0", "a1", "a2", "q0", "q1", "q2"]


async def test_a_recorder_that_fails_does_not_reach_the_caller(
    server: FakeOpenAIServer, sqlite_store: PersistenceStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed recorder: the run returns what it returns, and the loss is logged."""
    recorder = Recorder(sqlite_store, pricing=PRICES)
    await recorder.close()
    handler = ChatledgerCallbackHandler(recorder)
    server.add(json_reply("Paris.", model=ANSWERED, usage=usage(21, 3)))
    caplog.set_level("WARNING", logger="chatledger.integrations.langchain")
    reply = await chat_model(server).ainvoke(PROMPT, config={"callbacks": [handler]})
    assert reply.content == "Paris."
    assert "could not record a LangChain call" in caplog.text


# --- importing without LangChain, and the example -----------------------------------------------
