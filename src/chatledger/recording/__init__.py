"""Recording from any framework: the :class:`Recorder`, its spool, and :func:`scope`.

Every integration, the persistence plugin and chatledger's own agent write
through one :class:`Recorder`: records are made durable in a local spool
before the hook returns, then shipped to the store in batches.
"""

from __future__ import annotations

from chatledger.recording.recorder import (
    CLOSE_TIMEOUT,
    CallFields,
    CallUsage,
    Recorder,
    spool_directory_for,
)
from chatledger.recording.scope import KEY_NAMESPACE, Scope, current_scope, id_for_key, scope
from chatledger.recording.spool import (
    DEFAULT_SPOOL_LIMIT,
    DeadLetter,
    FileSpool,
    MemorySpool,
    Spool,
    SpoolError,
    default_spool_root,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "CallFields",
    "CallUsage",
    "DEFAULT_SPOOL_LIMIT",
    "DeadLetter",
    "FileSpool",
    "KEY_NAMESPACE",
    "MemorySpool",
    "Recorder",
    "Scope",
    "Spool",
    "SpoolError",
    "current_scope",
    "default_spool_root",
    "id_for_key",
    "scope",
    "spool_directory_for",
]
