"""SQLite: the embedded default backend, on the standard library's ``sqlite3``.

What is specific to SQLite and nothing more: its dialect (text ids and
RFC 3339 times, as MoFA's SQLite schema keeps them) and a driver adapter
that keeps the event loop free. One writer thread owns the only write
connection, so writers in this process never meet "database is locked";
concurrent saves that arrive while a commit is under way are committed
together (group commit), each in its own savepoint so one failure cannot
undo another's work. Reads run on a small pool of reader connections, which
WAL lets proceed while a write commits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from chatledger.errors import (
    Failure,
    PersistenceError,
    StoreConnectionError,
    failure_error,
)
from chatledger.stores.dialect import Dialect, TextProbe, uuid_text
from chatledger.stores.queries import SEARCH_PROBE_LIMIT
from chatledger.stores.schema import MESSAGE, ROLLUP_TABLES, ColumnType, Table
from chatledger.stores.sql import Read, SqlStore, Write
from chatledger.stores.sql import migrate as migrate_schema
from chatledger.stores.urls import parse_sqlite_url

__all__ = ["SqliteStore"]

logger = logging.getLogger(__name__)

Synchronous = Literal["full", "normal", "off"]
_MAX_GROUP = 256  # writes committed together at most; bounds one commit's latency
_READERS = 2
# Rows converted per batch (Read.convert): small enough to stay in a core's cache.
_CONVERT_BATCH = 200
# SQLite plans by the statistics ANALYZE leaves. Without them a statistic
# filtered by a column with few values (status) walks that index across most of
# the API-call table: 6.6 s instead of 1.2 s at a million calls. A sampled
# ANALYZE (analysis_limit) misjudges the row count fivefold and turns time-range
# statistics into table scans, so the full one runs, on the API-call table only
# (the one statistics aggregate over; ~0.9 s at a million rows): at open when the
# table holds at least twice the rows its statistics describe, and after writes
# that could have doubled it, so its cost per row written stays constant.
_ANALYZED_TABLE = "entity_llm_api_call"
# The usage rollups grow with the calls and are analyzed with them: without statistics
# SQLite reads a tenant's histogram by the primary key's day range across every tenant
# (70 ms at a million calls) instead of by its index on the tenant (a few ms).
_ROLLUP_TABLES = tuple(table.name for table in ROLLUP_TABLES)
_ANALYZE_MIN_ROWS = 50_000
_CALL_INSERT = f"INSERT INTO {_ANALYZED_TABLE} "
# The session search's index of message text (migration 6): an FTS5 table with the
# trigram tokenizer, which finds any substring of three characters or more, case folded.
# Contentless: the text stays in the messages' JSON only (the index is 15% of the
# database at a million messages, where a copy of the text would add its whole size).
# Its rowid is the message's rowid. Since version 7 a write does not index its text (~50 us
# of a CPU a message, half the batch write rate): triggers, whoever writes (MoFA too), only
# note the message's rowid as pending, and the writer thread indexes pending messages while
# it is idle, as PostgreSQL's GIN fastupdate pending list. A message is either in the index
# or pending, never both: a search asks the index and reads every pending message besides.
MESSAGE_TEXT_INDEX = "chatledger_message_text"
MESSAGE_TEXT_PENDING = "chatledger_message_text_pending"
_TEXT_TRIGGERS = ("insert", "delete", "update")
# The writer indexes once it has had no job for this long, so a burst of writes (between
# whose jobs it waits microseconds) never pays for the index, while a steady writer of up to
# ten saves a second still leaves pauses to index in.
_INDEX_IDLE = 0.1
# Messages indexed per transaction while idle: what a write arriving meanwhile may wait
# for (at a million messages 2 ms at the median; 40 ms at the 99th percentile, when FTS5
# merges its segments). An explicit flush (``index_pending_text``) takes bigger chunks,
# which build a large index faster (569,000 messages: 29 s in chunks of 1,024, 36 s of 128).
_INDEX_CHUNK = 128
_FLUSH_CHUNK = 1024
# How often an idle writer with no backlog of its own looks for one another process's
# writes left (MoFA writes through the same triggers).
_INDEX_POLL = 30.0
# A writer that never pauses (more than ten saves a second, steadily) would never index:
# once the backlog nears the search's candidate limit, past which a rare text reads every
# message (1 s at a million), the writer indexes between jobs too, but for no more than a
# tenth of its time. That indexes ~3,000 messages a second: a steadier writer keeps the
# backlog near the limit; a saturated one (~12,000 a second in batches of 10) outgrows it
# until it pauses, its searches correct but walking meanwhile, and writes ~10% slower.
# Under the bound, writes pay nothing but a look at the backlog's span every 50 ms.
_BEHIND = SEARCH_PROBE_LIMIT * 4 // 5
_BUSY_SHARE = 0.1
_BEHIND_LOOK = 0.05


@functools.cache
def trigram_available() -> bool:
    """Whether this SQLite has FTS5, its trigram tokenizer and MATERIALIZED CTEs (3.35)."""
    if sqlite3.sqlite_version_info < (3, 35, 0):
        return False
    try:
        with sqlite3.connect(":memory:") as probe:
            probe.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
    except sqlite3.Error:
        return False
    return True


def fts_phrase(text: str) -> str:
    """``text`` as an FTS5 phrase: with the trigram tokenizer, a case-folded substring match."""
    return '"' + text.replace('"', '""') + '"'


def _indexed_text(row: str) -> str:
    """The text the index holds for a message row (``new``, ``old``); NULL for malformed JSON.

    The guard keeps a write of content that is not JSON (which the column
    accepts) from failing in the trigger, as the table alone would not.
    """
    return f"CASE WHEN json_valid({row}.content) THEN json_extract({row}.content, '$.text') END"


# A chunk of the backlog, oldest first: its rowids up to the chunk's last, indexed and
# taken off the list in one transaction (so a message is in the index or pending, never
# both nor neither). A pending rowid whose message is gone, or has no text, only leaves.
# CROSS JOIN keeps the list the outer loop: SQLite otherwise carries the rowid bound over
# to the messages and reads every message up to it (0.7 s a chunk at a million messages).
_TAKE_PENDING = f"SELECT message_rowid FROM {MESSAGE_TEXT_PENDING} ORDER BY message_rowid LIMIT ?"
_INDEX_PENDING = (
    f"INSERT INTO {MESSAGE_TEXT_INDEX}(rowid, text) SELECT rowid, text FROM "
    f"(SELECT m.rowid AS rowid, {_indexed_text('m')} AS text FROM {MESSAGE_TEXT_PENDING} p "
    f"CROSS JOIN {MESSAGE.name} m ON m.rowid = p.message_rowid WHERE p.message_rowid <= ?) "
    "WHERE text IS NOT NULL"
)
_DROP_PENDING = f"DELETE FROM {MESSAGE_TEXT_PENDING} WHERE message_rowid <= ?"
# The rowids pending span as many rows at least as are pending: counted only when they span
# enough to matter.
_PENDING_SPAN = f"SELECT MAX(message_rowid) - MIN(message_rowid) + 1 FROM {MESSAGE_TEXT_PENDING}"
_PENDING_COUNT = f"SELECT COUNT(*) FROM (SELECT 1 FROM {MESSAGE_TEXT_PENDING} LIMIT ?)"


class SqliteDialect(Dialect):
    """SQLite's types, text encodings and date functions."""

    #: whether the database has the session search's text index (set when it opens)
    text_indexed = False

    name = "sqlite"
    column_types: ClassVar[dict[ColumnType, str]] = {
        ColumnType.UUID: "TEXT",
        ColumnType.TEXT: "TEXT",
        ColumnType.SHORT_TEXT: "TEXT",
        ColumnType.JSON: "TEXT",
        ColumnType.TIME: "TEXT",
        ColumnType.INT: "INTEGER",
        ColumnType.FLOAT: "REAL",
        ColumnType.MONEY: "REAL",
        ColumnType.MONEY_SUM: "INTEGER",
        ColumnType.COUNT: "INTEGER",
        ColumnType.BOOL: "INTEGER",
    }

    # Fixed-width RFC 3339 in UTC, so text order is time order.
    encode_uuid = staticmethod(str)
    record_uuid = staticmethod(uuid_text)
    encode_time = staticmethod(lambda value: value.isoformat(timespec="microseconds"))
    encode_bool = staticmethod(int)
    encode_money = staticmethod(float)

    # Two histograms (latency, time to first token) each read the matching calls and
    # sort them twice: a week's statistics by model and day at a million calls took
    # 0.8 s; the values read once and sorted in Python, 0.16 s.
    percentiles_from_values = True

    def decode_money(self, value: Any) -> Decimal | None:
        """A REAL read back through its shortest decimal form."""
        return None if value is None else Decimal(repr(value))

    def create_table(self, table: Table) -> str:
        """As every dialect's; a table keyed by its columns is clustered on them (no rowid)."""
        ddl = super().create_table(table)
        return ddl if table.primary_key == ("id",) else ddl + " WITHOUT ROWID"

    def cost_parts(self, column: str) -> tuple[str, str]:
        """A REAL price as whole amounts and 1e-10 units, each an integer: sums stay exact.

        Summing the REALs would round at every addition; the two integer sums
        are exact (up to 9.2e18 whole units). :meth:`money_parts` splits a
        price the same way, operation for operation, before it is stored.
        """
        whole = f"CAST({column} AS INTEGER)"
        return whole, f"CAST(({column} - {whole}) * 10000000000 + 0.5 AS INTEGER)"

    @staticmethod
    def money_parts(price: Decimal) -> tuple[Any, int]:
        """A price as :meth:`cost_parts` reads the REAL it is stored as."""
        stored = float(price)
        whole = int(stored)
        return whole, int((stored - whole) * 1e10 + 0.5)

    def text_search_backlog(self, message: Table) -> list[str]:
        """The FTS5 trigram table, its table of pending messages, their triggers.

        Nothing where this SQLite cannot make one: searches then scan, as
        before. Titles are not indexed: a search tests each walked session's
        title, 59,000 in 20 ms, and sessions are rewritten on every message
        (their update time), which an index would slow. The messages that
        have text and are not in the index yet (every one, from version 5
        or older; none, from a version 6 kept by its triggers) are queued:
        the migration only lists rowids (a few seconds a million), and the
        writer indexes them while idle; meanwhile a search that finds more
        than ``SEARCH_PROBE_LIMIT`` candidates walks sessions, as without
        an index.
        """
        if not trigram_available():
            return []
        fts, pending, table = MESSAGE_TEXT_INDEX, MESSAGE_TEXT_PENDING, message.name
        queue = f"INSERT OR IGNORE INTO {pending}(message_rowid) VALUES (new.rowid)"
        # A contentless table forgets a row by being told its rowid and its exact text:
        # told of a row it does not hold (a pending one) it would corrupt itself.
        drop = (
            f"INSERT INTO {fts}({fts}, rowid, text) SELECT 'delete', old.rowid, text "
            f"FROM (SELECT {_indexed_text('old')} AS text) WHERE text IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {pending} WHERE message_rowid = old.rowid)"
        )
        unqueue = f"DELETE FROM {pending} WHERE message_rowid = old.rowid"
        triggers = {
            "insert": f"AFTER INSERT ON {table} BEGIN {queue}; END",
            "delete": f"AFTER DELETE ON {table} BEGIN {drop}; {unqueue}; END",
            # an upsert that saves a message again unchanged keeps it indexed
            "update": f"AFTER UPDATE OF content ON {table} "
            f"WHEN old.content IS NOT new.content BEGIN {drop}; {queue}; END",
        }
        return [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5("
            "text, content='', tokenize='trigram')",
            f"CREATE TABLE IF NOT EXISTS {pending} (message_rowid INTEGER PRIMARY KEY)",
            *(f"DROP TRIGGER IF EXISTS {fts}_{name}" for name in _TEXT_TRIGGERS),
            *(f"CREATE TRIGGER {fts}_{name} {triggers[name]}" for name in _TEXT_TRIGGERS),
            f"INSERT OR IGNORE INTO {pending}(message_rowid) SELECT rowid FROM {table} "
            f"WHERE rowid NOT IN (SELECT rowid FROM {fts}) "
            f"AND {_indexed_text(table)} IS NOT NULL",
        ]

    def text_probe(self) -> TextProbe | None:
        """The trigram table's phrase match and every pending message, rechecked by LIKE.

        The recheck keeps SQLite's LIKE semantics (ASCII case folding) where
        the index folds case in all of Unicode: the index may offer a
        message LIKE refuses, never the reverse. The pending messages make
        a search complete whatever the backlog; more of them than the probe
        takes and the search walks sessions, as for a common text.
        """
        return _SQLITE_PROBE if self.text_indexed else None

    def unindexed(self, column: str) -> str:
        """SQLite's idiom: a unary plus hides the column from index selection."""
        return f"+{column}"

    def group_key(self, column: str) -> str:
        """Hidden from the index in the group's order (:meth:`unindexed`).

        Grouping a range of days by value, SQLite would otherwise walk the
        index by value and fetch each row from the table: 65 ms against
        28 ms for a month of 2,000 users' daily rows, read in key order and
        sorted.
        """
        return self.unindexed(column)

    def bucket_start(self, column: str, bucket: str) -> str:
        """The bucket's start as RFC 3339 text."""
        suffix = "T00:00:00.000000+00:00"
        if bucket == "hour":
            return f"substr({column}, 1, 13) || ':00:00.000000+00:00'"
        if bucket == "day":
            return f"substr({column}, 1, 10) || '{suffix}'"
        if bucket == "week":  # the next Sunday (or today), then back to its Monday
            return f"date(substr({column}, 1, 10), 'weekday 0', '-6 days') || '{suffix}'"
        if bucket == "month":
            return f"substr({column}, 1, 7) || '-01{suffix}'"
        raise ValueError(f"unknown bucket {bucket!r}")

    def keyset_filter(self, column: str) -> str:
        """Kept off indexes (unary plus): the chunk then walks the primary key.

        SQLite serves a filter from its index whenever it has one, and sorts
        every chunk's matches again: 46 s to export 288,000 of a million calls
        by a time range, 0.8 s by the primary key. Walking the primary key
        reads at most the whole table once per export (0.2 s a million rows).
        """
        return f"+{column}"

    def decode_time(self, value: Any) -> Any:
        """RFC 3339 text (MoFA may write ``Z``) as an aware datetime."""
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    def record_time(self, value: Any) -> str:
        """The stored text rewritten as the entity's JSON writes the time, without parsing it.

        An export reads two times per row: reshaping the text chatledger
        writes (``…00.000000+00:00``) or MoFA writes (``…00Z``,
        ``…00.000000Z``) costs a fifth of parsing it into a datetime and
        formatting that again. Any other form takes the parse.
        """
        if type(value) is str and value[10:11] == "T":
            size = len(value)
            if size == 32 and value[19] == "." and value[26:] == "+00:00":
                return value[:19] + "Z" if value[20:26] == "000000" else value[:26] + "Z"
            if size == 27 and value[19] == "." and value[26] == "Z":
                return value[:19] + "Z" if value[20:26] == "000000" else value
            if size == 20 and value[19] == "Z":
                return value
        return super().record_time(value)


_SQLITE_PROBE = TextProbe(
    candidates=(
        f"SELECT rowid AS k FROM {MESSAGE_TEXT_INDEX} WHERE {MESSAGE_TEXT_INDEX} MATCH ? "
        f"UNION ALL SELECT message_rowid FROM {MESSAGE_TEXT_PENDING}"
    ),
    value=fts_phrase,
    sessions=(
        f"SELECT m.chat_session_id FROM {MESSAGE.name} m WHERE m.rowid IN (SELECT k FROM probe) "
        f"AND {SqliteDialect().contains(SqliteDialect().json_text('m.content', 'text'))}"
    ),
    rechecks=True,
)


def _map_error(exc: BaseException, where: str) -> PersistenceError:
    """The chatledger error for an exception raised by ``sqlite3`` (or while binding)."""
    if isinstance(exc, PersistenceError):
        return exc
    text = str(exc)
    failure = Failure.QUERY
    if isinstance(exc, sqlite3.IntegrityError):
        failure = Failure.MISSING_REFERENCE if "FOREIGN KEY" in text else Failure.ALREADY_USED
    elif isinstance(exc, UnicodeError | OverflowError) or (
        isinstance(exc, sqlite3.ProgrammingError) and "binding" in text.lower()
    ):
        failure = Failure.BAD_VALUE
    elif isinstance(exc, sqlite3.OperationalError):
        if "unable to open" in text or "readonly" in text or "disk I/O" in text:
            failure = Failure.CANNOT_OPEN
        elif "locked" in text or "busy" in text:
            failure = Failure.LOCKED
    elif isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        failure = Failure.NOT_A_DATABASE
    elif not isinstance(exc, sqlite3.Error):
        text = f"unexpected {type(exc).__name__}: {text}"
    return failure_error(failure, where, text)


@dataclass(slots=True)
class _Job:
    """Work for the writer thread and where its outcome goes."""

    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    is_write: bool
    counted: tuple[int, ...] = ()  # which writes' row counts are API calls stored
    outcome: Any = field(default=None)
    error: BaseException | None = field(default=None)


def _resolve(job: _Job) -> None:
    if job.future.cancelled():
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.outcome)


