"""A provider on the official ``openai`` SDK, for OpenAI and any OpenAI-compatible API.

:class:`OpenAIProvider` sends a :class:`~chatledger.agent.providers.ChatRequest`
to ``/chat/completions`` at any ``base_url`` (OpenAI, Azure-style gateways,
vLLM, Ollama, LiteLLM proxies, ...) and reports what the response says about
itself: the model that answered, its id, finish reason and token usage,
including cached prompt tokens and reasoning tokens. Streams ask for the usage
chunk (``stream_options={"include_usage": True}``) and measure the time to
first token: the first chunk that carries content, a tool call or a refusal.

Tools go out in OpenAI's function-tool form; the tool calls of a reply are
read from the message, or gathered from a stream's deltas by their index
(the arguments arrive in pieces). Assistant tool-call messages and ``tool``
messages go back in OpenAI's wire form. A stream that fails after its first
chunk attaches what had arrived (the response id, the time to first token)
to the error before it propagates.

Errors from the SDK are not wrapped: the agent and the persistence plugin
read their type, HTTP status and code to record the call's status.

The SDK is optional (``pip install 'chatledger[openai]'``); it is imported when
a provider is made, so ``import chatledger`` works without it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from chatledger.agent.providers import (
    ChatMessage,
    ChatRequest,
    Completion,
    StreamEnd,
    attach_partial_metadata,
)
from chatledger.agent.tools import ToolCall
from chatledger.plugin.events import LLMResponseMetadata

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["OpenAIProvider"]

_INSTALL_HINT = "OpenAIProvider needs the openai SDK: pip install 'chatledger[openai]'"


class OpenAIProvider:
    """Answers chat requests through the ``openai`` SDK's async client."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        name: str = "openai",
        client: AsyncOpenAI | None = None,
    ) -> None:
        """A provider for ``base_url`` (OpenAI's by default) with ``api_key``.

        ``timeout`` (seconds) and ``max_retries`` go to the SDK client; left
        None, the SDK's defaults apply. ``name`` is what prices are keyed by.
        A ready ``client`` may be given instead; it is then the caller's to close.
        """
        try:
            openai = importlib.import_module("openai")
        except ImportError as exc:
            raise ImportError(_INSTALL_HINT) from exc
        self._name = name
        self._owns_client = client is None
        if client is None:
            options: dict[str, Any] = {"api_key": api_key, "base_url": base_url}
            # Only what the caller chose: the SDK's own defaults stand for the rest.
            if timeout is not None:
                options["timeout"] = timeout
            if max_retries is not None:
                options["max_retries"] = max_retries
            client = cast("AsyncOpenAI", openai.AsyncOpenAI(**options))
        self._client = client

    @property
    def name(self) -> str:
        """The provider's name, as prices are keyed by."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def client(self) -> AsyncOpenAI:
        """The SDK client the calls go through."""
        return self._client

    async def complete(self, request: ChatRequest) -> Completion:
        """The whole reply to ``request`` (one non-streamed chat completion)."""
        response = await self._client.chat.completions.create(
            **self._arguments(request), stream=False
        )
        choice = response.choices[0] if response.choices else None
        text = "" if choice is None or choice.message.content is None else choice.message.content
        calls: list[ToolCall] = []
        for call in (None if choice is None else choice.message.tool_calls) or ():
            function = getattr(call, "function", None)  # custom (non-function) tools have none
            if function is not None:
                calls.append(ToolCall(call.id, function.name, function.arguments or "{}"))
        metadata = _metadata(
            response.id,
            response.model or request.model,
            response.usage,
            None if choice is None else choice.finish_reason,
            time_to_first_token_ms=None,
        )
        return Completion(
            text, metadata, usage_reported=response.usage is not None, tool_calls=tuple(calls)
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[str | StreamEnd, None]:
        """The reply to ``request`` as text deltas, then a :class:`StreamEnd` with its usage."""
        started = time.perf_counter()
        stream = await self._client.chat.completions.create(
            **self._arguments(request),
            stream=True,
            stream_options={"include_usage": True},
        )
        response_id: str | None = None
        model = request.model
        finish_reason: str | None = None
        usage: CompletionUsage | None = None
        first_token_ms: int | None = None
        calls: dict[int, _CallParts] = {}  # by the delta's index: arguments come in pieces
        try:
            # The stream owns an HTTP response: close it however the consumer stops.
            async with stream:
                async for chunk in stream:
                    response_id = chunk.id or response_id
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if not chunk.choices:
                        continue  # the usage chunk has no choices
                    choice = chunk.choices[0]
                    finish_reason = choice.finish_reason or finish_reason
                    delta = choice.delta
                    if first_token_ms is None and (
                        delta.content or delta.tool_calls or delta.refusal
                    ):
                        first_token_ms = _elapsed_ms(started)
                    for part in delta.tool_calls or ():
                        parts = calls.setdefault(part.index, _CallParts())
                        parts.add(part.id, part.function)
                    if delta.content:
                        yield delta.content
        except GeneratorExit:
            raise  # the reader stopped: nothing failed
        except BaseException as exc:
            # What had arrived stays known: the failed call's record keeps it.
            if response_id is not None or first_token_ms is not None:
                partial = _metadata(response_id, model, usage, finish_reason, first_token_ms)
                attach_partial_metadata(exc, partial)
            raise
        if first_token_ms is None:  # nothing was said: the "first token" is the end
            first_token_ms = _elapsed_ms(started)
        metadata = _metadata(response_id, model, usage, finish_reason, first_token_ms)
        tool_calls = tuple(calls[index].call(index) for index in sorted(calls))
        yield StreamEnd(metadata, usage_reported=usage is not None, tool_calls=tool_calls)

    async def close(self) -> None:
        """Close the SDK client and its connections (unless the caller gave it)."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> Self:
        """The provider itself; leaving the block closes it."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the provider."""
        await self.close()

    @staticmethod
    def _arguments(request: ChatRequest) -> dict[str, Any]:
        """The create() arguments ``request`` sets; unset options are left to the API."""
        messages = cast(
            "list[ChatCompletionMessageParam]", [_wire_message(m) for m in request.messages]
        )
        arguments: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.tools:
            arguments["tools"] = [tool.to_openai() for tool in request.tools]
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.max_tokens is not None:
            # max_tokens, not max_completion_tokens: OpenAI-compatible servers know this one.
            arguments["max_tokens"] = request.max_tokens
        return arguments


