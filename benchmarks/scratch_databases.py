"""The database servers the benchmarks run on, and the scratch databases they make and drop there.

Each server is named by a server-level URL (``CHATLEDGER_BENCH_POSTGRES_URL``,
``CHATLEDGER_BENCH_MYSQL_URL``; by default the local servers as user
``postgres`` / ``root``); the benchmark puts its own database name in it. A
scratch database is dropped first if a killed run left it behind, and
dropped again when the block that uses it ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MYSQL", "POSTGRES", "Server", "ServerUnavailableError"]

_CONNECT_TIMEOUT = 5.0  # seconds: an unreachable server is skipped, not waited for


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
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name or self.scratch}"))

    async def _admin(self, statements: list[str]) -> None:
        """Run ``statements`` on a server-level connection (no scratch database needed)."""
        try:
            if self.kind == "postgres":
                import asyncpg

                parts = urlsplit(self.url)
                conn = await asyncpg.connect(
                    self.database_url(parts.path.strip("/") or "postgres"),
                    timeout=_CONNECT_TIMEOUT,
                )
                try:
                    for sql in statements:
                        await conn.execute(sql)
                finally:
                    await conn.close()
            else:
                import asyncmy

                from benchmarks.raw_mysql import login

                myconn = await asyncmy.connect(
                    autocommit=True, connect_timeout=_CONNECT_TIMEOUT, **login(self.url, "")
                )
                # asyncmy logs the server's notes as warnings ("database doesn't exist"
                # after DROP DATABASE IF EXISTS): expected here, so not worth a line.
                quiet = logging.getLogger("asyncmy")
                level = quiet.level
                quiet.setLevel(logging.ERROR)
                try:
                    async with myconn.cursor() as cursor:
                        for sql in statements:
                            await cursor.execute(sql)
                finally:
                    quiet.setLevel(level)
                    myconn.close()
        except ImportError:
            raise
        except Exception as exc:
            raise ServerUnavailableError(
                f"{self.title} at {self.address} is unreachable or refused the login "
                f"({type(exc).__name__}: {exc}); set {self.env_var} to a server-level URL"
            ) from exc

    async def probe(self) -> None:
        """Raise ``ServerUnavailableError`` unless the server answers."""
        await self._admin(["SELECT 1"])

    @asynccontextmanager
    async def scratch_database(self) -> AsyncIterator[str]:
        """A new, empty scratch database for the block; yields its URL and drops it after."""
        if self.kind == "postgres":
            # FORCE: a killed run may have left connections to it behind.
            drop = f"DROP DATABASE IF EXISTS {self.scratch} WITH (FORCE)"
            create = f"CREATE DATABASE {self.scratch}"
        else:
            drop = f"DROP DATABASE IF EXISTS {self.scratch}"
            create = f"CREATE DATABASE {self.scratch} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        await self._admin([drop, create])
        try:
            yield self.database_url()
        finally:
            await self._admin([drop])


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
