"""The MySQL/MariaDB baseline: the same work done with asyncmy and nothing else.

It writes into the tables chatledger created on the scratch database, binds
ids as their 36-character text, times as naive UTC datetimes and JSON as
text, through asyncmy's text protocol (values escaped into the statement),
and reads the rows back without decoding them any further. A batch is one
``executemany``, which asyncmy sends as multi-row INSERTs, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from benchmarks import raw_server
from benchmarks.bulk_load import Encoder
from benchmarks.measure import Rate, callers_rate, timed_batches
from benchmarks.raw_sql import AGGREGATE, placeholders
from benchmarks.workload import Row
from chatledger.stores.schema import Column, ColumnType
from chatledger.testing.servers import mysql_connect_options

__all__ = ["EXECUTEMANY", "RawMySql", "server_settings"]

EXECUTEMANY = "executemany"
_CHUNK = 10_000  # rows per executemany (asyncmy splits them into ~1 MB statements)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else value.bytes


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _encoder(column: Column, kind: str) -> Encoder | None:
    """How asyncmy binds a value of ``column``, stored as MySQL type ``kind``."""
    logical = column.type
    if logical is ColumnType.JSON:
        return raw_server.json_text
    if logical is ColumnType.TIME:
        return raw_server.naive_utc  # DATETIME has no zone: chatledger keeps UTC in it
    if logical is ColumnType.MONEY:
        return None if kind == "decimal" else raw_server.as_float
    if logical is ColumnType.UUID:
        return _bytes if kind in ("binary", "varbinary") else raw_server.text
    if logical in (ColumnType.TEXT, ColumnType.SHORT_TEXT):
        return raw_server.text
    if logical is ColumnType.BOOL:
        return _int
    return None


async def server_settings(cursor: Any) -> str:
    """The server's version and the settings that decide what a commit costs."""
    names = ("innodb_flush_log_at_trx_commit", "sync_binlog", "log_bin",
             "innodb_doublewrite", "innodb_buffer_pool_size")  # fmt: skip
    await cursor.execute(f"SELECT VERSION(), {', '.join(f'@@{name}' for name in names)}")
    version, *values = await cursor.fetchone()
    flavour = "MariaDB" if "mariadb" in str(version).lower() else "MySQL"
    settings = ", ".join(f"{name}={value}" for name, value in zip(names, values, strict=True))
    return f"{flavour} {str(version).split('-')[0]}: {settings}"