def _rollback(conn: sqlite3.Connection) -> None:
    """End an open transaction after a failure; a rollback that fails too is only logged."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.warning("SQLite rollback after a failure failed as well", exc_info=True)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the database has a table called ``name``."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _described_rows(conn: sqlite3.Connection) -> int:
    """How many API-call rows the planner's statistics were gathered over (0: none)."""
    if not _has_table(conn, "sqlite_stat1"):
        return 0
    (rows,) = conn.execute(
        "SELECT MAX(CAST(stat AS INTEGER)) FROM sqlite_stat1 WHERE tbl = ?", (_ANALYZED_TABLE,)
    ).fetchone()
    return int(rows or 0)


def _unanalyzed_index(conn: sqlite3.Connection) -> bool:
    """Whether an index of the API-call table has no statistics (the table has some).

    Partial indexes are left out: ANALYZE writes no statistics for one that
    holds no row yet, and such an index would ask for an ANALYZE at every open.
    """
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND name NOT LIKE 'sqlite_autoindex_%' AND sql NOT LIKE '% WHERE %' "
        "AND name NOT IN (SELECT idx FROM sqlite_stat1 WHERE tbl = ? AND idx IS NOT NULL)",
        (_ANALYZED_TABLE, _ANALYZED_TABLE),
    )
    return found.fetchone() is not None


