"""The ClickHouse ledger on chdb (ClickHouse's engine in this process, the same SQL as a server).

The ledger wraps a primary store and answers statistics from ClickHouse: the
conformance classes of what it does itself run against it (over the in-memory
store), and its
statistics and breakdowns are compared with the primary's own on random data,
through both clients: chdb's session, and clickhouse-connect (whose chdb
interface runs the very calls it makes to a server). Then exactly-once
(a batch shipped twice, a retry after ClickHouse failed), the recorder and
the dashboard over a ledger, messages, and what a server URL may show.

chdb serves one data directory per process: every test here shares the
module's directory, each with a database of its own, but for the conformance
class, whose tests share one, emptied before each.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from chatledger import Recorder, scope
from chatledger.entities import (
    ApiCallStatus,
    LLMApiCall,
    QueryFilter,
    TokenDetails,
    UsageBucket,
    UsageStatistics,
)
from chatledger.errors import QueryError, StoreConnectionError
from chatledger.ids import uuid7
from chatledger.stores.base import GROUP_BY_KEYS, Bucket, GroupKey, PersistenceStore
from chatledger.stores.clickhouse import (
    ChdbClient,
    ClickHouseClient,
    ClickHouseLedger,
    ConnectClient,
    LedgerTables,
    open_client,
    schema_statements,
)
from chatledger.stores.memory import InMemoryStore
from chatledger.stores.rollups import exact_values_up_to, scan_only
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import (
    ApiCallConformance,
    ErasureConformance,
    LifecycleConformance,
    RecordConformance,
    TenancyConformance,
    ValueConformance,
)
from chatledger.testing.conformance.expectations import assert_same_statistics
from chatledger.testing.factories import make_api_call, make_message, make_session
from chatledger.ui import create_app
from tcp_proxy import TcpProxy

_BUCKETS: tuple[Bucket | None, ...] = (None, "hour", "day", "week", "month")


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The module's chdb data directory (one per process; each test uses its own database)."""
    return str(tmp_path_factory.mktemp("chdb"))


def _database() -> str:
    return f"t_{uuid7().hex}"


class ChdbOverHttp:
    """ClickHouse's HTTP interface, as much of it as clickhouse-connect uses, served by chdb.

    A real HTTP server on 127.0.0.1 (a thread of its own): the query in the
    URL or the body (an INSERT's rows after it), ``param_…`` server-side
    parameters, ``default_format``, an ``insert_deduplication_token`` setting,
    errors as ClickHouse sends them. Enough to run the ledger's server client
    over a network, and to cut that network (``tests/tcp_proxy.py``).
    """

    def __init__(self, directory: str) -> None:
        from chdb import session as chdb_session

        self._session: Any = chdb_session.Session(directory)
        lock = threading.Lock()
        serve = self._serve

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    serve(self)

            do_POST = do_GET  # noqa: N815  (the name http.server calls)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError):  # the proxy cut it
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        options = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        kind = request.headers.get("Content-Type") or ""
        body = raw.decode()
        if kind.startswith("multipart/form-data"):  # many parameters: a form, the query in it
            form = BytesParser().parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
            for part in form.get_payload():
                payload = part.get_payload(decode=True)
                options[part.get_param("name", header="content-disposition")] = payload.decode()
            body = ""
        sql = options.pop("query", None)
        sql = body if sql is None else sql + ("\n" + body if body else "")
        params = {name[6:]: value for name, value in options.items() if name.startswith("param_")}
        fmt = options.get("default_format", "TabSeparated")
        token = options.get("insert_deduplication_token")
        if token and sql.lstrip().upper().startswith("INSERT"):
            setting = f" SETTINGS insert_deduplication_token = '{token}' FORMAT "
            sql = sql.replace(" FORMAT ", setting, 1)
        try:
            data = self._session.query(sql, fmt, params=params or None).bytes()
            status, headers = 200, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC"}
        except Exception as exc:  # noqa: BLE001  (sent as ClickHouse sends an error)
            code = re.search(r"Code: (\d+)", str(exc))
            data, status = str(exc).encode(), 500
            headers = {"X-ClickHouse-Exception-Code": code[1] if code else "1"}
        request.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(data))}.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()


