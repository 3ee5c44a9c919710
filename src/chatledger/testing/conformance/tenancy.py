"""Conformance of tenancy: one store seen by one tenant through ``store.for_tenant``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar
from uuid import UUID

import pytest

from chatledger.entities import (
    Agent,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    Provider,
    QueryFilter,
    SessionQuery,
)
from chatledger.errors import ConstraintError, NotFoundError, StoreConnectionError
from chatledger.ids import uuid7
from chatledger.recording.scope import id_for_key
from chatledger.stores.base import RECORD_KINDS, PersistenceStore, RecordKind
from chatledger.testing.conformance.capability import CapabilityConformance
from chatledger.testing.conformance.expectations import unchecked
from chatledger.testing.factories import (
    BASE_TIME,
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)

__all__ = ["TenancyConformance"]

_HOUR = timedelta(hours=1)


@dataclass
class _Tenant:
    """One tenant's records, stored through the unscoped store."""

    id: UUID
    session: ChatSession
    old_session: ChatSession
    messages: list[LLMMessage]
    calls: list[LLMApiCall]
    old_call: LLMApiCall
    provider: Provider
    agent: Agent

    @property
    def call_ids(self) -> set[UUID]:
        return {call.id for call in [*self.calls, self.old_call]}

    @property
    def session_ids(self) -> set[UUID]:
        return {self.session.id, self.old_session.id}


async def _tenant(store: PersistenceStore, name: str, user_id: UUID) -> _Tenant:
    """A tenant with a current and an old session, messages, calls, a provider and an agent."""
    tenant_id = uuid7()
    session = make_session(tenant_id=tenant_id, user_id=user_id, title=f"{name} support")
    old_session = make_session(
        tenant_id=tenant_id, user_id=user_id, create_time=BASE_TIME - 48 * _HOUR
    )
    for each in (session, old_session):
        await store.create_session(each)
    question = make_message(session, f"shared words from {name}", create_time=BASE_TIME)
    answer = make_message(
        session, f"an answer for {name}", create_time=BASE_TIME + _HOUR
    ).with_parent(question.id)
    await store.save_messages([question, answer])
    await store.save_message(make_message(old_session, "old", create_time=BASE_TIME - 48 * _HOUR))
    calls = [
        make_api_call(
            session,
            request_message_id=question.id,
            response_message_id=answer.id,
            model_name=f"{name}-model",
            create_time=BASE_TIME + _HOUR,
        ),
        make_api_call(session, model_name="shared-model", prompt_tokens=100, create_time=BASE_TIME),
    ]
    old_call = make_api_call(old_session, create_time=BASE_TIME - 48 * _HOUR)
    await store.save_api_calls([*calls, old_call])
    provider = make_provider(tenant_id=tenant_id, name="openai", api_key=f"sk-{name}-secret")
    await store.save_provider(provider)
    agent = make_agent(provider)
    await store.save_agent(agent)
    return _Tenant(
        tenant_id, session, old_session, [question, answer], calls, old_call, provider, agent
    )


async def _exported(store: PersistenceStore, kind: RecordKind, query: QueryFilter) -> set[str]:
    return {record["id"] async for chunk in store.export_records(kind, query) for record in chunk}


