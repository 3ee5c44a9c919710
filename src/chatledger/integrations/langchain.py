"""LangChain: a callback handler recording every chat-model call, and a chat message history.

    from chatledger.integrations.langchain import ChatledgerCallbackHandler

    model = ChatOpenAI(model="gpt-4o-mini", callbacks=[ChatledgerCallbackHandler(recorder)])

or per call, ``model.invoke(messages, config={"callbacks": [handler]})``. The
usage is LangChain's ``usage_metadata`` (the provider's counts: cache reads
and writes, reasoning), the model the provider answered as, the provider's
response id where LangChain keeps it, and each run's error. A call whose
provider reported no usage (a stream without ``stream_usage``) is counted
locally and marked estimated.

The module has three parts: LangChain's messages read into chatledger's
(``_to_record``, shared by what records conversations here), the callback
handler, then :class:`ChatledgerChatMessageHistory`, a
``BaseChatMessageHistory`` keeping a LangChain session's messages as
chatledger messages (see its docstring).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from chatledger.entities import (
    LLMMessage,
    MessageContent,
    MessageRole,
    ToolCallContent,
    ToolResultContent,
    utc_now,
)
from chatledger.errors import SerializationError
from chatledger.integrations import extras
from chatledger.integrations.memory import ConversationMemory
from chatledger.integrations.openai_shapes import (
    Message,
    content_text,
    estimated_usage,
    tool_arguments,
)
from chatledger.recording.recorder import CallFields, CallUsage, Recorder
from chatledger.recording.scope import Scope, current_scope, scope

if TYPE_CHECKING:
    from chatledger.stores.base import PersistenceStore
    from chatledger.sync import SyncStore

extras.require("langchain_core", "langchain", "chatledger.integrations.langchain")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.chat_history import BaseChatMessageHistory  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult  # noqa: E402

__all__ = ["ChatledgerCallbackHandler", "ChatledgerChatMessageHistory"]

logger = logging.getLogger("chatledger.integrations.langchain")

# --- LangChain's messages as chatledger's ------------------------------------------------------

_ROLES = {
    "system": MessageRole.SYSTEM,
    "developer": MessageRole.SYSTEM,
    "human": MessageRole.USER,
    "user": MessageRole.USER,
    "ai": MessageRole.ASSISTANT,
    "assistant": MessageRole.ASSISTANT,
    "tool": MessageRole.TOOL,
    "function": MessageRole.TOOL,
    # Streams end with chunks, whose type names their class.
    "SystemMessageChunk": MessageRole.SYSTEM,
    "HumanMessageChunk": MessageRole.USER,
    "AIMessageChunk": MessageRole.ASSISTANT,
    "ToolMessageChunk": MessageRole.TOOL,
    "FunctionMessageChunk": MessageRole.TOOL,
}


def _tool_calls(message: BaseMessage) -> list[ToolCallContent]:
    """An AI message's tool calls; the ones LangChain could not parse keep their text."""
    calls = [(call.get("id"), call.get("name"), call.get("args"))
             for call in getattr(message, "tool_calls", None) or ()]  # fmt: skip
    calls += [(call.get("id"), call.get("name"), tool_arguments(call.get("args")))
              for call in getattr(message, "invalid_tool_calls", None) or ()]  # fmt: skip
    return [ToolCallContent(id=id_ or "", name=name or "", arguments=arguments)
            for id_, name, arguments in calls]  # fmt: skip


