"""LlamaIndex: a chat store keeping each conversation in chatledger, one row per message.

    from chatledger.integrations.llama_index import ChatledgerChatStore

    chat_store = ChatledgerChatStore(store, tenant_id="acme")
    memory = ChatMemoryBuffer.from_defaults(chat_store=chat_store, chat_store_key="user-42")

:class:`ChatledgerChatStore` is a ``BaseChatStore`` (the interface of
LlamaIndex's ``SimpleChatStore`` and of its Redis, Postgres... chat stores),
sync and async. A key is any string and names one chatledger session (as
SPEC §7 maps keys to ids), so the conversation is visible to chatledger's
API, CLI, statistics and dashboard like any other. Each message keeps
LlamaIndex's own form (``ChatMessage.model_dump(mode="json")``) in its content
under ``"llama_index_message"``, so role, blocks and ``additional_kwargs`` come
back equal; chatledger's role, text, tool calls and tool result are filled
from it.

Writes go through :class:`~chatledger.integrations.memory.ConversationMemory`:
in the database when the method returns, read at once, a
:class:`~chatledger.errors.PersistenceError` on failure. Sessions written here
should not also be recorded into by a :class:`chatledger.Recorder` (see that
module).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from chatledger.entities import (
    ChatSession,
    LLMMessage,
    MessageContent,
    MessageRole,
    QueryFilter,
    ToolCallContent,
)
from chatledger.errors import ConstraintError, SerializationError
from chatledger.integrations import extras
from chatledger.integrations.memory import ConversationMemory
from chatledger.integrations.openai_shapes import chat_message, tool_arguments
from chatledger.recording.scope import id_for_key

extras.require("llama_index.core", "llama-index", "chatledger.integrations.llama_index")

from llama_index.core.base.llms.types import ToolCallBlock  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.core.llms import MessageRole as LlamaRole  # noqa: E402
from llama_index.core.storage.chat_store.base import BaseChatStore  # noqa: E402

if TYPE_CHECKING:
    from chatledger.stores.base import PersistenceStore
    from chatledger.sync import SyncStore

__all__ = ["ChatledgerChatStore"]

logger = logging.getLogger("chatledger.integrations.llama_index")

_T = TypeVar("_T")

Item = tuple[MessageRole, MessageContent]
"""A message as chatledger keeps it: its role and content."""

_KEPT = "llama_index_message"
"""The content key holding LlamaIndex's own form of a message."""

_SOURCE = "llama_index"
"""``metadata["source"]`` of the sessions a chat store creates: what ``get_keys`` lists."""

_ROLES = {
    LlamaRole.SYSTEM: MessageRole.SYSTEM,
    LlamaRole.DEVELOPER: MessageRole.SYSTEM,
    LlamaRole.USER: MessageRole.USER,
    LlamaRole.ASSISTANT: MessageRole.ASSISTANT,
    LlamaRole.CHATBOT: MessageRole.ASSISTANT,
    LlamaRole.MODEL: MessageRole.ASSISTANT,
    LlamaRole.TOOL: MessageRole.TOOL,
    LlamaRole.FUNCTION: MessageRole.TOOL,
}

_TEXT_BLOCKS = frozenset({"text", "thinking", "tool_call"})  # what the text covers, or tool calls

_MEMORIES = 1024  # keys whose ConversationMemory is kept between calls (it caches the session)

_TICK = timedelta(microseconds=1)  # the finest time every backend keeps

_PAGE = 500  # sessions read per query by get_keys


# --- LlamaIndex's messages as chatledger's -----------------------------------------------------


