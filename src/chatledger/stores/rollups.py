"""Usage rollups: what statistics read instead of the API calls whenever a filter allows.

Three tables (``schema.ROLLUP_TABLES``), kept in the transaction of every
write that adds or deletes API calls:

- ``chatledger_usage_hourly``: per UTC hour, tenant, user, agent, model and
  status, every sum a statistic needs (``schema.ROLLUP_SUM_COLUMNS``: calls,
  each token count, priced calls and the exact cost, latency, time-to-first-
  token and tokens-per-second sums and counts).
- ``chatledger_usage_daily``: the same sums per UTC day and status, overall
  (dimension ``''``) and per tenant, user, agent and model (one dimension a
  row). At a million calls over 90 days the hourly rows are 180,000 (each
  user's few calls an hour share few rows); a daily row per dimension value
  makes a month by model a few hundred rows.
- ``chatledger_usage_histogram``: latency and time-to-first-token histograms
  per UTC day and status, overall and per tenant, agent and model: a row per
  metric with a count column per bucket of ``statistics.BUCKET_LOWS`` (4.9%
  relative error below 10 minutes), which SUM() merges: 67,000 rows at a
  million calls over 90 days. Histograms per hour, per user, or a row per
  bucket, would hold about as many rows as there are calls (1.5 million
  rows of one bucket each at a million calls, 2.3 s to read on SQLite).

Writes aggregate a batch in Python first (:func:`rollup_writes`), then one
``INSERT … ON CONFLICT DO UPDATE`` (``ON DUPLICATE KEY UPDATE``) adds it to
each table. Deletes subtract in SQL (:func:`from_calls` with sign -1) from the
rows they are about to delete, locked, in the same transaction. The migration
backfills, and ``rebuild_rollups`` recounts, with the same statements.

Which statistics the rollups answer (:func:`plan_rollups`): a filter on
tenant, user, agent, model and status only, time bounds on the hour (or
none), grouped by those keys and by hour, day, week or month. Whole days come
from the daily table when at most one of tenant, user, agent and model is
filtered or grouped by, the hours around them (and everything else) from the
hourly one. Counts, tokens and cost equal a scan's exactly. Percentiles come
from the calls themselves (exact) when at most :data:`EXACT_VALUES` values
are concerned or no histogram serves the dimension; otherwise from the
histograms, with the hours around the whole days counted in from their
calls. With a breakdown's ``limit``, the percentiles of the top groups only
are read.

Complete months and weeks are "sealed" (:meth:`seal_periods`, run by the
dashboard and by ``rebuild_rollups``): their days' rows are summed into rows
of their own, so that a long range reads a row per value and period instead
of one per day; see "sealed periods" below for how they stay exact.

Calls written or deleted around chatledger (plain SQL, MoFA) are not in the
rollups until ``rebuild_rollups`` (``chatledger db rebuild-rollups``) runs.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from chatledger.entities import LLMApiCall, QueryFilter
from chatledger.stores.dialect import Dialect
from chatledger.stores.schema import (
    API_CALL,
    HISTOGRAM_BUCKET,
    HISTOGRAM_COUNTS,
    ROLLUP_DAILY,
    ROLLUP_HISTOGRAM,
    ROLLUP_HOURLY,
    ROLLUP_SUM_COLUMNS,
    SEALED_PERIOD,
    Table,
)
from chatledger.stores.statistics import (
    BUCKET_LOWS,
    METRICS,
    histogram_bucket,
    truncate_to_bucket,
)

__all__ = [
    "DAILY_DIMENSIONS",
    "EXACT_VALUES",
    "HISTOGRAM_DIMENSIONS",
    "ROLLUP_TOTALS",
    "RollupPlan",
    "RollupStatements",
    "bucket_rows",
    "exact_values_up_to",
    "from_calls",
    "plan_rollups",
    "rebuild_statements",
    "rollup_writes",
    "scan_only",
    "PERIODS",
    "SEAL_MARGIN",
    "Period",
    "PeriodName",
    "Sealed",
    "past_periods",
    "seal_statements",
    "through_day_end",
    "sealable_periods",
    "sealed_segments",
    "unseal_statements",
    "user_change_statements",
]

DAILY_DIMENSIONS = ("", "tenant", "user", "agent", "model")
"""The daily table's dimensions: '' for every call, then one per group key."""
HISTOGRAM_DIMENSIONS = ("", "tenant", "agent", "model")
"""The dimensions the histograms are kept for (per user they would be as big as the calls;
a breakdown's top users read their calls' values instead)."""
EXACT_VALUES = 10_000
"""Up to how many latency and time-to-first-token values percentiles are read exactly."""

