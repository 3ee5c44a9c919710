"""The Recorder: the one write path from any framework to a chatledger store.

A framework integration, the persistence plugin and chatledger's own agent
all say "these messages were exchanged" or "this LLM API call happened" to
a :class:`Recorder`. It turns that into sessions, messages and API calls in
the :func:`~chatledger.recording.scope.scope` in force, prices the calls,
appends the records to its spool and returns once they are durable there.
The shipper then moves them to the store in batches, on the store's event
loop, while the chat goes on.

Frameworks resend the whole conversation on every call. The recorder keeps,
per session, the fingerprints of the messages it has stored (in memory: no
database read per call; one read the first time a session is seen), so
:meth:`Recorder.record_conversation` stores only what is new, in order.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import signal
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Required, Self, TypedDict, TypeVar, Unpack

from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    TokenDetails,
    utc_now,
)
from chatledger.ids import NIL_UUID as NIL
from chatledger.ids import uuid7
from chatledger.pricing import PricingRegistry
from chatledger.recording.retention import Retention
from chatledger.recording.scope import Scope, current_scope, id_for_key
from chatledger.recording.shipper import BATCH_SIZE, ShipCounters, Shipper
from chatledger.recording.spool import (
    DEFAULT_SPOOL_LIMIT,
    FileSpool,
    MemorySpool,
    Spool,
    SpoolDirectory,
    SpoolError,
    default_spool_root,
)
from chatledger.stores import backend_of, location_of
from chatledger.stores.base import PersistenceStore
from chatledger.sync import SyncStore, _LoopThread
from chatledger.usage import error_code, status_for_error, tokens_per_second

__all__ = [
    "CLOSE_TIMEOUT",
    "CallFields",
    "Recorder",
    "SpoolChoice",
    "identity_for_url",
    "spool_directory_for",
    "spool_directory_for_url",
    "store_identity",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


CLOSE_TIMEOUT = 10.0
"""Seconds :meth:`Recorder.close` (and interpreter exit) spend shipping what is spooled."""

_SESSIONS_REMEMBERED = 10_000  # sessions whose message fingerprints stay in memory
_UNKNOWN_MODEL = "unknown"
_INT32_MAX = 2**31 - 1  # the ledger's millisecond columns are 32-bit
_LOAD_TIMEOUT = 5.0  # seconds a session's first read may take before it is given up


class CallUsage(TypedDict, total=False):
    """What a provider reported of one call: its usage, response id and timing.

    Token counts are the provider's own (``prompt_tokens`` includes
    ``cached_tokens`` and ``cache_write_tokens``, ``completion_tokens``
    includes ``reasoning_tokens``); ``estimated`` marks counts made locally,
    and ``counted_by`` says how.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    time_to_first_token_ms: int | None
    response_id: str | None
    estimated: bool
    counted_by: str | None


class CallFields(CallUsage, total=False):
    """What is known of one LLM API call, as integrations hand it to the recorder.

    Only ``model`` and ``started`` are required; the rest is :class:`CallUsage`
    and the call's outcome. A call with ``error`` (or a non-success
    ``status``) is recorded as failed.
    """

    model: Required[str | None]
    started: Required[datetime]
    finished: datetime | None
    request_message_id: uuid.UUID | None
    response_message_id: uuid.UUID | None
    error: BaseException | None
    status: ApiCallStatus | None
    error_message: str | None
    extra_details: dict[str, Any]
    provider: str | None  # whose price list prices the call; the recorder's by default
    call_id: uuid.UUID | None  # the record's id, when the caller has one (a span's identity)


_Acknowledgement = Future[int | None] | asyncio.Future[int | None]
"""Settled once records are durable: with the last one's seq, or None if the spool was full."""

SpoolChoice = Literal["auto"] | str | Path | Spool | None
"""``"auto"``: a file spool in the per-user state directory (in memory for the memory store);
a path: a file spool in that directory; a :class:`Spool`; None: direct writes."""


def spool_directory_for(store: PersistenceStore, root: Path | None = None) -> Path:
    """The directory holding the spools of ``store``'s database: one per database, per user."""
    return _directory(store_identity(store) or f"{store.backend_name}:{id(store)}", root)


def _directory(identity: str, root: Path | None) -> Path:
    backend = identity.split(":", 1)[0]
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return (root or default_spool_root()) / f"{backend}-{digest}"


def identity_for_url(url: str) -> str | None:
    """What :func:`store_identity` says of the store ``url`` opens, without opening it."""
    location = location_of(url)
    return None if location is None else f"{backend_of(url)}:{location}"


def spool_directory_for_url(url: str, root: Path | None = None) -> Path | None:
    """The spool directory of the database ``url`` names (None for one-process databases)."""
    identity = identity_for_url(url)
    return None if identity is None else _directory(identity, root)


def store_identity(store: PersistenceStore) -> str | None:
    """What names the database behind ``store`` across processes (never a password).

    ``backend:location``: a server's ``user@host:port/database``, an SQLite file's
    absolute path; None for a database that lives in one process only (the memory
    store, SQLite's ``:memory:``, a store that does not say where it is).
    """
    location = getattr(store, "location", None)
    return f"{store.backend_name}:{location}" if isinstance(location, str) else None


@dataclass(slots=True)
class _SessionState:
    """What the recorder knows of a session: created, its messages' fingerprints and ids.

    Both are kept as plain integers, which the garbage collector never walks: a
    long-running process remembers millions of messages, and keeping their
    objects alive made every full collection (and so every turn now and then)
    slower in proportion.
    """

    fingerprints: list[int] = field(default_factory=list)
    id_ints: list[int] = field(default_factory=list)
    loaded: bool = False  # its stored messages were read once (for de-duplication)
    created: bool = False  # its session record is stored or spooled

    @property
    def last(self) -> uuid.UUID | None:
        return uuid.UUID(int=self.id_ints[-1]) if self.id_ints else None

    def add(self, role: MessageRole, content: MessageContent, message_id: uuid.UUID) -> None:
        self.fingerprints.append(fingerprint(role, content))
        self.id_ints.append(message_id.int)

    def id_at(self, position: int) -> uuid.UUID:
        return uuid.UUID(int=self.id_ints[position])


