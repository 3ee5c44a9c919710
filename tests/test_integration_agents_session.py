"""ChatledgerSession: the Agents SDK's conversation memory kept in chatledger.

Every item type the SDK produces round-trips exactly on every backend while
chatledger's columns are filled from it; the behaviours the SDK's own
``SQLiteSession`` test suite checks (ordering, limits and session settings,
``pop_item``, clearing, sessions side by side, concurrent writers, unicode
and SQL-looking text) are checked here the same way; and a real ``Runner``
conversation over two turns with a function tool, against the local fake
OpenAI server, sends its first turn's items, read back from chatledger, on
the second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    SessionSettings,
    TResponseInputItem,
    function_tool,
)
from agents.memory import Session
from openai import AsyncOpenAI

import chatledger
import chatledger.sync
from chatledger.entities import MessageRole, ToolCallContent, ToolResultContent
from chatledger.errors import PersistenceError
from chatledger.integrations.openai_agents import ITEM_KEY, ChatledgerSession
from chatledger.recording import id_for_key
from chatledger.stores.base import PersistenceStore
from chatledger.sync import SyncStore
from chatledger.testing.fake_openai import (
    FakeOpenAIServer,
    responses_reply,
    responses_usage,
    tool_call,
)

MODEL = "gpt-4o-mini-2024-07-18"

# --- every item type the SDK produces, and the columns each one fills --------------------

USER_TEXT: dict[str, Any] = {"role": "user", "content": "What's the weather in Paris?"}
USER_PARTS: dict[str, Any] = {
    "type": "message",
    "role": "user",
    "content": [
        {"type": "input_text", "text": "What is in this picture?"},
        {
            "type": "input_image",
            "image_url": "data:image/png;base64,iVBORw0KGgo=",
            "detail": "auto",
        },
        {"type": "input_file", "file_id": "file-abc", "filename": "notes.pdf"},
    ],
}
SYSTEM: dict[str, Any] = {"role": "system", "content": "Be brief."}
DEVELOPER: dict[str, Any] = {
    "type": "message",
    "role": "developer",
    "content": [{"type": "input_text", "text": "Cite sources."}],
}
ASSISTANT: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [
        {
            "type": "output_text",
            "text": "Paris is sunny.",
            "annotations": [
                {
                    "type": "url_citation",
                    "start_index": 0,
                    "end_index": 5,
                    "url": "https://example.com/paris",
                    "title": "Paris",
                }
            ],
            "logprobs": [
                {"token": "Paris", "logprob": -0.0123, "bytes": [80, 97], "top_logprobs": []}
            ],
        }
    ],
}
REFUSAL: dict[str, Any] = {
    "id": "msg_2",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "refusal", "refusal": "I can't help with that."}],
}
FUNCTION_CALL: dict[str, Any] = {
    "id": "fc_1",
    "type": "function_call",
    "call_id": "call_1",
    "name": "get_weather",
    "arguments": '{"city": "Paris"}',
    "status": "completed",
}
FUNCTION_OUTPUT: dict[str, Any] = {
    "type": "function_call_output",
    "call_id": "call_1",
    "output": "Sunny in Paris.",
}
FUNCTION_OUTPUT_PARTS: dict[str, Any] = {
    "type": "function_call_output",
    "call_id": "call_2",
    "output": [
        {"type": "input_text", "text": "The chart:"},
        {"type": "input_image", "image_url": "https://example.com/chart.png"},
    ],
}
REASONING: dict[str, Any] = {
    "id": "rs_1",
    "type": "reasoning",
    "summary": [{"type": "summary_text", "text": "Checking the weather."}],
    "encrypted_content": "gAAAAB-opaque",
}
WEB_SEARCH: dict[str, Any] = {
    "id": "ws_1",
    "type": "web_search_call",
    "status": "completed",
    "action": {
        "type": "search",
        "query": "weather paris",
        "sources": [{"type": "url", "url": "https://w.com"}],
    },
}
FILE_SEARCH: dict[str, Any] = {
    "id": "fs_1",
    "type": "file_search_call",
    "status": "completed",
    "queries": ["refund policy"],
    "results": [
        {
            "file_id": "file-1",
            "filename": "policy.txt",
            "score": 0.87,
            "text": "Refunds within 30 days.",
            "attributes": {"team": "billing"},
        }
    ],
}
COMPUTER_CALL: dict[str, Any] = {
    "id": "cu_1",
    "type": "computer_call",
    "call_id": "call_c",
    "action": {"type": "click", "button": "left", "x": 10, "y": 20},
    "pending_safety_checks": [],
    "status": "completed",
}
COMPUTER_OUTPUT: dict[str, Any] = {
    "type": "computer_call_output",
    "call_id": "call_c",
    "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"},
    "acknowledged_safety_checks": [],
}
CODE_INTERPRETER: dict[str, Any] = {
    "id": "ci_1",
    "type": "code_interpreter_call",
    "status": "completed",
    "code": "print(6 * 7)",
    "container_id": "cntr_1",
    "outputs": [{"type": "logs", "logs": "42\n"}],
}
IMAGE_GENERATION: dict[str, Any] = {
    "id": "ig_1",
    "type": "image_generation_call",
    "status": "completed",
    "result": "iVBORw0KGgoAAAANSUhEUg==",
}
LOCAL_SHELL: dict[str, Any] = {
    "id": "lsh_1",
    "type": "local_shell_call",
    "call_id": "call_ls",
    "status": "completed",
    "action": {
        "type": "exec",
        "command": ["ls", "-la"],
        "env": {},
        "timeout_ms": 1000,
        "user": None,
        "working_directory": None,
    },
}
LOCAL_SHELL_OUTPUT: dict[str, Any] = {
    "id": "call_ls",
    "type": "local_shell_call_output",
    "output": "total 0",
}
SHELL: dict[str, Any] = {
    "type": "shell_call",
    "call_id": "call_sh",
    "status": "completed",
    "action": {"commands": ["ls"], "timeout_ms": 1000, "max_output_length": 100},
}
SHELL_OUTPUT: dict[str, Any] = {
    "type": "shell_call_output",
    "call_id": "call_sh",
    "output": [{"stdout": "a.py\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}],
}
APPLY_PATCH: dict[str, Any] = {
    "type": "apply_patch_call",
    "call_id": "call_p",
    "status": "completed",
    "operation": {"type": "update_file", "path": "a.py", "diff": "@@ -1 +1 @@\n-a\n+b\n"},
}
APPLY_PATCH_OUTPUT: dict[str, Any] = {
    "type": "apply_patch_call_output",
    "call_id": "call_p",
    "status": "completed",
    "output": "Updated a.py",
}
MCP_LIST_TOOLS: dict[str, Any] = {
    "id": "mcpl_1",
    "type": "mcp_list_tools",
    "server_label": "deepwiki",
    "tools": [
        {
            "name": "ask",
            "input_schema": {"type": "object"},
            "description": None,
            "annotations": None,
        }
    ],
    "error": None,
}
MCP_APPROVAL_REQUEST: dict[str, Any] = {
    "id": "mcpr_1",
    "type": "mcp_approval_request",
    "server_label": "deepwiki",
    "name": "ask",
    "arguments": '{"question": "What is MoFA?"}',
}
MCP_APPROVAL_RESPONSE: dict[str, Any] = {
    "type": "mcp_approval_response",
    "approval_request_id": "mcpr_1",
    "approve": True,
    "reason": None,
}
MCP_CALL: dict[str, Any] = {
    "id": "mcp_1",
    "type": "mcp_call",
    "server_label": "deepwiki",
    "name": "ask",
    "arguments": '{"question": "What is MoFA?"}',
    "output": "A framework.",
    "error": None,
    "status": "completed",
}
CUSTOM_CALL: dict[str, Any] = {
    "type": "custom_tool_call",
    "call_id": "call_ct",
    "name": "sql",
    "input": "SELECT 1",
}
CUSTOM_OUTPUT: dict[str, Any] = {
    "type": "custom_tool_call_output",
    "call_id": "call_ct",
    "output": "1",
}
TOOL_SEARCH: dict[str, Any] = {
    "type": "tool_search_call",
    "call_id": "call_ts",
    "arguments": {"query": "calendar"},
    "execution": "client",
    "status": "completed",
}
COMPACTION: dict[str, Any] = {
    "id": "cmp_1",
    "type": "compaction",
    "encrypted_content": "opaque-summary",
}
REFERENCE: dict[str, Any] = {"type": "item_reference", "id": "msg_0"}
SPECIAL: dict[str, Any] = {
    "role": "user",
    "content": 'héllo 🌍 — 日本語 O\'Reilly "x"; DROP TABLE t; -- \\n \t',
}
NUL_TEXT: dict[str, Any] = {"role": "user", "content": "before\x00after"}
NUL_OUTPUT: dict[str, Any] = {
    "type": "function_call_output",
    "call_id": "call_9",
    "output": "bin\x00ary",
}

# (item, role, text, tool calls, tool result) as chatledger's columns hold them
COLUMNS: list[
    tuple[
        dict[str, Any],
        MessageRole,
        str | None,
        list[ToolCallContent] | None,
        ToolResultContent | None,
    ]
] = [
    (USER_TEXT, MessageRole.USER, "What's the weather in Paris?", None, None),
    (USER_PARTS, MessageRole.USER, "What is in this picture?", None, None),
    (SYSTEM, MessageRole.SYSTEM, "Be brief.", None, None),
    (DEVELOPER, MessageRole.SYSTEM, "Cite sources.", None, None),
    (ASSISTANT, MessageRole.ASSISTANT, "Paris is sunny.", None, None),
    (REFUSAL, MessageRole.ASSISTANT, "I can't help with that.", None, None),
    (
        FUNCTION_CALL,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="call_1", name="get_weather", arguments={"city": "Paris"})],
        None,
    ),
    (
        FUNCTION_OUTPUT,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(tool_call_id="call_1", content="Sunny in Paris."),
    ),
    (
        FUNCTION_OUTPUT_PARTS,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(tool_call_id="call_2", content="The chart:"),
    ),
    (REASONING, MessageRole.ASSISTANT, None, None, None),
    (
        WEB_SEARCH,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="ws_1", name="web_search", arguments={"action": WEB_SEARCH["action"]})],
        None,
    ),
    (
        FILE_SEARCH,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="fs_1", name="file_search", arguments={"queries": ["refund policy"]})],
        None,
    ),
    (
        COMPUTER_CALL,
        MessageRole.ASSISTANT,
        None,
        [
            ToolCallContent(
                id="call_c", name="computer", arguments={"action": COMPUTER_CALL["action"]}
            )
        ],
        None,
    ),
    (
        COMPUTER_OUTPUT,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(
            tool_call_id="call_c",
            content=json.dumps(COMPUTER_OUTPUT["output"], separators=(",", ":")),
        ),
    ),
    (
        CODE_INTERPRETER,
        MessageRole.ASSISTANT,
        None,
        [
            ToolCallContent(
                id="ci_1",
                name="code_interpreter",
                arguments={"code": "print(6 * 7)", "container_id": "cntr_1"},
            )
        ],
        None,
    ),
    (
        IMAGE_GENERATION,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="ig_1", name="image_generation", arguments={})],
        None,
    ),
    (
        LOCAL_SHELL,
        MessageRole.ASSISTANT,
        None,
        [
            ToolCallContent(
                id="call_ls", name="local_shell", arguments={"action": LOCAL_SHELL["action"]}
            )
        ],
        None,
    ),
    (
        LOCAL_SHELL_OUTPUT,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(tool_call_id="call_ls", content="total 0"),
    ),
    (
        SHELL,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="call_sh", name="shell", arguments={"action": SHELL["action"]})],
        None,
    ),
    (
        SHELL_OUTPUT,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(
            tool_call_id="call_sh",
            content=json.dumps(SHELL_OUTPUT["output"], separators=(",", ":")),
        ),
    ),
    (
        APPLY_PATCH,
        MessageRole.ASSISTANT,
        None,
        [
            ToolCallContent(
                id="call_p", name="apply_patch", arguments={"operation": APPLY_PATCH["operation"]}
            )
        ],
        None,
    ),
    (
        APPLY_PATCH_OUTPUT,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(tool_call_id="call_p", content="Updated a.py"),
    ),
    (MCP_LIST_TOOLS, MessageRole.ASSISTANT, None, None, None),
    (
        MCP_APPROVAL_REQUEST,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="mcpr_1", name="ask", arguments={"question": "What is MoFA?"})],
        None,
    ),
    (
        MCP_APPROVAL_RESPONSE,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(tool_call_id="mcpr_1", content="approved"),
    ),
    (
        MCP_CALL,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="mcp_1", name="ask", arguments={"question": "What is MoFA?"})],
        None,
    ),
    (
        CUSTOM_CALL,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="call_ct", name="sql", arguments="SELECT 1")],
        None,
    ),
    (
        CUSTOM_OUTPUT,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(tool_call_id="call_ct", content="1"),
    ),
    (
        TOOL_SEARCH,
        MessageRole.ASSISTANT,
        None,
        [ToolCallContent(id="call_ts", name="tool_search", arguments={"query": "calendar"})],
        None,
    ),
    (COMPACTION, MessageRole.ASSISTANT, None, None, None),
    (REFERENCE, MessageRole.ASSISTANT, None, None, None),
    (SPECIAL, MessageRole.USER, SPECIAL["content"], None, None),
    (NUL_TEXT, MessageRole.USER, "before\ufffdafter", None, None),
    (
        NUL_OUTPUT,
        MessageRole.TOOL,
        None,
        None,
        ToolResultContent(tool_call_id="call_9", content="bin\ufffdary"),
    ),
]
EVERY_ITEM = [item for item, *_ in COLUMNS]


def json_round_trip(value: Any) -> Any:
    """``value`` as it reads after JSON text and back."""
    return json.loads(json.dumps(value))


def contents(items: list[TResponseInputItem]) -> list[Any]:
    """The ``content`` of each item, in order."""
    return [item.get("content") for item in items]


def said(*texts: str, role: str = "user") -> list[TResponseInputItem]:
    """Easy input messages, one per text."""
    return [{"role": role, "content": text} for text in texts]  # type: ignore[misc]


# --- round trips and columns -------------------------------------------------------------


def test_the_session_is_an_agents_sdk_session() -> None:
    session = ChatledgerSession("k", chatledger.stores.memory.InMemoryStore())
    assert isinstance(session, Session)
    assert session.session_id == "k"


async def test_every_item_type_round_trips_exactly(any_store: PersistenceStore) -> None:
    session = ChatledgerSession("every-item", any_store, tenant_id="acme", user_id="u-1")
    await session.add_items(json_round_trip(EVERY_ITEM))
    got = await session.get_items()
    assert got == json_round_trip(EVERY_ITEM)
    assert json_round_trip(got) == json_round_trip(EVERY_ITEM)
    # one at a time, as the SDK adds them turn by turn, and read back by a new session object
    other = ChatledgerSession("every-item-2", any_store)
    for item in EVERY_ITEM:
        await other.add_items([item])  # type: ignore[list-item]
    assert await ChatledgerSession("every-item-2", any_store).get_items() == EVERY_ITEM
    assert await other.get_items(limit=3) == EVERY_ITEM[-3:]
    assert await other.pop_item() == EVERY_ITEM[-1]


async def test_columns_are_filled_from_the_items(any_store: PersistenceStore) -> None:
    session = ChatledgerSession(
        "columns", any_store, tenant_id="acme", user_id="u-1", agent_id="weather-bot"
    )
    await session.add_items(EVERY_ITEM)  # type: ignore[arg-type]
    messages = await any_store.get_session_messages(id_for_key("columns"))
    assert len(messages) == len(COLUMNS)
    for message, (item, role, text, calls, result) in zip(messages, COLUMNS, strict=True):
        content = message.content
        assert (message.role, content.text, content.tool_calls, content.tool_result) == (
            role,
            text,
            calls,
            result,
        ), item
        assert (message.tenant_id, message.user_id, message.agent_id) == (
            id_for_key("acme"),
            id_for_key("u-1"),
            id_for_key("weather-bot"),
        )
    assert messages[EVERY_ITEM.index(USER_TEXT)].content.extra == {ITEM_KEY: USER_TEXT}
    parts = messages[EVERY_ITEM.index(USER_PARTS)].content.extra
    assert parts["attachments"] == ["input_image", "input_file"]
    session_row = await any_store.get_session(id_for_key("columns"))
    assert session_row is not None
    assert session_row.metadata == {"key": "columns"}


async def test_sdk_models_are_kept_as_their_json(any_store: PersistenceStore) -> None:
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage

    message = ResponseOutputMessage.model_validate(ASSISTANT)
    call = ResponseFunctionToolCall.model_validate(FUNCTION_CALL)
    session = ChatledgerSession("models", any_store)
    await session.add_items([message, call])  # type: ignore[list-item]
    got = await session.get_items()
    wire = {"mode": "json", "by_alias": True, "exclude_unset": True}
    assert got == [message.model_dump(**wire), call.model_dump(**wire)]  # type: ignore[arg-type]


async def test_messages_from_elsewhere_read_as_items(any_store: PersistenceStore) -> None:
    """A chatledger conversation written by its own agent or a recorder is usable history."""
    from chatledger.integrations.memory import ConversationMemory

    memory = ConversationMemory("shared", any_store, source="elsewhere")
    await memory.append(
        [
            (MessageRole.SYSTEM, chatledger.MessageContent(text="Be brief.")),
            (MessageRole.USER, chatledger.MessageContent(text="Weather?")),
            (
                MessageRole.ASSISTANT,
                chatledger.MessageContent(
                    tool_calls=[
                        ToolCallContent(id="c1", name="get_weather", arguments={"city": "Paris"})
                    ]
                ),
            ),
            (
                MessageRole.TOOL,
                chatledger.MessageContent(
                    tool_result=ToolResultContent(tool_call_id="c1", content="Sunny.")
                ),
            ),
            (MessageRole.ASSISTANT, chatledger.MessageContent(text="Sunny.")),
        ]
    )
    assert await ChatledgerSession("shared", any_store).get_items() == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny."},
        {"role": "assistant", "content": "Sunny."},
    ]


# --- the SDK's SQLiteSession suite, ported -----------------------------------------------


async def test_add_get_and_clear(any_store: PersistenceStore) -> None:
    session = ChatledgerSession("direct_test", any_store)
    await session.add_items(said("Hello") + said("Hi there!", role="assistant"))
    retrieved = await session.get_items()
    assert [(i.get("role"), i.get("content")) for i in retrieved] == [
        ("user", "Hello"),
        ("assistant", "Hi there!"),
    ]
    await session.clear_session()
    assert await session.get_items() == []
    await session.add_items(said("Again"))
    assert contents(await session.get_items()) == ["Again"]


async def test_empty_add_items_writes_nothing(any_store: PersistenceStore) -> None:
    session = ChatledgerSession("empty", any_store)
    await session.add_items([])
    assert await any_store.get_session(session.memory.session_id) is None


async def test_pop_item(any_store: PersistenceStore) -> None:
    session = ChatledgerSession("pop_test", any_store)
    assert await session.pop_item() is None
    await session.add_items(
        said("Hello") + said("Hi there!", role="assistant") + said("How are you?")
    )
    assert len(await session.get_items()) == 3
    popped = await session.pop_item()
    assert popped is not None
    assert (popped.get("role"), popped.get("content")) == ("user", "How are you?")
    assert contents(await session.get_items()) == ["Hello", "Hi there!"]
    assert contents([await session.pop_item(), await session.pop_item()]) == [  # type: ignore[list-item]
        "Hi there!",
        "Hello",
    ]
    assert await session.pop_item() is None
    assert await session.get_items() == []


async def test_pop_item_touches_only_its_session(any_store: PersistenceStore) -> None:
    one, two = ChatledgerSession("session_1", any_store), ChatledgerSession("session_2", any_store)
    await one.add_items(said("Session 1 message"))
    await two.add_items(said("Session 2 message 1", "Session 2 message 2"))
    assert contents([await two.pop_item()]) == ["Session 2 message 2"]  # type: ignore[list-item]
    assert contents(await one.get_items()) == ["Session 1 message"]
    assert contents(await two.get_items()) == ["Session 2 message 1"]


async def test_get_items_with_limit(any_store: PersistenceStore) -> None:
    session = ChatledgerSession("count_test", any_store)
    texts = [f"{who} {n}" for n in (1, 2, 3) for who in ("Message", "Response")]
    await session.add_items(said(*texts))
    assert contents(await session.get_items()) == texts
    assert contents(await session.get_items(limit=2)) == ["Message 3", "Response 3"]
    assert contents(await session.get_items(limit=4)) == texts[2:]
    assert contents(await session.get_items(limit=10)) == texts
    assert await session.get_items(limit=0) == []
    # SQLiteSession's historic LIMIT: a negative one is no limit
    assert contents(await session.get_items(limit=-1)) == texts


async def test_different_sessions_stay_apart(any_store: PersistenceStore) -> None:
    sessions = [ChatledgerSession(f"user-{n}", any_store) for n in range(4)]
    for turn in range(3):
        for n, session in enumerate(sessions):
            await session.add_items(said(f"{n}:{turn}"))
    for n, session in enumerate(sessions):
        assert contents(await session.get_items()) == [f"{n}:{t}" for t in range(3)]
    await sessions[0].clear_session()
    assert await sessions[0].get_items() == []
    assert contents(await sessions[1].get_items()) == ["1:0", "1:1", "1:2"]


async def test_unicode_content(any_store: PersistenceStore) -> None:
    session = ChatledgerSession("unicode_test", any_store)
    await session.add_items(said("こんにちは") + said("😊👍", role="assistant") + said("Привет"))
    assert contents(await session.get_items()) == ["こんにちは", "😊👍", "Привет"]


async def test_special_characters_and_sql_injection(any_store: PersistenceStore) -> None:
    texts = [
        "O'Reilly",
        "DROP TABLE sessions;",
        '"SELECT * FROM users WHERE name = "admin";"',
        "Robert'); DROP TABLE students;--",
        "Normal message",
    ]
    session = ChatledgerSession("special_chars_test'; DROP TABLE x; --", any_store)
    await session.add_items(said(*texts))
    assert contents(await session.get_items()) == texts


async def test_concurrent_add_items_from_threads_with_their_own_loops(
    any_store: PersistenceStore,
) -> None:
    """As the SDK's test: threads each run a new event loop and add one item."""
    session = ChatledgerSession("concurrent_test", any_store)
    items = said(*(f"Message {i}" for i in range(10)))

    def add_item(item: TResponseInputItem) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(session.add_items([item]))
        finally:
            loop.close()

    def run_all() -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
            list(executor.map(add_item, items))

    await asyncio.to_thread(run_all)  # this loop stays free: a server store's home
    assert set(contents(await session.get_items())) == {f"Message {i}" for i in range(10)}


