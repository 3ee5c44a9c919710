"""Recording an app that runs LangChain chat models: one line, a callback handler.

``ChatledgerCallbackHandler(recorder)`` goes in the model's ``callbacks`` (or
a run's ``config``); every chat-model call is then recorded: the
conversation, each message once, and each call's usage (LangChain's
``usage_metadata``: cached and reasoning tokens included), timing, cost and
outcome, failures included. ``ChatOpenAI`` reads ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL`` as usual. The ledger is ``CHATLEDGER_DATABASE_URL``, else
``chatledger.db`` here.

    python examples/langchain_callback.py
"""

from __future__ import annotations

import os
from typing import Any

import openai
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

import chatledger
import chatledger.sync
from chatledger import QueryFilter
from chatledger.integrations.langchain import ChatledgerCallbackHandler
from chatledger.recording import Recorder, id_for_key


def main() -> None:
    """A short chat: a plain call, a streamed one, and one the provider refuses."""
    url = os.environ.get("CHATLEDGER_DATABASE_URL", "sqlite:///chatledger.db")
    store = chatledger.sync.connect(url)
    recorder = Recorder(store, pricing=chatledger.default_pricing_registry())
    handler = ChatledgerCallbackHandler(recorder)
    model = ChatOpenAI(model="gpt-4o-mini", max_retries=0, stream_usage=True,
                       callbacks=[handler])  # the one line: callbacks=[handler]  # fmt: skip

    history: list[Any] = [
        SystemMessage("Answer in one sentence."),
        HumanMessage("What is the capital of France?"),
    ]
    with chatledger.scope(user_id="user-42", session_id="support-ticket-7"):
        reply = model.invoke(history)
        print(f"assistant: {reply.content}")
        history.append(reply)

        history.append(HumanMessage("And the weather there?"))
        chunks = list(model.stream(history))
        text = "".join(str(chunk.content) for chunk in chunks)
        print(f"assistant: {text}")
        history.append(sum(chunks[1:], chunks[0]))  # the streamed reply, as one message

        history.append(HumanMessage("And tomorrow?"))
        try:
            model.invoke(history)
        except openai.RateLimitError as error:
            print(f"rate limited: {error.message}")

    recorder.close_sync()  # ships what is spooled

    session_id = id_for_key("support-ticket-7")
    calls = sorted(store.query_api_calls(QueryFilter(session_id=session_id)),
                   key=lambda call: call.create_time)  # fmt: skip
    for call in calls:
        cost = "-" if call.total_price is None else f"${call.total_price:.8f}"
        print(f"  {call.status.value:<12} {call.model_name:<24} {call.total_tokens:>4} tokens"
              f"  {call.latency_ms:>4} ms  {cost}")  # fmt: skip
    print(f"{len(calls)} calls recorded: {', '.join(call.status.value for call in calls)}")
    messages = store.get_session_messages(session_id)
    print(f"{len(messages)} messages stored once each")
    store.close()


if __name__ == "__main__":
    main()
