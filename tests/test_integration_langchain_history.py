"""chatledger.integrations.langchain: ChatledgerChatMessageHistory, LangChain's chat history.

The behaviours of LangChain's own history tests (langchain-core's
``chat_history`` tests, langchain-community's ``SQLChatMessageHistory`` tests),
written again against this adapter, on every backend; then what chatledger
adds: exact round trips of every message type, chatledger's own columns,
keys, scopes, threads and loops, and errors.

The async stores of ``any_store`` live on the test's loop: blocking methods
are called from a worker thread, as LangChain's sync runs call them.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.runnables.history import RunnableWithMessageHistory

import chatledger
import chatledger.sync
from chatledger.entities import (
    LLMMessage,
    MessageContent,
    MessageRole,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.errors import PersistenceError
from chatledger.integrations.langchain import ChatledgerChatMessageHistory
from chatledger.recording import id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.stores.sqlite import SqliteStore


def every_message_type() -> list[BaseMessage]:
    """One message of each type LangChain has, with every field that type can carry."""
    return [
        SystemMessage("Be brief.", id="sys-1", additional_kwargs={"cache": {"type": "ephemeral"}}),
        HumanMessage(
            content=[
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
            id="human-1",
            name="alice",
            additional_kwargs={"lang": "en", "nested": [1, 2.5, None, True]},
        ),
        AIMessage(
            content="Let me look.",
            id="ai-1",
            name="bot",
            tool_calls=[
                {"name": "look", "args": {"url": "https://example.com/cat.png"}, "id": "call-1"},
                {"name": "weather", "args": {"city": "Paris", "days": 3}, "id": "call-2"},
            ],
            invalid_tool_calls=[
                {"name": "broken", "args": '{"city": ', "id": "call-3", "error": "bad JSON"}
            ],
            usage_metadata={
                "input_tokens": 120,
                "output_tokens": 30,
                "total_tokens": 150,
                "input_token_details": {"cache_read": 100, "cache_creation": 5},
                "output_token_details": {"reasoning": 12},
            },
            response_metadata={
                "model_name": "gpt-4o-mini-2024-07-18",
                "finish_reason": "tool_calls",
                "id": "chatcmpl-1",
                "logprobs": {"content": [{"token": "Let", "logprob": -0.125}]},
            },
            additional_kwargs={"refusal": None, "audio": {"id": "a1"}},
        ),
        ToolMessage(
            "a cat on a mat",
            tool_call_id="call-1",
            id="tool-1",
            artifact={"boxes": [[1, 2, 3, 4]], "score": 0.75},
            status="success",
        ),
        ToolMessage("city not found", tool_call_id="call-2", status="error", name="weather"),
        FunctionMessage("42", name="answer", id="fn-1"),
        ChatMessage("Looks right to me.", role="critic", id="chat-1"),
        AIMessage(""),
        AIMessageChunk(
            content="It is a ",
            id="chunk-1",
            tool_call_chunks=[
                {"name": "look", "args": '{"url": "https://', "id": "call-9", "index": 0}
            ],
            usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
            response_metadata={"model_provider": "openai"},
            chunk_position="last",
        ),
        HumanMessageChunk("hel", id="chunk-2"),
        SystemMessageChunk("be", additional_kwargs={"k": "v"}),
        ToolMessageChunk("par", tool_call_id="call-9", artifact=[1, 2], status="error"),
        FunctionMessageChunk("4", name="answer"),
        ChatMessageChunk("lo", role="critic", id="chunk-3"),
    ]


def assert_same(got: list[BaseMessage], expected: list[BaseMessage]) -> None:
    """Equal messages of the very same classes (a chunk stays a chunk), in order."""
    assert [type(m) for m in got] == [type(m) for m in expected]
    assert got == expected
    for one, other in zip(got, expected, strict=True):
        assert one.model_dump() == other.model_dump()


# --- LangChain's own behaviours ---------------------------------------------------------------


async def test_add_user_and_ai_messages(any_store: PersistenceStore) -> None:
    """add_user_message and add_ai_message (sync) come back as Human and AI messages, in order."""
    history = ChatledgerChatMessageHistory("123", any_store)

    def run() -> list[BaseMessage]:
        history.add_user_message("Hello!")
        history.add_ai_message("Hi there!")
        return history.messages

    messages = await asyncio.to_thread(run)
    assert len(messages) == 2
    assert isinstance(messages[0], HumanMessage)
    assert isinstance(messages[1], AIMessage)
    assert messages[0].content == "Hello!"
    assert messages[1].content == "Hi there!"


async def test_async_add_user_and_ai_messages(any_store: PersistenceStore) -> None:
    """The async twins do the same."""
    history = ChatledgerChatMessageHistory("123", any_store)
    await history.aadd_messages([HumanMessage("Hello!")])
    await history.aadd_messages([AIMessage("Hi there!")])
    messages = await history.aget_messages()
    assert [type(m) for m in messages] == [HumanMessage, AIMessage]
    assert [m.content for m in messages] == ["Hello!", "Hi there!"]


async def test_add_message_and_add_messages_append_in_order(any_store: PersistenceStore) -> None:
    """add_message one at a time and add_messages in bulk both append, in call order."""
    history = ChatledgerChatMessageHistory("bulk", any_store)

    def run() -> list[BaseMessage]:
        history.add_message(HumanMessage("Hello"))
        history.add_message(HumanMessage("World"))
        history.add_messages([HumanMessage("Hello"), HumanMessage("World")])
        return history.messages

    messages = await asyncio.to_thread(run)
    assert messages == [HumanMessage(c) for c in ("Hello", "World", "Hello", "World")]


async def test_async_interface(any_store: PersistenceStore) -> None:
    """aadd_messages appends, aget_messages reads, aclear empties."""
    history = ChatledgerChatMessageHistory("async", any_store)
    await history.aadd_messages([HumanMessage("Hello"), HumanMessage("World")])
    assert await history.aget_messages() == [HumanMessage("Hello"), HumanMessage("World")]
    await history.aadd_messages([HumanMessage("!")])
    assert await history.aget_messages() == [
        HumanMessage("Hello"),
        HumanMessage("World"),
        HumanMessage("!"),
    ]
    await history.aclear()
    assert await history.aget_messages() == []


async def test_multiple_sessions(any_store: PersistenceStore) -> None:
    """Two sessions on one store never see each other's messages (sync)."""
    history = ChatledgerChatMessageHistory("123", any_store)
    other = ChatledgerChatMessageHistory("456", any_store)

    def run() -> tuple[list[BaseMessage], list[BaseMessage]]:
        history.add_user_message("Hello!")
        history.add_ai_message("Hi there!")
        history.add_user_message("Whats cracking?")
        assert [m.content for m in history.messages] == ["Hello!", "Hi there!", "Whats cracking?"]
        other.add_user_message("Hellox")
        return history.messages, other.messages

    messages, others = await asyncio.to_thread(run)
    assert [m.content for m in messages] == ["Hello!", "Hi there!", "Whats cracking?"]
    assert [m.content for m in others] == ["Hellox"]


