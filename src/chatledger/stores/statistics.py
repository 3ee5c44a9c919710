"""Usage statistics computed in Python, the same way on every backend.

The in-memory store computes everything here; SQL backends can reuse the
pieces their database does not offer (latency percentiles on SQLite, bucket
truncation, the order of breakdown rows) so every backend answers alike:

- ``percentile``: linear interpolation between closest ranks, as PostgreSQL's
  ``percentile_cont`` and numpy's default method compute it.
- ``truncate_to_bucket``: the UTC start of the hour, day, week (Monday) or
  month holding a time.
- ``sort_breakdown``: breakdown rows by bucket start, then by the string forms
  of their keys in ``group_by`` order.
- ``compute_statistics`` and ``compute_breakdown``: the whole computation over
  a set of calls.
- ``GroupValues``: percentiles of values a database read out per group, for a
  backend whose database sorts them slowly (SQLite).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chatledger.entities import ApiCallStatus, LLMApiCall, UsageBucket, UsageStatistics
from chatledger.stores.base import Bucket, GroupKey

__all__ = [
    "COST_QUANTUM",
    "GroupValues",
    "compute_breakdown",
    "compute_statistics",
    "group_key_value",
    "percentile",
    "quantize_cost",
    "sort_breakdown",
    "truncate_to_bucket",
]

COST_QUANTUM = Decimal("1e-10")
"""The precision of ``UsageStatistics.total_cost`` on every backend."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile (0..1) of ascending ``sorted_values`` by linear interpolation."""
    count = len(sorted_values)
    if count == 0:
        return None
    position = (count - 1) * fraction
    low = math.floor(position)
    if low + 1 >= count:
        return float(sorted_values[low])
    below, above = sorted_values[low], sorted_values[low + 1]
    return float(below + (position - low) * (above - below))


def quantize_cost(total: Decimal | None) -> Decimal | None:
    """A summed cost at the precision every backend reports (1e-10), or None."""
    return None if total is None else total.quantize(COST_QUANTUM)


def truncate_to_bucket(moment: datetime, bucket: Bucket) -> datetime:
    """The UTC start of the hour, day, week (Monday 00:00) or month that holds ``moment``."""
    moment = moment.astimezone(UTC)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "day":
        return day
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown bucket {bucket!r}; choose from hour, day, week, month")


def group_key_value(call: LLMApiCall, key: GroupKey) -> Any:
    """The value of one ``group_by`` key for ``call`` (a str, UUID or ApiCallStatus)."""
    if key == "model":
        return call.model_name
    if key == "agent":
        return call.agent_id
    if key == "user":
        return call.user_id
    if key == "tenant":
        return call.tenant_id
    if key == "session":
        return call.chat_session_id
    if key == "status":
        return call.status
    raise ValueError(f"unknown group_by key {key!r}")