def _stored(message: ChatMessage) -> tuple[MessageRole, MessageContent]:
    """A LlamaIndex message as stored: chatledger's columns, and its own dump to rebuild it."""
    if not isinstance(message, ChatMessage):
        raise TypeError(f"a chat store holds LlamaIndex ChatMessages, not {type(message).__name__}")
    try:
        kept = message.model_dump(mode="json")
    except Exception as exc:  # an additional_kwargs value pydantic cannot make JSON
        raise SerializationError(f"a ChatMessage cannot be stored as JSON: {exc}") from exc
    role = _ROLES.get(LlamaRole(message.role), MessageRole.USER)
    kwargs = message.additional_kwargs
    # OpenAI's shape, which LlamaIndex's OpenAI-compatible LLMs keep in additional_kwargs.
    _, content = chat_message(
        {
            "role": role.value,
            "content": message.content,
            "tool_calls": kwargs.get("tool_calls"),
            "tool_call_id": kwargs.get("tool_call_id"),
            "name": kwargs.get("name"),
        }
    )
    if role is MessageRole.TOOL:
        return role, MessageContent(tool_result=content.tool_result, **{_KEPT: kept})
    calls = list(content.tool_calls or ())
    calls += [ToolCallContent(id=block.tool_call_id or "", name=block.tool_name,
                              arguments=tool_arguments(block.tool_kwargs))
              for block in message.blocks if isinstance(block, ToolCallBlock)]  # fmt: skip
    extra = {key: value for key, value in content.extra.items() if key != "attachments"}
    attachments = [block.block_type for block in message.blocks
                   if block.block_type not in _TEXT_BLOCKS]  # fmt: skip
    if attachments:
        extra["attachments"] = attachments
    return role, MessageContent(
        text=content.text, tool_calls=calls or None, **extra, **{_KEPT: kept}
    )


def _restored(message: LLMMessage) -> ChatMessage:
    """The LlamaIndex message a stored one was; one written by other means, from its columns."""
    kept = message.content.extra.get(_KEPT)
    if kept is None:
        return _from_columns(message)
    try:
        return ChatMessage.model_validate(kept)
    except Exception as exc:  # a row edited by hand, or written by a newer LlamaIndex
        raise SerializationError(
            f"message {message.id} does not hold a ChatMessage LlamaIndex can read: {exc}"
        ) from exc


def _from_columns(message: LLMMessage) -> ChatMessage:
    """A message chatledger recorded itself (a Recorder's, the agent's), in LlamaIndex's terms."""
    content = message.content
    kwargs: dict[str, Any] = {}
    text = content.text
    if message.role is MessageRole.TOOL and content.tool_result is not None:
        text = content.tool_result.content
        kwargs["tool_call_id"] = content.tool_result.tool_call_id
    if content.tool_calls:
        kwargs["tool_calls"] = [_openai_call(call) for call in content.tool_calls]
    return ChatMessage(role=LlamaRole(message.role.value), content=text, additional_kwargs=kwargs)


def _openai_call(call: ToolCallContent) -> dict[str, Any]:
    """A tool call in OpenAI's shape, as LlamaIndex's OpenAI LLMs keep it."""
    arguments = call.arguments
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, default=str)
    function = {"name": call.name, "arguments": arguments}
    return {"id": call.id, "type": "function", "function": function}


# --- the chat store ------------------------------------------------------------------------------


