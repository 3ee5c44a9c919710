"""What every conformance class shares: ``make_store``, the ``store`` fixture, capability checks.

A conformance class names in ``protocols`` the store protocols its tests
use; a test that needs more says so with :func:`requires`. The ``store``
fixture checks the store ``make_store`` returns against both (``isinstance``
on the runtime-checkable protocols of :mod:`chatledger.stores.base`) and
skips the test, saying what is missing, when the store does not implement
them: a backend that keeps only the ledger runs the ledger's tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import pytest_asyncio

from chatledger.entities import ChatSession
from chatledger.stores.base import SessionStore
from chatledger.testing.factories import make_session

__all__ = ["CapabilityConformance", "requires"]

_F = TypeVar("_F", bound=Callable[..., Any])
_REQUIRES = "__conformance_requires__"


def requires(*protocols: type) -> Callable[[_F], _F]:
    """Mark a test as needing ``protocols`` besides those of its class; skipped without them."""

    def mark(test: _F) -> _F:
        setattr(test, _REQUIRES, (*getattr(test, _REQUIRES, ()), *protocols))
        return test

    return mark


def _needed(cls: type, name: str) -> tuple[type, ...]:
    """The protocols the test ``name`` needs: those of the class defining it, then its own."""
    for defining in cls.__mro__:
        if name in vars(defining):
            own: tuple[type, ...] = vars(defining).get("protocols", ())
            return (*own, *getattr(vars(defining)[name], _REQUIRES, ()))
    return ()


class CapabilityConformance:
    """The base of every conformance class: subclass one (or several) as ``Test…``.

    Implement ``make_store`` to return a new, empty, connected store. Each
    test gets its own from the ``store`` fixture (``self.tmp_path`` is a fresh
    temporary directory by then), closed afterwards; a test whose protocols
    the store does not implement is skipped. Set ``expected_backend_name``
    to have ``backend_name`` checked too.
    """

    protocols: ClassVar[tuple[type, ...]] = ()
    """The store protocols every test of the class uses (each class sets its own)."""

    expected_backend_name: ClassVar[str | None] = None
    tmp_path: Path

    async def make_store(self) -> object:
        """Return a new, empty, connected store of the backend under test."""
        raise NotImplementedError("implement make_store() in your conformance subclass")

    @pytest_asyncio.fixture
    async def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
        """A fresh store from ``make_store``, closed after the test; skips what it cannot run."""
        self.tmp_path = tmp_path
        made = await self.make_store()
        try:
            needed = _needed(type(self), request.function.__name__)
            missing = dict.fromkeys(p.__name__ for p in needed if not isinstance(made, p))
            if missing:
                pytest.skip(f"{type(made).__name__} does not implement {' and '.join(missing)}")
            yield made
        finally:
            close = getattr(made, "close", None)
            if close is not None:
                await close()

    async def _session(self, store: SessionStore, **kwargs: Any) -> ChatSession:
        session = make_session(**kwargs)
        await store.create_session(session)
        return session