def _to_record(message: BaseMessage) -> Message:
    """One LangChain message as the recorder takes it: the same for a reply and its resending.

    The rules are :mod:`~chatledger.integrations.openai_shapes`'s: text None
    when empty, tool-call arguments as parsed objects, a tool result linked to
    its call.
    """
    kind = str(getattr(message, "role", None) or message.type)
    role = _ROLES.get(kind, MessageRole.USER)
    text, attachments = content_text(message.content)
    if role is MessageRole.TOOL:
        call_id = getattr(message, "tool_call_id", None) or message.name or ""
        is_error = getattr(message, "status", None) == "error"
        result = ToolResultContent(tool_call_id=call_id, content=text or "", is_error=is_error)
        return role, MessageContent(tool_result=result)
    extra: dict[str, Any] = {}
    if message.name:
        extra["name"] = message.name
    refusal = message.additional_kwargs.get("refusal")
    if refusal:
        extra["refusal"] = refusal
    if attachments:
        extra["attachments"] = attachments
    calls = _tool_calls(message) if role is MessageRole.ASSISTANT else []
    return role, MessageContent(text=text, tool_calls=calls or None, **extra)


# --- the callback handler ------------------------------------------------------------------------

_SCOPE_KEYS = ("tenant_id", "user_id", "agent_id", "session_id")


@dataclass(slots=True)
class _Run:
    """What is known of one chat-model run between its start and its end."""

    messages: list[Message]
    model: str | None
    provider: str | None
    scope: Scope
    started: Any = field(default_factory=utc_now)
    clock: float = field(default_factory=time.perf_counter)
    streamed: bool = False
    first_token_ms: int | None = None


def _usage(message: Any) -> CallUsage:
    """LangChain's ``usage_metadata`` as :class:`CallUsage`; empty when it has none."""
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return {}
    inputs = usage.get("input_token_details") or {}
    outputs = usage.get("output_token_details") or {}
    return {
        "prompt_tokens": usage.get("input_tokens") or 0,
        "completion_tokens": usage.get("output_tokens") or 0,
        "cached_tokens": inputs.get("cache_read"),
        "cache_write_tokens": inputs.get("cache_creation") or None,
        "reasoning_tokens": outputs.get("reasoning"),
    }


def _response_id(message: Any, llm_output: Mapping[str, Any] | None) -> str | None:
    """The provider's response id; LangChain's own run ids (``run-``, ``lc_run-``) are not."""
    metadata = getattr(message, "response_metadata", None) or {}
    for candidate in (
        metadata.get("id"),
        (llm_output or {}).get("id"),
        getattr(message, "id", None),
    ):
        if (
            isinstance(candidate, str)
            and candidate
            and not candidate.startswith(("run-", "lc_run"))
        ):
            return candidate
    return None


def _said_something(token: Any, chunk: Any) -> bool:
    """Whether a streamed piece carries output: text, or a tool call (which has no token)."""
    if token:
        if isinstance(token, str):
            return True
        if any(not isinstance(p, Mapping) or p.get("text") or p.get("type") not in ("text", None)
               for p in token):  # fmt: skip
            return True
    message = getattr(chunk, "message", None)
    return bool(getattr(message, "tool_call_chunks", None))


