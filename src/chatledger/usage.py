"""Usage accounting that can be trusted: statuses from errors, speeds, token estimates.

The rules, in one place so every recorder applies them the same way:

- an error's status: a timeout is ``timeout``, HTTP 429 or a rate-limit error
  is ``rate_limited``, cancellation (or a stream its reader stopped) is
  ``cancelled``, anything else
  ``failed``; its code is the provider's own code, else the HTTP status;
- ``tokens_per_second`` is completion tokens over the time from the first
  token to the end for a streamed call, over the whole latency otherwise
  (0.0 for no token), and none for a failed call (defined beside the
  entities, whose ``LLMApiCall.success`` applies it too);
- when the provider reports no usage, tokens are counted with ``tiktoken``
  if it is installed, else estimated at one token per four characters
  (rounded up), and the record says so.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
from functools import cache
from typing import Any

from chatledger.entities import ApiCallStatus, tokens_per_second

__all__ = [
    "CHARS_PER_TOKEN",
    "count_tokens",
    "error_code",
    "status_for_error",
    "tokens_per_second",
]

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
"""The estimate's ratio when no tokenizer is installed (OpenAI's rule of thumb for English)."""

_RATE_LIMITED = 429
_TIMEOUT_STATUSES = {408, 504}


def _http_status(error: BaseException) -> int | None:
    """The HTTP status an SDK error carries (``status_code``, or ``response.status_code``)."""
    for holder in (error, getattr(error, "response", None)):
        status = getattr(holder, "status_code", None) if holder is not None else None
        if isinstance(status, int):
            return status
    return None


def _named(error: BaseException, *words: str) -> bool:
    """Whether any class in ``error``'s hierarchy has one of ``words`` in its name."""
    names = [cls.__name__.lower() for cls in type(error).__mro__]
    return any(word in name for name in names for word in words)


def status_for_error(error: BaseException) -> ApiCallStatus:
    """The ledger status of a call that ended with ``error``."""
    # GeneratorExit: the caller stopped reading a streamed reply
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return ApiCallStatus.CANCELLED
    status = _http_status(error)
    if isinstance(error, TimeoutError) or status in _TIMEOUT_STATUSES or _named(error, "timeout"):
        return ApiCallStatus.TIMEOUT
    if status == _RATE_LIMITED or _named(error, "ratelimit", "rate_limit"):
        return ApiCallStatus.RATE_LIMITED
    return ApiCallStatus.FAILED


def error_code(error: BaseException) -> str | None:
    """The provider's error code (``rate_limit_exceeded``), else the HTTP status, else None."""
    code = getattr(error, "code", None)
    if isinstance(code, str | int) and not isinstance(code, bool) and str(code):
        return str(code)[:50]
    status = _http_status(error)
    return None if status is None else str(status)


@cache
def _encoding_for(model: str) -> Any:
    """tiktoken's encoding for ``model`` (its newest one when the model is unknown), or None."""
    try:
        tiktoken = importlib.import_module("tiktoken")  # optional, and untyped
    except ImportError:
        return None
    try:
        try:
            return tiktoken.encoding_for_model(model)
        except KeyError:
            return tiktoken.get_encoding("o200k_base")
    except Exception:  # a tokenizer that cannot load (offline, say) must not fail a chat
        logger.warning("tiktoken could not load an encoding; estimating tokens", exc_info=True)
        return None


def count_tokens(text: str, model: str) -> tuple[int, str]:
    """Tokens in ``text`` for ``model``, and how they were counted.

    How: ``tiktoken:<encoding>`` with a real tokenizer, else ``chars/4``.
    Either way the count is the caller's, not the provider's: records built
    from it say ``"estimated": true``.
    """
    encoding = _encoding_for(model)
    if encoding is not None:
        return len(encoding.encode(text)), f"tiktoken:{encoding.name}"
    count = math.ceil(len(text) / CHARS_PER_TOKEN)
    return count, f"chars/{CHARS_PER_TOKEN}"
