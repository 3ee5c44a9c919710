"""ConversationMemory: the common part of the framework memory adapters, on every backend."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import chatledger.sync
from chatledger.entities import MessageContent, MessageRole
from chatledger.errors import PersistenceError
from chatledger.integrations import memory as memory_module
from chatledger.integrations.memory import ConversationMemory
from chatledger.recording.scope import id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.sync import SyncStore
from scratch_databases import empty_tables

SOURCE = "test_item"


Items = list[tuple[MessageRole, MessageContent]]


def items(*texts: str, role: MessageRole = MessageRole.USER) -> Items:
    """One user item per text, the text kept under the source key too."""
    return [(role, MessageContent(text=text, **{SOURCE: {"t": text}})) for text in texts]


def texts(messages: list) -> list[str | None]:  # type: ignore[type-arg]
    """The texts of ``messages``, in order."""
    return [message.content.text for message in messages]


def memory_for(store: PersistenceStore | SyncStore, key: str = "user-42",
               **ids: str) -> ConversationMemory:  # fmt: skip
    """A memory of session ``key`` in ``store``."""
    return ConversationMemory(key, store, source=SOURCE, **ids)


def assert_chained(messages: list) -> None:  # type: ignore[type-arg]
    """Each message's parent is the one before it."""
    for before, after in itertools.pairwise(messages):
        assert after.parent_message_id == before.id


# --- order -------------------------------------------------------------------------------


async def test_items_of_one_call_keep_their_order(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store, tenant_id="acme", user_id="u-1", agent_id="support")
    stored = await memory.append(items("a", "b", "c", "d", "e"))
    assert texts(stored) == ["a", "b", "c", "d", "e"]
    read = await memory.read()
    assert read == stored
    assert read[0].parent_message_id is None
    assert_chained(read)
    assert [m.content.model_extra[SOURCE] for m in read] == [{"t": t} for t in "abcde"]  # type: ignore[index]
    assert len({m.create_time for m in read}) == 1  # one call, one stamp: ids keep the order
    assert {(m.tenant_id, m.user_id, m.agent_id) for m in read} == {
        (id_for_key("acme"), id_for_key("u-1"), id_for_key("support"))
    }


async def test_the_session_keeps_its_key_and_owners(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store, "chat:7", tenant_id="acme", user_id="u-1", agent_id="bot")
    assert memory.session_id == id_for_key("chat:7")
    await memory.append(items("hi"))
    session = await any_store.get_session(memory.session_id)
    assert session is not None
    assert session.metadata == {"key": "chat:7"}
    assert (session.tenant_id, session.user_id, session.agent_id) == (
        id_for_key("acme"), id_for_key("u-1"), id_for_key("bot"))  # fmt: skip
    assert texts(await any_store.get_session_messages(memory.session_id)) == ["hi"]


async def test_a_uuid_key_is_the_session_id(any_store: PersistenceStore) -> None:
    session_id = uuid.uuid4()
    memory = memory_for(any_store, str(session_id))
    await memory.append(items("hi"))
    assert memory.session_id == session_id
    session = await any_store.get_session(session_id)
    assert session is not None
    assert "key" not in session.metadata


