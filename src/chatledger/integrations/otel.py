"""OpenTelemetry GenAI spans from any instrumentor, recorded as API calls: a ``SpanExporter``.

One line on the tracer provider the instrumentor reports to::

    provider.add_span_processor(BatchSpanProcessor(ChatledgerSpanExporter(recorder)))

Each span that is an LLM call becomes one API call (and its messages, when
the span carries them); every other span is ignored. Three vocabularies are
read, first found wins:

- the OpenTelemetry GenAI conventions: ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
  ``gen_ai.usage.cache_read.input_tokens``,
  ``gen_ai.usage.cache_creation.input_tokens``,
  ``gen_ai.usage.reasoning.output_tokens``, ``gen_ai.response.id``,
  ``gen_ai.conversation.id``, ``gen_ai.response.time_to_first_chunk``,
  ``error.type``, and the messages in ``gen_ai.system_instructions``,
  ``gen_ai.input.messages`` and ``gen_ai.output.messages``;
- OpenInference's (Arize Phoenix): ``openinference.span.kind`` = ``LLM``,
  ``llm.model_name``, ``llm.token_count.*`` (``prompt_details.cache_read``,
  ``prompt_details.cache_write``, ``completion_details.reasoning``),
  ``llm.input_messages.*`` / ``llm.output_messages.*``, ``session.id``,
  ``user.id``, the response id in ``output.value``, and the time of its
  ``First Token Stream Event``;
- OpenLLMetry's older names: ``llm.request.type``,
  ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``,
  ``gen_ai.usage.cache_read_input_tokens``,
  ``gen_ai.usage.cache_creation_input_tokens``, ``gen_ai.usage.reasoning_tokens``,
  ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``, and the time of the first
  ``gen_ai.content.completion.chunk`` event (the first chunk, as it reports no
  first token).

A record's identity is its span's: the call's id is a UUIDv8 laid out as a
UUIDv7 (the span's start in milliseconds, then 74 bits of a SHA-256 of the
trace and span ids), so a span exported twice (a retry, two pipelines) is one
call, and its messages are stored once as any resent conversation is.
Response ids are not used for identity: providers reuse them.

Whom a call belongs to comes from the span, never from the exporting thread:
``session.id`` or ``gen_ai.conversation.id`` is the session (a key, as a
scope's string), ``user.id`` (or ``enduser.id``) the user,
``gen_ai.agent.id`` (or ``gen_ai.agent.name``) the agent, and the recorder's
defaults fill the rest. Usage follows the GenAI conventions (input tokens
include cache reads and writes); an instrumentor that reports cache counts
beyond its input count (Anthropic's own convention) has them added to it.
A span without usage has its tokens counted locally, marked estimated. The
error code is the HTTP status when the span tells it; spans do not carry the
provider's own code (``rate_limit_exceeded``).

``export`` never raises and never blocks an event loop: called on a thread
that runs one (``SimpleSpanProcessor`` under async code), it hands the spans
to a thread of the exporter's; elsewhere (``BatchSpanProcessor``'s thread) the
calls are durable when it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from chatledger.integrations.extras import require

require("opentelemetry.sdk.trace", "otel", "chatledger.integrations.otel")

from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from chatledger.entities import ApiCallStatus, MessageContent  # noqa: E402
from chatledger.ids import keyed_uuid  # noqa: E402
from chatledger.integrations.openai_shapes import (  # noqa: E402
    Message,
    chat_message,
    estimated_usage,
)
from chatledger.recording import CallFields, Recorder, Scope  # noqa: E402
from chatledger.recording import scope as scope_of  # noqa: E402

__all__ = ["ChatledgerSpanExporter", "call_id_for_span"]

logger = logging.getLogger("chatledger.integrations.otel")

_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion"})
_HTTP_STATUS = re.compile(r"\b(?:Error code|status(?: code)?):? (\d{3})\b", re.IGNORECASE)
_FIRST_TOKEN_EVENTS = frozenset({"First Token Stream Event"})
_CHUNK_EVENTS = frozenset({"gen_ai.content.completion.chunk", "llm.content.completion.chunk"})


def call_id_for_span(trace_id: int, span_id: int, start_ns: int | None) -> uuid.UUID:
    """The call id of a span: a UUIDv8 laid out as a UUIDv7 (start ms, then a hash of the ids)."""
    return keyed_uuid(f"{trace_id:032x}{span_id:016x}", (start_ns or 0) // 1_000_000)


class ChatledgerSpanExporter(SpanExporter):
    """An OpenTelemetry ``SpanExporter`` recording the LLM calls among the spans it is given."""

    def __init__(self, recorder: Recorder) -> None:
        """Record into ``recorder``."""
        self._recorder = recorder
        self._shut = False

    @property
    def recorder(self) -> Recorder:
        """The recorder the calls go to."""
        return self._recorder

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Record the LLM calls among ``spans``; never raises."""
        if self._shut:
            return SpanExportResult.FAILURE
        try:
            calls = [span for span in spans if is_llm_span(span.attributes or {})]
            if not calls:
                return SpanExportResult.SUCCESS
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # a thread of its own (BatchSpanProcessor): record here
                return self._record(calls, wait=True)
            # An event loop's thread (SimpleSpanProcessor in async code): never block it.
            return self._record(calls, wait=False)
        except Exception:
            logger.exception("chatledger could not export spans")
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Record what was handed over (up to 10 s); later exports are refused."""
        self.force_flush(10_000)
        self._shut = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Ship what was exported to the store (the recorder's ``flush``); False if it failed.

        On a thread running an event loop it does not wait (the recorder may need
        that very loop): from async code, ``await asyncio.to_thread(...)`` it.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                self._recorder.flush_sync()
            except Exception:
                logger.exception("chatledger could not flush exported spans")
                return False
        return True

    def _record(self, spans: Iterable[ReadableSpan], *, wait: bool) -> SpanExportResult:
        result = SpanExportResult.SUCCESS
        for span in spans:
            try:
                # An empty context: whom the call belongs to comes from the span only,
                # whichever thread happens to export it.
                contextvars.Context().run(self._record_span, span, wait)
            except Exception:
                logger.exception("chatledger could not record the span %s", span.name)
                result = SpanExportResult.FAILURE
        return result

    def _record_span(self, span: ReadableSpan, wait: bool) -> None:
        attributes = span.attributes or {}
        messages, reply = read_messages(attributes)
        fields = read_call(span)
        if fields.get("status") not in (None, ApiCallStatus.SUCCESS):
            reply = None  # a partial reply is not an answer
        elif "prompt_tokens" not in fields and "completion_tokens" not in fields:
            for name, value in estimated_usage(messages, reply, fields["model"] or "").items():
                fields[name] = value  # type: ignore[literal-required]
        scope = read_scope(attributes)
        context = span.get_span_context()
        trace_id, span_id = (
            (0, id(span)) if context is None else (context.trace_id, context.span_id)
        )
        # The span's own identity: exported twice, it is still one call.
        fields["call_id"] = call_id_for_span(trace_id, span_id, span.start_time)
        if wait:
            self._recorder.record_exchange_sync(messages, reply, fields, scope=scope)
        else:
            self._recorder.record_exchange_soon(messages, reply, fields, scope=scope)


def is_llm_span(attributes: Mapping[str, Any]) -> bool:
    """Whether a span's attributes describe one LLM call (chat or completion)."""
    kind = attributes.get("openinference.span.kind")
    if kind is not None:
        return str(kind).upper() == "LLM"
    operation = attributes.get("gen_ai.operation.name")
    if operation is not None:
        return str(operation) in _LLM_OPERATIONS
    request_type = attributes.get("llm.request.type")
    if request_type is not None:
        return str(request_type) in ("chat", "completion")
    return any(
        name in attributes
        for name in ("gen_ai.request.model", "gen_ai.response.model", "gen_ai.usage.input_tokens")
    )


