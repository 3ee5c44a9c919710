"""The session search's text index (migrations 6 and 7): kept in step with every write, and
never changing what a search finds.

SQLite indexes message text in an FTS5 trigram table; its triggers only list written
messages as pending, and the store's writer indexes them while idle (or when asked,
``index_pending_text``). PostgreSQL keeps a pg_trgm GIN index, where the extension is
available. A search asks the index for candidate messages (on SQLite, with every pending
one), then tests them as the scan does: so every search here is run three ways and must
find the same sessions: through the index, through the index with a tiny candidate limit
(the walk a common text takes), and by the scan alone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import chatledger
from chatledger.entities import LLMMessage, MessageContent, SessionQuery
from chatledger.stores import queries
from chatledger.stores import sql as sql_layer
from chatledger.stores import sqlite as sqlite_module
from chatledger.stores.dialect import Dialect
from chatledger.stores.postgres import MESSAGE_TEXT_INDEX as POSTGRES_INDEX
from chatledger.stores.postgres import PostgresDialect, PostgresStore
from chatledger.stores.schema import MESSAGE, MIGRATIONS, SESSION, Migration
from chatledger.stores.sql import Read, SqlStore, Write
from chatledger.stores.sqlite import MESSAGE_TEXT_INDEX as SQLITE_INDEX
from chatledger.stores.sqlite import MESSAGE_TEXT_PENDING as SQLITE_PENDING
from chatledger.stores.sqlite import (
    SqliteDatabase,
    SqliteDialect,
    SqliteStore,
    fts_phrase,
    trigram_available,
)
from chatledger.testing import BASE_TIME, make_message, make_session
from chatledger.testing.servers import empty_tables, execute

pytestmark = pytest.mark.skipif(not trigram_available(), reason="no FTS5 trigram tokenizer")

# Titles and message texts: rare and common words, LIKE and FTS5 syntax, non-ASCII case.
_TITLES = [None, "Refund for order #0042-17", "weekly REPORT", "50% off", "Ärger im Büro", None]
_TEXTS = [
    ["hello there", "I want a refund please"],
    ["the refund of order #0042-17 is late", "thanks"],
    ["nothing to see"],
    ['she said "hello" twice', "path C:\\temp\\new", "the 100_000 limit"],
    ["NEAR(a b) AND x OR y*", "col:umn -minus ^caret", "it's"],
    ["ÉCOLE et école", "straße STRASSE", "emoji 🙂🙂 here"],
    ["Report of the week", "report body"],
]
_SEARCHES = [
    "refund",
    "REFUND",
    "#0042-17",
    "order #0042",
    "report",
    "hello",
    '"hello"',
    'said "hello" t',
    "%",
    "50%",
    "_",
    "100_000",
    "0_0",
    "\\",
    "C:\\temp",
    "!",
    "NEAR(a b)",
    "y*",
    "-minus",
    "col:umn",
    "it's",
    "école",
    "ÉCOLE",
    "École",
    "straße",
    "STRASSE",
    "ärger",
    "ÄRGER im",
    "🙂🙂",
    "🙂",
    "ab",
    "re",
    "nowhere at all",
    "the",
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """SQLite and PostgreSQL in turn, empty and migrated (so indexed)."""
    if request.param == "sqlite":
        opened: SqlStore = await SqliteStore.connect(tmp_path / "search.db")
        assert isinstance(opened._dialect, SqliteDialect)
        assert opened._dialect.text_indexed
    else:
        url = request.getfixturevalue("postgres_url")
        connected = await chatledger.connect(url)
        assert isinstance(connected, PostgresStore)
        opened = connected
        await empty_tables(url)
        assert await connected.create_text_index()
        assert await _postgres_indexed(opened)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(autouse=True)
def no_idle_indexing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer never idle long enough to index: a test flushes when it means to.

    Tests of the idle writer set their own pause before they open a store.
    """
    monkeypatch.setattr(sqlite_module, "_INDEX_IDLE", 3600.0)
    monkeypatch.setattr(sqlite_module, "_INDEX_POLL", 3600.0)


@pytest.fixture(autouse=True)
def fresh_statements() -> Iterator[None]:
    """Statements built with a patched probe limit are not left for other tests."""
    queries._session_search_sql.cache_clear()
    yield
    queries._session_search_sql.cache_clear()


async def _postgres_indexed(store: SqlStore) -> bool:
    (rows,) = await store._db.read([Read(f"SELECT to_regclass('{POSTGRES_INDEX}') IS NOT NULL")])
    return bool(rows[0][0])


