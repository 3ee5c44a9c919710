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

from enum import Enum
from typing import Any

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


# --- how each backend words a failure -------------------------------------------------
# Used by the backends (not exported): every store says the same thing, in the same
# words, for the same failure, whichever database or driver reported it.


class Failure(Enum):
    """What went wrong in a store, whichever backend or driver reported it."""

    MISSING_REFERENCE = "missing reference"
    ALREADY_USED = "already used"
    CONSTRAINT = "constraint"
    BAD_VALUE = "bad value"
    LOGIN_REFUSED = "login refused"
    NO_DATABASE = "no database"
    CANNOT_OPEN = "cannot open"
    NOT_A_DATABASE = "not a database"
    LOST = "connection lost"
    UNREACHABLE = "unreachable"
    NO_SLOT = "no free connection"
    LOCKED = "locked"
    QUERY = "query failed"


# What each failure tells the user: what happened, then what to check. ``{backend}`` is
# the store (its name, or where a statement ran), ``{text}`` the driver's own words or
# the store's details; the server failures name where the server is (never a password).
_FAILURES: dict[Failure, tuple[type[PersistenceError], str]] = {
    Failure.MISSING_REFERENCE: (
        ConstraintError,
        "{backend}: a record it refers to does not exist (a message's session or parent, "
        "an agent's provider): save that first ({text})",
    ),
    Failure.ALREADY_USED: (
        ConstraintError,
        "{backend}: an id or unique value is already used ({text})",
    ),
    Failure.CONSTRAINT: (ConstraintError, "{backend}: {text}"),
    Failure.BAD_VALUE: (SerializationError, "{backend}: a value cannot be stored: {text}"),
    Failure.LOGIN_REFUSED: (
        StoreConnectionError,
        "{backend} at {address} refused the login: {text}; check the user name and password "
        "in the URL, and that the account may connect from this host",
    ),
    Failure.NO_DATABASE: (
        StoreConnectionError,
        "{backend} at {host}:{port} has no database {database!r}; create it "
        "(CREATE DATABASE {database}) or fix the URL",
    ),
    Failure.CANNOT_OPEN: (
        StoreConnectionError,
        "{backend}: {text}; check the path and its permissions",
    ),
    Failure.NOT_A_DATABASE: (
        StoreConnectionError,
        "{backend}: {text}; the file is not an SQLite database",
    ),
    Failure.LOST: (
        StoreConnectionError,
        "the connection to {backend} at {address} was lost ({text}); the server may have "
        "restarted or closed it; retry, and check the server if it keeps happening",
    ),
    Failure.UNREACHABLE: (
        StoreConnectionError,
        "cannot reach {backend} at {host}:{port}: {text}; check that the server is running "
        "and that the host and port are right",
    ),
    Failure.NO_SLOT: (
        StoreConnectionError,
        "{backend} at {address} has no free connection slot ({text}); lower max_size or "
        "raise the server's max_connections",
    ),
    Failure.LOCKED: (
        QueryError,
        "{backend}: {text}; another process held the write lock longer than the busy "
        "timeout (raise busy_timeout, or keep transactions short)",
    ),
    Failure.QUERY: (QueryError, "{backend}: {text}"),
}


def failure_error(failure: Failure, backend: str, text: str, **where: Any) -> PersistenceError:
    """The chatledger error for ``failure``, worded from the one table above.

    ``where`` names a server's ``address``, ``host``, ``port`` and ``database``
    for the failures that say where it is.
    """
    kind, template = _FAILURES[failure]
    return kind(template.format(backend=backend, text=text, **where))
