"""Helpers to test code and backends built on chatledger.

``StoreConformance`` is the suite every chatledger backend passes: subclass
it as ``Test…`` and implement ``make_store`` to run it against your own
backend. The ``make_*`` factories build valid records for your own tests.
Needs ``pytest`` and ``pytest-asyncio``.
"""

from __future__ import annotations

from chatledger.testing.conformance import (
    BASE_TIME,
    StoreConformance,
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)

__all__ = [
    "BASE_TIME",
    "StoreConformance",
    "make_agent",
    "make_api_call",
    "make_message",
    "make_provider",
    "make_session",
]