class RawMySql(raw_server.RawTables):
    """An asyncmy pool on a scratch database holding chatledger's tables."""

    name = "raw asyncmy"
    paramstyle = "format"
    batch_methods: tuple[str, ...] = (EXECUTEMANY,)

    @classmethod
    async def open(cls, url: str, connections: int) -> RawMySql:
        """A pool of exactly ``connections`` autocommit connections on ``url``."""
        import asyncmy

        pool = await asyncmy.create_pool(
            minsize=connections, maxsize=connections, **mysql_connect_options(url)
        )
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position"
            )
            catalog = await cursor.fetchall()
        return cls(pool, raw_server.layouts(((r[0], r[1], r[2]) for r in catalog), _encoder))

    async def save_each(self, work: Sequence[Sequence[Row]], *, touch_session: bool) -> Rate:
        """One caller per list of messages, each INSERT (and session update) one transaction."""
        layout = self._layouts[raw_server.TABLES["message"]]
        insert = self._sql[layout.table]
        when, session = self._touch_from

        async def save(row: Row) -> None:
            params = layout.encode(row)
            async with self._pool.acquire() as conn, conn.cursor() as cursor:
                if touch_session:
                    await conn.begin()
                    await cursor.execute(insert, params)
                    await cursor.execute(self._touch, (params[when], params[session]))
                    await conn.commit()
                else:
                    await cursor.execute(insert, params)

        return await callers_rate(work, save)

    async def save_batches(
        self, table: str, batches: Sequence[Sequence[Row]], method: str, *, touch_session: bool
    ) -> Rate:
        """Each batch one ``executemany`` (multi-row INSERTs) and COMMIT; the first untimed."""
        if method != EXECUTEMANY:
            raise ValueError(f"asyncmy has no batch method {method!r}")
        layout = self._layouts[table]
        insert = self._sql[table]
        when, session = self._touch_from
        async with self._pool.acquire() as conn, conn.cursor() as cursor:

            async def save(batch: Sequence[Row]) -> None:
                records = [layout.encode(row) for row in batch]
                await conn.begin()
                await cursor.executemany(insert, records)
                if touch_session:
                    await cursor.execute(self._touch, (records[-1][when], records[-1][session]))
                await conn.commit()

            return await timed_batches(batches, save, 1)

    async def recent_messages(self, session_id: Any, limit: int) -> list[Any]:
        """The history SELECT on a pooled connection; asyncmy's tuples, oldest first."""
        async with self._pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(self._recent, (session_id, limit))
            rows = list(await cursor.fetchall())
        rows.reverse()
        return rows

    async def aggregate(self, where: str, params: Sequence[Any]) -> Sequence[Any]:
        """The plain usage aggregate over ``where``."""
        async with self._pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(placeholders(AGGREGATE + where, "format"), tuple(params))
            return tuple(await cursor.fetchone())

    async def replay(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``(sql, params)`` as given on one pooled connection, fetching every row."""
        async with self._pool.acquire() as conn, conn.cursor() as cursor:
            for sql, params in statements:
                await cursor.execute(sql, tuple(params))
                await cursor.fetchall()

    async def bulk_load(self, loads: Sequence[tuple[str, Iterable[Row]]]) -> int:
        """Multi-row INSERTs of each ``(table, rows)``, its droppable indexes rebuilt after."""
        total = 0
        async with self._pool.acquire() as conn, conn.cursor() as cursor:
            # A fixture consistent by construction: messages reference sessions loaded
            # after them, and nothing here can break a unique key.
            await cursor.execute("SET foreign_key_checks = 0, unique_checks = 0")
            try:
                for table, rows in loads:
                    layout = self._layouts[table]
                    keys = await _droppable_keys(cursor, table)
                    if keys:
                        drops = ", ".join(f"DROP INDEX {name}" for name, _ in keys)
                        await cursor.execute(f"ALTER TABLE {table} {drops}")
                    insert = self._sql[table]
                    # In primary-key order: InnoDB keeps a table in that order, and appending
                    # to it is several times cheaper than inserting at random places.
                    records = sorted(map(layout.encode, rows), key=itemgetter(0))
                    for start in range(0, len(records), _CHUNK):
                        total += await _insert(
                            conn, cursor, insert, records[start : start + _CHUNK]
                        )
                    if keys:
                        adds = ", ".join(f"ADD {ddl}" for _, ddl in keys)
                        await cursor.execute(f"ALTER TABLE {table} {adds}")
                    await cursor.execute(f"ANALYZE TABLE {table}")
                    await cursor.fetchall()
            finally:
                await cursor.execute("SET foreign_key_checks = 1, unique_checks = 1")
        return total

    async def settings(self) -> str:
        """The server's version and the settings that decide what a commit costs."""
        async with self._pool.acquire() as conn, conn.cursor() as cursor:
            return await server_settings(cursor)

    async def close(self) -> None:
        """Close the pool."""
        self._pool.close()
        await self._pool.wait_closed()


async def _insert(conn: Any, cursor: Any, insert: str, chunk: list[tuple[Any, ...]]) -> int:
    if not chunk:
        return 0
    await conn.begin()
    await cursor.executemany(insert, chunk)
    await conn.commit()
    return len(chunk)


async def _droppable_keys(cursor: Any, table: str) -> list[tuple[str, str]]:
    """Secondary indexes (name, DDL) that no foreign key needs, from SHOW CREATE TABLE."""
    await cursor.execute(
        "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = "
        "DATABASE() AND table_name = %s AND referenced_table_name IS NOT NULL",
        (table,),
    )
    referencing = {row[0] for row in await cursor.fetchall()}
    await cursor.execute(f"SHOW CREATE TABLE {table}")
    (_, ddl) = await cursor.fetchone()
    keys = []
    for line in ddl.splitlines():
        line = line.strip().rstrip(",")
        if not line.startswith("KEY `"):
            continue
        name = line.split("`")[1]
        first_column = line.split("(", 1)[1].split("`")[1]
        if first_column not in referencing:  # InnoDB needs an index behind each foreign key
            keys.append((name, line))
    return keys
