"""Stores: the protocols, the backends, and :func:`connect` that picks one from a URL."""

from __future__ import annotations

from typing import Any

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
from chatledger.stores.server import redact
from chatledger.stores.sqlite import SqliteStore

__all__ = [
    "AgentStore",
    "ApiCallStore",
    "InMemoryStore",
    "MessageStore",
    "PersistenceStore",
    "ProviderStore",
    "RecordKind",
    "SessionStore",
    "SqliteStore",
    "connect",
]

_URL_FORMS = (
    "memory://",
    "mysql://user@host:3306/db",
    "postgresql://user@host:5432/db",
    "sqlite:///path/to.db",
)


async def connect(url: str, **options: Any) -> PersistenceStore:
    """Open the store a URL names: ``memory://``, ``sqlite:///…``, ``postgresql://…``, ``mysql://…``."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return InMemoryStore()
    if scheme == "sqlite":
        return await SqliteStore.connect(url, **options)
    if scheme in ("postgresql", "postgres"):
        from chatledger.stores.postgres import PostgresStore

        return await PostgresStore.connect(url, **options)
    if scheme in ("mysql", "mariadb"):
        from chatledger.stores.mysql import MySqlStore

        return await MySqlStore.connect(url, **options)
    raise ValueError(
        f"cannot tell the backend of {redact(url)!r}; use one of: {', '.join(_URL_FORMS)}"
    )
