"""Every backend against the shared conformance suite (chatledger.testing).

Backend-specific behaviour lives in that backend's own test module; this
file only says how to make each store.
"""

from __future__ import annotations

from typing import ClassVar

from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    """The in-memory reference backend; runs first."""

    expected_backend_name: ClassVar[str | None] = "memory"

    async def make_store(self) -> PersistenceStore:
        """A fresh InMemoryStore."""
        return InMemoryStore()


# --- SQL backends ---------------------------------------------------------------------
# `self.tmp_path` is a fresh directory, set by the suite's `store` fixture before
# make_store runs. PostgreSQL / MySQL classes (marked `server`) go below these.


class TestSqliteFileStore(StoreConformance):
    """SQLite on a file in a temporary directory."""

    expected_backend_name: ClassVar[str | None] = "sqlite"

    async def make_store(self) -> PersistenceStore:
        """A SqliteStore on a new database file."""
        return await SqliteStore.connect(f"sqlite:///{self.tmp_path}/t.db")


class TestSqliteInMemoryStore(StoreConformance):
    """SQLite's private in-memory database."""

    expected_backend_name: ClassVar[str | None] = "sqlite"

    async def make_store(self) -> PersistenceStore:
        """A SqliteStore on ``:memory:``."""
        return await SqliteStore.in_memory()
