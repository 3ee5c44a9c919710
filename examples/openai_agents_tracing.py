"""Recording an OpenAI Agents SDK agent: one trace processor, every model call in the ledger.

The agent answers a weather question with a tool, so the run makes two model
calls. Chatledger's processor records both from the SDK's spans, with the
agent's name, in the user's scope; the conversation (question, tool call,
tool result, answer) is stored once. The OpenAI client reads
``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` as usual; the ledger is
``CHATLEDGER_DATABASE_URL`` or ``agents_ledger.db`` in the current folder.

    OPENAI_API_KEY=sk-... python examples/openai_agents_tracing.py
"""

from __future__ import annotations

import asyncio
import os

from agents import Agent, Runner, function_tool, set_trace_processors

import chatledger
from chatledger import QueryFilter
from chatledger.integrations.openai_agents import ChatledgerTracingProcessor
from chatledger.pricing import default_pricing_registry
from chatledger.recording import Recorder, id_for_key, scope


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


async def main() -> None:
    """One run of a tool-using agent, then what the ledger holds."""
    url = os.environ.get("CHATLEDGER_DATABASE_URL", "sqlite:///agents_ledger.db")
    async with await chatledger.connect(url) as store:
        recorder = Recorder(store, pricing=default_pricing_registry())
        processor = ChatledgerTracingProcessor(recorder)
        # The one line: set_trace_processors replaces the SDK's upload of traces to
        # OpenAI; agents.add_trace_processor(processor) keeps it beside chatledger.
        set_trace_processors([processor])

        agent = Agent(
            name="Weather bot",
            instructions="Answer in one sentence.",
            model="gpt-4o-mini",
            tools=[get_weather],
        )
        async with scope(user_id="user-42", session_id="weather-chat-1"):
            result = await Runner.run(agent, "What's the weather in Paris?")
        print(f"agent said: {result.final_output}")

        await processor.flush()  # the run's calls are recorded...
        await recorder.close()  # ...and shipped to the store

        calls = await store.query_api_calls(QueryFilter().user(id_for_key("user-42")))
        for call in reversed(calls):
            cost = "unpriced" if call.total_price is None else f"${call.total_price:.6f}"
            print(f"  {call.model_name}: {call.prompt_tokens} in, "
                  f"{call.completion_tokens} out, {call.latency_ms} ms, {cost}")  # fmt: skip
        # The agent's name is the calls' agent id, as a scope's string key would be.
        by_agent = [call for call in calls if call.agent_id == id_for_key("Weather bot")]
        print(f"{len(by_agent)} calls by agent 'Weather bot'")
        messages = await store.get_session_messages(id_for_key("weather-chat-1"))
        print(f"{len(messages)} messages: " + ", ".join(m.role.value for m in messages))


if __name__ == "__main__":
    asyncio.run(main())
