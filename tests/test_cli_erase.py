"""``chatledger erase`` and ``chatledger prune --keep``, run as a user runs them.

A small known ledger is written through the library; the installed script
then runs in a subprocess and what it prints, and what it leaves in the
database, is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from chatledger import NIL_UUID, QueryFilter, sync, uuid7
from chatledger.testing import make_agent, make_api_call, make_message, make_provider, make_session
from scratch_databases import SQL_BACKENDS, emptied_url

CHATLEDGER = Path(sys.executable).with_name("chatledger")


def run(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``chatledger`` with ``args`` and ``--db db``, no colours, 80 columns."""
    environment = {k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"}
    environment.update({"COLUMNS": "80", "NO_COLOR": "1"})
    return subprocess.run(
        [str(CHATLEDGER), *args, "--db", db],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def ok(*args: str, db: str) -> str:
    """Standard output of a command that must succeed, its lines joined (a screen wraps them)."""
    done = run(*args, db=db)
    assert done.returncode == 0, done.stderr
    return done.stdout if "--json" in args else " ".join(done.stdout.split())


def fails(*args: str, db: str, status: int = 1) -> str:
    """Standard error of a command that must fail with ``status``, never with a traceback."""
    done = run(*args, db=db)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


@dataclass
class Ledger:
    """What ``fill`` wrote."""

    url: str
    tenant: uuid.UUID
    user: uuid.UUID
    other: uuid.UUID
    sessions: list[uuid.UUID]
    user_calls: list[uuid.UUID]


def fill(url: str) -> Ledger:
    """Two users of one tenant: the user with two sessions (one 100 days old), the other one."""
    now = datetime.now(UTC).replace(microsecond=0)
    tenant, user, other = uuid7(), uuid7(), uuid7()
    old = make_session(user_id=user, tenant_id=tenant, create_time=now - timedelta(days=100))
    recent = make_session(user_id=user, tenant_id=tenant, create_time=now - timedelta(hours=2))
    theirs = make_session(user_id=other, tenant_id=tenant, create_time=now - timedelta(hours=1))
    provider = make_provider(tenant_id=tenant, api_key="")
    calls = []
    with sync.connect(url) as store:
        for session in (old, recent, theirs):
            store.create_session(session)
            asked = make_message(
                session, "my address is 1 Main St", create_time=session.create_time
            )
            store.save_message(asked)
            calls.append(
                make_api_call(
                    session,
                    request_message_id=asked.id,
                    total_price=Decimal("0.25"),
                    error_message="about 1 Main St",
                    create_time=session.create_time,
                )
            )
        store.save_api_calls(calls)
        store.save_provider(provider)
        store.save_agent(make_agent(provider))
    return Ledger(
        url, tenant, user, other, [old.id, recent.id, theirs.id], [c.id for c in calls[:2]]
    )


@pytest.fixture(params=SQL_BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """The known ledger on each SQL backend in turn."""
    return fill(emptied_url(request, tmp_path, request.param))


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Ledger:
    """The known ledger in an SQLite file."""
    return fill(f"sqlite:///{tmp_path}/ledger.db")


def test_erase_user_counts_first_then_erases_and_keeps_the_totals(ledger: Ledger) -> None:
    """Without --yes it counts and changes nothing; with it the user's records go, calls stay."""
    before = json.loads(ok("stats", "--json", db=ledger.url))
    preview = ok("erase", "--user", str(ledger.user), db=ledger.url)
    assert f"erasing user {ledger.user} would leave" in preview
    assert "2 sessions and 2 messages deleted; 2 API calls anonymised" in preview
    assert "nothing changed: pass --yes to erase" in preview
    with sync.connect(ledger.url) as store:
        assert len(store.get_user_sessions(ledger.user)) == 2
    report = json.loads(ok("erase", "--user", str(ledger.user), "--yes", "--json", db=ledger.url))
    assert report["user_id"] == str(ledger.user)
    assert report["dry_run"] is False
    assert (
        report["sessions_deleted"],
        report["messages_deleted"],
        report["api_calls_anonymised"],
    ) == (2, 2, 2)
    assert json.loads(ok("stats", "--json", db=ledger.url)) == before
    with sync.connect(ledger.url) as store:
        assert store.get_user_sessions(ledger.user) == []
        assert store.get_session(ledger.sessions[2]) is not None
        for call_id in ledger.user_calls:
            call = store.get_api_call(call_id)
            assert call is not None
            assert (call.user_id, call.chat_session_id, call.error_message) == (
                NIL_UUID,
                NIL_UUID,
                None,
            )
            assert call.total_price == Decimal("0.25")
    again = ok("erase", "--user", str(ledger.user), "--yes", db=ledger.url)
    assert f"nothing to erase: no record of user {ledger.user}" in again


def test_erase_tenant_deletes_its_providers_and_agents_too(sqlite_ledger: Ledger) -> None:
    """A tenant's erasure says how many providers and agents went with its sessions."""
    url = sqlite_ledger.url
    shown = ok("erase", "--tenant", str(sqlite_ledger.tenant), "--yes", db=url)
    assert shown == (
        f"erased tenant {sqlite_ledger.tenant}: 3 sessions, 3 messages, 1 provider and "
        "1 agent deleted; 3 API calls anonymised (tokens and cost kept)"
    )
    with sync.connect(url) as store:
        assert store.list_providers(sqlite_ledger.tenant) == []
        assert store.count_records("sessions", QueryFilter()) == 0
        assert store.get_statistics(QueryFilter().tenant(sqlite_ledger.tenant)).total_calls == 3


def test_erase_refuses_what_it_cannot_erase(sqlite_ledger: Ledger) -> None:
    """No subject, both, or a bad UUID: a usage error (2); the nil user: one line (1)."""
    url = sqlite_ledger.url
    assert "one of the arguments --user --tenant is required" in fails("erase", db=url, status=2)
    both = fails("erase", "--user", str(uuid7()), "--tenant", str(uuid7()), db=url, status=2)
    assert "not allowed with argument" in both
    assert "is not a UUID" in fails("erase", "--user", "alice", db=url, status=2)
    refused = fails("erase", "--user", str(NIL_UUID), "--yes", db=url)
    assert "nil user" in refused
    assert len(refused.strip().splitlines()) == 1
    with sync.connect(url) as store:
        assert store.count_records("sessions", QueryFilter()) == 3


def test_prune_keep_prunes_what_is_older_than_the_period(sqlite_ledger: Ledger) -> None:
    """``--keep 90d`` is ``--before 90d``: the old session and its call go, the rest stay."""
    url = sqlite_ledger.url
    assert "would delete 1 API calls" in ok("prune", "--keep", "90d", "--dry-run", db=url)
    done = json.loads(ok("prune", "--keep", "90d", "--yes", "--json", db=url))
    assert (done["api_calls"], done["sessions"]) == (1, 1)
    with sync.connect(url) as store:
        assert store.get_session(sqlite_ledger.sessions[0]) is None
        assert store.get_session(sqlite_ledger.sessions[1]) is not None


def test_prune_keep_takes_durations_only(sqlite_ledger: Ledger) -> None:
    """A date, a bare number or both --keep and --before are usage errors."""
    url = sqlite_ledger.url
    assert "is not a duration" in fails("prune", "--keep", "2026-01-01", db=url, status=2)
    assert "is not a duration" in fails("prune", "--keep", "90", db=url, status=2)
    both = fails("prune", "--keep", "90d", "--before", "30d", db=url, status=2)
    assert "not allowed with argument" in both
    assert "--before --keep" in fails("prune", "--yes", db=url, status=2)
