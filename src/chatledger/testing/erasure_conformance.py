"""Conformance: erasing a user or a tenant, and retention (issue 14)."""

from __future__ import annotations

__all__ = ["ErasureConformance"]


class ErasureConformance:
    """Erasure: a user's or tenant's sessions and messages deleted, their calls anonymised.

    Mixed into ``StoreConformance``, whose ``store`` fixture these tests use.
    """
