"""A framework's conversation memory kept in chatledger: one message row per item, in order.

The Agents SDK, LangChain and LlamaIndex each keep a conversation's items in
a store of their own. Their chatledger adapters are built on
:class:`ConversationMemory`: a framework session (named by its own key, any
string) is one chatledger session, each item one :class:`LLMMessage`, so the
conversation is visible to chatledger's API, CLI, statistics and dashboard
like any other, with its tenant, user and agent.

What the adapters rely on:

- **Durable writes, read at once.** These adapters *are* the framework's
  storage, so a write is in the database when the method returns, and a
  failure raises a :class:`chatledger.errors.PersistenceError`. Writes go
  through the store's own transactional methods (``save_messages`` is one
  transaction), never through a :class:`chatledger.Recorder`, whose spool
  ships asynchronously. A recorder keeps per-session state (fingerprints of
  the messages it stored): recording LLM calls into the *same* session an
  adapter writes would store those messages twice; in practice adapters and
  recorders serve different sessions, and nothing here coordinates them.
- **Order.** Items of one :meth:`ConversationMemory.append` share one
  ``create_time`` and take increasing UUIDv7 ids, which is the order every
  store keeps (``create_time``, then id); the stamp never goes back before
  the session's newest message. Appends to one session from this process
  are serialized, so each call's items stay together and each message's
  parent is the one before it. Writers in *other* processes still never
  interleave within a call, but two of them may name the same parent.
- **One transaction an append.** After its own append, the process
  remembers the session's newest message (its id and stamp), so the next
  append writes without reading first. Anything else that changes the
  session through a memory (a pop, a clear, an adapter's rewrite under
  :meth:`ConversationMemory.session_lock`) forgets it. A remembered message
  removed behind the memory's back (another process, the store's own API)
  fails the append's parent link; the append then reads the session and
  tries once more.
- **Any store, any thread, any loop.** ``store`` is an async store
  (``chatledger.connect``) or a blocking one (``chatledger.sync.connect``).
  An async SQLite store works on whichever loop awaits it (its connections
  live on threads of its own), so the async methods run on the caller's
  loop. Everything else runs on the store's home loop: a blocking store's
  own loop thread; for the in-memory store (and the blocking twins of an
  async SQLite one) a background loop thread shared by every memory; for
  PostgreSQL and MySQL async stores, whose connections belong to the loop
  that opened them, the loop running when the memory was made (else the
  first one that uses it). The async methods work from any loop; the
  ``*_sync`` twins from any thread, including one that runs an event loop,
  except the home loop's own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from chatledger.entities import ChatSession, LLMMessage, MessageContent, MessageRole, utc_now
from chatledger.errors import ConstraintError, StoreConnectionError
from chatledger.ids import NIL_UUID, uuid7
from chatledger.recording.scope import id_for_key
from chatledger.stores import PersistenceStore
from chatledger.sync import SyncStore, _LoopThread

__all__ = ["ConversationMemory"]

logger = logging.getLogger("chatledger.integrations.memory")

_T = TypeVar("_T")

Item = tuple[MessageRole, MessageContent]
"""One framework item as chatledger keeps it: a role and the content."""

# Stores whose methods may be awaited on any loop: their work runs on threads of their
# own (SQLite) or in plain Python (memory). The blocking twins of both, and every call to
# the memory store (plain Python, so one thread at a time), run on one background loop.
_LOOP_FREE_BACKENDS = frozenset({"sqlite", "memory"})
_CALLERS_LOOP_BACKENDS = frozenset({"sqlite"})
_shared_loop: _LoopThread | None = None
_shared_loop_guard = threading.Lock()


class Tail(NamedTuple):
    """A session's newest message as the next append needs it: its id and stamp."""

    id: uuid.UUID
    create_time: datetime