async def _fill(store: SqlStore, minute: int = 0) -> list[list[LLMMessage]]:
    """Sessions with every title and every list of texts, one minute apart; their messages."""
    saved = []
    for title in _TITLES:
        for texts in _TEXTS:
            session = make_session(title=title, create_time=BASE_TIME + timedelta(minutes=minute))
            minute += 1
            await store.create_session(session)
            messages = [make_message(session, text) for text in texts]
            await store.save_messages(messages)
            saved.append(messages)
    return saved


async def _flush(store: SqlStore, at_most: int | None = None) -> int:
    """Index SQLite's pending messages now (PostgreSQL indexes as it writes)."""
    return await store.index_pending_text(at_most) if isinstance(store, SqliteStore) else 0


async def _pending(store: SqlStore) -> int:
    """How many messages wait for SQLite's writer to index their text."""
    (rows,) = await store._db.read([Read(f"SELECT COUNT(*) FROM {SQLITE_PENDING}")])
    return int(rows[0][0])


def _expected(text: str) -> int:
    """How many of ``_fill``'s sessions hold ASCII ``text`` in their title or a message."""
    needle = text.lower()
    return sum(
        any(needle in part.lower() for part in [title or "", *texts])
        for title in _TITLES
        for texts in _TEXTS
    )


async def _found(store: SqlStore, text: str, limit: int = 7) -> list[uuid.UUID]:
    """Every session a search finds, page after page."""
    found: list[uuid.UUID] = []
    cursor: str | None = None
    while True:
        page = await store.search_sessions(SessionQuery(text=text), cursor=cursor, limit=limit)
        found.extend(s.id for s in page.sessions)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def _three_ways(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, text: str
) -> list[uuid.UUID]:
    """What a search finds through the index; asserted equal to the walk's and the scan's."""
    indexed = await _found(store, text)
    with monkeypatch.context() as patched:
        patched.setattr(queries, "SEARCH_PROBE_LIMIT", 2)
        queries._session_search_sql.cache_clear()
        walked = await _found(store, text)
        queries._session_search_sql.cache_clear()
    with monkeypatch.context() as patched:
        patched.setattr(type(store._dialect), "text_probe", lambda self: None)
        scanned = await _found(store, text)
    assert indexed == scanned, text
    assert walked == scanned, text
    return indexed


async def _update_text(store: SqlStore, message_id: uuid.UUID, content: dict[str, Any]) -> None:
    """Rewrite a message's content behind chatledger's back (as MoFA may)."""
    dialect = store._dialect
    sql = dialect.sql(f"UPDATE {MESSAGE.name} SET content = ? WHERE id = ?")
    await store._db.write(
        [Write(sql, (dialect.encode_json(content), dialect.encode_uuid(message_id)))]
    )


async def _sqlite_matches(store: SqlStore, text: str) -> int:
    """How many messages the SQLite trigram table holds ``text`` for."""
    sql = f"SELECT COUNT(*) FROM {SQLITE_INDEX} WHERE {SQLITE_INDEX} MATCH ?"
    (rows,) = await store._db.read([Read(sql, (fts_phrase(text),))])
    return int(rows[0][0])