async def test_async_multiple_sessions(any_store: PersistenceStore) -> None:
    """The same with the async methods."""
    history = ChatledgerChatMessageHistory("123", any_store)
    other = ChatledgerChatMessageHistory("456", any_store)
    await history.aadd_messages([HumanMessage("Hello!")])
    await history.aadd_messages([AIMessage("Hi there!")])
    await history.aadd_messages([HumanMessage("Whats cracking?")])
    await other.aadd_messages([HumanMessage("Hellox")])
    assert [m.content for m in await history.aget_messages()] == [
        "Hello!",
        "Hi there!",
        "Whats cracking?",
    ]
    assert [m.content for m in await other.aget_messages()] == ["Hellox"]


async def test_clear_messages(any_store: PersistenceStore) -> None:
    """clear empties one session and leaves the other alone (sync)."""
    history = ChatledgerChatMessageHistory("123", any_store)
    other = ChatledgerChatMessageHistory("456", any_store)

    def run() -> tuple[int, int]:
        history.add_user_message("Hello!")
        history.add_ai_message("Hi there!")
        other.add_user_message("Hellox")
        assert (len(history.messages), len(other.messages)) == (2, 1)
        history.clear()
        return len(history.messages), len(other.messages)

    assert await asyncio.to_thread(run) == (0, 1)


async def test_async_clear_messages(any_store: PersistenceStore) -> None:
    """aclear empties one session and leaves the other alone; clearing again is harmless."""
    history = ChatledgerChatMessageHistory("123", any_store)
    other = ChatledgerChatMessageHistory("456", any_store)
    await history.aadd_messages([HumanMessage("Hello!"), AIMessage("Hi there!")])
    await other.aadd_messages([HumanMessage("Hellox")])
    await history.aclear()
    await history.aclear()
    assert await history.aget_messages() == []
    assert len(await other.aget_messages()) == 1
    await history.aadd_messages([HumanMessage("again")])
    assert await history.aget_messages() == [HumanMessage("again")]


