"""Recording LLM calls from OpenTelemetry spans: any GenAI instrumentor, one exporter.

Here OpenInference's OpenAI instrumentor (what Arize Phoenix uses) traces a
plain OpenAI client; chatledger's exporter sits on the same tracer provider
beside any other exporter, and turns each LLM span into an API call with its
messages, in the session the span names (``using_session``). The OpenAI
client reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` as usual; the ledger is
``CHATLEDGER_DATABASE_URL`` or ``otel_ledger.db`` in the current folder.

    OPENAI_API_KEY=sk-... python examples/otel_exporter.py
"""

from __future__ import annotations

import os

from openai import OpenAI
from openinference.instrumentation import using_session
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import chatledger.sync
from chatledger import QueryFilter
from chatledger.integrations.otel import ChatledgerSpanExporter
from chatledger.pricing import default_pricing_registry
from chatledger.recording import Recorder, id_for_key


def main() -> None:
    """One traced chat completion, then what the ledger holds."""
    url = os.environ.get("CHATLEDGER_DATABASE_URL", "sqlite:///otel_ledger.db")
    with (
        chatledger.sync.connect(url) as store,
        Recorder(store, pricing=default_pricing_registry()) as recorder,
    ):
        provider = TracerProvider()
        # The one line: chatledger reads the spans the instrumentor makes.
        provider.add_span_processor(BatchSpanProcessor(ChatledgerSpanExporter(recorder)))
        OpenAIInstrumentor().instrument(tracer_provider=provider)

        client = OpenAI()
        with using_session("support-7"):  # the span's session.id: the call's session
            reply = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Capital of France, in one word?"}],
            )
        print(f"model said: {reply.choices[0].message.content}")

        provider.shutdown()  # exports what is batched: the calls are recorded...
        recorder.flush_sync()  # ...and shipped to the store

        session_id = id_for_key("support-7")
        (call,) = store.query_api_calls(QueryFilter().session(session_id))
        cost = "unpriced" if call.total_price is None else f"${call.total_price:.6f}"
        print(f"1 call: {call.model_name}, {call.prompt_tokens} in, {call.completion_tokens} out, "
              f"response {call.api_response_id}, {cost}")  # fmt: skip
        roles = ", ".join(m.role.value for m in store.get_session_messages(session_id))
        print(f"session 'support-7': {roles}")


if __name__ == "__main__":
    main()