class _SessionLock:
    """One session's turn-taking in this process, awaited from any loop on any thread.

    An ``asyncio.Lock`` belongs to one loop; SQLite appends run on their
    callers' loops, so the lock is handed over between loops with
    ``call_soon_threadsafe``. It also keeps the session's tail once an append
    has written it (None: read it from the store).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self.tail: Tail | None = None

    async def acquire(self) -> None:
        """Wait for the session's turn."""
        with self._guard:
            if not self._held:
                self._held = True
                return
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            with self._guard:
                try:
                    self._waiters.remove((loop, waiter))
                    handed = False
                except ValueError:  # release() chose us already: pass the turn on
                    handed = True
            if handed:
                self.release()
            raise

    def release(self) -> None:
        """End this turn: the next waiter, on whichever loop, takes it."""
        while True:
            with self._guard:
                if not self._waiters:
                    self._held = False
                    return
                loop, waiter = self._waiters.popleft()
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that waiter's loop has closed: the next one
                continue
            return


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# One lock per (store, session): appends and pops of one session in this process take
# turns. Weak values: every memory holds its session's lock, so it (and the tail it
# keeps) lives while some memory of the session does.
_session_locks: weakref.WeakValueDictionary[tuple[int, uuid.UUID], _SessionLock] = (
    weakref.WeakValueDictionary()
)
_session_locks_guard = threading.Lock()

# The loop a server store's connections belong to, once some memory has learned it: a
# memory made on a thread without a loop finds it here.
_homes: weakref.WeakKeyDictionary[Any, asyncio.AbstractEventLoop] = weakref.WeakKeyDictionary()

_clock_guard = threading.Lock()
_last_stamp: datetime | None = None
_TICK = timedelta(microseconds=1)  # the finest time every backend keeps


def _shared_home() -> asyncio.AbstractEventLoop:
    """The background loop that loop-free stores run on, started on first use."""
    global _shared_loop
    with _shared_loop_guard:
        if _shared_loop is None or _shared_loop.loop.is_closed():
            _shared_loop = _LoopThread()
        return _shared_loop.loop


def _stamp(after: LLMMessage | Tail | None, first_id: uuid.UUID) -> datetime:
    """Now, never before the last stamp of this process nor before ``after`` (the tail).

    Equal stamps are fine (ids break the tie), except against a tail written
    by another process whose id sorts after ours: then one tick later.
    """
    global _last_stamp
    with _clock_guard:
        now = utc_now()
        if _last_stamp is not None and now < _last_stamp:
            now = _last_stamp  # the wall clock stepped back
        if after is not None:
            if now < after.create_time:
                now = after.create_time
            if now == after.create_time and first_id < after.id:
                now += _TICK
        _last_stamp = now
        return now


def _key_id(value: uuid.UUID | str | None) -> uuid.UUID:
    """An id given as a UUID or a key, as chatledger keeps it; the nil UUID when absent."""
    return NIL_UUID if value is None else id_for_key(value)


