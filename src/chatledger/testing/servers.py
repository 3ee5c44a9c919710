"""Scratch databases on PostgreSQL and MySQL/MariaDB servers, for tests and benchmarks.

A test or benchmark run against a database server should never share a
database with anything else: :func:`scratch_database` creates one with a
name of its own on the server a URL names, yields its URL and drops it
after, even when the block fails. :func:`empty_tables` deletes every row
chatledger's tables hold, so one scratch database can serve many tests.

Needs the server's driver: ``asyncpg`` (``chatledger[postgres]``) or
``asyncmy`` (``chatledger[mysql]``), imported only when a server is used.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "CHATLEDGER_TABLES",
    "ServerKind",
    "admin_url",
    "create_database",
    "drop_database",
    "empty_tables",
    "execute",
    "mysql_connect_options",
    "scratch_database",
    "server_kind",
    "with_database",
]

ServerKind = Literal["postgresql", "mysql"]

CHATLEDGER_TABLES = (
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
"""chatledger's tables, children before parents, so deleting in this order trips no key."""

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a server: one that does not answer is reported, not waited for."""


def server_kind(url: str) -> ServerKind:
    """Which server a ``postgresql://`` or ``mysql://`` URL names."""
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme in ("postgres", "postgresql"):
        return "postgresql"
    if scheme in ("mysql", "mariadb"):
        return "mysql"
    raise ValueError(f"not a PostgreSQL or MySQL URL (scheme {scheme!r})")


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead of the database it names."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def mysql_connect_options(url: str, database: str | None = None) -> dict[str, Any]:
    """``asyncmy.connect`` keyword arguments for a ``mysql://`` URL (``database`` overrides its).

    The connection commits each statement, as an administrator's session does.
    """
    parts = urlsplit(url)
    name = unquote(parts.path.strip("/")) if database is None else database
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": name or None,
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
    }


async def execute(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` in order on one new connection to ``url``; the last one's rows."""
    if server_kind(url) == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            rows: list[Any] = []
            for statement in statements:
                rows = list(await conn.fetch(statement))
            return rows
        finally:
            await conn.close()
    import asyncmy

    myconn = await asyncmy.connect(**mysql_connect_options(url))
    try:
        rows = []
        async with myconn.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
                rows = list(await cursor.fetchall() or [])
        return rows
    finally:
        myconn.close()


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server ``server_url`` names (dropped first if it
    exists, as a killed run leaves it); its URL."""
    kind = server_kind(server_url)
    create = f"CREATE DATABASE {name}"
    if kind == "mysql":
        # Binary collation: text compares as the other backends compare it, case and all.
        create += " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    with _server_notes_quiet():
        await execute(admin_url(server_url), _drop_statement(kind, name), create)
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` on the server ``server_url`` names, if it is there."""
    with _server_notes_quiet():
        await execute(admin_url(server_url), _drop_statement(server_kind(server_url), name))


@asynccontextmanager
async def scratch_database(server_url: str, name: str | None = None) -> AsyncIterator[str]:
    """A new, empty database on the server ``server_url`` names, for the block; its URL.

    ``name`` defaults to a new unique one. The database is dropped when the block ends.
    """
    name = name or f"chatledger_scratch_{uuid.uuid4().hex[:12]}"
    url = await create_database(server_url, name)
    try:
        yield url
    finally:
        await drop_database(server_url, name)


async def empty_tables(url: str) -> None:
    """Delete every row chatledger's tables hold in the database ``url`` names."""
    await execute(url, *(f"DELETE FROM {table}" for table in CHATLEDGER_TABLES))


def _drop_statement(kind: ServerKind, name: str) -> str:
    # FORCE: a killed run may have left connections to it behind.
    return f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if kind == "postgresql" else "")


def admin_url(server_url: str) -> str:
    """A URL for statements about databases: ``server_url``, or its server's own database.

    A URL naming no database gets PostgreSQL's ``postgres``; MySQL needs none.
    """
    if urlsplit(server_url).path.strip("/"):
        return server_url
    if server_kind(server_url) == "postgresql":
        return with_database(server_url, "postgres")
    return server_url


@contextmanager
def _server_notes_quiet() -> Iterator[None]:
    """asyncmy logs a server's notes as warnings ("database doesn't exist" after
    DROP DATABASE IF EXISTS): expected here, so not worth a line."""
    logger = logging.getLogger("asyncmy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
