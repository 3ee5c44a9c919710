"""PersistenceContext on every backend: sessions with their tenant, linked messages, usage."""

from __future__ import annotations

from typing import Any

import pytest

from chatledger.entities import ChatSession, LLMApiCall, MessageRole
from chatledger.errors import NotFoundError
from chatledger.ids import uuid7
from chatledger.plugin.context import PersistenceContext
from chatledger.stores.base import PersistenceStore


async def test_a_conversation_recorded_by_hand(any_store: PersistenceStore) -> None:
    """create() makes the session with its tenant; messages link one after another."""
    user, tenant, agent = uuid7(), uuid7(), uuid7()
    ctx = await PersistenceContext.create(any_store, user, tenant, agent)
    assert ctx.store is any_store
    session = await any_store.get_session(ctx.session_id)
    assert session is not None
    assert (session.user_id, session.agent_id, session.tenant_id) == (user, agent, tenant)
    question = await ctx.save_user_message("Where is my order?")
    answer = await ctx.save_assistant_message("It ships today.")
    assert question.parent_message_id is None
    assert answer.parent_message_id == question.id
    assert [m.role for m in await ctx.get_history()] == [MessageRole.USER, MessageRole.ASSISTANT]
    assert await ctx.get_history(limit=1) == [answer]

    await any_store.save_api_call(
        LLMApiCall.success(
            ctx.session_id, agent, user, tenant, question.id, answer.id, "gpt-4o-mini",
            42, 7, question.create_time, answer.create_time,
        )
    )  # fmt: skip
    stats = await ctx.get_usage_stats()
    assert (stats.total_calls, stats.total_tokens) == (1, 49)


async def test_continuing_and_starting_sessions(any_store: PersistenceStore) -> None:
    """from_session links after the last message; new_session starts afresh."""
    user, tenant, agent = uuid7(), uuid7(), uuid7()
    first = await PersistenceContext.create(any_store, user, tenant, agent)
    last = await first.save_user_message("one")
    again = await PersistenceContext.from_session(any_store, user, agent, tenant, first.session_id)
    assert (await again.save_assistant_message("two")).parent_message_id == last.id
    old = again.session_id
    new = await again.new_session()
    assert new != old
    assert again.session_id == new
    assert (await again.save_user_message("fresh")).parent_message_id is None
    stored = await any_store.get_session(new)
    assert stored is not None
    assert stored.tenant_id == tenant
    with pytest.raises(NotFoundError, match="does not exist"):
        await PersistenceContext.from_session(any_store, user, agent, tenant, uuid7())


async def test_ids_by_keyword_in_any_order(any_store: PersistenceStore) -> None:
    """create, from_session and the constructor take every id by name, in any order."""
    user, tenant, agent = uuid7(), uuid7(), uuid7()
    created = await PersistenceContext.create(
        agent_id=agent, tenant_id=tenant, store=any_store, user_id=user
    )
    session = await any_store.get_session(created.session_id)
    assert session is not None
    assert (session.user_id, session.agent_id, session.tenant_id) == (user, agent, tenant)

    continued = await PersistenceContext.from_session(
        any_store, session_id=created.session_id, tenant_id=tenant, agent_id=agent, user_id=user
    )
    built = PersistenceContext(
        session_id=created.session_id, agent_id=agent, store=any_store, tenant_id=tenant,
        user_id=user,
    )  # fmt: skip
    for context in (continued, built):
        message = await context.save_user_message("hello")
        ids = (message.user_id, message.agent_id, message.tenant_id, message.chat_session_id)
        assert ids == (user, agent, tenant, created.session_id)


@pytest.mark.parametrize(
    "order",
    [
        # create()'s order (user, tenant, agent) given to from_session (user, agent, tenant)
        lambda user, agent, tenant: (user, tenant, agent),
        lambda user, agent, tenant: (agent, user, tenant),
        lambda user, agent, tenant: (tenant, agent, user),
    ],
)
async def test_from_session_refuses_swapped_ids(any_store: PersistenceStore, order: Any) -> None:
    """Ids that match the session only in another order are refused, naming the session's own."""
    user, tenant, agent = uuid7(), uuid7(), uuid7()
    created = await PersistenceContext.create(any_store, user, tenant, agent)
    with pytest.raises(ValueError, match=f"swapped.*agent_id={agent}.*keyword"):
        await PersistenceContext.from_session(
            any_store, *order(user, agent, tenant), created.session_id
        )
    assert await any_store.count_session_messages(created.session_id) == 0


async def test_from_session_refuses_swaps_on_a_session_without_tenant(
    any_store: PersistenceStore,
) -> None:
    """A MoFA-made session has the nil tenant; an agent and tenant swapped are still caught."""
    user, tenant, agent = uuid7(), uuid7(), uuid7()
    session = ChatSession.new(user, agent)
    await any_store.create_session(session)
    with pytest.raises(ValueError, match="swapped"):
        await PersistenceContext.from_session(any_store, user, tenant, agent, session.id)
    context = await PersistenceContext.from_session(any_store, user, agent, tenant, session.id)
    assert (await context.save_user_message("hi")).tenant_id == tenant


async def test_from_session_lets_another_agent_continue_a_session(
    any_store: PersistenceStore,
) -> None:
    """Ids that differ from the session's but are no reordering of them are the caller's choice."""
    user, tenant, agent, other_agent = uuid7(), uuid7(), uuid7(), uuid7()
    created = await PersistenceContext.create(any_store, user, tenant, agent)
    handoff = await PersistenceContext.from_session(
        any_store, user_id=user, agent_id=other_agent, tenant_id=tenant,
        session_id=created.session_id,
    )  # fmt: skip
    assert (await handoff.save_user_message("over to you")).agent_id == other_agent


async def test_from_session_treats_another_tenant_s_session_as_missing(
    any_store: PersistenceStore,
) -> None:
    """Tenant A continuing B's session gets NotFoundError: B's history is not read, nor written."""
    user, agent, tenant_a, tenant_b = uuid7(), uuid7(), uuid7(), uuid7()
    theirs = await PersistenceContext.create(any_store, user, tenant_b, agent)
    await theirs.save_user_message("B's private question")
    for ids in (
        {"user_id": user, "agent_id": agent, "tenant_id": tenant_a},  # B's own user and agent
        {"user_id": uuid7(), "agent_id": uuid7(), "tenant_id": tenant_a},
    ):
        with pytest.raises(NotFoundError, match="does not exist"):
            await PersistenceContext.from_session(any_store, session_id=theirs.session_id, **ids)
        with pytest.raises(NotFoundError, match="does not exist"):  # MoFA's order too
            await PersistenceContext.from_session(
                any_store, ids["user_id"], ids["agent_id"], ids["tenant_id"], theirs.session_id
            )
    assert await any_store.count_session_messages(theirs.session_id) == 1
    # Through tenant A's view of the store, B's session is just as missing.
    with pytest.raises(NotFoundError, match="does not exist"):
        await PersistenceContext.from_session(
            any_store.for_tenant(tenant_a), user, agent, tenant_a, theirs.session_id
        )
    continued = await PersistenceContext.from_session(
        any_store.for_tenant(tenant_b), user, agent, tenant_b, theirs.session_id
    )
    assert [m.content.text for m in await continued.get_history()] == ["B's private question"]
