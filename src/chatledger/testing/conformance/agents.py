"""Conformance of ``AgentStore``: agent definitions, each served by a provider."""

from __future__ import annotations

from typing import ClassVar, Protocol

import pytest

from chatledger.entities import AgentConfig
from chatledger.errors import ConstraintError, SerializationError
from chatledger.ids import uuid7
from chatledger.stores.base import AgentStore, ProviderStore
from chatledger.testing.conformance.capability import CapabilityConformance
from chatledger.testing.factories import make_agent, make_provider

__all__ = ["AgentConformance"]


class AgentsAndProviders(AgentStore, ProviderStore, Protocol):
    """Agents and the providers serving them: what every test of ``AgentConformance`` uses."""


class AgentConformance(CapabilityConformance):
    """The ``AgentStore`` protocol, over a ``ProviderStore``: an agent's provider must exist.

    Subclass it (with ``LifecycleConformance`` and ``ProviderConformance``)
    for a backend that keeps agents: every test needs both protocols.
    """

    protocols: ClassVar[tuple[type, ...]] = (AgentStore, ProviderStore)

    @pytest.mark.asyncio
    async def test_agent_round_trips(self, store: AgentsAndProviders) -> None:
        """save_agent then get_agent returns an equal agent, JSON fields included."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider, code="writer")
        await store.save_agent(agent)
        assert await store.get_agent(agent.id) == agent
        assert await store.get_agent(uuid7()) is None
        bare = agent._replace(
            id=uuid7(),
            agent_code="bare",
            context_limit=None,
            custom_params=None,
            max_completion_tokens=None,
            response_format=None,
            temperature=None,
            stream=None,
            thinking=None,
        )
        await store.save_agent(bare)
        assert await store.get_agent(bare.id) == bare

    @pytest.mark.asyncio
    async def test_save_agent_replaces_by_id(self, store: AgentsAndProviders) -> None:
        """Saving an agent again with the same id replaces it."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider, code="a1")
        await store.save_agent(agent)
        changed = agent._replace(agent_name="Renamed", agent_code="a2", agent_status=False)
        await store.save_agent(changed)
        assert await store.get_agent(agent.id) == changed
        assert await store.get_agent_by_code("a1") is None

    @pytest.mark.asyncio
    async def test_agent_needs_an_existing_provider(self, store: AgentsAndProviders) -> None:
        """Saving an agent whose provider does not exist raises ConstraintError."""
        agent = make_agent(make_provider())
        with pytest.raises(ConstraintError):
            await store.save_agent(agent)
        assert await store.get_agent(agent.id) is None

    @pytest.mark.asyncio
    async def test_agent_code_is_unique(self, store: AgentsAndProviders) -> None:
        """A second agent with an existing code raises ConstraintError, even in another tenant."""
        provider = make_provider()
        foreign = make_provider()
        await store.save_provider(provider)
        await store.save_provider(foreign)
        await store.save_agent(make_agent(provider, code="shared"))
        clash = make_agent(foreign, code="shared")
        with pytest.raises(ConstraintError):
            await store.save_agent(clash)
        assert await store.get_agent(clash.id) is None

    @pytest.mark.asyncio
    async def test_agent_lookups(self, store: AgentsAndProviders) -> None:
        """Agents are found by code, by code and tenant, and listed by order then code."""
        provider = make_provider()
        tenant = provider.tenant_id
        await store.save_provider(provider)
        b2 = make_agent(provider, code="b", order=2)
        a2 = make_agent(provider, code="a", order=2, active=False)
        c1 = make_agent(provider, code="c", order=1)
        foreign_provider = make_provider()
        await store.save_provider(foreign_provider)
        foreign = make_agent(foreign_provider, code="z", order=0)
        for agent in (b2, a2, c1, foreign):
            await store.save_agent(agent)
        assert await store.get_agent_by_code("a") == a2
        assert await store.get_agent_by_code("missing") is None
        assert await store.get_agent_by_code_and_tenant(tenant, "b") == b2
        assert await store.get_agent_by_code_and_tenant(tenant, "z") is None
        assert await store.list_agents(tenant) == [c1, a2, b2]
        assert await store.get_active_agents(tenant) == [c1, b2]
        assert await store.list_agents(uuid7()) == []

    @pytest.mark.asyncio
    async def test_agent_with_provider_lookups(self, store: AgentsAndProviders) -> None:
        """The *_with_provider lookups pair an agent with its provider, or return None."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider, code="paired")
        await store.save_agent(agent)
        expected = AgentConfig(provider=provider, agent=agent)
        assert await store.get_agent_with_provider(agent.id) == expected
        assert await store.get_agent_by_code_with_provider("paired") == expected
        assert (
            await store.get_agent_by_code_and_tenant_with_provider(provider.tenant_id, "paired")
            == expected
        )
        assert await store.get_agent_with_provider(uuid7()) is None
        assert await store.get_agent_by_code_with_provider("nope") is None
        assert await store.get_agent_by_code_and_tenant_with_provider(uuid7(), "paired") is None

    @pytest.mark.asyncio
    async def test_delete_agent(self, store: AgentsAndProviders) -> None:
        """delete_agent removes one agent (True), then reports False; its provider stays."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider)
        await store.save_agent(agent)
        assert await store.delete_agent(agent.id) is True
        assert await store.delete_agent(agent.id) is False
        assert await store.get_agent(agent.id) is None
        assert await store.get_provider(provider.id) == provider

    @pytest.mark.asyncio
    async def test_delete_provider_deletes_its_agents(self, store: AgentsAndProviders) -> None:
        """delete_provider removes the provider and its agents (True), then reports False."""
        provider = make_provider()
        other = make_provider(tenant_id=provider.tenant_id, name="other")
        await store.save_provider(provider)
        await store.save_provider(other)
        doomed = make_agent(provider)
        kept = make_agent(other)
        await store.save_agent(doomed)
        await store.save_agent(kept)
        assert await store.delete_provider(provider.id) is True
        assert await store.delete_provider(provider.id) is False
        assert await store.get_provider(provider.id) is None
        assert await store.get_agent(doomed.id) is None
        assert await store.get_agent(kept.id) == kept

    @pytest.mark.asyncio
    async def test_nul_in_provider_or_agent_raises_serialization_error(
        self, store: AgentsAndProviders
    ) -> None:
        """NUL in a provider's or agent's text raises SerializationError; nothing is stored."""
        bad_provider = make_provider(name="bad\x00name")
        with pytest.raises(SerializationError):
            await store.save_provider(bad_provider)
        assert await store.get_provider(bad_provider.id) is None
        provider = make_provider()
        await store.save_provider(provider)
        bad_agent = make_agent(provider)._replace(system_prompt="be \x00 nice")
        with pytest.raises(SerializationError):
            await store.save_agent(bad_agent)
        assert await store.get_agent(bad_agent.id) is None