class ConversationMemory:
    """One framework session's items kept as chatledger messages, one row per item, in order."""

    def __init__(
        self,
        session_key: str,
        store: PersistenceStore | SyncStore,
        *,
        tenant_id: uuid.UUID | str | None = None,
        user_id: uuid.UUID | str | None = None,
        agent_id: uuid.UUID | str | None = None,
        source: str,
    ) -> None:
        """Keep the session ``session_key`` (any string; a UUID string is used as is) in ``store``.

        ``source`` names the content key under which an adapter keeps the
        framework's own object (``"openai_agents_item"``...).
        """
        if not isinstance(session_key, str) or not session_key:
            raise ValueError("a session key must be a non-empty string")
        if not isinstance(store, SyncStore) and not hasattr(store, "save_messages"):
            raise TypeError(
                f"a chatledger store is needed (chatledger.connect or chatledger.sync.connect), "
                f"not {type(store).__name__}"
            )
        self.session_key = session_key
        self.session_id: uuid.UUID = id_for_key(session_key)
        self.tenant_id = _key_id(tenant_id)
        self.user_id = _key_id(user_id)
        self.agent_id = _key_id(agent_id)
        self.source = source
        self._home: asyncio.AbstractEventLoop | None
        self._on_callers_loop = False  # async methods run on whichever loop awaits them
        if isinstance(store, SyncStore):
            self._store: PersistenceStore = store.store
            self._home = store.loop
        else:
            self._store = store
            backend = getattr(store, "backend_name", None)
            if backend in _LOOP_FREE_BACKENDS:
                self._home = _shared_home()
                self._on_callers_loop = backend in _CALLERS_LOOP_BACKENDS
            else:
                try:
                    self._home = _homes.setdefault(store, asyncio.get_running_loop())
                except RuntimeError:  # bound by the first async call: its loop opened the store
                    self._home = _homes.get(store)
        self._session_known = False  # the session row exists (we made it or saw it)
        key = (id(self._store), self.session_id)
        with _session_locks_guard:
            lock = _session_locks.get(key)
            if lock is None:
                lock = _session_locks[key] = _SessionLock()
        self._lock = lock

    @property
    def store(self) -> PersistenceStore:
        """The async store the messages live in."""
        return self._store

    def __repr__(self) -> str:
        return f"ConversationMemory({self.session_key!r}, {self._store!r}, source={self.source!r})"

    # --- the async interface -------------------------------------------------------------

    async def append(self, items: Sequence[Item]) -> list[LLMMessage]:
        """Store ``items`` in order, all in one transaction; return the messages stored."""
        built = [(MessageRole(role), content) for role, content in items]
        if not built:
            return []
        return await self.run(self._append(built))

    async def read(self, limit: int | None = None) -> list[LLMMessage]:
        """The session's messages, oldest first; with ``limit``, the newest ``limit`` of them."""
        if limit is not None and limit <= 0:
            return []
        return await self._on_home(self._read(limit))

    async def pop(self) -> LLMMessage | None:
        """Remove the newest message and return it (None when the session is empty)."""
        return await self.run(self._pop())

    async def clear(self) -> None:
        """Delete every message of the session (the session row stays)."""
        await self.run(self._clear())

    # --- the blocking twins --------------------------------------------------------------

    def append_sync(self, items: Sequence[Item]) -> list[LLMMessage]:
        """Blocking twin of :meth:`append`, from any thread but the store's loop thread."""
        built = [(MessageRole(role), content) for role, content in items]
        if not built:
            return []
        return self.run_sync(self._append(built))

    def read_sync(self, limit: int | None = None) -> list[LLMMessage]:
        """Blocking twin of :meth:`read`."""
        if limit is not None and limit <= 0:
            return []
        return self.run_sync(self._read(limit))

    def pop_sync(self) -> LLMMessage | None:
        """Blocking twin of :meth:`pop`."""
        return self.run_sync(self._pop())

    def clear_sync(self) -> None:
        """Blocking twin of :meth:`clear`."""
        self.run_sync(self._clear())

    # --- the work, on the home loop ------------------------------------------------------

    @asynccontextmanager
    async def session_lock(self) -> AsyncIterator[None]:
        """Hold the turn this process's appends and pops of the session take.

        An adapter that writes in several steps (an insert that rewrites the
        rows after it) holds it so that no append of this process lands
        between. Whatever it wrote, the next append reads the session's tail.
        """
        await self._lock.acquire()
        try:
            yield
        finally:
            self._lock.tail = None
            self._lock.release()

    async def _append(self, items: Sequence[Item]) -> list[LLMMessage]:
        lock = self._lock
        await lock.acquire()
        try:
            for attempt in range(2):
                tail = lock.tail
                if tail is None:
                    recent = await self._store.get_recent_messages(self.session_id, 1)
                    if recent:
                        tail = Tail(recent[0].id, recent[0].create_time)
                    else:
                        await self._ensure_session()
                messages = self.build_messages(items, tail)
                lock.tail = None  # until this write is known to have landed
                try:
                    await self._store.save_messages(messages)
                except ConstraintError:
                    if attempt:
                        raise
                    # The tail went away meanwhile (the session deleted, the newest message
                    # popped by another process or behind this memory's back): read, once more.
                    self._session_known = False
                else:
                    lock.tail = Tail(messages[-1].id, messages[-1].create_time)
                    return messages
            raise AssertionError("unreachable")  # the second attempt returned or raised
        finally:
            lock.release()

    def build_messages(
        self, items: Sequence[Item], tail: LLMMessage | Tail | None
    ) -> list[LLMMessage]:
        """The messages ``append`` would save for ``items`` after ``tail``: ordered and chained."""
        ids = [uuid7() for _ in items]
        stamp = _stamp(tail, ids[0])
        parent = None if tail is None else tail.id
        messages = []
        for message_id, (role, content) in zip(ids, items, strict=True):
            messages.append(
                LLMMessage(
                    id=message_id,
                    parent_message_id=parent,
                    chat_session_id=self.session_id,
                    agent_id=self.agent_id,
                    user_id=self.user_id,
                    tenant_id=self.tenant_id,
                    role=role,
                    content=content,
                    create_time=stamp,
                    update_time=stamp,
                )
            )
            parent = message_id
        return messages

    async def _ensure_session(self) -> None:
        """Create the session row on first write, keeping the framework's key."""
        if self._session_known:
            return
        if await self._store.get_session(self.session_id) is None:
            session = (
                ChatSession.new(self.user_id, self.agent_id)
                .with_id(self.session_id)
                .with_tenant_id(self.tenant_id)
            )
            if session.id != _uuid_or_none(self.session_key):
                session = session.with_metadata("key", self.session_key)
            try:
                await self._store.create_session(session)
            except ConstraintError:  # another writer made it first
                if await self._store.get_session(self.session_id) is None:
                    raise
        self._session_known = True

    async def _read(self, limit: int | None) -> list[LLMMessage]:
        if limit is None:
            return await self._store.get_session_messages(self.session_id)
        return await self._store.get_recent_messages(self.session_id, limit)

    async def _pop(self) -> LLMMessage | None:
        async with self.session_lock():
            while True:
                tail = await self._store.get_recent_messages(self.session_id, 1)
                if not tail:
                    return None
                if await self._store.delete_message(tail[0].id):
                    return tail[0]
                # another process removed it between our read and delete: take the next

    async def _clear(self) -> None:
        async with self.session_lock():
            await self._store.delete_session_messages(self.session_id)

    # --- getting to the home loop --------------------------------------------------------

    async def _on_home(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the home loop, awaited from whichever loop calls."""
        running = asyncio.get_running_loop()
        if self._home is None:
            self._home = _homes.setdefault(self._store, running)
        if running is self._home or self._on_callers_loop:
            return await coroutine
        return await asyncio.wrap_future(self._submit(coroutine))

    async def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run a write on the home loop; a cancelled caller still waits for its outcome.

        A write half-seen by its caller would leave the framework unsure what
        is stored; like the Agents SDK's own stores, the cancellation is
        raised once the write has finished (or failed).
        """
        running = asyncio.get_running_loop()
        if self._home is None:
            self._home = _homes.setdefault(self._store, running)
        if running is self._home or self._on_callers_loop:
            outcome: Awaitable[_T] = asyncio.ensure_future(coroutine)
        else:
            outcome = asyncio.wrap_future(self._submit(coroutine))
        task = asyncio.ensure_future(outcome)
        cancelled: asyncio.CancelledError | None = None
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError as exc:
                cancelled = cancelled or exc
        if cancelled is not None:
            if not task.cancelled():
                task.exception()  # retrieved: the cancellation is what the caller sees
            raise cancelled
        return task.result()

    def run_sync(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the home loop and wait for it, from another thread."""
        home = self._home = self._home or _homes.get(self._store)
        if home is None:
            coroutine.close()
            raise RuntimeError(
                f"{self._store.backend_name} async store: call an async method first (from the "
                "loop that opened the store), or open it with chatledger.sync.connect"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is home:
            coroutine.close()
            raise RuntimeError(
                "a blocking ConversationMemory method was called on its store's own event "
                "loop, where waiting would deadlock; await the async method instead"
            )
        return self._submit(coroutine).result()

    def _submit(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """``coroutine`` handed to the home loop: a concurrent future of its outcome."""
        assert self._home is not None
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._home)
        except RuntimeError as exc:  # the home loop has been closed
            coroutine.close()
            raise StoreConnectionError(
                f"the event loop of the {self._store.backend_name} store has ended"
            ) from exc


def _uuid_or_none(text: str) -> uuid.UUID | None:
    """``text`` as a UUID when it is one."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
