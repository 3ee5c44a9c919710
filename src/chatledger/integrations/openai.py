"""Record every call an OpenAI SDK client makes: ``instrument(client, recorder)``.

``instrument`` patches one ``OpenAI`` or ``AsyncOpenAI`` client in place (an
``AzureOpenAI`` too) and returns it. Recorded: ``chat.completions.create``
and ``responses.create``, streamed or not (so the SDK's ``.stream()``
helpers, which call them, are recorded too), and ``.parse()`` of both; each
call's request messages not yet stored, its reply (with tool calls), its
usage, timing, response id and outcome go to the session in
:func:`chatledger.scope`. Clients made from it with ``with_options()`` or
``copy()`` are instrumented too. Not recorded: ``with_raw_response`` and
``with_streaming_response`` calls (they pass through untouched), and other
endpoints.

The caller receives exactly what the uninstrumented client returns: the same
response objects, the same exception objects; a stream comes back as a
subclass of the SDK's ``Stream``/``AsyncStream`` that yields the SDK's own
chunk objects and otherwise behaves as the SDK's stream. Nothing is added
to the request: a Chat Completions stream without
``stream_options={"include_usage": True}`` has no usage from OpenAI, so its
tokens are counted here and the call is marked estimated.

A stream is recorded when it ends: read to the end (success), failed while
read (its status follows the error; what it had sent is kept), or stopped
early (cancelled: ``close()``, leaving its ``with`` block, or, for a stream
dropped without either, when it is garbage-collected). A call cancelled
while awaited (``asyncio.CancelledError``) is recorded as cancelled.

Recording never raises into the caller: a recorder that fails is logged on
``chatledger.integrations.openai`` and the call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from chatledger.entities import ApiCallStatus, MessageContent, utc_now
from chatledger.integrations.extras import require
from chatledger.integrations.openai_shapes import (
    ChatStreamReader,
    Message,
    ResponsesStreamReader,
    chat_messages,
    chat_reply,
    chat_usage,
    estimated_usage,
    field,
    responses_input,
    responses_output,
    responses_usage,
)
from chatledger.recording.recorder import CallFields, Recorder
from chatledger.recording.scope import Scope, current_scope

openai = require("openai", "openai", "chatledger.integrations.openai")

from openai import AsyncStream, NotGiven, Omit, Stream  # noqa: E402  (after the extra's check)

__all__ = ["instrument", "uninstrument"]

logger = logging.getLogger("chatledger.integrations.openai")

_C = TypeVar("_C")
_T = TypeVar("_T")

_ORIGINAL = "__chatledger_original__"  # on a wrapper: the SDK's method it wraps
_RECORDED = (("chat", ("chat", "completions")), ("responses", ("responses",)))
_METHODS = ("create", "parse")
_RAW_HEADER = "X-Stainless-Raw-Response"  # set by with_raw_response / with_streaming_response
_STOPPED = "the caller stopped reading the stream"


def instrument(client: _C, recorder: Recorder) -> _C:
    """Record ``client``'s chat completions and responses calls with ``recorder``; return it.

    ``client`` is an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` (or an Azure
    one), patched in place. Instrumenting again replaces the recorder: a call
    is never recorded twice.
    """
    if isinstance(client, openai.AsyncOpenAI):
        asynchronous = True
    elif isinstance(client, openai.OpenAI):
        asynchronous = False
    else:
        raise TypeError(f"instrument() needs an OpenAI or AsyncOpenAI client, not {client!r}")
    for api, path in _RECORDED:
        resource = _resource(client, path)
        for name in _METHODS:
            method = getattr(resource, name, None)
            if method is None:
                continue
            original = getattr(method, _ORIGINAL, method)
            make = _async_method if asynchronous else _sync_method
            setattr(resource, name, make(original, recorder, api))
    # with_options() is how a client is tuned per call: its copies record too.
    copy = getattr(client.copy, _ORIGINAL, client.copy)

    @functools.wraps(copy)
    def instrumented_copy(*args: Any, **kwargs: Any) -> Any:
        return instrument(copy(*args, **kwargs), recorder)

    setattr(instrumented_copy, _ORIGINAL, copy)
    client.copy = client.with_options = instrumented_copy
    return client


def uninstrument(client: _C) -> _C:
    """Undo :func:`instrument`: ``client`` records nothing more; return it."""
    for _, path in _RECORDED:
        resource = _resource(client, path)
        for name in _METHODS:
            if hasattr(resource.__dict__.get(name), _ORIGINAL):
                delattr(resource, name)
    for name in ("copy", "with_options"):
        if hasattr(vars(client).get(name), _ORIGINAL):
            delattr(client, name)
    return client


def _resource(client: Any, path: Sequence[str]) -> Any:
    resource = client
    for name in path:
        resource = getattr(resource, name)
    return resource


# --- one call --------------------------------------------------------------------------------


def _given(value: Any) -> Any:
    """``value``, or None for the SDK's "not given" markers."""
    return None if isinstance(value, Omit | NotGiven) else value


class _Call:
    """What is known of one call when it is made: its request, when, in whose scope."""

    __slots__ = ("api", "recorder", "request", "scope", "started", "ticks")

    def __init__(self, recorder: Recorder, api: str, request: dict[str, Any]) -> None:
        self.recorder = recorder
        self.api = api
        self.request = request
        # The scope in force now: a stream may be read, or collected, elsewhere.
        self.scope: Scope = current_scope()
        self.started: datetime = utc_now()
        self.ticks = time.perf_counter()  # latency and time to first token on one clock

    def finished(self) -> datetime:
        """Now, on the clock the time to first token is measured on."""
        return self.started + timedelta(seconds=time.perf_counter() - self.ticks)

    @property
    def model(self) -> str | None:
        """The model asked for."""
        model = _given(self.request.get("model"))
        return model if isinstance(model, str) else None

    def messages(self) -> list[Message]:
        """The request's conversation, as the recorder takes it."""
        if self.api == "chat":
            return chat_messages(_given(self.request.get("messages")) or ())
        instructions = _given(self.request.get("instructions"))
        return responses_input(
            _given(self.request.get("input")),
            instructions if isinstance(instructions, str) else None,
        )

    def reply_record(
        self, response: Any
    ) -> tuple[list[Message], MessageContent | None, CallFields]:
        """The record of a call that returned ``response`` (not streamed)."""
        finished = self.finished()
        model = field(response, "model") or self.model
        if self.api == "chat":
            reply = chat_reply(response)
            usage = chat_usage(field(response, "usage"))
        else:
            reply = responses_output(response)
            usage = responses_usage(field(response, "usage"))
        messages = self.messages()
        fields: CallFields = {
            "model": model,
            "started": self.started,
            "finished": finished,
            "response_id": field(response, "id"),
        }
        fields.update(cast(CallFields, usage or estimated_usage(messages, reply, model or "")))
        if self.api == "responses" and field(response, "status") == "failed":
            fields["status"] = ApiCallStatus.FAILED
            fields["error_message"] = str(field(field(response, "error"), "message") or "failed")
            reply = None
        return messages, reply, fields

    def error_record(
        self, error: BaseException
    ) -> tuple[list[Message], MessageContent | None, CallFields]:
        """The record of a call that raised ``error`` before it returned."""
        fields: CallFields = {
            "model": self.model,
            "started": self.started,
            "finished": self.finished(),
            "error": error,
        }
        if not isinstance(error, Exception | asyncio.CancelledError):
            fields["status"] = ApiCallStatus.CANCELLED  # KeyboardInterrupt, SystemExit
        return self.messages(), None, fields


Record = tuple[list[Message], MessageContent | None, CallFields]


def _passes_through(kwargs: Mapping[str, Any]) -> bool:
    """Whether a call is one this integration leaves alone (raw and streaming responses)."""
    headers = kwargs.get("extra_headers")
    return isinstance(headers, Mapping) and _RAW_HEADER in headers


def _materialized(kwargs: dict[str, Any], api: str) -> None:
    """Make a one-shot iterable of messages a list, so both the SDK and the record read it."""
    name = "messages" if api == "chat" else "input"
    value = kwargs.get(name)
    if value is not None and not isinstance(value, str | list | tuple | Omit | NotGiven):
        kwargs[name] = list(value)


# --- recording, which never raises into the caller -------------------------------------------


def _record_blocking(call: _Call, record: Record) -> None:
    """Record from synchronous code; on an event loop's thread, without blocking it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _record_sync(call, record)
    else:
        # A blocking client used inside async code: waiting here would stall the loop
        # (and deadlock on the recorder's own loop), so the recorder's loop records it.
        _record_soon(call, record)


def _record_sync(call: _Call, record: Record) -> None:
    messages, reply, fields = record
    try:
        call.recorder.record_exchange_sync(messages, reply, fields, scope=call.scope)
    except Exception:
        logger.warning("chatledger could not record a call to %s", fields.get("model"),
                       exc_info=True)  # fmt: skip


def _record_soon(call: _Call, record: Record) -> None:
    """Hand a record to the recorder without waiting for it (it logs its own failures)."""
    messages, reply, fields = record
    try:
        call.recorder.record_exchange_soon(messages, reply, fields, scope=call.scope)
    except Exception:  # a closed recorder
        logger.warning("chatledger could not record a call to %s", fields.get("model"),
                       exc_info=True)  # fmt: skip


async def _record_async(call: _Call, record: Record) -> None:
    messages, reply, fields = record
    try:
        await call.recorder.record_exchange(messages, reply, fields, scope=call.scope)
    except Exception:
        logger.warning("chatledger could not record a call to %s", fields.get("model"),
                       exc_info=True)  # fmt: skip


def _safely(build: Callable[[], Record]) -> Record | None:
    """``build()``, or None (logged) if reading the call failed: the caller goes on."""
    try:
        return build()
    except Exception:
        logger.warning("chatledger could not read an OpenAI call to record it", exc_info=True)
        return None


# --- the wrappers ------------------------------------------------------------------------------


def _sync_method(original: Callable[..., Any], recorder: Recorder, api: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        if _passes_through(kwargs):
            return original(*args, **kwargs)
        _materialized(kwargs, api)
        call = _Call(recorder, api, kwargs)
        try:
            result = original(*args, **kwargs)
        except BaseException as error:
            record = _safely(functools.partial(call.error_record, error))
            if record is not None:
                _record_blocking(call, record)
            raise
        if isinstance(result, Stream):
            return _RecordedStream(result, call)
        record = _safely(lambda: call.reply_record(result))
        if record is not None:
            _record_blocking(call, record)
        return result

    setattr(recorded, _ORIGINAL, original)
    return recorded


def _async_method(
    original: Callable[..., Awaitable[Any]], recorder: Recorder, api: str
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def recorded(*args: Any, **kwargs: Any) -> Any:
        if _passes_through(kwargs):
            return await original(*args, **kwargs)
        _materialized(kwargs, api)
        call = _Call(recorder, api, kwargs)
        try:
            result = await original(*args, **kwargs)
        except BaseException as error:
            record = _safely(functools.partial(call.error_record, error))
            if record is not None:
                # Awaited even when cancelled: the cancellation was delivered (as `error`),
                # and it goes on once the record is durable. A second one interrupts this.
                await _record_async(call, record)
            raise
        if isinstance(result, AsyncStream):
            return _RecordedAsyncStream(result, call)
        record = _safely(lambda: call.reply_record(result))
        if record is not None:
            await _record_async(call, record)
        return result

    setattr(recorded, _ORIGINAL, original)
    return recorded


class _StreamEnd:
    """What a recorded stream shares, sync or async: its reader and how its record is made."""

    _call: _Call
    _reader: ChatStreamReader | ResponsesStreamReader
    _ended: bool

    def _stream_record(self, error: BaseException | None, stopped: bool) -> Record:
        """The record of the stream as it ended: read to the end, failed, or stopped."""
        call, reader = self._call, self._reader
        finished = call.finished()
        messages = call.messages()
        model = reader.model or call.model
        fields: CallFields = {"model": model, "started": call.started, "finished": finished}
        fields.update(cast(CallFields, reader.fields()))
        reply: MessageContent | None = reader.reply()
        reported = "prompt_tokens" in fields
        status: ApiCallStatus | None = None
        if error is not None:
            fields["error"] = error
            if not isinstance(error, Exception):  # CancelledError, KeyboardInterrupt...
                status = ApiCallStatus.CANCELLED
        elif stopped:
            status = ApiCallStatus.CANCELLED
            fields["error_message"] = _STOPPED
        elif isinstance(reader, ResponsesStreamReader) and (
            reader.error is not None or field(reader.response, "status") == "failed"
        ):
            status = ApiCallStatus.FAILED
            fields["error_message"] = reader.error or str(
                field(field(reader.response, "error"), "message") or "failed"
            )
        if status is not None:
            fields["status"] = status
        succeeded = status is None and error is None
        # OpenAI bills a stream stopped early for its prompt and what it had generated.
        if not reported and (succeeded or status is ApiCallStatus.CANCELLED):
            fields.update(cast(CallFields, estimated_usage(messages, reply, model or "")))
        return messages, reply if succeeded else None, fields

    def _end(self, error: BaseException | None, stopped: bool = False) -> Record | None:
        """The record to make now, or None if the stream was recorded already."""
        if self._ended:
            return None
        self._ended = True
        return _safely(lambda: self._stream_record(error, stopped))


class _RecordedStream(Stream[_T], _StreamEnd):
    """The SDK's ``Stream``, recorded: the same chunks, recorded when the stream ends."""

    def __init__(self, stream: Stream[_T], call: _Call) -> None:
        # Stream.__init__ is not called: the SDK's stream already did the work.
        self._stream = stream
        self._call = call
        self._reader = ChatStreamReader(call.ticks) if call.api == "chat" else (
            ResponsesStreamReader(call.ticks)
        )  # fmt: skip
        self._ended = False
        self.response = stream.response
        self._options = stream._options
        self._iterator = self

    def __getattr__(self, name: str) -> Any:
        """What the SDK's stream has and this one does not (its client, its decoder...)."""
        if name == "_stream":
            raise AttributeError(name)  # not set: __init__ did not run
        return getattr(self._stream, name)

    def __iter__(self) -> _RecordedStream[_T]:
        """The stream itself, as an iterator."""
        return self

    def __next__(self) -> _T:
        """The SDK's next chunk, read into the record."""
        try:
            chunk = self._stream.__next__()
        except StopIteration:
            self._record(None)
            raise
        except BaseException as error:
            self._record(error)
            raise
        self._reader.add(chunk)
        return chunk

    def close(self) -> None:
        """Close the SDK's stream; a stream not read to the end is recorded as cancelled."""
        self._stream.close()
        self._record(None, stopped=True)

    def _record(self, error: BaseException | None, stopped: bool = False) -> None:
        record = self._end(error, stopped)
        if record is not None:
            _record_blocking(self._call, record)

    def __del__(self) -> None:
        """A stream dropped unread and unclosed is recorded as cancelled, in the background."""
        _ended_unclosed(self)


class _RecordedAsyncStream(AsyncStream[_T], _StreamEnd):
    """The SDK's ``AsyncStream``, recorded: the same chunks, recorded when the stream ends."""

    def __init__(self, stream: AsyncStream[_T], call: _Call) -> None:
        self._stream = stream
        self._call = call
        self._reader = ChatStreamReader(call.ticks) if call.api == "chat" else (
            ResponsesStreamReader(call.ticks)
        )  # fmt: skip
        self._ended = False
        self.response = stream.response
        self._options = stream._options
        self._iterator = self

    def __getattr__(self, name: str) -> Any:
        """What the SDK's stream has and this one does not (its client, its decoder...)."""
        if name == "_stream":
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __aiter__(self) -> _RecordedAsyncStream[_T]:
        """The stream itself, as an async iterator."""
        return self

    async def __anext__(self) -> _T:
        """The SDK's next chunk, read into the record."""
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            await self._record(None)
            raise
        except BaseException as error:
            await self._record(error)
            raise
        self._reader.add(chunk)
        return chunk

    async def close(self) -> None:
        """Close the SDK's stream; a stream not read to the end is recorded as cancelled."""
        await self._stream.close()
        await self._record(None, stopped=True)

    async def _record(self, error: BaseException | None, stopped: bool = False) -> None:
        record = self._end(error, stopped)
        if record is not None:
            await _record_async(self._call, record)

    def __del__(self) -> None:
        """A stream dropped unread and unclosed is recorded as cancelled, in the background."""
        _ended_unclosed(self)


def _ended_unclosed(stream: _RecordedStream[Any] | _RecordedAsyncStream[Any]) -> None:
    """Record a collected stream nobody finished or closed, without blocking the collector."""
    try:
        if "_ended" not in vars(stream):
            return  # its __init__ never ran
        record = stream._end(None, stopped=True)
        if record is not None:
            _record_soon(stream._call, record)
    except Exception:  # a finalizer must not raise; at exit even logging may fail
        with contextlib.suppress(Exception):
            logger.warning("chatledger could not record an abandoned stream", exc_info=True)
