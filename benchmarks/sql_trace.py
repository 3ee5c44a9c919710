"""The SQL statements a store runs, captured with sqlite3's trace callback.

While the context is open, every connection made through ``sqlite3.connect``
(directly or by aiosqlite) reports each statement it runs, with its
parameters bound in. ``sqlite3.connect`` is restored when the context exits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

__all__ = ["traced_connections"]


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
