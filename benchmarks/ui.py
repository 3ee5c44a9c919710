"""The ui part: ``chatledger ui`` over a million calls and a million messages, page by page.

On each backend (an SQLite file; PostgreSQL in a scratch database of its
own) the dashboard's data (:mod:`benchmarks.dashboard_data`) is loaded by the
raw bulk loaders into chatledger's schema (secondary indexes dropped and
rebuilt), and the store's planner statistics refreshed as it refreshes them.
The real command, ``chatledger ui --db URL --port N``, is then started as a
process of its own, and each page is requested over HTTP on loopback, one
request at a time on a keep-alive connection (as a browser tab asks), after a
few untimed ones: its time is the client's wall time from the request to the
last byte of the body. The server's peak resident memory is its VmHWM at the
end.

Beside each page, the same store calls its view makes (read from
src/chatledger/ui/views.py: the same parsing of the same query string, the
same gathers), timed in this process on a store opened as the command opens
it: what the page adds to its queries is HTTP, rendering and Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import random
import re
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from benchmarks import raw_server
from benchmarks.bulk_load import (
    bulk_load,
    index_pending_text,
    learn_layouts,
    reanalyze_sqlite,
    rebuild_rollups,
)
from benchmarks.dashboard_data import COMMON_WORD, Dashboard, order_number
from benchmarks.measure import Latency
from benchmarks.raw_postgres import RawPostgres
from benchmarks.report import Cell, Result, Section, Target
from benchmarks.scratch_databases import POSTGRES, ServerUnavailableError
from chatledger.entities import CallSort, QueryFilter
from chatledger.stores.base import PersistenceStore

__all__ = ["FULL", "QUICK", "UiSizes", "run_ui"]

Progress = Callable[[str], None]

SEED = 20250313
PAGE_TARGET_MS = 150.0
RSS_TARGET_MB = 200.0
SCRATCH = replace(POSTGRES, scratch="chatledger_bench_ui")  # apart from the other parts' database
_BREAKDOWN_KEYS = ("model", "agent", "user", "tenant", "status")  # views.py's _BREAKDOWNS
_BREAKDOWN_ROWS = 15  # views.BREAKDOWN_ROWS
_PAGE_SIZE = 50  # views.PAGE_SIZE
_MESSAGE_PAGE = 200  # views.MESSAGE_PAGE
_LATER_PAGE = 20  # the calls page reached by following "next" this many times
_READY_TIMEOUT = 120.0  # seconds for the command to open the database and listen


@dataclass(frozen=True, slots=True)
class UiSizes:
    """How much data and how many requests."""

    name: str
    calls: int  # API calls (at least)
    messages: int  # messages (at least)
    tenants: int
    users: int
    agents_per_tenant: int
    requests: int  # timed requests per page, at most
    min_requests: int  # timed requests per page, at least (even past the budget)
    budget_s: float  # seconds of timed requests per page, after which it stops at min_requests
    warmup: int  # untimed requests per page first
    exports: int  # timed exports
    picks: int  # distinct calls / sessions a detail page cycles over

    def describe(self) -> str:
        """The sizes line of the report."""
        return (
            f"calls>={self.calls:,}, messages>={self.messages:,} over 90 days, "
            f"tenants={self.tenants}, users={self.users:,}, "
            f"agents={self.tenants * self.agents_per_tenant}, "
            f"requests={self.requests} a page ({self.min_requests} at least, "
            f"{self.budget_s:.0f} s budget), warmup={self.warmup}"
        )


FULL = UiSizes(
    "full", calls=1_000_000, messages=1_000_000, tenants=40, users=2_000, agents_per_tenant=3,
    requests=50, min_requests=10, budget_s=60.0, warmup=5, exports=2, picks=50,
)  # fmt: skip
QUICK = UiSizes(
    "quick", calls=20_000, messages=20_000, tenants=8, users=100, agents_per_tenant=3,
    requests=10, min_requests=5, budget_s=10.0, warmup=2, exports=1, picks=10,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Page:
    """A page as the benchmark asks for it: the addresses it cycles over."""

    label: str
    paths: tuple[str, ...]
    status: int = 200


@dataclass(frozen=True, slots=True)
class Measured:
    """A page's figures: over HTTP, through the store alone, and its size."""

    page: Page
    http: Latency
    store: Latency
    size: int  # bytes of the body, the last request's
    server_timing: Latency | None  # the app's own Server-Timing total, when it sends one
    peak_mb: float | None = None  # the server's peak RSS once this page's requests were done


