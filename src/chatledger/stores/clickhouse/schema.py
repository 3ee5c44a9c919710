"""The ledger's tables in ClickHouse, and how a record becomes one of their rows.

- ``chatledger_api_calls``: every API call, one row per state. A
  ``ReplacingMergeTree(revision, is_deleted)`` ordered by tenant, day and id
  and partitioned by month. chatledger writes a call once, in its final
  state; a deletion is a second row of the same call with a higher
  ``revision`` and ``is_deleted = 1`` (a tombstone), which ``FINAL`` reads
  take as the call's end.
- ``chatledger_usage_hourly``: the rollup, an ``AggregatingMergeTree`` of
  sums per UTC hour, tenant, user, agent, model and status, with latency and
  time-to-first-token histograms (counts per bucket of
  :data:`chatledger.stores.statistics.BUCKET_LOWS`). A materialised view
  fills it from every insert into the calls: a call counts +1, its
  tombstone -1, so a deletion takes the call out again.
- ``chatledger_messages`` (only when the ledger mirrors messages): messages,
  a ``ReplacingMergeTree(revision)``; deleted with ``DELETE FROM``.

Each row carries what statistics need ready-made, computed once in Python by
the functions every backend uses: each call's cost as a money column holds
it (:func:`~chatledger.stores.statistics.call_cost`), the UTC hour, day, week
and month it falls in (:func:`~chatledger.stores.statistics.truncate_to_bucket`,
exact for any year chatledger accepts, where ClickHouse's own date functions
stop at 2106), and the histogram bucket of its latency and time to first
token (:func:`~chatledger.stores.statistics.histogram_bucket`).

On a cluster (``cluster="name"``) every statement runs ``ON CLUSTER`` and the
engines are their ``Replicated…`` twins, which deduplicate inserts on their
own (``replicated_deduplication_window``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatledger.entities import ApiCallStatus, LLMApiCall, LLMMessage
from chatledger.stores.statistics import call_cost, histogram_bucket, truncate_to_bucket

__all__ = [
    "CALL_COLUMNS",
    "DEDUPLICATION_WINDOW",
    "MESSAGE_COLUMNS",
    "STATUSES",
    "LedgerTables",
    "call_row",
    "message_row",
    "schema_statements",
    "time_text",
]

DEDUPLICATION_WINDOW = 10_000
"""How many recent inserts each table remembers the deduplication tokens of."""

STATUSES = tuple(status.value for status in ApiCallStatus)
"""Every call status, in ``UsageTotals.status_counts`` order."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# name, ClickHouse type
_CALL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "UUID"),
    ("chat_session_id", "UUID"),
    ("agent_id", "UUID"),
    ("user_id", "UUID"),
    ("tenant_id", "UUID"),
    ("request_message_id", "UUID"),
    ("response_message_id", "UUID"),
    ("model_name", "LowCardinality(String)"),
    ("status", "LowCardinality(String)"),
    ("error_message", "Nullable(String)"),
    ("error_code", "Nullable(String)"),
    ("prompt_tokens", "UInt32"),
    ("completion_tokens", "UInt32"),
    ("total_tokens", "UInt32"),
    ("prompt_tokens_details", "Nullable(String)"),
    ("completion_tokens_details", "Nullable(String)"),
    ("cached_tokens", "UInt32"),
    ("cache_write_tokens", "UInt32"),
    ("reasoning_tokens", "UInt32"),
    ("total_price", "Nullable(Decimal(38, 10))"),
    ("price_details", "Nullable(String)"),
    ("latency_ms", "Nullable(UInt32)"),
    ("time_to_first_token_ms", "Nullable(UInt32)"),
    ("tokens_per_second", "Nullable(Float64)"),
    ("api_response_id", "Nullable(String)"),
    ("create_time", "DateTime64(6, 'UTC')"),
    ("update_time", "DateTime64(6, 'UTC')"),
    ("hour_start", "DateTime64(0, 'UTC')"),
    ("day_start", "DateTime64(0, 'UTC')"),
    ("week_start", "DateTime64(0, 'UTC')"),
    ("month_start", "DateTime64(0, 'UTC')"),
    ("latency_bucket", "Nullable(UInt16)"),
    ("ttft_bucket", "Nullable(UInt16)"),
    ("revision", "UInt64"),
    ("is_deleted", "UInt8"),
)
CALL_COLUMNS = tuple(name for name, _ in _CALL_COLUMNS)
"""The columns of ``chatledger_api_calls``, in the order rows are written."""

_MESSAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "UUID"),
    ("parent_message_id", "Nullable(UUID)"),
    ("chat_session_id", "UUID"),
    ("agent_id", "UUID"),
    ("user_id", "UUID"),
    ("tenant_id", "UUID"),
    ("role", "LowCardinality(String)"),
    ("content", "String"),
    ("create_time", "DateTime64(6, 'UTC')"),
    ("update_time", "DateTime64(6, 'UTC')"),
    ("revision", "UInt64"),
)
MESSAGE_COLUMNS = tuple(name for name, _ in _MESSAGE_COLUMNS)
"""The columns of ``chatledger_messages``."""

