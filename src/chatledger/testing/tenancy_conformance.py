"""Conformance: one store seen by one tenant through ``store.for_tenant`` (SPEC §9)."""

from __future__ import annotations

__all__ = ["TenancyConformance"]


class TenancyConformance:
    """Tenant-scoped stores: reads filtered, other tenants' writes refused, their ids missing.

    Mixed into ``StoreConformance``, whose ``store`` fixture these tests use.
    """
