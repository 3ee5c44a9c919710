"""The persistence plugin: every chat turn and every LLM API call, recorded as it happens.

:class:`PersistencePlugin` is an :class:`~chatledger.plugin.kernel.AgentPlugin`
and an :class:`~chatledger.plugin.events.LLMAgentEventHandler`. Around each
chat it records the user's message, then the assistant's reply and one
:class:`~chatledger.entities.LLMApiCall` linking the two (or, when the call
failed, a non-success record with the error's status and code).

A turn that uses tools is recorded as it happens: the assistant's tool-call
message and the API call that asked for it, then one ``tool`` message per
result (linked to its call by ``tool_call_id``), then the final reply and the
API call that produced it, which links the last tool message to the reply.
Each message's parent is the message before it, and there is one API-call
record per model round trip. A call that fails (in any round) is recorded
against the last message, keeping the response id and time to first token
of whatever had arrived.

It records through a :class:`~chatledger.recording.Recorder`, the package's
one write path: each hook returns once its records are durable in the
recorder's spool, and the recorder ships them to the store in batches. A
store that is down never fails or slows the chat; what it could not take yet
waits in the spool, and ships when it is back (or when a later process
starts on the same database, after a crash).

Where MoFA's plugin goes wrong, this one does not:

- **Concurrent chats stay apart.** The turn in progress (its request message,
  start time and model) lives in a context variable, so each chat task sees
  its own; MoFA kept it in fields every chat shared.
- **Parents.** A user message's parent is the session's previous message; a
  reply's parent is the message it answers (the user's, or a tool result).
- **The session is created on first use**, with the plugin's tenant.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self, cast

from chatledger.entities import (
    LLMMessage,
    MessageContent,
    MessageRole,
    ToolCallContent,
    ToolResultContent,
    utc_now,
)
from chatledger.plugin.events import LLMAgentEventHandler, LLMResponseMetadata
from chatledger.plugin.kernel import AgentPlugin, PluginMetadata, PluginType
from chatledger.pricing import PricingRegistry
from chatledger.recording.recorder import CallFields, Recorder, SpoolChoice
from chatledger.recording.scope import Scope
from chatledger.stores.base import ApiCallStore, MessageStore, PersistenceStore, SessionStore
from chatledger.usage import count_tokens

__all__ = ["PersistencePlugin"]

logger = logging.getLogger(__name__)

CAPABILITIES = ("message_persistence", "api_call_logging", "session_history")
_UNKNOWN_MODEL = "unknown"


@dataclass(slots=True)
class _Turn:
    """One chat in progress: what its next API call and reply will link to.

    ``request`` is the message the next model call answers: the user's at
    first, then the last tool result; ``started`` is when that call began.
    """

    request: LLMMessage
    started: datetime
    model: str = _UNKNOWN_MODEL
    recorded: bool = False
    opening: str | None = None  # the user's text, to know a turn before_chat opened


class PersistencePlugin(AgentPlugin, LLMAgentEventHandler):
    """Records an agent's chats and its LLM API calls in a chatledger store."""

    def __init__(
        self,
        plugin_id: str,
        message_store: MessageStore,
        api_call_store: ApiCallStore,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
        session_id: uuid.UUID,
        session_store: SessionStore | None = None,
        *,
        pricing: PricingRegistry | None = None,
        provider: str = "openai",
        recorder: Recorder | None = None,
        spool: SpoolChoice = "auto",
        background: bool | None = None,
    ) -> None:
        """Record into the given store for one user, tenant, agent and session.

        MoFA passes the message, API-call and session stores apart; chatledger
        records through one store, so they must be one store object (as
        :meth:`from_store` makes them). Records go through ``recorder``, else
        through the recorder every plugin of this store shares with the same
        ``pricing``, ``provider`` and ``spool`` (:meth:`Recorder.shared`): one
        spool and one shipper for them all, however many plugins an app makes.
        ``background`` is accepted for older code and changes nothing: hooks
        never wait for the store any more, and are durable when they return.
        """
        AgentPlugin.__init__(
            self,
            PluginMetadata(
                id=plugin_id,
                name="chatledger persistence",
                plugin_type=PluginType.STORAGE,
                description="Saves chat messages and LLM API calls",
                capabilities=CAPABILITIES,
            ),
        )
        stores = {id(s) for s in (message_store, api_call_store, session_store) if s is not None}
        if len(stores) != 1:
            raise ValueError(
                "PersistencePlugin records through one store: pass the same store as message, "
                "API-call and session store (PersistencePlugin.from_store does)"
            )
        if recorder is None:
            # The Recorder refuses, with what it needs, a store that is not a whole one.
            whole = cast(PersistenceStore, message_store)
            recorder = Recorder.shared(whole, pricing=pricing, provider=provider, spool=spool)
        self._recorder = recorder
        self._messages = message_store
        self._api_calls = api_call_store
        self._sessions = session_store
        self._user_id = user_id
        self._tenant_id = tenant_id
        self._agent_id = agent_id
        self._session_id = session_id
        self._scope = self._make_scope()
        self._turn: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar(
            f"chatledger_turn_{plugin_id}", default=None
        )

    @classmethod
    def from_store(
        cls,
        plugin_id: str,
        store: PersistenceStore,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
        session_id: uuid.UUID,
        **options: Any,
    ) -> Self:
        """A plugin whose messages, API calls and sessions all go to ``store``."""
        return cls(plugin_id, store, store, user_id, tenant_id, agent_id, session_id, store,
                   **options)  # fmt: skip

    def with_session_id(self, session_id: uuid.UUID) -> Self:
        """The same plugin, recording into another session from now on."""
        self._session_id = session_id
        self._scope = self._make_scope()
        return self

    def _make_scope(self) -> Scope:
        return Scope(
            tenant_id=self._tenant_id,
            user_id=self._user_id,
            agent_id=self._agent_id,
            session_id=self._session_id,
        )

    # --- getters -------------------------------------------------------------------------

    @property
    def session_id(self) -> uuid.UUID:
        """The session being recorded into."""
        return self._session_id

    @property
    def user_id(self) -> uuid.UUID:
        """The user whose chats are recorded."""
        return self._user_id

    @property
    def tenant_id(self) -> uuid.UUID:
        """The tenant records belong to."""
        return self._tenant_id

    @property
    def agent_id(self) -> uuid.UUID:
        """The agent whose chats are recorded."""
        return self._agent_id

    @property
    def message_store(self) -> MessageStore:
        """Where messages go."""
        return self._messages

    @property
    def api_call_store(self) -> ApiCallStore:
        """Where API-call records go."""
        return self._api_calls

    @property
    def session_store(self) -> SessionStore | None:
        """Where sessions go, if the plugin creates them."""
        return self._sessions

    @property
    def recorder(self) -> Recorder:
        """The recorder every record goes through."""
        return self._recorder

    def stats(self) -> dict[str, Any]:
        """MoFA's plugin stats and ids, plus what was recorded, stored and still waits."""
        recorded = self._recorder.stats()
        return {
            **super().stats(),
            "plugin_type": self.metadata.plugin_type.value,
            "user_id": str(self._user_id),
            "tenant_id": str(self._tenant_id),
            "agent_id": str(self._agent_id),
            "session_id": str(self._session_id),
            "messages_saved": recorded["messages_shipped"],
            "api_calls_saved": recorded["api_calls_shipped"],
            "store_failures": recorded["store_failures"],
            "pending": recorded["waiting"],
            "dead_letters": recorded["dead_letters"],
            "dropped": recorded["dropped"],
            "spool": recorded["spool"],
        }

    # --- history and manual saves --------------------------------------------------------

    async def load_history(self) -> list[LLMMessage]:
        """The session's messages, oldest first; later messages are linked after them."""
        await self._recorder.flush()  # what this process recorded is read back too
        history = await self._messages.get_session_messages(self._session_id)
        self._recorder.remember(self._session_id, history)
        return history

    async def save_user_message(self, text: str) -> LLMMessage:
        """Record a user message (linked after the session's last one) and return it."""
        return await self._recorder.record_message(MessageRole.USER, text, scope=self._scope)

    async def save_assistant_message(self, text: str) -> LLMMessage:
        """Record an assistant message (linked after the session's last one) and return it."""
        return await self._recorder.record_message(MessageRole.ASSISTANT, text, scope=self._scope)

    # --- chat events ----------------------------------------------------------------------

    async def before_chat(self, message: str) -> str | None:
        """Record the user's message and open the turn it starts."""
        await self._begin_turn(message, _UNKNOWN_MODEL)
        return None

    async def before_chat_with_model(self, message: str, model: str) -> str | None:
        """As :meth:`before_chat`, remembering the model the turn asks for."""
        turn = self._turn.get()
        if turn is not None and not turn.recorded and turn.opening == message:
            turn.model = model  # before_chat already opened this turn
        else:
            await self._begin_turn(message, model)
        return None

    async def after_chat(self, response: str) -> str | None:
        """Record the reply and its API call, counting tokens locally (no usage was given)."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return None
        asked = turn.request.content
        prompt, how = count_tokens(
            asked.text or (asked.tool_result.content if asked.tool_result else ""), turn.model
        )
        completion, _ = count_tokens(response, turn.model)
        metadata = LLMResponseMetadata(
            model=turn.model, prompt_tokens=prompt, completion_tokens=completion, estimated=True
        )
        await self._finish_turn(turn, response, metadata, counted_by=how)
        return None

    async def after_chat_with_metadata(
        self, response: str, metadata: LLMResponseMetadata
    ) -> str | None:
        """Record the reply and one API call with the model, tokens, timing and price."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return None
        await self._finish_turn(turn, response, metadata, counted_by=None)
        return None

    async def after_chat_with_tool_calls(
        self, response: str, tool_calls: Sequence[ToolCallContent], metadata: LLMResponseMetadata
    ) -> None:
        """Record the assistant's tool-call message and the API call that asked for the tools."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return
        content = MessageContent(text=response or None, tool_calls=list(tool_calls))
        try:
            reply, _ = await self._recorder.record_reply(
                turn.request.id, content, self._call_fields(turn, metadata), scope=self._scope
            )
        except Exception:  # the chat goes on; later records link to what was recorded
            logger.exception("chatledger could not record a tool-call message")
            return
        turn.request = reply

    async def on_tool_result(self, call: ToolCallContent, result: ToolResultContent) -> None:
        """Record a tool result (role ``tool``) after the turn's last message."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return
        try:
            message = await self._recorder.record_message(
                MessageRole.TOOL,
                MessageContent.from_tool_result(result),
                parent_id=turn.request.id,
                scope=self._scope,
            )
        except Exception:
            logger.exception("chatledger could not record a tool result")
            return
        turn.request = message
        # The next model call starts once its last tool result is in.
        turn.started = utc_now()

    async def on_error(self, error: BaseException) -> str | None:
        """Record a non-success API call whose status follows the error."""
        return await self.on_error_with_metadata(error, None)

    async def on_error_with_metadata(
        self, error: BaseException, metadata: LLMResponseMetadata | None
    ) -> str | None:
        """Record a non-success API call, keeping what had arrived (response id, first token)."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return None
        turn.recorded = True
        fields: CallFields = {
            "model": turn.model,
            "started": turn.started,
            "finished": utc_now(),
            "request_message_id": turn.request.id,
            "error": error,
        }
        if metadata is not None:
            # What had arrived: the id, the first token, and any usage (tokens spent are spent).
            fields.update(self._call_fields(turn, metadata))
        await self._safely(self._recorder.record_call(scope=self._scope, **fields))
        return None

    # --- lifecycle ------------------------------------------------------------------------

    async def on_stop(self) -> None:
        """Ship whatever waits."""
        await self.flush()

    async def close(self) -> None:
        """Ship what waits (the recorder, shared, goes on; it ships the rest at exit)."""
        await self._recorder.flush()

    async def flush(self) -> int:
        """Ship every waiting record now; return how many still wait (the store may be down)."""
        return await self._recorder.flush()

    # --- internals ------------------------------------------------------------------------

    async def _begin_turn(self, text: str, model: str) -> None:
        try:
            request = await self._recorder.record_message(MessageRole.USER, text, scope=self._scope)
        except Exception:  # the chat goes on; this turn is not recorded
            logger.exception("chatledger could not record a user message")
            self._turn.set(None)
            return
        self._turn.set(
            _Turn(request=request, started=request.create_time, model=model, opening=text)
        )

    async def _finish_turn(
        self,
        turn: _Turn,
        response: str,
        metadata: LLMResponseMetadata,
        *,
        counted_by: str | None,
    ) -> None:
        turn.recorded = True
        fields = self._call_fields(turn, metadata, counted_by=counted_by)
        await self._safely(
            self._recorder.record_reply(turn.request.id, response, fields, scope=self._scope)
        )

    @staticmethod
    def _call_fields(
        turn: _Turn, metadata: LLMResponseMetadata, *, counted_by: str | None = None
    ) -> CallFields:
        """The API call of one model round trip of ``turn``, from what its response said."""
        return {
            "model": metadata.model or turn.model,
            "started": turn.started,
            "prompt_tokens": metadata.prompt_tokens,
            "completion_tokens": metadata.completion_tokens,
            "cached_tokens": metadata.cached_tokens,
            "reasoning_tokens": metadata.reasoning_tokens,
            "time_to_first_token_ms": metadata.time_to_first_token_ms,
            "response_id": metadata.id,
            "estimated": metadata.estimated,
            "counted_by": counted_by,
        }

    @staticmethod
    async def _safely(recording: Any) -> None:
        """Await a recording; a failure to record is logged, never raised into the chat."""
        try:
            await recording
        except Exception:
            logger.exception("chatledger could not record a turn")
