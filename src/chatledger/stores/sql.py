"""The SQL store: one implementation of every store method for every SQL backend.

:class:`SqlStore` implements the whole :class:`~chatledger.stores.base.PersistenceStore`
over a :class:`Database`, a thin driver adapter that runs statements and
maps driver errors to :mod:`chatledger.errors`. The statements live in
``queries.py``, the entity ↔ row conversions in ``rows.py``, and what
differs between databases in the :class:`~chatledger.stores.dialect.Dialect`;
a backend module (``sqlite.py``, …) holds only its dialect and its driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from chatledger.entities import (
    Agent,
    AgentConfig,
    CallPage,
    CallSort,
    ChatSession,
    ErasureReport,
    LLMApiCall,
    LLMMessage,
    Provider,
    QueryFilter,
    SessionPage,
    SessionQuery,
    UsageBucket,
    UsageStatistics,
    utc_now,
)
from chatledger.errors import ConstraintError, NotFoundError, PersistenceError, QueryError
from chatledger.ids import NIL_UUID
from chatledger.stores.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    DEFAULT_QUERY_LIMIT,
    Breakdown,
    Bucket,
    GroupKey,
    RecordKind,
    StoreLifecycle,
    check_breakdown_args,
    check_breakdown_limit,
    check_chunk_size,
    check_cutoff,
    check_erased_user,
    check_record_query,
)
from chatledger.stores.dialect import Dialect
from chatledger.stores.paging import (
    CALL_SORTS,
    call_cursor,
    check_page_limit,
    check_sort,
    decode_call_cursor,
    decode_session_cursor,
    session_cursor,
)
from chatledger.stores.queries import (
    GROUP_COLUMNS,
    PERCENTILE_COLUMNS,
    PERCENTILES,
    PERCENTS,
    Erasing,
    ErasureStatements,
    Queries,
    call_page,
    erasure_statements,
    filter_clause,
    group_expressions,
    percentile_statements,
    record_filter,
    session_search,
    usage_statements,
    usage_totals,
    values_read,
    values_statement,
    without_value_may_match,
)
from chatledger.stores.rollups import (
    PERIODS,
    ROLLUP_TOTALS,
    RollupPlan,
    Sealed,
    daily_read,
    exact_values_limit,
    histogram_read,
    hourly_read,
    past_periods,
    plan_rollups,
    rebuild_statements,
    rollup_writes,
    sealable_periods,
    sealed_segments,
    through_day_end,
)
from chatledger.stores.rows import Record, RowCodec, encode
from chatledger.stores.schema import (
    API_CALL,
    MESSAGE,
    MIGRATIONS,
    ROLLUP_TABLES,
    SCHEMA_VERSION_TABLE,
    SESSION,
)
from chatledger.stores.statistics import (
    GroupDistributions,
    GroupId,
    UsageTotals,
    build_statistics,
    sort_breakdown,
    top_groups,
)

__all__ = ["Database", "Read", "SqlStore", "Write"]

logger = logging.getLogger(__name__)

Row = Sequence[Any]

# An ingest asks which of its ids are stored. Where each id is its own placeholder,
# a query names at most _ID_CHUNK of them, padded (with the last id again) to one of
# _ID_SIZES, so the database prepares a few statements instead of one per batch size.
_ID_CHUNK = 512
_ID_SIZES = (16, 64, 256, _ID_CHUNK)
# How many times an ingest writes: fresh, then without what is stored, then once more
# should another writer have stored some of the rest meanwhile.
_INGEST_ATTEMPTS = 3
# A rollup rebuild recounts this many days of calls per transaction.
_REBUILD_DAYS = 7
_EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)  # before any storable time
# Values restricting a breakdown's percentiles to its top groups: at most this many.
_TOP_VALUES = 500


@dataclass(slots=True)
class _SharedValues:
    """The calls' percentile values that several breakdowns of one filter read: read once.

    ``get_usage_breakdowns`` sets one up when one of its breakdowns reads
    every call's values anyway; each breakdown over a range of hours (whose
    percentiles always come from the calls' values) then takes its groups out
    of the same rows: every group key's column, each bucket's start, then
    the values. The 24-hour overview read them seven times (70 ms at 10,000
    calls a day on SQLite).
    """

    query: QueryFilter
    buckets: tuple[Bucket, ...]
    columns: asyncio.Future[list[Sequence[Any]]] | None = None


_KEY_ORDER: tuple[GroupKey, ...] = ("tenant", "user", "agent", "model", "status")
_SHARED: ContextVar[_SharedValues | None] = ContextVar("chatledger_shared_values", default=None)

# One kind of record in an ingest: each first record of an id with its encoded row.
_Batch = dict[uuid.UUID, tuple[Any, tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of a write transaction: single parameters, or ``many`` rows of them.

    ``bulk`` names the table and columns of a plain ``INSERT`` of ``many``
    rows, so a backend with a faster bulk path (PostgreSQL's ``COPY``) may
    load the rows that way instead of running ``sql`` once per row.
    ``joinable`` marks a statement whose transaction may be shared with other
    callers' (a single save, whose row count nobody reads), so a backend may
    commit concurrent ones together. ``arrays`` is the same write as one
    statement taking an array per column (PostgreSQL's ``unnest``), for a
    backend that runs ``many`` rows faster that way; ``keys`` says that
    ``sql`` adds each row to the one with the same first ``keys`` values
    (a rollup upsert), so that rows with equal keys may be summed first.
    """

    sql: str
    params: Sequence[Any] = ()
    many: Sequence[Sequence[Any]] | None = None
    bulk: tuple[str, Sequence[str]] | None = None
    joinable: bool = False
    arrays: str | None = None
    keys: int = 0


@dataclass(frozen=True, slots=True)
class Read:
    """One query of a read; its rows come back as sequences in column order.

    With ``convert``, the read returns what ``convert`` makes of the rows
    instead, called on a batch at a time as they arrive: a backend that
    fetches in a thread converts them there, while they are still in the
    CPU's cache (an export of a million API calls: 1 µs a row less).
    """

    sql: str
    params: Sequence[Any] = ()
    convert: Callable[[Sequence[Sequence[Any]]], list[Any]] | None = None


