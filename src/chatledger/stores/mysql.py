"""MySQL 8 and MariaDB 10.11+ on asyncmy: CHAR(36) ids, DATETIME(6) in UTC, JSON, utf8mb4.

What is specific to MySQL and nothing more: its dialect, asyncmy's calls
behind :class:`~chatledger.stores.server.PooledDatabase`, and how MySQL's
error numbers map to chatledger's errors. Connections run in strict SQL
mode with the session time zone at UTC and ``CLIENT_FOUND_ROWS``, so an
update reports the rows it matched (as SQLite and PostgreSQL do), not only
those it changed. Single statements run as server-side prepared
statements; a short transaction (a saved message: an UPDATE and an INSERT)
goes as one multi-statement text, one round trip; a batch of rows goes as
prepared multi-row INSERTs of 100 rows, the rest as text multi-row INSERTs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from chatledger.errors import Failure, PersistenceError
from chatledger.stores.dialect import Dialect, uuid_text
from chatledger.stores.paging import LIKE_ESCAPE
from chatledger.stores.schema import Column, ColumnType, Index, Table
from chatledger.stores.server import (
    PooledDatabase,
    ServerStore,
    import_driver,
    server_error,
)
from chatledger.stores.urls import ServerAddress, shown_cause

if TYPE_CHECKING:
    from chatledger.stores.sql import Read, Write

__all__ = ["MySqlStore"]

logger = logging.getLogger(__name__)

_NOTHING = "DO 0"  # a statement that does nothing, for DDL already applied
_STATEMENT_CACHE = 256  # prepared statements kept per connection
_PREPARED_ROWS = 100  # rows per prepared multi-row INSERT (26 columns: 2,600 placeholders)
# Strict: a value that does not fit is an error, never silently truncated.
_SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)

# MySQL / MariaDB error numbers, by what they mean to a chatledger user.
_LOST = frozenset({1053, 1927, 2006, 2013, 2055, 4031})
_RETRY = frozenset({1205, 1213})  # lock wait timeout, deadlock: InnoDB rolled it all back
_FAILURE_CODES: tuple[tuple[frozenset[int], Failure], ...] = (
    (frozenset({1216, 1452}), Failure.MISSING_REFERENCE),
    (frozenset({1062, 1586}), Failure.ALREADY_USED),
    (frozenset({1048, 1451, 1217, 3819, 4025}), Failure.CONSTRAINT),
    (frozenset({1264, 1292, 1366, 1406, 1265, 3140, 4038}), Failure.BAD_VALUE),
    (frozenset({1044, 1045, 1698}), Failure.LOGIN_REFUSED),
    (frozenset({1049}), Failure.NO_DATABASE),
    (frozenset({1040, 1203}), Failure.NO_SLOT),
    (_LOST, Failure.LOST),
    (frozenset({2002, 2003, 2005}), Failure.UNREACHABLE),
)


class MySqlDialect(Dialect):
    """MySQL's and MariaDB's types and functions; MariaDB spells a few DDL forms better."""

    name = "mysql"
    paramstyle = "format"
    # lock_rows stays empty: InnoDB already share-locks the rows a DELETE's subquery
    # reads, so a save into a session being pruned waits (see the prune race test).
    table_suffix = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    column_types: ClassVar[dict[ColumnType, str]] = {
        ColumnType.UUID: "CHAR(36)",
        ColumnType.TEXT: "LONGTEXT",
        ColumnType.SHORT_TEXT: "VARCHAR({length})",
        ColumnType.JSON: "JSON",
        ColumnType.TIME: "DATETIME(6)",
        ColumnType.INT: "BIGINT",
        ColumnType.FLOAT: "DOUBLE",
        ColumnType.MONEY: "DECIMAL(24, 10)",
        ColumnType.MONEY_SUM: "DECIMAL(38, 10)",
        ColumnType.COUNT: "INT",
        ColumnType.BOOL: "BOOLEAN",
    }

    def __init__(
        self,
        *,
        mariadb: bool,
        existing: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        """MariaDB has ``IF NOT EXISTS`` for indexes and columns; MySQL 8 does not.

        For MySQL 8, ``existing`` holds the (table, index or column) names
        already in the database when the store opened, so a migration skips
        what a MoFA-created schema (or an interrupted migration: MySQL's DDL
        is not transactional) already has.
        """
        self.mariadb = mariadb
        self.existing = existing

    encode_uuid = staticmethod(str)
    record_uuid = staticmethod(uuid_text)
    encode_bool = staticmethod(int)

    @staticmethod
    def encode_time(value: datetime) -> datetime:
        """A naive datetime in UTC: DATETIME has no zone."""
        return value.astimezone(UTC).replace(tzinfo=None)

    def decode_time(self, value: Any) -> Any:
        """Naive DATETIME (or a DATE bucket) read back as UTC."""
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, str | bytes):
            text = value.decode() if isinstance(value, bytes) else value
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        return value

    def create_index(self, table: Table, index: Index) -> str:
        """``CREATE INDEX`` (``IF NOT EXISTS`` on MariaDB; skipped when present on MySQL).

        MySQL has no partial indexes: a partial one indexes every row here.
        """
        if (table.name, index.name) in self.existing:
            return _NOTHING
        guard = "IF NOT EXISTS " if self.mariadb else ""
        return f"CREATE INDEX {guard}{index.name} ON {table.name} ({', '.join(index.columns)})"

    def drop_index(self, table: Table, name: str) -> str:
        """``DROP INDEX … ON`` (``IF EXISTS`` on MariaDB).

        MySQL 8 has no ``IF EXISTS`` here, and ``existing`` cannot tell: the
        index may have been made by an earlier migration of this same run.
        Chatledger drops only indexes its own earlier migrations made, so it is
        there unless a run was cut short right after dropping it.
        """
        guard = "IF EXISTS " if self.mariadb else ""
        return f"DROP INDEX {guard}{name} ON {table.name}"

    def add_column(self, table: Table, column: Column) -> str:
        """``ADD COLUMN`` (``IF NOT EXISTS`` on MariaDB; skipped when present on MySQL)."""
        if (table.name, column.name) in self.existing:
            return _NOTHING
        guard = "IF NOT EXISTS " if self.mariadb else ""
        return f"ALTER TABLE {table.name} ADD COLUMN {guard}{self.column_ddl(column)}"

    def upsert(self, table: Table) -> list[tuple[str, tuple[int, ...]]]:
        """An UPDATE by id, then an INSERT that runs only if no row has that id.

        ``ON DUPLICATE KEY UPDATE`` would also fire on a clash with another
        unique key (an agent code) and silently rewrite some other row.
        """
        names = table.column_names
        count = len(names)
        assignments = ", ".join(f"{name} = ?" for name in names[1:])
        update = f"UPDATE {table.name} SET {assignments} WHERE id = ?"
        insert = (
            f"INSERT INTO {table.name} ({', '.join(names)}) "
            f"SELECT {', '.join('?' * count)} FROM DUAL "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table.name} WHERE id = ?)"
        )
        return [(update, (*range(1, count), 0)), (insert, (*range(count), 0))]

    def accumulate(self, table: Table, keys: Sequence[str], sums: Sequence[str]) -> str:
        """``ON DUPLICATE KEY UPDATE``: the primary key is the only unique key of a rollup."""
        name = table.name
        updates = ", ".join(f"{name}.{col} = {name}.{col} + VALUES({col})" for col in sums)
        return f" ON DUPLICATE KEY UPDATE {updates}"

    def intdiv(self, dividend: str, divisor: str) -> str:
        """``DIV`` truncates, decimals included."""
        return f"(({dividend}) DIV ({divisor}))"

    def as_integer(self, expression: str) -> str:
        """A cast to a signed integer: SUM returns DECIMAL, whose arithmetic is slower.

        It took the percentile step over 77,000 of a million calls on MariaDB
        from 560 to 320 ms.
        """
        return f"CAST({expression} AS SIGNED)"

    def json_int(self, column: str, key: str) -> str:
        """``JSON_VALUE`` gives SQL NULL for a JSON null, which a cast would reject."""
        return f"CAST(JSON_VALUE({column}, '$.{key}') AS SIGNED)"

    def json_text(self, column: str, key: str) -> str:
        """``JSON_UNQUOTE(JSON_EXTRACT(…))``; MySQL's JSON_VALUE would cut it at 512 characters."""
        return f"JSON_UNQUOTE(JSON_EXTRACT({column}, '$.{key}'))"

    def contains(self, expression: str) -> str:
        """Both sides lowered: the columns' binary collation compares case as it is.

        A case-insensitive collation (``utf8mb4_unicode_ci``) would also make
        ``e`` match ``é``; lowering both keeps accents apart, as the other
        backends do.
        """
        return f"LOWER({expression}) LIKE LOWER(?) ESCAPE '{LIKE_ESCAPE}'"

    def unindexed(self, column: str) -> str:
        """An expression no index covers."""
        return f"({column} + 0)"

    def bucket_start(self, column: str, bucket: str) -> str:
        """Date arithmetic in the stored UTC; no format strings, so no ``%`` to escape."""
        day = f"CAST(DATE({column}) AS DATETIME)"
        if bucket == "hour":
            return f"({day} + INTERVAL HOUR({column}) HOUR)"
        if bucket == "day":
            return day
        if bucket == "week":  # WEEKDAY: Monday is 0
            return f"({day} - INTERVAL WEEKDAY({column}) DAY)"
        if bucket == "month":
            return f"({day} - INTERVAL (DAYOFMONTH({column}) - 1) DAY)"
        raise ValueError(f"unknown bucket {bucket!r}")


