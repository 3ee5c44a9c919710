"""Plugins around an agent's chats: the kernel, the chat events, usage accounting."""

from __future__ import annotations

from chatledger.plugin.events import LLMAgentEventHandler, LLMResponseMetadata
from chatledger.plugin.kernel import (
    AgentPlugin,
    PluginContext,
    PluginMetadata,
    PluginState,
    PluginStateError,
    PluginType,
)

__all__ = [
    "AgentPlugin",
    "LLMAgentEventHandler",
    "LLMResponseMetadata",
    "PluginContext",
    "PluginMetadata",
    "PluginState",
    "PluginStateError",
    "PluginType",
]