def _unanalyzed_rollups(conn: sqlite3.Connection) -> bool:
    """Whether a usage rollup table holds rows but has no statistics (a migration made it)."""
    for table in _ROLLUP_TABLES:
        if not _has_table(conn, table):
            continue
        described = conn.execute("SELECT 1 FROM sqlite_stat1 WHERE tbl = ?", (table,)).fetchone()
        if described is None and conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
            return True
    return False


def _reload_statistics(conn: sqlite3.Connection) -> None:
    """Load the statistics another connection's ANALYZE wrote into this read-only one."""
    try:
        conn.execute("PRAGMA query_only=OFF")  # SQLite refuses even this reload otherwise
        conn.execute("ANALYZE sqlite_schema")
    except sqlite3.Error:
        logger.warning("SQLite reader could not reload planner statistics", exc_info=True)
    finally:
        conn.execute("PRAGMA query_only=ON")


def _enter_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """Switch to WAL, retrying while another connection holds the lock.

    Changing the journal mode answers "database is locked" at once, without
    waiting on the busy timeout, while another process creates the same new
    database (seen with six stores opening one file together).
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def _hand_back(job: _Job) -> None:
    """Resolve ``job``'s future on its own loop; a loop already closed has nobody waiting."""
    try:
        job.future.get_loop().call_soon_threadsafe(_resolve, job)
    except RuntimeError:
        logger.debug("SQLite job finished after its event loop closed; nobody awaits it")