async def test_concurrent_add_items_keep_each_call_together(any_store: PersistenceStore) -> None:
    session = ChatledgerSession("together", any_store)
    calls = [said(*(f"{w}.{i}" for i in range(5))) for w in range(10)]
    await asyncio.gather(*(session.add_items(call) for call in calls))
    got = contents(await session.get_items())
    assert sorted(got) == sorted(contents([item for call in calls for item in call]))
    for call in calls:
        start = got.index(call[0]["content"])  # type: ignore[typeddict-item]
        assert got[start : start + 5] == contents(call)


# --- session settings (the SDK's tests) --------------------------------------------------


def test_session_settings_default_and_constructor() -> None:
    store = chatledger.stores.memory.InMemoryStore()
    session = ChatledgerSession("default_settings_test", store)
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit is None
    limited = ChatledgerSession("s", store, session_settings=SessionSettings(limit=5))
    assert limited.session_settings is not None
    assert limited.session_settings.limit == 5
    from_dict = ChatledgerSession("s", store, session_settings={"limit": 0})
    assert isinstance(from_dict.session_settings, SessionSettings)
    assert from_dict.session_settings.limit == 0
    with pytest.raises(TypeError, match="Unknown session settings: limitt"):
        ChatledgerSession("s", store, session_settings={"limitt": 1})


