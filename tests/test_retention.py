"""Retention on a schedule (``chatledger.recording.retention``): what it prunes, and when."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest

from chatledger import InMemoryStore, QueryFilter, StoreConnectionError
from chatledger.recording.retention import DEFAULT_INTERVAL, PruneCounts, Retention, parse_duration
from chatledger.stores.base import PersistenceStore
from chatledger.testing import BASE_TIME, make_api_call, make_session

NOW = BASE_TIME + timedelta(days=100)


def _clock() -> datetime:
    return NOW


async def _ages(store: PersistenceStore, *days_old: int) -> None:
    """A session and a call for each age, in days before ``NOW``."""
    for age in days_old:
        moment = NOW - timedelta(days=age)
        session = make_session(create_time=moment)
        await store.create_session(session)
        await store.save_api_call(make_api_call(session, create_time=moment))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("5min", timedelta(minutes=5)),
        ("45s", timedelta(seconds=45)),
        (" 2W ", timedelta(weeks=2)),
    ],
)
def test_parse_duration_reads_the_command_line_s_forms(text: str, expected: timedelta) -> None:
    """Whole numbers with s, m/min, h, d or w, as ``prune --before 90d`` takes them."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["90", "d", "1.5d", "-3d", "3 days", "2026-01-01", ""])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    """Anything that is not a number and a unit is a ValueError saying what to write."""
    with pytest.raises(ValueError, match="like 90d, 12h"):
        parse_duration(text)


def test_settings_are_checked_and_the_interval_follows_keep() -> None:
    """keep and every must be positive, something must be pruned; a short keep runs more often."""
    store = InMemoryStore()
    assert Retention(store, "90d").every == DEFAULT_INTERVAL
    assert Retention(store, "1h").every == timedelta(minutes=15)
    assert Retention(store, timedelta(days=7), every="6h").every == timedelta(hours=6)
    assert Retention(store, "90d").keep == timedelta(days=90)
    for keep, every in ((timedelta(0), None), ("1d", timedelta(seconds=-1)), ("1d", "0s")):
        with pytest.raises(ValueError, match="positive"):
            Retention(store, keep, every=every)
    with pytest.raises(ValueError, match="neither"):
        Retention(store, "1d", calls=False, sessions=False)
    assert (
        repr(Retention(store, "2w"))
        == "<Retention keep=14 days, 0:00:00 every=1:00:00 store=memory>"
    )


async def test_run_once_prunes_what_is_older_than_keep(any_store: PersistenceStore) -> None:
    """Calls made and sessions last active before now - keep go; the rest stay; counts returned."""
    await _ages(any_store, 120, 91, 89, 1)
    done = await Retention(any_store, "90d", clock=_clock).run_once()
    assert done == PruneCounts(cutoff=NOW - timedelta(days=90), api_calls=2, sessions=2)
    assert await any_store.count_records("api_calls", QueryFilter()) == 2
    assert await any_store.count_records("sessions", QueryFilter()) == 2
    assert (await any_store.get_statistics(QueryFilter())).total_calls == 2  # rollups too
    again = await Retention(any_store, "90d", clock=_clock).run_once()
    assert (again.api_calls, again.sessions) == (0, 0)


async def test_run_once_prunes_only_what_it_is_told_to() -> None:
    """calls=False keeps every call; sessions=False keeps every session."""
    store = InMemoryStore()
    await _ages(store, 200, 1)
    sessions_only = await Retention(store, "30d", calls=False, clock=_clock).run_once()
    assert (sessions_only.api_calls, sessions_only.sessions) == (0, 1)
    assert await store.count_records("api_calls", QueryFilter()) == 2
    calls_only = await Retention(store, "30d", sessions=False, clock=_clock).run_once()
    assert (calls_only.api_calls, calls_only.sessions) == (1, 0)


async def test_next_run_is_due_at_once_then_about_every_later() -> None:
    """No wait before the first run; after it, the interval within a tenth either way."""
    retention = Retention(InMemoryStore(), "1d", every="1h")
    assert retention.next_delay() == 0.0
    await retention.run_once()
    for _ in range(20):
        assert 0.9 * 3600 - 1 <= retention.next_delay() <= 1.1 * 3600


async def test_run_prunes_again_and_again_until_cancelled() -> None:
    """The loop prunes records that grow old while it runs, and stops when cancelled."""
    store = InMemoryStore()
    now = [NOW]
    retention = Retention(store, "1d", every=timedelta(milliseconds=20), clock=lambda: now[0])
    await _ages(store, 2, 0)
    task = asyncio.create_task(retention.run())
    await _until(lambda: store.count_records("api_calls", QueryFilter()), 1)
    now[0] += timedelta(days=3)  # the other call is old now: the next run takes it
    await _until(lambda: store.count_records("api_calls", QueryFilter()), 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _ages(store, 5)
    await asyncio.sleep(0.1)
    assert await store.count_records("api_calls", QueryFilter()) == 1  # nothing runs any more


async def _until(count: Any, expected: int) -> None:
    """Wait (up to 5 s) until ``count()`` gives ``expected``."""
    for _ in range(250):
        if await count() == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still {await count()}, not {expected}")


class _DownOnce(InMemoryStore):
    """A store whose first pruning fails as a database that is down does."""

    failed = False

    async def cleanup_old_records(self, before: datetime) -> int:
        """Fail once, then prune."""
        if not self.failed:
            self.failed = True
            raise StoreConnectionError("is PostgreSQL running on 127.0.0.1:5432?")
        return await super().cleanup_old_records(before)


async def test_a_failed_run_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    """The store being down ends no loop: a warning, then the next run prunes."""
    store = _DownOnce()
    await _ages(store, 10)
    retention = Retention(store, "1d", every=timedelta(milliseconds=20), clock=_clock)
    with caplog.at_level(logging.WARNING, logger="chatledger.recording.retention"):
        task = asyncio.create_task(retention.run())
        await _until(lambda: store.count_records("api_calls", QueryFilter()), 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert store.failed
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not prune" in warnings[0].getMessage()