@pytest.fixture(scope="module")
def http_port(chdb_dir: str) -> Iterator[int]:
    """The port of the module's ClickHouse-over-HTTP server (chdb on the module's directory)."""
    server = ChdbOverHttp(chdb_dir)
    yield server.port
    server.close()


_SECRET = "hunter2-not-shown"  # noqa: S105  (a password that must never be shown)


def _client(kind: str, directory: str, port: int | None = None) -> ClickHouseClient:
    """A client of ``kind`` on a fresh database: chdb, clickhouse-connect's chdb, or HTTP."""
    if kind == "chdb":
        return ChdbClient(directory, _database())
    if kind == "http":
        return open_client(f"clickhouse://ledger:{_SECRET}@127.0.0.1:{port}/{_database()}")
    import clickhouse_connect

    connected = clickhouse_connect.get_client(interface="chdb", path=directory)
    return ConnectClient(connected, database=_database())


async def _ledger(
    directory: str,
    primary: PersistenceStore | None = None,
    kind: str = "chdb",
    port: int | None = None,
    **options: Any,
) -> ClickHouseLedger:
    return await ClickHouseLedger.open(
        primary if primary is not None else InMemoryStore(),
        _client(kind, directory, port),
        **options,
    )


@pytest.fixture(scope="class")
def class_database(chdb_dir: str) -> Iterator[str]:
    """A ClickHouse database a test class shares (each test empties it first); dropped after."""
    name = _database()
    yield name

    async def drop() -> None:
        client = ChdbClient(chdb_dir, name)
        try:
            await client.command(f"DROP DATABASE IF EXISTS {name}")
        finally:
            await client.close()

    asyncio.run(drop())


async def _emptied(ledger: ClickHouseLedger) -> ClickHouseLedger:
    """``ledger`` with its ClickHouse tables emptied; the view stays, to fill the rollup again."""
    tables = LedgerTables(ledger.client.database)
    try:
        for table in (tables.calls, tables.rollup, tables.messages):
            await ledger.client.command(f"TRUNCATE TABLE IF EXISTS {table}")
    except BaseException:
        await ledger.close()
        raise
    return ledger


class TestClickHouseLedger(
    LifecycleConformance,
    ApiCallConformance,
    ValueConformance,
    RecordConformance,
    TenancyConformance,
    ErasureConformance,
):
    """What the ledger does itself, through the ledger over the in-memory store.

    The ledger hands every read and write of sessions, messages, providers
    and agents to its primary unchanged, so it runs the conformance classes
    of what it does itself: its life and argument checks, API calls,
    statistics and rollups, the values a call holds, ingestion and exports,
    tenancy and erasure. The primary runs the others under its own class
    (tests/test_conformance.py). The tests share one ClickHouse database,
    emptied before each: creating a database, its tables and its view for
    every test took a third of this class's time.
    """

    expected_backend_name: ClassVar[str | None] = "clickhouse"
    directory: str
    database: str

    @pytest.fixture(autouse=True)
    def _directory(self, chdb_dir: str, class_database: str) -> None:
        self.directory = chdb_dir
        self.database = class_database

    async def make_store(self) -> PersistenceStore:
        """A ledger on the class's ClickHouse database, emptied, over an in-memory store."""
        client = ChdbClient(self.directory, self.database)
        return await _emptied(await ClickHouseLedger.open(InMemoryStore(), client))


# --- statistics equal the primary's ---------------------------------------------------------


