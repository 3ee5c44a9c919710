"""Versioned migrations on every SQL backend: a version-1 database, filled, upgrades intact.

The store is opened with only the first migration known, filled (API calls
in version 1's columns, as a version-1 chatledger or MoFA wrote them), then
opened again with every migration: each row must read back unchanged and the
token subsets that version 2 moved into columns must be backfilled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import pytest

import chatledger
import chatledger.stores.sql as sql_layer
from chatledger.entities import QueryFilter, TokenDetails
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.queries import API_CALL_COLUMNS
from chatledger.stores.rows import RowCodec
from chatledger.stores.schema import API_CALL, MIGRATIONS
from chatledger.stores.sql import SqlStore, Write, schema_version
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


@pytest.fixture(params=SQL_BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the backend's store on a database this test has to itself."""
    if request.param == "sqlite":
        return lambda: SqliteStore.connect(tmp_path / "old.db")
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        return lambda: PostgresStore.connect(url)
    url = request.getfixturevalue("mysql_url")
    return lambda: MySqlStore.connect(url)


async def test_a_version_1_database_upgrades_with_every_row_intact(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open at version 1, fill, upgrade: same rows, and cached/reasoning tokens backfilled."""
    monkeypatch.setattr(sql_layer, "MIGRATIONS", MIGRATIONS[:1])
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
            prompt_tokens_details=TokenDetails(cached_tokens=i),
            completion_tokens_details=TokenDetails(reasoning_tokens=2 * i) if i % 2 else None,
            total_price=Decimal("0.0001234567") * i,
        )
        for i in range(30)
    ]
    try:
        assert await schema_version(old._db) == 1
        await old.create_session(session)
        await old.save_messages(messages)
        await old.save_provider(provider)
        await old.save_agent(agent)
        # version 1 has no token-subset columns: write the calls in its columns only
        codec, v1_columns = RowCodec(old._dialect), API_CALL.column_names
        insert = (
            f"INSERT INTO {API_CALL.name} ({', '.join(v1_columns)}) "
            f"VALUES ({', '.join('?' * len(v1_columns))})"
        )
        assert API_CALL_COLUMNS[: len(v1_columns)] == v1_columns
        rows = [codec.api_call(call)[: len(v1_columns)] for call in calls]
        await old._db.write([Write(old._dialect.sql(insert), many=rows)])
        session = await old.get_session(session.id)  # its update_time followed the messages
        assert session is not None
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
