"""The OpenAI Agents SDK in chatledger: its model calls recorded, its sessions kept.

Two parts, independent of each other:

- :class:`ChatledgerTracingProcessor` records each model call of a run, from
  the SDK's own trace spans (below).
- :class:`ChatledgerSession` is an Agents SDK ``Session`` (conversation
  memory) whose items live in chatledger, one message per item: see its
  section at the end of this module.

Recording model calls
---------------------

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
import copy
import json
import logging
import math
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from chatledger.integrations.extras import require

require("agents", "openai-agents", "chatledger.integrations.openai_agents")

import pydantic_core  # noqa: E402
from agents.items import TResponseInputItem  # noqa: E402
from agents.memory.session_settings import (  # noqa: E402
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)
from agents.tracing import (  # noqa: E402  (after the extra is known to be installed)
    AgentSpanData,
    GenerationSpanData,
    ResponseSpanData,
    Span,
    Trace,
    TracingProcessor,
)
from agents.tracing.span_data import TurnSpanData  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from chatledger.entities import (  # noqa: E402
    ApiCallStatus,
    LLMMessage,
    MessageContent,
    MessageRole,
)
from chatledger.errors import SerializationError  # noqa: E402
from chatledger.integrations.memory import ConversationMemory  # noqa: E402
from chatledger.integrations.openai_shapes import (  # noqa: E402
    Message,
    chat_message,
    chat_messages,
    estimated_usage,
    field,
    responses_input,
    responses_item,
    responses_output,
    responses_usage,
)
from chatledger.recording import CallFields, CallUsage, Recorder, Scope, current_scope  # noqa: E402
from chatledger.recording import scope as scope_of  # noqa: E402
from chatledger.stores import PersistenceStore  # noqa: E402
from chatledger.stores.encoding import ensure_storable_text  # noqa: E402
from chatledger.sync import SyncStore  # noqa: E402

__all__ = ["ChatledgerSession", "ChatledgerTracingProcessor"]

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


# =========================================================================================
# The session: an Agents SDK conversation's items kept in chatledger
# =========================================================================================
#
# ``Runner.run(agent, input, session=ChatledgerSession("user-42", store))`` reads the
# conversation before each turn and appends what the turn added. Each item is one
# chatledger message (see chatledger.integrations.memory for order, durability and
# threads): the SDK's item itself is kept in the content's ``openai_agents_item`` key and
# given back exactly, while role, text, tool calls and tool results are filled from it for
# chatledger's own readers (API, CLI, statistics, dashboard).

ITEM_KEY = "openai_agents_item"
"""The message content key holding the SDK's item as the SDK gave it."""
ESCAPED_ITEM_KEY = "openai_agents_item_json"
"""Where an item no database stores as JSON (a NUL character in its text) is kept as JSON text."""


class ChatledgerSession:
    """An Agents SDK ``Session`` whose items are chatledger messages, one per item, in order.

    ``session_id`` is the SDK's session key (any string; a UUID string is the
    chatledger session id itself); ``store`` an async or blocking chatledger
    store; ``tenant_id``, ``user_id`` and ``agent_id`` (UUIDs or keys) own the
    chatledger session, made on the first write. ``session_settings`` as the
    SDK's own sessions take them (``SessionSettings(limit=...)``).

    ``get_items(limit)`` follows ``SQLiteSession``: None (and no settings
    limit) gives every item, a positive limit the newest that many, oldest
    first, 0 none, and a negative limit every item. Messages of the session
    that came from elsewhere (chatledger's agent, a recorder) read as the
    SDK's easy input messages, function calls and their outputs.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        store: PersistenceStore | SyncStore,
        *,
        tenant_id: uuid.UUID | str | None = None,
        user_id: uuid.UUID | str | None = None,
        agent_id: uuid.UUID | str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        """A session named ``session_id`` kept in ``store``."""
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        self._memory = ConversationMemory(
            session_id, store, tenant_id=tenant_id, user_id=user_id, agent_id=agent_id,
            source=ITEM_KEY,
        )  # fmt: skip
        self._copy = self._memory.store.backend_name == "memory"  # it hands out what it holds

    @property
    def memory(self) -> ConversationMemory:
        """The chatledger memory underneath (``memory.session_id`` is the chatledger session)."""
        return self._memory

    def __repr__(self) -> str:
        return f"ChatledgerSession({self.session_id!r}, {self._memory.store!r})"

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The conversation's items, oldest first; with ``limit``, the newest ``limit`` of them."""
        resolved = resolve_session_limit(limit, self.session_settings)
        if resolved == 0:
            return []
        if resolved is None or resolved < 0:  # SQLiteSession: a negative LIMIT is no limit
            return self._items(await self._memory.read())
        items = self._items(await self._memory.read(resolved))
        return items[-resolved:]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order, in one transaction: stored when this returns."""
        if items:
            await self._memory.append([_message_of(item) for item in items])

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; None when the session is empty."""
        message = await self._memory.pop()
        if message is None:
            return None
        items = self._items([message])
        return items[-1] if items else None

    async def clear_session(self) -> None:
        """Remove every item of the session."""
        await self._memory.clear()

    def close(self) -> None:
        """Nothing to release (as ``SQLiteSession.close``): the store is the caller's to close."""

    def _items(self, messages: list[LLMMessage]) -> list[TResponseInputItem]:
        items: list[TResponseInputItem] = []
        for message in messages:
            items += _items_of(message)
        return copy.deepcopy(items) if self._copy else items