def _random_calls(rng: random.Random, count: int) -> list[LLMApiCall]:
    """Varied calls over three tenants, users, agents and sessions, four models, 40 days."""
    tenants, users, agents, sessions = ([uuid7() for _ in range(3)] for _ in range(4))
    start = datetime(2024, 3, 1, tzinfo=UTC)
    calls = []
    for _ in range(count):
        status = rng.choice(list(ApiCallStatus))
        prompt, completion = rng.randint(0, 4000), rng.randint(0, 1500)
        created = start + timedelta(
            seconds=rng.randint(0, 40 * 86400), microseconds=rng.randint(0, 999_999)
        )
        calls.append(
            make_api_call(
                tenant_id=rng.choice(tenants),
                user_id=rng.choice(users),
                agent_id=rng.choice(agents),
                chat_session_id=rng.choice(sessions),
                model_name=rng.choice(["gpt-4o", "gpt-4o-mini", "claude", "深度求索"]),
                status=status,
                error_code=None if status is ApiCallStatus.SUCCESS else rng.choice(["a", "b"]),
                prompt_tokens=prompt,
                completion_tokens=completion,
                prompt_tokens_details=(
                    TokenDetails(cached_tokens=rng.randint(0, prompt))
                    if rng.random() < 0.5
                    else None
                ),
                completion_tokens_details=(
                    TokenDetails(reasoning_tokens=rng.randint(0, completion))
                    if rng.random() < 0.3
                    else None
                ),
                # more than ten decimals: summed as a money column rounds each price
                total_price=(
                    Decimal(rng.randint(0, 10**9)) / Decimal(10**12) if rng.random() < 0.7 else None
                ),
                latency_ms=rng.randint(0, 20_000) if rng.random() < 0.9 else None,
                time_to_first_token_ms=rng.randint(1, 2000) if rng.random() < 0.5 else None,
                tokens_per_second=rng.uniform(1, 200) if rng.random() < 0.8 else None,
                create_time=created,
            )
        )
    return calls


def _assert_same(got: Sequence[UsageBucket], expected: Sequence[UsageBucket]) -> None:
    """Same groups in the same order; exact sums; close averages; percentiles within the error."""
    assert [(r.keys, r.bucket_start) for r in got] == [(r.keys, r.bucket_start) for r in expected]
    for row, want in zip(got, expected, strict=True):
        assert_same_statistics(row.stats, want.stats)


def _queries(calls: Sequence[LLMApiCall], rng: random.Random) -> list[QueryFilter]:
    """Filters the rollup serves (on the hour) and filters only the calls serve."""
    some = rng.sample(list(calls), 3)
    hour = datetime(2024, 3, 10, 5, tzinfo=UTC)
    return [
        QueryFilter(),
        QueryFilter().tenant(some[0].tenant_id),
        QueryFilter().user(some[0].user_id).with_status(ApiCallStatus.SUCCESS),
        QueryFilter().agent(some[1].agent_id).model(some[1].model_name),
        QueryFilter().time_range(hour, hour + timedelta(days=9, hours=7)),
        QueryFilter().time_range(None, hour).tenant(some[2].tenant_id),
        # the calls themselves: off the hour, a session, an error code, cost, latency
        QueryFilter().time_range(hour + timedelta(minutes=17), hour + timedelta(days=3)),
        QueryFilter().session(some[2].chat_session_id),
        QueryFilter().with_error_code("a"),
        QueryFilter().cost_range(Decimal("0.0001"), Decimal("0.0005")),
        QueryFilter().latency_range(100, 5000).model("claude"),
    ]


_FULL_GRID = (0, 4, 6)  # _queries' positions of no filter, hours, a range off the hour
_GROUPINGS: tuple[tuple[GroupKey, ...], ...] = (
    (),
    *((key,) for key in GROUP_BY_KEYS),
    ("tenant", "status"),
    ("model", "agent", "user"),
)


@pytest.fixture(params=["chdb", "clickhouse-connect", "http"])
def client_kind(request: pytest.FixtureRequest) -> str:
    """Each client: chdb's session, clickhouse-connect's chdb interface, and its HTTP client."""
    return str(request.param)