async def test_indexed_search_finds_what_the_scan_finds(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rare, common, short, wildcard, quoted and non-ASCII texts: the index changes nothing."""
    await _fill(store)
    results = {text: await _three_ways(store, monkeypatch, text) for text in _SEARCHES}
    for text, found in results.items():
        if text.isascii():  # LIKE and ILIKE alike: ASCII case folded
            assert len(found) == _expected(text), text
    assert len(results["refund"]) == 17  # 12 by their messages, 5 more by their title
    assert results["REFUND"] == results["refund"]
    assert results["nowhere at all"] == []
    # ASCII case folds everywhere; beyond ASCII, each database's own rules, as before the
    # index: SQLite's LIKE folds ASCII only, PostgreSQL's ILIKE the locale's letters.
    assert results["ÉCOLE"] != []
    assert results["école"] != []


@pytest.mark.parametrize("flushed", [True, False], ids=["indexed", "pending"])
async def test_the_index_follows_inserts_updates_and_deletes(
    store: SqlStore, flushed: bool
) -> None:
    """A saved message is found by its text; a rewritten one by its new text; deleted, by none.

    On SQLite, once with the index brought up to date after every write (the
    triggers then rewrite and delete indexed messages), once with nothing
    indexed (they rewrite and delete pending ones): found the same either way.
    """
    sqlite = isinstance(store, SqliteStore)

    async def written(**matches: int) -> None:
        """After a write: flushed or not, as the test runs; the index's matches, if flushed."""
        if flushed:
            await _flush(store)
        if sqlite:
            for text, count in matches.items():
                expected = count if flushed else 0
                assert await _sqlite_matches(store, text.replace("_", "-")) == expected, text

    kept = make_session(title="kept")
    gone = make_session(title="gone", create_time=BASE_TIME + timedelta(minutes=1))
    cascaded = make_session(title="cascaded", create_time=BASE_TIME + timedelta(minutes=2))
    for session in (kept, gone, cascaded):
        await store.create_session(session)
    first = make_message(kept, "order zebra-4711 arrived")
    await store.save_message(first)
    await store.save_messages(
        [make_message(gone, "zebra-4711 again"), make_message(gone, "nothing")]
    )
    await store.save_message(make_message(cascaded, "zebra-4711 thrice"))
    await written(zebra_4711=3)
    if sqlite:
        assert await _pending(store) == (0 if flushed else 4)
    assert await _found(store, "ZEBRA-4711") == [cascaded.id, gone.id, kept.id]

    await _update_text(store, first.id, {"text": "now an okapi-99"})
    await written(okapi_99=1, zebra_4711=2)
    assert await _found(store, "okapi-99") == [kept.id]
    assert await _found(store, "zebra-4711") == [cascaded.id, gone.id]
    await _update_text(store, first.id, {"image": "no text at all"})
    await written(okapi_99=0)
    assert await _found(store, "okapi-99") == []
    await _update_text(store, first.id, {"text": "okapi-99 is back"})
    await written(okapi_99=1, zebra_4711=2)
    assert await _found(store, "okapi-99") == [kept.id]

    assert await store.delete_session(gone.id)
    # the session goes, its messages cascade (the foreign key, not chatledger, deletes them)
    dialect = store._dialect
    delete = dialect.sql(f"DELETE FROM {SESSION.name} WHERE id = ?")
    await store._db.write([Write(delete, (dialect.encode_uuid(cascaded.id),))])
    await written(zebra_4711=0, nothing=0, okapi_99=1)
    assert await store.get_session_messages(cascaded.id) == []
    assert await _found(store, "zebra-4711") == []
    assert await _found(store, "okapi-99") == [kept.id]

    assert await store.delete_message(first.id)
    await written(okapi_99=0)
    assert await _found(store, "okapi-99") == []
    if sqlite:
        assert await _pending(store) == 0  # a deleted message leaves the pending list too
        await _integrity_check(store)


async def test_messages_without_text_are_stored_and_not_indexed(store: SqlStore) -> None:
    """Tool calls (no text) and an empty text are stored as ever; they match no text."""
    session = make_session(title=None)
    await store.create_session(session)
    await store.save_messages(
        [
            make_message(session, content=MessageContent(text=None)),
            make_message(session, content=MessageContent(text="")),
        ]
    )
    assert len(await store.get_session_messages(session.id)) == 2
    assert await _found(store, "none") == []


async def _integrity_check(store: SqlStore) -> None:
    """SQLite's index is sound and holds exactly the messages with text that are not pending.

    A contentless FTS5 table told to forget a row it does not hold, or with
    other text, is corrupted: FTS5's own check finds that, and the rowids it
    holds must be those of the messages it should.
    """
    text = "CASE WHEN json_valid(content) THEN json_extract(content, '$.text') END"
    await store._db.write(
        [Write(f"INSERT INTO {SQLITE_INDEX}({SQLITE_INDEX}) VALUES ('integrity-check')")]
    )
    indexed, expected = await store._db.read(
        [
            Read(f"SELECT rowid FROM {SQLITE_INDEX} ORDER BY rowid"),
            Read(
                f"SELECT rowid FROM {MESSAGE.name} WHERE {text} IS NOT NULL "
                f"AND rowid NOT IN (SELECT message_rowid FROM {SQLITE_PENDING}) ORDER BY rowid"
            ),
        ]
    )
    assert indexed == expected


async def test_sqlite_content_that_is_not_json_is_still_written(tmp_path: Path) -> None:
    """The triggers and the indexing skip content the JSON functions would refuse.

    The table accepts it, so a write of it must not fail, pending or indexed.
    """
    store = await SqliteStore.connect(tmp_path / "raw.db")
    try:
        session = make_session()
        await store.create_session(session)
        message = make_message(session, "fine")
        await store.save_message(message)
        await _update_text_raw(store, message.id, "not json {")  # pending: rewritten
        assert await _flush(store) == 1  # taken off the list, nothing to index
        await _update_text_raw(store, message.id, '{"text": "json again"}')
        await _flush(store)
        assert await _sqlite_matches(store, "json again") == 1
        assert await _sqlite_matches(store, "fine") == 0
        await _update_text_raw(store, message.id, "broken again {")  # indexed: rewritten
        assert await _sqlite_matches(store, "json again") == 0
        await _flush(store)
        assert await _found(store, "again") == []
        await store.save_message(make_message(session, "beside"))
        await _update_text_raw(store, message.id, "{{{")
        assert await store.delete_message(message.id)
        await _integrity_check(store)
    finally:
        await store.close()


async def _update_text_raw(store: SqlStore, message_id: uuid.UUID, content: str) -> None:
    sql = f"UPDATE {MESSAGE.name} SET content = ? WHERE id = ?"
    await store._db.write([Write(sql, (content, str(message_id)))])


def _migration(version: int) -> Migration:
    (found,) = [migration for migration in MIGRATIONS if migration.version == version]
    return found


async def test_sqlite_migration_run_again_lists_each_message_once(tmp_path: Path) -> None:
    """Migration 7's statements run twice: each message pending once, then indexed once."""
    store = await SqliteStore.connect(tmp_path / "again.db")
    try:
        session = make_session()
        await store.create_session(session)
        await store.save_messages([make_message(session, f"turn {i} walrus") for i in range(5)])
        await _flush(store, 2)
        statements = _migration(7).statements(store._dialect)
        await store._db.write([Write(sql) for sql in statements])
        await store._db.write([Write(sql) for sql in statements])
        assert await _pending(store) == 3
        assert await _sqlite_matches(store, "walrus") == 2
        assert await _flush(store) == 3
        assert await _sqlite_matches(store, "walrus") == 5
        assert await _sqlite_matches(store, "turn 3 walrus") == 1
        await _integrity_check(store)
    finally:
        await store.close()


async def test_sqlite_without_the_index_searches_by_scan(tmp_path: Path) -> None:
    """A database migrated where SQLite had no trigram tokenizer: found by the scan."""
    path = tmp_path / "plain.db"
    store = await SqliteStore.connect(path)
    session = make_session(title="plain")
    try:
        await store.create_session(session)
        await store.save_message(make_message(session, "a rare marmot-12"))
        names = [f"{SQLITE_INDEX}_{kind}" for kind in ("insert", "delete", "update")]
        await store._db.write(
            [Write(f"DROP TRIGGER {name}") for name in names]
            + [Write(f"DROP TABLE {table}") for table in (SQLITE_INDEX, SQLITE_PENDING)]
        )
    finally:
        await store.close()
    again = await SqliteStore.connect(path)
    try:
        assert isinstance(again._dialect, SqliteDialect)
        assert not again._dialect.text_indexed
        assert await again.index_pending_text() == 0
        assert await _found(again, "MARMOT-12") == [session.id]
    finally:
        await again.close()


async def test_sqlite_search_agrees_whatever_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything pending, nothing pending, and every mix: index, walk and scan agree.

    The mix: some messages indexed, some pending; some rewritten while
    pending, some after they were indexed; some deleted in each state, by
    themselves and with their session; and more written after all that.
    """
    store = await SqliteStore.connect(tmp_path / "mixed.db")
    try:
        saved = await _fill(store)
        total = sum(len(messages) for messages in saved)
        assert await _pending(store) == total
        assert await _sqlite_matches(store, "refund") == 0
        everything_pending = {
            text: await _three_ways(store, monkeypatch, text) for text in _SEARCHES
        }
        assert len(everything_pending["refund"]) == 17

        assert await _flush(store) == total
        assert await _pending(store) == 0
        nothing_pending = {text: await _three_ways(store, monkeypatch, text) for text in _SEARCHES}
        assert nothing_pending == everything_pending
        await _integrity_check(store)

        # Rewrite every message, then index the older half: each session of the first half
        # holds indexed messages, the second half pending ones.
        for messages in saved:
            for message in messages:
                await _update_text(store, message.id, {"text": f"{message.content.text} v2"})
        assert await _pending(store) == total
        assert await _flush(store, total // 2) == total // 2
        indexed_half, pending_half = saved[: len(saved) // 2], saved[len(saved) // 2 :]
        for group in (indexed_half, pending_half):
            rewritten, deleted, cascaded = group[1][0], group[4][-1], group[6][0]
            await _update_text(store, rewritten.id, {"text": "rewritten to a kumquat"})
            assert await store.delete_message(deleted.id)
            assert await store.delete_session(cascaded.chat_session_id)
        more = await _fill(store, minute=1000)
        await _update_text(store, more[0][0].id, {"text": "kumquat before it was indexed"})
        await _flush(store, 7)
        assert total < await _pending(store) < 2 * total  # half the first fill, the second
        mixed = {
            text: await _three_ways(store, monkeypatch, text)
            for text in [*_SEARCHES, "v2", "kumquat"]
        }
        assert len(mixed["kumquat"]) == 3
        await _integrity_check(store)

        await _flush(store)
        assert await _pending(store) == 0
        for text, found in mixed.items():
            assert await _three_ways(store, monkeypatch, text) == found, text
        await _integrity_check(store)
    finally:
        await store.close()


async def test_sqlite_writes_are_pending_until_indexed(tmp_path: Path) -> None:
    """A write lists its messages as pending, and leaves the index alone; a flush indexes them."""
    store = await SqliteStore.connect(tmp_path / "pending.db")
    try:
        session = make_session()
        await store.create_session(session)
        await store.save_messages([make_message(session, f"lemur {i}") for i in range(30)])
        await store.save_message(make_message(session, "lemur alone"))
        assert await _pending(store) == 31
        assert await _sqlite_matches(store, "lemur") == 0
        assert await _found(store, "LEMUR ALONE") == [session.id]  # read from the list
        assert await store.index_pending_text(10) == 10
        assert await _pending(store) == 21
        assert await _sqlite_matches(store, "lemur") == 10
        assert await store.index_pending_text() == 21
        assert await store.index_pending_text() == 0
        assert await _sqlite_matches(store, "lemur") == 31
        assert await _found(store, "LEMUR ALONE") == [session.id]
    finally:
        await store.close()


async def _until(condition: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Poll ``condition`` until it holds (failing after ``within`` s, a safety net only)."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"still false after {within} s"
        await asyncio.sleep(0.01)


class _IdleWaits:
    """The SQLite writer's waits for its next job, ended by the test instead of the clock.

    The writer indexes pending text once such a wait times out. Here a wait
    ends with a job, or (once the test calls :meth:`pause`) with no job: a slow
    machine's gaps between one write and the next are never a pause.
    """

    def __init__(self) -> None:
        self._paused = threading.Event()

    def pause(self) -> None:
        """From now on, a wait with no job ends as if its time had passed."""
        self._paused.set()

    def jobs(self) -> _HeldJobs:
        """A job queue whose timed waits end as this says."""
        return _HeldJobs(self._paused)


class _HeldJobs:
    """``queue.SimpleQueue`` as the SQLite writer uses it, with the idle waits held."""

    def __init__(self, paused: threading.Event) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._paused = paused

    def put(self, item: Any) -> None:
        """Queue ``item``."""
        self._queue.put(item)

    def get_nowait(self) -> Any:
        """The next item, or queue.Empty."""
        return self._queue.get_nowait()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The next item; a timed wait with none ends only once the test has paused."""
        if not timeout:  # a wait for ever, or a look: as the real queue
            return self._queue.get(block, timeout)
        while True:
            try:
                return self._queue.get(timeout=0.01)
            except queue.Empty:
                if self._paused.is_set():
                    raise


@pytest.fixture
def idle_waits(monkeypatch: pytest.MonkeyPatch) -> _IdleWaits:
    """The stores opened from now on idle only when the test says so."""
    waits = _IdleWaits()
    held = SimpleNamespace(SimpleQueue=waits.jobs, Empty=queue.Empty)
    monkeypatch.setattr(sqlite_module, "queue", held)
    return waits


async def test_sqlite_idle_writer_indexes_the_backlog_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left alone, the writer indexes every pending message, chunk after chunk."""
    monkeypatch.setattr(sqlite_module, "_INDEX_IDLE", 0.05)
    store = await SqliteStore.connect(tmp_path / "idle.db")
    try:
        session = make_session()
        await store.create_session(session)
        count = 3 * sqlite_module._INDEX_CHUNK + 5
        await store.save_messages([make_message(session, f"ibis {i}") for i in range(count)])

        async def drained() -> bool:
            return await _pending(store) == 0

        await _until(drained)
        assert await _sqlite_matches(store, "ibis") == count
        await _integrity_check(store)
    finally:
        await store.close()


async def test_sqlite_a_burst_of_writes_does_not_wait_for_indexing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle_waits: _IdleWaits
) -> None:
    """Writes that follow each other keep the writer from indexing until they pause.

    Indexing is observed through the chunks the writer runs: none during the
    burst, though its messages pile up pending, and then all of them once the
    writer's wait for a next job ends without one.
    """
    chunks: list[int] = []
    index_chunk = SqliteDatabase._index_chunk

    def counted(self: SqliteDatabase, conn: Any, limit: int, *, wait: bool = True) -> int:
        taken = index_chunk(self, conn, limit, wait=wait)
        chunks.append(taken)
        return taken

    monkeypatch.setattr(SqliteDatabase, "_index_chunk", counted)
    store = await SqliteStore.connect(tmp_path / "burst.db")
    try:
        session = make_session()
        await store.create_session(session)
        for i in range(300):
            await store.save_message(make_message(session, f"heron {i}"))
        await _on_writer(store)  # the writer is done with the burst's last write
        assert await _pending(store) == 300
        assert chunks == []

        idle_waits.pause()

        async def drained() -> bool:
            return await _pending(store) == 0

        await _until(drained)
        await _on_writer(store)
        assert sum(chunks) == 300
        assert await _sqlite_matches(store, "heron") == 300
    finally:
        await store.close()


class _WriterClock:
    """``time.monotonic`` for the SQLite writer: a write takes 10 ms, an index chunk 50 ms.

    Only the writer thread moves it, so its share of time spent indexing is
    the same on any machine.
    """

    WRITE, CHUNK = 0.01, 0.05

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        """The writer's time now."""
        return self.now


async def test_sqlite_a_writer_that_never_pauses_keeps_the_backlog_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle_waits: _IdleWaits
) -> None:
    """Past the backlog's bound the writer indexes between jobs, in a tenth of its time.

    Without it, a writer that never pauses would leave every message
    pending, and a rare text would read every message once they outnumber
    the search's candidate limit. The writer's clock is the test's: each
    write takes 10 ms of it and each chunk 50 ms, so after a chunk the writer
    must do 45 writes before the next.
    """
    monkeypatch.setattr(sqlite_module, "_BEHIND", 200)
    clock = _WriterClock()
    monkeypatch.setattr(sqlite_module, "time", SimpleNamespace(
        monotonic=clock.monotonic, perf_counter=time.perf_counter, sleep=time.sleep,
    ))  # fmt: skip
    chunks: list[tuple[float, float, int]] = []
    index_chunk = SqliteDatabase._index_chunk
    commit_group = SqliteDatabase._commit_group

    def timed(self: SqliteDatabase, conn: Any, limit: int, *, wait: bool = True) -> int:
        started = clock.now
        taken = index_chunk(self, conn, limit, wait=wait)
        clock.now += clock.CHUNK
        chunks.append((started, clock.now, taken))
        return taken

    def written(self: SqliteDatabase, conn: Any, jobs: list[Any]) -> None:
        commit_group(self, conn, jobs)
        clock.now += clock.WRITE

    monkeypatch.setattr(SqliteDatabase, "_index_chunk", timed)
    monkeypatch.setattr(SqliteDatabase, "_commit_group", written)
    store = await SqliteStore.connect(tmp_path / "steady.db")
    try:
        session = make_session()
        await store.create_session(session)
        count = 3000
        began = clock.now
        for start in range(0, count, 10):
            await store.save_messages(
                [make_message(session, f"gecko {i}") for i in range(start, start + 10)]
            )
        await _on_writer(store)  # past a chunk the writer may run after answering the last save
        indexed = sum(taken for _, _, taken in chunks)
        assert indexed > 0
        assert await _pending(store) == count - indexed
        spent = sum(ended - started for started, ended, _ in chunks)
        assert spent <= sqlite_module._BUSY_SHARE * (clock.now - began) + clock.CHUNK
        for (_, ended, _), (following, _, _) in itertools.pairwise(chunks):
            assert following - ended >= 9 * clock.CHUNK - 1e-9  # nine times the chunk's time
        assert await _sqlite_matches(store, "gecko") == indexed
        await _integrity_check(store)
    finally:
        await store.close()


