"""PersistenceContext on every backend: sessions with their tenant, linked messages, usage."""

from __future__ import annotations

import pytest

from chatledger.entities import LLMApiCall, MessageRole
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
