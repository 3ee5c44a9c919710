"""The PostgreSQL baseline: the same work done with asyncpg and nothing else.

It writes into the tables chatledger created on the scratch database, binds
UUIDs, times and numbers as native values (asyncpg's binary protocol), JSON
as text, and reads the rows back without decoding them any further. Batches
go either through ``executemany`` or ``COPY`` (``copy_records_to_table``,
binary), both inside one transaction per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from benchmarks import raw_server
from benchmarks.bulk_load import Encoder
from benchmarks.measure import Rate, callers_rate, timed_batches
from benchmarks.raw_sql import AGGREGATE, placeholders
from benchmarks.workload import Row
from chatledger.stores.schema import Column, ColumnType

if TYPE_CHECKING:
    import asyncpg

__all__ = ["COPY", "EXECUTEMANY", "RawPostgres", "connect", "copy_rows", "server_settings"]

COPY = "COPY"
EXECUTEMANY = "executemany"
_CHUNK = 50_000  # rows per COPY when loading a fixture


def _encoder(column: Column, udt: str) -> Encoder | None:
    """How asyncpg binds a value of ``column``, stored as PostgreSQL type ``udt``."""
    kind = column.type
    if kind is ColumnType.JSON:
        return raw_server.json_text  # asyncpg's json and jsonb codecs take text
    if kind is ColumnType.TIME:
        return None if udt == "timestamptz" else raw_server.naive_utc
    if kind is ColumnType.MONEY:
        return None if udt == "numeric" else raw_server.as_float
    if kind is ColumnType.UUID:
        return None if udt == "uuid" else raw_server.text
    if kind in (ColumnType.TEXT, ColumnType.SHORT_TEXT):
        return raw_server.text
    return None


async def connect(url: str) -> asyncpg.Connection[Any]:
    """One asyncpg connection to ``url``."""
    import asyncpg

    return await asyncpg.connect(url)


async def server_settings(conn: asyncpg.Connection[Any]) -> str:
    """The server's version and the settings that decide what a commit costs."""
    version = await conn.fetchval("SHOW server_version")
    settings = [
        f"{name}={await conn.fetchval(f'SHOW {name}')}"
        for name in ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
    ]
    return f"PostgreSQL {version.split()[0]}: {', '.join(settings)}"


async def copy_rows(
    conn: asyncpg.Connection[Any], table: str, columns: Sequence[str], records: Iterable[Any]
) -> int:
    """``COPY`` ``records`` into ``table`` in chunks (one transaction each); return the rows."""
    total = 0
    chunk: list[Any] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == _CHUNK:
            await conn.copy_records_to_table(table, records=chunk, columns=list(columns))
            total += len(chunk)
            chunk = []
    if chunk:
        await conn.copy_records_to_table(table, records=chunk, columns=list(columns))
    return total + len(chunk)


class RawPostgres(raw_server.RawTables):
    """An asyncpg pool on a scratch database holding chatledger's tables."""

    name = "raw asyncpg"
    paramstyle = "numeric"
    batch_methods: tuple[str, ...] = (COPY, EXECUTEMANY)

    @classmethod
    async def open(cls, url: str, connections: int) -> RawPostgres:
        """A pool of exactly ``connections`` connections on ``url``."""
        import asyncpg

        pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
        async with pool.acquire() as conn:
            catalog = await conn.fetch(
                "SELECT table_name, column_name, udt_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
            )
        return cls(pool, raw_server.layouts(((r[0], r[1], r[2]) for r in catalog), _encoder))

    async def save_each(self, work: Sequence[Sequence[Row]], *, touch_session: bool) -> Rate:
        """One caller per list of messages, each INSERT (and session update) one transaction."""
        layout = self._layouts[raw_server.TABLES["message"]]
        insert = self._sql[layout.table]
        when, session = self._touch_from

        async def save(row: Row) -> None:
            params = layout.encode(row)
            async with self._pool.acquire() as conn:
                if touch_session:
                    async with conn.transaction():
                        await conn.execute(insert, *params)
                        await conn.execute(self._touch, params[when], params[session])
                else:
                    await conn.execute(insert, *params)

        return await callers_rate(work, save)

    async def save_batches(
        self, table: str, batches: Sequence[Sequence[Row]], method: str, *, touch_session: bool
    ) -> Rate:
        """Each batch in one transaction, by ``COPY`` or ``executemany``; the first untimed."""
        layout = self._layouts[table]
        insert = self._sql[table]
        when, session = self._touch_from
        columns = list(layout.columns)
        async with self._pool.acquire() as conn:

            async def save(batch: Sequence[Row]) -> None:
                records = [layout.encode(row) for row in batch]
                async with conn.transaction():
                    if method == COPY:
                        await conn.copy_records_to_table(table, records=records, columns=columns)
                    else:
                        await conn.executemany(insert, records)
                    if touch_session:
                        await conn.execute(self._touch, records[-1][when], records[-1][session])

            return await timed_batches(batches, save, 1)

    async def recent_messages(self, session_id: Any, limit: int) -> list[Any]:
        """The history SELECT on a pooled connection; asyncpg's records, oldest first."""
        async with self._pool.acquire() as conn:
            rows: list[Any] = await conn.fetch(self._recent, session_id, limit)
        rows.reverse()
        return rows

    async def aggregate(self, where: str, params: Sequence[Any]) -> Sequence[Any]:
        """The plain usage aggregate over ``where``."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(placeholders(AGGREGATE + where, "numeric"), *params)
        return tuple(row or ())

    async def replay(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``(sql, params)`` as given on one pooled connection, fetching every row."""
        async with self._pool.acquire() as conn:
            for sql, params in statements:
                await conn.fetch(sql, *params)

    async def bulk_load(self, loads: Sequence[tuple[str, Iterable[Row]]]) -> int:
        """``COPY`` each ``(table, rows)`` with its secondary indexes dropped, then rebuilt."""
        total = 0
        async with self._pool.acquire() as conn:
            # A fixture consistent by construction: skip the per-row foreign-key triggers
            # (messages reference sessions loaded after them) and the wait for each flush.
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("SET synchronous_commit = off")
            await conn.execute("SET maintenance_work_mem = '256MB'")
            try:
                for table, rows in loads:
                    layout = self._layouts[table]
                    indexes = await conn.fetch(
                        "SELECT indexname, indexdef FROM pg_indexes "
                        "WHERE schemaname = current_schema() AND tablename = $1 AND indexname "
                        "NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass)",
                        table,
                    )
                    for name, _ in indexes:
                        await conn.execute(f"DROP INDEX {name}")
                    total += await copy_rows(
                        conn, table, layout.columns, (layout.encode(row) for row in rows)
                    )
                    for _, ddl in indexes:
                        await conn.execute(ddl)
                    await conn.execute(f"ANALYZE {table}")
            finally:
                await conn.execute("RESET ALL")
        return total

    async def settings(self) -> str:
        """The server's version and the settings that decide what a commit costs."""
        async with self._pool.acquire() as conn:
            return await server_settings(conn)

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()