async def test_sqlite_idle_writer_does_not_wait_for_another_process_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holding the write lock: the idle writer leaves the backlog for later.

    It does not sit out the busy timeout (an hour here) in its idle time, nor
    stop: it gives way while the lock is still held, its next job runs, and its
    backlog is indexed after the lock goes and the store writes again.
    """
    path = tmp_path / "locked.db"
    store = await SqliteStore.connect(path, busy_timeout=3600)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        session = make_session()
        await store.create_session(session)
        await store.save_messages([make_message(session, f"okapi {i}") for i in range(10)])
        other.execute("BEGIN IMMEDIATE")
        monkeypatch.setattr(sqlite_module, "_INDEX_IDLE", 0.01)
        caplog.set_level(logging.DEBUG, logger="chatledger.stores.sqlite")
        await _on_writer(store)  # wakes the writer, which waits with the new pause from now

        async def gave_way() -> bool:
            return "left pending message text for later" in caplog.text

        await _until(gave_way)  # within the safety net, so long before the busy timeout
        await _on_writer(store)
        assert await _pending(store) == 10
        other.execute("ROLLBACK")
        await store.save_message(make_message(session, "okapi 10"))

        async def drained() -> bool:
            return await _pending(store) == 0

        await _until(drained)
        assert await _sqlite_matches(store, "okapi") == 11
    finally:
        other.close()
        await store.close()


async def _on_writer(store: SqliteStore) -> None:
    """A job that does nothing, run by the writer thread once it is done with the one before."""
    await store._sqlite._submit(lambda conn: None, is_write=False, on_writer=True)


async def test_sqlite_close_with_a_backlog_is_prompt_and_the_backlog_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store closed while its writer works through a backlog closes within a chunk.

    The close is asked while the writer is about to run its second chunk after
    the last save: it runs that chunk and stops, leaving the rest of the backlog
    (chunks the writer ran between the saves are not counted). What it had not
    indexed is still pending when the file opens again, is searched meanwhile,
    and is indexed then.
    """
    chunks: list[int] = []  # those run once the test arms the count
    armed, second, go_on = threading.Event(), threading.Event(), threading.Event()
    index_chunk = SqliteDatabase._index_chunk

    def held(self: SqliteDatabase, conn: Any, limit: int, *, wait: bool = True) -> int:
        if armed.is_set() and len(chunks) == 1:
            second.set()  # the writer is at its second chunk...
            assert go_on.wait(30)  # ...and waits for the close to be asked
        taken = index_chunk(self, conn, limit, wait=wait)
        if armed.is_set():
            chunks.append(taken)
        return taken

    monkeypatch.setattr(SqliteDatabase, "_index_chunk", held)
    path = tmp_path / "backlog.db"
    store = await SqliteStore.connect(path)
    session = make_session()
    count = 20_000
    closing: asyncio.Task[None] | None = None
    try:
        await store.create_session(session)
        for start in range(0, count, 1000):
            await store.save_messages(
                [make_message(session, f"tapir {i:05}") for i in range(start, start + 1000)]
            )
        monkeypatch.setattr(sqlite_module, "_INDEX_IDLE", 0.01)  # from the writer's next wait
        armed.set()
        await store.save_message(make_message(session, "tapir last"))
        assert await asyncio.to_thread(second.wait, 30)
        closing = asyncio.create_task(store.close())

        async def stop_queued() -> bool:
            return store._sqlite._jobs.qsize() > 0

        await _until(stop_queued)  # the close has put its stop in the writer's queue
        go_on.set()
        await closing
    finally:
        go_on.set()
        if closing is None:
            await store.close()
    assert chunks == [sqlite_module._INDEX_CHUNK] * 2  # the chunk at hand, and no more

    monkeypatch.setattr(sqlite_module, "_INDEX_IDLE", 3600.0)
    again = await SqliteStore.connect(path)
    try:
        left = await _pending(again)
        assert 0 < left < count + 1
        assert await _sqlite_matches(again, "tapir") == count + 1 - left
        assert await _found(again, "TAPIR LAST") == [session.id]
        assert await _found(again, "tapir 19999") == [session.id]
        assert await again.index_pending_text() == left
        assert await _sqlite_matches(again, "tapir") == count + 1
        await _integrity_check(again)
    finally:
        await again.close()