@dataclass(slots=True)
class _Counters:
    messages: int = 0
    api_calls: int = 0
    sessions: int = 0
    dropped: int = 0  # records refused because the spool was full
    sanitized: int = 0  # records whose NUL characters became U+FFFD
    adopted_spools: int = 0
    damaged_spools: int = 0
    ship: ShipCounters = field(default_factory=ShipCounters)


def fingerprint(role: MessageRole | str, content: MessageContent) -> int:
    """What makes two messages the same message for de-duplication: role and content."""
    if content.tool_calls is None and content.tool_result is None and not content.model_extra:
        return hash((str(role), content.text))  # plain text, the common case: no JSON
    return hash((str(role), content.model_dump_json()))


class Recorder:
    """Records conversation turns and LLM API calls durably, in the scope in force.

    ``store`` is an async store (``chatledger.connect``) or a blocking one
    (``chatledger.sync.connect``). ``pricing`` prices calls (keyed by
    ``provider``). ``tenant_id``, ``user_id`` and ``agent_id`` fill what the
    scope leaves unset. ``spool`` is where records wait for the store (see
    :data:`SpoolChoice`); ``spool_limit`` bounds it: a record that would pass
    the bound is not kept, is logged and is counted as ``dropped`` in
    :meth:`stats`. ``close_timeout`` is how long :meth:`close` and interpreter
    exit spend shipping; ``batch_size`` how many records go to the store in one
    transaction.
    """

    def __init__(
        self,
        store: PersistenceStore | SyncStore,
        *,
        pricing: PricingRegistry | None = None,
        tenant_id: uuid.UUID | str | None = None,
        user_id: uuid.UUID | str | None = None,
        agent_id: uuid.UUID | str | None = None,
        spool: SpoolChoice = "auto",
        spool_limit: int = DEFAULT_SPOOL_LIMIT,
        provider: str = "openai",
        close_timeout: float = CLOSE_TIMEOUT,
        batch_size: int = BATCH_SIZE,
        retention: timedelta | str | None = None,
    ) -> None:
        """Start recording into ``store``; what earlier processes left spooled ships first.

        ``retention`` (``"90d"``, or a timedelta) prunes calls and sessions older
        than that from the store every so often while the recorder runs.
        """
        if not isinstance(store, SyncStore) and not hasattr(store, "ingest_records"):
            raise TypeError(
                f"Recorder needs a chatledger store (chatledger.connect or chatledger.sync."
                f"connect), not {type(store).__name__}"
            )
        if spool_limit < 1 or batch_size < 1 or close_timeout < 0:
            raise ValueError(
                "spool_limit and batch_size must be at least 1 and close_timeout at least 0, "
                f"not {spool_limit}, {batch_size} and {close_timeout}"
            )
        self._own_thread: _LoopThread | None = None
        if isinstance(store, SyncStore):
            self._store = store.store
            self._home = store.loop
        else:
            self._store = store
            try:
                self._home = asyncio.get_running_loop()
            except RuntimeError:  # built outside a loop: shipping gets a loop of its own
                self._own_thread = _LoopThread()
                self._home = self._own_thread.loop
        # Built before anything starts, so that a retention that is not a duration fails first.
        self._retention = None if retention is None else Retention(self._store, retention)
        self._defaults = Scope(
            tenant_id=None if tenant_id is None else id_for_key(tenant_id),
            user_id=None if user_id is None else id_for_key(user_id),
            agent_id=None if agent_id is None else id_for_key(agent_id),
        )
        self._pricing = pricing
        self._provider = provider
        self._close_timeout = close_timeout
        # Direct writes: the hook waits until the store was tried. Asked for with
        # spool=None; a database living in this process only gets them too, as no
        # spool would outlive it anyway.
        self._identity = store_identity(self._store)
        self._direct = spool is None or (spool == "auto" and self._identity is None)
        self._directory: SpoolDirectory | None = None
        self._release_spool: Callable[[], None] = lambda: None
        self._orphans: list[tuple[FileSpool, Callable[[], None]]] = []
        self._adopted = False
        self._spool = self._open_spool(spool, spool_limit)
        self._counters = _Counters()
        self._lock = threading.Lock()  # recording state and the spool's order, from any thread
        self._sessions: OrderedDict[uuid.UUID, _SessionState] = OrderedDict()
        self._default_sessions: dict[uuid.UUID, uuid.UUID] = {}  # agent -> its session
        self._later: set[Future[None]] = set()  # records handed over without waiting
        # Taken in turn by what was handed over, on the home loop, until it is spooled: a
        # session's first read (to skip resent messages) must not let a later hand-over
        # overtake an earlier one.
        self._handover_turn: asyncio.Lock | None = None
        self._closed = False
        self._shipper = Shipper(self._store, self._counters.ship, batch_size=batch_size)
        # Bound to the home loop on first use (asyncio primitives bind lazily since 3.10).
        self._ship_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._home)
        self._retention_task = (
            None
            if self._retention is None
            else asyncio.run_coroutine_threadsafe(self._retention.run(), self._home)
        )
        _live_recorders.add(self)
        _install_sigterm()

    @classmethod
    def shared(
        cls,
        store: PersistenceStore | SyncStore,
        *,
        pricing: PricingRegistry | None = None,
        provider: str = "openai",
        spool: SpoolChoice = "auto",
    ) -> Recorder:
        """The one open recorder of this process for ``store`` with these settings.

        Plugins made per user or per session share it, so an app has one spool
        file, one spool thread and one shipper per store, not one per plugin.
        """
        key = (
            id(store),
            id(pricing),
            provider,
            str(spool) if isinstance(spool, str | Path) else spool if spool is None else id(spool),
        )
        with _shared_lock:
            recorder = _shared.get(key)
            if recorder is not None and not recorder._closed and recorder._home.is_closed():
                # Its loop has ended (a second asyncio.run in one process): let go of its
                # spool, which the new recorder adopts and ships on the loop now running.
                recorder._after_finish()
            if recorder is None or recorder._closed:
                recorder = _shared[key] = cls(
                    store, pricing=pricing, provider=provider, spool=spool
                )
            return recorder

    # --- public state -------------------------------------------------------------------

    @property
    def store(self) -> PersistenceStore:
        """The async store records ship to."""
        return self._store

    @property
    def spool(self) -> Spool:
        """Where records wait until the store has them."""
        return self._spool

    @property
    def pricing(self) -> PricingRegistry | None:
        """What prices calls, if anything."""
        return self._pricing

    def stats(self) -> dict[str, Any]:
        """What was recorded, shipped, refused and still waits; never silent about a loss."""
        counters = self._counters
        ship = counters.ship
        return {
            "messages_recorded": counters.messages,
            "api_calls_recorded": counters.api_calls,
            "sessions_created": counters.sessions,
            "messages_shipped": ship.shipped["message"],
            "api_calls_shipped": ship.shipped["call"],
            "sessions_shipped": ship.shipped["session"],
            "waiting": len(self._spool),
            "store_failures": ship.store_failures,
            "dead_letters": ship.dead_letters,
            "dropped": counters.dropped,
            "sanitized": counters.sanitized,
            "adopted_spools": counters.adopted_spools,
            "damaged_spools": counters.damaged_spools,
            "spool": None if self._spool.path is None else str(self._spool.path),
            "spool_limit": self._spool.limit,
            "durable": self._spool.path is not None,
        }

    def resolve_scope(self, scope: Scope | None = None) -> Scope:
        """Whom records made now belong to: ``scope`` over the scope in force over the defaults."""
        resolved = current_scope().over(self._defaults)
        return resolved if scope is None else scope.over(resolved)

    def remember(self, session_id: uuid.UUID, history: Sequence[LLMMessage]) -> None:
        """Take ``history`` as the session's stored messages (read by the caller, oldest first).

        Later messages link after its last one, and a resent conversation is
        matched against it; the recorder then need not read the session itself.
        """
        self._learn(session_id, history, over_unread=True)

    def _learn(
        self, session_id: uuid.UUID, history: Sequence[LLMMessage], *, over_unread: bool
    ) -> None:
        """Take ``history`` as what is stored of a session, unless the session is known.

        With ``over_unread``, it also replaces what only recording here taught (the
        caller read the store after a flush, so the history holds that too).
        """
        state = _SessionState(loaded=True, created=bool(history))
        for message in history:
            state.add(message.role, message.content, message.id)
        with self._lock:
            known = self._sessions.get(session_id)
            if known is None or (over_unread and not known.loaded):
                self._keep(session_id, state)

    def _keep(self, session_id: uuid.UUID, state: _SessionState) -> None:
        """Remember ``state``, forgetting the session least recently used past the bound."""
        self._sessions[session_id] = state
        self._sessions.move_to_end(session_id)
        if len(self._sessions) > _SESSIONS_REMEMBERED:
            self._sessions.popitem(last=False)

    def forget(self, session_id: uuid.UUID) -> None:
        """Forget what is known of a session (deleted): a later record creates it anew."""
        with self._lock:
            self._sessions.pop(session_id, None)

    # --- recording (async) --------------------------------------------------------------

    async def record_message(
        self,
        role: MessageRole | str,
        content: MessageContent | str,
        *,
        parent_id: uuid.UUID | None = None,
        scope: Scope | None = None,
    ) -> LLMMessage:
        """Record one message in the session in scope, after its last one (or ``parent_id``)."""
        messages, future = self._record_messages(
            [(role, content)], parent_id, scope, asynchronous=True
        )
        await self._acknowledged(future)
        return messages[0]

    async def record_conversation(
        self,
        messages: Sequence[tuple[MessageRole | str, MessageContent | str]],
        *,
        scope: Scope | None = None,
    ) -> list[uuid.UUID]:
        """Record a conversation as a framework sends it, storing only the messages that are new.

        Returns the id of each given message, stored now or before.
        """
        await self._load_session_once(self.resolve_scope(scope))
        ids, future = self._record_conversation(messages, scope, asynchronous=True)
        await self._acknowledged(future)
        return ids

    async def record_call(
        self, *, scope: Scope | None = None, **fields: Unpack[CallFields]
    ) -> LLMApiCall:
        """Record one LLM API call in the session in scope; priced when the recorder has pricing.

        ``fields`` are :class:`CallFields`. A call with ``error`` (or a non-success
        ``status``) is recorded as failed, its status and code following the error.
        """
        call = self.build_call(scope=scope, **fields)
        await self._acknowledged(self._record_api_call(call, asynchronous=True))
        return call

    async def record_api_call(self, call: LLMApiCall) -> LLMApiCall:
        """Record an API call built by the caller (priced here if unpriced); return it as stored."""
        call = self._priced(call)
        await self._acknowledged(self._record_api_call(call, asynchronous=True))
        return call

    async def record_reply(
        self,
        request_id: uuid.UUID,
        content: MessageContent | str,
        call: CallFields,
        *,
        scope: Scope | None = None,
    ) -> tuple[LLMMessage, LLMApiCall]:
        """Record a reply to ``request_id`` and the call that produced it, durable together.

        ``call`` holds :class:`CallFields`; the call links the request and the reply.
        """
        _, reply, api_call, future = self._record_exchange(
            (), content, call, scope, request_id=request_id, asynchronous=True
        )
        await self._acknowledged(future)
        assert reply is not None
        return reply, api_call

    async def record_exchange(
        self,
        messages: Sequence[tuple[MessageRole | str, MessageContent | str]],
        reply: MessageContent | str | None,
        call: CallFields,
        *,
        scope: Scope | None = None,
    ) -> tuple[list[uuid.UUID], LLMMessage | None, LLMApiCall]:
        """Record one model call as a framework made it: its request, its reply, its usage.

        ``messages`` is the conversation the framework sent (only those not
        stored yet are stored, as :meth:`record_conversation` does); ``reply``
        the assistant's answer, None when the call failed. The call links the
        last request message and the reply. Everything is durable together, in
        one append to the spool. Returns the request messages' ids, the reply
        (None when there is none, or when this very call, known by its
        ``call_id``, was recorded before) and the call.
        """
        await self._load_session_once(self.resolve_scope(scope))
        ids, message, api_call, future = self._record_exchange(
            messages, reply, call, scope, asynchronous=True
        )
        await self._acknowledged(future)
        return ids, message, api_call

    async def flush(self) -> int:
        """Ship what waits now; return how many records still wait (the store may be down).

        Records handed over without waiting (:meth:`record_exchange_soon`) are waited for first.
        """
        return await self._on_home(self._flush())

    async def close(self) -> None:
        """Ship what is spooled (within ``close_timeout``), then stop; safe to call twice."""
        if self._closed:
            return
        await self._on_home(self._finish())
        self._after_finish()

    async def __aenter__(self) -> Self:
        """Return the recorder itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Ship what is spooled and stop."""
        await self.close()

    # --- recording (blocking twins, for code and threads without an event loop) ---------

    def record_message_sync(
        self,
        role: MessageRole | str,
        content: MessageContent | str,
        *,
        parent_id: uuid.UUID | None = None,
        scope: Scope | None = None,
    ) -> LLMMessage:
        """Blocking twin of :meth:`record_message`."""
        messages, future = self._record_messages(
            [(role, content)], parent_id, scope, asynchronous=False
        )
        self._acknowledged_sync(future)
        return messages[0]

    def record_conversation_sync(
        self,
        messages: Sequence[tuple[MessageRole | str, MessageContent | str]],
        *,
        scope: Scope | None = None,
    ) -> list[uuid.UUID]:
        """Blocking twin of :meth:`record_conversation`."""
        self._load_session_once_sync(self.resolve_scope(scope))
        ids, future = self._record_conversation(messages, scope, asynchronous=False)
        self._acknowledged_sync(future)
        return ids

    def record_call_sync(
        self, *, scope: Scope | None = None, **fields: Unpack[CallFields]
    ) -> LLMApiCall:
        """Blocking twin of :meth:`record_call`."""
        call = self.build_call(scope=scope, **fields)
        self._acknowledged_sync(self._record_api_call(call, asynchronous=False))
        return call

    def record_api_call_sync(self, call: LLMApiCall) -> LLMApiCall:
        """Blocking twin of :meth:`record_api_call`."""
        call = self._priced(call)
        self._acknowledged_sync(self._record_api_call(call, asynchronous=False))
        return call

    def record_reply_sync(
        self,
        request_id: uuid.UUID,
        content: MessageContent | str,
        call: CallFields,
        *,
        scope: Scope | None = None,
    ) -> tuple[LLMMessage, LLMApiCall]:
        """Blocking twin of :meth:`record_reply`."""
        _, reply, api_call, future = self._record_exchange(
            (), content, call, scope, request_id=request_id, asynchronous=False
        )
        self._acknowledged_sync(future)
        assert reply is not None
        return reply, api_call

    def record_exchange_sync(
        self,
        messages: Sequence[tuple[MessageRole | str, MessageContent | str]],
        reply: MessageContent | str | None,
        call: CallFields,
        *,
        scope: Scope | None = None,
    ) -> tuple[list[uuid.UUID], LLMMessage | None, LLMApiCall]:
        """Blocking twin of :meth:`record_exchange`."""
        self._load_session_once_sync(self.resolve_scope(scope))
        ids, message, api_call, future = self._record_exchange(
            messages, reply, call, scope, asynchronous=False
        )
        self._acknowledged_sync(future)
        return ids, message, api_call

    def record_exchange_soon(
        self,
        messages: Sequence[tuple[MessageRole | str, MessageContent | str]],
        reply: MessageContent | str | None,
        call: CallFields,
        *,
        scope: Scope | None = None,
    ) -> Future[None]:
        """Record as :meth:`record_exchange` does, without waiting: for code that must not block.

        For a blocking client called on an event loop's thread (waiting there
        could stall the loop, or deadlock the recorder's own), or a finalizer.
        The recorder's loop records it, in the order handed over, durable
        shortly after; :meth:`close` and interpreter exit wait for it first.
        A failure is logged, never raised.
        """
        self._check_open()
        resolved = self.resolve_scope(scope)  # the scope in force now, not when it runs
        future = asyncio.run_coroutine_threadsafe(
            self._record_exchange_later(messages, reply, call, resolved), self._home
        )
        self._later.add(future)
        future.add_done_callback(self._later.discard)
        return future

    async def _record_exchange_later(
        self,
        messages: Sequence[tuple[MessageRole | str, MessageContent | str]],
        reply: MessageContent | str | None,
        call: CallFields,
        scope: Scope,
    ) -> None:
        try:
            if self._handover_turn is None:
                self._handover_turn = asyncio.Lock()
            async with self._handover_turn:  # spooled in the order handed over
                await self._load_session_once(scope)
                *_, future = self._record_exchange(messages, reply, call, scope, asynchronous=True)
            await self._acknowledged(future)  # outside the turn: the spool groups the fsyncs
        except Exception:
            logger.warning("chatledger could not record a call to %s", call.get("model"),
                           exc_info=True)  # fmt: skip

    def flush_sync(self) -> int:
        """Blocking twin of :meth:`flush`."""
        return self._run_on_home(self._flush())

    def close_sync(self, timeout: float | None = None) -> None:
        """Blocking twin of :meth:`close`."""
        if self._closed:
            return
        self._run_on_home(self._finish(), timeout=timeout)
        self._after_finish()

    def __enter__(self) -> Self:
        """Return the recorder itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Ship what is spooled and stop."""
        self.close_sync()

    # --- building records ---------------------------------------------------------------

    def build_call(self, *, scope: Scope | None = None, **fields: Unpack[CallFields]) -> LLMApiCall:
        """The :class:`LLMApiCall` :meth:`record_call` would record, in the scope in force.

        A failed call keeps whatever was known when it failed: the response id
        a stream had already sent, its time to first token, the latency to the
        failure, and the provider's usage if it reported any.
        """
        session_id, agent_id, user_id, tenant_id = self._ids(self.resolve_scope(scope))
        started = fields["started"]
        prompt_tokens = fields.get("prompt_tokens", 0)
        completion_tokens = fields.get("completion_tokens", 0)
        time_to_first_token_ms = fields.get("time_to_first_token_ms")
        error, status = fields.get("error"), fields.get("status")
        estimated, counted_by = fields.get("estimated", False), fields.get("counted_by")
        model = (fields.get("model") or _UNKNOWN_MODEL)[:100]
        if error is not None:
            status = status or status_for_error(error)
        status = status or ApiCallStatus.SUCCESS
        succeeded = status == ApiCallStatus.SUCCESS
        finished = max(fields.get("finished") or utc_now(), started)
        latency_ms = min(int((finished - started).total_seconds() * 1000), _INT32_MAX)
        error_message: str | None = None
        if not succeeded:
            error_message = fields.get("error_message") or (
                (str(error) or type(error).__name__) if error is not None else status.value
            )
        # One validated construction (success() then a copy would validate twice per call).
        call = LLMApiCall(
            id=fields.get("call_id") or uuid7(),
            chat_session_id=session_id,
            agent_id=agent_id,
            user_id=user_id,
            tenant_id=tenant_id,
            request_message_id=fields.get("request_message_id") or NIL,
            # MoFA's form: a call that failed has the nil UUID as its response.
            response_message_id=(fields.get("response_message_id") if succeeded else None) or NIL,
            model_name=model,
            prompt_tokens=prompt_tokens,
            prompt_tokens_details=_details(
                {
                    "cached_tokens": fields.get("cached_tokens"),
                    "cache_write_tokens": fields.get("cache_write_tokens"),
                }
                | fields.get("extra_details", {}),
                estimated,
                counted_by,
            ),
            completion_tokens=completion_tokens,
            completion_tokens_details=_details(
                {"reasoning_tokens": fields.get("reasoning_tokens")}, estimated, counted_by
            ),
            total_tokens=prompt_tokens + completion_tokens,
            latency_ms=latency_ms,
            time_to_first_token_ms=time_to_first_token_ms,
            tokens_per_second=(
                tokens_per_second(completion_tokens, latency_ms, time_to_first_token_ms)
                if succeeded
                else None
            ),
            api_response_id=_response_id(fields),
            status=status,
            error_message=None if error_message is None else error_message[:4000],
            error_code=error_code(error) if error is not None else None,
            create_time=started,
            update_time=finished,
        )
        return self._priced(call, fields.get("provider"))

    def _priced(self, call: LLMApiCall, provider: str | None = None) -> LLMApiCall:
        """The call priced by the registry; a failure that spent nothing stays unpriced."""
        if self._pricing is None or call.total_price is not None:
            return call
        if call.status is not ApiCallStatus.SUCCESS and not call.total_tokens:
            return call
        try:
            return call.with_auto_price(self._pricing, provider or self._provider)
        except Exception:  # a pricing table that fails must not lose the call
            logger.warning("chatledger could not price a call to %s", call.model_name,
                           exc_info=True)  # fmt: skip
            return call

    def _ids(self, scope: Scope) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
        """Session, agent, user and tenant for records made in ``scope``."""
        agent_id = scope.agent_id or NIL
        session_id = scope.session_id
        if session_id is None:
            session_id = self._default_sessions.get(agent_id)
            if session_id is None:
                session_id = self._default_sessions.setdefault(agent_id, uuid7())
        return session_id, agent_id, scope.user_id or NIL, scope.tenant_id or NIL

    # --- the write path: state under the lock, then the spool ---------------------------

    def _session(
        self, scope: Scope, ids: tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID],
        records: list[tuple[str, str]],
    ) -> _SessionState:  # fmt: skip
        """The session's state; a new session's record joins ``records`` first."""
        session_id, agent_id, user_id, tenant_id = ids
        state = self._sessions.get(session_id)
        if state is None:
            state = _SessionState()
        self._keep(session_id, state)
        if state.created:
            return state
        state.created = True
        session = ChatSession.new(user_id, agent_id).with_id(session_id).with_tenant_id(tenant_id)
        if scope.session_key is not None and scope.session_id == session_id:
            session = session.with_metadata("key", scope.session_key)
        records.append(("session", self._body(session)))
        self._counters.sessions += 1
        return state

    def _record_messages(
        self,
        items: Sequence[tuple[MessageRole | str, MessageContent | str]],
        parent_id: uuid.UUID | None,
        scope: Scope | None,
        *,
        asynchronous: bool,
    ) -> tuple[list[LLMMessage], _Acknowledgement]:
        scope = self.resolve_scope(scope)
        ids = self._ids(scope)
        built = [(MessageRole(role), _content(content)) for role, content in items]
        with self._lock:
            self._check_open()
            records: list[tuple[str, str]] = []
            state = self._session(scope, ids, records)
            messages = self._append_messages(state, ids, built, parent_id, records)
            return messages, self._spool_append(records, asynchronous)

    def _append_messages(
        self,
        state: _SessionState,
        ids: tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID],
        built: Sequence[tuple[MessageRole, MessageContent]],
        parent_id: uuid.UUID | None,
        records: list[tuple[str, str]],
    ) -> list[LLMMessage]:
        session_id, agent_id, user_id, tenant_id = ids
        messages = []
        for role, content in built:
            message = LLMMessage.new(
                session_id, agent_id, user_id, tenant_id, role, content,
                parent_message_id=parent_id or state.last,
            )  # fmt: skip
            parent_id = None  # only the first message may name another parent
            state.add(role, content, message.id)
            records.append(("message", self._body(message)))
            messages.append(message)
        self._counters.messages += len(messages)
        return messages

    def _record_conversation(
        self,
        items: Sequence[tuple[MessageRole | str, MessageContent | str]],
        scope: Scope | None,
        *,
        asynchronous: bool,
    ) -> tuple[list[uuid.UUID], _Acknowledgement]:
        scope = self.resolve_scope(scope)
        ids = self._ids(scope)
        built = [(MessageRole(role), _content(content)) for role, content in items]
        prints = [fingerprint(role, content) for role, content in built]
        with self._lock:
            self._check_open()
            records: list[tuple[str, str]] = []
            state = self._session(scope, ids, records)
            stored = _stored_prefix(state.fingerprints, prints)
            new = self._append_messages(state, ids, built[len(stored) :], None, records)
            known_ids = [state.id_at(i) for i in stored]
            return known_ids + [m.id for m in new], self._spool_append(records, asynchronous)

    def _record_api_call(self, call: LLMApiCall, *, asynchronous: bool) -> _Acknowledgement:
        scope = self.resolve_scope()
        if scope.session_id != call.chat_session_id:  # a call built for another session
            scope = Scope(session_id=call.chat_session_id).over(scope)
        with self._lock:
            self._check_open()
            records: list[tuple[str, str]] = []
            ids = (call.chat_session_id, call.agent_id, call.user_id, call.tenant_id)
            self._session(scope, ids, records)
            records.append(("call", self._body(call)))
            self._counters.api_calls += 1
            return self._spool_append(records, asynchronous)

    def _record_exchange(
        self,
        items: Sequence[tuple[MessageRole | str, MessageContent | str]],
        reply: MessageContent | str | None,
        fields: CallFields,
        scope: Scope | None,
        *,
        request_id: uuid.UUID | None = None,
        asynchronous: bool,
    ) -> tuple[list[uuid.UUID], LLMMessage | None, LLMApiCall, _Acknowledgement]:
        """The new messages of a request, its reply and its call: one append, one fsync."""
        scope = self.resolve_scope(scope)
        ids = self._ids(scope)
        built = [(MessageRole(role), _content(content)) for role, content in items]
        prints = [fingerprint(role, content) for role, content in built]
        answer = None if reply is None else [(MessageRole.ASSISTANT, _content(reply))]
        with self._lock:
            self._check_open()
            records: list[tuple[str, str]] = []
            state = self._session(scope, ids, records)
            linked: CallFields = {**fields}
            stored: list[int] = []
            if answer is not None and prints and fields.get("call_id") is not None:
                # The very call again (a span exported twice), or a call logged after the next
                # one, whose request resent this call's reply: its reply is stored too. Only a
                # call that carries its own id can be a call seen before; any other reply is new.
                exchanged = [*prints, fingerprint(*answer[0])]
                stored = _stored_prefix(state.fingerprints, exchanged)
                if len(stored) < len(exchanged):
                    stored = _stored_opening(state.fingerprints, exchanged)
                if len(stored) == len(exchanged):
                    answer = None
                    linked["response_message_id"] = state.id_at(stored.pop())
                else:
                    stored = []
            if not stored:
                stored = _stored_prefix(state.fingerprints, prints)
            new = self._append_messages(state, ids, built[len(stored) :], None, records)
            request_ids = [state.id_at(i) for i in stored] + [m.id for m in new]
            if request_ids:
                request_id = request_ids[-1]
            linked["request_message_id"] = request_id
            message = None
            if answer is not None:
                (message,) = self._append_messages(state, ids, answer, request_id, records)
                linked.setdefault("finished", message.create_time)
                linked["response_message_id"] = message.id
            call = self.build_call(scope=scope, **linked)
            records.append(("call", self._body(call)))
            self._counters.api_calls += 1
            return request_ids, message, call, self._spool_append(records, asynchronous)

    def _body(self, entity: LLMMessage | LLMApiCall | ChatSession) -> str:
        """The record's JSON; a NUL (which no SQL backend stores) becomes U+FFFD, counted.

        The entity is kept beside it, so shipping it from this process skips parsing it back.
        """
        body = entity.model_dump_json()
        if "\\u0000" in body:
            entity = type(entity).model_validate(_without_nul(entity.model_dump()))
            body = entity.model_dump_json()
            self._counters.sanitized += 1
            logger.warning("chatledger replaced NUL characters in a %s with U+FFFD; "
                           "no database stores them", type(entity).__name__)  # fmt: skip
        self._shipper.keep_parsed(body, entity)
        return body

    def _spool_append(self, records: list[tuple[str, str]], asynchronous: bool) -> _Acknowledgement:
        """Append under the recorder's lock (so the spool's order is the recording order).

        An async caller gets its own loop's future, settled with the others of its group.
        """
        future = self._spool.append_async(records) if asynchronous else self._spool.append(records)
        self._wake_shipper()
        return future

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Recorder is closed; records can no longer be made with it")

    def _load_session_once_sync(self, scope: Scope) -> None:
        """:meth:`_load_session_once` from a thread; no trip to the home loop once it is known."""
        if self._ids(scope)[0] not in self._sessions:
            self._run_on_home(self._load_session_once(scope))

    async def _load_session_once(self, scope: Scope) -> None:
        """Learn a session's stored messages the first time it is seen, for de-duplication.

        One read per session and process, never one per call. A store that cannot
        answer soon is not waited for: the conversation is then taken as new.
        """
        session_id = self._ids(scope)[0]
        if session_id in self._sessions:
            return
        try:
            stored = await asyncio.wait_for(
                self._on_home(self._store.get_session_messages(session_id)), _LOAD_TIMEOUT
            )
        except Exception as exc:  # noqa: BLE001  (recording goes on; it may store a message twice)
            logger.warning("chatledger could not read session %s to skip resent messages: %s",
                           session_id, exc)  # fmt: skip
            return
        if stored:
            self._learn(session_id, stored, over_unread=False)

    # --- acknowledging ------------------------------------------------------------------

    def _accepted(self, seq: int | None) -> bool:
        if seq is None:
            self._counters.dropped += 1
            logger.error(
                "chatledger's spool is full (%d records); a record was dropped. "
                "The store has been unreachable for long, or raise spool_limit",
                self._spool.limit,
            )
            return False
        return True

    async def _acknowledged(self, future: _Acknowledgement) -> None:
        """Wait until the records are durable (direct writes: until the store was tried)."""
        seq = await asyncio.wrap_future(future) if isinstance(future, Future) else await future
        if self._accepted(seq) and self._direct:
            await self._on_home(self._ship_now(unless_down=True))

    def _acknowledged_sync(self, future: _Acknowledgement) -> None:
        assert isinstance(future, Future)  # the blocking path never asks for a loop's future
        seq = future.result()
        if self._accepted(seq) and self._direct:
            self._run_on_home(self._ship_now(unless_down=True))

    # --- the home loop: where the store is used -----------------------------------------

    async def _on_home(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the store's loop, from any loop."""
        if asyncio.get_running_loop() is self._home:
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._home))

    def _run_on_home(self, coroutine: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coroutine`` on the store's loop and wait, from a thread that is not that loop's."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._home:
            coroutine.close()
            raise RuntimeError(
                "a blocking Recorder method was called on the store's own event loop; "
                "await the async method instead"
            )
        return asyncio.run_coroutine_threadsafe(coroutine, self._home).result(timeout)

    def _wake_shipper(self) -> None:
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._home.call_soon_threadsafe(self._set_wake)
        except RuntimeError:  # the home loop is closed: close() or the next start ships
            self._wake_pending = False

    def _set_wake(self) -> None:
        self._wake_pending = False
        self._wake.set()

    async def _run(self) -> None:
        """The shipper's life on the home loop: adopt orphans, then ship whenever woken."""
        wake = self._wake
        wake.set()
        try:
            await self._ship_while_open(wake)
        except asyncio.CancelledError:
            # The loop is shutting down (asyncio.run ending, on SIGTERM say) and nobody
            # closed the recorder: ship now, while the store's connections still work.
            if not self._closed:
                async with self._ship_lock:
                    await self._finish_unlocked()
                self._after_finish()
            raise

    async def _ship_while_open(self, wake: asyncio.Event) -> None:
        task = asyncio.current_task()
        while not self._closed:
            if task is not None and task.cancelling():
                # Python 3.11's wait_for (the shipper's batch timeout) loses a cancellation
                # that arrives as the batch completes; asyncio.run would then wait for this
                # task forever. A cancellation requested is a cancellation.
                raise asyncio.CancelledError
            if self._shipper.pause:
                # The store is down: new records wait for the back-off, not one try each.
                await asyncio.sleep(self._shipper.pause)
            else:
                await wake.wait()
            wake.clear()
            if self._closed:
                break
            try:
                await self._ship_now()
            except Exception:  # the spool failed (a full disk): log, keep the loop alive
                logger.exception("chatledger's shipper failed; it will try again")
                await asyncio.sleep(1.0)

    async def _ship_now(self, *, unless_down: bool = False) -> int:
        """Ship what waits (what dead processes left first); return how many still wait.

        ``unless_down``, for direct writes: a store known to be down is not tried, as a
        chat must not wait on it. Concurrent callers queue on the lock; the first ships
        every waiting record in batches, those after it find little or nothing left.
        """
        async with self._ship_lock:
            if not (unless_down and self._shipper.pause):
                await self._ship_orphans()
                await self._shipper.ship(self._spool)
        return len(self._spool)

    async def _settle_later(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait (on the home loop) for records handed over without waiting to reach the spool."""
        if self._later:
            later = [asyncio.wrap_future(future) for future in list(self._later)]
            await asyncio.wait(later, timeout=timeout)

    async def _flush(self) -> int:
        await self._settle_later()
        return await self._ship_now()

    async def _finish(self) -> None:
        """Stop recording; ship what waits until the spool is empty or the deadline passes."""
        deadline = time.monotonic() + self._close_timeout
        await self._settle_later(max(0.1, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
        self._wake.set()
        async with self._ship_lock:
            await self._finish_unlocked(deadline)
        self._task.cancel()
        if self._retention_task is not None:
            self._retention_task.cancel()

    async def _finish_unlocked(self, deadline: float | None = None) -> None:
        """Ship what waits until the spool is empty or ``deadline`` (monotonic) passes."""
        self._closed = True
        if deadline is None:
            deadline = time.monotonic() + self._close_timeout
        await self._ship_orphans()
        # A store already closed will not come back: what waits stays in the spool.
        while len(self._spool) and time.monotonic() < deadline and self._store.is_connected:
            left = max(0.1, deadline - time.monotonic())  # a hung write cannot outlast close
            if not await self._shipper.ship(self._spool, limit=BATCH_SIZE * 4, batch_seconds=left):
                await asyncio.sleep(max(0, min(self._shipper.pause, deadline - time.monotonic())))

    def _after_finish(self) -> None:
        """Let go of the spool (its file stays if records wait), the lock and any own thread."""
        self._closed = True
        waiting = len(self._spool)
        self._spool.close()
        self._release_spool()
        _live_recorders.discard(self)
        if self._own_thread is not None:
            self._own_thread.stop()
        if waiting:
            where = self._spool.path
            if where is None:
                logger.error("chatledger lost %d records the store never took (no spool "
                             "on disk: direct writes or the memory store)", waiting)  # fmt: skip
            else:
                logger.warning("chatledger left %d records in the spool %s; a recorder "
                               "started on this database ships them", waiting, where)  # fmt: skip

    # --- spools -------------------------------------------------------------------------

    def _open_spool(self, choice: SpoolChoice, limit: int) -> Spool:
        if choice is None or (choice == "auto" and self._identity is None):
            return MemorySpool(limit)  # nothing outlives this process anyway
        if not isinstance(choice, str | Path):
            return choice
        if choice == "auto":
            folder = spool_directory_for(self._store, default_spool_root())
        else:
            folder = Path(choice)
        self._directory = SpoolDirectory(folder.resolve())
        spool, self._release_spool = self._directory.create(limit, self._identity)
        return spool

    async def _adopt_orphans(self) -> None:
        """Open the spools dead processes left for this database; they ship before ours."""
        if self._directory is None:
            return
        for path, release in self._directory.orphans():
            try:
                orphan = await asyncio.to_thread(FileSpool, path, self._spool.limit)
                if orphan.identity not in (None, self._identity):
                    orphan.close()  # another database's records: never shipped here
                    release()
                    continue
            except SpoolError as exc:
                moved = self._directory.quarantine(path)
                release()
                self._counters.damaged_spools += 1
                logger.error("chatledger: %s; it was moved aside to %s and nothing was "  # noqa: TRY400
                             "read from it", exc, moved)  # fmt: skip
                continue
            self._counters.adopted_spools += 1
            logger.info("chatledger adopts the spool %s (%d records) of a process that ended",
                        path, len(orphan))  # fmt: skip
            self._orphans.append((orphan, release))

    async def _ship_orphans(self) -> None:
        """Ship what dead processes left (found on the first call), before this spool's records."""
        if not self._adopted:
            self._adopted = True
            await self._adopt_orphans()
        for orphan, release in list(self._orphans):
            if not await self._shipper.ship(orphan):
                return
            letters = await asyncio.wrap_future(orphan.dead_letters())
            if letters and isinstance(self._spool, FileSpool):
                await asyncio.wrap_future(self._spool.adopt_dead_letters(letters))
            orphan.close()
            assert self._directory is not None
            if not letters or isinstance(self._spool, FileSpool):
                self._directory.remove(orphan.path)
            release()
            self._orphans.remove((orphan, release))

    def __repr__(self) -> str:
        return f"Recorder({self._store!r}, spool={self._spool!r})"


# --- helpers of the write path -------------------------------------------------------------


def _content(content: MessageContent | str) -> MessageContent:
    return MessageContent(text=content) if isinstance(content, str) else content


def _details(
    values: dict[str, Any], estimated: bool, counted_by: str | None
) -> TokenDetails | None:
    data = {k: v for k, v in values.items() if v is not None}
    if estimated:
        data["estimated"] = True
        if counted_by is not None:
            data["counted_by"] = counted_by
    return TokenDetails(**data) if data else None


def _response_id(fields: CallFields) -> str | None:
    """The provider's response id, cut to the column's 255 characters; None when empty."""
    response_id = fields.get("response_id")
    return response_id[:255] if response_id else None


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _stored_prefix(known: Sequence[int], sent: Sequence[int]) -> list[int]:
    """Where ``sent``'s first messages stand among those stored (``known``), in order.

    A framework resends the conversation so far (``sent`` starts with all of
    ``known``), or a window of it: its system prompt and latest turns, which
    then appear in ``known`` in order and end where ``known`` ends. The answer
    is, for the longest prefix of ``sent`` that is a subsequence of ``known``
    ending at its last message, the position of each of its messages; empty
    when ``sent`` starts a new conversation.
    """
    n = len(known)
    if not n or not sent:
        return []
    if len(sent) >= n and list(sent[:n]) == list(known):
        return list(range(n))  # the common case: the whole history, then what is new
    for end in range(min(len(sent), n), 0, -1):
        if sent[end - 1] != known[-1]:
            continue
        positions = [n - 1]
        k = n - 1
        for item in reversed(sent[: end - 1]):
            k -= 1
            while k >= 0 and known[k] != item:
                k -= 1
            if k < 0:
                break
            positions.append(k)
        else:
            return positions[::-1]
    return []


def _stored_opening(known: Sequence[int], sent: Sequence[int]) -> list[int]:
    """The positions of ``sent`` when the stored conversation opens with it, else empty.

    A call that frameworks log late (LiteLLM logs in worker threads) comes after the
    next call, whose request resent the whole history with this call's reply in it.
    """
    if len(sent) <= len(known) and list(known[: len(sent)]) == list(sent):
        return list(range(len(sent)))
    return []


# --- interpreter exit and SIGTERM ----------------------------------------------------------

_live_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()
# Recorder.shared's recorders; weak, so a store and its recorder can go when nothing uses them.
_shared: weakref.WeakValueDictionary[tuple[Any, ...], Recorder] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()
_LOOP_FREE_BACKENDS = ("sqlite", "memory")  # stores usable from any event loop
_sigterm_installed = False


def _close_all_at_exit() -> None:
    """Ship what every live recorder spooled, each within its close timeout."""
    for recorder in list(_live_recorders):
        try:
            if recorder._home.is_running():
                recorder.close_sync(timeout=recorder._close_timeout + 5)
            elif recorder._store.backend_name in _LOOP_FREE_BACKENDS:
                recorder._home = asyncio.new_event_loop()  # the app's loop has ended
                try:
                    recorder._home.run_until_complete(recorder._finish_unlocked())
                finally:
                    recorder._home.close()
                recorder._after_finish()
            else:  # its pool belongs to a loop that has ended: the next start ships the spool
                recorder._after_finish()
        except Exception:  # (exit goes on; the spool keeps what was not shipped)
            logger.warning("chatledger could not ship at exit; the spool keeps the records",
                           exc_info=True)  # fmt: skip


atexit.register(_close_all_at_exit)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM, as a web server or an orchestrator sends it: exit through Python's cleanups.

    Inside a running event loop the exit is raised between two callbacks, never in
    the middle of a task's step (a driver's half-written packet would be left on a
    connection that still has records to ship); asyncio.run then cancels the tasks,
    and a recorder nobody closed ships its spool as its task ends.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise SystemExit(128 + signum) from None
    loop.call_soon_threadsafe(_raise_exit, 128 + signum)


def _raise_exit(status: int) -> None:
    raise SystemExit(status)


def _install_sigterm() -> None:
    """Make SIGTERM exit through Python's cleanups when nobody else handles it.

    Python's default dies on the spot, skipping ``finally`` blocks and
    ``atexit``. Only the default is replaced, and only from the main thread:
    a server that installs its own handler (uvicorn, gunicorn) keeps it.
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
