"""``chatledger import agents-sqlite|langchain-sql``: a framework's store copied into chatledger.

The sources are written by the frameworks themselves (the Agents SDK's
``SQLiteSession`` and ``SQLAlchemySession``, LangChain's
``SQLChatMessageHistory``), imported into SQLite and PostgreSQL, and read
back through chatledger's adapters, which must give exactly what the
framework's store gives. Most imports run ``chatledger.cli.main`` in this
process (the Agents SDK takes seconds to import: once here, not per run);
the console script itself runs for the listing and the errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from agents import SQLiteSession
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)

import chatledger
from chatledger.cli import main
from chatledger.integrations.langchain import ChatledgerChatMessageHistory
from chatledger.integrations.openai_agents import ChatledgerSession

CHATLEDGER = Path(sys.executable).with_name("chatledger")

DESTINATIONS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.server)]

ITEMS: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "input_text", "text": "Weather in Zürich? 🌦"}]},
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "call the tool"}],
    },
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "weather",
        "arguments": '{"city": "Zürich"}',
        "id": "fc_1",
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "12 °C, rain"},
    {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "zurich rain"},
    },
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "12 °C and rain.", "annotations": []}],
    },
]

MESSAGES: list[BaseMessage] = [
    SystemMessage("You are terse.", id="s1"),
    HumanMessage("Weather in Zürich?", id="h1", additional_kwargs={"lang": "de"}),
    AIMessage(
        "",
        id="a1",
        tool_calls=[{"name": "weather", "args": {"city": "Zürich"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
        response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"},
    ),
    ToolMessage("12 °C, rain", tool_call_id="call_1", id="t1"),
    FunctionMessage(content="old style", name="weather", id="f1"),
    ChatMessage(content="a custom role", role="critic", id="c1"),
    AIMessageChunk(content="12 °C and rain.", id="a2"),
]


def _token() -> str:
    """A prefix making this test's session keys its own in a shared database."""
    return uuid.uuid4().hex[:8]


def _destination(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``chatledger ARGS`` in this process: status, standard output, standard error."""
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, " ".join(out.split()), " ".join(err.split())  # as one line, however wrapped


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(CHATLEDGER), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"},
            "NO_COLOR": "1",
            "COLUMNS": "80",
        },
    )


# --- the sources, written by the frameworks ---------------------------------------------------


def _agents_file(path: Path, keys: list[str]) -> None:
    """A SQLiteSession file: each key's items, one added per call and the rest in one call."""

    async def write() -> None:
        for number, key in enumerate(keys):
            session = SQLiteSession(key, path)
            await session.add_items([ITEMS[0]])
            await session.add_items([*ITEMS[1:], {"role": "user", "content": f"#{number}"}])
            session.close()

    asyncio.run(write())


async def _agents_items(key: str, path: Path) -> list[Any]:
    session = SQLiteSession(key, path)
    try:
        return await session.get_items()
    finally:
        session.close()


async def _imported_items(key: str, url: str) -> list[Any]:
    async with await chatledger.connect(url) as store:
        return await ChatledgerSession(key, store).get_items()


async def _imported_messages(key: str, url: str) -> list[BaseMessage]:
    async with await chatledger.connect(url) as store:
        return await ChatledgerChatMessageHistory(key, store).aget_messages()


def _langchain_file(path: Path, keys: list[str]) -> None:
    """LangChain's SQLChatMessageHistory table, by LangChain when langchain-community is here.

    Without it (it is not a test dependency), the same table LangChain
    creates, holding ``message_to_dict`` JSON as LangChain writes it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.chat_message_histories import SQLChatMessageHistory
    except ImportError:
        db = sqlite3.connect(path)
        db.execute(
            "CREATE TABLE IF NOT EXISTS message_store "
            "(id INTEGER NOT NULL PRIMARY KEY, session_id TEXT, message TEXT)"
        )
        for key in keys:
            db.executemany(
                "INSERT INTO message_store (session_id, message) VALUES (?, ?)",
                [(key, json.dumps(message_to_dict(m))) for m in MESSAGES],
            )
        db.commit()
        db.close()
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in keys:
            history = SQLChatMessageHistory(key, connection=f"sqlite:///{path}")
            history.add_messages(MESSAGES[:2])
            history.add_messages(MESSAGES[2:])
            history.engine.dispose()


def _langchain_messages(key: str, path: Path) -> list[BaseMessage]:
    """What LangChain's history gives for ``key`` (as it reads its table)."""
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT message FROM message_store WHERE session_id = ? ORDER BY id", (key,)
    ).fetchall()
    db.close()
    return messages_from_dict([json.loads(row[0]) for row in rows])