class ChatledgerCallbackHandler(BaseCallbackHandler):
    """Records each chat-model call of a LangChain run: request, reply, usage, timing, errors.

    Works for ``invoke``, ``ainvoke``, ``stream``, ``astream`` and ``batch``.
    The scope in force where the model is called is the call's; a run's
    ``metadata`` may name ids too (``chatledger_session_id``,
    ``chatledger_user_id``, ``chatledger_agent_id``, ``chatledger_tenant_id``),
    which win. Recording never raises into LangChain or the caller.
    """

    # Called in the caller's thread and task, async runs included: the scope is the
    # caller's and no executor hop is paid per streamed token.
    run_inline = True
    raise_error = False

    def __init__(self, recorder: Recorder) -> None:
        """Record into ``recorder``, priced by its pricing registry."""
        super().__init__()
        self.recorder = recorder
        self._runs: dict[uuid.UUID, _Run] = {}
        self._lock = threading.Lock()

    # --- LangChain's events ------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember the run's request, model and scope (this runs in the caller's context)."""
        try:
            params = kwargs.get("invocation_params") or {}
            metadata = metadata or {}
            model = params.get("model") or params.get("model_name") or metadata.get("ls_model_name")
            run = _Run(
                messages=[_to_record(m) for m in (messages[0] if messages else ())],
                model=model,
                provider=metadata.get("ls_provider"),
                scope=_scope_of(metadata),
            )
            with self._lock:
                self._runs[run_id] = run
        except Exception:
            logger.warning("chatledger could not read a LangChain run's start", exc_info=True)

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note that the run streams, and when its first output came."""
        run = self._runs.get(run_id)
        if run is None:
            return
        run.streamed = True
        if run.first_token_ms is None and _said_something(token, chunk):
            run.first_token_ms = int((time.perf_counter() - run.clock) * 1000)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record the run's call and reply."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        try:
            generations = response.generations[0] if response.generations else []
            message = getattr(generations[0], "message", None) if generations else None
            call = self._call(run)
            reply = _to_record(message)[1] if message is not None else None
            metadata = getattr(message, "response_metadata", None) or {}
            llm_output = response.llm_output or {}
            call["model"] = metadata.get("model_name") or llm_output.get("model_name") or run.model
            call["response_id"] = _response_id(message, llm_output)
            usage = _usage(message)
            if not usage:  # the provider sent none: counted here, and said so
                usage = estimated_usage(run.messages, reply, call["model"] or "")
            call.update(cast(CallFields, usage))
            self._record(run, reply, call)
        except Exception:
            logger.warning("chatledger could not record a LangChain call", exc_info=True)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record the run's failed call (its request is stored; no reply)."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        try:
            call = self._call(run)
            call["error"] = error
            self._record(run, None, call)
        except Exception:
            logger.warning("chatledger could not record a LangChain call", exc_info=True)

    # --- recording ---------------------------------------------------------------------------

    def _call(self, run: _Run) -> CallFields:
        call: CallFields = {"model": run.model, "started": run.started, "finished": utc_now()}
        if run.provider:
            call["provider"] = run.provider
        if run.streamed:
            call["time_to_first_token_ms"] = run.first_token_ms
        return call

    def _record(self, run: _Run, reply: MessageContent | None, call: CallFields) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.recorder.record_exchange_sync(run.messages, reply, call, scope=run.scope)
        else:
            # On an event loop's thread (async runs call inline): never block it; the
            # recorder's loop takes the record, and its flush() and close() wait for it.
            self.recorder.record_exchange_soon(run.messages, reply, call, scope=run.scope)

    def __repr__(self) -> str:
        return f"ChatledgerCallbackHandler({self.recorder!r})"


def _scope_of(metadata: Mapping[str, Any]) -> Scope:
    """The scope in force, with the ids a run's metadata names (``chatledger_session_id``...)."""
    named = {key: metadata[f"chatledger_{key}"] for key in _SCOPE_KEYS
             if metadata.get(f"chatledger_{key}") is not None}  # fmt: skip
    if not named:
        return current_scope()
    with scope(**named):
        return current_scope()


# --- the chat message history ------------------------------------------------------------------

_KEPT = "langchain_message"
"""The content key holding LangChain's own form of a message (``message_to_dict``)."""


def _stored(message: BaseMessage) -> tuple[MessageRole, MessageContent]:
    """A LangChain message as stored: chatledger's columns, and LangChain's dict to rebuild it."""
    if not isinstance(message, BaseMessage):
        raise TypeError(f"a chat history holds LangChain messages, not {type(message).__name__}")
    role, content = _to_record(message)
    kept = {**content.extra, _KEPT: message_to_dict(message)}
    return role, MessageContent(
        text=content.text, tool_calls=content.tool_calls, tool_result=content.tool_result, **kept
    )


def _restored(message: LLMMessage) -> BaseMessage:
    """The LangChain message a stored one was; one written by other means, from its columns."""
    kept = message.content.extra.get(_KEPT)
    if kept is None:
        return _from_columns(message)
    try:
        return messages_from_dict([kept])[0]
    except Exception as exc:  # a row edited by hand, or by a LangChain that knows more types
        raise SerializationError(
            f"message {message.id} does not hold a LangChain message LangChain can read: {exc}"
        ) from exc