async def test_a_new_history_object_reads_what_an_earlier_one_wrote(
    any_store: PersistenceStore,
) -> None:
    """The history lives in the store, not the object: a second object sees it all."""
    first = ChatledgerChatMessageHistory("chat", any_store)
    await first.aadd_messages([HumanMessage("Hello, AI!"), AIMessage("How can I help?")])
    second = ChatledgerChatMessageHistory("chat", any_store)
    expected = [HumanMessage("Hello, AI!"), AIMessage("How can I help?")]
    assert await second.aget_messages() == expected
    assert await asyncio.to_thread(str, second) == "Human: Hello, AI!\nAI: How can I help?"


async def test_an_unknown_session_is_empty(any_store: PersistenceStore) -> None:
    """Reading or clearing a session never written creates nothing and finds nothing."""
    history = ChatledgerChatMessageHistory("nobody", any_store)
    assert await history.aget_messages() == []
    await history.aclear()
    await history.aadd_messages([])
    assert await any_store.get_session(history.chatledger_session_id) is None


# --- exact round trips ------------------------------------------------------------------------


async def test_every_message_type_round_trips_exactly(any_store: PersistenceStore) -> None:
    """Every type, chunks included, comes back equal and of the same class, ids and kwargs too."""
    expected = every_message_type()
    history = ChatledgerChatMessageHistory("types", any_store)
    await history.aadd_messages(expected)
    assert_same(await history.aget_messages(), expected)
    assert_same(await asyncio.to_thread(lambda: history.messages), expected)
    # The same through the sync write path, one message at a time.
    again = ChatledgerChatMessageHistory("types-sync", any_store)
    await asyncio.to_thread(lambda: [again.add_message(m) for m in expected])
    assert_same(await again.aget_messages(), expected)


async def test_chatledger_columns_are_filled_from_each_message(any_store: PersistenceStore) -> None:
    """The CLI, stats and dashboard read roles, text, tool calls and results from the row."""
    history = ChatledgerChatMessageHistory("columns", any_store)
    await history.aadd_messages(every_message_type()[:7])
    rows = await any_store.get_session_messages(history.chatledger_session_id)
    assert [row.role for row in rows] == [
        MessageRole.SYSTEM,
        MessageRole.USER,
        MessageRole.ASSISTANT,
        MessageRole.TOOL,
        MessageRole.TOOL,
        MessageRole.TOOL,
        MessageRole.USER,
    ]
    system, human, ai, tool, failed, function, chat = (row.content for row in rows)
    assert system.text == "Be brief."
    assert human.text == "What is in this picture?"
    assert human.extra["name"] == "alice"
    assert human.extra["attachments"] == ["image_url"]
    assert ai.text == "Let me look."
    assert ai.tool_calls == [
        ToolCallContent(id="call-1", name="look", arguments={"url": "https://example.com/cat.png"}),
        ToolCallContent(id="call-2", name="weather", arguments={"city": "Paris", "days": 3}),
        ToolCallContent(id="call-3", name="broken", arguments='{"city": '),
    ]
    assert tool.tool_result == ToolResultContent(tool_call_id="call-1", content="a cat on a mat")
    assert failed.tool_result == ToolResultContent(
        tool_call_id="call-2", content="city not found", is_error=True
    )
    assert function.tool_result == ToolResultContent(tool_call_id="answer", content="42")
    assert chat.text == "Looks right to me."
    # Each row keeps LangChain's own form beside; each message's parent is the one before.
    assert all("langchain_message" in row.content.extra for row in rows)
    assert [row.parent_message_id for row in rows[1:]] == [row.id for row in rows[:-1]]


