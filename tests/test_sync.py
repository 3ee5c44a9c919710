"""chatledger.sync: blocking twins on a background loop thread."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

from chatledger import ConstraintError, LLMMessage, QueryFilter, StoreConnectionError, sync
from chatledger._sync_methods import SyncMethods
from chatledger.ids import uuid7
from chatledger.stores import PersistenceStore
from chatledger.testing import make_api_call, make_message, make_session


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_round_trip(tmp_path: Path, backend: str) -> None:
    """The same method names block and return results."""
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path}/s.db"
    with sync.connect(url) as store:
        session = make_session()
        store.create_session(session)
        message = make_message(session)
        store.save_message(message)
        store.save_api_calls([make_api_call(session) for _ in range(3)])
        history: list[LLMMessage] = store.get_recent_messages(session.id, 10)
        assert [m.id for m in history] == [message.id]
        assert store.get_statistics(QueryFilter()).total_calls == 3
        assert store.backend_name == backend


async def test_works_inside_a_running_loop(tmp_path: Path) -> None:
    """Called from a coroutine (as in Jupyter) it still works: the work runs on its own loop."""
    asyncio.get_running_loop()
    with sync.connect(f"sqlite:///{tmp_path}/s.db") as store:
        session = make_session()
        store.create_session(session)
        assert store.get_session(session.id) == session


def test_close_stops_the_thread_and_later_calls_fail(tmp_path: Path) -> None:
    """close() stops the loop thread; using the store afterwards is a clear error."""
    before = set(threading.enumerate())
    store = sync.connect(f"sqlite:///{tmp_path}/s.db")
    started = [t for t in set(threading.enumerate()) - before if t.name.startswith("chatledger")]
    assert started  # its loop thread (and the SQLite store's), so the check below checks something
    store.close()
    store.close()  # twice is fine
    # Only the store's own threads: other components' shared loops may live on.
    assert not [t for t in started if t.is_alive()]
    assert not store.is_connected
    with pytest.raises(StoreConnectionError):
        store.get_session(make_session().id)


def test_many_threads_share_one_client(tmp_path: Path) -> None:
    """Eight threads saving through one client lose nothing."""
    with sync.connect(f"sqlite:///{tmp_path}/s.db") as store:
        session = make_session()
        store.create_session(session)

        def work(n: int) -> None:
            for i in range(25):
                store.save_message(make_message(session, text=f"{n}-{i}"))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.count_session_messages(session.id) == 200


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_export_records_is_a_blocking_generator(tmp_path: Path, backend: str) -> None:
    """export_records yields chunks as a plain generator; leaving it early closes the export."""
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path}/s.db"
    with sync.connect(url) as store:
        calls = [make_api_call() for _ in range(5)]
        store.save_api_calls(calls)
        chunks = list(store.export_records("api_calls", QueryFilter(), chunk_size=2))
        assert [len(chunk) for chunk in chunks] == [2, 2, 1]
        assert [r["id"] for chunk in chunks for r in chunk] == sorted(str(c.id) for c in calls)
        assert store.count_records("api_calls", QueryFilter()) == 5
        partial = store.export_records("api_calls", QueryFilter(), chunk_size=2)
        assert len(next(partial)) == 2
        partial.close()
        with pytest.raises(ValueError, match="chunk_size"):
            next(store.export_records("api_calls", QueryFilter(), chunk_size=0))
        assert store.list_sessions(QueryFilter()) == []
    with pytest.raises(StoreConnectionError):
        next(store.export_records("api_calls", QueryFilter()))


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_ingest_records_has_a_blocking_twin(tmp_path: Path, backend: str) -> None:
    """ingest_records blocks like the rest; a batch ingested twice is stored once."""
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path}/s.db"
    with sync.connect(url) as store:
        session = make_session()
        messages = [make_message(session, text=str(i)) for i in range(3)]
        calls = [make_api_call(session) for _ in range(2)]
        for _ in range(2):
            assert store.ingest_records([session], messages, calls) is None
        assert store.get_session_messages(session.id) == messages
        assert store.count_records("api_calls", QueryFilter()) == 2
        store.ingest_records(calls=[make_api_call(session)])
        assert store.count_records("api_calls", QueryFilter()) == 3


def test_for_tenant_gives_a_blocking_view_on_the_same_loop() -> None:
    """SyncStore.for_tenant: a blocking tenant view; closing it leaves the store and loop open."""
    store = sync.connect("memory://")
    try:
        tenant, other = uuid7(), uuid7()
        mine, theirs = make_session(tenant_id=tenant), make_session(tenant_id=other)
        store.create_session(theirs)
        view = store.for_tenant(tenant)
        assert isinstance(view, sync.SyncStore)
        assert view.loop is store.loop
        view.create_session(mine)
        assert view.get_session(theirs.id) is None
        assert [s.id for s in view.list_sessions(QueryFilter())] == [mine.id]
        with pytest.raises(ConstraintError):
            view.create_session(make_session(tenant_id=other))
        assert next(iter(view.export_records("sessions", QueryFilter())))[0]["id"] == str(mine.id)
        view.close()
        view.close()
        with pytest.raises(StoreConnectionError):
            view.get_session(mine.id)
        assert store.get_session(mine.id) == mine  # the store and its loop go on
    finally:
        store.close()
    assert not view.is_connected


_ROOT = Path(__file__).resolve().parents[1]


def _generator() -> ModuleType:
    """scripts/generate_sync.py, imported from its path."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "generate_sync.py"
    spec = importlib.util.spec_from_file_location("generate_sync", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_blocking_methods_are_up_to_date() -> None:
    """src/chatledger/_sync_methods.py is what the generator writes from the protocols now.

    After changing a protocol in stores/base.py: python scripts/generate_sync.py
    """
    generator = _generator()
    assert generator.TARGET.read_text(encoding="utf-8") == generator.generate()


def test_every_protocol_coroutine_has_a_typed_twin() -> None:
    """Each coroutine of the store protocols is a method of SyncStore's class, not __getattr__'s."""
    coroutines = {
        name
        for cls in PersistenceStore.__mro__
        if cls.__module__ == "chatledger.stores.base"
        for name, value in vars(cls).items()
        if inspect.iscoroutinefunction(value) and not name.startswith("_")
    }
    assert len(coroutines) > 40
    assert coroutines <= set(dir(SyncMethods)) | {"close"}
    assert "close" in vars(sync.SyncStore)
    twin = inspect.signature(SyncMethods.page_api_calls)
    assert list(twin.parameters) == list(
        inspect.signature(PersistenceStore.page_api_calls).parameters
    )


def test_a_misspelt_method_fails_type_checking(tmp_path: Path) -> None:
    """mypy --strict knows every blocking method: a typo is an error, a right name's type holds."""
    program = tmp_path / "uses_sync.py"
    program.write_text(
        "from chatledger import QueryFilter, UsageStatistics, sync\n"
        "with sync.connect('memory://') as store:\n"
        "    stats: UsageStatistics = store.get_statistics(QueryFilter())\n"
        "    store.get_statistic(QueryFilter())\n",
        encoding="utf-8",
    )
    # Run as make lint runs it (the project's configuration: strict, the pydantic plugin),
    # so its cache serves and chatledger itself is not checked again.
    found = subprocess.run(
        [sys.executable, "-m", "mypy", str(program)],
        capture_output=True,
        text=True,
        cwd=_ROOT,
    )
    assert found.returncode == 1, found.stdout
    assert '"SyncStore" has no attribute "get_statistic"' in found.stdout
    assert found.stdout.count("error:") == 1, found.stdout


def test_a_backends_own_coroutine_runs_by_name_or_through_run(tmp_path: Path) -> None:
    """What the protocols do not name still works by name, and typed through ``run``."""
    with sync.connect(f"sqlite:///{tmp_path}/s.db") as store:
        assert store.run(store.store.schema_version()) == store.schema_version()
        session = make_session()
        store.create_session(session)
        store.save_message(make_message(session))
        # SQLite's own coroutine, found by name and run on the loop (at_most=0: takes none)
        assert store.index_pending_text(at_most=0) == 0
