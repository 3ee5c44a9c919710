"""The Recorder: scopes, de-duplication of resent history, the spool and the shipper."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

import chatledger
from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    QueryFilter,
    utc_now,
)
from chatledger.errors import StoreConnectionError
from chatledger.pricing import ModelPrice, StaticPricingRegistry
from chatledger.recording import (
    CallFields,
    FileSpool,
    MemorySpool,
    Recorder,
    Scope,
    SpoolError,
    current_scope,
    id_for_key,
    scope,
)
from chatledger.recording.spool import SpoolDirectory
from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import make_api_call, make_session

# --- scope ---------------------------------------------------------------------------------


def test_scopes_nest_and_an_inner_one_overrides_only_what_it_sets() -> None:
    """The inner scope keeps the outer tenant and user; leaving restores the outer one."""
    tenant, user = uuid.uuid4(), uuid.uuid4()
    assert current_scope() == Scope()
    with scope(tenant_id=tenant, user_id=user):
        with scope(user_id="bob", session_id="chat-1") as inner:
            assert inner.tenant_id == tenant
            assert inner.user_id == id_for_key("bob")
            assert inner.session_key == "chat-1"
            assert current_scope() is inner
        assert current_scope() == Scope(tenant_id=tenant, user_id=user)
    assert current_scope() == Scope()


async def test_async_with_and_concurrent_tasks_never_see_each_others_scope() -> None:
    """Each task enters its own scope; what each sees after a yield is still its own."""

    async def in_scope(number: int) -> uuid.UUID | None:
        async with scope(session_id=f"session-{number}"):
            await asyncio.sleep(0.001 * (number % 3))
            return current_scope().session_id

    seen = await asyncio.gather(*(in_scope(n) for n in range(50)))
    assert seen == [id_for_key(f"session-{n}") for n in range(50)]
    assert current_scope().session_id is None


def test_threads_never_see_each_others_scope() -> None:
    """A thread starts with no scope and keeps its own."""
    results: dict[int, uuid.UUID | None] = {}
    barrier = threading.Barrier(8)

    def work(number: int) -> None:
        with scope(user_id=f"user-{number}"):
            barrier.wait()
            results[number] = current_scope().user_id

    with scope(user_id="main"):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {n: id_for_key(f"user-{n}") for n in range(8)}


def test_keys_map_to_stable_uuid5_ids_and_uuids_stay_as_they_are() -> None:
    """The same key gives the same id in every process (UUIDv5 under a fixed namespace)."""
    key_id = id_for_key("user-42")
    assert key_id.version == 5
    assert key_id == uuid.uuid5(chatledger.recording.KEY_NAMESPACE, "user-42")
    assert str(key_id) == "1d8c5e33-4daa-5ca9-a920-35cb7fb94f35"  # never changes
    fixed = uuid.uuid4()
    assert id_for_key(fixed) is fixed
    assert id_for_key(str(fixed)) == fixed
    with pytest.raises(TypeError):
        id_for_key(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        id_for_key("")


# --- recording -----------------------------------------------------------------------------


@pytest.fixture
async def recorder(any_store: PersistenceStore) -> AsyncIterator[Recorder]:
    """A recorder on each backend with its default spool."""
    recorder = Recorder(any_store, user_id="alice", agent_id="helper")
    yield recorder
    await recorder.close()


async def test_a_session_named_by_a_key_is_created_with_the_key_and_the_scope_ids(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """Tenant from the scope, user and agent from the recorder, the key in metadata."""
    tenant = uuid.uuid4()
    with scope(tenant_id=tenant, session_id="support-ticket-7"):
        await recorder.record_message("user", "my order is late")
    assert await recorder.flush() == 0
    session = await any_store.get_session(id_for_key("support-ticket-7"))
    assert session is not None
    assert session.metadata == {"key": "support-ticket-7"}
    with scope(session_id="first-a-call"):  # a call can be the first record of a session
        await recorder.record_call(model="m", started=utc_now())
    await recorder.flush()
    first = await any_store.get_session(id_for_key("first-a-call"))
    assert first is not None
    assert first.metadata == {"key": "first-a-call"}
    assert (session.tenant_id, session.user_id, session.agent_id) == (
        tenant,
        id_for_key("alice"),
        id_for_key("helper"),
    )


async def test_resent_history_is_stored_once_in_order(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """Whole history resent on each call, then a sliding window: each message once, linked."""
    system = ("system", "You are terse.")
    turns: list[tuple[str, str]] = [system]
    with scope(session_id="resend"):
        for number in range(6):
            turns.append(("user", f"question {number}"))
            ids = await recorder.record_conversation(turns)
            await recorder.record_reply(
                ids[-1], f"answer {number}", {"model": "m", "started": utc_now()}
            )
            turns.append(("assistant", f"answer {number}"))
        # a framework that keeps the system prompt and the last two turns only
        window = [system, *turns[-4:], ("user", "question 6")]
        ids = await recorder.record_conversation(window)
        # the same text said twice is two messages
        again = await recorder.record_conversation([*turns, ("user", "question 6"),
                                                    ("user", "question 6")])  # fmt: skip
    await recorder.flush()
    stored = await any_store.get_session_messages(id_for_key("resend"))
    texts = [m.content.text for m in stored]
    expected = [text for _, text in turns] + ["question 6", "question 6"]
    assert texts == expected
    for parent, child in itertools.pairwise(stored):
        assert child.parent_message_id == parent.id
    assert ids[-1] == stored[-2].id
    assert ids[0] == stored[0].id  # the window's system prompt is the stored one
    assert ids[1:-1] == [m.id for m in stored[-6:-2]]
    assert again[-1] == stored[-1].id


async def test_a_new_session_is_read_once_and_never_again_per_call(tmp_path: Path) -> None:
    """The tail comparison costs one read of a session per process, not one per call."""
    store = _CountingStore()
    first = Recorder(store)
    with scope(session_id="known"):
        await first.record_conversation([("user", "hi"), ("assistant", "hello")])
    await first.close()
    assert store.reads == 1
    store.reads = 0
    second = Recorder(store)
    with scope(session_id="known"):
        for number in range(10):
            history = [("user", "hi"), ("assistant", "hello")]
            history += [("user", f"q{i}") for i in range(number + 1)]
            await second.record_conversation(history)
    await second.close()
    assert store.reads == 1
    texts = [m.content.text for m in await store.get_session_messages(id_for_key("known"))]
    assert texts == ["hi", "hello"] + [f"q{i}" for i in range(10)]


async def test_calls_carry_scope_ids_usage_timing_price_and_errors(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """A successful call with every figure, and a failed one whose status follows the error."""
    started = utc_now()
    with scope(session_id="calls"):
        call = await recorder.record_call(
            model="gpt-4o",
            started=started,
            finished=started + timedelta(milliseconds=800),
            prompt_tokens=100,
            completion_tokens=20,
            cached_tokens=60,
            reasoning_tokens=5,
            time_to_first_token_ms=300,
            response_id="chatcmpl-9",
        )
        failed = await recorder.record_call(model="gpt-4o", started=started,
                                            error=TimeoutError("slow"))  # fmt: skip
    await recorder.flush()
    stored = await any_store.get_api_call(call.id)
    assert stored is not None
    assert (stored.latency_ms, stored.time_to_first_token_ms) == (800, 300)
    assert stored.prompt_tokens_details is not None
    assert stored.prompt_tokens_details.cached_tokens == 60
    assert stored.tokens_per_second == pytest.approx(20 / 0.5)
    assert stored.user_id == id_for_key("alice")
    stored_failure = await any_store.get_api_call(failed.id)
    assert stored_failure is not None
    assert stored_failure.status is ApiCallStatus.TIMEOUT


async def test_a_failed_call_keeps_what_was_known_when_it_failed(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """A stream cut mid-way: its response id, time to first token and latency stay."""
    started = utc_now()
    with scope(session_id="cut"):
        cut = await recorder.record_call(
            model="gpt-4o",
            started=started,
            finished=started + timedelta(milliseconds=900),
            time_to_first_token_ms=120,
            response_id="chatcmpl-cut",
            response_message_id=uuid.uuid4(),
            error=ConnectionResetError("peer closed the stream"),
        )
    await recorder.flush()
    stored = await any_store.get_api_call(cut.id)
    assert stored is not None
    assert stored.status is ApiCallStatus.FAILED
    assert (stored.api_response_id, stored.time_to_first_token_ms) == ("chatcmpl-cut", 120)
    assert stored.latency_ms == 900
    assert stored.error_message == "peer closed the stream"
    assert stored.response_message_id == uuid.UUID(int=0)  # MoFA's form for a failed call
    assert (stored.total_tokens, stored.tokens_per_second, stored.total_price) == (0, None, None)


def test_the_blocking_twins_work_from_threads_without_an_event_loop(tmp_path: Path) -> None:
    """A blocking store; eight worker threads record at once; every record lands once."""
    store = chatledger.sync.connect(f"sqlite:///{tmp_path}/threads.db")
    recorder = Recorder(store, agent_id="worker")

    def work(number: int) -> None:
        with scope(session_id=f"thread-{number}"):
            for turn in range(20):
                request = recorder.record_message_sync("user", f"q{turn}")
                call = {"model": "m", "started": request.create_time}
                recorder.record_reply_sync(request.id, f"a{turn}", call)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close_sync()
    for number in range(8):
        messages = store.get_session_messages(id_for_key(f"thread-{number}"))
        assert [m.content.text for m in messages][:4] == ["q0", "a0", "q1", "a1"]
        assert len(messages) == 40
    assert store.count_records("api_calls", QueryFilter()) == 160
    store.close()


async def test_a_blocking_recorder_is_usable_from_another_event_loop(tmp_path: Path) -> None:
    """A recorder built in one loop is used from a thread running a loop of its own."""
    store = await SqliteStore.connect(tmp_path / "loops.db")
    recorder = Recorder(store)

    def other_loop() -> None:
        async def chat() -> None:
            with scope(session_id="elsewhere"):
                await recorder.record_message("user", "from another loop")

        asyncio.run(chat())

    await asyncio.to_thread(other_loop)
    await recorder.close()
    texts = [m.content.text for m in await store.get_session_messages(id_for_key("elsewhere"))]
    assert texts == ["from another loop"]
    await store.close()


# --- defects the Recorder must not repeat --------------------------------------------------


class _CountingStore(InMemoryStore):
    """Counts reads of a session's messages."""

    reads = 0

    async def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        self.reads += 1
        return await super().get_session_messages(session_id)