class ChatledgerChatStore(BaseChatStore):
    """LlamaIndex's chat store interface on chatledger: a key is a session, a message a row.

    Behaves as ``SimpleChatStore`` does: ``get_messages`` of an unknown key is
    ``[]``; ``add_message(key, message, idx)`` inserts as ``list.insert`` does;
    ``delete_messages`` returns what it deleted (None for an unknown key) and
    forgets the key; ``delete_message`` and ``delete_last_message`` return the
    message removed, None when there is none (an index out of range
    included); ``get_keys`` lists the keys of the sessions chat stores created,
    oldest first, within the tenant, user and agent given here.

    ``store`` is an async store (``chatledger.connect``) or a blocking one
    (``chatledger.sync.connect``); sync methods work from any thread, async
    ones from any loop.
    """

    _store: Any = PrivateAttr()
    _ids: dict[str, Any] = PrivateAttr(default_factory=dict)
    _home: ConversationMemory = PrivateAttr()
    _memories: OrderedDict[str, ConversationMemory] = PrivateAttr(default_factory=OrderedDict)
    _known: set[uuid.UUID] = PrivateAttr(default_factory=set)  # sessions of _memories that exist
    _guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        store: PersistenceStore | SyncStore,
        *,
        tenant_id: str | uuid.UUID | None = None,
        user_id: str | uuid.UUID | None = None,
        agent_id: str | uuid.UUID | None = None,
    ) -> None:
        """Keep chats in ``store``, their sessions owned by these ids (UUIDs or keys)."""
        super().__init__()
        self._store = store
        self._ids = {"tenant_id": tenant_id, "user_id": user_id, "agent_id": agent_id}
        # Never written: it finds the store's home loop now (an async PostgreSQL or MySQL
        # store's is the loop that opened it), and every call of this store runs there.
        self._home = ConversationMemory("chat-store", store, **self._ids, source=_KEPT)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serializes this store under."""
        return "ChatledgerChatStore"

    def __repr__(self) -> str:
        return f"ChatledgerChatStore({self._home.store!r})"

    def _memory(self, key: str) -> ConversationMemory:
        """The session of ``key``; recent ones are kept, so each knows its session exists."""
        if not isinstance(key, str) or not key:
            raise ValueError("a chat store key must be a non-empty string")
        with self._guard:
            memory = self._memories.get(key)
            if memory is None:
                memory = ConversationMemory(key, self._store, **self._ids, source=_KEPT)
                self._memories[key] = memory
                if len(self._memories) > _MEMORIES:
                    _, evicted = self._memories.popitem(last=False)
                    self._known.discard(evicted.session_id)
            else:
                self._memories.move_to_end(key)
            return memory

    # --- the work, each on the store's home loop -----------------------------------------

    async def _ensure(self, memory: ConversationMemory) -> None:
        """Create the key's session, marked as a chat store's, unless it exists."""
        if memory.session_id in self._known:
            return
        store = memory.store
        if await store.get_session(memory.session_id) is None:
            session = (
                ChatSession.new(memory.user_id, memory.agent_id)
                .with_id(memory.session_id)
                .with_tenant_id(memory.tenant_id)
                .with_metadata("key", memory.session_key)
                .with_metadata("source", _SOURCE)
            )
            try:
                await store.create_session(session)
            except ConstraintError:  # another writer made it first
                if await store.get_session(memory.session_id) is None:
                    raise
        self._known.add(memory.session_id)

    async def _set(self, key: str, items: list[Item]) -> None:
        memory = self._memory(key)
        await self._ensure(memory)
        store = memory.store
        async with memory.session_lock():  # no append of this process lands between the two writes
            await store.delete_session_messages(memory.session_id)
            if items:
                await store.save_messages(memory.build_messages(items, None))

    async def _read(self, key: str) -> list[LLMMessage]:
        return await self._memory(key).read()

    async def _add(self, key: str, item: Item, idx: int | None) -> None:
        memory = self._memory(key)
        await self._ensure(memory)
        if idx is not None and await self._insert(memory, item, idx):
            return
        await memory.append([item])

    async def _insert(self, memory: ConversationMemory, item: Item, idx: int) -> bool:
        """``item`` put before position ``idx`` as ``list.insert`` does; False: at the end."""
        store = memory.store
        async with memory.session_lock():  # appends and pops of this session wait meanwhile
            messages = await store.get_session_messages(memory.session_id)
            count = len(messages)
            position = min(max(count + idx, 0) if idx < 0 else idx, count)
            if position == count:
                return False
            after = messages[position - 1] if position else None
            before = messages[position]
            if after is None or before.create_time - after.create_time > _TICK:
                # A stamp between the neighbours places it: one row, one transaction.
                if after is None:
                    stamp = before.create_time - _TICK
                else:
                    stamp = after.create_time + (before.create_time - after.create_time) / 2
                message = memory.build_messages([item], after)[0].model_copy(
                    update={"create_time": stamp, "update_time": stamp}
                )
                await store.save_messages([message])
                return True
            # Neighbours stored by one call share a stamp: the tail is written again after
            # the newest message, then its old rows go. Copies first: a failure in between
            # leaves the tail twice, never loses it.
            tail = messages[position:]
            copies = memory.build_messages(
                [item, *[(m.role, m.content) for m in tail]], messages[-1]
            )
            copies[0] = copies[0].model_copy(update={"parent_message_id": after.id})
            await store.save_messages(copies)
            for old in tail:
                await store.delete_message(old.id)
            return True

    async def _delete_all(self, key: str) -> list[LLMMessage] | None:
        memory = self._memory(key)
        store = memory.store
        if await store.get_session(memory.session_id) is None:
            return None
        async with memory.session_lock():
            messages = await store.get_session_messages(memory.session_id)
            self._known.discard(memory.session_id)
            await store.delete_session(memory.session_id)
        return messages

    async def _delete_at(self, key: str, idx: int) -> LLMMessage | None:
        memory = self._memory(key)
        store = memory.store
        async with memory.session_lock():
            messages = await store.get_session_messages(memory.session_id)
            if not -len(messages) <= idx < len(messages):
                return None
            removed = messages[idx]
            if not await store.delete_message(removed.id):
                return None  # another process removed it first
        return removed

    async def _pop(self, key: str) -> LLMMessage | None:
        return await self._memory(key).pop()

    async def _keys(self) -> list[str]:
        store = self._home.store
        tenant, user, agent = (self._ids[name] for name in ("tenant_id", "user_id", "agent_id"))
        query = QueryFilter(
            tenant_id=None if tenant is None else id_for_key(tenant),
            user_id=None if user is None else id_for_key(user),
            agent_id=None if agent is None else id_for_key(agent),
        )
        found: dict[uuid.UUID, ChatSession] = {}
        offset = 0
        while True:
            page = await store.list_sessions(query.paginate(offset, _PAGE))
            for session in page:
                metadata = session.metadata or {}
                if metadata.get("source") == _SOURCE and isinstance(metadata.get("key"), str):
                    found[session.id] = session
            if len(page) < _PAGE:
                break
            offset += _PAGE
        ordered = sorted(found.values(), key=lambda session: (session.create_time, session.id))
        return [session.metadata["key"] for session in ordered]

    # --- from any thread or loop to the home loop ----------------------------------------

    def run_sync(self, work: Coroutine[Any, Any, _T]) -> _T:
        return self._home.run_sync(work)

    async def _awaited(self, work: Coroutine[Any, Any, _T]) -> _T:
        # A cancelled caller still waits for the write's outcome (see ConversationMemory).
        return await self._home.run(work)

    # --- BaseChatStore -------------------------------------------------------------------

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace the messages of ``key`` with ``messages``."""
        self.run_sync(self._set(key, [_stored(m) for m in messages]))

    def get_messages(self, key: str) -> list[ChatMessage]:
        """The messages of ``key``, oldest first; ``[]`` for an unknown key."""
        return [_restored(m) for m in self.run_sync(self._read(key))]

    def add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        """Append ``message`` to ``key``, or insert it before position ``idx`` (``list.insert``)."""
        self.run_sync(self._add(key, _stored(message), _index(idx)))

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete ``key`` and its messages; return them (None when the key is unknown)."""
        removed = self.run_sync(self._delete_all(key))
        return None if removed is None else [_restored(m) for m in removed]

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete the message at position ``idx`` (negative counts from the end); None if none."""
        removed = self.run_sync(self._delete_at(key, _position(idx)))
        return None if removed is None else _restored(removed)

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Delete the newest message of ``key`` and return it; None when there is none."""
        removed = self.run_sync(self._pop(key))
        return None if removed is None else _restored(removed)

    def get_keys(self) -> list[str]:
        """The keys of the chats stored here (within this store's ids), oldest first."""
        return self.run_sync(self._keys())

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace the messages of ``key`` with ``messages``."""
        await self._awaited(self._set(key, [_stored(m) for m in messages]))

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        """The messages of ``key``, oldest first; ``[]`` for an unknown key."""
        return [_restored(m) for m in await self._awaited(self._read(key))]

    async def async_add_message(
        self, key: str, message: ChatMessage, idx: int | None = None
    ) -> None:
        """Append ``message`` to ``key``, or insert it before position ``idx`` (``list.insert``)."""
        await self._awaited(self._add(key, _stored(message), _index(idx)))

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete ``key`` and its messages; return them (None when the key is unknown)."""
        removed = await self._awaited(self._delete_all(key))
        return None if removed is None else [_restored(m) for m in removed]

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete the message at position ``idx`` (negative counts from the end); None if none."""
        removed = await self._awaited(self._delete_at(key, _position(idx)))
        return None if removed is None else _restored(removed)

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        """Delete the newest message of ``key`` and return it; None when there is none."""
        removed = await self._awaited(self._pop(key))
        return None if removed is None else _restored(removed)

    async def aget_keys(self) -> list[str]:
        """The keys of the chats stored here (within this store's ids), oldest first."""
        return await self._awaited(self._keys())


def _position(idx: int) -> int:
    """A message position as ``list`` takes it: an ``int`` (a bool or a float is refused)."""
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise TypeError(f"a message position must be an int, not {type(idx).__name__}")
    return idx


def _index(idx: int | None) -> int | None:
    """An insert position, or None for the end."""
    return None if idx is None else _position(idx)
