"""PostgreSQL on asyncpg: native UUID, TIMESTAMPTZ and JSONB columns.

What is specific to PostgreSQL and nothing more: its dialect, asyncpg's
calls behind :class:`~chatledger.stores.server.PooledDatabase`, and how
asyncpg's exceptions map to chatledger's. Batches of rows are loaded with
``COPY`` (binary), the fastest path PostgreSQL has, inside the same
transaction as the rest of the write, so they stay all-or-nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from chatledger.errors import Failure, PersistenceError
from chatledger.stores.dialect import Dialect, TextProbe
from chatledger.stores.paging import LIKE_ESCAPE, like_pattern
from chatledger.stores.schema import MESSAGE, Column, ColumnType, Table
from chatledger.stores.server import (
    PooledDatabase,
    ServerStore,
    import_driver,
    server_error,
)
from chatledger.stores.urls import ServerAddress, shown_cause

if TYPE_CHECKING:
    import asyncpg

    from chatledger.stores.sql import Read, Write

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

# COPY pays a round trip to start; for fewer rows a pipelined executemany wins
# (saved messages per second here: 4 rows 3,800 by COPY, 4,700 by executemany;
# 16 rows 13,900 against 10,400; 128 rows 49,000 against 37,000).
_COPY_MIN_ROWS = 16
_MIGRATION_LOCK = 0x636C6467  # "cldg": chatledger's advisory lock key
# The session search's pg_trgm index of message text, built on request
# (PostgresStore.create_text_index) where the extension is available: ILIKE on the same
# expression is served by it.
MESSAGE_TEXT_INDEX = "idx_llm_message_text_trgm"


class PostgresDialect(Dialect):
    """PostgreSQL's types and functions; asyncpg binds native Python values."""

    name = "postgresql"
    paramstyle = "numeric"
    column_types: ClassVar[dict[ColumnType, str]] = {
        ColumnType.UUID: "UUID",
        ColumnType.TEXT: "TEXT",
        ColumnType.SHORT_TEXT: "VARCHAR({length})",
        ColumnType.JSON: "JSONB",
        ColumnType.TIME: "TIMESTAMPTZ",
        ColumnType.INT: "BIGINT",
        ColumnType.FLOAT: "DOUBLE PRECISION",
        ColumnType.MONEY: "NUMERIC(24, 10)",
        ColumnType.MONEY_SUM: "NUMERIC(38, 10)",
        ColumnType.COUNT: "INTEGER",
        ColumnType.BOOL: "BOOLEAN",
    }

    # asyncpg prepares each statement once; after five runs PostgreSQL may switch to
    # a generic plan, which for a chunk filtered by a time range sorts the whole range
    # from the time index (122 ms a chunk instead of 0.5 ms at a million calls).
    per_value_plan = "SET LOCAL plan_cache_mode = force_custom_plan"
    lock_rows = " FOR UPDATE"
    # One uuid[] parameter: one prepared statement whatever the number of ids.
    id_arrays = True

    def as_integer(self, expression: str) -> str:
        """A cast to BIGINT: SUM over BIGINT is NUMERIC, whose arithmetic is far slower.

        Integer arithmetic took the percentile step over a week of a million
        calls from 85 to 58 ms.
        """
        return f"(({expression})::BIGINT)"

    def percentile_aggregates(self, column: str, percents: Sequence[int]) -> list[str] | None:
        """``percentile_cont``: over a filtered set, one sort beside the totals' scan.

        At a million calls it read one user's calls in a third of the time the
        latency histogram took, and a week's in half.
        """
        return [
            f"percentile_cont({percent / 100}) WITHIN GROUP (ORDER BY {column})"
            for percent in percents
        ]

    def json_int(self, column: str, key: str) -> str:
        """``->>`` then a cast; a JSON null gives SQL NULL."""
        return f"(({column})->>'{key}')::BIGINT"

    def json_text(self, column: str, key: str) -> str:
        """``->>``: the key's value as text."""
        return f"({column})->>'{key}'"

    def contains(self, expression: str) -> str:
        """``ILIKE``: case-insensitive in the database's character classification."""
        return f"{expression} ILIKE ? ESCAPE '{LIKE_ESCAPE}'"

    def unindexed(self, column: str) -> str:
        """An expression no index covers."""
        return f"({column} + 0)"

    def trigram_index(self, message: Table) -> str:
        """The statement building pg_trgm and a GIN trigram index on the messages' text.

        Built on request only (``PostgresStore.create_text_index``): as a
        migration it halved the rate of single message saves (one caller:
        2,289 -> 1,036 a second in the benchmarks, the raw driver's inserts
        alike), a price every write would pay for the dashboard's search.

        The extension is trusted (PostgreSQL 13+): a user who may create in
        the database may install it. Where it is not available, or the user
        may not install it, the statement only warns, and searches scan as
        before. ANALYZE then gives the planner the text expression's
        statistics. Titles are not indexed: a search tests each walked
        session's title.
        """
        text = self.json_text("content", "text")
        return f"""DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
            CREATE INDEX IF NOT EXISTS {MESSAGE_TEXT_INDEX} ON {message.name}
                USING gin (({text}) gin_trgm_ops);
            ANALYZE {message.name};
        EXCEPTION WHEN insufficient_privilege OR undefined_object OR undefined_file THEN
            RAISE WARNING 'chatledger: no pg_trgm index for the session search (%): '
                'a search for a rare text reads every message', SQLERRM;
        END;
    ELSE
        RAISE WARNING 'chatledger: pg_trgm is not available: '
            'a search for a rare text reads every message';
    END IF;
END $$"""

    def text_probe(self) -> TextProbe | None:
        """The trigram index through ILIKE itself: what it finds needs no recheck.

        Whether the index exists is asked in the statement (``to_regclass``),
        so a database without it (the default) searches as before.
        """
        return _POSTGRES_PROBE

    def uuid_key(self, column: str) -> str:
        """A native UUID: keyed as it is."""
        return column

    def uuid_as_text(self, column: str) -> str:
        """A UUID's text form, lowercase and canonical."""
        return f"{column}::text"

    def create_table(self, table: Table) -> str:
        """As every dialect's; a rollup table (keyed by its columns) leaves room on its pages.

        Its rows are updated in place by every write of calls: with free
        space on the page the update is HOT, with no index to touch (20% off
        the rollups' write time here).
        """
        ddl = super().create_table(table)
        return ddl if table.primary_key == ("id",) else ddl + " WITH (fillfactor = 70)"

    def from_arrays(self, table: Table, columns: Sequence[str]) -> str | None:
        """``SELECT * FROM unnest(?::type[], …)``: hundreds of rollup rows in one statement.

        A batch's rollup rows as an executemany ran one upsert per row and
        took three times the batch's own insert (2,300 against 9,300 calls a
        second in batches of 100 at a million calls).
        """
        types = {column.name: self.column_type(column) for column in table.columns}
        arrays = ", ".join(f"?::{types[name]}[]" for name in columns)
        return f"SELECT * FROM unnest({arrays}) WHERE TRUE"

    def rollup_lock(self, tables: Sequence[str]) -> str | None:
        """A lock writers' inserts (ROW EXCLUSIVE) wait for, and that waits for theirs."""
        return f"LOCK TABLE {', '.join(tables)} IN SHARE ROW EXCLUSIVE MODE"

    def add_column(self, table: Table, column: Column) -> str:
        """``ADD COLUMN IF NOT EXISTS``: a MoFA table may already have it."""
        return f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {self.column_ddl(column)}"

    def migration_lock(self) -> str | None:
        """A transaction-scoped advisory lock.

        Without it, two processes opening one new database both create the
        same tables, and one fails on a duplicate catalog row.
        """
        return f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"

    def update_then_insert(self, update: str, insert: str) -> str | None:
        """A writable CTE: one statement, so one round trip and no explicit transaction."""
        return f"WITH updated AS ({update}) {insert}"

    def bucket_start(self, column: str, bucket: str) -> str:
        """``date_trunc`` in UTC, whatever the session's time zone."""
        if bucket not in ("hour", "day", "week", "month"):
            raise ValueError(f"unknown bucket {bucket!r}")
        return f"(date_trunc('{bucket}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


