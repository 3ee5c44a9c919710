"""Versioned migrations on every SQL backend: a database of each earlier version upgrades intact.

The store is opened with only the migrations up to a version known, filled
(API calls in that version's columns, as a chatledger of that version or
MoFA wrote them), then opened again with every migration: each row must read
back unchanged, the token subsets that versions 2 and 4 moved into columns
must be backfilled, the dashboard's indexes (version 3) must be there and
used, and the usage rollups (version 4) must count every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import pytest

import chatledger
import chatledger.stores.sql as sql_layer
from chatledger.entities import QueryFilter, SessionQuery, TokenDetails
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.queries import API_CALL_COLUMNS
from chatledger.stores.rollups import scan_only
from chatledger.stores.rows import RowCodec
from chatledger.stores.schema import (
    API_CALL,
    DASHBOARD_INDEXES,
    MESSAGE_CALL_INDEXES,
    MIGRATIONS,
    ROLLUP_HOURLY,
)
from chatledger.stores.sql import Read, SqlStore, Write, schema_version
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import (
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)
from scratch_databases import SQL_BACKENDS, mysql_database, postgres_database

Opener = Callable[[], Awaitable[SqlStore]]

# How many token-subset columns the API-call table has at each version before 4.
_SUBSETS_AT = {1: 0, 2: 2, 3: 2}  # and 3 from version 4 on


async def _rollup_calls(store: SqlStore) -> int:
    """How many calls the hourly rollup counts."""
    (rows,) = await store._db.read([Read(f"SELECT SUM(calls) FROM {ROLLUP_HOURLY.name}")])
    return int(rows[0][0] or 0)


@pytest.fixture(params=SQL_BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the backend's store on a database this test has to itself."""
    if request.param == "sqlite":
        yield lambda: SqliteStore.connect(tmp_path / "old.db")
    elif request.param == "postgresql":
        with postgres_database() as url:
            yield lambda: PostgresStore.connect(url)
    else:
        with mysql_database() as url:
            yield lambda: MySqlStore.connect(url)


async def _index_names(store: SqlStore) -> set[str]:
    """The names of the secondary indexes in the store's database."""
    catalog = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index'",
        "postgresql": "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()",
        "mysql": "SELECT index_name FROM information_schema.statistics "
        "WHERE table_schema = DATABASE()",
    }[store.backend_name]
    (rows,) = await store._db.read([Read(catalog)])
    return {str(row[0]).lower() for row in rows}