# --- loading ---------------------------------------------------------------------------------


def _data(sizes: UiSizes) -> Dashboard:
    return Dashboard.make(
        seed=SEED,
        calls=sizes.calls,
        messages=sizes.messages,
        tenants=sizes.tenants,
        users=sizes.users,
        agents_per_tenant=sizes.agents_per_tenant,
    )


async def _load_sqlite(data: Dashboard, path: Path, progress: Progress) -> dict[str, int]:
    """chatledger's schema at ``path``, the rows bulk-loaded, the store's ANALYZE run."""
    from chatledger.stores.sqlite import SqliteStore

    start = perf_counter()
    layouts = await learn_layouts(path)
    counts = {}
    for name, layout, rows in (
        ("messages", layouts.message, data.messages()),
        ("sessions", layouts.session, data.sessions()),
        ("calls", layouts.api_call, data.calls()),
    ):
        counts[name] = bulk_load(path, [(layout, rows)])
        progress(f"SQLite: {counts[name]:,} {name} loaded ({perf_counter() - start:.0f} s)")
    store = await SqliteStore.connect(f"sqlite:///{path}")
    try:
        await rebuild_rollups(store, "SQLite", progress)
        await index_pending_text(store, "SQLite", progress)  # so that no page is timed while it is
    finally:
        await store.close()
    await reanalyze_sqlite(path, progress)
    return counts


async def _load_postgres(data: Dashboard, url: str, progress: Progress) -> dict[str, int]:
    """chatledger's schema in the scratch database, COPY'd rows, ANALYZE and VACUUM."""
    from chatledger.stores.postgres import PostgresStore

    await (await PostgresStore.connect(url, min_size=1, max_size=1)).close()  # the schema
    raw = await RawPostgres.open(url, 1)
    counts = {}
    start = perf_counter()
    try:
        for name, table, rows in (
            ("messages", raw_server.TABLES["message"], data.messages()),
            ("sessions", raw_server.TABLES["session"], data.sessions()),
            ("calls", raw_server.TABLES["api_call"], data.calls()),
        ):
            counts[name] = await raw.bulk_load([(table, rows)])  # ANALYZEs the table
            progress(f"PostgreSQL: {counts[name]:,} {name} loaded ({perf_counter() - start:.0f} s)")
    finally:
        await raw.close()
    store = await PostgresStore.connect(url, min_size=1, max_size=1)
    try:
        await rebuild_rollups(store, "PostgreSQL", progress)
        # The session search's index is built on request (it slows single saves): a
        # dashboard over a million messages is where it is asked for.
        create = getattr(store, "create_text_index", None)  # None: built by the migrations
        if create is not None:
            started = perf_counter()
            built = await create()
            progress(f"PostgreSQL: text index built ({built}) in {perf_counter() - started:.1f} s")
    finally:
        await store.close()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # What autovacuum does after bulk inserts: the visibility map that index-only
        # scans rely on (a COPY'd table has none until then), and fresh statistics.
        started = perf_counter()
        await conn.execute("VACUUM (ANALYZE)")
        progress(f"PostgreSQL: VACUUM (ANALYZE) in {perf_counter() - started:.1f} s")
    finally:
        await conn.close()
    return counts


