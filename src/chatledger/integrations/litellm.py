"""LiteLLM: a ``CustomLogger`` that records every ``completion`` and ``acompletion`` call.

    import litellm
    from chatledger.integrations.litellm import ChatledgerLogger

    litellm.callbacks = [ChatledgerLogger(recorder)]

LiteLLM answers in OpenAI's shapes for every provider, so the request, the
reply and the usage are read with :mod:`chatledger.integrations.openai_shapes`.
What LiteLLM adds is read here: the provider's own model name (LiteLLM's
response repeats the model asked for), its ``custom_llm_provider``, the time
the first chunk came, and usage LiteLLM counted itself.

LiteLLM calls a logger from its own worker threads and tasks, after the call
returned; the scope in force is taken when the call starts (LiteLLM's pre-call
hook runs in the caller's context) so records land in the caller's session.
Each call is recorded once, whichever of the sync and async hooks LiteLLM
fires for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from chatledger.entities import ApiCallStatus
from chatledger.ids import keyed_uuid
from chatledger.integrations import extras
from chatledger.integrations.openai_shapes import (
    Message,
    chat_messages,
    chat_reply,
    chat_usage,
    field,
)
from chatledger.recording.recorder import CallFields, Recorder
from chatledger.recording.scope import Scope, current_scope
from chatledger.usage import status_for_error

extras.require("litellm", "litellm", "chatledger.integrations.litellm")

from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

__all__ = ["ChatledgerLogger"]

logger = logging.getLogger("chatledger.integrations.litellm")

_CALL_TYPES = frozenset({"completion", "acompletion"})
_REMEMBERED = 10_000  # calls whose scope (or whose being recorded) is kept, oldest forgotten first

# Providers speaking OpenAI's Chat Completions wire: their streams carry usage only when
# the request asked for it (stream_options.include_usage); without it LiteLLM counts the
# tokens itself, and the record must say so.
_USAGE_ON_REQUEST = frozenset({"openai", "azure", "custom_openai", "text-completion-openai"})


class _CodedError(Exception):
    """An error as the provider gave it: the code LiteLLM replaced, or none where it made one up."""

    def __init__(self, error: BaseException, code: str | None) -> None:
        super().__init__(str(error))
        self.code = code
        self.status_code = getattr(error, "status_code", None) if code is not None else None


def _utc(moment: Any) -> datetime | None:
    """LiteLLM's times (naive local datetimes, or epoch seconds) as aware UTC datetimes."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)  # a naive datetime is read as local time, as LiteLLM made it
    if isinstance(moment, int | float) and not isinstance(moment, bool):
        return datetime.fromtimestamp(moment, UTC)
    return None


def _usage_on_request(provider: str | None) -> bool:
    if provider is None:
        return False
    if provider in _USAGE_ON_REQUEST:
        return True
    import litellm  # imported at module load already; this reads its current list

    return provider in getattr(litellm, "openai_compatible_providers", ())


def _asked_for_usage(kwargs: Mapping[str, Any]) -> bool:
    """Whether the request LiteLLM sent asked for a stream's usage chunk."""
    sent = field(kwargs.get("additional_args") or {}, "complete_input_dict")
    options = field(sent, "stream_options") if isinstance(sent, Mapping) else None
    if options is None:  # the body was not logged: what the caller passed
        options = kwargs.get("stream_options") or field(
            kwargs.get("optional_params"), "stream_options"
        )
    return bool(field(options, "include_usage")) if options else False


def _synthesized_reasoning(details: Any, completion_tokens: int) -> bool:
    """Whether these are LiteLLM's own details for a stream (reasoning 0, all else text)."""
    if details is None or field(details, "reasoning_tokens") != 0:
        return False
    if field(details, "text_tokens") != completion_tokens:
        return False
    others = ("audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens")
    return all(field(details, name) is None for name in others)


def _as_provider_said(error: BaseException) -> BaseException:
    """``error``, or a stand-in carrying the error code the provider gave (or none).

    LiteLLM sets ``code`` to the HTTP status and keeps the provider's own code
    in ``body``; a timeout with no response at all gets a made-up 408.
    """
    body = getattr(error, "body", None)
    code = field(body, "code") if isinstance(body, Mapping) else None
    if isinstance(body, Mapping) and code is None:
        code = field(field(body, "error") or {}, "code")
    if isinstance(code, str) and code:
        return error if code == getattr(error, "code", None) else _CodedError(error, code)
    answered = getattr(error, "response", None) is not None or isinstance(body, Mapping)
    if not answered and status_for_error(error) is ApiCallStatus.TIMEOUT:
        return _CodedError(error, None)  # no HTTP answer came: no status, no code
    return error


