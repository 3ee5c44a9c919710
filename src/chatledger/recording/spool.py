"""The spool: where a record is made durable before the hook that made it returns.

A :class:`FileSpool` is an SQLite database in WAL mode with
``synchronous=FULL``: a commit returns only once its WAL frames are on disk,
and a torn last frame (a crash mid-write) fails its checksum and is ignored
on the next open, so what a commit acknowledged survives ``kill -9`` and a
power cut on a disk that honours fsync. One writer thread owns the
connection and commits everything queued at the moment in one transaction:
records arriving together share one fsync (group commit).

A :class:`MemorySpool` has the same interface and keeps records in a list:
for the in-memory store (nothing outlives the process anyway) and for direct
writes, where the database is meant to be the only copy.

Records the store refuses for good are moved to the spool's dead letters,
where ``chatledger spool status|retry|drop`` shows and handles them.

Each process writes its own spool file, locked with ``flock`` for as long as
it lives. :class:`SpoolDirectory` names the files, and finds those whose
owner died so a recorder starting later can ship what they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from chatledger.errors import PersistenceError

__all__ = [
    "DEFAULT_SPOOL_LIMIT",
    "DeadLetter",
    "DeadLetterQueue",
    "SpoolReport",
    "drop_dead_letters",
    "report_spool",
    "FileSpool",
    "MemorySpool",
    "Shippable",
    "Spool",
    "SpoolDirectory",
    "SpoolError",
    "SpooledRecord",
    "default_spool_root",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_SPOOL_LIMIT = 1_000_000
"""Records a spool holds at most by default (about 1 GB of typical chat records)."""

_FORMAT = 1  # PRAGMA user_version of a spool file; a newer one is refused, never guessed at
_SCHEMA = """
CREATE TABLE IF NOT EXISTS record (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,
    error TEXT NOT NULL, failed_at TEXT NOT NULL
);
"""


class SpoolError(PersistenceError):
    """A spool file cannot be opened, read or written (damaged, a newer format, a full disk)."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record waiting in a spool: its place in line, its kind and its JSON."""

    seq: int
    kind: str  # "session", "message" or "call"
    body: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the store refused for good, with the reason and when."""

    seq: int
    kind: str
    body: str
    error: str
    failed_at: str


class Shippable(Protocol):
    """What the shipper needs of a queue of records: read in order, forget, set aside."""

    def peek(self, limit: int, after: int = 0) -> Future[list[SpooledRecord]]:
        """The oldest ``limit`` waiting records whose seq is above ``after``."""
        ...

    def remove(self, seqs: Sequence[int]) -> Future[None]:
        """Forget records the store now holds."""
        ...

    def bury(self, record: SpooledRecord, error: str) -> Future[None]:
        """Move a record the store refused for good to the dead letters."""
        ...


class Spool(Shippable, Protocol):
    """Where records wait, in order, until the store has them."""

    @property
    def path(self) -> Path | None:
        """The file behind the spool, or None in memory."""
        ...

    @property
    def limit(self) -> int:
        """How many records it holds at most."""
        ...

    def __len__(self) -> int:
        """How many records wait (dead letters not counted)."""
        ...

    def append(self, records: Sequence[tuple[str, str]]) -> Future[int | None]:
        """Queue ``(kind, body)`` records in order; once durable, the future holds the last seq.

        None when the spool is at its limit: nothing of them was kept.
        """
        ...

    def append_async(self, records: Sequence[tuple[str, str]]) -> asyncio.Future[int | None]:
        """As :meth:`append`, for a caller in an event loop: the future is that loop's."""
        ...

    def dead_letters(self) -> Future[list[DeadLetter]]:
        """Every dead letter, oldest first."""
        ...

    def close(self) -> None:
        """Finish queued work and release the file."""
        ...


