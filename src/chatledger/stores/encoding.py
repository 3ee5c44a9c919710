"""Checks that every backend applies before a value is written.

PostgreSQL cannot store a NUL character in text or JSON, no backend can
store a string that is not valid UTF-8 (a lone surrogate), and JSON has no
NaN or Infinity (PostgreSQL refuses them, MySQL's JSON check refuses them,
SQLite and the in-memory store would keep them). Refusing all three
everywhere, before anything is written, is what makes the same input behave
the same on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from chatledger.errors import SerializationError

__all__ = ["ensure_storable_text", "storable_json"]


def _not_finite(field: str) -> SerializationError:
    return SerializationError(
        f"{field} holds NaN or Infinity, which JSON cannot hold (PostgreSQL and MySQL "
        "refuse it); chatledger refuses it on every backend. Store None or a string instead."
    )


def ensure_storable_text(value: Any, field: str) -> None:
    """Raise SerializationError if ``value`` holds text or numbers no backend stores faithfully.

    Text: a NUL or a lone surrogate, at any depth of a JSON value. Numbers:
    NaN or Infinity inside a JSON value.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _not_finite(field)
    elif isinstance(value, str):
        if "\x00" in value:
            raise SerializationError(
                f"{field} contains a NUL character (\\x00), which PostgreSQL cannot store; "
                "chatledger refuses it on every backend. Remove or replace it before saving."
            )
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise SerializationError(
                    f"{field} is not valid UTF-8 text ({exc.reason} at position {exc.start})"
                ) from exc
    elif isinstance(value, Mapping):
        for key, item in value.items():
            ensure_storable_text(key, field)
            ensure_storable_text(item, f"{field}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            ensure_storable_text(item, f"{field}[{index}]")


def storable_json(model: BaseModel, field: str) -> str:
    """``model`` as compact JSON, or SerializationError if it holds what no backend can store.

    Serialising already refuses lone surrogates, JSON spells a NUL as
    ``\\u0000``, and entities write NaN and Infinity as those bare words, so
    one cheap look at the text screens every value inside; only a hit pays for
    the exact walk that names the field (and tells a number from the same letters
    inside a string).
    """
    try:
        text = model.model_dump_json()
    except PydanticSerializationError as exc:
        raise SerializationError(f"{field} is not valid UTF-8 text: {exc}") from exc
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:
        ensure_storable_text(model.model_dump(), field)
    return text
