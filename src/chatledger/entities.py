"""The records chatledger keeps: messages, sessions, API calls, providers, agents.

Pydantic v2 models whose JSON forms match MoFA's serde forms field for field:
lowercase enums, optional fields MoFA skips are omitted when absent, and
``extra`` keys are flattened into the top level. Every model is frozen; the
``with_*`` methods return validated copies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    model_validator,
)
from pydantic.version import VERSION as PYDANTIC_VERSION

from chatledger.ids import NIL_UUID, uuid7

if TYPE_CHECKING:
    from chatledger.pricing import PricingRegistry

__all__ = [
    "Agent",
    "AgentConfig",
    "ApiCallStatus",
    "CallPage",
    "CallSort",
    "ChatSession",
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
    "tokens_per_second",
    "utc_now",
]

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1  # what a database binds as an integer
_INT32_MIN = -(2**31)
# NUMERIC(24, 10), MoFA's money column: fourteen digits before the point.
_MONEY_LIMIT = Decimal(10) ** 14
# The times every backend stores and reads back: MySQL's DATETIME starts at year
# 1000, and asyncpg turns datetime.max into PostgreSQL's 'infinity', which comes
# back naive (as datetime.min does, which the lower bound already excludes).
_EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
# Each model builds its validator on first use rather than at import (about 40 ms
# of importing this module), but only where pydantic makes that first build
# thread-safe (2.14, pydantic#13438): before, threads validating a model for
# the first time together could get its parent's validator and fail.
_DEFER_BUILD = tuple(int(part) for part in PYDANTIC_VERSION.split(".")[:2]) >= (2, 14)


def utc_now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _is_none(value: object) -> bool:
    return value is None


def _out_of_range(name: str, value: datetime) -> str:
    return (
        f"{name} {value.isoformat()} is out of range: times must lie from "
        "1000-01-01T00:00:00Z up to, not including, 9999-12-31T23:59:59.999999Z, "
        "which every backend stores and reads back"
    )


UtcDatetime = AwareDatetime
"""A timezone-aware datetime; entities normalise it to UTC, naive datetimes are refused."""

TokenCount = Annotated[int, Field(ge=0, le=_INT32_MAX)]
Int32 = Annotated[int, Field(ge=_INT32_MIN, le=_INT32_MAX)]
Money = Annotated[
    Decimal,
    Field(ge=0, lt=_MONEY_LIMIT, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]
"""An amount a money column holds: finite, not negative, below 10**14."""
CostBound = Annotated[
    Decimal,
    Field(ge=0, le=_MONEY_LIMIT, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]
"""A bound on a call's price in a filter: finite, from 0 up to what a money column holds."""
LatencyBound = Annotated[int, Field(ge=0, le=_INT64_MAX)]
"""A bound on a call's latency in a filter, in milliseconds."""
MoneyTotal = Annotated[
    Decimal,
    Field(ge=0, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]
"""A sum of amounts, which may pass what one column holds."""


def _optional(**kwargs: Any) -> Any:
    """A field that defaults to None and is left out of dumps when None (serde's skip)."""
    return Field(default=None, exclude_if=_is_none, **kwargs)


class _Entity(BaseModel):
    # NaN and Infinity in JSON values are written as the constants Python's json
    # module writes, not silently as null, so a store sees them and refuses them.
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_enum_values=False,
        ser_json_inf_nan="constants",
        defer_build=_DEFER_BUILD,
    )

    # One model-level pass instead of a validator per field: reading history
    # validates many rows, and this keeps the per-row cost down.
    _time_fields: ClassVar[tuple[str, ...]] = ()
    # Whether the times must lie in the range every backend stores (a record's
    # do; a filter's bounds need not).
    _stored_times: ClassVar[bool] = True

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._time_fields = tuple(
            name
            for name, info in cls.model_fields.items()
            if info.annotation in (UtcDatetime, UtcDatetime | None)
        )

    @model_validator(mode="after")
    def _times_to_utc(self) -> Self:
        for name in self._time_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is not UTC:
                try:
                    value = value.astimezone(UTC)
                except OverflowError:  # past year 9999 once in UTC
                    raise ValueError(_out_of_range(name, value)) from None
                object.__setattr__(self, name, value)
            if self._stored_times and not _EARLIEST <= value < _LATEST:
                raise ValueError(_out_of_range(name, value))
        return self

    def _replace(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        if self.model_extra:
            data.update(self.model_extra)
        data.update(changes)
        return type(self).model_validate(data)


class _OpenEntity(_Entity):
    """An entity whose unknown keys are kept and flattened into its JSON (serde's flatten)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    @property
    def extra(self) -> dict[str, Any]:
        """The keys beyond the named fields."""
        return dict(self.model_extra or {})


class MessageRole(StrEnum):
    """Who wrote a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ApiCallStatus(StrEnum):
    """How an LLM API call ended."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    CANCELLED = "cancelled"


class ToolCallContent(_Entity):
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: Any

    @staticmethod
    def parse_arguments(arguments: Any) -> Any:
        """Arguments as the ledger keeps them: parsed when the model wrote JSON (as MoFA does).

        Text that is not JSON is kept as written; no text at all is an empty object.
        """
        if not isinstance(arguments, str):
            return arguments
        if not arguments.strip():
            return {}
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments


class ToolResultContent(_Entity):
    """What a tool returned for one call."""

    tool_call_id: str
    content: str
    is_error: bool = False


class MessageContent(_OpenEntity):
    """A message body: text, tool calls, a tool result, and any extra keys."""

    text: str | None = _optional()
    tool_calls: list[ToolCallContent] | None = _optional()
    tool_result: ToolResultContent | None = _optional()

    @classmethod
    def from_text(cls, text: str) -> MessageContent:
        """Content holding plain text."""
        return cls(text=text)

    @classmethod
    def from_tool_calls(cls, calls: Sequence[ToolCallContent]) -> MessageContent:
        """Content holding the tool calls a model asked for."""
        return cls(tool_calls=list(calls))

    @classmethod
    def from_tool_result(cls, result: ToolResultContent) -> MessageContent:
        """Content holding one tool's result."""
        return cls(tool_result=result)


class LLMMessage(_Entity):
    """One message of a chat session."""

    id: uuid.UUID
    parent_message_id: uuid.UUID | None = _optional()
    chat_session_id: uuid.UUID
    agent_id: uuid.UUID
    content: MessageContent
    role: MessageRole
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    create_time: UtcDatetime
    update_time: UtcDatetime

    @classmethod
    def new(
        cls,
        session_id: uuid.UUID,
        agent_id: uuid.UUID,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        role: MessageRole | str,
        content: MessageContent | str,
        *,
        parent_message_id: uuid.UUID | None = None,
    ) -> LLMMessage:
        """A new message with a fresh UUIDv7 id, stamped now (linked to a parent, if given)."""
        now = utc_now()
        if isinstance(content, str):
            content = MessageContent(text=content)
        return cls(
            id=uuid7(),
            parent_message_id=parent_message_id,
            chat_session_id=session_id,
            agent_id=agent_id,
            user_id=user_id,
            tenant_id=tenant_id,
            role=role,
            content=content,
            create_time=now,
            update_time=now,
        )

    def with_parent(self, parent_id: uuid.UUID) -> LLMMessage:
        """A copy whose parent is ``parent_id``."""
        return self._replace(parent_message_id=parent_id)

    def with_tenant(self, tenant_id: uuid.UUID) -> LLMMessage:
        """A copy that belongs to ``tenant_id``."""
        return self._replace(tenant_id=tenant_id)


class TokenDetails(_OpenEntity):
    """Subsets of a token count: cached prompt tokens, reasoning completion tokens.

    ``cached_tokens`` are prompt tokens read from the provider's cache;
    ``cache_write_tokens`` are prompt tokens written to it (Anthropic's
    ``cache_creation_input_tokens``), which some providers bill above the
    input rate. Both are part of ``prompt_tokens``.
    """

    cached_tokens: TokenCount | None = _optional()
    reasoning_tokens: TokenCount | None = _optional()
    cache_write_tokens: TokenCount | None = _optional()


class PriceDetails(_OpenEntity):
    """How a call's price splits into input and output, and which price table priced it.

    ``price_table`` names the table and its version (``genai-prices 0.0.40``),
    so a price can be traced, and re-priced when a table is corrected.
    """

    input_price: Money | None = _optional()
    output_price: Money | None = _optional()
    currency: str = "USD"
    price_table: str | None = _optional(max_length=100)


class LLMApiCall(_Entity):
    """One call to an LLM API: who, which model, tokens, cost, timing and outcome.

    Token counts follow the OpenTelemetry GenAI conventions: ``prompt_tokens``
    includes cached tokens and ``completion_tokens`` includes reasoning
    tokens; the details hold those subsets.
    """

    id: uuid.UUID
    chat_session_id: uuid.UUID
    agent_id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    request_message_id: uuid.UUID
    response_message_id: uuid.UUID
    model_name: str = Field(min_length=1, max_length=100)
    prompt_tokens: TokenCount = 0
    prompt_tokens_details: TokenDetails | None = _optional()
    completion_tokens: TokenCount = 0
    completion_tokens_details: TokenDetails | None = _optional()
    total_tokens: TokenCount = 0
    total_price: Money | None = _optional()
    price_details: PriceDetails | None = _optional()
    latency_ms: Annotated[int, Field(ge=0, le=_INT32_MAX)] | None = _optional()
    time_to_first_token_ms: Annotated[int, Field(ge=0, le=_INT32_MAX)] | None = _optional()
    tokens_per_second: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = _optional()
    api_response_id: str | None = _optional(max_length=255)
    status: ApiCallStatus = ApiCallStatus.SUCCESS
    error_message: str | None = _optional()
    error_code: str | None = _optional(max_length=50)
    create_time: UtcDatetime
    update_time: UtcDatetime

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.total_tokens != self.prompt_tokens + self.completion_tokens:
            raise ValueError(
                f"total_tokens ({self.total_tokens}) must equal prompt_tokens "
                f"({self.prompt_tokens}) + completion_tokens ({self.completion_tokens})"
            )
        for name, details, total in (
            ("prompt_tokens", self.prompt_tokens_details, self.prompt_tokens),
            ("completion_tokens", self.completion_tokens_details, self.completion_tokens),
        ):
            if details is None:
                continue
            for subset in ("cached_tokens", "reasoning_tokens", "cache_write_tokens"):
                value = getattr(details, subset)
                if value is not None and value > total:
                    raise ValueError(
                        f"{name}_details.{subset} ({value}) is larger than {name} ({total})"
                    )
        if self.update_time < self.create_time:
            raise ValueError(
                f"update_time ({self.update_time.isoformat()}) is before "
                f"create_time ({self.create_time.isoformat()})"
            )
        return self

    @classmethod
    def success(
        cls,
        session_id: uuid.UUID,
        agent_id: uuid.UUID,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        request_message_id: uuid.UUID,
        response_message_id: uuid.UUID,
        model_name: str,
        prompt_tokens: int,
        completion_tokens: int,
        request_time: datetime,
        response_time: datetime,
    ) -> LLMApiCall:
        """A successful call; total, latency and tokens/s are derived."""
        latency_ms = _elapsed_ms(request_time, response_time)
        return cls(
            id=uuid7(),
            chat_session_id=session_id,
            agent_id=agent_id,
            user_id=user_id,
            tenant_id=tenant_id,
            request_message_id=request_message_id,
            response_message_id=response_message_id,
            model_name=model_name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            latency_ms=latency_ms,
            tokens_per_second=tokens_per_second(completion_tokens, latency_ms),
            status=ApiCallStatus.SUCCESS,
            create_time=request_time,
            update_time=response_time,
        )

    @classmethod
    def failed(
        cls,
        session_id: uuid.UUID,
        agent_id: uuid.UUID,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        request_message_id: uuid.UUID,
        model_name: str,
        error_message: str,
        error_code: str | None,
        request_time: datetime,
        status: ApiCallStatus = ApiCallStatus.FAILED,
    ) -> LLMApiCall:
        """A call that did not succeed; no response message, no tokens."""
        now = utc_now()
        return cls(
            id=uuid7(),
            chat_session_id=session_id,
            agent_id=agent_id,
            user_id=user_id,
            tenant_id=tenant_id,
            request_message_id=request_message_id,
            response_message_id=NIL_UUID,
            model_name=model_name,
            latency_ms=min(_elapsed_ms(request_time, max(now, request_time)), _INT32_MAX),
            status=status,
            error_message=error_message,
            error_code=error_code,
            create_time=request_time,
            update_time=max(now, request_time),
        )

    def with_api_response_id(self, api_response_id: str) -> LLMApiCall:
        """A copy carrying the provider's response id."""
        return self._replace(api_response_id=api_response_id)

    def with_price(
        self, total_price: Decimal | float | str, details: PriceDetails | None = None
    ) -> LLMApiCall:
        """A copy with a price; floats are read through their shortest decimal form."""
        return self._replace(total_price=_to_decimal(total_price), price_details=details)

    def with_auto_price(self, registry: PricingRegistry, provider: str) -> LLMApiCall:
        """A copy priced by ``registry`` for ``provider``; unchanged when it has no price."""
        price = registry.price(provider, self)
        if price is None:
            return self
        total, details = price
        return self.with_price(total, details)

    def with_time_to_first_token(self, ttft_ms: int) -> LLMApiCall:
        """A copy with the time to first token, in milliseconds."""
        return self._replace(time_to_first_token_ms=ttft_ms)

    def with_token_details(
        self, prompt: TokenDetails | None, completion: TokenDetails | None
    ) -> LLMApiCall:
        """A copy with prompt and completion token details."""
        return self._replace(prompt_tokens_details=prompt, completion_tokens_details=completion)


def tokens_per_second(
    completion_tokens: int,
    latency_ms: int | None,
    time_to_first_token_ms: int | None = None,
) -> float | None:
    """Completion tokens per second, millisecond precision.

    Streamed (``time_to_first_token_ms`` given): over the time from the first
    token to the end. Otherwise over the whole latency. None when there is
    no time to divide by; 0.0 for a call that produced no token in some time
    (MoFA's ``success``). The one rule for every recorder (which gives a
    failed call none, as MoFA's ``failed`` does) and for ``LLMApiCall.success``.
    """
    if latency_ms is None:
        return None
    generating = latency_ms
    if time_to_first_token_ms is not None:
        generating = latency_ms - time_to_first_token_ms
    if generating <= 0:
        return None
    return completion_tokens * 1000 / generating


def _elapsed_ms(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() * 1000)


def _to_decimal(value: Decimal | float | str) -> Decimal | str:
    """A float through its shortest decimal form; text is left to the field to parse.

    The field refuses what is not a finite amount below 10**14 (``"abc"``,
    ``"1e400"``, NaN) with a ValidationError naming ``total_price``.
    """
    return Decimal(repr(value)) if isinstance(value, float) else value


class ChatSession(_Entity):
    """A conversation between one user and one agent."""

    id: uuid.UUID
    user_id: uuid.UUID
    agent_id: uuid.UUID
    tenant_id: uuid.UUID
    title: str | None = Field(default=None, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)
    create_time: UtcDatetime
    update_time: UtcDatetime

    @classmethod
    def new(cls, user_id: uuid.UUID, agent_id: uuid.UUID) -> ChatSession:
        """A new session with a fresh id and the nil tenant, stamped now."""
        now = utc_now()
        return cls(
            id=uuid7(),
            user_id=user_id,
            agent_id=agent_id,
            tenant_id=NIL_UUID,
            create_time=now,
            update_time=now,
        )

    def with_title(self, title: str) -> ChatSession:
        """A copy with ``title``."""
        return self._replace(title=title)

    def with_id(self, session_id: uuid.UUID) -> ChatSession:
        """A copy with ``session_id`` as its id."""
        return self._replace(id=session_id)

    def with_tenant_id(self, tenant_id: uuid.UUID) -> ChatSession:
        """A copy that belongs to ``tenant_id``."""
        return self._replace(tenant_id=tenant_id)

    def with_metadata(self, key: str, value: Any) -> ChatSession:
        """A copy whose metadata maps ``key`` to ``value``."""
        return self._replace(metadata={**self.metadata, key: value})


class QueryFilter(_Entity):
    """Which API calls a query, a statistic or a breakdown covers.

    The time range is half-open: ``start_time <= create_time < end_time``.
    """

    _stored_times: ClassVar[bool] = False  # any bound is fine: it is only compared

    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    status: ApiCallStatus | None = None
    model_name: str | None = None
    offset: int | None = Field(default=None, ge=0, le=_INT64_MAX)
    limit: int | None = Field(default=None, ge=0, le=_INT64_MAX)
    error_code: str | None = None
    min_cost: CostBound | None = None
    max_cost: CostBound | None = None
    min_latency_ms: LatencyBound | None = None
    max_latency_ms: LatencyBound | None = None

    def tenant(self, tenant_id: uuid.UUID) -> QueryFilter:
        """Only calls of ``tenant_id``."""
        return self._replace(tenant_id=tenant_id)

    def user(self, user_id: uuid.UUID) -> QueryFilter:
        """Only calls of ``user_id``."""
        return self._replace(user_id=user_id)

    def session(self, session_id: uuid.UUID) -> QueryFilter:
        """Only calls of ``session_id``."""
        return self._replace(session_id=session_id)

    def agent(self, agent_id: uuid.UUID) -> QueryFilter:
        """Only calls of ``agent_id``."""
        return self._replace(agent_id=agent_id)

    def time_range(self, start: datetime | None, end: datetime | None) -> QueryFilter:
        """Only calls with ``start <= create_time < end``; either bound may be None."""
        return self._replace(start_time=start, end_time=end)

    def with_status(self, status: ApiCallStatus | str) -> QueryFilter:
        """Only calls that ended with ``status``."""
        return self._replace(status=status)

    def model(self, model_name: str) -> QueryFilter:
        """Only calls to ``model_name``."""
        return self._replace(model_name=model_name)

    def paginate(self, offset: int, limit: int) -> QueryFilter:
        """Skip ``offset`` calls and return at most ``limit``."""
        return self._replace(offset=offset, limit=limit)

    def with_error_code(self, code: str) -> QueryFilter:
        """Only calls that failed with error code ``code``."""
        return self._replace(error_code=code)

    def cost_range(
        self, min_cost: Decimal | float | str | None, max_cost: Decimal | float | str | None
    ) -> QueryFilter:
        """Only priced calls with ``min_cost <= total_price <= max_cost``; either may be None."""
        return self._replace(
            min_cost=None if min_cost is None else _to_decimal(min_cost),
            max_cost=None if max_cost is None else _to_decimal(max_cost),
        )

    def latency_range(self, min_ms: int | None, max_ms: int | None) -> QueryFilter:
        """Only calls with ``min_ms <= latency_ms <= max_ms``; either bound may be None."""
        return self._replace(min_latency_ms=min_ms, max_latency_ms=max_ms)


class UsageStatistics(_Entity):
    """Totals, averages, latency and time-to-first-token percentiles over a set of API calls.

    ``failed_count`` is every call that did not succeed. Averages and
    percentiles skip missing values and are None when there are none;
    ``total_cost`` is None when no call has a price. Cached and cache-write
    tokens are part of the prompt tokens, reasoning tokens of the completion
    tokens. Percentiles are exact, or read from the stores' rollup histograms
    within ``chatledger.stores.statistics.PERCENTILE_RELATIVE_ERROR`` (4.9%)
    when a statistic over many calls is answered from the rollups (values from
    10 minutes on share one bucket there, read as 10 minutes).
    """

    total_calls: int = 0
    success_count: int = 0
    failed_count: int = 0
    total_tokens: int = 0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    total_cost: MoneyTotal | None = None
    avg_latency_ms: float | None = None
    avg_tokens_per_second: float | None = None
    status_counts: dict[ApiCallStatus, int] = Field(
        default_factory=lambda: dict.fromkeys(ApiCallStatus, 0)
    )
    total_cached_tokens: int = 0
    total_reasoning_tokens: int = 0
    total_cache_write_tokens: int = 0
    avg_time_to_first_token_ms: float | None = None
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    p50_time_to_first_token_ms: float | None = None
    p95_time_to_first_token_ms: float | None = None
    p99_time_to_first_token_ms: float | None = None


class UsageBucket(_Entity):
    """Statistics for one group (and time bucket) of a usage breakdown."""

    _stored_times: ClassVar[bool] = False

    keys: dict[str, Any]
    bucket_start: UtcDatetime | None = None
    stats: UsageStatistics


class CallSort(StrEnum):
    """The order of a page of API calls.

    Ties are broken by create_time, then id, in the same direction; calls
    without a value for the key (no price, no latency) come after every call
    with one, in both directions.
    """

    NEWEST = "newest"
    OLDEST = "oldest"
    COST_DESC = "cost_desc"
    COST_ASC = "cost_asc"
    LATENCY_DESC = "latency_desc"
    LATENCY_ASC = "latency_asc"
    TOKENS_DESC = "tokens_desc"
    TOKENS_ASC = "tokens_asc"


class CallPage(_Entity):
    """One page of API calls and the cursor of the next page (None on the last)."""

    calls: list[LLMApiCall]
    next_cursor: str | None = None


class SessionQuery(_Entity):
    """Which sessions a search covers.

    ``text`` is a case-insensitive substring of the session's title or of
    any of its messages' text (``%``, ``_`` and a backslash match themselves;
    an empty text is no condition). The time range is half-open, on the
    session's ``create_time``: ``start_time <= create_time < end_time``.
    """

    _stored_times: ClassVar[bool] = False

    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    text: str | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None

    @model_validator(mode="after")
    def _no_empty_text(self) -> Self:
        if self.text == "":
            object.__setattr__(self, "text", None)
        return self


class SessionPage(_Entity):
    """One page of sessions, newest first, and the cursor of the next page (None on the last)."""

    sessions: list[ChatSession]
    next_cursor: str | None = None


class Provider(_Entity):
    """An LLM provider account of a tenant; its API key never shows in repr, logs or errors."""

    # A validation error would otherwise echo the whole input, key included.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    provider_name: str = Field(min_length=1, max_length=255)
    provider_type: str = Field(max_length=100)
    api_base: str
    api_key: SecretStr
    enabled: bool = True
    create_time: UtcDatetime
    update_time: UtcDatetime


class Agent(_Entity):
    """An agent definition: model, provider, prompt and generation settings."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    agent_code: str = Field(min_length=1, max_length=255)
    agent_name: str = Field(max_length=255)
    agent_order: Int32 = 0
    agent_status: bool = True
    context_limit: Int32 | None = None
    custom_params: Any | None = None
    max_completion_tokens: Int32 | None = None
    model_name: str = Field(max_length=255)
    provider_id: uuid.UUID
    response_format: str | None = Field(default=None, max_length=50)
    system_prompt: str
    temperature: float | None = Field(default=None, allow_inf_nan=False)
    stream: bool | None = None
    thinking: Any | None = None
    create_time: UtcDatetime
    update_time: UtcDatetime


class AgentConfig(_Entity):
    """An agent together with its provider."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    provider: Provider
    agent: Agent


# --- erasure (issue 14) ---------------------------------------------------------------------


class ErasureReport(_Entity):
    """What erasing one user's or one tenant's records did, or would do in a dry run.

    Exactly one of ``user_id`` and ``tenant_id`` names whose records were
    erased. Counted in the one transaction that erased them: sessions and
    messages deleted, API calls kept for the ledger but anonymised (user,
    session and message ids set to the nil UUID, error message and provider
    response id cleared; tokens, cost, model, times, status and tenant
    unchanged), and for a tenant its providers and agents deleted. A dry run
    counts what erasing would touch and changes nothing.
    """

    user_id: uuid.UUID | None = None
    tenant_id: uuid.UUID | None = None
    dry_run: bool = False
    sessions_deleted: int = 0
    messages_deleted: int = 0
    api_calls_anonymised: int = 0
    providers_deleted: int = 0
    agents_deleted: int = 0

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        if (self.user_id is None) == (self.tenant_id is None):
            raise ValueError("an erasure report names either a user_id or a tenant_id")
        return self

    @property
    def records_touched(self) -> int:
        """Every record the erasure deleted or anonymised (0: there was nothing to erase)."""
        return (
            self.sessions_deleted
            + self.messages_deleted
            + self.api_calls_anonymised
            + self.providers_deleted
            + self.agents_deleted
        )


__all__ += ["ErasureReport"]
