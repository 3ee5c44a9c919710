"""The monthly partitioning of ``entity_llm_api_call`` that docs/clickhouse.md documents.

The SQL run here is read from the document itself (the blocks after its
``<!-- recipe: … -->`` marks), so the recipe a reader copies is the one
tested: declarative partitions in this module's scratch database, pg_partman
(Debian's ``postgresql-15-partman``) in a second one. A database chatledger
made and filled is converted; the store then reads every call back with the
same statistics, and writes, skips, refuses, deletes, prunes, erases and
recounts through the partitions as it does on the plain table.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatledger.entities import LLMApiCall, QueryFilter, UsageBucket
from chatledger.errors import ConstraintError
from chatledger.ids import uuid7
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.rollups import scan_only
from chatledger.testing.factories import make_api_call
from chatledger.testing.servers import execute
from scratch_databases import postgres_database

pytestmark = pytest.mark.server
# Imported here, so that `pytest -m "not server"` collects this module without the drivers.
asyncpg = pytest.importorskip(
    "asyncpg", reason="the server drivers: pip install 'chatledger[postgres,mysql]'"
)

_DOC = Path(__file__).resolve().parent.parent / "docs" / "clickhouse.md"
_NOW = datetime.now(UTC)


def recipe(name: str) -> str:
    """The SQL block after ``<!-- recipe: name -->`` in docs/clickhouse.md."""
    found = re.search(
        rf"<!-- recipe: {re.escape(name)} -->\s*```sql\n(.*?)```", _DOC.read_text(), re.S
    )
    assert found is not None, f"docs/clickhouse.md has no recipe {name!r}"
    return found.group(1)


def _history() -> list[LLMApiCall]:
    """Calls over the last 14 months, and one in the first month chatledger takes (year 1000).

    (None in year 9999: ``SqlStore.rebuild_rollups`` cannot step past it yet.)
    """
    calls = [
        make_api_call(
            model_name=("gpt-4o", "claude")[number % 2],
            prompt_tokens=number,
            create_time=_NOW - timedelta(days=30 * (number % 14), minutes=number),
        )
        for number in range(60)
    ]
    calls.append(make_api_call(create_time=datetime(1000, 1, 1, tzinfo=UTC)))
    return calls


@dataclass(frozen=True)
class Converted:
    """A database chatledger filled, then partitioned by the recipe."""

    url: str
    calls: list[LLMApiCall]
    statistics: list[UsageBucket]
    indexes: set[str]


async def _fill_and_convert(url: str, partitioning: Sequence[str], after: str = "") -> Converted:
    """Fill ``url`` through the store, run ``partitioning`` (then ``after``), read back."""
    calls = _history()
    store = await PostgresStore.connect(url)
    try:
        await store.save_api_calls(calls)
        statistics = await store.get_usage_breakdown(QueryFilter(), ["model"], "month")
    finally:
        await store.close()
    rows = await execute(
        url,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'entity_llm_api_call' "
        "AND indexname <> 'entity_llm_api_call_pkey'",
    )
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("".join(partitioning))
        if after:
            await conn.execute(after)
    finally:
        await conn.close()
    return Converted(url, calls, statistics, {row["indexname"] for row in rows})


@pytest.fixture(scope="module")
def converted(postgres_url: str) -> Converted:
    """This module's scratch database, filled and partitioned declaratively."""
    blocks = [recipe("begin"), recipe("months"), recipe("finish")]
    return asyncio.run(_fill_and_convert(postgres_url, blocks))


@pytest.fixture(scope="module")
def converted_by_partman() -> Iterator[Converted]:
    """A second scratch database, filled and partitioned through pg_partman."""
    with postgres_database() as url:
        asyncio.run(
            execute(url, "CREATE SCHEMA partman", "CREATE EXTENSION pg_partman SCHEMA partman")
        )
        blocks = [recipe("begin"), recipe("partman"), recipe("finish")]
        moved = "CALL partman.partition_data_proc(current_schema() || '.entity_llm_api_call')"
        yield asyncio.run(_fill_and_convert(url, blocks, moved))


@pytest.fixture(params=["declarative", "pg_partman"])
def database(request: pytest.FixtureRequest) -> Converted:
    """Each way of partitioning."""
    name = "converted" if request.param == "declarative" else "converted_by_partman"
    found: Converted = request.getfixturevalue(name)
    return found