def _code(exc: BaseException) -> int | None:
    """A MySQL error's number (asyncmy puts it first in ``args``)."""
    if exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _message(exc: BaseException) -> str:
    if len(exc.args) >= 2:
        return f"{exc.args[1]} (error {exc.args[0]})"
    return str(exc) or type(exc).__name__


def map_error(exc: BaseException, address: ServerAddress) -> PersistenceError:
    """The chatledger error for an asyncmy (or socket) exception."""
    if isinstance(exc, PersistenceError):
        return exc
    code, text = _code(exc), _message(exc)
    failure = next((failure for codes, failure in _FAILURE_CODES if code in codes), None)
    if failure is None and isinstance(exc, UnicodeError | OverflowError):
        failure = Failure.BAD_VALUE
    if failure is None and isinstance(exc, OSError | asyncio.TimeoutError | TimeoutError):
        failure = Failure.UNREACHABLE
    if failure is None:
        failure = Failure.QUERY
        if code is None and not type(exc).__module__.startswith("asyncmy"):
            text = f"unexpected {type(exc).__name__}: {text}"
    return server_error(failure, "MySQL", address, text)


@functools.cache
def _multi_row_insert(table: str, columns: Sequence[str], rows: int) -> str:
    """``INSERT INTO table (columns) VALUES (%s, ...), ...`` for ``rows`` rows."""
    row = f"({', '.join(['%s'] * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"