@pytest.mark.parametrize(
    ("client_kind", "primary_kind"),
    [("chdb", "sqlite"), ("clickhouse-connect", "memory"), ("http", "memory")],
)
async def test_statistics_and_breakdowns_equal_the_primarys(
    chdb_dir: str, http_port: int, client_kind: str, primary_kind: str
) -> None:
    """Every group_by key and bucket, over random filters: the ledger answers as the primary.

    Sums exactly (the cost to the last decimal), averages to float precision,
    percentiles within the histograms' stated error (exactly, below 10,000
    values, as the primary's); read from the rollup, from the calls
    (``scan_only``), and from histograms wherever they serve.
    """
    rng = random.Random(1404)
    calls = _random_calls(rng, 700)
    primary = InMemoryStore() if primary_kind == "memory" else await SqliteStore.in_memory()
    ledger = await _ledger(chdb_dir, primary, client_kind, http_port)
    try:
        await ledger.save_api_calls(calls[:400])
        await ledger.ingest_records(calls=calls[400:])
        reference = ledger.primary
        assert (await ledger.get_statistics(QueryFilter())).total_calls == 700
        for number, query in enumerate(_queries(calls, rng)):
            assert_same_statistics(
                await ledger.get_statistics(query), await reference.get_statistics(query)
            )
            # every grouping by every bucket without a filter, on the hour, off the hour;
            # under the other filters each grouping by one bucket, in turn
            for turn, keys in enumerate(_GROUPINGS):
                grid = number in _FULL_GRID
                for bucket in _BUCKETS if grid else [_BUCKETS[(number + turn) % len(_BUCKETS)]]:
                    expected = await reference.get_usage_breakdown(query, keys, bucket)
                    _assert_same(await ledger.get_usage_breakdown(query, keys, bucket), expected)
            keys = ("model",)
            with scan_only():
                _assert_same(
                    await ledger.get_usage_breakdown(query, keys, "day"),
                    await reference.get_usage_breakdown(query, keys, "day"),
                )
            with exact_values_up_to(0):
                histograms = await ledger.get_usage_breakdown(query, ("tenant",), "week")
            _assert_same(
                histograms, await reference.get_usage_breakdown(query, ("tenant",), "week")
            )
            top = await ledger.get_usage_breakdown(query, ("user",), "month", limit=2)
            _assert_same(
                top, await reference.get_usage_breakdown(query, ("user",), "month", limit=2)
            )
    finally:
        await _drop(ledger)


async def _drop(ledger: ClickHouseLedger) -> None:
    """Drop the ledger's ClickHouse database (the module's directory stays small), then close."""
    try:
        await ledger.client.command(f"DROP DATABASE IF EXISTS {ledger.client.database}")
    finally:
        await ledger.close()


async def _count(ledger: ClickHouseLedger, sql: str) -> int:
    tables = LedgerTables(ledger.client.database)
    (row,) = await ledger.client.query(sql.format(calls=tables.calls, rollup=tables.rollup))
    return int(row[0] or 0)


# --- exactly once -------------------------------------------------------------------------------


class _FailingInserts:
    """A client whose next ``failures`` inserts fail as an unreachable server's would.

    The insert is really made first when ``after`` is set: the acknowledgement
    is what is lost, as when the connection drops after ClickHouse committed.
    """

    def __init__(self, client: ClickHouseClient, failures: int, *, after: bool = False) -> None:
        self._client = client
        self.failures = failures
        self._after = after
        self.location = client.location
        self.database = client.database

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return await self._client.query(sql, parameters)

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        await self._client.command(sql, parameters)

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, token: str
    ) -> None:
        if self.failures and self._after:
            await self._client.insert(table, columns, rows, token=token)
        if self.failures:
            self.failures -= 1
            raise StoreConnectionError("ClickHouse went away (test)")
        await self._client.insert(table, columns, rows, token=token)

    async def close(self) -> None:
        await self._client.close()


