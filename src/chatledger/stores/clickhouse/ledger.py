"""``ClickHouseLedger``: a store that keeps its API calls in ClickHouse too, for statistics.

It wraps a primary store (SQLite, PostgreSQL, MySQL or memory) and is one
itself, so the recorder, the CLI and the dashboard use it unchanged. Every
record is read from and written to the primary, which stays the source of
truth; on top of that:

- ``save_api_call(s)`` and ``ingest_records`` write the primary first, then
  insert the calls into ClickHouse (and the messages, with ``messages=True``);
- ``delete_api_call`` and ``cleanup_old_records`` write a tombstone for each
  deleted call, which takes it out of the rollup again; message deletions
  are mirrored with ``DELETE FROM``;
- ``get_statistics`` and ``get_usage_breakdown`` are answered by ClickHouse
  (:mod:`chatledger.stores.clickhouse.usage`), equal to the primary's answers.

Exactly once. A materialised rollup counts every row inserted, so each call
must arrive once. chatledger never saves a call twice (an id is written
once, in its final state: a reused id is a ``ConstraintError``, and
``ingest_records`` skips stored ids), so only a retry can repeat one: the
shipper ships a batch again when the primary committed but ClickHouse failed
(or answered too late). Two guards make a retry harmless: before inserting,
the ledger reads which of the batch's calls ClickHouse holds (live) and
inserts only the others; and that insert carries an
``insert_deduplication_token`` made of those calls' ids and states, so an
earlier attempt still in flight with the same calls is dropped by ClickHouse
(the rollup's view is deduplicated with it).

If ClickHouse fails after the primary committed, the error is raised (a
:class:`~chatledger.errors.StoreConnectionError` or
:class:`~chatledger.errors.QueryError`): the shipper retries the batch, which
then reaches ClickHouse alone. A direct ``save_api_call`` cannot be retried
(its id is taken): ``rebuild_rollups()`` copies what ClickHouse misses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

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
)
from chatledger.stores.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    Bucket,
    GroupKey,
    PersistenceStore,
    RecordKind,
    StoreLifecycle,
    check_breakdown_args,
    check_breakdown_limit,
    check_cutoff,
    check_erased_user,
    first_of_each_id,
)
from chatledger.stores.clickhouse.client import (
    ClickHouseClient,
    deduplication_setting,
    open_client,
)
from chatledger.stores.clickhouse.schema import (
    CALL_COLUMNS,
    MESSAGE_COLUMNS,
    LedgerTables,
    call_row,
    message_row,
    schema_statements,
    time_text,
)
from chatledger.stores.clickhouse.usage import read_breakdown

__all__ = ["ClickHouseLedger"]

logger = logging.getLogger(__name__)

_CHUNK = 1000  # calls per existence check and insert
_COPY_CHUNK = 5000  # calls per chunk that rebuild_rollups copies from the primary
_TIME = "DateTime64(6, 'UTC')"
_NIL = "toUUID('00000000-0000-0000-0000-000000000000')"
# What erasure does to a call (base.PersistenceStore.erase_user): ids to nil, texts dropped.
_ANONYMISED = {
    "user_id": _NIL,
    "chat_session_id": _NIL,
    "request_message_id": _NIL,
    "response_message_id": _NIL,
    "error_message": "CAST(NULL AS Nullable(String))",
    "api_response_id": "CAST(NULL AS Nullable(String))",
}
_NOT_ANONYMISED = " OR ".join(
    f"{column} != {value}" if value == _NIL else f"{column} IS NOT NULL"
    for column, value in _ANONYMISED.items()
)
_T = TypeVar("_T")


async def _closing(chunks: AsyncIterator[_T]) -> AsyncIterator[_T]:
    """``chunks`` to the end, then closed: an async generator holds a frame to end."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        finish = getattr(chunks, "aclose", None)
        if finish is not None:
            await finish()