# --- the Agents SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_agents_sqlite_import_is_exact_and_refuses_twice(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = _destination(kind, tmp_path, request)
    token = _token()
    keys = [f"{token}-alpha", f"{token} user 42 / β", str(uuid.uuid4())]
    source = tmp_path / "agents.db"
    _agents_file(source, keys)
    # What SQLiteSession itself skips (rows that are not JSON) is skipped and counted.
    db = sqlite3.connect(source)
    db.execute(
        "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", (keys[0], "{nope")
    )
    db.execute("INSERT INTO agent_sessions (session_id) VALUES (?)", (f"{token}-empty",))
    db.commit()
    db.close()

    status, out, err = _cli(capsys, "import", "agents-sqlite", str(source), "--dry-run",
                            "--db", url)  # fmt: skip
    assert status == 0, err
    assert "would import 3 sessions (24 items)" in out
    assert "nothing written (dry run)" in out

    status, out, err = _cli(capsys, "import", "agents-sqlite", str(source), "--db", url,
                            "--user", "u-42", "--json")  # fmt: skip
    assert status == 0, err
    report = json.loads(out)
    assert report["sessions"] == 3
    assert report["items"] == 24
    assert report["unreadable_items"] == 1
    assert report["empty_sessions"] == 1
    assert report["skipped_sessions"] == []

    for key in keys:
        original = asyncio.run(_agents_items(key, source))
        assert len(original) == len(ITEMS) + 1
        assert asyncio.run(_imported_items(key, url)) == original

    async def owners() -> set[uuid.UUID]:
        async with await chatledger.connect(url) as store:
            sessions = [await store.get_session(ChatledgerSession(k, store).memory.session_id)
                        for k in keys]  # fmt: skip
        return {s.user_id for s in sessions if s is not None}

    assert asyncio.run(owners()) == {chatledger.id_for_key("u-42")}

    # Again: every session is held already, so nothing is repeated.
    status, out, err = _cli(capsys, "import", "agents-sqlite", str(source), "--db", url)
    assert status == 0, err
    assert "imported 0 sessions (0 items)" in out
    assert "skipped 3 sessions (25 items) chatledger already holds" in out
    assert f"skipped session '{keys[0]}' (9 items): chatledger holds 8" in err
    assert asyncio.run(_imported_items(keys[0], url)) == asyncio.run(_agents_items(keys[0], source))

    # --append adds them after what is held.
    status, out, err = _cli(capsys, "import", "agents-sqlite", str(source), "--db", url,
                            "--append")  # fmt: skip
    assert status == 0, err
    assert "imported 3 sessions (24 items)" in out
    original = asyncio.run(_agents_items(keys[1], source))
    assert asyncio.run(_imported_items(keys[1], url)) == original + original


