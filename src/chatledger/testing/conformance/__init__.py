"""The conformance suite every chatledger backend passes, yours included: by capability.

Subclass ``StoreConformance`` in a test module, name the subclass ``Test…``
and implement ``make_store``; pytest then runs every behaviour of the store
contract against your backend::

    from chatledger.testing import StoreConformance

    class TestMyStore(StoreConformance):
        expected_backend_name = "mine"

        async def make_store(self) -> PersistenceStore:
            return await MyStore.connect(f"mine:///{self.tmp_path}/t.db")

A backend that implements only part of the contract subclasses the classes
of what it implements: one per protocol of :mod:`chatledger.stores.base`
(``SessionConformance``, ``MessageConformance``, ``ApiCallConformance``,
``ProviderConformance``, ``AgentConformance``), ``LifecycleConformance``
for opening and closing, and for the whole store's own methods
``ValueConformance``, ``RecordConformance``, ``TenancyConformance`` and
``ErasureConformance``. A ledger-only backend::

    from chatledger.testing import ApiCallConformance, LifecycleConformance

    class TestMyLedger(LifecycleConformance, ApiCallConformance):
        async def make_store(self) -> MyLedger:
            return await MyLedger.connect(...)

Every test checks, with ``isinstance`` on the runtime-checkable protocols,
that the store implements what it uses, and is skipped, saying what is
missing, when it does not: a test that also writes sessions, say, runs only
on a store that keeps them. ``StoreConformance`` is all of them at once.

Each test gets a fresh store from ``make_store`` (``self.tmp_path`` is a
fresh temporary directory by then) and the store is closed afterwards. The
tests are marked ``@pytest.mark.asyncio`` so they run with or without
pytest-asyncio's auto mode. Expected values are computed independently in the
tests, never by chatledger's own helpers.
"""

from __future__ import annotations

from chatledger.testing.conformance.agents import AgentConformance
from chatledger.testing.conformance.api_calls import ApiCallConformance
from chatledger.testing.conformance.capability import CapabilityConformance
from chatledger.testing.conformance.erasure import ErasureConformance
from chatledger.testing.conformance.lifecycle import ClosableStore, LifecycleConformance
from chatledger.testing.conformance.messages import MessageConformance
from chatledger.testing.conformance.providers import ProviderConformance
from chatledger.testing.conformance.records import RecordConformance
from chatledger.testing.conformance.sessions import SessionConformance
from chatledger.testing.conformance.tenancy import TenancyConformance
from chatledger.testing.conformance.values import ValueConformance
from chatledger.testing.factories import (
    BASE_TIME,
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
    "CapabilityConformance",
    "ClosableStore",
    "BASE_TIME",
    "make_agent",
    "make_api_call",
    "make_message",
    "make_provider",
    "make_session",
]


class StoreConformance(
    LifecycleConformance,
    SessionConformance,
    MessageConformance,
    ApiCallConformance,
    ProviderConformance,
    AgentConformance,
    ValueConformance,
    RecordConformance,
    TenancyConformance,
    ErasureConformance,
):
    """Every behaviour of the chatledger store contract, as pytest tests.

    Subclass it as ``Test…`` and implement ``make_store``. Set
    ``expected_backend_name`` to have ``backend_name`` checked too. A store
    that implements only some of the protocols runs their tests and skips
    the others; subclass only the classes of what it implements to leave
    those out altogether.
    """
