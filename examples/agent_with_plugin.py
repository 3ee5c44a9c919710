"""An agent with a persistence plugin: every chat turn and every API call is recorded.

Builds an ``LLMAgent`` on a ``ScriptedProvider`` (offline, no key) with a
``PersistencePlugin`` on a SQLite file in a temporary directory, chats twice
(the second time streamed), then prints the messages and the API calls the
plugin stored.

    python examples/agent_with_plugin.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import chatledger
from chatledger import QueryFilter, uuid7
from chatledger.agent import LLMAgentBuilder, ScriptedProvider, ScriptedReply
from chatledger.plugin import PersistencePlugin


async def main() -> None:
    """Chat with a recorded agent, then read back what the plugin stored."""
    tenant, user, agent_id = uuid7(), uuid7(), uuid7()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'agent.db'}"
        async with await chatledger.connect(url) as store:
            plugin = PersistencePlugin.from_store(
                "persistence", store, user, tenant, agent_id, uuid7()
            )
            # Replies with the usage an API would report; cached tokens are part of the prompt.
            provider = ScriptedProvider(
                [
                    ScriptedReply("Paris.", prompt_tokens=24, completion_tokens=2),
                    ScriptedReply("About 2.1 million.", 40, 5, cached_tokens=24),
                ]
            )
            agent = await (
                LLMAgentBuilder()
                .with_provider(provider)
                .with_model("gpt-4o-mini")
                .with_system_prompt("Answer briefly.")
                .with_persistence_plugin(plugin)
                .build_async()
            )
            print("reply:", await agent.chat("What is the capital of France?"))
            streamed = [piece async for piece in agent.chat_stream("How many live there?")]
            print("streamed:", streamed)
            await agent.close()  # stores anything still waiting

            session = agent.current_session_id
            print(f"recorded in session {session}:")
            for message in await store.get_session_messages(session):
                print(f"  {message.role.value:<9} {message.content.text}")
            for call in reversed(await store.query_api_calls(QueryFilter().session(session))):
                ttft = call.time_to_first_token_ms
                how = "not streamed" if ttft is None else f"streamed, first token in {ttft} ms"
                print(f"  call: {call.model_name} {call.status.value}, "
                      f"{call.prompt_tokens}+{call.completion_tokens} tokens, {how}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
