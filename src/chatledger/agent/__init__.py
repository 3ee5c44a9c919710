"""The agent (``LLMAgent``, built by ``LLMAgentBuilder``), the providers it talks to, its tools.

``OpenAIProvider`` is imported on first use, like the ``openai`` SDK it needs
(``pip install 'chatledger[openai]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatledger import _lazy
from chatledger.agent.agent import LLMAgent, LLMAgentBuilder
from chatledger.agent.providers import (
    ChatMessage,
    ChatRequest,
    Completion,
    LLMProvider,
    ScriptedProvider,
    ScriptedReply,
    ScriptedToolCall,
    StreamEnd,
)
from chatledger.agent.tools import (
    FunctionToolExecutor,
    Tool,
    ToolCall,
    ToolError,
    ToolExecutor,
    ToolRoundsExceededError,
)

if TYPE_CHECKING:
    from chatledger.agent.openai_provider import OpenAIProvider

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "FunctionToolExecutor",
    "LLMAgent",
    "LLMAgentBuilder",
    "LLMProvider",
    "OpenAIProvider",
    "ScriptedProvider",
    "ScriptedReply",
    "ScriptedToolCall",
    "StreamEnd",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolExecutor",
    "ToolRoundsExceededError",
]

_LAZY = {"OpenAIProvider": "chatledger.agent.openai_provider"}

_lazy.attach(globals(), _LAZY)
