"""Timing primitives: throughput and latency, measured with ``time.perf_counter``."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Sequence, Sized
from dataclasses import dataclass
from time import perf_counter
from typing import TypeVar

from chatledger.stores.statistics import percentile as stored_percentile

__all__ = [
    "Latency",
    "Rate",
    "callers_rate",
    "percentile",
    "time_async_calls",
    "time_calls",
    "time_cycling_reads",
    "timed_batches",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Rate:
    """Rows written in a measured number of seconds."""

    rows: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds

    @classmethod
    def combined(cls, rates: Sequence[Rate]) -> Rate:
        """All rows over all the time of several measured runs."""
        return cls(sum(rate.rows for rate in rates), sum(rate.seconds for rate in rates))


@dataclass(frozen=True, slots=True)
class Latency:
    """Per-operation durations in milliseconds, ascending."""

    samples_ms: tuple[float, ...]

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        """Latencies from unsorted samples."""
        if not samples_ms:
            raise ValueError("a latency needs at least one sample")
        return cls(tuple(sorted(samples_ms)))

    @property
    def p50(self) -> float:
        """The median, in milliseconds."""
        return percentile(self.samples_ms, 0.50)

    @property
    def p95(self) -> float:
        """The 95th percentile, in milliseconds."""
        return percentile(self.samples_ms, 0.95)

    @property
    def p99(self) -> float:
        """The 99th percentile, in milliseconds."""
        return percentile(self.samples_ms, 0.99)

    @property
    def median(self) -> float:
        """The median, in milliseconds (same as ``p50``)."""
        return statistics.median(self.samples_ms)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of ascending values: the store's own rule (interpolated)."""
    found = stored_percentile(sorted_values, fraction)
    if found is None:
        raise ValueError("a percentile needs at least one value")
    return found


def time_calls(call: Callable[[], object], repeats: int) -> Latency:
    """Run ``call`` ``repeats`` times and return each run's duration."""
    samples = []
    for _ in range(repeats):
        start = perf_counter()
        call()
        samples.append((perf_counter() - start) * 1000.0)
    return Latency.of(samples)


async def time_async_calls(call: Callable[[], Awaitable[object]], repeats: int) -> Latency:
    """Await ``call()`` ``repeats`` times and return each run's duration."""
    samples = []
    for _ in range(repeats):
        start = perf_counter()
        await call()
        samples.append((perf_counter() - start) * 1000.0)
    return Latency.of(samples)


async def time_cycling_reads(
    items: Sequence[_T],
    read: Callable[[_T], Awaitable[Sized]],
    *,
    expected: int,
    who: str,
    repeats: int,
    warmup: int,
) -> Latency:
    """Latency of ``read(item)`` over ``items`` in turn, each read checked for ``expected`` rows.

    ``warmup`` untimed reads go first; the timed ``repeats`` start over at
    the first item.
    """
    position = 0

    async def call() -> None:
        nonlocal position
        found = await read(items[position % len(items)])
        position += 1
        if len(found) != expected:
            raise AssertionError(f"{who} returned {len(found)}, expected {expected}")

    await time_async_calls(call, warmup)
    position = 0
    return await time_async_calls(call, repeats)


async def callers_rate(
    work: Sequence[Sequence[_T]], save: Callable[[_T], Awaitable[object]]
) -> Rate:
    """One caller per list of ``work``, all at once, each awaiting ``save(item)`` in turn."""

    async def caller(items: Sequence[_T]) -> None:
        for item in items:
            await save(item)

    start = perf_counter()
    await asyncio.gather(*(caller(items) for items in work))
    return Rate(sum(map(len, work)), perf_counter() - start)


async def timed_batches(
    batches: Sequence[Sequence[_T]],
    save: Callable[[Sequence[_T]], Awaitable[object]],
    warmup: int,
) -> Rate:
    """``save(batch)`` once per batch, the first ``warmup`` batches untimed."""
    for batch in batches[:warmup]:
        await save(batch)
    timed = batches[warmup:]
    start = perf_counter()
    for batch in timed:
        await save(batch)
    return Rate(sum(map(len, timed)), perf_counter() - start)
