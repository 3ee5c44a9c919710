"""chatledger.integrations.llama_index: ChatledgerChatStore, LlamaIndex's BaseChatStore.

The behaviours of llama-index-core's ``SimpleChatStore`` tests, written again
against this adapter on every backend; the same sequences of operations run on
``SimpleChatStore`` itself and must give the same lists; then what chatledger
adds: exact round trips, chatledger's columns, keys scoped to tenants, threads
and loops, errors.

The async stores of ``any_store`` live on the test's loop: blocking methods
are called from a worker thread, as LlamaIndex's sync code calls them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.base.llms.types import (
    AudioBlock,
    CitationBlock,
    DocumentBlock,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.storage.chat_store import SimpleChatStore
from llama_index.core.storage.chat_store.base import BaseChatStore

import chatledger.sync
from chatledger.entities import (
    LLMMessage,
    MessageContent,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.entities import MessageRole as Role
from chatledger.errors import PersistenceError
from chatledger.integrations.langchain import ChatledgerChatMessageHistory
from chatledger.integrations.llama_index import ChatledgerChatStore
from chatledger.recording import id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.stores.sqlite import SqliteStore

_T = TypeVar("_T")


def user(text: str) -> ChatMessage:
    """A user message saying ``text``."""
    return ChatMessage(role="user", content=text)


def texts(messages: list[ChatMessage] | None) -> list[str | None] | None:
    """What each message says, or None for None."""
    return None if messages is None else [m.content for m in messages]


async def blocking(call: Callable[[], _T]) -> _T:
    """``call`` run in a worker thread, as LlamaIndex's sync code calls a chat store."""
    return await asyncio.to_thread(call)


def every_kind_of_message() -> list[ChatMessage]:
    """A message of each role, with every block type and additional_kwargs of each shape."""
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.DEVELOPER, content="Answer in French."),
        ChatMessage(
            role=MessageRole.USER,
            blocks=[
                TextBlock(text="What is on this page? ハロー héllo"),
                ImageBlock(image=b"\x89PNG\r\n\x1a\n", image_mimetype="image/png"),
                ImageBlock(url="https://example.com/cat.png", detail="high"),
                AudioBlock(audio=b"RIFF....WAVE", format="wav"),
                DocumentBlock(data=b"%PDF-1.7", document_mimetype="application/pdf"),
            ],
            additional_kwargs={"lang": "en", "nested": {"a": [1, 2.5, None, True]}},
        ),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                ThinkingBlock(content="the user wants the weather", num_tokens=6),
                TextBlock(text="Let me check."),
                ToolCallBlock(tool_call_id="call-2", tool_name="lookup", tool_kwargs={"q": "x"}),
            ],
            additional_kwargs={
                "tool_calls": [
                    {
                        "id": "call-1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ]
            },
        ),
        ChatMessage(
            role=MessageRole.TOOL,
            content="sunny",
            additional_kwargs={"tool_call_id": "call-1", "name": "weather"},
        ),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                CitationBlock(
                    cited_content=TextBlock(text="sunny"),
                    source="weather",
                    title="forecast",
                    additional_location_info={"page": 1},
                ),
                TextBlock(text="It is sunny."),
            ],
        ),
        ChatMessage(role=MessageRole.CHATBOT, content="chatbot"),
        ChatMessage(role=MessageRole.MODEL, content="model"),
        ChatMessage(role=MessageRole.FUNCTION, content="42", additional_kwargs={"name": "f"}),
        ChatMessage(role=MessageRole.ASSISTANT, content=None),
        ChatMessage(role=MessageRole.USER, content=""),
    ]


# --- SimpleChatStore's tests ------------------------------------------------------------------


async def test_add_messages(any_store: PersistenceStore) -> None:
    """Messages append per key; keys list in creation order; idx=0 inserts first."""
    chat_store = ChatledgerChatStore(any_store)

    def run() -> None:
        chat_store.add_message("user1", user("hello"))
        chat_store.add_message("user1", user("world"))
        chat_store.add_message("user2", user("hello"))
        chat_store.add_message("user2", user("world"))
        assert chat_store.get_messages("user1") == [user("hello"), user("world")]
        assert chat_store.get_messages("user2") == [user("hello"), user("world")]
        assert chat_store.get_keys() == ["user1", "user2"]
        chat_store.add_message("user1", user("hello"), idx=0)
        assert chat_store.get_messages("user1") == [user("hello"), user("hello"), user("world")]

    await blocking(run)


