"""Every backend against the shared conformance suite (chatledger.testing).

Backend-specific behaviour lives in that backend's own test module; this
file says how to make each store, and checks that a store implementing
only part of the contract (the ledger alone) runs its part of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import ClassVar

import pytest

from chatledger.stores.base import (
    AgentStore,
    ApiCallStore,
    MessageStore,
    PersistenceStore,
    ProviderStore,
    SessionStore,
)
from chatledger.stores.memory import InMemoryStore
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import (
    ApiCallConformance,
    ClosableStore,
    LifecycleConformance,
    StoreConformance,
)
from ledger_only_store import LedgerOnlyStore
from scratch_databases import empty_tables

TESTS = Path(__file__).resolve().parent


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


# --- a store of part of the contract ------------------------------------------------


def test_the_ledger_only_store_implements_the_ledger_alone() -> None:
    """What the test below relies on: the ledger's protocols, and none of the others."""
    store = LedgerOnlyStore()
    assert isinstance(store, ApiCallStore)
    assert isinstance(store, ClosableStore)
    for other in (SessionStore, MessageStore, ProviderStore, AgentStore, PersistenceStore):
        assert not isinstance(store, other), other


_LEDGER_ONLY_SUITE = """
from chatledger.testing import ApiCallConformance, LifecycleConformance, StoreConformance
from ledger_only_store import LedgerOnlyStore


class TestWholeSuite(StoreConformance):
    async def make_store(self):
        return LedgerOnlyStore()


class TestLedgerClasses(LifecycleConformance, ApiCallConformance):
    async def make_store(self):
        return LedgerOnlyStore()
"""

# The tests of the ledger's classes that write or read through more than the ledger.
_NEEDING_MORE_THAN_THE_LEDGER = {
    "test_store_implements_the_protocol",
    "test_text_id_hint_says_how_to_convert",
    "test_cleanup_old_records_counts_and_keeps_messages",
    "test_calls_for_messages_finds_calls_by_reply_or_request",
    "test_page_api_calls_refuses_bad_cursors_and_arguments",
    "test_rollup_answers_equal_a_scan_of_the_calls",
    "test_sealed_periods_answer_as_their_days_through_every_change",
    "test_rollups_count_a_batch_shipped_twice_once",
}


def _outcomes(report: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """Each test class's tests in a JUnit report: name -> (outcome, skip message)."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    cases = ElementTree.parse(report).getroot().iter("testcase")  # noqa: S314  (pytest wrote it)
    for case in cases:
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.get("message", "")
        found.setdefault(case.get("classname", "").rsplit(".", 1)[-1], {})[case.get("name", "")] = (
            outcome,
            message,
        )
    return found


def test_a_ledger_only_store_runs_the_ledger_s_part_and_skips_the_rest(tmp_path: Path) -> None:
    """A store of API calls alone passes the ledger's tests; every other test is skipped.

    Run twice in a pytest of its own: under the whole ``StoreConformance``,
    and under the ledger's classes alone, as a third party keeping only the
    ledger would subclass them.
    """
    (tmp_path / "test_ledger_only.py").write_text(_LEDGER_ONLY_SUITE, encoding="utf-8")
    report = tmp_path / "report.xml"
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    outcomes = _outcomes(report)
    ledger_tests = {
        name
        for cls in (LifecycleConformance, ApiCallConformance)
        for name in dir(cls)
        if name.startswith("test_")
    }
    whole, ledger = outcomes["TestWholeSuite"], outcomes["TestLedgerClasses"]
    assert {name.split("[")[0] for name in whole} == {
        name for name in dir(StoreConformance) if name.startswith("test_")
    }
    assert set(ledger) <= set(whole)
    for suite in (whole, ledger):
        for name, (outcome, message) in suite.items():
            test = name.split("[")[0]
            if test in ledger_tests and test not in _NEEDING_MORE_THAN_THE_LEDGER:
                assert outcome == "passed", (name, outcome, message)
            else:
                assert outcome == "skipped", (name, outcome, message)
                assert "LedgerOnlyStore does not implement" in message, (name, message)
    assert sum(outcome == "passed" for outcome, _ in ledger.values()) >= 50
