"""``chatledger spool status|retry|drop``, run as a user would, on spools made for real.

Dead letters come from a real Recorder whose message names a parent that does
not exist: the store refuses it with ``ConstraintError`` and the shipper moves it
to the spool's dead letters. Records left waiting come from a child process that
records while its store is down and then dies.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from chatledger import LLMMessage, MessageRole, QueryFilter, StoreConnectionError, sync, uuid7
from chatledger.recording import Recorder, id_for_key, scope, spool_directory_for
from scratch_databases import SQL_BACKENDS, empty_tables
from test_cli import _answer_prompt, fails, ok, run


@pytest.fixture(params=SQL_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty chatledger database on each backend in turn."""
    if request.param == "sqlite":
        made = f"sqlite:///{tmp_path}/ledger.db"
    else:
        made = request.getfixturevalue(
            "postgres_url" if request.param == "postgresql" else "mysql_url"
        )
    with sync.connect(made):
        pass  # the schema
    if request.param != "sqlite":
        asyncio.run(empty_tables(made))
    return made


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An empty chatledger database in an SQLite file."""
    made = f"sqlite:///{tmp_path}/ledger.db"
    with sync.connect(made):
        pass
    return made


def dead_letters(url: str, session: str, count: int = 1) -> list[LLMMessage]:
    """Record ``count`` messages whose parent does not exist; the store refuses each for good."""
    with sync.connect(url) as store:
        recorder = Recorder(store)
        with scope(session_id=session):
            recorder.record_message_sync("user", "a question that is stored")
            refused = [
                recorder.record_message_sync(
                    "assistant", f"an answer to a lost question {n}", parent_id=uuid7()
                )
                for n in range(count)
            ]
        recorder.close_sync()
        assert recorder.stats()["dead_letters"] == count
    return refused


def status(url: str, *args: str) -> dict[str, Any]:
    """``spool status --json``."""
    answer: dict[str, Any] = json.loads(ok("spool", "status", "--json", *args, db=url))
    return answer


def all_letters(url: str) -> list[dict[str, Any]]:
    """Every dead letter ``spool status --json`` lists, over all spool files."""
    return [letter for spool in status(url)["spools"] for letter in spool["dead_letters"]]


def stored_ids(url: str, session_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids of the session's messages in the store."""
    with sync.connect(url) as store:
        return [m.id for m in store.get_session_messages(session_id)]


# --- status, retry --------------------------------------------------------------------------


def test_status_shows_a_dead_letter_and_retry_stores_it_once_storable(url: str) -> None:
    """A refused record is listed with its reason; retried after the fix, it lands in the store."""
    [refused] = dead_letters(url, "lost-parent")

    table = ok("spool", "status", db=url)
    assert "ended — ships when a recorder" in table
    assert "Dead letters in " in table
    assert "ConstraintError" in table
    assert "0 records waiting, 1 dead letter" in table
    found = status(url)
    [spool] = found["spools"]
    assert (spool["state"], spool["owner_alive"], spool["waiting"]) == ("ended", False, 0)
    [letter] = spool["dead_letters"]
    assert letter["kind"] == "message"
    assert "ConstraintError" in letter["error"]
    assert json.loads(letter["body"])["id"] == str(refused.id)
    assert (found["waiting"], found["dead_letters"]) == (0, 1)

    line = fails("spool", "retry", db=url)  # nothing has changed: refused again, status 1
    assert "1 of 1 dead letter refused again" in line
    assert [d["seq"] for d in all_letters(url)] == [letter["seq"]]
    assert refused.id not in stored_ids(url, refused.chat_session_id)

    parent = refused.parent_message_id
    assert parent is not None
    with sync.connect(url) as store:  # what was missing: the parent, under the same id
        store.save_message(
            LLMMessage.new(
                refused.chat_session_id, refused.agent_id, refused.user_id, refused.tenant_id,
                MessageRole.USER, "the lost question, found",
            ).model_copy(update={"id": parent})
        )  # fmt: skip
    assert "retried 1 dead letter: 1 stored, 0 refused again" in ok("spool", "retry", db=url)
    assert refused.id in stored_ids(url, refused.chat_session_id)
    assert "no spool for this database" in ok("spool", "status", db=url)  # emptied and removed
    assert status(url)["spools"] == []
    assert "nothing to retry" in ok("spool", "retry", db=url)


