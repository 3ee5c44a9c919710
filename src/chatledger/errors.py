"""Errors raised by chatledger.

Every failure that crosses the public API is one of these; driver exceptions
are translated at the store boundary with ``raise ... from exc`` so the cause
stays inspectable without leaking driver types to callers::

    PersistenceError                 anything chatledger could not do
    ├── StoreConnectionError         cannot reach or open the database
    ├── QueryError                   the database refused or failed a statement
    ├── SerializationError           a value cannot be stored or read back faithfully
    ├── NotFoundError                the record an update names does not exist
    └── ConstraintError              an id is reused or a referenced record is missing

Bad input to an entity is refused earlier, by pydantic's ``ValidationError``,
which names the field and the offending value.

Messages say what happened and what to check; they never carry a password or
an API key.
"""

from __future__ import annotations

__all__ = [
    "ConstraintError",
    "NotFoundError",
    "PersistenceError",
    "QueryError",
    "SerializationError",
    "StoreConnectionError",
]


class PersistenceError(Exception):
    """Base class of every error chatledger raises on purpose."""


class StoreConnectionError(PersistenceError):
    """The database cannot be reached, opened or authenticated against."""


class QueryError(PersistenceError):
    """The database refused or failed a statement."""


class SerializationError(PersistenceError):
    """A value cannot be stored or read back faithfully."""


class NotFoundError(PersistenceError):
    """The record an operation needs does not exist."""


class ConstraintError(PersistenceError):
    """An id is reused, or a record references one that does not exist."""