# The group keys the rollups hold, and the API-call column of each.
_KEY_COLUMNS = {
    "tenant": "tenant_id",
    "user": "user_id",
    "agent": "agent_id",
    "model": "model_name",
    "status": "status",
}
_DIMENSION_KEYS = ("tenant", "user", "agent", "model")
_UUID_KEYS = frozenset({"tenant", "user", "agent"})
_SUMS = tuple(column.name for column in ROLLUP_SUM_COLUMNS)
_HOURLY_KEYS = ROLLUP_HOURLY.primary_key
# The key columns in the order rollup rows bind them (the primary keys order them otherwise).
_DAILY_KEYS = ("dimension", "dimension_value", "status", "day_start")
_HISTOGRAM_KEYS = (*_DAILY_KEYS, "metric")
_HISTOGRAM_SUMS = ("calls", *HISTOGRAM_COUNTS)
# What the statements that read API calls into rollups take from each call.
_SOURCE_COLUMNS = (
    "create_time",
    "tenant_id",
    "user_id",
    "agent_id",
    "model_name",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_price",
    "latency_ms",
    "time_to_first_token_ms",
    "tokens_per_second",
)

ROLLUP_TOTALS = (
    "SUM(calls)",
    *(
        f"SUM(CASE WHEN status = '{status}' THEN calls ELSE 0 END)"
        for status in ("success", "failed", "timeout", "rate_limited", "cancelled")
    ),
    "SUM(total_tokens)",
    "SUM(prompt_tokens)",
    "SUM(completion_tokens)",
    "SUM(cost)",
    "SUM(cost_units)",
    "SUM(priced_calls)",
    "SUM(latency_sum)",
    "SUM(latency_count)",
    "SUM(tps_sum)",
    "SUM(tps_count)",
    "SUM(ttft_sum)",
    "SUM(ttft_count)",
    "SUM(cached_tokens)",
    "SUM(reasoning_tokens)",
    "SUM(cache_write_tokens)",
)
"""A rollup table's sums in ``UsageTotals.from_sums`` order (as ``queries.usage_totals``)."""

_SCAN_ONLY: ContextVar[bool] = ContextVar("chatledger_rollups_scan_only", default=False)
_EXACT_VALUES: ContextVar[int] = ContextVar("chatledger_rollups_exact", default=EXACT_VALUES)


@contextlib.contextmanager
def scan_only() -> Iterator[None]:
    """Inside it, statistics are computed from the API calls, never from the rollups.

    For tests and measurements that compare the two answers.
    """
    token = _SCAN_ONLY.set(True)
    try:
        yield
    finally:
        _SCAN_ONLY.reset(token)


@contextlib.contextmanager
def exact_values_up_to(count: int) -> Iterator[None]:
    """Inside it, percentiles are exact up to ``count`` values (0: histograms when they serve)."""
    token = _EXACT_VALUES.set(count)
    try:
        yield
    finally:
        _EXACT_VALUES.reset(token)


def exact_values_limit() -> int:
    """Up to how many values percentiles are read exactly, here and now."""
    return _EXACT_VALUES.get()


def bucket_rows() -> str:
    """The histogram buckets as a multi-row VALUES list: ``(low, bucket), …``."""
    return ", ".join(f"({low}, {bucket})" for bucket, low in enumerate(BUCKET_LOWS))


# --- writes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RollupStatements:
    """A dialect's statements that add rows of sums to each rollup table."""

    hourly: str
    daily: str
    histogram: str
    arrays: dict[str, str]  # each upsert as one statement of column arrays, where there is one
    keys: dict[str, int]  # how many key columns lead each upsert's rows

    @classmethod
    def of(cls, dialect: Dialect) -> RollupStatements:
        """The upserts of ``dialect``, placeholders rewritten for its driver."""
        arrays: dict[str, str] = {}
        keyed: dict[str, int] = {}

        def upsert(table: Table, keys: Sequence[str], sums: Sequence[str]) -> str:
            columns = (*keys, *sums)
            marks = ", ".join("?" * len(columns))
            accumulate = dialect.accumulate(table, table.primary_key, sums)
            sql = dialect.sql(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks}){accumulate}"
            )
            keyed[sql] = len(keys)
            unnest = dialect.from_arrays(table, columns)
            if unnest is not None:
                arrays[sql] = dialect.sql(
                    f"INSERT INTO {table.name} ({', '.join(columns)}) {unnest}{accumulate}"
                )
            return sql

        return cls(
            hourly=upsert(ROLLUP_HOURLY, _HOURLY_KEYS, _SUMS),
            daily=upsert(ROLLUP_DAILY, _DAILY_KEYS, _SUMS),
            histogram=upsert(ROLLUP_HISTOGRAM, _HISTOGRAM_KEYS, _HISTOGRAM_SUMS),
            arrays=arrays,
            keys=keyed,
        )


def _call_sums(dialect: Dialect, call: LLMApiCall) -> list[Any]:
    """One call's contribution to each of ``ROLLUP_SUM_COLUMNS``."""
    prompt, completion = call.prompt_tokens_details, call.completion_tokens_details
    if call.total_price is None:
        cost: Any = 0
        units = priced = 0
    else:
        (cost, units), priced = dialect.money_parts(call.total_price), 1
    latency, first_token, speed = (
        call.latency_ms,
        call.time_to_first_token_ms,
        call.tokens_per_second,
    )
    return [
        1,
        call.prompt_tokens,
        call.completion_tokens,
        call.total_tokens,
        (prompt.cached_tokens or 0) if prompt is not None else 0,
        (prompt.cache_write_tokens or 0) if prompt is not None else 0,
        (completion.reasoning_tokens or 0) if completion is not None else 0,
        priced,
        cost,
        units,
        latency or 0,
        0 if latency is None else 1,
        first_token or 0,
        0 if first_token is None else 1,
        speed or 0.0,
        0 if speed is None else 1,
    ]


