"""Helpers to test code and backends built on chatledger.

``StoreConformance`` is the suite every chatledger backend passes: subclass
it as ``Test…`` and implement ``make_store`` to run it against your own
backend. A backend that implements part of the store contract subclasses
the classes of what it implements instead (a ledger-only backend:
``LifecycleConformance`` and ``ApiCallConformance``); the tests of anything
it does not implement are skipped. See :mod:`chatledger.testing.conformance`.
The ``make_*`` factories build valid records for your own tests.
Needs ``pytest`` and ``pytest-asyncio``.
"""

from __future__ import annotations

from chatledger.testing.conformance import (
    BASE_TIME,
    AgentConformance,
    ApiCallConformance,
    ClosableStore,
    ErasureConformance,
    LifecycleConformance,
    MessageConformance,
    ProviderConformance,
    RecordConformance,
    SessionConformance,
    StoreConformance,
    TenancyConformance,
    ValueConformance,
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)

__all__ = [
    "StoreConformance",
    "LifecycleConformance",
    "SessionConformance",
    "MessageConformance",
    "ApiCallConformance",
    "ProviderConformance",
    "AgentConformance",
    "ValueConformance",
    "RecordConformance",
    "TenancyConformance",
    "ErasureConformance",
    "ClosableStore",
    "BASE_TIME",
    "make_agent",
    "make_api_call",
    "make_message",
    "make_provider",
    "make_session",
]