class Database(Protocol):
    """A driver adapter: runs statements, maps driver errors to chatledger's."""

    @property
    def dialect(self) -> Dialect:
        """What this database's SQL and values look like."""
        ...

    async def read(self, reads: Sequence[Read]) -> list[list[Any]]:
        """Run ``reads`` against one consistent snapshot; return each one's rows, converted."""
        ...

    async def write(self, writes: Sequence[Write]) -> list[int]:
        """Run ``writes`` in one transaction, all or nothing; return each one's row count."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


async def migrate(database: Database) -> int:
    """Bring ``database``'s schema to the newest version; return that version.

    Each migration runs in one transaction with the row that records it, so
    a migration another process applied meanwhile is recognised by that row.
    """
    dialect = database.dialect
    record = Queries(dialect).record_migration
    lock = dialect.migration_lock()
    locked = [] if lock is None else [Write(lock)]
    await database.write([*locked, Write(dialect.version_table(SCHEMA_VERSION_TABLE))])
    current = await schema_version(database)
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        applied = dialect.encode_time(datetime.now(UTC))
        try:
            await database.write(
                [
                    *locked,
                    *(Write(sql) for sql in migration.statements(dialect)),
                    Write(record, (migration.version, migration.description, applied)),
                ]
            )
        except PersistenceError:
            if await schema_version(database) >= migration.version:
                continue  # another connection applied it first
            raise
        logger.info("schema migrated to version %d: %s", migration.version, migration.description)
        current = migration.version
    return current


async def schema_version(database: Database) -> int:
    """The newest migration recorded in ``database`` (0 for a new database)."""
    (rows,) = await database.read([Read(Queries(database.dialect).schema_version)])
    return int(rows[0][0] or 0) if rows else 0


class SqlStore(StoreLifecycle):
    """A :class:`~chatledger.stores.base.PersistenceStore` over any SQL :class:`Database`."""

    backend_name = "sql"

    def __init__(self, database: Database) -> None:
        """Wrap an open ``database`` whose schema is current (see :func:`migrate`)."""
        self._db = database
        self._dialect = database.dialect
        self._q = Queries(database.dialect)
        self._rows = RowCodec(database.dialect)
        self._u = self._rows.uuid
        self._records: dict[RecordKind, Callable[[Sequence[Row]], list[Record]]] = {
            "sessions": self._rows.session_records,
            "messages": self._rows.message_records,
            "api_calls": self._rows.api_call_records,
        }

    # --- plumbing ----------------------------------------------------------------------

    async def _release(self) -> None:
        """Release the database's connections and threads."""
        await self._db.close()

    async def schema_version(self) -> int:
        """The newest migration recorded in the database (0 when it has none)."""
        self._check_open()
        try:
            return await schema_version(self._db)
        except QueryError:
            return 0  # no version table: nothing was ever migrated here

    async def _read(self, sql: str, *params: Any) -> list[Sequence[Any]]:
        self._check_open()
        return (await self._db.read([Read(sql, params)]))[0]

    async def _read_chunk(
        self, sql: str, params: Sequence[Any], convert: Callable[[Sequence[Row]], list[Record]]
    ) -> list[Record]:
        """One chunk of an export, planned for its own values where the dialect needs telling."""
        self._check_open()
        reads = [Read(sql, params, convert)]
        if self._dialect.per_value_plan is not None:
            reads.insert(0, Read(self._dialect.per_value_plan))
        records: list[Record] = (await self._db.read(reads))[-1]
        return records

    async def _write(self, *writes: Write) -> list[int]:
        self._check_open()
        return await self._db.write(writes)

    async def _upsert(self, statements: Sequence[tuple[str, Sequence[int]]], row: Row) -> None:
        """Run a dialect's insert-or-replace statements, each binding its values of ``row``."""
        await self._write(*(Write(sql, [row[i] for i in order]) for sql, order in statements))

    async def _delete(self, *statements: str, key: uuid.UUID) -> bool:
        """Run DELETE statements keyed by one id; True when the last removed a row."""
        value = self._u(key)
        counts = await self._write(*(Write(sql, (value,)) for sql in statements))
        return counts[-1] > 0

    # --- messages ----------------------------------------------------------------------

    async def save_message(self, message: LLMMessage) -> None:
        """Store one message and move its session's update_time forward."""
        row = encode(self._rows.message, message)
        session, time = row[2], row[9]
        touch = (time, session, time)
        if self._q.touch_and_insert_message is not None:
            fused = (*touch, *row)
            await self._write(Write(self._q.touch_and_insert_message, fused, joinable=True))
            return
        # The session row is locked before the insert's foreign-key check reads it:
        # the other order deadlocks concurrent writers to one session on InnoDB.
        await self._write(
            Write(self._q.touch_session, touch, joinable=True),
            Write(self._q.insert_message, row, joinable=True),
        )

    async def save_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Store all of ``messages`` in one transaction, or none of them."""
        if not messages:
            return
        rows = [encode(self._rows.message, message) for message in messages]
        await self._write(*self._message_writes(list(zip(messages, rows, strict=True))))

    def _message_writes(self, batch: Sequence[tuple[LLMMessage, Row]]) -> list[Write]:
        """Touch the sessions, then insert the rows: a batch of messages and their rows."""
        newest: dict[Any, tuple[datetime, Any]] = {}  # session -> its latest update time
        for message, row in batch:
            seen = newest.get(row[2])
            if seen is None or message.update_time > seen[0]:
                newest[row[2]] = (message.update_time, row[9])
        # in one order, so two batches touching the same sessions cannot deadlock
        touches = [(newest[session][1], session, newest[session][1]) for session in sorted(newest)]
        return [  # sessions first, as in save_message
            Write(self._q.touch_session, many=touches),
            Write(
                self._q.insert_message, many=[row for _, row in batch], bulk=self._q.bulk_messages
            ),
        ]

    async def get_message(self, message_id: uuid.UUID) -> LLMMessage | None:
        """The message with ``message_id``, or None."""
        rows = await self._read(self._q.get_message, self._u(message_id))
        return self._rows.messages(rows)[0] if rows else None

    async def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        """Every message of a session, oldest first."""
        return self._rows.messages(await self._read(self._q.session_messages, self._u(session_id)))

    async def get_session_messages_paginated(
        self, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[LLMMessage]:
        """A page of a session's messages, oldest first."""
        if offset < 0 or limit <= 0:
            return []
        rows = await self._read(self._q.session_messages_page, self._u(session_id), limit, offset)
        return self._rows.messages(rows)

    async def get_recent_messages(self, session_id: uuid.UUID, limit: int) -> list[LLMMessage]:
        """The newest ``limit`` messages of a session, returned oldest first."""
        if limit <= 0:
            return []
        rows = await self._read(self._q.recent_messages, self._u(session_id), limit)
        rows.reverse()
        return self._rows.messages(rows)

    async def delete_message(self, message_id: uuid.UUID) -> bool:
        """Delete one message; True when it existed."""
        return await self._delete(self._q.delete_message, key=message_id)

    async def delete_session_messages(self, session_id: uuid.UUID) -> int:
        """Delete a session's messages; return how many there were."""
        (count,) = await self._write(Write(self._q.delete_session_messages, (self._u(session_id),)))
        return count

    async def count_session_messages(self, session_id: uuid.UUID) -> int:
        """How many messages a session has."""
        rows = await self._read(self._q.count_messages, self._u(session_id))
        return int(rows[0][0])

    # --- API calls ---------------------------------------------------------------------

    async def save_api_call(self, call: LLMApiCall) -> None:
        """Store one API-call record, and count it into the rollups."""
        row = encode(self._rows.api_call, call)
        await self._write(
            Write(self._q.insert_call, row, joinable=True),
            *self._rollup_writes([call], joinable=True),
        )

    async def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store all of ``calls`` in one transaction, or none of them."""
        if calls:
            rows = [encode(self._rows.api_call, call) for call in calls]
            await self._write(
                Write(self._q.insert_call, many=rows, bulk=self._q.bulk_calls),
                *self._rollup_writes(calls),
            )

    def _rollup_writes(self, calls: Sequence[LLMApiCall], *, joinable: bool = False) -> list[Write]:
        """What storing ``calls`` adds to the rollups, in the same transaction.

        A call of an earlier week or month than this one's unseals it: the
        period's rows would not hold it.
        """
        statements = self._q.rollups
        writes = [
            Write(
                sql,
                many=rows,
                joinable=joinable,
                arrays=statements.arrays.get(sql),
                keys=statements.keys[sql],
            )
            for sql, rows in rollup_writes(self._dialect, statements, calls)
        ]
        periods = past_periods(calls, utc_now())
        if periods:
            rows = [(name, self._rows.time(start)) for name, start in periods]
            writes.append(Write(self._q.unseal_period, many=rows, joinable=joinable))
        return writes

    async def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The API call with ``call_id``, or None."""
        rows = await self._read(self._q.get_call, self._u(call_id))
        return self._rows.api_calls(rows)[0] if rows else None

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Calls matching ``query``, newest first (limit 100 unless it says otherwise)."""
        limit = DEFAULT_QUERY_LIMIT if query.limit is None else query.limit
        if limit <= 0:
            return []
        where, params = filter_clause(query, self._dialect)
        rows = await self._read(self._q.api_calls_page(where), *params, limit, query.offset or 0)
        return self._rows.api_calls(rows)

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over every call matching ``query``; offset and limit do not apply."""
        (overall,) = await self._breakdown(query, (), None, None)
        return overall.stats

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Statistics per group of ``group_by`` keys and per UTC time bucket."""
        keys = check_breakdown_args(group_by, bucket)
        check_breakdown_limit(limit)
        return await self._breakdown(query, keys, bucket, limit)

    async def get_usage_breakdowns(
        self, query: QueryFilter, breakdowns: Sequence[Breakdown]
    ) -> list[list[UsageBucket]]:
        """Several breakdowns of one filter, in order; the calls' values read once for all."""
        asked = [
            (check_breakdown_args(keys, bucket), bucket, limit)
            for keys, bucket, limit in breakdowns
        ]
        for _, _, limit in asked:
            check_breakdown_limit(limit)
        buckets = tuple(dict.fromkeys(bucket for _, bucket, _ in asked if bucket is not None))
        # Shared when one breakdown reads every call's values anyway (no top groups).
        shared = any(limit is None for _, _, limit in asked)
        values = _SharedValues(query, buckets) if shared else None
        token = _SHARED.set(values)
        try:
            return list(
                await asyncio.gather(
                    *(self._breakdown(query, keys, bucket, limit) for keys, bucket, limit in asked)
                )
            )
        finally:
            _SHARED.reset(token)
            if values is not None and values.columns is not None:
                # Its readers are gone (a failure or a cancellation among them): no read is
                # left running, and its error, if any, is taken as seen.
                if not values.columns.done():
                    values.columns.cancel()
                elif not values.columns.cancelled():
                    values.columns.exception()

    async def _shared_values(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        bucket: Bucket | None,
        kept: set[tuple[Any, ...]] | None,
        groups: GroupDistributions,
    ) -> bool:
        """Fill ``groups`` from the values shared by this filter's breakdowns; False if none are."""
        shared = _SHARED.get()
        if shared is None or shared.query != query or not self._dialect.percentiles_from_values:
            return False
        if bucket is not None and bucket not in shared.buckets:
            return False
        if shared.columns is None:
            where, params = filter_clause(query, self._dialect)
            selected = [
                *(GROUP_COLUMNS[key] for key in _KEY_ORDER),
                *(self._dialect.bucket_start("create_time", b) for b in shared.buckets),
            ]
            statement = values_statement(self._dialect, where, selected)
            width = len(selected) + len(PERCENTILE_COLUMNS)
            shared.columns = asyncio.ensure_future(self._read_columns(statement, params, width))
        columns = await asyncio.shield(shared.columns)
        positions = [_KEY_ORDER.index(key) for key in keys]
        if bucket is not None:
            positions.append(len(_KEY_ORDER) + shared.buckets.index(bucket))
        _, wanted = self._top_condition(keys, kept)
        groups.add_columns(
            [columns[i] for i in positions],
            columns[-len(PERCENTILE_COLUMNS) :],
            set(wanted) if wanted else None,
        )
        return True

    async def _read_columns(
        self, sql: str, params: Sequence[Any], width: int
    ) -> list[Sequence[Any]]:
        """The ``width`` columns of the rows ``sql`` reads (empty ones when there is none)."""
        rows = await self._read(sql, *params)
        return list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]

    async def _breakdown(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        bucket: Bucket | None,
        limit: int | None,
    ) -> list[UsageBucket]:
        """A breakdown from the rollups when they can answer it, else from the calls."""
        self._check_open()
        plan = plan_rollups(query, keys, bucket)
        if plan is not None:
            return await self._rollup_breakdown(query, keys, bucket, limit, plan)
        found = await self._scan_breakdown(query, keys, bucket)
        kept = top_groups(
            {(row.bucket_start, tuple(row.keys.values())): row.stats.total_calls for row in found},
            limit,
        )
        return found if kept is None else [r for r in found if tuple(r.keys.values()) in kept]

    async def _scan_breakdown(
        self, query: QueryFilter, keys: Sequence[GroupKey], bucket: Bucket | None
    ) -> list[UsageBucket]:
        """Totals and percentiles per group: by the database, or from the values it reads out."""
        where, params = filter_clause(query, self._dialect)
        statements = usage_statements(self._dialect, where, keys, bucket)
        width = len(keys) + (bucket is not None)
        reads = [Read(sql, params) for sql in statements]
        values: GroupDistributions | None = None
        if values_read(self._dialect, where, keys, bucket):
            values = GroupDistributions(width)
            reads[1] = Read(statements[1], params, values.add_values)
        results = await self._db.read(reads)
        rows = results[0]
        if values is not None:  # the values came out: their percentiles are computed here
            by_group = values.figures()
            missing: tuple[Any, ...] = (None,) * len(PERCENTILES)
            rows = [(*row, *by_group.get(tuple(row[:width]), missing)) for row in rows]
        else:  # the percentiles came apart, if at all: join them on the groups
            missing = (None,) * len(PERCENTS)  # a group without such values
            for percentiles in results[1:]:
                by_column = {tuple(row[:width]): row[width:] for row in percentiles}
                rows = [(*row, *by_column.get(tuple(row[:width]), missing)) for row in rows]
        found = [
            UsageBucket(
                keys={key: self._rows.group_value(key, row[i]) for i, key in enumerate(keys)},
                bucket_start=None if bucket is None else self._dialect.decode_time(row[width - 1]),
                stats=self._rows.statistics(row[width:]),
            )
            for row in rows
        ]
        return sort_breakdown(found, keys)

    def _group_id(
        self, keys: Sequence[GroupKey], bucket: Bucket | None, values: Sequence[Any]
    ) -> GroupId:
        """A group's identity from the group values a row holds (keys, then bucket start)."""
        start = None if bucket is None else self._dialect.decode_time(values[len(keys)])
        return start, tuple(self._rows.group_value(key, values[i]) for i, key in enumerate(keys))

    async def _rollup_breakdown(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        bucket: Bucket | None,
        limit: int | None,
        plan: RollupPlan,
    ) -> list[UsageBucket]:
        """A breakdown from the rollups: sums from the daily and hourly tables, then percentiles."""
        # A range widened through today (``_read_rollups``) holds no more sealed periods:
        # a period is sealed two days after its end.
        sealed = await self._sealed_periods(plan, bucket)
        values: list[str] = []
        if limit is not None and len(keys) == 1 and bucket is None and limit <= _TOP_VALUES:
            values = await self._top_texts(query, keys, plan, limit, sealed)
            if not values:
                return []

        def reads_of(plan: RollupPlan) -> list[Read]:
            return self._sum_reads(query, keys, bucket, plan, sealed, values, counts_only=False)

        plan, results = await self._read_rollups(plan, reads_of)
        width = len(keys) + (bucket is not None)
        # Rows are grouped by their group values' text first (ids come as text from one
        # table, as UUIDs from another), and only the groups kept are decoded.
        raw: dict[tuple[str | None, tuple[str, ...]], list[Sequence[Any]]] = {}
        tail_calls = [
            sum(int(row[width] or 0) for row in rows) for rows in results[: len(plan.hours)]
        ]
        for rows in results:
            for row in rows:
                texts = tuple(str(value) for value in row[:width])
                start = texts[-1] if bucket is not None else None
                raw.setdefault((start, texts[: len(keys)]), []).append(row)
        calls = {group: sum(int(row[width] or 0) for row in rows) for group, rows in raw.items()}
        kept_texts = top_groups({group: count for group, count in calls.items() if count}, limit)
        totals: dict[GroupId, UsageTotals] = {}
        for group, rows in raw.items():
            if not calls[group] or (kept_texts is not None and group[1] not in kept_texts):
                continue
            sums = self._rows.totals(rows[0][width:])
            for row in rows[1:]:
                sums.add(self._rows.totals(row[width:]))
            totals[self._group_id(keys, bucket, rows[0][:width])] = sums
        if not keys and bucket is None and not totals:
            totals[None, ()] = UsageTotals()
        kept = None if kept_texts is None else {values for _, values in totals}
        figures = await self._rollup_percentiles(
            query, keys, bucket, plan, totals, kept, (values, tail_calls), sealed
        )
        found = [
            UsageBucket(
                keys=dict(zip(keys, values, strict=True)),
                bucket_start=start,
                stats=build_statistics(sums, figures.get((start, values))),
            )
            for (start, values), sums in totals.items()
        ]
        return sort_breakdown(found, keys)

    async def _rollup_percentiles(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        bucket: Bucket | None,
        plan: RollupPlan,
        totals: dict[GroupId, UsageTotals],
        kept: set[tuple[Any, ...]] | None,
        tails: tuple[Sequence[str], Sequence[int]],
        sealed: Sealed,
    ) -> dict[Any, list[float | None]]:
        """Each group's percentile figures: from its calls (exact), or from the histograms.

        The histograms serve when they hold the plan's dimension and more
        than ``exact_values_limit()`` values are concerned; the hours around
        the whole days are then counted in from their calls, unless they hold
        their whole day (``tails``: the values the sums were read for, and
        how many calls each range of ``plan.hours`` holds of them).
        """
        dialect = self._dialect
        wanted = sum(sums.latency_count + sums.ttft_count for sums in totals.values())
        if not wanted:
            return {}
        width = len(keys) + (bucket is not None)
        groups = GroupDistributions(width, key=lambda values: self._group_id(keys, bucket, values))
        extra, extra_params = self._top_condition(keys, kept)
        if plan.histogram and plan.days is not None and wanted > exact_values_limit():
            plan = await self._whole_day_tails(query, keys, plan, *tails)
            top = self._top_values(keys, kept)
            reads = [
                Read(*histogram_read(dialect, query, keys, bucket, days, top), groups.add_counts)
                for days in sealed_segments(plan, sealed, bucket)
            ]
            for start, end in (*plan.hours, *plan.edges):
                around = query.model_copy(update={"start_time": start, "end_time": end})
                where, bounds = filter_clause(around, dialect, *extra)
                statement = values_statement(
                    dialect, where, group_expressions(dialect, keys, bucket)
                )
                reads.append(Read(statement, [*bounds, *extra_params], groups.add_values))
            await self._db.read(reads)
            return groups.figures()
        # Ranges of hours only: every breakdown reads its calls' values; read them once.
        if plan.days is None and await self._shared_values(query, keys, bucket, kept, groups):
            return groups.figures()
        where, params = filter_clause(query, dialect, *extra)
        params = [*params, *extra_params]
        statements = percentile_statements(dialect, where, keys, bucket)
        reads = [
            Read(sql, params, groups.add_values if kind == "values" else None)
            for kind, sql in statements
        ]
        results = await self._db.read(reads)
        figures = groups.figures()
        per_metric = len(PERCENTS)
        for (kind, _), rows in zip(statements, results, strict=True):
            if kind == "values":
                continue
            for row in rows:
                group = self._group_id(keys, bucket, row[:width])
                if kind == "figures":
                    figures[group] = list(row[width:])
                else:  # one column's figures: the other's stay None until its own rows
                    shown = figures.setdefault(group, [None] * len(PERCENTILES))
                    offset = int(kind.removeprefix("column")) * per_metric
                    shown[offset : offset + per_metric] = list(row[width:])
        return figures

    async def _top_texts(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        plan: RollupPlan,
        limit: int,
        sealed: Sealed,
    ) -> list[str]:
        """The ``limit`` groups of one key with the most calls, as the rollups hold their values.

        Ranked from the calls counted per group alone, so that the sums are
        then read for these groups only: a breakdown by user over months
        would otherwise read every user's sums for every day.
        """

        def reads_of(plan: RollupPlan) -> list[Read]:
            return self._sum_reads(query, keys, None, plan, sealed, (), counts_only=True)

        calls: dict[tuple[None, tuple[str, ...]], int] = {}
        for rows in (await self._read_rollups(plan, reads_of))[1]:
            for value, counted in rows:
                group = (None, (str(value),))
                calls[group] = calls.get(group, 0) + int(counted or 0)
        kept = top_groups({group: counted for group, counted in calls.items() if counted}, limit)
        return sorted(text for (text,) in kept or ())

    def _sum_reads(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        bucket: Bucket | None,
        plan: RollupPlan,
        sealed: Sealed,
        values: Sequence[str],
        *,
        counts_only: bool,
    ) -> list[Read]:
        """The reads of ``plan``'s sums per group: its hours, its days, the edges of its hours.

        ``counts_only``: each group's calls alone (to rank groups), else every sum.
        """
        dialect = self._dialect
        figures = ("SUM(calls)",) if counts_only else ROLLUP_TOTALS
        reads = [
            Read(*hourly_read(dialect, query, keys, bucket, hours, values=values, figures=figures))
            for hours in plan.hours
        ]
        reads += [
            Read(*daily_read(dialect, query, keys, bucket, days, values=values, figures=figures))
            for days in sealed_segments(plan, sealed, bucket)
            if days.days is not None
        ]
        edge_figures = ("COUNT(*)",) if counts_only else usage_totals(dialect)
        return reads + self._edge_reads(query, keys, bucket, plan, values, edge_figures)

    async def _read_rollups(
        self, plan: RollupPlan, reads_of: Callable[[RollupPlan], list[Read]]
    ) -> tuple[RollupPlan, list[list[Any]]]:
        """The results of ``reads_of`` a plan: ``plan`` through its last day's end if exact.

        The widened plan (``through_day_end``) is read together with a look
        for a call in the rest of its last day, in one snapshot; only if
        there is one are ``plan``'s own reads made.
        """
        widened = through_day_end(plan)
        if widened is not None:
            wide, (start, end) = widened
            later = Read(self._q.call_between, [self._rows.time(start), self._rows.time(end)])
            found, *results = await self._db.read([later, *reads_of(wide)])
            if not found:
                return wide, results
        return plan, await self._db.read(reads_of(plan))

    async def _whole_day_tails(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        plan: RollupPlan,
        values: Sequence[str],
        tail_calls: Sequence[int],
    ) -> RollupPlan:
        """``plan`` with its days widened over each range of hours that holds its whole day.

        A range of hours beside the whole days (today's, up to the end of the
        current hour) holds every call of its day when it counts as many as
        the day's rollup (of the same ``values`` of the one key, if given):
        that day's histogram then holds exactly its calls, and none of them
        need be read. A range without calls is dropped.
        """
        assert plan.days is not None
        tails = [
            (hours, calls) for hours, calls in zip(plan.hours, tail_calls, strict=True) if calls
        ]
        days = [(start.replace(hour=0), calls) for (start, _), calls in tails if start is not None]
        whole: set[datetime] = set()
        if days:
            reads = [
                Read(
                    *daily_read(
                        self._dialect,
                        query,
                        keys if values else (),
                        None,
                        replace(plan, days=(day, day + timedelta(days=1))),
                        values=values,
                        figures=("SUM(calls)",),
                    )
                )
                for day, _ in days
            ]
            for (day, calls), rows in zip(days, await self._db.read(reads), strict=True):
                if sum(int(row[-1] or 0) for row in rows) == calls:
                    whole.add(day)
        first, last = plan.days
        for day in whole:
            if first is not None and day < first:
                first = day
            if last is not None and day >= last:
                last = day + timedelta(days=1)
        hours = tuple(
            hours for hours, _ in tails if hours[0] is None or hours[0].replace(hour=0) not in whole
        )
        return replace(plan, days=(first, last), hours=hours)

    def _edge_reads(
        self,
        query: QueryFilter,
        keys: Sequence[GroupKey],
        bucket: Bucket | None,
        plan: RollupPlan,
        values: Sequence[str],
        figures: Sequence[str],
    ) -> list[Read]:
        """``figures`` per group from the calls in the parts of hours at the plan's bounds.

        Rows as the rollups' reads give them (group values, then ``figures``),
        of the one grouped key's ``values`` only when given (as text).
        """
        extra: list[str] = []
        wanted: list[Any] = []
        if values:
            (key,) = keys
            texts = [uuid.UUID(v) if key in ("agent", "user", "tenant") else v for v in values]
            wanted = [self._u(v) if isinstance(v, uuid.UUID) else v for v in texts]
            extra = [f"{GROUP_COLUMNS[key]} IN ({', '.join('?' * len(wanted))})"]
        groups = group_expressions(self._dialect, keys, bucket)
        selected = "".join(f"{expr} AS g{i}, " for i, expr in enumerate(groups))
        group_by = f" GROUP BY {', '.join(groups)}" if groups else ""
        reads = []
        for start, end in plan.edges:
            around = query.model_copy(update={"start_time": start, "end_time": end})
            where, params = filter_clause(around, self._dialect, *extra)
            sql = f"SELECT {selected}{', '.join(figures)} FROM {API_CALL.name}{where}{group_by}"
            reads.append(Read(self._dialect.sql(sql), [*params, *wanted]))
        return reads

    async def _sealed_periods(self, plan: RollupPlan, bucket: Bucket | None) -> Sealed:
        """The sealed periods, when ``plan``'s days may hold a week whole (else none are read)."""
        if plan.days is None or bucket is not None:
            return frozenset()
        first, last = plan.days
        if first is not None and last is not None and last - first < timedelta(days=7):
            return frozenset()
        return await self._read_sealed()

    async def _read_sealed(self) -> Sealed:
        decode = self._dialect.decode_time
        rows = await self._read(self._q.sealed_periods)
        return frozenset((name, decode(start).astimezone(UTC)) for name, start in rows)

    async def seal_periods(self) -> int:
        """Sum each complete month's and week's rollups into rows of their own; how many.

        A breakdown over a long range then reads a row per value and month or
        week instead of one per day. Periods are sealed two days after their
        end; a write into a sealed one unseals it. Each is one transaction.
        """
        self._check_open()
        decode = self._dialect.decode_time
        days = [decode(day).astimezone(UTC) for (day,) in await self._read(self._q.rollup_days)]
        periods = sealable_periods(days, await self._read_sealed(), utc_now())
        lock = self._dialect.rollup_lock([table.name for table in ROLLUP_TABLES])
        by_name = {period.name: period for period in PERIODS}
        for name, start in periods:
            begin, end = self._rows.time(start), self._rows.time(by_name[name].after(start))
            await self._write(
                *([] if lock is None else [Write(lock)]),
                *(
                    Write(sql, (begin,) if binding == 1 else (begin, begin, end))
                    for sql, binding in self._q.seal_period[name]
                ),
            )
        if periods:
            logger.info("sealed %d months and weeks of usage rollups", len(periods))
        return len(periods)

    @staticmethod
    def _top_values(keys: Sequence[GroupKey], kept: set[tuple[Any, ...]] | None) -> list[str]:
        """The kept groups' values as a daily rollup holds them, when one key names the groups."""
        if kept is None or len(keys) != 1 or not kept or len(kept) > _TOP_VALUES:
            return []
        return sorted(str(value) for (value,) in kept)

    def _top_condition(
        self, keys: Sequence[GroupKey], kept: set[tuple[Any, ...]] | None
    ) -> tuple[list[str], list[Any]]:
        """A condition keeping the calls of a breakdown's top groups, when one key names them."""
        if kept is None or len(keys) != 1 or not kept or len(kept) > _TOP_VALUES:
            return [], []
        (key,) = keys
        column = GROUP_COLUMNS[key]
        values = [value for (value,) in kept]
        if key in ("agent", "user", "tenant"):
            values = [self._u(value) for value in values]
        elif key == "status":
            values = [value.value for value in values]
        return [f"{column} IN ({', '.join('?' * len(values))})"], values

    async def page_api_calls(
        self,
        query: QueryFilter,
        *,
        sort: CallSort | str = CallSort.NEWEST,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> CallPage:
        """One page of the calls matching ``query`` in ``sort`` order, after ``cursor``.

        At most two steps, each one index walk: the calls with the sort's
        value, then, when the page is not full yet, those without it.
        """
        order = check_sort(sort)
        after = None if cursor is None else decode_call_cursor(order, cursor)
        check_page_limit(limit)
        spec = CALL_SORTS[order]
        wanted = limit + 1  # one more than a page tells whether another page follows
        rows: list[Sequence[Any]] = []
        if spec.column is not None and (after is None or after.value is not None):
            sql, params = call_page(
                self._dialect, query, spec, valued=True, after=after, limit=wanted
            )
            rows = await self._read(sql, *params)
        if len(rows) < wanted and without_value_may_match(query, spec):
            inside = after if after is not None and after.value is None else None
            sql, params = call_page(
                self._dialect, query, spec, valued=False, after=inside, limit=wanted - len(rows)
            )
            rows += await self._read(sql, *params)
        calls = self._rows.api_calls(rows[:limit])
        following = call_cursor(order, calls[-1]) if len(rows) > limit else None
        return CallPage(calls=calls, next_cursor=following)

    async def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one API-call record, subtracted from the rollups; True when it existed."""
        return await self._delete(*self._q.subtract_call, self._q.delete_call, key=call_id)

    async def cleanup_old_records(self, before: datetime) -> int:
        """Delete API-call records with ``create_time < before``; return how many.

        The rollups lose what the calls counted, in the same transaction, and
        their rows left with no call are deleted.
        """
        cutoff = self._rows.time(check_cutoff(before))
        counts = await self._write(
            *(Write(sql, (cutoff,)) for sql in self._q.subtract_before),
            Write(self._q.cleanup_calls, (cutoff,)),
            *(Write(sql, (cutoff,)) for sql in self._q.prune_rollups),
        )
        return counts[len(self._q.subtract_before)]

    async def calls_for_messages(self, message_ids: Sequence[uuid.UUID]) -> list[LLMApiCall]:
        """The calls that asked or answered any of ``message_ids``, oldest first (then by id)."""
        ids = [self._u(message_id) for message_id in dict.fromkeys(message_ids)]
        if not ids:
            return []
        self._check_open()
        if self._dialect.id_arrays:
            reads = [Read(self._q.calls_for_messages(0), (ids, ids))]
        else:
            reads = [
                Read(self._q.calls_for_messages(len(chunk)), (*chunk, *chunk))
                for chunk in self._padded_chunks(ids)
            ]
        found = {
            call.id: call
            for rows in await self._db.read(reads)
            for call in self._rows.api_calls(rows)
        }
        return sorted(found.values(), key=lambda call: (call.create_time, call.id))

    async def count_messages_by_session(
        self, session_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """How many messages each of ``session_ids`` has (0 for a session without any)."""
        counts = dict.fromkeys(session_ids, 0)
        ids = [self._u(session_id) for session_id in counts]
        if not ids:
            return counts
        self._check_open()
        if self._dialect.id_arrays:
            reads = [Read(self._q.messages_per_session(0), (ids,))]
        else:
            reads = [
                Read(self._q.messages_per_session(len(chunk)), chunk)
                for chunk in self._padded_chunks(ids)
            ]
        as_text = self._dialect.record_uuid
        for rows in await self._db.read(reads):
            for session, count in rows:
                counts[uuid.UUID(as_text(session))] = int(count)
        return counts

    @staticmethod
    def _padded_chunks(ids: Sequence[Any]) -> list[list[Any]]:
        """``ids`` in chunks of one of ``_ID_SIZES``, the last padded with its last id."""
        chunks = []
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = list(ids[start : start + _ID_CHUNK])
            size = next(size for size in _ID_SIZES if size >= len(chunk))
            chunk.extend([chunk[-1]] * (size - len(chunk)))
            chunks.append(chunk)
        return chunks

    async def rebuild_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Recount the usage rollups from the API calls; return how many calls they count.

        A week of calls per transaction, oldest first, weeks without calls
        passed over; ``progress(done, total)`` after each (``total`` an upper
        bound until the last). Writes may go on meanwhile: each week's recount
        and the writes into it happen one after the other.
        """
        self._check_open()
        (rows,) = await self._db.read(
            [Read(f"SELECT MIN(create_time), MAX(create_time), COUNT(*) FROM {API_CALL.name}")]
        )
        _, last, count = rows[0]
        newest = self._dialect.decode_time(last).astimezone(UTC) if count else _EARLIEST
        lock = self._dialect.rollup_lock([table.name for table in ROLLUP_TABLES])
        step = timedelta(days=_REBUILD_DAYS)
        start, done = _EARLIEST, 0
        while True:
            # The week from the next call on: weeks without calls (a call in year 1000
            # and one today) are passed over within one step, not one by one.
            (found,) = (await self._read(self._q.next_call_time, self._rows.time(start)))[0]
            day = None if found is None else self._dialect.decode_time(found).astimezone(UTC)
            end = None
            if day is not None and newest - day >= step:
                end = day.replace(hour=0, minute=0, second=0, microsecond=0) + step
            params = [self._rows.time(start)] + ([] if end is None else [self._rows.time(end)])
            statements = rebuild_statements(self._dialect, bounded=end is not None)
            await self._write(
                *([] if lock is None else [Write(lock)]),
                Write(self._q.unseal_all),  # a period sealed meanwhile may hold this week
                *(Write(sql, params) for sql in statements),
            )
            done += 1
            left = 0 if end is None else (newest - end) // step + 1
            if progress is not None:
                progress(done, done + left)
            if end is None:
                break
            start = end
        await self.seal_periods()
        return int(count or 0)

    # --- sessions ----------------------------------------------------------------------

    async def create_session(self, session: ChatSession) -> None:
        """Store a new session."""
        await self._write(Write(self._q.insert_session, encode(self._rows.session, session)))

    async def get_session(self, session_id: uuid.UUID) -> ChatSession | None:
        """The session with ``session_id``, or None."""
        rows = await self._read(self._q.get_session, self._u(session_id))
        return self._rows.sessions(rows)[0] if rows else None

    async def get_user_sessions(self, user_id: uuid.UUID) -> list[ChatSession]:
        """A user's sessions, most recently updated first."""
        return self._rows.sessions(await self._read(self._q.user_sessions, self._u(user_id)))

    async def update_session(self, session: ChatSession) -> None:
        """Replace a stored session; NotFoundError when it does not exist."""
        row = encode(self._rows.session, session)
        (count,) = await self._write(Write(self._q.update_session, (*row[1:], row[0])))
        if count == 0:
            raise NotFoundError(f"session {session.id} does not exist")

    async def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete a session and its messages (API calls stay); True when it existed."""
        return await self._delete(
            self._q.delete_session_messages, self._q.delete_session, key=session_id
        )

    async def list_sessions(self, query: QueryFilter) -> list[ChatSession]:
        """Sessions matching ``query``, most recently active first (limit 100 by default)."""
        check_record_query("sessions", query)
        limit = DEFAULT_QUERY_LIMIT if query.limit is None else query.limit
        if limit <= 0:
            return []
        where, params = record_filter("sessions", query, self._dialect)
        rows = await self._read(self._q.sessions_page(where), *params, limit, query.offset or 0)
        return self._rows.sessions(rows)

    async def search_sessions(
        self,
        query: SessionQuery,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> SessionPage:
        """One page of the sessions ``query`` selects, newest first (create_time, then id)."""
        after = None if cursor is None else decode_session_cursor(cursor)
        check_page_limit(limit)
        sql, params = session_search(self._dialect, query, after, limit + 1)
        sessions = self._rows.sessions(await self._read(sql, *params))
        following = session_cursor(sessions[limit - 1]) if len(sessions) > limit else None
        return SessionPage(sessions=sessions[:limit], next_cursor=following)

    async def cleanup_old_sessions(self, before: datetime) -> int:
        """Delete sessions with ``update_time < before`` and their messages; return how many."""
        cutoff = self._rows.time(check_cutoff(before))
        _, count = await self._write(
            Write(self._q.cleanup_session_messages, (cutoff,)),
            Write(self._q.cleanup_sessions, (cutoff,)),
        )
        return count

    # --- batch ingest -------------------------------------------------------------------

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        """Store every record whose id is not stored yet, in one transaction.

        A fresh batch (the shipper's usual case) is one write through the
        paths ``save_messages`` and ``save_api_calls`` take: COPY on
        PostgreSQL, prepared multi-row INSERTs on MySQL. Only when the
        database refuses it does one read, on one snapshot, ask which of the
        batch's ids are stored; the write then runs again without them. If
        none of them is stored, the refusal was the batch's own (a missing
        session or parent) and is raised. Skipping inside the INSERT instead
        would close the bulk paths (COPY has no ``ON CONFLICT DO NOTHING``)
        and MySQL's ``INSERT IGNORE`` would also silence a missing session,
        which must still raise; reading first would cost every fresh batch a
        round trip (a third more time on PostgreSQL). Every record is encoded
        first, skipped or not, so bad input fails the same whatever is stored.
        """
        kinds = (
            (SESSION.name, self._batch(sessions, self._rows.session)),
            (MESSAGE.name, self._batch(messages, self._rows.message)),
            (API_CALL.name, self._batch(calls, self._rows.api_call)),
        )
        if not any(batch for _, batch in kinds):
            return
        stored: tuple[frozenset[uuid.UUID], ...] = (frozenset(),) * len(kinds)  # fresh, presumably
        for attempt in range(1, _INGEST_ATTEMPTS + 1):
            writes = self._ingest_writes([batch for _, batch in kinds], stored)
            if not writes:
                return
            try:
                await self._write(*writes)
            except ConstraintError:
                if attempt == _INGEST_ATTEMPTS:
                    raise
                now = await self._stored(kinds)
                if now == stored:
                    raise  # no more of the batch is stored than assumed: the batch is refused
                logger.debug("ingest: %d records stored already", sum(map(len, now)))
                stored = now
            else:
                return

    @staticmethod
    def _batch(records: Sequence[Any], encoder: Callable[[Any], tuple[Any, ...]]) -> _Batch:
        """Every record encoded; of each id, the first record and its row."""
        batch: _Batch = {}
        for record in records:
            row = encode(encoder, record)
            batch.setdefault(record.id, (record, row))
        return batch

    async def _stored(
        self, kinds: Sequence[tuple[str, _Batch]]
    ) -> tuple[frozenset[uuid.UUID], ...]:
        """For each kind, which of its ids its table holds, read on one snapshot."""
        self._check_open()
        reads: list[Read] = []
        owners: list[int] = []
        for position, (table, batch) in enumerate(kinds):
            ids = [row[0] for _, row in batch.values()]
            for sql, params in self._id_queries(table, ids):
                reads.append(Read(sql, params))
                owners.append(position)
        results = await self._db.read(reads)
        found: list[set[uuid.UUID]] = [set() for _ in kinds]
        as_text = self._dialect.record_uuid  # asyncpg's own UUID type, or text as stored
        for position, rows in zip(owners, results, strict=True):
            found[position].update(uuid.UUID(as_text(row[0])) for row in rows)
        return tuple(frozenset(ids) for ids in found)

    def _id_queries(self, table: str, ids: Sequence[Any]) -> list[tuple[str, Sequence[Any]]]:
        """Queries, with their parameters, for which of ``ids`` (encoded) ``table`` holds."""
        if not ids:
            return []
        if self._dialect.id_arrays:
            return [(self._q.stored_ids(table, 0), (list(ids),))]
        queries: list[tuple[str, Sequence[Any]]] = []
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = list(ids[start : start + _ID_CHUNK])
            size = next(size for size in _ID_SIZES if size >= len(chunk))
            chunk.extend([chunk[-1]] * (size - len(chunk)))
            queries.append((self._q.stored_ids(table, size), chunk))
        return queries

    def _ingest_writes(
        self, batches: Sequence[_Batch], stored: Sequence[frozenset[uuid.UUID]]
    ) -> list[Write]:
        """The writes of an ingest: what of each kind is not stored, sessions first."""
        sessions, messages, calls = (
            [entry for key, entry in batch.items() if key not in old]
            for batch, old in zip(batches, stored, strict=True)
        )
        writes: list[Write] = []
        if sessions:
            rows = [row for _, row in sessions]
            writes.append(Write(self._q.insert_session, many=rows, bulk=self._q.bulk_sessions))
        if messages:
            writes.extend(self._message_writes(messages))
        if calls:
            rows = [row for _, row in calls]
            writes.append(Write(self._q.insert_call, many=rows, bulk=self._q.bulk_calls))
            writes.extend(self._rollup_writes([call for call, _ in calls]))
        return writes

    # --- counting and exporting --------------------------------------------------------

    async def count_records(self, kind: RecordKind, query: QueryFilter) -> int:
        """How many records ``export_records(kind, query)`` yields (offset and limit ignored)."""
        check_record_query(kind, query)
        where, params = record_filter(kind, query, self._dialect)
        rows = await self._read(self._q.count_records(kind, where), *params)
        return int(rows[0][0])

    async def export_records(
        self, kind: RecordKind, query: QueryFilter, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every record of ``kind`` matching ``query``, in id order, ``chunk_size`` at a time.

        Keyset pagination: each chunk is one query for the next ids after the
        last one seen, so memory stays flat and no chunk re-reads earlier rows.
        """
        check_record_query(kind, query)
        check_chunk_size(chunk_size)
        build = self._records[kind]
        last: list[Any] = []  # the id of the last row read, as the driver gave it

        def convert(rows: Sequence[Row]) -> list[Record]:
            if rows:
                last[:] = (rows[-1][0],)  # binds back unchanged for the next chunk
            return build(rows)

        name = self._dialect.keyset_filter
        where, params = record_filter(kind, query, self._dialect, name=name)
        first = self._q.export_chunk(kind, where)
        # the same filter and parameters, then the keyset condition, bound after them
        after, _ = record_filter(kind, query, self._dialect, "id > ?", name=name)
        following = self._q.export_chunk(kind, after)
        pending: asyncio.Future[list[Record]] | None = asyncio.ensure_future(
            self._read_chunk(first, (*params, chunk_size), convert)
        )
        try:
            while pending is not None:
                records = await pending
                pending = None
                if len(records) == chunk_size:
                    # Ask for the next chunk before handing this one over: the database
                    # reads it while the caller writes this one out.
                    pending = asyncio.ensure_future(
                        self._read_chunk(following, (*params, *last, chunk_size), convert)
                    )
                if records:
                    yield records
        finally:
            if pending is not None:  # the caller stopped early: drop the read ahead
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, PersistenceError):
                    await pending

    # --- providers ---------------------------------------------------------------------

    async def save_provider(self, provider: Provider) -> None:
        """Insert or replace a provider."""
        await self._upsert(self._q.upsert_provider, encode(self._rows.provider, provider))

    async def get_provider(self, provider_id: uuid.UUID) -> Provider | None:
        """The provider with ``provider_id``, or None."""
        rows = await self._read(self._q.get_provider, self._u(provider_id))
        return self._rows.providers(rows)[0] if rows else None

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        """A tenant's provider called ``name``, or None."""
        rows = await self._read(self._q.provider_by_name, self._u(tenant_id), name)
        return self._rows.providers(rows)[0] if rows else None

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's providers, by name."""
        return self._rows.providers(await self._read(self._q.list_providers, self._u(tenant_id)))

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's enabled providers, by name."""
        enabled = self._dialect.encode_bool(True)
        rows = await self._read(self._q.enabled_providers, self._u(tenant_id), enabled)
        return self._rows.providers(rows)

    async def delete_provider(self, provider_id: uuid.UUID) -> bool:
        """Delete a provider and its agents; True when it existed."""
        return await self._delete(
            self._q.delete_provider_agents, self._q.delete_provider, key=provider_id
        )

    # --- agents ------------------------------------------------------------------------

    async def save_agent(self, agent: Agent) -> None:
        """Insert or replace an agent; its provider must exist."""
        await self._upsert(self._q.upsert_agent, encode(self._rows.agent, agent))

    async def _first_agent(self, sql: str, *params: Any) -> Agent | None:
        rows = await self._read(sql, *params)
        return self._rows.agents(rows)[0] if rows else None

    async def get_agent(self, agent_id: uuid.UUID) -> Agent | None:
        """The agent with ``agent_id``, or None."""
        return await self._first_agent(self._q.get_agent, self._u(agent_id))

    async def get_agent_by_code(self, code: str) -> Agent | None:
        """The agent with ``code``, or None."""
        return await self._first_agent(self._q.agent_by_code, code)

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        """A tenant's agent with ``code``, or None."""
        return await self._first_agent(self._q.agent_by_code_and_tenant, self._u(tenant_id), code)

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's agents, by order then code."""
        return self._rows.agents(await self._read(self._q.list_agents, self._u(tenant_id)))

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's active agents, by order then code."""
        active = self._dialect.encode_bool(True)
        return self._rows.agents(
            await self._read(self._q.active_agents, self._u(tenant_id), active)
        )

    async def _with_provider(self, agent: Agent | None) -> AgentConfig | None:
        if agent is None:
            return None
        provider = await self.get_provider(agent.provider_id)
        return None if provider is None else AgentConfig(provider=provider, agent=agent)

    async def get_agent_with_provider(self, agent_id: uuid.UUID) -> AgentConfig | None:
        """An agent and its provider, or None."""
        return await self._with_provider(await self.get_agent(agent_id))

    async def get_agent_by_code_with_provider(self, code: str) -> AgentConfig | None:
        """The agent with ``code`` and its provider, or None."""
        return await self._with_provider(await self.get_agent_by_code(code))

    async def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID, code: str
    ) -> AgentConfig | None:
        """A tenant's agent with ``code`` and its provider, or None."""
        return await self._with_provider(await self.get_agent_by_code_and_tenant(tenant_id, code))

    async def delete_agent(self, agent_id: uuid.UUID) -> bool:
        """Delete an agent; True when it existed."""
        return await self._delete(self._q.delete_agent, key=agent_id)

    # --- erasure -----------------------------------------------------------------------

    async def erase_user(self, user_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Delete a user's sessions and messages and anonymise their calls, in one transaction."""
        statements = erasure_statements(self._dialect, "user_id")
        counts = await self._erase(statements, check_erased_user(user_id), dry_run=dry_run)
        return ErasureReport(user_id=user_id, dry_run=dry_run, **counts)

    async def erase_tenant(self, tenant_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase every user of a tenant as ``erase_user`` does; delete its providers and agents."""
        statements = erasure_statements(self._dialect, "tenant_id")
        counts = await self._erase(statements, tenant_id, dry_run=dry_run)
        return ErasureReport(tenant_id=tenant_id, dry_run=dry_run, **counts)

    async def _erase(
        self, statements: ErasureStatements, erased: uuid.UUID, *, dry_run: bool
    ) -> dict[str, int]:
        """Run an erasure's writes in one transaction (or its counts, on one snapshot).

        On PostgreSQL the rollups are locked against other writers of calls
        first, as a rebuild locks them: a call saved for the user meanwhile
        must be counted, and anonymised, either entirely or not at all. The
        deletes of sessions and messages come before that lock, so that call
        writers wait only for the rollups' part.
        """
        self._check_open()
        value, nil = self._u(erased), self._u(NIL_UUID)

        def bound(erasing: Erasing) -> list[Any]:
            return [nil] * erasing.nils + [value] * erasing.ids

        counted = {
            "sessions_deleted": (statements.count_sessions, statements.delete_sessions),
            "messages_deleted": (statements.count_messages, statements.delete_messages),
            "api_calls_anonymised": (statements.count_calls, statements.anonymise_calls),
            "agents_deleted": (statements.count_agents, statements.delete_agents),
            "providers_deleted": (statements.count_providers, statements.delete_providers),
        }
        if dry_run:
            reads = {
                name: Read(count.sql, bound(count))
                for name, (count, _) in counted.items()
                if count is not None
            }
            results = await self._db.read(list(reads.values()))
            return {name: int(rows[0][0]) for name, rows in zip(reads, results, strict=True)}
        lock = self._dialect.rollup_lock([table.name for table in ROLLUP_TABLES])
        order = [
            statements.delete_messages,
            statements.delete_sessions,
            *([] if lock is None else [Erasing(lock, ids=0)]),
            *statements.rollups,
            statements.anonymise_calls,
            *(e for e in (statements.delete_agents, statements.delete_providers) if e is not None),
        ]
        counts = await self._write(*(Write(e.sql, bound(e)) for e in order))
        report = {
            name: counts[order.index(write)]
            for name, (_, write) in counted.items()
            if write is not None
        }
        logger.info(
            "erased %s: %s", "a tenant" if statements.delete_providers else "a user", report
        )
        return report
