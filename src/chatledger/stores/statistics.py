"""Usage statistics: the one computation every backend and every source goes through.

A statistic is built in two halves, each mergeable, and put together once:

- :class:`UsageTotals`: counts and sums (calls, calls per status, every token
  count, the exact cost, latency, time-to-first-token and tokens-per-second
  sums and counts). Built from calls (:meth:`UsageTotals.add_call`), from a
  row of SQL sums (:meth:`UsageTotals.from_sums`), or by adding two
  (:meth:`UsageTotals.add`): the sums of a table scan and of the rollups are
  the same sums.
- :class:`Distribution`: what percentiles are read from, per metric (latency,
  time to first token): either the values themselves, whose percentiles are
  exact, or counts per histogram bucket, whose percentiles are within
  :data:`PERCENTILE_RELATIVE_ERROR`. Values added to a distribution that has
  histogram counts are counted into their buckets.

:func:`build_statistics` makes the ``UsageStatistics`` of both halves; it is
the only place one is made. Percentiles interpolate linearly between the
closest ranks, as PostgreSQL's ``percentile_cont`` and numpy's default do,
whether the ranks hold values or bucket estimates.

The histogram's buckets are fixed and logarithmic: bucket 0 holds 0 ms, and
each bucket after it starts where the one before ends, at most 10% above its
start (``BUCKET_LOWS``), up to 10 minutes: whole milliseconds 1 to 10 each
have their own bucket, larger values share one with values at most 10% apart.
A bucket's estimate is the geometric mean of its smallest and largest value,
so a percentile read from the histogram is within ``sqrt(1.1) - 1`` (4.9%)
of the exact one, up to 10 minutes. The last bucket holds every value from
10 minutes on (a call that ran longer is rare, and no bucket is wasted on
hours): a percentile that falls there reads as 10 minutes.

Also here, shared by every backend: ``truncate_to_bucket`` (the UTC start of
an hour, day, week or month) and ``next_bucket``, ``sort_breakdown`` (rows by bucket start, then
their keys' string forms), ``top_groups`` (a breakdown's ``limit``), and
``compute_statistics`` / ``compute_breakdown`` (the whole computation over
a set of calls, as the in-memory store answers).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from chatledger.entities import ApiCallStatus, LLMApiCall, UsageBucket, UsageStatistics
from chatledger.stores.base import Bucket, GroupKey

__all__ = [
    "BUCKET_LOWS",
    "COST_QUANTUM",
    "HISTOGRAM_CEILING_MS",
    "METRICS",
    "PERCENTILE_FRACTIONS",
    "PERCENTILE_RELATIVE_ERROR",
    "Distribution",
    "GroupDistributions",
    "UsageTotals",
    "bucket_estimate",
    "build_statistics",
    "call_cost",
    "compute_breakdown",
    "compute_statistics",
    "figures_of",
    "group_key_value",
    "histogram_bucket",
    "next_bucket",
    "percentile",
    "quantize_cost",
    "sort_breakdown",
    "top_groups",
    "truncate_to_bucket",
]

COST_QUANTUM = Decimal("1e-10")
"""The precision of ``UsageStatistics.total_cost`` on every backend (a money column's)."""

METRICS = ("latency_ms", "time_to_first_token_ms")
"""The call columns every statistic gives percentiles of, in the order their figures come."""
PERCENTILE_FRACTIONS = (0.50, 0.95, 0.99)
"""The percentiles of each metric, as fractions."""

_STATUSES = tuple(ApiCallStatus)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HISTOGRAM_CEILING_MS = 600_000
"""Ten minutes: the last histogram bucket holds every value from here on."""


def _bucket_lows() -> tuple[int, ...]:
    """Where each histogram bucket starts: 0, 1, then at most 10% past the last start."""
    lows = [0, 1]
    while lows[-1] < HISTOGRAM_CEILING_MS:
        low = lows[-1]
        lows.append(min(max(low + 1, -(-low * 11 // 10)), HISTOGRAM_CEILING_MS))  # ceil(x1.1)
    return tuple(lows)


BUCKET_LOWS = _bucket_lows()
"""The smallest value of each histogram bucket; the last one (10 min) has no upper end."""
PERCENTILE_RELATIVE_ERROR = math.sqrt(1.1) - 1
"""How far (relatively) a percentile read from a histogram may be from the exact one."""


def histogram_bucket(value: int) -> int:
    """The histogram bucket holding ``value`` (a latency in ms, 0 or more)."""
    return max(bisect_right(BUCKET_LOWS, value) - 1, 0)


def bucket_estimate(bucket: int) -> float:
    """What a value in ``bucket`` is taken for: the geometric mean of its smallest and largest."""
    low = BUCKET_LOWS[bucket]
    if bucket + 1 >= len(BUCKET_LOWS):
        return float(low)
    high = BUCKET_LOWS[bucket + 1] - 1
    return float(low) if high == low else math.sqrt(low * high)


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


def _histogram_percentile(counts: Sequence[tuple[int, int]], fraction: float) -> float | None:
    """The ``fraction`` percentile of ascending ``(bucket, count)`` pairs, ranks interpolated."""
    total = sum(count for _, count in counts)
    if total <= 0:
        return None
    position = (total - 1) * fraction
    low = math.floor(position)
    below = above = None
    seen = 0
    for bucket, count in counts:
        if count <= 0:
            continue
        seen += count
        if below is None and seen > low:
            below = bucket_estimate(bucket)
        if seen > low + 1:
            above = bucket_estimate(bucket)
            break
    assert below is not None
    if above is None:
        return below
    return below + (position - low) * (above - below)


def quantize_cost(total: Decimal | None) -> Decimal | None:
    """A summed cost at the precision every backend reports (1e-10), or None."""
    return None if total is None else total.quantize(COST_QUANTUM)


def call_cost(price: Decimal) -> Decimal:
    """A call's price as a money column holds it: rounded half up to 1e-10, as NUMERIC(24, 10)."""
    return price.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


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


def next_bucket(start: datetime, bucket: Bucket) -> datetime:
    """The start of the bucket after the one that starts at ``start``."""
    if bucket == "hour":
        return start + timedelta(hours=1)
    if bucket == "day":
        return start + timedelta(days=1)
    if bucket == "week":
        return start + timedelta(days=7)
    if bucket == "month":
        year, month = divmod(start.month, 12)
        return start.replace(year=start.year + year, month=month + 1)
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


# A group of a breakdown: its bucket start (None without a bucket) and its key values.
GroupId = tuple[datetime | None, tuple[Any, ...]]


def top_groups(
    calls_per_group: Mapping[tuple[Any, tuple[Any, ...]], int], limit: int | None
) -> set[tuple[Any, ...]] | None:
    """The key values of the ``limit`` groups with the most calls (ties by key), or None for all.

    A group is a combination of key values, over every bucket: with a time
    bucket too, each kept group keeps its row in every bucket it has.
    """
    if limit is None:
        return None
    calls: dict[tuple[Any, ...], int] = {}
    for (_, values), count in calls_per_group.items():
        calls[values] = calls.get(values, 0) + count
    ranked = sorted(calls, key=lambda values: (-calls[values], tuple(str(v) for v in values)))
    return set(ranked[:limit])


@dataclass(slots=True)
class UsageTotals:
    """The counts and sums of a set of calls; two add up to those of both sets.

    ``cost`` is exact: the sum of each priced call's price as a money column
    holds it (:func:`call_cost`). ``tps_sum`` is a float sum, so it is exact
    only as far as float addition is.
    """

    calls: int = 0
    status_counts: list[int] = field(default_factory=lambda: [0] * len(_STATUSES))
    total_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    priced_calls: int = 0
    latency_sum: int = 0
    latency_count: int = 0
    tps_sum: float = 0.0
    tps_count: int = 0
    ttft_sum: int = 0
    ttft_count: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0

    def add_call(self, call: LLMApiCall) -> None:
        """Count one call in."""
        self.calls += 1
        self.status_counts[_STATUSES.index(call.status)] += 1
        self.total_tokens += call.total_tokens
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        if call.total_price is not None:
            self.cost += call_cost(call.total_price)
            self.priced_calls += 1
        if call.latency_ms is not None:
            self.latency_sum += call.latency_ms
            self.latency_count += 1
        if call.tokens_per_second is not None:
            self.tps_sum += call.tokens_per_second
            self.tps_count += 1
        if call.time_to_first_token_ms is not None:
            self.ttft_sum += call.time_to_first_token_ms
            self.ttft_count += 1
        prompt, completion = call.prompt_tokens_details, call.completion_tokens_details
        if prompt is not None:
            self.cached_tokens += prompt.cached_tokens or 0
            self.cache_write_tokens += prompt.cache_write_tokens or 0
        if completion is not None:
            self.reasoning_tokens += completion.reasoning_tokens or 0

    def add(self, other: UsageTotals) -> None:
        """Count ``other``'s calls in."""
        self.calls += other.calls
        self.status_counts = [a + b for a, b in zip(self.status_counts, other.status_counts)]  # noqa: B905
        self.total_tokens += other.total_tokens
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.priced_calls += other.priced_calls
        self.latency_sum += other.latency_sum
        self.latency_count += other.latency_count
        self.tps_sum += other.tps_sum
        self.tps_count += other.tps_count
        self.ttft_sum += other.ttft_sum
        self.ttft_count += other.ttft_count
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cache_write_tokens += other.cache_write_tokens

    @classmethod
    def from_sums(
        cls, sums: Sequence[Any], decode_money: Callable[[Any], Decimal | None]
    ) -> UsageTotals:
        """Totals from a row of SQL sums in ``queries.TOTALS`` order (NULL sums are zero).

        The cost comes in two sums: a money sum and a sum of 1e-10 units
        (SQLite keeps whole amounts and fractions as integers, to stay exact).
        """
        (
            calls, s0, s1, s2, s3, s4, total, prompt, completion, cost, cost_units, priced,
            latency_sum, latency_count, tps_sum, tps_count, ttft_sum, ttft_count,
            cached, reasoning, cache_write,
        ) = sums  # fmt: skip
        money = decode_money(cost) or Decimal(0)
        if cost_units:
            money += Decimal(int(cost_units)).scaleb(-10)
        return cls(
            calls=int(calls or 0),
            status_counts=[int(count or 0) for count in (s0, s1, s2, s3, s4)],
            total_tokens=int(total or 0),
            prompt_tokens=int(prompt or 0),
            completion_tokens=int(completion or 0),
            cost=money,
            priced_calls=int(priced or 0),
            latency_sum=int(latency_sum or 0),
            latency_count=int(latency_count or 0),
            tps_sum=float(tps_sum or 0.0),
            tps_count=int(tps_count or 0),
            ttft_sum=int(ttft_sum or 0),
            ttft_count=int(ttft_count or 0),
            cached_tokens=int(cached or 0),
            reasoning_tokens=int(reasoning or 0),
            cache_write_tokens=int(cache_write or 0),
        )


class Distribution:
    """One metric's values, or counts per histogram bucket, and their percentiles.

    Exact while it holds only values; once it has histogram counts, every
    value is counted into its bucket instead.
    """

    __slots__ = ("_counts", "_values")

    def __init__(self) -> None:
        """An empty distribution."""
        self._values: array[int] = array("q")
        self._counts: dict[int, int] | None = None

    def add_values(self, values: Iterable[int]) -> None:
        """Take values in."""
        if self._counts is None:
            self._values.extend(values)
        else:
            for value in values:
                bucket = histogram_bucket(value)
                self._counts[bucket] = self._counts.get(bucket, 0) + 1

    def add_value(self, value: int) -> None:
        """Take one value in."""
        if self._counts is None:
            self._values.append(value)
        else:
            bucket = histogram_bucket(value)
            self._counts[bucket] = self._counts.get(bucket, 0) + 1

    def add_count(self, bucket: int, count: int) -> None:
        """Take ``count`` values of histogram bucket ``bucket`` in."""
        if self._counts is None:
            self._counts = {}
            values, self._values = self._values, array("q")
            self.add_values(values)
        self._counts[bucket] = self._counts.get(bucket, 0) + count

    @property
    def exact(self) -> bool:
        """Whether the percentiles come from the values themselves."""
        return self._counts is None

    def percentiles(self, fractions: Sequence[float]) -> list[float | None]:
        """The percentiles at ``fractions`` (None for each when there is no value)."""
        if self._counts is None:
            ordered = sorted(self._values)
            return [percentile(ordered, fraction) for fraction in fractions]
        counts = sorted(self._counts.items())
        return [_histogram_percentile(counts, fraction) for fraction in fractions]


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


def build_statistics(
    totals: UsageTotals, figures: Sequence[float | None] | None = None
) -> UsageStatistics:
    """The statistics of ``totals`` and its percentile figures (absent: none).

    ``figures`` are each metric's percentiles at :data:`PERCENTILE_FRACTIONS`,
    metric after metric in :data:`METRICS` order.
    """
    shown = list(figures) if figures is not None else [None] * 6
    status_counts = dict(zip(_STATUSES, totals.status_counts, strict=True))
    success = status_counts[ApiCallStatus.SUCCESS]
    return UsageStatistics(
        total_calls=totals.calls,
        success_count=success,
        failed_count=totals.calls - success,
        total_tokens=totals.total_tokens,
        total_prompt_tokens=totals.prompt_tokens,
        total_completion_tokens=totals.completion_tokens,
        total_cost=quantize_cost(totals.cost) if totals.priced_calls else None,
        avg_latency_ms=_mean(totals.latency_sum, totals.latency_count),
        avg_tokens_per_second=_mean(totals.tps_sum, totals.tps_count),
        status_counts=status_counts,
        total_cached_tokens=totals.cached_tokens,
        total_reasoning_tokens=totals.reasoning_tokens,
        total_cache_write_tokens=totals.cache_write_tokens,
        avg_time_to_first_token_ms=_mean(totals.ttft_sum, totals.ttft_count),
        p50_latency_ms=_float(shown[0]),
        p95_latency_ms=_float(shown[1]),
        p99_latency_ms=_float(shown[2]),
        p50_time_to_first_token_ms=_float(shown[3]),
        p95_time_to_first_token_ms=_float(shown[4]),
        p99_time_to_first_token_ms=_float(shown[5]),
    )


def figures_of(distributions: Sequence[Distribution]) -> list[float | None]:
    """The percentile figures of one distribution per metric, as ``build_statistics`` takes them."""
    return [
        figure
        for distribution in distributions
        for figure in distribution.percentiles(PERCENTILE_FRACTIONS)
    ]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class GroupDistributions:
    """Per group, a :class:`Distribution` of each metric, filled from rows batch by batch.

    Rows of values hold ``width`` group values, then one value per metric
    (None when the call has none); rows of histograms hold ``width`` group
    values, then the metric's position and a count per bucket.
    """

    def __init__(self, width: int, key: Callable[[tuple[Any, ...]], Any] = tuple) -> None:
        """Collect rows whose first ``width`` values name their group, as ``key`` of them says.

        ``key`` turns the group values a row holds into the group's identity,
        so that rows from different tables (ids as text, or as UUIDs) meet.
        """
        self._width = width
        self._key = key
        self._seen: dict[tuple[Any, ...], tuple[Distribution, ...]] = {}
        self.groups: dict[Any, tuple[Distribution, ...]] = {}

    def _of(self, values: tuple[Any, ...]) -> tuple[Distribution, ...]:
        found = self._seen.get(values)
        if found is None:
            key = self._key(values)
            found = self.groups.get(key)
            if found is None:
                found = self.groups[key] = tuple(Distribution() for _ in METRICS)
            self._seen[values] = found
        return found

    def add_values(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Take rows of values in (a ``Read.convert``: returns nothing to keep)."""
        width = self._width
        # Column by column per group: a row at a time costs 0.8 us a row, twice this.
        members: dict[tuple[Any, ...], list[Sequence[Any]]] = {}
        if width:
            for row in rows:
                members.setdefault(tuple(row[:width]), []).append(row)
        elif rows:
            members[()] = list(rows)
        for values, found in members.items():
            for column, distribution in enumerate(self._of(values), start=width):
                distribution.add_values(
                    [int(value) for row in found if (value := row[column]) is not None]
                )
        return []

    def add_columns(
        self,
        keys: Sequence[Sequence[Any]],
        metrics: Sequence[Sequence[Any]],
        allowed: set[Any] | None = None,
    ) -> None:
        """Take calls in column by column: ``width`` columns of group values, one per metric.

        ``allowed``: only the groups whose first value is one of these. Several
        breakdowns take their groups out of the same columns this way, each
        row's values never copied into a row of its own.
        """
        members: dict[tuple[Any, ...], list[int]] = {}
        if len(keys) == 1:
            for index, value in enumerate(keys[0]):
                if allowed is None or value in allowed:
                    members.setdefault((value,), []).append(index)
        elif keys:
            for index, values in enumerate(zip(*keys, strict=True)):
                if allowed is None or values[0] in allowed:
                    members.setdefault(values, []).append(index)
        elif metrics and metrics[0]:
            members[()] = list(range(len(metrics[0])))
        for values, indexes in members.items():
            for column, distribution in zip(metrics, self._of(values), strict=True):
                distribution.add_values(
                    [int(value) for index in indexes if (value := column[index]) is not None]
                )

    def add_counts(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Take rows of histograms in (a ``Read.convert``): group values, metric, then a
        count per bucket."""
        width = self._width
        for row in rows:
            distribution = self._of(tuple(row[:width]))[int(row[width])]
            for bucket, count in enumerate(row[width + 1 :]):
                if count:
                    distribution.add_count(bucket, int(count))
        return []

    def figures(self) -> dict[Any, list[float | None]]:
        """Per group, its percentile figures (``figures_of``)."""
        return {key: figures_of(found) for key, found in self.groups.items()}


def compute_statistics(calls: Iterable[LLMApiCall]) -> UsageStatistics:
    """Totals, averages, latency and time-to-first-token percentiles over ``calls`` (exact)."""
    totals = UsageTotals()
    distributions = tuple(Distribution() for _ in METRICS)
    latency, first_token = distributions
    for call in calls:
        totals.add_call(call)
        if call.latency_ms is not None:
            latency.add_value(call.latency_ms)
        if call.time_to_first_token_ms is not None:
            first_token.add_value(call.time_to_first_token_ms)
    return build_statistics(totals, figures_of(distributions))


def compute_breakdown(
    calls: Iterable[LLMApiCall],
    group_by: Sequence[GroupKey],
    bucket: Bucket | None,
    limit: int | None = None,
) -> list[UsageBucket]:
    """Statistics per group of ``group_by`` keys and per bucket, in breakdown order.

    ``group_by`` must already be validated (``base.check_breakdown_args``).
    With no keys and no bucket the answer is one row over every call, even
    when there are none. With ``limit``, only the groups :func:`top_groups` keeps.
    """
    if not group_by and bucket is None:
        return [UsageBucket(keys={}, bucket_start=None, stats=compute_statistics(calls))]
    groups: dict[GroupId, list[LLMApiCall]] = {}
    for call in calls:
        start = truncate_to_bucket(call.create_time, bucket) if bucket is not None else None
        values = tuple(group_key_value(call, key) for key in group_by)
        groups.setdefault((start, values), []).append(call)
    kept = top_groups({group: len(members) for group, members in groups.items()}, limit)
    rows = [
        UsageBucket(
            keys=dict(zip(group_by, values, strict=True)),
            bucket_start=start,
            stats=compute_statistics(members),
        )
        for (start, values), members in groups.items()
        if kept is None or values in kept
    ]
    return sort_breakdown(rows, group_by)
