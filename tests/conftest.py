"""Fixtures shared by the test modules: scratch server databases, and a store of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import chatledger
from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing.fake_openai import FakeOpenAIServer
from scratch_databases import SQL_BACKENDS, empty_tables, mysql_database, postgres_database


@pytest.fixture(autouse=True)
def spool_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's recorders spool in a directory of its own, never the user's state directory."""
    path = tmp_path_factory.mktemp("spool")
    monkeypatch.setenv("CHATLEDGER_SPOOL_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def secret_key_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """chatledger's own key (made when no CHATLEDGER_SECRET_KEY is set) goes to a test's file."""
    path = tmp_path_factory.mktemp("secrets") / "secret.key"
    monkeypatch.setenv("CHATLEDGER_SECRET_KEY_FILE", str(path))
    return path


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database this module has to itself."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def mysql_url() -> Iterator[str]:
    """The URL of a MariaDB/MySQL database this module has to itself."""
    with mysql_database() as url:
        yield url


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PersistenceStore]:
    """Each backend in turn, empty: memory, an SQLite file, PostgreSQL, MariaDB."""
    if request.param == "memory":
        store: PersistenceStore = InMemoryStore()
    elif request.param == "sqlite":
        store = await SqliteStore.connect(tmp_path / "any.db")
    else:
        url = request.getfixturevalue(
            f"{'postgres' if request.param == 'postgresql' else 'mysql'}_url"
        )
        store = await chatledger.connect(url)
        await empty_tables(url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    """The local fake OpenAI server, its script empty: each test adds what it needs."""
    async with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
async def corpus_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PersistenceStore]:
    """SQLite and PostgreSQL in turn, empty: where the integrations play the provider corpus."""
    if request.param == "sqlite":
        store: PersistenceStore = await SqliteStore.connect(tmp_path / "ledger.db")
    else:
        url = request.getfixturevalue("postgres_url")
        store = await chatledger.connect(url)
        await empty_tables(url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[PersistenceStore]:
    """An empty SQLite store, for the tests that are not about backends."""
    store = await SqliteStore.connect(tmp_path / "ledger.db")
    try:
        yield store
    finally:
        await store.close()