def _first(attributes: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = attributes.get(name)
        if value is not None and value != "":
            return value
    return None


def _int(attributes: Mapping[str, Any], *names: str) -> int | None:
    value = _first(attributes, *names)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def read_call(span: ReadableSpan) -> CallFields:
    """A span's call fields: model, times, usage, response id, outcome."""
    attributes = span.attributes or {}
    output = _output_value(attributes)
    model = _first(attributes, "gen_ai.response.model", "llm.model_name")
    model = model or _first(attributes, "gen_ai.request.model") or _invocation_model(attributes)
    started = _time(span.start_time)
    fields: CallFields = {
        "model": str(model) if model else None,
        "started": started,
        "finished": _time(span.end_time) if span.end_time else None,
        "response_id": _first(attributes, "gen_ai.response.id") or output.get("id") or None,
        "time_to_first_token_ms": _first_token_ms(span),
    }
    prompt = _int(attributes, "gen_ai.usage.input_tokens", "llm.token_count.prompt",
                  "gen_ai.usage.prompt_tokens")  # fmt: skip
    completion = _int(attributes, "gen_ai.usage.output_tokens", "llm.token_count.completion",
                      "gen_ai.usage.completion_tokens")  # fmt: skip
    cached = _int(attributes, "gen_ai.usage.cache_read.input_tokens",
                  "llm.token_count.prompt_details.cache_read",
                  "gen_ai.usage.cache_read_input_tokens")  # fmt: skip
    cache_write = _int(attributes, "gen_ai.usage.cache_creation.input_tokens",
                       "llm.token_count.prompt_details.cache_write",
                       "gen_ai.usage.cache_creation_input_tokens")  # fmt: skip
    reasoning = _int(attributes, "gen_ai.usage.reasoning.output_tokens",
                     "llm.token_count.completion_details.reasoning",
                     "gen_ai.usage.reasoning_tokens", "llm.usage.reasoning_tokens")  # fmt: skip
    if prompt is not None or completion is not None:
        prompt, completion = prompt or 0, completion or 0
        cache = (cached or 0) + (cache_write or 0)
        if cache > prompt:  # input counted without its cache (Anthropic's own convention)
            prompt += cache
        fields["prompt_tokens"] = prompt
        fields["completion_tokens"] = completion
        fields["cached_tokens"] = cached
        fields["cache_write_tokens"] = cache_write
        fields["reasoning_tokens"] = None if reasoning is None else min(reasoning, completion)
    if span.status.status_code is StatusCode.ERROR:
        exception = _exception(span)
        error_type = _first(attributes, "error.type") or exception.get("exception.type") or ""
        message = span.status.description or exception.get("exception.message") or ""
        text = f"{error_type} {message}"
        fields["status"] = _status_from_text(text)
        fields["error_message"] = str(message or error_type or "failed")
        status_code = _int(attributes, "http.response.status_code", "http.status_code")
        found = _HTTP_STATUS.search(str(message))
        if status_code is None and found is not None:
            status_code = int(found.group(1))
        if status_code is not None:
            fields["error"] = _HttpError(str(message), status_code)
    return fields


class _HttpError(Exception):
    """A failure the span described: its message and HTTP status, to derive the error code."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def _status_from_text(text: str) -> ApiCallStatus:
    lowered = text.lower()
    if "ratelimit" in lowered or "rate limit" in lowered or "rate_limit" in lowered:
        return ApiCallStatus.RATE_LIMITED
    if re.search(r"\b429\b", lowered):
        return ApiCallStatus.RATE_LIMITED
    if "timeout" in lowered or "timed out" in lowered:
        return ApiCallStatus.TIMEOUT
    return ApiCallStatus.FAILED


def _exception(span: ReadableSpan) -> Mapping[str, Any]:
    for event in span.events:
        if event.name == "exception":
            return event.attributes or {}
    return {}


def _first_token_ms(span: ReadableSpan) -> int | None:
    """The time to the first token (or chunk) a streamed span reports; None otherwise."""
    attributes = span.attributes or {}
    seconds = _first(attributes, "gen_ai.response.time_to_first_chunk")
    if isinstance(seconds, int | float):
        return int(seconds * 1000)
    for event in span.events:
        if event.name in _FIRST_TOKEN_EVENTS or event.name in _CHUNK_EVENTS:
            return max(0, int((event.timestamp - span.start_time) / 1_000_000))  # type: ignore[operator]
    return None


def _output_value(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """OpenInference's ``output.value`` when it is the provider's JSON response."""
    value = attributes.get("output.value")
    if not isinstance(value, str) or attributes.get("output.mime_type") != "application/json":
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _invocation_model(attributes: Mapping[str, Any]) -> str | None:
    """The model OpenInference's ``llm.invocation_parameters`` asked for (a failed call's)."""
    value = attributes.get("llm.invocation_parameters")
    if not isinstance(value, str):
        return None
    try:
        model = json.loads(value).get("model")
    except (ValueError, AttributeError):
        return None
    return model if isinstance(model, str) else None


def read_scope(attributes: Mapping[str, Any]) -> Scope:
    """Whom the span's call belongs to, from its attributes (unset: the recorder's defaults)."""
    session = _first(attributes, "session.id", "gen_ai.conversation.id")
    user = _first(attributes, "user.id", "enduser.id")
    agent = _first(attributes, "gen_ai.agent.id", "gen_ai.agent.name")
    return scope_of(
        session_id=None if session is None else str(session),
        user_id=None if user is None else str(user),
        agent_id=None if agent is None else str(agent),
    ).ids


# --- messages --------------------------------------------------------------------------------


def read_messages(attributes: Mapping[str, Any]) -> tuple[list[Message], MessageContent | None]:
    """The request's messages and the reply a span carries; empty and None when it carries none."""
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    if "gen_ai.input.messages" in attributes or "gen_ai.output.messages" in attributes:
        inputs = _semconv_instructions(attributes.get("gen_ai.system_instructions"))
        inputs += _semconv_messages(attributes.get("gen_ai.input.messages"))
        outputs = _semconv_messages(attributes.get("gen_ai.output.messages"))
    else:
        for prefix, into in (("llm.input_messages", inputs), ("llm.output_messages", outputs)):
            into += [_openinference(m) for m in _indexed(attributes, prefix)]
        if not inputs and not outputs:
            for prefix, into in (("gen_ai.prompt", inputs), ("gen_ai.completion", outputs)):
                into += [_openllmetry(m) for m in _indexed(attributes, prefix)]
    messages = [chat_message(message) for message in inputs]
    return messages, _reply(outputs)


