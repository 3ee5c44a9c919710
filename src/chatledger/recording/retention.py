"""Retention on a schedule: what ``chatledger prune --keep 90d`` does, run every so often.

A :class:`Retention` keeps a store's history to a period (``keep``): each
run deletes the API calls made longer ago and the sessions inactive since
then (with their messages), through the store's own ``cleanup_old_records``
and ``cleanup_old_sessions``, each one transaction that keeps the usage
rollups current. :meth:`Retention.run_once` prunes now;
:meth:`Retention.run` prunes every ``every`` until cancelled, which is how a
recorder applies a retention setting in the background. A failed run (the
database down) is logged and tried again at the next interval; it never
raises into the loop that runs it.

Durations are written as the command line writes them: ``90d``, ``12h``,
``30m``, ``45s``, ``2w`` (:func:`parse_duration`).
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from chatledger.errors import PersistenceError

# Only annotations name the store: parse_duration, which the command line's parser
# uses, loads neither the stores nor pydantic.
if TYPE_CHECKING:
    from chatledger.stores.base import PersistenceStore

__all__ = ["DEFAULT_INTERVAL", "PruneCounts", "Retention", "parse_duration"]

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = timedelta(hours=1)
"""How often a retention runs unless told otherwise (more often when ``keep`` is short)."""

# The current UTC time, as chatledger.entities.utc_now (which would load pydantic).
_utc_now = functools.partial(datetime.now, UTC)

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
# A short keep is pruned at least four times per period, so nothing outlives it by much.
_RUNS_PER_KEEP = 4
# Each wait is drawn within this share of the interval around it, so processes started
# together (a deploy of many workers) do not all prune at the same moment.
_JITTER = 0.1


def parse_duration(text: str) -> timedelta:
    """A duration written as ``90d``, ``12h``, ``30m``, ``45s`` or ``2w``; ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and a unit, "
            "like 90d, 12h, 30m, 45s or 2w"
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    return timedelta(seconds=amount * _UNIT_SECONDS[unit])


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What one retention run deleted: records from before ``cutoff``."""

    cutoff: datetime
    api_calls: int
    sessions: int


class Retention:
    """Keep ``keep`` of history in ``store``, pruning what is older every ``every``.

    ``calls`` and ``sessions`` say what is pruned: API calls made before
    the cutoff, sessions (with their messages) last active before it.
    ``every`` defaults to an hour, or a quarter of ``keep`` when that is
    shorter. ``clock`` gives the time the cutoff is counted back from.
    """

    def __init__(
        self,
        store: PersistenceStore,
        keep: timedelta | str,
        *,
        every: timedelta | str | None = None,
        calls: bool = True,
        sessions: bool = True,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Prune ``store`` to ``keep`` (a timedelta, or text such as ``"90d"``)."""
        keep = parse_duration(keep) if isinstance(keep, str) else keep
        if keep <= timedelta(0):
            raise ValueError(f"keep must be a positive duration, not {keep}")
        if every is None:
            every = min(DEFAULT_INTERVAL, keep / _RUNS_PER_KEEP)
        elif isinstance(every, str):
            every = parse_duration(every)
        if every <= timedelta(0):
            raise ValueError(f"every must be a positive duration, not {every}")
        if not (calls or sessions):
            raise ValueError("a retention that prunes neither calls nor sessions does nothing")
        self._store = store
        self._keep = keep
        self._every = every
        self._calls = calls
        self._sessions = sessions
        self._clock = clock
        self._last_run: float | None = None  # time.monotonic() when the last run began
        self._rng = random.Random()  # noqa: S311  (spreading runs out, not secrecy)

    @property
    def keep(self) -> timedelta:
        """How much history is kept."""
        return self._keep

    @property
    def every(self) -> timedelta:
        """How often :meth:`run` prunes."""
        return self._every

    def __repr__(self) -> str:
        """The period kept and the interval; the store by its backend only."""
        return f"<Retention keep={self._keep} every={self._every} store={self._store.backend_name}>"

    def cutoff(self, now: datetime | None = None) -> datetime:
        """The moment before which records are pruned: ``now`` (the clock's) minus ``keep``."""
        return (now or self._clock()) - self._keep

    async def run_once(self) -> PruneCounts:
        """Prune now: delete the calls and sessions from before the cutoff; return the counts."""
        self._last_run = time.monotonic()
        cutoff = self.cutoff()
        calls = await self._store.cleanup_old_records(cutoff) if self._calls else 0
        sessions = await self._store.cleanup_old_sessions(cutoff) if self._sessions else 0
        done = PruneCounts(cutoff=cutoff, api_calls=calls, sessions=sessions)
        if calls or sessions:
            logger.info(
                "retention deleted %d API calls and %d sessions from before %s",
                calls,
                sessions,
                cutoff.isoformat(),
            )
        return done

    def next_delay(self) -> float:
        """Seconds until the next run is due: none before the first, then about ``every``."""
        if self._last_run is None:
            return 0.0
        spread = self._rng.uniform(1 - _JITTER, 1 + _JITTER)
        due = self._last_run + self._every.total_seconds() * spread
        return max(0.0, due - time.monotonic())

    async def run(self) -> None:
        """Prune now and then every ``every``, until cancelled; a failed run is tried again later.

        The store being down, or closed under it, is logged at WARNING; any
        other error with its traceback. Neither ends the loop.
        """
        import asyncio  # here, not at the top: parse_duration's importers need no event loop

        while True:
            await asyncio.sleep(self.next_delay())
            try:
                await self.run_once()
            except PersistenceError as exc:
                logger.warning(
                    "retention could not prune (%s); it will try again in %s", exc, self._every
                )
            except Exception:  # a bug must not end the recorder's background work
                logger.exception("retention failed; it will try again in %s", self._every)