async def test_delete_chat_messages(any_store: PersistenceStore) -> None:
    """delete_messages empties one key and leaves the other."""
    chat_store = ChatledgerChatStore(any_store)

    def run() -> None:
        for key in ("user1", "user2"):
            chat_store.add_message(key, user("hello"))
            chat_store.add_message(key, user("world"))
        assert chat_store.delete_messages("user1") == [user("hello"), user("world")]
        assert chat_store.get_messages("user1") == []
        assert chat_store.get_messages("user2") == [user("hello"), user("world")]
        assert chat_store.get_keys() == ["user2"]

    await blocking(run)


async def test_delete_last_message(any_store: PersistenceStore) -> None:
    """delete_last_message removes and returns the newest."""
    chat_store = ChatledgerChatStore(any_store)

    def run() -> None:
        chat_store.add_message("user1", user("hello"))
        chat_store.add_message("user1", user("world"))
        assert chat_store.delete_last_message("user1") == user("world")
        assert chat_store.get_messages("user1") == [user("hello")]

    await blocking(run)


async def test_delete_message_at_an_index(any_store: PersistenceStore) -> None:
    """delete_message removes and returns the message at ``idx``."""
    chat_store = ChatledgerChatStore(any_store)

    def run() -> None:
        chat_store.add_message("user1", user("hello"))
        chat_store.add_message("user1", user("world"))
        assert chat_store.delete_message("user1", 0) == user("hello")
        assert chat_store.get_messages("user1") == [user("world")]

    await blocking(run)


async def test_delete_message_out_of_bounds(any_store: PersistenceStore) -> None:
    """An index past either end deletes nothing and returns None."""
    chat_store = ChatledgerChatStore(any_store)

    def run() -> None:
        chat_store.add_message("user1", user("hello"))
        assert chat_store.delete_message("user1", -2) is None
        assert chat_store.delete_message("user1", 1) is None
        assert chat_store.get_messages("user1") == [user("hello")]

    await blocking(run)


async def test_delete_last_message_from_an_emptied_history(any_store: PersistenceStore) -> None:
    """The last message deleted, the next delete_last_message returns None."""
    chat_store = ChatledgerChatStore(any_store)

    def run() -> None:
        chat_store.add_message("user1", user("hello"))
        assert chat_store.delete_last_message("user1") == user("hello")
        assert chat_store.delete_last_message("user1") is None
        assert chat_store.get_keys() == ["user1"]

    await blocking(run)


async def test_non_ascii_text_round_trips(any_store: PersistenceStore) -> None:
    """Text in any script comes back as written."""
    chat_store = ChatledgerChatStore(any_store)
    await chat_store.async_add_message("user1", user("ハロー héllo 👋"))
    again = ChatledgerChatStore(any_store)
    assert await again.aget_messages("user1") == [user("ハロー héllo 👋")]


async def test_unknown_keys(any_store: PersistenceStore) -> None:
    """An unknown key: no messages, nothing deleted (None), and it is not created."""
    chat_store = ChatledgerChatStore(any_store)

    def run() -> None:
        assert chat_store.get_messages("nobody") == []
        assert chat_store.delete_messages("nobody") is None
        assert chat_store.delete_message("nobody", 0) is None
        assert chat_store.delete_last_message("nobody") is None
        assert chat_store.get_keys() == []

    await blocking(run)
    assert await chat_store.aget_messages("nobody") == []
    assert await chat_store.adelete_messages("nobody") is None
    assert await chat_store.adelete_message("nobody", 0) is None
    assert await chat_store.adelete_last_message("nobody") is None
    assert await chat_store.aget_keys() == []