class _CommitsThenDrops(InMemoryStore):
    """Stores each batch, then reports the connection lost: the acknowledgement never came."""

    drops = 0

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        await super().ingest_records(sessions, messages, calls)
        if self.drops < 20:
            self.drops += 1
            raise StoreConnectionError("connection lost after COMMIT")


async def test_a_batch_committed_but_never_acknowledged_ships_again_without_loss(
    tmp_path: Path,
) -> None:
    """Shipping is idempotent: 20 turns, each commit 'lost', all stored exactly once."""
    store = _CommitsThenDrops()
    recorder = Recorder(store, spool=tmp_path / "spool")
    with scope(session_id="flaky"):
        for number in range(20):
            request = await recorder.record_message("user", f"q{number}")
            await recorder.record_reply(request.id, f"a{number}",
                                        {"model": "m", "started": request.create_time})  # fmt: skip
            while await recorder.flush():
                pass
    await recorder.close()
    messages = await store.get_session_messages(id_for_key("flaky"))
    assert len(messages) == 40
    assert len({m.id for m in messages}) == 40
    assert await store.count_records("api_calls", QueryFilter()) == 20
    assert recorder.stats()["dead_letters"] == 0
    assert store.drops == 20


async def test_a_nul_character_is_replaced_and_the_chats_after_it_are_stored(
    any_store: PersistenceStore, caplog: pytest.LogCaptureFixture
) -> None:
    """No database stores NUL: it becomes U+FFFD, counted and logged; nothing after is lost."""
    recorder = Recorder(any_store)
    with scope(session_id="nul"):
        await recorder.record_message("user", "a\x00b")
        for number in range(5):
            await recorder.record_message("user", f"normal {number}")
    await recorder.close()
    texts = [m.content.text for m in await any_store.get_session_messages(id_for_key("nul"))]
    assert texts == ["a\ufffdb"] + [f"normal {n}" for n in range(5)]
    assert recorder.stats()["sanitized"] == 1
    assert "NUL" in caplog.text