async def test_get_items_uses_the_settings_limit(any_store: PersistenceStore) -> None:
    session = ChatledgerSession(
        "uses_settings_limit_test", any_store, session_settings=SessionSettings(limit=3)
    )
    await session.add_items(said(*(f"Message {i}" for i in range(5))))
    assert contents(await session.get_items()) == ["Message 2", "Message 3", "Message 4"]
    assert contents(await session.get_items(limit=2)) == ["Message 3", "Message 4"]
    zero = ChatledgerSession("uses_settings_limit_test", any_store, session_settings={"limit": 0})
    assert await zero.get_items() == []


# --- failures ----------------------------------------------------------------------------


async def test_a_database_failure_is_a_persistence_error(tmp_path: Path) -> None:
    store = await chatledger.connect(f"sqlite:///{tmp_path / 'gone.db'}")
    session = ChatledgerSession("s", store)
    await session.add_items(said("kept"))
    await store.close()
    for operation in (
        session.get_items(),
        session.add_items(said("x")),
        session.pop_item(),
        session.clear_session(),
    ):
        with pytest.raises(PersistenceError):
            await operation


# --- a real Runner conversation against the fake OpenAI server ---------------------------


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def openai_client(server: FakeOpenAIServer) -> AsyncOpenAI:
    """An OpenAI client on the fake server: no retries (one request, one call)."""
    return AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=10.0)


