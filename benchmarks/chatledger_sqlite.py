"""What is specific to chatledger's ``SqliteStore`` in the benchmarks: opening it, its SQL.

The work itself (saves, batches, reads) is ``chatledger_store``'s, the same
for every backend; this module opens the store on a file and captures what
it runs through sqlite3's trace callback.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.chatledger_store import Opener
from benchmarks.sql_trace import traced_connections
from chatledger.entities import QueryFilter

if TYPE_CHECKING:
    from chatledger.stores.sqlite import SqliteStore

__all__ = ["connect_pragmas", "open_store", "opener", "statistics_sql"]


async def open_store(path: Path) -> SqliteStore:
    """``SqliteStore.connect`` on a file, with its defaults (WAL, synchronous=FULL)."""
    from chatledger.stores.sqlite import SqliteStore

    return await SqliteStore.connect(f"sqlite:///{path}")


def opener(path: Path) -> Opener:
    """An ``Opener`` of the SqliteStore on ``path``."""
    return partial(open_store, path)


async def connect_pragmas(path: Path) -> list[str]:
    """The PRAGMA statements ``SqliteStore.connect`` runs, as evidence of its settings."""
    with traced_connections() as statements:
        store = await open_store(path)
        ran = list(statements)
        await store.close()
    pragmas = [sql.strip() for sql in ran if sql.lstrip().upper().startswith("PRAGMA")]
    return list(dict.fromkeys(pragmas))  # each connection runs them: say each once


async def statistics_sql(path: Path, query: QueryFilter) -> list[str]:
    """The SELECT statements ``get_statistics(query)`` runs, parameters bound in."""
    with traced_connections() as statements:
        store = await open_store(path)
        try:
            await store.get_statistics(query)
            statements.clear()
            await store.get_statistics(query)
            ran = list(statements)
        finally:
            await store.close()
    return [sql for sql in ran if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