def _message_of(item: Any) -> tuple[MessageRole, MessageContent]:
    """An SDK item as a chatledger message: its columns read from it, the item kept whole."""
    if isinstance(item, BaseModel):  # an SDK model: its wire form, the fields it was given
        data = item.model_dump(mode="json", by_alias=True, exclude_unset=True)
    else:  # a dict (as the SDK hands them), copied as plain JSON values
        data = pydantic_core.to_jsonable_python(item, by_alias=True)
    role, content = responses_item(data)
    fields: dict[str, Any] = {
        "text": content.text,
        "tool_calls": content.tool_calls,
        "tool_result": content.tool_result,
        **content.extra,
    }
    if _storable(data):
        fields[ITEM_KEY] = data
    else:
        # Kept as JSON text (its NULs and lone surrogates escaped, so the item still comes
        # back exactly); the columns lose what no database stores.
        fields = {key: _scrub(value) for key, value in fields.items() if value is not None}
        fields = _scrub(MessageContent(**fields).model_dump(mode="json"))
        fields[ESCAPED_ITEM_KEY] = json.dumps(data)
    return role, MessageContent(**fields)


def _storable(data: Any) -> bool:
    """Whether every backend stores ``data`` as JSON exactly (one cheap screen first)."""
    try:
        text = pydantic_core.to_json(data, inf_nan_mode="constants")
    except pydantic_core.PydanticSerializationError:  # a lone surrogate
        return False
    if b"\\u0000" in text or b"NaN" in text or b"Infinity" in text:
        try:
            ensure_storable_text(data, "item")
        except SerializationError:
            return False
    return True


def _scrub(value: Any) -> Any:
    """``value`` with what no database stores replaced: NUL and lone surrogates, NaN."""
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


def _items_of(message: LLMMessage) -> list[TResponseInputItem]:
    """The SDK items a message stands for: the one kept, else read from its columns."""
    extra = message.content.model_extra or {}
    if ITEM_KEY in extra:
        return [cast(TResponseInputItem, extra[ITEM_KEY])]
    if ESCAPED_ITEM_KEY in extra:
        return [cast(TResponseInputItem, json.loads(extra[ESCAPED_ITEM_KEY]))]
    # A message chatledger's agent or a recorder wrote: as the SDK's input items.
    content = message.content
    items: list[dict[str, Any]] = []
    if content.tool_result is not None:
        result = content.tool_result
        items.append({"type": "function_call_output", "call_id": result.tool_call_id,
                      "output": result.content})  # fmt: skip
    if content.text is not None:
        role = "developer" if message.role is MessageRole.SYSTEM else message.role.value
        if role == "tool":
            role = "user"
        items.append({"role": role, "content": content.text})
    for call in content.tool_calls or ():
        arguments = call.arguments
        items.append(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
            }
        )
    return cast(list[TResponseInputItem], items)
