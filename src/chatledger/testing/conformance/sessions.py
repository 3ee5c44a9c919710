"""Conformance of ``SessionStore``: sessions kept, listed, searched and pruned."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from uuid import UUID

import pytest

from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    MessageContent,
    MessageRole,
    QueryFilter,
    SessionPage,
    SessionQuery,
    ToolCallContent,
    ToolResultContent,
)
from chatledger.errors import ConstraintError, NotFoundError
from chatledger.ids import uuid7
from chatledger.stores.base import (
    DEFAULT_QUERY_LIMIT,
    ApiCallStore,
    MessageStore,
    PersistenceStore,
    SessionStore,
)
from chatledger.testing.conformance.capability import CapabilityConformance, requires
from chatledger.testing.conformance.population import session_filters, sessions_over_time
from chatledger.testing.factories import BASE_TIME, make_api_call, make_message, make_session

__all__ = ["SessionConformance"]


class SessionConformance(CapabilityConformance):
    """The ``SessionStore`` protocol: create, read, update, delete, list, search, prune.

    Subclass it (with ``LifecycleConformance``) for a backend that keeps
    sessions. The tests that also save messages or API calls run when the
    store implements those protocols too, and are skipped otherwise.
    """

    protocols: ClassVar[tuple[type, ...]] = (SessionStore,)

    # -- sessions ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_session_round_trips_every_field(self, store: SessionStore) -> None:
        """create_session then get_session returns an equal session, microseconds included."""
        session = make_session(
            title="Trip to 東京 ✈️",
            metadata={"topic": "travel", "tags": ["a", "b"], "depth": {"n": 1, "ok": True}},
            create_time=datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
            update_time=datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
        )
        await store.create_session(session)
        got = await store.get_session(session.id)
        assert got == session
        assert got is not None
        assert got.create_time.microsecond == 999_999
        assert got.update_time.microsecond == 1
        assert got.create_time.utcoffset() == timedelta(0)

    @pytest.mark.asyncio
    async def test_get_missing_session_is_none(self, store: SessionStore) -> None:
        """get_session of an unknown id returns None."""
        assert await store.get_session(uuid7()) is None

    @pytest.mark.asyncio
    async def test_create_session_with_reused_id_raises_constraint_error(
        self, store: SessionStore
    ) -> None:
        """create_session with an id already stored raises ConstraintError and keeps the first."""
        session = await self._session(store, title="first")
        with pytest.raises(ConstraintError):
            await store.create_session(session.with_title("second"))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.title == "first"

    @pytest.mark.asyncio
    async def test_get_user_sessions_most_recently_updated_first(self, store: SessionStore) -> None:
        """get_user_sessions returns only that user's sessions by (update_time, id) descending."""
        user = uuid7()
        old = await self._session(store, user_id=user, update_time=BASE_TIME)
        newest = await self._session(
            store, user_id=user, update_time=BASE_TIME + timedelta(hours=3)
        )
        middle = await self._session(
            store, user_id=user, update_time=BASE_TIME + timedelta(hours=2)
        )
        tie = await self._session(store, user_id=user, update_time=BASE_TIME + timedelta(hours=2))
        await self._session(store, update_time=BASE_TIME + timedelta(hours=9))  # another user
        got = await store.get_user_sessions(user)
        assert [s.id for s in got] == [newest.id, tie.id, middle.id, old.id]
        assert await store.get_user_sessions(uuid7()) == []

    @pytest.mark.asyncio
    async def test_update_session_replaces_it(self, store: SessionStore) -> None:
        """update_session stores the new title, metadata and update_time."""
        session = await self._session(store, title="draft")
        changed = (
            session.with_title("final ✅")
            .with_metadata("k", {"v": [1, 2]})
            ._replace(update_time=BASE_TIME + timedelta(days=1, microseconds=7))
        )
        await store.update_session(changed)
        assert await store.get_session(session.id) == changed

    @pytest.mark.asyncio
    async def test_update_missing_session_raises_not_found(self, store: SessionStore) -> None:
        """update_session of a session never created raises NotFoundError and stores nothing."""
        session = make_session()
        with pytest.raises(NotFoundError):
            await store.update_session(session)
        assert await store.get_session(session.id) is None

    @requires(MessageStore, ApiCallStore)
    @pytest.mark.asyncio
    async def test_delete_session_removes_messages_and_keeps_api_calls(
        self, store: PersistenceStore
    ) -> None:
        """delete_session deletes the session and its messages; its API calls stay in the ledger."""
        session = await self._session(store)
        other = await self._session(store)
        messages = [make_message(session, f"m{i}") for i in range(3)]
        await store.save_messages(messages)
        await store.save_message(make_message(other, "keep me"))
        call = make_api_call(session, request_message_id=messages[0].id)
        await store.save_api_call(call)

        assert await store.delete_session(session.id) is True
        assert await store.get_session(session.id) is None
        assert await store.count_session_messages(session.id) == 0
        assert await store.get_message(messages[0].id) is None
        assert await store.get_api_call(call.id) == call
        assert await store.count_session_messages(other.id) == 1
        assert await store.delete_session(session.id) is False

    # -- listing and pruning sessions --------------------------------------------------

    @pytest.mark.asyncio
    async def test_list_sessions_with_each_filter_field(self, store: SessionStore) -> None:
        """list_sessions honours tenant, user, agent, session id and a range on update_time."""
        sessions = await sessions_over_time(store)
        for query, keep in session_filters(sessions):
            expected = sorted(
                (s for s in sessions if keep(s)), key=lambda s: (s.update_time, s.id), reverse=True
            )
            assert expected, "the sessions should cover every filter"
            got = await store.list_sessions(query)
            assert [s.id for s in got] == [s.id for s in expected]
            assert got == expected

    @requires(MessageStore)
    @pytest.mark.asyncio
    async def test_list_sessions_most_recently_active_first(self, store: PersistenceStore) -> None:
        """list_sessions orders by update_time, then id, both descending; a message moves it up."""
        same_time = [make_session(update_time=BASE_TIME + timedelta(hours=1)) for _ in range(3)]
        older = make_session(update_time=BASE_TIME + timedelta(microseconds=1))
        newer = make_session(update_time=BASE_TIME + timedelta(hours=2))
        for session in (same_time[1], newer, older, same_time[2], same_time[0]):
            await store.create_session(session)
        got = await store.list_sessions(QueryFilter())
        assert [s.id for s in got] == [
            newer.id,
            same_time[2].id,
            same_time[1].id,
            same_time[0].id,
            older.id,
        ]
        await store.save_message(make_message(older, create_time=BASE_TIME + timedelta(hours=3)))
        assert (await store.list_sessions(QueryFilter()))[0].id == older.id

    @pytest.mark.asyncio
    async def test_list_sessions_time_range_is_half_open_on_update_time(
        self, store: SessionStore
    ) -> None:
        """A session last active at start is in, at end is out; its create_time plays no part."""
        start, end = BASE_TIME, BASE_TIME + timedelta(days=1)
        old_but_active = make_session(create_time=start - timedelta(days=30), update_time=start)
        inside = make_session(create_time=start, update_time=end - timedelta(microseconds=1))
        at_end = make_session(create_time=start, update_time=end)
        before = make_session(update_time=start - timedelta(microseconds=1))
        for session in (old_but_active, inside, at_end, before):
            await store.create_session(session)
        got = await store.list_sessions(QueryFilter().time_range(start, end))
        assert {s.id for s in got} == {old_but_active.id, inside.id}

    @pytest.mark.asyncio
    async def test_list_sessions_default_limit_and_pagination(self, store: SessionStore) -> None:
        """list_sessions returns at most 100 by default; offset and limit page the rest."""
        sessions = [
            make_session(update_time=BASE_TIME + timedelta(seconds=i))
            for i in range(DEFAULT_QUERY_LIMIT + 30)
        ]
        for session in sessions:
            await store.create_session(session)
        newest_first = [s.id for s in reversed(sessions)]
        assert [s.id for s in await store.list_sessions(QueryFilter())] == newest_first[:100]
        page = await store.list_sessions(QueryFilter().paginate(100, 100))
        assert [s.id for s in page] == newest_first[100:]
        page = await store.list_sessions(QueryFilter().paginate(10, 5))
        assert [s.id for s in page] == newest_first[10:15]
        assert len(await store.list_sessions(QueryFilter(limit=1000))) == 130
        assert await store.list_sessions(QueryFilter(limit=0)) == []
        assert await store.list_sessions(QueryFilter(offset=500)) == []

    @pytest.mark.asyncio
    async def test_list_sessions_refuses_status_and_model(self, store: SessionStore) -> None:
        """A session filter naming a status or a model is a ValueError, not ignored."""
        with pytest.raises(ValueError, match="status or model"):
            await store.list_sessions(QueryFilter().with_status(ApiCallStatus.FAILED))
        with pytest.raises(ValueError, match="model_name"):
            await store.list_sessions(QueryFilter().model("gpt-4o"))

    @requires(MessageStore, ApiCallStore)
    @pytest.mark.asyncio
    async def test_cleanup_old_sessions_deletes_messages_and_keeps_api_calls(
        self, store: PersistenceStore
    ) -> None:
        """Sessions last active before the cutoff go with their messages; API calls stay."""
        cutoff = BASE_TIME + timedelta(days=10)
        gone = [
            await self._session(store, update_time=cutoff - timedelta(days=3)),
            await self._session(store, update_time=cutoff - timedelta(microseconds=1)),
        ]
        kept = [
            await self._session(store, update_time=cutoff),  # exactly at the cutoff: kept
            await self._session(store, update_time=cutoff + timedelta(days=1)),
        ]
        # created long ago, active since: its old message stays with it
        revived = await self._session(store, create_time=BASE_TIME)
        old_message = make_message(revived, create_time=BASE_TIME)
        await store.save_message(old_message)
        await store.save_message(make_message(revived, create_time=cutoff + timedelta(hours=1)))
        messages = {s.id: make_message(s, create_time=BASE_TIME) for s in [*gone, *kept]}
        await store.save_messages(list(messages.values()))
        calls = [make_api_call(s) for s in [*gone, *kept]]
        await store.save_api_calls(calls)

        assert await store.cleanup_old_sessions(cutoff) == 2
        assert await store.cleanup_old_sessions(cutoff) == 0
        for session in gone:
            assert await store.get_session(session.id) is None
            assert await store.get_message(messages[session.id].id) is None
            assert await store.count_session_messages(session.id) == 0
        for session in kept:
            assert await store.get_session(session.id) is not None
            assert await store.get_message(messages[session.id].id) == messages[session.id]
        assert await store.get_message(old_message.id) == old_message
        for call in calls:
            assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_cleanup_old_sessions_refuses_a_naive_cutoff(self, store: SessionStore) -> None:
        """A cutoff without a timezone is a ValueError and deletes nothing."""
        session = await self._session(store, update_time=BASE_TIME - timedelta(days=1))
        with pytest.raises(ValueError, match="timezone"):
            await store.cleanup_old_sessions(BASE_TIME.replace(tzinfo=None))
        assert await store.get_session(session.id) == session

    # -- searching sessions ------------------------------------------------------------

    async def _searchable_sessions(self, store: PersistenceStore) -> dict[str, ChatSession]:
        """Sessions with titles and messages worth searching, by a short name."""
        tenant, user, agent = uuid7(), uuid7(), uuid7()
        made: dict[str, ChatSession] = {}
        specs: list[tuple[str, str | None, list[str]]] = [
            ("title", "Quarterly REPORT draft", []),
            ("message", None, ["nothing here", "Please summarise the Report, thanks"]),
            ("percent", "50% off", ["the 100_000 limit"]),
            ("digits", "500 off", ["the 100x000 limit"]),
            ("backslash", None, ["path C:\\temp\\new"]),
            ("bang", "hi! there", ['she said "hello"']),
            ("tools", None, []),
            ("empty", None, []),
        ]
        for offset, (name, title, texts) in enumerate(specs):
            session = make_session(
                tenant_id=tenant,
                user_id=user,
                agent_id=agent,
                title=title,
                create_time=BASE_TIME + timedelta(minutes=offset),
            )
            await store.create_session(session)
            for index, text in enumerate(texts):
                await store.save_message(
                    make_message(
                        session, text, create_time=BASE_TIME + timedelta(hours=1, seconds=index)
                    )
                )
            made[name] = session
        tool_call = ToolCallContent(id="call_1", name="report", arguments={"q": "report"})
        await store.save_messages(
            [
                make_message(
                    made["tools"],
                    content=MessageContent.from_tool_calls([tool_call]),
                    role=MessageRole.ASSISTANT,
                ),
                make_message(
                    made["tools"],
                    content=MessageContent.from_tool_result(
                        ToolResultContent(tool_call_id="call_1", content="report body")
                    ),
                    role=MessageRole.TOOL,
                ),
            ]
        )
        return made

    @staticmethod
    async def _found(store: SessionStore, query: SessionQuery, limit: int = 50) -> list[UUID]:
        """The ids of every session a search finds, page after page."""
        found: list[UUID] = []
        cursor: str | None = None
        while True:
            page = await store.search_sessions(query, cursor=cursor, limit=limit)
            found.extend(s.id for s in page.sessions)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    @requires(MessageStore)
    @pytest.mark.asyncio
    async def test_search_sessions_by_text_in_title_or_messages(
        self, store: PersistenceStore
    ) -> None:
        """Text matches part of a title or of a message's text, whatever the ASCII case."""
        made = await self._searchable_sessions(store)

        async def found(text: str) -> set[str]:
            ids = await self._found(store, SessionQuery(text=text))
            return {name for name, session in made.items() if session.id in ids}

        assert await found("report") == {"title", "message"}
        assert await found("rEpOrT dRaFt") == {"title"}
        assert await found("SUMMARISE the report") == {"message"}
        assert await found("nowhere to be found") == set()
        assert await found('"hello"') == {"bang"}  # the text, not its JSON form
        assert await found("report body") == set()  # a tool result is not message text
        assert await found("") == set(made)  # no text: no condition

    @requires(MessageStore)
    @pytest.mark.asyncio
    async def test_search_sessions_matches_wildcards_literally(
        self, store: PersistenceStore
    ) -> None:
        """%, _, a backslash and ! in the text are matched as themselves."""
        made = await self._searchable_sessions(store)

        async def found(text: str) -> set[str]:
            ids = await self._found(store, SessionQuery(text=text))
            return {name for name, session in made.items() if session.id in ids}

        assert await found("50%") == {"percent"}
        assert await found("%") == {"percent"}
        assert await found("0_0") == {"percent"}
        assert await found("_") == {"percent"}
        assert await found("C:\\temp") == {"backslash"}
        assert await found("\\") == {"backslash"}
        assert await found("hi!") == {"bang"}
        assert await found("!") == {"bang"}
        assert await found("!!") == set()

    @pytest.mark.asyncio
    async def test_search_sessions_newest_first_in_pages(self, store: SessionStore) -> None:
        """Sessions come newest first by create_time, ties by id, page after page."""
        times = [BASE_TIME + timedelta(minutes=m) for m in (0, 1, 1, 1, 2, 5, 5)]
        sessions = [await self._session(store, create_time=t) for t in times * 2]
        expected = [s.id for s in sorted(sessions, key=lambda s: (s.create_time, s.id))][::-1]
        for limit in (1, 3, 14, 50):
            assert await self._found(store, SessionQuery(), limit=limit) == expected
        page = await store.search_sessions(SessionQuery(), limit=14)
        assert page.next_cursor is None
        assert isinstance(page, SessionPage)
        assert page.sessions == [await store.get_session(i) for i in expected]

    @pytest.mark.asyncio
    async def test_search_sessions_with_each_filter_field(self, store: SessionStore) -> None:
        """Tenant, user, agent and a half-open range on create_time select sessions."""
        sessions = await sessions_over_time(store)
        first = sessions[0]
        start, end = BASE_TIME + timedelta(days=5), BASE_TIME + timedelta(days=15)
        at_start = await self._session(store, create_time=start, tenant_id=first.tenant_id)
        at_end = await self._session(store, create_time=end, tenant_id=first.tenant_id)
        sessions += [at_start, at_end]
        cases: list[tuple[SessionQuery, Callable[[ChatSession], bool]]] = [
            (SessionQuery(), lambda s: True),
            (SessionQuery(tenant_id=first.tenant_id), lambda s: s.tenant_id == first.tenant_id),
            (SessionQuery(user_id=first.user_id), lambda s: s.user_id == first.user_id),
            (SessionQuery(agent_id=first.agent_id), lambda s: s.agent_id == first.agent_id),
            (
                SessionQuery(start_time=start, end_time=end),
                lambda s: start <= s.create_time < end,
            ),
            (
                SessionQuery(tenant_id=first.tenant_id, start_time=start),
                lambda s: s.tenant_id == first.tenant_id and s.create_time >= start,
            ),
        ]
        for query, keep in cases:
            expected = sorted((s for s in sessions if keep(s)), key=lambda s: (s.create_time, s.id))
            assert expected
            assert await self._found(store, query, limit=4) == [s.id for s in reversed(expected)]
        ranged = await self._found(store, SessionQuery(start_time=start, end_time=end))
        assert at_start.id in ranged
        assert at_end.id not in ranged

    @requires(MessageStore)
    @pytest.mark.asyncio
    async def test_search_sessions_text_with_filters(self, store: PersistenceStore) -> None:
        """Text and the other conditions hold together; another tenant's matches stay out."""
        made = await self._searchable_sessions(store)
        other = await self._session(store, title="report of another tenant")
        await store.save_message(make_message(other, "the report"))
        ids = await self._found(store, SessionQuery(text="report"))
        assert set(ids) == {made["title"].id, made["message"].id, other.id}
        query = SessionQuery(text="report", tenant_id=made["title"].tenant_id)
        ids = await self._found(store, query, limit=1)
        assert ids == [made["message"].id, made["title"].id]

    @requires(ApiCallStore)
    @pytest.mark.asyncio
    async def test_search_sessions_refuses_bad_cursors(self, store: PersistenceStore) -> None:
        """A damaged cursor, a page_api_calls cursor or limit < 1: ValueError."""
        for _ in range(3):
            await self._session(store)
        await store.save_api_calls([make_api_call(), make_api_call()])
        calls = (await store.page_api_calls(QueryFilter(), limit=1)).next_cursor
        mine = (await store.search_sessions(SessionQuery(), limit=1)).next_cursor
        assert calls is not None
        assert mine is not None
        for cursor in ("", "garbage", mine[:-2], calls):
            with pytest.raises(ValueError, match="cursor"):
                await store.search_sessions(SessionQuery(), cursor=cursor)
        for limit in (0, -5):
            with pytest.raises(ValueError, match="limit"):
                await store.search_sessions(SessionQuery(), limit=limit)