async def test_set_messages_replaces_and_an_empty_list_keeps_the_key(
    any_store: PersistenceStore,
) -> None:
    """set_messages replaces the list; set to [] the key exists, empty (delete returns [])."""
    chat_store = ChatledgerChatStore(any_store)
    await chat_store.aset_messages("k", [user("a"), user("b")])
    await chat_store.aset_messages("k", [user("c")])
    assert await chat_store.aget_messages("k") == [user("c")]
    await chat_store.aset_messages("empty", [])
    assert await chat_store.aget_keys() == ["k", "empty"]
    assert await chat_store.aget_messages("empty") == []
    assert await chat_store.adelete_messages("empty") == []
    assert await chat_store.aget_keys() == ["k"]
    # A deleted key comes back when written again.
    await chat_store.async_add_message("empty", user("back"))
    assert await chat_store.aget_keys() == ["k", "empty"]
    assert await chat_store.aget_messages("empty") == [user("back")]


# --- the same answers as SimpleChatStore ------------------------------------------------------

_INSERTS = [0, 1, 2, -1, -2, -3, -10, 3, 4, 10]


def operations() -> list[tuple[str, Any]]:
    """A script of writes: appends, set_messages, inserts everywhere, deletes everywhere."""
    script: list[tuple[str, Any]] = [("add", None)] * 3
    script += [("add", idx) for idx in _INSERTS]
    script += [("delete", idx) for idx in (0, -1, 2, 5, -3, 99, -99)]
    script += [("last", None), ("set", 4)]
    script += [("add", idx) for idx in _INSERTS]  # into messages set in one call
    script += [("delete", idx) for idx in (1, -2)]
    return script


def play(chat_store: BaseChatStore, script: list[tuple[str, Any]]) -> list[Any]:
    """Run ``script`` on ``chat_store``; what each step returned and the list after it."""
    seen: list[Any] = []
    for step, (op, arg) in enumerate(script):
        message = user(f"m{step}")
        if op == "add":
            result: Any = chat_store.add_message("k", message, idx=arg)
        elif op == "delete":
            # SimpleChatStore 0.14 raises IndexError below -len; its newer tests want None.
            below = isinstance(chat_store, SimpleChatStore) and arg < -len(chat_store.store["k"])
            result = None if below else chat_store.delete_message("k", arg)
        elif op == "last":
            result = chat_store.delete_last_message("k")
        else:
            result = chat_store.set_messages("k", [user(f"s{step}-{i}") for i in range(arg)])
        seen.append((op, arg, result, texts(chat_store.get_messages("k"))))
    return seen


async def test_inserts_and_deletes_answer_as_simple_chat_store(any_store: PersistenceStore) -> None:
    """Every insert position (list.insert's) and delete position gives SimpleChatStore's list."""
    expected = play(SimpleChatStore(), operations())
    chat_store = ChatledgerChatStore(any_store)  # made on the loop that opened the store
    got = await blocking(lambda: play(chat_store, operations()))
    assert got == expected


async def test_order_and_parents_after_inserts(any_store: PersistenceStore) -> None:
    """Rows stay in list order; each row's parent is the one it followed when written."""
    chat_store = ChatledgerChatStore(any_store)
    await chat_store.aset_messages("k", [user("a"), user("c")])  # one stamp for both
    await chat_store.async_add_message("k", user("b"), idx=1)
    await chat_store.async_add_message("k", user("d"))
    await chat_store.async_add_message("k", user("c2"), idx=3)  # between separate writes
    await chat_store.async_add_message("k", user("0"), idx=0)
    assert texts(await chat_store.aget_messages("k")) == ["0", "a", "b", "c", "c2", "d"]
    rows = await any_store.get_session_messages(id_for_key("k"))
    assert [row.content.text for row in rows] == ["0", "a", "b", "c", "c2", "d"]
    parent = {row.content.text: row.parent_message_id for row in rows}
    by_text = {row.content.text: row.id for row in rows}
    assert parent["0"] is None
    assert parent["a"] is None  # the first of its set_messages
    # b went between two messages of one write: c was written again after it.
    assert (parent["b"], parent["c"]) == (by_text["a"], by_text["b"])
    # c2 went between two separate writes: a row of its own, d keeping its parent.
    assert (parent["c2"], parent["d"]) == (by_text["c"], by_text["c"])


