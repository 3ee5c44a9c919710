"""Statistics and usage breakdowns answered by ClickHouse, equal to the primary store's.

Where the sums come from is what :func:`chatledger.stores.rollups.plan_rollups`
decides for the SQL stores: a filter on tenant, user, agent, model and
status only, time bounds on the hour, grouped by those keys and by a time
bucket, reads the hourly rollup; anything else (a session, an error code, a
cost or latency range, a time off the hour, a grouping by session, or
``rollups.scan_only()``) reads the calls themselves, ``FINAL``. Either way
the sums are the same: counts, tokens and the exact decimal cost equal the
primary's; averages are float sums and equal them to float precision.

Percentiles follow the rule the SQL stores follow: exact, from the values
themselves (through the same :class:`~chatledger.stores.statistics.Distribution`),
while at most ``rollups.exact_values_limit()`` values are concerned (10,000
unless ``rollups.exact_values_up_to`` says otherwise); beyond that, from the
histograms (the rollup's, or the calls' bucket columns), within
:data:`~chatledger.stores.statistics.PERCENTILE_RELATIVE_ERROR`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chatledger.entities import ApiCallStatus, QueryFilter, UsageBucket
from chatledger.stores.base import Bucket, GroupKey
from chatledger.stores.clickhouse.client import ClickHouseClient
from chatledger.stores.clickhouse.schema import STATUSES, LedgerTables, time_text
from chatledger.stores.rollups import exact_values_limit, plan_rollups
from chatledger.stores.statistics import (
    METRICS,
    Distribution,
    UsageTotals,
    build_statistics,
    figures_of,
    sort_breakdown,
    top_groups,
)

__all__ = ["read_breakdown"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME = "DateTime64(6, 'UTC')"
_KEY_COLUMNS: dict[str, str] = {
    "model": "model_name",
    "agent": "agent_id",
    "user": "user_id",
    "tenant": "tenant_id",
    "session": "chat_session_id",
    "status": "status",
}
_UUID_KEYS = frozenset({"agent", "user", "tenant", "session"})
_BUCKET_COLUMNS: dict[str, str] = {
    "hour": "hour_start",
    "day": "day_start",
    "week": "week_start",
    "month": "month_start",
}

# The sums of UsageTotals.from_sums, read from the rollup and from the calls.
_ROLLUP_TOTALS = (
    "sum(calls)",
    *(f"sumIf(calls, status = '{status}')" for status in STATUSES),
    "sum(total_tokens)",
    "sum(prompt_tokens)",
    "sum(completion_tokens)",
    "toString(sum(cost))",
    "0",
    "sum(priced_calls)",
    "sum(latency_sum)",
    "sum(latency_count)",
    "sum(tps_sum)",
    "sum(tps_count)",
    "sum(ttft_sum)",
    "sum(ttft_count)",
    "sum(cached_tokens)",
    "sum(reasoning_tokens)",
    "sum(cache_write_tokens)",
)
_CALL_TOTALS = (
    "count()",
    *(f"countIf(status = '{status}')" for status in STATUSES),
    "sum(total_tokens)",
    "sum(prompt_tokens)",
    "sum(completion_tokens)",
    "toString(sum(ifNull(total_price, toDecimal128(0, 10))))",
    "0",
    "count(total_price)",
    "sum(ifNull(latency_ms, 0))",
    "count(latency_ms)",
    "sum(ifNull(tokens_per_second, 0))",
    "count(tokens_per_second)",
    "sum(ifNull(time_to_first_token_ms, 0))",
    "count(time_to_first_token_ms)",
    "sum(cached_tokens)",
    "sum(reasoning_tokens)",
    "sum(cache_write_tokens)",
)
_ROLLUP_HISTOGRAMS = ("sumMap(latency_histogram)", "sumMap(ttft_histogram)")
_CALL_HISTOGRAMS = tuple(
    f"sumMap(map(ifNull({bucket}, 0), toInt64({bucket} IS NOT NULL)))"
    for bucket in ("latency_bucket", "ttft_bucket")
)

_Group = tuple[datetime | None, tuple[Any, ...]]


class _Parameters:
    """Server-side parameters of one statement: ``{p0:Type}`` placeholders and their values."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, kind: str, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{kind}}}"


def _where(query: QueryFilter, rollup: bool, params: _Parameters) -> str:
    """The conditions of ``query``, on the rollup's columns or on the calls'."""
    clauses: list[str] = []
    for column, value in (
        ("tenant_id", query.tenant_id),
        ("user_id", query.user_id),
        ("agent_id", query.agent_id),
        ("chat_session_id", query.session_id),
    ):
        if value is not None:
            clauses.append(f"{column} = {params('UUID', str(value))}")
    if query.model_name is not None:
        clauses.append(f"model_name = {params('String', query.model_name)}")
    if query.status is not None:
        clauses.append(f"status = {params('String', query.status.value)}")
    time = "hour_start" if rollup else "create_time"
    if query.start_time is not None:
        clauses.append(f"{time} >= {params(_TIME, time_text(query.start_time))}")
    if query.end_time is not None:
        clauses.append(f"{time} < {params(_TIME, time_text(query.end_time))}")
    if query.error_code is not None:
        clauses.append(f"error_code = {params('String', query.error_code)}")
    for column, low, high, kind in (
        ("total_price", query.min_cost, query.max_cost, "Decimal(38, 20)"),
        ("latency_ms", query.min_latency_ms, query.max_latency_ms, "UInt64"),
    ):
        if low is not None:
            clauses.append(f"{column} >= {params(kind, str(low))}")
        if high is not None:
            clauses.append(f"{column} <= {params(kind, str(high))}")
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