class _RefusesPoison(InMemoryStore):
    """Refuses, for good, any message whose text contains 'poison'."""

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        if any("poison" in (m.content.text or "") for m in messages):
            raise chatledger.ConstraintError("a check constraint refuses this message")
        await super().ingest_records(sessions, messages, calls)


async def test_a_record_refused_for_good_goes_to_the_dead_letters_and_blocks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The refused message is set aside, logged and counted; the records around it ship."""
    store = _RefusesPoison()
    recorder = Recorder(store, spool=tmp_path / "spool")
    with scope(session_id="poison"):
        for text in ["before 1", "before 2", "poison", "after 1", "after 2"]:
            await recorder.record_message("user", text)
    await recorder.flush()
    stored = await store.get_session_messages(id_for_key("poison"))
    assert [m.content.text for m in stored] == ["before 1", "before 2", "after 1", "after 2"]
    # 'after 1' answered the refused message: it links to the one before that instead
    assert stored[2].parent_message_id == stored[1].id
    letters = recorder.spool.dead_letters().result()
    assert [letter.kind for letter in letters] == ["message"]
    assert "check constraint" in letters[0].error
    assert "poison" in letters[0].body
    assert recorder.stats()["dead_letters"] == 1
    assert "dead letters" in caplog.text
    await recorder.close()


async def test_at_the_spool_bound_records_are_dropped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The documented behaviour at the bound: the record is not kept, and stats() says so."""
    store = _Down()
    recorder = Recorder(store, spool=MemorySpool(limit=3))
    with scope(session_id="full"):
        for number in range(5):
            await recorder.record_message("user", f"m{number}")
    stats = recorder.stats()
    assert stats["dropped"] >= 2
    assert stats["waiting"] <= 3
    assert "spool is full" in caplog.text
    store.down = False
    recorder._close_timeout = 2
    await recorder.close()


