"""Conformance of ``ProviderStore``: LLM provider accounts, one name per tenant."""

from __future__ import annotations

from typing import ClassVar

import pytest

from chatledger.errors import ConstraintError
from chatledger.ids import uuid7
from chatledger.stores.base import ProviderStore
from chatledger.testing.conformance.capability import CapabilityConformance
from chatledger.testing.factories import make_provider

__all__ = ["ProviderConformance"]


class ProviderConformance(CapabilityConformance):
    """The ``ProviderStore`` protocol: providers saved, replaced, looked up by name and tenant.

    Subclass it (with ``LifecycleConformance``) for a backend that keeps
    provider accounts; ``AgentConformance`` covers agents and what deleting
    a provider does to them.
    """

    protocols: ClassVar[tuple[type, ...]] = (ProviderStore,)

    @pytest.mark.asyncio
    async def test_provider_round_trips(self, store: ProviderStore) -> None:
        """save_provider then get_provider returns an equal provider, API key included."""
        provider = make_provider(api_key="sk-secret-ünïcode-🔑")
        await store.save_provider(provider)
        got = await store.get_provider(provider.id)
        assert got == provider
        assert got is not None
        assert got.api_key.get_secret_value() == "sk-secret-ünïcode-🔑"
        assert "sk-secret" not in repr(got)
        assert await store.get_provider(uuid7()) is None

    @pytest.mark.asyncio
    async def test_save_provider_replaces_by_id(self, store: ProviderStore) -> None:
        """Saving a provider again with the same id replaces it."""
        provider = make_provider(name="first")
        await store.save_provider(provider)
        renamed = provider._replace(provider_name="second", enabled=False)
        await store.save_provider(renamed)
        assert await store.get_provider(provider.id) == renamed
        assert await store.list_providers(provider.tenant_id) == [renamed]

    @pytest.mark.asyncio
    async def test_provider_name_is_unique_per_tenant(self, store: ProviderStore) -> None:
        """A second provider with a tenant's existing name raises ConstraintError."""
        tenant = uuid7()
        first = make_provider(tenant_id=tenant, name="openai")
        await store.save_provider(first)
        clash = make_provider(tenant_id=tenant, name="openai")
        with pytest.raises(ConstraintError):
            await store.save_provider(clash)
        assert await store.get_provider(clash.id) is None
        elsewhere = make_provider(name="openai")
        await store.save_provider(elsewhere)
        assert await store.get_provider(elsewhere.id) == elsewhere

    @pytest.mark.asyncio
    async def test_provider_lookups_by_name_and_tenant(self, store: ProviderStore) -> None:
        """get_provider_by_name, list_providers and get_enabled_providers stay in one tenant."""
        tenant = uuid7()
        zeta = make_provider(tenant_id=tenant, name="zeta")
        alpha = make_provider(tenant_id=tenant, name="alpha", enabled=False)
        mid = make_provider(tenant_id=tenant, name="mid")
        foreign = make_provider(name="alpha")
        for provider in (zeta, alpha, mid, foreign):
            await store.save_provider(provider)
        assert await store.get_provider_by_name(tenant, "alpha") == alpha
        assert await store.get_provider_by_name(foreign.tenant_id, "alpha") == foreign
        assert await store.get_provider_by_name(tenant, "missing") is None
        assert await store.list_providers(tenant) == [alpha, mid, zeta]
        assert await store.get_enabled_providers(tenant) == [mid, zeta]
        assert await store.list_providers(uuid7()) == []
