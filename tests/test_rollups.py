"""The usage rollups: histogram buckets, which statistics they answer, and that the rows written
from Python (each save) are the rows SQL counts (backfill, rebuild, subtraction) on every backend.

That rollup answers equal scan answers is in the conformance suite (every backend).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chatledger.entities import ApiCallStatus, QueryFilter, TokenDetails, UsageStatistics
from chatledger.errors import QueryError
from chatledger.stores.base import Breakdown, Bucket
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.rollups import plan_rollups, through_day_end
from chatledger.stores.schema import ROLLUP_DAILY, ROLLUP_HISTOGRAM, ROLLUP_HOURLY
from chatledger.stores.sql import Read, SqlStore
from chatledger.stores.sqlite import SqliteDialect, SqliteStore
from chatledger.stores.statistics import (
    BUCKET_LOWS,
    PERCENTILE_RELATIVE_ERROR,
    Distribution,
    bucket_estimate,
    histogram_bucket,
    next_bucket,
    percentile,
    truncate_to_bucket,
)
from chatledger.testing import make_api_call
from scratch_databases import SQL_BACKENDS, mysql_database, postgres_database

T0 = datetime(2025, 3, 1, tzinfo=UTC)

# --- histogram buckets ---------------------------------------------------------------------


def test_buckets_grow_by_at_most_ten_percent() -> None:
    """Bucket 0 is 0 ms, 1..10 ms each have their own, and no bucket spans 10% or more."""
    assert BUCKET_LOWS[:12] == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    for low, following in itertools.pairwise(BUCKET_LOWS[1:]):
        assert following > low
        assert (following - 1) < low * 1.1
    assert BUCKET_LOWS[-1] == 600_000  # ten minutes: the last bucket's start
    assert len(BUCKET_LOWS) < 130


@pytest.mark.parametrize("value", [0, 1, 9, 10, 11, 12, 99, 100, 1_000, 59_999, 599_999, 600_000])
def test_a_value_falls_in_its_bucket(value: int) -> None:
    """histogram_bucket finds the bucket whose range holds the value."""
    bucket = histogram_bucket(value)
    assert BUCKET_LOWS[bucket] <= value
    assert bucket + 1 == len(BUCKET_LOWS) or value < BUCKET_LOWS[bucket + 1]


def test_every_value_is_estimated_within_the_documented_error() -> None:
    """A bucket's estimate is within sqrt(1.1) - 1 of its smallest and largest value."""
    assert pytest.approx(0.0488, abs=1e-4) == PERCENTILE_RELATIVE_ERROR
    for bucket in range(1, len(BUCKET_LOWS) - 1):
        estimate = bucket_estimate(bucket)
        for value in (BUCKET_LOWS[bucket], BUCKET_LOWS[bucket + 1] - 1):
            assert abs(estimate - value) <= PERCENTILE_RELATIVE_ERROR * value
    assert bucket_estimate(0) == 0.0
    # from ten minutes on, one bucket: read as ten minutes
    assert histogram_bucket(2**31 - 1) == len(BUCKET_LOWS) - 1
    assert bucket_estimate(len(BUCKET_LOWS) - 1) == 600_000.0


@pytest.mark.parametrize("seed", range(5))
def test_histogram_percentiles_are_within_the_error_of_exact_ones(seed: int) -> None:
    """Percentiles of bucket counts stay within the documented error of the values' own."""
    rng = random.Random(seed)
    values = [min(int(rng.lognormvariate(7, 1.2)), 599_999) for _ in range(rng.randint(1, 3000))]
    histogram = Distribution()
    histogram.add_count(0, 0)  # a histogram from the start: values are counted into buckets
    histogram.add_values(values)
    assert not histogram.exact
    ordered = sorted(values)
    for fraction, estimate in zip(
        (0.5, 0.95, 0.99), histogram.percentiles((0.5, 0.95, 0.99)), strict=True
    ):
        exact = percentile(ordered, fraction)
        assert exact is not None
        assert estimate is not None
        assert abs(estimate - exact) <= PERCENTILE_RELATIVE_ERROR * exact + 1e-9


def test_values_taken_before_counts_join_the_histogram() -> None:
    """A distribution is exact until counts arrive; then its values are counted in too."""
    distribution = Distribution()
    distribution.add_values([100, 200])
    assert distribution.exact
    assert distribution.percentiles((0.5,)) == [150.0]
    distribution.add_count(histogram_bucket(300), 2)
    assert not distribution.exact
    (median,) = distribution.percentiles((0.5,))
    assert median is not None
    assert abs(median - 250) <= PERCENTILE_RELATIVE_ERROR * 250


# --- which statistics the rollups answer ----------------------------------------------------

HOUR = T0 + timedelta(hours=5)


