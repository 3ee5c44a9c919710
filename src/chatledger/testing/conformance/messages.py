"""Conformance of ``MessageStore``: the messages of sessions, in order, in batches, deleted."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import ClassVar, Protocol

import pytest

from chatledger.entities import (
    LLMMessage,
    MessageContent,
    MessageRole,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.errors import ConstraintError, SerializationError
from chatledger.ids import uuid7
from chatledger.stores.base import MessageStore, SessionStore
from chatledger.testing.conformance.capability import CapabilityConformance
from chatledger.testing.factories import BASE_TIME, make_message, make_session

__all__ = ["MessageConformance"]


class Conversations(MessageStore, SessionStore, Protocol):
    """Sessions and their messages: what every test of ``MessageConformance`` uses."""


class MessageConformance(CapabilityConformance):
    """The ``MessageStore`` protocol, over a ``SessionStore``: messages belong to sessions.

    Subclass it (with ``LifecycleConformance`` and ``SessionConformance``)
    for a backend that keeps conversations: every test needs both protocols.
    """

    protocols: ClassVar[tuple[type, ...]] = (MessageStore, SessionStore)

    @pytest.mark.asyncio
    async def test_message_round_trips_every_field(self, store: Conversations) -> None:
        """save_message then get_message returns an equal message: content, parent, microseconds."""
        session = await self._session(store)
        first = make_message(session, "question", create_time=BASE_TIME)
        content = MessageContent(
            text="calling tools 🔧",
            tool_calls=[
                ToolCallContent(id="call_1", name="search", arguments={"q": "天气", "n": 3}),
                ToolCallContent(id="call_2", name="noop", arguments=[1, "two", None]),
            ],
            reasoning={"steps": ["a", "b"]},
            score=3,
        )
        second = make_message(
            session,
            role=MessageRole.ASSISTANT,
            content=content,
            create_time=BASE_TIME.replace(microsecond=654_321),
            parent_message_id=first.id,
        )
        third = make_message(
            session,
            role=MessageRole.TOOL,
            content=MessageContent.from_tool_result(
                ToolResultContent(tool_call_id="call_1", content="晴れ ☀️", is_error=True)
            ),
            create_time=BASE_TIME.replace(microsecond=999_999),
        )
        for message in (first, second, third):
            await store.save_message(message)
        for message in (first, second, third):
            assert await store.get_message(message.id) == message
        got = await store.get_message(second.id)
        assert got is not None
        assert got.parent_message_id == first.id
        assert got.content.extra == {"reasoning": {"steps": ["a", "b"]}, "score": 3}
        assert got.create_time.microsecond == 654_321
        assert got.role is MessageRole.ASSISTANT

    @pytest.mark.asyncio
    async def test_get_missing_message_is_none(self, store: Conversations) -> None:
        """get_message of an unknown id returns None."""
        assert await store.get_message(uuid7()) is None

    @pytest.mark.asyncio
    async def test_message_without_session_raises_constraint_error(
        self, store: Conversations
    ) -> None:
        """Saving a message whose session does not exist raises ConstraintError; nothing stored."""
        orphan = make_message(make_session())
        with pytest.raises(ConstraintError):
            await store.save_message(orphan)
        assert await store.get_message(orphan.id) is None

    @pytest.mark.asyncio
    async def test_message_with_reused_id_raises_constraint_error(
        self, store: Conversations
    ) -> None:
        """Saving a message with an id already stored raises ConstraintError; the first stays."""
        session = await self._session(store)
        message = make_message(session, "original")
        await store.save_message(message)
        with pytest.raises(ConstraintError):
            await store.save_message(message._replace(content=MessageContent(text="copy")))
        got = await store.get_message(message.id)
        assert got is not None
        assert got.content.text == "original"
        assert await store.count_session_messages(session.id) == 1

    @pytest.mark.asyncio
    async def test_session_messages_come_oldest_first(self, store: Conversations) -> None:
        """get_session_messages orders by create_time whatever the save order, one session only."""
        session = await self._session(store)
        other = await self._session(store)
        times = [BASE_TIME + timedelta(seconds=s, microseconds=s) for s in (5, 1, 3, 2, 4)]
        messages = [make_message(session, f"t{t}", create_time=t) for t in times]
        for message in messages:
            await store.save_message(message)
        await store.save_message(make_message(other, create_time=BASE_TIME))
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == [m.id for m in sorted(messages, key=lambda m: m.create_time)]
        assert await store.get_session_messages(uuid7()) == []

    @pytest.mark.asyncio
    async def test_thousand_messages_come_back_in_save_order(self, store: Conversations) -> None:
        """1,000 messages saved in a tight loop are returned in the order they were saved."""
        session = await self._session(store)
        saved = []
        for index in range(1000):
            message = LLMMessage.new(
                session.id, session.agent_id, session.user_id, session.tenant_id, "user", str(index)
            )
            await store.save_message(message)
            saved.append(message.id)
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == saved
        assert [m.content.text for m in got] == [str(i) for i in range(1000)]

    @pytest.mark.asyncio
    async def test_messages_with_equal_create_time_keep_save_order(
        self, store: Conversations
    ) -> None:
        """1,000 messages sharing one create_time come back in save order (UUIDv7 ids)."""
        session = await self._session(store)
        saved = [make_message(session, str(i), create_time=BASE_TIME) for i in range(1000)]
        for message in saved:
            await store.save_message(message)
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == [m.id for m in saved]
        recent = await store.get_recent_messages(session.id, 3)
        assert [m.content.text for m in recent] == ["997", "998", "999"]

    @pytest.mark.asyncio
    async def test_paginated_messages(self, store: Conversations) -> None:
        """get_session_messages_paginated returns oldest-first pages; bad bounds give []."""
        session = await self._session(store)
        saved = [
            make_message(session, str(i), create_time=BASE_TIME + timedelta(seconds=i))
            for i in range(25)
        ]
        await store.save_messages(saved)
        ids = [m.id for m in saved]
        page = await store.get_session_messages_paginated(session.id, 0, 10)
        assert [m.id for m in page] == ids[:10]
        page = await store.get_session_messages_paginated(session.id, 10, 10)
        assert [m.id for m in page] == ids[10:20]
        page = await store.get_session_messages_paginated(session.id, 20, 10)
        assert [m.id for m in page] == ids[20:]
        assert await store.get_session_messages_paginated(session.id, 25, 10) == []
        assert await store.get_session_messages_paginated(session.id, -1, 10) == []
        assert await store.get_session_messages_paginated(session.id, 0, 0) == []
        assert await store.get_session_messages_paginated(session.id, 0, -5) == []

    @pytest.mark.asyncio
    async def test_recent_messages_are_newest_returned_oldest_first(
        self, store: Conversations
    ) -> None:
        """get_recent_messages(n) returns the newest n, oldest first; n <= 0 gives []."""
        session = await self._session(store)
        saved = [
            make_message(session, str(i), create_time=BASE_TIME + timedelta(minutes=i))
            for i in range(10)
        ]
        for message in reversed(saved):
            await store.save_message(message)
        ids = [m.id for m in saved]
        assert [m.id for m in await store.get_recent_messages(session.id, 3)] == ids[7:]
        assert [m.id for m in await store.get_recent_messages(session.id, 50)] == ids
        assert await store.get_recent_messages(session.id, 0) == []
        assert await store.get_recent_messages(session.id, -1) == []
        assert await store.get_recent_messages(uuid7(), 5) == []

    @pytest.mark.asyncio
    async def test_delete_message(self, store: Conversations) -> None:
        """delete_message removes one message (True), then reports False; others keep order."""
        session = await self._session(store)
        saved = [make_message(session, str(i), create_time=BASE_TIME) for i in range(5)]
        await store.save_messages(saved)
        assert await store.delete_message(saved[2].id) is True
        assert await store.delete_message(saved[2].id) is False
        assert await store.delete_message(uuid7()) is False
        assert await store.get_message(saved[2].id) is None
        assert await store.count_session_messages(session.id) == 4
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == [saved[i].id for i in (0, 1, 3, 4)]

    @pytest.mark.asyncio
    async def test_delete_session_messages_returns_count(self, store: Conversations) -> None:
        """delete_session_messages deletes one session's messages, returns the count, keeps it."""
        session = await self._session(store)
        other = await self._session(store)
        await store.save_messages([make_message(session, str(i)) for i in range(7)])
        await store.save_messages([make_message(other, str(i)) for i in range(2)])
        assert await store.delete_session_messages(session.id) == 7
        assert await store.delete_session_messages(session.id) == 0
        assert await store.count_session_messages(session.id) == 0
        assert await store.get_session(session.id) is not None
        assert await store.count_session_messages(other.id) == 2
        await store.save_message(make_message(session, "again"))
        assert await store.count_session_messages(session.id) == 1

    @pytest.mark.asyncio
    async def test_count_session_messages(self, store: Conversations) -> None:
        """count_session_messages counts one session's messages; an unknown session has 0."""
        session = await self._session(store)
        assert await store.count_session_messages(session.id) == 0
        await store.save_messages([make_message(session, str(i)) for i in range(13)])
        assert await store.count_session_messages(session.id) == 13
        assert await store.count_session_messages(uuid7()) == 0

    @pytest.mark.asyncio
    async def test_count_messages_by_session(self, store: Conversations) -> None:
        """Each asked session's message count, 0 for one without messages or unknown."""
        sessions = [await self._session(store) for _ in range(3)]
        await store.save_messages([make_message(sessions[0], f"m{i}") for i in range(3)])
        await store.save_messages([make_message(sessions[2], "only")])
        unknown = uuid7()
        asked = [sessions[0].id, sessions[1].id, sessions[2].id, unknown]
        assert await store.count_messages_by_session(asked) == {
            sessions[0].id: 3,
            sessions[1].id: 0,
            sessions[2].id: 1,
            unknown: 0,
        }
        assert await store.count_messages_by_session([]) == {}
        many = [uuid7() for _ in range(1200)] + [sessions[0].id]
        counted = await store.count_messages_by_session(many)
        assert counted[sessions[0].id] == 3
        assert sum(counted.values()) == 3
        assert len(counted) == len(many)

    # -- batches and parents -----------------------------------------------------------

    @pytest.mark.asyncio
    async def test_save_messages_stores_a_batch_in_order(self, store: Conversations) -> None:
        """save_messages stores every message of a batch, across sessions; [] is a no-op."""
        first = await self._session(store)
        second = await self._session(store)
        batch = [make_message(first if i % 2 else second, str(i)) for i in range(20)]
        await store.save_messages(batch)
        await store.save_messages([])
        for session in (first, second):
            got = await store.get_session_messages(session.id)
            assert [m.id for m in got] == [m.id for m in batch if m.chat_session_id == session.id]

    @pytest.mark.asyncio
    async def test_save_messages_duplicate_inside_batch_stores_nothing(
        self, store: Conversations
    ) -> None:
        """A batch holding the same id twice raises ConstraintError and stores none of it."""
        session = await self._session(store)
        batch = [make_message(session, str(i)) for i in range(5)]
        with pytest.raises(ConstraintError):
            await store.save_messages([*batch, batch[1]])
        assert await store.count_session_messages(session.id) == 0
        assert await store.get_message(batch[0].id) is None

    @pytest.mark.asyncio
    async def test_save_messages_duplicate_of_stored_id_stores_nothing(
        self, store: Conversations
    ) -> None:
        """A batch reusing a stored id raises ConstraintError and stores none of it."""
        session = await self._session(store)
        existing = make_message(session, "existing")
        await store.save_message(existing)
        batch = [make_message(session, str(i)) for i in range(5)]
        with pytest.raises(ConstraintError):
            await store.save_messages([*batch, existing])
        assert await store.count_session_messages(session.id) == 1
        assert await store.get_message(batch[0].id) is None

    @pytest.mark.asyncio
    async def test_save_messages_with_missing_session_stores_nothing(
        self, store: Conversations
    ) -> None:
        """A batch with one message of a missing session raises ConstraintError, stores nothing."""
        session = await self._session(store)
        batch = [make_message(session, str(i)) for i in range(5)]
        batch.insert(3, make_message(make_session(), "orphan"))
        with pytest.raises(ConstraintError):
            await store.save_messages(batch)
        assert await store.count_session_messages(session.id) == 0
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == session.update_time

    @pytest.mark.asyncio
    async def test_message_with_missing_parent_raises_constraint_error(
        self, store: Conversations
    ) -> None:
        """A parent is stored or earlier in the batch; else ConstraintError, and nothing stored."""
        session = await self._session(store)
        orphan = make_message(session, parent_message_id=uuid7())
        with pytest.raises(ConstraintError):
            await store.save_message(orphan)
        first = make_message(session, "first")
        reply = make_message(session, "reply", parent_message_id=first.id)
        with pytest.raises(ConstraintError):
            await store.save_messages([make_message(session, "fine"), orphan])
        assert await store.count_session_messages(session.id) == 0
        await store.save_messages([first, reply])  # the parent earlier in the same batch
        got = await store.get_message(reply.id)
        assert got is not None
        assert got.parent_message_id == first.id

    @pytest.mark.asyncio
    async def test_deleting_a_parent_unlinks_its_replies(self, store: Conversations) -> None:
        """Replies of a deleted message stay, without a parent (SQL's ON DELETE SET NULL)."""
        session = await self._session(store)
        other = await self._session(store)
        root = make_message(session, "root", create_time=BASE_TIME)
        reply = make_message(session, "reply", create_time=BASE_TIME, parent_message_id=root.id)
        elsewhere = make_message(other, "elsewhere", parent_message_id=reply.id)
        await store.save_messages([root, reply, elsewhere])

        assert await store.delete_message(root.id) is True
        assert await store.get_message(reply.id) == reply._replace(parent_message_id=None)
        assert await store.get_session_messages(session.id) == [
            reply._replace(parent_message_id=None)
        ]
        assert await store.delete_session(session.id) is True  # its messages go with it
        assert await store.get_message(elsewhere.id) == elsewhere._replace(parent_message_id=None)
        assert await store.get_session_messages(other.id) == [
            elsewhere._replace(parent_message_id=None)
        ]
        # the parent id is free again: a new reply to a deleted message is refused
        with pytest.raises(ConstraintError):
            await store.save_message(make_message(other, parent_message_id=reply.id))

    @pytest.mark.asyncio
    async def test_nul_in_message_raises_serialization_error(self, store: Conversations) -> None:
        """A NUL anywhere in a message's content raises SerializationError; nothing is stored."""
        session = await self._session(store)
        bad_contents = [
            MessageContent(text="before\x00after"),
            MessageContent(
                tool_calls=[ToolCallContent(id="c", name="f", arguments={"deep": ["x\x00"]})]
            ),
            MessageContent(text="ok", note="extra \x00"),
            MessageContent(tool_result=ToolResultContent(tool_call_id="c", content="\x00")),
        ]
        for content in bad_contents:
            message = make_message(session, content=content)
            with pytest.raises(SerializationError):
                await store.save_message(message)
            assert await store.get_message(message.id) is None
        good = make_message(session, "fine")
        with pytest.raises(SerializationError):
            await store.save_messages([good, make_message(session, "bad\x00")])
        assert await store.count_session_messages(session.id) == 0

    # -- a message moves its session ---------------------------------------------------

    @pytest.mark.asyncio
    async def test_saving_a_message_moves_session_update_time_forward(
        self, store: Conversations
    ) -> None:
        """A saved message sets its session's update_time to max(update_time, message time)."""
        session = await self._session(store, create_time=BASE_TIME)
        later = BASE_TIME + timedelta(hours=1, microseconds=42)
        await store.save_message(make_message(session, create_time=later))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == later
        assert got.create_time == BASE_TIME

        await store.save_message(make_message(session, create_time=BASE_TIME - timedelta(days=1)))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == later

    @pytest.mark.asyncio
    async def test_message_save_reorders_user_sessions(self, store: Conversations) -> None:
        """After a message is saved, its session comes first in get_user_sessions."""
        user = uuid7()
        quiet = await self._session(store, user_id=user, update_time=BASE_TIME)
        await self._session(store, user_id=user, update_time=BASE_TIME + timedelta(hours=1))
        await store.save_message(make_message(quiet, create_time=BASE_TIME + timedelta(hours=2)))
        sessions = await store.get_user_sessions(user)
        assert sessions[0].id == quiet.id

    @pytest.mark.asyncio
    async def test_session_update_time_follows_the_message_update_time(
        self, store: Conversations
    ) -> None:
        """A saved message moves its session's update_time to the message's own update_time."""
        session = await self._session(store, create_time=BASE_TIME)
        message = make_message(session, create_time=BASE_TIME + timedelta(minutes=1))
        edited = message._replace(update_time=BASE_TIME + timedelta(minutes=5))
        await store.save_message(edited)
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == edited.update_time

    # -- concurrent writers ------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_fifty_concurrent_writers_on_distinct_sessions_lose_nothing(
        self, store: Conversations
    ) -> None:
        """50 concurrent save_message calls on 50 sessions all land."""
        sessions = [make_session() for _ in range(50)]
        await asyncio.gather(*(store.create_session(s) for s in sessions))
        messages = [make_message(s, f"from {i}") for i, s in enumerate(sessions)]
        await asyncio.gather(*(store.save_message(m) for m in messages))
        for session, message in zip(sessions, messages, strict=True):
            assert await store.get_session_messages(session.id) == [message]

    @pytest.mark.asyncio
    async def test_fifty_concurrent_writers_on_one_session_lose_nothing(
        self, store: Conversations
    ) -> None:
        """50 concurrent save_message calls on one session all land, each exactly once."""
        session = await self._session(store)
        messages = [make_message(session, str(i)) for i in range(50)]
        await asyncio.gather(*(store.save_message(m) for m in messages))
        got = await store.get_session_messages(session.id)
        assert sorted(m.id for m in got) == sorted(m.id for m in messages)
        assert await store.count_session_messages(session.id) == 50
