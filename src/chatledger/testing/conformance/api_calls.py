"""Conformance of ``ApiCallStore``: the ledger of LLM API calls and its statistics.

Calls saved, queried, paged and pruned; statistics, breakdowns and the
rollups behind them, each compared with an answer worked out here from the
calls themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest

from chatledger.entities import (
    ApiCallStatus,
    CallPage,
    CallSort,
    LLMApiCall,
    PriceDetails,
    QueryFilter,
    SessionQuery,
    TokenDetails,
)
from chatledger.errors import ConstraintError, SerializationError
from chatledger.ids import NIL_UUID, uuid7
from chatledger.stores.base import (
    GROUP_BY_KEYS,
    ApiCallStore,
    Bucket,
    GroupKey,
    MessageStore,
    PersistenceStore,
    SessionStore,
)
from chatledger.stores.rollups import exact_values_up_to, scan_only
from chatledger.testing.conformance.capability import CapabilityConformance, requires
from chatledger.testing.conformance.expectations import (
    assert_same_statistics,
    assert_statistics,
    key_value,
    unchecked,
)
from chatledger.testing.conformance.population import Population, call_filters
from chatledger.testing.factories import BASE_TIME, make_api_call, make_message, make_session

__all__ = ["ApiCallConformance"]


class ApiCallConformance(CapabilityConformance):
    """The ``ApiCallStore`` protocol: the ledger, its queries, pages, statistics and rollups.

    A backend that keeps only the ledger subclasses this class and
    ``LifecycleConformance``. The few tests that also write sessions or
    messages, or ingest or erase through the whole store, run when the store
    implements those protocols too, and are skipped otherwise.
    """

    protocols: ClassVar[tuple[type, ...]] = (ApiCallStore,)

    # -- API calls ---------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_api_call_round_trips_every_field(self, store: ApiCallStore) -> None:
        """save_api_call then get_api_call returns an equal call: details, price, microseconds."""
        call = make_api_call(
            model_name="gpt-4o",
            prompt_tokens=1200,
            completion_tokens=300,
            prompt_tokens_details=TokenDetails(cached_tokens=1000, audio_tokens=0),
            completion_tokens_details=TokenDetails(reasoning_tokens=120),
            total_price=Decimal("0.0123456789"),
            price_details=PriceDetails(
                input_price=Decimal("0.01"), output_price=Decimal("0.0023456789"), tier="batch"
            ),
            latency_ms=1234,
            time_to_first_token_ms=321,
            tokens_per_second=243.125,
            api_response_id="chatcmpl-abc123",
            create_time=BASE_TIME.replace(microsecond=111_111),
            update_time=BASE_TIME.replace(microsecond=999_999) + timedelta(seconds=1),
        )
        await store.save_api_call(call)
        got = await store.get_api_call(call.id)
        assert got == call
        assert got is not None
        assert got.total_price == Decimal("0.0123456789")
        assert got.create_time.microsecond == 111_111
        assert got.update_time.microsecond == 999_999
        assert got.prompt_tokens_details is not None
        assert got.prompt_tokens_details.extra == {"audio_tokens": 0}

    @pytest.mark.asyncio
    async def test_failed_api_call_round_trips(self, store: ApiCallStore) -> None:
        """A failed call keeps its status, error message, error code and nil response id."""
        call = LLMApiCall.failed(
            uuid7(),
            uuid7(),
            uuid7(),
            uuid7(),
            uuid7(),
            "gpt-4o",
            "Rate limit reached",
            "429",
            datetime.now(UTC).replace(microsecond=123_456) - timedelta(seconds=2),
            status=ApiCallStatus.RATE_LIMITED,
        )
        await store.save_api_call(call)
        got = await store.get_api_call(call.id)
        assert got == call
        assert got is not None
        assert got.status is ApiCallStatus.RATE_LIMITED
        assert got.response_message_id == NIL_UUID
        assert got.total_price is None

    @pytest.mark.asyncio
    async def test_api_call_needs_no_session(self, store: ApiCallStore) -> None:
        """An API call is stored even when its session does not exist (it is a ledger)."""
        call = make_api_call(make_session())
        await store.save_api_call(call)
        assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_get_missing_api_call_is_none(self, store: ApiCallStore) -> None:
        """get_api_call of an unknown id returns None."""
        assert await store.get_api_call(uuid7()) is None

    @pytest.mark.asyncio
    async def test_api_call_with_reused_id_raises_constraint_error(
        self, store: ApiCallStore
    ) -> None:
        """Saving an API call with an id already stored raises ConstraintError; the first stays."""
        call = make_api_call(prompt_tokens=1)
        await store.save_api_call(call)
        with pytest.raises(ConstraintError):
            await store.save_api_call(make_api_call(id=call.id, prompt_tokens=2))
        got = await store.get_api_call(call.id)
        assert got is not None
        assert got.prompt_tokens == 1

    @pytest.mark.asyncio
    async def test_save_api_calls_is_all_or_nothing(self, store: ApiCallStore) -> None:
        """save_api_calls stores a batch, or nothing when an id repeats or a text is refused."""
        existing = make_api_call()
        await store.save_api_call(existing)
        batch = [make_api_call(prompt_tokens=i) for i in range(5)]
        for bad_batch, error in (
            ([*batch, batch[0]], ConstraintError),
            ([*batch, existing], ConstraintError),
            ([*batch, make_api_call(error_message="\x00")], SerializationError),
        ):
            with pytest.raises(error):
                await store.save_api_calls(bad_batch)
            assert (await store.get_statistics(QueryFilter())).total_calls == 1
            assert await store.get_api_call(batch[0].id) is None
        await store.save_api_calls(batch)
        await store.save_api_calls([])
        assert (await store.get_statistics(QueryFilter())).total_calls == 6
        for call in batch:
            assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_fifty_concurrent_api_call_writers_lose_nothing(
        self, store: ApiCallStore
    ) -> None:
        """50 concurrent save_api_call calls all land."""
        calls = [make_api_call(prompt_tokens=i) for i in range(50)]
        await asyncio.gather(*(store.save_api_call(c) for c in calls))
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_calls == 50
        assert stats.total_prompt_tokens == sum(range(50))

    @pytest.mark.asyncio
    async def test_query_api_calls_newest_first(self, store: ApiCallStore) -> None:
        """query_api_calls orders by create_time, then id, both descending."""
        same_time = [make_api_call(create_time=BASE_TIME) for _ in range(3)]
        older = make_api_call(create_time=BASE_TIME - timedelta(microseconds=1))
        newer = make_api_call(create_time=BASE_TIME + timedelta(microseconds=1))
        await store.save_api_calls([same_time[1], older, newer, same_time[2], same_time[0]])
        got = await store.query_api_calls(QueryFilter())
        assert [c.id for c in got] == [
            newer.id,
            same_time[2].id,
            same_time[1].id,
            same_time[0].id,
            older.id,
        ]

    @pytest.mark.asyncio
    async def test_query_api_calls_default_limit_and_pagination(self, store: ApiCallStore) -> None:
        """query_api_calls returns at most 100 by default; offset and limit page the rest."""
        calls = [make_api_call(create_time=BASE_TIME + timedelta(seconds=i)) for i in range(130)]
        await store.save_api_calls(calls)
        newest_first = [c.id for c in reversed(calls)]
        assert [c.id for c in await store.query_api_calls(QueryFilter())] == newest_first[:100]
        page = await store.query_api_calls(QueryFilter().paginate(100, 100))
        assert [c.id for c in page] == newest_first[100:]
        page = await store.query_api_calls(QueryFilter().paginate(10, 5))
        assert [c.id for c in page] == newest_first[10:15]
        everything = await store.query_api_calls(QueryFilter(limit=1000))
        assert len(everything) == 130
        assert await store.query_api_calls(QueryFilter(limit=0)) == []
        assert await store.query_api_calls(QueryFilter(offset=500)) == []

    @pytest.mark.asyncio
    async def test_query_api_calls_with_each_filter_field(self, store: ApiCallStore) -> None:
        """query_api_calls honours tenant, user, session, agent, status, model and time filters."""
        population = Population(seed=7, count=300)
        await store.save_api_calls(population.calls)
        for query, keep in call_filters(population):
            got = await store.query_api_calls(query.paginate(0, 1000))
            expected = sorted(
                (c for c in population.calls if keep(c)),
                key=lambda c: (c.create_time, c.id),
                reverse=True,
            )
            assert expected, "the population should cover every filter"
            assert [c.id for c in got] == [c.id for c in expected]

    @pytest.mark.asyncio
    async def test_time_range_is_half_open(self, store: ApiCallStore) -> None:
        """A call exactly at start_time is included; a call exactly at end_time is excluded."""
        start = BASE_TIME
        end = BASE_TIME + timedelta(hours=1)
        at_start = make_api_call(create_time=start)
        inside = make_api_call(create_time=end - timedelta(microseconds=1))
        at_end = make_api_call(create_time=end)
        before = make_api_call(create_time=start - timedelta(microseconds=1))
        await store.save_api_calls([at_start, inside, at_end, before])
        query = QueryFilter().time_range(start, end)
        got = await store.query_api_calls(query)
        assert {c.id for c in got} == {at_start.id, inside.id}
        assert (await store.get_statistics(query)).total_calls == 2
        only_start = await store.query_api_calls(QueryFilter().time_range(start, None))
        assert {c.id for c in only_start} == {at_start.id, inside.id, at_end.id}
        only_end = await store.query_api_calls(QueryFilter().time_range(None, end))
        assert {c.id for c in only_end} == {at_start.id, inside.id, before.id}
        other_zone = timezone(timedelta(hours=5, minutes=30))
        shifted = await store.query_api_calls(
            QueryFilter().time_range(start.astimezone(other_zone), end.astimezone(other_zone))
        )
        assert {c.id for c in shifted} == {at_start.id, inside.id}

    @pytest.mark.asyncio
    async def test_delete_api_call(self, store: ApiCallStore) -> None:
        """delete_api_call removes one call (True), then reports False."""
        keep, drop = make_api_call(), make_api_call()
        await store.save_api_calls([keep, drop])
        assert await store.delete_api_call(drop.id) is True
        assert await store.delete_api_call(drop.id) is False
        assert await store.get_api_call(drop.id) is None
        assert await store.get_api_call(keep.id) == keep

    @requires(SessionStore, MessageStore)
    @pytest.mark.asyncio
    async def test_cleanup_old_records_counts_and_keeps_messages(
        self, store: PersistenceStore
    ) -> None:
        """cleanup_old_records deletes calls with create_time < before, returns how many."""
        session = await self._session(store)
        message = make_message(session, create_time=BASE_TIME - timedelta(days=30))
        await store.save_message(message)
        offsets = [-3 * 86400, -86400, -1e-6, 0, 1, 86400]
        calls = [
            make_api_call(session, create_time=BASE_TIME + timedelta(seconds=o)) for o in offsets
        ]
        await store.save_api_calls(calls)
        assert await store.cleanup_old_records(BASE_TIME) == 3
        assert await store.cleanup_old_records(BASE_TIME) == 0
        left = await store.query_api_calls(QueryFilter())
        assert {c.id for c in left} == {c.id for c in calls[3:]}
        assert await store.get_message(message.id) == message

    @pytest.mark.asyncio
    async def test_cleanup_refuses_a_naive_cutoff(self, store: ApiCallStore) -> None:
        """A cutoff without a timezone is a ValueError and deletes nothing."""
        call = make_api_call(create_time=BASE_TIME - timedelta(days=1))
        await store.save_api_call(call)
        with pytest.raises(ValueError, match="timezone"):
            await store.cleanup_old_records(BASE_TIME.replace(tzinfo=None))
        assert await store.get_api_call(call.id) == call

    @requires(SessionStore, MessageStore)
    @pytest.mark.asyncio
    async def test_calls_for_messages_finds_calls_by_reply_or_request(
        self, store: PersistenceStore
    ) -> None:
        """Calls whose response or request message is asked for, each once, oldest first."""
        session = await self._session(store)
        messages = [make_message(session, f"turn {i}") for i in range(4)]
        await store.save_messages(messages)
        first = make_api_call(
            session,
            request_message_id=messages[0].id,
            response_message_id=messages[1].id,
            create_time=BASE_TIME + timedelta(seconds=2),
        )
        retry = make_api_call(
            session,
            request_message_id=messages[0].id,
            status=ApiCallStatus.FAILED,
            response_message_id=NIL_UUID,
            create_time=BASE_TIME + timedelta(seconds=1),
        )
        later = make_api_call(
            session,
            request_message_id=messages[2].id,
            response_message_id=messages[3].id,
            create_time=BASE_TIME + timedelta(seconds=3),
        )
        other = make_api_call(create_time=BASE_TIME)
        await store.save_api_calls([first, retry, later, other])
        found = await store.calls_for_messages([messages[1].id, messages[0].id])
        assert found == [retry, first]
        assert await store.calls_for_messages([messages[3].id]) == [later]
        assert await store.calls_for_messages([m.id for m in messages]) == [retry, first, later]
        assert await store.calls_for_messages([]) == []
        assert await store.calls_for_messages([uuid7()]) == []
        many = [uuid7() for _ in range(1500)] + [messages[3].id]
        assert await store.calls_for_messages(many) == [later]
        with pytest.raises(TypeError, match="message_ids"):
            await store.calls_for_messages(unchecked(messages[0].id))
        with pytest.raises(TypeError, match=r"message_ids\[0\]"):
            await store.calls_for_messages(unchecked([str(messages[0].id)]))

    # -- statistics --------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_statistics_of_nothing(self, store: ApiCallStore) -> None:
        """Statistics over no calls are zeros, every status counted 0, cost and averages None."""
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_calls == 0
        assert stats.success_count == 0
        assert stats.failed_count == 0
        assert stats.total_tokens == 0
        assert stats.total_cost is None
        assert stats.avg_latency_ms is None
        assert stats.avg_tokens_per_second is None
        assert stats.avg_time_to_first_token_ms is None
        assert (stats.p50_latency_ms, stats.p95_latency_ms, stats.p99_latency_ms) == (
            None,
            None,
            None,
        )
        assert stats.status_counts == dict.fromkeys(ApiCallStatus, 0)

    @pytest.mark.asyncio
    async def test_statistics_over_many_varied_calls(self, store: ApiCallStore) -> None:
        """Statistics over 1,200 varied calls equal an independent computation, field by field."""
        population = Population(seed=20240506, count=1200)
        await store.save_api_calls(population.calls[:600])
        for call in population.calls[600:]:
            await store.save_api_call(call)
        assert_statistics(await store.get_statistics(QueryFilter()), population.calls)

    @pytest.mark.asyncio
    async def test_statistics_with_each_filter_field(self, store: ApiCallStore) -> None:
        """Statistics honour tenant, user, session, agent, status, model and time filters."""
        population = Population(seed=99, count=400)
        await store.save_api_calls(population.calls)
        for query, keep in call_filters(population):
            expected = [c for c in population.calls if keep(c)]
            assert_statistics(await store.get_statistics(query), expected)

    @pytest.mark.asyncio
    async def test_statistics_ignore_offset_and_limit(self, store: ApiCallStore) -> None:
        """get_statistics covers every matching call whatever the filter's offset and limit."""
        population = Population(seed=3, count=150)
        await store.save_api_calls(population.calls)
        stats = await store.get_statistics(QueryFilter().paginate(140, 5))
        assert_statistics(stats, population.calls)

    @pytest.mark.asyncio
    async def test_latency_percentiles_interpolate_linearly(self, store: ApiCallStore) -> None:
        """p50/p95/p99 interpolate linearly between ranks and skip calls without latency."""
        await store.save_api_call(make_api_call(latency_ms=100))
        await store.save_api_call(make_api_call(latency_ms=None))
        stats = await store.get_statistics(QueryFilter())
        assert (stats.p50_latency_ms, stats.p95_latency_ms, stats.p99_latency_ms) == (
            100.0,
            100.0,
            100.0,
        )
        assert stats.avg_latency_ms == 100.0
        await store.save_api_call(make_api_call(latency_ms=200))
        stats = await store.get_statistics(QueryFilter())
        assert stats.p50_latency_ms == pytest.approx(150.0)
        assert stats.p95_latency_ms == pytest.approx(195.0)
        assert stats.p99_latency_ms == pytest.approx(199.0)
        await store.save_api_calls([make_api_call(latency_ms=ms) for ms in (400, 300)])
        stats = await store.get_statistics(QueryFilter())
        assert stats.p50_latency_ms == pytest.approx(250.0)
        assert stats.p95_latency_ms == pytest.approx(385.0)
        assert stats.p99_latency_ms == pytest.approx(397.0)
        assert stats.avg_latency_ms == pytest.approx(250.0)

    @pytest.mark.asyncio
    async def test_failed_count_is_every_non_success(self, store: ApiCallStore) -> None:
        """failed_count counts failed, timeout, rate-limited and cancelled calls alike."""
        await store.save_api_calls(
            [make_api_call(status=status) for status in ApiCallStatus for _ in range(2)]
        )
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_calls == 10
        assert stats.success_count == 2
        assert stats.failed_count == 8
        assert stats.status_counts == dict.fromkeys(ApiCallStatus, 2)

    @pytest.mark.asyncio
    async def test_total_cost_sums_priced_calls_only(self, store: ApiCallStore) -> None:
        """total_cost is None with no priced call, else the exact Decimal sum of the prices."""
        await store.save_api_call(make_api_call(total_price=None))
        assert (await store.get_statistics(QueryFilter())).total_cost is None
        await store.save_api_call(make_api_call(total_price=Decimal(0)))
        free = (await store.get_statistics(QueryFilter())).total_cost
        assert free is not None
        assert free == 0
        await store.save_api_calls(
            [
                make_api_call(total_price=Decimal("0.1")),
                make_api_call(total_price=Decimal("0.2")),
                make_api_call(total_price=Decimal("0.0000000001")),
            ]
        )
        cost = (await store.get_statistics(QueryFilter())).total_cost
        assert cost == Decimal("0.3000000001")
        assert isinstance(cost, Decimal)

    @pytest.mark.asyncio
    async def test_time_to_first_token_percentiles(self, store: ApiCallStore) -> None:
        """TTFT p50/p95/p99 interpolate as latency's do, skip calls without one, per group too."""
        await store.save_api_calls(
            [
                make_api_call(time_to_first_token_ms=ms, model_name=model)
                for ms, model in ((100, "a"), (None, "a"), (200, "a"), (400, "b"), (300, "b"))
            ]
        )
        stats = await store.get_statistics(QueryFilter())
        assert stats.p50_time_to_first_token_ms == pytest.approx(250.0)
        assert stats.p95_time_to_first_token_ms == pytest.approx(385.0)
        assert stats.p99_time_to_first_token_ms == pytest.approx(397.0)
        rows = await store.get_usage_breakdown(QueryFilter(), ["model"])
        assert [r.keys["model"] for r in rows] == ["a", "b"]
        assert rows[0].stats.p50_time_to_first_token_ms == pytest.approx(150.0)
        assert rows[0].stats.p95_time_to_first_token_ms == pytest.approx(195.0)
        assert rows[1].stats.p50_time_to_first_token_ms == pytest.approx(350.0)
        assert rows[1].stats.p95_time_to_first_token_ms == pytest.approx(395.0)
        empty = await store.get_statistics(QueryFilter().model("c"))
        assert empty.p50_time_to_first_token_ms is None
        filtered = await store.get_statistics(QueryFilter().model("b"))
        assert filtered.p99_time_to_first_token_ms == pytest.approx(399.0)

    # -- usage breakdown ---------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_breakdown_without_keys_or_bucket_is_one_overall_row(
        self, store: ApiCallStore
    ) -> None:
        """No group_by and no bucket gives one row with empty keys, even over no calls."""
        rows = await store.get_usage_breakdown(QueryFilter())
        assert len(rows) == 1
        assert rows[0].keys == {}
        assert rows[0].bucket_start is None
        assert rows[0].stats.total_calls == 0
        population = Population(seed=5, count=120)
        await store.save_api_calls(population.calls)
        rows = await store.get_usage_breakdown(QueryFilter(), [], None)
        assert len(rows) == 1
        assert_statistics(rows[0].stats, population.calls)

    @pytest.mark.parametrize("key", GROUP_BY_KEYS)
    @pytest.mark.asyncio
    async def test_breakdown_by_each_key(self, store: ApiCallStore, key: GroupKey) -> None:
        """Grouping by one key gives one row per value, ordered by its string form."""
        population = Population(seed=11, count=300)
        await store.save_api_calls(population.calls)
        rows = await store.get_usage_breakdown(QueryFilter(), [key])
        groups: dict[Any, list[LLMApiCall]] = {}
        for call in population.calls:
            groups.setdefault(key_value(call, key), []).append(call)
        expected_order = sorted(groups, key=str)
        assert [row.keys for row in rows] == [{key: value} for value in expected_order]
        for row, value in zip(rows, expected_order, strict=True):
            assert row.bucket_start is None
            assert type(row.keys[key]) is type(value)
            assert_statistics(row.stats, groups[value])

    @pytest.mark.asyncio
    async def test_breakdown_by_several_keys(self, store: ApiCallStore) -> None:
        """Grouping by several keys gives one row per combination, ordered key by key."""
        population = Population(seed=13, count=300)
        await store.save_api_calls(population.calls)
        group_by: list[GroupKey] = ["status", "model", "tenant"]
        rows = await store.get_usage_breakdown(QueryFilter(), group_by)
        groups: dict[tuple[Any, ...], list[LLMApiCall]] = {}
        for call in population.calls:
            groups.setdefault(tuple(key_value(call, k) for k in group_by), []).append(call)
        expected_order = sorted(groups, key=lambda values: tuple(str(v) for v in values))
        assert [row.keys for row in rows] == [
            dict(zip(group_by, values, strict=True)) for values in expected_order
        ]
        for row, values in zip(rows, expected_order, strict=True):
            assert_statistics(row.stats, groups[values])

    @pytest.mark.parametrize(
        ("bucket", "times_and_starts"),
        [
            (
                "hour",
                [
                    (
                        datetime(2024, 3, 10, 10, 0, tzinfo=UTC),
                        datetime(2024, 3, 10, 10, tzinfo=UTC),
                    ),
                    (
                        datetime(2024, 3, 10, 10, 59, 59, 999_999, tzinfo=UTC),
                        datetime(2024, 3, 10, 10, tzinfo=UTC),
                    ),
                    (
                        datetime(2024, 3, 10, 11, 0, tzinfo=UTC),
                        datetime(2024, 3, 10, 11, tzinfo=UTC),
                    ),
                    (
                        datetime(2024, 3, 10, 9, 30, tzinfo=UTC),
                        datetime(2024, 3, 10, 9, tzinfo=UTC),
                    ),
                ],
            ),
            (
                "day",
                [
                    (
                        datetime(2024, 3, 10, 23, 59, 59, 999_999, tzinfo=UTC),
                        datetime(2024, 3, 10, tzinfo=UTC),
                    ),
                    (datetime(2024, 3, 11, 0, 0, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)),
                    (
                        datetime(2024, 3, 11, 2, 0, tzinfo=timezone(timedelta(hours=5))),
                        datetime(2024, 3, 10, tzinfo=UTC),
                    ),
                    (datetime(2024, 2, 29, 12, 0, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),
                ],
            ),
            (
                "week",
                [
                    (datetime(2024, 3, 10, 23, 0, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)),
                    (datetime(2024, 3, 4, 0, 0, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)),
                    (datetime(2024, 3, 11, 0, 0, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)),
                    (datetime(2024, 1, 3, 8, 0, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),
                    (datetime(2023, 12, 31, 8, 0, tzinfo=UTC), datetime(2023, 12, 25, tzinfo=UTC)),
                ],
            ),
            (
                "month",
                [
                    (
                        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
                        datetime(2024, 2, 1, tzinfo=UTC),
                    ),
                    (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
                    (datetime(2024, 2, 1, 0, 0, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
                    (datetime(2023, 12, 31, 12, 0, tzinfo=UTC), datetime(2023, 12, 1, tzinfo=UTC)),
                ],
            ),
        ],
    )
    @pytest.mark.asyncio
    async def test_breakdown_by_bucket(
        self,
        store: ApiCallStore,
        bucket: Bucket,
        times_and_starts: list[tuple[datetime, datetime]],
    ) -> None:
        """Buckets start at the UTC hour, day, Monday 00:00 or 1st of the month; sorted by start."""
        calls = [make_api_call(create_time=moment) for moment, _ in times_and_starts]
        await store.save_api_calls(calls)
        rows = await store.get_usage_breakdown(QueryFilter(), [], bucket)
        counts: dict[datetime, int] = {}
        for _, start in times_and_starts:
            counts[start] = counts.get(start, 0) + 1
        assert [(row.bucket_start, row.stats.total_calls) for row in rows] == sorted(counts.items())
        for row in rows:
            assert row.keys == {}
            assert row.bucket_start is not None
            assert row.bucket_start.utcoffset() == timedelta(0)

    @pytest.mark.asyncio
    async def test_breakdown_by_bucket_and_key_orders_by_bucket_then_key(
        self, store: ApiCallStore
    ) -> None:
        """Rows sort by bucket_start first, then by key; only non-empty groups appear."""
        day1 = datetime(2024, 4, 1, 9, tzinfo=UTC)
        day2 = datetime(2024, 4, 2, 9, tzinfo=UTC)
        await store.save_api_calls(
            [
                make_api_call(model_name="zeta", create_time=day1),
                make_api_call(model_name="alpha", create_time=day2),
                make_api_call(model_name="alpha", create_time=day1),
                make_api_call(model_name="zeta", create_time=day1, prompt_tokens=90),
            ]
        )
        rows = await store.get_usage_breakdown(QueryFilter(), ["model"], "day")
        assert [(r.bucket_start, r.keys["model"], r.stats.total_calls) for r in rows] == [
            (datetime(2024, 4, 1, tzinfo=UTC), "alpha", 1),
            (datetime(2024, 4, 1, tzinfo=UTC), "zeta", 2),
            (datetime(2024, 4, 2, tzinfo=UTC), "alpha", 1),
        ]
        assert rows[1].stats.total_prompt_tokens == 100

    @pytest.mark.asyncio
    async def test_breakdown_applies_the_filter(self, store: ApiCallStore) -> None:
        """A breakdown covers only the calls the filter matches, ignoring offset and limit."""
        population = Population(seed=17, count=200)
        await store.save_api_calls(population.calls)
        tenant = population.tenants[0]
        rows = await store.get_usage_breakdown(
            QueryFilter().tenant(tenant).paginate(5, 1), ["status"]
        )
        mine = [c for c in population.calls if c.tenant_id == tenant]
        assert sum(r.stats.total_calls for r in rows) == len(mine)
        for row in rows:
            assert_statistics(row.stats, [c for c in mine if c.status is row.keys["status"]])

    @pytest.mark.asyncio
    async def test_breakdown_refuses_bad_arguments(self, store: ApiCallStore) -> None:
        """An unknown group_by key or bucket raises ValueError; a bare string raises TypeError."""
        with pytest.raises(ValueError, match="group_by"):
            await store.get_usage_breakdown(QueryFilter(), ["nope"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="bucket"):
            await store.get_usage_breakdown(QueryFilter(), ["model"], "year")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await store.get_usage_breakdown(QueryFilter(), "model")  # type: ignore[arg-type]

    @pytest.mark.asyncio
    async def test_breakdown_limit_keeps_the_groups_with_most_calls(
        self, store: ApiCallStore
    ) -> None:
        """limit keeps the groups with the most calls (ties by key), in every bucket."""
        days = [BASE_TIME, BASE_TIME + timedelta(days=1)]
        counts = {"a": 3, "b": 5, "c": 3, "d": 1, "e": 4}
        calls = [
            make_api_call(model_name=model, create_time=days[i % 2])
            for model, count in counts.items()
            for i in range(count)
        ]
        await store.save_api_calls(calls)
        for scan in (False, True):
            with scan_only() if scan else contextlib.nullcontext():
                rows = await store.get_usage_breakdown(QueryFilter(), ["model"], limit=3)
                assert [r.keys["model"] for r in rows] == ["a", "b", "e"]  # a beats c on key
                assert [r.stats.total_calls for r in rows] == [3, 5, 4]
                daily = await store.get_usage_breakdown(QueryFilter(), ["model"], "day", limit=2)
                assert {r.keys["model"] for r in daily} == {"b", "e"}
                assert sum(r.stats.total_calls for r in daily) == 9
                everything = await store.get_usage_breakdown(QueryFilter(), ["model"], limit=99)
                assert len(everything) == 5
                (overall,) = await store.get_usage_breakdown(QueryFilter(), limit=1)
                assert overall.stats.total_calls == 16
        for wrong in (0, -1):
            with pytest.raises(ValueError, match="limit"):
                await store.get_usage_breakdown(QueryFilter(), ["model"], limit=wrong)
        with pytest.raises(TypeError, match="limit"):
            await store.get_usage_breakdown(QueryFilter(), ["model"], limit=unchecked("3"))

    # -- pages of API calls ------------------------------------------------------------

    @staticmethod
    def _sortable_calls() -> list[LLMApiCall]:
        """Calls with many ties: few times, few prices and latencies, some without either."""
        rng = random.Random(42)  # noqa: S311  (reproducible test data, not security)
        times = [BASE_TIME + timedelta(minutes=m) for m in range(6)]
        prices = [None, Decimal("0"), Decimal("0.0015"), Decimal("0.25"), Decimal("3.5")]
        latencies = [None, 0, 120, 950, 4000]
        calls = []
        for _ in range(90):
            prompt = rng.choice([0, 10, 400])
            failed = rng.random() < 0.3
            calls.append(
                make_api_call(
                    status=ApiCallStatus.FAILED if failed else ApiCallStatus.SUCCESS,
                    error_code=rng.choice(["server_error", "bad_request"]) if failed else None,
                    create_time=rng.choice(times),
                    total_price=rng.choice(prices),
                    latency_ms=rng.choice(latencies),
                    prompt_tokens=prompt,
                    completion_tokens=rng.choice([0, 5]),
                    model_name=rng.choice(["gpt-4o", "gpt-4o-mini"]),
                )
            )
        return calls

    @staticmethod
    def _expected_order(calls: Sequence[LLMApiCall], sort: CallSort) -> list[UUID]:
        """The ids of ``calls`` in ``sort`` order, worked out here from the contract."""
        values: dict[CallSort, Callable[[LLMApiCall], Any]] = {
            CallSort.NEWEST: lambda c: c.create_time,
            CallSort.OLDEST: lambda c: c.create_time,
            CallSort.COST_DESC: lambda c: c.total_price,
            CallSort.COST_ASC: lambda c: c.total_price,
            CallSort.LATENCY_DESC: lambda c: c.latency_ms,
            CallSort.LATENCY_ASC: lambda c: c.latency_ms,
            CallSort.TOKENS_DESC: lambda c: c.total_tokens,
            CallSort.TOKENS_ASC: lambda c: c.total_tokens,
        }
        value = values[sort]
        descending = sort in (
            CallSort.NEWEST,
            CallSort.COST_DESC,
            CallSort.LATENCY_DESC,
            CallSort.TOKENS_DESC,
        )
        with_value = sorted(
            (c for c in calls if value(c) is not None),
            key=lambda c: (value(c), c.create_time, c.id),
            reverse=descending,
        )
        without = sorted(
            (c for c in calls if value(c) is None),
            key=lambda c: (c.create_time, c.id),
            reverse=descending,
        )
        return [c.id for c in with_value + without]

    @staticmethod
    async def _walk_calls(
        store: ApiCallStore, query: QueryFilter, sort: CallSort | str, limit: int
    ) -> list[CallPage]:
        """Every page of a query, cursor after cursor, until one says there is none."""
        pages = [await store.page_api_calls(query, sort=sort, limit=limit)]
        while pages[-1].next_cursor is not None:
            cursor = pages[-1].next_cursor
            pages.append(await store.page_api_calls(query, sort=sort, cursor=cursor, limit=limit))
            assert len(pages) < 1000, "the pages never end"
        return pages

    @pytest.mark.asyncio
    @pytest.mark.parametrize("sort", list(CallSort))
    async def test_page_api_calls_walks_every_call_once_in_order(
        self, store: ApiCallStore, sort: CallSort
    ) -> None:
        """Page after page gives every call once, in the sort's order, ties by time then id."""
        calls = self._sortable_calls()
        await store.save_api_calls(calls)
        pages = await self._walk_calls(store, QueryFilter(), sort, limit=7)
        assert [len(page.calls) for page in pages] == [7] * 12 + [6]
        got = [c.id for page in pages for c in page.calls]
        assert got == self._expected_order(calls, sort)
        by_id = {c.id: c for c in calls}
        assert all(c == by_id[c.id] for page in pages for c in page.calls)

    @pytest.mark.asyncio
    async def test_page_api_calls_honours_the_filter(self, store: ApiCallStore) -> None:
        """A page holds only the calls the filter matches; its offset and limit are ignored."""
        calls = self._sortable_calls()
        await store.save_api_calls(calls)
        query = QueryFilter().model("gpt-4o").cost_range(Decimal("0.0015"), None).paginate(3, 2)
        mine = [
            c
            for c in calls
            if c.model_name == "gpt-4o"
            and c.total_price is not None
            and c.total_price >= Decimal("0.0015")
        ]
        assert mine
        for sort in (CallSort.NEWEST, CallSort.COST_ASC, CallSort.LATENCY_DESC):
            pages = await self._walk_calls(store, query, sort.value, limit=4)
            got = [c.id for page in pages for c in page.calls]
            assert got == self._expected_order(mine, sort)
        # filters that pick failed calls, and a latency range, under every sort
        failed = ApiCallStatus.FAILED
        latency = QueryFilter().latency_range(120, 950)
        for query, keep in (
            (
                QueryFilter().with_error_code("server_error"),
                lambda c: c.error_code == "server_error",
            ),
            (QueryFilter().with_status(failed), lambda c: c.status is failed),
            (latency, lambda c: c.latency_ms is not None and 120 <= c.latency_ms <= 950),
        ):
            mine = [c for c in calls if keep(c)]
            assert mine
            for sort in CallSort:
                pages = await self._walk_calls(store, query, sort, limit=3)
                got = [c.id for page in pages for c in page.calls]
                assert got == self._expected_order(mine, sort), (query, sort)

    @pytest.mark.asyncio
    async def test_page_api_calls_last_page_has_no_cursor(self, store: ApiCallStore) -> None:
        """No calls: an empty page; exactly a page of calls: no cursor to a next, empty page."""
        empty = await store.page_api_calls(QueryFilter())
        assert empty == CallPage(calls=[], next_cursor=None)
        calls = [make_api_call(create_time=BASE_TIME + timedelta(seconds=i)) for i in range(10)]
        await store.save_api_calls(calls)
        whole = await store.page_api_calls(QueryFilter(), limit=10)
        assert [c.id for c in whole.calls] == [c.id for c in reversed(calls)]
        assert whole.next_cursor is None
        first = await store.page_api_calls(QueryFilter(), sort="oldest", limit=5)
        assert first.next_cursor is not None
        rest = await store.page_api_calls(
            QueryFilter(), sort="oldest", cursor=first.next_cursor, limit=5
        )
        assert [c.id for c in rest.calls] == [c.id for c in calls[5:]]
        assert rest.next_cursor is None
        default = await store.page_api_calls(QueryFilter())
        assert len(default.calls) == 10

    @pytest.mark.asyncio
    async def test_page_api_calls_cursor_is_url_safe_text(self, store: ApiCallStore) -> None:
        """A cursor is plain URL-safe text and keeps working after a call is deleted."""
        calls = self._sortable_calls()
        await store.save_api_calls(calls)
        for sort in CallSort:
            page = await store.page_api_calls(QueryFilter(), sort=sort, limit=30)
            cursor = page.next_cursor
            assert cursor is not None
            assert re.fullmatch(r"[A-Za-z0-9_=-]+", cursor), cursor
            # the row the cursor names may go away; the next page still starts after it
            assert await store.delete_api_call(page.calls[-1].id) is True
            following = await store.page_api_calls(
                QueryFilter(), sort=sort, cursor=cursor, limit=30
            )
            left = [c for c in calls if c.id != page.calls[-1].id]
            seen = {c.id for c in page.calls}
            expected = [i for i in self._expected_order(left, sort) if i not in seen]
            assert [c.id for c in following.calls] == expected[:30]
            await store.save_api_call(page.calls[-1])

    @requires(SessionStore)
    @pytest.mark.asyncio
    async def test_page_api_calls_refuses_bad_cursors_and_arguments(
        self, store: PersistenceStore
    ) -> None:
        """A damaged or foreign cursor, an unknown sort, a limit below 1: ValueError."""
        await store.save_api_calls(self._sortable_calls())
        await self._session(store)
        await self._session(store)
        newest = (await store.page_api_calls(QueryFilter(), limit=2)).next_cursor
        by_cost = (await store.page_api_calls(QueryFilter(), sort="cost_desc", limit=2)).next_cursor
        sessions = (await store.search_sessions(SessionQuery(), limit=1)).next_cursor
        assert newest is not None
        assert by_cost is not None
        assert sessions is not None
        bad = [
            "",
            "not a cursor",
            "%%%",
            newest[:-3],
            newest + "AAAA",
            "W10",  # []
            "WyJuZXdlc3QiLG51bGwsIngiLCJ5Il0",  # ["newest",null,"x","y"]
            "x" * 5000,
            sessions,
        ]
        for cursor in bad:
            with pytest.raises(ValueError, match="cursor"):
                await store.page_api_calls(QueryFilter(), cursor=cursor)
        with pytest.raises(ValueError, match="cursor"):
            await store.page_api_calls(QueryFilter(), sort="oldest", cursor=newest)
        with pytest.raises(ValueError, match="cursor"):
            await store.page_api_calls(QueryFilter(), sort="cost_asc", cursor=by_cost)
        with pytest.raises(ValueError, match="cursor"):
            await store.page_api_calls(QueryFilter(), sort="latency_desc", cursor=by_cost)
        with pytest.raises(ValueError, match="sort"):
            await store.page_api_calls(QueryFilter(), sort="cheapest")
        for limit in (0, -1):
            with pytest.raises(ValueError, match="limit"):
                await store.page_api_calls(QueryFilter(), limit=limit)

    # -- rollups -----------------------------------------------------------------------

    @staticmethod
    def _rollup_queries(
        population: Population, rng: random.Random
    ) -> list[tuple[QueryFilter, list[GroupKey], Bucket | None]]:
        """Random statistics the rollups answer: rollup keys, bounds on the hour (or none)."""
        hours = 90 * 24
        asked: list[tuple[QueryFilter, list[GroupKey], Bucket | None]] = []
        for _ in range(40):
            query = QueryFilter()
            if rng.random() < 0.3:
                query = query.tenant(rng.choice(population.tenants))
            if rng.random() < 0.2:
                query = query.user(rng.choice(population.users))
            if rng.random() < 0.2:
                query = query.agent(rng.choice(population.agents))
            if rng.random() < 0.3:
                query = query.model(rng.choice(population.models))
            if rng.random() < 0.2:
                query = query.with_status(rng.choice(list(ApiCallStatus)))
            if rng.random() < 0.7:
                start = population.start + timedelta(hours=rng.randint(-5, hours))
                end = start + timedelta(hours=rng.randint(1, hours))
                query = query.time_range(
                    start if rng.random() < 0.8 else None, end if rng.random() < 0.8 else None
                )
            keys: list[GroupKey] = rng.sample(
                ["model", "agent", "user", "tenant", "status"], rng.choice([0, 0, 1, 1, 1, 2])
            )
            bucket: Bucket | None = rng.choice([None, None, "hour", "day", "week", "month"])
            asked.append((query, keys, bucket))
        return asked

    @staticmethod
    def _assert_same_answer(rolled: list[Any], scanned: list[Any]) -> None:
        """Rollup rows equal scan rows: groups, counts, tokens and cost exactly; percentiles
        within the histograms' documented error."""
        assert [(r.keys, r.bucket_start) for r in rolled] == [
            (r.keys, r.bucket_start) for r in scanned
        ]
        for row, want in zip(rolled, scanned, strict=True):
            assert_same_statistics(row.stats, want.stats)

    @requires(PersistenceStore)
    @pytest.mark.asyncio
    async def test_rollup_answers_equal_a_scan_of_the_calls(self, store: PersistenceStore) -> None:
        """Random filters over random calls: the rollups' answer is the calls' answer.

        Counts, tokens and cost identically; percentiles exactly when few
        values are concerned, and within the histograms' documented error when
        they are read from the histograms.
        """
        population = Population(seed=1414, count=1500)
        await store.save_api_calls(population.calls[:900])
        for call in population.calls[900:1000]:
            await store.save_api_call(call)
        await store.ingest_records(calls=population.calls[1000:])
        rng = random.Random(1414)  # noqa: S311  (reproducible test data)
        for query, keys, bucket in self._rollup_queries(population, rng):
            rolled = await store.get_usage_breakdown(query, keys, bucket)
            with scan_only():
                scanned = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(rolled, scanned)
            with exact_values_up_to(0):  # histograms wherever they serve
                histograms = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(histograms, scanned)
            if len(keys) == 1:  # the top groups, ranked before their sums are read
                limit = rng.randint(1, 4)
                top = await store.get_usage_breakdown(query, keys, bucket, limit=limit)
                with scan_only():
                    top_scanned = await store.get_usage_breakdown(query, keys, bucket, limit=limit)
                self._assert_same_answer(top, top_scanned)
        everything = await store.get_statistics(QueryFilter())
        assert_statistics(everything, population.calls)

    @pytest.mark.asyncio
    async def test_bounds_off_the_hour_give_a_scans_answer(self, store: ApiCallStore) -> None:
        """Bounds to the second: the whole hours between them and the parts at the ends add up.

        The rollups serve the whole hours; the calls in the part of an hour
        at either bound are counted in from the calls themselves.
        """
        population = Population(seed=6060, count=1200)
        await store.save_api_calls(population.calls)
        rng = random.Random(6060)  # noqa: S311  (reproducible test data)
        asked = self._rollup_queries(population, rng)
        for index, (query, keys, bucket) in enumerate(asked[:24]):
            offset = timedelta(minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
            start = query.start_time or population.start + timedelta(days=rng.randint(0, 30))
            end = start + timedelta(hours=rng.choice([1, 2, 5, 30, 24 * 20]), minutes=7 * index)
            query = query.time_range(start + offset, end if index % 3 else None)
            with scan_only():
                scanned = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(await store.get_usage_breakdown(query, keys, bucket), scanned)
            with exact_values_up_to(0):
                histograms = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(histograms, scanned)
            if len(keys) == 1:
                with scan_only():
                    top_scanned = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                top = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                self._assert_same_answer(top, top_scanned)
        # The part of an hour holding most of the range's calls, beside a whole day read
        # from the histograms: its calls' latencies make the percentiles.
        day = datetime(2025, 3, 10, tzinfo=UTC)
        await store.save_api_calls(
            [
                *(make_api_call(model_name="edge", create_time=day + timedelta(hours=h),
                                latency_ms=100) for h in range(20)),
                *(make_api_call(model_name="edge", create_time=day - timedelta(minutes=m),
                                latency_ms=50_000 + m) for m in range(61, 91)),
            ]
        )  # fmt: skip
        query = QueryFilter(model_name="edge").time_range(
            day - timedelta(hours=1, minutes=40), day + timedelta(days=1, minutes=50)
        )
        with scan_only():
            scanned = await store.get_usage_breakdown(query, ["model"], None)
        assert scanned[0].stats.p50_latency_ms is not None
        assert scanned[0].stats.p50_latency_ms > 50_000
        with exact_values_up_to(0):
            self._assert_same_answer(
                await store.get_usage_breakdown(query, ["model"], None), scanned
            )

    @pytest.mark.asyncio
    async def test_a_days_histogram_serves_the_hours_that_hold_the_whole_day(
        self, store: ApiCallStore
    ) -> None:
        """Hours beside whole days that hold all of their day's calls: the same answer.

        A range ending after the last call of its last day may be answered
        from that day's histogram; a call later that day (after the range)
        must not be counted in.
        """
        day = BASE_TIME.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
        rng = random.Random(9)  # noqa: S311  (reproducible test data)
        calls = [
            make_api_call(
                model_name=rng.choice(["m1", "m2"]),
                create_time=day - timedelta(days=rng.randint(0, 2), minutes=rng.randint(0, 900)),
                latency_ms=rng.randint(5, 5000),
            )
            for _ in range(120)
        ] + [
            make_api_call(
                model_name="m1",
                create_time=day + timedelta(hours=1, minutes=i),
                latency_ms=10_000 + 1000 * i,
            )
            for i in range(20)
        ]
        await store.save_api_calls(calls)
        query = QueryFilter().time_range(day - timedelta(days=3), day + timedelta(hours=3))
        for later in (None, day + timedelta(hours=5)):  # then a call after the range's end
            if later is not None:
                await store.save_api_call(
                    make_api_call(model_name="m1", create_time=later, latency_ms=1)
                )
            for keys, bucket, limit in (
                ([], None, None),
                (["model"], None, None),
                (["model"], None, 1),  # the top group's calls: m1's, all of them that day
                ([], "day", None),
            ):
                with scan_only():
                    scanned = await store.get_usage_breakdown(query, keys, bucket, limit)  # type: ignore[arg-type]
                with exact_values_up_to(0):
                    rolled = await store.get_usage_breakdown(query, keys, bucket, limit)  # type: ignore[arg-type]
                self._assert_same_answer(rolled, scanned)

    async def _assert_rollups_match_a_scan(
        self, store: ApiCallStore, population: Population, seed: int
    ) -> None:
        """Breakdowns over weeks, months and random filters: the rollups' answer is a scan's."""
        rng = random.Random(seed)  # noqa: S311  (reproducible test data)
        start = population.start
        asked: list[tuple[QueryFilter, list[GroupKey], Bucket | None]] = [
            (QueryFilter(), [], None),
            (QueryFilter(), ["user"], None),
            (QueryFilter(), ["model", "status"], None),
            (QueryFilter().time_range(start + timedelta(days=31), None), ["agent"], None),
            (QueryFilter().time_range(None, start + timedelta(days=75)), ["tenant"], None),
            (
                QueryFilter().time_range(start + timedelta(days=20), start + timedelta(days=70)),
                ["model"],
                None,
            ),
            (QueryFilter().tenant(population.tenants[0]), ["user"], None),
            (QueryFilter().with_status(ApiCallStatus.FAILED), [], "month"),
            *self._rollup_queries(population, rng)[:12],
        ]
        for query, keys, bucket in asked:
            with scan_only():
                scanned = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(await store.get_usage_breakdown(query, keys, bucket), scanned)
            with exact_values_up_to(0):  # histograms wherever they serve
                histograms = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(histograms, scanned)
            if len(keys) == 1:
                with scan_only():
                    top_scanned = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                with exact_values_up_to(0):
                    top = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                self._assert_same_answer(top, top_scanned)

    @pytest.mark.asyncio
    async def test_breakdowns_asked_together_answer_as_asked_alone(
        self, store: ApiCallStore
    ) -> None:
        """get_usage_breakdowns: each answer is get_usage_breakdown's, in the order asked.

        Asked as the dashboard asks (totals, a timeline, the top groups of each
        key) over ranges of hours and of days; a bad breakdown raises as alone.
        """
        population = Population(seed=2718, count=900)
        await store.save_api_calls(population.calls)
        asked: list[tuple[list[GroupKey], Bucket | None, int | None]] = [
            ([], None, None),
            ([], "hour", None),
            ([], "day", None),
            (["model"], None, 3),
            (["agent"], None, 3),
            (["user"], None, 3),
            (["tenant"], None, 3),
            (["status"], None, 6),
            (["model", "status"], "week", 4),
        ]
        day = population.start + timedelta(days=40)
        for query in (
            QueryFilter().time_range(day, day + timedelta(hours=24)),  # values read once
            QueryFilter().time_range(day, day + timedelta(days=30)),
            QueryFilter().tenant(population.tenants[1]),
            QueryFilter(),
        ):
            together = await store.get_usage_breakdowns(query, asked)
            assert len(together) == len(asked)
            for (keys, bucket, limit), rows in zip(asked, together, strict=True):
                alone = await store.get_usage_breakdown(query, keys, bucket, limit)
                self._assert_same_answer(rows, alone)  # float sums may add up in any order
        with pytest.raises(ValueError, match="limit"):
            await store.get_usage_breakdowns(QueryFilter(), [([], None, 0)])
        with pytest.raises(ValueError, match="colour"):
            await store.get_usage_breakdowns(QueryFilter(), [(unchecked(["colour"]), None, None)])

    @requires(PersistenceStore)
    @pytest.mark.asyncio
    async def test_sealed_periods_answer_as_their_days_through_every_change(
        self, store: PersistenceStore
    ) -> None:
        """seal_periods changes no answer, nor does any write into a sealed period after it.

        A call saved (alone, in a batch, by ingest), deleted or pruned in a
        sealed week or month, or a user erased, unseals what it changes: the
        answers stay a scan's. Sealing again then changes nothing either.
        """
        population = Population(seed=3131, count=1200)
        await store.save_api_calls(population.calls[:1100])
        sealed = await store.seal_periods()
        assert sealed >= 0
        assert await store.seal_periods() == 0  # nothing left to seal
        await self._assert_rollups_match_a_scan(store, population, 1)
        late = [
            make_api_call(**{**call.model_dump(), "id": uuid7()}) for call in population.calls[:3]
        ]
        await store.save_api_call(late[0])
        await store.save_api_calls([late[1]])
        await store.ingest_records(calls=[late[2], *population.calls[1100:]])
        await self._assert_rollups_match_a_scan(store, population, 2)
        resealed = await store.seal_periods()  # the periods written into, sealed again
        assert resealed <= sealed
        assert resealed > 0 or sealed == 0
        assert await store.delete_api_call(population.calls[5].id)
        await store.cleanup_old_records(population.start + timedelta(days=10))
        await self._assert_rollups_match_a_scan(store, population, 3)
        await store.seal_periods()
        await store.erase_user(population.users[0])
        await self._assert_rollups_match_a_scan(store, population, 4)
        await store.seal_periods()
        await self._assert_rollups_match_a_scan(store, population, 5)
        assert await store.rebuild_rollups() == await store.count_records(
            "api_calls", QueryFilter()
        )
        await self._assert_rollups_match_a_scan(store, population, 6)

    @pytest.mark.asyncio
    async def test_rollups_subtract_deleted_and_pruned_calls(self, store: ApiCallStore) -> None:
        """delete_api_call and cleanup_old_records take their calls out of the rollups too."""
        population = Population(seed=77, count=400)
        await store.save_api_calls(population.calls)
        gone = population.calls[:30]
        for call in gone:
            assert await store.delete_api_call(call.id)
        assert not await store.delete_api_call(gone[0].id)  # twice: subtracted once
        cutoff = population.start + timedelta(days=30, minutes=17)
        pruned = await store.cleanup_old_records(cutoff)
        left = [c for c in population.calls[30:] if c.create_time >= cutoff]
        assert pruned == 370 - len(left)
        assert_statistics(await store.get_statistics(QueryFilter()), left)
        for keys, bucket in ((["model"], "day"), (["tenant", "status"], None), ([], "hour")):
            rolled = await store.get_usage_breakdown(QueryFilter(), keys, bucket)  # type: ignore[arg-type]
            with scan_only():
                scanned = await store.get_usage_breakdown(QueryFilter(), keys, bucket)  # type: ignore[arg-type]
            self._assert_same_answer(rolled, scanned)

    @requires(PersistenceStore)
    @pytest.mark.asyncio
    async def test_rollups_count_a_batch_shipped_twice_once(self, store: PersistenceStore) -> None:
        """ingest_records skips stored calls: the rollups count each call once."""
        population = Population(seed=5150, count=200)
        await store.ingest_records(calls=population.calls[:120])
        await store.ingest_records(calls=[*population.calls, population.calls[0]])
        assert_statistics(await store.get_statistics(QueryFilter()), population.calls)
        rows = await store.get_usage_breakdown(QueryFilter(), ["user"], "week")
        with scan_only():
            self._assert_same_answer(
                rows, await store.get_usage_breakdown(QueryFilter(), ["user"], "week")
            )

    @pytest.mark.asyncio
    async def test_rebuild_rollups_recounts_every_call(self, store: ApiCallStore) -> None:
        """rebuild_rollups returns the calls counted, reports its steps, and changes no answer."""
        population = Population(seed=31, count=300)
        await store.save_api_calls(population.calls)
        before = await store.get_usage_breakdown(QueryFilter(), ["model", "status"], "day")
        steps: list[tuple[int, int]] = []
        assert await store.rebuild_rollups(lambda done, total: steps.append((done, total))) == 300
        assert steps
        assert steps[-1][0] == steps[-1][1]
        assert [done for done, _ in steps] == list(range(1, len(steps) + 1))
        after = await store.get_usage_breakdown(QueryFilter(), ["model", "status"], "day")
        self._assert_same_answer(after, before)
        assert await store.rebuild_rollups() == 300

    @pytest.mark.asyncio
    async def test_prices_past_ten_decimals_sum_as_stored(self, store: ApiCallStore) -> None:
        """A price with more than ten decimals counts as a money column rounds it.

        (Not at a tie: SQLite keeps prices as REAL, whose binary value lies
        beside a decimal tie.)
        """
        prices = [Decimal("0.00000000006"), Decimal("0.12345678904999"), Decimal("1.23456789016")]
        await store.save_api_calls([make_api_call(total_price=price) for price in prices])
        expected = Decimal("0.0000000001") + Decimal("0.1234567890") + Decimal("1.2345678902")
        assert (await store.get_statistics(QueryFilter())).total_cost == expected
        with scan_only():
            assert (await store.get_statistics(QueryFilter())).total_cost == expected