@pytest.mark.parametrize("start", [migration.version for migration in MIGRATIONS[:-1]])
async def test_an_older_database_upgrades_with_every_row_intact(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch, start: int
) -> None:
    """Open at each earlier version, fill, upgrade: rows intact, subsets backfilled, indexes made.

    Version 1 has no token-subset columns: its calls are written in version 1's
    columns, as a version-1 chatledger or MoFA wrote them. Version 4's rollups
    are backfilled from them: statistics read from the rollups equal a scan's.
    Version 6's text index (version 7's on SQLite, which indexes in the
    background) is backfilled from the messages: a search finds them.
    """
    monkeypatch.setattr(sql_layer, "MIGRATIONS", MIGRATIONS[:start])
    old = await open_store()
    session = make_session(title="before the upgrade", metadata={"k": [1, 2]})
    messages = [make_message(session, f"turn {i} 🙂") for i in range(20)]
    provider = make_provider()
    agent = make_agent(provider)
    calls = [
        make_api_call(
            session,
            prompt_tokens=100 + i,
            completion_tokens=100,
            prompt_tokens_details=TokenDetails(cached_tokens=i, cache_write_tokens=i % 3),
            completion_tokens_details=TokenDetails(reasoning_tokens=2 * i) if i % 2 else None,
            total_price=Decimal("0.0001234567") * i,
            error_code="server_error" if i % 7 == 0 else None,
        )
        for i in range(30)
    ]
    try:
        assert await schema_version(old._db) == start
        await old.create_session(session)
        await old.save_messages(messages)
        await old.save_provider(provider)
        await old.save_agent(agent)
        codec = RowCodec(old._dialect)
        # each version's columns: MoFA's, then the token subsets versions 2 and 4 added
        columns = API_CALL_COLUMNS[: len(API_CALL.column_names) + _SUBSETS_AT.get(start, 3)]
        insert = (
            f"INSERT INTO {API_CALL.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        assert API_CALL_COLUMNS[: len(columns)] == columns
        rows = [codec.api_call(call)[: len(columns)] for call in calls]
        if start < 5:
            await old._db.write([Write(old._dialect.sql(insert), many=rows)])
        else:  # the rollups are kept from version 5 on: calls are written with theirs
            with monkeypatch.context() as before_periods:  # sealed periods came in version 8
                before_periods.setattr(sql_layer, "past_periods", lambda calls, now: [])
                await old.save_api_calls(calls)
        session = await old.get_session(session.id)  # its update_time followed the messages
        assert session is not None
        later = {index.name for index in MESSAGE_CALL_INDEXES} if start < 4 else set()
        if start < 3:
            later |= {index.name for _, index in DASHBOARD_INDEXES}
        assert not later & await _index_names(old)
    finally:
        await old.close()

    monkeypatch.setattr(sql_layer, "MIGRATIONS", MIGRATIONS)
    new = await open_store()
    try:
        assert await schema_version(new._db) == MIGRATIONS[-1].version
        assert await new.get_session(session.id) == session
        assert await new.get_session_messages(session.id) == messages
        assert await new.get_provider(provider.id) == provider
        assert await new.get_agent(agent.id) == agent
        stored = await new.query_api_calls(QueryFilter(session_id=session.id, limit=100))
        assert sorted(stored, key=lambda c: c.id) == sorted(calls, key=lambda c: c.id)
        stats = await new.get_statistics(QueryFilter())
        assert stats.total_calls == len(calls)
        assert stats.total_cached_tokens == sum(range(30))
        assert stats.total_reasoning_tokens == sum(2 * i for i in range(30) if i % 2)
        assert stats.total_cache_write_tokens == sum(i % 3 for i in range(30))
        assert stats.total_cost == sum(c.total_price or 0 for c in calls)
        # the rollups were backfilled: they answer as the calls do
        with scan_only():
            assert await new.get_statistics(QueryFilter()) == stats
            scanned = await new.get_usage_breakdown(QueryFilter(), ["model", "status"], "day")
        assert await new.get_usage_breakdown(QueryFilter(), ["model", "status"], "day") == scanned
        assert await _rollup_calls(new) == len(calls)
        indexes = await _index_names(new)
        assert {index.name for _, index in DASHBOARD_INDEXES} <= indexes
        assert {index.name for index in MESSAGE_CALL_INDEXES} <= indexes
        assert "idx_api_call_latency" not in indexes  # the latency order index replaced it
        page = await new.page_api_calls(
            QueryFilter().with_error_code("server_error"), sort="cost_desc"
        )
        assert [c.id for c in page.calls] == [c.id for c in reversed(calls) if c.error_code]
        found = await new.search_sessions(SessionQuery(text="BEFORE the"))
        assert found.sessions == [session]
        # the messages' text indexed (PostgreSQL, version 6) or queued for the writer to
        # index (SQLite, version 7), where the database can: found either way
        found = await new.search_sessions(SessionQuery(text="TURN 17 🙂"))
        assert found.sessions == [session]
    finally:
        await new.close()

    again = await open_store()  # a current database: nothing left to run
    try:
        assert await schema_version(again._db) == MIGRATIONS[-1].version
    finally:
        await again.close()


@pytest.mark.parametrize(
    "backend",
    SQL_BACKENDS,
)
async def test_stores_opening_a_new_database_at_once_all_succeed(
    backend: str, tmp_path: Path
) -> None:
    """Six stores migrating one new database concurrently: none fails, one schema results."""
    with ExitStack() as scratch:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path}/new.db"
        elif backend == "postgresql":
            url = scratch.enter_context(postgres_database())
        else:
            url = scratch.enter_context(mysql_database())
        opened = await asyncio.gather(
            *(chatledger.connect(url) for _ in range(6)), return_exceptions=True
        )
        stores = [store for store in opened if not isinstance(store, BaseException)]
        try:
            assert len(stores) == len(opened), [str(e) for e in opened if e not in stores]
            versions = {await schema_version(store._db) for store in stores}  # type: ignore[attr-defined]
            assert versions == {MIGRATIONS[-1].version}
        finally:
            for store in stores:
                await store.close()