# --- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _status_kib(pid: int, field: str) -> int | None:
    """A ``VmHWM``/``VmRSS`` line of /proc/PID/status, in KiB (None off Linux)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class UiServer:
    """``chatledger ui`` in a process of its own, its output in a log file."""

    def __init__(self, process: asyncio.subprocess.Process, base: str, log: Path) -> None:
        """Wrap a started process listening at ``base``."""
        self.process = process
        self.base = base
        self.log = log

    @classmethod
    async def start(cls, url: str, log: Path) -> UiServer:
        """Start the command on a free port and wait until it answers."""
        import httpx

        port = _free_port()
        out = log.open("wb")  # the child writes into it; this process closes its copy
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chatledger", "ui", "--db", url, "--port", str(port),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        finally:
            out.close()
        server = cls(process, f"http://127.0.0.1:{port}", log)
        deadline = perf_counter() + _READY_TIMEOUT
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"chatledger ui exited: {server.tail()}")
                try:
                    answer = await client.get(server.base + "/static/favicon.svg")
                    if answer.status_code == 200:
                        return server
                except httpx.TransportError:
                    pass
                if perf_counter() > deadline:
                    await server.stop()
                    raise RuntimeError(f"chatledger ui did not answer: {server.tail()}")
                await asyncio.sleep(0.2)

    def tail(self) -> str:
        """The end of the server's output."""
        try:
            return self.log.read_text(errors="replace")[-2000:] or "(no output)"
        except OSError:
            return "(no output)"

    def memory_mb(self, field: str = "VmHWM") -> float | None:
        """The server's peak (VmHWM) or current (VmRSS) resident memory, in MB."""
        kib = _status_kib(self.process.pid, field)
        return None if kib is None else kib / 1024

    async def stop(self) -> None:
        """Stop it as Ctrl+C would, or kill it if it lingers."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# --- the pages -------------------------------------------------------------------------------


def _picks(data: Dashboard, count: int) -> tuple[list[str], list[str]]:
    """``count`` sessions with messages and ``count`` calls, at random (their ids)."""
    rng = random.Random(SEED + 1)
    sessions, calls = [], []
    for index in rng.sample(range(data.session_count), min(count, data.session_count)):
        made = data.session(index)
        sessions.append(str(made.row["id"]))
        calls.append(str(rng.choice(made.calls)["id"]))
    return sessions, calls


def _rare_search(data: Dashboard) -> str:
    """The order number one session mentions (every third mentions its own).

    With one session to find, a search cannot fill its page early: it tests
    every session's messages (the worst case of a search, and a common one:
    looking for the conversation about one order).
    """
    middle = data.session_count // 2
    return order_number(middle - middle % 3)


def _pages(data: Dashboard, later: str | None, feed: str, picks: int) -> list[Page]:
    population = data.population
    tenant = population.tenants[min(3, len(population.tenants) - 1)].id
    sessions, calls = _picks(data, picks)
    pages = [
        Page("overview, default range (7d)", ("/",)),
        Page("overview, 24h", ("/?range=24h",)),
        Page("overview, 30d", ("/?range=30d",)),
        Page("overview, all (90 days)", ("/?range=all",)),
        Page("calls, first page (newest)", ("/calls",)),
    ]
    if later is not None:
        pages.append(Page(f"calls, page {_LATER_PAGE + 1} (cursor)", (f"/calls?cursor={later}",)))
    pages += [
        Page("calls, by cost (most first)", ("/calls?sort=cost_desc",)),
        Page("calls, by latency (slowest first)", ("/calls?sort=latency_desc",)),
        Page("calls, model = gpt-4.1", ("/calls?model=gpt-4.1",)),
        Page("calls, status = timeout", ("/calls?status=timeout",)),
        Page("calls, one tenant (4th largest)", (f"/calls?tenant={tenant}",)),
        Page(f"call detail ({len(calls)} calls in turn)", tuple(f"/calls/{c}" for c in calls)),
        Page("sessions, first page", ("/sessions",)),
        Page(f"sessions, search '{COMMON_WORD}' (~1 in 30)", (f"/sessions?q={COMMON_WORD}",)),
        Page(
            "sessions, search an order number (1 session has it)",
            (f"/sessions?q={quote(_rare_search(data))}",),
        ),
        Page(
            f"session conversation ({len(sessions)} in turn)",
            tuple(f"/sessions/{s}" for s in sessions),
        ),
        Page("live, the page", ("/live",)),
        Page("live, a poll with nothing new (204)", (feed,), status=204),
    ]
    return pages


async def _later_cursor(store: PersistenceStore) -> str | None:
    """The cursor of the newest-first calls page after ``_LATER_PAGE`` pages."""
    cursor = None
    for _ in range(_LATER_PAGE):
        page = await store.page_api_calls(QueryFilter(), cursor=cursor, limit=_PAGE_SIZE)
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor
    return cursor


_FEED = re.compile(r'hx-get="(/live/feed[^"]*)"')
_DURATION = re.compile(r"dur=([0-9.]+)")


async def _feed_path(client: Any, base: str) -> str:
    """The address the live page polls (with what it showed), read from the page."""
    answer = await client.get(base + "/live")
    found = _FEED.search(answer.text)
    if answer.status_code != 200 or found is None:
        raise RuntimeError(f"/live answered {answer.status_code} without its feed address")
    return html.unescape(found.group(1))


async def _reuse_delay(client: Any, base: str) -> tuple[float, float]:
    """Median ms of a small static file on the kept-alive connection, and on a new one each time.

    A server that writes a response's head and body separately with Nagle's
    algorithm on (no TCP_NODELAY) holds the body until the client acknowledges
    the head, which a client does up to 40 ms late (delayed ACK) once its
    connection is past its first exchanges: every response on a reused
    connection then waits for it, and a new connection does not.
    """
    path = base + "/static/favicon.svg"

    async def median(headers: dict[str, str]) -> float:
        samples = []
        for _ in range(11):
            start = perf_counter()
            answer = await client.get(path, headers=headers)
            samples.append((perf_counter() - start) * 1000.0)
            if answer.status_code != 200:
                raise RuntimeError(f"{path} answered {answer.status_code}")
        return Latency.of(samples).median

    await client.get(path)
    kept = await median({})
    fresh = await median({"Connection": "close"})  # the server closes it after the answer
    return kept, fresh


async def _time_page(
    client: Any, base: str, store: PersistenceStore, page: Page, sizes: UiSizes
) -> Measured:
    """The page over HTTP and its store calls alone, in turn (so both meet the same load)."""
    http: list[float] = []
    alone: list[float] = []
    timings: list[float] = []
    size = 0

    async def request(path: str) -> float:
        nonlocal size
        start = perf_counter()
        answer = await client.get(base + path)
        elapsed = (perf_counter() - start) * 1000.0
        if answer.status_code != page.status:
            raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
        size = len(answer.content)
        timing = answer.headers.get("server-timing")
        if timing:
            timings.append(sum(float(d) for d in _DURATION.findall(timing)))
        return elapsed

    async def store_only(path: str) -> float:
        start = perf_counter()
        await store_calls(store, path)
        return (perf_counter() - start) * 1000.0

    for index in range(sizes.warmup):
        path = page.paths[index % len(page.paths)]
        await request(path)
        await store_only(path)
    timings.clear()
    started = perf_counter()
    while len(http) < sizes.requests and (
        len(http) < sizes.min_requests or perf_counter() - started < sizes.budget_s
    ):
        path = page.paths[len(http) % len(page.paths)]
        http.append(await request(path))
        alone.append(await store_only(path))
    server = Latency.of(timings) if timings else None
    return Measured(page, Latency.of(http), Latency.of(alone), size, server)


# --- the same store calls, without HTTP --------------------------------------------------------
#
# Each mirrors its view in src/chatledger/ui/views.py (as of 487ee7d): the same parsing of the
# same query string, the same store calls in the same gathers. check_mirrors() compares the
# store methods each makes with those the view makes, so a view that changed is reported.


async def _overview(store: PersistenceStore, params: dict[str, str]) -> None:
    from chatledger.ui.params import overview_range
    from chatledger.ui.series import choose_bucket

    _, chosen, query = overview_range(params)
    start = chosen.start
    if start is None:
        first = await store.page_api_calls(query, sort=CallSort.OLDEST, limit=1)
        start = first.calls[0].create_time if first.calls else chosen.end - timedelta(days=7)
    bucket = choose_bucket(start, chosen.end)
    await store.get_usage_breakdowns(
        query,
        [
            ((), None, None),
            ((), bucket, None),
            *(((key,), None, _BREAKDOWN_ROWS + 1) for key in _BREAKDOWN_KEYS),
        ],
    )


async def _calls(store: PersistenceStore, params: dict[str, str]) -> None:
    from chatledger.ui.params import call_filter, call_sort

    form, query = call_filter(params)
    sort = call_sort(params, form)
    await store.page_api_calls(query, sort=sort, cursor=params.get("cursor"), limit=_PAGE_SIZE)


async def _call(store: PersistenceStore, call_id: uuid.UUID) -> None:
    call = await store.get_api_call(call_id)
    if call is None:
        raise RuntimeError(f"no call {call_id}")
    await asyncio.gather(
        store.get_message(call.request_message_id), store.get_message(call.response_message_id)
    )


async def _sessions(store: PersistenceStore, params: dict[str, str]) -> None:
    from chatledger.ui.params import session_query

    _, query = session_query(params)
    page = await store.search_sessions(query, limit=_PAGE_SIZE)
    await store.count_messages_by_session([s.id for s in page.sessions])


async def _session(store: PersistenceStore, session_id: uuid.UUID) -> None:
    """The first page of a conversation, as views.session_detail reads it."""
    session, _ = await asyncio.gather(
        store.get_session(session_id), store.count_session_messages(session_id)
    )
    if session is None:
        raise RuntimeError(f"no session {session_id}")
    messages = await store.get_session_messages_paginated(session_id, 0, _MESSAGE_PAGE)
    await asyncio.gather(
        store.calls_for_messages([message.id for message in messages]),
        store.get_statistics(QueryFilter(session_id=session_id)),
    )


async def store_calls(store: PersistenceStore, path: str) -> None:
    """What the view of ``path`` asks the store, in the same order and gathers."""
    parts = urlsplit(path)
    params = dict(parse_qsl(parts.query))
    route = parts.path
    if route == "/":
        await _overview(store, params)
    elif route == "/calls":
        await _calls(store, params)
    elif route.startswith("/calls/"):
        await _call(store, uuid.UUID(route.removeprefix("/calls/")))
    elif route == "/sessions":
        await _sessions(store, params)
    elif route.startswith("/sessions/"):
        await _session(store, uuid.UUID(route.removeprefix("/sessions/")))
    elif route in ("/live", "/live/feed"):
        await store.page_api_calls(QueryFilter(), sort=CallSort.NEWEST, limit=50)
    else:
        raise ValueError(f"no store calls known for {path}")


class _Recorder:
    """A store that notes the name of each method called on it, then calls it."""

    def __init__(self, store: PersistenceStore) -> None:
        self._store = store
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if name.startswith("_") or not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self.called.append(name)
            return found(*args, **kwargs)

        return call


async def check_mirrors(store: PersistenceStore, pages: list[Page]) -> list[str]:
    """The pages whose view calls other store methods than its mirror here (none, normally).

    Each page's first address is served in this process by ``create_app``
    over a recording store, and its mirror run over another.
    """
    from collections import Counter

    import httpx

    from chatledger.ui import create_app

    differ = []
    for page in pages:
        path = page.paths[0]
        view = _Recorder(store)
        app = create_app(view)  # type: ignore[arg-type]  # a stand-in with the store's methods
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answer = await client.get(path)
        if answer.status_code != page.status:
            raise RuntimeError(f"{path} answered {answer.status_code} in process")
        mirror = _Recorder(store)
        await store_calls(mirror, path)  # type: ignore[arg-type]  # as above
        if Counter(view.called) != Counter(mirror.called):
            differ.append(
                f"{page.label} (the view calls {', '.join(view.called)}; the mirror "
                f"{', '.join(mirror.called)})"
            )
    return differ


# --- the export ------------------------------------------------------------------------------

_EXPORT = "/calls/export?format=jsonl&model=gpt-4o&since=30d"


async def _time_export(
    client: Any, base: str, store: PersistenceStore, sizes: UiSizes
) -> tuple[float, float, int]:
    """Rows a second of the export over HTTP and of the store's export_records; the rows."""
    from chatledger.ui.params import call_filter

    rows = 0
    http_seconds = 0.0
    for _ in range(sizes.exports):
        rows = 0
        start = perf_counter()
        async with client.stream("GET", base + _EXPORT) as answer:
            if answer.status_code != 200:
                raise RuntimeError(f"{_EXPORT} answered {answer.status_code}")
            async for line in answer.aiter_lines():
                rows += bool(line)
        http_seconds += perf_counter() - start
    _, query = call_filter(dict(parse_qsl(urlsplit(_EXPORT).query)))
    store_seconds = 0.0
    for _ in range(sizes.exports):
        found = 0
        start = perf_counter()
        async for chunk in store.export_records("api_calls", query, chunk_size=500):
            found += len(chunk)
        store_seconds += perf_counter() - start
        if found != rows:
            raise RuntimeError(f"the store exported {found} rows, the page {rows}")
    return rows * sizes.exports / http_seconds, rows * sizes.exports / store_seconds, rows


