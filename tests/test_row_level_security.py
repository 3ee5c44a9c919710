"""PostgreSQL row-level security: a role that does not own the tables sees one tenant only.

Each test stores two tenants' records through chatledger's own store (the
tables' owner), puts the tables under row-level security, and then reads and
writes as a login role of its own that is granted every table but owns none,
with raw asyncpg: what that role sees is what PostgreSQL lets through, not
what chatledger filters. Roles belong to the whole server: each has a unique
name and is dropped afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from chatledger.cli import main
from chatledger.entities import QueryFilter
from chatledger.errors import ConstraintError, PersistenceError
from chatledger.ids import uuid7
from chatledger.stores.postgres import PostgresStore
from chatledger.testing.factories import (
    BASE_TIME,
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)
from chatledger.testing.servers import empty_tables, execute

pytestmark = pytest.mark.server
# Imported here, so that `pytest -m "not server"` collects this module without the drivers.
asyncpg = pytest.importorskip(
    "asyncpg", reason="the server drivers: pip install 'chatledger[postgres,mysql]'"
)

ENTITY_TABLES = (
    "entity_chat_session",
    "entity_llm_message",
    "entity_llm_api_call",
    "entity_provider",
    "entity_agent",
)
ROLLUP_BY_TENANT = "chatledger_usage_hourly"
ROLLUPS_BY_DIMENSION = ("chatledger_usage_daily", "chatledger_usage_histogram")
TENANT_TABLES = (*ENTITY_TABLES, ROLLUP_BY_TENANT, *ROLLUPS_BY_DIMENSION)
# What a copy of a row changes so that it is a new row: its key, or its time in the key.
NEW_KEY = {
    **dict.fromkeys(ENTITY_TABLES, "id"),
    ROLLUP_BY_TENANT: "hour_start",
    **dict.fromkeys(ROLLUPS_BY_DIMENSION, "day_start"),
}
# ... and what must be unique besides the key.
NEW_NAME = {"entity_provider": "provider_name", "entity_agent": "agent_code"}


@pytest.fixture
async def owner(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """chatledger's own store on the module's database, emptied: the tables' owner."""
    store = await PostgresStore.connect(postgres_url)
    await empty_tables(postgres_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def role_url(postgres_url: str, owner: PostgresStore) -> AsyncIterator[str]:
    """The URL of a login role with every right on the tables but owning none of them."""
    name = f"chatledger_rls_{uuid.uuid4().hex[:12]}"
    await execute(
        postgres_url,
        f"CREATE ROLE {name} LOGIN",
        f"GRANT USAGE ON SCHEMA public TO {name}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}",
    )
    parts = urlsplit(postgres_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        yield urlunsplit(parts._replace(netloc=f"{name}@{host}"))
    finally:
        await execute(postgres_url, f"DROP OWNED BY {name}", f"DROP ROLE {name}")


async def _tenant(store: PostgresStore) -> uuid.UUID:
    """A tenant with a session, messages, calls (so rollup rows), a provider and an agent."""
    tenant = uuid7()
    session = make_session(tenant_id=tenant)
    await store.create_session(session)
    await store.save_messages([make_message(session, "hello"), make_message(session, "again")])
    await store.save_api_calls(
        [
            make_api_call(session, create_time=BASE_TIME),
            make_api_call(session, latency_ms=900, create_time=BASE_TIME + timedelta(days=1)),
        ]
    )
    provider = make_provider(tenant_id=tenant, api_key="")
    await store.save_provider(provider)
    await store.save_agent(make_agent(provider))
    return tenant


def _tenant_of(table: str, row: Any) -> str:
    """Whose row this is: its tenant, or its dimension and value for the daily rollups."""
    if table in ROLLUPS_BY_DIMENSION:
        return f"{row['dimension']}:{row['dimension_value']}"
    return str(row["tenant_id"])


async def _rows(conn: asyncpg.Connection[Any], table: str) -> list[Any]:
    return list(await conn.fetch(f"SELECT * FROM {table}"))


def _theirs(table: str, tenant: uuid.UUID) -> tuple[str, str]:
    """A condition selecting ``tenant``'s rows of ``table``, and its parameter."""
    if table in ROLLUPS_BY_DIMENSION:
        return "dimension = 'tenant' AND dimension_value = $1", str(tenant)
    return "tenant_id::text = $1", str(tenant)


async def _copy(owner_conn: asyncpg.Connection[Any], table: str, tenant: uuid.UUID) -> str:
    """One of ``tenant``'s rows of ``table`` as JSON, made a new row (a new key)."""
    where, value = _theirs(table, tenant)
    row = json.loads(
        await owner_conn.fetchval(
            f"SELECT row_to_json(t) FROM {table} t WHERE {where} LIMIT 1", value
        )
    )
    key = NEW_KEY[table]
    row[key] = str(uuid7()) if key == "id" else "2001-02-03T00:00:00+00:00"
    if table in NEW_NAME:
        row[NEW_NAME[table]] = f"copy-{uuid7()}"
    return json.dumps(row)


async def _insert(conn: asyncpg.Connection[Any], table: str, row: str) -> None:
    await conn.execute(
        f"INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, $1::json)",
        row,
    )


async def test_a_role_that_is_not_the_owner_sees_and_writes_its_tenant_only(
    owner: PostgresStore, postgres_url: str, role_url: str
) -> None:
    """With chatledger.tenant_id set to A, B's rows are invisible in every table and B's refused."""
    a, b = await _tenant(owner), await _tenant(owner)
    assert await owner.enable_row_level_security() == list(TENANT_TABLES)
    owner_conn = await asyncpg.connect(postgres_url)
    conn = await asyncpg.connect(role_url)
    try:
        await conn.execute(f"SET chatledger.tenant_id = '{a}'")
        for table in TENANT_TABLES:
            mine = f"tenant:{a}" if table in ROLLUPS_BY_DIMENSION else str(a)
            everyone = {_tenant_of(table, row) for row in await _rows(owner_conn, table)}
            assert len(everyone) > 1, table  # the owner sees B's rows (and others, in rollups)
            assert {_tenant_of(table, row) for row in await _rows(conn, table)} == {mine}, table
            where, value = _theirs(table, b)
            count = f"SELECT count(*) FROM {table} WHERE {where}"
            assert await owner_conn.fetchval(count, value) > 0, table
            assert await conn.fetchval(count, value) == 0, table

            # A's new row goes in; B's is refused by the policy, not by a key or a constraint.
            ours, theirs = await _copy(owner_conn, table, a), await _copy(owner_conn, table, b)
            transaction = conn.transaction()
            await transaction.start()
            try:
                await _insert(conn, table, ours)
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                    async with conn.transaction():
                        await _insert(conn, table, theirs)
            finally:
                await transaction.rollback()

        # Updates and deletes do not reach B's rows, and cannot hand A's rows to B.
        assert (
            await conn.execute(
                "UPDATE entity_chat_session SET title = 'taken' WHERE tenant_id = $1", b
            )
            == "UPDATE 0"
        )
        assert await conn.execute("DELETE FROM entity_llm_api_call WHERE tenant_id = $1", b) == (
            "DELETE 0"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(
                "UPDATE entity_provider SET tenant_id = $1 WHERE tenant_id = $2", b, a
            )
    finally:
        await conn.close()
        await owner_conn.close()
    assert (await owner.get_statistics(QueryFilter(tenant_id=b))).total_calls == 2
    assert [p.tenant_id for p in await owner.list_providers(a)] == [a]


async def test_without_a_tenant_setting_a_role_sees_no_row(
    owner: PostgresStore, role_url: str
) -> None:
    """No setting, an empty one (after RESET) or one that is no UUID: no row is seen or written."""
    a = await _tenant(owner)
    await owner.enable_row_level_security()
    conn = await asyncpg.connect(role_url)
    try:
        for table in TENANT_TABLES:
            assert await _rows(conn, table) == [], table
        await conn.execute(f"SET chatledger.tenant_id = '{a}'")
        assert len(await _rows(conn, "entity_chat_session")) == 1
        await conn.execute("RESET chatledger.tenant_id")
        for table in TENANT_TABLES:
            assert await _rows(conn, table) == [], table
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(
                "INSERT INTO entity_chat_session (id, user_id, agent_id, tenant_id, metadata, "
                "create_time, update_time) VALUES ($1, $1, $1, $2, '{}', now(), now())",
                uuid7(),
                a,
            )
        await conn.execute("SET chatledger.tenant_id = 'not-a-uuid'")
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            await conn.fetch("SELECT * FROM entity_chat_session")
    finally:
        await conn.close()


async def test_the_owner_store_is_not_bound_and_enabling_twice_changes_nothing(
    owner: PostgresStore, postgres_url: str
) -> None:
    """chatledger's own store (the owner) reads and records every tenant; run twice, no change."""
    a, b = await _tenant(owner), await _tenant(owner)
    first = await owner.enable_row_level_security()
    assert await owner.enable_row_level_security() == first
    policies = await execute(
        postgres_url,
        "SELECT tablename, cmd, qual IS NOT NULL, with_check IS NOT NULL FROM pg_policies "
        "WHERE policyname = 'chatledger_tenant_isolation' ORDER BY tablename",
    )
    assert [tuple(row) for row in policies] == [
        (table, "ALL", True, True) for table in sorted(TENANT_TABLES)
    ]
    secured = await execute(
        postgres_url,
        "SELECT relname FROM pg_class WHERE relrowsecurity AND NOT relforcerowsecurity "
        "ORDER BY relname",
    )
    assert [row[0] for row in secured] == sorted(TENANT_TABLES)

    assert {s.tenant_id for s in await owner.list_sessions(QueryFilter())} == {a, b}
    session = make_session(tenant_id=b)
    await owner.create_session(session)
    await owner.save_api_call(make_api_call(session))
    assert (await owner.get_statistics(QueryFilter())).total_calls == 5
    assert (await owner.get_statistics(QueryFilter(tenant_id=b))).total_calls == 3
    assert await owner.rebuild_rollups() == 5


async def test_a_store_connected_as_the_role_reads_its_tenant(
    owner: PostgresStore, role_url: str
) -> None:
    """PostgresStore.connect as the role, with the setting: the database itself scopes it."""
    a, b = await _tenant(owner), await _tenant(owner)
    await owner.enable_row_level_security()
    scoped = await PostgresStore.connect(
        role_url, migrate=False, server_settings={"chatledger.tenant_id": str(a)}
    )
    try:
        assert {s.tenant_id for s in await scoped.list_sessions(QueryFilter())} == {a}
        assert await scoped.list_providers(b) == []
        assert await scoped.count_records("api_calls", QueryFilter()) == 2
        assert (await scoped.get_statistics(QueryFilter(tenant_id=a))).total_calls == 2
        assert (await scoped.get_statistics(QueryFilter(tenant_id=b))).total_calls == 0
        session = make_session(tenant_id=a)
        await scoped.create_session(session)
        await scoped.save_message(make_message(session, "written by the role"))
        with pytest.raises(ConstraintError, match="row-level security"):
            await scoped.create_session(make_session(tenant_id=b))
        # An API call adds to rollup rows of every tenant, which the role may not touch.
        with pytest.raises(ConstraintError, match="row-level security"):
            await scoped.save_api_call(make_api_call(session))
    finally:
        await scoped.close()
    assert await owner.count_session_messages(session.id) == 1
    assert await owner.count_records("sessions", QueryFilter(tenant_id=b)) == 1


async def test_disabling_lets_the_role_see_every_tenant_again(
    owner: PostgresStore, role_url: str
) -> None:
    """disable_row_level_security drops the policies: the role sees both tenants; safe twice."""
    a, b = await _tenant(owner), await _tenant(owner)
    await owner.enable_row_level_security()
    assert await owner.disable_row_level_security() == list(TENANT_TABLES)
    assert await owner.disable_row_level_security() == list(TENANT_TABLES)
    conn = await asyncpg.connect(role_url)
    try:
        seen = {row["tenant_id"] for row in await _rows(conn, "entity_chat_session")}
        assert seen == {a, b}
    finally:
        await conn.close()


async def test_enabling_as_a_role_that_does_not_own_the_tables_is_refused(
    owner: PostgresStore, role_url: str
) -> None:
    """Only the tables' owner may put them under row-level security: a clear error otherwise."""
    other = await PostgresStore.connect(role_url, migrate=False)
    try:
        with pytest.raises(PersistenceError, match="owner"):
            await other.enable_row_level_security()
    finally:
        await other.close()


# --- the command line ------------------------------------------------------------------


def test_cli_enable_rls_and_disable_rls(
    owner: PostgresStore, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`chatledger db enable-rls` names the tables it secured; again is fine; disable-rls undoes."""
    assert main(["--db", postgres_url, "db", "enable-rls"]) == 0
    assert "row-level security on 8 tables" in capsys.readouterr().out
    assert main(["db", "enable-rls", "--db", postgres_url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tables"] == list(TENANT_TABLES)
    assert shown["row_level_security"] is True
    assert main(["--db", postgres_url, "db", "disable-rls"]) == 0
    assert "row-level security off 8 tables" in capsys.readouterr().out


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/t.db", "memory://"])
def test_cli_enable_rls_refuses_other_backends(
    url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """On SQLite or in memory the command says row-level security is PostgreSQL's and exits 1."""
    assert main(["--db", url.format(tmp=tmp_path), "db", "enable-rls"]) == 1
    error = capsys.readouterr().err
    assert "PostgreSQL" in error
    assert "for_tenant" in error
