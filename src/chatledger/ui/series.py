"""The overview's time series: which bucket a range gets, and one value per bucket.

The store answers a bucketed breakdown with a row per bucket that has calls;
a chart needs every bucket of the range, so the empty ones are filled in here
(zero calls, no latency). Each chart is a :class:`Chart`: the bucket starts,
a few named series, and what the values are, which the page draws with
uPlot and also prints as a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from chatledger.entities import UsageBucket, UsageStatistics
from chatledger.stores.base import Bucket
from chatledger.stores.statistics import next_bucket, truncate_to_bucket

__all__ = [
    "MAX_BUCKETS",
    "Chart",
    "Series",
    "bucket_starts",
    "charts",
    "choose_bucket",
    "error_rate",
]

MAX_BUCKETS: Final = 400
"""No chart has more points than this, however long the range (a month bucket past it)."""

_EMPTY = UsageStatistics()


def choose_bucket(start: datetime, end: datetime) -> Bucket:
    """Hour for up to two days, day up to 90 days, week up to two years, else month."""
    span = end - start
    if span <= timedelta(days=2):
        return "hour"
    if span <= timedelta(days=90):
        return "day"
    if span <= timedelta(days=731):
        return "week"
    return "month"


def bucket_starts(start: datetime, end: datetime, bucket: Bucket) -> list[datetime]:
    """The start of every bucket that overlaps ``[start, end)``, at most :data:`MAX_BUCKETS`."""
    starts: list[datetime] = []
    moment = truncate_to_bucket(start, bucket)
    while moment < end and len(starts) < MAX_BUCKETS:
        starts.append(moment)
        moment = next_bucket(moment, bucket)
    return starts


@dataclass(frozen=True)
class Series:
    """One line of a chart: its label and a value per bucket (None where there is none)."""

    label: str
    values: list[float | None]


@dataclass(frozen=True)
class Chart:
    """A chart and its table: an id, a title, the unit of its values and its series."""

    id: str
    title: str
    unit: str  # "calls", "tokens", "USD", "%", "ms"
    x: list[datetime]
    series: list[Series]

    def data(self) -> dict[str, Any]:
        """What the page's script draws: epoch seconds and each series' values."""
        return {
            "title": self.title,
            "unit": self.unit,
            "x": [int(moment.timestamp()) for moment in self.x],
            "series": [{"label": s.label, "values": s.values} for s in self.series],
        }

    def rows(self) -> list[tuple[datetime, list[float | None]]]:
        """The table: one row per bucket, one cell per series."""
        return [
            (moment, [series.values[index] for series in self.series])
            for index, moment in enumerate(self.x)
        ]


def _cost(stats: UsageStatistics) -> float | None:
    return None if stats.total_cost is None else float(stats.total_cost)


def error_rate(stats: UsageStatistics) -> float | None:
    """The share of calls that failed, in percent to two decimals (None without a call)."""
    if stats.total_calls == 0:
        return None
    return round(100.0 * stats.failed_count / stats.total_calls, 2)


_CHARTS: Final[
    tuple[tuple[str, str, str, tuple[tuple[str, Callable[[UsageStatistics], Any]], ...]], ...]
] = (
    (
        "calls",
        "Calls",
        "calls",
        (
            ("succeeded", lambda s: s.success_count),
            ("failed", lambda s: s.failed_count),
        ),
    ),
    (
        "tokens",
        "Tokens",
        "tokens",
        (
            ("prompt", lambda s: s.total_prompt_tokens),
            ("completion", lambda s: s.total_completion_tokens),
            ("cached (of prompt)", lambda s: s.total_cached_tokens),
            ("reasoning (of completion)", lambda s: s.total_reasoning_tokens),
        ),
    ),
    ("cost", "Cost", "USD", (("cost", _cost),)),
    ("errors", "Error rate", "%", (("failed calls", error_rate),)),
    (
        "latency",
        "Latency",
        "ms",
        (
            ("p50", lambda s: s.p50_latency_ms),
            ("p95", lambda s: s.p95_latency_ms),
            ("p99", lambda s: s.p99_latency_ms),
        ),
    ),
    (
        "ttft",
        "Time to first token",
        "ms",
        (
            ("p50", lambda s: s.p50_time_to_first_token_ms),
            ("p95", lambda s: s.p95_time_to_first_token_ms),
            ("p99", lambda s: s.p99_time_to_first_token_ms),
        ),
    ),
)


_SUMS: Final = frozenset({"calls", "tokens", "USD"})  # zero in an empty bucket, not absent


def _number(value: float | int | Decimal | None) -> float | None:
    return None if value is None else float(value)


def charts(rows: Sequence[UsageBucket], starts: Sequence[datetime]) -> list[Chart]:
    """Every overview chart over ``starts``, from a breakdown bucketed the same way."""
    by_start = {row.bucket_start: row.stats for row in rows if row.bucket_start is not None}
    stats = [by_start.get(moment, _EMPTY) for moment in starts]
    found = []
    for chart_id, title, unit, lines in _CHARTS:
        empty = 0.0 if unit in _SUMS else None
        series = [
            Series(label, [_number(pick(s)) if s.total_calls else empty for s in stats])
            for label, pick in lines
        ]
        found.append(Chart(chart_id, title, unit, list(starts), series))
    return found
