"""What the database-server backends (PostgreSQL, MySQL/MariaDB) share.

A server backend is a connection pool behind the :class:`~chatledger.stores.sql.Database`
protocol. :class:`PooledDatabase` holds the logic that is the same for every
driver (one statement runs on its own, several run in one transaction, reads
see one snapshot, a read that meets a dropped connection is retried once on
a fresh one, a write the server aborted for a deadlock is retried whole,
concurrent single saves may share one commit) and leaves the driver calls to
a subclass. Where a server is, and how its URL is shown, is
:mod:`chatledger.stores.urls`' business.
"""

from __future__ import annotations

import asyncio
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

from chatledger.errors import (
    Failure,
    PersistenceError,
    StoreConnectionError,
    failure_error,
)
from chatledger.stores.dialect import Dialect
from chatledger.stores.sql import Read, SqlStore, Write
from chatledger.stores.sql import migrate as migrate_schema
from chatledger.stores.urls import ServerAddress, shown_cause

__all__ = [
    "PooledDatabase",
    "ServerStore",
    "import_driver",
    "server_error",
]

logger = logging.getLogger(__name__)

_Conn = TypeVar("_Conn")
_WRITE_ATTEMPTS = 3  # a deadlock victim is retried this many times in all


def import_driver(module: str, extra: str, backend: str) -> Any:
    """Import a backend's driver, or say which extra installs it."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(
            f"the {backend} backend needs the {module} driver: pip install 'chatledger[{extra}]'"
        ) from exc


def server_error(
    failure: Failure, backend: str, address: ServerAddress, text: str
) -> PersistenceError:
    """The chatledger error for ``failure``, worded the same for every server."""
    return failure_error(
        failure,
        backend,
        address.scrub(text),  # a driver may echo its connection arguments
        address=address,
        host=address.host,
        port=address.port,
        database=address.database,
    )


class PooledDatabase(ABC, Generic[_Conn]):
    """A :class:`~chatledger.stores.sql.Database` over a driver's connection pool."""

    backend: ClassVar[str]
    #: whether concurrent joinable writes are committed together (see :meth:`write`)
    joins_writes: ClassVar[bool] = True

    def __init__(self, dialect: Dialect, address: ServerAddress) -> None:
        """Serve ``dialect``'s statements on the server at ``address``."""
        self.dialect = dialect
        self.address = address
        self._committing = False  # a joinable write is being committed
        self._joined: list[_Joined] = []  # joinable writes waiting for the next group
        self._committer: asyncio.Future[None] | None = None

    # --- what a driver module provides --------------------------------------------------

    @abstractmethod
    def _connection(self) -> AbstractAsyncContextManager[_Conn]:
        """A connection from the pool, returned to it afterwards."""

    @abstractmethod
    def _transaction(self, conn: _Conn, *, snapshot: bool) -> AbstractAsyncContextManager[None]:
        """A transaction: read-only on one snapshot when ``snapshot``, else read-write."""

    @abstractmethod
    async def _fetch(self, conn: _Conn, read: Read) -> list[Sequence[Any]]:
        """Run one query; its rows."""

    @abstractmethod
    async def _execute(self, conn: _Conn, write: Write) -> int:
        """Run one write statement (one row of parameters, or ``many``); rows it touched."""

    async def _execute_transaction(self, conn: _Conn, writes: Sequence[Write]) -> list[int]:
        """Run ``writes`` in one transaction; rows each touched."""
        async with self._transaction(conn, snapshot=False):
            return [await self._execute(conn, write) for write in writes]

    async def _execute_joined(
        self, conn: _Conn, group: Sequence[Sequence[Write]]
    ) -> list[list[int]]:
        """Run several callers' writes in one transaction; rows each statement touched."""
        async with self._transaction(conn, snapshot=False):
            return [[await self._execute(conn, write) for write in writes] for writes in group]

    @abstractmethod
    def _map_error(self, exc: BaseException) -> PersistenceError:
        """The chatledger error for a driver exception."""

    @abstractmethod
    def _connection_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection died (so a read may be retried)."""

    @abstractmethod
    def _retry_write(self, exc: BaseException) -> bool:
        """Whether the server aborted the whole transaction and it may run again."""

    @abstractmethod
    async def _close_pool(self) -> None:
        """Close every pooled connection."""

    # --- the Database protocol ----------------------------------------------------------

    async def read(self, reads: Sequence[Read]) -> list[list[Any]]:
        """Run ``reads`` on one snapshot; a dropped connection is retried once.

        Rows are converted (``Read.convert``) once the connection is back in the pool.
        """
        for attempt in (1, 2):
            try:
                async with self._connection() as conn:
                    if len(reads) == 1:
                        results = [await self._fetch(conn, reads[0])]
                    else:
                        async with self._transaction(conn, snapshot=True):
                            results = [await self._fetch(conn, read) for read in reads]
            except Exception as exc:  # noqa: BLE001  (mapped to chatledger's error below)
                if attempt == 1 and self._connection_lost(exc):
                    logger.warning(
                        "%s connection to %s lost; retrying the read", self.backend, self.address
                    )
                    continue
                raise self._map_error(exc) from shown_cause(exc, self.address)
            return [
                rows if read.convert is None else read.convert(rows)
                for read, rows in zip(reads, results, strict=True)
            ]
        raise AssertionError("unreachable")  # pragma: no cover

    async def write(self, writes: Sequence[Write]) -> list[int]:
        """Run ``writes`` in one transaction; concurrent joinable ones share a commit.

        Writes whose statements are all ``joinable`` (single saves) wait while
        another group is being committed and then go together, in one
        transaction: group commit, as the SQLite backend does. A group the
        server refuses is run again one write at a time, so each caller gets
        its own outcome.
        """
        if not self.joins_writes or not all(write.joinable for write in writes):
            return await self._write_alone(writes)
        waiting = _Joined(writes, asyncio.get_running_loop().create_future())
        self._joined.append(waiting)
        if not self._committing:
            self._committing = True
            self._committer = asyncio.ensure_future(self._commit_groups())
        return await waiting.future

    async def _commit_groups(self) -> None:
        """Commit the waiting writes, group after group, until none is left."""
        group: list[_Joined] = []
        try:
            while self._joined:
                group = [job for job in self._joined if not job.future.done()]
                self._joined.clear()
                if group:
                    await self._commit_group(group)
        except BaseException as exc:  # the loop is closing, say: nobody may wait forever
            stopped = StoreConnectionError(f"{self.backend}: the store stopped writing ({exc!r})")
            for job in [*group, *self._joined]:
                _settle(job, error=stopped)
            self._joined.clear()
            raise
        finally:
            self._committing = False

    async def _commit_group(self, group: list[_Joined]) -> None:
        if len(group) > 1:
            try:
                async with self._connection() as conn:
                    counts = await self._execute_joined(conn, [job.writes for job in group])
            except Exception as exc:  # noqa: BLE001  (each write then runs alone)
                if self._connection_lost(exc):  # it may have committed: never run it twice
                    for job in group:
                        _settle(job, error=self._map_error(exc))
                    return
                logger.debug(
                    "%s refused a group commit (%s); one write at a time", self.backend, exc
                )
            else:
                for job, count in zip(group, counts, strict=True):
                    _settle(job, result=count)
                return
        for job in group:
            if job.future.done():  # its caller gave up before it was sent
                continue
            try:
                _settle(job, result=await self._write_alone(job.writes))
            except Exception as exc:  # noqa: BLE001  (handed to the caller that waits)
                _settle(job, error=exc)

    async def _write_alone(self, writes: Sequence[Write]) -> list[int]:
        """Run ``writes`` in one transaction (a lone statement commits by itself)."""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                async with self._connection() as conn:
                    if len(writes) == 1 and writes[0].many is None:
                        return [await self._execute(conn, writes[0])]
                    return await self._execute_transaction(conn, writes)
            except Exception as exc:  # noqa: BLE001  (mapped to chatledger's error below)
                if attempt < _WRITE_ATTEMPTS and self._retry_write(exc):
                    logger.info(
                        "%s aborted a transaction (%s); running it again", self.backend, exc
                    )
                    continue
                raise self._map_error(exc) from shown_cause(exc, self.address)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Finish the group being committed, then close the pool."""
        if self._committer is not None and not self._committer.done():
            await asyncio.wait([self._committer])
        try:
            await self._close_pool()
        except Exception:
            logger.warning("closing the %s pool failed", self.backend, exc_info=True)


