"""Record any agent: one line for each framework people run, all on the Recorder's durable path.

Each integration is a module of its own, behind the extra that installs its
framework; importing one without it raises ``ImportError`` naming the
``pip install`` line:

- :mod:`chatledger.integrations.openai`: ``instrument(client, recorder)`` for
  ``OpenAI`` and ``AsyncOpenAI`` (``chatledger[openai]``);
- :mod:`chatledger.integrations.litellm`: ``ChatledgerLogger(recorder)``, a
  LiteLLM ``CustomLogger`` (``chatledger[litellm]``);
- :mod:`chatledger.integrations.langchain`: ``ChatledgerCallbackHandler(recorder)``
  (``chatledger[langchain]``);
- :mod:`chatledger.integrations.openai_agents`:
  ``ChatledgerTracingProcessor(recorder)`` for the OpenAI Agents SDK
  (``chatledger[openai-agents]``);
- :mod:`chatledger.integrations.otel`: ``ChatledgerSpanExporter(recorder)``, an
  OpenTelemetry ``SpanExporter`` reading GenAI spans from any instrumentor
  (``chatledger[otel]``).

They share :mod:`chatledger.integrations.openai_shapes` (OpenAI's wire formats
read into chatledger's records) and record through
:meth:`chatledger.Recorder.record_exchange`: the request's new messages, the
reply and the call, in one durable append.
"""

from __future__ import annotations

__all__: list[str] = []