class ChatledgerLogger(CustomLogger):
    """A LiteLLM ``CustomLogger`` recording each chat call (streamed or not, success or failure).

    Add it with ``litellm.callbacks = [ChatledgerLogger(recorder)]``. Usage is
    what LiteLLM reports (cached, cache-write and reasoning subsets included);
    a stream whose provider sent no usage (OpenAI-compatible servers without
    ``stream_options={"include_usage": True}``) is recorded with LiteLLM's own
    count, marked estimated. Recording never raises into LiteLLM or the caller.
    """

    def __init__(self, recorder: Recorder) -> None:
        """Record into ``recorder``, priced by its pricing registry."""
        super().__init__()
        self.recorder = recorder
        # LiteLLM keeps one logger per class and public str/int attributes: this one's own
        # name lets a second ChatledgerLogger (another recorder) be called too.
        self.name = f"chatledger-{id(self):x}"
        self._lock = threading.Condition()
        self._scopes: OrderedDict[str, Scope] = OrderedDict()  # started calls -> their scope
        self._recorded: OrderedDict[str, None] = OrderedDict()  # call ids recorded already
        self._recording = 0  # records being made now

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until every call LiteLLM started was recorded; False if ``timeout`` passed first.

        LiteLLM calls loggers after the call returned, in the background: wait
        before reading the ledger or closing the recorder. Not on an event
        loop's thread (from async code, ``await asyncio.to_thread(logger.wait)``).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._scopes or self._recording:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    # --- LiteLLM's hooks ------------------------------------------------------------------

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """Keep the caller's scope: LiteLLM's later hooks may run in other threads."""
        try:
            call_id = kwargs.get("litellm_call_id")
            if call_id:
                with self._lock:
                    self._scopes[call_id] = current_scope()
                    while len(self._scopes) > _REMEMBERED:
                        self._scopes.popitem(last=False)
        except Exception:
            logger.warning("chatledger could not read a LiteLLM call's start", exc_info=True)

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record a call that succeeded (LiteLLM's synchronous hook)."""
        self._record_sync(kwargs, response_obj, start_time, end_time)

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record a call that failed (LiteLLM's synchronous hook)."""
        self._record_sync(kwargs, None, start_time, end_time)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record a call that succeeded (LiteLLM's asynchronous hook)."""
        await self._record(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record a call that failed (LiteLLM's asynchronous hook)."""
        await self._record(kwargs, None, start_time, end_time)

    # --- recording --------------------------------------------------------------------------

    async def _record(self, kwargs: Any, response: Any, start_time: Any, end_time: Any) -> None:
        try:
            exchange = self._exchange(kwargs, response, start_time, end_time)
            if exchange is None:
                return
            try:
                messages, reply, call, scope = exchange
                await self.recorder.record_exchange(messages, reply, call, scope=scope)
            finally:
                self._done()
        except Exception:
            logger.warning("chatledger could not record a LiteLLM call", exc_info=True)

    def _record_sync(self, kwargs: Any, response: Any, start_time: Any, end_time: Any) -> None:
        try:
            exchange = self._exchange(kwargs, response, start_time, end_time)
            if exchange is None:
                return
            messages, reply, call, scope = exchange
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                try:
                    self.recorder.record_exchange_sync(messages, reply, call, scope=scope)
                finally:
                    self._done()
                return
            # A synchronous hook on a thread running a loop (maybe the recorder's own):
            # blocking here could deadlock, so the recorder's loop takes the record.
            try:
                self.recorder.record_exchange_soon(messages, reply, call, scope=scope)
            finally:
                self._done()
        except Exception:
            logger.warning("chatledger could not record a LiteLLM call", exc_info=True)

    def _done(self) -> None:
        with self._lock:
            self._recording -= 1
            self._lock.notify_all()

    def _claim(self, kwargs: Mapping[str, Any]) -> Scope | bool | None:
        """The scope the call started in (None if unknown); False if it is not to be recorded.

        A call is claimed once: a second hook for it (LiteLLM may fire both
        twins) or a call that is not a chat completion is not recorded.
        """
        call_id = kwargs.get("litellm_call_id")
        chat = kwargs.get("call_type") in _CALL_TYPES
        with self._lock:
            scope = self._scopes.pop(call_id, None) if call_id else None
            if not chat or (call_id and call_id in self._recorded):
                self._lock.notify_all()
                return False
            if call_id:
                self._recorded[call_id] = None
                while len(self._recorded) > _REMEMBERED:
                    self._recorded.popitem(last=False)
            self._recording += 1
            return scope

    def _exchange(
        self, kwargs: Any, response: Any, start_time: Any, end_time: Any
    ) -> tuple[list[Message], Any, CallFields, Scope | None] | None:
        """What to record of one LiteLLM call, or None when it is not a call to record."""
        if not isinstance(kwargs, Mapping):
            return None
        claimed = self._claim(kwargs)
        if claimed is False:
            return None
        try:
            messages, reply, call = _read(kwargs, response, start_time, end_time)
        except BaseException:
            self._done()
            raise
        litellm_id = kwargs.get("litellm_call_id")
        if isinstance(litellm_id, str) and litellm_id:
            # LiteLLM may log a call after the next one, whose request already holds its
            # reply: an id of its own lets the recorder know that reply as stored.
            started = _utc(start_time)
            millis = 0 if started is None else int(started.timestamp() * 1000)
            call["call_id"] = keyed_uuid(f"litellm:{litellm_id}", millis)
        return messages, reply, call, claimed if isinstance(claimed, Scope) else None

    def __repr__(self) -> str:
        return f"ChatledgerLogger({self.recorder!r})"


def _read(
    kwargs: Mapping[str, Any], response: Any, start_time: Any, end_time: Any
) -> tuple[list[Message], Any, CallFields]:
    """The request's messages, the reply and the call, as LiteLLM's hook describes them."""
    started = _utc(start_time) or _utc(kwargs.get("start_time")) or datetime.now(UTC)
    finished = _utc(end_time) or _utc(kwargs.get("end_time"))
    streamed = bool(kwargs.get("stream"))
    messages = chat_messages(kwargs.get("messages") or ())
    call: CallFields = {"model": kwargs.get("model"), "started": started, "finished": finished}
    # LiteLLM's provider name (genai-prices knows its spellings): the recorder's is a default.
    provider = field(kwargs.get("litellm_params") or {}, "custom_llm_provider")
    call["provider"] = provider or kwargs.get("custom_llm_provider") or None
    first = _utc(kwargs.get("completion_start_time")) if streamed else None
    if first is not None:  # a failed stream keeps it too: its first chunk had come
        call["time_to_first_token_ms"] = max(int((first - started).total_seconds() * 1000), 0)
    error = kwargs.get("exception")
    if response is None or isinstance(error, BaseException):
        if isinstance(error, BaseException):
            call["error"] = _as_provider_said(error)
            call["status"] = status_for_error(error)
            call["error_message"] = str(error) or type(error).__name__
        else:
            call["error_message"] = str(error or "LiteLLM reported a failure")
            call["error"] = RuntimeError(call["error_message"])
        return messages, None, call
    if field(response, "choices") is None:
        response = kwargs.get("complete_streaming_response") or response
    hidden = getattr(response, "_hidden_params", None) or {}
    # LiteLLM's response repeats the model asked for; the provider's answer is kept aside.
    call["model"] = (
        field(hidden, "provider_response_model") or field(response, "model") or (call["model"])
    )
    call["response_id"] = field(response, "id") or None
    usage = field(response, "usage")
    reported = chat_usage(usage)
    if streamed and reported:
        details = field(usage, "completion_tokens_details")
        if _synthesized_reasoning(details, reported.get("completion_tokens", 0)):
            reported["reasoning_tokens"] = None
        if _usage_on_request(call["provider"]) and not _asked_for_usage(kwargs):
            # The provider sent no usage: these are LiteLLM's own counts.
            reported["cached_tokens"] = None
            reported["reasoning_tokens"] = None
            reported["estimated"] = True
            reported["counted_by"] = "litellm.token_counter"
    call.update(cast(CallFields, reported))
    return messages, chat_reply(response), call
