"""The database servers the benchmarks run on, and the scratch databases they make and drop there.

Each server is named by a server-level URL (``CHATLEDGER_BENCH_POSTGRES_URL``,
``CHATLEDGER_BENCH_MYSQL_URL``; by default the local servers as user
``postgres`` / ``root``); the benchmark puts its own database name in it. A
scratch database is dropped first if a killed run left it behind, and
dropped again when the block that uses it ends; the statements are
``chatledger.testing.servers``', which the tests use too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from chatledger.testing.servers import (
    admin_url,
    create_database,
    drop_database,
    execute,
    with_database,
)

__all__ = ["MYSQL", "POSTGRES", "Server", "ServerUnavailableError"]


class ServerUnavailableError(RuntimeError):
    """The server could not be reached or refused the benchmark's login."""


@dataclass(frozen=True, slots=True)
class Server:
    """A database server: its kind, the variable that overrides its URL, and the scratch name."""

    kind: str  # "postgres" or "mysql"
    title: str  # how the report names it
    env_var: str
    default_url: str
    scratch: str  # the scratch database's name

    @property
    def url(self) -> str:
        """The server-level URL: the environment variable's, else the local default."""
        return os.environ.get(self.env_var) or self.default_url

    @property
    def address(self) -> str:
        """``host:port`` of the server, for messages (no user, no password)."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port}"

    def database_url(self, name: str | None = None) -> str:
        """The server URL with the scratch database (or ``name``) as its database."""
        return with_database(self.url, name or self.scratch)

    async def probe(self) -> None:
        """Raise ``ServerUnavailableError`` unless the server answers."""
        async with self._reached():
            await execute(admin_url(self.url), "SELECT 1")

    @asynccontextmanager
    async def scratch_database(self) -> AsyncIterator[str]:
        """A new, empty scratch database for the block; yields its URL and drops it after.

        One dropped first, if a killed run left it behind.
        """
        async with self._reached():
            url = await create_database(self.url, self.scratch)
        try:
            yield url
        finally:
            await drop_database(self.url, self.scratch)

    @asynccontextmanager
    async def _reached(self) -> AsyncIterator[None]:
        """Turn a failure to reach or log in to the server into ``ServerUnavailableError``."""
        try:
            yield
        except ImportError:
            raise
        except Exception as exc:
            raise ServerUnavailableError(
                f"{self.title} at {self.address} is unreachable or refused the login "
                f"({type(exc).__name__}: {exc}); set {self.env_var} to a server-level URL"
            ) from exc


POSTGRES = Server(
    kind="postgres",
    title="PostgreSQL",
    env_var="CHATLEDGER_BENCH_POSTGRES_URL",
    default_url="postgresql://postgres@127.0.0.1:5432",
    scratch="chatledger_bench_pg",
)
MYSQL = Server(
    kind="mysql",
    title="MariaDB",
    env_var="CHATLEDGER_BENCH_MYSQL_URL",
    default_url="mysql://root@127.0.0.1:3306",
    scratch="chatledger_bench_my",
)