class _Down(InMemoryStore):
    """Unreachable while ``down``; counts the tries."""

    down = True
    tries = 0

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        self.tries += 1
        if self.down:
            raise StoreConnectionError("the database is down")
        await super().ingest_records(sessions, messages, calls)


async def test_while_the_store_is_down_chats_do_not_wait_and_everything_ships_later(
    tmp_path: Path,
) -> None:
    """Hooks return at spool speed; the spool grows; recovery ships it all, in order."""
    store = _Down()
    recorder = Recorder(store, spool=tmp_path / "spool")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with scope(session_id="outage"):
        for number in range(200):
            await recorder.record_message("user", f"m{number}")
    assert loop.time() - started < 5
    assert store.tries < 10  # new records wait for the back-off, not one try each
    assert recorder.stats()["waiting"] >= 200
    assert recorder.stats()["store_failures"] >= 1
    store.down = False
    await recorder.flush()
    texts = [m.content.text for m in await store.get_session_messages(id_for_key("outage"))]
    assert texts == [f"m{n}" for n in range(200)]
    await recorder.close()


# --- spool files ---------------------------------------------------------------------------


async def test_concurrent_records_share_one_fsync(tmp_path: Path) -> None:
    """Group commit: a hundred records arriving together take far fewer commits than records."""
    spool = FileSpool(tmp_path / "group.spool")
    futures = [spool.append([("message", "{}")]) for _ in range(100)]
    seqs = [await asyncio.wrap_future(f) for f in futures]
    assert seqs == list(range(1, 101))
    assert spool.commits < 50
    spool.close()