def _settle(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in settled:
        if not future.done():
            future.set_result(result)


def _settle_error(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _done(value: _T) -> Future[_T]:
    future: Future[_T] = Future()
    future.set_result(value)
    return future


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


class MemorySpool:
    """A spool in memory: records outlive no process; for the memory store and direct writes."""

    def __init__(self, limit: int = DEFAULT_SPOOL_LIMIT) -> None:
        """An empty spool holding at most ``limit`` records."""
        self._limit = limit
        self._records: list[SpooledRecord] = []
        self._dead: list[DeadLetter] = []
        self._next = 1
        self._lock = threading.Lock()  # appends come from any thread, shipping from a loop

    @property
    def path(self) -> Path | None:
        """None: nothing is on disk."""
        return None

    @property
    def limit(self) -> int:
        """How many records it holds at most."""
        return self._limit

    def __len__(self) -> int:
        """How many records wait."""
        return len(self._records)

    def append(self, records: Sequence[tuple[str, str]]) -> Future[int | None]:
        """Queue records; they are 'durable' at once, as far as memory goes."""
        with self._lock:
            if len(self._records) + len(records) > self._limit:
                return _done(None)
            for kind, body in records:
                self._records.append(SpooledRecord(self._next, kind, body))
                self._next += 1
            return _done(self._next - 1)

    def append_async(self, records: Sequence[tuple[str, str]]) -> asyncio.Future[int | None]:
        """As :meth:`append`, as the running loop's future."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        future.set_result(self.append(records).result())
        return future

    def peek(self, limit: int, after: int = 0) -> Future[list[SpooledRecord]]:
        """The oldest ``limit`` waiting records whose seq is above ``after``."""
        with self._lock:
            return _done([r for r in self._records if r.seq > after][:limit])

    def remove(self, seqs: Sequence[int]) -> Future[None]:
        """Forget shipped records."""
        gone = set(seqs)
        with self._lock:
            self._records = [r for r in self._records if r.seq not in gone]
        return _done(None)

    def bury(self, record: SpooledRecord, error: str) -> Future[None]:
        """Move a refused record to the dead letters."""
        with self._lock:
            self._records = [r for r in self._records if r.seq != record.seq]
            self._dead.append(DeadLetter(record.seq, record.kind, record.body, error, _now_text()))
        return _done(None)

    def dead_letters(self) -> Future[list[DeadLetter]]:
        """Every dead letter, oldest first."""
        with self._lock:
            return _done(list(self._dead))

    def close(self) -> None:
        """Nothing to release."""


@dataclass(slots=True)
class _Job:
    """Work for the spool's writer thread and the future its outcome goes to."""

    run: Callable[[sqlite3.Connection], Any]
    future: Future[Any] | asyncio.Future[Any]
    durable: bool = True  # its commit must reach the disk before it is acknowledged


class FileSpool:
    """A spool in an SQLite file (WAL, synchronous=FULL); one writer thread, group commit."""

    def __init__(
        self, path: Path, limit: int = DEFAULT_SPOOL_LIMIT, identity: str | None = None
    ) -> None:
        """Open (or create) the spool file at ``path``; :class:`SpoolError` if it is damaged.

        ``identity`` names the database its records are for; a new file keeps it,
        so a spool is never shipped to another database.
        """
        self._path = path
        self._limit = limit
        self._conn = _open_spool_file(path)
        if identity is not None:
            with self._conn:
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('database', ?)", (identity,))
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'database'").fetchone()
        self.identity: str | None = row[0] if row else None
        seqs = self._conn.execute(
            "SELECT (SELECT count(*) FROM record),"
            " max(coalesce((SELECT max(seq) FROM record), 0),"
            "     coalesce((SELECT max(seq) FROM dead_letter), 0))"
        ).fetchone()
        self._count: int = seqs[0]
        self._next: int = seqs[1] + 1
        self.commits = 0  # transactions committed: fewer than appends when they group
        self._closing = False
        self._synchronous = "FULL"
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._write_loop, name="chatledger-spool", daemon=True
        )
        self._thread.start()

    @property
    def path(self) -> Path:
        """The spool file."""
        return self._path

    @property
    def limit(self) -> int:
        """How many records it holds at most."""
        return self._limit

    def __len__(self) -> int:
        """How many records wait."""
        return self._count

    # --- the public operations, each a job for the writer thread ------------------------

    def append(self, records: Sequence[tuple[str, str]]) -> Future[int | None]:
        """Queue records; once their transaction is on disk, the future holds the last seq."""
        return self._submit(self._appender(records))

    def _appender(
        self, records: Sequence[tuple[str, str]]
    ) -> Callable[[sqlite3.Connection], int | None]:
        def run(conn: sqlite3.Connection) -> int | None:
            if self._count + len(records) > self._limit:
                return None
            first = self._next
            conn.executemany(
                "INSERT INTO record (seq, kind, body) VALUES (?, ?, ?)",
                [(first + i, kind, body) for i, (kind, body) in enumerate(records)],
            )
            self._next += len(records)
            self._count += len(records)
            return self._next - 1

        return run

    def append_async(self, records: Sequence[tuple[str, str]]) -> asyncio.Future[int | None]:
        """As :meth:`append`, for a caller in an event loop: the future is that loop's."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._submit(self._appender(records), future)
        return future

    def peek(self, limit: int, after: int = 0) -> Future[list[SpooledRecord]]:
        """The oldest ``limit`` waiting records whose seq is above ``after``."""

        def run(conn: sqlite3.Connection) -> list[SpooledRecord]:
            rows = conn.execute(
                "SELECT seq, kind, body FROM record WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
            return [SpooledRecord(*row) for row in rows]

        return self._submit(run, durable=False)

    def remove(self, seqs: Sequence[int]) -> Future[None]:
        """Forget shipped records.

        Not worth an fsync of its own: should a crash undo it, the records ship again
        and the store skips them. The next durable commit makes it durable too.
        """

        def run(conn: sqlite3.Connection) -> None:
            # One statement for the batch (a shipped batch is usually one run of seqs).
            before = conn.total_changes
            chosen = sorted(seqs)
            if chosen and chosen[-1] - chosen[0] + 1 == len(chosen):
                conn.execute(
                    "DELETE FROM record WHERE seq BETWEEN ? AND ?", (chosen[0], chosen[-1])
                )
            else:
                conn.execute(
                    "DELETE FROM record WHERE seq IN (SELECT value FROM json_each(?))",
                    (json.dumps(chosen),),
                )
            self._count -= conn.total_changes - before

        return self._submit(run, durable=False)

    def bury(self, record: SpooledRecord, error: str) -> Future[None]:
        """Move a refused record to the dead letters, in one transaction."""

        def run(conn: sqlite3.Connection) -> None:
            before = conn.total_changes
            conn.execute("DELETE FROM record WHERE seq = ?", (record.seq,))
            self._count -= conn.total_changes - before
            conn.execute(
                "INSERT OR REPLACE INTO dead_letter VALUES (?, ?, ?, ?, ?)",
                (record.seq, record.kind, record.body, error, _now_text()),
            )

        return self._submit(run)

    def dead_letters(self) -> Future[list[DeadLetter]]:
        """Every dead letter, oldest first."""

        def run(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute("SELECT * FROM dead_letter ORDER BY seq").fetchall()
            return [DeadLetter(*row) for row in rows]

        return self._submit(run)

    def adopt_dead_letters(self, letters: Sequence[DeadLetter]) -> Future[None]:
        """Take over another spool's dead letters, so they stay visible and retriable."""

        def run(conn: sqlite3.Connection) -> None:
            for letter in letters:
                conn.execute(
                    "INSERT INTO dead_letter VALUES (?, ?, ?, ?, ?)",
                    (self._next, letter.kind, letter.body, letter.error, letter.failed_at),
                )
                self._next += 1

        return self._submit(run)

    def close(self) -> None:
        """Finish queued work, checkpoint, and close the file; safe to call twice."""
        if self._closing:
            return
        self._closing = True
        self._jobs.put(None)
        self._thread.join()

    # --- the writer thread ----------------------------------------------------------------

    def _submit(
        self, run: Callable[[sqlite3.Connection], _T], future: Any = None, *, durable: bool = True
    ) -> Future[_T]:
        if future is None:
            future = Future()
        if self._closing:
            future.set_exception(SpoolError(f"the spool {self._path} is closed"))
            return future  # type: ignore[no-any-return]
        self._jobs.put(_Job(run, future, durable))
        return future  # type: ignore[no-any-return]

    def _write_loop(self) -> None:
        conn = self._conn
        stopping = False
        while not stopping:
            jobs: list[_Job] = []
            job = self._jobs.get()
            while job is not None:
                jobs.append(job)
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
            stopping = job is None
            if jobs:
                self._run_group(conn, jobs)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    def _run_group(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Run ``jobs`` in one transaction (one fsync); alone each, if the group fails."""
        count, next_seq = self._count, self._next
        synchronous = "FULL" if any(job.durable for job in jobs) else "NORMAL"
        if synchronous != self._synchronous:  # NORMAL: a WAL commit without its fsync
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        try:
            with conn:  # BEGIN … COMMIT, or ROLLBACK on an exception
                results = [job.run(conn) for job in jobs]
            self.commits += 1
        except sqlite3.Error as exc:
            self._count, self._next = count, next_seq
            if len(jobs) > 1:
                for job in jobs:
                    self._run_group(conn, [job])
                return
            error = _spool_error(self._path, "write", exc)
            logger.error("%s", error)  # noqa: TRY400  (the error says it all; it is raised too)
            self._fail(jobs[0], error)
            return
        except BaseException as exc:  # noqa: BLE001  (a bug in a job: its caller hears of it)
            self._count, self._next = count, next_seq
            for job in jobs:
                self._fail(job, exc)
            return
        # Futures of one event loop are settled by one callback: one wake-up of that
        # loop for the whole group, not one per record.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for job, result in zip(jobs, results, strict=True):
            if isinstance(job.future, asyncio.Future):
                by_loop.setdefault(job.future.get_loop(), []).append((job.future, result))
            elif not job.future.cancelled():
                job.future.set_result(result)
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                loop.call_soon_threadsafe(_settle, settled)

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        future = job.future
        if isinstance(future, asyncio.Future):
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_settle_error, future, exc)
        elif not future.cancelled():
            future.set_exception(exc)

    def __repr__(self) -> str:
        return f"FileSpool({str(self._path)!r}, waiting={self._count})"


def _spool_error(path: Path, doing: str, exc: BaseException) -> SpoolError:
    return SpoolError(f"cannot {doing} the spool {path}: {exc}")


def _spool_problem(path: Path, version: int, check: str) -> SpoolError | None:
    """Why a spool file cannot be used, or None."""
    if version > _FORMAT:
        return SpoolError(
            f"the spool {path} was written by a newer chatledger (format {version}); "
            "upgrade chatledger to ship it"
        )
    if check != "ok":
        return SpoolError(f"the spool {path} is damaged: {check}")
    return None


def _open_spool_file(path: Path) -> sqlite3.Connection:
    """Open a spool file and check it whole; :class:`SpoolError` when it is damaged."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _spool_error(path, "open", exc) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        problem = _spool_problem(path, version, check)
        if problem is not None:
            raise problem
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={_FORMAT}")
        conn.isolation_level = "DEFERRED"  # from here, `with conn` opens a transaction
    except sqlite3.Error as exc:
        conn.close()
        raise _spool_error(path, "read", exc) from None
    except SpoolError:
        conn.close()
        raise
    return conn


# --- where spools live ---------------------------------------------------------------------


def default_spool_root() -> Path:
    """``$CHATLEDGER_SPOOL_DIR``, else ``$XDG_STATE_HOME/chatledger/spool`` (``~/.local/state``)."""
    configured = os.environ.get("CHATLEDGER_SPOOL_DIR")
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "chatledger" / "spool"


class _Lock:
    """An exclusive ``flock`` on a file, held until released or the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)  # closing the descriptor drops the lock


class SpoolDirectory:
    """The spool files of one database: one per live process, plus those whose owner died."""

    SUFFIX = ".spool"

    def __init__(self, path: Path) -> None:
        """The directory at ``path`` (created, private to this user, when first used)."""
        self.path = path

    def create(
        self, limit: int = DEFAULT_SPOOL_LIMIT, identity: str | None = None
    ) -> tuple[FileSpool, Callable[[], None]]:
        """A new spool file for this process, locked; and the function that releases it."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        lock = _Lock(self.path / f"{name}.lock")  # locked before the spool exists: never adopted
        try:
            spool = FileSpool(self.path / f"{name}{self.SUFFIX}", limit, identity)
        except BaseException:
            lock.release()
            raise
        return spool, lambda: self._release(spool, lock)

    def orphans(self) -> Iterator[tuple[Path, Callable[[], None]]]:
        """Spool files whose owner died, each with the release of the lock taken on it."""
        if not self.path.is_dir():
            return
        for file in sorted(self.path.glob(f"*{self.SUFFIX}")):
            try:
                lock = _Lock(file.with_suffix(".lock"))
            except OSError:
                continue  # its owner is alive (or another recorder is adopting it)
            if not file.exists():  # shipped and removed between the glob and the lock
                lock.release()
                continue
            yield file, lock.release

    def files(self) -> list[Path]:
        """Every spool file here, live or orphaned."""
        return sorted(self.path.glob(f"*{self.SUFFIX}")) if self.path.is_dir() else []

    @staticmethod
    def remove(file: Path) -> None:
        """Delete an emptied spool file with its WAL, shared memory and lock files."""
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{file}{suffix}").unlink()
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
        with contextlib.suppress(FileNotFoundError):
            file.with_suffix(".lock").unlink()

    def quarantine(self, file: Path) -> Path:
        """Move a damaged spool aside (never deleted: what it holds may be salvaged)."""
        target = file.with_name(f"{file.name}.damaged-{uuid.uuid4().hex[:6]}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{file}{suffix}").rename(f"{target}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            file.with_suffix(".lock").unlink()
        return target

    def _release(self, spool: FileSpool, lock: _Lock) -> None:
        spool.close()
        empty = len(spool) == 0 and not spool_has_dead_letters(spool.path)
        if empty:
            self.remove(spool.path)
        lock.release()


def spool_has_dead_letters(path: Path) -> bool:
    """True when the closed spool at ``path`` still holds dead letters."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return True  # unreadable: keep it, never delete what cannot be checked
    try:
        return bool(conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0])
    except sqlite3.Error:
        return True
    finally:
        conn.close()


# --- what the command line reads and changes in spool files ----------------------------------


@dataclass(frozen=True, slots=True)
class SpoolReport:
    """One spool file as ``chatledger spool status`` shows it."""

    path: Path
    owner_alive: bool  # a live process holds its lock (it is shipping it)
    waiting: int
    dead_letters: list[DeadLetter]
    database: str | None  # which database its records are for (None: a file from before)


def _read_only(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _spool_error(path, "open", exc) from None


def _owner_alive(path: Path) -> bool:
    try:
        lock = _Lock(path.with_suffix(".lock"))
    except OSError:
        return True
    lock.release()
    return False


def report_spool(path: Path) -> SpoolReport:
    """What a spool file holds, read without disturbing the process that may own it."""
    conn = _read_only(path)
    try:
        waiting = conn.execute("SELECT count(*) FROM record").fetchone()[0]
        rows = conn.execute("SELECT * FROM dead_letter ORDER BY seq").fetchall()
        try:
            named = conn.execute("SELECT value FROM meta WHERE key = 'database'").fetchone()
        except sqlite3.OperationalError:  # a file from before spools named their database
            named = None
    except sqlite3.Error as exc:
        raise _spool_error(path, "read", exc) from None
    finally:
        conn.close()
    letters = [DeadLetter(*row) for row in rows]
    return SpoolReport(path, _owner_alive(path), waiting, letters, named[0] if named else None)


def drop_dead_letters(path: Path, seqs: Sequence[int] | None = None) -> int:
    """Delete a spool file's dead letters for good (all when ``seqs`` is None); return how many.

    Safe while the file's owner runs: dead letters are never touched by its writer.
    """
    try:
        conn = sqlite3.connect(path, timeout=30)
        with conn:
            if seqs is None:
                count: int = conn.execute("DELETE FROM dead_letter").rowcount
            else:
                count = sum(
                    conn.execute("DELETE FROM dead_letter WHERE seq = ?", (s,)).rowcount
                    for s in seqs
                )
        conn.close()
    except sqlite3.Error as exc:
        raise _spool_error(path, "change", exc) from None
    return count


class DeadLetterQueue:
    """A spool file's dead letters as a queue the shipper can ship (``spool retry``).

    Each dead letter is tried once per queue: one the store refuses again stays a
    dead letter, with the new reason. Safe while the file's owner runs.
    """

    def __init__(self, path: Path, seqs: Sequence[int] | None = None) -> None:
        """Queue the dead letters of the spool at ``path`` (only ``seqs``, when given)."""
        self._path = path
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._tried: set[int] = set()
        self._only = None if seqs is None else set(seqs)

    @property
    def path(self) -> Path:
        """The spool file."""
        return self._path

    def _untried(self, limit: int, after: int = 0) -> list[SpooledRecord]:
        rows = self._conn.execute(
            "SELECT seq, kind, body FROM dead_letter WHERE seq > ? ORDER BY seq", (after,)
        ).fetchall()
        chosen = [
            SpooledRecord(*row)
            for row in rows
            if row[0] not in self._tried and (self._only is None or row[0] in self._only)
        ]
        return chosen[:limit]

    def peek(self, limit: int, after: int = 0) -> Future[list[SpooledRecord]]:
        """The oldest dead letters not tried yet; they count as tried from now."""
        records = self._untried(limit, after)
        self._tried.update(r.seq for r in records)
        return _done(records)

    def remove(self, seqs: Sequence[int]) -> Future[None]:
        """The store took them: they are dead letters no more."""
        with self._transaction():
            self._conn.executemany("DELETE FROM dead_letter WHERE seq = ?", [(s,) for s in seqs])
        return _done(None)

    def bury(self, record: SpooledRecord, error: str) -> Future[None]:
        """Refused again: keep it, with the new reason."""
        with self._transaction():
            self._conn.execute(
                "UPDATE dead_letter SET error = ?, failed_at = ? WHERE seq = ?",
                (error, _now_text(), record.seq),
            )
        return _done(None)

    def close(self) -> None:
        """Release the file."""
        self._conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