async def test_the_table_is_partitioned_by_month_and_keeps_every_call(database: Converted) -> None:
    """A partitioned table, a month per partition, every call and statistic as before, the
    same indexes under the same names, and the store opens it without a migration."""
    (kind,) = await execute(
        database.url, "SELECT relkind FROM pg_class WHERE relname = 'entity_llm_api_call'"
    )
    assert kind["relkind"] == b"p"
    placed = await execute(
        database.url,
        "SELECT tableoid::regclass::text AS part, create_time FROM entity_llm_api_call",
    )
    assert len(placed) == len(database.calls)
    months = set()
    for row in placed:  # each call in its UTC month's partition, or in the default one
        month = re.search(r"_p(\d{4})_?(\d{2})$", row["part"])
        if month is None:
            assert row["part"] == "entity_llm_api_call_default"
            assert row["create_time"].year == 1000
        else:
            when = row["create_time"].astimezone(UTC)
            assert (int(month[1]), int(month[2])) == (when.year, when.month), row
            months.add(row["part"])
    assert len(months) >= 12  # 14 times 30 days: 13 or 14 months
    rows = await execute(
        database.url,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'entity_llm_api_call'",
    )
    names = {row["indexname"] for row in rows}
    assert names - {"entity_llm_api_call_pkey"} == database.indexes
    (key,) = [row["indexdef"] for row in rows if row["indexname"] == "entity_llm_api_call_pkey"]
    assert key.endswith("(id, create_time)")
    store = await PostgresStore.connect(database.url)
    try:
        for call in database.calls:
            assert await store.get_api_call(call.id) == call
        assert await store.get_usage_breakdown(QueryFilter(), ["model"], "month") == (
            database.statistics
        )
        with scan_only():
            assert await store.get_usage_breakdown(QueryFilter(), ["model"], "month") == (
                database.statistics
            )
    finally:
        await store.close()


async def test_the_store_writes_and_reads_through_the_partitions(database: Converted) -> None:
    """Saves, a batch shipped twice, a reused id (same or another time), a time range that
    reads one month, deletes, pruning, erasure and a recount: as on the plain table."""
    store = await PostgresStore.connect(database.url)
    try:
        fresh = [make_api_call(create_time=_NOW - timedelta(hours=n)) for n in range(5)]
        await store.save_api_calls(fresh[:2])
        await store.ingest_records(calls=fresh)
        await store.ingest_records(calls=fresh)  # shipped again: skipped
        month = QueryFilter().time_range(_NOW - timedelta(hours=6), _NOW + timedelta(hours=1))
        assert {c.id for c in await store.query_api_calls(month)} >= {c.id for c in fresh}
        with pytest.raises(ConstraintError):
            await store.save_api_call(fresh[0])
        moved = fresh[1].model_copy(
            update={"create_time": _NOW - timedelta(days=200), "update_time": _NOW}
        )
        with pytest.raises(ConstraintError):  # another month: the id table refuses it
            await store.save_api_call(moved)
        plan = await execute(
            database.url,
            "EXPLAIN SELECT * FROM entity_llm_api_call WHERE create_time >= now() - "
            "interval '1 hour' AND create_time < now()",
        )
        scanned = {m for row in plan for m in re.findall(r"on (entity_llm_api_call_\w+)", row[0])}
        assert 1 <= len(scanned) <= 2, scanned  # this month (and the last, across its start)
        assert await store.delete_api_call(fresh[2].id)
        assert await store.get_api_call(fresh[2].id) is None
        await store.save_api_call(fresh[2])  # its id is free again
        cutoff = _NOW - timedelta(days=300)
        pruned = await store.cleanup_old_records(cutoff)
        assert pruned == sum(1 for c in database.calls if c.create_time < cutoff)
        report = await store.erase_user(fresh[3].user_id)
        assert report.api_calls_anonymised == 1
        left = [c for c in (*database.calls, *fresh) if c.create_time >= cutoff]
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_calls == len(left)
        assert stats.total_prompt_tokens == sum(c.prompt_tokens for c in left)
        assert await store.rebuild_rollups() == len(left)
        with scan_only():
            assert await store.get_statistics(QueryFilter()) == stats
        (ids,) = await execute(database.url, "SELECT count(*) AS n FROM entity_llm_api_call_id")
        assert ids["n"] == len(left)  # the id table follows every insert and delete
    finally:
        for call in fresh:  # the other way of partitioning starts from its own history
            await store.delete_api_call(call.id)
        await store.close()


async def test_a_second_call_with_a_reused_id_in_one_batch_rolls_the_batch_back(
    converted: Converted,
) -> None:
    """A batch whose second record reuses the first's id in another month stores nothing."""
    store = await PostgresStore.connect(converted.url)
    try:
        first = make_api_call(create_time=_NOW - timedelta(minutes=5))
        again = first.model_copy(update={"create_time": _NOW - timedelta(days=62)})
        with pytest.raises(ConstraintError):
            await store.save_api_calls([first, again.model_copy(update={"update_time": _NOW})])
        assert await store.get_api_call(first.id) is None
        assert await store.get_api_call(uuid7()) is None
    finally:
        await store.close()
