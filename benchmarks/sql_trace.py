"""The SQL statements a store runs: sqlite3's trace callback, or the reads a server store sends.

While ``traced_connections`` is open, every connection made through
``sqlite3.connect`` (directly or by aiosqlite) reports each statement it runs,
with its parameters bound in. While ``traced_server_reads`` is open, every
read a PostgreSQL or MySQL store sends to its pool is recorded as the SQL and
parameters its driver receives. What was patched is restored on exit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

__all__ = ["traced_connections", "traced_server"]


@contextmanager
def traced_connections() -> Iterator[list[str]]:
    """Yield a list that collects every statement run by connections opened inside the block."""
    statements: list[str] = []
    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = original(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    with mock.patch.object(sqlite3, "connect", connect):
        yield statements


@contextmanager
def traced_server(method: str) -> Iterator[list[list[tuple[str, tuple[Any, ...]]]]]:
    """Yield a list collecting the ``(sql, params)`` of each server ``read`` or ``write`` call."""
    from chatledger.stores.server import PooledDatabase

    calls: list[list[tuple[str, tuple[Any, ...]]]] = []
    original = getattr(PooledDatabase, method)

    async def record(self: Any, statements: Any) -> Any:
        calls.append([(one.sql, tuple(one.params)) for one in statements])
        return await original(self, statements)

    with mock.patch.object(PooledDatabase, method, record):
        yield calls