# The rollup's keys (its sort key: the bucket starts ride along, one per hour) and sums.
_ROLLUP_KEYS: tuple[tuple[str, str], ...] = (
    ("tenant_id", "UUID"),
    ("hour_start", "DateTime64(0, 'UTC')"),
    ("user_id", "UUID"),
    ("agent_id", "UUID"),
    ("model_name", "LowCardinality(String)"),
    ("status", "LowCardinality(String)"),
    ("day_start", "DateTime64(0, 'UTC')"),
    ("week_start", "DateTime64(0, 'UTC')"),
    ("month_start", "DateTime64(0, 'UTC')"),
)
# name, type of the sum, what one call row adds (times ``sign``: +1, or -1 for a tombstone)
_ROLLUP_SUMS: tuple[tuple[str, str, str], ...] = (
    ("calls", "Int64", "sign"),
    ("prompt_tokens", "Int64", "sign * prompt_tokens"),
    ("completion_tokens", "Int64", "sign * completion_tokens"),
    ("total_tokens", "Int64", "sign * total_tokens"),
    ("cached_tokens", "Int64", "sign * cached_tokens"),
    ("cache_write_tokens", "Int64", "sign * cache_write_tokens"),
    ("reasoning_tokens", "Int64", "sign * reasoning_tokens"),
    ("priced_calls", "Int64", "if(total_price IS NULL, 0, sign)"),
    ("cost", "Decimal(38, 10)", "sign * ifNull(total_price, toDecimal128(0, 10))"),
    ("latency_sum", "Int64", "sign * ifNull(latency_ms, 0)"),
    ("latency_count", "Int64", "if(latency_ms IS NULL, 0, sign)"),
    ("ttft_sum", "Int64", "sign * ifNull(time_to_first_token_ms, 0)"),
    ("ttft_count", "Int64", "if(time_to_first_token_ms IS NULL, 0, sign)"),
    ("tps_sum", "Float64", "sign * ifNull(tokens_per_second, 0)"),
    ("tps_count", "Int64", "if(tokens_per_second IS NULL, 0, sign)"),
)
# A call without a value adds 0 to bucket 0, which counts nothing.
_HISTOGRAMS = (
    ("latency_histogram", "latency_bucket"),
    ("ttft_histogram", "ttft_bucket"),
)


@dataclass(frozen=True, slots=True)
class LedgerTables:
    """The qualified names of the ledger's tables in ``database``."""

    database: str

    def __post_init__(self) -> None:
        """Refuse a database name that would need quoting (it is written into SQL)."""
        if not _NAME.fullmatch(self.database):
            raise ValueError(
                f"ClickHouse database name {self.database!r}: use letters, digits and _ only"
            )

    @property
    def calls(self) -> str:
        """The API calls."""
        return f"{self.database}.chatledger_api_calls"

    @property
    def rollup(self) -> str:
        """The hourly rollup."""
        return f"{self.database}.chatledger_usage_hourly"

    @property
    def rollup_view(self) -> str:
        """The materialised view that fills the rollup."""
        return f"{self.database}.chatledger_usage_hourly_mv"

    @property
    def messages(self) -> str:
        """The mirrored messages."""
        return f"{self.database}.chatledger_messages"


def _engine(name: str, arguments: str, cluster: str | None) -> str:
    return f"{'Replicated' if cluster else ''}{name}({arguments})"


def _table_settings(cluster: str | None) -> str:
    window = "replicated" if cluster else "non_replicated"
    return f"SETTINGS {window}_deduplication_window = {DEDUPLICATION_WINDOW}"