async def _roll_back(conn: Any) -> None:
    """End the transaction a failure left open; a connection that cannot is closed."""
    try:
        await conn.rollback()
    except Exception:
        logger.debug("MySQL rollback after a failure failed as well", exc_info=True)
        conn.close()  # a connection in an unknown state must not go back to the pool


class MySqlDatabase(PooledDatabase[Any]):
    """asyncmy's pool behind the Database protocol."""

    backend = "MySQL"
    # Group commit measured neutral to worse on MariaDB (50 callers: 4,800-6,000 saves/s
    # grouped, 5,900 apart): the server runs one transaction's statements one after
    # another, where separate connections use every core.
    joins_writes = False

    def __init__(self, pool: Any, address: ServerAddress, dialect: MySqlDialect) -> None:
        """Serve ``dialect``'s statements on ``pool``, opened on ``address``."""
        super().__init__(dialect, address)
        self._pool = pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            try:
                yield conn
            except (asyncio.CancelledError, OSError, TimeoutError):
                # Stopped mid-exchange: replies still on the wire would reach the next
                # user of this connection, so it is closed instead of going back.
                conn.close()
                raise

    @asynccontextmanager
    async def _transaction(self, conn: Any, *, snapshot: bool) -> AsyncIterator[None]:
        if snapshot:
            async with conn.cursor() as cursor:
                await cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        else:
            await conn.begin()
        try:
            yield
        except BaseException:
            await _roll_back(conn)
            raise
        await conn.commit()

    async def _fetch(self, conn: Any, read: Read) -> list[Sequence[Any]]:
        async with conn.cursor() as cursor:
            await cursor.execute(read.sql, tuple(read.params))
            return list(await cursor.fetchall())

    async def _execute(self, conn: Any, write: Write) -> int:
        async with conn.cursor() as cursor:
            if write.many is None:
                await cursor.execute(write.sql, tuple(write.params))
                return max(int(cursor.rowcount or 0), 0)
            rows = write.many
            done = 0
            if write.bulk is not None and len(rows) >= _PREPARED_ROWS:
                # Full chunks as one prepared multi-row INSERT each: binary values, no
                # escaping (500 API calls a batch: 15,000 -> 19,500 rows/s here).
                table, columns = write.bulk
                insert = _multi_row_insert(table, columns, _PREPARED_ROWS)
                whole = len(rows) - len(rows) % _PREPARED_ROWS
                for start in range(0, whole, _PREPARED_ROWS):
                    chunk = rows[start : start + _PREPARED_ROWS]
                    await cursor.execute(insert, [value for row in chunk for value in row])
                    done += max(int(cursor.rowcount or 0), 0)
                rows = rows[whole:]
            if rows:  # the rest as multi-row text INSERTs (asyncmy's executemany)
                await cursor.executemany(write.sql, [tuple(row) for row in rows])
                done += max(int(cursor.rowcount or 0), 0)
            return done

    async def _execute_transaction(self, conn: Any, writes: Sequence[Write]) -> list[int]:
        """Send a short transaction as one multi-statement text: one round trip, not four.

        A saved message is an UPDATE and an INSERT; with BEGIN and COMMIT as
        separate commands it costs four round trips. The server stops at the
        first statement that fails, leaving the transaction open, which the
        rollback below ends. Batches (``many``) keep the prepared path.
        """
        if any(write.many is not None for write in writes):
            return await super()._execute_transaction(conn, writes)
        async with conn.cursor() as cursor:
            statements = [cursor.mogrify(write.sql, tuple(write.params)) for write in writes]
            try:
                await cursor.execute(";".join(["START TRANSACTION", *statements, "COMMIT"]))
                counts = []
                for _ in writes:
                    await cursor.nextset()
                    counts.append(max(int(cursor.rowcount or 0), 0))
                await cursor.nextset()  # the COMMIT's
            except BaseException:
                await _roll_back(conn)
                raise
            return counts

    async def _close_pool(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()

    def _connection_lost(self, exc: BaseException) -> bool:
        return _code(exc) in _LOST or isinstance(
            exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError
        )

    def _retry_write(self, exc: BaseException) -> bool:
        return _code(exc) in _RETRY

    def _map_error(self, exc: BaseException) -> PersistenceError:
        return map_error(exc, self.address)


class MySqlStore(ServerStore):
    """The MySQL 8 / MariaDB 10.11+ backend (asyncmy): ``await MySqlStore.connect("mysql://…")``."""

    backend_name = "mysql"
    schemes = ("mysql", "mariadb")
    default_port = 3306

    @classmethod
    async def _open(
        cls, url: str, *, min_size: int, max_size: int, options: dict[str, Any]
    ) -> MySqlDatabase:
        address = cls.address_of(url)
        asyncmy = import_driver("asyncmy", "mysql", "MySQL")
        from asyncmy.constants.CLIENT import FOUND_ROWS, MULTI_STATEMENTS

        settings: dict[str, Any] = {
            "host": address.host,
            "port": address.port,
            "user": address.user or "root",
            "password": address.password or "",
            "db": address.database,
            "charset": "utf8mb4",
            "autocommit": True,
            "client_flag": FOUND_ROWS | MULTI_STATEMENTS,
            "init_command": (
                # sql_notes=0: "table already exists" on every connect is not news
                f"SET time_zone = '+00:00', sql_mode = '{_SQL_MODE}', sql_notes = 0"
            ),
            "connect_timeout": 10,
            "stmt_cache_size": _STATEMENT_CACHE,
        }
        if "unix_socket" in address.options:
            settings["unix_socket"] = address.options["unix_socket"]
        settings.update(options)
        try:
            # asyncmy's connect_timeout bounds the TCP connect only, not the wait for the
            # server's greeting: a hung network would hang here for good without this.
            pool = await asyncio.wait_for(
                asyncmy.create_pool(minsize=min_size, maxsize=max_size, **settings),
                float(settings["connect_timeout"]),
            )
        except Exception as exc:  # noqa: BLE001  (mapped to chatledger's error below)
            raise map_error(exc, address) from shown_cause(exc, address)
        try:
            async with pool.acquire() as conn, conn.cursor() as cursor:
                dialect = await _dialect_for(cursor)
        except Exception as exc:  # noqa: BLE001  (mapped to chatledger's error below)
            pool.close()
            await pool.wait_closed()
            raise map_error(exc, address) from shown_cause(exc, address)
        return MySqlDatabase(pool, address, dialect)


def is_mariadb(version: str) -> bool:
    """Whether ``SELECT VERSION()`` came from MariaDB."""
    return "mariadb" in version.lower()


async def _dialect_for(cursor: Any) -> MySqlDialect:
    """The dialect of the server ``cursor`` talks to; on MySQL, what the schema already has."""
    await cursor.execute("SELECT VERSION()")
    (version,) = await cursor.fetchone()
    if is_mariadb(str(version)):
        return MySqlDialect(mariadb=True)
    await cursor.execute(
        "SELECT table_name, index_name FROM information_schema.statistics "
        "WHERE table_schema = DATABASE() UNION "
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE()"
    )
    names = frozenset((str(table), str(name)) for table, name in await cursor.fetchall())
    return MySqlDialect(mariadb=False, existing=names)