_DIES_WHILE_THE_STORE_IS_DOWN = textwrap.dedent(
    """
    import os, sys
    from chatledger import StoreConnectionError, sync
    from chatledger.recording import Recorder, scope

    store = sync.connect(sys.argv[1])
    async def down(*args, **kwargs):
        raise StoreConnectionError("the database is down (a test)")
    store.store.ingest_records = down
    recorder = Recorder(store)
    with scope(session_id="left-behind"):
        for n in range(3):
            recorder.record_message_sync("user", f"spooled {n}")
    print(len(recorder.spool), flush=True)
    os._exit(0)  # dies: no close, no atexit; what was acknowledged is in the spool
    """
)


def test_records_a_dead_process_left_waiting_are_shown_and_shipped_by_retry(url: str) -> None:
    """A spool whose owner died shows as ended with what waits; ``retry`` ships it all."""
    child = subprocess.run(
        [sys.executable, "-c", _DIES_WHILE_THE_STORE_IS_DOWN, url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert child.stdout.strip() == "4"  # the session and its three messages

    [spool] = status(url)["spools"]
    assert (spool["state"], spool["waiting"], spool["dead_letters"]) == ("ended", 4, [])
    assert "ended — ships when a recorder" in ok("spool", "status", db=url)

    done = json.loads(ok("spool", "retry", "--json", db=url))
    assert done["ended_spools"]["shipped"] == {"session": 1, "message": 3, "call": 0}
    assert done["ended_spools"]["still_waiting"] == 0
    assert done["dead_letters"]["retried"] == 0
    with sync.connect(url) as store:
        texts = [m.content.text for m in store.get_session_messages(id_for_key("left-behind"))]
    assert texts == ["spooled 0", "spooled 1", "spooled 2"]
    assert status(url)["spools"] == []


class _Down:
    """Makes a sync store's ingest_records fail as an unreachable database does."""

    def __init__(self, store: sync.SyncStore) -> None:
        self.down = True
        self._ingest = store.store.ingest_records
        store.store.ingest_records = self._ingest_records  # type: ignore[method-assign]

    async def _ingest_records(self, *args: Any, **kwargs: Any) -> None:
        if self.down:
            raise StoreConnectionError("the database is down (a test)")
        await self._ingest(*args, **kwargs)


def test_a_running_recorders_spool_is_shown_as_running_and_left_to_it(sqlite_url: str) -> None:
    """While its owner lives, a spool is 'running'; retry leaves its records to the owner."""
    with sync.connect(sqlite_url) as store:
        outage = _Down(store)
        recorder = Recorder(store, close_timeout=0)
        with scope(session_id="live"):
            recorder.record_message_sync("user", "waits while the store is down")
        try:
            [spool] = status(sqlite_url)["spools"]
            assert (spool["state"], spool["owner_alive"], spool["waiting"]) == ("running", True, 2)
            table = ok("spool", "status", db=sqlite_url)
            assert "running" in table
            assert "ended" not in table
            assert "nothing to retry" in ok("spool", "retry", db=sqlite_url)
            assert status(sqlite_url)["spools"][0]["waiting"] == 2
        finally:
            recorder.close_sync()  # close_timeout=0: the records stay, the owner ends
        [spool] = status(sqlite_url)["spools"]
        assert (spool["state"], spool["waiting"]) == ("ended", 2)
        outage.down = False
    assert "shipped 2 records (1 session, 1 message)" in ok("spool", "retry", db=sqlite_url)
    assert status(sqlite_url)["spools"] == []


# --- drop -----------------------------------------------------------------------------------


def test_drop_counts_refuses_without_yes_in_a_pipe_then_deletes(url: str) -> None:
    """``--dry-run`` counts; without ``--yes`` in a pipe nothing goes; ``--seq`` picks one."""
    first, second = dead_letters(url, "to-drop", count=2)
    seqs = [d["seq"] for d in all_letters(url)]
    assert len(seqs) == 2
    assert "would drop 2 dead letters from 1 spool file" in ok("spool", "drop", "--dry-run", db=url)
    assert "pass --yes" in fails("spool", "drop", db=url)
    assert len(all_letters(url)) == 2
    assert "no dead letter 999" in fails("spool", "drop", "--seq", "999", "--yes", db=url)

    assert "dropped 1 dead letter" in ok("spool", "drop", "--seq", str(seqs[0]), "--yes", db=url)
    [left] = all_letters(url)
    assert json.loads(left["body"])["id"] == str(second.id)
    dropped = json.loads(ok("spool", "drop", "--yes", "--json", db=url))
    assert dropped == {"dry_run": False, "dead_letters": 1, "spool_files": 1}
    assert status(url)["spools"] == []  # nothing left in an ended spool: removed
    assert "no dead letters to drop" in ok("spool", "drop", "--yes", db=url)
    assert first.id not in stored_ids(url, first.chat_session_id)


def test_drop_on_a_terminal_asks_first(sqlite_url: str) -> None:
    """On a terminal ``drop`` says what it would delete and deletes only on yes."""
    dead_letters(sqlite_url, "ask")
    code, shown = _answer_prompt(["spool", "drop", "--db", sqlite_url], b"n")
    assert code == 1
    assert "drop 1 dead letter from 1 spool file for good?" in shown
    assert "nothing dropped" in shown
    assert len(all_letters(sqlite_url)) == 1
    code, shown = _answer_prompt(["spool", "drop", "--db", sqlite_url], b"y")
    assert code == 0
    assert "dropped 1 dead letter for good" in shown
    assert all_letters(sqlite_url) == []


def test_a_seq_in_two_spool_files_needs_file(sqlite_url: str) -> None:
    """Dead letters are numbered per file: a number two files hold is refused until --file."""
    with sync.connect(sqlite_url) as store:
        one, two = Recorder(store), Recorder(store)  # alive together: two spool files
        for number, recorder in enumerate((one, two)):
            with scope(session_id=f"twin-{number}"):
                recorder.record_message_sync("assistant", "lost", parent_id=uuid7())
        one.close_sync()
        two.close_sync()
    spools = status(sqlite_url)["spools"]
    assert len(spools) == 2
    seq = spools[0]["dead_letters"][0]["seq"]
    assert seq == spools[1]["dead_letters"][0]["seq"]
    line = fails("spool", "drop", "--seq", str(seq), "--yes", db=sqlite_url)
    assert "is in 2 spool files" in line
    assert "--file" in line
    name = spools[1]["file"]
    ok("spool", "drop", "--seq", str(seq), "--file", name, "--yes", db=sqlite_url)
    assert [s["file"] for s in status(sqlite_url)["spools"]] == [spools[0]["file"]]
    assert "no spool file 'nope'" in fails("spool", "retry", "--file", "nope", db=sqlite_url)


# --- where spools are, and what cannot be read ------------------------------------------------


def test_spool_dir_overrides_the_root_and_nothing_there_is_said_plainly(
    sqlite_url: str, tmp_path: Path
) -> None:
    """``--spool-dir`` names the root the database's directory is in; an empty one says so."""
    root = tmp_path / "elsewhere"
    with sync.connect(sqlite_url) as store:
        recorder = Recorder(store, spool=spool_directory_for(store.store, root))
        with scope(session_id="elsewhere"):
            recorder.record_message_sync("assistant", "lost", parent_id=uuid7())
        recorder.close_sync()
    assert "no spool for this database" in ok("spool", "status", db=sqlite_url)
    found = status(sqlite_url, "--spool-dir", str(root))
    assert len(found["spools"]) == 1
    assert found["spool_directory"].startswith(str(root.resolve()))
    assert "1 dead letter" in ok("spool", "status", "--spool-dir", str(root), db=sqlite_url)
    unset = run("spool", "status", "--json", "--spool-dir", str(root), db=sqlite_url,
                CHATLEDGER_SPOOL_DIR="")  # fmt: skip
    assert len(json.loads(unset.stdout)["spools"]) == 1


def test_damaged_spool_files_are_rows_not_crashes(sqlite_url: str, spool_dir: Path) -> None:
    """A spool that cannot be read, and one a recorder set aside, are listed as damaged."""
    with sync.connect(sqlite_url) as store:
        directory = spool_directory_for(store.store, spool_dir).resolve()
    directory.mkdir(parents=True)
    (directory / "999999-garbage.spool").write_bytes(b"this is not a database at all" * 100)
    (directory / "888888-old.spool.damaged-a1b2c3").write_bytes(b"kept for salvage")
    (directory / "888888-old.spool.damaged-a1b2c3-wal").write_bytes(b"")

    table = ok("spool", "status", db=sqlite_url)
    assert "999999-garbage.spool" in table
    assert "damaged, set aside" in table
    assert "-wal" not in table
    spools = {s["file"]: s for s in status(sqlite_url)["spools"]}
    assert set(spools) == {"999999-garbage.spool", "888888-old.spool.damaged-a1b2c3"}
    assert all(s["state"] == "damaged" and s["error"] for s in spools.values())
    assert "999999-garbage.spool" in spools["999999-garbage.spool"]["error"]
    skipped = ok("spool", "retry", db=sqlite_url)
    assert "skipped" in skipped
    assert (directory / "999999-garbage.spool").exists()  # never deleted by a command


def test_status_and_drop_need_no_database_and_never_create_one(tmp_path: Path) -> None:
    """The spool matters most while the database is down: status and drop never connect.

    retry puts records into the database, so it needs one: a missing file is an error.
    """
    missing = f"sqlite:///{tmp_path}/missing.db"
    assert "no spool for this database" in ok("spool", "status", db=missing)
    unreachable = "postgresql://nobody:hunter2@127.0.0.1:1/nowhere"
    assert "no spool for this database" in ok("spool", "status", db=unreachable)
    ok("spool", "drop", "--yes", db=missing)
    assert "no database at" in fails("spool", "retry", db=missing)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize(
    "command", [("spool",), ("spool", "status"), ("spool", "retry"), ("spool", "drop")]
)
def test_every_spool_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    """``--help`` describes each spool command, shows an example and fits 80 columns."""
    out = ok(*command, "--help")
    assert "examples:" in out
    assert f"chatledger {' '.join(command)}" in out.split("examples:")[1]


def test_retry_never_ships_a_spool_written_for_another_database(
    sqlite_url: str, tmp_path: Path, spool_dir: Path
) -> None:
    """A spool file naming another database, found in this one's directory, is left alone."""
    other = f"sqlite:///{tmp_path}/other.db"
    with sync.connect(sqlite_url) as store:
        directory = spool_directory_for(store.store, spool_dir).resolve()
    with sync.connect(other) as store:
        _Down(store)
        recorder = Recorder(store, spool=directory, close_timeout=0)  # the wrong directory
        with scope(session_id="not-yours"):
            recorder.record_message_sync("user", "for the other database")
        recorder.close_sync()
    [spool] = status(sqlite_url)["spools"]
    assert (spool["state"], spool["waiting"]) == ("ended", 2)
    done = json.loads(ok("spool", "retry", "--json", db=sqlite_url))
    [skipped] = done["ended_spools"]["skipped"]
    assert "another database" in skipped
    assert done["ended_spools"]["shipped"]["message"] == 0
    assert status(sqlite_url)["spools"][0]["waiting"] == 2  # still there, for its own database
    with sync.connect(sqlite_url) as store:
        assert store.list_sessions(QueryFilter()) == []
