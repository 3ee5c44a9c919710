"""Events around every chat turn: what an agent tells its plugins and handlers.

:class:`LLMAgentEventHandler` has one coroutine per moment of a chat; each
may return a replacement text (``None`` keeps the original). The default
implementation of every method does nothing, so a handler overrides only
the moments it cares about. The agent calls the richest form of each hook
(``before_chat_with_model``, ``after_chat_with_metadata``,
``on_error_with_metadata``), whose defaults call the plain ones.

With tools, one chat turn takes several model round trips. A round trip that
ends with tool calls is told to :meth:`LLMAgentEventHandler.after_chat_with_tool_calls`;
each call is offered to :meth:`~LLMAgentEventHandler.on_tool_call` (whose
reply stands in for the tool's result, as in MoFA) and its result is told to
:meth:`~LLMAgentEventHandler.on_tool_result`; the round trip that answers is
told to ``after_chat_with_metadata`` as usual. :class:`LLMResponseMetadata` is what the agent
knows about a completed response: the model that answered, the token counts
the provider reported (or that were estimated), and the stream's timing.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from chatledger.entities import ToolCallContent, ToolResultContent

__all__ = ["LLMAgentEventHandler", "LLMResponseMetadata"]


class LLMResponseMetadata(BaseModel):
    """What is known about one LLM response, following the OpenTelemetry GenAI conventions.

    ``prompt_tokens`` includes ``cached_tokens`` and ``completion_tokens``
    includes ``reasoning_tokens``. ``time_to_first_token_ms`` is set for
    streamed responses only. ``estimated`` is true when the provider reported
    no usage and the counts were computed locally.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = None
    model: str
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cached_tokens: int | None = Field(default=None, ge=0)
    reasoning_tokens: int | None = Field(default=None, ge=0)
    finish_reason: str | None = None
    time_to_first_token_ms: int | None = Field(default=None, ge=0)
    estimated: bool = False


class LLMAgentEventHandler:
    """Hooks around a chat turn; override the ones you need, each may rewrite the text."""

    async def before_chat(self, message: str) -> str | None:
        """Before the user's ``message`` is sent; return a replacement or None."""
        return None

    async def before_chat_with_model(self, message: str, model: str) -> str | None:
        """Before ``message`` is sent to ``model``; by default, :meth:`before_chat`.

        The agent calls this one; a handler that only cares about the text
        overrides :meth:`before_chat` instead.
        """
        return await self.before_chat(message)

    async def after_chat(self, response: str) -> str | None:
        """After the reply arrived; return a replacement or None."""
        return None

    async def after_chat_with_metadata(
        self, response: str, metadata: LLMResponseMetadata
    ) -> str | None:
        """After the reply arrived, with what is known about it; by default, :meth:`after_chat`."""
        return await self.after_chat(response)

    async def after_chat_with_tool_calls(
        self, response: str, tool_calls: Sequence[ToolCallContent], metadata: LLMResponseMetadata
    ) -> None:
        """After a model round trip that asks for tools: any text it said, its calls, its metadata.

        The agent runs the calls next, then asks the model again.
        """

    async def on_tool_call(self, name: str, arguments: str) -> str | None:
        """Before tool ``name`` runs with ``arguments`` (JSON text); a reply stands in for it."""
        return None

    async def on_tool_result(self, call: ToolCallContent, result: ToolResultContent) -> None:
        """After a tool call's result is known (``result.is_error`` when the tool failed)."""

    async def on_error(self, error: BaseException) -> str | None:
        """When the call failed; return a reply to give the user instead, or None."""
        return None

    async def on_error_with_metadata(
        self, error: BaseException, metadata: LLMResponseMetadata | None
    ) -> str | None:
        """When the call failed, with what had arrived (a cut stream's id); by default, on_error.

        ``metadata`` is None when nothing of the response arrived.
        """
        return await self.on_error(error)
