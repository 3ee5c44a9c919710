"""Recording an app that calls LiteLLM: one line, ``litellm.callbacks = [ChatledgerLogger(...)]``.

Every ``litellm.completion`` and ``acompletion`` is then recorded: the
conversation, each message once, and each call's usage (the provider's own,
cached and reasoning tokens included), timing, cost and outcome, failures
included. LiteLLM reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` as usual.
The ledger is ``CHATLEDGER_DATABASE_URL``, else ``chatledger.db`` here.

    python examples/litellm_logger.py
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM: no download at import

from typing import Any

import litellm

import chatledger
import chatledger.sync
from chatledger import QueryFilter
from chatledger.integrations.litellm import ChatledgerLogger
from chatledger.recording import Recorder, id_for_key

MODEL = "openai/gpt-4o-mini"


def main() -> None:
    """A short chat: a plain call, a streamed one, and one the provider refuses."""
    url = os.environ.get("CHATLEDGER_DATABASE_URL", "sqlite:///chatledger.db")
    store = chatledger.sync.connect(url)
    recorder = Recorder(store, pricing=chatledger.default_pricing_registry())
    logger = ChatledgerLogger(recorder)
    litellm.callbacks = [logger]  # the one line
    litellm.suppress_debug_info = True

    history: list[Any] = [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    with chatledger.scope(user_id="user-42", session_id="support-ticket-7"):
        reply = litellm.completion(model=MODEL, messages=history, max_retries=0)
        print(f"assistant: {reply.choices[0].message.content}")
        history.append({"role": "assistant", "content": reply.choices[0].message.content})

        history.append({"role": "user", "content": "And the weather there?"})
        stream = litellm.completion(
            model=MODEL,
            messages=history,
            stream=True,
            stream_options={"include_usage": True},  # the provider's own token counts
            max_retries=0,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        print(f"assistant: {text}")
        history.append({"role": "assistant", "content": text})

        history.append({"role": "user", "content": "And tomorrow?"})
        try:
            litellm.completion(model=MODEL, messages=history, max_retries=0, num_retries=0)
        except litellm.RateLimitError as error:
            print(f"rate limited: {error.message}")

    logger.wait()  # LiteLLM calls its loggers in the background, after each call
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