@pytest.mark.parametrize("committed", [False, True], ids=["lost", "unacknowledged"])
async def test_a_batch_shipped_again_after_clickhouse_failed_counts_once(
    chdb_dir: str, http_port: int, client_kind: str, committed: bool
) -> None:
    """The primary commits, ClickHouse fails (its insert lost, or made but unacknowledged):
    the error reaches the shipper, and the batch shipped again counts each call once."""
    calls = _random_calls(random.Random(7), 300)
    failing = _FailingInserts(_client(client_kind, chdb_dir, http_port), 1, after=committed)
    ledger = await ClickHouseLedger.open(InMemoryStore(), failing)
    try:
        with pytest.raises(StoreConnectionError):
            await ledger.ingest_records(calls=calls)
        assert await ledger.primary.count_records("api_calls", QueryFilter()) == 300
        for _ in range(2):  # the retry, and a third shipment for good measure
            await ledger.ingest_records(calls=[*calls, calls[0]])
        assert await _count(ledger, "SELECT count() FROM {calls} FINAL") == 300
        assert await _count(ledger, "SELECT sum(calls) FROM {rollup}") == 300
        assert_same_statistics(
            await ledger.get_statistics(QueryFilter()),
            await ledger.primary.get_statistics(QueryFilter()),
        )
    finally:
        await _drop(ledger)


async def test_clickhouse_drops_an_insert_repeated_with_its_token(
    chdb_dir: str, http_port: int, client_kind: str
) -> None:
    """The second guard alone: the same rows under the same token are inserted once, and the
    rollup's view is deduplicated with them (an attempt still in flight when the retry ran)."""
    from chatledger.stores.clickhouse.schema import CALL_COLUMNS, call_row

    ledger = await _ledger(chdb_dir, kind=client_kind, port=http_port)
    try:
        rows = [call_row(call, 1) for call in _random_calls(random.Random(3), 50)]
        tables = LedgerTables(ledger.client.database)
        for token in ("first", "first", "second"):
            await ledger.client.insert(tables.calls, CALL_COLUMNS, rows, token=token)
        assert await _count(ledger, "SELECT count() FROM {calls}") == 100  # "second" went in
        assert await _count(ledger, "SELECT sum(calls) FROM {rollup}") == 100
        assert await _count(ledger, "SELECT count() FROM {calls} FINAL") == 50
        with pytest.raises(ValueError, match="alphanumeric"):
            await ledger.client.insert(tables.calls, CALL_COLUMNS, rows, token="x' OR '1")  # noqa: S106
    finally:
        await _drop(ledger)


async def test_deleted_pruned_and_resaved_calls_leave_the_rollup_as_the_primary(
    chdb_dir: str,
) -> None:
    """Tombstones take deleted and pruned calls out; a call saved again after its deletion
    counts again; twice-deleted counts once; rebuild_rollups changes no answer."""
    calls = _random_calls(random.Random(11), 200)
    ledger = await _ledger(chdb_dir)
    try:
        await ledger.save_api_calls(calls)
        for call in calls[:20]:
            assert await ledger.delete_api_call(call.id)
        assert not await ledger.delete_api_call(calls[0].id)
        await ledger.save_api_call(calls[0])  # its id is free again
        pruned = await ledger.cleanup_old_records(datetime(2024, 3, 8, tzinfo=UTC))
        assert pruned > 0
        expected = await ledger.primary.get_statistics(QueryFilter())
        assert expected.total_calls == 200 - 19 - pruned
        assert_same_statistics(await ledger.get_statistics(QueryFilter()), expected)
        assert await _count(ledger, "SELECT sum(calls) FROM {rollup}") == expected.total_calls
        steps: list[tuple[int, int]] = []
        assert (
            await ledger.rebuild_rollups(lambda *step: steps.append(step)) == expected.total_calls
        )
        assert [done for done, _ in steps] == list(range(1, len(steps) + 1))
        assert steps[-1][0] == steps[-1][1]
        _assert_same(
            await ledger.get_usage_breakdown(QueryFilter(), ["model"], "day"),
            await ledger.primary.get_usage_breakdown(QueryFilter(), ["model"], "day"),
        )
    finally:
        await _drop(ledger)


