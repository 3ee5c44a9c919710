"""Drills: nothing acknowledged is lost on SIGKILL, on SIGTERM, or while the database is cut off.

Each crash drill runs a real child process chatting through the persistence
plugin with a zero-delay provider (an app that never waits on anything). The
child writes a turn's number to a log only after ``agent.chat`` returned, that
is after every hook acknowledged its records. The test kills it at a random
moment, starts a recorder on the same database (which adopts the dead child's
spool and ships it) and checks that every acknowledged turn is in the database
exactly once: the question, the answer and the API call linking them.

The outage drill puts a TCP proxy the test controls between the recorder and
the real PostgreSQL or MariaDB server, cuts every connection, keeps chatting,
restores the proxy, and checks the same.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import chatledger
from chatledger.entities import QueryFilter
from chatledger.recording import Recorder
from chatledger.stores.base import PersistenceStore
from scratch_databases import empty_tables
from tcp_proxy import TcpProxy

_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, uuid
    import chatledger
    from chatledger.agent import LLMAgentBuilder, ScriptedProvider, ScriptedReply
    from chatledger.plugin import PersistencePlugin

    URL, LOG, SESSION, CLOSE = sys.argv[1], sys.argv[2], uuid.UUID(sys.argv[3]), sys.argv[4]

    async def main():
        store = await chatledger.connect(URL)
        plugin = PersistencePlugin.from_store(
            "drill", store, uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3), SESSION
        )
        reply = ScriptedReply("answer", prompt_tokens=7, completion_tokens=3)
        agent = await (
            LLMAgentBuilder().with_provider(ScriptedProvider([reply]))
            .with_model("gpt-4o-mini").with_persistence_plugin(plugin).build_async()
        )
        log = open(LOG, "a", buffering=1)
        turn = 0
        try:
            while True:
                await agent.chat(f"question {turn}")
                log.write(f"{turn}\\n")  # only now is the turn acknowledged
                turn += 1
        finally:
            if CLOSE == "close":
                await agent.close()

    asyncio.run(main())
    """
)


def _start(
    url: str, log: Path, session: str, spool: Path, *, close: bool
) -> subprocess.Popen[bytes]:
    script = log.with_suffix(".py")
    script.write_text(_CHILD)
    env = {**os.environ, "CHATLEDGER_SPOOL_DIR": str(spool)}
    with log.with_suffix(".err").open("wb") as errors:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, str(script), url, str(log), session, "close" if close else "exit"],
            env=env,
            stderr=errors,
        )