class TenancyConformance(CapabilityConformance):
    """Tenant-scoped stores: reads filtered, other tenants' writes refused, their ids missing.

    ``store.for_tenant`` belongs to ``PersistenceStore``: a store that keeps
    every kind of record runs these tests, any other skips them.
    """

    protocols: ClassVar[tuple[type, ...]] = (PersistenceStore,)

    async def _two_tenants(self, store: PersistenceStore) -> tuple[_Tenant, _Tenant]:
        """Tenants A and B, sharing a user id, stored through ``store`` itself."""
        user = uuid7()
        return await _tenant(store, "alpha", user), await _tenant(store, "beta", user)

    # -- the view itself -----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_tenant_view_is_a_store_of_the_same_backend(
        self, store: PersistenceStore
    ) -> None:
        """for_tenant returns a PersistenceStore named as the store; itself for its tenant."""
        tenant = uuid7()
        view = store.for_tenant(tenant)
        assert isinstance(view, PersistenceStore)
        assert view.backend_name == store.backend_name
        assert view.is_connected is True
        assert view.for_tenant(tenant) is view
        assert view.for_tenant(str(tenant)) is view
        with pytest.raises(ConstraintError, match=str(tenant)):
            view.for_tenant(uuid7())
        assert str(tenant) in repr(view)

    @pytest.mark.asyncio
    async def test_tenant_given_as_a_key_is_the_scope_s_id(self, store: PersistenceStore) -> None:
        """A tenant key ("acme") is the UUID chatledger.scope maps it to; a UUID as text parses."""
        acme = id_for_key("acme")
        session = make_session(tenant_id=acme)
        await store.create_session(session)
        assert await store.for_tenant("acme").get_session(session.id) == session
        assert await store.for_tenant(str(acme)).get_session(session.id) == session
        assert await store.for_tenant("other-corp").get_session(session.id) is None
        with pytest.raises(TypeError):
            store.for_tenant(unchecked(42))
        with pytest.raises(ValueError, match="empty"):
            store.for_tenant("")

    @pytest.mark.asyncio
    async def test_tenant_view_close_leaves_the_store_open(self, store: PersistenceStore) -> None:
        """Closing a view ends the view only; closing the store disconnects its views."""
        tenant = uuid7()
        session = make_session(tenant_id=tenant)
        async with store.for_tenant(tenant) as view:
            await view.create_session(session)
        assert view.is_connected is False
        with pytest.raises(StoreConnectionError):
            await view.get_session(session.id)
        await view.close()  # again: nothing more to do
        assert store.is_connected is True
        assert await store.get_session(session.id) == session
        other = store.for_tenant(tenant)
        assert await other.get_session(session.id) == session
        await store.close()
        assert other.is_connected is False

    @pytest.mark.asyncio
    async def test_tenant_view_checks_argument_types_as_the_store(
        self, store: PersistenceStore
    ) -> None:
        """A wrong argument gets the store's own TypeError, before any tenant check."""
        view = store.for_tenant(uuid7())
        with pytest.raises(TypeError, match=r"get_session\(\): session_id must be a uuid.UUID"):
            await view.get_session(unchecked("not-an-id"))
        with pytest.raises(TypeError, match=r"list_providers\(\): tenant_id"):
            await view.list_providers(unchecked(str(uuid7())))
        with pytest.raises(TypeError, match=r"save_message\(\): message"):
            await view.save_message(unchecked(make_session()))
        with pytest.raises(TypeError, match=r"query_api_calls\(\): query"):
            await view.query_api_calls(unchecked(None))

    # -- reads ---------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_tenant_by_id_reads_treat_other_tenants_ids_as_missing(
        self, store: PersistenceStore
    ) -> None:
        """get_session/message/api_call/provider/agent: None for B's ids, the record for A's."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        assert await view.get_session(a.session.id) == await store.get_session(a.session.id)
        assert await view.get_message(a.messages[0].id) == a.messages[0]
        assert await view.get_api_call(a.calls[0].id) == a.calls[0]
        assert await view.get_provider(a.provider.id) == a.provider
        assert await view.get_agent(a.agent.id) == a.agent
        assert await view.get_session(b.session.id) is None
        assert await view.get_message(b.messages[0].id) is None
        assert await view.get_api_call(b.calls[0].id) is None
        assert await view.get_provider(b.provider.id) is None
        assert await view.get_agent(b.agent.id) is None

    @pytest.mark.asyncio
    async def test_tenant_session_messages_only_of_own_sessions(
        self, store: PersistenceStore
    ) -> None:
        """A session's messages, pages, recent ones and counts: B's session reads as empty."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        assert await view.get_session_messages(a.session.id) == a.messages
        assert await view.get_session_messages_paginated(a.session.id, 1, 5) == a.messages[1:]
        assert await view.get_recent_messages(a.session.id, 1) == a.messages[-1:]
        assert await view.count_session_messages(a.session.id) == 2
        assert await view.get_session_messages(b.session.id) == []
        assert await view.get_session_messages_paginated(b.session.id, 0, 5) == []
        assert await view.get_recent_messages(b.session.id, 5) == []
        assert await view.count_session_messages(b.session.id) == 0
        unknown = uuid7()
        asked = [a.session.id, b.session.id, a.old_session.id, unknown]
        assert await view.count_messages_by_session(asked) == {
            a.session.id: 2,
            b.session.id: 0,
            a.old_session.id: 1,
            unknown: 0,
        }
        assert await view.count_messages_by_session([]) == {}

    @pytest.mark.asyncio
    async def test_tenant_call_queries_statistics_and_pages_see_the_tenant_only(
        self, store: PersistenceStore
    ) -> None:
        """query_api_calls, get_statistics, page_api_calls, calls_for_messages: A's calls only."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        assert {c.id for c in await view.query_api_calls(QueryFilter())} == a.call_ids
        assert {c.id for c in await view.query_api_calls(QueryFilter(tenant_id=a.id))} == (
            a.call_ids
        )
        assert await view.query_api_calls(QueryFilter(tenant_id=b.id)) == []
        shared = QueryFilter().model("shared-model")
        assert [c.id for c in await view.query_api_calls(shared)] == [a.calls[1].id]
        assert await view.query_api_calls(QueryFilter().session(b.session.id)) == []

        stats = await view.get_statistics(QueryFilter())
        assert stats.total_calls == 3
        assert stats.total_prompt_tokens == sum(c.prompt_tokens for c in [*a.calls, a.old_call])
        assert (await view.get_statistics(QueryFilter(tenant_id=b.id))).total_calls == 0
        assert (await view.get_statistics(QueryFilter(user_id=a.session.user_id))).total_calls == 3

        page = await view.page_api_calls(QueryFilter(), limit=2)
        rest = await view.page_api_calls(QueryFilter(), cursor=page.next_cursor, limit=2)
        assert {c.id for c in [*page.calls, *rest.calls]} == a.call_ids
        assert rest.next_cursor is None
        assert (await view.page_api_calls(QueryFilter(tenant_id=b.id))).calls == []

        asked = [m.id for m in [*a.messages, *b.messages]]
        assert [c.id for c in await view.calls_for_messages(asked)] == [a.calls[0].id]
        assert await view.calls_for_messages([m.id for m in b.messages]) == []

    @pytest.mark.asyncio
    async def test_tenant_breakdowns_show_one_tenant(self, store: PersistenceStore) -> None:
        """get_usage_breakdown: groups of A's calls only, whatever the keys or the filter."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        by_tenant = await view.get_usage_breakdown(QueryFilter(), ["tenant"])
        assert [(row.keys, row.stats.total_calls) for row in by_tenant] == [({"tenant": a.id}, 3)]
        by_model = await view.get_usage_breakdown(QueryFilter(), ["model"], "day")
        models = {str(row.keys["model"]) for row in by_model}
        assert models == {"alpha-model", "shared-model", "gpt-4o-mini"}
        shared = [row for row in by_model if row.keys["model"] == "shared-model"]
        assert sum(row.stats.total_calls for row in shared) == 1
        assert await view.get_usage_breakdown(QueryFilter(tenant_id=b.id), ["model"]) == []
        with pytest.raises(ValueError, match="group_by"):
            await view.get_usage_breakdown(QueryFilter(tenant_id=b.id), unchecked(["colour"]))

    @pytest.mark.asyncio
    async def test_tenant_session_lists_and_searches_see_the_tenant_only(
        self, store: PersistenceStore
    ) -> None:
        """list_sessions, search_sessions and get_user_sessions leave B's sessions out."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        assert {s.id for s in await view.list_sessions(QueryFilter())} == a.session_ids
        assert await view.list_sessions(QueryFilter(tenant_id=b.id)) == []
        with pytest.raises(ValueError, match="status"):
            await view.list_sessions(QueryFilter(tenant_id=b.id).model("gpt-4o"))
        found = await view.search_sessions(SessionQuery(text="shared words"))
        assert [s.id for s in found.sessions] == [a.session.id]
        assert (await view.search_sessions(SessionQuery(tenant_id=b.id))).sessions == []
        everyone = await view.search_sessions(SessionQuery())
        assert {s.id for s in everyone.sessions} == a.session_ids
        shared_user = a.session.user_id
        assert {s.id for s in await view.get_user_sessions(shared_user)} == a.session_ids
        assert {s.id for s in await store.get_user_sessions(shared_user)} == (
            a.session_ids | b.session_ids
        )

    @pytest.mark.asyncio
    async def test_tenant_counts_and_exports_hold_the_tenant_only(
        self, store: PersistenceStore
    ) -> None:
        """count_records and export_records of every kind: A's records, none for B's filter."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        mine = {
            "sessions": a.session_ids,
            "messages": {m.id for m in a.messages}
            | {m.id for m in await store.get_session_messages(a.old_session.id)},
            "api_calls": a.call_ids,
        }
        for kind in RECORD_KINDS:
            assert await view.count_records(kind, QueryFilter()) == len(mine[kind])
            assert await _exported(view, kind, QueryFilter()) == {str(i) for i in mine[kind]}
            assert await view.count_records(kind, QueryFilter(tenant_id=b.id)) == 0
            assert await _exported(view, kind, QueryFilter(tenant_id=b.id)) == set()
        with pytest.raises(ValueError, match="status"):
            await view.count_records("sessions", QueryFilter().with_status("failed"))

    @pytest.mark.asyncio
    async def test_tenant_providers_and_agents_never_cross(self, store: PersistenceStore) -> None:
        """Provider and agent reads answer A's records; B's API key is never handed to A."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        b_key = b.provider.api_key.get_secret_value()
        assert await view.list_providers(a.id) == [a.provider]
        assert await view.get_enabled_providers(a.id) == [a.provider]
        assert await view.get_provider_by_name(a.id, "openai") == a.provider
        assert await view.list_providers(b.id) == []
        assert await view.get_enabled_providers(b.id) == []
        assert await view.get_provider_by_name(b.id, "openai") is None

        assert await view.list_agents(a.id) == [a.agent]
        assert await view.get_active_agents(a.id) == [a.agent]
        assert await view.get_agent_by_code(a.agent.agent_code) == a.agent
        assert await view.get_agent_by_code_and_tenant(a.id, a.agent.agent_code) == a.agent
        assert await view.list_agents(b.id) == []
        assert await view.get_active_agents(b.id) == []
        assert await view.get_agent_by_code(b.agent.agent_code) is None
        assert await view.get_agent_by_code_and_tenant(b.id, b.agent.agent_code) is None

        config = await view.get_agent_with_provider(a.agent.id)
        assert config is not None
        assert config.provider.api_key.get_secret_value() == "sk-alpha-secret"
        by_code = await view.get_agent_by_code_with_provider(a.agent.agent_code)
        assert by_code == config
        assert (
            await view.get_agent_by_code_and_tenant_with_provider(a.id, a.agent.agent_code)
            == config
        )
        assert await view.get_agent_with_provider(b.agent.id) is None
        assert await view.get_agent_by_code_with_provider(b.agent.agent_code) is None
        assert (
            await view.get_agent_by_code_and_tenant_with_provider(b.id, b.agent.agent_code) is None
        )

        # An agent of A's served by B's provider, made around the view: the view never hands
        # B's provider (and its key) to A.
        borrowed = make_agent(b.provider, tenant_id=a.id)
        await store.save_agent(borrowed)
        assert await view.get_agent(borrowed.id) == borrowed
        assert await view.get_agent_with_provider(borrowed.id) is None
        assert await view.get_agent_by_code_with_provider(borrowed.agent_code) is None
        assert (
            await view.get_agent_by_code_and_tenant_with_provider(a.id, borrowed.agent_code) is None
        )
        for provider in await view.list_providers(a.id):
            assert provider.api_key.get_secret_value() != b_key

    # -- writes --------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_tenant_writes_for_another_tenant_are_refused(
        self, store: PersistenceStore
    ) -> None:
        """Records for B, or naming B's session, parent or provider: ConstraintError, none kept."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        b_session = make_session(tenant_id=b.id)
        with pytest.raises(ConstraintError, match=str(b.id)):
            await view.create_session(b_session)
        assert await store.get_session(b_session.id) is None

        foreign = make_message(b.session, "into B's session")
        with pytest.raises(ConstraintError):
            await view.save_message(foreign)
        into_b = foreign.with_tenant(a.id)
        with pytest.raises(ConstraintError, match="does not exist"):
            await view.save_message(into_b)
        after_b = make_message(a.session, "after B's message").with_parent(b.messages[-1].id)
        with pytest.raises(ConstraintError, match="does not exist"):
            await view.save_message(after_b)
        fine = make_message(a.session, "fine")
        with pytest.raises(ConstraintError):
            await view.save_messages([fine, into_b])
        for refused in (foreign, into_b, after_b, fine):
            assert await store.get_message(refused.id) is None
        assert await store.get_session_messages(b.session.id) == b.messages

        b_call = make_api_call(b.session)
        with pytest.raises(ConstraintError):
            await view.save_api_call(b_call)
        a_call = make_api_call(a.session)
        with pytest.raises(ConstraintError):
            await view.save_api_calls([a_call, b_call])
        for refused_call in (a_call, b_call):
            assert await store.get_api_call(refused_call.id) is None

        b_provider = make_provider(tenant_id=b.id, name="anthropic")
        with pytest.raises(ConstraintError):
            await view.save_provider(b_provider)
        assert await store.get_provider(b_provider.id) is None
        takeover = b.provider.model_copy(update={"tenant_id": a.id, "provider_name": "mine"})
        with pytest.raises(ConstraintError, match="already exists"):
            await view.save_provider(takeover)
        assert await store.get_provider(b.provider.id) == b.provider

        with pytest.raises(ConstraintError):
            await view.save_agent(make_agent(b.provider))
        borrowing = make_agent(b.provider, tenant_id=a.id)
        with pytest.raises(ConstraintError, match="does not exist"):
            await view.save_agent(borrowing)
        assert await store.get_agent(borrowing.id) is None
        agent_takeover = b.agent.model_copy(
            update={"tenant_id": a.id, "provider_id": a.provider.id}
        )
        with pytest.raises(ConstraintError, match="already exists"):
            await view.save_agent(agent_takeover)
        same_code = make_agent(a.provider, code=b.agent.agent_code)
        with pytest.raises(ConstraintError, match="already exists") as refused_code:
            await view.save_agent(same_code)
        assert str(b.agent.id) not in str(refused_code.value)
        assert await store.get_agent(b.agent.id) == b.agent

        own = make_agent(a.provider)
        await view.save_agent(own)
        assert await store.get_agent(own.id) == own

    @pytest.mark.asyncio
    async def test_tenant_ingest_refuses_another_tenant_s_records(
        self, store: PersistenceStore
    ) -> None:
        """ingest_records: a record for B, or a message into B's session, refuses the batch."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        session = make_session(tenant_id=a.id)
        message = make_message(session, "new")
        call = make_api_call(session)
        b_call = make_api_call(b.session)
        with pytest.raises(ConstraintError):
            await view.ingest_records([session], [message], [call, b_call])
        with pytest.raises(ConstraintError):
            await view.ingest_records([make_session(tenant_id=b.id)], [], [])
        # A session carrying B's session's id is skipped as stored, so its messages would land
        # in B's session: refused.
        posing = b.session.model_copy(update={"tenant_id": a.id})
        sneaked = make_message(b.session, "sneaked in").with_tenant(a.id)
        with pytest.raises(ConstraintError, match="does not exist"):
            await view.ingest_records([posing], [sneaked], [])
        assert await store.get_session(session.id) is None
        assert await store.get_message(message.id) is None
        assert await store.get_message(sneaked.id) is None
        assert await store.get_api_call(call.id) is None
        assert await store.get_session_messages(b.session.id) == b.messages

        await view.ingest_records([session], [message], [call])
        await view.ingest_records([session], [message], [call])  # shipped twice, stored once
        assert await view.get_session_messages(session.id) == [message]
        assert await view.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_tenant_updates_and_deletes_treat_other_tenants_ids_as_missing(
        self, store: PersistenceStore
    ) -> None:
        """update_session raises NotFoundError, deletes answer False or 0; B's records stay."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        with pytest.raises(NotFoundError):
            await view.update_session(b.session.with_title("renamed"))
        with pytest.raises(NotFoundError):
            await view.update_session(b.session.with_tenant_id(a.id))
        with pytest.raises(ConstraintError):
            await view.update_session(a.session.with_tenant_id(b.id))
        assert await view.delete_session(b.session.id) is False
        assert await view.delete_session_messages(b.session.id) == 0
        assert await view.delete_message(b.messages[0].id) is False
        assert await view.delete_api_call(b.calls[0].id) is False
        assert await view.delete_agent(b.agent.id) is False
        assert await view.delete_provider(b.provider.id) is False
        stored_b = await store.get_session(b.session.id)
        assert stored_b is not None
        assert stored_b.title == b.session.title
        assert stored_b.tenant_id == b.id
        assert await store.get_session_messages(b.session.id) == b.messages
        assert await store.get_api_call(b.calls[0].id) == b.calls[0]
        assert await store.get_agent(b.agent.id) == b.agent
        assert await store.get_provider(b.provider.id) == b.provider
        stored_a = await store.get_session(a.session.id)
        assert stored_a is not None
        assert stored_a.tenant_id == a.id

        await view.update_session(a.session.with_title("renamed"))
        renamed = await store.get_session(a.session.id)
        assert renamed is not None
        assert renamed.title == "renamed"
        assert await view.delete_message(a.messages[-1].id) is True
        assert await view.delete_api_call(a.calls[0].id) is True
        assert await view.delete_agent(a.agent.id) is True
        assert await view.delete_provider(a.provider.id) is True
        assert await view.delete_session_messages(a.session.id) == 1
        assert await view.delete_session(a.session.id) is True

    @pytest.mark.asyncio
    async def test_tenant_cleanups_delete_the_tenant_s_old_records_only(
        self, store: PersistenceStore
    ) -> None:
        """cleanup_old_records/sessions delete A's old records; B's equally old ones stay."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        cutoff = BASE_TIME - _HOUR
        assert await view.cleanup_old_records(cutoff) == 1
        assert await store.get_api_call(a.old_call.id) is None
        assert await store.get_api_call(b.old_call.id) == b.old_call
        assert await view.cleanup_old_records(cutoff) == 0
        assert await view.cleanup_old_sessions(cutoff) == 1
        assert await store.get_session(a.old_session.id) is None
        assert await store.get_session(b.old_session.id) is not None
        assert await store.count_session_messages(b.old_session.id) == 1
        assert (await view.get_statistics(QueryFilter())).total_calls == 2
        assert (await store.get_statistics(QueryFilter(tenant_id=b.id))).total_calls == 3
        with pytest.raises(ValueError, match="timezone"):
            await view.cleanup_old_records(cutoff.replace(tzinfo=None))

    @pytest.mark.asyncio
    async def test_tenant_view_refuses_to_rebuild_every_tenant_s_rollups(
        self, store: PersistenceStore
    ) -> None:
        """rebuild_rollups recounts every tenant: the view refuses it with ConstraintError."""
        a, _ = await self._two_tenants(store)
        with pytest.raises(ConstraintError, match="store itself"):
            await store.for_tenant(a.id).rebuild_rollups()
        assert await store.rebuild_rollups() == 6

    @pytest.mark.asyncio
    async def test_tenant_view_writes_the_tenant_s_own_records(
        self, store: PersistenceStore
    ) -> None:
        """Every write of the tenant's own records goes through, as on the store."""
        tenant = uuid7()
        view = store.for_tenant(tenant)
        session = make_session(tenant_id=tenant)
        await view.create_session(session)
        first = make_message(session, "one")
        await view.save_message(first)
        rest = [make_message(session, "two").with_parent(first.id), make_message(session, "three")]
        await view.save_messages(rest)
        call = make_api_call(session, response_message_id=first.id)
        await view.save_api_call(call)
        await view.save_api_calls([make_api_call(session), make_api_call(session)])
        provider = make_provider(tenant_id=tenant)
        await view.save_provider(provider)
        renamed = provider.model_copy(update={"provider_name": "renamed"})
        await view.save_provider(renamed)  # replacing its own provider is no takeover
        agent = make_agent(provider)
        await view.save_agent(agent)
        await view.save_agent(agent.model_copy(update={"agent_name": "again"}))
        assert await store.get_session_messages(session.id) == [first, *rest]
        assert await store.count_records("api_calls", QueryFilter(tenant_id=tenant)) == 3
        assert await store.get_provider(provider.id) == renamed
        stored_agent = await store.get_agent(agent.id)
        assert stored_agent is not None
        assert stored_agent.agent_name == "again"
        assert await view.calls_for_messages([first.id]) == [call]

    # -- erasure -------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_tenant_view_erases_its_own_tenant_and_users_only(
        self, store: PersistenceStore
    ) -> None:
        """erase_tenant/erase_user: another tenant or its user is unknown; a shared user refused."""
        a, b = await self._two_tenants(store)
        view = store.for_tenant(a.id)
        loner = make_session(tenant_id=a.id)
        await store.create_session(loner)
        await store.save_message(make_message(loner, "mine alone"))
        b_only = make_session(tenant_id=b.id)
        await store.create_session(b_only)

        unknown_tenant = await view.erase_tenant(b.id)
        assert (unknown_tenant.tenant_id, unknown_tenant.records_touched) == (b.id, 0)
        unknown_user = await view.erase_user(b_only.user_id)
        assert (unknown_user.user_id, unknown_user.records_touched) == (b_only.user_id, 0)
        assert await store.get_session(b_only.id) == b_only
        with pytest.raises(ConstraintError, match="other tenants"):
            await view.erase_user(a.session.user_id)  # the user has B's sessions too
        assert await store.get_session(a.session.id) is not None
        with pytest.raises(ValueError, match="nil user"):
            await view.erase_user(UUID(int=0))

        counted = await view.erase_user(loner.user_id, dry_run=True)
        assert (counted.dry_run, counted.sessions_deleted, counted.messages_deleted) == (
            True,
            1,
            1,
        )
        erased = await view.erase_user(loner.user_id)
        assert (erased.sessions_deleted, erased.messages_deleted) == (1, 1)
        assert await store.get_session(loner.id) is None

        gone = await view.erase_tenant(a.id)
        assert gone.sessions_deleted == 2
        assert gone.providers_deleted == 1
        assert await store.get_session(a.session.id) is None
        assert await store.get_session(b.session.id) is not None
        assert await store.get_provider(b.provider.id) == b.provider
        assert await store.get_session_messages(b.session.id) == b.messages