async def test_rebuild_copies_calls_the_primary_had_before_the_ledger(chdb_dir: str) -> None:
    """A ledger put over a store with history counts it once rebuild_rollups copied it."""
    store = InMemoryStore()
    calls = _random_calls(random.Random(5), 120)
    await store.save_api_calls(calls)
    ledger = await _ledger(chdb_dir, store)
    try:
        assert (await ledger.get_statistics(QueryFilter())).total_calls == 0
        assert await ledger.rebuild_rollups() == 120
        assert_same_statistics(
            await ledger.get_statistics(QueryFilter()), await store.get_statistics(QueryFilter())
        )
    finally:
        await _drop(ledger)


# --- the recorder, the dashboard, messages -------------------------------------------------------


async def test_a_recorder_over_the_ledger_ships_its_calls_into_clickhouse(
    chdb_dir: str, tmp_path: Path
) -> None:
    """Calls recorded through a spooled Recorder reach ClickHouse once, a failed shipment too."""
    primary = await SqliteStore.connect(f"sqlite:///{tmp_path}/ledger.db")
    failing = _FailingInserts(_client("chdb", chdb_dir), 1, after=True)
    ledger = await ClickHouseLedger.open(primary, failing)
    assert ledger.location is not None
    assert ledger.location.startswith("sqlite:")
    recorder = Recorder(ledger, user_id="alice", agent_id="helper")
    try:
        started = datetime.now(UTC) - timedelta(seconds=5)
        with scope(session_id="ticket-9"):
            for number in range(12):
                await recorder.record_call(
                    model="gpt-4o-mini",
                    started=started + timedelta(milliseconds=number),
                    finished=started + timedelta(milliseconds=number + 300),
                    prompt_tokens=100 + number,
                    completion_tokens=20,
                )
        for _ in range(50):  # the first shipment fails after ClickHouse took it; then it retries
            if await recorder.flush() == 0 and not failing.failures:
                break
            await asyncio.sleep(0.1)
        await recorder.close()
        assert failing.failures == 0  # the first shipment did fail
        stats = await ledger.get_statistics(QueryFilter())
        assert stats.total_calls == 12
        assert stats.total_prompt_tokens == sum(100 + n for n in range(12))
        assert await _count(ledger, "SELECT sum(calls) FROM {rollup}") == 12
        assert stats == await primary.get_statistics(QueryFilter())
    finally:
        await recorder.close()
        await _drop(ledger)


class _NoStatistics(InMemoryStore):
    """A primary that must not be asked for statistics: the ledger answers them."""

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Refuse."""
        raise AssertionError("statistics must come from ClickHouse")

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Refuse."""
        raise AssertionError("breakdowns must come from ClickHouse")


async def test_the_dashboard_over_the_ledger_renders_the_overview_from_clickhouse(
    chdb_dir: str,
) -> None:
    """The overview's cards and charts come from ClickHouse: the primary is never asked."""
    rng = random.Random(21)
    now = datetime.now(UTC)
    calls = [
        call.model_copy(
            update={
                "create_time": now - timedelta(hours=rng.randint(1, 160)),
                "update_time": now,
            }
        )
        for call in _random_calls(rng, 150)
    ]
    ledger = await _ledger(chdb_dir, _NoStatistics())
    try:
        await ledger.save_api_calls(calls)
        app = create_app(ledger)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            page = await http.get("/")
        assert page.status_code == 200, page.text[:500]
        text = " ".join(re.sub(r"<[^>]+>", " ", page.text).split())
        successes = sum(1 for call in calls if call.status is ApiCallStatus.SUCCESS)
        assert f"Calls {len(calls):,} {successes:,} succeeded" in text
        assert "深度求索" in text  # the breakdown by model
    finally:
        await _drop(ledger)


