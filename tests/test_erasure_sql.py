"""Erasure on the SQL backends: one transaction, and no rollup row left naming who was erased.

The conformance suite checks what an erasure does on every backend; these
tests need SQL of their own. A trigger refuses the erasure's last statement
(the calls' anonymisation for a user, the providers' delete for a tenant),
so the database fails the transaction after every other statement ran: all
of it must be undone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import chatledger
from chatledger import PersistenceError, QueryFilter
from chatledger.ids import uuid7
from chatledger.stores.base import PersistenceStore
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import BASE_TIME, make_agent, make_api_call, make_message, make_session
from chatledger.testing.factories import make_provider
from chatledger.testing.servers import empty_tables, execute
from scratch_databases import SQL_BACKENDS

# How each backend fails a write from inside the database: statements that make it
# refuse {event} on {table}, then statements that undo them.
_REFUSE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sqlite": (
        (
            "CREATE TRIGGER refuse_{name} BEFORE {event} ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ),
        ("DROP TRIGGER IF EXISTS refuse_{name}",),
    ),
    "postgresql": (
        (
            "CREATE OR REPLACE FUNCTION refuse_{name}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER refuse_{name} BEFORE {event} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_{name}()",
        ),
        (
            "DROP TRIGGER IF EXISTS refuse_{name} ON {table}",
            "DROP FUNCTION IF EXISTS refuse_{name}()",
        ),
    ),
    "mysql": (
        (
            "CREATE TRIGGER refuse_{name} BEFORE {event} ON {table} FOR EACH ROW "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'",
        ),
        ("DROP TRIGGER IF EXISTS refuse_{name}",),
    ),
}


@dataclass
class Backend:
    """A store, and a way to run SQL of one's own on its database."""

    name: str
    store: PersistenceStore
    execute: Callable[..., Awaitable[list[Any]]]

    async def refuse(self, name: str, event: str, table: str) -> None:
        """Make the database refuse ``event`` (UPDATE, DELETE) on ``table``."""
        create, _ = _REFUSE[self.name]
        await self.execute(*(sql.format(name=name, event=event, table=table) for sql in create))

    async def allow(self, name: str, table: str) -> None:
        """Drop what ``refuse`` made."""
        _, drop = _REFUSE[self.name]
        await self.execute(*(sql.format(name=name, table=table) for sql in drop))

    async def count(self, sql: str) -> int:
        """The one number ``sql`` selects."""
        rows = await self.execute(sql)
        return int(rows[0][0])


@pytest.fixture(params=SQL_BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each SQL backend in turn, empty."""
    if request.param == "sqlite":
        path = tmp_path / "erasure.db"
        store: PersistenceStore = await SqliteStore.connect(path)

        async def run(*statements: str) -> list[Any]:
            with sqlite3.connect(path) as connection:
                rows: list[Any] = []
                for statement in statements:
                    rows = connection.execute(statement).fetchall()
                return rows

    else:
        server = "postgres" if request.param == "postgresql" else "mysql"
        url = request.getfixturevalue(f"{server}_url")
        store = await chatledger.connect(url)
        await empty_tables(url)

        async def run(*statements: str) -> list[Any]:
            return await execute(url, *statements)

    try:
        yield Backend(request.param, store, run)
    finally:
        await store.close()


async def _write_a_user(store: PersistenceStore, tenant: UUID) -> tuple[UUID, UUID]:
    """A user with two sessions, messages and calls over two days; return (user, session)."""
    user = uuid7()
    first = None
    for day in range(2):
        session = make_session(user_id=user, tenant_id=tenant, create_time=BASE_TIME)
        await store.create_session(session)
        first = first or session.id
        asked = make_message(session, "call me at 555-0100")
        await store.save_message(asked)
        await store.save_api_call(
            make_api_call(
                session,
                request_message_id=asked.id,
                error_message="about 555-0100",
                create_time=BASE_TIME + timedelta(days=day, hours=day),
            )
        )
    assert first is not None
    return user, first


async def _snapshot(store: PersistenceStore) -> tuple[Any, ...]:
    """Everything an erasure may change, as the store answers it."""
    calls = await store.query_api_calls(QueryFilter().paginate(0, 1000))
    by_user = await store.get_usage_breakdown(QueryFilter(), ["user", "model"], "hour")
    daily = await store.get_usage_breakdown(QueryFilter(), ["user"], "day")
    counts = [await store.count_records(kind, QueryFilter()) for kind in ("sessions", "messages")]
    providers = [p.id for p in await store.list_providers(calls[0].tenant_id)] if calls else []
    return calls, by_user, daily, counts, providers


async def test_a_user_erasure_refused_at_its_last_statement_changes_nothing(
    backend: Backend,
) -> None:
    """The calls' update fails after the deletes and the rollup moves ran: all are undone."""
    store = backend.store
    tenant = uuid7()
    user, session = await _write_a_user(store, tenant)
    await _write_a_user(store, tenant)
    before = await _snapshot(store)
    await backend.refuse("anonymise", "UPDATE", "entity_llm_api_call")
    try:
        with pytest.raises(PersistenceError):
            await store.erase_user(user)
    finally:
        await backend.allow("anonymise", "entity_llm_api_call")
    assert await _snapshot(store) == before
    assert await store.get_session(session) is not None
    report = await store.erase_user(user)  # and once allowed, it goes through
    assert (report.sessions_deleted, report.api_calls_anonymised) == (2, 2)


async def test_a_tenant_erasure_refused_at_its_last_statement_changes_nothing(
    backend: Backend,
) -> None:
    """The providers' delete fails after everything else ran: all of it is undone."""
    store = backend.store
    tenant = uuid7()
    await _write_a_user(store, tenant)
    provider = make_provider(tenant_id=tenant, api_key="")
    await store.save_provider(provider)
    await store.save_agent(make_agent(provider))
    before = await _snapshot(store)
    await backend.refuse("providers", "DELETE", "entity_provider")
    try:
        with pytest.raises(PersistenceError):
            await store.erase_tenant(tenant)
    finally:
        await backend.allow("providers", "entity_provider")
    assert await _snapshot(store) == before
    assert len(await store.list_agents(tenant)) == 1
    report = await store.erase_tenant(tenant)
    assert (report.providers_deleted, report.agents_deleted) == (1, 1)


async def test_no_row_names_the_erased_user_afterwards(backend: Backend) -> None:
    """Not a call, a message, a session, nor an hourly or daily rollup row (emptied ones too)."""
    store = backend.store
    tenant = uuid7()
    user, _ = await _write_a_user(store, tenant)
    other, _ = await _write_a_user(store, tenant)
    named = {
        "entity_llm_api_call": "user_id = '{id}'",
        "entity_llm_message": "user_id = '{id}'",
        "entity_chat_session": "user_id = '{id}'",
        "chatledger_usage_hourly": "user_id = '{id}'",
        "chatledger_usage_daily": "dimension = 'user' AND dimension_value = '{id}'",
    }
    for table, where in named.items():
        assert await backend.count(f"SELECT COUNT(*) FROM {table} WHERE {where.format(id=user)}")
    await store.erase_user(user)
    for table, where in named.items():
        for who, expected in ((user, 0), (other, 1)):
            found = await backend.count(
                f"SELECT COUNT(*) FROM {table} WHERE {where.format(id=who)}"
            )
            assert (found > 0) == bool(expected), (table, who == user)
    text = await backend.count(
        "SELECT COUNT(*) FROM entity_llm_api_call WHERE error_message IS NOT NULL"
    )
    assert text == 2  # the other user's two