# Version 6's SQLite statements (before version 7 took indexing off the writes): the text
# indexed by each write's triggers, and backfilled.
_V6_TEXT = "CASE WHEN json_valid({row}.content) THEN json_extract({row}.content, '$.text') END"
_V6_STATEMENTS = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {SQLITE_INDEX} USING fts5("
    "text, content='', tokenize='trigram')",
    f"CREATE TRIGGER IF NOT EXISTS {SQLITE_INDEX}_insert AFTER INSERT ON {MESSAGE.name} BEGIN "
    f"INSERT INTO {SQLITE_INDEX}(rowid, text) SELECT new.rowid, text FROM "
    f"(SELECT {_V6_TEXT.format(row='new')} AS text) WHERE text IS NOT NULL; END",
    f"CREATE TRIGGER IF NOT EXISTS {SQLITE_INDEX}_delete AFTER DELETE ON {MESSAGE.name} BEGIN "
    f"INSERT INTO {SQLITE_INDEX}({SQLITE_INDEX}, rowid, text) SELECT 'delete', old.rowid, text "
    f"FROM (SELECT {_V6_TEXT.format(row='old')} AS text) WHERE text IS NOT NULL; END",
    f"CREATE TRIGGER IF NOT EXISTS {SQLITE_INDEX}_update AFTER UPDATE OF content ON "
    f"{MESSAGE.name} BEGIN "
    f"INSERT INTO {SQLITE_INDEX}({SQLITE_INDEX}, rowid, text) SELECT 'delete', old.rowid, text "
    f"FROM (SELECT {_V6_TEXT.format(row='old')} AS text) WHERE text IS NOT NULL; "
    f"INSERT INTO {SQLITE_INDEX}(rowid, text) SELECT new.rowid, text FROM "
    f"(SELECT {_V6_TEXT.format(row='new')} AS text) WHERE text IS NOT NULL; END",
    f"INSERT INTO {SQLITE_INDEX}({SQLITE_INDEX}) VALUES ('delete-all')",
    f"INSERT INTO {SQLITE_INDEX}(rowid, text) SELECT rowid, text FROM "
    f"(SELECT rowid, {_V6_TEXT.format(row=MESSAGE.name)} AS text FROM {MESSAGE.name}) "
    "WHERE text IS NOT NULL",
]


