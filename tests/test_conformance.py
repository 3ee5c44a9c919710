"""Every backend against the shared conformance suite (chatledger.testing).

Backend-specific behaviour lives in that backend's own test module; this
file only says how to make each store.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import StoreConformance
from scratch_databases import empty_tables


class TestMemoryStore(StoreConformance):
    """The in-memory reference backend; runs first."""

    expected_backend_name: ClassVar[str | None] = "memory"

    async def make_store(self) -> PersistenceStore:
        """A fresh InMemoryStore."""
        return InMemoryStore()


# --- SQL backends ---------------------------------------------------------------------
# `self.tmp_path` is a fresh directory, set by the suite's `store` fixture before
# make_store runs. The server classes share one scratch database per class and
# empty its tables before each test.


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


@pytest.mark.server
class TestPostgresStore(StoreConformance):
    """PostgreSQL through asyncpg."""

    expected_backend_name: ClassVar[str | None] = "postgresql"
    url: str

    @pytest.fixture(autouse=True)
    def _database(self, postgres_url: str) -> None:
        self.url = postgres_url

    async def make_store(self) -> PersistenceStore:
        """A PostgresStore on the module's database, emptied."""
        store = await PostgresStore.connect(self.url)
        await empty_tables(self.url)
        return store


@pytest.mark.server
class TestMySqlStore(StoreConformance):
    """MariaDB (or MySQL 8) through asyncmy."""

    expected_backend_name: ClassVar[str | None] = "mysql"
    url: str

    @pytest.fixture(autouse=True)
    def _database(self, mysql_url: str) -> None:
        self.url = mysql_url

    async def make_store(self) -> PersistenceStore:
        """A MySqlStore on the module's database, emptied."""
        store = await MySqlStore.connect(self.url)
        await empty_tables(self.url)
        return store