_POSTGRES_PROBE = TextProbe(
    candidates=(
        f"SELECT m.chat_session_id AS k FROM {MESSAGE.name} m "
        f"WHERE {PostgresDialect().contains(PostgresDialect().json_text('m.content', 'text'))}"
    ),
    value=like_pattern,
    sessions="SELECT k FROM probe",
    rechecks=False,
    ready=f"to_regclass('{MESSAGE_TEXT_INDEX}') IS NOT NULL",
)


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset costs a round trip per release (``RESET ALL``,
    ``UNLISTEN *``, ...) to undo session state chatledger never creates; an
    open transaction is still rolled back before this runs.
    """


def _summed(rows: Sequence[Sequence[Any]], keys: int) -> list[list[Any]]:
    """Rollup rows with equal first ``keys`` values added into one, in first-seen order."""
    summed: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = tuple(row[:keys])
        found = summed.get(key)
        if found is None:
            summed[key] = list(row)
        else:
            for position in range(keys, len(row)):
                found[position] += row[position]
    return list(summed.values())


def _status_count(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresDatabase(PooledDatabase["asyncpg.Connection[Any]"]):
    """asyncpg's pool behind the Database protocol."""

    backend = "PostgreSQL"
    # Group commit: concurrent single saves go as one pipelined executemany and one
    # commit (50 callers: 5,000 -> 16,000-18,000 saves/s here).
    joins_writes = True

    def __init__(self, pool: asyncpg.Pool[Any], address: ServerAddress) -> None:
        """Serve statements on ``pool``, opened on ``address``."""
        super().__init__(PostgresDialect(), address)
        self._pool = pool
        self._asyncpg = import_driver("asyncpg", "postgres", "PostgreSQL")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        async with self._pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(
        self, conn: asyncpg.Connection[Any], *, snapshot: bool
    ) -> AsyncIterator[None]:
        if snapshot:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                yield
        else:
            async with conn.transaction():
                yield

    async def _fetch(self, conn: asyncpg.Connection[Any], read: Read) -> list[Sequence[Any]]:
        return list(await conn.fetch(read.sql, *read.params))

    async def _execute(self, conn: asyncpg.Connection[Any], write: Write) -> int:
        if write.many is None:
            return _status_count(await conn.execute(write.sql, *write.params))
        if not write.many:
            return 0
        if write.arrays is not None and len(write.many) > 1:
            arrays = [list(column) for column in zip(*write.many, strict=True)]
            return _status_count(await conn.execute(write.arrays, *arrays))
        if write.bulk is not None and len(write.many) >= _COPY_MIN_ROWS:
            table, columns = write.bulk
            status = await conn.copy_records_to_table(
                table, records=write.many, columns=list(columns)
            )
            return _status_count(status)
        await conn.executemany(write.sql, write.many)
        return len(write.many)

    async def _execute_joined(
        self, conn: asyncpg.Connection[Any], group: Sequence[Sequence[Write]]
    ) -> list[list[int]]:
        """Single saves: one pipelined executemany per statement (messages, calls, rollups).

        A saved call's rollup rows (``many``) join the same statement's rows
        of the other saves. Counts are not read from joined writes.
        """
        by_statement: dict[str, list[Sequence[Any]]] = {}
        kinds: dict[str, Write] = {}
        for writes in group:  # in arrival order, so a parent saved first goes first
            for write in writes:
                rows = by_statement.setdefault(write.sql, [])
                kinds.setdefault(write.sql, write)
                if write.many is None:
                    rows.append(write.params)
                else:
                    rows.extend(write.many)
        async with conn.transaction():
            for sql, rows in by_statement.items():
                kind = kinds[sql]
                if kind.arrays is not None and kind.keys and len(rows) > 1:
                    # one statement may not add to a row twice: equal keys summed first
                    summed = _summed(rows, kind.keys)
                    await conn.execute(
                        kind.arrays, *(list(column) for column in zip(*summed, strict=True))
                    )
                else:
                    await conn.executemany(sql, rows)
        return [[1] * len(writes) for writes in group]

    async def _close_pool(self) -> None:
        await self._pool.close()

    def _connection_lost(self, exc: BaseException) -> bool:
        return connection_lost(self._asyncpg, exc)

    def _retry_write(self, exc: BaseException) -> bool:
        pg = self._asyncpg.exceptions
        return isinstance(exc, pg.DeadlockDetectedError | pg.SerializationError)

    def _map_error(self, exc: BaseException) -> PersistenceError:
        return map_error(self._asyncpg, exc, self.address)