def weather_agent(client: AsyncOpenAI) -> Agent[Any]:
    """An agent with one function tool, speaking the Responses API through ``client``."""
    return Agent(
        name="weather",
        instructions="Answer about the weather.",
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
        tools=[get_weather],
    )


def script_two_turns(server: FakeOpenAIServer) -> None:
    """Turn 1: a tool call, then the answer; turn 2: an answer."""
    weather = tool_call("get_weather", '{"city": "Paris"}', call_id="call_w")
    server.add(
        responses_reply(
            None,
            model=MODEL,
            response_id="resp_1",
            tool_calls=[weather],
            usage=responses_usage(20, 5),
        ),
        responses_reply(
            "It is sunny in Paris.", model=MODEL, response_id="resp_2", usage=responses_usage(30, 6)
        ),
        responses_reply(
            "Tomorrow too.", model=MODEL, response_id="resp_3", usage=responses_usage(40, 3)
        ),
    )


EXPECTED_LEDGER = [
    (MessageRole.USER, "What's the weather in Paris?", None),
    (MessageRole.ASSISTANT, None, "get_weather"),
    (MessageRole.TOOL, None, None),
    (MessageRole.ASSISTANT, "It is sunny in Paris.", None),
    (MessageRole.USER, "And tomorrow?", None),
    (MessageRole.ASSISTANT, "Tomorrow too.", None),
]


