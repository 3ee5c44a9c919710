"""The raw baselines of the recorder part: the same rows written with the driver and nothing else.

The rows are the ones the recorder stored, read back from its database as
the driver returns them, so both sides write the very same values into
tables with the very same schema (chatledger created both). Each chat's rows
are replayed as its turns recorded them: the session and the user's message,
then the reply and its API call.

- :class:`SqliteGroupCommit`: concurrent writers queue their rows; one
  writer thread commits whatever is queued in one transaction (WAL,
  ``synchronous=FULL``, foreign keys on, as the store's own connection), so
  writers arriving together share one fsync. Each writer waits for its
  commit, as a hook waits for the spool.
- :class:`PostgresGroupCommit`: the same on one asyncpg connection: a
  committer task inserts whatever is queued in one transaction
  (``executemany`` per table), then releases the writers.
- :func:`postgres_batches`: rows in batches of a given size, one transaction
  each, by ``COPY`` or ``executemany``: the shipper's work done raw.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks.measure import Rate

__all__ = [
    "COPY",
    "EXECUTEMANY",
    "TABLES",
    "PostgresGroupCommit",
    "Rows",
    "SqliteGroupCommit",
    "Submission",
    "interleaved",
    "postgres_batches",
    "postgres_rows",
    "sqlite_rows",
    "writers_rate",
]

TABLES = ("entity_chat_session", "entity_llm_message", "entity_llm_api_call")
SESSION, MESSAGE, CALL = TABLES
COPY = "COPY"
EXECUTEMANY = "executemany"

Submission = list[tuple[str, tuple[Any, ...]]]
"""What one writer hands over at once and waits for: ``(table, row)`` in order."""


@dataclass(frozen=True, slots=True)
class Rows:
    """Every row the recorder stored, each table's columns, and each chat's submissions."""

    columns: dict[str, tuple[str, ...]]
    chats: list[list[Submission]]  # per session: [session + user message], [reply + call], ...

    @property
    def count(self) -> int:
        """How many rows in all."""
        return sum(len(s) for chat in self.chats for s in chat)


def _chats(columns: dict[str, tuple[str, ...]], tables: dict[str, list[tuple[Any, ...]]]) -> Rows:
    """Each session's rows as its turns recorded them, walking the messages' parent chain."""
    index = {table: {name: i for i, name in enumerate(columns[table])} for table in TABLES}
    m, c = index[MESSAGE], index[CALL]
    children: dict[str, dict[str | None, tuple[Any, ...]]] = defaultdict(dict)
    for row in tables[MESSAGE]:
        parent = row[m["parent_message_id"]]
        children[str(row[m["chat_session_id"]])][None if parent is None else str(parent)] = row
    calls = {str(row[c["response_message_id"]]): row for row in tables[CALL]}
    chats = []
    for session in tables[SESSION]:
        chain = children[str(session[index[SESSION]["id"]])]
        submissions: list[Submission] = []
        first: Submission = [(SESSION, session)]
        message = chain.get(None)
        while message is not None:
            key = str(message[m["id"]])
            if message[m["role"]] == "user":
                submissions.append([*first, (MESSAGE, message)])
                first = []
            else:
                submissions.append([(MESSAGE, message), (CALL, calls[key])])
            message = chain.get(key)
        chats.append(submissions)
    rows = Rows(columns, chats)
    stored = sum(len(t) for t in tables.values())
    if rows.count != stored:
        raise AssertionError(f"replay covers {rows.count} of {stored} rows: the chains broke")
    return rows


def sqlite_rows(path: Path) -> Rows:
    """The recorder's rows in the SQLite file at ``path``, as sqlite3 returns them."""
    conn = sqlite3.connect(path)
    try:
        columns = {
            table: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
            for table in TABLES
        }
        tables = {table: conn.execute(f"SELECT * FROM {table}").fetchall() for table in TABLES}
    finally:
        conn.close()
    return _chats(columns, tables)


async def postgres_rows(conn: Any) -> Rows:
    """The recorder's rows on the PostgreSQL connection ``conn``, as asyncpg returns them."""
    columns: dict[str, tuple[str, ...]] = {}
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for table in TABLES:
        statement = await conn.prepare(f"SELECT * FROM {table}")
        columns[table] = tuple(attribute.name for attribute in statement.get_attributes())
        tables[table] = [tuple(record) for record in await statement.fetch()]
    return _chats(columns, tables)