def sort_breakdown(
    buckets: Iterable[UsageBucket], group_by: Sequence[GroupKey]
) -> list[UsageBucket]:
    """Breakdown rows by bucket start, then by their keys' string forms in ``group_by`` order."""

    def order(row: UsageBucket) -> tuple[datetime, tuple[str, ...]]:
        start = row.bucket_start if row.bucket_start is not None else _EPOCH
        return start, tuple(str(row.keys[key]) for key in group_by)

    return sorted(buckets, key=order)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def compute_statistics(calls: Iterable[LLMApiCall]) -> UsageStatistics:
    """Totals, averages, latency and time-to-first-token percentiles over ``calls``."""
    status_counts = dict.fromkeys(ApiCallStatus, 0)
    total_calls = total_tokens = total_prompt = total_completion = 0
    total_cached = total_reasoning = 0
    total_cost: Decimal | None = None
    latencies: list[int] = []
    speeds: list[float] = []
    first_tokens: list[int] = []
    for call in calls:
        total_calls += 1
        status_counts[call.status] += 1
        total_tokens += call.total_tokens
        total_prompt += call.prompt_tokens
        total_completion += call.completion_tokens
        if call.prompt_tokens_details is not None:
            total_cached += call.prompt_tokens_details.cached_tokens or 0
        if call.completion_tokens_details is not None:
            total_reasoning += call.completion_tokens_details.reasoning_tokens or 0
        if call.total_price is not None:
            total_cost = call.total_price if total_cost is None else total_cost + call.total_price
        if call.latency_ms is not None:
            latencies.append(call.latency_ms)
        if call.tokens_per_second is not None:
            speeds.append(call.tokens_per_second)
        if call.time_to_first_token_ms is not None:
            first_tokens.append(call.time_to_first_token_ms)
    latencies.sort()
    first_tokens.sort()
    success_count = status_counts[ApiCallStatus.SUCCESS]
    return UsageStatistics(
        total_calls=total_calls,
        success_count=success_count,
        failed_count=total_calls - success_count,
        total_tokens=total_tokens,
        total_prompt_tokens=total_prompt,
        total_completion_tokens=total_completion,
        total_cost=quantize_cost(total_cost),
        avg_latency_ms=_mean(latencies),
        avg_tokens_per_second=_mean(speeds),
        status_counts=status_counts,
        total_cached_tokens=total_cached,
        total_reasoning_tokens=total_reasoning,
        avg_time_to_first_token_ms=_mean(first_tokens),
        p50_latency_ms=percentile(latencies, 0.50),
        p95_latency_ms=percentile(latencies, 0.95),
        p99_latency_ms=percentile(latencies, 0.99),
        p50_time_to_first_token_ms=percentile(first_tokens, 0.50),
        p95_time_to_first_token_ms=percentile(first_tokens, 0.95),
        p99_time_to_first_token_ms=percentile(first_tokens, 0.99),
    )


def compute_breakdown(
    calls: Iterable[LLMApiCall], group_by: Sequence[GroupKey], bucket: Bucket | None
) -> list[UsageBucket]:
    """Statistics per group of ``group_by`` keys and per bucket, in breakdown order.

    ``group_by`` must already be validated (``base.check_breakdown_args``).
    With no keys and no bucket the answer is one row over every call, even
    when there are none.
    """
    if not group_by and bucket is None:
        return [UsageBucket(keys={}, bucket_start=None, stats=compute_statistics(calls))]
    groups: dict[tuple[datetime | None, tuple[Any, ...]], list[LLMApiCall]] = {}
    for call in calls:
        start = truncate_to_bucket(call.create_time, bucket) if bucket is not None else None
        values = tuple(group_key_value(call, key) for key in group_by)
        groups.setdefault((start, values), []).append(call)
    rows = [
        UsageBucket(
            keys=dict(zip(group_by, values, strict=True)),
            bucket_start=start,
            stats=compute_statistics(members),
        )
        for (start, values), members in groups.items()
    ]
    return sort_breakdown(rows, group_by)


class GroupValues:
    """Values of a few columns per group, collected batch by batch, and their percentiles.

    Each row holds ``width`` group values, then one value per column (None
    when the call has none). Values are kept in typed arrays, 8 bytes each,
    so a million calls cost megabytes, not the rows they came in.
    """

    def __init__(self, width: int, columns: int) -> None:
        """Collect rows of ``width`` group values followed by ``columns`` values."""
        self._width = width
        self._columns = columns
        self._groups: dict[tuple[Any, ...], list[array[int]]] = {}

    def add(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Take a batch of rows in (a ``Read.convert``: returns nothing to keep)."""
        width, groups = self._width, self._groups
        for row in rows:
            key = tuple(row[:width])
            found = groups.get(key)
            if found is None:
                found = groups[key] = [array("q") for _ in range(self._columns)]
            for values, value in zip(found, row[width:], strict=True):
                if value is not None:
                    values.append(value)
        return []

    def percentiles(
        self, fractions: Sequence[float]
    ) -> dict[tuple[Any, ...], tuple[float | None, ...]]:
        """Per group: each column's percentiles at ``fractions``, column after column."""
        return {
            key: tuple(
                percentile(ordered, fraction)
                for ordered in (sorted(values) for values in columns)
                for fraction in fractions
            )
            for key, columns in self._groups.items()
        }