async def check_conversation(
    server: FakeOpenAIServer,
    store: PersistenceStore | SyncStore,
    key: str,
    first_turn: list[TResponseInputItem],
) -> None:
    """The second request carried the first turn's items, as chatledger gave them back."""
    assert len(server.requests) == 3
    second_turn_input = server.requests[2].body["input"]
    assert second_turn_input[: len(first_turn)] == json_round_trip(first_turn)
    assert second_turn_input[len(first_turn)] == {"role": "user", "content": "And tomorrow?"}
    assert [item.get("type") for item in first_turn] == [
        None,
        "function_call",
        "function_call_output",
        "message",
    ]
    result = first_turn[2]
    assert (result["call_id"], result["output"]) == ("call_w", "Sunny in Paris.")  # type: ignore[typeddict-item]
    got = store.get_session_messages(id_for_key(key))
    messages = await got if asyncio.iscoroutine(got) else got
    assert [
        (m.role, m.content.text, m.content.tool_calls[0].name if m.content.tool_calls else None)
        for m in messages
    ] == EXPECTED_LEDGER
    tool_message = messages[2].content
    assert tool_message.tool_result == ToolResultContent(
        tool_call_id="call_w", content="Sunny in Paris."
    )
    assert messages[1].content.tool_calls == [
        ToolCallContent(id="call_w", name="get_weather", arguments={"city": "Paris"})
    ]
    for before, after in itertools.pairwise(messages):
        assert after.parent_message_id == before.id