async def test_what_a_dead_process_left_in_its_spool_ships_when_a_recorder_starts(
    tmp_path: Path,
) -> None:
    """A spool whose owner is gone (its lock free) is adopted, shipped and removed."""
    store = _Down()
    first = Recorder(store, spool=tmp_path / "spool", close_timeout=0)
    with scope(session_id="left-behind"):
        await first.record_message("user", "spooled, never shipped")
    await first.close()  # the store is down: the record stays in the spool file
    assert len(SpoolDirectory(tmp_path / "spool").files()) == 1
    store.down = False
    second = Recorder(store, spool=tmp_path / "spool")
    await second.flush()
    texts = [m.content.text for m in await store.get_session_messages(id_for_key("left-behind"))]
    assert texts == ["spooled, never shipped"]
    assert second.stats()["adopted_spools"] == 1
    await second.close()
    assert SpoolDirectory(tmp_path / "spool").files() == []


async def test_a_damaged_spool_is_set_aside_with_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage over a spool's header: a SpoolError naming the file; the file is kept aside."""
    directory = tmp_path / "spool"
    directory.mkdir()
    damaged = directory / "999999-dead.spool"
    damaged.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(SpoolError, match=r"999999-dead\.spool"):
        FileSpool(damaged)
    store = InMemoryStore()
    recorder = Recorder(store, spool=directory)
    await recorder.flush()
    assert recorder.stats()["damaged_spools"] == 1
    assert "moved aside" in caplog.text
    assert list(directory.glob("999999-dead.spool.damaged-*"))
    await recorder.close()


def test_a_torn_last_write_loses_nothing_acknowledged_before_it(tmp_path: Path) -> None:
    """A crash mid-write leaves a torn WAL tail: what earlier commits acknowledged survives."""
    path = tmp_path / "torn.spool"
    spool = FileSpool(path)
    for number in range(10):
        spool.append([("message", f'{{"n": {number}}}')]).result()
    wal = Path(f"{path}-wal")
    kept = wal.read_bytes()
    spool._jobs.put(None)
    spool._thread.join()
    # the crash: the WAL as it was, plus half of a frame that never finished
    wal.write_bytes(kept + kept[32 : 32 + 2000])
    reopened = FileSpool(path)
    assert [r.body for r in reopened.peek(100).result()] == [f'{{"n": {n}}}' for n in range(10)]
    reopened.close()


async def test_a_spool_is_never_shipped_to_another_database(tmp_path: Path) -> None:
    """Two databases, one spool directory: the orphan of one is left alone by the other."""
    first = await SqliteStore.connect(tmp_path / "first.db")
    second = await SqliteStore.connect(tmp_path / "second.db")
    down = Recorder(first, spool=tmp_path / "spool", close_timeout=0)
    await first.close()  # closed: nothing ships, the record stays in the spool
    with scope(session_id="mine"):
        await down.record_message("user", "for the first database only")
    await down.close()
    other = Recorder(second, spool=tmp_path / "spool")
    await other.flush()
    assert other.stats()["adopted_spools"] == 0
    assert await second.get_session_messages(id_for_key("mine")) == []
    await other.close()
    await second.close()
    reopened = await SqliteStore.connect(tmp_path / "first.db")
    mine = Recorder(reopened, spool=tmp_path / "spool")
    await mine.flush()
    texts = [m.content.text for m in await reopened.get_session_messages(id_for_key("mine"))]
    assert texts == ["for the first database only"]
    await mine.close()
    await reopened.close()


async def test_a_database_of_one_process_is_written_directly(tmp_path: Path) -> None:
    """The memory store and SQLite's :memory: get no spool file: nothing would outlive them."""
    for store in (InMemoryStore(), await SqliteStore.in_memory()):
        recorder = Recorder(store)
        assert recorder.spool.path is None
        with scope(session_id="here"):
            await recorder.record_message("user", "stored before the call returns")
        assert len(await store.get_session_messages(id_for_key("here"))) == 1
        await recorder.close()
        await store.close()