@dataclass(slots=True)
class _Joined:
    """A joinable write waiting for the next group commit, and where its outcome goes."""

    writes: Sequence[Write]
    future: asyncio.Future[list[int]]


def _settle(
    job: _Joined, *, result: list[int] | None = None, error: BaseException | None = None
) -> None:
    """Hand a group member its outcome, unless its caller stopped waiting."""
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result or [])


class ServerStore(SqlStore):
    """A store on a database server: connect by URL, or from ``DATABASE_URL``."""

    schemes: ClassVar[tuple[str, ...]]
    """The URL schemes this backend answers to, its own name first."""
    default_port: ClassVar[int]

    @classmethod
    def address_of(cls, url: str) -> ServerAddress:
        """The server and database ``url`` names; ValueError if it is not this backend's."""
        return ServerAddress.parse(url, cls.schemes, cls.default_port)

    def __repr__(self) -> str:
        """The class, whether it is open, and where the server is (never the password)."""
        state = "closed" if self._closed else "open"
        address = getattr(self._db, "address", None)
        return f"<{type(self).__name__} {state} {address}>"

    @classmethod
    async def _open(
        cls, url: str, *, min_size: int, max_size: int, options: dict[str, Any]
    ) -> PooledDatabase[Any]:
        """Open a pool on the server ``url`` names."""
        raise NotImplementedError

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        **driver_options: Any,
    ) -> Self:
        """Open a pool of ``min_size``..``max_size`` connections and bring the schema up to date.

        ``driver_options`` go to the driver's pool as they are (for example
        ``ssl=…``). ``migrate=False`` opens the schema as it is, for tools that
        only report it.
        """
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValueError(
                f"pool sizes must satisfy 0 <= min_size <= max_size >= 1, "
                f"not min_size={min_size}, max_size={max_size}"
            )
        database = await cls._open(
            url, min_size=min_size, max_size=max_size, options=driver_options
        )
        try:
            if migrate:
                await migrate_schema(database)
        except BaseException:
            await database.close()
            raise
        return cls(database)

    @property
    def location(self) -> str:
        """Which database this is, as ``user@host:port/database`` (never a password)."""
        address: ServerAddress = self._db.address  # type: ignore[attr-defined]
        return address.location

    @classmethod
    async def from_env(cls, variable: str = "DATABASE_URL", **options: Any) -> Self:
        """:meth:`connect` to the URL in the environment variable ``variable``."""
        url = os.environ.get(variable)
        if not url:
            raise StoreConnectionError(
                f"environment variable {variable} is not set; set it to the database URL"
            )
        return await cls.connect(url, **options)
