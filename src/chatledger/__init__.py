"""chatledger: a durable, queryable memory of LLM agent conversations and a ledger of API calls.

Every public name is importable from here. The entities, errors, pricing,
the store protocols, the in-memory and SQLite stores are imported with the
package with the recorder and usage accounting; the server stores, the
plugins and the agent on first use (PEP 562), so ``import chatledger``
loads no database driver or SDK.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from chatledger import _lazy, sync
from chatledger.entities import (
    Agent,
    AgentConfig,
    ApiCallStatus,
    CallPage,
    CallSort,
    ChatSession,
    ErasureReport,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    PriceDetails,
    Provider,
    QueryFilter,
    SessionPage,
    SessionQuery,
    TokenDetails,
    ToolCallContent,
    ToolResultContent,
    UsageBucket,
    UsageStatistics,
    utc_now,
)
from chatledger.errors import (
    ConstraintError,
    NotFoundError,
    PersistenceError,
    QueryError,
    SerializationError,
    StoreConnectionError,
)
from chatledger.ids import NIL_UUID, keyed_uuid, uuid7
from chatledger.pricing import (
    GenaiPricesRegistry,
    ModelPrice,
    PricingRegistry,
    StaticPricingRegistry,
    default_pricing_registry,
)
from chatledger.recording import (
    CLOSE_TIMEOUT,
    DEFAULT_SPOOL_LIMIT,
    KEY_NAMESPACE,
    CallFields,
    CallUsage,
    DeadLetter,
    FileSpool,
    MemorySpool,
    Recorder,
    Scope,
    Spool,
    SpoolError,
    current_scope,
    default_spool_root,
    id_for_key,
    spool_directory_for,
)
from chatledger.recording.scope import scope  # the function, not the submodule of that name
from chatledger.stores import (
    AgentStore,
    ApiCallStore,
    InMemoryStore,
    MessageStore,
    PersistenceStore,
    ProviderStore,
    RecordKind,
    SessionStore,
    SqliteStore,
    connect,
)
from chatledger.usage import (
    CHARS_PER_TOKEN,
    count_tokens,
    error_code,
    status_for_error,
    tokens_per_second,
)

if TYPE_CHECKING:
    from chatledger.agent import (
        ChatMessage,
        ChatRequest,
        Completion,
        FunctionToolExecutor,
        LLMAgent,
        LLMAgentBuilder,
        LLMProvider,
        OpenAIProvider,
        ScriptedProvider,
        ScriptedReply,
        ScriptedToolCall,
        StreamEnd,
        Tool,
        ToolCall,
        ToolError,
        ToolExecutor,
        ToolRoundsExceededError,
    )
    from chatledger.plugin import (
        AgentPlugin,
        LLMAgentEventHandler,
        LLMResponseMetadata,
        PersistenceContext,
        PersistencePlugin,
        PluginContext,
        PluginMetadata,
        PluginState,
        PluginStateError,
        PluginType,
    )
    from chatledger.stores import MySqlStore, PostgresStore

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0.dev0"

__all__ = [
    # entities
    "Agent",
    "AgentConfig",
    "ApiCallStatus",
    "CallPage",
    "CallSort",
    "ChatSession",
    "ErasureReport",
    "LLMApiCall",
    "LLMMessage",
    "MessageContent",
    "MessageRole",
    "PriceDetails",
    "Provider",
    "QueryFilter",
    "SessionPage",
    "SessionQuery",
    "TokenDetails",
    "ToolCallContent",
    "ToolResultContent",
    "UsageBucket",
    "UsageStatistics",
    "utc_now",
    # errors
    "ConstraintError",
    "NotFoundError",
    "PersistenceError",
    "QueryError",
    "SerializationError",
    "StoreConnectionError",
    # stores
    "AgentStore",
    "ApiCallStore",
    "InMemoryStore",
    "MessageStore",
    "MySqlStore",
    "PersistenceStore",
    "PostgresStore",
    "ProviderStore",
    "RecordKind",
    "SessionStore",
    "SqliteStore",
    "connect",
    # the plugin kernel, chat events, persistence plugin and context
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
    # the agent and its providers
    "ChatMessage",
    "ChatRequest",
    "Completion",
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
    "FunctionToolExecutor",
    # recording from any framework
    "CLOSE_TIMEOUT",
    "CallFields",
    "CallUsage",
    "DEFAULT_SPOOL_LIMIT",
    "DeadLetter",
    "FileSpool",
    "KEY_NAMESPACE",
    "MemorySpool",
    "Recorder",
    "Scope",
    "Spool",
    "SpoolError",
    "current_scope",
    "default_spool_root",
    "id_for_key",
    "scope",
    "spool_directory_for",
    # usage accounting
    "CHARS_PER_TOKEN",
    "count_tokens",
    "error_code",
    "status_for_error",
    "tokens_per_second",
    # pricing
    "GenaiPricesRegistry",
    "ModelPrice",
    "PricingRegistry",
    "StaticPricingRegistry",
    "default_pricing_registry",
    # ids and the blocking API
    "NIL_UUID",
    "keyed_uuid",
    "sync",
    "uuid7",
    "__version__",
]

# Imported on first use: name -> the public package that exports it.
_LAZY = {
    **dict.fromkeys(("MySqlStore", "PostgresStore"), "chatledger.stores"),
    **dict.fromkeys(
        (
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
        ),
        "chatledger.plugin",
    ),
    **dict.fromkeys(
        (
            "ChatMessage",
            "ChatRequest",
            "Completion",
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
            "FunctionToolExecutor",
        ),
        "chatledger.agent",
    ),
}

if not TYPE_CHECKING:  # type checkers read the imports above, and flag unknown names

    def __getattr__(name: str) -> Any:
        return _lazy.load(globals(), _LAZY, name)

    def __dir__() -> list[str]:
        return _lazy.names(globals(), _LAZY)
