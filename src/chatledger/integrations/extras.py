"""Importing a framework an integration needs, or saying which ``pip install`` brings it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, integration: str) -> ModuleType:
    """``module`` imported, or an ``ImportError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{integration} needs {module.split('.')[0]}: pip install 'chatledger[{extra}]'"
        ) from exc
