"""chatledger: a durable, queryable memory of LLM agent conversations and a ledger of API calls.

Every public name is importable from here, and each is imported on first
use (PEP 562): ``import chatledger`` loads neither pydantic nor a store, a
driver or an SDK, so a program (or ``chatledger --help``) pays only for what it
touches. ``from chatledger import LLMMessage`` loads the entities;
``chatledger.SqliteStore`` loads the SQLite store. Type checkers and IDEs
read the imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from chatledger import _lazy

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time each name loads on first use
    from chatledger import sync
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
        MySqlStore,
        PersistenceStore,
        PostgresStore,
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

# Where each public name is defined, by the module it is loaded from on first use.
_LAZY = _lazy.table(
    __name__,
    {
        "chatledger.agent": (
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
        ),
        "chatledger.entities": (
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
        ),
        "chatledger.errors": (
            "ConstraintError",
            "NotFoundError",
            "PersistenceError",
            "QueryError",
            "SerializationError",
            "StoreConnectionError",
        ),
        "chatledger.ids": ("NIL_UUID", "keyed_uuid", "uuid7"),
        "chatledger.plugin": (
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
        "chatledger.pricing": (
            "GenaiPricesRegistry",
            "ModelPrice",
            "PricingRegistry",
            "StaticPricingRegistry",
            "default_pricing_registry",
        ),
        "chatledger.recording": (
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
            "spool_directory_for",
        ),
        # The function, not the submodule of that name.
        "chatledger.recording.scope": ("scope",),
        "chatledger.stores": (
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
        ),
        "chatledger.usage": (
            "CHARS_PER_TOKEN",
            "count_tokens",
            "error_code",
            "status_for_error",
            "tokens_per_second",
        ),
    },
    # ``sync``, the blocking API, is a submodule; so are the modules the package
    # imported eagerly before, which a program may reach as attributes
    # (``chatledger.stores.backend_of`` after ``import chatledger``).
    submodules=("entities", "errors", "ids", "pricing", "recording", "stores", "sync", "usage"),
)

if not TYPE_CHECKING:  # type checkers read the imports above, and flag unknown names

    def __getattr__(name: str) -> Any:
        return _lazy.load(globals(), _LAZY, name)

    def __dir__() -> list[str]:
        return _lazy.names(globals(), _LAZY)
