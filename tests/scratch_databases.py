"""Scratch databases on this machine's PostgreSQL and MariaDB servers, for server tests.

Each test module that needs a server gets a database of its own, created
before its first test and dropped after its last, so modules never see
each other's rows. The servers are found through ``CHATLEDGER_TEST_POSTGRES_URL``
and ``CHATLEDGER_TEST_MYSQL_URL`` (a URL of any database the account may
connect to; ``.ci/run`` sets the MySQL one when it has to create an account).
A server that cannot be reached fails the tests: it is never skipped.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_SERVER = os.environ.get(
    "CHATLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MYSQL_SERVER = os.environ.get("CHATLEDGER_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

# What starts each server on this machine (README, .ci/run).
_START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
_START_MARIADB = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"

SQL_BACKENDS = (
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.server),
    pytest.param("mysql", marks=pytest.mark.server),
)
"""Parameters naming each SQL backend, the servers marked ``server``."""

# Children before parents, so deletes never trip a foreign key.
TABLES = (
    "chatledger_usage_sealed_period",
    "chatledger_usage_hourly",
    "chatledger_usage_daily",
    "chatledger_usage_histogram",
    "entity_llm_api_call",
    "entity_llm_message",
    "entity_chat_session",
    "entity_agent",
    "entity_provider",
)


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def mysql_options(url: str) -> dict[str, Any]:
    """asyncmy.connect keyword arguments for a ``mysql://`` URL."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
        "database": parts.path.lstrip("/") or None,
        "autocommit": True,
    }


async def postgres_execute(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` on one asyncpg connection; the last one's rows."""
    import asyncpg  # only where a server is used: `pytest -m "not server"` needs no driver

    conn = await asyncpg.connect(url)
    try:
        rows: list[Any] = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


async def mysql_execute(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` on one asyncmy connection; the last one's rows."""
    import asyncmy  # as above

    conn = await asyncmy.connect(**mysql_options(url))
    try:
        rows: list[Any] = []
        async with conn.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
                rows = list(await cursor.fetchall() or [])
        return rows
    finally:
        conn.close()


async def empty_tables(url: str) -> None:
    """Delete every row chatledger's tables hold (the tables themselves stay)."""
    deletes = [f"DELETE FROM {table}" for table in TABLES]
    if url.startswith("postgres"):
        await postgres_execute(url, *deletes)
    else:
        await mysql_execute(url, *deletes)


def emptied_url(request: pytest.FixtureRequest, tmp_path: Any, backend: str) -> str:
    """A URL of ``backend`` with chatledger's schema and no rows: a new SQLite file, or the
    module's scratch database (fixtures ``postgres_url``, ``mysql_url``) emptied."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    from chatledger import sync  # the package under test, imported when a test asks

    url: str = request.getfixturevalue("postgres_url" if backend == "postgresql" else "mysql_url")
    with sync.connect(url):
        pass  # the schema, before emptying it
    asyncio.run(empty_tables(url))
    return url


@contextmanager
def scratch_database(server: str, runner: Any) -> Iterator[str]:
    """Create a uniquely named database on ``server``; yield its URL; drop it after."""
    name = f"chatledger_test_{uuid.uuid4().hex[:12]}"
    is_postgres = server.startswith("postgres")
    create = (
        f"CREATE DATABASE {name}"
        if is_postgres
        else f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    drop = f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if is_postgres else "")
    try:
        _run_aside(runner(server, create))
    except OSError as exc:  # refused, unreachable: one line saying what to start
        parts = urlsplit(server)
        what, start, variable = (
            ("PostgreSQL", _START_POSTGRES, "CHATLEDGER_TEST_POSTGRES_URL")
            if is_postgres
            else ("MariaDB", _START_MARIADB, "CHATLEDGER_TEST_MYSQL_URL")
        )
        pytest.fail(
            f"{what} is not running at {parts.hostname}:{parts.port} ({exc.strerror or exc}); "
            f"start it ({start}) or point {variable} at one",
            pytrace=False,
        )
    try:
        yield with_database(server, name)
    finally:
        _run_aside(runner(server, drop))


def _run_aside(work: Coroutine[Any, Any, Any]) -> None:
    """Run ``work`` to the end on a loop of its own, even when called inside a running one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, work).result()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A scratch PostgreSQL database's URL."""
    with scratch_database(POSTGRES_SERVER, postgres_execute) as url:
        yield url


@contextmanager
def mysql_database() -> Iterator[str]:
    """A scratch MySQL/MariaDB database's URL."""
    with scratch_database(MYSQL_SERVER, mysql_execute) as url:
        yield url
