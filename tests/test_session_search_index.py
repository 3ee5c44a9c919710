"""The session search's text index (migration 6): kept in step with every write, and never
changing what a search finds.

SQLite indexes message text in an FTS5 trigram table kept by triggers; PostgreSQL in a
pg_trgm GIN index, where the extension is available. A search asks the index for
candidate messages, then tests them as the scan does: so every search here is run three
ways and must find the same sessions: through the index, through the index with a tiny
candidate limit (the walk a common text takes), and by the scan alone.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import chatledger
from chatledger.entities import MessageContent, SessionQuery
from chatledger.stores import queries
from chatledger.stores.dialect import Dialect
from chatledger.stores.postgres import MESSAGE_TEXT_INDEX as POSTGRES_INDEX
from chatledger.stores.postgres import PostgresDialect
from chatledger.stores.schema import MESSAGE, MIGRATIONS, SESSION
from chatledger.stores.sql import Read, SqlStore, Write
from chatledger.stores.sqlite import MESSAGE_TEXT_INDEX as SQLITE_INDEX
from chatledger.stores.sqlite import SqliteDialect, SqliteStore, fts_phrase, trigram_available
from chatledger.testing import BASE_TIME, make_message, make_session
from scratch_databases import empty_tables, postgres_execute

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
        assert isinstance(connected, SqlStore)
        opened = connected
        await empty_tables(url)
        assert await _postgres_indexed(opened)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(autouse=True)
def fresh_statements() -> Iterator[None]:
    """Statements built with a patched probe limit are not left for other tests."""
    queries._session_search_sql.cache_clear()
    yield
    queries._session_search_sql.cache_clear()


async def _postgres_indexed(store: SqlStore) -> bool:
    (rows,) = await store._db.read([Read(f"SELECT to_regclass('{POSTGRES_INDEX}') IS NOT NULL")])
    return bool(rows[0][0])


async def _fill(store: SqlStore) -> None:
    """Sessions with every title and every list of texts, one minute apart."""
    minute = 0
    for title in _TITLES:
        for texts in _TEXTS:
            session = make_session(title=title, create_time=BASE_TIME + timedelta(minutes=minute))
            minute += 1
            await store.create_session(session)
            await store.save_messages([make_message(session, text) for text in texts])


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


async def test_the_index_follows_inserts_updates_and_deletes(store: SqlStore) -> None:
    """A saved message is found by its text; a rewritten one by its new text; deleted, by none."""
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
    assert await _found(store, "ZEBRA-4711") == [cascaded.id, gone.id, kept.id]
    sqlite = isinstance(store, SqliteStore)
    if sqlite:
        assert await _sqlite_matches(store, "zebra-4711") == 3

    await _update_text(store, first.id, {"text": "now an okapi-99"})
    assert await _found(store, "okapi-99") == [kept.id]
    assert await _found(store, "zebra-4711") == [cascaded.id, gone.id]
    await _update_text(store, first.id, {"image": "no text at all"})
    assert await _found(store, "okapi-99") == []
    await _update_text(store, first.id, {"text": "okapi-99 is back"})
    assert await _found(store, "okapi-99") == [kept.id]
    if sqlite:
        assert await _sqlite_matches(store, "okapi-99") == 1
        assert await _sqlite_matches(store, "zebra-4711") == 2

    assert await store.delete_session(gone.id)
    # the session goes, its messages cascade (the foreign key, not chatledger, deletes them)
    dialect = store._dialect
    delete = dialect.sql(f"DELETE FROM {SESSION.name} WHERE id = ?")
    await store._db.write([Write(delete, (dialect.encode_uuid(cascaded.id),))])
    assert await store.get_session_messages(cascaded.id) == []
    assert await _found(store, "zebra-4711") == []
    assert await _found(store, "okapi-99") == [kept.id]
    if sqlite:
        assert await _sqlite_matches(store, "zebra-4711") == 0
        assert await _sqlite_matches(store, "nothing") == 0

    assert await store.delete_message(first.id)
    assert await _found(store, "okapi-99") == []
    if sqlite:
        assert await _sqlite_matches(store, "okapi-99") == 0


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


async def test_sqlite_content_that_is_not_json_is_still_written(tmp_path: Path) -> None:
    """The triggers skip content the JSON functions would refuse, as the table accepts it."""
    store = await SqliteStore.connect(tmp_path / "raw.db")
    try:
        session = make_session()
        await store.create_session(session)
        message = make_message(session, "fine")
        await store.save_message(message)
        await _update_text_raw(store, message.id, "not json {")
        await _update_text_raw(store, message.id, '{"text": "json again"}')
        assert await _sqlite_matches(store, "json again") == 1
        assert await _sqlite_matches(store, "fine") == 0
    finally:
        await store.close()


async def _update_text_raw(store: SqlStore, message_id: uuid.UUID, content: str) -> None:
    sql = f"UPDATE {MESSAGE.name} SET content = ? WHERE id = ?"
    await store._db.write([Write(sql, (content, str(message_id)))])


async def test_sqlite_migration_run_again_indexes_each_message_once(tmp_path: Path) -> None:
    """Migration 6's statements empty the index before the backfill: no message twice."""
    store = await SqliteStore.connect(tmp_path / "again.db")
    try:
        session = make_session()
        await store.create_session(session)
        await store.save_messages([make_message(session, f"turn {i} walrus") for i in range(5)])
        assert MIGRATIONS[-1].version == 6
        statements = MIGRATIONS[-1].statements(store._dialect)
        await store._db.write([Write(sql) for sql in statements])
        await store._db.write([Write(sql) for sql in statements])
        assert await _sqlite_matches(store, "walrus") == 5
        assert await _sqlite_matches(store, "turn 3 walrus") == 1
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
            + [Write(f"DROP TABLE {SQLITE_INDEX}")]
        )
    finally:
        await store.close()
    again = await SqliteStore.connect(path)
    try:
        assert isinstance(again._dialect, SqliteDialect)
        assert not again._dialect.text_indexed
        assert await _found(again, "MARMOT-12") == [session.id]
    finally:
        await again.close()


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
        (statement,) = PostgresDialect().text_search_index(MESSAGE, SESSION)
        for broken in (
            statement.replace("'pg_trgm'", "'pg_trgm_missing'"),
            statement.replace("gin_trgm_ops", "no_such_trgm_ops"),
        ):
            await postgres_execute(postgres_url, f"DROP INDEX IF EXISTS {POSTGRES_INDEX}")
            await postgres_execute(postgres_url, broken)  # warns, does not fail
            assert not await _postgres_indexed(store)
            for text, found in expected.items():
                assert await _three_ways(store, monkeypatch, text) == found
        await postgres_execute(postgres_url, statement)
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