@pytest.mark.parametrize(
    ("query", "keys", "bucket"),
    [
        (QueryFilter().session(make_api_call().id), [], None),
        (QueryFilter().with_error_code("timeout"), [], None),
        (QueryFilter().cost_range(Decimal(1), None), [], None),
        (QueryFilter().latency_range(None, 100), [], None),
        (
            QueryFilter().time_range(HOUR + timedelta(minutes=1), HOUR + timedelta(hours=1)),
            [],
            None,
        ),
        (
            QueryFilter().time_range(HOUR - timedelta(seconds=1), HOUR + timedelta(minutes=59)),
            [],
            None,
        ),
        (QueryFilter(), ["session"], None),
    ],
)
def test_the_calls_answer_what_the_rollups_cannot(
    query: QueryFilter, keys: list[str], bucket: str | None
) -> None:
    """Session, error code, cost or latency filters, bounds within an hour or two: no plan."""
    assert plan_rollups(query, keys, bucket) is None


@pytest.mark.parametrize(
    ("query", "edges"),
    [
        (
            QueryFilter().time_range(HOUR + timedelta(minutes=1), None),
            ((HOUR + timedelta(minutes=1), HOUR + timedelta(hours=1)),),
        ),
        (
            QueryFilter().time_range(None, HOUR + timedelta(microseconds=1)),
            ((HOUR, HOUR + timedelta(microseconds=1)),),
        ),
        # on the hour in its own zone, not in UTC
        (
            QueryFilter().time_range(
                datetime(2025, 3, 1, 5, tzinfo=timezone(timedelta(minutes=30))), None
            ),
            ((datetime(2025, 3, 1, 4, 30, tzinfo=UTC), datetime(2025, 3, 1, 5, tzinfo=UTC)),),
        ),
    ],
)
def test_bounds_off_the_hour_leave_their_parts_of_an_hour_to_the_calls(
    query: QueryFilter, edges: tuple[tuple[datetime, datetime], ...]
) -> None:
    """The whole hours between the bounds from the rollups; the parts at the ends as edges."""
    plan = plan_rollups(query, [], None)
    assert plan is not None
    assert plan.edges == edges


def test_whole_days_come_from_the_daily_table_and_the_hours_around_them_hourly() -> None:
    """A range on the hour: its whole days daily, the hours before and after hourly."""
    start, end = T0 + timedelta(hours=5), T0 + timedelta(days=3, hours=2)
    plan = plan_rollups(QueryFilter().time_range(start, end).model("m"), ["status"], "day")
    assert plan is not None
    assert plan.dimension == "model"
    assert plan.days == (T0 + timedelta(days=1), T0 + timedelta(days=3))
    assert plan.hours == ((start, T0 + timedelta(days=1)), (T0 + timedelta(days=3), end))
    assert plan.histogram
    everything = plan_rollups(QueryFilter(), [], None)
    assert everything is not None
    assert (everything.dimension, everything.days, everything.hours) == ("", (None, None), ())
    by_user = plan_rollups(QueryFilter(), ["user"], "week")
    assert by_user is not None
    assert (by_user.dimension, by_user.histogram) == ("user", False)


def test_a_range_ending_within_a_day_may_read_that_whole_day_if_its_rest_is_empty() -> None:
    """The last day's hours become a whole day, given that the rest of the day holds no call."""
    start, end = T0 + timedelta(hours=5), T0 + timedelta(days=3, hours=2)
    plan = plan_rollups(QueryFilter().time_range(start, end).model("m"), [], None)
    assert plan is not None
    widened = through_day_end(plan)
    assert widened is not None
    wide, rest = widened
    assert wide.days == (T0 + timedelta(days=1), T0 + timedelta(days=4))
    assert wide.hours == ((start, T0 + timedelta(days=1)),)  # the first day's hours stay
    assert rest == (end, T0 + timedelta(days=4))
    for unchanged in (
        QueryFilter().time_range(start, T0 + timedelta(days=3)),  # ends on a midnight
        QueryFilter().time_range(start, end - timedelta(minutes=20)),  # ends off the hour
        QueryFilter().time_range(T0 + timedelta(hours=1), T0 + timedelta(hours=20)),  # no day
        QueryFilter().time_range(start, end).tenant(make_api_call().tenant_id).model("m"),
    ):
        found = plan_rollups(unchanged, [], None)
        assert found is not None
        assert through_day_end(found) is None, unchanged


@pytest.mark.parametrize(
    ("query", "keys", "bucket"),
    [
        (QueryFilter().tenant(make_api_call().tenant_id), ["model"], None),  # two dimensions
        (QueryFilter(), [], "hour"),  # hours, whatever the range
        (QueryFilter().time_range(T0 + timedelta(hours=1), T0 + timedelta(hours=20)), [], None),
    ],
)
def test_the_hourly_table_answers_the_rest(
    query: QueryFilter, keys: list[str], bucket: str | None
) -> None:
    """Two dimensions, hour buckets, or no whole day: every hour from the hourly table."""
    plan = plan_rollups(query, keys, bucket)
    assert plan is not None
    assert plan.days is None
    assert plan.hours == ((query.start_time, query.end_time),)
    assert not plan.histogram


