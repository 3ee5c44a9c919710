"""The OpenAI Agents SDK recorded: each model call of a run, from the SDK's own trace spans.

One line after building the recorder::

    agents.add_trace_processor(ChatledgerTracingProcessor(recorder))

Every ``generation`` span (models speaking Chat Completions) and ``response``
span (the Responses API, the SDK's default) becomes one API call, with the
request's messages, the reply and the provider's usage, in the scope in force
where ``Runner.run`` (``run_sync``, ``run_streamed``) was called: the SDK calls
processors synchronously from the task running the agent, which inherits the
caller's context.

What the spans carry, and so what is recorded:

- The agent: the name of the agent span above the model span becomes the
  call's ``agent_id`` (the name maps to a stable UUID, as a scope's string key
  does), unless the scope in force names an agent already.
- The session: the session in scope; else the trace's ``group_id`` (the SDK's
  conversation id, ``RunConfig(group_id=...)``), as a session key; else the
  recorder's own session for that agent.
- Responses API spans hold the whole ``Response``: the model that answered,
  the response id and the usage field for field. Chat Completions spans hold
  the model *asked for*, no response id for whole replies (the id of a
  streamed one, as the SDK keeps it), and usage as the SDK normalised it, in
  which a detail the provider did not report reads 0: zero cached, cache-write
  and reasoning counts are therefore recorded as absent.
- No span carries a time to first token, so none is recorded, streamed runs
  included.
- Without usage (a chat stream not asked for it), tokens are counted locally
  and marked estimated. With ``RunConfig(trace_include_sensitive_data=False)``
  the spans hold no messages, and only the call is recorded.
- A failed call's status and error code come from the provider's exception,
  which the processor sees as the span ends.

A processor callback is synchronous but usually runs on the agent's event
loop, where waiting for the recorder is not allowed: there the record goes to
a thread of the processor's, which records it durably moments later
(``await processor.flush()`` or ``processor.force_flush()`` wait for it, and
interpreter exit does). From code without a running loop it is recorded
before the callback returns. Recording never raises into the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, cast

from chatledger.integrations.extras import require

require("agents", "openai-agents", "chatledger.integrations.openai_agents")

from agents.tracing import (  # noqa: E402  (after the extra is known to be installed)
    AgentSpanData,
    GenerationSpanData,
    ResponseSpanData,
    Span,
    Trace,
    TracingProcessor,
)
from agents.tracing.span_data import TurnSpanData  # noqa: E402

from chatledger.entities import ApiCallStatus, MessageContent  # noqa: E402
from chatledger.integrations.openai_shapes import (  # noqa: E402
    Message,
    chat_message,
    chat_messages,
    estimated_usage,
    field,
    responses_input,
    responses_output,
    responses_usage,
)
from chatledger.recording import CallFields, CallUsage, Recorder, Scope, current_scope  # noqa: E402
from chatledger.recording import scope as scope_of  # noqa: E402

__all__ = ["ChatledgerTracingProcessor"]

logger = logging.getLogger("chatledger.integrations.openai_agents")


class ChatledgerTracingProcessor(TracingProcessor):
    """An Agents SDK ``TracingProcessor`` recording every model call of a run through ``recorder``.

    Add it with ``agents.add_trace_processor(processor)`` (beside the SDK's
    upload to OpenAI) or ``agents.set_trace_processors([processor])`` (instead
    of it).
    """

    def __init__(self, recorder: Recorder) -> None:
        """Record into ``recorder``."""
        self._recorder = recorder
        self._parents: dict[str, str | None] = {}  # open span -> its parent
        self._agents: dict[str, str] = {}  # open agent (or turn) span -> the agent's name
        self._groups: dict[str, str] = {}  # open trace -> its group id

    @property
    def recorder(self) -> Recorder:
        """The recorder the calls go to."""
        return self._recorder

    # --- the SDK's interface -------------------------------------------------------------

    def on_trace_start(self, trace: Trace) -> None:
        """Remember the trace's group id (the conversation), for calls without a session."""
        group_id = getattr(trace, "group_id", None)
        if isinstance(group_id, str) and group_id:
            self._groups[trace.trace_id] = group_id

    def on_trace_end(self, trace: Trace) -> None:
        """Forget the trace."""
        self._groups.pop(trace.trace_id, None)

    def on_span_start(self, span: Span[Any]) -> None:
        """Remember where the span sits, and the agent an agent span stands for."""
        self._parents[span.span_id] = span.parent_id
        data = span.span_data
        if isinstance(data, AgentSpanData) and data.name:
            self._agents[span.span_id] = data.name
        elif isinstance(data, TurnSpanData) and data.agent_name:
            self._agents[span.span_id] = data.agent_name

    def on_span_end(self, span: Span[Any]) -> None:
        """Record a model span's call; never raises into the run."""
        try:
            data = span.span_data
            if isinstance(data, GenerationSpanData | ResponseSpanData):
                # The provider's exception, when the span ends because of it: the SDK
                # closes the span inside the `with` the exception is leaving.
                error = sys.exc_info()[1] if span.error else None
                self._submit(span, error if isinstance(error, Exception) else None)
        except Exception:
            logger.exception("chatledger could not record an Agents SDK model call")
        finally:
            self._parents.pop(span.span_id, None)
            self._agents.pop(span.span_id, None)

    def shutdown(self) -> None:
        """Wait (boundedly) for the calls still being recorded."""
        self.force_flush()

    def force_flush(self) -> None:
        """Ship every model call seen so far to the store (the recorder's ``flush``).

        On a thread running an event loop it does not wait, as recording may need
        that very loop: from async code, ``await processor.flush()``.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                self._recorder.flush_sync()
            except Exception:  # the SDK calls this at exit: never raise into it
                logger.exception("chatledger could not flush the Agents SDK's model calls")

    async def flush(self) -> None:
        """Await until every model call seen so far is recorded and shipped to the store."""
        try:
            await self._recorder.flush()
        except Exception:
            logger.exception("chatledger could not flush the Agents SDK's model calls")

    # --- recording -----------------------------------------------------------------------

    def _submit(self, span: Span[Any], error: Exception | None) -> None:
        """Read the span now (the SDK may reuse it), then record on a path that may block."""
        messages, reply, fields = _read(span, error)
        # The worker thread has no scope of its own: the caller's goes with the record.
        scope = self._scope_for(span).over(current_scope())
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # plain code: record here, durable before the span returns
                self._recorder.record_exchange_sync(messages, reply, fields, scope=scope)
            else:
                # On an event loop (the agent's, maybe the recorder's own) blocking is not
                # allowed: the recorder's loop takes the record, durable a moment later.
                self._recorder.record_exchange_soon(messages, reply, fields, scope=scope)
        except Exception:
            logger.exception("chatledger could not record an Agents SDK model call")

    def _scope_for(self, span: Span[Any]) -> Scope:
        """What the span adds to the scope in force: its agent, and its trace's group as session."""
        outer = current_scope()
        agent = None if outer.agent_id is not None else self._agent_of(span)
        group = None if outer.session_id is not None else self._groups.get(span.trace_id)
        return scope_of(agent_id=agent, session_id=group).ids

    def _agent_of(self, span: Span[Any]) -> str | None:
        """The name of the nearest agent above ``span``."""
        parent = span.parent_id
        for _ in range(64):  # spans nest a few levels; a cycle must not hang the run
            if parent is None:
                return None
            name = self._agents.get(parent)
            if name is not None:
                return name
            parent = self._parents.get(parent)
        return None


