"""Opening a database as the reading tools do: never creating a file, never migrating.

The command line and the dashboard open the database a user names with
:func:`open_current`: an SQLite file that does not exist is refused (opening
it would create an empty one), and so is a schema older than this
chatledger's, with the command that upgrades it.
"""

from __future__ import annotations

from pathlib import Path

from chatledger.errors import PersistenceError, StoreConnectionError
from chatledger.stores import PersistenceStore, connect
from chatledger.stores.schema import MIGRATIONS
from chatledger.stores.urls import parse_sqlite_url, redact

__all__ = ["LATEST_SCHEMA", "open_current", "open_existing", "sqlite_file"]

LATEST_SCHEMA = MIGRATIONS[-1].version
"""The schema version this chatledger reads and writes."""


def sqlite_file(url: str) -> Path | None:
    """The file an ``sqlite:`` URL names (None for other URLs and in-memory databases)."""
    if not url.startswith("sqlite:"):
        return None
    path, _ = parse_sqlite_url(url)
    return None if path is None else Path(path).expanduser()


async def open_existing(url: str, *, migrate: bool = False) -> PersistenceStore:
    """Open ``url``; unless migrating, an SQLite file must exist (a read never makes one)."""
    file = sqlite_file(url)
    if not migrate and file is not None and not file.exists():
        raise StoreConnectionError(
            f"no database at {file}; pass --db URL (or set $CHATLEDGER_DATABASE_URL), "
            "or create one with 'chatledger db upgrade' (or 'chatledger demo')"
        )
    return await connect(url, migrate=migrate)


async def open_current(url: str) -> PersistenceStore:
    """Open ``url`` as it is: it must exist and hold this chatledger's schema version."""
    store = await open_existing(url)
    try:
        version = await store.schema_version()
    except BaseException:
        await store.close()
        raise
    if version < LATEST_SCHEMA:
        await store.close()
        found = "has no chatledger tables" if version == 0 else f"is at schema version {version}"
        raise PersistenceError(
            f"{redact(url)} {found}; this chatledger needs version {LATEST_SCHEMA}: "
            "run 'chatledger db upgrade'"
        )
    return store
