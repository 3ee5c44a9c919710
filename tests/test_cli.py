"""The ``chatledger`` console script, run in a subprocess against SQLite, PostgreSQL and MariaDB.

Each test writes a small known ledger through the library (three sessions,
tool calls, a refused call, one session 100 days old), then runs the
installed script as a user would and reads what it prints.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import chatledger
from chatledger import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    QueryFilter,
    ToolCallContent,
    ToolResultContent,
    sync,
    uuid7,
)
from scratch_databases import (
    SQL_BACKENDS,
    emptied_url,
    mysql_database,
    postgres_database,
)

CHATLEDGER = Path(sys.executable).with_name("chatledger")
ROLE_LINE = re.compile(r"^(user|assistant|tool|system)  \d{4}-\d{2}-\d{2} ")
WIDTH = 80


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment on an 80-column screen, no database URL, then ``extra``."""
    environment = {k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"}
    environment.update({"COLUMNS": str(WIDTH), **extra})
    return environment


def run(
    *args: str, db: str | None = None, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``chatledger`` with ``args`` (then ``--db db``) on an 80-column screen."""
    environment = _environment(NO_COLOR="1", **env)
    command = [str(CHATLEDGER), *args, *(["--db", db] if db else [])]
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd=cwd, timeout=120, check=False
    )


def ok(*args: str, db: str | None = None, **env: str) -> str:
    """Standard output of a command that must succeed; a table for people must fit the screen."""
    done = run(*args, db=db, **env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    if "--json" not in args and args[0] != "export":
        too_wide = [line for line in done.stdout.splitlines() if len(line) > WIDTH]
        assert not too_wide, done.stdout
    return done.stdout


def fails(*args: str, db: str | None = None, status: int = 1, **env: str) -> str:
    """The one line a failing command prints on standard error."""
    done = run(*args, db=db, **env)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    if status == 1:
        assert len(lines) == 1, done.stderr
    return lines[-1]


@dataclass
class Ledger:
    """What ``fill`` wrote, to check the commands' answers against."""

    url: str
    tenant: uuid.UUID
    user: uuid.UUID
    other_user: uuid.UUID
    agent: uuid.UUID
    order: ChatSession
    refund: ChatSession
    old: ChatSession
    calls: list[LLMApiCall]
    now: datetime


def _message(
    session: ChatSession, role: MessageRole, content: MessageContent | str, at: datetime
) -> LLMMessage:
    message = LLMMessage.new(
        session.id, session.agent_id, session.user_id, session.tenant_id, role, content
    )
    return message.model_copy(update={"create_time": at, "update_time": at})


def _call(
    session: ChatSession,
    request: LLMMessage,
    response: LLMMessage | None,
    model: str,
    tokens: tuple[int, int],
    at: datetime,
    **extra: object,
) -> LLMApiCall:
    if response is None:
        return LLMApiCall.failed(
            session.id, session.agent_id, session.user_id, session.tenant_id, request.id,
            model, "Rate limit reached for requests", "429", at,
            status=ApiCallStatus.RATE_LIMITED,
        )  # fmt: skip
    call = LLMApiCall.success(
        session.id, session.agent_id, session.user_id, session.tenant_id, request.id,
        response.id, model, tokens[0], tokens[1], at, at + timedelta(milliseconds=800),
    )  # fmt: skip
    return call.model_copy(update=extra) if extra else call


def fill(url: str) -> Ledger:
    """Three sessions: an order with a tool call, a refund with a 429, an old chat."""
    now = datetime.now(UTC).replace(microsecond=0)
    tenant, user, other_user, agent = uuid7(), uuid7(), uuid7(), uuid7()

    def session(owner: uuid.UUID, title: str | None, at: datetime) -> ChatSession:
        made = ChatSession.new(owner, agent).with_tenant_id(tenant)
        made = made.with_title(title) if title else made
        return made.model_copy(update={"create_time": at, "update_time": at})

    order = session(user, "Where is order 42?", now - timedelta(hours=3))
    refund = session(other_user, None, now - timedelta(hours=1))
    old = session(user, "Old chat", now - timedelta(days=100))

    t = order.create_time
    asked = _message(order, MessageRole.USER, "Where is order 42?", t)
    lookup = ToolCallContent(id="call_1", name="lookup_order", arguments={"order": 42})
    tool_call = _message(
        order,
        MessageRole.ASSISTANT,
        MessageContent.from_tool_calls([lookup]),
        t + timedelta(seconds=1),
    )
    result = ToolResultContent(tool_call_id="call_1", content="shipped on Monday")
    tool_result = _message(
        order, MessageRole.TOOL, MessageContent.from_tool_result(result), t + timedelta(seconds=2)
    )
    answer = _message(
        order, MessageRole.ASSISTANT, "It shipped on Monday.", t + timedelta(seconds=3)
    )

    r = refund.create_time
    refund_asked = _message(refund, MessageRole.USER, "I want a refund.", r)
    refund_answer = _message(
        refund, MessageRole.ASSISTANT, "Your refund has started.", r + timedelta(seconds=5)
    )

    o = old.create_time
    hello = _message(old, MessageRole.USER, "hello", o)
    hi = _message(old, MessageRole.ASSISTANT, "hi", o + timedelta(seconds=1))

    second = timedelta(seconds=1)
    calls = [
        _call(old, hello, hi, "gpt-4o-mini", (20, 2), o),
        _call(
            order, asked, tool_call, "gpt-4o-mini", (120, 15), t,
            total_price=Decimal("0.000123"),
        ),
        _call(
            order, tool_result, answer, "gpt-4o-mini", (150, 9), t + 2 * second,
            time_to_first_token_ms=200,
        ),
        _call(refund, refund_asked, None, "gpt-4o", (0, 0), r + second),
        _call(
            refund, refund_asked, refund_answer, "gpt-4o", (200, 20), r + 3 * second,
            total_price=Decimal("0.0015"),
        ),
    ]  # fmt: skip
    with sync.connect(url) as store:
        for made in (order, refund, old):
            store.create_session(made)
        store.save_messages(
            [asked, tool_call, tool_result, answer, refund_asked, refund_answer, hello, hi]
        )
        store.save_api_calls(calls)
    return Ledger(url, tenant, user, other_user, agent, order, refund, old, calls, now)


@pytest.fixture(params=SQL_BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """The known ledger on each backend in turn."""
    return fill(emptied_url(request, tmp_path, request.param))


# --- every command, on every backend ------------------------------------------------------


def test_sessions_lists_newest_activity_first_with_message_counts(ledger: Ledger) -> None:
    """``sessions`` shows every session, most recently active first, with its messages."""
    listed = json.loads(ok("sessions", "--json", db=ledger.url))
    assert [s["id"] for s in listed] == [
        str(s.id) for s in (ledger.refund, ledger.order, ledger.old)
    ]
    assert [s["message_count"] for s in listed] == [2, 4, 2]
    assert listed[1]["title"] == "Where is order 42?"

    table = ok("sessions", db=ledger.url)
    assert table.index(str(ledger.refund.id)) < table.index(str(ledger.order.id))
    assert "Where is order" in table  # the title wraps to fit 80 columns
    assert "1-3 of 3 sessions" in table


def test_sessions_filters_and_pages(ledger: Ledger) -> None:
    """``--user`` narrows the list; ``--limit``/``--offset`` page it and name the next page."""
    mine = json.loads(ok("sessions", "--user", str(ledger.user), "--json", db=ledger.url))
    assert [s["id"] for s in mine] == [str(ledger.order.id), str(ledger.old.id)]
    first = ok("sessions", "--limit", "1", db=ledger.url)
    assert str(ledger.refund.id) in first
    assert "1-1 of 3 sessions; next page: --offset 1" in first
    second = json.loads(ok("sessions", "--limit", "1", "--offset", "1", "--json", db=ledger.url))
    assert [s["id"] for s in second] == [str(ledger.order.id)]
    recent = json.loads(ok("sessions", "--since", "7d", "--json", db=ledger.url))
    assert {s["id"] for s in recent} == {str(ledger.refund.id), str(ledger.order.id)}


def test_show_prints_the_conversation_with_each_turns_usage(ledger: Ledger) -> None:
    """``show`` prints roles, tool calls and results, and each reply's model, tokens and cost."""
    out = ok("show", str(ledger.order.id), db=ledger.url)
    assert "Where is order 42?" in out
    assert '-> lookup_order({"order": 42})' in out
    assert "<- [call_1] shipped on Monday" in out
    assert "It shipped on Monday." in out
    assert "gpt-4o-mini · 120 in, 15 out · $0.000123 · 800 ms" in out
    assert "first token 200 ms" in out
    assert "2 calls (0 failed), 294 tokens" in out
    roles = [line.split()[0] for line in out.splitlines() if ROLE_LINE.match(line)]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_show_latest_and_a_refused_call(ledger: Ledger) -> None:
    """``show latest`` is the last active session; a refused call shows its status and code."""
    out = ok("show", "latest", db=ledger.url)
    assert str(ledger.refund.id) in out
    assert "x gpt-4o: rate_limited 429" in out
    assert "Rate limit reached for requests" in out
    data = json.loads(ok("show", "latest", "--last", "1", "--json", db=ledger.url))
    assert data["session"]["id"] == str(ledger.refund.id)
    assert [m["content"]["text"] for m in data["messages"]] == ["Your refund has started."]
    assert [c["status"] for c in data["api_calls"]] == ["rate_limited", "success"]


def test_stats_totals_match_the_store(ledger: Ledger) -> None:
    """``stats --json`` is the store's own statistics; the table shows its figures."""
    figures = json.loads(ok("stats", "--json", db=ledger.url))
    with sync.connect(ledger.url) as store:
        expected = store.get_statistics(QueryFilter())
    assert expected.total_cost is not None
    assert Decimal(figures["total_cost"]) == expected.total_cost  # exact, as text
    assert figures == {
        **json.loads(expected.model_dump_json()),
        "total_cost": figures["total_cost"],
    }
    assert figures["failed_count"] == sum(
        count for status, count in figures["status_counts"].items() if status != "success"
    )
    assert figures["total_calls"] == 5
    assert figures["status_counts"]["rate_limited"] == 1

    table = ok("stats", db=ledger.url)
    assert "Usage: every call" in table
    assert "failed" in table
    assert "1 (rate_limited 1)" in table
    week = json.loads(ok("stats", "--since", "7d", "--json", db=ledger.url))
    assert week["total_calls"] == 4
    mini = json.loads(
        ok("stats", "--model", "gpt-4o-mini", "--status", "success", "--json", db=ledger.url)
    )
    assert mini["total_calls"] == 3


def test_stats_breaks_down_by_keys_and_buckets(ledger: Ledger) -> None:
    """``--by`` and ``--bucket`` give the store's breakdown, as JSON and as a table."""
    rows = json.loads(ok("stats", "--by", "model,status", "--json", db=ledger.url))
    with sync.connect(ledger.url) as store:
        expected = store.get_usage_breakdown(QueryFilter(), ["model", "status"])
    for row, model in zip(rows, expected, strict=True):
        shown = json.loads(model.model_dump_json())
        if model.stats.total_cost is not None:
            assert Decimal(row["stats"]["total_cost"]) == model.stats.total_cost
            shown["stats"]["total_cost"] = row["stats"]["total_cost"]
        assert row == shown
    daily = json.loads(
        ok("stats", "--since", "7d", "--bucket", "day", "--by", "user", "--json", db=ledger.url)
    )
    assert sum(row["stats"]["total_calls"] for row in daily) == 4
    assert all(row["bucket_start"] for row in daily)

    table = ok("stats", "--by", "model", "--bucket", "month", db=ledger.url)
    assert "gpt-4o-mini" in table
    assert "gpt-4o " in table
    assert "p95" in table


def test_calls_newest_first_and_filtered(ledger: Ledger) -> None:
    """``calls`` lists the ledger newest first; ``--status`` finds the refused call."""
    listed = json.loads(ok("calls", "--json", db=ledger.url))
    assert [c["id"] for c in listed] == [str(c.id) for c in reversed(ledger.calls)]
    refused = json.loads(ok("calls", "--status", "rate_limited", "--json", db=ledger.url))
    assert [c["error_code"] for c in refused] == ["429"]
    assert [c["response_message_id"] for c in refused] == [None]  # stored as MoFA's nil UUID
    priced = [c for c in listed if c.get("total_price") is not None]
    assert priced
    assert all(isinstance(c["total_price"], str) for c in priced)  # exact decimal text
    assert "0.000123" in {c["total_price"] for c in priced}
    table = ok("calls", "--limit", "2", db=ledger.url)
    assert "rate_limited" in table
    assert "1-2 of 5 API calls; next page: --offset 2" in table


def test_export_writes_each_kind_as_json_lines_and_csv(ledger: Ledger, tmp_path: Path) -> None:
    """``export`` writes every record as the entity's own JSON, or one CSV row each."""
    lines = ok("export", "api-calls", db=ledger.url).splitlines()
    assert [json.loads(line) for line in lines] == [
        json.loads(c.model_dump_json()) for c in ledger.calls
    ]

    out = tmp_path / "messages.csv.gz"
    done = run(
        "export", "messages", "--session", str(ledger.order.id), "-o", str(out), db=ledger.url
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 4 messages" in done.stderr
    with gzip.open(out, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["role"] for row in rows] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(rows[1]["content"])["tool_calls"][0]["name"] == "lookup_order"
    assert not (tmp_path / "messages.csv.gz.partial").exists()

    sessions = [
        json.loads(line)
        for line in ok("export", "sessions", "--since", "7d", db=ledger.url).splitlines()
    ]
    assert {s["id"] for s in sessions} == {str(ledger.order.id), str(ledger.refund.id)}


def test_prune_counts_first_then_deletes_what_is_old(ledger: Ledger) -> None:
    """``prune --dry-run`` counts; without ``--yes`` nothing goes; with it the old records go."""
    assert "would delete 1 API calls" in ok("prune", "--before", "30d", "--dry-run", db=ledger.url)
    refused = fails("prune", "--before", "30d", db=ledger.url)
    assert "pass --yes" in refused
    deleted = json.loads(ok("prune", "--before", "30d", "--yes", "--json", db=ledger.url))
    assert (deleted["api_calls"], deleted["sessions"]) == (1, 1)
    with sync.connect(ledger.url) as store:
        assert store.get_session(ledger.old.id) is None
        assert store.count_session_messages(ledger.old.id) == 0
        assert store.get_statistics(QueryFilter()).total_calls == 4
        assert store.get_session(ledger.order.id) is not None
    assert "nothing to prune" in ok("prune", "--before", "30d", "--yes", db=ledger.url)


def test_db_status_reports_version_and_counts(ledger: Ledger) -> None:
    """``db status`` names the backend, says the schema is current and counts the records."""
    status = json.loads(ok("db", "status", "--json", db=ledger.url))
    assert status["current"] is True
    assert status["counts"] == {"sessions": 3, "messages": 8, "api_calls": 5}
    assert "(current)" in ok("db", "status", db=ledger.url)


def test_db_rebuild_rollups_recounts_what_was_written_around_chatledger(ledger: Ledger) -> None:
    """``db rebuild-rollups`` recounts every call, shows its steps, and ends with one line.

    A call deleted by plain SQL (not through chatledger) stays in the rollups'
    statistics until the rebuild.
    """
    before = json.loads(ok("stats", "--json", db=ledger.url))
    done = run("db", "rebuild-rollups", db=ledger.url)
    assert done.returncode == 0, done.stderr
    assert "step 1 of" in done.stderr
    assert re.fullmatch(r"usage rollups rebuilt from 5 API calls in \d+\.\d s\n", done.stdout)
    rebuilt = json.loads(ok("db", "rebuild-rollups", "--json", db=ledger.url))
    assert rebuilt["api_calls"] == 5
    assert json.loads(ok("stats", "--json", db=ledger.url)) == before
    if ledger.url.startswith("sqlite"):
        with sqlite3.connect(ledger.url.removeprefix("sqlite:///")) as conn:
            conn.execute("DELETE FROM entity_llm_api_call WHERE id = ?", (str(ledger.calls[0].id),))
        with sync.connect(ledger.url) as store:
            assert store.get_statistics(QueryFilter()).total_calls == 5  # the rollups: stale
            assert store.rebuild_rollups() == 4
            assert store.get_statistics(QueryFilter()).total_calls == 4


# --- the schema commands on new databases -------------------------------------------------


def test_db_upgrade_creates_then_has_nothing_to_do_on_sqlite(tmp_path: Path) -> None:
    """``db upgrade`` creates the tables once; reading commands refuse a database without them."""
    url = f"sqlite:///{tmp_path}/new.db"
    assert "no database at" in fails("sessions", db=url)
    assert not (tmp_path / "new.db").exists()  # a read never creates a file
    assert "created chatledger's tables" in ok("db", "upgrade", db=url)
    assert "nothing to do" in ok("db", "upgrade", db=url)
    assert "no sessions match" in ok("sessions", db=url)


@pytest.mark.server
@pytest.mark.parametrize("server", [postgres_database, mysql_database])
def test_db_upgrade_status_and_demo_on_a_new_server_database(
    server: Callable[[], AbstractContextManager[str]],
) -> None:
    """On an empty server database: status says to upgrade, upgrade creates, the demo records."""
    with server() as url:
        status = json.loads(ok("db", "status", "--json", db=url))
        assert (status["schema_version"], status["current"]) == (0, False)
        assert "run 'chatledger db upgrade'" in fails("calls", db=url)
        upgraded = json.loads(ok("db", "upgrade", "--json", db=url))
        assert upgraded["from_version"] == 0
        assert upgraded["to_version"] == status["latest_schema_version"]
        assert json.loads(ok("db", "status", "--json", db=url))["current"] is True

        assert "Usage by model" in ok("demo", db=url)
        counts = json.loads(ok("db", "status", "--json", db=url))["counts"]
        assert counts["sessions"] == 3
        assert counts["api_calls"] > 0


# --- choosing the database, and mistakes ---------------------------------------------------


def test_database_comes_from_the_environment_then_the_default(tmp_path: Path) -> None:
    """Without ``--db`` the URL comes from ``$CHATLEDGER_DATABASE_URL``, else ./chatledger.db."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill(url)
    from_env = run("sessions", "--json", CHATLEDGER_DATABASE_URL=url)
    assert len(json.loads(from_env.stdout)) == 3
    default = run("sessions", cwd=tmp_path)
    assert default.returncode == 1
    assert "no database at chatledger.db" in default.stderr
    (tmp_path / "ledger.db").rename(tmp_path / "chatledger.db")
    assert len(json.loads(run("sessions", "--json", cwd=tmp_path).stdout)) == 3


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("sessions", "--db", "oracle://db/x"), "cannot tell the backend"),
        (("sessions", "--db", "postgresql://postgres:hunter2@127.0.0.1:1/x"), "127.0.0.1:1"),
        (("show", "not-a-session"), "is not a session id"),
        (("show", str(uuid.UUID(int=7))), "no session"),
        (("export", "messages", "--status", "failed"), "status"),
        (("stats", "--since", "1d", "--until", "2d"), "must be before --until"),
    ],
)
def test_mistakes_end_with_one_clear_line(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    """A bad URL, an unreachable server, a bad id or filter: one line on stderr, status 1."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill(url)
    db = None if "--db" in args else url
    line = fails(*args, db=db)
    assert line.startswith("chatledger ")
    assert says in line
    assert "hunter2" not in line


def test_a_missing_driver_says_which_extra_to_install(tmp_path: Path) -> None:
    """Without asyncpg the command says to install chatledger[postgres], in one line."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "asyncpg.py").write_text("raise ImportError('No module named asyncpg')\n")
    line = fails("sessions", db="postgresql://postgres@127.0.0.1/test", PYTHONPATH=str(shadow))
    assert "pip install 'chatledger[postgres]'" in line


@pytest.mark.parametrize("value", ["yesterday-ish", "7 parsecs"])
def test_bad_times_are_refused_by_the_option_parser(value: str) -> None:
    """A time that is neither an age nor an ISO date is refused with the option's name."""
    done = run("stats", "--since", value)
    assert done.returncode == 2
    assert "--since" in done.stderr
    assert "not a time" in done.stderr


def test_export_refuses_to_replace_a_file_without_force(tmp_path: Path) -> None:
    """An existing output file is kept unless ``--force``; the export then replaces it whole."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = fill(url)
    out = tmp_path / "calls.jsonl"
    out.write_text("keep me\n")
    assert "--force" in fails("export", "api-calls", "-o", str(out), db=url)
    assert out.read_text() == "keep me\n"
    ok("export", "api-calls", "-o", str(out), "--force", "--quiet", db=url)
    assert len(out.read_text().splitlines()) == len(ledger.calls)


@pytest.mark.parametrize(
    "command",
    [
        ("demo",), ("db",), ("db", "upgrade"), ("db", "status"), ("sessions",), ("show",),
        ("stats",), ("calls",), ("export",), ("prune",), ("ui",),
    ],
)  # fmt: skip
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    """``--help`` on every command describes it, shows an example and fits 80 columns."""
    out = ok(*command, "--help")
    assert "examples:" in out
    assert f"chatledger {' '.join(command)}" in out.split("examples:")[1]


def _read_to_the_end(terminal: int) -> bytes:
    """Everything a child writes to a pseudo-terminal until it closes it."""
    drawn = b""
    while True:
        try:
            piece = os.read(terminal, 4096)
        except OSError:  # Linux reports the far side closing as EIO
            return drawn
        if not piece:
            return drawn
        drawn += piece


def test_export_shows_progress_on_a_terminal_and_none_in_a_pipe(tmp_path: Path) -> None:
    """With standard error on a terminal the export draws a progress bar; piped, it stays quiet."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    fill(url)
    out = tmp_path / "calls.jsonl"
    leader, follower = pty.openpty()
    environment = _environment(TERM="xterm")
    with subprocess.Popen(
        [str(CHATLEDGER), "export", "api-calls", "-o", str(out), "--db", url],
        stdout=subprocess.DEVNULL, stderr=follower, env=environment,
    ) as child:  # fmt: skip
        os.close(follower)
        drawn = _read_to_the_end(leader)
        assert child.wait(timeout=60) == 0
    os.close(leader)
    assert b"exporting api-calls" in drawn
    assert b"wrote 5 api-calls" in drawn
    piped = run("export", "api-calls", "-o", str(out), "--force", db=url)
    assert "exporting" not in piped.stderr


def _answer_prompt(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run ``chatledger`` with a terminal for input and output; type ``answer`` at its prompt."""
    leader, follower = pty.openpty()
    environment = _environment(NO_COLOR="1")
    with subprocess.Popen(
        [str(CHATLEDGER), *args], stdin=follower, stdout=follower, stderr=follower,
        env=environment,
    ) as child:  # fmt: skip
        os.close(follower)
        seen = b""
        while b"[y/N]" not in seen:
            readable, _, _ = select.select([leader], [], [], 30)
            assert readable, f"no prompt within 30 s: {seen!r}"
            seen += os.read(leader, 4096)
        os.write(leader, answer + b"\n")
        seen += _read_to_the_end(leader)
        status = child.wait(timeout=60)
    os.close(leader)
    return status, seen.decode()


def test_prune_on_a_terminal_asks_first(tmp_path: Path) -> None:
    """On a terminal ``prune`` says what it would delete and deletes only on yes."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = fill(url)
    status, shown = _answer_prompt(["prune", "--before", "30d", "--db", url], b"n")
    assert status == 1
    assert "delete 1 API calls" in shown
    # The question names the cutoff for the sessions too, not "inactive since" and nothing.
    asked = " ".join(shown.split())  # the prompt wraps at the terminal's width
    assert re.search(r"1 sessions inactive since before \d{4}-\d\d-\d\d [\d:]+ UTC", asked)
    assert "nothing deleted" in shown
    with sync.connect(url) as store:
        assert store.get_session(ledger.old.id) is not None
    status, shown = _answer_prompt(["prune", "--before", "30d", "--db", url], b"y")
    assert status == 0
    assert "deleted 1 API calls and 1 sessions" in shown
    with sync.connect(url) as store:
        assert store.get_session(ledger.old.id) is None


def test_text_that_looks_like_markup_is_shown_as_it_is(tmp_path: Path) -> None:
    """Titles and model names with brackets print verbatim and never break the table."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = fill(url)
    title, model = "[bold]Q3[/bold] review [/oops]", "[red]m[/red]"
    with sync.connect(url) as store:
        store.update_session(ledger.order.with_title(title))
        store.save_api_call(ledger.calls[1].model_copy(update={"id": uuid7(), "model_name": model}))
    assert "[bold]Q3[/bold]" in ok("sessions", db=url)
    shown = ok("show", str(ledger.order.id), db=url)
    assert title in shown
    assert f"{model} · 120 in" in shown
    assert model in ok("calls", db=url)
    assert model in ok("stats", "--by", "model", db=url)


def test_version_and_a_missing_command() -> None:
    """``--version`` names the installed version; no command is a usage error, status 2."""
    assert ok("--version").strip() == f"chatledger {chatledger.__version__}"
    assert "COMMAND" in fails(status=2)


# --- narrow screens, pipes, id prefixes, following, charts ---------------------------------

DATED_MODEL = "gpt-4o-mini-2024-07-18"


def _with_a_dated_model(tmp_path: Path) -> Ledger:
    """The known ledger on SQLite, with a call to a dated model name in the order session."""
    ledger = fill(f"sqlite:///{tmp_path}/ledger.db")
    dated = ledger.calls[2].model_copy(update={"id": uuid7(), "model_name": DATED_MODEL})
    with sync.connect(ledger.url) as store:
        store.save_api_call(dated)
    return ledger


def _header(table: str) -> list[str]:
    """The column names of the first table in ``table`` (``time (UTC)`` as one name)."""
    return table.splitlines()[0].replace("(UTC)", "").split()


def _rows_with(table: str, text: str) -> list[str]:
    return [line for line in table.splitlines() if text in line]


@pytest.mark.parametrize(
    ("columns", "calls", "sessions", "by_session"),
    [
        (
            "80",
            ["time", "model", "status", "in", "out", "cost"],
            ["session", "last", "active", "msgs", "title"],
            ["session", "calls", "failed", "tokens", "cost", "p50"],
        ),
        (
            "60",
            ["time", "model", "cost"],
            ["session", "msgs", "title"],
            ["session", "calls", "cost"],
        ),
    ],
)
def test_narrow_screens_drop_columns_in_the_stated_order(
    tmp_path: Path,
    columns: str,
    calls: list[str],
    sessions: list[str],
    by_session: list[str],
) -> None:
    """At 80 and 60 columns tables leave out columns as the README says; names and ids stay whole.

    The calls table goes session, error, latency, out, in, status; the
    sessions table last active, msgs, title; a breakdown p95, p50, tokens,
    failed, calls.
    """
    ledger = _with_a_dated_model(tmp_path)
    width = int(columns)
    table = ok("calls", db=ledger.url, COLUMNS=columns)
    assert _header(table) == calls
    assert len(_rows_with(table, DATED_MODEL)) == 1  # on one line, whole
    assert max(len(line) for line in table.splitlines()) <= width

    listed = ok("sessions", db=ledger.url, COLUMNS=columns)
    assert _header(listed) == sessions
    for session in (ledger.order, ledger.refund, ledger.old):
        assert len(_rows_with(listed, str(session.id))) == 1

    grouped = ok("stats", "--by", "session", db=ledger.url, COLUMNS=columns)
    assert _header(grouped.split("\n", 1)[1]) == by_session
    assert len(_rows_with(grouped, str(ledger.order.id))) == 1

    by_model = ok("stats", "--by", "model", db=ledger.url, COLUMNS=columns)
    assert len(_rows_with(by_model, DATED_MODEL)) == 1


def test_piped_output_is_not_cut_to_a_width(tmp_path: Path) -> None:
    """In a pipe, with no $COLUMNS, every column is shown and no line is wrapped."""
    ledger = _with_a_dated_model(tmp_path)
    environment = _environment(NO_COLOR="1")
    del environment["COLUMNS"]

    def piped(*args: str) -> str:
        done = subprocess.run(
            [str(CHATLEDGER), *args, "--db", ledger.url], capture_output=True, text=True,
            env=environment, timeout=120, check=True,
        )  # fmt: skip
        return done.stdout

    table = piped("calls")
    assert _header(table) == [
        "time", "session", "model", "status", "in", "out", "cost", "latency", "error",
    ]  # fmt: skip
    assert max(len(line) for line in table.splitlines()) > WIDTH
    (dated,) = _rows_with(table, DATED_MODEL)
    assert str(ledger.order.id) in dated
    (refused,) = _rows_with(table, "rate_limited")
    assert str(ledger.refund.id) in refused
    assert refused.rstrip().endswith("429")  # the error column: the failed call's code
    title = "A title long enough to be wrapped on any screen of eighty columns, but not in a pipe"
    with sync.connect(ledger.url) as store:
        store.update_session(ledger.order.with_title(title))
    assert len(_rows_with(piped("sessions"), title)) == 1


@pytest.fixture(params=SQL_BACKENDS)
def prefixed(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, uuid.UUID]]:
    """Sessions and a call whose ids are chosen so that some prefixes are unique, some shared.

    On each backend: a prefix is looked up in the sessions, read in id order.
    """
    url = emptied_url(request, tmp_path, request.param)
    ids = {
        name: uuid.UUID(text)
        for name, text in {
            "first": "abcd1234-0000-7000-8000-000000000001",
            "second": "abcd1234-0000-7000-8000-000000000002",
            "third": "5eed0000-0000-7000-8000-000000000003",
            "user": "f00d0000-0000-7000-8000-0000000000a1",
            "caller": "beef0000-0000-7000-8000-0000000000a2",
            "agent": "a9e00000-0000-7000-8000-0000000000a3",
        }.items()
    }
    now = datetime.now(UTC).replace(microsecond=0)
    sessions = [
        ChatSession.new(ids["user"], ids["agent"]).model_copy(update={"id": ids["first"]}),
        ChatSession.new(ids["user"], ids["agent"]).model_copy(update={"id": ids["second"]}),
        ChatSession.new(ids["caller"], ids["agent"]).model_copy(update={"id": ids["third"]}),
    ]
    asked = _message(sessions[2], MessageRole.USER, "hello", now)
    answer = _message(sessions[2], MessageRole.ASSISTANT, "hi", now)
    with sync.connect(url) as store:
        for session in sessions:
            store.create_session(session)
        store.save_messages([asked, answer])
        store.save_api_call(_call(sessions[2], asked, answer, "gpt-4o", (10, 2), now))
    return url, ids


def test_a_unique_start_of_an_id_is_enough(prefixed: tuple[str, dict[str, uuid.UUID]]) -> None:
    """As git takes a commit's start: show, --session, --user, erase accept a unique prefix."""
    url, ids = prefixed
    assert str(ids["third"]) in ok("show", "5eed", db=url)
    assert str(ids["third"]) in ok("show", "5EED-0000", db=url)
    called = json.loads(ok("calls", "--session", "5eed0000", "--json", db=url))
    assert [c["chat_session_id"] for c in called] == [str(ids["third"])]
    mine = json.loads(ok("sessions", "--user", "f00d", "--json", db=url))
    assert {s["id"] for s in mine} == {str(ids["first"]), str(ids["second"])}
    by_caller = json.loads(ok("calls", "--user", "beef", "--json", db=url))
    assert len(by_caller) == 1
    assert json.loads(ok("stats", "--agent", "a9e0", "--json", db=url))["total_calls"] == 1
    assert str(ids["user"]) in ok("erase", "--user", "f00d", db=url)  # a dry run: it names them


def test_an_ambiguous_or_unknown_prefix_is_refused(
    prefixed: tuple[str, dict[str, uuid.UUID]],
) -> None:
    """A prefix several ids start with lists them (status 2); one none starts is an error (1)."""
    url, ids = prefixed
    line = fails("show", "abcd1234", db=url, status=2)
    assert "abcd1234 starts 2 session ids" in line
    assert str(ids["first"]) in line
    assert str(ids["second"]) in line
    assert "abcd starts 2 session ids" in fails("calls", "--session", "abcd", db=url, status=2)
    assert "no session id starts with dead" in fails("show", "dead", db=url)
    assert "no user id starts with dead" in fails("calls", "--user", "dead", db=url)
    assert "is not a session id" in fails("show", "abc", db=url)
    assert "not a UUID" in fails("sessions", "--user", "xyz", db=url, status=2)


def _read_lines(stream: int, until: Callable[[str], bool], timeout: float = 30) -> str:
    """What ``stream`` gives until ``until`` holds for it, within ``timeout`` seconds."""
    seen = ""
    while not until(seen):
        readable, _, _ = select.select([stream], [], [], timeout)
        assert readable, f"nothing more within {timeout} s: {seen!r}"
        piece = os.read(stream, 4096).decode()
        assert piece, f"the output ended: {seen!r}"
        seen += piece
    return seen


def test_calls_follow_prints_new_calls_as_they_are_recorded(tmp_path: Path) -> None:
    """``calls --follow`` shows the latest calls, then each new one; Ctrl+C ends it with 0."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = fill(url)
    environment = _environment(NO_COLOR="1")
    with subprocess.Popen(
        [str(CHATLEDGER), "calls", "--follow", "--limit", "2", "--interval", "0.1", "--db", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
    ) as child:  # fmt: skip
        assert child.stdout is not None
        assert child.stderr is not None
        stream = child.stdout.fileno()
        first = _read_lines(stream, lambda seen: seen.count("\n") >= 4)  # header, rule, 2 rows
        assert _header(first)[:2] == ["time", "model"]
        rows = first.splitlines()[2:]
        assert ["gpt-4o" in row for row in rows] == [True, True]  # the newest two, oldest first
        assert "rate_limited" in rows[0]

        later = max(call.create_time for call in ledger.calls) + timedelta(minutes=1)
        new = [
            ledger.calls[1].model_copy(
                update={
                    "id": uuid7(),
                    "model_name": f"model-{n}",
                    "create_time": later + timedelta(seconds=n // 2),  # two at once, then one
                    "update_time": later + timedelta(seconds=n // 2),
                }
            )
            for n in range(3)
        ]
        with sync.connect(url) as store:
            store.save_api_calls(new[:2])
        shown = _read_lines(stream, lambda seen: "model-0" in seen and "model-1" in seen)
        with sync.connect(url) as store:
            store.save_api_call(new[2])
        shown += _read_lines(stream, lambda seen: "model-2" in seen)
        assert "time" not in shown  # no header again
        models = [line.split()[2] for line in shown.splitlines()]
        assert sorted(models[:2]) == ["model-0", "model-1"]  # same time: in id order
        assert models[2:] == ["model-2"]

        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0
        rest = child.stdout.read().decode()
        error = child.stderr.read().decode()
    assert "model-" not in rest  # each call printed once
    assert "Traceback" not in error
    assert error == ""


def test_stats_chart_draws_a_bar_per_day(tmp_path: Path) -> None:
    """``stats --bucket day --chart`` draws a bar per day, the days without calls too."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = fill(url)
    chart = ok("stats", "--bucket", "day", "--chart", "calls", db=url).splitlines()
    assert chart[0] == "Calls by day: every call"
    days = [datetime.strptime(line.split()[0], "%Y-%m-%d").date() for line in chart[1:]]
    first, last = ledger.old.create_time.date(), max(c.create_time for c in ledger.calls).date()
    assert days == [first + timedelta(days=n) for n in range((last - first).days + 1)]
    counts = {line.split()[0]: int(line.split()[1]) for line in chart[1:]}
    assert sum(counts.values()) == len(ledger.calls)
    bars = {line.split()[0]: line.count("█") for line in chart[1:]}
    busiest = max(counts, key=lambda day: counts[day])
    assert bars[busiest] == max(bars.values()) > 40  # scaled to the 80 columns
    assert max(len(line) for line in chart) <= WIDTH
    cost = ok("stats", "--since", "7d", "--bucket", "day", "--chart", db=url)
    assert cost.startswith("Cost by day: since ")
    assert "$0.0016" in cost or "$0.00" in cost  # 0.000123 + 0.0015, on one day or two
    assert "--bucket" in fails("stats", "--chart", db=url)


def test_without_rich_the_command_names_the_extra_to_install(tmp_path: Path) -> None:
    """rich is the cli extra's: without it a command says so in one line, no traceback."""
    hide_rich = (
        "import sys; sys.modules['rich'] = None; from chatledger.cli import main; "
        "raise SystemExit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_rich, "--db", f"sqlite:///{tmp_path}/x.db", "stats"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "chatledger stats: error: the command line needs rich: pip install 'chatledger[cli]'\n"
    )
    assert not (tmp_path / "x.db").exists()  # it stopped before opening anything
    helped = subprocess.run(
        [sys.executable, "-c", hide_rich, "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0
    assert "stats" in helped.stdout  # --help needs no rich
