"""PostgreSQL and MySQL/MariaDB beyond the conformance suite: connecting, failing, bulk paths.

Each test runs on both servers. Failures must say what happened and what to
check, name the host and port, and never show the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

import chatledger
from chatledger.entities import QueryFilter
from chatledger.errors import ConstraintError, StoreConnectionError
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.server import ServerStore
from chatledger.testing import BASE_TIME, make_api_call, make_message, make_session
from chatledger.testing.servers import execute, mysql_connect_options

pytestmark = pytest.mark.server
# Imported here, so that `pytest -m "not server"` collects this module without the drivers.
asyncmy = pytest.importorskip(
    "asyncmy", reason="the server drivers: pip install 'chatledger[postgres,mysql]'"
)
asyncpg = pytest.importorskip(
    "asyncpg", reason="the server drivers: pip install 'chatledger[postgres,mysql]'"
)

PASSWORD = "hunter2-secret"  # noqa: S105  (a password that must never appear in errors)


@dataclass
class Server:
    """One backend under test: its store class, its scratch database, its raw runner."""

    name: str
    store: type[ServerStore]
    url: str
    run: Any  # (url, *statements) -> rows of the last
    driver: str
    extra: str

    def url_with(self, **changes: Any) -> str:
        """The scratch database's URL with some parts replaced."""
        parts = urlsplit(self.url)
        host = changes.get("host", parts.hostname)
        port = changes.get("port", parts.port)
        user = changes.get("user", parts.username)
        password = changes.get("password", parts.password)
        credentials = user + (f":{password}" if password else "") + "@"
        netloc = f"{credentials}{host}:{port}"
        path = "/" + changes.get("database", parts.path.lstrip("/"))
        return urlunsplit(parts._replace(netloc=netloc, path=path))


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each server in turn, on this module's scratch database."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return Server("postgresql", PostgresStore, url, execute, "asyncpg", "postgres")
    url = request.getfixturevalue("mysql_url")
    return Server("mysql", MySqlStore, url, execute, "asyncmy", "mysql")


@pytest.fixture
async def store(server: Server) -> AsyncIterator[ServerStore]:
    """A store with a one-connection pool, so tests know which connection they meet."""
    opened = await server.store.connect(server.url, min_size=1, max_size=1)
    yield opened
    await opened.close()


# --- connecting --------------------------------------------------------------------------


async def test_connect_picks_the_backend_from_the_url(server: Server) -> None:
    """chatledger.connect opens the server store the scheme names."""
    store = await chatledger.connect(server.url)
    try:
        assert type(store) is server.store
        assert store.backend_name == server.name
    finally:
        await store.close()


async def test_unreachable_server_names_host_and_port_not_password(server: Server) -> None:
    """Nothing listens on port 1: StoreConnectionError with host and port, never the password."""
    url = server.url_with(port=1, password=PASSWORD)
    with pytest.raises(StoreConnectionError) as caught:
        await server.store.connect(url)
    text = str(caught.value)
    assert "127.0.0.1:1" in text
    assert "running" in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(caught.value.__cause__)


async def test_bad_credentials_say_to_check_them(server: Server) -> None:
    """An unknown user is refused with advice to check the user name and password."""
    url = server.url_with(user="no_such_user_chatledger", password=PASSWORD)
    with pytest.raises(StoreConnectionError, match="user name and password") as caught:
        await server.store.connect(url)
    assert PASSWORD not in str(caught.value)


async def test_missing_database_is_named(server: Server) -> None:
    """A database that does not exist is named, with how to create it."""
    with pytest.raises(StoreConnectionError, match="no database 'no_such_db_chatledger'"):
        await server.store.connect(server.url_with(database="no_such_db_chatledger"))