def interleaved(rows: Rows) -> list[tuple[str, tuple[Any, ...]]]:
    """Every row in the order concurrent chats record them: each chat's next turn in turn."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    longest = max((len(chat) for chat in rows.chats), default=0)
    for step in range(longest):
        for chat in rows.chats:
            if step < len(chat):
                out += chat[step]
    return out


def _insert(table: str, columns: Sequence[str], style: str) -> str:
    marks = ", ".join("?" if style == "qmark" else f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def _by_table(submissions: Iterable[Submission]) -> dict[str, list[tuple[Any, ...]]]:
    """Rows grouped per table, sessions first, each table's rows in their order."""
    grouped: dict[str, list[tuple[Any, ...]]] = {table: [] for table in TABLES}
    for submission in submissions:
        for table, row in submission:
            grouped[table].append(row)
    return grouped


Submit = Callable[[Submission], Awaitable[object]]


async def writers_rate(rows: Rows, submit: Submit, warm: int) -> Rate:
    """One writer per chat, all at once, each awaiting ``submit`` of its submissions in turn.

    Each chat's first ``warm`` submissions go first, untimed.
    """

    async def writer(submissions: Sequence[Submission]) -> None:
        for submission in submissions:
            await submit(submission)

    await asyncio.gather(*(writer(chat[:warm]) for chat in rows.chats))
    timed = [chat[warm:] for chat in rows.chats]
    start = perf_counter()
    await asyncio.gather(*(writer(chat) for chat in timed))
    return Rate(sum(len(s) for chat in timed for s in chat), perf_counter() - start)


class SqliteGroupCommit:
    """sqlite3 on chatledger's file: a writer thread commits all queued rows in one transaction."""

    def __init__(self, path: Path, columns: dict[str, tuple[str, ...]]) -> None:
        """Open ``path`` as the store opens it for writing (WAL, synchronous=FULL, foreign keys)."""
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "busy_timeout=30000"):  # fmt: skip
            self._conn.execute(f"PRAGMA {pragma}")
        self._sql = {table: _insert(table, columns[table], "qmark") for table in TABLES}
        self._jobs: queue.SimpleQueue[tuple[Submission, Future[None]] | None] = queue.SimpleQueue()
        self.commits = 0
        self._thread = threading.Thread(target=self._loop, name="raw-group-commit", daemon=True)
        self._thread.start()

    async def submit(self, submission: Submission) -> None:
        """Queue ``submission``; return once the transaction holding it is committed."""
        future: Future[None] = Future()
        self._jobs.put((submission, future))
        await asyncio.wrap_future(future)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            jobs = [job]
            while True:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                jobs.append(more)
            try:
                self._conn.execute("BEGIN")
                for table, rows in _by_table(s for s, _ in jobs).items():
                    if rows:
                        self._conn.executemany(self._sql[table], rows)
                self._conn.execute("COMMIT")
                self.commits += 1
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                for _, future in jobs:
                    future.set_exception(exc)
                continue
            for _, future in jobs:
                future.set_result(None)

    def close(self) -> None:
        """Stop the writer thread and close the connection."""
        self._jobs.put(None)
        self._thread.join()
        self._conn.close()


class PostgresGroupCommit:
    """asyncpg on one connection: a committer task inserts all queued rows in one transaction."""

    def __init__(self, conn: Any, columns: dict[str, tuple[str, ...]]) -> None:
        """Write through ``conn`` into chatledger's tables with ``columns``."""
        self._conn = conn
        self._sql = {table: _insert(table, columns[table], "numeric") for table in TABLES}
        self._pending: list[tuple[Submission, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self.commits = 0
        self._task = asyncio.create_task(self._loop())

    async def submit(self, submission: Submission) -> None:
        """Queue ``submission``; return once the transaction holding it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, future))
        self._wake.set()
        await future

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            jobs, self._pending = self._pending, []
            if not jobs:
                continue
            try:
                async with self._conn.transaction():
                    for table, rows in _by_table(s for s, _ in jobs).items():
                        if rows:
                            await self._conn.executemany(self._sql[table], rows)
                self.commits += 1
            except Exception as exc:
                for _, future in jobs:
                    future.set_exception(exc)
                continue
            for _, future in jobs:
                future.set_result(None)

    async def close(self) -> None:
        """Stop the committer task (the connection stays the caller's)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def postgres_batches(
    conn: Any, rows: Rows, order: Sequence[tuple[str, tuple[Any, ...]]], size: int, method: str
) -> Rate:
    """``order``'s rows in batches of ``size``, one transaction each, by ``COPY`` or executemany."""
    sql = {table: _insert(table, rows.columns[table], "numeric") for table in TABLES}
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    start = perf_counter()
    for batch in batches:
        grouped = _by_table([list(batch)])
        async with conn.transaction():
            for table, table_rows in grouped.items():
                if not table_rows:
                    continue
                if method == COPY:
                    await conn.copy_records_to_table(
                        table, records=table_rows, columns=list(rows.columns[table])
                    )
                else:
                    await conn.executemany(sql[table], table_rows)
    return Rate(len(order), perf_counter() - start)
