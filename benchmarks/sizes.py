"""How much work each benchmark does: the full run and the quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Sizes"]


@dataclass(frozen=True, slots=True)
class Sizes:
    """Row counts, repetitions and volumes of one benchmark run."""

    name: str
    single_saves: int  # messages saved one at a time by one caller
    callers: int  # concurrent callers
    saves_per_caller: int  # messages each concurrent caller saves, one at a time
    batch_size: int  # rows per save_messages / save_api_calls / executemany
    batches: int  # batches per side
    history_sessions: int  # sessions in the history database
    messages_per_session: int  # messages per session in the history database
    history_limit: int  # the ``limit`` of get_recent_messages
    history_queries: int  # timed history reads per side
    full_scan_queries: int  # timed reads for a peer without an index (full table scans)
    api_calls: int  # API-call records in the statistics database
    users: int  # distinct users among those API calls
    stats_repeats: int  # timed get_statistics runs per variant
    warmup: int  # untimed operations before each timed run
    server_saves: int  # messages each side saves one per call, per caller count, on a server
    server_callers: tuple[int, ...]  # concurrent caller counts on a server (and pool sizes)

    @property
    def history_messages(self) -> int:
        """Messages in the history database."""
        return self.history_sessions * self.messages_per_session


FULL = Sizes(
    name="full",
    single_saves=5_000,
    callers=50,
    saves_per_caller=100,
    batch_size=500,
    batches=100,
    history_sessions=10_000,
    messages_per_session=100,
    history_limit=50,
    history_queries=2_000,
    full_scan_queries=30,
    api_calls=1_000_000,
    users=100,
    stats_repeats=5,
    warmup=50,
    server_saves=5_000,
    server_callers=(8, 50),
)

QUICK = Sizes(
    name="quick",
    single_saves=300,
    callers=50,
    saves_per_caller=6,
    batch_size=500,
    batches=6,
    history_sessions=200,
    messages_per_session=100,
    history_limit=50,
    history_queries=200,
    full_scan_queries=10,
    api_calls=20_000,
    users=20,
    stats_repeats=3,
    warmup=20,
    server_saves=400,
    server_callers=(8, 50),
)
