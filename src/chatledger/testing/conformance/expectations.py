"""Expected values worked out in the tests, never by chatledger's own helpers.

Statistics from the calls themselves (the standard library's quantiles for
percentiles), a record's JSON from its entity, an export's records joined.
"""

from __future__ import annotations

import json
import statistics as pystats
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel
from pydantic_core import to_json

from chatledger.entities import ApiCallStatus, LLMApiCall, QueryFilter, UsageStatistics
from chatledger.stores.base import PersistenceStore, RecordKind
from chatledger.stores.statistics import PERCENTILE_RELATIVE_ERROR

__all__ = [
    "assert_exported_as_saved",
    "assert_record_is",
    "assert_same_statistics",
    "assert_statistics",
    "drain",
    "expected_percentiles",
    "exported",
    "key_value",
    "unchecked",
]

_COST_QUANTUM = Decimal("1e-10")


def unchecked(value: object) -> Any:
    """``value`` typed as anything: a wrong argument that a type checker lets through."""
    return value


def expected_percentiles(latencies: Sequence[int]) -> tuple[float, float, float] | None:
    """p50/p95/p99 by the standard library's inclusive (linear-interpolation) quantiles."""
    if not latencies:
        return None
    if len(latencies) == 1:
        only = float(latencies[0])
        return only, only, only
    cuts = pystats.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def assert_statistics(actual: UsageStatistics, calls: Sequence[LLMApiCall]) -> None:
    """Check every field of ``actual`` against a computation straight from ``calls``."""
    success = sum(1 for c in calls if c.status is ApiCallStatus.SUCCESS)
    assert actual.total_calls == len(calls)
    assert actual.success_count == success
    assert actual.failed_count == len(calls) - success
    assert actual.status_counts == {
        status: sum(1 for c in calls if c.status is status) for status in ApiCallStatus
    }
    assert actual.total_tokens == sum(c.total_tokens for c in calls)
    assert actual.total_prompt_tokens == sum(c.prompt_tokens for c in calls)
    assert actual.total_completion_tokens == sum(c.completion_tokens for c in calls)
    assert actual.total_cached_tokens == sum(
        (c.prompt_tokens_details.cached_tokens or 0) if c.prompt_tokens_details else 0
        for c in calls
    )
    assert actual.total_reasoning_tokens == sum(
        (c.completion_tokens_details.reasoning_tokens or 0) if c.completion_tokens_details else 0
        for c in calls
    )
    assert actual.total_cache_write_tokens == sum(
        (c.prompt_tokens_details.cache_write_tokens or 0) if c.prompt_tokens_details else 0
        for c in calls
    )
    prices = [c.total_price for c in calls if c.total_price is not None]
    if prices:
        expected_cost = sum(prices, Decimal(0)).quantize(_COST_QUANTUM)
        assert actual.total_cost == expected_cost
        assert isinstance(actual.total_cost, Decimal)
    else:
        assert actual.total_cost is None

    def mean(values: Sequence[float]) -> float | None:
        return pystats.fmean(values) if values else None

    latencies = [c.latency_ms for c in calls if c.latency_ms is not None]
    speeds = [c.tokens_per_second for c in calls if c.tokens_per_second is not None]
    firsts = [c.time_to_first_token_ms for c in calls if c.time_to_first_token_ms is not None]
    for got, want in (
        (actual.avg_latency_ms, mean(latencies)),
        (actual.avg_tokens_per_second, mean(speeds)),
        (actual.avg_time_to_first_token_ms, mean(firsts)),
    ):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, rel=1e-9)
    for values, got_percentiles in (
        (latencies, (actual.p50_latency_ms, actual.p95_latency_ms, actual.p99_latency_ms)),
        (
            firsts,
            (
                actual.p50_time_to_first_token_ms,
                actual.p95_time_to_first_token_ms,
                actual.p99_time_to_first_token_ms,
            ),
        ),
    ):
        percentiles = expected_percentiles(sorted(values))
        if percentiles is None:
            assert got_percentiles == (None, None, None)
        else:
            assert got_percentiles == pytest.approx(percentiles, rel=1e-9)


_EXACT_STATISTICS = (
    "total_calls", "success_count", "failed_count", "status_counts", "total_tokens",
    "total_prompt_tokens", "total_completion_tokens", "total_cost",
    "total_cached_tokens", "total_reasoning_tokens", "total_cache_write_tokens",
)  # fmt: skip


def assert_same_statistics(got: UsageStatistics, want: UsageStatistics) -> None:
    """``got`` answers as ``want``: counts, tokens and cost exactly, averages to 1e-9, and
    percentiles within the histograms' documented error (rollups against a scan)."""
    for name in _EXACT_STATISTICS:
        assert getattr(got, name) == getattr(want, name), name
    for name in ("avg_latency_ms", "avg_tokens_per_second", "avg_time_to_first_token_ms"):
        value, reference = getattr(got, name), getattr(want, name)
        assert (value is None) == (reference is None), name
        if reference is not None:
            assert value == pytest.approx(reference, rel=1e-9), name
    for metric in ("latency_ms", "time_to_first_token_ms"):
        for percent in (50, 95, 99):
            name = f"p{percent}_{metric}"
            value, reference = getattr(got, name), getattr(want, name)
            assert (value is None) == (reference is None), name
            if reference is not None:
                error = PERCENTILE_RELATIVE_ERROR * reference + 1e-9
                assert abs(value - reference) <= error, (name, value, reference)


def key_value(call: LLMApiCall, key: str) -> Any:
    """The value of ``call`` a breakdown groups by ``key``."""
    return {
        "model": call.model_name,
        "agent": call.agent_id,
        "user": call.user_id,
        "tenant": call.tenant_id,
        "session": call.chat_session_id,
        "status": call.status,
    }[key]


async def drain(chunks: AsyncIterator[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Every chunk an export yields."""
    return [chunk async for chunk in chunks]


async def exported(
    store: PersistenceStore, kind: RecordKind, query: QueryFilter | None = None
) -> list[dict[str, Any]]:
    """Every record an export yields, chunks joined."""
    chunks = await drain(store.export_records(kind, query or QueryFilter()))
    return [record for chunk in chunks for record in chunk]


def assert_record_is(record: dict[str, Any], stored: BaseModel, saved: BaseModel) -> None:
    """``record`` is the stored entity's JSON form exactly, and holds what was saved.

    Against the entity the store reads back: the JSON-mode dump (ids and
    times as text), the same keys in the same order at every depth, the same
    JSON text. Against the entity as saved: the same JSON values (PostgreSQL
    may reorder the keys inside JSON columns, for the read-back entity too).
    """
    dumped = stored.model_dump(mode="json")
    assert record == dumped
    assert list(record) == list(dumped)
    assert to_json(record) == stored.model_dump_json().encode()
    assert json.loads(to_json(record)) == json.loads(saved.model_dump_json())


async def assert_exported_as_saved(
    store: PersistenceStore,
    kind: RecordKind,
    saved: Sequence[BaseModel],
    read: Callable[[UUID], Awaitable[BaseModel | None]],
) -> None:
    """The export of ``kind`` holds exactly ``saved``, in id order, each as its entity's JSON."""
    records = await exported(store, kind)
    assert [r["id"] for r in records] == sorted(str(e.id) for e in saved)  # type: ignore[attr-defined]
    by_id = {e.id: e for e in saved}  # type: ignore[attr-defined]
    for record in records:
        stored = await read(UUID(record["id"]))
        assert stored is not None
        assert_record_is(record, stored, by_id[UUID(record["id"])])