async def test_missing_driver_names_the_extra(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the driver installed, the ImportError gives the pip line that installs it."""
    monkeypatch.setitem(sys.modules, server.driver, None)
    with pytest.raises(ImportError, match=rf"pip install 'chatledger\[{server.extra}\]'"):
        await server.store.connect(server.url)


async def test_from_env_reads_database_url(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env() connects to $DATABASE_URL, and says so when it is not set."""
    monkeypatch.setenv("DATABASE_URL", server.url)
    store = await server.store.from_env()
    await store.close()
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(StoreConnectionError, match="DATABASE_URL is not set"):
        await server.store.from_env()


async def test_pool_sizes_are_checked(server: Server) -> None:
    """A pool that could hold no connection is refused before anything is opened."""
    with pytest.raises(ValueError, match="min_size"):
        await server.store.connect(server.url, min_size=5, max_size=2)


# --- a connection that dies -------------------------------------------------------------


async def _kill_other_connections(server: Server) -> None:
    if server.name == "postgresql":
        await server.run(
            server.url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        return
    rows = await server.run(
        server.url,
        "SELECT id FROM information_schema.processlist "
        "WHERE db = DATABASE() AND id <> CONNECTION_ID()",
    )
    for (thread,) in rows:
        await server.run(server.url, f"KILL {int(thread)}")


async def test_read_after_the_server_dropped_the_connection_is_retried(
    server: Server, store: ServerStore
) -> None:
    """A read that meets a killed connection runs again on a fresh one."""
    session = make_session()
    await store.create_session(session)
    await _kill_other_connections(server)
    assert await store.get_session(session.id) == session


async def test_write_on_a_dropped_connection_says_so_and_the_next_one_works(
    server: Server, store: ServerStore
) -> None:
    """A write is not blindly repeated: it fails with a clear error, and the pool recovers."""
    session = make_session()
    await store.create_session(session)
    await _kill_other_connections(server)
    message = make_message(session)
    failure = None
    try:  # the client may notice the closed socket first; then the pool reconnects
        await store.save_message(message)
    except StoreConnectionError as exc:
        failure = str(exc)
    if failure is not None:
        assert "connection to" in failure
        assert "was lost" in failure
        await store.save_message(message)
    assert await store.get_message(message.id) == message


# --- types and bulk paths ------------------------------------------------------------------


async def test_column_types_keep_what_sqlite_keeps(server: Server, store: ServerStore) -> None:
    """Native UUID/TIMESTAMPTZ/JSONB on PostgreSQL; CHAR(36)/DATETIME(6)/JSON, utf8mb4 on MySQL."""
    if server.name == "postgresql":
        rows = await server.run(
            server.url,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'entity_llm_message'",
        )
        types = dict(rows)
        assert types["id"] == "uuid"
        assert types["create_time"] == "timestamp with time zone"
        assert types["content"] == "jsonb"
        return
    rows = await server.run(
        server.url,
        "SELECT column_name, column_type, character_set_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name = 'entity_llm_message'",
    )
    types = {name: (kind, charset) for name, kind, charset in rows}
    assert types["id"] == ("char(36)", "utf8mb4")
    assert types["create_time"][0] == "datetime(6)"
    assert types["content"][0] in ("json", "longtext")  # MariaDB's JSON is LONGTEXT + a check
    assert types["role"][1] == "utf8mb4"


async def test_a_large_batch_is_all_or_nothing(server: Server, store: ServerStore) -> None:
    """500 calls with one reused id (COPY on PostgreSQL): ConstraintError and nothing stored."""
    session = make_session()
    await store.create_session(session)
    calls = [make_api_call(session) for _ in range(500)]
    await store.save_api_call(calls[250])
    with pytest.raises(ConstraintError):
        await store.save_api_calls(calls)
    rows = await server.run(server.url, "SELECT COUNT(*) FROM entity_llm_api_call")
    assert rows[0][0] == 1
    messages = [make_message(session, f"m{i}") for i in range(500)]
    await store.save_messages(messages)
    assert await store.get_session_messages(session.id) == messages


async def test_postgres_batches_use_copy(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 500 reaches PostgreSQL through COPY, not one INSERT per row."""
    import asyncpg

    copies: list[str] = []
    original = asyncpg.Connection.copy_records_to_table

    async def spy(self: Any, table: str, **kwargs: Any) -> str:
        copies.append(table)
        return await original(self, table, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", spy)
    store = await PostgresStore.connect(postgres_url)
    try:
        session = make_session()
        await store.create_session(session)
        await store.save_api_calls([make_api_call(session) for _ in range(500)])
        await store.save_messages([make_message(session) for _ in range(500)])
        await store.save_messages([make_message(session)])  # one row: no COPY
    finally:
        await store.close()
    assert copies == ["entity_llm_api_call", "entity_llm_message"]


async def test_urls_with_a_driver_suffix_are_accepted(server: Server) -> None:
    """postgresql+asyncpg:// and mysql+asyncmy:// (SQLAlchemy spellings) work too."""
    scheme = "postgresql+asyncpg" if server.name == "postgresql" else "mysql+asyncmy"
    url = scheme + "://" + server.url.split("://", 1)[1]
    store = await server.store.connect(url)
    await store.close()


def test_blocking_client_works_on_the_server(server: Server) -> None:
    """chatledger.sync opens a server URL too: the same methods, blocking."""
    session = make_session()
    with chatledger.sync.connect(server.url, max_size=2) as store:
        store.create_session(session)
        store.save_messages([make_message(session, f"m{i}") for i in range(3)])
        assert store.count_session_messages(session.id) == 3


async def test_cancelled_operations_leave_whole_batches_and_a_working_pool(
    server: Server, store: ServerStore
) -> None:
    """Saves and reads cancelled at random moments: each batch is all there or absent."""
    rng = random.Random(7)
    session = make_session()
    await store.create_session(session)
    batches = [[make_message(session, f"b{i}m{j}") for j in range(20)] for i in range(60)]
    singles = [make_message(session, f"single {i}") for i in range(200)]
    for i, batch in enumerate(batches):
        if i % 3 == 0:
            work: Any = store.get_recent_messages(session.id, 50)
        elif i % 3 == 1:
            work = store.save_messages(batch)
        else:  # concurrent single saves, committed together where the backend does that
            work = asyncio.gather(*(store.save_message(m) for m in singles[i * 3 : i * 3 + 5]))
        task = asyncio.ensure_future(work)
        await asyncio.sleep(rng.random() * 0.003)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stored = {message.id for message in await store.get_session_messages(session.id)}
    for i, batch in enumerate(batches):
        present = sum(message.id in stored for message in batch)
        assert present in (0, len(batch)) if i % 3 == 1 else present == 0
    message = make_message(session)
    await store.save_message(message)
    assert await store.get_message(message.id) == message


async def test_concurrent_saves_with_one_bad_one_fail_only_that_one(
    server: Server, store: ServerStore
) -> None:
    """Fifty callers at once, one saving into a missing session: only it fails."""
    session = make_session()
    await store.create_session(session)
    good = [make_message(session, f"m{i}") for i in range(49)]
    bad = make_message(make_session())  # its session was never created
    outcomes = await asyncio.gather(
        *(store.save_message(message) for message in [*good[:20], bad, *good[20:]]),
        return_exceptions=True,
    )
    failures = [outcome for outcome in outcomes if outcome is not None]
    assert len(failures) == 1
    assert isinstance(failures[0], ConstraintError)
    assert await store.count_session_messages(session.id) == len(good)
    assert await store.get_message(bad.id) is None


async def test_postgres_commits_concurrent_saves_together(postgres_url: str) -> None:
    """Concurrent single saves share transactions: fewer commits than saves."""
    store = await PostgresStore.connect(postgres_url, min_size=4, max_size=4)
    groups: list[int] = []
    database = store._db
    execute_joined = database._execute_joined

    async def spy(conn: Any, group: Any) -> Any:
        groups.append(len(group))
        return await execute_joined(conn, group)

    database._execute_joined = spy  # type: ignore[method-assign]
    try:
        session = make_session()
        await store.create_session(session)
        messages = [make_message(session, f"m{i}") for i in range(200)]
        await asyncio.gather(*(store.save_message(message) for message in messages))
        assert await store.get_session_messages(session.id) == sorted(
            messages, key=lambda m: (m.create_time, m.id)
        )
    finally:
        await store.close()
    assert max(groups) > 1  # at least one commit carried several callers' saves


async def test_concurrent_messages_and_calls_all_land(server: Server, store: ServerStore) -> None:
    """Single saves of messages and API calls interleaved, all at once: every one is stored."""
    session = make_session()
    await store.create_session(session)
    messages = [make_message(session, f"m{i}") for i in range(60)]
    calls = [make_api_call(session) for _ in range(60)]
    saves = [
        save
        for message, call in zip(messages, calls, strict=True)
        for save in (store.save_message(message), store.save_api_call(call))
    ]
    await asyncio.gather(*saves)
    assert await store.count_session_messages(session.id) == len(messages)
    stored = await store.query_api_calls(QueryFilter(session_id=session.id, limit=1000))
    assert {call.id for call in stored} == {call.id for call in calls}


@contextlib.asynccontextmanager
async def _row_locked(server: Server, table: str, row_id: Any) -> AsyncIterator[None]:
    """Hold ``FOR UPDATE`` on one row from another connection until the block ends."""
    if server.name == "postgresql":
        conn = await asyncpg.connect(server.url)
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", row_id)
        try:
            yield
        finally:
            await transaction.rollback()
            await conn.close()
        return
    conn = await asyncmy.connect(**{**mysql_connect_options(server.url), "autocommit": False})
    async with conn.cursor() as cursor:
        await cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", (str(row_id),))
        await cursor.fetchall()
    try:
        yield
    finally:
        await conn.rollback()
        await conn.ensure_closed()


async def _lock_waits(server: Server) -> int:
    """How many statements on the scratch database wait for a row lock now (the server says)."""
    if server.name == "postgresql":
        sql = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    else:
        sql = (
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"
            " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
            " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
        )
    (row,) = await server.run(server.url, sql)
    return int(row[0])


async def _until_waiting(
    server: Server,
    count: int,
    *running: asyncio.Task[Any],
    until_done: asyncio.Task[Any] | None = None,
) -> bool:
    """Poll the server's lock tables until ``count`` statements wait for a lock (30 s at most).

    With ``until_done``, a task that may end instead of waiting: False if it did.
    """
    for _ in range(3000):
        if await _lock_waits(server) >= count:
            return True
        if until_done is not None and until_done.done():
            until_done.result()
            return False
        for task in running:  # a statement that failed instead of waiting says why
            if task.done():
                task.result()
        await asyncio.sleep(0.01)
    if server.name == "postgresql":
        sql = "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity"
    else:
        sql = "SELECT ID, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST"
    sessions = "\n".join(map(str, await server.run(server.url, sql)))
    raise AssertionError(f"{count} statements never waited for a lock; the server:\n{sessions}")


async def _until_blocked_or_done(server: Server, save: asyncio.Task[Any]) -> bool:
    """MariaDB: whether the save's session update is blocked, else (False) it has committed.

    MariaDB lists the prune's lock wait in INNODB_TRX but not the save's
    behind it; PROCESSLIST shows the save's UPDATE still in the server on two
    looks in a row (a free one-row update by key takes microseconds).
    """
    sql = (
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()"
        " AND COMMAND = 'Query' AND INFO LIKE 'UPDATE entity_chat_session %'"
    )
    seen = 0
    for _ in range(3000):
        if save.done():
            save.result()
            return False
        (row,) = await server.run(server.url, sql)
        seen = seen + 1 if row[0] else 0
        if seen == 2:
            return True
        await asyncio.sleep(0.01)
    raise AssertionError("the save neither committed nor waited")


async def test_a_save_racing_the_prune_of_its_session_never_strips_the_session(
    server: Server, store: ServerStore
) -> None:
    """A message saved while prune deletes its idle session: both go, or both stay whole.

    The prune is held inside its transaction by a lock on one of the old
    messages; the save arrives meanwhile. It must not leave the session alive
    with its history deleted. Each step waits until the server shows it (its
    lock tables), and what it showed decides the one outcome asserted. If the
    prune has locked the session row before it waits (always on PostgreSQL,
    whose prune reads the session ``FOR UPDATE``; on MariaDB when its plan reads
    the session first), the save waits for the prune, which then deletes the
    session: the save fails and nothing is left. Otherwise (MariaDB, when its
    plan meets the locked message first) the save commits while the prune
    waits, and the prune, reading the session again once the lock goes, finds
    it no longer idle: both messages stay.
    """
    long_ago = BASE_TIME - timedelta(days=400)
    idle = make_session(create_time=long_ago)
    await store.create_session(idle)
    history = make_message(idle, "from long ago", create_time=long_ago)
    await store.save_message(history)
    late = make_message(idle, "just now")
    saver = await server.store.connect(server.url, min_size=1, max_size=1)
    try:
        async with _row_locked(server, "entity_llm_message", history.id):
            prune = asyncio.create_task(store.cleanup_old_sessions(BASE_TIME))
            await _until_waiting(server, 1, prune)  # the prune waits for the message's lock
            save = asyncio.create_task(saver.save_message(late))
            if server.name == "postgresql":
                save_waited = await _until_waiting(server, 2, prune, until_done=save)
            else:
                save_waited = await _until_blocked_or_done(server, save)
        pruned = await prune
        saved = await asyncio.gather(save, return_exceptions=True)
    finally:
        await saver.close()
    left = await store.get_session_messages(idle.id)
    if save_waited:  # the prune goes first, and takes the session with it
        assert pruned == 1
        assert await store.get_session(idle.id) is None
        assert isinstance(saved[0], ConstraintError)  # the save into a deleted session fails
        assert left == []
    else:  # the save went first: the session is no longer idle
        assert server.name == "mysql"  # PostgreSQL's prune holds the session row
        assert pruned == 0
        assert await store.get_session(idle.id) is not None
        assert saved == [None]
        assert [m.id for m in left] == [history.id, late.id]  # history kept with the new message