def connection_lost(pg: Any, exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (the server ended it, the network broke)."""
    errors = pg.exceptions
    return isinstance(
        exc,
        pg.ConnectionDoesNotExistError
        | errors.AdminShutdownError
        | errors.ConnectionFailureError
        # a termination that arrives while idle leaves asyncpg's protocol in this state
        | errors.InternalClientError
        | ConnectionResetError
        | ConnectionAbortedError
        | BrokenPipeError,
    ) or (isinstance(exc, pg.InterfaceError) and "closed" in str(exc))


def map_error(pg: Any, exc: BaseException, address: ServerAddress) -> PersistenceError:
    """The chatledger error for an asyncpg (or socket) exception."""
    if isinstance(exc, PersistenceError):
        return exc
    text = str(exc).strip() or type(exc).__name__
    failure = _classify(pg, exc)
    if failure is None:
        failure, text = Failure.QUERY, f"unexpected {type(exc).__name__}: {text}"
    return server_error(failure, "PostgreSQL", address, text)


def _classify(pg: Any, exc: BaseException) -> Failure | None:
    errors = pg.exceptions
    kinds: tuple[tuple[Any, Failure], ...] = (
        (errors.ForeignKeyViolationError, Failure.MISSING_REFERENCE),
        (errors.UniqueViolationError, Failure.ALREADY_USED),
        (errors.IntegrityConstraintViolationError, Failure.CONSTRAINT),
        (errors.DataError | pg.DataError | UnicodeError | OverflowError, Failure.BAD_VALUE),
        (
            errors.InvalidPasswordError | errors.InvalidAuthorizationSpecificationError,
            Failure.LOGIN_REFUSED,
        ),
        (errors.InvalidCatalogNameError, Failure.NO_DATABASE),
        (errors.TooManyConnectionsError, Failure.NO_SLOT),
    )
    for kind, failure in kinds:
        if isinstance(exc, kind):
            return failure
    if isinstance(exc, errors.InsufficientPrivilegeError) and "row-level security" in str(exc):
        return Failure.CONSTRAINT  # a write for another tenant, refused by the database itself
    if connection_lost(pg, exc):
        return Failure.LOST
    if isinstance(exc, OSError | asyncio.TimeoutError | TimeoutError):
        return Failure.UNREACHABLE
    if isinstance(exc, pg.PostgresError | pg.InterfaceError):
        return Failure.QUERY
    return None


class PostgresStore(ServerStore):
    """The PostgreSQL backend (asyncpg): ``await PostgresStore.connect("postgresql://…")``."""

    backend_name = "postgresql"
    schemes = ("postgresql", "postgres")
    default_port = 5432

    async def create_text_index(self) -> bool:
        """Build the pg_trgm index the session search uses; return whether it exists now.

        Not built by the migrations: it halves the rate of single message
        saves. Messages are not written while it is built (about a minute a
        million). Where pg_trgm is missing, or may not be installed, it
        warns and the search scans as before.
        """
        from chatledger.stores.sql import Read, Write  # at run time: sql imports the dialects

        self._check_open()
        await self._write(Write(PostgresDialect().trigram_index(MESSAGE)))
        exists = f"SELECT to_regclass('{MESSAGE_TEXT_INDEX}') IS NOT NULL"
        (rows,) = await self._db.read([Read(exists)])
        return bool(rows[0][0])

    @classmethod
    async def _open(
        cls, url: str, *, min_size: int, max_size: int, options: dict[str, Any]
    ) -> PostgresDatabase:
        address = cls.address_of(url)
        pg = import_driver("asyncpg", "postgres", "PostgreSQL")
        dsn = "postgresql://" + url.split("://", 1)[1]  # asyncpg knows no "+asyncpg"
        settings = {"application_name": "chatledger", **options.pop("server_settings", {})}
        # Times travel as aware datetimes; UTC keeps date_trunc and casts unsurprising.
        settings.setdefault("timezone", "UTC")
        options.setdefault("timeout", 10.0)
        options.setdefault("reset", _keep_session)
        try:
            pool = await pg.create_pool(
                dsn, min_size=min_size, max_size=max_size, server_settings=settings, **options
            )
        except Exception as exc:  # noqa: BLE001  (mapped to chatledger's error below)
            raise map_error(pg, exc, address) from shown_cause(exc, address)
        return PostgresDatabase(pool, address)

    # --- row-level security: each tenant's rows kept apart by PostgreSQL itself ---------

    ROW_LEVEL_SECURITY_SETTING: ClassVar[str] = "chatledger.tenant_id"
    """The setting naming the one tenant a role bound by row-level security sees."""
    ROW_LEVEL_SECURITY_POLICY: ClassVar[str] = "chatledger_tenant_isolation"

    @classmethod
    def _tenant_rows(cls) -> list[tuple[str, str]]:
        """Each table holding tenants' rows, with the condition a row of the set tenant meets.

        No setting (or an empty one) is NULL: no row meets it. A setting that
        is no UUID fails the statement rather than match anything.
        """
        from chatledger.stores.rollups import PERIODS
        from chatledger.stores.schema import (
            AGENT,
            API_CALL,
            PROVIDER,
            ROLLUP_DAILY,
            ROLLUP_HISTOGRAM,
            ROLLUP_HOURLY,
            SESSION,
        )

        tenant = f"NULLIF(current_setting('{cls.ROW_LEVEL_SECURITY_SETTING}', true), '')::uuid"
        by_column = f"tenant_id = {tenant}"
        # Daily rows and histograms of every call, model, user or agent add up other
        # tenants' calls too: only the tenant's own dimension is its (its days' rows and
        # its sealed periods').
        sealed = ", ".join(f"'{period.prefix}tenant'" for period in PERIODS)
        by_dimension = f"dimension IN ('tenant', {sealed}) AND dimension_value = ({tenant})::text"
        tables = (SESSION, MESSAGE, API_CALL, PROVIDER, AGENT, ROLLUP_HOURLY)
        return [
            *((table.name, by_column) for table in tables),
            *((table.name, by_dimension) for table in (ROLLUP_DAILY, ROLLUP_HISTOGRAM)),
        ]

    async def enable_row_level_security(self) -> list[str]:
        """Keep tenants apart in the database: return the tables now under row-level security.

        A role that does not own the tables then sees, inserts, updates and
        deletes only the rows of the tenant its ``chatledger.tenant_id``
        setting names (``SET chatledger.tenant_id = '…'``, or
        ``server_settings={"chatledger.tenant_id": "…"}`` to
        ``PostgresStore.connect``); without the setting it sees no row. Of
        the usage rollups it sees its tenant's own rows only, so such a role
        reads its statistics with its tenant in the filter and cannot record
        API calls (their rollup rows add up every tenant's): record them as
        the owner. The tables' owner (chatledger's own store, which migrates
        and keeps the rollups), superusers and ``BYPASSRLS`` roles are not
        bound: the policies are not forced on the owner. Safe to run again;
        one transaction.
        """
        from chatledger.stores.sql import Write  # at run time: sql imports the dialects

        self._check_open()
        policy = self.ROW_LEVEL_SECURITY_POLICY
        tables = self._tenant_rows()
        statements: list[str] = []
        for table, condition in tables:
            statements += [
                f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
                f"DROP POLICY IF EXISTS {policy} ON {table}",
                f"CREATE POLICY {policy} ON {table} USING ({condition}) WITH CHECK ({condition})",
            ]
        await self._write(*(Write(sql) for sql in statements))
        logger.info("row-level security enabled on %d tables", len(tables))
        return [table for table, _ in tables]

    async def disable_row_level_security(self) -> list[str]:
        """Undo :meth:`enable_row_level_security`: every role sees every row again.

        Return the tables it was taken off. Safe to run again; one transaction.
        """
        from chatledger.stores.sql import Write  # at run time: sql imports the dialects

        self._check_open()
        policy = self.ROW_LEVEL_SECURITY_POLICY
        tables = [table for table, _ in self._tenant_rows()]
        statements: list[str] = []
        for table in tables:
            statements += [
                f"DROP POLICY IF EXISTS {policy} ON {table}",
                f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
            ]
        await self._write(*(Write(sql) for sql in statements))
        logger.info("row-level security disabled on %d tables", len(tables))
        return tables
