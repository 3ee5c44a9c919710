"""A store of the ledger alone, as a third party keeping only API calls might write one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from chatledger.entities import (
    CallPage,
    CallSort,
    LLMApiCall,
    QueryFilter,
    UsageBucket,
    UsageStatistics,
)
from chatledger.stores.base import DEFAULT_PAGE_SIZE, Bucket, GroupKey, StoreLifecycle
from chatledger.stores.memory import InMemoryStore


class LedgerOnlyStore(StoreLifecycle):
    """The ledger of API calls and nothing else, as a third party might keep it.

    Its calls go to an in-memory store it hides: it has no sessions,
    messages, providers or agents, and is no whole ``PersistenceStore``.
    """

    backend_name = "ledger"

    def __init__(self) -> None:
        """An empty ledger."""
        self._calls = InMemoryStore()

    async def _release(self) -> None:
        await self._calls.close()

    async def save_api_call(self, call: LLMApiCall) -> None:
        """Store one API-call record."""
        await self._calls.save_api_call(call)

    async def save_api_calls(self, calls: Sequence[LLMApiCall]) -> None:
        """Store a batch of calls, or none of them."""
        await self._calls.save_api_calls(calls)

    async def get_api_call(self, call_id: uuid.UUID) -> LLMApiCall | None:
        """The call with ``call_id``, or None."""
        return await self._calls.get_api_call(call_id)

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Calls matching ``query``, newest first."""
        return await self._calls.query_api_calls(query)

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Statistics over the calls matching ``query``."""
        return await self._calls.get_statistics(query)

    async def get_usage_breakdown(
        self,
        query: QueryFilter,
        group_by: Sequence[GroupKey] = (),
        bucket: Bucket | None = None,
        limit: int | None = None,
    ) -> list[UsageBucket]:
        """Statistics per group and time bucket."""
        return await self._calls.get_usage_breakdown(query, group_by, bucket, limit)

    async def calls_for_messages(self, message_ids: Sequence[uuid.UUID]) -> list[LLMApiCall]:
        """The calls whose request or response message is among ``message_ids``."""
        return await self._calls.calls_for_messages(message_ids)

    async def page_api_calls(
        self,
        query: QueryFilter,
        *,
        sort: CallSort | str = CallSort.NEWEST,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> CallPage:
        """One page of the calls matching ``query``."""
        return await self._calls.page_api_calls(query, sort=sort, cursor=cursor, limit=limit)

    async def delete_api_call(self, call_id: uuid.UUID) -> bool:
        """Delete one call; True when it existed."""
        return await self._calls.delete_api_call(call_id)

    async def cleanup_old_records(self, before: datetime) -> int:
        """Delete the calls made before ``before``; return how many."""
        return await self._calls.cleanup_old_records(before)

    async def rebuild_rollups(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Recount the rollups; return how many calls they count."""
        return await self._calls.rebuild_rollups(progress)

    async def seal_periods(self) -> int:
        """Seal complete months and weeks; return how many."""
        return await self._calls.seal_periods()
