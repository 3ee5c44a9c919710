"""A small OpenAI-compatible HTTP server for tests, on asyncio streams and nothing else.

``FakeOpenAIServer`` listens on 127.0.0.1 at a free port and answers
``POST /v1/chat/completions`` and ``POST /v1/responses`` from a script, one
entry per request, in order: a JSON reply (with or without usage, with tool
calls), an SSE stream (chat chunks, or the Responses API's named events), an
HTTP error with an OpenAI-style body and headers, a reply slower than the
client's timeout, or a stream cut mid-way. As OpenAI does, a chat stream's
usage chunk is sent only when the request asked for it
(``stream_options={"include_usage": true}``). Every request is recorded
(headers and JSON body) so a test can check what the client sent. HTTP/1.1
keep-alive is honoured, since the SDKs reuse their connections.

Examples and benchmarks run against it too: ``python -m
chatledger.testing.fake_openai [PORT]`` answers every request with
:func:`standard_reply` and prints its base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
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
    "responses_reply",
    "responses_stream",
    "responses_usage",
    "standard_reply",
    "stream_reply",
    "tool_call",
    "usage",
]

CREATED = 1_700_000_000


def usage(
    prompt: int,
    completion: int,
    *,
    cached: int | None = None,
    reasoning: int | None = None,
    cache_write: int | None = None,
) -> dict[str, Any]:
    """A Chat Completions ``usage`` object; the details only when given.

    ``cache_write`` adds ``cache_creation_input_tokens`` as Anthropic-compatible
    gateways (LiteLLM's proxy, OpenRouter) report it beside OpenAI's fields.
    """
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        body["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
    if reasoning is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": reasoning, "audio_tokens": 0}
    if cache_write is not None:
        body["cache_creation_input_tokens"] = cache_write
    return body


def responses_usage(
    input_tokens: int, output_tokens: int, *, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """A Responses API ``usage`` object (its details are always present there)."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def tool_call(name: str, arguments: str, *, call_id: str = "call_1") -> dict[str, Any]:
    """A tool call the model asks for: ``arguments`` is the JSON text the model wrote."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@dataclass(frozen=True, slots=True)
class Script:
    """One scripted response: JSON, an SSE stream, or an error; after ``delay`` seconds."""

    kind: str  # "json", "stream" or "error"
    status: int = 200
    body: dict[str, Any] | None = None  # the JSON reply, or the error's body
    # The stream's events, before [DONE]: a dict is a data-only event (Chat Completions),
    # a (name, dict) pair a named one (the Responses API, which sends no [DONE]).
    chunks: tuple[dict[str, Any] | tuple[str, dict[str, Any]], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # before the status line: longer than the client's timeout times out
    chunk_delay: float = 0.0  # between stream events
    usage_chunk: dict[str, Any] | None = None  # sent only if the request asked for usage
    cut_after: int | None = None  # drop the connection after this many events


def json_reply(
    text: str | None,
    *,
    model: str,
    response_id: str = "chatcmpl-plain",
    usage: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    delay: float = 0.0,
    tool_calls: list[dict[str, Any]] | None = None,
) -> Script:
    """A whole chat completion; without ``usage`` the body has none (as some servers do)."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
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
    tool_calls: list[dict[str, Any]] | None = None,
    cut_after: int | None = None,
) -> Script:
    """An SSE stream: a role chunk, one chunk per piece, a finish chunk, then the usage chunk.

    ``tool_calls`` stream as OpenAI streams them: a first delta with the id and
    name, then the arguments in two pieces. ``usage`` is sent as the last
    chunk only if the request asked for it. ``cut_after`` drops the connection
    after that many chunks, with no end.
    """

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    chunks = [chunk({"role": "assistant", "content": "" if pieces else None})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    for index, call in enumerate(tool_calls or ()):
        function = call["function"]
        head = {"index": index, "id": call["id"], "type": "function"}
        head["function"] = {"name": function["name"], "arguments": ""}
        chunks.append(chunk({"tool_calls": [head]}))
        arguments = function["arguments"]
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    chunks.append(chunk({}, "tool_calls" if tool_calls else "stop"))
    # As OpenAI sends it with include_usage: no choices, only the usage.
    usage_chunk = None if usage is None else {**chunk({}), "choices": [], "usage": usage}
    return Script(
        "stream",
        chunks=tuple(chunks),
        delay=delay,
        chunk_delay=chunk_delay,
        usage_chunk=usage_chunk,
        cut_after=cut_after,
    )


def _response(
    response_id: str,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A Responses API ``response`` object."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _output_items(
    text: str | None, response_id: str, tool_calls: list[dict[str, Any]] | None, reasoning: bool
) -> list[dict[str, Any]]:
    """A response's output: a reasoning item, the message, then function calls."""
    items: list[dict[str, Any]] = []
    if reasoning:
        items.append({"id": f"rs_{response_id}", "type": "reasoning", "summary": []})
    if text is not None:
        items.append(
            {
                "id": f"msg_{response_id}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    for call in tool_calls or ():
        function = call["function"]
        items.append(
            {
                "id": f"fc_{call['id']}",
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": function["name"],
                "arguments": function["arguments"],
            }
        )
    return items


def responses_reply(
    text: str | None,
    *,
    model: str,
    response_id: str = "resp_plain",
    usage: dict[str, Any] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    reasoning: bool = False,
    delay: float = 0.0,
) -> Script:
    """A whole Responses API response (``POST /v1/responses``)."""
    output = _output_items(text, response_id, tool_calls, reasoning)
    return Script("json", body=_response(response_id, model, "completed", output, usage),
                  delay=delay)  # fmt: skip


def responses_stream(
    pieces: list[str],
    *,
    model: str,
    response_id: str = "resp_stream",
    usage: dict[str, Any] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    reasoning: bool = False,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    cut_after: int | None = None,
) -> Script:
    """A streamed Responses API response: its named events, as OpenAI sends them."""
    text = "".join(pieces) if pieces else None
    final = _output_items(text, response_id, tool_calls, reasoning)
    events: list[tuple[str, dict[str, Any]]] = []

    def event(name: str, **data: Any) -> None:
        events.append((name, {"type": name, "sequence_number": len(events), **data}))

    event("response.created", response=_response(response_id, model, "in_progress", [], None))
    event("response.in_progress", response=_response(response_id, model, "in_progress", [], None))
    for index, item in enumerate(final):
        if item["type"] == "message":
            started = {**item, "status": "in_progress", "content": []}
            event("response.output_item.added", output_index=index, item=started)
            part = {"type": "output_text", "text": "", "annotations": []}
            ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
            event("response.content_part.added", **ids, part=part)
            for piece in pieces:
                event("response.output_text.delta", **ids, delta=piece, logprobs=[])
            event("response.output_text.done", **ids, text=text, logprobs=[])
            event("response.content_part.done", **ids, part={**part, "text": text})
        elif item["type"] == "function_call":
            started = {**item, "status": "in_progress", "arguments": ""}
            event("response.output_item.added", output_index=index, item=started)
            ids = {"item_id": item["id"], "output_index": index}
            event("response.function_call_arguments.delta", **ids, delta=item["arguments"])
            event("response.function_call_arguments.done", **ids, arguments=item["arguments"])
        else:
            event("response.output_item.added", output_index=index, item=item)
        event("response.output_item.done", output_index=index, item=item)
    event("response.completed", response=_response(response_id, model, "completed", final, usage))
    return Script("stream", chunks=tuple(events), delay=delay, chunk_delay=chunk_delay,
                  cut_after=cut_after)  # fmt: skip


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
    # What to answer once the script is spent (None: HTTP 500 saying so); see standard_reply.
    fallback: Callable[[str, dict[str, Any]], Script] | None = None
    keep_requests: bool = True  # False for long runs (benchmarks): the requests are not kept
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
        if self.keep_requests:
            self.requests.append(ReceivedRequest(method, path, headers, body))
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/responses"):
            error = error_reply(404, f"no route {method} {path}", error_type="not_found", code=None)
            await self._send_json(writer, error.status, error.body or {}, ())
        elif not self.script and self.fallback is not None:
            return await self._play(writer, self.fallback(path, body), body)
        elif not self.script:
            error = error_reply(500, "the test scripted no more replies", error_type="x", code=None)
            await self._send_json(writer, error.status, error.body or {}, ())
        else:
            return await self._play(writer, self.script.pop(0), body)
        return not self._closing.is_set()

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the server closes; whether it is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    async def _play(
        self, writer: asyncio.StreamWriter, entry: Script, request: dict[str, Any]
    ) -> bool:
        """Send one scripted answer; False when the connection is over."""
        if entry.delay and await self._pause(entry.delay):
            return False
        if entry.kind == "stream":
            return await self._send_stream(writer, entry, request)
        await self._send_json(writer, entry.status, entry.body or {}, entry.headers)
        return not self._closing.is_set()

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

    async def _send_stream(
        self, writer: asyncio.StreamWriter, entry: Script, request: dict[str, Any]
    ) -> bool:
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
        events = [
            f"data: {json.dumps(chunk)}\n\n"
            if isinstance(chunk, dict)
            else f"event: {chunk[0]}\ndata: {json.dumps(chunk[1])}\n\n"
            for chunk in entry.chunks
        ]
        options = request.get("stream_options") or {}
        if entry.usage_chunk is not None and options.get("include_usage"):
            events.append(f"data: {json.dumps(entry.usage_chunk)}\n\n")
        if all(isinstance(chunk, dict) for chunk in entry.chunks):
            events.append("data: [DONE]\n\n")  # the Responses API ends with its last event
        for index, event in enumerate(events):
            if index == entry.cut_after:
                writer.transport.abort()  # a connection lost mid-stream: no end, no [DONE]
                return False
            if index and entry.chunk_delay and await self._pause(entry.chunk_delay):
                return False
            data = event.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return not self._closing.is_set()


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """A status line and headers, ready to write."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def standard_reply(path: str, request: dict[str, Any]) -> Script:
    """A plain answer to any request, streamed if it asked: ``max_tokens`` words, with usage.

    The reply's model is the one asked for; its usage counts one prompt token
    per request message and one completion token per word (7 by default).
    """
    model = str(request.get("model") or "gpt-4o-mini")
    words = int(request.get("max_tokens") or request.get("max_output_tokens") or 7)
    pieces = [f"word{n} " for n in range(words)]
    prompt = len(request.get("messages") or request.get("input") or ()) or 1
    if path.endswith("/responses"):
        spent = responses_usage(prompt, words)
        if request.get("stream"):
            return responses_stream(pieces, model=model, usage=spent)
        return responses_reply("".join(pieces), model=model, usage=spent)
    if request.get("stream"):
        return stream_reply(pieces, model=model, usage=usage(prompt, words))
    return json_reply("".join(pieces), model=model, usage=usage(prompt, words))


async def _serve_until_stopped(port: int) -> None:
    """Answer every request with :func:`standard_reply`, printing the base URL first."""
    server = FakeOpenAIServer(fallback=standard_reply, keep_requests=False)
    server._server = await asyncio.start_server(server._serve, "127.0.0.1", port)
    async with server:
        print(server.base_url, flush=True)  # the command's output: where to point a client
        await server._closing.wait()


if __name__ == "__main__":
    import sys

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