def _token(*parts: object) -> str:
    """A deduplication token: the digest of what makes an insert what it is."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()


class ClickHouseLedger(StoreLifecycle):
    """A primary store whose API calls are also kept in ClickHouse, which answers statistics.

    ``ClickHouseLedger(primary, client)`` takes both over: ``close()`` closes
    them. Open one with :meth:`open` (an open client and store) or
    :meth:`connect` (URLs). ``messages=True`` mirrors messages too.
    """

    backend_name = "clickhouse"

    def __init__(
        self,
        primary: PersistenceStore,
        client: ClickHouseClient,
        *,
        messages: bool = False,
    ) -> None:
        """Wrap ``primary``; call :meth:`create_schema` (or use :meth:`open`) before use."""
        if isinstance(primary, ClickHouseLedger):
            raise TypeError("the primary store of a ClickHouseLedger cannot be a ledger itself")
        self._primary = primary
        self._client = client
        self._tables = LedgerTables(client.database)
        self._messages = messages

    @classmethod
    async def open(
        cls,
        primary: PersistenceStore,
        client: ClickHouseClient,
        *,
        messages: bool = False,
        cluster: str | None = None,
        create_schema: bool = True,
    ) -> ClickHouseLedger:
        """A ledger over ``primary`` and ``client``, its ClickHouse tables created if missing."""
        ledger = cls(primary, client, messages=messages)
        if create_schema:
            try:
                await ledger.create_schema(cluster=cluster)
            except BaseException:
                await ledger.close()
                raise
        return ledger

    @classmethod
    async def connect(
        cls,
        url: str,
        primary: PersistenceStore | str,
        *,
        messages: bool = False,
        cluster: str | None = None,
        create_schema: bool = True,
    ) -> ClickHouseLedger:
        """A ledger on the ClickHouse ``url`` names, over ``primary`` (a store, or its URL).

        ``url``: ``chdb:///path/to/dir`` (in this process), ``chdb://`` (in
        memory) or ``clickhouse://user:password@host:8123/database``.
        """
        client = await asyncio.to_thread(open_client, url)  # a server's handshake blocks
        try:
            if isinstance(primary, str):
                from chatledger.stores import connect as connect_store

                primary = await connect_store(primary)
        except BaseException:
            await client.close()
            raise
        return await cls.open(
            primary, client, messages=messages, cluster=cluster, create_schema=create_schema
        )

    async def create_schema(self, *, cluster: str | None = None) -> None:
        """Create the ledger's database, tables and view in ClickHouse where missing."""
        for statement in schema_statements(self._tables, messages=self._messages, cluster=cluster):
            await self._client.command(statement)

    # -- what it is --------------------------------------------------------------

    @property
    def primary(self) -> PersistenceStore:
        """The store every record is read from and written to."""
        return self._primary

    @property
    def client(self) -> ClickHouseClient:
        """The ClickHouse client statistics are read through."""
        return self._client

    @property
    def location(self) -> str | None:
        """Where both databases are (never a password); None when the primary has no location.

        Recorders spool per location: a ledger's spool is its own, apart from
        one of its primary alone, since what it holds must reach ClickHouse too.
        """
        where = getattr(self._primary, "location", None)
        if not isinstance(where, str):
            return None
        return f"{self._primary.backend_name}:{where}+clickhouse:{self._client.location}"

    async def schema_version(self) -> int:
        """The schema version of the primary store (ClickHouse's tables are the ledger's own)."""
        self._check_open()
        return await self._primary.schema_version()

    def __repr__(self) -> str:
        """The primary store and where ClickHouse is (never a password)."""
        state = "closed" if self._closed else "open"
        return f"<ClickHouseLedger {state} primary={self._primary!r} clickhouse={self._client!r}>"

    async def _release(self) -> None:
        """Close the primary store, then the ClickHouse client."""
        try:
            await self._primary.close()
        finally:
            await self._client.close()

    # -- mirroring writes into ClickHouse ------------------------------------------

    async def _call_states(self, chunk: Sequence[LLMApiCall]) -> dict[uuid.UUID, tuple[int, bool]]:
        """Of ``chunk``'s calls, those ClickHouse has a row of: last revision, and whether live."""
        rows = await self._client.query(
            f"SELECT toString(id), max(revision), argMax(is_deleted, revision) "
            f"FROM {self._tables.calls} WHERE tenant_id IN {{tenants:Array(UUID)}} "
            f"AND create_time >= {{low:{_TIME}}} AND create_time <= {{high:{_TIME}}} "
            "AND id IN {ids:Array(UUID)} GROUP BY id",
            {
                "tenants": sorted({str(call.tenant_id) for call in chunk}),
                "low": time_text(min(call.create_time for call in chunk)),
                "high": time_text(max(call.create_time for call in chunk)),
                "ids": [str(call.id) for call in chunk],
            },
        )
        return {uuid.UUID(row[0]): (int(row[1]), int(row[2]) == 0) for row in rows}

    async def _mirror_calls(self, calls: Sequence[LLMApiCall], salt: str = "") -> int:
        """Insert into ClickHouse those of ``calls`` it does not hold live; return how many."""
        batch = first_of_each_id(calls)
        inserted = 0
        for start in range(0, len(batch), _CHUNK):
            chunk = batch[start : start + _CHUNK]
            states = await self._call_states(chunk)
            fresh = [call for call in chunk if not states.get(call.id, (0, False))[1]]
            if not fresh:
                continue
            seen = [states.get(call.id, (0, False))[0] for call in fresh]
            token = _token(
                "calls", salt, *(f"{c.id}@{r}" for c, r in zip(fresh, seen, strict=True))
            )
            now = time.time_ns()
            rows = [
                call_row(call, max(now, last + 1)) for call, last in zip(fresh, seen, strict=True)
            ]
            await self._client.insert(self._tables.calls, CALL_COLUMNS, rows, token=token)
            inserted += len(fresh)
        if inserted:
            logger.debug("mirrored %d API calls into ClickHouse", inserted)
        return inserted

    async def _tombstone(self, where: str, params: dict[str, Any]) -> None:
        """Write a tombstone for every live call ``where`` selects: the rollup subtracts it."""
        state = await self._client.query(
            f"SELECT count(), max(revision), sum(cityHash64(id)) "
            f"FROM {self._tables.calls} FINAL WHERE {where}",
            params,
        )
        count, last, fingerprint = (int(value) for value in state[0])
        if count == 0:
            return
        token = _token("delete", where, sorted(params.items()), count, last, fingerprint)
        replaced = {
            "revision": "greatest(revision + 1, {revision:UInt64})",
            "is_deleted": "toUInt8(1)",
        }
        selected = ", ".join(
            f"{replaced[name]} AS {name}" if name in replaced else name for name in CALL_COLUMNS
        )
        await self._client.command(
            f"INSERT INTO {self._tables.calls} ({', '.join(CALL_COLUMNS)}) "
            f"{deduplication_setting(token)} "
            # (the WHERE in a subquery: ClickHouse would read the aliases above into it)
            f"SELECT {selected} FROM (SELECT * FROM {self._tables.calls} FINAL WHERE {where})",
            {**params, "revision": time.time_ns()},
        )
        logger.debug("wrote %d API-call tombstones into ClickHouse", count)

    async def _anonymise(self, where: str, params: dict[str, Any]) -> None:
        """Anonymise every live call ``where`` selects, as erasure does in the primary.

        Each call gets two rows in one insert: a tombstone of what it was (the
        rollup subtracts it under its user) and the anonymised call at a later
        revision (the rollup adds it under the nil user), which ``FINAL`` keeps.
        """
        where = f"({where}) AND ({_NOT_ANONYMISED})"
        state = await self._client.query(
            f"SELECT count(), max(revision), sum(cityHash64(id)) "
            f"FROM {self._tables.calls} FINAL WHERE {where}",
            params,
        )
        count, last, fingerprint = (int(value) for value in state[0])
        if count == 0:
            return
        token = _token("anonymise", where, sorted(params.items()), count, last, fingerprint)
        changed = {
            "revision": "greatest(revision + 1, {revision:UInt64}) + version",
            "is_deleted": "toUInt8(version = 0)",
            **{
                column: f"if(version = 1, {value}, {column})"
                for column, value in _ANONYMISED.items()
            },
        }
        selected = ", ".join(
            f"{changed[name]} AS {name}" if name in changed else name for name in CALL_COLUMNS
        )
        await self._client.command(
            f"INSERT INTO {self._tables.calls} ({', '.join(CALL_COLUMNS)}) "
            f"{deduplication_setting(token)} "
            f"SELECT {selected} FROM (SELECT * FROM {self._tables.calls} FINAL WHERE {where}) "
            "ARRAY JOIN [0, 1] AS version",
            {**params, "revision": time.time_ns()},
        )
        logger.debug("anonymised %d API calls in ClickHouse", count)

    async def _session_ids(self, query: QueryFilter) -> list[uuid.UUID]:
        """The ids of the primary's sessions ``query`` selects (as ``export_records`` does)."""
        found: list[uuid.UUID] = []
        async for chunk in _closing(self._primary.export_records("sessions", query)):
            found += [uuid.UUID(record["id"]) for record in chunk]
        return found

    async def _mirror_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Insert ``messages`` into ClickHouse (a repeat collapses: same id, later revision)."""
        if not self._messages or not messages:
            return
        batch = first_of_each_id(messages)
        revision = time.time_ns()
        for start in range(0, len(batch), _CHUNK):
            chunk = batch[start : start + _CHUNK]
            rows = [message_row(message, revision) for message in chunk]
            token = _token("messages", revision, *(message.id for message in chunk))
            await self._client.insert(self._tables.messages, MESSAGE_COLUMNS, rows, token=token)

    async def _delete_messages(self, column: str, values: Sequence[uuid.UUID]) -> None:
        if not self._messages or not values:
            return
        for start in range(0, len(values), _CHUNK):
            chunk = [str(value) for value in values[start : start + _CHUNK]]
            await self._client.command(
                f"DELETE FROM {self._tables.messages} WHERE {column} IN {{ids:Array(UUID)}}",
                {"ids": chunk},
            )

    # -- messages ------------------------------------------------------------------

    async def save_message(self, message: LLMMessage) -> None:
        """Store one message; its session must exist."""
        await self._primary.save_message(message)
        await self._mirror_messages([message])

    async def save_messages(self, messages: Sequence[LLMMessage]) -> None:
        """Store all of ``messages`` in one transaction, or none of them."""
        await self._primary.save_messages(messages)
        await self._mirror_messages(messages)

    async def get_message(self, message_id: uuid.UUID) -> LLMMessage | None:
        """The message with ``message_id``, or None."""
        return await self._primary.get_message(message_id)

    async def get_session_messages(self, session_id: uuid.UUID) -> list[LLMMessage]:
        """Every message of a session, oldest first."""
        return await self._primary.get_session_messages(session_id)

    async def get_session_messages_paginated(
        self, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[LLMMessage]:
        """A page of a session's messages, oldest first."""
        return await self._primary.get_session_messages_paginated(session_id, offset, limit)

    async def get_recent_messages(self, session_id: uuid.UUID, limit: int) -> list[LLMMessage]:
        """The newest ``limit`` messages of a session, returned oldest first."""
        return await self._primary.get_recent_messages(session_id, limit)

    async def delete_message(self, message_id: uuid.UUID) -> bool:
        """Delete one message; True when it existed."""
        existed = await self._primary.delete_message(message_id)
        await self._delete_messages("id", [message_id])
        return existed

    async def delete_session_messages(self, session_id: uuid.UUID) -> int:
        """Delete a session's messages; return how many there were."""
        count = await self._primary.delete_session_messages(session_id)
        await self._delete_messages("chat_session_id", [session_id])
        return count

    async def count_session_messages(self, session_id: uuid.UUID) -> int:
        """How many messages a session has."""
        return await self._primary.count_session_messages(session_id)

    async def count_messages_by_session(
        self, session_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """How many messages each of ``session_ids`` has (0 for one without any)."""
        return await self._primary.count_messages_by_session(session_ids)

    # -- API calls -----------------------------------------------------------------

    async def save_api_call(self, call: LLMApiCall) -> None:
        """Store one API-call record, in the primary and then in ClickHouse."""
        await self._primary.save_api_call(call)
        await self._mirror_calls([call])

    async def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store all of ``calls`` in the primary (one transaction), then in ClickHouse."""
        await self._primary.save_api_calls(calls)
        await self._mirror_calls(calls)

    async def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The API call with ``call_id``, or None."""
        return await self._primary.get_api_call(call_id)

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Calls matching ``query``, newest first (limit 100 unless it says otherwise)."""
        return await self._primary.query_api_calls(query)

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over every call matching ``query``, from ClickHouse."""
        self._check_open()
        (row,) = await read_breakdown(self._client, self._tables, query, (), None, None)
        return row.stats

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Statistics per group of ``group_by`` keys and per UTC time bucket, from ClickHouse."""
        keys = check_breakdown_args(group_by, bucket)
        check_breakdown_limit(limit)
        self._check_open()
        return await read_breakdown(self._client, self._tables, query, keys, bucket, limit)

    async def calls_for_messages(self, message_ids: Sequence[uuid.UUID]) -> list[LLMApiCall]:
        """The calls whose response or request message is among ``message_ids``."""
        return await self._primary.calls_for_messages(message_ids)

    async def page_api_calls(
        self,
        query: QueryFilter,
        *,
        sort: CallSort | str = CallSort.NEWEST,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> CallPage:
        """One page of the calls matching ``query`` in ``sort`` order, after ``cursor``."""
        return await self._primary.page_api_calls(query, sort=sort, cursor=cursor, limit=limit)

    async def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one API-call record; True when it existed. ClickHouse gets a tombstone."""
        stored = await self._primary.get_api_call(call_id)
        existed = await self._primary.delete_api_call(call_id)
        where = "id = {id:UUID}"
        params: dict[str, Any] = {"id": str(call_id)}
        if stored is not None:  # its tenant and day find it through the table's order
            where += f" AND tenant_id = {{tenant:UUID}} AND create_time = {{time:{_TIME}}}"
            params |= {"tenant": str(stored.tenant_id), "time": time_text(stored.create_time)}
        await self._tombstone(where, params)
        return existed

    async def cleanup_old_records(self, before: datetime) -> int:
        """Delete API-call records with ``create_time < before``; return how many."""
        count = await self._primary.cleanup_old_records(before)
        await self._tombstone(f"create_time < {{before:{_TIME}}}", {"before": time_text(before)})
        return count

    async def rebuild_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the primary's rollups, then copy its calls into ClickHouse anew.

        ClickHouse's calls and rollup are emptied and every call of the
        primary copied again, so calls written or deleted around chatledger
        are counted as the primary holds them. Statistics read from
        ClickHouse count part of the calls until it ends. Returns how many
        calls ClickHouse counts.
        """
        self._check_open()
        expected = await self._primary.count_records("api_calls", QueryFilter())
        total = 3 + math.ceil(expected / _COPY_CHUNK)
        done = 0

        def step() -> None:
            nonlocal done, total
            done += 1
            total = max(total, done + 1)
            if progress is not None:
                progress(done, total)

        await self._primary.rebuild_rollups()
        step()
        await self._client.command(f"TRUNCATE TABLE IF EXISTS {self._tables.calls}")
        await self._client.command(f"TRUNCATE TABLE IF EXISTS {self._tables.rollup}")
        step()
        salt = f"rebuild-{time.time_ns()}"  # tokens of earlier inserts may outlive TRUNCATE
        chunks = self._primary.export_records("api_calls", QueryFilter(), chunk_size=_COPY_CHUNK)
        async for chunk in _closing(chunks):
            await self._mirror_calls([LLMApiCall.model_validate(r) for r in chunk], salt)
            step()
        (row,) = await self._client.query(f"SELECT sum(calls) FROM {self._tables.rollup}")
        counted = int(row[0] or 0)
        done += 1
        if progress is not None:
            progress(done, done)
        logger.info("ClickHouse ledger rebuilt: %d API calls", counted)
        return counted

    async def seal_periods(self) -> int:
        """Seal the primary's rollups (ClickHouse's needs no sealing); return how many."""
        return await self._primary.seal_periods()

    # -- sessions ------------------------------------------------------------------

    async def create_session(self, session: ChatSession) -> None:
        """Store a new session."""
        await self._primary.create_session(session)

    async def get_session(self, session_id: uuid.UUID) -> ChatSession | None:
        """The session with ``session_id``, or None."""
        return await self._primary.get_session(session_id)

    async def get_user_sessions(self, user_id: uuid.UUID) -> list[ChatSession]:
        """A user's sessions, most recently updated first."""
        return await self._primary.get_user_sessions(user_id)

    async def update_session(self, session: ChatSession) -> None:
        """Replace a stored session; NotFoundError when it does not exist."""
        await self._primary.update_session(session)

    async def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete a session and its messages (API calls stay); True when it existed."""
        existed = await self._primary.delete_session(session_id)
        await self._delete_messages("chat_session_id", [session_id])
        return existed

    async def list_sessions(self, query: QueryFilter) -> list[ChatSession]:
        """Sessions matching ``query``, most recently active first."""
        return await self._primary.list_sessions(query)

    async def cleanup_old_sessions(self, before: datetime) -> int:
        """Delete sessions with ``update_time < before`` and their messages; return how many."""
        check_cutoff(before)
        doomed: list[uuid.UUID] = []
        if self._messages:
            doomed = await self._session_ids(QueryFilter(end_time=before))
        count = await self._primary.cleanup_old_sessions(before)
        # a session touched meanwhile was kept, and keeps its messages
        gone = [session for session in doomed if await self._primary.get_session(session) is None]
        await self._delete_messages("chat_session_id", gone)
        return count

    async def search_sessions(
        self,
        query: SessionQuery,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> SessionPage:
        """One page of the sessions ``query`` selects, newest first."""
        return await self._primary.search_sessions(query, cursor=cursor, limit=limit)

    # -- batch ingest, counting, exporting -------------------------------------------

    async def ingest_records(
        self,
        sessions: Sequence[ChatSession] = (),
        messages: Sequence[LLMMessage] = (),
        calls: Sequence[LLMApiCall] = (),
    ) -> None:
        """Store every record not stored yet, in the primary (one transaction), then in ClickHouse.

        A batch shipped again after a ClickHouse failure reaches ClickHouse
        once: the calls it holds already are not inserted again.
        """
        await self._primary.ingest_records(sessions, messages, calls)
        await self._mirror_messages(messages)
        await self._mirror_calls(calls)

    async def count_records(self, kind: RecordKind, query: QueryFilter) -> int:
        """How many records ``export_records(kind, query)`` yields."""
        return await self._primary.count_records(kind, query)

    async def export_records(
        self, kind: RecordKind, query: QueryFilter, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every record of ``kind`` matching ``query``, in id order, from the primary."""
        async for chunk in _closing(
            self._primary.export_records(kind, query, chunk_size=chunk_size)
        ):
            yield chunk

    # -- erasure -------------------------------------------------------------------

    async def erase_user(self, user_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase a user in the primary (one transaction), then anonymise their calls in ClickHouse.

        The rollup moves their calls' usage to the nil user, as the primary's
        rollups do; mirrored messages of theirs, and of their sessions, are deleted.
        """
        check_erased_user(user_id)
        sessions: list[uuid.UUID] = []
        if self._messages and not dry_run:
            sessions = await self._session_ids(QueryFilter(user_id=user_id))
        report = await self._primary.erase_user(user_id, dry_run=dry_run)
        if not dry_run:
            await self._anonymise("user_id = {subject:UUID}", {"subject": str(user_id)})
            await self._delete_messages("user_id", [user_id])
            await self._delete_messages("chat_session_id", sessions)
        return report

    async def erase_tenant(self, tenant_id: uuid.UUID, *, dry_run: bool = False) -> ErasureReport:
        """Erase a tenant in the primary, then anonymise its calls in ClickHouse (tenant kept)."""
        report = await self._primary.erase_tenant(tenant_id, dry_run=dry_run)
        if not dry_run:
            await self._anonymise("tenant_id = {subject:UUID}", {"subject": str(tenant_id)})
            await self._delete_messages("tenant_id", [tenant_id])
        return report

    # -- providers and agents ------------------------------------------------------

    async def save_provider(self, provider: Provider) -> None:
        """Insert or replace a provider."""
        await self._primary.save_provider(provider)

    async def get_provider(self, provider_id: uuid.UUID) -> Provider | None:
        """The provider with ``provider_id``, or None."""
        return await self._primary.get_provider(provider_id)

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        """A tenant's provider called ``name``, or None."""
        return await self._primary.get_provider_by_name(tenant_id, name)

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's providers, by name."""
        return await self._primary.list_providers(tenant_id)

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        """A tenant's enabled providers, by name."""
        return await self._primary.get_enabled_providers(tenant_id)

    async def delete_provider(self, provider_id: uuid.UUID) -> bool:
        """Delete a provider and its agents; True when it existed."""
        return await self._primary.delete_provider(provider_id)

    async def save_agent(self, agent: Agent) -> None:
        """Insert or replace an agent; its provider must exist."""
        await self._primary.save_agent(agent)

    async def get_agent(self, agent_id: uuid.UUID) -> Agent | None:
        """The agent with ``agent_id``, or None."""
        return await self._primary.get_agent(agent_id)

    async def get_agent_by_code(self, code: str) -> Agent | None:
        """The agent with ``code``, or None."""
        return await self._primary.get_agent_by_code(code)

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        """A tenant's agent with ``code``, or None."""
        return await self._primary.get_agent_by_code_and_tenant(tenant_id, code)

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's agents, by order then code."""
        return await self._primary.list_agents(tenant_id)

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """A tenant's active agents, by order then code."""
        return await self._primary.get_active_agents(tenant_id)

    async def get_agent_with_provider(self, agent_id: uuid.UUID) -> AgentConfig | None:
        """An agent and its provider, or None."""
        return await self._primary.get_agent_with_provider(agent_id)

    async def get_agent_by_code_with_provider(self, code: str) -> AgentConfig | None:
        """The agent with ``code`` and its provider, or None."""
        return await self._primary.get_agent_by_code_with_provider(code)

    async def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID, code: str
    ) -> AgentConfig | None:
        """A tenant's agent with ``code`` and its provider, or None."""
        return await self._primary.get_agent_by_code_and_tenant_with_provider(tenant_id, code)

    async def delete_agent(self, agent_id: uuid.UUID) -> bool:
        """Delete an agent; True when it existed."""
        return await self._primary.delete_agent(agent_id)
