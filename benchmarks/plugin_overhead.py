"""What the persistence plugin adds to a chat turn: the same agent with and without it.

The provider is ``ScriptedProvider`` at zero delay, so a turn without the
plugin is the agent's own work alone, and the difference is what recording
costs: saving the user's message, the reply and the API call, each a
durable commit. Measured sequentially and with 100 concurrent chats, on
SQLite and on PostgreSQL, in one run.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import perf_counter

from benchmarks.measure import percentile
from benchmarks.report import Cell, Result, Section, Target
from chatledger.agent import LLMAgent, LLMAgentBuilder, ScriptedProvider, ScriptedReply
from chatledger.ids import uuid7
from chatledger.plugin import PersistencePlugin
from chatledger.stores.base import PersistenceStore

__all__ = ["TURNS", "run_plugin_overhead"]

TURNS = {"full": 2_000, "quick": 200}  # chat turns per side and per concurrency
CONCURRENT = 100
_REPLY = ScriptedReply("Sure, here is the answer.", prompt_tokens=40, completion_tokens=8)

StoreOpener = Callable[[], Awaitable[PersistenceStore]]


async def _agent(
    store: PersistenceStore | None, background: bool
) -> tuple[LLMAgent, PersistencePlugin | None]:
    builder = LLMAgentBuilder().with_provider(ScriptedProvider([_REPLY])).with_model("gpt-4o-mini")
    plugin = None
    if store is not None:
        plugin = PersistencePlugin.from_store(
            "bench", store, uuid7(), uuid7(), uuid7(), uuid7(), background=background
        )
        builder = builder.with_persistence_plugin(plugin)
    return await builder.build_async(), plugin


async def _turns(
    agent: LLMAgent, plugin: PersistencePlugin | None, turns: int, concurrency: int
) -> tuple[float, list[float]]:
    """Turns per second, and each turn's duration in ms, with ``concurrency`` chats at once.

    The rate's clock stops only once every record is stored (a background
    plugin's flush included), so it never counts work left undone.
    """
    durations: list[float] = []

    async def chat(count: int) -> None:
        for number in range(count):
            start = perf_counter()
            await agent.chat(f"question {number}")
            durations.append((perf_counter() - start) * 1000)

    per_chat = max(1, turns // concurrency)
    start = perf_counter()
    await asyncio.gather(*(chat(per_chat) for _ in range(concurrency)))
    if plugin is not None and await plugin.flush():
        raise AssertionError("the plugin could not store every record")
    elapsed = perf_counter() - start
    return per_chat * concurrency / elapsed, durations


async def _measure(
    open_store: StoreOpener | None, turns: int, concurrency: int, background: bool = False
) -> tuple[float, list[float]]:
    store = None if open_store is None else await open_store()
    agent, plugin = await _agent(store, background)
    try:
        await _turns(agent, plugin, max(20, turns // 10), concurrency)  # warm-up
        return await _turns(agent, plugin, turns, concurrency)
    finally:
        await agent.close()
        if store is not None:
            await store.close()


async def run_plugin_overhead(
    backends: list[tuple[str, StoreOpener]], turns: int, progress: Callable[[str], None]
) -> Section:
    """Turns with and without the plugin, per backend and concurrency; the targets on SQLite."""
    results: list[Result] = []
    targets: list[Target] = []
    for name, open_store in backends:
        for concurrency in (1, CONCURRENT):
            bare_rate, bare = await _measure(None, turns, concurrency)
            for mode, background in (("awaited", False), ("background", True)):
                rate, timed = await _measure(open_store, turns, concurrency, background)
                added = statistics.median(timed) - statistics.median(bare)
                progress(
                    f"{name}, {concurrency} chat(s), {mode}: {rate:,.0f} turns/s with the "
                    f"plugin, {bare_rate:,.0f} without; median turn +{added:.3f} ms"
                )
                label = f"{name}, {concurrency} chat{'s' if concurrency > 1 else ''}, {mode}"
                turn_rate = Result(f"turns/s, {label}", "rows/s", Cell(rate), Cell(bare_rate))
                results += [
                    turn_rate,
                    Result(
                        f"  median turn, {label}",
                        "ms",
                        Cell(statistics.median(timed)),
                        Cell(statistics.median(bare)),
                    ),
                    Result(
                        f"  p99 turn, {label}",
                        "ms",
                        Cell(percentile(sorted(timed), 0.99)),
                        Cell(percentile(sorted(bare), 0.99)),
                    ),
                ]
                if name == "SQLite" and concurrency == CONCURRENT:
                    targets += [
                        Target(f"turns/s with the plugin, {label}: vs without", turn_rate.ratio,
                               0.5, True),
                        Target(f"median time the plugin adds per turn, {label}", added, 1.0,
                               False, "ms"),
                    ]  # fmt: skip
    notes = [
        "plugin overhead: the same LLMAgent with ScriptedProvider at zero delay, with and "
        "without PersistencePlugin (user message, reply and API call per turn; WAL + "
        "synchronous=FULL on SQLite, synchronous_commit=on on PostgreSQL); awaited: each hook "
        "returns once its records are committed; background: records queue and a writer "
        "stores them in batches, and the turns/s clock stops only after flush() has stored "
        "them all; rows/s here are turns/s; the raw column is the agent without the plugin",
    ]
    return Section(results, targets, notes)


def sqlite_opener(folder: Path) -> StoreOpener:
    """Opens an SQLite store on a fresh file in ``folder`` each time."""
    from chatledger.stores.sqlite import SqliteStore

    count = 0

    async def open_store() -> PersistenceStore:
        nonlocal count
        count += 1
        return await SqliteStore.connect(folder / f"plugin-{count}.db")

    return open_store
