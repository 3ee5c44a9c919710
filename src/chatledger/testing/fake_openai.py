"""A small OpenAI-compatible HTTP server for tests, on asyncio streams and nothing else.

``FakeOpenAIServer`` listens on 127.0.0.1 at a free port and answers
``POST /v1/chat/completions`` from a script, one entry per request, in order:
a JSON reply (with or without usage), an SSE stream ending with a usage chunk,
an HTTP error with an OpenAI-style body, or a reply slower than the client's
timeout. It records every request (headers and JSON body) so a test can check
what the client sent. HTTP/1.1 keep-alive is honoured, since the SDK's client
reuses its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

__all__ = [
    "FakeOpenAIServer",
    "ReceivedRequest",
    "Script",
    "error_reply",
    "json_reply",
    "stream_reply",
    "usage",
]

CREATED = 1_700_000_000


def usage(
    prompt: int, completion: int, *, cached: int | None = None, reasoning: int | None = None
) -> dict[str, Any]:
    """An OpenAI ``usage`` object; the details only when given."""
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        body["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
    if reasoning is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": reasoning, "audio_tokens": 0}
    return body


@dataclass(frozen=True, slots=True)
class Script:
    """One scripted response: JSON, an SSE stream, or an error; after ``delay`` seconds."""

    kind: str  # "json", "stream" or "error"
    status: int = 200
    body: dict[str, Any] | None = None  # the JSON reply, or the error's body
    chunks: tuple[dict[str, Any], ...] = ()  # the stream's events, before [DONE]
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # before the status line: longer than the client's timeout times out
    chunk_delay: float = 0.0  # between stream events


def json_reply(
    text: str,
    *,
    model: str,
    response_id: str = "chatcmpl-plain",
    usage: dict[str, Any] | None = None,
    finish_reason: str = "stop",
    delay: float = 0.0,
) -> Script:
    """A whole chat completion; without ``usage`` the body has none (as some servers do)."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return Script("json", body=body, delay=delay)


def stream_reply(
    pieces: list[str],
    *,
    model: str,
    response_id: str = "chatcmpl-stream",
    usage: dict[str, Any] | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
) -> Script:
    """An SSE stream: a role chunk, one chunk per piece, a finish chunk, then the usage chunk."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    chunks.append(chunk({}, "stop"))
    if usage is not None:
        # As OpenAI sends it with include_usage: no choices, only the usage.
        chunks.append({**chunk({}), "choices": [], "usage": usage})
    return Script("stream", chunks=tuple(chunks), delay=delay, chunk_delay=chunk_delay)


def error_reply(
    status: int,
    message: str,
    *,
    error_type: str,
    code: str | None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Script:
    """An HTTP error with OpenAI's error body."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return Script("error", status=status, body=body, headers=headers)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What the server was sent: method, path, headers (lower-cased) and JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(slots=True)
class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 answering from ``script``, in order."""

    script: list[Script] = field(default_factory=list)
    requests: list[ReceivedRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client: ``http://127.0.0.1:<port>/v1``."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def add(self, *entries: Script) -> None:
        """Append responses to the script."""
        self.script.extend(entries)

    async def start(self) -> Self:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        """Stop listening, drop every connection and end every handler (a slow one too)."""
        if self._server is None:
            return
        self._server.close()
        # Handlers are woken, not cancelled: asyncio (3.11) logs an error for a
        # cancelled connection handler, and their end must be awaited anyway.
        self._closing.set()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        """The started server."""
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the server."""
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection until the client closes it."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while await self._answer_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away (it timed out, or closed its pool)
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; False when the connection is over."""
        request_line = await reader.readline()
        if not request_line:
            return False
        method, path, _ = request_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else {}
        self.requests.append(ReceivedRequest(method, path, headers, body))
        if (method, path) != ("POST", "/v1/chat/completions"):
            error = error_reply(404, f"no route {method} {path}", error_type="not_found", code=None)
            await self._send_json(writer, error.status, error.body or {}, ())
        elif not self.script:
            error = error_reply(500, "the test scripted no more replies", error_type="x", code=None)
            await self._send_json(writer, error.status, error.body or {}, ())
        else:
            await self._play(writer, self.script.pop(0))
        return not self._closing.is_set()

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the server closes; whether it is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    async def _play(self, writer: asyncio.StreamWriter, entry: Script) -> None:
        if entry.delay and await self._pause(entry.delay):
            return
        if entry.kind == "stream":
            await self._send_stream(writer, entry)
        else:
            await self._send_json(writer, entry.status, entry.body or {}, entry.headers)

    @staticmethod
    async def _send_json(
        writer: asyncio.StreamWriter,
        status: int,
        body: dict[str, Any],
        headers: tuple[tuple[str, str], ...],
    ) -> None:
        data = json.dumps(body).encode()
        head = _head(
            status,
            [("content-type", "application/json"), ("content-length", str(len(data))), *headers],
        )
        writer.write(head + data)
        await writer.drain()

    async def _send_stream(self, writer: asyncio.StreamWriter, entry: Script) -> None:
        # Chunked transfer, so the connection stays usable for the next request.
        writer.write(
            _head(
                200,
                [
                    ("content-type", "text/event-stream"),
                    ("cache-control", "no-cache"),
                    ("transfer-encoding", "chunked"),
                ],
            )
        )
        events = [f"data: {json.dumps(chunk)}\n\n" for chunk in entry.chunks]
        events.append("data: [DONE]\n\n")
        for index, event in enumerate(events):
            if index and entry.chunk_delay and await self._pause(entry.chunk_delay):
                return
            data = event.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """A status line and headers, ready to write."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
