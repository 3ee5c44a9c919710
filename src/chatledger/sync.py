"""Blocking twins of the async stores, for scripts, notebooks and threaded apps.

``chatledger.sync.connect(url)`` returns a :class:`SyncStore` with the same
method names as the async store, each returning its result instead of a
coroutine. Every client owns one background thread running one event loop;
calls are handed to it, so they also work from a thread that already runs a
loop (Jupyter, an async web framework's worker), and no call pays for
``asyncio.run``. ``close()`` stops the thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self, TypeVar

from chatledger._sync_methods import SyncMethods
from chatledger.entities import QueryFilter
from chatledger.errors import StoreConnectionError
from chatledger.stores import PersistenceStore, RecordKind
from chatledger.stores import connect as connect_async
from chatledger.stores.base import DEFAULT_CHUNK_SIZE

__all__ = ["SyncStore", "connect"]

_T = TypeVar("_T")


class _LoopThread:
    """An event loop running forever on its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="chatledger-sync-loop", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError("a chatledger.sync call cannot be made from its own loop thread")
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        except RuntimeError:
            coroutine.close()  # the loop stopped between the check and the call
            raise
        return future.result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def _next_chunk(chunks: AsyncIterator[_T]) -> _T | None:
    """The next item of ``chunks``, or None once it is exhausted (a chunk is never None)."""
    return await anext(chunks, None)


class SyncStore(SyncMethods):
    """A store whose methods block until done; the same names as the async store.

    ``store.save_message(m)`` stores ``m`` and returns None;
    ``store.get_statistics(QueryFilter())`` returns ``UsageStatistics``. The
    store protocols' methods are generated with their signatures
    (``SyncMethods``), so a type checker knows each one. A backend's own
    coroutines (``enable_row_level_security``) work by name too, untyped;
    ``run(store.store.method())`` calls one typed.
    """

    def __init__(
        self, store: PersistenceStore, runner: _LoopThread, *, owns_loop: bool = True
    ) -> None:
        """Wrap ``store``, which must have been opened on ``runner``'s loop.

        ``owns_loop=False`` (a tenant's view) leaves the loop running on ``close()``.
        """
        self._store = store
        self._runner = runner
        self._owns_loop = owns_loop

    @property
    def store(self) -> PersistenceStore:
        """The async store underneath (use it only from the background loop)."""
        return self._store

    @property
    def _async_store(self) -> PersistenceStore:
        return self._store

    def _wait(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._runner.loop.is_closed():
            coroutine.close()
            self._refuse_closed()
        return self._runner.run(coroutine)

    def _refuse_closed(self) -> NoReturn:
        raise StoreConnectionError(f"the {self.backend_name} store is closed")

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The background loop the async store runs on."""
        return self._runner.loop

    @property
    def backend_name(self) -> str:
        """The backend's short name."""
        return self._store.backend_name

    @property
    def is_connected(self) -> bool:
        """True until ``close()`` has been called."""
        return self._store.is_connected

    def for_tenant(self, tenant_id: uuid.UUID | str) -> SyncStore:
        """Blocking twin of ``for_tenant``: this store seen by one tenant, on the same loop.

        Closing the view leaves this store (and its loop) open.
        """
        return SyncStore(self._store.for_tenant(tenant_id), self._runner, owns_loop=False)

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine of the async store on its loop, and return its result.

        For a backend's own methods, typed:
        ``store.run(store.store.enable_row_level_security())``.
        """
        return self._wait(coroutine)

    if not TYPE_CHECKING:  # at run time only: a type checker flags a misspelt method

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self._store, name)
            if not inspect.iscoroutinefunction(attribute):
                return attribute
            blocking = self._blocking(attribute)
            self.__dict__[name] = blocking  # built once per method
            return blocking

    def _blocking(self, method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._wait(method(*args, **kwargs))

        return call

    def export_records(
        self, kind: RecordKind, query: QueryFilter, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[list[dict[str, Any]]]:
        """Blocking twin of ``export_records``: a chunk is fetched on the loop thread when asked.

        Leaving the loop early (``break``, an exception) closes the export on
        the loop thread, once this generator is closed or collected.
        """
        runner = self._runner
        if runner.loop.is_closed():
            self._refuse_closed()
        chunks = self._store.export_records(kind, query, chunk_size=chunk_size)
        try:
            while (chunk := runner.run(_next_chunk(chunks))) is not None:
                yield chunk
        finally:
            finish = getattr(chunks, "aclose", None)  # async generators hold a frame to end
            if finish is not None and not runner.loop.is_closed():
                runner.run(finish())

    def close(self) -> None:
        """Close the store, then stop the background loop; safe to call twice.

        A tenant's view closes the view only: the loop is its store's.
        """
        if self._runner.loop.is_closed():
            return
        if not self._owns_loop:
            self._runner.run(self._store.close())
            return
        try:
            self._runner.run(self._store.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Self:
        """Return the store itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    def __repr__(self) -> str:
        return f"SyncStore({self._store!r})"


def connect(url: str, **options: Any) -> SyncStore:
    """Open the store a URL names, with blocking methods (see :func:`chatledger.connect`)."""
    runner = _LoopThread()
    try:
        store = runner.run(connect_async(url, **options))
    except BaseException:
        runner.stop()
        raise
    return SyncStore(store, runner)