async def test_messages_recorded_by_other_means_read_from_their_columns(
    any_store: PersistenceStore,
) -> None:
    """A session chatledger recorded itself (no LangChain form kept) reads as LangChain messages."""
    history = ChatledgerChatMessageHistory("recorded", any_store)
    await history.aadd_messages([SystemMessage("Be brief.")])
    session = history.chatledger_session_id
    nil = uuid.UUID(int=0)

    def row(role: MessageRole, content: MessageContent) -> LLMMessage:
        return LLMMessage.new(session, nil, nil, nil, role, content)

    call = ToolCallContent(id="c1", name="weather", arguments={"city": "Paris"})
    odd = ToolCallContent(id="c2", name="raw", arguments="not json")
    result = ToolResultContent(tool_call_id="c1", content="sunny", is_error=True)
    rows = [
        row(MessageRole.USER, MessageContent(text="Weather in Paris?")),
        row(MessageRole.ASSISTANT, MessageContent(tool_calls=[call, odd])),
        row(MessageRole.TOOL, MessageContent(tool_result=result)),
        row(MessageRole.ASSISTANT, MessageContent(text="Sunny.")),
    ]
    await any_store.save_messages(rows)
    system, user, asked, replied, answer = await history.aget_messages()
    assert system == SystemMessage("Be brief.")
    assert user == HumanMessage("Weather in Paris?", id=str(rows[0].id))
    assert isinstance(asked, AIMessage)
    assert asked.tool_calls == [
        {"name": "weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}
    ]
    assert [(c["name"], c["args"]) for c in asked.invalid_tool_calls] == [("raw", "not json")]
    assert replied == ToolMessage("sunny", tool_call_id="c1", status="error", id=str(rows[2].id))
    assert answer == AIMessage("Sunny.", id=str(rows[3].id))


# --- order ------------------------------------------------------------------------------------


async def test_one_call_keeps_its_order_with_equal_timestamps(any_store: PersistenceStore) -> None:
    """Fifty messages of one add_messages share a stamp and still come back in order."""
    history = ChatledgerChatMessageHistory("order", any_store)
    expected = [HumanMessage(f"q{i}") if i % 2 == 0 else AIMessage(f"a{i}") for i in range(50)]
    await history.aadd_messages(expected)
    await history.aadd_messages([HumanMessage("last")])
    assert await history.aget_messages() == [*expected, HumanMessage("last")]
    rows = await any_store.get_session_messages(history.chatledger_session_id)
    assert len({row.create_time for row in rows[:50]}) == 1


async def test_concurrent_writers_never_interleave_one_call(any_store: PersistenceStore) -> None:
    """Threads and tasks adding pairs at once: every pair stored, each pair adjacent."""
    history = ChatledgerChatMessageHistory("busy", any_store)

    def pair(tag: str) -> list[BaseMessage]:
        return [HumanMessage(f"q-{tag}"), AIMessage(f"a-{tag}")]

    def thread_writer(n: int) -> None:
        for i in range(3):
            history.add_messages(pair(f"t{n}-{i}"))

    async def task_writer(n: int) -> None:
        for i in range(3):
            await history.aadd_messages(pair(f"k{n}-{i}"))

    await asyncio.gather(
        *(asyncio.to_thread(thread_writer, n) for n in range(4)),
        *(task_writer(n) for n in range(4)),
    )
    contents = [str(m.content) for m in await history.aget_messages()]
    assert len(contents) == 48
    for question, answer in zip(contents[::2], contents[1::2], strict=True):
        assert question.startswith("q-")
        assert answer == "a-" + question[2:]


# --- keys, scopes, stores, loops --------------------------------------------------------------


async def test_a_session_key_maps_to_a_chatledger_session(any_store: PersistenceStore) -> None:
    """A key names a stable session keeping the key and the ids given; it counts like any other."""
    history = ChatledgerChatMessageHistory(
        "user-42:chat-7", any_store, tenant_id="acme", user_id="user-42", agent_id="support"
    )
    await history.aadd_messages([HumanMessage("hi"), AIMessage("hello")])
    assert history.session_id == "user-42:chat-7"
    assert history.chatledger_session_id == id_for_key("user-42:chat-7")
    session = await any_store.get_session(history.chatledger_session_id)
    assert session is not None
    assert session.metadata["key"] == "user-42:chat-7"
    assert (session.tenant_id, session.user_id, session.agent_id) == (
        id_for_key("acme"),
        id_for_key("user-42"),
        id_for_key("support"),
    )
    assert await any_store.count_session_messages(history.chatledger_session_id) == 2
    rows = await any_store.get_session_messages(history.chatledger_session_id)
    assert {row.user_id for row in rows} == {id_for_key("user-42")}


async def test_a_uuid_session_id_is_the_session_itself(any_store: PersistenceStore) -> None:
    """A UUID (or its string) is the chatledger session's id as is."""
    session_id = uuid.uuid4()
    history = ChatledgerChatMessageHistory(session_id, any_store)
    await history.aadd_messages([HumanMessage("hi")])
    assert history.chatledger_session_id == session_id
    same = ChatledgerChatMessageHistory(str(session_id), any_store)
    assert await same.aget_messages() == [HumanMessage("hi")]


async def test_a_blocking_store_works_from_a_thread_running_a_loop(tmp_path: Path) -> None:
    """chatledger.sync.connect: sync methods called on a thread whose loop is running."""
    store = chatledger.sync.connect(f"sqlite:///{tmp_path / 'sync.db'}")
    try:
        history = ChatledgerChatMessageHistory("sync", store, user_id="u")
        history.add_messages([HumanMessage("hi"), AIMessage("hello")])  # on the test's loop
        assert history.messages == [HumanMessage("hi"), AIMessage("hello")]
        await history.aadd_messages([HumanMessage("more")])
        assert len(await history.aget_messages()) == 3
        history.clear()
        assert history.messages == []
    finally:
        store.close()


async def test_a_server_store_is_used_from_other_loops(any_store: PersistenceStore) -> None:
    """Async methods awaited on another thread's own loop reach the store's loop."""
    history = ChatledgerChatMessageHistory("loops", any_store)

    def elsewhere() -> list[BaseMessage]:
        async def run() -> list[BaseMessage]:
            await history.aadd_messages([HumanMessage("from another loop")])
            return await history.aget_messages()

        return asyncio.run(run())

    assert await asyncio.to_thread(elsewhere) == [HumanMessage("from another loop")]


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
async def test_runnable_with_message_history_sees_the_earlier_turn(
    any_store: PersistenceStore,
) -> None:
    """LangChain's RunnableWithMessageHistory over a chat model: turn two is sent turn one."""
    seen: list[list[BaseMessage]] = []

    class Model(FakeMessagesListChatModel):
        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
            seen.append(list(messages))
            return super()._generate(messages, *args, **kwargs)

    model = Model(responses=[AIMessage("Paris."), AIMessage("About 2 million.")])
    chain = RunnableWithMessageHistory(
        model, lambda session_id: ChatledgerChatMessageHistory(session_id, any_store)
    )
    config: Any = {"configurable": {"session_id": "geo"}}
    await chain.ainvoke([HumanMessage("Capital of France?")], config=config)
    await chain.ainvoke([HumanMessage("Its population?")], config=config)
    assert [m.content for m in seen[1]] == ["Capital of France?", "Paris.", "Its population?"]
    stored = await ChatledgerChatMessageHistory("geo", any_store).aget_messages()
    assert [m.content for m in stored] == [
        "Capital of France?",
        "Paris.",
        "Its population?",
        "About 2 million.",
    ]
    # The sync path, from a worker thread.
    model.responses = [AIMessage("Paris."), AIMessage("Berlin.")]
    model.i = 0
    await asyncio.to_thread(chain.invoke, [HumanMessage("And Germany?")], config=config)
    assert len(await ChatledgerChatMessageHistory("geo", any_store).aget_messages()) == 6


# --- errors -----------------------------------------------------------------------------------


async def test_a_message_that_is_not_json_is_refused_and_nothing_is_stored(
    any_store: PersistenceStore,
) -> None:
    """An artifact JSON cannot hold fails the whole call with a PersistenceError."""
    history = ChatledgerChatMessageHistory("bad", any_store)
    odd = ToolMessage("done", tool_call_id="c1", artifact=threading.Lock())
    with pytest.raises(PersistenceError):
        await history.aadd_messages([HumanMessage("fine"), odd])
    assert await history.aget_messages() == []


async def test_not_a_message_is_a_type_error(any_store: PersistenceStore) -> None:
    """Anything but a LangChain message is refused before the database is touched."""
    history = ChatledgerChatMessageHistory("typed", any_store)
    with pytest.raises(TypeError, match="LangChain messages"):
        await history.aadd_messages(["hello"])  # type: ignore[list-item]


async def test_a_closed_store_raises_a_persistence_error(tmp_path: Path) -> None:
    """A database failure is a chatledger PersistenceError, never a driver's exception."""
    store = await SqliteStore.connect(tmp_path / "closed.db")
    history = ChatledgerChatMessageHistory("closed", store)
    await history.aadd_messages([HumanMessage("hi")])
    await store.close()
    with pytest.raises(PersistenceError):
        await history.aadd_messages([HumanMessage("again")])
    with pytest.raises(PersistenceError):
        await history.aget_messages()
    with pytest.raises(PersistenceError):
        await asyncio.to_thread(lambda: history.messages)