def schema_statements(
    tables: LedgerTables, *, messages: bool = False, cluster: str | None = None
) -> list[str]:
    """The statements that create the ledger's database, tables and view, if missing."""
    if cluster is not None and not _NAME.fullmatch(cluster):
        raise ValueError(f"ClickHouse cluster name {cluster!r}: use letters, digits and _ only")
    on = f" ON CLUSTER {cluster}" if cluster else ""
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in _CALL_COLUMNS)
    keys = [name for name, _ in _ROLLUP_KEYS]
    rollup_columns = ",\n    ".join(
        [f"{name} {kind}" for name, kind in _ROLLUP_KEYS]
        + [f"{name} SimpleAggregateFunction(sum, {kind})" for name, kind, _ in _ROLLUP_SUMS]
        + [f"{name} SimpleAggregateFunction(sumMap, Map(UInt16, Int64))" for name, _ in _HISTOGRAMS]
    )
    sums = ",\n    ".join(
        [f"sum({expression}) AS {name}" for name, _, expression in _ROLLUP_SUMS]
        + [
            f"sumMap(map(ifNull({bucket}, 0), if({bucket} IS NULL, 0, sign))) AS {name}"
            for name, bucket in _HISTOGRAMS
        ]
    )
    statements = [
        f"CREATE DATABASE IF NOT EXISTS {tables.database}{on}",
        f"CREATE TABLE IF NOT EXISTS {tables.calls}{on} (\n    {columns}\n)\n"
        f"ENGINE = {_engine('ReplacingMergeTree', 'revision, is_deleted', cluster)}\n"
        "PARTITION BY toYYYYMM(create_time)\n"
        "ORDER BY (tenant_id, toDate(create_time), id)\n"
        f"{_table_settings(cluster)}",
        f"CREATE TABLE IF NOT EXISTS {tables.rollup}{on} (\n    {rollup_columns}\n)\n"
        f"ENGINE = {_engine('AggregatingMergeTree', '', cluster)}\n"
        "PARTITION BY toYYYYMM(hour_start)\n"
        f"ORDER BY ({', '.join(keys)})\n"
        f"{_table_settings(cluster)}",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {tables.rollup_view}{on} TO {tables.rollup} AS\n"
        f"SELECT {', '.join(keys)},\n    {sums}\n"
        f"FROM (SELECT *, toInt64(if(is_deleted = 1, -1, 1)) AS sign FROM {tables.calls})\n"
        f"GROUP BY {', '.join(keys)}",
    ]
    if messages:
        message_columns = ",\n    ".join(f"{name} {kind}" for name, kind in _MESSAGE_COLUMNS)
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {tables.messages}{on} (\n    {message_columns}\n)\n"
            f"ENGINE = {_engine('ReplacingMergeTree', 'revision', cluster)}\n"
            "PARTITION BY toYYYYMM(create_time)\n"
            "ORDER BY (tenant_id, chat_session_id, create_time, id)\n"
            f"{_table_settings(cluster)}"
        )
    return statements


def time_text(moment: datetime) -> str:
    """A UTC time as ClickHouse reads a ``DateTime64``, the year in four digits (0999 too)."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%d %H:%M:%S.%f}"


def call_row(call: LLMApiCall, revision: int) -> dict[str, Any]:
    """The row of ``call`` in ``chatledger_api_calls`` (live, at ``revision``)."""
    prompt, completion = call.prompt_tokens_details, call.completion_tokens_details
    created = call.create_time
    return {
        "id": str(call.id),
        "chat_session_id": str(call.chat_session_id),
        "agent_id": str(call.agent_id),
        "user_id": str(call.user_id),
        "tenant_id": str(call.tenant_id),
        "request_message_id": str(call.request_message_id),
        "response_message_id": str(call.response_message_id),
        "model_name": call.model_name,
        "status": call.status.value,
        "error_message": call.error_message,
        "error_code": call.error_code,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "total_tokens": call.total_tokens,
        "prompt_tokens_details": None if prompt is None else prompt.model_dump_json(),
        "completion_tokens_details": None if completion is None else completion.model_dump_json(),
        "cached_tokens": (prompt.cached_tokens or 0) if prompt is not None else 0,
        "cache_write_tokens": (prompt.cache_write_tokens or 0) if prompt is not None else 0,
        "reasoning_tokens": (completion.reasoning_tokens or 0) if completion is not None else 0,
        "total_price": None if call.total_price is None else str(call_cost(call.total_price)),
        "price_details": None
        if call.price_details is None
        else call.price_details.model_dump_json(),
        "latency_ms": call.latency_ms,
        "time_to_first_token_ms": call.time_to_first_token_ms,
        "tokens_per_second": call.tokens_per_second,
        "api_response_id": call.api_response_id,
        "create_time": time_text(created),
        "update_time": time_text(call.update_time),
        "hour_start": time_text(truncate_to_bucket(created, "hour")),
        "day_start": time_text(truncate_to_bucket(created, "day")),
        "week_start": time_text(truncate_to_bucket(created, "week")),
        "month_start": time_text(truncate_to_bucket(created, "month")),
        "latency_bucket": None if call.latency_ms is None else histogram_bucket(call.latency_ms),
        "ttft_bucket": (
            None
            if call.time_to_first_token_ms is None
            else histogram_bucket(call.time_to_first_token_ms)
        ),
        "revision": revision,
        "is_deleted": 0,
    }


def message_row(message: LLMMessage, revision: int) -> dict[str, Any]:
    """The row of ``message`` in ``chatledger_messages``."""
    parent = message.parent_message_id
    return {
        "id": str(message.id),
        "parent_message_id": None if parent is None else str(parent),
        "chat_session_id": str(message.chat_session_id),
        "agent_id": str(message.agent_id),
        "user_id": str(message.user_id),
        "tenant_id": str(message.tenant_id),
        "role": message.role.value,
        "content": message.content.model_dump_json(),
        "create_time": time_text(message.create_time),
        "update_time": time_text(message.update_time),
        "revision": revision,
    }


def column_list(columns: Sequence[str]) -> str:
    """``a, b, c``: column names as a statement lists them."""
    return ", ".join(columns)
