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
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from chatledger.testing.servers import (
    create_database,
    drop_database,
    empty_tables,
    server_kind,
)

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

_T = TypeVar("_T")


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
def scratch_database(server: str) -> Iterator[str]:
    """Create a uniquely named database on ``server``; yield its URL; drop it after."""
    name = f"chatledger_test_{uuid.uuid4().hex[:12]}"
    try:
        url = _run_aside(create_database(server, name))
    except Exception as exc:
        if not _unreachable(exc):
            raise
        parts = urlsplit(server)
        what, start, variable = (
            ("PostgreSQL", _START_POSTGRES, "CHATLEDGER_TEST_POSTGRES_URL")
            if server_kind(server) == "postgresql"
            else ("MariaDB", _START_MARIADB, "CHATLEDGER_TEST_MYSQL_URL")
        )
        pytest.fail(
            f"{what} is not running at {parts.hostname}:{parts.port} ({_reason(exc)}); "
            f"start it ({start}) or point {variable} at one",
            pytrace=False,
        )
    try:
        yield url
    finally:
        _run_aside(drop_database(server, name))


def _unreachable(exc: Exception) -> bool:
    """Whether ``exc`` says the server is not there: refused or unreachable, so that the
    failure is one line saying what to start, not a traceback."""
    # asyncmy reports it as its OperationalError 2002 (socket) or 2003 (TCP).
    return isinstance(exc, OSError) or (bool(exc.args) and exc.args[0] in (2002, 2003))


def _reason(exc: Exception) -> str:
    """What went wrong, without the driver's error class."""
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc.args[-1])


def _run_aside(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` to the end on a loop of its own, even when called inside a running one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A scratch PostgreSQL database's URL."""
    with scratch_database(POSTGRES_SERVER) as url:
        yield url


@contextmanager
def mysql_database() -> Iterator[str]:
    """A scratch MySQL/MariaDB database's URL."""
    with scratch_database(MYSQL_SERVER) as url:
        yield url