# --- SQLite's exact cost --------------------------------------------------------------------


def test_sqlite_cost_parts_split_a_price_as_sql_does() -> None:
    """money_parts in Python equals cost_parts in SQL on the REAL SQLite stores."""
    dialect = SqliteDialect()
    whole, units = dialect.cost_parts("p")
    rng = random.Random(7)
    prices = [Decimal(0), Decimal("99999999999999"), Decimal("0.1"), Decimal("0.2")]
    prices += [Decimal(rng.randint(0, 10**14)).scaleb(-rng.randint(0, 14)) for _ in range(3000)]
    prices = [price for price in prices if price < 10**14]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (p REAL)")
    conn.executemany("INSERT INTO t VALUES (?)", [(float(price),) for price in prices])
    rows = conn.execute(f"SELECT {whole}, {units} FROM t").fetchall()
    assert [dialect.money_parts(price) for price in prices] == [tuple(row) for row in rows]
    for price in prices[:4]:  # short prices come out as they are
        money, fraction = dialect.money_parts(price)
        assert Decimal(money) + Decimal(fraction).scaleb(-10) == price


# --- rows written per save == rows SQL counts ------------------------------------------------


@pytest_asyncio.fixture(params=SQL_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A store of each SQL backend on a database of its own."""
    with ExitStack() as stack:
        opened: SqlStore
        if request.param == "sqlite":
            opened = await SqliteStore.connect(tmp_path / "rollups.db")
        elif request.param == "postgresql":
            opened = await PostgresStore.connect(stack.enter_context(postgres_database()))
        else:
            opened = await MySqlStore.connect(stack.enter_context(mysql_database()))
        try:
            yield opened
        finally:
            await opened.close()


async def _rollup_rows(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup row with a call, by table, sorted; float sums rounded, money as Decimal.

    The rows of sealed weeks and months (a rebuild seals them) are left out:
    they sum the days' rows, and test_sealed_periods_* in the conformance
    suite checks them.
    """
    found = {}
    for table in (ROLLUP_HOURLY, ROLLUP_DAILY, ROLLUP_HISTOGRAM):
        days = "" if table is ROLLUP_HOURLY else " AND SUBSTR(dimension, 2, 1) <> ':'"
        (rows,) = await store._db.read(
            [
                Read(
                    f"SELECT {', '.join(table.column_names)} FROM {table.name} "
                    f"WHERE calls <> 0{days}"
                )
            ]
        )
        found[table.name] = sorted(
            tuple(
                round(value, 6)
                if isinstance(value, float)
                else Decimal(value)
                if isinstance(value, Decimal)
                else str(value)
                for value in row
            )
            for row in rows
        )
    return found


def _calls(count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    tenants = [make_api_call().tenant_id for _ in range(2)]
    calls = []
    for _ in range(count):
        created = T0 + timedelta(
            seconds=rng.randint(0, 20 * 86400), microseconds=rng.randint(0, 999_999)
        )
        status = rng.choice(list(ApiCallStatus))
        calls.append(
            make_api_call(
                tenant_id=rng.choice(tenants),
                model_name=rng.choice(["a", "b", "模型"]),
                status=status,
                prompt_tokens=rng.randint(200, 900),
                prompt_tokens_details=TokenDetails(
                    cached_tokens=rng.randint(0, 100), cache_write_tokens=rng.randint(0, 100)
                )
                if rng.random() < 0.5
                else None,
                total_price=Decimal(rng.randint(0, 10**9)).scaleb(-rng.randint(0, 12))
                if rng.random() < 0.8
                else None,
                latency_ms=rng.randint(0, 90_000) if rng.random() < 0.9 else None,
                time_to_first_token_ms=rng.randint(0, 5_000) if rng.random() < 0.6 else None,
                tokens_per_second=rng.uniform(1, 200) if rng.random() < 0.7 else None,
                create_time=created,
            )
        )
    return calls


async def test_saved_rollups_are_what_sql_recounts(store: SqlStore) -> None:
    """The rows each save adds (summed in Python) are the rows a rebuild counts in SQL."""
    calls = _calls(600, seed=3)
    await store.save_api_calls(calls[:400])
    await asyncio.gather(*(store.save_api_call(call) for call in calls[400:500]))
    await store.ingest_records(calls=calls[450:])
    saved = await _rollup_rows(store)
    assert len(saved[ROLLUP_DAILY.name]) > len(saved[ROLLUP_HOURLY.name]) / 5 > 0
    assert await store.rebuild_rollups() == 600
    assert await _rollup_rows(store) == saved


async def test_deletes_subtract_what_sql_recounts(store: SqlStore) -> None:
    """After deletes and a prune, the rollups hold what a rebuild counts; empty rows go."""
    calls = _calls(300, seed=4)
    await store.save_api_calls(calls)
    doomed = calls[:20]
    results = await asyncio.gather(*(store.delete_api_call(call.id) for call in doomed * 2))
    assert sum(results) == 20  # each deleted once, and subtracted once
    cutoff = T0 + timedelta(days=7, minutes=30)
    await store.cleanup_old_records(cutoff)
    left = await _rollup_rows(store)
    await store.rebuild_rollups()
    assert await _rollup_rows(store) == left
    for table, time in ((ROLLUP_HOURLY, "hour_start"), (ROLLUP_DAILY, "day_start")):
        (rows,) = await store._db.read(
            [
                Read(
                    store._dialect.sql(
                        f"SELECT COUNT(*) FROM {table.name} WHERE calls = 0 AND {time} < ?"
                    ),
                    (store._dialect.encode_time(cutoff),),
                )
            ]
        )
        assert rows[0][0] == 0, table.name  # what the prune emptied is gone
    stats = await store.get_statistics(QueryFilter())
    assert stats.total_calls == sum(1 for call in calls[20:] if call.create_time >= cutoff)


async def test_a_prune_deletes_the_rollup_rows_it_empties(store: SqlStore) -> None:
    """cleanup_old_records leaves no rollup row without a call before its cutoff."""
    calls = _calls(100, seed=5)
    await store.save_api_calls(calls)
    await store.cleanup_old_records(T0 + timedelta(days=30))
    for table in (ROLLUP_HOURLY, ROLLUP_DAILY, ROLLUP_HISTOGRAM):
        (rows,) = await store._db.read([Read(f"SELECT COUNT(*) FROM {table.name}")])
        assert rows[0][0] == 0, table.name


def test_percentile_error_bound_is_what_the_entity_documents() -> None:
    """UsageStatistics' docstring names the histogram's relative error."""
    assert "4.9%" in (UsageStatistics.__doc__ or "")
    assert math.isclose(PERCENTILE_RELATIVE_ERROR, math.sqrt(1.1) - 1)


async def test_a_rebuild_passes_over_the_weeks_without_calls(store: SqlStore) -> None:
    """Calls in years 1500, 2025 and 9999: three steps, no step past the last day."""
    calls = [
        make_api_call(create_time=datetime(1500, 1, 1, tzinfo=UTC)),
        *_calls(50, seed=9),
        make_api_call(create_time=datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
    ]
    await store.save_api_calls(calls)
    saved = await _rollup_rows(store)
    steps: list[tuple[int, int]] = []
    assert await store.rebuild_rollups(lambda done, total: steps.append((done, total))) == 52
    assert await _rollup_rows(store) == saved
    assert len(steps) < 10
    assert steps[-1][0] == steps[-1][1]


async def test_a_failed_shared_read_fails_each_breakdown_that_waits_on_it(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values several breakdowns share are read once: its error is theirs, raised once."""
    await store.save_api_calls(_calls(50, seed=12))
    failing = QueryError("the database is locked")

    async def locked(sql: str, params: Sequence[Any], width: int) -> list[Sequence[Any]]:
        await asyncio.sleep(0.01)
        raise failing

    monkeypatch.setattr(store, "_read_columns", locked)
    hours = QueryFilter().time_range(T0 + timedelta(hours=2), T0 + timedelta(hours=20))
    asked: list[Breakdown] = [((), None, None), ((), "hour", None), (("model",), None, 2)]
    if store._dialect.percentiles_from_values:  # the only dialect whose figures share a read
        with pytest.raises(QueryError, match="locked"):
            await store.get_usage_breakdowns(hours, asked)
    else:
        assert len(await store.get_usage_breakdowns(hours, asked)) == 3


@pytest.mark.parametrize(
    ("start", "bucket", "after"),
    [
        (datetime(2026, 12, 31, 23, tzinfo=UTC), "hour", datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2026, 2, 28, tzinfo=UTC), "day", datetime(2026, 3, 1, tzinfo=UTC)),
        (datetime(2026, 12, 28, tzinfo=UTC), "week", datetime(2027, 1, 4, tzinfo=UTC)),
        (datetime(2026, 11, 1, tzinfo=UTC), "month", datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 12, 1, tzinfo=UTC), "month", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_next_bucket_starts_where_its_bucket_ends(
    start: datetime, bucket: Bucket, after: datetime
) -> None:
    """The bucket after one: across a day, a month and a year's end."""
    assert next_bucket(start, bucket) == after
    assert truncate_to_bucket(after - timedelta(microseconds=1), bucket) == start
