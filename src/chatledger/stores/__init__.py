"""Stores: the protocols, the backends, and :func:`connect` that picks one from a URL.

Each store and protocol is imported on first use (PEP 562), so ``connect``
and ``backend_of`` load only the backend a URL names, and ``PostgresStore``
and ``MySqlStore`` (and the drivers they use) stay unloaded until a program
needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatledger import _lazy
from chatledger.stores.urls import redact

if TYPE_CHECKING:
    from chatledger.stores.base import (
        AgentStore,
        ApiCallStore,
        MessageStore,
        PersistenceStore,
        ProviderStore,
        RecordKind,
        SessionStore,
    )
    from chatledger.stores.memory import InMemoryStore
    from chatledger.stores.mysql import MySqlStore
    from chatledger.stores.postgres import PostgresStore
    from chatledger.stores.sqlite import SqliteStore

__all__ = [
    "AgentStore",
    "ApiCallStore",
    "InMemoryStore",
    "MessageStore",
    "MySqlStore",
    "PersistenceStore",
    "PostgresStore",
    "ProviderStore",
    "RecordKind",
    "SessionStore",
    "SqliteStore",
    "connect",
]

_LAZY = _lazy.table(
    __name__,
    {
        "chatledger.stores.base": (
            "AgentStore",
            "ApiCallStore",
            "MessageStore",
            "PersistenceStore",
            "ProviderStore",
            "RecordKind",
            "SessionStore",
        ),
        "chatledger.stores.memory": ("InMemoryStore",),
        "chatledger.stores.mysql": ("MySqlStore",),
        "chatledger.stores.postgres": ("PostgresStore",),
        "chatledger.stores.sqlite": ("SqliteStore",),
    },
    # Imported eagerly before, so reachable as attributes then: they still are.
    submodules=("base", "memory", "sqlite"),
)

_lazy.attach(globals(), _LAZY)


_URL_FORMS = (
    "memory://",
    "mysql://user@host:3306/db",
    "postgresql://user@host:5432/db",
    "sqlite:///path/to.db",
)


_BACKENDS = {
    "memory": "memory",
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


def backend_of(url: str) -> str:
    """The backend a URL names: ``memory``, ``sqlite``, ``postgresql`` or ``mysql``."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    try:
        return _BACKENDS[scheme]
    except KeyError:
        raise ValueError(
            f"cannot tell the backend of {redact(url)!r}; use one of: {', '.join(_URL_FORMS)}"
        ) from None


def location_of(url: str) -> str | None:
    """The ``location`` the store ``url`` opens will have, found without connecting.

    None for a database that lives in one process only (memory, SQLite ``:memory:``).
    """
    backend = backend_of(url)
    if backend == "sqlite":
        from chatledger.stores.sqlite import SqliteStore

        return SqliteStore.location_of(url)
    if backend == "postgresql":
        from chatledger.stores.postgres import PostgresStore

        return PostgresStore.address_of(url).location
    if backend == "mysql":
        from chatledger.stores.mysql import MySqlStore

        return MySqlStore.address_of(url).location
    return None


async def connect(url: str, **options: Any) -> PersistenceStore:
    """Open the store a URL names: ``memory://``, ``sqlite:///…``, ``postgresql://…``, ``mysql://…``."""
    backend = backend_of(url)
    if backend == "memory":
        from chatledger.stores.memory import InMemoryStore

        return InMemoryStore()
    if backend == "sqlite":
        from chatledger.stores.sqlite import SqliteStore

        return await SqliteStore.connect(url, **options)
    if backend == "postgresql":
        from chatledger.stores.postgres import PostgresStore

        return await PostgresStore.connect(url, **options)
    from chatledger.stores.mysql import MySqlStore

    return await MySqlStore.connect(url, **options)