def _from_columns(message: LLMMessage) -> BaseMessage:
    """A message chatledger recorded itself (a Recorder's, the agent's), in LangChain's terms."""
    content, id_ = message.content, str(message.id)
    text = content.text or ""
    if message.role is MessageRole.SYSTEM:
        return SystemMessage(content=text, id=id_)
    if message.role is MessageRole.TOOL:
        result = content.tool_result
        return ToolMessage(
            content=result.content if result else text,
            tool_call_id=result.tool_call_id if result else "",
            status="error" if result and result.is_error else "success",
            id=id_,
        )
    if message.role is MessageRole.ASSISTANT:
        calls, invalid = [], []
        for call in content.tool_calls or ():
            if isinstance(call.arguments, dict):
                calls.append({"name": call.name, "args": call.arguments, "id": call.id})
            else:  # arguments the model wrote as something other than an object
                invalid.append({"name": call.name, "args": tool_arguments(call.arguments),
                                "id": call.id, "error": None})  # fmt: skip
        return AIMessage(content=text, tool_calls=calls, invalid_tool_calls=invalid, id=id_)
    return HumanMessage(content=text, id=id_)


class ChatledgerChatMessageHistory(BaseChatMessageHistory):
    """A LangChain session's messages, kept in chatledger: one row per message, in order.

        history = ChatledgerChatMessageHistory("user-42", store, user_id="u-42")
        RunnableWithMessageHistory(chain, lambda session_id: ChatledgerChatMessageHistory(
            session_id, store))

    ``session_id`` is any string (a UUID string is the chatledger session's id
    as is; another string maps to a stable id, and the session keeps it in
    ``metadata["key"]``); ``store`` is an async store (``chatledger.connect``)
    or a blocking one (``chatledger.sync.connect``). Each message keeps
    LangChain's own form (``message_to_dict``) in its content under
    ``"langchain_message"``, so every type, chunks included, comes back equal,
    ids and ``additional_kwargs`` too; chatledger's role, text, tool calls and
    tool result are filled from it for the CLI, stats and dashboard. Messages
    chatledger recorded by other means read back from those columns.

    Writes are in the database when the method returns (``add_messages`` in one
    transaction), and reads see them at once. Sync methods work from any thread
    (also one running an event loop), async ones from any loop. Database
    failures raise :class:`chatledger.errors.PersistenceError`.
    """

    def __init__(
        self,
        session_id: str | uuid.UUID,
        store: PersistenceStore | SyncStore,
        *,
        tenant_id: str | uuid.UUID | None = None,
        user_id: str | uuid.UUID | None = None,
        agent_id: str | uuid.UUID | None = None,
    ) -> None:
        """Keep the messages of session ``session_id`` in ``store``, for these ids."""
        super().__init__()
        self.session_id = str(session_id)
        self.memory = ConversationMemory(
            self.session_id,
            store,
            tenant_id=tenant_id,
            user_id=user_id,
            agent_id=agent_id,
            source=_KEPT,
        )

    @property
    def chatledger_session_id(self) -> uuid.UUID:
        """The chatledger session holding the messages."""
        return self.memory.session_id

    # LangChain declares ``messages`` an attribute; here reading it is a query.
    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the session, oldest first."""
        return [_restored(m) for m in self.memory.read_sync()]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` in order, in one transaction."""
        items = [_stored(m) for m in messages]
        if items:
            self.memory.append_sync(items)

    def clear(self) -> None:
        """Delete every message of the session."""
        self.memory.clear_sync()

    async def aget_messages(self) -> list[BaseMessage]:
        """Every message of the session, oldest first."""
        return [_restored(m) for m in await self.memory.read()]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` in order, in one transaction."""
        items = [_stored(m) for m in messages]
        if items:
            await self.memory.append(items)

    async def aclear(self) -> None:
        """Delete every message of the session."""
        await self.memory.clear()

    def __repr__(self) -> str:
        return f"ChatledgerChatMessageHistory(session_id={self.session_id!r})"
