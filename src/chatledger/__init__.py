"""chatledger: a durable, queryable memory of LLM agent conversations and a ledger of API calls."""

from __future__ import annotations

import logging

from chatledger import sync
from chatledger.entities import (
    Agent,
    AgentConfig,
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    PriceDetails,
    Provider,
    QueryFilter,
    TokenDetails,
    ToolCallContent,
    ToolResultContent,
    UsageBucket,
    UsageStatistics,
)
from chatledger.errors import (
    ConstraintError,
    NotFoundError,
    PersistenceError,
    QueryError,
    SerializationError,
    StoreConnectionError,
)
from chatledger.ids import uuid7
from chatledger.pricing import (
    GenaiPricesRegistry,
    ModelPrice,
    PricingRegistry,
    StaticPricingRegistry,
    default_pricing_registry,
)
from chatledger.stores import (
    AgentStore,
    ApiCallStore,
    InMemoryStore,
    MessageStore,
    PersistenceStore,
    ProviderStore,
    RecordKind,
    SessionStore,
    connect,
)
from chatledger.stores.sqlite import SqliteStore

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0.dev0"

__all__ = [
    # entities
    "Agent",
    "AgentConfig",
    "ApiCallStatus",
    "ChatSession",
    "LLMApiCall",
    "LLMMessage",
    "MessageContent",
    "MessageRole",
    "PriceDetails",
    "Provider",
    "QueryFilter",
    "TokenDetails",
    "ToolCallContent",
    "ToolResultContent",
    "UsageBucket",
    "UsageStatistics",
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
    "PersistenceStore",
    "ProviderStore",
    "RecordKind",
    "SessionStore",
    "SqliteStore",
    "connect",
    # pricing
    "GenaiPricesRegistry",
    "ModelPrice",
    "PricingRegistry",
    "StaticPricingRegistry",
    "default_pricing_registry",
    # ids and the blocking API
    "sync",
    "uuid7",
    "__version__",
]