@pytest.mark.server
def test_agents_sqlalchemy_session_on_postgres(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SQLAlchemySession database given by URL, read in its own order, into SQLite."""
    from agents.extensions.memory import SQLAlchemySession

    token = _token()
    keys = [f"{token}-one", f"{token}-two"]
    sessions_table, messages_table = f"s_{token}", f"m_{token}"
    async_url = postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def write() -> list[list[Any]]:
        originals = []
        for key in keys:
            session = SQLAlchemySession.from_url(
                key,
                url=async_url,
                create_tables=True,
                sessions_table=sessions_table,
                messages_table=messages_table,
            )
            await session.add_items(ITEMS[:3])
            await session.add_items(ITEMS[3:])
            originals.append(await session.get_items())
            await session.engine.dispose()
        return originals

    originals = asyncio.run(write())
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    status, out, err = _cli(capsys, "import", "agents-sqlite", postgres_url, "--db", ledger,
                            "--sessions-table", sessions_table,
                            "--messages-table", messages_table)  # fmt: skip
    assert status == 0, err
    assert "imported 2 sessions (14 items)" in out
    for key, original in zip(keys, originals, strict=True):
        assert asyncio.run(_imported_items(key, ledger)) == original

    # A wrong table name on a server: one line, status 2, no traceback.
    status, out, err = _cli(capsys, "import", "agents-sqlite", postgres_url, "--db", ledger)
    assert status == 2
    assert err.startswith("chatledger import agents-sqlite: error: ")
    assert err.count("error") == 1
    assert "has no table agent_messages" in err


# --- LangChain --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_langchain_sql_import_is_exact_and_refuses_twice(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = _destination(kind, tmp_path, request)
    token = _token()
    keys = [f"{token}-lc", f"{token}-lc-2"]
    source = tmp_path / "history.db"
    _langchain_file(source, keys)

    status, out, err = _cli(capsys, "import", "langchain-sql", f"sqlite:///{source}",
                            "--db", url)  # fmt: skip
    assert status == 0, err
    assert "imported 2 sessions (14 items)" in out
    for key in keys:
        original = _langchain_messages(key, source)
        assert original == MESSAGES
        imported = asyncio.run(_imported_messages(key, url))
        assert imported == original
        assert [type(m) for m in imported] == [type(m) for m in original]

    status, out, err = _cli(capsys, "import", "langchain-sql", str(source), "--db", url, "--json")
    assert status == 0, err
    report = json.loads(out)
    assert (report["sessions"], report["items"], report["skipped_items"]) == (0, 0, 14)
    assert {s["session"] for s in report["skipped_sessions"]} == set(keys)

    status, out, err = _cli(capsys, "import", "langchain-sql", str(source), "--db", url,
                            "--append")  # fmt: skip
    assert status == 0, err
    assert asyncio.run(_imported_messages(keys[0], url)) == MESSAGES + MESSAGES


# --- the console script: listing, showing, errors ---------------------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """An Agents SDK file and a LangChain file, the second imported by the console script."""
    folder = tmp_path_factory.mktemp("script")
    agents_file, langchain_file = folder / "agents.db", folder / "history.db"
    _agents_file(agents_file, ["support-7"])
    _langchain_file(langchain_file, ["support-7"])
    ledger = f"sqlite:///{folder / 'ledger.db'}"
    done = _script("import", "langchain-sql", str(langchain_file), "--db", ledger)
    assert done.returncode == 0, done.stderr
    assert " ".join(done.stdout.split()).startswith("imported 1 session (7 items) from ")
    return agents_file, langchain_file, ledger


def test_script_imports_and_the_cli_lists_and_shows(imported: tuple[Path, Path, str]) -> None:
    _, _, ledger = imported
    done = _script("sessions", "--json", "--db", ledger)
    assert done.returncode == 0, done.stderr
    (listed,) = json.loads(done.stdout)
    assert listed["id"] == str(chatledger.id_for_key("support-7"))
    assert listed["metadata"] == {"key": "support-7"}
    assert listed["message_count"] == 7
    done = _script("show", listed["id"], "--db", ledger)
    assert done.returncode == 0, done.stderr
    assert "Weather in Zürich?" in done.stdout
    assert "12 °C and rain." in done.stdout
    assert "weather" in done.stdout


def test_script_missing_file_is_one_line_and_status_2(imported: tuple[Path, Path, str]) -> None:
    _, _, ledger = imported
    done = _script("import", "agents-sqlite", "/nowhere/agents.db", "--db", ledger)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert (done.stdout, done.stderr) == (
        "",
        "chatledger import agents-sqlite: error: no such file: /nowhere/agents.db\n",
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("langchain-sql", "sqlite:///{dir}/missing.db"), "no such file: {dir}/missing.db"),
        (("agents-sqlite", "{dir}"), "{dir} is not a file"),
        (("agents-sqlite", "{langchain}"),
         "has no table agent_messages (its tables: message_store)"),
        (("agents-sqlite", "{agents}", "--sessions-table", "sessions"),
         "has no table sessions (its tables: agent_messages, agent_sessions)"),
        (("langchain-sql", "{agents}", "--table", "agent_messages"),
         "table agent_messages of {agents} has no column message:"),
        (("langchain-sql", "{agents}"), "has no table message_store"),
        (("langchain-sql", "{notdb}"), "{notdb} is not an SQLite database"),
        (("langchain-sql", "postgresql://me:s3cret@127.0.0.1:9/x"),
         "cannot connect to postgresql://me:***@127.0.0.1:9/x"),
        (("agents-sqlite", "ftp://host/x"), "cannot read ftp://host/x"),
    ],
)  # fmt: skip
def test_unreadable_source_is_one_line_and_status_2(
    imported: tuple[Path, Path, str],
    args: tuple[str, ...],
    said: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    agents_file, langchain_file, ledger = imported
    not_a_database = agents_file.parent / "notes.txt"
    not_a_database.write_text("just text, no SQLite header\n" * 100)
    names = {"dir": agents_file.parent, "agents": agents_file, "langchain": langchain_file,
             "notdb": not_a_database}  # fmt: skip
    capsys.readouterr()
    status = main(["import", *(a.format(**names) for a in args), "--db", ledger])
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert out == ""
    assert err.startswith(f"chatledger import {args[0]}: error: ")
    assert err.count("\n") == 1, err  # one line however long
    assert said.format(**names) in err
    assert "s3cret" not in err