async def test_messages_are_mirrored_and_their_deletions_too(chdb_dir: str) -> None:
    """messages=True: saved and ingested messages reach ClickHouse; deleting them, their
    session, old sessions or their user deletes them there too."""
    ledger = await _ledger(chdb_dir, messages=True)
    tables = LedgerTables(ledger.client.database)

    async def mirrored(session_id: uuid.UUID) -> int:
        return await _count(
            ledger,
            f"SELECT count() FROM {tables.messages} FINAL WHERE chat_session_id = "
            f"toUUID('{session_id}')",
        )

    try:
        sessions = [make_session() for _ in range(4)]
        messages = {
            s.id: [make_message(s, f"turn {i} of {s.id}") for i in range(3)] for s in sessions
        }
        await ledger.ingest_records(
            sessions[:2], [*messages[sessions[0].id], *messages[sessions[1].id]]
        )
        await ledger.ingest_records(sessions[:2], messages[sessions[0].id])  # shipped again
        await ledger.create_session(sessions[2])
        await ledger.save_messages(messages[sessions[2].id])
        await ledger.create_session(sessions[3])
        await ledger.save_message(messages[sessions[3].id][0])
        assert [await mirrored(s.id) for s in sessions] == [3, 3, 3, 1]
        (row,) = await ledger.client.query(
            f"SELECT content FROM {tables.messages} FINAL WHERE id = {{id:UUID}}",
            {"id": str(messages[sessions[0].id][1].id)},
        )
        assert f"turn 1 of {sessions[0].id}" in row[0]
        assert await ledger.delete_message(messages[sessions[0].id][0].id)
        assert await ledger.delete_session(sessions[1].id)
        assert await ledger.delete_session_messages(sessions[2].id) == 3
        assert await ledger.erase_user(sessions[3].user_id)
        assert [await mirrored(s.id) for s in sessions] == [2, 0, 0, 0]
        assert await ledger.cleanup_old_sessions(datetime(2100, 1, 1, tzinfo=UTC)) == 2
        assert await mirrored(sessions[0].id) == 0
    finally:
        await _drop(ledger)


# --- clients, URLs and schema -------------------------------------------------------------------


def _refusing_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_server_is_a_connection_error_that_hides_the_password() -> None:
    """Connecting to a port nothing listens on: StoreConnectionError, no password anywhere."""
    url = f"clickhouse://ledger:hunter2-secret@127.0.0.1:{_refusing_port()}/usage"
    with pytest.raises(StoreConnectionError) as caught:
        await ClickHouseLedger.connect(url, InMemoryStore())
    shown = "".join(traceback.format_exception(caught.value))
    assert "hunter2-secret" not in shown
    assert "127.0.0.1" in str(caught.value)
    assert "is ClickHouse running" in str(caught.value)


async def test_an_outage_between_the_two_commits_is_shipped_again_and_counted_once(
    http_port: int,
) -> None:
    """Over HTTP through a proxy that really cuts the connection: the primary commits,
    ClickHouse is unreachable (StoreConnectionError, no password shown), and the batch
    shipped again once the network is back counts each call once."""
    calls = _random_calls(random.Random(99), 120)
    with TcpProxy("127.0.0.1", http_port) as proxy:
        url = f"clickhouse://ledger:{_SECRET}@127.0.0.1:{proxy.port}/{_database()}"
        ledger = await ClickHouseLedger.connect(url, InMemoryStore())
        try:
            await ledger.ingest_records(calls=calls[:20])
            proxy.cut()
            with pytest.raises(StoreConnectionError, match="is ClickHouse running") as caught:
                await ledger.ingest_records(calls=calls)
            assert _SECRET not in "".join(traceback.format_exception(caught.value))
            assert _SECRET not in repr(ledger)
            assert await ledger.primary.count_records("api_calls", QueryFilter()) == 120
            with pytest.raises(StoreConnectionError):
                await ledger.get_statistics(QueryFilter())
            proxy.restore()
            await ledger.ingest_records(calls=calls)  # the shipper's retry
            assert await _count(ledger, "SELECT sum(calls) FROM {rollup}") == 120
            assert_same_statistics(
                await ledger.get_statistics(QueryFilter()),
                await ledger.primary.get_statistics(QueryFilter()),
            )
        finally:
            await _drop(ledger)