@pytest.mark.parametrize("indexed_at_6", [True, False], ids=["indexed", "no-trigram"])
async def test_sqlite_upgrade_from_version_6_keeps_what_it_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indexed_at_6: bool
) -> None:
    """A version-6 database, its text indexed by its triggers, upgrades with nothing pending.

    Its indexed messages stay searchable through the index, and the new
    triggers rewrite and delete them correctly. One migrated where SQLite
    had no trigram tokenizer (no index at version 6) has its messages with
    text queued instead.
    """
    path = tmp_path / "six.db"
    monkeypatch.setattr(sql_layer, "MIGRATIONS", MIGRATIONS[:6])
    old = await SqliteStore.connect(path)
    session = make_session(title="six")
    try:
        assert await old.schema_version() == 6
        await old.create_session(session)
        before = [make_message(session, f"before {i} quokka") for i in range(5)]
        await old.save_messages(before)
        if indexed_at_6:
            await old._db.write([Write(sql) for sql in _V6_STATEMENTS])
        after = make_message(session, "after the index quokka")
        await old.save_messages([after, make_message(session, content=MessageContent(text=None))])
        await _update_text_raw(old, before[0].id, "not json {")
    finally:
        await old.close()

    monkeypatch.setattr(sql_layer, "MIGRATIONS", MIGRATIONS)
    new = await SqliteStore.connect(path)
    try:
        assert await new.schema_version() == MIGRATIONS[-1].version >= 7
        if indexed_at_6:
            assert await _pending(new) == 0
            assert await _sqlite_matches(new, "quokka") == 5
        else:
            assert await _pending(new) == 5
            assert await _sqlite_matches(new, "quokka") == 0
        await _integrity_check(new)
        assert await _found(new, "AFTER THE index") == [session.id]
        assert await _found(new, "before 3 quokka") == [session.id]
        await _update_text(new, before[3].id, {"text": "became a wombat"})
        assert await new.delete_message(before[4].id)
        assert await new.delete_message(after.id)
        assert await _found(new, "before 3 quokka") == []
        assert await _found(new, "wombat") == [session.id]
        await _integrity_check(new)
        await _flush(new)
        assert await _sqlite_matches(new, "quokka") == 2
        assert await _sqlite_matches(new, "wombat") == 1
        await _integrity_check(new)
    finally:
        await new.close()


