"""What an agent talks to: the provider protocol, and a scripted provider for offline work.

A provider turns a :class:`ChatRequest` into a reply, either whole
(:meth:`LLMProvider.complete`) or as a stream of text pieces followed by what
is known about the response (:meth:`LLMProvider.stream`). Both report an
:class:`~chatledger.plugin.events.LLMResponseMetadata`; a provider that got
no usage from its API leaves the token counts at zero and ``usage_reported``
false, and the agent counts them itself.

:class:`ScriptedProvider` answers from a script: replies, token counts,
delays and errors, in order. It needs no network and no key, so demos and
tests run anywhere and always the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from chatledger.plugin.events import LLMResponseMetadata

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "LLMProvider",
    "ScriptedProvider",
    "ScriptedReply",
    "StreamEnd",
]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation sent to the model."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the agent asks a provider for."""

    model: str
    messages: Sequence[ChatMessage]
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole reply and what is known about it."""

    text: str
    metadata: LLMResponseMetadata
    usage_reported: bool = True


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of a stream: what is known about the response."""

    metadata: LLMResponseMetadata
    usage_reported: bool = True


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
class ScriptedReply:
    """One scripted answer: its text, what usage to report, how long it takes, or an error.

    With ``prompt_tokens`` None the provider reports no usage (as some APIs
    do), so the agent counts tokens itself.
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
            finish_reason="stop",
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
        return Completion(reply.text, metadata, reported)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[str | StreamEnd, None]:
        """The scripted reply word by word, then its metadata with the time to first token."""
        reply = self._next(request)
        started = time.perf_counter()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        first_token_ms: int | None = None
        words = reply.text.split(" ")
        for index, word in enumerate(words):
            if first_token_ms is None:
                first_token_ms = int((time.perf_counter() - started) * 1000)
            elif reply.piece_delay:
                await asyncio.sleep(reply.piece_delay)
            yield word if index == len(words) - 1 else word + " "
        metadata, reported = self._metadata(reply, request, first_token_ms or 0)
        yield StreamEnd(metadata, reported)
