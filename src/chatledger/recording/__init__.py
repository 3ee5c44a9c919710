"""Recording from any framework: the :class:`Recorder`, its spool, and :func:`scope`.

Every integration, the persistence plugin and chatledger's own agent write
through one :class:`Recorder`: records are made durable in a local spool
before the hook returns, then shipped to the store in batches. The recorder
and the spools are imported on first use (PEP 562); :func:`scope` and
:func:`id_for_key` are light and imported with the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatledger import _lazy

# Light, and imported eagerly: the submodule ``scope`` is shadowed by the function.
from chatledger.recording.scope import KEY_NAMESPACE, Scope, current_scope, id_for_key, scope

if TYPE_CHECKING:
    from chatledger.recording.recorder import (
        CLOSE_TIMEOUT,
        CallFields,
        CallUsage,
        Recorder,
        spool_directory_for,
    )
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

_LAZY = _lazy.table(
    __name__,
    {
        "chatledger.recording.recorder": (
            "CLOSE_TIMEOUT",
            "CallFields",
            "CallUsage",
            "Recorder",
            "spool_directory_for",
        ),
        "chatledger.recording.spool": (
            "DEFAULT_SPOOL_LIMIT",
            "DeadLetter",
            "FileSpool",
            "MemorySpool",
            "Spool",
            "SpoolError",
            "default_spool_root",
        ),
    },
)

_lazy.attach(globals(), _LAZY)