def _group_columns(keys: Sequence[GroupKey], bucket: Bucket | None) -> list[str]:
    columns = [_KEY_COLUMNS[key] for key in keys]
    if bucket is not None:
        columns.append(f"toUnixTimestamp64Second({_BUCKET_COLUMNS[bucket]})")
    return columns


def _select(
    figures: Sequence[str], source: str, where: str, groups: Sequence[str], having: str = ""
) -> str:
    selected = ", ".join([*(f"{column} AS g{i}" for i, column in enumerate(groups)), *figures])
    grouped = f" GROUP BY {', '.join(f'g{i}' for i in range(len(groups)))}" if groups else ""
    return f"SELECT {selected} FROM {source}{where}{grouped}{having}"


def _group_of(row: Sequence[Any], keys: Sequence[GroupKey], bucket: Bucket | None) -> _Group:
    """A row's group: its bucket start and its key values as the entities hold them."""
    values: list[Any] = []
    for key, value in zip(keys, row, strict=False):
        if key in _UUID_KEYS:
            values.append(uuid.UUID(value))
        elif key == "status":
            values.append(ApiCallStatus(value))
        else:
            values.append(value)
    start = None
    if bucket is not None:
        start = _EPOCH + timedelta(seconds=int(row[len(keys)]))
    return start, tuple(values)


async def read_breakdown(
    client: ClickHouseClient,
    tables: LedgerTables,
    query: QueryFilter,
    keys: Sequence[GroupKey],
    bucket: Bucket | None,
    limit: int | None,
) -> list[UsageBucket]:
    """Statistics per group of ``keys`` and per ``bucket`` (validated), in breakdown order."""
    plan = plan_rollups(query, keys, bucket)
    # The hourly rollup serves bounds on the hour only: parts of an hour (edges) are the
    # calls' to read, which this ledger does from the calls themselves, whole.
    rollup = plan is not None and not plan.edges
    width = len(keys) + (bucket is not None)
    groups = _group_columns(keys, bucket)
    params = _Parameters()
    where = _where(query, rollup, params)
    source = tables.rollup if rollup else f"{tables.calls} FINAL"
    figures = _ROLLUP_TOTALS if rollup else _CALL_TOTALS
    having = " HAVING sum(calls) > 0" if rollup else ""  # groups whose calls were all deleted
    rows = await client.query(_select(figures, source, where, groups, having), params.values)
    totals: dict[_Group, UsageTotals] = {
        _group_of(row, keys, bucket): UsageTotals.from_sums(row[width:], _money) for row in rows
    }
    if not keys and bucket is None and not totals:
        totals[None, ()] = UsageTotals()
    kept = top_groups({group: found.calls for group, found in totals.items()}, limit)
    if kept is not None:
        totals = {group: found for group, found in totals.items() if group[1] in kept}
    concerned = sum(found.latency_count + found.ttft_count for found in totals.values())
    distributions: dict[_Group, tuple[Distribution, ...]] = {
        group: tuple(Distribution() for _ in METRICS) for group in totals
    }
    if concerned:
        if concerned <= exact_values_limit():
            await _read_values(client, tables, query, keys, bucket, distributions)
        else:
            await _read_histograms(client, tables, query, keys, bucket, rollup, distributions)
    answer = [
        UsageBucket(
            keys=dict(zip(keys, values, strict=True)),
            bucket_start=start,
            stats=build_statistics(totals[start, values], figures_of(distributions[start, values])),
        )
        for start, values in totals
    ]
    return sort_breakdown(answer, keys)


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


async def _read_values(
    client: ClickHouseClient,
    tables: LedgerTables,
    query: QueryFilter,
    keys: Sequence[GroupKey],
    bucket: Bucket | None,
    distributions: dict[_Group, tuple[Distribution, ...]],
) -> None:
    """Each group's latency and time-to-first-token values, into its distributions."""
    params = _Parameters()
    where = _where(query, False, params)
    present = "(latency_ms IS NOT NULL OR time_to_first_token_ms IS NOT NULL)"
    where = f"{where} AND {present}" if where else f" WHERE {present}"
    groups = _group_columns(keys, bucket)
    selected = ", ".join([*groups, "latency_ms", "time_to_first_token_ms"])
    width = len(groups)
    rows = await client.query(f"SELECT {selected} FROM {tables.calls} FINAL{where}", params.values)
    for row in rows:
        found = distributions.get(_group_of(row, keys, bucket))
        if found is None:  # a group a breakdown's limit left out
            continue
        for distribution, value in zip(found, row[width:], strict=True):
            if value is not None:
                distribution.add_value(int(value))


async def _read_histograms(
    client: ClickHouseClient,
    tables: LedgerTables,
    query: QueryFilter,
    keys: Sequence[GroupKey],
    bucket: Bucket | None,
    rollup: bool,
    distributions: dict[_Group, tuple[Distribution, ...]],
) -> None:
    """Each group's calls per histogram bucket, from the rollup or from the calls."""
    params = _Parameters()
    where = _where(query, rollup, params)
    source = tables.rollup if rollup else f"{tables.calls} FINAL"
    histograms = _ROLLUP_HISTOGRAMS if rollup else _CALL_HISTOGRAMS
    groups = _group_columns(keys, bucket)
    rows = await client.query(_select(histograms, source, where, groups), params.values)
    width = len(groups)
    for row in rows:
        found = distributions.get(_group_of(row, keys, bucket))
        if found is None:
            continue
        for distribution, counts in zip(found, row[width:], strict=True):
            for position, count in counts.items():
                if int(count) > 0:  # a deleted call leaves its bucket at 0
                    distribution.add_count(int(position), int(count))