async def test_runner_two_turns_with_a_tool(
    server: FakeOpenAIServer, any_store: PersistenceStore
) -> None:
    script_two_turns(server)
    session = ChatledgerSession("weather-chat", any_store, user_id="u-1", agent_id="weather")
    config = RunConfig(tracing_disabled=True)
    async with openai_client(server) as client:
        agent = weather_agent(client)
        first = await Runner.run(
            agent, "What's the weather in Paris?", session=session, run_config=config
        )
        assert first.final_output == "It is sunny in Paris."
        first_turn = await ChatledgerSession("weather-chat", any_store).get_items()
        second = await Runner.run(agent, "And tomorrow?", session=session, run_config=config)
        assert second.final_output == "Tomorrow too."
    await check_conversation(server, any_store, "weather-chat", first_turn)


async def test_runner_run_sync_with_a_blocking_store(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    script_two_turns(server)
    store = chatledger.sync.connect(f"sqlite:///{tmp_path / 'agents.db'}")
    try:
        session = ChatledgerSession("sync-chat", store)
        config = RunConfig(tracing_disabled=True)

        def turn(question: str) -> None:
            # Runner.run_sync runs a loop of its own in this worker thread, and keeps it; one
            # thread per turn, as a second run_sync on one thread trips httpx over the asyncgens
            # the SDK shut down after the first.
            client = openai_client(server)
            Runner.run_sync(weather_agent(client), question, session=session, run_config=config)
            loop = asyncio.get_event_loop_policy().get_event_loop()
            loop.run_until_complete(client.close())  # its sockets belong to that loop
            loop.close()
            asyncio.set_event_loop(None)

        await asyncio.to_thread(turn, "What's the weather in Paris?")
        first_turn = await asyncio.to_thread(asyncio.run, session.get_items())
        await asyncio.to_thread(turn, "And tomorrow?")
        await check_conversation(server, store, "sync-chat", first_turn)
    finally:
        store.close()


async def test_runner_honours_the_run_configs_session_limit(
    server: FakeOpenAIServer, any_store: PersistenceStore
) -> None:
    session = ChatledgerSession(
        "runner_override_test", any_store, session_settings=SessionSettings(limit=100)
    )
    await session.add_items(said(*(f"Turn {i}" for i in range(10))))
    server.add(responses_reply("Got it", model=MODEL, usage=responses_usage(5, 2)))
    async with openai_client(server) as client:
        await Runner.run(
            weather_agent(client),
            "New question",
            session=session,
            run_config=RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2)),
        )
    sent = server.requests[0].body["input"]
    assert [item["content"] for item in sent] == ["Turn 8", "Turn 9", "New question"]
    kept = await session.get_items(limit=3)
    assert contents(kept)[:2] == ["Turn 9", "New question"]
    assert (kept[2].get("role"), kept[2].get("type")) == ("assistant", "message")