@pytest.mark.server
async def test_postgres_migration_without_pg_trgm_succeeds_and_search_scans(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pg_trgm (or no right to it): migration 6 warns, and searches scan correctly.

    A server without the extension is simulated by asking for one that does
    not exist; a failing CREATE INDEX (the operator class missing, as where
    the extension lives outside the search path) by naming one that does not.
    """
    store = await chatledger.connect(postgres_url)
    assert isinstance(store, SqlStore)
    try:
        await empty_tables(postgres_url)
        await _fill(store)
        expected = {text: await _found(store, text) for text in ("refund", "#0042-17", "the")}
        statement = PostgresDialect().trigram_index(MESSAGE)
        for broken in (
            statement.replace("'pg_trgm'", "'pg_trgm_missing'"),
            statement.replace("gin_trgm_ops", "no_such_trgm_ops"),
        ):
            await execute(postgres_url, f"DROP INDEX IF EXISTS {POSTGRES_INDEX}")
            await execute(postgres_url, broken)  # warns, does not fail
            assert not await _postgres_indexed(store)
            for text, found in expected.items():
                assert await _three_ways(store, monkeypatch, text) == found
        await execute(postgres_url, statement)
        assert await _postgres_indexed(store)
        for text, found in expected.items():
            assert await _found(store, text) == found
    finally:
        await store.close()


def test_statements_are_built_once_per_shape() -> None:
    """The same kind of search reuses its statement; only the parameters differ."""
    dialect: Dialect = SqliteDialect()
    first, params = queries.session_search(dialect, SessionQuery(text="abc"), None, 5)
    second, others = queries.session_search(dialect, SessionQuery(text="xyz"), None, 5)
    assert first is second
    assert params != others
