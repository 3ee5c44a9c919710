"""Usage accounting: an error's status and code, speed, and token counts without usage."""

from __future__ import annotations

import asyncio
import sys

import httpx2
import openai
import pytest

from chatledger import usage
from chatledger.entities import ApiCallStatus
from chatledger.usage import count_tokens, error_code, status_for_error, tokens_per_second


def _response(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1/v1/chat"))


class _CodedError(Exception):
    def __init__(self, code: object) -> None:
        super().__init__("provider error")
        self.code = code


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (TimeoutError(), ApiCallStatus.TIMEOUT, None),
        (asyncio.CancelledError(), ApiCallStatus.CANCELLED, None),
        (RuntimeError("boom"), ApiCallStatus.FAILED, None),
        (_CodedError("context_length_exceeded"), ApiCallStatus.FAILED, "context_length_exceeded"),
        (_CodedError(True), ApiCallStatus.FAILED, None),
    ],
)
def test_status_and_code_of_plain_errors(
    error: BaseException, status: ApiCallStatus, code: str | None
) -> None:
    """Timeouts, cancellation and everything else; a boolean is no error code."""
    assert status_for_error(error) is status
    assert error_code(error) == code


def test_status_and_code_of_openai_sdk_errors() -> None:
    """The official SDK's errors: 429 is rate-limited, a timeout is a timeout, 500 failed."""
    limited = openai.RateLimitError(
        "slow down", response=_response(429), body={"code": "rate_limit_exceeded"}
    )
    assert status_for_error(limited) is ApiCallStatus.RATE_LIMITED
    assert error_code(limited) == "rate_limit_exceeded"
    timeout = openai.APITimeoutError(request=httpx2.Request("POST", "http://127.0.0.1"))
    assert status_for_error(timeout) is ApiCallStatus.TIMEOUT
    broken = openai.InternalServerError("oops", response=_response(500), body=None)
    assert status_for_error(broken) is ApiCallStatus.FAILED
    assert error_code(broken) == "500"


def test_a_bare_429_is_rate_limited() -> None:
    """Any error carrying HTTP 429, whatever its class, is rate-limited."""
    error = httpx2.HTTPStatusError("429", request=_response(429).request, response=_response(429))
    assert status_for_error(error) is ApiCallStatus.RATE_LIMITED
    assert error_code(error) == "429"


@pytest.mark.parametrize(
    ("completion", "latency", "first_token", "expected"),
    [
        (100, 2000, None, 50.0),  # not streamed: over the whole latency
        (100, 2000, 1000, 100.0),  # streamed: from the first token to the end
        (0, 2000, None, 0.0),  # no token in two seconds: MoFA's success() and the SPEC
        (100, None, None, None),
        (100, 500, 500, None),  # no generating time to divide by
        (7, 3, None, 2333.3333333333335),
    ],
)
def test_tokens_per_second(
    completion: int, latency: int | None, first_token: int | None, expected: float | None
) -> None:
    """Completion tokens per second, streamed calls timed from their first token."""
    assert tokens_per_second(completion, latency, first_token) == expected


def test_tokens_are_estimated_without_a_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tiktoken installed: one token per four characters, rounded up, and it says so."""
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    usage._encoding_for.cache_clear()
    try:
        assert count_tokens("", "gpt-4o") == (0, "chars/4")
        assert count_tokens("hello", "gpt-4o") == (2, "chars/4")
        assert count_tokens("x" * 400, "gpt-4o") == (100, "chars/4")
    finally:
        usage._encoding_for.cache_clear()
