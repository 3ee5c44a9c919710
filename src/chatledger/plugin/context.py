"""Manual control: a conversation you record yourself, without an agent or a plugin.

:class:`PersistenceContext` is one user's conversation with one agent in a
store: it creates its session (with the tenant, which MoFA's left nil),
links each saved message to the one before it, and answers for the
session's history and usage.

MoFA takes the ids positionally in two orders, ``create(store, user, tenant,
agent)`` and ``from_session(store, user, agent, tenant, session)``; both work
here, and every id may also be passed by keyword (``user_id=``,
``tenant_id=``, ``agent_id=``, ``session_id=``), which is the safe way: a
tenant and an agent are both UUIDs, so nothing else would notice them
swapped. ``from_session`` does notice when the ids it is given match the
session's own only in another order, and refuses them.

::

    ctx = await PersistenceContext.create(
        store, user_id=user_id, tenant_id=tenant_id, agent_id=agent_id
    )
    question = await ctx.save_user_message("Where is my order?")
    answer = await ctx.save_assistant_message("It ships today.")
    stats = await ctx.get_usage_stats()
"""

from __future__ import annotations

import itertools
import uuid
from typing import Self

from chatledger.entities import (
    ChatSession,
    LLMMessage,
    MessageRole,
    QueryFilter,
    UsageStatistics,
)
from chatledger.errors import NotFoundError
from chatledger.ids import NIL_UUID, uuid7
from chatledger.stores.base import PersistenceStore

__all__ = ["PersistenceContext"]


class PersistenceContext:
    """One user's conversation with one agent, recorded by hand."""

    def __init__(
        self,
        store: PersistenceStore,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
        session_id: uuid.UUID,
        last_message_id: uuid.UUID | None = None,
    ) -> None:
        """A context on an existing session; use :meth:`create` or :meth:`from_session`.

        Its ids are in neither of MoFA's orders: pass them by keyword.
        """
        self._store = store
        self._user_id = user_id
        self._tenant_id = tenant_id
        self._agent_id = agent_id
        self._session_id = session_id
        self._last_message_id = last_message_id

    @classmethod
    async def create(
        cls,
        store: PersistenceStore,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> Self:
        """A context on a new session, created in ``store`` with the tenant.

        Positionally the ids come in MoFA's order for ``new``: user, tenant, agent.
        """
        context = cls(store, user_id, tenant_id, agent_id, uuid7())
        await context._create_session()
        return context

    @classmethod
    async def from_session(
        cls,
        store: PersistenceStore,
        user_id: uuid.UUID,
        agent_id: uuid.UUID,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
    ) -> Self:
        """A context continuing ``session_id``; its next message links after the last one.

        Positionally the ids come in MoFA's order for ``from_session``: user,
        agent, tenant, session (not :meth:`create`'s). Ids that match the
        session's own only in another order raise ``ValueError``; a session of
        another tenant raises ``NotFoundError``, as an unknown one does; other
        ids (say, another agent taking over the session) are taken as given.
        """
        session = await store.get_session(session_id)
        missing = NotFoundError(
            f"session {session_id} does not exist; PersistenceContext.create() starts one"
        )
        if session is None:
            raise missing
        _refuse_swapped_ids(session, user_id, agent_id, tenant_id)
        # Another tenant's session is missing to this one (SPEC §9): reading its history, or
        # writing into it, would cross tenants. A MoFA-made session has no tenant to cross.
        if session.tenant_id not in (tenant_id, NIL_UUID):
            raise missing
        recent = await store.get_recent_messages(session_id, 1)
        last = recent[-1].id if recent else None
        return cls(store, user_id, tenant_id, agent_id, session_id, last)

    @property
    def session_id(self) -> uuid.UUID:
        """The session being recorded."""
        return self._session_id

    @property
    def store(self) -> PersistenceStore:
        """Where the conversation is kept."""
        return self._store

    async def save_user_message(self, text: str) -> LLMMessage:
        """Save what the user said, linked after the session's last message."""
        return await self._save(MessageRole.USER, text)

    async def save_assistant_message(self, text: str) -> LLMMessage:
        """Save what the assistant said, linked after the session's last message."""
        return await self._save(MessageRole.ASSISTANT, text)

    async def get_history(self, limit: int | None = None) -> list[LLMMessage]:
        """The session's messages, oldest first; only the newest ``limit`` when given."""
        if limit is None:
            return await self._store.get_session_messages(self._session_id)
        return await self._store.get_recent_messages(self._session_id, limit)

    async def get_usage_stats(self) -> UsageStatistics:
        """Usage statistics over the session's API calls."""
        return await self._store.get_statistics(QueryFilter(session_id=self._session_id))

    async def new_session(self) -> uuid.UUID:
        """Start a new session for the same user and agent, and record into it from now on."""
        self._session_id = uuid7()
        self._last_message_id = None
        await self._create_session()
        return self._session_id

    async def _create_session(self) -> None:
        session = ChatSession.new(self._user_id, self._agent_id)
        await self._store.create_session(
            session.with_id(self._session_id).with_tenant_id(self._tenant_id)
        )

    async def _save(self, role: MessageRole, text: str) -> LLMMessage:
        message = LLMMessage.new(
            self._session_id, self._agent_id, self._user_id, self._tenant_id, role, text
        )
        if self._last_message_id is not None:
            message = message.with_parent(self._last_message_id)
        await self._store.save_message(message)
        self._last_message_id = message.id
        return message


def _refuse_swapped_ids(
    session: ChatSession, user_id: uuid.UUID, agent_id: uuid.UUID, tenant_id: uuid.UUID
) -> None:
    """Raise ValueError when the ids fit ``session`` only once put in another order."""

    def fits(user: uuid.UUID, agent: uuid.UUID, tenant: uuid.UUID) -> bool:
        # A session MoFA made has the nil tenant: any tenant fits it.
        tenant_fits = session.tenant_id in (tenant, NIL_UUID)
        return user == session.user_id and agent == session.agent_id and tenant_fits

    given = (user_id, agent_id, tenant_id)
    if fits(*given) or not any(fits(*order) for order in itertools.permutations(given)):
        return
    raise ValueError(
        f"user_id, agent_id and tenant_id look swapped: session {session.id} has "
        f"user_id={session.user_id}, agent_id={session.agent_id}, "
        f"tenant_id={session.tenant_id}, but was given user_id={user_id}, "
        f"agent_id={agent_id}, tenant_id={tenant_id}; pass the ids by keyword "
        "(from_session(store, user_id=..., agent_id=..., tenant_id=..., session_id=...))"
    )
