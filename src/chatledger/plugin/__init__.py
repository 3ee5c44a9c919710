"""Plugins around an agent's chats: the kernel, the chat events, the persistence plugin."""

from __future__ import annotations

from chatledger.plugin.context import PersistenceContext
from chatledger.plugin.events import LLMAgentEventHandler, LLMResponseMetadata
from chatledger.plugin.kernel import (
    AgentPlugin,
    PluginContext,
    PluginMetadata,
    PluginState,
    PluginStateError,
    PluginType,
)
from chatledger.plugin.persistence import PersistencePlugin

__all__ = [
    "AgentPlugin",
    "LLMAgentEventHandler",
    "LLMResponseMetadata",
    "PersistenceContext",
    "PersistencePlugin",
    "PluginContext",
    "PluginMetadata",
    "PluginState",
    "PluginStateError",
    "PluginType",
]
