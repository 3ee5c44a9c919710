"""The shipper: moves spooled records to the store in batches, idempotently, in order.

It is the one drain of the package. Every record reaches the store through
:meth:`Shipper.ship`, whatever recorded it. A batch goes to the store's
``ingest_records`` (one transaction; records already stored are skipped, so
a batch whose commit was acknowledged by nobody ships again harmlessly).

What a failure means decides what happens next:

- the store is unreachable (:class:`~chatledger.errors.StoreConnectionError`,
  or a :class:`~chatledger.errors.QueryError` that keeps recurring only
  :data:`_QUERY_ATTEMPTS` times): the batch stays first in line and is tried
  again after a pause that doubles, from half a second to 30 s;
- a record the store will never take (a constraint, a value it cannot hold,
  a record that no longer parses: :data:`_REFUSED`): the batch is split in
  halves until the records that fail alone are found, and those are moved to
  the dead letters, logged and counted; the rest ships. One bad record never
  holds up the ones behind it;
- anything else (a bug, a store used from the wrong loop) is not taken as the
  records' fault: it is logged with its traceback and the batch waits, as
  for an unreachable store. Records are never buried on a guess.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from chatledger.entities import ChatSession, LLMApiCall, LLMMessage
from chatledger.errors import (
    ConstraintError,
    NotFoundError,
    QueryError,
    SerializationError,
    StoreConnectionError,
)
from chatledger.recording.spool import Shippable, SpooledRecord
from chatledger.stores.base import PersistenceStore

__all__ = ["ShipCounters", "Shipper", "decode"]

logger = logging.getLogger(__name__)

BATCH_SIZE = 500  # records per ingest_records transaction
_PAUSE_FIRST = 0.5  # seconds before a batch the store could not take is tried again
_PAUSE_MOST = 30.0
_PARSED_KEPT = 20_000  # entities kept beside their JSON while they wait (about 50 MB at most)
_QUERY_ATTEMPTS = 3  # a QueryError this many times in a row is taken as the records' fault
INGEST_TIMEOUT = 30.0  # seconds one batch may take before the store is taken as unreachable

_REFUSED = (ConstraintError, SerializationError, NotFoundError, ValidationError, ValueError,
            TypeError)  # fmt: skip
"""Errors that say the store will never take these records as they are."""

_ENTITIES: dict[str, type[ChatSession] | type[LLMMessage] | type[LLMApiCall]] = {
    "session": ChatSession,
    "message": LLMMessage,
    "call": LLMApiCall,
}


def decode(record: SpooledRecord) -> ChatSession | LLMMessage | LLMApiCall:
    """The entity a spooled record holds; ``ValueError`` for an unknown kind or bad JSON."""
    entity = _ENTITIES.get(record.kind)
    if entity is None:
        raise ValueError(f"unknown record kind {record.kind!r}")
    return entity.model_validate_json(record.body)


@dataclass(slots=True)
class ShipCounters:
    """What the shipper did, for ``stats()``."""

    shipped: dict[str, int] = field(default_factory=lambda: {"session": 0, "message": 0, "call": 0})
    store_failures: int = 0  # batches the store could not take for now (tried again)
    dead_letters: int = 0  # records moved aside for good
    batches: int = 0


class _UnreachableError(Exception):
    """The store cannot take anything now; the batch waits."""


class Shipper:
    """Ships one spool (or an adopted one) to one store; runs on the store's event loop."""

    def __init__(
        self, store: PersistenceStore, counters: ShipCounters, *, batch_size: int = BATCH_SIZE
    ) -> None:
        """Ship to ``store``, counting in ``counters``."""
        self._store = store
        self._counters = counters
        self._batch_size = batch_size
        self._query_failures = 0
        # A buried message's children link to its parent instead, so one refused
        # message does not take the rest of its conversation down with it.
        self._buried_parents: dict[uuid.UUID, uuid.UUID | None] = {}
        self._parsed: dict[str, Any] = {}  # record JSON -> its entity, for records made here
        self._removals: list[Future[None]] = []  # shipped records' removals, not awaited yet
        self.pause = 0.0  # seconds to wait before the next try; 0 while the store takes records

    def keep_parsed(self, body: str, entity: Any) -> None:
        """Keep the entity a record's JSON came from, so shipping it need not parse it back."""
        if len(self._parsed) < _PARSED_KEPT:
            self._parsed[body] = entity

    async def ship(
        self, spool: Shippable, *, limit: int | None = None, batch_seconds: float = INGEST_TIMEOUT
    ) -> bool:
        """Ship ``spool``'s waiting records, oldest first; False when the store stopped taking them.

        With ``limit``, stop after about that many (the caller checks deadlines between
        calls); ``batch_seconds`` bounds each batch's write. Never raises for a store failure:
        that is what the return value is for.
        The next batch is read and parsed while the store writes this one.
        """
        shipped = 0
        try:
            batch = await self._prepare(spool, after=0)
            while batch:
                more = limit is None or shipped + len(batch) < limit
                upcoming = (
                    asyncio.ensure_future(self._prepare(spool, after=batch[-1][0].seq))
                    if more
                    else None
                )
                try:
                    await self._ingest(spool, batch, batch_seconds)
                except _UnreachableError:
                    if upcoming is not None:
                        upcoming.cancel()
                        await asyncio.gather(upcoming, return_exceptions=True)
                    self._counters.store_failures += 1
                    self.pause = min(_PAUSE_MOST, max(_PAUSE_FIRST, self.pause * 2))
                    return False
                self.pause = 0.0
                shipped += len(batch)
                batch = await upcoming if upcoming is not None else []
            return True
        finally:
            # Removals ride along while the next batch ships; the count is exact on return.
            removals, self._removals = self._removals, []
            await asyncio.gather(*(asyncio.wrap_future(r) for r in removals))

    async def _prepare(self, spool: Shippable, *, after: int) -> list[tuple[SpooledRecord, Any]]:
        """The next batch after seq ``after``, as entities; unreadable records are buried."""
        while True:
            records = await asyncio.wrap_future(spool.peek(self._batch_size, after))
            batch: list[tuple[SpooledRecord, Any]] = []
            for record in records:
                entity = self._parsed.get(record.body)
                if entity is None:
                    try:
                        entity = decode(record)
                    except (ValueError, ValidationError) as exc:
                        await self._bury(spool, record, f"cannot be read back: {exc}")
                        continue
                batch.append((record, entity))
            if batch or not records:
                return batch
            after = records[-1].seq  # every record of this read was buried: read on

    async def _ingest(
        self, spool: Shippable, batch: list[tuple[SpooledRecord, Any]], batch_seconds: float
    ) -> None:
        """Store ``batch``; split it to find the records the store refuses for good."""
        sessions = [e for r, e in batch if r.kind == "session"]
        messages = [self._relinked(e) for r, e in batch if r.kind == "message"]
        calls = [e for r, e in batch if r.kind == "call"]
        try:
            # A hung network (a partition, not a reset) must not stall shipping for good:
            # past the timeout the batch is retried, harmlessly even if it had committed.
            await asyncio.wait_for(
                self._store.ingest_records(sessions, messages, calls), batch_seconds
            )
        except (StoreConnectionError, TimeoutError) as exc:
            logger.warning("chatledger could not ship %d records; will retry: %s",
                           len(batch), exc or type(exc).__name__)  # fmt: skip
            raise _UnreachableError from exc
        except QueryError as exc:
            self._query_failures += 1
            if self._query_failures < _QUERY_ATTEMPTS:
                logger.warning("chatledger could not ship %d records; will retry: %s",
                               len(batch), exc)  # fmt: skip
                raise _UnreachableError from exc
            await self._split(spool, batch, exc, batch_seconds)
            return
        except _REFUSED as exc:
            await self._split(spool, batch, exc, batch_seconds)
            return
        except Exception as exc:
            logger.exception("chatledger could not ship %d records (unexpected error); "
                             "they wait in the spool", len(batch))  # fmt: skip
            raise _UnreachableError from exc
        self._query_failures = 0
        self._counters.batches += 1
        for kind, entities in (("session", sessions), ("message", messages), ("call", calls)):
            self._counters.shipped[kind] += len(entities)
        for record, _ in batch:
            self._parsed.pop(record.body, None)
        self._removals.append(spool.remove([record.seq for record, _ in batch]))

    def _relinked(self, message: LLMMessage) -> LLMMessage:
        parent = message.parent_message_id
        if parent is None or parent not in self._buried_parents:
            return message
        return message._replace(parent_message_id=self._buried_parents[parent])

    async def _split(
        self,
        spool: Shippable,
        batch: list[tuple[SpooledRecord, Any]],
        exc: BaseException,
        batch_seconds: float,
    ) -> None:
        if len(batch) == 1:
            self._query_failures = 0
            record, entity = batch[0]
            if isinstance(entity, LLMMessage):
                parent = entity.parent_message_id
                if parent is not None:
                    parent = self._buried_parents.get(parent, parent)
                self._buried_parents[entity.id] = parent
            await self._bury(spool, record, f"{type(exc).__name__}: {exc}")
            return
        middle = len(batch) // 2  # in order: a parent ships before its children
        await self._ingest(spool, batch[:middle], batch_seconds)
        await self._ingest(spool, batch[middle:], batch_seconds)

    async def _bury(self, spool: Shippable, record: SpooledRecord, reason: str) -> None:
        self._counters.dead_letters += 1
        self._parsed.pop(record.body, None)
        logger.error(
            "chatledger: the store refuses a %s for good (%s); it is kept in the spool's dead "
            "letters: see 'chatledger spool status'",
            record.kind,
            reason,
        )
        await asyncio.wrap_future(spool.bury(record, reason))