def _read(span: Span[Any], error: Exception | None) -> tuple[list[Message], MessageContent | None,
                                                              CallFields]:  # fmt: skip
    """A model span as the recorder takes it: request messages, reply, call fields."""
    data = span.span_data
    if isinstance(data, ResponseSpanData):
        messages, reply, model, usage, response_id = _read_response(data)
    else:
        messages, reply, model, usage, response_id = _read_generation(data)
    failed = span.error is not None
    if failed:
        reply = None  # a partial reply is not an answer: the call failed
    elif usage is None:  # the provider reported none: counted here, marked estimated
        usage = estimated_usage(messages, reply, model or "") if messages or reply else None
    fields = cast(
        CallFields,
        {**(usage or {}), "model": model, "started": _time(span.started_at),
         "response_id": response_id},
    )  # fmt: skip
    if span.ended_at:
        fields["finished"] = _time(span.ended_at)
    if failed:
        if error is not None:
            fields["error"] = error
            fields["model"] = model or _asked_model(error)
        else:  # an exception we did not see: only the span's words
            message, detail = field(span.error, "message"), field(span.error, "data")
            text = " ".join(str(part) for part in (message, detail) if part)
            fields["status"] = _status_from_text(text)
            fields["error_message"] = text or "failed"
    return messages, reply, fields