async def test_calls_keep_their_order(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    for n in range(6):
        await memory.append(items(f"{n}a", f"{n}b"))
    read = await memory.read()
    assert texts(read) == [f"{n}{x}" for n in range(6) for x in "ab"]
    assert_chained(read)


async def test_equal_timestamps_keep_the_order_of_saving(
    any_store: PersistenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    monkeypatch.setattr(memory_module, "utc_now", lambda: frozen)
    monkeypatch.setattr(memory_module, "_last_stamp", None)
    memory = memory_for(any_store)
    for n in range(5):
        await memory.append(items(f"{n}a", f"{n}b", f"{n}c"))
    read = await memory.read()
    assert {m.create_time for m in read} == {frozen}
    assert texts(read) == [f"{n}{x}" for n in range(5) for x in "abc"]
    assert texts(await memory.read(4)) == ["3c", "4a", "4b", "4c"]
    assert texts(await any_store.get_session_messages(memory.session_id)) == texts(read)


async def test_a_clock_stepping_back_never_reorders(
    any_store: PersistenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = memory_for(any_store)
    await memory.append(items("first"))
    monkeypatch.setattr(memory_module, "utc_now", lambda: datetime(2001, 1, 1, tzinfo=UTC))
    monkeypatch.setattr(memory_module, "_last_stamp", None)
    await memory.append(items("second"))
    assert texts(await memory.read()) == ["first", "second"]


# --- limit -------------------------------------------------------------------------------


async def test_limit_returns_the_newest_oldest_first(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    await memory.append(items("1", "2", "3"))
    await memory.append(items("4", "5"))
    assert texts(await memory.read()) == ["1", "2", "3", "4", "5"]
    assert texts(await memory.read(None)) == ["1", "2", "3", "4", "5"]
    assert texts(await memory.read(2)) == ["4", "5"]
    assert texts(await memory.read(1)) == ["5"]
    assert texts(await memory.read(5)) == ["1", "2", "3", "4", "5"]
    assert texts(await memory.read(50)) == ["1", "2", "3", "4", "5"]
    assert await memory.read(0) == []
    assert await memory.read(-3) == []


async def test_an_unknown_session_reads_empty(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store, "never-written")
    assert await memory.read() == []
    assert await memory.read(3) == []
    assert await memory.pop() is None
    await memory.clear()
    assert await any_store.get_session(memory.session_id) is None  # reads create nothing


# --- pop and clear -----------------------------------------------------------------------


async def test_pop_removes_and_returns_the_newest(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    stored = await memory.append(items("a", "b", "c"))
    popped = await memory.pop()
    assert popped == stored[-1]
    assert texts(await memory.read()) == ["a", "b"]
    assert (await memory.pop()) == stored[1]
    assert (await memory.pop()) == stored[0]
    assert await memory.pop() is None
    assert await memory.read() == []


async def test_append_after_pop_links_to_the_new_newest(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    stored = await memory.append(items("a", "b"))
    await memory.pop()
    (again,) = await memory.append(items("c"))
    assert again.parent_message_id == stored[0].id
    assert texts(await memory.read()) == ["a", "c"]


async def test_clear_removes_only_this_session(any_store: PersistenceStore) -> None:
    one, other = memory_for(any_store, "one"), memory_for(any_store, "other")
    await one.append(items("a", "b"))
    await other.append(items("x"))
    await one.clear()
    assert await one.read() == []
    assert texts(await other.read()) == ["x"]
    (fresh,) = await one.append(items("c"))
    assert fresh.parent_message_id is None
    assert texts(await one.read()) == ["c"]


async def test_a_deleted_session_is_made_again(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    await memory.append(items("a"))
    await any_store.delete_session(memory.session_id)
    await memory.append(items("b"))
    assert texts(await memory.read()) == ["b"]
    assert await any_store.get_session(memory.session_id) is not None


# --- many sessions, many writers ---------------------------------------------------------


async def test_many_sessions_side_by_side(any_store: PersistenceStore) -> None:
    memories = [memory_for(any_store, f"session-{n}") for n in range(5)]
    for round_ in range(3):
        for n, memory in enumerate(memories):
            await memory.append(items(f"{n}.{round_}"))
    for n, memory in enumerate(memories):
        assert texts(await memory.read()) == [f"{n}.{r}" for r in range(3)]
        assert texts(await memory.read(1)) == [f"{n}.2"]
    await memories[0].pop()
    await memories[1].clear()
    assert texts(await memories[0].read()) == ["0.0", "0.1"]
    assert await memories[1].read() == []
    assert texts(await memories[2].read()) == ["2.0", "2.1", "2.2"]


def assert_calls_whole(read: list, calls: list[list[str]]) -> None:  # type: ignore[type-arg]
    """Every item of ``calls`` stored once, each call's items together and in order."""
    stored = texts(read)
    assert sorted(stored) == sorted(t for call in calls for t in call)  # type: ignore[type-var]
    for call in calls:
        start = stored.index(call[0])
        assert stored[start : start + len(call)] == call
    assert_chained(read)


async def test_concurrent_writers_from_tasks_and_threads(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    task_calls = [[f"task{t}-{c}-{i}" for i in range(4)] for t in range(8) for c in range(3)]
    thread_calls = [[f"thread{t}-{c}-{i}" for i in range(3)] for t in range(4) for c in range(3)]

    async def task_writer(calls: list[list[str]]) -> None:
        for call in calls:
            await memory.append(items(*call))

    def thread_writer(calls: list[list[str]]) -> None:
        # A second memory object of the same session, as a framework makes per request.
        other = memory_for(any_store)
        for call in calls:
            other.append_sync(items(*call))

    await asyncio.gather(
        *(task_writer(task_calls[t * 3 : t * 3 + 3]) for t in range(8)),
        *(asyncio.to_thread(thread_writer, thread_calls[t * 3 : t * 3 + 3]) for t in range(4)),
    )
    read = await memory.read()
    assert len(read) == 8 * 3 * 4 + 4 * 3 * 3
    assert_calls_whole(read, task_calls + thread_calls)


async def test_concurrent_pops_remove_each_item_once(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    await memory.append(items(*(str(n) for n in range(12))))
    popped = await asyncio.gather(*(memory.pop() for _ in range(15)))
    got = [m.content.text or "" for m in popped if m is not None]
    assert sorted(got, key=int) == [str(n) for n in range(12)]
    assert popped.count(None) == 3


async def test_appends_after_its_own_read_nothing(
    any_store: PersistenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = memory_for(any_store)
    reads: list[uuid.UUID] = []
    recent = any_store.get_recent_messages

    async def counted(session_id: uuid.UUID, limit: int) -> list:  # type: ignore[type-arg]
        reads.append(session_id)
        return await recent(session_id, limit)

    monkeypatch.setattr(any_store, "get_recent_messages", counted)
    await memory.append(items("a"))
    await memory.append(items("b", "c"))
    await memory_for(any_store).append(items("d"))  # another memory of the session shares it
    assert reads == [memory.session_id]  # the first append's only
    read = await memory.read()
    assert texts(read) == ["a", "b", "c", "d"]
    assert_chained(read)
    await memory.pop()  # anything but an append forgets the tail
    await memory.append(items("e"))
    assert len(reads) == 3  # the pop's and the append's
    assert texts(await memory.read()) == ["a", "b", "c", "e"]
    assert_chained(await memory.read())


async def test_a_tail_removed_behind_its_back_is_read_again(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    await memory.append(items("a", "b"))
    newest = (await any_store.get_recent_messages(memory.session_id, 1))[0]
    assert await any_store.delete_message(newest.id)  # not through the memory
    await memory.append(items("c"))
    read = await memory.read()
    assert texts(read) == ["a", "c"]
    assert_chained(read)


async def test_writers_on_many_loops_take_turns(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    calls = [[f"loop{n}-{c}-{i}" for i in range(3)] for n in range(4) for c in range(4)]

    async def writer(mine: list[list[str]]) -> None:
        for call in mine:
            await memory.append(items(*call))

    def on_own_loop(mine: list[list[str]]) -> None:
        asyncio.run(writer(mine))

    await asyncio.gather(
        writer(calls[:4]),
        *(asyncio.to_thread(on_own_loop, calls[n * 4 : n * 4 + 4]) for n in (1, 2, 3)),
    )
    assert_calls_whole(await memory.read(), calls)


async def test_a_cancelled_wait_passes_the_turn_on(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    entered = threading.Event()

    async def hold() -> None:
        async with memory.session_lock():
            entered.set()

    def other_loop() -> None:
        asyncio.run(hold())

    async with memory.session_lock():
        cancelled = asyncio.ensure_future(hold())
        waiting = asyncio.ensure_future(memory.append(items("after")))
        elsewhere = asyncio.ensure_future(asyncio.to_thread(other_loop))
        for _ in range(3000):  # until all three queue behind this turn (30 s at most)
            if len(memory._lock._waiters) == 3:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the three never queued behind this turn")
        cancelled.cancel()
        assert not entered.is_set()
    await asyncio.wait_for(asyncio.gather(waiting, elsewhere), 10)
    assert cancelled.cancelled()
    assert entered.is_set()
    assert texts(await memory.read()) == ["after"]


# --- blocking twins, other loops, blocking stores ----------------------------------------


async def test_sync_twins_from_a_thread_running_a_loop(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)

    async def inside_a_loop() -> list[str | None]:
        # A blocking call on a thread that runs its own loop (Jupyter, a worker's loop).
        memory.append_sync(items("a", "b"))
        memory.append_sync(items("c"))
        assert texts(memory.read_sync(2)) == ["b", "c"]
        assert memory.pop_sync() is not None
        return texts(memory.read_sync())

    assert await asyncio.to_thread(asyncio.run, inside_a_loop()) == ["a", "b"]
    assert texts(await memory.read()) == ["a", "b"]

    def plain_thread() -> None:
        memory.clear_sync()
        assert memory.read_sync() == []
        assert memory.pop_sync() is None
        assert memory.append_sync([]) == []

    await asyncio.to_thread(plain_thread)
    assert await memory.read() == []


async def test_async_methods_from_another_loop(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    await memory.append(items("from the store's loop"))

    async def elsewhere() -> list[str | None]:
        await memory.append(items("from another loop"))
        return texts(await memory.read())

    got = await asyncio.to_thread(asyncio.run, elsewhere())
    assert got == ["from the store's loop", "from another loop"]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.server),
                        pytest.param("mysql", marks=pytest.mark.server)])  # fmt: skip
def blocking_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SyncStore]:
    """A blocking store (chatledger.sync.connect) of each backend, empty."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'blocking.db'}"
    else:
        url = request.getfixturevalue("postgres_url" if request.param == "postgresql"
                                      else "mysql_url")  # fmt: skip
        asyncio.run(empty_tables(url))
    store = chatledger.sync.connect(url)
    try:
        yield store
    finally:
        store.close()


def test_a_blocking_store_from_plain_code(blocking_store: SyncStore) -> None:
    memory = memory_for(blocking_store, "blocking", user_id="u")
    memory.append_sync(items("a", "b"))
    memory.append_sync(items("c"))
    assert texts(memory.read_sync()) == ["a", "b", "c"]
    assert texts(memory.read_sync(2)) == ["b", "c"]
    assert memory.pop_sync() is not None
    assert texts(blocking_store.get_session_messages(memory.session_id)) == ["a", "b"]
    memory.clear_sync()
    assert memory.read_sync() == []


def test_a_blocking_store_from_async_code_and_threads(blocking_store: SyncStore) -> None:
    memory = memory_for(blocking_store, "blocking")

    async def main() -> None:
        await memory.append(items("a", "b"))

        def worker(n: int) -> None:
            memory_for(blocking_store, "blocking").append_sync(items(f"w{n}-0", f"w{n}-1"))

        await asyncio.gather(
            *(asyncio.to_thread(worker, n) for n in range(4)),
            *(memory.append(items(f"t{n}-0", f"t{n}-1")) for n in range(4)),
        )
        read = await memory.read()
        calls = [["a", "b"]] + [[f"{k}{n}-0", f"{k}{n}-1"] for k in "wt" for n in range(4)]
        assert_calls_whole(read, calls)
        assert texts(memory.read_sync(1)) == texts(read[-1:])  # blocking, on a foreign loop

    asyncio.run(main())


async def test_a_blocking_call_on_the_home_loop_is_refused(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    if any_store.backend_name in ("sqlite", "memory"):
        # Loop-free stores run on a background loop: blocking here works.
        memory.append_sync(items("a"))
        assert texts(memory.read_sync()) == ["a"]
    else:
        with pytest.raises(RuntimeError, match="await the async method"):
            memory.read_sync()


# --- failures ----------------------------------------------------------------------------


async def test_a_closed_store_raises_a_persistence_error(tmp_path: Path) -> None:
    store = await chatledger.connect(f"sqlite:///{tmp_path / 'closed.db'}")
    memory = memory_for(store)
    await memory.append(items("a"))
    await store.close()
    with pytest.raises(PersistenceError):
        await memory.append(items("b"))
    with pytest.raises(PersistenceError):
        await memory.read()
    with pytest.raises(PersistenceError):
        memory.read_sync()


async def test_a_cancelled_append_is_stored_whole(any_store: PersistenceStore) -> None:
    memory = memory_for(any_store)
    task = asyncio.create_task(memory.append(items("a", "b", "c")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert texts(await memory.read()) == ["a", "b", "c"]


def test_refuses_what_is_not_a_store() -> None:
    with pytest.raises(TypeError, match="chatledger store"):
        ConversationMemory("k", object(), source=SOURCE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        ConversationMemory("", chatledger.stores.memory.InMemoryStore(), source=SOURCE)