def _wait_for_turns(child: subprocess.Popen[bytes], log: Path, turns: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= turns:
            return
        if child.poll() is not None:
            raise AssertionError(f"the child died: {_errors(child)}")
        time.sleep(0.01)
    raise AssertionError("the child never acknowledged a turn")


def _reap(child: subprocess.Popen[bytes], timeout: float | None = None) -> int:
    """Wait for the child's end; return its status. A child that outlives ``timeout`` is killed."""
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()  # never left running (and reaped) for a later test to trip over
        child.wait()
        raise AssertionError(f"the child did not end in {timeout} s: {_errors(child)}") from None
    if child.returncode not in (-signal.SIGKILL, 128 + signal.SIGTERM):
        raise AssertionError(f"the child ended with {child.returncode}: {_errors(child)}")
    return child.returncode


def _errors(child: subprocess.Popen[bytes]) -> str:
    """The end of what the child wrote to standard error."""
    log = Path(str(child.args[3]))  # type: ignore[index]
    return log.with_suffix(".err").read_text()[-3000:]


def _acknowledged(log: Path) -> list[int]:
    # a line the kill cut in half was never acknowledged
    return [int(line) for line in log.read_text().split("\n")[:-1] if line]


async def _check_every_turn_stored(
    store: PersistenceStore, session: str, acknowledged: list[int]
) -> None:
    import uuid

    messages = await store.get_session_messages(uuid.UUID(session))
    texts = [m.content.text for m in messages]
    assert len({m.id for m in messages}) == len(messages)
    by_id = {m.id: m for m in messages}
    calls = await store.query_api_calls(QueryFilter(session_id=uuid.UUID(session), limit=10**6))
    answered = {
        by_id[c.request_message_id].content.text for c in calls if c.request_message_id in by_id
    }
    for turn in acknowledged:
        question = f"question {turn}"
        assert texts.count(question) == 1, f"turn {turn} lost or stored twice"
        assert question in answered, f"turn {turn}'s API call lost"
    assert texts.count("answer") >= len(acknowledged)


async def _ship_leftovers(url: str, spool: Path) -> None:
    """A new process's recorder on the same database: it adopts and ships dead spools."""
    store = await chatledger.connect(url)
    recorder = Recorder(store, spool=_spool_root_for(spool, store))
    assert await recorder.flush() == 0
    assert recorder.stats()["dead_letters"] == 0
    await recorder.close()
    await store.close()


def _spool_root_for(spool: Path, store: PersistenceStore) -> Path:
    from chatledger.recording import spool_directory_for

    return spool_directory_for(store, spool)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def drill_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database the drill's children and the test share."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/drill.db"
        return
    request.applymarker(pytest.mark.server)
    url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mysql_url")
    asyncio.run(_fresh_tables(url))
    yield url


async def _fresh_tables(url: str) -> None:
    store = await chatledger.connect(url)  # creates the tables on a new database
    await store.close()
    await empty_tables(url)


_KILLS = {"sqlite": 10, "postgresql": 6, "mysql": 6}  # 22 SIGKILLs across the suite


def test_sigkill_at_random_moments_loses_no_acknowledged_turn(
    drill_url: str, tmp_path: Path
) -> None:
    """kill -9 mid-chat, again and again: every turn the child acknowledged is stored once."""
    kills = _KILLS[drill_url.split(":", 1)[0]]
    rng = random.Random(20261130)
    spool = tmp_path / "spool"
    for kill in range(kills):
        session = str(chatledger.uuid7())
        log = tmp_path / f"kill-{kill}.log"
        child = _start(drill_url, log, session, spool, close=False)
        _wait_for_turns(child, log, 1)
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        _reap(child)
        acknowledged = _acknowledged(log)
        asyncio.run(_ship_leftovers(drill_url, spool))
        asyncio.run(_check(drill_url, session, acknowledged))


async def _check(url: str, session: str, acknowledged: list[int]) -> None:
    store = await chatledger.connect(url)
    try:
        await _check_every_turn_stored(store, session, acknowledged)
    finally:
        await store.close()


@pytest.mark.parametrize("close", [False, True], ids=["plain-asyncio-run", "close-in-finally"])
def test_sigterm_ships_every_acknowledged_turn_before_exit(
    drill_url: str, tmp_path: Path, close: bool
) -> None:
    """SIGTERM, as a server or orchestrator sends it: the process ships its spool as it exits.

    No later recorder helps here: what the child acknowledged is in the database when it
    exits, whether the app closes its agent in a ``finally`` or is a bare ``asyncio.run``.
    """
    session = str(chatledger.uuid7())
    log = tmp_path / "term.log"
    child = _start(drill_url, log, session, tmp_path / "spool", close=close)
    _wait_for_turns(child, log, 50)
    child.send_signal(signal.SIGTERM)
    assert _reap(child, timeout=30) == 128 + signal.SIGTERM
    acknowledged = _acknowledged(log)
    assert len(acknowledged) >= 50
    asyncio.run(_check(drill_url, session, acknowledged))


def _held_at(gate: asyncio.Event, store: PersistenceStore) -> None:
    """Every call of ``store``'s coroutine methods waits while ``gate`` is closed."""
    for name in dir(type(store)):
        if name.startswith("_") or not inspect.iscoroutinefunction(getattr(type(store), name)):
            continue
        method = getattr(store, name)

        async def held(*args: Any, __method: Any = method, **kwargs: Any) -> Any:
            await gate.wait()
            return await __method(*args, **kwargs)

        setattr(store, name, held)


@pytest.mark.server
@pytest.mark.parametrize("server", ["postgres_url", "mysql_url"])
async def test_a_database_cut_off_neither_fails_nor_slows_chats_and_nothing_is_lost(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Every connection reset mid-chat: hooks keep returning at spool speed; all ships after.

    While the connection is cut, every call into the store is also held until
    the outage's last turn is over: a turn that waited on the store, however
    briefly, would never end (the safety net fails it after 30 s).
    """
    from urllib.parse import urlsplit

    from chatledger.agent import LLMAgentBuilder, ScriptedProvider, ScriptedReply
    from chatledger.plugin import PersistencePlugin

    url = request.getfixturevalue(server)
    await _fresh_tables(url)
    target = urlsplit(url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
        store = await chatledger.connect(proxy.url_for(url))
        gate = asyncio.Event()
        gate.set()
        _held_at(gate, store)
        session = chatledger.uuid7()
        plugin = PersistencePlugin.from_store(
            "outage", store, chatledger.uuid7(), chatledger.uuid7(), chatledger.uuid7(), session,
            spool=tmp_path / "spool",
        )  # fmt: skip
        reply = ScriptedReply("answer", prompt_tokens=5, completion_tokens=2)
        agent = await (
            LLMAgentBuilder()
            .with_provider(ScriptedProvider([reply]))
            .with_model("m")
            .with_persistence_plugin(plugin)
            .build_async()
        )
        for turn in range(300):
            if turn == 50:
                assert await plugin.flush() == 0
                proxy.cut()
                gate.clear()  # no turn may wait on the store from here
            if turn == 250:
                gate.set()  # the held calls go on into the cut connection, and fail
                deadline = time.monotonic() + 30
                while not plugin.stats()["store_failures"]:
                    assert time.monotonic() < deadline, "the store never failed while cut"
                    await asyncio.sleep(0.01)
                assert plugin.stats()["pending"] > 0  # the spool holds what the store cannot
                proxy.restore()
            await asyncio.wait_for(agent.chat(f"question {turn}"), 30)  # a safety net only
        deadline = time.monotonic() + 60
        while await plugin.flush() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert await plugin.flush() == 0
        await agent.close()
        await _check_every_turn_stored(store, str(session), list(range(300)))
        await store.close()