def _summed(groups: dict[tuple[Any, ...], list[list[Any]]]) -> list[tuple[Any, ...]]:
    """A row per group, in key order: its key, then the column-wise sums of its members."""
    return [
        (*key, *(members[0] if len(members) == 1 else map(sum, zip(*members, strict=True))))
        for key, members in sorted(groups.items())
    ]


def rollup_writes(
    dialect: Dialect, statements: RollupStatements, calls: Sequence[LLMApiCall]
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """What adding ``calls`` does to each rollup table: (upsert, rows), rows in key order.

    The batch is summed here, so each table gets one row per key of the
    batch; keys in one order, so that concurrent batches lock rows in the
    same order (no deadlock between them on MySQL). Each call's sums are
    listed under its keys and each key's list summed column-wise once (most
    hourly keys hold one call): adding them up call by call took half the
    time a batch spent in Python.
    """
    u, t = dialect.encode_uuid, dialect.encode_time
    hourly: dict[tuple[Any, ...], list[list[Any]]] = {}
    daily: dict[tuple[Any, ...], list[list[Any]]] = {}
    histogram: dict[tuple[Any, ...], list[int]] = {}
    times: dict[datetime, tuple[Any, Any]] = {}  # an hour's start and its day's, encoded
    for call in calls:
        sums = _call_sums(dialect, call)
        status = call.status.value
        hour = truncate_to_bucket(call.create_time, "hour")
        encoded = times.get(hour)
        if encoded is None:
            encoded = times[hour] = (t(hour), t(hour.replace(hour=0)))
        hour_start, day = encoded
        tenant, user, agent = str(call.tenant_id), str(call.user_id), str(call.agent_id)
        ids = (
            (tenant, user, agent)
            if u is str  # the ids' text is what the dialect stores: made once
            else (u(call.tenant_id), u(call.user_id), u(call.agent_id))
        )
        hourly.setdefault((hour_start, *ids, call.model_name, status), []).append(sums)
        values = {"": "", "tenant": tenant, "user": user, "agent": agent, "model": call.model_name}
        for dimension in DAILY_DIMENSIONS:
            daily.setdefault((dimension, values[dimension], status, day), []).append(sums)
        for metric, value in enumerate((call.latency_ms, call.time_to_first_token_ms)):
            if value is None:
                continue
            position = 1 + histogram_bucket(value)  # after the row's calls
            for dimension in HISTOGRAM_DIMENSIONS:
                cell = (dimension, values[dimension], status, day, metric)
                counts = histogram.get(cell)
                if counts is None:
                    counts = histogram[cell] = [0] * len(_HISTOGRAM_SUMS)
                counts[0] += 1
                counts[position] += 1
    return [
        (statement, rows)
        for statement, rows in (
            (statements.hourly, _summed(hourly)),
            (statements.daily, _summed(daily)),
            (statements.histogram, [(*key, *counts) for key, counts in sorted(histogram.items())]),
        )
        if rows
    ]


# --- SQL that reads API calls into the rollups ------------------------------------------


def _sum_expressions(dialect: Dialect, sign: str) -> list[str]:
    """The sums of ``ROLLUP_SUM_COLUMNS`` over calls ``c``, negated when ``sign`` is ``-``."""
    money, units = dialect.cost_parts("c.total_price")
    expressions = [
        "COUNT(*)",
        "SUM(c.prompt_tokens)",
        "SUM(c.completion_tokens)",
        "SUM(c.total_tokens)",
        "SUM(COALESCE(c.cached_tokens, 0))",
        "SUM(COALESCE(c.cache_write_tokens, 0))",
        "SUM(COALESCE(c.reasoning_tokens, 0))",
        "COUNT(c.total_price)",
        f"SUM(COALESCE({money}, 0))",
        f"SUM(COALESCE({units}, 0))",
        "SUM(COALESCE(c.latency_ms, 0))",
        "COUNT(c.latency_ms)",
        "SUM(COALESCE(c.time_to_first_token_ms, 0))",
        "COUNT(c.time_to_first_token_ms)",
        "SUM(COALESCE(c.tokens_per_second, 0))",
        "COUNT(c.tokens_per_second)",
    ]
    return [f"-({expression})" if sign == "-" else expression for expression in expressions]


def _dimension_value(dialect: Dialect, dimension: str, alias: str = "c") -> str:
    """A daily row's dimension value, from calls ``alias``."""
    if dimension == "":
        return "''"
    column = f"{alias}.{_KEY_COLUMNS[dimension]}"
    return dialect.uuid_as_text(column) if dimension in _UUID_KEYS else column


def from_calls(dialect: Dialect, condition: str, *, sign: str = "+") -> list[str]:
    """Statements adding (``sign="+"``) or subtracting (``"-"``) calls to every rollup table.

    The calls are those ``condition`` selects (its ``?`` parameters bound
    by each statement alike), read with the dialect's row lock so that a
    subtraction and the delete after it see the same rows: a concurrent
    delete of one of them waits, and then finds nothing to subtract.
    """
    source = (
        f"(SELECT {', '.join(_SOURCE_COLUMNS)} FROM {API_CALL.name} "
        f"WHERE {condition}{dialect.lock_rows if sign == '-' else ''}) c"
    )
    # A period whose calls change is no longer sealed: its rows would miss the change.
    unseal = [_unseal_where(dialect, condition)] if sign == "-" else []
    sums = ", ".join(_sum_expressions(dialect, sign))
    hour = dialect.bucket_start("c.create_time", "hour")
    day = dialect.bucket_start("c.create_time", "day")
    statements = [
        *unseal,
        f"INSERT INTO {ROLLUP_HOURLY.name} ({', '.join((*_HOURLY_KEYS, *_SUMS))}) "
        f"SELECT {hour}, {dialect.uuid_key('c.tenant_id')}, {dialect.uuid_key('c.user_id')}, "
        f"{dialect.uuid_key('c.agent_id')}, c.model_name, c.status, {sums} "
        f"FROM {source} WHERE 1 = 1 GROUP BY 1, 2, 3, 4, 5, 6"
        + dialect.accumulate(ROLLUP_HOURLY, _HOURLY_KEYS, _SUMS),
    ]
    for dimension in DAILY_DIMENSIONS:
        grouped = "3, 4" if dimension == "" else "2, 3, 4"
        statements.append(
            f"INSERT INTO {ROLLUP_DAILY.name} ({', '.join((*_DAILY_KEYS, *_SUMS))}) "
            f"SELECT '{dimension}', {_dimension_value(dialect, dimension)}, c.status, {day}, "
            f"{sums} FROM {source} WHERE 1 = 1 GROUP BY {grouped}"
            + dialect.accumulate(ROLLUP_DAILY, ROLLUP_DAILY.primary_key, _SUMS)
        )
    negate = "-" if sign == "-" else ""
    counts = ", ".join(
        f"{negate}SUM(CASE WHEN m.bucket = {bucket} THEN m.n ELSE 0 END)"
        for bucket in range(len(HISTOGRAM_COUNTS))
    )
    for dimension in HISTOGRAM_DIMENSIONS:
        for metric, column in enumerate(METRICS):
            bucket = (
                f"(SELECT b.bucket FROM {HISTOGRAM_BUCKET.name} b WHERE b.low <= c.{column} "
                "ORDER BY b.low DESC LIMIT 1)"
            )
            # each call's bucket, then calls per bucket (few rows), then one row per day
            per_bucket = (
                f"SELECT h.dimension_value, h.status, h.day_start, h.bucket, COUNT(*) AS n "
                f"FROM (SELECT {_dimension_value(dialect, dimension)} AS dimension_value, "
                f"c.status AS status, {day} AS day_start, {bucket} AS bucket "
                f"FROM {source} WHERE c.{column} IS NOT NULL) h WHERE 1 = 1 GROUP BY 1, 2, 3, 4"
            )
            statements.append(
                f"INSERT INTO {ROLLUP_HISTOGRAM.name} "
                f"({', '.join((*_HISTOGRAM_KEYS, *_HISTOGRAM_SUMS))}) "
                f"SELECT '{dimension}', m.dimension_value, m.status, m.day_start, {metric}, "
                f"{negate}SUM(m.n), {counts} FROM ({per_bucket}) m WHERE 1 = 1 GROUP BY 2, 3, 4"
                + dialect.accumulate(
                    ROLLUP_HISTOGRAM, ROLLUP_HISTOGRAM.primary_key, _HISTOGRAM_SUMS
                )
            )
    return [dialect.sql(statement) for statement in statements]


def rebuild_statements(dialect: Dialect, bounded: bool | None) -> list[str]:
    """Statements that recount the rollups of a range of days from its calls.

    ``bounded=None``: every call, into empty tables (the migration's
    backfill; no parameters). Otherwise the range is ``[start, end)``, each
    statement binding its bounds: ``start`` and ``end`` with ``bounded=True``;
    with ``bounded=False``, only ``start`` (an open end). The range's rollup
    rows are deleted first.
    """
    if bounded is None:
        return from_calls(dialect, "1 = 1")
    within = "{column} >= ?" + (" AND {column} < ?" if bounded else "")
    deletes = [
        dialect.sql(f"DELETE FROM {table.name} WHERE {within.format(column=time)}")
        for table, time in (
            (ROLLUP_HOURLY, "hour_start"),
            (ROLLUP_DAILY, "day_start"),
            (ROLLUP_HISTOGRAM, "day_start"),
        )
    ]
    return [*deletes, *from_calls(dialect, within.format(column="create_time"))]


# --- sealed periods ---------------------------------------------------------------------
#
# A complete month's, and a complete week's, daily rows are also summed into period rows,
# in the same tables under the dimension "M:" or "W:" + the dimension and the period's
# first day, and the period is then "sealed" (a row in SEALED_PERIOD). A long range reads
# one row per value and month, then per week, then per day for what is left: at a million
# calls over 90 days, a breakdown by user since the start reads 2 months, 4 weeks and
# a few days of rows instead of 90 days of them. A sealed period's rows equal the sum of its
# days' rows: every write that changes calls of a past period unseals it in its own
# transaction (a batch with calls of an earlier week or month than the writer's, a delete
# or a prune through from_calls, an erasure, a rebuild), and reads use the rows of sealed
# periods only. Periods are sealed SEAL_MARGIN after their end, so that a writer whose
# clock is behind still takes the period it writes into as past, and unseals it.


PeriodName = Literal["month", "week"]


@dataclass(frozen=True, slots=True)
class Period:
    """A length of time whose rows may be sealed: months, or ISO weeks (from Monday)."""

    name: PeriodName  # as SEALED_PERIOD and the dialects' bucket_start name it
    prefix: str  # what its rows' dimension starts with

    def start(self, moment: datetime) -> datetime:
        """The UTC start of the period holding ``moment``."""
        return truncate_to_bucket(moment.astimezone(UTC), self.name)

    def after(self, start: datetime) -> datetime:
        """The start of the next period (``start`` is one's start)."""
        if self.name == "week":
            return start + timedelta(days=7)
        return (start + timedelta(days=32)).replace(day=1)


PERIODS = (Period("month", "M:"), Period("week", "W:"))
"""The periods sealed, longest first: a range takes its sealed months, then weeks."""
SEAL_MARGIN = timedelta(days=2)
"""How long after its end a period may be sealed."""

Sealed = frozenset[tuple[PeriodName, datetime]]
"""The sealed periods: (period name, start)."""


def past_periods(calls: Sequence[LLMApiCall], now: datetime) -> list[tuple[PeriodName, datetime]]:
    """The periods before ``now``'s that ``calls`` fall in: those a write must unseal.

    Calls of the current week and month, nearly every call a recorder writes,
    are passed over by one comparison each.
    """
    currents = [(period, period.start(now)) for period in PERIODS]
    recent = max(current for _, current in currents)  # in the current week and month
    found = {
        (period.name, start)
        for call in calls
        if call.create_time < recent
        for period, current in currents
        if (start := period.start(call.create_time)) < current
    }
    return sorted(found)


def unseal_statements(dialect: Dialect) -> tuple[str, str]:
    """Statements unsealing one period (its name and start bound) and every period."""
    return (
        dialect.sql(f"DELETE FROM {SEALED_PERIOD.name} WHERE period = ? AND period_start = ?"),
        dialect.sql(f"DELETE FROM {SEALED_PERIOD.name}"),
    )


def _unseal_where(dialect: Dialect, condition: str) -> str:
    """A statement unsealing the periods of the calls ``condition`` selects (its parameters)."""
    periods = " OR ".join(
        f"(s.period = '{period.name}' AND "
        f"s.period_start = {dialect.bucket_start('c.create_time', period.name)})"
        for period in PERIODS
    )
    return (
        f"DELETE FROM {SEALED_PERIOD.name} WHERE EXISTS (SELECT 1 FROM {API_CALL.name} c "
        f"WHERE ({condition}) AND ({periods.replace('s.', SEALED_PERIOD.name + '.')}))"
    )


def sealable_periods(
    days: Sequence[datetime], sealed: Sealed, now: datetime
) -> list[tuple[PeriodName, datetime]]:
    """The periods holding any of ``days`` that ended ``SEAL_MARGIN`` before ``now``, not sealed.

    ``days`` are the days the rollups hold calls of; a period without any
    is left alone (a range over it reads nothing either way).
    """
    return [
        (period.name, start)
        for period in PERIODS
        for start in sorted({period.start(day) for day in days if day < now})
        if period.after(start) + SEAL_MARGIN <= now and (period.name, start) not in sealed
    ]


def seal_statements(dialect: Dialect, period: Period) -> list[tuple[str, int]]:
    """What sealing one ``period`` runs, in one transaction: (statement, how its bounds bind).

    Binding 1: the period's start; 3: the start, then the range of its days
    (start, the next period's start). Its old rows go first (a period
    unsealed since keeps them), then its days are summed, then it is marked
    sealed.
    """
    names = ", ".join(f"'{period.prefix}{dimension}'" for dimension in DAILY_DIMENSIONS)
    statements: list[tuple[str, int]] = [
        (f"DELETE FROM {table.name} WHERE day_start = ? AND dimension IN ({names})", 1)
        for table in (ROLLUP_DAILY, ROLLUP_HISTOGRAM)
    ]
    sums = ", ".join(f"SUM({name})" for name in _SUMS)
    statements.extend(
        (
            f"INSERT INTO {ROLLUP_DAILY.name} ({', '.join((*_DAILY_KEYS, *_SUMS))}) "
            f"SELECT '{period.prefix}{dimension}', dimension_value, status, ?, {sums} "
            f"FROM {ROLLUP_DAILY.name} WHERE dimension = '{dimension}' "
            "AND day_start >= ? AND day_start < ? GROUP BY dimension_value, status",
            3,
        )
        for dimension in DAILY_DIMENSIONS
    )
    counts = ", ".join(f"SUM({name})" for name in _HISTOGRAM_SUMS)
    statements.extend(
        (
            f"INSERT INTO {ROLLUP_HISTOGRAM.name} "
            f"({', '.join((*_HISTOGRAM_KEYS, *_HISTOGRAM_SUMS))}) "
            f"SELECT '{period.prefix}{dimension}', dimension_value, status, ?, metric, "
            f"{counts} FROM {ROLLUP_HISTOGRAM.name} WHERE dimension = '{dimension}' "
            "AND day_start >= ? AND day_start < ? GROUP BY dimension_value, status, metric",
            3,
        )
        for dimension in HISTOGRAM_DIMENSIONS
    )
    statements.append(
        (
            f"INSERT INTO {SEALED_PERIOD.name} (period, period_start) VALUES ('{period.name}', ?)",
            1,
        )
    )
    return [(dialect.sql(sql), binding) for sql, binding in statements]


def sealed_segments(plan: RollupPlan, sealed: Sealed, bucket: str | None) -> list[RollupPlan]:
    """``plan``'s days as ranges of days and of sealed periods, each a plan of its own.

    The segments carry no hours nor edges (those are read apart). A sealed
    period's rows serve it when it lies whole within the days and no bucket
    splits it (a breakdown by day needs its days); months first, then weeks
    in what the months leave.
    """
    if plan.days is None or not sealed or bucket is not None:
        return [plan]
    ranges: list[tuple[Range, str]] = [(plan.days, "")]
    for period in PERIODS:
        starts = sorted(start for name, start in sealed if name == period.name)
        carved: list[tuple[Range, str]] = []
        for (first, last), prefix in ranges:
            if prefix:  # a sealed period already
                carved.append(((first, last), prefix))
                continue
            cursor = first
            for start in starts:
                end = period.after(start)
                if (first is not None and start < first) or (last is not None and end > last):
                    continue
                if cursor is None or cursor < start:
                    carved.append(((cursor, start), ""))
                carved.append(((start, end), period.prefix))
                cursor = end
            if last is None or cursor is None or cursor < last:
                carved.append(((cursor, last), ""))
        ranges = carved
    return [replace(plan, days=days, hours=(), edges=(), prefix=prefix) for days, prefix in ranges]


# --- reads ----------------------------------------------------------------------------

Range = tuple[datetime | None, datetime | None]


@dataclass(frozen=True, slots=True)
class RollupPlan:
    """Where a statistic's sums come from.

    ``days``, when not None, is the range of whole UTC days the daily table
    serves for ``dimension`` (``''``: no dimension); ``hours`` are the ranges
    the hourly table serves. ``histogram``: whether the daily histograms hold
    ``dimension``, so that percentiles over many calls may be read from them.
    ``prefix``: the days are a sealed period, read from its rows (``PERIODS``).
    ``edges``: the parts of an hour at bounds off the hour, read from the calls.
    """

    dimension: str
    days: Range | None
    hours: tuple[Range, ...]
    histogram: bool
    prefix: str = ""  # the rows of a sealed period serve ``days``: "M:" or "W:"
    edges: tuple[Range, ...] = ()  # parts of hours at the bounds, read from the calls


def _on_the_hour(moment: datetime | None) -> bool:
    if moment is None:
        return True
    moment = moment.astimezone(UTC)
    return moment.minute == 0 and moment.second == 0 and moment.microsecond == 0


def plan_rollups(query: QueryFilter, keys: Sequence[str], bucket: str | None) -> RollupPlan | None:
    """How the rollups answer a statistic of ``query`` grouped by ``keys`` and ``bucket``.

    None when they cannot: a filter on the session, error code, cost or
    latency, bounds within one or two hours of each other, or a grouping by
    session (or inside :func:`scan_only`). Bounds off the hour leave the
    parts of their hours to the calls (``RollupPlan.edges``).
    """
    if _SCAN_ONLY.get():
        return None
    if any(
        value is not None
        for value in (
            query.session_id,
            query.error_code,
            query.min_cost,
            query.max_cost,
            query.min_latency_ms,
            query.max_latency_ms,
        )
    ):
        return None
    if "session" in keys:
        return None
    start = None if query.start_time is None else query.start_time.astimezone(UTC)
    end = None if query.end_time is None else query.end_time.astimezone(UTC)
    # Bounds off the hour: the whole hours between them from the rollups, the part
    # hours at either end from their calls (``edges``).
    edges: list[Range] = []
    if start is not None and not _on_the_hour(start):
        inner = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        edges.append((start, inner))
        start = inner
    if end is not None and not _on_the_hour(end):
        inner = end.replace(minute=0, second=0, microsecond=0)
        edges.append((inner, end))
        end = inner
    if start is not None and end is not None and start >= end:
        return None  # within an hour or two: the calls themselves
    filtered = {
        "tenant": query.tenant_id,
        "user": query.user_id,
        "agent": query.agent_id,
        "model": query.model_name,
    }
    dimensions = [key for key in _DIMENSION_KEYS if key in keys or filtered[key] is not None]
    whole = (start, end)
    if bucket == "hour" or len(dimensions) > 1:
        return RollupPlan("", None, (whole,), histogram=False, edges=tuple(edges))
    dimension = dimensions[0] if dimensions else ""
    first = None if start is None else _next_day(start)
    last = None if end is None else end.replace(hour=0)
    if first is not None and last is not None and first >= last:
        return RollupPlan(dimension, None, (whole,), histogram=False, edges=tuple(edges))
    hours: list[Range] = []
    if start is not None and first is not None and start < first:
        hours.append((start, first))
    if end is not None and last is not None and last < end:
        hours.append((last, end))
    return RollupPlan(
        dimension,
        (first, last),
        tuple(hours),
        histogram=dimension in HISTOGRAM_DIMENSIONS,
        edges=tuple(edges),
    )


def through_day_end(plan: RollupPlan) -> tuple[RollupPlan, tuple[datetime, datetime]] | None:
    """``plan`` with its last day's hours read from the daily table, and the rest of that day.

    A range that ends within a day after whole days (the dashboard's and
    the benchmark's: up to the next whole hour of today) holds the whole of
    its last day's calls when the rest of that day holds no call at all; the
    day's rollup rows then answer for its hours, and a day of hourly rows
    (one per user, agent and model an hour) need not be read. The caller
    checks that the returned range holds no call, in the same snapshot as
    the widened plan's reads. None when the plan ends on a midnight, has no
    days, or ends in part of an hour read from the calls.
    """
    if plan.days is None or not plan.hours:
        return None
    first, last = plan.days
    start, end = plan.hours[-1]
    if last is None or start != last or end is None or any(e[0] == end for e in plan.edges):
        return None
    rest = (end, last + timedelta(days=1))
    return replace(plan, days=(first, rest[1]), hours=plan.hours[:-1]), rest


def _next_day(moment: datetime) -> datetime:
    """The first midnight at or after ``moment``."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == moment else day + timedelta(days=1)


def _range_clauses(column: str, bounds: Range, dialect: Dialect) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    start, end = bounds
    if start is not None:
        clauses.append(f"{column} >= ?")
        params.append(dialect.encode_time(start))
    if end is not None:
        clauses.append(f"{column} < ?")
        params.append(dialect.encode_time(end))
    return clauses, params


def _key_filters(query: QueryFilter) -> dict[str, Any]:
    """The group keys ``query`` filters on, and the value each must have."""
    return {
        key: value
        for key, value in (
            ("tenant", query.tenant_id),
            ("user", query.user_id),
            ("agent", query.agent_id),
            ("model", query.model_name),
            ("status", None if query.status is None else query.status.value),
        )
        if value is not None
    }


def hourly_read(
    dialect: Dialect,
    query: QueryFilter,
    keys: Sequence[str],
    bucket: str | None,
    hours: Range,
    *,
    values: Sequence[str] = (),
    figures: Sequence[str] = ROLLUP_TOTALS,
) -> tuple[str, list[Any]]:
    """Sums from the hourly table per group (key columns, then bucket start) over ``hours``.

    ``values``: only these of the one grouped key (as text). ``figures``: the
    sums read (all of them, or the calls alone to rank the groups).
    """
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in _key_filters(query).items():
        clauses.append(f"{_KEY_COLUMNS[key]} = ?")
        params.append(dialect.encode_uuid(value) if key in _UUID_KEYS else value)
    if values:
        (key,) = keys
        clauses.append(f"{_KEY_COLUMNS[key]} IN ({', '.join('?' * len(values))})")
        params += [
            dialect.encode_uuid(uuid.UUID(value)) if key in _UUID_KEYS else value
            for value in values
        ]
    within, bounds = _range_clauses("hour_start", hours, dialect)
    groups = [_KEY_COLUMNS[key] for key in keys]
    if bucket is not None:
        groups.append(dialect.bucket_start("hour_start", bucket))
    return _grouped(dialect, ROLLUP_HOURLY, figures, [*clauses, *within], groups), [
        *params,
        *bounds,
    ]


def _daily_where(
    dialect: Dialect, query: QueryFilter, dimension: str, days: Range, *, prefix: str = ""
) -> tuple[list[str], list[Any]]:
    clauses = ["dimension = ?"]
    params: list[Any] = [prefix + dimension]
    filters = _key_filters(query)
    if dimension == "":
        clauses.append("dimension_value = ?")
        params.append("")
    elif dimension in filters:
        clauses.append("dimension_value = ?")
        value = filters[dimension]
        params.append(str(value) if dimension in _UUID_KEYS else value)
    if "status" in filters:
        clauses.append("status = ?")
        params.append(filters["status"])
    within, bounds = _range_clauses("day_start", days, dialect)
    return [*clauses, *within], [*params, *bounds]


def _daily_groups(dialect: Dialect, keys: Sequence[str], bucket: str | None) -> list[str]:
    groups = ["status" if key == "status" else dialect.group_key("dimension_value") for key in keys]
    if bucket is not None:
        groups.append(dialect.bucket_start("day_start", bucket))
    return groups


def _daily_values(
    keys: Sequence[str], values: Sequence[str], clauses: list[str], params: list[Any]
) -> None:
    """Keep only ``values`` of the one grouped key, in a daily table's ``clauses``."""
    if values:
        column = "status" if keys[0] == "status" else "dimension_value"
        clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
        params += values


def daily_read(
    dialect: Dialect,
    query: QueryFilter,
    keys: Sequence[str],
    bucket: str | None,
    plan: RollupPlan,
    *,
    values: Sequence[str] = (),
    figures: Sequence[str] = ROLLUP_TOTALS,
) -> tuple[str, list[Any]]:
    """Sums from the daily table per group over the plan's whole days (as :func:`hourly_read`)."""
    assert plan.days is not None
    clauses, params = _daily_where(dialect, query, plan.dimension, plan.days, prefix=plan.prefix)
    _daily_values(keys, values, clauses, params)
    groups = _daily_groups(dialect, keys, bucket)
    return _grouped(dialect, ROLLUP_DAILY, figures, clauses, groups), params


def histogram_read(
    dialect: Dialect,
    query: QueryFilter,
    keys: Sequence[str],
    bucket: str | None,
    plan: RollupPlan,
    values: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    """Calls per (metric, bucket) per group over the plan's whole days.

    ``values``: only these of the one grouped key (a breakdown's top groups).
    """
    assert plan.days is not None
    clauses, params = _daily_where(dialect, query, plan.dimension, plan.days, prefix=plan.prefix)
    _daily_values(keys, values, clauses, params)
    groups = _daily_groups(dialect, keys, bucket)
    counts = ("metric", *(f"SUM({name})" for name in HISTOGRAM_COUNTS))
    return (
        _grouped(dialect, ROLLUP_HISTOGRAM, counts, clauses, groups, more=("metric",)),
        params,
    )


def _grouped(
    dialect: Dialect,
    table: Table,
    figures: Sequence[str],
    clauses: Sequence[str],
    groups: Sequence[str],
    more: Sequence[str] = (),
) -> str:
    selected = "".join(f"{expr} AS g{i}, " for i, expr in enumerate(groups))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    grouped = [*groups, *more]
    group_by = f" GROUP BY {', '.join(grouped)}" if grouped else ""
    return dialect.sql(f"SELECT {selected}{', '.join(figures)} FROM {table.name}{where}{group_by}")


# --- erasure: calls counted under another user -------------------------------------------


def user_change_statements(
    dialect: Dialect, condition: str
) -> tuple[list[str], list[str], list[str]]:
    """What giving the calls ``condition`` selects another user does to the rollups.

    Erasure replaces an erased user's id on their calls; only the hourly
    table and the daily table's user rows are keyed by user, so only they
    change. Three lists of statements, all to run before the calls change:
    one subtracting the calls from their users' rows (binding
    ``condition``'s parameters; the calls read locked, as for a delete),
    one adding them to the rows of the user bound first (then
    ``condition``'s parameters), and one deleting the rows of the calls'
    users left without a call, which would still name an erased user
    (``condition``'s parameters).
    """
    user_type = dialect.column_type(next(c for c in API_CALL.columns if c.name == "user_id"))

    def counted(user: str, sign: str) -> list[str]:
        columns = ", ".join(f"{user} AS user_id" if c == "user_id" else c for c in _SOURCE_COLUMNS)
        lock = dialect.lock_rows if sign == "-" else ""
        source = f"(SELECT {columns} FROM {API_CALL.name} WHERE {condition}{lock}) c"
        sums = ", ".join(_sum_expressions(dialect, sign))
        hour = dialect.bucket_start("c.create_time", "hour")
        day = dialect.bucket_start("c.create_time", "day")
        hourly = (
            f"INSERT INTO {ROLLUP_HOURLY.name} ({', '.join((*_HOURLY_KEYS, *_SUMS))}) "
            f"SELECT {hour}, {dialect.uuid_key('c.tenant_id')}, {dialect.uuid_key('c.user_id')}, "
            f"{dialect.uuid_key('c.agent_id')}, c.model_name, c.status, {sums} "
            f"FROM {source} WHERE 1 = 1 GROUP BY 1, 2, 3, 4, 5, 6"
            + dialect.accumulate(ROLLUP_HOURLY, _HOURLY_KEYS, _SUMS)
        )
        daily = (
            f"INSERT INTO {ROLLUP_DAILY.name} ({', '.join((*_DAILY_KEYS, *_SUMS))}) "
            f"SELECT 'user', {_dimension_value(dialect, 'user')}, c.status, {day}, {sums} "
            f"FROM {source} WHERE 1 = 1 GROUP BY 2, 3, 4"
            + dialect.accumulate(ROLLUP_DAILY, ROLLUP_DAILY.primary_key, _SUMS)
        )
        return [dialect.sql(hourly), dialect.sql(daily)]

    users = f"FROM {API_CALL.name} WHERE {condition}"
    emptied = [
        f"DELETE FROM {ROLLUP_HOURLY.name} WHERE calls = 0 AND user_id IN "
        f"(SELECT {dialect.uuid_key('user_id')} {users})",
        f"DELETE FROM {ROLLUP_DAILY.name} WHERE dimension = 'user' AND calls = 0 AND "
        f"dimension_value IN (SELECT {dialect.uuid_as_text('user_id')} {users})",
    ]
    return (
        counted("user_id", "-"),
        counted(f"CAST(? AS {user_type})", "+"),
        [dialect.sql(statement) for statement in emptied],
    )