# --- one backend -----------------------------------------------------------------------------


async def _measure(
    title: str, url: str, data: Dashboard, sizes: UiSizes, tmp: Path, progress: Progress
) -> tuple[list[Result], list[Target], list[str]]:
    """Serve ``url`` with the real command, time every page, then the same store calls."""
    import httpx

    from chatledger.ui.server import open_store

    server = await UiServer.start(url, tmp / f"ui-{title.lower()}.log")
    try:
        idle = server.memory_mb("VmRSS")
        store = await open_store(url)
        try:
            later = await _later_cursor(store)
            async with httpx.AsyncClient(timeout=600.0) as client:
                kept, fresh = await _reuse_delay(client, server.base)
                progress(
                    f"{title}: a static file takes {kept:.1f} ms on a reused connection, "
                    f"{fresh:.1f} ms on a new one"
                )
                pages = _pages(data, later, await _feed_path(client, server.base), sizes.picks)
                measured = []
                for page in pages:
                    found = await _time_page(client, server.base, store, page, sizes)
                    found = replace(found, peak_mb=server.memory_mb("VmHWM"))
                    progress(
                        f"{title}: {page.label}: p50 {found.http.p50:.1f} ms, "
                        f"p95 {found.http.p95:.1f} ms ({len(found.http.samples_ms)} requests, "
                        f"{found.size / 1024:.0f} KiB; server peak RSS {found.peak_mb or 0:.0f} "
                        f"MB); store calls alone p50 {found.store.p50:.1f} ms, "
                        f"p95 {found.store.p95:.1f} ms"
                    )
                    measured.append(found)
                before_export = server.memory_mb("VmHWM")
                export = await _time_export(client, server.base, store, sizes)
            peak = server.memory_mb("VmHWM")
            progress(
                f"{title}: server RSS {idle or 0:.0f} MB idle, {before_export or 0:.0f} MB peak "
                f"before the export, {peak or 0:.0f} MB peak after it"
            )
            await server.stop()
            differ = await check_mirrors(store, pages)
            for line in differ:
                progress(f"{title}: the store column does not mirror its view: {line}")
        finally:
            await store.close()
    finally:
        await server.stop()
    results, targets = [], []
    for found in measured:
        result = Result(
            f"{title}: {found.page.label}",
            "p95 ms",
            Cell(found.http.p95),
            Cell(found.store.p95),
            Cell(found.http.p50),
            Cell(found.store.p50),
        )
        results.append(result)
        targets.append(
            Target(
                f"{title}: {found.page.label}, p95",
                result.chatledger.value,
                PAGE_TARGET_MS,
                at_least=False,
                unit="ms",
            )
        )
    http_rate, store_rate, rows = export
    results.append(
        Result(
            f"{title}: export JSONL, model=gpt-4o, last 30 days ({rows:,} rows) [x]",
            "rows/s",
            Cell(http_rate),
            Cell(store_rate),
        )
    )
    results.append(
        Result(
            f"{title}: server peak RSS (VmHWM)",
            "MB",
            Cell(peak) if peak is not None else Cell(None, "no /proc"),
            Cell(None, "n/a"),
        )
    )
    targets.append(Target(f"{title}: server peak RSS", peak, RSS_TARGET_MB, False, unit="MB"))
    timed = [found for found in measured if found.server_timing is not None]
    growth = [(idle, "start", 0.0)]  # (peak after, what ran, how much it added)
    for found in [*measured, replace(measured[-1], page=Page("the export", ()), peak_mb=peak)]:
        previous = growth[-1][0] or 0.0
        growth.append((found.peak_mb, found.page.label, (found.peak_mb or 0.0) - previous))
    _, grew_in, grew_by = max(growth[1:], key=lambda step: step[2])
    notes = [
        f"{title}: the app sends Server-Timing on {len(timed)} pages"
        if timed
        else f"{title}: the app sends no Server-Timing header: times are the client's",
        f"{title}: server RSS {idle or 0:.0f} MB once it answered; its peak grew most during "
        f"'{grew_in}' (+{grew_by:.0f} MB)",
        f"{title}: a static file (favicon.svg) takes {kept:.1f} ms (median) on the kept-alive "
        f"connection and {fresh:.1f} ms on a new connection each time"
        + (
            ": responses on a reused connection wait for the client's delayed ACK (up to "
            "40 ms), as when the server's sockets have Nagle's algorithm on (no TCP_NODELAY); "
            "every page above pays it"
            if kept - fresh > 20
            else ""
        ),
    ]
    if differ:
        notes.append(
            f"{title}: the store column is not the same calls as the view for: " + "; ".join(differ)
        )
    return results, targets, notes