# --- exact round trips and chatledger's columns -----------------------------------------------


async def test_every_kind_of_message_round_trips_exactly(any_store: PersistenceStore) -> None:
    """Roles, blocks (images, audio, documents...) and additional_kwargs come back equal."""
    expected = every_kind_of_message()
    chat_store = ChatledgerChatStore(any_store)
    await chat_store.aset_messages("set", expected)
    for message in expected:
        await chat_store.async_add_message("added", message)
    for key in ("set", "added"):
        got = await chat_store.aget_messages(key)
        assert got == expected
        assert [m.model_dump() for m in got] == [m.model_dump() for m in expected]
    assert await blocking(lambda: chat_store.get_messages("set")) == expected
    assert await chat_store.adelete_messages("set") == expected


async def test_chatledger_columns_are_filled_from_each_message(any_store: PersistenceStore) -> None:
    """The CLI, stats and dashboard read roles, text, tool calls and results from the row."""
    chat_store = ChatledgerChatStore(any_store)
    await chat_store.aset_messages("k", every_kind_of_message()[:6])
    rows = await any_store.get_session_messages(id_for_key("k"))
    assert [row.role for row in rows] == [
        Role.SYSTEM,
        Role.SYSTEM,
        Role.USER,
        Role.ASSISTANT,
        Role.TOOL,
        Role.ASSISTANT,
    ]
    system, _, asked, calls, result, answer = (row.content for row in rows)
    assert system.text == "Be brief."
    assert asked.text == "What is on this page? ハロー héllo"
    assert asked.extra["attachments"] == ["image", "image", "audio", "document"]
    assert calls.text == "Let me check."
    assert calls.tool_calls == [
        ToolCallContent(id="call-1", name="weather", arguments={"city": "Paris"}),
        ToolCallContent(id="call-2", name="lookup", arguments={"q": "x"}),
    ]
    assert result.tool_result == ToolResultContent(tool_call_id="call-1", content="sunny")
    assert answer.text == "It is sunny."
    assert all("llama_index_message" in row.content.extra for row in rows)


