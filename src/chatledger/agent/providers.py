"""What an agent talks to: the provider protocol, and a scripted provider for offline work.

A provider turns a :class:`ChatRequest` into a reply, either whole
(:meth:`LLMProvider.complete`) or as a stream of text pieces followed by what
is known about the response (:meth:`LLMProvider.stream`). Both report an
:class:`~chatledger.plugin.events.LLMResponseMetadata`; a provider that got
no usage from its API leaves the token counts at zero and ``usage_reported``
false, and the agent counts them itself. A reply may ask for tools: its
:class:`~chatledger.agent.tools.ToolCall` list rides on the :class:`Completion`
or the :class:`StreamEnd`, and the request carries the tools the model may use.

A stream that fails after part of the response arrived says what had
arrived (its response id, the time to first token) by attaching it to the
error with :func:`attach_partial_metadata`; the agent reads it back with
:func:`partial_metadata` and hands it to ``on_error_with_metadata``, so the
failed call's record keeps it.

:class:`ScriptedProvider` answers from a script: replies, token counts,
delays and errors, in order. It needs no network and no key, so demos and
tests run anywhere and always the same way. A scripted reply may ask for
tools (:class:`ScriptedToolCall`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from chatledger.agent.tools import Tool, ToolCall
from chatledger.ids import uuid7
from chatledger.plugin.events import LLMResponseMetadata

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "LLMProvider",
    "ScriptedProvider",
    "ScriptedReply",
    "ScriptedToolCall",
    "StreamEnd",
    "attach_partial_metadata",
    "partial_metadata",
]

_PARTIAL = "chatledger_partial_metadata"  # the attribute a failed stream's error carries


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation sent to the model.

    An assistant message may carry the ``tool_calls`` it asked for (its
    ``content`` is then often empty); a ``tool`` message carries the
    ``tool_call_id`` of the call whose result is its ``content``.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the agent asks a provider for, with the tools the model may call."""

    model: str
    messages: Sequence[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: Sequence[Tool] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole reply and what is known about it; ``tool_calls`` when it asks for tools."""

    text: str
    metadata: LLMResponseMetadata
    usage_reported: bool = True
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of a stream: what is known about the response, and any tool calls."""

    metadata: LLMResponseMetadata
    usage_reported: bool = True
    tool_calls: tuple[ToolCall, ...] = ()


def attach_partial_metadata(error: BaseException, metadata: LLMResponseMetadata) -> None:
    """Say on ``error`` what of the response had arrived before it (a cut stream's id, say)."""
    # An exception that takes no attributes (a C type with slots) just goes without.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(error, _PARTIAL, metadata)


def partial_metadata(error: BaseException) -> LLMResponseMetadata | None:
    """What a provider attached to ``error`` of the response that had arrived, if anything."""
    found = getattr(error, _PARTIAL, None)
    return found if isinstance(found, LLMResponseMetadata) else None


@runtime_checkable
class LLMProvider(Protocol):
    """Something that answers chat requests."""

    @property
    def name(self) -> str:
        """The provider's name, as prices are keyed by (``openai``, ...)."""
        ...

    async def complete(self, request: ChatRequest) -> Completion:
        """The whole reply to ``request``."""
        ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[str | StreamEnd, None]:
        """The reply to ``request`` piece by piece, then a :class:`StreamEnd`."""
        ...


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    """A tool call a scripted reply asks for; ``arguments`` as JSON text or a mapping."""

    name: str
    arguments: str | Mapping[str, Any] = "{}"
    id: str | None = None  # a fresh ``call_...`` id when None

    def to_call(self) -> ToolCall:
        """The call as a provider reports it."""
        arguments = self.arguments
        text = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
        return ToolCall(id=self.id or f"call_{uuid7().hex}", name=self.name, arguments=text)


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One scripted answer: its text, tool calls, what usage to report, how long, or an error.

    With ``prompt_tokens`` None the provider reports no usage (as some APIs
    do), so the agent counts tokens itself. With ``tool_calls`` the reply asks
    for tools (its text, usually empty, is said first).
    """

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    delay: float = 0.0  # seconds before the first piece (the time to first token)
    piece_delay: float = 0.0  # seconds between streamed pieces
    error: BaseException | None = None
    model: str | None = None  # the model that "answered"; the request's by default
    tool_calls: Sequence[ScriptedToolCall] = ()


@dataclass(slots=True)
class ScriptedProvider:
    """Answers from a script, in order; after the last entry it repeats the last one."""

    script: Sequence[ScriptedReply | str]
    provider_name: str = "scripted"
    requests: list[ChatRequest] = field(default_factory=list)
    _position: int = 0

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.provider_name

    def _next(self, request: ChatRequest) -> ScriptedReply:
        if not self.script:
            raise ValueError("ScriptedProvider has an empty script")
        self.requests.append(request)
        entry = self.script[min(self._position, len(self.script) - 1)]
        self._position += 1
        return ScriptedReply(text=entry) if isinstance(entry, str) else entry

    @staticmethod
    def _metadata(
        reply: ScriptedReply, request: ChatRequest, first_token_ms: int | None
    ) -> tuple[LLMResponseMetadata, bool]:
        reported = reply.prompt_tokens is not None
        metadata = LLMResponseMetadata(
            id=f"scripted-{id(reply):x}",
            model=reply.model or request.model,
            prompt_tokens=reply.prompt_tokens or 0,
            completion_tokens=(reply.completion_tokens or 0) if reported else 0,
            cached_tokens=reply.cached_tokens,
            reasoning_tokens=reply.reasoning_tokens,
            finish_reason="tool_calls" if reply.tool_calls else "stop",
            time_to_first_token_ms=first_token_ms,
        )
        return metadata, reported

    async def complete(self, request: ChatRequest) -> Completion:
        """The scripted reply, after its delay; or its error."""
        reply = self._next(request)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        metadata, reported = self._metadata(reply, request, None)
        calls = tuple(call.to_call() for call in reply.tool_calls)
        return Completion(reply.text, metadata, reported, calls)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[str | StreamEnd, None]:
        """The scripted reply word by word, then its metadata with the time to first token."""
        reply = self._next(request)
        started = time.perf_counter()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        first_token_ms: int | None = None
        words = reply.text.split(" ") if reply.text or not reply.tool_calls else []
        for index, word in enumerate(words):
            if first_token_ms is None:
                first_token_ms = int((time.perf_counter() - started) * 1000)
            elif reply.piece_delay:
                await asyncio.sleep(reply.piece_delay)
            yield word if index == len(words) - 1 else word + " "
        if first_token_ms is None:  # only tool calls: they are the first tokens
            first_token_ms = int((time.perf_counter() - started) * 1000)
        metadata, reported = self._metadata(reply, request, first_token_ms)
        calls = tuple(call.to_call() for call in reply.tool_calls)
        yield StreamEnd(metadata, reported, calls)