def _reply(outputs: Sequence[dict[str, Any]]) -> MessageContent | None:
    """The assistant's reply: its output messages as one (a Responses turn lists several)."""
    texts: list[str] = []
    calls: list[Any] = []
    for message in outputs:
        if message.get("role", "assistant") != "assistant":
            continue
        content = chat_message(message)[1]
        if content.text:
            texts.append(content.text)
        calls += content.tool_calls or []
    if not texts and not calls:
        return None
    return MessageContent(text="\n".join(texts) or None, tool_calls=calls or None)


def _indexed(attributes: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.rest`` attributes as one dict of ``rest`` per ``N``, in order of ``N``."""
    found: dict[int, dict[str, Any]] = {}
    head = prefix + "."
    for name, value in attributes.items():
        if not name.startswith(head):
            continue
        index, _, rest = name[len(head) :].partition(".")
        if index.isdigit() and rest:
            found.setdefault(int(index), {})[rest] = value
    return [found[i] for i in sorted(found)]


def _openinference(flat: Mapping[str, Any]) -> dict[str, Any]:
    """One OpenInference message (``message.role``, ``message.content``...) as a chat message."""
    message: dict[str, Any] = {"role": flat.get("message.role") or "user"}
    content = flat.get("message.content")
    if content is None:
        parts = _indexed(flat, "message.contents")
        texts = [p.get("message_content.text") for p in parts if p.get("message_content.text")]
        content = "\n".join(str(t) for t in texts) or None
    message["content"] = content
    calls = _indexed(flat, "message.tool_calls")
    if calls:
        message["tool_calls"] = [
            {"id": c.get("tool_call.id") or "", "function": {
                "name": c.get("tool_call.function.name") or "",
                "arguments": c.get("tool_call.function.arguments")}}
            for c in calls
        ]  # fmt: skip
    if flat.get("message.tool_call_id"):
        message["tool_call_id"] = flat["message.tool_call_id"]
    return message


def _openllmetry(flat: Mapping[str, Any]) -> dict[str, Any]:
    """One legacy OpenLLMetry message (``role``, ``content``, ``tool_calls.N.*``)."""
    message: dict[str, Any] = {"role": flat.get("role") or "user", "content": flat.get("content")}
    calls = _indexed(flat, "tool_calls")
    if calls:
        message["tool_calls"] = [
            {"id": c.get("id") or "", "function": {"name": c.get("name") or "",
                                                   "arguments": c.get("arguments")}}
            for c in calls
        ]  # fmt: skip
    if flat.get("tool_call_id"):
        message["tool_call_id"] = flat["tool_call_id"]
    return message


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return list(value) if isinstance(value, list | tuple) else []


def _semconv_instructions(value: Any) -> list[dict[str, Any]]:
    """``gen_ai.system_instructions`` (a list of parts) as a system message."""
    texts = [str(p.get("content")) for p in _json_list(value)
             if isinstance(p, dict) and p.get("type") == "text" and p.get("content")]  # fmt: skip
    return [{"role": "system", "content": "\n".join(texts)}] if texts else []


def _semconv_messages(value: Any) -> list[dict[str, Any]]:
    """The GenAI conventions' messages (``role`` and typed ``parts``) as chat messages."""
    messages: list[dict[str, Any]] = []
    for item in _json_list(value):
        if not isinstance(item, dict):
            continue
        role = str(item.get("role") or "user")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for part in item.get("parts") or ():
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" and part.get("content"):
                texts.append(str(part["content"]))
            elif kind == "tool_call":
                function = {"name": part.get("name") or "", "arguments": part.get("arguments")}
                calls.append({"id": part.get("id") or "", "function": function})
            elif kind == "tool_call_response":
                response = part.get("response", part.get("result"))
                text = response if isinstance(response, str) else json.dumps(response)
                results.append({"role": "tool", "tool_call_id": part.get("id") or "",
                                "content": text})  # fmt: skip
        if results:
            messages += results
            continue
        message: dict[str, Any] = {"role": role, "content": "\n".join(texts) or None}
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
    return messages


def _time(nanoseconds: int | None) -> datetime:
    if nanoseconds is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC)
