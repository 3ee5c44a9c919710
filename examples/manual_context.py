"""Recording a conversation by hand with ``PersistenceContext`` (no agent, no plugin).

Useful when you call the model yourself: save each message through the
context (it links each one to the message before), log the API call in the
ledger, then continue the same session later with ``from_session``. Writes a
SQLite file in a temporary directory.

    python examples/manual_context.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import chatledger
from chatledger import LLMApiCall, uuid7
from chatledger.plugin import PersistenceContext


async def main() -> None:
    """Save a turn by hand, resume the session, and read history and usage back."""
    tenant, user, agent = uuid7(), uuid7(), uuid7()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'manual.db'}"
        async with await chatledger.connect(url) as store:
            # Ids by keyword: MoFA's positional orders differ between create and from_session.
            context = await PersistenceContext.create(
                store, user_id=user, tenant_id=tenant, agent_id=agent
            )
            question = await context.save_user_message("Where is my order?")
            # ... call your model here; then record the reply and the call it took ...
            answer = await context.save_assistant_message("It ships today.")
            await store.save_api_call(
                LLMApiCall.success(
                    context.session_id, agent, user, tenant, question.id, answer.id,
                    "gpt-4o-mini", 42, 7, question.create_time, answer.create_time,
                ).with_api_response_id("chatcmpl-example")
            )  # fmt: skip

            # Later, maybe in another process: pick the same session up again.
            later = await PersistenceContext.from_session(
                store, user_id=user, agent_id=agent, tenant_id=tenant, session_id=context.session_id
            )
            await later.save_user_message("Thanks!")
            for message in await later.get_history():
                print(f"{message.role.value:<9} {message.content.text}")
            stats = await later.get_usage_stats()
            print(f"session usage: {stats.total_calls} call, {stats.total_tokens} tokens")

            other = await later.new_session()
            print(f"new session {other}: {len(await later.get_history())} messages")


if __name__ == "__main__":
    asyncio.run(main())