def test_urls_name_the_client_and_never_show_a_password(chdb_dir: str) -> None:
    """chdb URLs open chdb; a bad URL is a ValueError without the password."""
    client = open_client(f"chdb://{chdb_dir}?database=from_url")
    assert isinstance(client, ChdbClient)
    assert client.database == "from_url"
    assert "from_url" in repr(client)
    asyncio.run(client.close())
    with pytest.raises(ValueError, match="not a ClickHouse URL") as caught:
        open_client("postgres://user:hunter2@host/db")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="database name"):
        LedgerTables("bad; DROP")


def test_chdb_on_a_second_directory_is_refused_while_one_is_open(
    http_port: int, tmp_path: Path
) -> None:
    """chdb serves one directory per process: another one is a StoreConnectionError saying so."""
    assert http_port  # its server holds the module's directory open
    with pytest.raises(StoreConnectionError, match="one directory per process"):
        ChdbClient(str(tmp_path / "elsewhere"))


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without chdb installed, opening it says which extra installs it."""
    monkeypatch.setitem(sys.modules, "chdb", None)
    with pytest.raises(ImportError, match=r"pip install 'chatledger\[clickhouse\]'"):
        ChdbClient(None)


def test_the_schema_on_a_cluster_is_replicated_and_runs_on_every_node() -> None:
    """cluster=…: every statement ON CLUSTER, Replicated engines with their dedup window."""
    single = schema_statements(LedgerTables("usage"), messages=True)
    clustered = schema_statements(LedgerTables("usage"), messages=True, cluster="ledger")
    assert len(single) == len(clustered) == 5
    assert all(" ON CLUSTER ledger" in statement for statement in clustered)
    assert "ReplicatedReplacingMergeTree(revision, is_deleted)" in clustered[1]
    assert "ReplicatedAggregatingMergeTree()" in clustered[2]
    assert "replicated_deduplication_window" in clustered[1]
    assert "ReplacingMergeTree(revision, is_deleted)" in single[1]
    assert "non_replicated_deduplication_window" in single[1]
    assert "ORDER BY (tenant_id, toDate(create_time), id)" in single[1]
    assert "PARTITION BY toYYYYMM(create_time)" in single[1]
    with pytest.raises(ValueError, match="cluster name"):
        schema_statements(LedgerTables("usage"), cluster="x'; DROP")


async def test_a_ledger_connects_from_urls_and_reports_where_it_is(
    chdb_dir: str, tmp_path: Path
) -> None:
    """connect(url, primary_url): both opened, named in repr and location, closed together."""
    ledger = await ClickHouseLedger.connect(
        f"chdb://{chdb_dir}?database={_database()}", f"sqlite:///{tmp_path}/p.db"
    )
    try:
        assert ledger.backend_name == "clickhouse"
        assert isinstance(ledger.primary, SqliteStore)
        assert ledger.location is not None
        assert f"{tmp_path}" in ledger.location
        assert "chdb:" in repr(ledger)
        await ledger.save_api_call(make_api_call())
        assert (await ledger.get_statistics(QueryFilter())).total_calls == 1
    finally:
        await _drop(ledger)
    assert not ledger.primary.is_connected
    with pytest.raises(StoreConnectionError):
        await ledger.get_statistics(QueryFilter())


async def test_a_statement_clickhouse_refuses_is_a_query_error(
    chdb_dir: str, http_port: int, client_kind: str
) -> None:
    """A driver error never escapes: a bad statement is a QueryError (no password in it)."""
    client = _client(client_kind, chdb_dir, http_port)
    try:
        with pytest.raises(QueryError, match="refused a statement") as caught:
            await client.query("SELEC 1")
        assert _SECRET not in "".join(traceback.format_exception(caught.value))
    finally:
        await client.close()
