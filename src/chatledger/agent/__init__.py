"""The agent (``LLMAgent``, built by ``LLMAgentBuilder``) and the providers it talks to."""

from __future__ import annotations

from chatledger.agent.agent import LLMAgent, LLMAgentBuilder
from chatledger.agent.openai_provider import OpenAIProvider
from chatledger.agent.providers import (
    ChatMessage,
    ChatRequest,
    Completion,
    LLMProvider,
    ScriptedProvider,
    ScriptedReply,
    StreamEnd,
)

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "LLMAgent",
    "LLMAgentBuilder",
    "LLMProvider",
    "OpenAIProvider",
    "ScriptedProvider",
    "ScriptedReply",
    "StreamEnd",
]