class _CallParts:
    """One streamed tool call, gathered from its deltas."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name = ""
        self.arguments: list[str] = []

    def add(self, call_id: str | None, function: Any) -> None:
        """Take one delta's pieces: the id and name come once, the arguments in pieces."""
        self.id = call_id or self.id
        if function is not None:
            self.name = function.name or self.name
            if function.arguments:
                self.arguments.append(function.arguments)

    def call(self, index: int) -> ToolCall:
        """The whole call (an id made up from its index if the server sent none)."""
        return ToolCall(self.id or f"call_{index}", self.name, "".join(self.arguments) or "{}")


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    """A message in OpenAI's wire form, tool calls and tool results included."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {
            "role": message.role,
            "content": message.content or None,  # OpenAI's form for "only tool calls"
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _metadata(
    response_id: str | None,
    model: str,
    usage: CompletionUsage | None,
    finish_reason: str | None,
    time_to_first_token_ms: int | None,
) -> LLMResponseMetadata:
    """What the response says about itself; zero tokens when it reported no usage."""
    cached: int | None = None
    reasoning: int | None = None
    if usage is not None:
        if usage.prompt_tokens_details is not None:
            cached = usage.prompt_tokens_details.cached_tokens
        if usage.completion_tokens_details is not None:
            reasoning = usage.completion_tokens_details.reasoning_tokens
    return LLMResponseMetadata(
        id=response_id or None,
        model=model,
        prompt_tokens=0 if usage is None else usage.prompt_tokens,
        completion_tokens=0 if usage is None else usage.completion_tokens,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        finish_reason=finish_reason,
        time_to_first_token_ms=time_to_first_token_ms,
    )
