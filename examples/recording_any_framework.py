"""Recording an agent that chatledger does not run: a Recorder, a scope, and a resent history.

A framework calls the model with the whole conversation every time. Here a
stand-in for it asks three questions in one session named by the app's own
key; each call's request goes to ``record_conversation`` (which stores only
what is new) and each answer to ``record_reply`` with the provider's usage.
The spool lives in a temporary directory, as does the SQLite database.

    python examples/recording_any_framework.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import chatledger
from chatledger import QueryFilter
from chatledger.entities import utc_now
from chatledger.recording import Recorder, id_for_key, scope

ANSWERS = {"Capital of France?": "Paris.", "And of Italy?": "Rome.", "Thanks!": "You're welcome."}


async def main() -> None:
    """Three calls, each resending the history; every message stored once."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'ledger.db'}"
        async with await chatledger.connect(url) as store:
            recorder = Recorder(store, tenant_id="acme", spool=Path(folder) / "spool")
            history: list[tuple[str, str]] = [("system", "Answer in one sentence.")]
            async with scope(user_id="user-42", session_id="support-ticket-7"):
                for question, answer in ANSWERS.items():
                    history.append(("user", question))
                    started = utc_now()
                    ids = await recorder.record_conversation(history)  # the whole request
                    await recorder.record_reply(
                        ids[-1],
                        answer,
                        {"model": "gpt-4o-mini", "started": started,
                         "prompt_tokens": 20 * len(history), "completion_tokens": 4},
                    )  # fmt: skip
                    history.append(("assistant", answer))
            await recorder.close()  # ships what is spooled

            session_id = id_for_key("support-ticket-7")
            session = await store.get_session(session_id)
            messages = await store.get_session_messages(session_id)
            stats = await store.get_statistics(QueryFilter(session_id=session_id))
            print(f"session key: {session.metadata['key'] if session else None}")
            for message in messages:
                print(f"  {message.role.value:<9} {message.content.text}")
            print(f"{len(messages)} messages stored once each, from {stats.total_calls} calls")
            print(f"tokens: {stats.total_tokens}")


if __name__ == "__main__":
    asyncio.run(main())