async def test_bad_arguments_are_refused_clearly() -> None:
    """Not a store, a zero bound: a clear error at construction, before anything starts."""
    with pytest.raises(TypeError, match="chatledger store"):
        Recorder("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spool_limit"):
        Recorder(InMemoryStore(), spool_limit=0)


async def test_closing_after_the_store_was_closed_does_not_wait_out_the_deadline(
    tmp_path: Path,
) -> None:
    """The app closed its store first: close() returns at once, the records stay spooled."""
    store = await SqliteStore.connect(tmp_path / "closed.db")
    recorder = Recorder(store, spool=tmp_path / "spool", close_timeout=30)
    await store.close()
    with scope(session_id="late"):
        await recorder.record_message("user", "recorded after the store closed")
    started = asyncio.get_running_loop().time()
    await recorder.close()
    assert asyncio.get_running_loop().time() - started < 5
    assert len(SpoolDirectory(tmp_path / "spool").files()) == 1  # kept for the next start


async def test_an_exchange_stores_new_messages_the_reply_and_the_call_once(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """Two calls resending the history, then a failure: each message once, calls linked."""
    started = utc_now()
    first: list[tuple[str, str]] = [("system", "Be brief."), ("user", "Hi")]
    with scope(session_id="exchange"):
        ids, reply, call = await recorder.record_exchange(
            first, "Hello!", {"model": "gpt-4o", "started": started, "prompt_tokens": 9}
        )
        second = [*first, ("assistant", "Hello!"), ("user", "Bye")]
        ids2, reply2, call2 = await recorder.record_exchange(
            second, "Bye!", {"model": "gpt-4o", "started": started, "completion_tokens": 2}
        )
        third = [*second, ("assistant", "Bye!"), ("user", "Again?")]
        ids3, nothing, failed = await recorder.record_exchange(
            third, None, {"model": "gpt-4o", "started": started, "error": TimeoutError()}
        )
    assert reply is not None
    assert reply2 is not None
    assert nothing is None
    assert ids2[:3] == [*ids, reply.id]
    assert ids3[:5] == [*ids2, reply2.id]
    await recorder.flush()
    messages = await any_store.get_session_messages(id_for_key("exchange"))
    assert [m.content.text for m in messages] == [
        "Be brief.", "Hi", "Hello!", "Bye", "Bye!", "Again?"
    ]  # fmt: skip
    assert [m.parent_message_id for m in messages[1:]] == [m.id for m in messages[:-1]]
    assert (call.request_message_id, call.response_message_id) == (ids[-1], reply.id)
    assert (call2.request_message_id, call2.response_message_id) == (ids2[-1], reply2.id)
    assert failed.request_message_id == ids3[-1]
    assert failed.status is ApiCallStatus.TIMEOUT
    assert await any_store.count_session_messages(id_for_key("exchange")) == 6


async def test_a_call_can_name_the_provider_whose_prices_apply(tmp_path: Path) -> None:
    """LiteLLM knows each call's provider: its price list applies, not the recorder's default."""
    prices = StaticPricingRegistry(
        {("anthropic", "claude"): ModelPrice(3, 15), ("openai", "claude"): ModelPrice(1, 1)}
    )
    async with Recorder(InMemoryStore(), pricing=prices) as recorder:
        fields: CallFields = {"model": "claude", "started": utc_now(), "prompt_tokens": 10**6}
        default = await recorder.record_call(**fields)
        named = await recorder.record_call(**fields, provider="anthropic")
    assert (default.total_price, named.total_price) == (1, 3)


async def test_a_record_handed_over_without_waiting_is_stored_by_flush_and_close(
    tmp_path: Path,
) -> None:
    """record_exchange_soon from the loop's own thread: nothing blocks, close() still stores it."""
    store = await SqliteStore.connect(tmp_path / "soon.db")
    recorder = Recorder(store, spool=tmp_path / "spool")
    fields: CallFields = {"model": "m", "started": utc_now(), "prompt_tokens": 3}
    with scope(session_id="soon"):
        first = recorder.record_exchange_soon([("user", "hi")], "hello", fields)
    assert await recorder.flush() == 0
    assert first.done()
    with scope(session_id="soon"):
        recorder.record_exchange_soon([("user", "hi"), ("assistant", "hello"), ("user", "bye")],
                                      "bye!", fields)  # fmt: skip
    await recorder.close()  # waits for the hand-over before it ships
    messages = await store.get_session_messages(id_for_key("soon"))
    assert [m.content.text for m in messages] == ["hi", "hello", "bye", "bye!"]
    assert await store.count_records("api_calls", QueryFilter()) == 2
    await store.close()


async def test_hand_overs_are_spooled_in_order_while_a_session_is_first_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool round handed over before the first call's session read returns: each message once."""
    store = await SqliteStore.connect(tmp_path / "order.db")
    reads = 0
    read = store.get_session_messages

    async def slow_first_read(session_id: uuid.UUID) -> list[LLMMessage]:
        nonlocal reads
        reads += 1
        if reads == 1:  # the first hand-over's read answers after the second's
            await asyncio.sleep(0.3)
        return await read(session_id)

    monkeypatch.setattr(store, "get_session_messages", slow_first_read)
    recorder = Recorder(store, spool=tmp_path / "spool")
    fields: CallFields = {"model": "m", "started": utc_now(), "prompt_tokens": 3}
    asked = [("system", "Be brief."), ("user", "Weather?")]
    with scope(session_id="round"):
        recorder.record_exchange_soon(asked, "Let me look.", fields)
        recorder.record_exchange_soon(
            [*asked, ("assistant", "Let me look."), ("user", "Well?")], "Sunny.", fields
        )
    await recorder.close()
    messages = await store.get_session_messages(id_for_key("round"))
    assert [m.content.text for m in messages] == [
        "Be brief.", "Weather?", "Let me look.", "Well?", "Sunny."
    ]  # fmt: skip
    await store.close()


async def test_the_same_exchange_twice_stores_its_messages_once(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """A span exported twice: the request and the reply are stored once; the call links them."""
    exchange: list[tuple[str, str]] = [("system", "Be brief."), ("user", "Weather?")]
    fields: CallFields = {"model": "m", "started": utc_now(), "call_id": uuid.uuid4()}
    with scope(session_id="twice"):
        ids, reply, first = await recorder.record_exchange(exchange, "Sunny.", fields)
        ids2, again, second = await recorder.record_exchange(exchange, "Sunny.", fields)
    assert reply is not None
    assert again is None
    assert ids2 == ids
    assert (second.request_message_id, second.response_message_id) == (ids[-1], reply.id)
    assert first.id == second.id == fields["call_id"]
    await recorder.flush()
    assert await any_store.count_session_messages(id_for_key("twice")) == 3
    assert await any_store.count_records("api_calls", QueryFilter()) == 1


async def test_a_call_recorded_after_the_next_one_is_known_as_stored(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """LiteLLM logs calls in worker threads: the second call may be recorded first.

    Its request resent the first call's request and reply, so when the first call
    comes it links those messages instead of storing them again.
    """
    first_request: list[tuple[str, str]] = [("system", "Be brief."), ("user", "Capital?")]
    second_request = [*first_request, ("assistant", "Paris."), ("user", "And Italy?")]
    first: CallFields = {"model": "m", "started": utc_now(), "call_id": uuid.uuid4()}
    second: CallFields = {"model": "m", "started": utc_now(), "call_id": uuid.uuid4()}
    with scope(session_id="late"):
        ids, rome, _ = await recorder.record_exchange(second_request, "Rome.", second)
        ids_first, again, call = await recorder.record_exchange(first_request, "Paris.", first)
        third = [*second_request, ("assistant", "Rome."), ("user", "Bye.")]
        await recorder.record_exchange(third, "Bye!", {"model": "m", "started": utc_now()})
    assert rome is not None
    assert again is None
    assert ids_first == ids[:2]
    assert (call.request_message_id, call.response_message_id) == (ids[1], ids[2])
    await recorder.flush()
    messages = await any_store.get_session_messages(id_for_key("late"))
    assert [m.content.text for m in messages] == [
        "Be brief.", "Capital?", "Paris.", "And Italy?", "Rome.", "Bye.", "Bye!"
    ]  # fmt: skip


async def test_a_new_call_repeating_the_opening_is_stored_as_new(
    recorder: Recorder, any_store: PersistenceStore
) -> None:
    """Without an id of its own, a call whose exchange matches the opening is a new call."""
    opening: list[tuple[str, str]] = [("system", "Be brief."), ("user", "Hi")]
    fields: CallFields = {"model": "m", "started": utc_now()}
    with scope(session_id="again"):
        await recorder.record_exchange(opening, "Hello!", fields)
        await recorder.record_exchange([*opening, ("assistant", "Hello!"), ("user", "Hi")],
                                       "Hello!", fields)  # fmt: skip
        _, reply, _ = await recorder.record_exchange(opening, "Hello!", fields)
    assert reply is not None
    await recorder.flush()
    assert await any_store.count_session_messages(id_for_key("again")) == 8


async def test_a_cancellation_lost_on_the_way_still_ends_the_shipper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.run's cancellation reaches the shipper even if a batch swallowed it.

    Python 3.11's ``wait_for`` (the shipper's batch timeout) drops a cancellation
    that arrives as the batch completes; the shipper then waited for work
    forever and ``asyncio.run`` never returned (a SIGTERM drill hung under load).
    """
    store = await SqliteStore.connect(tmp_path / "cancel.db")
    recorder = Recorder(store, spool=tmp_path / "spool")
    shipping = asyncio.Event()

    async def swallowing(*, unless_down: bool = False) -> int:
        shipping.set()
        # what 3.11's wait_for does when the batch completes as it is cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.2)
        return 0

    async def on_home() -> bool:
        """Cancel the shipper's task while it ships, as asyncio.run does; whether it ended."""
        (shipper,) = [
            t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Recorder._run"
        ]  # type: ignore[union-attr]
        await shipping.wait()
        shipper.cancel()
        done, _ = await asyncio.wait({shipper}, timeout=5)
        return shipper in done and shipper.cancelled()

    monkeypatch.setattr(recorder, "_ship_now", swallowing)
    recorder._wake_shipper()
    ended = asyncio.run_coroutine_threadsafe(on_home(), recorder._home)
    assert await asyncio.wrap_future(ended)
    await recorder.close()
    await store.close()


async def test_a_recorder_with_a_retention_prunes_what_is_older(
    any_store: PersistenceStore,
) -> None:
    """``retention="30d"``: calls and sessions older than that go; new records stay."""
    old = make_session(create_time=utc_now() - timedelta(days=40))
    await any_store.create_session(old)
    await any_store.save_api_call(make_api_call(old, create_time=old.create_time))
    recorder = Recorder(any_store, retention="30d")
    with scope(session_id="fresh"):
        await recorder.record_exchange(
            [("user", "Hi")], "Hello!", {"model": "m", "started": utc_now()}
        )
    for _ in range(100):  # the first pruning runs at once, in the background
        if await any_store.get_session(old.id) is None:
            break
        await asyncio.sleep(0.02)
    await recorder.close()
    assert await any_store.get_session(old.id) is None
    assert await any_store.count_records("api_calls", QueryFilter()) == 1
    assert await any_store.count_session_messages(id_for_key("fresh")) == 2


def test_a_retention_that_is_not_a_duration_fails_before_recording() -> None:
    """A bad setting raises ValueError at once, naming the forms it takes."""
    with pytest.raises(ValueError, match="90d"):
        Recorder(InMemoryStore(), retention="ninety days")