async def test_messages_recorded_by_other_means_read_from_their_columns(
    any_store: PersistenceStore,
) -> None:
    """A session chatledger recorded itself reads as ChatMessages, tool calls in OpenAI's shape."""
    chat_store = ChatledgerChatStore(any_store)
    await chat_store.async_add_message("k", user("Weather in Paris?"))
    session, nil = id_for_key("k"), uuid.UUID(int=0)
    call = ToolCallContent(id="c1", name="weather", arguments={"city": "Paris"})
    result = ToolResultContent(tool_call_id="c1", content="sunny")
    await any_store.save_messages(
        [
            LLMMessage.new(
                session, nil, nil, nil, Role.ASSISTANT, MessageContent(tool_calls=[call])
            ),
            LLMMessage.new(session, nil, nil, nil, Role.TOOL, MessageContent(tool_result=result)),
        ]
    )
    _, asked, answered = await chat_store.aget_messages("k")
    assert asked.role is MessageRole.ASSISTANT
    assert asked.additional_kwargs["tool_calls"] == [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert answered == ChatMessage(
        role=MessageRole.TOOL, content="sunny", additional_kwargs={"tool_call_id": "c1"}
    )


# --- keys, scopes, stores, loops --------------------------------------------------------------


async def test_a_key_maps_to_a_chatledger_session_with_the_ids_given(
    any_store: PersistenceStore,
) -> None:
    """A key names a stable session keeping the key and the ids; it counts like any other."""
    chat_store = ChatledgerChatStore(any_store, tenant_id="acme", user_id="u-1", agent_id="bot")
    await chat_store.async_add_message("user-1:chat", user("hi"))
    session = await any_store.get_session(id_for_key("user-1:chat"))
    assert session is not None
    assert session.metadata["key"] == "user-1:chat"
    assert (session.tenant_id, session.user_id, session.agent_id) == (
        id_for_key("acme"),
        id_for_key("u-1"),
        id_for_key("bot"),
    )
    assert await any_store.count_session_messages(session.id) == 1
    # A UUID key is the session's id as is, and still listed by its key.
    key = str(uuid.uuid4())
    await chat_store.async_add_message(key, user("hi"))
    assert await any_store.get_session(uuid.UUID(key)) is not None
    assert await chat_store.aget_keys() == ["user-1:chat", key]


async def test_get_keys_is_scoped_to_the_store_ids_and_to_chat_stores(
    any_store: PersistenceStore,
) -> None:
    """Each tenant (user, agent) lists its own keys; sessions made by other adapters are not."""
    acme = ChatledgerChatStore(any_store, tenant_id="acme")
    globex = ChatledgerChatStore(any_store, tenant_id="globex", user_id="u-9")
    everyone = ChatledgerChatStore(any_store)
    await acme.async_add_message("a1", user("x"))
    await globex.async_add_message("g1", user("x"))
    await acme.aset_messages("a2", [])
    await ChatledgerChatMessageHistory("langchain-chat", any_store, tenant_id="acme").aclear()
    await ChatledgerChatMessageHistory("lc", any_store, tenant_id="acme").aadd_messages(
        [HumanMessage("not a chat store's")]
    )
    assert await acme.aget_keys() == ["a1", "a2"]
    assert await globex.aget_keys() == ["g1"]
    assert await ChatledgerChatStore(any_store, user_id="u-9").aget_keys() == ["g1"]
    assert await ChatledgerChatStore(any_store, agent_id="other").aget_keys() == []
    assert await everyone.aget_keys() == ["a1", "g1", "a2"]
    # Messages are reached by key whatever the store's ids.
    assert await everyone.aget_messages("g1") == [user("x")]


async def test_get_keys_reads_past_one_page(any_store: PersistenceStore) -> None:
    """More keys than one page of sessions: all listed, oldest first."""
    chat_store = ChatledgerChatStore(any_store)
    keys = [f"key-{i:04d}" for i in range(520)]
    for key in keys:
        await chat_store.aset_messages(key, [])
    assert await chat_store.aget_keys() == keys


async def test_async_twins(any_store: PersistenceStore) -> None:
    """Every async method does what its sync twin does."""
    chat_store = ChatledgerChatStore(any_store)
    await chat_store.aset_messages("k", [user("a"), user("b")])
    await chat_store.async_add_message("k", user("c"))
    await chat_store.async_add_message("k", user("first"), idx=0)
    assert texts(await chat_store.aget_messages("k")) == ["first", "a", "b", "c"]
    assert await chat_store.adelete_message("k", 1) == user("a")
    assert await chat_store.adelete_last_message("k") == user("c")
    assert await chat_store.aget_keys() == ["k"]
    assert await chat_store.adelete_messages("k") == [user("first"), user("b")]
    assert await chat_store.aget_keys() == []


async def test_chat_memory_buffer_keeps_its_history_in_chatledger(
    any_store: PersistenceStore,
) -> None:
    """LlamaIndex's ChatMemoryBuffer holds the store (a pydantic field) and reads it back."""
    chat_store = ChatledgerChatStore(any_store, user_id="u-1")
    memory = ChatMemoryBuffer.from_defaults(
        chat_store=chat_store, chat_store_key="user-1", token_limit=1000
    )
    assert memory.chat_store is chat_store
    await memory.aput(user("hi"))
    await memory.aput(ChatMessage(role="assistant", content="hello"))
    later = ChatMemoryBuffer.from_defaults(
        chat_store=ChatledgerChatStore(any_store), chat_store_key="user-1"
    )
    assert texts(await later.aget()) == ["hi", "hello"]
    assert texts(await blocking(later.get_all)) == ["hi", "hello"]
    await blocking(later.reset)
    assert await chat_store.aget_messages("user-1") == []
    # Serialized, the store is its class name: the chatledger store is a private attribute.
    assert chat_store.to_dict() == {"class_name": "ChatledgerChatStore"}
    assert memory.to_dict()["chat_store"] == {"class_name": "ChatledgerChatStore"}


async def test_a_blocking_store_works_from_a_thread_running_a_loop(tmp_path: Path) -> None:
    """chatledger.sync.connect: sync methods called on a thread whose loop is running."""
    store = chatledger.sync.connect(f"sqlite:///{tmp_path / 'sync.db'}")
    try:
        chat_store = ChatledgerChatStore(store)
        chat_store.add_message("k", user("a"))  # on the test's loop
        chat_store.add_message("k", user("b"), idx=0)
        assert texts(chat_store.get_messages("k")) == ["b", "a"]
        await chat_store.async_add_message("k", user("c"))
        assert chat_store.get_keys() == ["k"]
        assert texts(chat_store.delete_messages("k")) == ["b", "a", "c"]
    finally:
        store.close()


async def test_other_threads_and_loops_reach_the_store(any_store: PersistenceStore) -> None:
    """Async methods awaited on another thread's own loop, sync ones from worker threads."""
    chat_store = ChatledgerChatStore(any_store)

    def elsewhere() -> list[ChatMessage]:
        async def run() -> list[ChatMessage]:
            await chat_store.async_add_message("k", user("from another loop"))
            return await chat_store.aget_messages("k")

        return asyncio.run(run())

    assert texts(await blocking(elsewhere)) == ["from another loop"]


async def test_concurrent_writers(any_store: PersistenceStore) -> None:
    """Threads and tasks adding at once: every message stored, each writer's in its order."""
    chat_store = ChatledgerChatStore(any_store)

    def thread_writer(n: int) -> None:
        for i in range(5):
            chat_store.add_message("busy", user(f"t{n}-{i}"))

    async def task_writer(n: int) -> None:
        for i in range(5):
            await chat_store.async_add_message("busy", user(f"k{n}-{i}"))

    await asyncio.gather(
        *(asyncio.to_thread(thread_writer, n) for n in range(4)),
        *(task_writer(n) for n in range(4)),
    )
    said = [str(text) for text in texts(await chat_store.aget_messages("busy")) or []]
    assert len(said) == 40
    for writer in [f"t{n}" for n in range(4)] + [f"k{n}" for n in range(4)]:
        assert [s for s in said if s.startswith(writer + "-")] == [
            f"{writer}-{i}" for i in range(5)
        ]


# --- errors -----------------------------------------------------------------------------------


async def test_bad_arguments_are_refused_before_the_database(any_store: PersistenceStore) -> None:
    """Not a ChatMessage, an empty key, a position that is not an int: clear errors."""
    chat_store = ChatledgerChatStore(any_store)
    with pytest.raises(TypeError, match="ChatMessage"):
        await chat_store.async_add_message("k", "hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        await chat_store.aget_messages("")
    with pytest.raises(TypeError, match="int"):
        await chat_store.adelete_message("k", 1.0)  # type: ignore[arg-type]
    assert await chat_store.aget_keys() == []


async def test_a_message_that_is_not_json_is_refused(any_store: PersistenceStore) -> None:
    """additional_kwargs JSON cannot hold: a PersistenceError, and nothing stored."""
    chat_store = ChatledgerChatStore(any_store)
    odd = ChatMessage(role="user", content="x", additional_kwargs={"lock": threading.Lock()})
    with pytest.raises(PersistenceError):
        await chat_store.aset_messages("k", [user("fine"), odd])
    assert await chat_store.aget_messages("k") == []


async def test_a_closed_store_raises_a_persistence_error(tmp_path: Path) -> None:
    """A database failure is a chatledger PersistenceError, never a driver's exception."""
    store = await SqliteStore.connect(tmp_path / "closed.db")
    chat_store = ChatledgerChatStore(store)
    await chat_store.async_add_message("k", user("hi"))
    await store.close()
    with pytest.raises(PersistenceError):
        await chat_store.async_add_message("k", user("again"))
    with pytest.raises(PersistenceError):
        await chat_store.aget_messages("k")
    with pytest.raises(PersistenceError):
        await blocking(chat_store.get_keys)


def test_without_llama_index_the_import_names_the_extra() -> None:
    """llama_index made unimportable: the ImportError says which pip install brings it."""
    code = (
        "import sys\n"
        "sys.modules['llama_index'] = None\n"
        "try:\n"
        "    import chatledger.integrations.llama_index\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'chatledger[llama-index]'" in done.stdout
