"""The integrations part: what recording adds to one LLM call made through each framework.

The same call, against the local fake OpenAI server, with and without
chatledger's instrumentation, alternately in the same run: the OpenAI SDK
(``instrument(client, recorder)``), LiteLLM (``ChatledgerLogger``) and
LangChain (``ChatledgerCallbackHandler`` on ``ChatOpenAI``), each non-streamed
and streamed. The recorder is the default durable one (a file spool, fsynced
before the call returns) on an SQLite store.

The figure is the median over paired samples of (instrumented - plain): each
pair runs back to back, so drift in the server or the machine cancels out.
The fake server answers at once, which makes this the worst case: against a
real model the same milliseconds vanish in hundreds.

Allocation per streamed chunk: one streamed reply of many chunks, read through
an instrumented and a plain client under ``tracemalloc``; the difference in
peak traced memory, per chunk, is what the accounting keeps (the reply's text
pieces, which it must keep to store the reply).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import Cell, Result, Section, Target
from chatledger.recording import MemorySpool, Recorder
from chatledger.sync import connect as connect_sync

__all__ = ["FULL", "QUICK", "IntegrationSizes", "run_integrations"]

Progress = Callable[[str], None]

_MODEL = "gpt-4o-mini"
_TARGET_MS = 0.3
_CHUNKS = 2_000  # pieces of the long streamed reply measured for allocations


@dataclass(frozen=True, slots=True)
class IntegrationSizes:
    """How many paired calls each measure makes."""

    name: str
    calls: int  # timed pairs per framework and mode
    warm: int  # untimed pairs first (connections, imports, caches)

    def describe(self) -> str:
        """The sizes as the report says them."""
        return f"{self.calls:,} paired calls per row after {self.warm} warm-up pairs"


FULL = IntegrationSizes("full", calls=1_000, warm=50)
QUICK = IntegrationSizes("quick", calls=60, warm=10)


class _Server:
    """The fake OpenAI server in a process of its own, answering every request at once.

    Its own process, so that its work never competes with the measured client for
    the interpreter's lock, as a real provider's would not.
    """

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "chatledger.testing.fake_openai"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.base_url = self._process.stdout.readline().strip()

    def close(self) -> None:
        """Stop the server."""
        self._process.terminate()
        self._process.wait(timeout=10)


def _paired(
    plain: Callable[[], Any], recorded: Callable[[], Any], sizes: IntegrationSizes
) -> tuple[list[float], list[float]]:
    """Per-call milliseconds of ``plain`` and ``recorded``, run alternately, warm first."""
    for _ in range(sizes.warm):
        plain()
        recorded()
    plains: list[float] = []
    recordeds: list[float] = []
    for index in range(sizes.calls):
        # Alternate which goes first, so neither always gets the warmer connection.
        order = ((plain, plains), (recorded, recordeds))
        for call, samples in order if index % 2 else order[::-1]:
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1000)
    return plains, recordeds


def _added(plains: list[float], recordeds: list[float]) -> float:
    """The median of the paired differences, in milliseconds."""
    return statistics.median(r - p for p, r in zip(plains, recordeds, strict=True))


@contextlib.contextmanager
def _recorder(folder: Path, name: str, *, durable: bool = True) -> Iterator[Recorder]:
    """A recorder on a new SQLite file with a file spool; or a spool in memory (no fsync)."""
    store = connect_sync(f"sqlite:///{folder / name}.db")
    recorder = Recorder(store, spool=folder / f"{name}-spool" if durable else MemorySpool())
    try:
        yield recorder
    finally:
        recorder.close_sync()
        store.close()


def _openai_calls(base_url: str, recorder: Recorder, stream: bool) -> tuple[Any, Any]:
    import openai

    from chatledger.integrations.openai import instrument

    plain = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    recorded = instrument(
        openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0), recorder
    )
    messages = [{"role": "user", "content": "Say something."}]

    def call(client: Any) -> Callable[[], Any]:
        if not stream:
            return lambda: client.chat.completions.create(model=_MODEL, messages=messages)

        def streamed() -> None:
            for _ in client.chat.completions.create(
                model=_MODEL,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            ):
                pass

        return streamed

    return call(plain), call(recorded)


def _litellm_calls(base_url: str, recorder: Recorder, stream: bool) -> tuple[Any, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    from chatledger.integrations.litellm import ChatledgerLogger

    logger = ChatledgerLogger(recorder)
    options: dict[str, Any] = {
        "model": f"openai/{_MODEL}",
        "messages": [{"role": "user", "content": "Say something."}],
        "api_base": base_url,
        "api_key": "bench",
        "max_retries": 0,
    }
    if stream:
        options |= {"stream": True, "stream_options": {"include_usage": True}}

    def run(callbacks: list[Any]) -> Callable[[], Any]:
        def once() -> None:
            # LiteLLM copies litellm.callbacks into lists of its own on first use: both sides
            # reset them (the same cost on each side), so only one side has the logger.
            litellm.logging_callback_manager._reset_all_callbacks()
            litellm.callbacks = callbacks
            response = litellm.completion(**options)
            if stream:
                for _ in response:
                    pass

        return once

    return run([]), run([logger])


def _langchain_calls(base_url: str, recorder: Recorder, stream: bool) -> tuple[Any, Any]:
    from langchain_openai import ChatOpenAI

    from chatledger.integrations.langchain import ChatledgerCallbackHandler

    model = ChatOpenAI(
        model=_MODEL, base_url=base_url, api_key="bench", max_retries=0, stream_usage=True
    )  # type: ignore[arg-type]
    handler = ChatledgerCallbackHandler(recorder)

    def run(config: dict[str, Any]) -> Callable[[], Any]:
        if stream:
            return lambda: list(model.stream("Say something.", config=config))
        return lambda: model.invoke("Say something.", config=config)

    return run({}), run({"callbacks": [handler]})


_FRAMEWORKS: tuple[tuple[str, Callable[[str, Recorder, bool], tuple[Any, Any]]], ...] = (
    ("OpenAI SDK", _openai_calls),
    ("LiteLLM", _litellm_calls),
    ("LangChain", _langchain_calls),
)


def _allocated_per_chunk(server: _Server, folder: Path) -> tuple[float, float]:
    """Peak traced bytes per chunk of a long stream read plainly and instrumented."""
    import openai

    from chatledger.integrations.openai import instrument

    with _recorder(folder, "allocations") as recorder:
        plain = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
        recorded = instrument(
            openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0), recorder
        )
        peaks = []
        for client in (plain, recorded, plain, recorded):
            stream = client.chat.completions.create(
                model=_MODEL,
                messages=[{"role": "user", "content": "Count."}],
                max_tokens=_CHUNKS,  # the fake server answers with this many pieces
                stream=True,
                stream_options={"include_usage": True},
            )
            tracemalloc.start()
            for _ in stream:
                pass
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    # The second of each pair: the first warmed the connection and the SDK's caches.
    return peaks[2] / _CHUNKS, peaks[3] / _CHUNKS


def _commit_floor(folder: Path, sizes: IntegrationSizes) -> float:
    """Median ms of one durable commit on this disk: raw sqlite3, WAL, synchronous=FULL.

    What any durable acknowledgement costs here, whatever the library: the
    spool's own commit is one of these.
    """
    connection = sqlite3.connect(folder / "floor.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY, kind TEXT, body TEXT)")
    rows = [("message", "m" * 400), ("message", "r" * 400), ("call", "c" * 900)]
    samples = []
    for _ in range(sizes.calls):
        start = time.perf_counter()
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO spool (kind, body) VALUES (?, ?)", rows)
        connection.execute("COMMIT")
        samples.append((time.perf_counter() - start) * 1000)
        time.sleep(0.002)  # as between calls: the disk is idle when the next commit comes
    connection.close()
    return statistics.median(samples)


def run_integrations(folder: Path, sizes: IntegrationSizes, progress: Progress) -> Section:
    """Measure every framework, non-streamed and streamed; the section with its targets."""
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    server = _Server()
    results: list[Result] = []
    targets: list[Target] = []
    notes: list[str] = []
    try:
        for name, make in _FRAMEWORKS:
            for stream in (False, True):
                mode = "streamed" if stream else "non-streamed"
                progress(f"integrations: {name}, {mode}")
                with _recorder(folder, f"{name.split()[0].lower()}-{mode}") as recorder:
                    plain, recorded = make(server.base_url, recorder, stream)
                    plains, recordeds = _paired(plain, recorded, sizes)
                    recorder.flush_sync()
                    stored = recorder.stats()["api_calls_shipped"]
                expected = sizes.calls + sizes.warm
                if stored != expected:
                    notes.append(f"{name} {mode}: {stored} calls stored of {expected} made")
                added = _added(plains, recordeds)
                label = f"{name}, {mode}: per call"
                results.append(
                    Result(
                        label,
                        "ms",
                        Cell(statistics.median(recordeds)),
                        Cell(statistics.median(plains)),
                    )
                )
                targets.append(
                    Target(
                        f"median time added per call, {name} {mode}", added, _TARGET_MS, False, "ms"
                    )
                )
        progress("integrations: OpenAI SDK, spool in memory (no fsync)")
        with _recorder(folder, "memory", durable=False) as recorder:
            plain, recorded = _openai_calls(server.base_url, recorder, False)
            plains, recordeds = _paired(plain, recorded, sizes)
        accounting = _added(plains, recordeds)
        results.append(
            Result(
                "OpenAI SDK, non-streamed, spool in memory: per call",
                "ms",
                Cell(statistics.median(recordeds)),
                Cell(statistics.median(plains)),
            )
        )
        targets.append(
            Target(
                "median time added per call, OpenAI SDK, spool in memory (no fsync)",
                accounting,
                _TARGET_MS,
                False,
                "ms",
            )
        )
        floor = _commit_floor(folder, sizes)
        notes.append(
            f"Durable commit floor on this machine: {floor:.3f} ms median for one raw sqlite3 "
            "commit in WAL mode with synchronous=FULL (what the spool does once per call, "
            "before the call returns). The 0.3 ms target is below it: with the default durable "
            "recorder, the time added is that commit plus the hand-over to the spool's writer "
            "thread; the spool-in-memory row is the same recording without the fsync."
        )
        progress("integrations: allocations per streamed chunk")
        plain_bytes, recorded_bytes = _allocated_per_chunk(server, folder)
        results.append(
            Result(
                "OpenAI SDK, streamed: peak bytes per chunk",
                "B",
                Cell(recorded_bytes),
                Cell(plain_bytes),
            )
        )
        notes.append(
            f"Allocation: a {_CHUNKS:,}-chunk stream peaks {recorded_bytes - plain_bytes:,.0f} "
            "bytes per chunk higher instrumented; the reader keeps each chunk's text piece "
            "(the reply it stores) and nothing else per chunk."
        )
    finally:
        server.close()
    notes.append(
        "chatledger: the instrumented call's median; baseline: the same call uninstrumented. "
        "Targets are on the median of paired differences (instrumented - plain, back to back)."
    )
    return Section(results, targets, notes)