_Read = tuple[list[Message], MessageContent | None, str | None, CallUsage | None, str | None]
"""Request messages, reply, model, usage (None: not reported) and response id of a span."""


def _read_response(data: ResponseSpanData) -> _Read:
    """A Responses API span: the whole ``Response`` when the SDK kept it (sensitive data on)."""
    response = data.response
    if response is None:  # redacted, or the call failed: only the SDK's usage
        return [], None, None, _sdk_usage(data.usage), None
    messages = responses_input(data.input, field(response, "instructions"))
    usage = field(response, "usage")
    return (
        messages,
        responses_output(response),
        field(response, "model"),
        None if usage is None else responses_usage(usage),
        field(response, "id") or None,
    )


def _read_generation(data: GenerationSpanData) -> _Read:
    """A Chat Completions span: the request, the message or (streamed) the Response built."""
    messages = chat_messages(data.input or ())
    reply: MessageContent | None = None
    response_id = None
    output = data.output or []
    if output:
        last = output[-1]
        if field(last, "object") == "response":  # a stream, gathered into a Response
            reply = responses_output(last)
            for item in field(last, "output") or ():
                provider = field(item, "provider_data") or {}
                response_id = response_id or field(provider, "response_id")
        else:
            reply = chat_message(last)[1]
    return messages, reply, data.model, _sdk_usage(data.usage), response_id


def _sdk_usage(usage: Any) -> CallUsage | None:
    """The SDK's usage dict; None when it counted nothing (the provider sent no usage).

    The SDK reads an unreported detail as 0, so a zero detail is recorded as absent.
    """
    if not usage:
        return None
    prompt = field(usage, "input_tokens") or 0
    completion = field(usage, "output_tokens") or 0
    if not prompt and not completion:
        return None
    input_details = field(usage, "input_tokens_details") or {}
    output_details = field(usage, "output_tokens_details") or {}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": field(input_details, "cached_tokens") or None,
        "cache_write_tokens": field(input_details, "cache_write_tokens") or None,
        "reasoning_tokens": field(output_details, "reasoning_tokens") or None,
    }


def _asked_model(error: Exception) -> str | None:
    """The model a failed request asked for, read from the request the error carries."""
    request = getattr(error, "request", None)
    try:
        body = json.loads(request.content) if request is not None else None
    except Exception:  # noqa: BLE001  (not JSON, or no body: the model stays unknown)
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def _status_from_text(text: str) -> ApiCallStatus:
    """A failed call's status from the words the span kept of its error."""
    lowered = text.lower()
    if "429" in lowered or "rate limit" in lowered or "ratelimit" in lowered:
        return ApiCallStatus.RATE_LIMITED
    if "timed out" in lowered or "timeout" in lowered:
        return ApiCallStatus.TIMEOUT
    return ApiCallStatus.FAILED


def _time(value: str | None) -> datetime:
    """An SDK timestamp (ISO 8601) as an aware UTC datetime; now when absent."""
    if not value:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
