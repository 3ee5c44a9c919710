"""The persistence plugin: every chat turn and every LLM API call, recorded as it happens.

:class:`PersistencePlugin` is an :class:`~chatledger.plugin.kernel.AgentPlugin`
and an :class:`~chatledger.plugin.events.LLMAgentEventHandler`. Around each
chat it saves the user's message, then the assistant's reply and one
:class:`~chatledger.entities.LLMApiCall` linking the two (or, when the call
failed, a non-success record with the error's status and code).

Where MoFA's plugin goes wrong, this one does not:

- **Concurrent chats stay apart.** The turn in progress (its request message,
  start time and model) lives in a context variable, so each chat task sees
  its own; MoFA kept it in fields every chat shared.
- **Parents.** A user message's parent is the session's previous message; a
  reply's parent is the message it answers.
- **A store failure never fails the chat.** It is logged and counted in
  :meth:`stats`, and the record waits in order (session before messages) to
  be stored again: on the next record, on a timer whose pause doubles (from
  half a second to 30 s) while the store stays down, and at :meth:`close`.
- **The session is created on first use**, with the plugin's tenant.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from chatledger.entities import (
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageRole,
    TokenDetails,
)
from chatledger.plugin.events import LLMAgentEventHandler, LLMResponseMetadata
from chatledger.plugin.kernel import AgentPlugin, PluginMetadata, PluginType
from chatledger.plugin.usage import (
    count_tokens,
    error_code,
    status_for_error,
    tokens_per_second,
)
from chatledger.pricing import PricingRegistry
from chatledger.stores.base import ApiCallStore, MessageStore, PersistenceStore, SessionStore

__all__ = ["PersistencePlugin"]

logger = logging.getLogger(__name__)

CAPABILITIES = ("message_persistence", "api_call_logging", "session_history")
_UNKNOWN_MODEL = "unknown"


@dataclass(slots=True)
class _Turn:
    """One chat in progress: what its reply and API call will link to."""

    request: LLMMessage
    started: datetime
    model: str = _UNKNOWN_MODEL
    recorded: bool = False


@dataclass(slots=True)
class _Pending:
    """A record not stored yet: what it is, the record itself, and how to store it alone."""

    what: str  # "session", "message" or "api call"
    save: Callable[[], Awaitable[None]]
    record: Any = None  # the message or API call, so they can be stored in batches
    attempts: int = 0  # failed attempts so far


@dataclass(slots=True)
class _Counters:
    messages_saved: int = 0
    api_calls_saved: int = 0
    store_failures: int = 0
    retried: int = 0
    pending: list[_Pending] = field(default_factory=list)


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
        background: bool = False,
    ) -> None:
        """Record into the given stores for one user, tenant, agent and session.

        ``pricing`` (with the ``provider`` its prices are keyed by) fills each
        API call's price; without it calls are stored unpriced. With
        ``background`` the chat does not wait for the store: records queue in
        order and a writer task stores them in batches; :meth:`flush` waits for
        them, and :meth:`close` stores what is left. A crash can then lose the
        records of the last moments; without it each hook returns once its
        records are committed.
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
        self._messages = message_store
        self._api_calls = api_call_store
        self._sessions = session_store
        self._user_id = user_id
        self._tenant_id = tenant_id
        self._agent_id = agent_id
        self._session_id = session_id
        self._pricing = pricing
        self._provider = provider
        self._session_known = session_store is None  # nothing to create without a store
        self._last_message: uuid.UUID | None = None
        self._turn: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar(
            f"chatledger_turn_{plugin_id}", default=None
        )
        self._counters = _Counters()
        self._session_lock = asyncio.Lock()
        self._background = background
        self._writer: asyncio.Task[None] | None = None
        self._drain_lock = asyncio.Lock()
        self._retry: asyncio.Future[None] | None = None  # the next timed retry
        self._retry_round = 0
        self._closing = False

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
        self._session_known = self._sessions is None
        self._last_message = None
        return self

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

    def stats(self) -> dict[str, Any]:
        """What was stored, what failed, and what still waits to be stored."""
        counters = self._counters
        return {
            **super().stats(),
            "messages_saved": counters.messages_saved,
            "api_calls_saved": counters.api_calls_saved,
            "store_failures": counters.store_failures,
            "retried": counters.retried,
            "pending": len(counters.pending),
        }

    # --- history and manual saves --------------------------------------------------------

    async def load_history(self) -> list[LLMMessage]:
        """The session's messages, oldest first; later messages are linked after them."""
        if self._background:
            await self.flush()
        history = await self._messages.get_session_messages(self._session_id)
        if history:
            self._last_message = history[-1].id
            self._session_known = True
        return history

    async def save_user_message(self, text: str) -> LLMMessage:
        """Save a user message (linked after the session's last one) and return it."""
        return await self._save_message(MessageRole.USER, text, self._last_message)

    async def save_assistant_message(self, text: str) -> LLMMessage:
        """Save an assistant message (linked after the session's last one) and return it."""
        return await self._save_message(MessageRole.ASSISTANT, text, self._last_message)

    # --- chat events ----------------------------------------------------------------------

    async def before_chat(self, message: str) -> str | None:
        """Save the user's message and open the turn it starts."""
        await self._begin_turn(message, _UNKNOWN_MODEL)
        return None

    async def before_chat_with_model(self, message: str, model: str) -> str | None:
        """As :meth:`before_chat`, remembering the model the turn asks for."""
        turn = self._turn.get()
        if turn is not None and not turn.recorded and turn.request.content.text == message:
            turn.model = model  # before_chat already opened this turn
        else:
            await self._begin_turn(message, model)
        return None

    async def after_chat(self, response: str) -> str | None:
        """Save the reply and its API call, counting tokens locally (no usage was given)."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return None
        prompt, how = count_tokens(turn.request.content.text or "", turn.model)
        completion, _ = count_tokens(response, turn.model)
        metadata = LLMResponseMetadata(
            model=turn.model, prompt_tokens=prompt, completion_tokens=completion, estimated=True
        )
        await self._finish_turn(turn, response, metadata, counted_by=how)
        return None

    async def after_chat_with_metadata(
        self, response: str, metadata: LLMResponseMetadata
    ) -> str | None:
        """Save the reply and one API call with the model, tokens, timing and price."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return None
        await self._finish_turn(turn, response, metadata, counted_by=None)
        return None

    async def on_error(self, error: BaseException) -> str | None:
        """Save a non-success API call whose status follows the error."""
        turn = self._turn.get()
        if turn is None or turn.recorded:
            return None
        turn.recorded = True
        call = LLMApiCall.failed(
            self._session_id,
            self._agent_id,
            self._user_id,
            self._tenant_id,
            turn.request.id,
            turn.model,
            (str(error) or type(error).__name__)[:4000],
            error_code(error),
            turn.started,
            status=status_for_error(error),
        )
        await self._store("api call", lambda: self._api_calls.save_api_call(call), call)
        return None

    # --- lifecycle ------------------------------------------------------------------------

    async def on_stop(self) -> None:
        """Try once more to store whatever waits."""
        await self.flush()

    async def close(self) -> None:
        """Store what waits, one last try each; what still fails is logged as lost."""
        self._closing = True
        if self._retry is not None and not self._retry.done():
            self._retry.cancel()
            await asyncio.wait([self._retry])
        await self.flush()
        for pending in self._counters.pending:
            logger.error("chatledger could not store a %s; it is lost", pending.what)
        self._counters.pending.clear()

    async def flush(self) -> int:
        """Try to store every waiting record, in order; return how many still wait."""
        if self._writer is not None:
            await asyncio.wait([self._writer])
        await self._drain()
        return len(self._counters.pending)

    # --- internals ------------------------------------------------------------------------

    def _retry_later(self) -> None:
        """Try the waiting records again after a pause that doubles while they keep failing."""
        if self._closing or (self._retry is not None and not self._retry.done()):
            return
        delay = min(_RETRY_MOST, _RETRY_FIRST * 2 ** min(self._retry_round, 10))
        self._retry_round += 1
        self._retry = asyncio.ensure_future(self._retry_after(delay))

    async def _retry_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._retry = None
        if await self.flush():
            self._retry_later()
        else:
            self._retry_round = 0

    async def _drain(self) -> None:
        """Store waiting records in order, messages and API calls each in batches.

        Messages and API calls do not refer to each other, so all waiting
        messages go in one batch and all waiting calls in another; a session
        goes first, alone, since its messages refer to it. A batch that fails
        is stored again one record at a time: the records before a bad one
        land, and it waits with everything after it.
        """
        async with self._drain_lock:
            pending = self._counters.pending
            while pending:
                if pending[0].what == "session":
                    runs = [[pending[0]]]
                else:
                    prefix: list[_Pending] = []
                    for item in pending:
                        if item.what == "session" or len(prefix) == 2 * _BATCH:
                            break  # a later session's messages wait until it is stored
                        prefix.append(item)
                    runs = [
                        [item for item in prefix if item.what == kind]
                        for kind in ("message", "api call")
                    ]
                for run in runs:
                    if run and not await self._store_run(run):
                        return

    async def _store_run(self, run: list[_Pending]) -> bool:
        """Store ``run`` (one kind) as a batch, else one by one; False at the first failure."""
        what = run[0].what
        try:
            if len(run) == 1:
                await run[0].save()
            elif what == "message":
                await self._messages.save_messages([item.record for item in run])
            else:
                await self._api_calls.save_api_calls([item.record for item in run])
            stored = len(run)
        except Exception:  # noqa: BLE001  (kept; retried on the next record or flush)
            stored = await self._save_one_by_one(run) if len(run) > 1 else 0
        done = {id(item) for item in run[:stored]}
        self._counters.pending[:] = [i for i in self._counters.pending if id(i) not in done]
        # Awaited, the queue holds only what waited behind a failure: count it as retried.
        self._counted(what, stored, retried=not self._background)
        if stored == len(run):
            return True
        failing = run[stored]
        if not failing.attempts:  # a failure counts once per record, not per retry
            self._counters.store_failures += 1
        failing.attempts += 1
        logger.warning("chatledger could not store a %s; it will be retried", what)
        self._retry_later()
        return False

    @staticmethod
    async def _save_one_by_one(run: list[_Pending]) -> int:
        """Store ``run`` in order until one fails; return how many were stored."""
        for stored, item in enumerate(run):
            try:
                await item.save()
            except Exception:  # noqa: BLE001  (the caller counts and logs it)
                return stored
        return len(run)

    def _counted(self, what: str, count: int, *, retried: bool) -> None:
        if retried:
            self._counters.retried += count
        elif what == "message":
            self._counters.messages_saved += count
        elif what == "api call":
            self._counters.api_calls_saved += count

    async def _begin_turn(self, text: str, model: str) -> None:
        request = await self._save_message(MessageRole.USER, text, self._last_message)
        self._turn.set(_Turn(request=request, started=request.create_time, model=model))

    async def _finish_turn(
        self,
        turn: _Turn,
        response: str,
        metadata: LLMResponseMetadata,
        *,
        counted_by: str | None,
    ) -> None:
        turn.recorded = True
        reply = await self._save_message(MessageRole.ASSISTANT, response, turn.request.id)
        model = metadata.model or turn.model
        call = LLMApiCall.success(
            self._session_id,
            self._agent_id,
            self._user_id,
            self._tenant_id,
            turn.request.id,
            reply.id,
            model,
            metadata.prompt_tokens,
            metadata.completion_tokens,
            turn.started,
            reply.create_time,
        )
        call = call._replace(
            tokens_per_second=tokens_per_second(
                call.completion_tokens, call.latency_ms, metadata.time_to_first_token_ms
            ),
            time_to_first_token_ms=metadata.time_to_first_token_ms,
            api_response_id=metadata.id,
            prompt_tokens_details=_details(
                metadata.cached_tokens, "cached_tokens", metadata.estimated, counted_by
            ),
            completion_tokens_details=_details(
                metadata.reasoning_tokens, "reasoning_tokens", metadata.estimated, counted_by
            ),
        )
        if self._pricing is not None:
            call = call.with_auto_price(self._pricing, self._provider)
        await self._store("api call", lambda: self._api_calls.save_api_call(call), call)

    async def _save_message(
        self, role: MessageRole, text: str, parent: uuid.UUID | None
    ) -> LLMMessage:
        await self._ensure_session()
        message = LLMMessage.new(
            self._session_id, self._agent_id, self._user_id, self._tenant_id, role, text
        )
        if parent is not None:
            message = message.with_parent(parent)
        await self._store("message", lambda: self._messages.save_message(message), message)
        # Only now may later messages name it as their parent: a concurrent chat
        # linking to a message not yet stored would fail its foreign key.
        self._last_message = message.id
        return message

    async def _ensure_session(self) -> None:
        if self._session_known or self._sessions is None:
            return
        async with self._session_lock:  # concurrent first chats wait for one creation
            if not self._session_known:
                await self._create_session(self._sessions, self._session_id)
                self._session_known = True  # stored, or waiting first in line

    async def _create_session(self, sessions: SessionStore, session_id: uuid.UUID) -> None:

        async def create() -> None:
            if await sessions.get_session(session_id) is None:
                session = ChatSession.new(self._user_id, self._agent_id)
                await sessions.create_session(
                    session.with_id(session_id).with_tenant_id(self._tenant_id)
                )

        await self._store("session", create)

    async def _store(
        self, what: str, save: Callable[[], Awaitable[None]], record: Any = None
    ) -> None:
        """Store a record; on failure keep it, in order, for later. Never raises.

        In the background, or while earlier records wait, it joins the queue
        (which :meth:`_drain` stores in order); otherwise it is stored now.
        """
        item = _Pending(what, save, record)
        if self._background:
            self._counters.pending.append(item)
            if self._writer is None or self._writer.done():
                self._writer = asyncio.ensure_future(self._drain())
            return
        if self._counters.pending and await self.flush():
            self._counters.pending.append(item)  # behind what still waits, to keep the order
            return
        try:
            await save()
        except Exception:
            self._counters.store_failures += 1
            item.attempts = 1
            logger.warning("chatledger could not store a %s; it will be retried", what,
                           exc_info=True)  # fmt: skip
            self._counters.pending.append(item)
            self._retry_later()
            return
        self._counted(what, 1, retried=False)


_BATCH = 500  # records per save_messages / save_api_calls when stored from the queue
_RETRY_FIRST = 0.5  # seconds before records that failed are tried again; doubles each time
_RETRY_MOST = 30.0


def _details(
    subset: int | None, name: str, estimated: bool, counted_by: str | None
) -> TokenDetails | None:
    """Token details holding ``subset`` under ``name``, marked when counts were estimated."""
    data: dict[str, Any] = {}
    if subset is not None:
        data[name] = subset
    if estimated:
        data["estimated"] = True
        if counted_by is not None:
            data["counted_by"] = counted_by
    return TokenDetails(**data) if data else None