async def run_ui(tmp: Path, sizes: UiSizes, progress: Progress) -> Section:
    """The dashboard over SQLite and PostgreSQL: every page's p50/p95 and the server's RSS."""
    results: list[Result] = []
    targets: list[Target] = []
    notes: list[str] = []
    loaded: dict[str, dict[str, int]] = {}

    data = _data(sizes)
    path = tmp / "ui.db"
    progress(f"SQLite: {data.session_count:,} sessions to load into {path}")
    loaded["SQLite"] = await _load_sqlite(data, path, progress)
    found = await _measure("SQLite", f"sqlite:///{path}", data, sizes, tmp, progress)
    results += found[0]
    targets += found[1]
    notes += found[2]
    with contextlib.suppress(OSError):
        path.unlink()

    try:
        await SCRATCH.probe()
    except ServerUnavailableError as exc:
        progress(f"skipping PostgreSQL: {exc}")
        notes.append(f"PostgreSQL skipped: {exc}")
    else:
        data = _data(sizes)  # its own "now": the ranges cover the same data as on SQLite
        async with SCRATCH.scratch_database() as url:
            loaded["PostgreSQL"] = await _load_postgres(data, url, progress)
            found = await _measure("PostgreSQL", url, data, sizes, tmp, progress)
            results += found[0]
            targets += found[1]
            notes += found[2]

    counts = next(iter(loaded.values()))
    notes[:0] = [
        f"data: {counts['calls']:,} API calls and {counts['messages']:,} messages in "
        f"{counts['sessions']:,} sessions over the 90 days before the run "
        "(benchmarks/dashboard_data.py): "
        f"{sizes.tenants} tenants (weighted 1/rank^0.8), {sizes.users:,} users, "
        f"{sizes.tenants * sizes.agents_per_tenant} agents on 11 models plus 2 guard models; "
        "each turn a user message, an input-guard call, 0-3 tool rounds (assistant tool "
        "calls, tool results), the reply and an output-guard call; 5% of attempts fail "
        "(rate limits, 5xx, timeouts, cancels) and are retried; 3% of replies regenerated "
        "(branches); rows inserted in time order",
        "loading: SQLite by raw executemany with the secondary indexes dropped and rebuilt; "
        "PostgreSQL by COPY with the indexes dropped and rebuilt and ANALYZE; then the "
        "store's rebuild_rollups (where it has one: the loaders bypass the rollups a store "
        "keeps as it writes); on SQLite the messages' text indexed for the session search "
        "(index_pending_text: the store's writer does it while idle, but not while pages are "
        "timed), on PostgreSQL its pg_trgm index built (create_text_index: on request, as it "
        "slows single saves); then on SQLite the "
        "store opened with no planner statistics, so it runs its own ANALYZE (of the calls "
        "and the rollups), and on PostgreSQL VACUUM (ANALYZE) of the database, as autovacuum "
        "would after bulk inserts",
        "chatledger: the p95 of each page over HTTP, requested with httpx on one keep-alive "
        "connection to `chatledger ui --db URL --port N` started as its own process (uvicorn, "
        f"one worker), loopback; {sizes.warmup} untimed requests first, then "
        f"{sizes.requests} timed (or as many as {sizes.budget_s:.0f} s allow, "
        f"{sizes.min_requests} at least); wall time to the body's last byte. Pages with "
        f"several addresses cycle over them ({sizes.picks} random calls, {sizes.picks} random "
        "sessions)",
        "store API (the 'raw' column; there is no peer dashboard to run): the same store calls "
        "the page's view makes (the same query-string parsing, the same gathers), timed in the "
        "benchmark's process on a store opened as the command opens it, each run right after "
        "one of the page's requests (so both meet the same load); cl/raw is what HTTP, "
        "rendering and Python add. The last two columns are the p50s",
        "[x] export is outside the 150 ms target: rows/s of the whole streamed download "
        f"({sizes.exports} run(s)) beside the store's export_records alone",
        "target: every page's p95 <= 150 ms and the server's peak RSS (VmHWM of its process, "
        "read from /proc at the end) <= 200 MB",
        f"machine: {os.cpu_count()} cores shared with other workers' jobs; p95s carry their noise",
    ]
    return Section(results, targets, notes)