def _run_writes(writes: Sequence[Write]) -> Callable[[sqlite3.Connection], list[int]]:
    def run(conn: sqlite3.Connection) -> list[int]:
        counts = []
        for write in writes:
            if write.many is not None:
                cursor = conn.executemany(write.sql, write.many)
            else:
                cursor = conn.execute(write.sql, write.params)
            counts.append(cursor.rowcount)
        return counts

    return run


def _fetch(conn: sqlite3.Connection, read: Read) -> list[Any]:
    """One query's rows, converted a batch at a time while they are hot in the CPU's cache."""
    cursor = conn.execute(read.sql, read.params)
    if read.convert is None:
        return cursor.fetchall()
    converted: list[Any] = []
    while batch := cursor.fetchmany(_CONVERT_BATCH):
        converted.extend(read.convert(batch))
    return converted


def _run_reads(reads: Sequence[Read]) -> Callable[[sqlite3.Connection], list[list[Any]]]:
    def run(conn: sqlite3.Connection) -> list[list[Any]]:
        if len(reads) == 1:
            return [_fetch(conn, reads[0])]
        conn.execute("BEGIN")  # one snapshot for every query
        try:
            return [_fetch(conn, read) for read in reads]
        finally:
            conn.execute("COMMIT")

    return run


class SqliteDatabase:
    """The driver adapter: one writer thread with group commit, pooled reader connections."""

    def __init__(
        self, path: str, *, synchronous: Synchronous, busy_timeout: float, in_memory: bool
    ) -> None:
        """Open ``path`` (ignored when ``in_memory``) with the given durability."""
        self._sqlite_dialect = SqliteDialect()
        self.dialect: Dialect = self._sqlite_dialect
        self._path = path
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._in_memory = in_memory
        self._rows_since_analyze = 0
        self._analyzed_rows = 0  # rows the planner's statistics describe
        # Bumped after each ANALYZE: connections keep the statistics they loaded,
        # so each reader reloads them when it sees a new generation.
        self._statistics_generation = 0
        # Whether pending message text may wait for the writer to index it; the writer
        # thread's alone (set by its writes, cleared when it finds none left).
        self._text_backlog = False
        self._indexed_while_idle = 0  # in the current idle stretch, for its log line
        self._busy_index_after = 0.0  # monotonic time of the busy writer's next look
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._read_jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer_connection = self._open_connection(writer=True)
        self._threads = [
            threading.Thread(target=self._write_loop, name="chatledger-sqlite-write", daemon=True)
        ]
        if not in_memory:  # a private in-memory database has one connection: the writer's
            for number in range(_READERS):
                self._threads.append(
                    threading.Thread(
                        target=self._read_loop,
                        args=(self._open_connection(writer=False),),
                        name=f"chatledger-sqlite-read-{number}",
                        daemon=True,
                    )
                )
        for thread in self._threads:
            thread.start()

    def _open_connection(self, *, writer: bool) -> sqlite3.Connection:
        target = ":memory:" if self._in_memory else self._path
        try:
            conn = sqlite3.connect(
                target,
                timeout=self._busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # each connection is used by one thread at a time
                cached_statements=256,
            )
            if writer and not self._in_memory:
                mode = _enter_wal(conn, self._busy_timeout)
                if str(mode).lower() != "wal":
                    logger.warning("SQLite refused WAL mode for %s (got %s)", self._path, mode)
            conn.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            if not writer:
                conn.execute("PRAGMA query_only=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StoreConnectionError(
                f"cannot open SQLite database {target!r}: {exc}; check the path and permissions"
            ) from exc
        return conn

    @property
    def path(self) -> str | None:
        """The database file, or None for a private in-memory database."""
        return None if self._in_memory else self._path

    # --- the writer thread -------------------------------------------------------------

    def _write_loop(self) -> None:
        conn = self._writer_connection
        stopping = False
        indexing = False  # idle and indexing: the next chunk follows at once
        while not stopping:
            try:
                job = self._jobs.get(timeout=self._idle_wait(indexing))
            except queue.Empty:
                indexing = self._index_while_idle(conn)
                continue
            if indexing:
                indexing = False
                self._log_idle_indexing("until a job arrived")
            if job is None:
                break
            batch = [job]
            while len(batch) < _MAX_GROUP:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            writes = [job for job in batch if job.is_write]
            if writes:
                self._commit_group(conn, writes)
                self._count_rows(conn, writes)
                self._text_backlog = self._sqlite_dialect.text_indexed
            for job in batch:
                if not job.is_write:
                    self._run_one(conn, job)
            for job in batch:
                _hand_back(job)
            if writes and self._text_backlog and not stopping:  # once the callers are answered
                self._index_if_behind(conn)
        conn.close()

    def _idle_wait(self, indexing: bool) -> float | None:
        """How long the writer waits for a job before it indexes pending text (None: ever)."""
        if not self._sqlite_dialect.text_indexed:
            return None
        if not self._text_backlog:
            return _INDEX_POLL
        return 0.0 if indexing else _INDEX_IDLE

    def _index_while_idle(self, conn: sqlite3.Connection) -> bool:
        """Index one chunk of pending text, if any is pending; whether more may be.

        The look is outside any transaction, so a write of API calls alone
        costs the idle writer no write lock. Another process holding that
        lock is not waited for (it is this writer's idle time, not its
        jobs', that the index may take): the backlog is left to the next
        write or look, as after any failure, which is logged and never
        stops the writer. A search reads pending messages meanwhile.
        """
        try:
            if conn.execute(_TAKE_PENDING, (1,)).fetchone() is None:
                self._text_backlog = False
                self._log_idle_indexing("with none left")
                return False
            self._text_backlog = True
            taken = self._index_chunk(conn, _INDEX_CHUNK, wait=False)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                logger.warning("SQLite could not index pending message text", exc_info=True)
            else:
                logger.debug("SQLite left pending message text for later: %s", exc)
            self._text_backlog = False
            return False
        except Exception:  # logged, as the writer thread must go on: its jobs wait on it
            logger.warning("SQLite could not index pending message text", exc_info=True)
            self._text_backlog = False
            return False
        self._indexed_while_idle += taken
        if taken < _INDEX_CHUNK:
            self._text_backlog = False
            self._log_idle_indexing("with none left")
        return self._text_backlog

    def _index_if_behind(self, conn: sqlite3.Connection) -> None:
        """Between jobs: index a chunk if the backlog nears the search's limit, in its share.

        After a chunk that took ``t``, the next waits ``t * 9`` (a tenth of
        the writer's time); with no backlog that large, the next look waits
        ``_BEHIND_LOOK``. Failures are logged, as when idle.
        """
        started = time.monotonic()
        if started < self._busy_index_after:
            return
        self._busy_index_after = started + _BEHIND_LOOK
        try:
            (span,) = conn.execute(_PENDING_SPAN).fetchone()
            if (span or 0) < _BEHIND:
                return
            (count,) = conn.execute(_PENDING_COUNT, (_BEHIND,)).fetchone()
            if count < _BEHIND:
                return
            taken = self._index_chunk(conn, _INDEX_CHUNK, wait=False)
        except Exception:  # logged, as the writer thread must go on: its jobs wait on it
            logger.debug("SQLite left pending message text for later", exc_info=True)
            return
        ended = time.monotonic()
        self._busy_index_after = ended + (ended - started) * (1 - _BUSY_SHARE) / _BUSY_SHARE
        logger.debug("SQLite indexed %d pending messages' text between jobs", taken)

    def _log_idle_indexing(self, until: str) -> None:
        if self._indexed_while_idle:
            logger.debug(
                "SQLite indexed %d pending messages' text while idle, %s",
                self._indexed_while_idle,
                until,
            )
        self._indexed_while_idle = 0

    def _index_chunk(self, conn: sqlite3.Connection, limit: int, *, wait: bool = True) -> int:
        """Index up to ``limit`` pending messages' text, oldest first; how many were taken.

        Not synced to disk on its own (synchronous NORMAL): a chunk lost to
        a power failure leaves its messages pending, which is consistent,
        and the next durable commit syncs it with its own. Unless ``wait``,
        the write lock is only tried: "database is locked" if another
        process holds it.
        """
        relaxed = self._synchronous == "full" and not self._in_memory
        if relaxed:
            conn.execute("PRAGMA synchronous=NORMAL")
        if not wait:
            conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                taken = conn.execute(_TAKE_PENDING, (limit,)).fetchall()
                if taken:
                    upto = taken[-1][0]
                    conn.execute(_INDEX_PENDING, (upto,))
                    conn.execute(_DROP_PENDING, (upto,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        finally:
            if relaxed:
                conn.execute("PRAGMA synchronous=FULL")
            if not wait:
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        return len(taken)

    @staticmethod
    def _run_one(conn: sqlite3.Connection, job: _Job) -> None:
        try:
            job.outcome = job.run(conn)
        except Exception as exc:  # noqa: BLE001  (handed to the awaiting task)
            _rollback(conn)
            job.error = _map_error(exc, "SQLite")

    def _commit_group(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Run every job in one transaction, each in its own savepoint, then commit once.

        A job that fails is rolled back alone and gets its own error; if the
        transaction as a whole fails (the commit, a full disk), every job
        that has no error yet gets that one.
        """
        savepoints = len(jobs) > 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                if savepoints:
                    conn.execute("SAVEPOINT job")
                try:
                    job.outcome = job.run(conn)
                except Exception as exc:  # noqa: BLE001  (handed to the awaiting task)
                    job.error = _map_error(exc, "SQLite")
                    if savepoints:
                        conn.execute("ROLLBACK TO job")
                if savepoints:
                    conn.execute("RELEASE job")
            conn.execute("ROLLBACK" if all(job.error for job in jobs) else "COMMIT")
        except sqlite3.Error as exc:
            error = _map_error(exc, "SQLite")
            _rollback(conn)
            for job in jobs:
                if job.error is None:
                    job.error = error

    def _count_rows(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Refresh the planner's statistics once the writes could have doubled the table."""
        for job in jobs:
            if job.error is None and isinstance(job.outcome, list):
                self._rows_since_analyze += sum(max(job.outcome[i], 0) for i in job.counted)
        if self._rows_since_analyze >= max(_ANALYZE_MIN_ROWS, self._analyzed_rows):
            self._analyze(conn)

    def _analyze(self, conn: sqlite3.Connection) -> None:
        """Run ANALYZE on the API-call table; a failure only leaves plans as they were."""
        started = time.perf_counter()
        try:
            conn.execute(f"ANALYZE {_ANALYZED_TABLE}")
            for table in _ROLLUP_TABLES:
                if _has_table(conn, table):
                    conn.execute(f"ANALYZE {table}")
            self._analyzed_rows = _described_rows(conn)
            self._statistics_generation += 1
        except sqlite3.Error:  # stale statistics slow some queries; they break none
            logger.warning("SQLite ANALYZE failed; query plans may be slower", exc_info=True)
        self._rows_since_analyze = 0
        logger.debug(
            "SQLite planner statistics refreshed (%d rows) in %.0f ms",
            self._analyzed_rows,
            (time.perf_counter() - started) * 1000,
        )

    def _analyze_if_stale(self, conn: sqlite3.Connection) -> list[int]:
        """At open: refresh statistics that describe under half of the table (if it exists).

        Statistics that miss one of the table's indexes (a migration added it)
        are refreshed too: without them the planner guesses that index's
        selectivity, and the others' figures no longer weigh against it.
        """
        if not _has_table(conn, _ANALYZED_TABLE):  # opened without migrating: no schema yet
            return []
        self._analyzed_rows = _described_rows(conn)
        (newest,) = conn.execute(f"SELECT MAX(rowid) FROM {_ANALYZED_TABLE}").fetchone()
        if (newest or 0) >= max(_ANALYZE_MIN_ROWS, 2 * self._analyzed_rows) or (
            self._analyzed_rows and (_unanalyzed_index(conn) or _unanalyzed_rollups(conn))
        ):
            self._analyze(conn)
        return []

    async def detect_text_index(self) -> None:
        """Tell the dialect whether this database has the session search's text index.

        Asked on the writer thread, which then looks for a backlog to index
        once idle (a database closed before indexing all it had written).
        A database at version 6 opened without migrating has the index but
        no list of pending messages: it is searched by scan.
        """

        def found(conn: sqlite3.Connection) -> None:
            indexed = (
                trigram_available()
                and _has_table(conn, MESSAGE_TEXT_INDEX)
                and _has_table(conn, MESSAGE_TEXT_PENDING)
            )
            self._sqlite_dialect.text_indexed = indexed
            self._text_backlog = indexed

        await self._submit(found, is_write=False, on_writer=True)

    async def index_pending_text(self, at_most: int | None = None) -> int:
        """Index up to ``at_most`` (None: all) pending messages' text, in chunks; how many."""
        if not self._sqlite_dialect.text_indexed:
            return 0
        done = 0
        while at_most is None or done < at_most:
            chunk = _FLUSH_CHUNK if at_most is None else min(_FLUSH_CHUNK, at_most - done)
            # a job of its own per chunk: writes queued meanwhile wait for one chunk only
            taken: int = await self._submit(
                functools.partial(self._index_chunk, limit=chunk), is_write=False, on_writer=True
            )
            done += taken
            if taken < chunk:
                break
        return done

    async def refresh_planner_statistics(self) -> None:
        """Refresh SQLite's planner statistics if they describe under half of the table."""
        await self._submit(self._analyze_if_stale, is_write=True)

    def _read_loop(self, conn: sqlite3.Connection) -> None:
        generation = self._statistics_generation
        while (job := self._read_jobs.get()) is not None:
            if generation != self._statistics_generation:
                generation = self._statistics_generation
                _reload_statistics(conn)
            try:
                job.outcome = job.run(conn)
            except Exception as exc:  # noqa: BLE001  (handed to the awaiting task)
                _rollback(conn)
                job.error = _map_error(exc, "SQLite")
            _hand_back(job)
        conn.close()

    def _submit(
        self,
        run: Callable[[sqlite3.Connection], Any],
        *,
        is_write: bool,
        counted: tuple[int, ...] = (),
        on_writer: bool = False,
    ) -> Any:
        """Queue ``run``: writes commit in groups; ``on_writer``, alone on the writer thread."""
        future = asyncio.get_running_loop().create_future()
        reader = not is_write and not self._in_memory and not on_writer
        (self._read_jobs if reader else self._jobs).put(_Job(run, future, is_write, counted))
        return future

    # --- the Database protocol ---------------------------------------------------------

    async def write(self, writes: Sequence[Write]) -> list[int]:
        """Run ``writes`` in one transaction (possibly shared with concurrent callers)."""
        # Only rows of the API-call table count toward its next ANALYZE (not rollup rows).
        counted = tuple(i for i, write in enumerate(writes) if write.sql.startswith(_CALL_INSERT))
        result: list[int] = await self._submit(_run_writes(writes), is_write=True, counted=counted)
        return result

    async def read(self, reads: Sequence[Read]) -> list[list[Any]]:
        """Run ``reads`` on a reader connection, against one snapshot; convert in its thread."""
        result: list[list[Any]] = await self._submit(_run_reads(reads), is_write=False)
        return result

    async def close(self) -> None:
        """Finish queued work, then stop every thread and close every connection."""
        self._jobs.put(None)
        for _ in self._threads[1:]:
            self._read_jobs.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)


def _located(path: str | None) -> str | None:
    return None if path in (None, "", ":memory:") else str(Path(path).resolve())


def _open_database(
    path: str | None, synchronous: Synchronous, busy_timeout: float
) -> SqliteDatabase:
    """Open the file at ``path`` (a private in-memory database when None)."""
    if path is None:
        return SqliteDatabase(
            ":memory:", synchronous=synchronous, busy_timeout=busy_timeout, in_memory=True
        )
    file = Path(path).expanduser()
    folder = file.resolve().parent
    if not folder.is_dir():
        raise StoreConnectionError(
            f"cannot open SQLite database {path!r}: folder {str(folder)!r} does not exist"
        )
    return SqliteDatabase(
        str(file), synchronous=synchronous, busy_timeout=busy_timeout, in_memory=False
    )


class SqliteStore(SqlStore):
    """The SQLite backend: a file in WAL mode, or a private in-memory database."""

    backend_name = "sqlite"

    def __init__(self, database: SqliteDatabase) -> None:
        """Wrap an open database; use :meth:`connect` or :meth:`in_memory` instead."""
        super().__init__(database)
        self.path: str | None = database.path
        """The database file, or None for a private in-memory database."""
        self._sqlite = database

    async def index_pending_text(self, at_most: int | None = None) -> int:
        """Index pending message text now, as the idle writer would; how many were taken.

        Up to ``at_most`` messages (None: until none is pending), oldest
        first, a chunk per transaction so that writes queued meanwhile
        proceed between chunks. For a bulk load, or a tool that wants the
        index complete before it measures searches.
        """
        if at_most is not None and (not isinstance(at_most, int) or at_most < 0):
            raise ValueError(f"index_pending_text(): at_most must be None or >= 0, not {at_most!r}")
        return await self._sqlite.index_pending_text(at_most)

    @property
    def location(self) -> str | None:
        """The database file's absolute path, or None for a private in-memory database."""
        return _located(self.path)

    @staticmethod
    def location_of(url: str | Path) -> str | None:
        """What :attr:`location` will be for the store ``url`` opens, without opening it."""
        if isinstance(url, Path) or "://" not in url:
            return _located(str(url))
        return _located(parse_sqlite_url(url)[0])

    @classmethod
    async def connect(
        cls,
        url: str | Path,
        *,
        synchronous: Synchronous | None = None,
        busy_timeout: float = 30.0,
        migrate: bool = True,
    ) -> Self:
        """Open (creating if needed) and migrate the database at a URL or path.

        ``synchronous="full"`` (the default) makes every commit durable across
        power loss; ``"normal"`` keeps the database uncorrupted but may lose the
        last commits on power loss, for much faster single writes.
        ``migrate=False`` opens the schema as it is, for tools that only report it.
        """
        if isinstance(url, Path) or "://" not in url:
            path: str | None = str(url)
            options: dict[str, str] = {}
        else:
            path, options = parse_sqlite_url(url)
        chosen = synchronous or options.get("synchronous", "full")
        if chosen not in ("full", "normal", "off"):
            raise ValueError(f"synchronous must be 'full', 'normal' or 'off', not {chosen!r}")
        return await cls._start(path, chosen, busy_timeout, migrate=migrate)  # type: ignore[arg-type]  # checked

    @classmethod
    async def in_memory(cls) -> Self:
        """A private in-memory database, gone when the store is closed."""
        return await cls._start(None, "off", 30.0)

    @classmethod
    async def _start(
        cls,
        path: str | None,
        synchronous: Synchronous,
        busy_timeout: float,
        *,
        migrate: bool = True,
    ) -> Self:
        database = await asyncio.to_thread(_open_database, path, synchronous, busy_timeout)
        try:
            if migrate:
                await migrate_schema(database)
            await database.refresh_planner_statistics()
            await database.detect_text_index()
        except BaseException:
            await database.close()
            raise
        return cls(database)
