"""The conformance suite every chatledger backend passes, yours included.

Subclass ``StoreConformance`` in a test module, name the subclass ``Test…``
and implement ``make_store``; pytest then runs every behaviour of SPEC §2-3
against your backend::

    from chatledger.testing import StoreConformance

    class TestMyStore(StoreConformance):
        expected_backend_name = "mine"

        async def make_store(self) -> PersistenceStore:
            return await MyStore.connect(f"mine:///{self.tmp_path}/t.db")

Each test gets a fresh store from ``make_store`` (``self.tmp_path`` is a
fresh temporary directory by then) and the store is closed afterwards. The
tests are marked ``@pytest.mark.asyncio`` so they run with or without
pytest-asyncio's auto mode. Expected values are computed independently in the
tests, never by chatledger's own helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import statistics as pystats
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
import pytest_asyncio
from pydantic import BaseModel
from pydantic_core import to_json

from chatledger.entities import (
    AgentConfig,
    ApiCallStatus,
    CallPage,
    CallSort,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    PriceDetails,
    QueryFilter,
    SessionPage,
    SessionQuery,
    TokenDetails,
    ToolCallContent,
    ToolResultContent,
    UsageStatistics,
)
from chatledger.errors import (
    ConstraintError,
    NotFoundError,
    SerializationError,
    StoreConnectionError,
)
from chatledger.ids import NIL_UUID, uuid7
from chatledger.stores.base import (
    DEFAULT_QUERY_LIMIT,
    GROUP_BY_KEYS,
    RECORD_KINDS,
    Bucket,
    GroupKey,
    PersistenceStore,
    RecordKind,
)
from chatledger.stores.rollups import exact_values_up_to, scan_only
from chatledger.stores.schema import MIGRATIONS
from chatledger.stores.statistics import PERCENTILE_RELATIVE_ERROR
from chatledger.testing.erasure_conformance import ErasureConformance
from chatledger.testing.factories import (
    BASE_TIME,
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)
from chatledger.testing.tenancy_conformance import TenancyConformance

__all__ = [
    "BASE_TIME",
    "StoreConformance",
    "make_agent",
    "make_api_call",
    "make_message",
    "make_provider",
    "make_session",
]

_COST_QUANTUM = Decimal("1e-10")


def _any(value: object) -> Any:
    """``value`` typed as anything: a wrong argument that a type checker lets through."""
    return value


# -- independent expectations ------------------------------------------------------


def _expected_percentiles(latencies: Sequence[int]) -> tuple[float, float, float] | None:
    """p50/p95/p99 by the standard library's inclusive (linear-interpolation) quantiles."""
    if not latencies:
        return None
    if len(latencies) == 1:
        only = float(latencies[0])
        return only, only, only
    cuts = pystats.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def _assert_statistics(actual: UsageStatistics, calls: Sequence[LLMApiCall]) -> None:
    """Check every field of ``actual`` against a computation straight from ``calls``."""
    success = sum(1 for c in calls if c.status is ApiCallStatus.SUCCESS)
    assert actual.total_calls == len(calls)
    assert actual.success_count == success
    assert actual.failed_count == len(calls) - success
    assert actual.status_counts == {
        status: sum(1 for c in calls if c.status is status) for status in ApiCallStatus
    }
    assert actual.total_tokens == sum(c.total_tokens for c in calls)
    assert actual.total_prompt_tokens == sum(c.prompt_tokens for c in calls)
    assert actual.total_completion_tokens == sum(c.completion_tokens for c in calls)
    assert actual.total_cached_tokens == sum(
        (c.prompt_tokens_details.cached_tokens or 0) if c.prompt_tokens_details else 0
        for c in calls
    )
    assert actual.total_reasoning_tokens == sum(
        (c.completion_tokens_details.reasoning_tokens or 0) if c.completion_tokens_details else 0
        for c in calls
    )
    assert actual.total_cache_write_tokens == sum(
        (c.prompt_tokens_details.cache_write_tokens or 0) if c.prompt_tokens_details else 0
        for c in calls
    )
    prices = [c.total_price for c in calls if c.total_price is not None]
    if prices:
        expected_cost = sum(prices, Decimal(0)).quantize(_COST_QUANTUM)
        assert actual.total_cost == expected_cost
        assert isinstance(actual.total_cost, Decimal)
    else:
        assert actual.total_cost is None

    def mean(values: Sequence[float]) -> float | None:
        return pystats.fmean(values) if values else None

    latencies = [c.latency_ms for c in calls if c.latency_ms is not None]
    speeds = [c.tokens_per_second for c in calls if c.tokens_per_second is not None]
    firsts = [c.time_to_first_token_ms for c in calls if c.time_to_first_token_ms is not None]
    for got, want in (
        (actual.avg_latency_ms, mean(latencies)),
        (actual.avg_tokens_per_second, mean(speeds)),
        (actual.avg_time_to_first_token_ms, mean(firsts)),
    ):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, rel=1e-9)
    for values, got_percentiles in (
        (latencies, (actual.p50_latency_ms, actual.p95_latency_ms, actual.p99_latency_ms)),
        (
            firsts,
            (
                actual.p50_time_to_first_token_ms,
                actual.p95_time_to_first_token_ms,
                actual.p99_time_to_first_token_ms,
            ),
        ),
    ):
        percentiles = _expected_percentiles(sorted(values))
        if percentiles is None:
            assert got_percentiles == (None, None, None)
        else:
            assert got_percentiles == pytest.approx(percentiles, rel=1e-9)


class _Population:
    """Varied API calls over a few tenants, users, sessions, agents and models."""

    def __init__(self, seed: int, count: int) -> None:
        rng = random.Random(seed)  # noqa: S311  (reproducible test data, not security)
        self.tenants = [uuid7() for _ in range(3)]
        self.users = [uuid7() for _ in range(4)]
        self.sessions = [uuid7() for _ in range(5)]
        self.agents = [uuid7() for _ in range(3)]
        self.models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet", "深度求索-chat"]
        self.error_codes = ["rate_limit_exceeded", "context_length_exceeded", "server_error"]
        self.start = datetime(2024, 1, 1, tzinfo=UTC)
        self.calls = [self._call(rng) for _ in range(count)]

    def _call(self, rng: random.Random) -> LLMApiCall:
        status = rng.choice(list(ApiCallStatus))
        prompt = rng.randint(0, 5000)
        completion = rng.randint(0, 2000)
        created = self.start + timedelta(
            seconds=rng.randint(0, 90 * 86400), microseconds=rng.randint(0, 999_999)
        )
        prompt_details = (
            TokenDetails(
                cached_tokens=rng.randint(0, prompt // 2),
                cache_write_tokens=rng.randint(0, prompt // 2) if rng.random() < 0.5 else None,
            )
            if rng.random() < 0.5
            else None
        )
        completion_details = (
            TokenDetails(reasoning_tokens=rng.randint(0, completion))
            if rng.random() < 0.4
            else None
        )
        price = Decimal(rng.randint(0, 10**7)) / Decimal(10**8) if rng.random() < 0.7 else None
        failed = status is not ApiCallStatus.SUCCESS
        error_code = rng.choice(self.error_codes) if failed and rng.random() < 0.9 else None
        return make_api_call(
            error_code=error_code,
            error_message=None if error_code is None else f"failed with {error_code}",
            chat_session_id=rng.choice(self.sessions),
            agent_id=rng.choice(self.agents),
            user_id=rng.choice(self.users),
            tenant_id=rng.choice(self.tenants),
            model_name=rng.choice(self.models),
            status=status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            prompt_tokens_details=prompt_details,
            completion_tokens_details=completion_details,
            total_price=price,
            latency_ms=rng.randint(5, 30_000) if rng.random() < 0.85 else None,
            time_to_first_token_ms=rng.randint(1, 3000) if rng.random() < 0.6 else None,
            tokens_per_second=round(rng.uniform(0.5, 250.0), 6) if rng.random() < 0.8 else None,
            create_time=created,
            update_time=created + timedelta(milliseconds=rng.randint(0, 30_000)),
        )


def _key_value(call: LLMApiCall, key: str) -> Any:
    return {
        "model": call.model_name,
        "agent": call.agent_id,
        "user": call.user_id,
        "tenant": call.tenant_id,
        "session": call.chat_session_id,
        "status": call.status,
    }[key]


async def _drain(chunks: AsyncIterator[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Every chunk an export yields."""
    return [chunk async for chunk in chunks]


async def _exported(
    store: PersistenceStore, kind: RecordKind, query: QueryFilter | None = None
) -> list[dict[str, Any]]:
    """Every record an export yields, chunks joined."""
    chunks = await _drain(store.export_records(kind, query or QueryFilter()))
    return [record for chunk in chunks for record in chunk]


def _assert_record_is(record: dict[str, Any], stored: BaseModel, saved: BaseModel) -> None:
    """``record`` is the stored entity's JSON form exactly, and holds what was saved.

    Against the entity the store reads back: the JSON-mode dump (ids and
    times as text), the same keys in the same order at every depth, the same
    JSON text. Against the entity as saved: the same JSON values (PostgreSQL
    may reorder the keys inside JSON columns, for the read-back entity too).
    """
    dumped = stored.model_dump(mode="json")
    assert record == dumped
    assert list(record) == list(dumped)
    assert to_json(record) == stored.model_dump_json().encode()
    assert json.loads(to_json(record)) == json.loads(saved.model_dump_json())


async def _assert_exported_as_saved(
    store: PersistenceStore,
    kind: RecordKind,
    saved: Sequence[BaseModel],
    read: Callable[[UUID], Awaitable[BaseModel | None]],
) -> None:
    """The export of ``kind`` holds exactly ``saved``, in id order, each as its entity's JSON."""
    records = await _exported(store, kind)
    assert [r["id"] for r in records] == sorted(str(e.id) for e in saved)  # type: ignore[attr-defined]
    by_id = {e.id: e for e in saved}  # type: ignore[attr-defined]
    for record in records:
        stored = await read(UUID(record["id"]))
        assert stored is not None
        _assert_record_is(record, stored, by_id[UUID(record["id"])])


# -- the suite ------------------------------------------------------------------


class StoreConformance(TenancyConformance, ErasureConformance):
    """Every behaviour of the chatledger store contract, as pytest tests.

    Subclass it as ``Test…`` and implement ``make_store``. Set
    ``expected_backend_name`` to have ``backend_name`` checked too.
    """

    expected_backend_name: ClassVar[str | None] = None
    tmp_path: Path

    async def make_store(self) -> PersistenceStore:
        """Return a new, empty, connected store of the backend under test."""
        raise NotImplementedError("implement make_store() in your StoreConformance subclass")

    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[PersistenceStore]:
        """A fresh store from ``make_store``, closed after the test."""
        self.tmp_path = tmp_path
        made = await self.make_store()
        try:
            yield made
        finally:
            await made.close()

    async def _session(self, store: PersistenceStore, **kwargs: Any) -> ChatSession:
        session = make_session(**kwargs)
        await store.create_session(session)
        return session

    # -- lifecycle ---------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_store_implements_the_protocol(self, store: PersistenceStore) -> None:
        """The store satisfies PersistenceStore and names its backend."""
        assert isinstance(store, PersistenceStore)
        assert isinstance(store.backend_name, str)
        assert store.backend_name
        assert store.backend_name == store.backend_name.lower()
        if self.expected_backend_name is not None:
            assert store.backend_name == self.expected_backend_name

    @pytest.mark.asyncio
    async def test_is_connected_until_close_and_close_is_idempotent(
        self, store: PersistenceStore
    ) -> None:
        """is_connected is True until close(); a second close() does nothing."""
        assert store.is_connected is True
        await store.close()
        assert store.is_connected is False
        await store.close()
        assert store.is_connected is False

    @pytest.mark.asyncio
    async def test_a_store_opened_by_connect_is_at_the_latest_schema(
        self, store: PersistenceStore
    ) -> None:
        """schema_version(): the newest migration (a store without a schema is always current)."""
        assert await store.schema_version() == MIGRATIONS[-1].version
        await store.close()
        with pytest.raises(StoreConnectionError):
            await store.schema_version()

    @pytest.mark.asyncio
    async def test_async_with_returns_the_store_and_closes_it(
        self, store: PersistenceStore
    ) -> None:
        """`async with store` yields the store itself and closes it on exit."""
        async with store as entered:
            assert entered is store
            await entered.create_session(make_session())
        assert store.is_connected is False

    @pytest.mark.asyncio
    async def test_closed_store_raises_store_connection_error(
        self, store: PersistenceStore
    ) -> None:
        """Every method of a closed store raises StoreConnectionError."""
        session = make_session()
        message = make_message(session)
        call = make_api_call(session)
        provider = make_provider()
        agent = make_agent(provider)
        await store.close()
        some_id = uuid7()
        operations: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.save_message(message),
            lambda: store.save_messages([message]),
            lambda: store.get_message(some_id),
            lambda: store.get_session_messages(some_id),
            lambda: store.get_session_messages_paginated(some_id, 0, 10),
            lambda: store.get_recent_messages(some_id, 10),
            lambda: store.delete_message(some_id),
            lambda: store.delete_session_messages(some_id),
            lambda: store.count_session_messages(some_id),
            lambda: store.save_api_call(call),
            lambda: store.save_api_calls([call]),
            lambda: store.get_api_call(some_id),
            lambda: store.query_api_calls(QueryFilter()),
            lambda: store.get_statistics(QueryFilter()),
            lambda: store.get_usage_breakdown(QueryFilter(), ["model"], "day"),
            lambda: store.page_api_calls(QueryFilter()),
            lambda: store.delete_api_call(some_id),
            lambda: store.cleanup_old_records(BASE_TIME),
            lambda: store.create_session(session),
            lambda: store.get_session(some_id),
            lambda: store.get_user_sessions(some_id),
            lambda: store.update_session(session),
            lambda: store.delete_session(some_id),
            lambda: store.list_sessions(QueryFilter()),
            lambda: store.cleanup_old_sessions(BASE_TIME),
            lambda: store.search_sessions(SessionQuery()),
            lambda: store.count_records("api_calls", QueryFilter()),
            lambda: _drain(store.export_records("messages", QueryFilter())),
            lambda: store.save_provider(provider),
            lambda: store.get_provider(some_id),
            lambda: store.get_provider_by_name(some_id, "openai"),
            lambda: store.list_providers(some_id),
            lambda: store.get_enabled_providers(some_id),
            lambda: store.delete_provider(some_id),
            lambda: store.save_agent(agent),
            lambda: store.get_agent(some_id),
            lambda: store.get_agent_by_code("x"),
            lambda: store.get_agent_by_code_and_tenant(some_id, "x"),
            lambda: store.list_agents(some_id),
            lambda: store.get_active_agents(some_id),
            lambda: store.get_agent_with_provider(some_id),
            lambda: store.get_agent_by_code_with_provider("x"),
            lambda: store.get_agent_by_code_and_tenant_with_provider(some_id, "x"),
            lambda: store.delete_agent(some_id),
            lambda: store.ingest_records([session], [message], [call]),
        ]
        for operation in operations:
            with pytest.raises(StoreConnectionError):
                await operation()

    # -- arguments -----------------------------------------------------------------

    def _wrong_arguments(
        self, store: PersistenceStore
    ) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        """Calls with an argument of the wrong type, each with the parameter it gets wrong."""
        session = make_session()
        message = make_message(session)
        call = make_api_call(session)
        provider = make_provider()
        some_id = uuid7()
        text_id = str(some_id)
        return [
            ("message", lambda: store.save_message(_any("x"))),
            ("message", lambda: store.save_message(_any(call))),
            ("messages", lambda: store.save_messages(_any("xy"))),
            ("messages[1]", lambda: store.save_messages([message, _any(call)])),
            ("messages", lambda: store.save_messages(_any(m for m in [message]))),
            ("message_id", lambda: store.get_message(_any("not-a-uuid"))),
            ("session_id", lambda: store.get_session_messages(_any(text_id))),
            ("offset", lambda: store.get_session_messages_paginated(some_id, _any("0"), 10)),
            ("limit", lambda: store.get_session_messages_paginated(some_id, 0, _any(2.5))),
            ("limit", lambda: store.get_recent_messages(some_id, _any(None))),
            ("message_id", lambda: store.delete_message(_any("x"))),
            ("session_id", lambda: store.delete_session_messages(_any(7))),
            ("session_id", lambda: store.count_session_messages(_any(None))),
            ("call", lambda: store.save_api_call(_any(message))),
            ("calls", lambda: store.save_api_calls(_any(call))),
            ("calls[0]", lambda: store.save_api_calls([_any(message)])),
            ("call_id", lambda: store.get_api_call(_any(text_id))),
            ("query", lambda: store.query_api_calls(_any(None))),
            ("query", lambda: store.get_statistics(_any({"tenant_id": some_id}))),
            ("query", lambda: store.get_usage_breakdown(_any(None), ["model"])),
            ("query", lambda: store.page_api_calls(_any(SessionQuery()))),
            ("limit", lambda: store.page_api_calls(QueryFilter(), limit=_any("50"))),
            ("cursor", lambda: store.page_api_calls(QueryFilter(), cursor=_any(7))),
            ("query", lambda: store.search_sessions(_any(QueryFilter()))),
            ("cursor", lambda: store.search_sessions(SessionQuery(), cursor=_any(b"x"))),
            ("limit", lambda: store.search_sessions(SessionQuery(), limit=_any(None))),
            ("call_id", lambda: store.delete_api_call(_any("x"))),
            ("before", lambda: store.cleanup_old_records(_any("2024-01-01"))),
            ("session", lambda: store.create_session(_any(None))),
            ("session", lambda: store.create_session(_any(message))),
            ("session_id", lambda: store.get_session(_any("not-a-uuid"))),
            ("session_id", lambda: store.get_session(_any(text_id))),
            ("user_id", lambda: store.get_user_sessions(_any(None))),
            ("session", lambda: store.update_session(_any(None))),
            ("session_id", lambda: store.delete_session(_any("x"))),
            ("query", lambda: store.list_sessions(_any(None))),
            ("before", lambda: store.cleanup_old_sessions(_any(None))),
            ("query", lambda: store.count_records("api_calls", _any(None))),
            ("kind", lambda: store.count_records(_any(None), QueryFilter())),
            ("query", lambda: _drain(store.export_records("api_calls", _any(None)))),
            (
                "chunk_size",
                lambda: _drain(
                    store.export_records("api_calls", QueryFilter(), chunk_size=_any("9"))
                ),
            ),
            ("sessions", lambda: store.ingest_records(_any(session))),
            ("messages[0]", lambda: store.ingest_records([session], [_any(call)])),
            ("calls", lambda: store.ingest_records(calls=_any("x"))),
            ("provider", lambda: store.save_provider(_any(None))),
            ("provider_id", lambda: store.get_provider(_any("x"))),
            ("name", lambda: store.get_provider_by_name(some_id, _any(None))),
            ("tenant_id", lambda: store.list_providers(_any(text_id))),
            ("tenant_id", lambda: store.get_enabled_providers(_any(None))),
            ("provider_id", lambda: store.delete_provider(_any(None))),
            ("agent", lambda: store.save_agent(_any(provider))),
            ("agent_id", lambda: store.get_agent(_any("x"))),
            ("code", lambda: store.get_agent_by_code(_any(None))),
            ("tenant_id", lambda: store.get_agent_by_code_and_tenant(_any("x"), "code")),
            ("tenant_id", lambda: store.list_agents(_any(None))),
            ("tenant_id", lambda: store.get_active_agents(_any(None))),
            ("agent_id", lambda: store.get_agent_with_provider(_any("x"))),
            ("code", lambda: store.get_agent_by_code_with_provider(_any(3))),
            ("code", lambda: store.get_agent_by_code_and_tenant_with_provider(some_id, _any(3))),
            ("agent_id", lambda: store.delete_agent(_any(None))),
        ]

    @pytest.mark.asyncio
    async def test_wrong_argument_types_raise_type_error(self, store: PersistenceStore) -> None:
        """A str for an entity or id, None for a filter, …: TypeError naming the parameter.

        The same on every backend, and nothing is stored: a message where an API
        call belongs is not kept as a call, a text id is not looked up.
        """
        for parameter, operation in self._wrong_arguments(store):
            with pytest.raises(TypeError, match=re.escape(f"{parameter} must be")):
                await operation()
        for kind in RECORD_KINDS:
            assert await store.count_records(kind, QueryFilter()) == 0
        assert (await store.get_statistics(QueryFilter())).total_calls == 0

    @pytest.mark.asyncio
    async def test_wrong_arguments_are_refused_before_the_database(
        self, store: PersistenceStore
    ) -> None:
        """The check comes first: a closed store answers TypeError, not StoreConnectionError."""
        await store.close()
        for _, operation in self._wrong_arguments(store):
            with pytest.raises(TypeError):
                await operation()

    @pytest.mark.asyncio
    async def test_text_id_hint_says_how_to_convert(self, store: PersistenceStore) -> None:
        """A well-formed id passed as text is refused with how to convert it, not looked up."""
        session = await self._session(store)
        with pytest.raises(TypeError, match=r"uuid\.UUID\(text\)"):
            await store.get_session(str(session.id))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not a UUID"):
            await store.get_session("not-a-uuid")  # type: ignore[arg-type]

    # -- sessions ----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_session_round_trips_every_field(self, store: PersistenceStore) -> None:
        """create_session then get_session returns an equal session, microseconds included."""
        session = make_session(
            title="Trip to 東京 ✈️",
            metadata={"topic": "travel", "tags": ["a", "b"], "depth": {"n": 1, "ok": True}},
            create_time=datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
            update_time=datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC),
        )
        await store.create_session(session)
        got = await store.get_session(session.id)
        assert got == session
        assert got is not None
        assert got.create_time.microsecond == 999_999
        assert got.update_time.microsecond == 1
        assert got.create_time.utcoffset() == timedelta(0)

    @pytest.mark.asyncio
    async def test_get_missing_session_is_none(self, store: PersistenceStore) -> None:
        """get_session of an unknown id returns None."""
        assert await store.get_session(uuid7()) is None

    @pytest.mark.asyncio
    async def test_create_session_with_reused_id_raises_constraint_error(
        self, store: PersistenceStore
    ) -> None:
        """create_session with an id already stored raises ConstraintError and keeps the first."""
        session = await self._session(store, title="first")
        with pytest.raises(ConstraintError):
            await store.create_session(session.with_title("second"))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.title == "first"

    @pytest.mark.asyncio
    async def test_get_user_sessions_most_recently_updated_first(
        self, store: PersistenceStore
    ) -> None:
        """get_user_sessions returns only that user's sessions by (update_time, id) descending."""
        user = uuid7()
        old = await self._session(store, user_id=user, update_time=BASE_TIME)
        newest = await self._session(
            store, user_id=user, update_time=BASE_TIME + timedelta(hours=3)
        )
        middle = await self._session(
            store, user_id=user, update_time=BASE_TIME + timedelta(hours=2)
        )
        tie = await self._session(store, user_id=user, update_time=BASE_TIME + timedelta(hours=2))
        await self._session(store, update_time=BASE_TIME + timedelta(hours=9))  # another user
        got = await store.get_user_sessions(user)
        assert [s.id for s in got] == [newest.id, tie.id, middle.id, old.id]
        assert await store.get_user_sessions(uuid7()) == []

    @pytest.mark.asyncio
    async def test_update_session_replaces_it(self, store: PersistenceStore) -> None:
        """update_session stores the new title, metadata and update_time."""
        session = await self._session(store, title="draft")
        changed = (
            session.with_title("final ✅")
            .with_metadata("k", {"v": [1, 2]})
            ._replace(update_time=BASE_TIME + timedelta(days=1, microseconds=7))
        )
        await store.update_session(changed)
        assert await store.get_session(session.id) == changed

    @pytest.mark.asyncio
    async def test_update_missing_session_raises_not_found(self, store: PersistenceStore) -> None:
        """update_session of a session never created raises NotFoundError and stores nothing."""
        session = make_session()
        with pytest.raises(NotFoundError):
            await store.update_session(session)
        assert await store.get_session(session.id) is None

    @pytest.mark.asyncio
    async def test_delete_session_removes_messages_and_keeps_api_calls(
        self, store: PersistenceStore
    ) -> None:
        """delete_session deletes the session and its messages; its API calls stay in the ledger."""
        session = await self._session(store)
        other = await self._session(store)
        messages = [make_message(session, f"m{i}") for i in range(3)]
        await store.save_messages(messages)
        await store.save_message(make_message(other, "keep me"))
        call = make_api_call(session, request_message_id=messages[0].id)
        await store.save_api_call(call)

        assert await store.delete_session(session.id) is True
        assert await store.get_session(session.id) is None
        assert await store.count_session_messages(session.id) == 0
        assert await store.get_message(messages[0].id) is None
        assert await store.get_api_call(call.id) == call
        assert await store.count_session_messages(other.id) == 1
        assert await store.delete_session(session.id) is False

    @pytest.mark.asyncio
    async def test_saving_a_message_moves_session_update_time_forward(
        self, store: PersistenceStore
    ) -> None:
        """A saved message sets its session's update_time to max(update_time, message time)."""
        session = await self._session(store, create_time=BASE_TIME)
        later = BASE_TIME + timedelta(hours=1, microseconds=42)
        await store.save_message(make_message(session, create_time=later))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == later
        assert got.create_time == BASE_TIME

        await store.save_message(make_message(session, create_time=BASE_TIME - timedelta(days=1)))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == later

    @pytest.mark.asyncio
    async def test_message_save_reorders_user_sessions(self, store: PersistenceStore) -> None:
        """After a message is saved, its session comes first in get_user_sessions."""
        user = uuid7()
        quiet = await self._session(store, user_id=user, update_time=BASE_TIME)
        await self._session(store, user_id=user, update_time=BASE_TIME + timedelta(hours=1))
        await store.save_message(make_message(quiet, create_time=BASE_TIME + timedelta(hours=2)))
        sessions = await store.get_user_sessions(user)
        assert sessions[0].id == quiet.id

    # -- messages ----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_message_round_trips_every_field(self, store: PersistenceStore) -> None:
        """save_message then get_message returns an equal message: content, parent, microseconds."""
        session = await self._session(store)
        first = make_message(session, "question", create_time=BASE_TIME)
        content = MessageContent(
            text="calling tools 🔧",
            tool_calls=[
                ToolCallContent(id="call_1", name="search", arguments={"q": "天气", "n": 3}),
                ToolCallContent(id="call_2", name="noop", arguments=[1, "two", None]),
            ],
            reasoning={"steps": ["a", "b"]},
            score=3,
        )
        second = make_message(
            session,
            role=MessageRole.ASSISTANT,
            content=content,
            create_time=BASE_TIME.replace(microsecond=654_321),
            parent_message_id=first.id,
        )
        third = make_message(
            session,
            role=MessageRole.TOOL,
            content=MessageContent.from_tool_result(
                ToolResultContent(tool_call_id="call_1", content="晴れ ☀️", is_error=True)
            ),
            create_time=BASE_TIME.replace(microsecond=999_999),
        )
        for message in (first, second, third):
            await store.save_message(message)
        for message in (first, second, third):
            assert await store.get_message(message.id) == message
        got = await store.get_message(second.id)
        assert got is not None
        assert got.parent_message_id == first.id
        assert got.content.extra == {"reasoning": {"steps": ["a", "b"]}, "score": 3}
        assert got.create_time.microsecond == 654_321
        assert got.role is MessageRole.ASSISTANT

    @pytest.mark.asyncio
    async def test_get_missing_message_is_none(self, store: PersistenceStore) -> None:
        """get_message of an unknown id returns None."""
        assert await store.get_message(uuid7()) is None

    @pytest.mark.asyncio
    async def test_message_without_session_raises_constraint_error(
        self, store: PersistenceStore
    ) -> None:
        """Saving a message whose session does not exist raises ConstraintError; nothing stored."""
        orphan = make_message(make_session())
        with pytest.raises(ConstraintError):
            await store.save_message(orphan)
        assert await store.get_message(orphan.id) is None

    @pytest.mark.asyncio
    async def test_message_with_reused_id_raises_constraint_error(
        self, store: PersistenceStore
    ) -> None:
        """Saving a message with an id already stored raises ConstraintError; the first stays."""
        session = await self._session(store)
        message = make_message(session, "original")
        await store.save_message(message)
        with pytest.raises(ConstraintError):
            await store.save_message(message._replace(content=MessageContent(text="copy")))
        got = await store.get_message(message.id)
        assert got is not None
        assert got.content.text == "original"
        assert await store.count_session_messages(session.id) == 1

    @pytest.mark.asyncio
    async def test_session_messages_come_oldest_first(self, store: PersistenceStore) -> None:
        """get_session_messages orders by create_time whatever the save order, one session only."""
        session = await self._session(store)
        other = await self._session(store)
        times = [BASE_TIME + timedelta(seconds=s, microseconds=s) for s in (5, 1, 3, 2, 4)]
        messages = [make_message(session, f"t{t}", create_time=t) for t in times]
        for message in messages:
            await store.save_message(message)
        await store.save_message(make_message(other, create_time=BASE_TIME))
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == [m.id for m in sorted(messages, key=lambda m: m.create_time)]
        assert await store.get_session_messages(uuid7()) == []

    @pytest.mark.asyncio
    async def test_thousand_messages_come_back_in_save_order(self, store: PersistenceStore) -> None:
        """1,000 messages saved in a tight loop are returned in the order they were saved."""
        session = await self._session(store)
        saved = []
        for index in range(1000):
            message = LLMMessage.new(
                session.id, session.agent_id, session.user_id, session.tenant_id, "user", str(index)
            )
            await store.save_message(message)
            saved.append(message.id)
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == saved
        assert [m.content.text for m in got] == [str(i) for i in range(1000)]

    @pytest.mark.asyncio
    async def test_messages_with_equal_create_time_keep_save_order(
        self, store: PersistenceStore
    ) -> None:
        """1,000 messages sharing one create_time come back in save order (UUIDv7 ids)."""
        session = await self._session(store)
        saved = [make_message(session, str(i), create_time=BASE_TIME) for i in range(1000)]
        for message in saved:
            await store.save_message(message)
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == [m.id for m in saved]
        recent = await store.get_recent_messages(session.id, 3)
        assert [m.content.text for m in recent] == ["997", "998", "999"]

    @pytest.mark.asyncio
    async def test_paginated_messages(self, store: PersistenceStore) -> None:
        """get_session_messages_paginated returns oldest-first pages; bad bounds give []."""
        session = await self._session(store)
        saved = [
            make_message(session, str(i), create_time=BASE_TIME + timedelta(seconds=i))
            for i in range(25)
        ]
        await store.save_messages(saved)
        ids = [m.id for m in saved]
        page = await store.get_session_messages_paginated(session.id, 0, 10)
        assert [m.id for m in page] == ids[:10]
        page = await store.get_session_messages_paginated(session.id, 10, 10)
        assert [m.id for m in page] == ids[10:20]
        page = await store.get_session_messages_paginated(session.id, 20, 10)
        assert [m.id for m in page] == ids[20:]
        assert await store.get_session_messages_paginated(session.id, 25, 10) == []
        assert await store.get_session_messages_paginated(session.id, -1, 10) == []
        assert await store.get_session_messages_paginated(session.id, 0, 0) == []
        assert await store.get_session_messages_paginated(session.id, 0, -5) == []

    @pytest.mark.asyncio
    async def test_recent_messages_are_newest_returned_oldest_first(
        self, store: PersistenceStore
    ) -> None:
        """get_recent_messages(n) returns the newest n, oldest first; n <= 0 gives []."""
        session = await self._session(store)
        saved = [
            make_message(session, str(i), create_time=BASE_TIME + timedelta(minutes=i))
            for i in range(10)
        ]
        for message in reversed(saved):
            await store.save_message(message)
        ids = [m.id for m in saved]
        assert [m.id for m in await store.get_recent_messages(session.id, 3)] == ids[7:]
        assert [m.id for m in await store.get_recent_messages(session.id, 50)] == ids
        assert await store.get_recent_messages(session.id, 0) == []
        assert await store.get_recent_messages(session.id, -1) == []
        assert await store.get_recent_messages(uuid7(), 5) == []

    @pytest.mark.asyncio
    async def test_delete_message(self, store: PersistenceStore) -> None:
        """delete_message removes one message (True), then reports False; others keep order."""
        session = await self._session(store)
        saved = [make_message(session, str(i), create_time=BASE_TIME) for i in range(5)]
        await store.save_messages(saved)
        assert await store.delete_message(saved[2].id) is True
        assert await store.delete_message(saved[2].id) is False
        assert await store.delete_message(uuid7()) is False
        assert await store.get_message(saved[2].id) is None
        assert await store.count_session_messages(session.id) == 4
        got = await store.get_session_messages(session.id)
        assert [m.id for m in got] == [saved[i].id for i in (0, 1, 3, 4)]

    @pytest.mark.asyncio
    async def test_delete_session_messages_returns_count(self, store: PersistenceStore) -> None:
        """delete_session_messages deletes one session's messages, returns the count, keeps it."""
        session = await self._session(store)
        other = await self._session(store)
        await store.save_messages([make_message(session, str(i)) for i in range(7)])
        await store.save_messages([make_message(other, str(i)) for i in range(2)])
        assert await store.delete_session_messages(session.id) == 7
        assert await store.delete_session_messages(session.id) == 0
        assert await store.count_session_messages(session.id) == 0
        assert await store.get_session(session.id) is not None
        assert await store.count_session_messages(other.id) == 2
        await store.save_message(make_message(session, "again"))
        assert await store.count_session_messages(session.id) == 1

    @pytest.mark.asyncio
    async def test_count_session_messages(self, store: PersistenceStore) -> None:
        """count_session_messages counts one session's messages; an unknown session has 0."""
        session = await self._session(store)
        assert await store.count_session_messages(session.id) == 0
        await store.save_messages([make_message(session, str(i)) for i in range(13)])
        assert await store.count_session_messages(session.id) == 13
        assert await store.count_session_messages(uuid7()) == 0

    @pytest.mark.asyncio
    async def test_save_messages_stores_a_batch_in_order(self, store: PersistenceStore) -> None:
        """save_messages stores every message of a batch, across sessions; [] is a no-op."""
        first = await self._session(store)
        second = await self._session(store)
        batch = [make_message(first if i % 2 else second, str(i)) for i in range(20)]
        await store.save_messages(batch)
        await store.save_messages([])
        for session in (first, second):
            got = await store.get_session_messages(session.id)
            assert [m.id for m in got] == [m.id for m in batch if m.chat_session_id == session.id]

    @pytest.mark.asyncio
    async def test_save_messages_duplicate_inside_batch_stores_nothing(
        self, store: PersistenceStore
    ) -> None:
        """A batch holding the same id twice raises ConstraintError and stores none of it."""
        session = await self._session(store)
        batch = [make_message(session, str(i)) for i in range(5)]
        with pytest.raises(ConstraintError):
            await store.save_messages([*batch, batch[1]])
        assert await store.count_session_messages(session.id) == 0
        assert await store.get_message(batch[0].id) is None

    @pytest.mark.asyncio
    async def test_save_messages_duplicate_of_stored_id_stores_nothing(
        self, store: PersistenceStore
    ) -> None:
        """A batch reusing a stored id raises ConstraintError and stores none of it."""
        session = await self._session(store)
        existing = make_message(session, "existing")
        await store.save_message(existing)
        batch = [make_message(session, str(i)) for i in range(5)]
        with pytest.raises(ConstraintError):
            await store.save_messages([*batch, existing])
        assert await store.count_session_messages(session.id) == 1
        assert await store.get_message(batch[0].id) is None

    @pytest.mark.asyncio
    async def test_save_messages_with_missing_session_stores_nothing(
        self, store: PersistenceStore
    ) -> None:
        """A batch with one message of a missing session raises ConstraintError, stores nothing."""
        session = await self._session(store)
        batch = [make_message(session, str(i)) for i in range(5)]
        batch.insert(3, make_message(make_session(), "orphan"))
        with pytest.raises(ConstraintError):
            await store.save_messages(batch)
        assert await store.count_session_messages(session.id) == 0
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == session.update_time

    @pytest.mark.asyncio
    async def test_message_with_missing_parent_raises_constraint_error(
        self, store: PersistenceStore
    ) -> None:
        """A parent is stored or earlier in the batch; else ConstraintError, and nothing stored."""
        session = await self._session(store)
        orphan = make_message(session, parent_message_id=uuid7())
        with pytest.raises(ConstraintError):
            await store.save_message(orphan)
        first = make_message(session, "first")
        reply = make_message(session, "reply", parent_message_id=first.id)
        with pytest.raises(ConstraintError):
            await store.save_messages([make_message(session, "fine"), orphan])
        assert await store.count_session_messages(session.id) == 0
        await store.save_messages([first, reply])  # the parent earlier in the same batch
        got = await store.get_message(reply.id)
        assert got is not None
        assert got.parent_message_id == first.id

    @pytest.mark.asyncio
    async def test_deleting_a_parent_unlinks_its_replies(self, store: PersistenceStore) -> None:
        """Replies of a deleted message stay, without a parent (SQL's ON DELETE SET NULL)."""
        session = await self._session(store)
        other = await self._session(store)
        root = make_message(session, "root", create_time=BASE_TIME)
        reply = make_message(session, "reply", create_time=BASE_TIME, parent_message_id=root.id)
        elsewhere = make_message(other, "elsewhere", parent_message_id=reply.id)
        await store.save_messages([root, reply, elsewhere])

        assert await store.delete_message(root.id) is True
        assert await store.get_message(reply.id) == reply._replace(parent_message_id=None)
        assert await store.get_session_messages(session.id) == [
            reply._replace(parent_message_id=None)
        ]
        assert await store.delete_session(session.id) is True  # its messages go with it
        assert await store.get_message(elsewhere.id) == elsewhere._replace(parent_message_id=None)
        assert await store.get_session_messages(other.id) == [
            elsewhere._replace(parent_message_id=None)
        ]
        # the parent id is free again: a new reply to a deleted message is refused
        with pytest.raises(ConstraintError):
            await store.save_message(make_message(other, parent_message_id=reply.id))

    @pytest.mark.asyncio
    async def test_session_update_time_follows_the_message_update_time(
        self, store: PersistenceStore
    ) -> None:
        """A saved message moves its session's update_time to the message's own update_time."""
        session = await self._session(store, create_time=BASE_TIME)
        message = make_message(session, create_time=BASE_TIME + timedelta(minutes=1))
        edited = message._replace(update_time=BASE_TIME + timedelta(minutes=5))
        await store.save_message(edited)
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == edited.update_time

    @pytest.mark.asyncio
    async def test_unicode_text_round_trips(self, store: PersistenceStore) -> None:
        """Emoji, CJK, RTL and combining characters round-trip unchanged in messages and calls."""
        text = 'Hello 👋🏽 世界 こんにちは 안녕 مرحبا e\u0301 𝄞 🀄 \t\n\\ "quoted" \''
        session = await self._session(store, title="标题 🎉")
        message = make_message(session, text)
        await store.save_message(message)
        got = await store.get_message(message.id)
        assert got is not None
        assert got.content.text == text
        call = make_api_call(session, model_name="模型-🚀", error_message=text)
        await store.save_api_call(call)
        got_call = await store.get_api_call(call.id)
        assert got_call is not None
        assert got_call.error_message == text
        assert got_call.model_name == "模型-🚀"

    @pytest.mark.asyncio
    async def test_nul_in_message_raises_serialization_error(self, store: PersistenceStore) -> None:
        """A NUL anywhere in a message's content raises SerializationError; nothing is stored."""
        session = await self._session(store)
        bad_contents = [
            MessageContent(text="before\x00after"),
            MessageContent(
                tool_calls=[ToolCallContent(id="c", name="f", arguments={"deep": ["x\x00"]})]
            ),
            MessageContent(text="ok", note="extra \x00"),
            MessageContent(tool_result=ToolResultContent(tool_call_id="c", content="\x00")),
        ]
        for content in bad_contents:
            message = make_message(session, content=content)
            with pytest.raises(SerializationError):
                await store.save_message(message)
            assert await store.get_message(message.id) is None
        good = make_message(session, "fine")
        with pytest.raises(SerializationError):
            await store.save_messages([good, make_message(session, "bad\x00")])
        assert await store.count_session_messages(session.id) == 0

    @pytest.mark.asyncio
    async def test_lone_surrogate_raises_serialization_error(self, store: PersistenceStore) -> None:
        """Text that is not valid UTF-8 (a lone surrogate) raises SerializationError."""
        session = await self._session(store)
        message = make_message(session, "broken \ud800 text")
        with pytest.raises(SerializationError):
            await store.save_message(message)
        assert await store.count_session_messages(session.id) == 0
        call = make_api_call(session, error_message="\udfff")
        with pytest.raises(SerializationError):
            await store.save_api_call(call)
        assert await store.get_api_call(call.id) is None

    @pytest.mark.asyncio
    async def test_nul_in_session_and_call_raises_serialization_error(
        self, store: PersistenceStore
    ) -> None:
        """NUL in a session's title or metadata or an API call's text raises SerializationError."""
        bad_sessions = [make_session(title="t\x00"), make_session(metadata={"k": ["v\x00"]})]
        for session in bad_sessions:
            with pytest.raises(SerializationError):
                await store.create_session(session)
            assert await store.get_session(session.id) is None

        stored = await self._session(store, title="clean")
        with pytest.raises(SerializationError):
            await store.update_session(stored.with_title("dirty\x00"))
        got = await store.get_session(stored.id)
        assert got is not None
        assert got.title == "clean"

        bad_calls = [
            make_api_call(error_message="oops\x00"),
            make_api_call(model_name="gpt\x00"),
            make_api_call(api_response_id="resp\x00"),
            make_api_call().with_token_details(TokenDetails(cached_tokens=1, note="n\x00"), None),
            make_api_call().with_token_details(None, TokenDetails(source="\ud800")),
            make_api_call().with_price(Decimal("0.01"), PriceDetails(currency="US\x00D")),
        ]
        for call in bad_calls:
            with pytest.raises(SerializationError):
                await store.save_api_call(call)
            assert await store.get_api_call(call.id) is None

    @pytest.mark.asyncio
    async def test_nan_or_infinity_in_json_raises_serialization_error(
        self, store: PersistenceStore
    ) -> None:
        """NaN or ±Infinity in any JSON value raises SerializationError; nothing is stored.

        PostgreSQL's JSONB and MySQL's JSON check refuse them; SQLite and the
        in-memory store would keep what the others cannot, so every backend refuses.
        """
        nan, inf = float("nan"), float("inf")
        for metadata in ({"score": nan}, {"deep": [1, {"x": -inf}]}, {"k": inf}):
            bad_session = make_session(metadata=metadata)
            with pytest.raises(SerializationError):
                await store.create_session(bad_session)
            assert await store.get_session(bad_session.id) is None
        session = await self._session(store, metadata={"fine": 1.5})
        with pytest.raises(SerializationError):
            await store.update_session(session.with_metadata("x", nan))
        assert await store.get_session(session.id) == session

        bad_contents = [
            MessageContent(text="ok", score=inf),
            MessageContent(tool_calls=[ToolCallContent(id="c", name="f", arguments={"t": nan})]),
            MessageContent(tool_calls=[ToolCallContent(id="c", name="f", arguments=[-inf])]),
        ]
        for content in bad_contents:
            message = make_message(session, content=content)
            with pytest.raises(SerializationError):
                await store.save_message(message)
            with pytest.raises(SerializationError):
                await store.save_messages([make_message(session), message])
        assert await store.count_session_messages(session.id) == 0

        bad_calls = [
            make_api_call().with_token_details(TokenDetails(cached_tokens=1, ratio=nan), None),
            make_api_call().with_price(Decimal("0.01"), PriceDetails(rate=inf)),
        ]
        for call in bad_calls:
            with pytest.raises(SerializationError):
                await store.save_api_call(call)
            assert await store.get_api_call(call.id) is None

        provider = make_provider()
        await store.save_provider(provider)
        for agent in (
            make_agent(provider)._replace(custom_params={"top_p": nan}),
            make_agent(provider)._replace(thinking={"budget": inf}),
        ):
            with pytest.raises(SerializationError):
                await store.save_agent(agent)
            assert await store.get_agent(agent.id) is None

    @pytest.mark.asyncio
    async def test_text_that_spells_nan_round_trips(self, store: PersistenceStore) -> None:
        """The words NaN and Infinity in text are text, stored as they are."""
        session = await self._session(store, metadata={"NaN": "Infinity", "n": [-0.5, 2.5e-3]})
        assert await store.get_session(session.id) == session
        message = make_message(session, "NaN or -Infinity?")
        await store.save_message(message)
        assert await store.get_message(message.id) == message

    @pytest.mark.asyncio
    async def test_times_at_the_edges_of_the_range_round_trip(
        self, store: PersistenceStore
    ) -> None:
        """Times from 1000-01-01T00:00Z to just before datetime.max (UTC) come back unchanged."""
        earliest = datetime(1000, 1, 1, tzinfo=UTC)
        latest = datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC)
        session = await self._session(store, create_time=earliest, update_time=latest)
        assert await store.get_session(session.id) == session
        message = make_message(session, create_time=earliest)
        await store.save_message(message)
        assert await store.get_message(message.id) == message
        call = make_api_call(session, create_time=earliest, update_time=latest, latency_ms=None)
        await store.save_api_call(call)
        assert await store.get_api_call(call.id) == call
        assert await store.query_api_calls(QueryFilter().session(session.id)) == [call]

    @pytest.mark.asyncio
    async def test_fifty_concurrent_writers_on_distinct_sessions_lose_nothing(
        self, store: PersistenceStore
    ) -> None:
        """50 concurrent save_message calls on 50 sessions all land."""
        sessions = [make_session() for _ in range(50)]
        await asyncio.gather(*(store.create_session(s) for s in sessions))
        messages = [make_message(s, f"from {i}") for i, s in enumerate(sessions)]
        await asyncio.gather(*(store.save_message(m) for m in messages))
        for session, message in zip(sessions, messages, strict=True):
            assert await store.get_session_messages(session.id) == [message]

    @pytest.mark.asyncio
    async def test_fifty_concurrent_writers_on_one_session_lose_nothing(
        self, store: PersistenceStore
    ) -> None:
        """50 concurrent save_message calls on one session all land, each exactly once."""
        session = await self._session(store)
        messages = [make_message(session, str(i)) for i in range(50)]
        await asyncio.gather(*(store.save_message(m) for m in messages))
        got = await store.get_session_messages(session.id)
        assert sorted(m.id for m in got) == sorted(m.id for m in messages)
        assert await store.count_session_messages(session.id) == 50

    @pytest.mark.asyncio
    async def test_fifty_concurrent_api_call_writers_lose_nothing(
        self, store: PersistenceStore
    ) -> None:
        """50 concurrent save_api_call calls all land."""
        calls = [make_api_call(prompt_tokens=i) for i in range(50)]
        await asyncio.gather(*(store.save_api_call(c) for c in calls))
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_calls == 50
        assert stats.total_prompt_tokens == sum(range(50))

    # -- API calls -----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_api_call_round_trips_every_field(self, store: PersistenceStore) -> None:
        """save_api_call then get_api_call returns an equal call: details, price, microseconds."""
        call = make_api_call(
            model_name="gpt-4o",
            prompt_tokens=1200,
            completion_tokens=300,
            prompt_tokens_details=TokenDetails(cached_tokens=1000, audio_tokens=0),
            completion_tokens_details=TokenDetails(reasoning_tokens=120),
            total_price=Decimal("0.0123456789"),
            price_details=PriceDetails(
                input_price=Decimal("0.01"), output_price=Decimal("0.0023456789"), tier="batch"
            ),
            latency_ms=1234,
            time_to_first_token_ms=321,
            tokens_per_second=243.125,
            api_response_id="chatcmpl-abc123",
            create_time=BASE_TIME.replace(microsecond=111_111),
            update_time=BASE_TIME.replace(microsecond=999_999) + timedelta(seconds=1),
        )
        await store.save_api_call(call)
        got = await store.get_api_call(call.id)
        assert got == call
        assert got is not None
        assert got.total_price == Decimal("0.0123456789")
        assert got.create_time.microsecond == 111_111
        assert got.update_time.microsecond == 999_999
        assert got.prompt_tokens_details is not None
        assert got.prompt_tokens_details.extra == {"audio_tokens": 0}

    @pytest.mark.asyncio
    async def test_failed_api_call_round_trips(self, store: PersistenceStore) -> None:
        """A failed call keeps its status, error message, error code and nil response id."""
        call = LLMApiCall.failed(
            uuid7(),
            uuid7(),
            uuid7(),
            uuid7(),
            uuid7(),
            "gpt-4o",
            "Rate limit reached",
            "429",
            datetime.now(UTC).replace(microsecond=123_456) - timedelta(seconds=2),
            status=ApiCallStatus.RATE_LIMITED,
        )
        await store.save_api_call(call)
        got = await store.get_api_call(call.id)
        assert got == call
        assert got is not None
        assert got.status is ApiCallStatus.RATE_LIMITED
        assert got.response_message_id == NIL_UUID
        assert got.total_price is None

    @pytest.mark.asyncio
    async def test_api_call_needs_no_session(self, store: PersistenceStore) -> None:
        """An API call is stored even when its session does not exist (it is a ledger)."""
        call = make_api_call(make_session())
        await store.save_api_call(call)
        assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_get_missing_api_call_is_none(self, store: PersistenceStore) -> None:
        """get_api_call of an unknown id returns None."""
        assert await store.get_api_call(uuid7()) is None

    @pytest.mark.asyncio
    async def test_api_call_with_reused_id_raises_constraint_error(
        self, store: PersistenceStore
    ) -> None:
        """Saving an API call with an id already stored raises ConstraintError; the first stays."""
        call = make_api_call(prompt_tokens=1)
        await store.save_api_call(call)
        with pytest.raises(ConstraintError):
            await store.save_api_call(make_api_call(id=call.id, prompt_tokens=2))
        got = await store.get_api_call(call.id)
        assert got is not None
        assert got.prompt_tokens == 1

    @pytest.mark.asyncio
    async def test_save_api_calls_is_all_or_nothing(self, store: PersistenceStore) -> None:
        """save_api_calls stores a batch, or nothing when an id repeats or a text is refused."""
        existing = make_api_call()
        await store.save_api_call(existing)
        batch = [make_api_call(prompt_tokens=i) for i in range(5)]
        for bad_batch, error in (
            ([*batch, batch[0]], ConstraintError),
            ([*batch, existing], ConstraintError),
            ([*batch, make_api_call(error_message="\x00")], SerializationError),
        ):
            with pytest.raises(error):
                await store.save_api_calls(bad_batch)
            assert (await store.get_statistics(QueryFilter())).total_calls == 1
            assert await store.get_api_call(batch[0].id) is None
        await store.save_api_calls(batch)
        await store.save_api_calls([])
        assert (await store.get_statistics(QueryFilter())).total_calls == 6
        for call in batch:
            assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_query_api_calls_newest_first(self, store: PersistenceStore) -> None:
        """query_api_calls orders by create_time, then id, both descending."""
        same_time = [make_api_call(create_time=BASE_TIME) for _ in range(3)]
        older = make_api_call(create_time=BASE_TIME - timedelta(microseconds=1))
        newer = make_api_call(create_time=BASE_TIME + timedelta(microseconds=1))
        await store.save_api_calls([same_time[1], older, newer, same_time[2], same_time[0]])
        got = await store.query_api_calls(QueryFilter())
        assert [c.id for c in got] == [
            newer.id,
            same_time[2].id,
            same_time[1].id,
            same_time[0].id,
            older.id,
        ]

    @pytest.mark.asyncio
    async def test_query_api_calls_default_limit_and_pagination(
        self, store: PersistenceStore
    ) -> None:
        """query_api_calls returns at most 100 by default; offset and limit page the rest."""
        calls = [make_api_call(create_time=BASE_TIME + timedelta(seconds=i)) for i in range(130)]
        await store.save_api_calls(calls)
        newest_first = [c.id for c in reversed(calls)]
        assert [c.id for c in await store.query_api_calls(QueryFilter())] == newest_first[:100]
        page = await store.query_api_calls(QueryFilter().paginate(100, 100))
        assert [c.id for c in page] == newest_first[100:]
        page = await store.query_api_calls(QueryFilter().paginate(10, 5))
        assert [c.id for c in page] == newest_first[10:15]
        everything = await store.query_api_calls(QueryFilter(limit=1000))
        assert len(everything) == 130
        assert await store.query_api_calls(QueryFilter(limit=0)) == []
        assert await store.query_api_calls(QueryFilter(offset=500)) == []

    @pytest.mark.asyncio
    async def test_query_api_calls_with_each_filter_field(self, store: PersistenceStore) -> None:
        """query_api_calls honours tenant, user, session, agent, status, model and time filters."""
        population = _Population(seed=7, count=300)
        await store.save_api_calls(population.calls)
        for query, keep in self._filters(population):
            got = await store.query_api_calls(query.paginate(0, 1000))
            expected = sorted(
                (c for c in population.calls if keep(c)),
                key=lambda c: (c.create_time, c.id),
                reverse=True,
            )
            assert expected, "the population should cover every filter"
            assert [c.id for c in got] == [c.id for c in expected]

    @pytest.mark.asyncio
    async def test_time_range_is_half_open(self, store: PersistenceStore) -> None:
        """A call exactly at start_time is included; a call exactly at end_time is excluded."""
        start = BASE_TIME
        end = BASE_TIME + timedelta(hours=1)
        at_start = make_api_call(create_time=start)
        inside = make_api_call(create_time=end - timedelta(microseconds=1))
        at_end = make_api_call(create_time=end)
        before = make_api_call(create_time=start - timedelta(microseconds=1))
        await store.save_api_calls([at_start, inside, at_end, before])
        query = QueryFilter().time_range(start, end)
        got = await store.query_api_calls(query)
        assert {c.id for c in got} == {at_start.id, inside.id}
        assert (await store.get_statistics(query)).total_calls == 2
        only_start = await store.query_api_calls(QueryFilter().time_range(start, None))
        assert {c.id for c in only_start} == {at_start.id, inside.id, at_end.id}
        only_end = await store.query_api_calls(QueryFilter().time_range(None, end))
        assert {c.id for c in only_end} == {at_start.id, inside.id, before.id}
        other_zone = timezone(timedelta(hours=5, minutes=30))
        shifted = await store.query_api_calls(
            QueryFilter().time_range(start.astimezone(other_zone), end.astimezone(other_zone))
        )
        assert {c.id for c in shifted} == {at_start.id, inside.id}

    @pytest.mark.asyncio
    async def test_delete_api_call(self, store: PersistenceStore) -> None:
        """delete_api_call removes one call (True), then reports False."""
        keep, drop = make_api_call(), make_api_call()
        await store.save_api_calls([keep, drop])
        assert await store.delete_api_call(drop.id) is True
        assert await store.delete_api_call(drop.id) is False
        assert await store.get_api_call(drop.id) is None
        assert await store.get_api_call(keep.id) == keep

    @pytest.mark.asyncio
    async def test_cleanup_old_records_counts_and_keeps_messages(
        self, store: PersistenceStore
    ) -> None:
        """cleanup_old_records deletes calls with create_time < before, returns how many."""
        session = await self._session(store)
        message = make_message(session, create_time=BASE_TIME - timedelta(days=30))
        await store.save_message(message)
        offsets = [-3 * 86400, -86400, -1e-6, 0, 1, 86400]
        calls = [
            make_api_call(session, create_time=BASE_TIME + timedelta(seconds=o)) for o in offsets
        ]
        await store.save_api_calls(calls)
        assert await store.cleanup_old_records(BASE_TIME) == 3
        assert await store.cleanup_old_records(BASE_TIME) == 0
        left = await store.query_api_calls(QueryFilter())
        assert {c.id for c in left} == {c.id for c in calls[3:]}
        assert await store.get_message(message.id) == message

    @pytest.mark.asyncio
    async def test_cleanup_refuses_a_naive_cutoff(self, store: PersistenceStore) -> None:
        """A cutoff without a timezone is a ValueError and deletes nothing."""
        call = make_api_call(create_time=BASE_TIME - timedelta(days=1))
        await store.save_api_call(call)
        with pytest.raises(ValueError, match="timezone"):
            await store.cleanup_old_records(BASE_TIME.replace(tzinfo=None))
        assert await store.get_api_call(call.id) == call

    # -- statistics ----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_statistics_of_nothing(self, store: PersistenceStore) -> None:
        """Statistics over no calls are zeros, every status counted 0, cost and averages None."""
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_calls == 0
        assert stats.success_count == 0
        assert stats.failed_count == 0
        assert stats.total_tokens == 0
        assert stats.total_cost is None
        assert stats.avg_latency_ms is None
        assert stats.avg_tokens_per_second is None
        assert stats.avg_time_to_first_token_ms is None
        assert (stats.p50_latency_ms, stats.p95_latency_ms, stats.p99_latency_ms) == (
            None,
            None,
            None,
        )
        assert stats.status_counts == dict.fromkeys(ApiCallStatus, 0)

    @pytest.mark.asyncio
    async def test_statistics_over_many_varied_calls(self, store: PersistenceStore) -> None:
        """Statistics over 1,200 varied calls equal an independent computation, field by field."""
        population = _Population(seed=20240506, count=1200)
        await store.save_api_calls(population.calls[:600])
        for call in population.calls[600:]:
            await store.save_api_call(call)
        _assert_statistics(await store.get_statistics(QueryFilter()), population.calls)

    @pytest.mark.asyncio
    async def test_statistics_with_each_filter_field(self, store: PersistenceStore) -> None:
        """Statistics honour tenant, user, session, agent, status, model and time filters."""
        population = _Population(seed=99, count=400)
        await store.save_api_calls(population.calls)
        for query, keep in self._filters(population):
            expected = [c for c in population.calls if keep(c)]
            _assert_statistics(await store.get_statistics(query), expected)

    @pytest.mark.asyncio
    async def test_statistics_ignore_offset_and_limit(self, store: PersistenceStore) -> None:
        """get_statistics covers every matching call whatever the filter's offset and limit."""
        population = _Population(seed=3, count=150)
        await store.save_api_calls(population.calls)
        stats = await store.get_statistics(QueryFilter().paginate(140, 5))
        _assert_statistics(stats, population.calls)

    @pytest.mark.asyncio
    async def test_latency_percentiles_interpolate_linearly(self, store: PersistenceStore) -> None:
        """p50/p95/p99 interpolate linearly between ranks and skip calls without latency."""
        await store.save_api_call(make_api_call(latency_ms=100))
        await store.save_api_call(make_api_call(latency_ms=None))
        stats = await store.get_statistics(QueryFilter())
        assert (stats.p50_latency_ms, stats.p95_latency_ms, stats.p99_latency_ms) == (
            100.0,
            100.0,
            100.0,
        )
        assert stats.avg_latency_ms == 100.0
        await store.save_api_call(make_api_call(latency_ms=200))
        stats = await store.get_statistics(QueryFilter())
        assert stats.p50_latency_ms == pytest.approx(150.0)
        assert stats.p95_latency_ms == pytest.approx(195.0)
        assert stats.p99_latency_ms == pytest.approx(199.0)
        await store.save_api_calls([make_api_call(latency_ms=ms) for ms in (400, 300)])
        stats = await store.get_statistics(QueryFilter())
        assert stats.p50_latency_ms == pytest.approx(250.0)
        assert stats.p95_latency_ms == pytest.approx(385.0)
        assert stats.p99_latency_ms == pytest.approx(397.0)
        assert stats.avg_latency_ms == pytest.approx(250.0)

    @pytest.mark.asyncio
    async def test_failed_count_is_every_non_success(self, store: PersistenceStore) -> None:
        """failed_count counts failed, timeout, rate-limited and cancelled calls alike."""
        await store.save_api_calls(
            [make_api_call(status=status) for status in ApiCallStatus for _ in range(2)]
        )
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_calls == 10
        assert stats.success_count == 2
        assert stats.failed_count == 8
        assert stats.status_counts == dict.fromkeys(ApiCallStatus, 2)

    @pytest.mark.asyncio
    async def test_total_cost_sums_priced_calls_only(self, store: PersistenceStore) -> None:
        """total_cost is None with no priced call, else the exact Decimal sum of the prices."""
        await store.save_api_call(make_api_call(total_price=None))
        assert (await store.get_statistics(QueryFilter())).total_cost is None
        await store.save_api_call(make_api_call(total_price=Decimal(0)))
        free = (await store.get_statistics(QueryFilter())).total_cost
        assert free is not None
        assert free == 0
        await store.save_api_calls(
            [
                make_api_call(total_price=Decimal("0.1")),
                make_api_call(total_price=Decimal("0.2")),
                make_api_call(total_price=Decimal("0.0000000001")),
            ]
        )
        cost = (await store.get_statistics(QueryFilter())).total_cost
        assert cost == Decimal("0.3000000001")
        assert isinstance(cost, Decimal)

    # -- usage breakdown ---------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_breakdown_without_keys_or_bucket_is_one_overall_row(
        self, store: PersistenceStore
    ) -> None:
        """No group_by and no bucket gives one row with empty keys, even over no calls."""
        rows = await store.get_usage_breakdown(QueryFilter())
        assert len(rows) == 1
        assert rows[0].keys == {}
        assert rows[0].bucket_start is None
        assert rows[0].stats.total_calls == 0
        population = _Population(seed=5, count=120)
        await store.save_api_calls(population.calls)
        rows = await store.get_usage_breakdown(QueryFilter(), [], None)
        assert len(rows) == 1
        _assert_statistics(rows[0].stats, population.calls)

    @pytest.mark.parametrize("key", GROUP_BY_KEYS)
    @pytest.mark.asyncio
    async def test_breakdown_by_each_key(self, store: PersistenceStore, key: GroupKey) -> None:
        """Grouping by one key gives one row per value, ordered by its string form."""
        population = _Population(seed=11, count=300)
        await store.save_api_calls(population.calls)
        rows = await store.get_usage_breakdown(QueryFilter(), [key])
        groups: dict[Any, list[LLMApiCall]] = {}
        for call in population.calls:
            groups.setdefault(_key_value(call, key), []).append(call)
        expected_order = sorted(groups, key=str)
        assert [row.keys for row in rows] == [{key: value} for value in expected_order]
        for row, value in zip(rows, expected_order, strict=True):
            assert row.bucket_start is None
            assert type(row.keys[key]) is type(value)
            _assert_statistics(row.stats, groups[value])

    @pytest.mark.asyncio
    async def test_breakdown_by_several_keys(self, store: PersistenceStore) -> None:
        """Grouping by several keys gives one row per combination, ordered key by key."""
        population = _Population(seed=13, count=300)
        await store.save_api_calls(population.calls)
        group_by: list[GroupKey] = ["status", "model", "tenant"]
        rows = await store.get_usage_breakdown(QueryFilter(), group_by)
        groups: dict[tuple[Any, ...], list[LLMApiCall]] = {}
        for call in population.calls:
            groups.setdefault(tuple(_key_value(call, k) for k in group_by), []).append(call)
        expected_order = sorted(groups, key=lambda values: tuple(str(v) for v in values))
        assert [row.keys for row in rows] == [
            dict(zip(group_by, values, strict=True)) for values in expected_order
        ]
        for row, values in zip(rows, expected_order, strict=True):
            _assert_statistics(row.stats, groups[values])

    @pytest.mark.parametrize(
        ("bucket", "times_and_starts"),
        [
            (
                "hour",
                [
                    (
                        datetime(2024, 3, 10, 10, 0, tzinfo=UTC),
                        datetime(2024, 3, 10, 10, tzinfo=UTC),
                    ),
                    (
                        datetime(2024, 3, 10, 10, 59, 59, 999_999, tzinfo=UTC),
                        datetime(2024, 3, 10, 10, tzinfo=UTC),
                    ),
                    (
                        datetime(2024, 3, 10, 11, 0, tzinfo=UTC),
                        datetime(2024, 3, 10, 11, tzinfo=UTC),
                    ),
                    (
                        datetime(2024, 3, 10, 9, 30, tzinfo=UTC),
                        datetime(2024, 3, 10, 9, tzinfo=UTC),
                    ),
                ],
            ),
            (
                "day",
                [
                    (
                        datetime(2024, 3, 10, 23, 59, 59, 999_999, tzinfo=UTC),
                        datetime(2024, 3, 10, tzinfo=UTC),
                    ),
                    (datetime(2024, 3, 11, 0, 0, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)),
                    (
                        datetime(2024, 3, 11, 2, 0, tzinfo=timezone(timedelta(hours=5))),
                        datetime(2024, 3, 10, tzinfo=UTC),
                    ),
                    (datetime(2024, 2, 29, 12, 0, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),
                ],
            ),
            (
                "week",
                [
                    (datetime(2024, 3, 10, 23, 0, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)),
                    (datetime(2024, 3, 4, 0, 0, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)),
                    (datetime(2024, 3, 11, 0, 0, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)),
                    (datetime(2024, 1, 3, 8, 0, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),
                    (datetime(2023, 12, 31, 8, 0, tzinfo=UTC), datetime(2023, 12, 25, tzinfo=UTC)),
                ],
            ),
            (
                "month",
                [
                    (
                        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
                        datetime(2024, 2, 1, tzinfo=UTC),
                    ),
                    (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
                    (datetime(2024, 2, 1, 0, 0, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
                    (datetime(2023, 12, 31, 12, 0, tzinfo=UTC), datetime(2023, 12, 1, tzinfo=UTC)),
                ],
            ),
        ],
    )
    @pytest.mark.asyncio
    async def test_breakdown_by_bucket(
        self,
        store: PersistenceStore,
        bucket: Bucket,
        times_and_starts: list[tuple[datetime, datetime]],
    ) -> None:
        """Buckets start at the UTC hour, day, Monday 00:00 or 1st of the month; sorted by start."""
        calls = [make_api_call(create_time=moment) for moment, _ in times_and_starts]
        await store.save_api_calls(calls)
        rows = await store.get_usage_breakdown(QueryFilter(), [], bucket)
        counts: dict[datetime, int] = {}
        for _, start in times_and_starts:
            counts[start] = counts.get(start, 0) + 1
        assert [(row.bucket_start, row.stats.total_calls) for row in rows] == sorted(counts.items())
        for row in rows:
            assert row.keys == {}
            assert row.bucket_start is not None
            assert row.bucket_start.utcoffset() == timedelta(0)

    @pytest.mark.asyncio
    async def test_breakdown_by_bucket_and_key_orders_by_bucket_then_key(
        self, store: PersistenceStore
    ) -> None:
        """Rows sort by bucket_start first, then by key; only non-empty groups appear."""
        day1 = datetime(2024, 4, 1, 9, tzinfo=UTC)
        day2 = datetime(2024, 4, 2, 9, tzinfo=UTC)
        await store.save_api_calls(
            [
                make_api_call(model_name="zeta", create_time=day1),
                make_api_call(model_name="alpha", create_time=day2),
                make_api_call(model_name="alpha", create_time=day1),
                make_api_call(model_name="zeta", create_time=day1, prompt_tokens=90),
            ]
        )
        rows = await store.get_usage_breakdown(QueryFilter(), ["model"], "day")
        assert [(r.bucket_start, r.keys["model"], r.stats.total_calls) for r in rows] == [
            (datetime(2024, 4, 1, tzinfo=UTC), "alpha", 1),
            (datetime(2024, 4, 1, tzinfo=UTC), "zeta", 2),
            (datetime(2024, 4, 2, tzinfo=UTC), "alpha", 1),
        ]
        assert rows[1].stats.total_prompt_tokens == 100

    @pytest.mark.asyncio
    async def test_breakdown_applies_the_filter(self, store: PersistenceStore) -> None:
        """A breakdown covers only the calls the filter matches, ignoring offset and limit."""
        population = _Population(seed=17, count=200)
        await store.save_api_calls(population.calls)
        tenant = population.tenants[0]
        rows = await store.get_usage_breakdown(
            QueryFilter().tenant(tenant).paginate(5, 1), ["status"]
        )
        mine = [c for c in population.calls if c.tenant_id == tenant]
        assert sum(r.stats.total_calls for r in rows) == len(mine)
        for row in rows:
            _assert_statistics(row.stats, [c for c in mine if c.status is row.keys["status"]])

    @pytest.mark.asyncio
    async def test_breakdown_refuses_bad_arguments(self, store: PersistenceStore) -> None:
        """An unknown group_by key or bucket raises ValueError; a bare string raises TypeError."""
        with pytest.raises(ValueError, match="group_by"):
            await store.get_usage_breakdown(QueryFilter(), ["nope"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="bucket"):
            await store.get_usage_breakdown(QueryFilter(), ["model"], "year")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await store.get_usage_breakdown(QueryFilter(), "model")  # type: ignore[arg-type]

    # -- providers and agents ------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_provider_round_trips(self, store: PersistenceStore) -> None:
        """save_provider then get_provider returns an equal provider, API key included."""
        provider = make_provider(api_key="sk-secret-ünïcode-🔑")
        await store.save_provider(provider)
        got = await store.get_provider(provider.id)
        assert got == provider
        assert got is not None
        assert got.api_key.get_secret_value() == "sk-secret-ünïcode-🔑"
        assert "sk-secret" not in repr(got)
        assert await store.get_provider(uuid7()) is None

    @pytest.mark.asyncio
    async def test_save_provider_replaces_by_id(self, store: PersistenceStore) -> None:
        """Saving a provider again with the same id replaces it."""
        provider = make_provider(name="first")
        await store.save_provider(provider)
        renamed = provider._replace(provider_name="second", enabled=False)
        await store.save_provider(renamed)
        assert await store.get_provider(provider.id) == renamed
        assert await store.list_providers(provider.tenant_id) == [renamed]

    @pytest.mark.asyncio
    async def test_provider_name_is_unique_per_tenant(self, store: PersistenceStore) -> None:
        """A second provider with a tenant's existing name raises ConstraintError."""
        tenant = uuid7()
        first = make_provider(tenant_id=tenant, name="openai")
        await store.save_provider(first)
        clash = make_provider(tenant_id=tenant, name="openai")
        with pytest.raises(ConstraintError):
            await store.save_provider(clash)
        assert await store.get_provider(clash.id) is None
        elsewhere = make_provider(name="openai")
        await store.save_provider(elsewhere)
        assert await store.get_provider(elsewhere.id) == elsewhere

    @pytest.mark.asyncio
    async def test_provider_lookups_by_name_and_tenant(self, store: PersistenceStore) -> None:
        """get_provider_by_name, list_providers and get_enabled_providers stay in one tenant."""
        tenant = uuid7()
        zeta = make_provider(tenant_id=tenant, name="zeta")
        alpha = make_provider(tenant_id=tenant, name="alpha", enabled=False)
        mid = make_provider(tenant_id=tenant, name="mid")
        foreign = make_provider(name="alpha")
        for provider in (zeta, alpha, mid, foreign):
            await store.save_provider(provider)
        assert await store.get_provider_by_name(tenant, "alpha") == alpha
        assert await store.get_provider_by_name(foreign.tenant_id, "alpha") == foreign
        assert await store.get_provider_by_name(tenant, "missing") is None
        assert await store.list_providers(tenant) == [alpha, mid, zeta]
        assert await store.get_enabled_providers(tenant) == [mid, zeta]
        assert await store.list_providers(uuid7()) == []

    @pytest.mark.asyncio
    async def test_delete_provider_deletes_its_agents(self, store: PersistenceStore) -> None:
        """delete_provider removes the provider and its agents (True), then reports False."""
        provider = make_provider()
        other = make_provider(tenant_id=provider.tenant_id, name="other")
        await store.save_provider(provider)
        await store.save_provider(other)
        doomed = make_agent(provider)
        kept = make_agent(other)
        await store.save_agent(doomed)
        await store.save_agent(kept)
        assert await store.delete_provider(provider.id) is True
        assert await store.delete_provider(provider.id) is False
        assert await store.get_provider(provider.id) is None
        assert await store.get_agent(doomed.id) is None
        assert await store.get_agent(kept.id) == kept

    @pytest.mark.asyncio
    async def test_agent_round_trips(self, store: PersistenceStore) -> None:
        """save_agent then get_agent returns an equal agent, JSON fields included."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider, code="writer")
        await store.save_agent(agent)
        assert await store.get_agent(agent.id) == agent
        assert await store.get_agent(uuid7()) is None
        bare = agent._replace(
            id=uuid7(),
            agent_code="bare",
            context_limit=None,
            custom_params=None,
            max_completion_tokens=None,
            response_format=None,
            temperature=None,
            stream=None,
            thinking=None,
        )
        await store.save_agent(bare)
        assert await store.get_agent(bare.id) == bare

    @pytest.mark.asyncio
    async def test_save_agent_replaces_by_id(self, store: PersistenceStore) -> None:
        """Saving an agent again with the same id replaces it."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider, code="a1")
        await store.save_agent(agent)
        changed = agent._replace(agent_name="Renamed", agent_code="a2", agent_status=False)
        await store.save_agent(changed)
        assert await store.get_agent(agent.id) == changed
        assert await store.get_agent_by_code("a1") is None

    @pytest.mark.asyncio
    async def test_agent_needs_an_existing_provider(self, store: PersistenceStore) -> None:
        """Saving an agent whose provider does not exist raises ConstraintError."""
        agent = make_agent(make_provider())
        with pytest.raises(ConstraintError):
            await store.save_agent(agent)
        assert await store.get_agent(agent.id) is None

    @pytest.mark.asyncio
    async def test_agent_code_is_unique(self, store: PersistenceStore) -> None:
        """A second agent with an existing code raises ConstraintError, even in another tenant."""
        provider = make_provider()
        foreign = make_provider()
        await store.save_provider(provider)
        await store.save_provider(foreign)
        await store.save_agent(make_agent(provider, code="shared"))
        clash = make_agent(foreign, code="shared")
        with pytest.raises(ConstraintError):
            await store.save_agent(clash)
        assert await store.get_agent(clash.id) is None

    @pytest.mark.asyncio
    async def test_agent_lookups(self, store: PersistenceStore) -> None:
        """Agents are found by code, by code and tenant, and listed by order then code."""
        provider = make_provider()
        tenant = provider.tenant_id
        await store.save_provider(provider)
        b2 = make_agent(provider, code="b", order=2)
        a2 = make_agent(provider, code="a", order=2, active=False)
        c1 = make_agent(provider, code="c", order=1)
        foreign_provider = make_provider()
        await store.save_provider(foreign_provider)
        foreign = make_agent(foreign_provider, code="z", order=0)
        for agent in (b2, a2, c1, foreign):
            await store.save_agent(agent)
        assert await store.get_agent_by_code("a") == a2
        assert await store.get_agent_by_code("missing") is None
        assert await store.get_agent_by_code_and_tenant(tenant, "b") == b2
        assert await store.get_agent_by_code_and_tenant(tenant, "z") is None
        assert await store.list_agents(tenant) == [c1, a2, b2]
        assert await store.get_active_agents(tenant) == [c1, b2]
        assert await store.list_agents(uuid7()) == []

    @pytest.mark.asyncio
    async def test_agent_with_provider_lookups(self, store: PersistenceStore) -> None:
        """The *_with_provider lookups pair an agent with its provider, or return None."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider, code="paired")
        await store.save_agent(agent)
        expected = AgentConfig(provider=provider, agent=agent)
        assert await store.get_agent_with_provider(agent.id) == expected
        assert await store.get_agent_by_code_with_provider("paired") == expected
        assert (
            await store.get_agent_by_code_and_tenant_with_provider(provider.tenant_id, "paired")
            == expected
        )
        assert await store.get_agent_with_provider(uuid7()) is None
        assert await store.get_agent_by_code_with_provider("nope") is None
        assert await store.get_agent_by_code_and_tenant_with_provider(uuid7(), "paired") is None

    @pytest.mark.asyncio
    async def test_delete_agent(self, store: PersistenceStore) -> None:
        """delete_agent removes one agent (True), then reports False; its provider stays."""
        provider = make_provider()
        await store.save_provider(provider)
        agent = make_agent(provider)
        await store.save_agent(agent)
        assert await store.delete_agent(agent.id) is True
        assert await store.delete_agent(agent.id) is False
        assert await store.get_agent(agent.id) is None
        assert await store.get_provider(provider.id) == provider

    @pytest.mark.asyncio
    async def test_nul_in_provider_or_agent_raises_serialization_error(
        self, store: PersistenceStore
    ) -> None:
        """NUL in a provider's or agent's text raises SerializationError; nothing is stored."""
        bad_provider = make_provider(name="bad\x00name")
        with pytest.raises(SerializationError):
            await store.save_provider(bad_provider)
        assert await store.get_provider(bad_provider.id) is None
        provider = make_provider()
        await store.save_provider(provider)
        bad_agent = make_agent(provider)._replace(system_prompt="be \x00 nice")
        with pytest.raises(SerializationError):
            await store.save_agent(bad_agent)
        assert await store.get_agent(bad_agent.id) is None

    # -- listing and pruning sessions ----------------------------------------------------

    async def _sessions_over_time(self, store: PersistenceStore) -> list[ChatSession]:
        """Twenty sessions of two tenants, three users and two agents, active over 40 days."""
        rng = random.Random(11)  # noqa: S311  (reproducible test data, not security)
        tenants, users, agents = (
            [uuid7() for _ in range(2)],
            [uuid7() for _ in range(3)],
            [uuid7() for _ in range(2)],
        )
        sessions = []
        for _ in range(20):
            created = BASE_TIME + timedelta(
                days=rng.randint(0, 20), microseconds=rng.randint(0, 999)
            )
            session = make_session(
                tenant_id=rng.choice(tenants),
                user_id=rng.choice(users),
                agent_id=rng.choice(agents),
                create_time=created,
                update_time=created
                + timedelta(days=rng.randint(0, 20), seconds=rng.randint(0, 99)),
            )
            await store.create_session(session)
            sessions.append(session)
        return sessions

    @staticmethod
    def _session_filters(
        sessions: Sequence[ChatSession],
    ) -> list[tuple[QueryFilter, Callable[[ChatSession], bool]]]:
        """One query per session filter field (and a combination), with the predicate it means."""
        first = sessions[0]
        start, end = BASE_TIME + timedelta(days=10), BASE_TIME + timedelta(days=25)
        return [
            (QueryFilter(), lambda s: True),
            (QueryFilter().tenant(first.tenant_id), lambda s: s.tenant_id == first.tenant_id),
            (QueryFilter().user(first.user_id), lambda s: s.user_id == first.user_id),
            (QueryFilter().agent(first.agent_id), lambda s: s.agent_id == first.agent_id),
            (QueryFilter().session(first.id), lambda s: s.id == first.id),
            (QueryFilter().time_range(start, end), lambda s: start <= s.update_time < end),
            (
                QueryFilter().tenant(first.tenant_id).user(first.user_id).time_range(start, None),
                lambda s: (
                    s.tenant_id == first.tenant_id
                    and s.user_id == first.user_id
                    and s.update_time >= start
                ),
            ),
        ]

    @pytest.mark.asyncio
    async def test_list_sessions_with_each_filter_field(self, store: PersistenceStore) -> None:
        """list_sessions honours tenant, user, agent, session id and a range on update_time."""
        sessions = await self._sessions_over_time(store)
        for query, keep in self._session_filters(sessions):
            expected = sorted(
                (s for s in sessions if keep(s)), key=lambda s: (s.update_time, s.id), reverse=True
            )
            assert expected, "the sessions should cover every filter"
            got = await store.list_sessions(query)
            assert [s.id for s in got] == [s.id for s in expected]
            assert got == expected

    @pytest.mark.asyncio
    async def test_list_sessions_most_recently_active_first(self, store: PersistenceStore) -> None:
        """list_sessions orders by update_time, then id, both descending; a message moves it up."""
        same_time = [make_session(update_time=BASE_TIME + timedelta(hours=1)) for _ in range(3)]
        older = make_session(update_time=BASE_TIME + timedelta(microseconds=1))
        newer = make_session(update_time=BASE_TIME + timedelta(hours=2))
        for session in (same_time[1], newer, older, same_time[2], same_time[0]):
            await store.create_session(session)
        got = await store.list_sessions(QueryFilter())
        assert [s.id for s in got] == [
            newer.id,
            same_time[2].id,
            same_time[1].id,
            same_time[0].id,
            older.id,
        ]
        await store.save_message(make_message(older, create_time=BASE_TIME + timedelta(hours=3)))
        assert (await store.list_sessions(QueryFilter()))[0].id == older.id

    @pytest.mark.asyncio
    async def test_list_sessions_time_range_is_half_open_on_update_time(
        self, store: PersistenceStore
    ) -> None:
        """A session last active at start is in, at end is out; its create_time plays no part."""
        start, end = BASE_TIME, BASE_TIME + timedelta(days=1)
        old_but_active = make_session(create_time=start - timedelta(days=30), update_time=start)
        inside = make_session(create_time=start, update_time=end - timedelta(microseconds=1))
        at_end = make_session(create_time=start, update_time=end)
        before = make_session(update_time=start - timedelta(microseconds=1))
        for session in (old_but_active, inside, at_end, before):
            await store.create_session(session)
        got = await store.list_sessions(QueryFilter().time_range(start, end))
        assert {s.id for s in got} == {old_but_active.id, inside.id}

    @pytest.mark.asyncio
    async def test_list_sessions_default_limit_and_pagination(
        self, store: PersistenceStore
    ) -> None:
        """list_sessions returns at most 100 by default; offset and limit page the rest."""
        sessions = [
            make_session(update_time=BASE_TIME + timedelta(seconds=i))
            for i in range(DEFAULT_QUERY_LIMIT + 30)
        ]
        for session in sessions:
            await store.create_session(session)
        newest_first = [s.id for s in reversed(sessions)]
        assert [s.id for s in await store.list_sessions(QueryFilter())] == newest_first[:100]
        page = await store.list_sessions(QueryFilter().paginate(100, 100))
        assert [s.id for s in page] == newest_first[100:]
        page = await store.list_sessions(QueryFilter().paginate(10, 5))
        assert [s.id for s in page] == newest_first[10:15]
        assert len(await store.list_sessions(QueryFilter(limit=1000))) == 130
        assert await store.list_sessions(QueryFilter(limit=0)) == []
        assert await store.list_sessions(QueryFilter(offset=500)) == []

    @pytest.mark.asyncio
    async def test_list_sessions_refuses_status_and_model(self, store: PersistenceStore) -> None:
        """A session filter naming a status or a model is a ValueError, not ignored."""
        with pytest.raises(ValueError, match="status or model"):
            await store.list_sessions(QueryFilter().with_status(ApiCallStatus.FAILED))
        with pytest.raises(ValueError, match="model_name"):
            await store.list_sessions(QueryFilter().model("gpt-4o"))

    @pytest.mark.asyncio
    async def test_cleanup_old_sessions_deletes_messages_and_keeps_api_calls(
        self, store: PersistenceStore
    ) -> None:
        """Sessions last active before the cutoff go with their messages; API calls stay."""
        cutoff = BASE_TIME + timedelta(days=10)
        gone = [
            await self._session(store, update_time=cutoff - timedelta(days=3)),
            await self._session(store, update_time=cutoff - timedelta(microseconds=1)),
        ]
        kept = [
            await self._session(store, update_time=cutoff),  # exactly at the cutoff: kept
            await self._session(store, update_time=cutoff + timedelta(days=1)),
        ]
        # created long ago, active since: its old message stays with it
        revived = await self._session(store, create_time=BASE_TIME)
        old_message = make_message(revived, create_time=BASE_TIME)
        await store.save_message(old_message)
        await store.save_message(make_message(revived, create_time=cutoff + timedelta(hours=1)))
        messages = {s.id: make_message(s, create_time=BASE_TIME) for s in [*gone, *kept]}
        await store.save_messages(list(messages.values()))
        calls = [make_api_call(s) for s in [*gone, *kept]]
        await store.save_api_calls(calls)

        assert await store.cleanup_old_sessions(cutoff) == 2
        assert await store.cleanup_old_sessions(cutoff) == 0
        for session in gone:
            assert await store.get_session(session.id) is None
            assert await store.get_message(messages[session.id].id) is None
            assert await store.count_session_messages(session.id) == 0
        for session in kept:
            assert await store.get_session(session.id) is not None
            assert await store.get_message(messages[session.id].id) == messages[session.id]
        assert await store.get_message(old_message.id) == old_message
        for call in calls:
            assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_cleanup_old_sessions_refuses_a_naive_cutoff(
        self, store: PersistenceStore
    ) -> None:
        """A cutoff without a timezone is a ValueError and deletes nothing."""
        session = await self._session(store, update_time=BASE_TIME - timedelta(days=1))
        with pytest.raises(ValueError, match="timezone"):
            await store.cleanup_old_sessions(BASE_TIME.replace(tzinfo=None))
        assert await store.get_session(session.id) == session

    # -- batch ingest --------------------------------------------------------------------

    @staticmethod
    def _ingest_batch() -> tuple[list[ChatSession], list[LLMMessage], list[LLMApiCall]]:
        """Two sessions, six messages alternating between them (each replying to the one
        before it in its session), four API calls."""
        sessions = [make_session(create_time=BASE_TIME) for _ in range(2)]
        messages: list[LLMMessage] = []
        last: dict[UUID, UUID] = {}
        for i in range(6):
            session = sessions[i % 2]
            message = make_message(
                session,
                f"m{i}",
                create_time=BASE_TIME + timedelta(minutes=i + 1),
                parent_message_id=last.get(session.id),
            )
            last[session.id] = message.id
            messages.append(message)
        calls = [
            make_api_call(sessions[i % 2], request_message_id=messages[i].id, prompt_tokens=i)
            for i in range(4)
        ]
        return sessions, messages, calls

    async def _assert_stored_once(
        self,
        store: PersistenceStore,
        sessions: Sequence[ChatSession],
        messages: Sequence[LLMMessage],
        calls: Sequence[LLMApiCall],
    ) -> None:
        """Exactly these records are stored, each once; a session's update_time is its newest
        message's, as save_messages leaves it."""
        assert await store.count_records("sessions", QueryFilter()) == len(sessions)
        assert await store.count_records("messages", QueryFilter()) == len(messages)
        assert await store.count_records("api_calls", QueryFilter()) == len(calls)
        for session in sessions:
            own = [m for m in messages if m.chat_session_id == session.id]
            newest = max([session.update_time, *(m.update_time for m in own)])
            assert await store.get_session(session.id) == session._replace(update_time=newest)
            assert await store.get_session_messages(session.id) == own
        for call in calls:
            assert await store.get_api_call(call.id) == call

    @pytest.mark.asyncio
    async def test_ingest_twice_stores_once(self, store: PersistenceStore) -> None:
        """A batch ingested twice (its acknowledgement lost) is stored once, without an error."""
        sessions, messages, calls = self._ingest_batch()
        await store.ingest_records(sessions, messages, calls)
        await self._assert_stored_once(store, sessions, messages, calls)
        await store.ingest_records(sessions, messages, calls)
        await self._assert_stored_once(store, sessions, messages, calls)
        await store.ingest_records(sessions=sessions, messages=messages[2:], calls=calls[:1])
        await self._assert_stored_once(store, sessions, messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_stores_the_part_not_stored_yet(self, store: PersistenceStore) -> None:
        """Stored records are skipped and the rest stored; a stored session stays as it is."""
        sessions, messages, calls = self._ingest_batch()
        kept = sessions[0].with_title("stored first")
        await store.create_session(kept)
        await store.save_messages([m for m in messages if m.chat_session_id == kept.id][:2])
        await store.save_api_calls(calls[::2])
        await store.ingest_records(sessions, messages, calls)
        await self._assert_stored_once(store, [kept, sessions[1]], messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_of_mixed_kinds_one_at_a_time(self, store: PersistenceStore) -> None:
        """Any kind may come alone; an empty ingest does nothing; keywords work."""
        sessions, messages, calls = self._ingest_batch()
        await store.ingest_records()
        await store.ingest_records(calls=calls)
        await store.ingest_records(sessions=sessions[:1])
        await store.ingest_records(sessions[1:], messages)
        await self._assert_stored_once(store, sessions, messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_keeps_the_first_of_repeated_ids(self, store: PersistenceStore) -> None:
        """An id repeated inside one batch is stored once, as its first record."""
        session = make_session(title="first")
        message = make_message(session, "first")
        call = make_api_call(session, prompt_tokens=1)
        await store.ingest_records(
            [session, session.with_title("second")],
            [message, message._replace(content=MessageContent(text="second")), message],
            [call, make_api_call(session, id=call.id, prompt_tokens=2)],
        )
        await self._assert_stored_once(store, [session], [message], [call])

    @pytest.mark.asyncio
    async def test_ingest_that_fails_stores_nothing(self, store: PersistenceStore) -> None:
        """A missing session or parent (ConstraintError) or a NUL (SerializationError) anywhere
        in the batch stores none of it, stored ids or not."""
        stored = await self._session(store)
        sessions, messages, calls = self._ingest_batch()
        orphan = make_message(make_session())
        lost_parent = make_message(sessions[0], parent_message_id=uuid7())
        before = (await store.get_session(stored.id), await store.get_session_messages(stored.id))
        for bad_messages, error in (
            ([*messages, orphan], ConstraintError),
            ([lost_parent, *messages], ConstraintError),
            ([make_message(stored), orphan], ConstraintError),
            ([*messages, make_message(sessions[1], "nul \x00")], SerializationError),
        ):
            with pytest.raises(error):
                await store.ingest_records([*sessions, stored], bad_messages, calls)
            assert await store.count_records("sessions", QueryFilter()) == 1
            assert await store.count_records("messages", QueryFilter()) == 0
            assert await store.count_records("api_calls", QueryFilter()) == 0
            after = (
                await store.get_session(stored.id),
                await store.get_session_messages(stored.id),
            )
            assert after == before
        with pytest.raises(SerializationError):
            await store.ingest_records(
                sessions, messages, [*calls, make_api_call(model_name="\x00")]
            )
        with pytest.raises(SerializationError):
            await store.ingest_records([*sessions, make_session(title="\x00")], messages, calls)
        assert await store.count_records("sessions", QueryFilter()) == 1
        assert await store.count_records("api_calls", QueryFilter()) == 0
        await store.ingest_records(sessions, messages, calls)  # the good batch still goes in
        await self._assert_stored_once(store, [stored, *sessions], messages, calls)

    @pytest.mark.asyncio
    async def test_concurrent_ingests_of_one_batch_store_it_once(
        self, store: PersistenceStore
    ) -> None:
        """The same batch shipped by four writers at once: no error, every record once."""
        sessions, messages, calls = self._ingest_batch()
        await asyncio.gather(*(store.ingest_records(sessions, messages, calls) for _ in range(4)))
        await self._assert_stored_once(store, sessions, messages, calls)

    @pytest.mark.asyncio
    async def test_ingest_of_a_large_half_stored_batch(self, store: PersistenceStore) -> None:
        """120 sessions, 700 messages and 700 calls, half stored already: the rest lands once."""
        session = await self._session(store)
        others = [make_session(title=f"s{i}", metadata={"i": [i, "ü"]}) for i in range(120)]
        for other in others[::2]:
            await store.create_session(other)
        start = datetime.now(UTC)
        messages = [
            make_message(session, f"m{i}", create_time=start + timedelta(microseconds=i))
            for i in range(700)
        ]
        calls = [make_api_call(session, prompt_tokens=i) for i in range(700)]
        await store.save_messages(messages[::2])
        await store.save_api_calls(calls[1::2])
        await store.ingest_records([session, *others], messages, calls)
        await store.ingest_records([session, *others], messages, calls)
        assert await store.get_session_messages(session.id) == messages
        assert await store.count_records("sessions", QueryFilter()) == 121
        for other in others:
            assert await store.get_session(other.id) == other
        assert await store.count_records("api_calls", QueryFilter()) == 700
        stats = await store.get_statistics(QueryFilter())
        assert stats.total_prompt_tokens == sum(range(700))
        got = await store.get_session(session.id)
        assert got is not None
        assert got.update_time == messages[-1].update_time

    # -- counting and exporting ------------------------------------------------------------

    async def _one_of_each_kind(
        self, store: PersistenceStore, kind: RecordKind, count: int
    ) -> list[UUID]:
        """``count`` records of ``kind`` saved out of id order; their ids, in id order."""
        if kind == "sessions":
            records: list[Any] = [make_session() for _ in range(count)]
        elif kind == "messages":
            session = await self._session(store)
            records = [make_message(session, f"m{i}") for i in range(count)]
        else:
            records = [make_api_call() for _ in range(count)]
        shuffled = list(records)
        random.Random(count).shuffle(shuffled)  # noqa: S311  (test data)
        for record in shuffled:
            if kind == "sessions":
                await store.create_session(record)
            elif kind == "messages":
                await store.save_message(record)
            else:
                await store.save_api_call(record)
        return sorted(record.id for record in records)

    @pytest.mark.parametrize("kind", RECORD_KINDS)
    @pytest.mark.asyncio
    async def test_export_comes_in_id_order_and_full_chunks(
        self, store: PersistenceStore, kind: RecordKind
    ) -> None:
        """7 records by chunks of 3 come as 3, 3, 1 in id order; no empty chunk ever."""
        assert await _drain(store.export_records(kind, QueryFilter(), chunk_size=3)) == []
        ids = await self._one_of_each_kind(store, kind, 7)
        for size, shape in ((3, [3, 3, 1]), (7, [7]), (1, [1] * 7), (1000, [7])):
            chunks = await _drain(store.export_records(kind, QueryFilter(), chunk_size=size))
            assert [len(chunk) for chunk in chunks] == shape
            assert [record["id"] for chunk in chunks for record in chunk] == [str(i) for i in ids]
        assert await store.count_records(kind, QueryFilter()) == 7

    @pytest.mark.parametrize("kind", RECORD_KINDS)
    @pytest.mark.asyncio
    async def test_export_of_an_exact_multiple_of_the_chunk_size(
        self, store: PersistenceStore, kind: RecordKind
    ) -> None:
        """6 records by chunks of 3 come as 3 and 3, with no trailing empty chunk."""
        ids = await self._one_of_each_kind(store, kind, 6)
        chunks = await _drain(store.export_records(kind, QueryFilter(), chunk_size=3))
        assert [[record["id"] for record in chunk] for chunk in chunks] == [
            [str(i) for i in ids[:3]],
            [str(i) for i in ids[3:]],
        ]

    @pytest.mark.asyncio
    async def test_export_order_is_id_order_not_time_order(self, store: PersistenceStore) -> None:
        """Records whose times run against their ids are still exported by id."""
        calls = [make_api_call(create_time=BASE_TIME - timedelta(minutes=i)) for i in range(5)]
        await store.save_api_calls(calls)
        assert [r["id"] for r in await _exported(store, "api_calls")] == [str(c.id) for c in calls]

    @pytest.mark.parametrize("kind", RECORD_KINDS)
    @pytest.mark.asyncio
    async def test_export_and_count_ignore_offset_and_limit(
        self, store: PersistenceStore, kind: RecordKind
    ) -> None:
        """A filter's offset and limit change neither what is counted nor what is exported."""
        ids = await self._one_of_each_kind(store, kind, 5)
        for query in (QueryFilter().paginate(2, 1), QueryFilter(limit=0), QueryFilter(offset=9)):
            assert await store.count_records(kind, query) == 5
            assert [r["id"] for r in await _exported(store, kind, query)] == [str(i) for i in ids]

    @pytest.mark.asyncio
    async def test_export_and_count_refuse_bad_arguments(self, store: PersistenceStore) -> None:
        """Unknown kind, status or model on sessions or messages, chunk_size < 1: ValueError."""
        unknown: Any = "calls"
        with pytest.raises(ValueError, match="'sessions', 'messages', 'api_calls'"):
            await store.count_records(unknown, QueryFilter())
        with pytest.raises(ValueError, match="'sessions', 'messages', 'api_calls'"):
            await _drain(store.export_records(unknown, QueryFilter()))
        kinds: list[RecordKind] = ["sessions", "messages"]
        for kind in kinds:
            for query in (
                QueryFilter().with_status("failed"),
                QueryFilter().model("gpt-4o"),
                QueryFilter().with_error_code("server_error"),
                QueryFilter().cost_range(Decimal(0), None),
                QueryFilter().latency_range(None, 10),
            ):
                with pytest.raises(ValueError, match="status or model"):
                    await store.count_records(kind, query)
                with pytest.raises(ValueError, match="status or model"):
                    await _drain(store.export_records(kind, query))
        for size in (0, -1):
            with pytest.raises(ValueError, match="chunk_size"):
                await _drain(store.export_records("api_calls", QueryFilter(), chunk_size=size))
        # API calls do have a status and a model
        assert await store.count_records("api_calls", QueryFilter().with_status("failed")) == 0

    @pytest.mark.asyncio
    async def test_count_and_export_api_calls_with_each_filter_field(
        self, store: PersistenceStore
    ) -> None:
        """API calls are counted and exported by the filter query_api_calls uses, in id order."""
        population = _Population(seed=5, count=300)
        await store.save_api_calls(population.calls)
        everything: tuple[QueryFilter, Callable[[LLMApiCall], bool]] = (
            QueryFilter(),
            lambda c: True,
        )
        for query, keep in [everything, *self._filters(population)]:
            expected = sorted(c.id for c in population.calls if keep(c))
            assert expected, "the population should cover every filter"
            assert await store.count_records("api_calls", query) == len(expected)
            got = await _drain(store.export_records("api_calls", query, chunk_size=16))
            assert [r["id"] for chunk in got for r in chunk] == [str(i) for i in expected]

    @pytest.mark.asyncio
    async def test_count_and_export_sessions_as_list_sessions_filters_them(
        self, store: PersistenceStore
    ) -> None:
        """Sessions are counted and exported by the filter of list_sessions (update_time range)."""
        sessions = await self._sessions_over_time(store)
        for query, keep in self._session_filters(sessions):
            expected = sorted(s.id for s in sessions if keep(s))
            assert await store.count_records("sessions", query) == len(expected)
            got = await _exported(store, "sessions", query)
            assert [r["id"] for r in got] == [str(i) for i in expected]

    @pytest.mark.asyncio
    async def test_count_and_export_messages_with_each_filter_field(
        self, store: PersistenceStore
    ) -> None:
        """Messages are counted and exported by tenant, user, agent, session and create_time."""
        tenant, user, agent = uuid7(), uuid7(), uuid7()
        sessions = [
            await self._session(store, tenant_id=tenant, user_id=user, agent_id=agent),
            await self._session(store, tenant_id=tenant, user_id=user),
            await self._session(store, tenant_id=tenant, agent_id=agent),
            await self._session(store, user_id=user),
        ]
        messages = [
            make_message(session, f"{n}", create_time=BASE_TIME + timedelta(hours=n * 5 + i))
            for n in range(4)
            for i, session in enumerate(sessions)
        ]
        await store.save_messages(messages)
        start, end = BASE_TIME + timedelta(hours=5), BASE_TIME + timedelta(hours=12)
        cases: list[tuple[QueryFilter, Callable[[LLMMessage], bool]]] = [
            (QueryFilter(), lambda m: True),
            (QueryFilter().tenant(tenant), lambda m: m.tenant_id == tenant),
            (QueryFilter().user(user), lambda m: m.user_id == user),
            (QueryFilter().agent(agent), lambda m: m.agent_id == agent),
            (QueryFilter().session(sessions[1].id), lambda m: m.chat_session_id == sessions[1].id),
            (QueryFilter().time_range(start, end), lambda m: start <= m.create_time < end),
            (
                QueryFilter().tenant(tenant).agent(agent).time_range(None, end),
                lambda m: m.tenant_id == tenant and m.agent_id == agent and m.create_time < end,
            ),
        ]
        for query, keep in cases:
            expected = sorted(m.id for m in messages if keep(m))
            assert expected, "the messages should cover every filter"
            assert await store.count_records("messages", query) == len(expected)
            got = await _exported(store, "messages", query)
            assert [r["id"] for r in got] == [str(i) for i in expected]

    @pytest.mark.asyncio
    async def test_exported_api_calls_are_their_entities_json(
        self, store: PersistenceStore
    ) -> None:
        """Every API call exports as its entity's JSON: optional fields absent, money as float."""
        whole_second = BASE_TIME.replace(microsecond=0)
        calls = [
            make_api_call(),
            make_api_call(latency_ms=None, create_time=whole_second),
            make_api_call(
                model_name="深度求索-chat",
                prompt_tokens=1200,
                completion_tokens=300,
                prompt_tokens_details=TokenDetails(cached_tokens=1000, audio_tokens=7),
                completion_tokens_details=TokenDetails(reasoning_tokens=120),
                total_price=Decimal("0.0123456789"),
                price_details=PriceDetails(
                    input_price=Decimal("0.01"), output_price=Decimal("0.0023456789"), tier="batch"
                ),
                time_to_first_token_ms=321,
                tokens_per_second=243.125,
                api_response_id="chatcmpl-abc123",
                create_time=BASE_TIME.replace(microsecond=670_000),
                update_time=whole_second + timedelta(seconds=2),
            ),
            make_api_call(
                prompt_tokens_details=TokenDetails(),
                completion_tokens_details=TokenDetails(reasoning_tokens=0),
                total_price=Decimal("1"),
                price_details=PriceDetails(),
                tokens_per_second=0.0,
            ),
            make_api_call(total_price=Decimal("0"), price_details=PriceDetails(currency="EUR")),
            LLMApiCall.failed(
                uuid7(),
                uuid7(),
                uuid7(),
                uuid7(),
                uuid7(),
                "gpt-4o",
                'Rate limit "reached" ⏳',
                "429",
                BASE_TIME,
                status=ApiCallStatus.RATE_LIMITED,
            ),
            LLMApiCall.failed(
                uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), "gpt-4o", "", None, whole_second
            ),
        ]
        await store.save_api_calls(calls)
        await _assert_exported_as_saved(store, "api_calls", calls, store.get_api_call)

    @pytest.mark.asyncio
    async def test_exported_messages_are_their_entities_json(self, store: PersistenceStore) -> None:
        """Every message exports as its entity's JSON: parent absent when none, content as saved."""
        session = await self._session(store)
        whole_second = BASE_TIME.replace(microsecond=0)
        first = make_message(session, "Weather in 巴黎? ☀️", create_time=whole_second)
        contents = [
            MessageContent.from_tool_calls(
                [
                    ToolCallContent(id="c1", name="weather", arguments={"city": "Paris", "n": 1}),
                    ToolCallContent(id="c2", name="echo", arguments="raw text"),
                ]
            ),
            MessageContent.from_tool_result(ToolResultContent(tool_call_id="c1", content="18°C")),
            MessageContent.from_tool_result(
                ToolResultContent(tool_call_id="c2", content="boom", is_error=True)
            ),
            MessageContent(text="hi", lang="en", meta={"z": [1, None], "a": True}),
            MessageContent(text=""),
            MessageContent(),
        ]
        roles = [MessageRole.ASSISTANT, MessageRole.TOOL, MessageRole.TOOL, MessageRole.SYSTEM]
        messages = [first]
        for i, content in enumerate(contents):
            messages.append(
                make_message(
                    session,
                    role=roles[i % len(roles)],
                    content=content,
                    create_time=BASE_TIME + timedelta(seconds=i, microseconds=i * 1000),
                    parent_message_id=messages[-1].id if i % 2 == 0 else None,
                )
            )
        await store.save_messages(messages)
        await _assert_exported_as_saved(store, "messages", messages, store.get_message)

    @pytest.mark.asyncio
    async def test_exported_sessions_are_their_entities_json(self, store: PersistenceStore) -> None:
        """Every session exports as its entity's JSON: a null title kept, metadata as saved."""
        whole_second = BASE_TIME.replace(microsecond=0)
        sessions = [
            make_session(),
            make_session(create_time=whole_second),
            make_session(
                title="Trip to 東京 ✈️",
                metadata={"topic": "travel", "tags": ["a", "b"], "depth": {"n": 1, "ok": None}},
                update_time=BASE_TIME + timedelta(days=1, microseconds=1),
            ),
            make_session(title="", metadata={"z": 1, "a": 2}),
        ]
        for session in sessions:
            await store.create_session(session)
        await _assert_exported_as_saved(store, "sessions", sessions, store.get_session)

    @pytest.mark.asyncio
    async def test_export_stopped_early_leaves_the_store_usable(
        self, store: PersistenceStore
    ) -> None:
        """Leaving an export after its first chunk releases it; the store goes on working."""
        await self._one_of_each_kind(store, "api_calls", 5)
        chunks = store.export_records("api_calls", QueryFilter(), chunk_size=2)
        async for chunk in chunks:
            assert len(chunk) == 2
            break
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()
        assert await store.count_records("api_calls", QueryFilter()) == 5
        assert len(await _exported(store, "api_calls")) == 5

    # -- pages of API calls ----------------------------------------------------------------

    @staticmethod
    def _sortable_calls() -> list[LLMApiCall]:
        """Calls with many ties: few times, few prices and latencies, some without either."""
        rng = random.Random(42)  # noqa: S311  (reproducible test data, not security)
        times = [BASE_TIME + timedelta(minutes=m) for m in range(6)]
        prices = [None, Decimal("0"), Decimal("0.0015"), Decimal("0.25"), Decimal("3.5")]
        latencies = [None, 0, 120, 950, 4000]
        calls = []
        for _ in range(90):
            prompt = rng.choice([0, 10, 400])
            failed = rng.random() < 0.3
            calls.append(
                make_api_call(
                    status=ApiCallStatus.FAILED if failed else ApiCallStatus.SUCCESS,
                    error_code=rng.choice(["server_error", "bad_request"]) if failed else None,
                    create_time=rng.choice(times),
                    total_price=rng.choice(prices),
                    latency_ms=rng.choice(latencies),
                    prompt_tokens=prompt,
                    completion_tokens=rng.choice([0, 5]),
                    model_name=rng.choice(["gpt-4o", "gpt-4o-mini"]),
                )
            )
        return calls

    @staticmethod
    def _expected_order(calls: Sequence[LLMApiCall], sort: CallSort) -> list[UUID]:
        """The ids of ``calls`` in ``sort`` order, worked out here from the contract."""
        values: dict[CallSort, Callable[[LLMApiCall], Any]] = {
            CallSort.NEWEST: lambda c: c.create_time,
            CallSort.OLDEST: lambda c: c.create_time,
            CallSort.COST_DESC: lambda c: c.total_price,
            CallSort.COST_ASC: lambda c: c.total_price,
            CallSort.LATENCY_DESC: lambda c: c.latency_ms,
            CallSort.LATENCY_ASC: lambda c: c.latency_ms,
            CallSort.TOKENS_DESC: lambda c: c.total_tokens,
            CallSort.TOKENS_ASC: lambda c: c.total_tokens,
        }
        value = values[sort]
        descending = sort in (
            CallSort.NEWEST,
            CallSort.COST_DESC,
            CallSort.LATENCY_DESC,
            CallSort.TOKENS_DESC,
        )
        with_value = sorted(
            (c for c in calls if value(c) is not None),
            key=lambda c: (value(c), c.create_time, c.id),
            reverse=descending,
        )
        without = sorted(
            (c for c in calls if value(c) is None),
            key=lambda c: (c.create_time, c.id),
            reverse=descending,
        )
        return [c.id for c in with_value + without]

    @staticmethod
    async def _walk_calls(
        store: PersistenceStore, query: QueryFilter, sort: CallSort | str, limit: int
    ) -> list[CallPage]:
        """Every page of a query, cursor after cursor, until one says there is none."""
        pages = [await store.page_api_calls(query, sort=sort, limit=limit)]
        while pages[-1].next_cursor is not None:
            cursor = pages[-1].next_cursor
            pages.append(await store.page_api_calls(query, sort=sort, cursor=cursor, limit=limit))
            assert len(pages) < 1000, "the pages never end"
        return pages

    @pytest.mark.asyncio
    @pytest.mark.parametrize("sort", list(CallSort))
    async def test_page_api_calls_walks_every_call_once_in_order(
        self, store: PersistenceStore, sort: CallSort
    ) -> None:
        """Page after page gives every call once, in the sort's order, ties by time then id."""
        calls = self._sortable_calls()
        await store.save_api_calls(calls)
        pages = await self._walk_calls(store, QueryFilter(), sort, limit=7)
        assert [len(page.calls) for page in pages] == [7] * 12 + [6]
        got = [c.id for page in pages for c in page.calls]
        assert got == self._expected_order(calls, sort)
        by_id = {c.id: c for c in calls}
        assert all(c == by_id[c.id] for page in pages for c in page.calls)

    @pytest.mark.asyncio
    async def test_page_api_calls_honours_the_filter(self, store: PersistenceStore) -> None:
        """A page holds only the calls the filter matches; its offset and limit are ignored."""
        calls = self._sortable_calls()
        await store.save_api_calls(calls)
        query = QueryFilter().model("gpt-4o").cost_range(Decimal("0.0015"), None).paginate(3, 2)
        mine = [
            c
            for c in calls
            if c.model_name == "gpt-4o"
            and c.total_price is not None
            and c.total_price >= Decimal("0.0015")
        ]
        assert mine
        for sort in (CallSort.NEWEST, CallSort.COST_ASC, CallSort.LATENCY_DESC):
            pages = await self._walk_calls(store, query, sort.value, limit=4)
            got = [c.id for page in pages for c in page.calls]
            assert got == self._expected_order(mine, sort)
        # filters that pick failed calls, and a latency range, under every sort
        failed = ApiCallStatus.FAILED
        latency = QueryFilter().latency_range(120, 950)
        for query, keep in (
            (
                QueryFilter().with_error_code("server_error"),
                lambda c: c.error_code == "server_error",
            ),
            (QueryFilter().with_status(failed), lambda c: c.status is failed),
            (latency, lambda c: c.latency_ms is not None and 120 <= c.latency_ms <= 950),
        ):
            mine = [c for c in calls if keep(c)]
            assert mine
            for sort in CallSort:
                pages = await self._walk_calls(store, query, sort, limit=3)
                got = [c.id for page in pages for c in page.calls]
                assert got == self._expected_order(mine, sort), (query, sort)

    @pytest.mark.asyncio
    async def test_page_api_calls_last_page_has_no_cursor(self, store: PersistenceStore) -> None:
        """No calls: an empty page; exactly a page of calls: no cursor to a next, empty page."""
        empty = await store.page_api_calls(QueryFilter())
        assert empty == CallPage(calls=[], next_cursor=None)
        calls = [make_api_call(create_time=BASE_TIME + timedelta(seconds=i)) for i in range(10)]
        await store.save_api_calls(calls)
        whole = await store.page_api_calls(QueryFilter(), limit=10)
        assert [c.id for c in whole.calls] == [c.id for c in reversed(calls)]
        assert whole.next_cursor is None
        first = await store.page_api_calls(QueryFilter(), sort="oldest", limit=5)
        assert first.next_cursor is not None
        rest = await store.page_api_calls(
            QueryFilter(), sort="oldest", cursor=first.next_cursor, limit=5
        )
        assert [c.id for c in rest.calls] == [c.id for c in calls[5:]]
        assert rest.next_cursor is None
        default = await store.page_api_calls(QueryFilter())
        assert len(default.calls) == 10

    @pytest.mark.asyncio
    async def test_page_api_calls_cursor_is_url_safe_text(self, store: PersistenceStore) -> None:
        """A cursor is plain URL-safe text and keeps working after a call is deleted."""
        calls = self._sortable_calls()
        await store.save_api_calls(calls)
        for sort in CallSort:
            page = await store.page_api_calls(QueryFilter(), sort=sort, limit=30)
            cursor = page.next_cursor
            assert cursor is not None
            assert re.fullmatch(r"[A-Za-z0-9_=-]+", cursor), cursor
            # the row the cursor names may go away; the next page still starts after it
            assert await store.delete_api_call(page.calls[-1].id) is True
            following = await store.page_api_calls(
                QueryFilter(), sort=sort, cursor=cursor, limit=30
            )
            left = [c for c in calls if c.id != page.calls[-1].id]
            seen = {c.id for c in page.calls}
            expected = [i for i in self._expected_order(left, sort) if i not in seen]
            assert [c.id for c in following.calls] == expected[:30]
            await store.save_api_call(page.calls[-1])

    @pytest.mark.asyncio
    async def test_page_api_calls_refuses_bad_cursors_and_arguments(
        self, store: PersistenceStore
    ) -> None:
        """A damaged or foreign cursor, an unknown sort, a limit below 1: ValueError."""
        await store.save_api_calls(self._sortable_calls())
        await self._session(store)
        await self._session(store)
        newest = (await store.page_api_calls(QueryFilter(), limit=2)).next_cursor
        by_cost = (await store.page_api_calls(QueryFilter(), sort="cost_desc", limit=2)).next_cursor
        sessions = (await store.search_sessions(SessionQuery(), limit=1)).next_cursor
        assert newest is not None
        assert by_cost is not None
        assert sessions is not None
        bad = [
            "",
            "not a cursor",
            "%%%",
            newest[:-3],
            newest + "AAAA",
            "W10",  # []
            "WyJuZXdlc3QiLG51bGwsIngiLCJ5Il0",  # ["newest",null,"x","y"]
            "x" * 5000,
            sessions,
        ]
        for cursor in bad:
            with pytest.raises(ValueError, match="cursor"):
                await store.page_api_calls(QueryFilter(), cursor=cursor)
        with pytest.raises(ValueError, match="cursor"):
            await store.page_api_calls(QueryFilter(), sort="oldest", cursor=newest)
        with pytest.raises(ValueError, match="cursor"):
            await store.page_api_calls(QueryFilter(), sort="cost_asc", cursor=by_cost)
        with pytest.raises(ValueError, match="cursor"):
            await store.page_api_calls(QueryFilter(), sort="latency_desc", cursor=by_cost)
        with pytest.raises(ValueError, match="sort"):
            await store.page_api_calls(QueryFilter(), sort="cheapest")
        for limit in (0, -1):
            with pytest.raises(ValueError, match="limit"):
                await store.page_api_calls(QueryFilter(), limit=limit)

    # -- searching sessions ----------------------------------------------------------------

    async def _searchable_sessions(self, store: PersistenceStore) -> dict[str, ChatSession]:
        """Sessions with titles and messages worth searching, by a short name."""
        tenant, user, agent = uuid7(), uuid7(), uuid7()
        made: dict[str, ChatSession] = {}
        specs: list[tuple[str, str | None, list[str]]] = [
            ("title", "Quarterly REPORT draft", []),
            ("message", None, ["nothing here", "Please summarise the Report, thanks"]),
            ("percent", "50% off", ["the 100_000 limit"]),
            ("digits", "500 off", ["the 100x000 limit"]),
            ("backslash", None, ["path C:\\temp\\new"]),
            ("bang", "hi! there", ['she said "hello"']),
            ("tools", None, []),
            ("empty", None, []),
        ]
        for offset, (name, title, texts) in enumerate(specs):
            session = make_session(
                tenant_id=tenant,
                user_id=user,
                agent_id=agent,
                title=title,
                create_time=BASE_TIME + timedelta(minutes=offset),
            )
            await store.create_session(session)
            for index, text in enumerate(texts):
                await store.save_message(
                    make_message(
                        session, text, create_time=BASE_TIME + timedelta(hours=1, seconds=index)
                    )
                )
            made[name] = session
        tool_call = ToolCallContent(id="call_1", name="report", arguments={"q": "report"})
        await store.save_messages(
            [
                make_message(
                    made["tools"],
                    content=MessageContent.from_tool_calls([tool_call]),
                    role=MessageRole.ASSISTANT,
                ),
                make_message(
                    made["tools"],
                    content=MessageContent.from_tool_result(
                        ToolResultContent(tool_call_id="call_1", content="report body")
                    ),
                    role=MessageRole.TOOL,
                ),
            ]
        )
        return made

    @staticmethod
    async def _found(store: PersistenceStore, query: SessionQuery, limit: int = 50) -> list[UUID]:
        """The ids of every session a search finds, page after page."""
        found: list[UUID] = []
        cursor: str | None = None
        while True:
            page = await store.search_sessions(query, cursor=cursor, limit=limit)
            found.extend(s.id for s in page.sessions)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    @pytest.mark.asyncio
    async def test_search_sessions_by_text_in_title_or_messages(
        self, store: PersistenceStore
    ) -> None:
        """Text matches part of a title or of a message's text, whatever the ASCII case."""
        made = await self._searchable_sessions(store)

        async def found(text: str) -> set[str]:
            ids = await self._found(store, SessionQuery(text=text))
            return {name for name, session in made.items() if session.id in ids}

        assert await found("report") == {"title", "message"}
        assert await found("rEpOrT dRaFt") == {"title"}
        assert await found("SUMMARISE the report") == {"message"}
        assert await found("nowhere to be found") == set()
        assert await found('"hello"') == {"bang"}  # the text, not its JSON form
        assert await found("report body") == set()  # a tool result is not message text
        assert await found("") == set(made)  # no text: no condition

    @pytest.mark.asyncio
    async def test_search_sessions_matches_wildcards_literally(
        self, store: PersistenceStore
    ) -> None:
        """%, _, a backslash and ! in the text are matched as themselves."""
        made = await self._searchable_sessions(store)

        async def found(text: str) -> set[str]:
            ids = await self._found(store, SessionQuery(text=text))
            return {name for name, session in made.items() if session.id in ids}

        assert await found("50%") == {"percent"}
        assert await found("%") == {"percent"}
        assert await found("0_0") == {"percent"}
        assert await found("_") == {"percent"}
        assert await found("C:\\temp") == {"backslash"}
        assert await found("\\") == {"backslash"}
        assert await found("hi!") == {"bang"}
        assert await found("!") == {"bang"}
        assert await found("!!") == set()

    @pytest.mark.asyncio
    async def test_search_sessions_newest_first_in_pages(self, store: PersistenceStore) -> None:
        """Sessions come newest first by create_time, ties by id, page after page."""
        times = [BASE_TIME + timedelta(minutes=m) for m in (0, 1, 1, 1, 2, 5, 5)]
        sessions = [await self._session(store, create_time=t) for t in times * 2]
        expected = [s.id for s in sorted(sessions, key=lambda s: (s.create_time, s.id))][::-1]
        for limit in (1, 3, 14, 50):
            assert await self._found(store, SessionQuery(), limit=limit) == expected
        page = await store.search_sessions(SessionQuery(), limit=14)
        assert page.next_cursor is None
        assert isinstance(page, SessionPage)
        assert page.sessions == [await store.get_session(i) for i in expected]

    @pytest.mark.asyncio
    async def test_search_sessions_with_each_filter_field(self, store: PersistenceStore) -> None:
        """Tenant, user, agent and a half-open range on create_time select sessions."""
        sessions = await self._sessions_over_time(store)
        first = sessions[0]
        start, end = BASE_TIME + timedelta(days=5), BASE_TIME + timedelta(days=15)
        at_start = await self._session(store, create_time=start, tenant_id=first.tenant_id)
        at_end = await self._session(store, create_time=end, tenant_id=first.tenant_id)
        sessions += [at_start, at_end]
        cases: list[tuple[SessionQuery, Callable[[ChatSession], bool]]] = [
            (SessionQuery(), lambda s: True),
            (SessionQuery(tenant_id=first.tenant_id), lambda s: s.tenant_id == first.tenant_id),
            (SessionQuery(user_id=first.user_id), lambda s: s.user_id == first.user_id),
            (SessionQuery(agent_id=first.agent_id), lambda s: s.agent_id == first.agent_id),
            (
                SessionQuery(start_time=start, end_time=end),
                lambda s: start <= s.create_time < end,
            ),
            (
                SessionQuery(tenant_id=first.tenant_id, start_time=start),
                lambda s: s.tenant_id == first.tenant_id and s.create_time >= start,
            ),
        ]
        for query, keep in cases:
            expected = sorted((s for s in sessions if keep(s)), key=lambda s: (s.create_time, s.id))
            assert expected
            assert await self._found(store, query, limit=4) == [s.id for s in reversed(expected)]
        ranged = await self._found(store, SessionQuery(start_time=start, end_time=end))
        assert at_start.id in ranged
        assert at_end.id not in ranged

    @pytest.mark.asyncio
    async def test_search_sessions_text_with_filters(self, store: PersistenceStore) -> None:
        """Text and the other conditions hold together; another tenant's matches stay out."""
        made = await self._searchable_sessions(store)
        other = await self._session(store, title="report of another tenant")
        await store.save_message(make_message(other, "the report"))
        ids = await self._found(store, SessionQuery(text="report"))
        assert set(ids) == {made["title"].id, made["message"].id, other.id}
        query = SessionQuery(text="report", tenant_id=made["title"].tenant_id)
        ids = await self._found(store, query, limit=1)
        assert ids == [made["message"].id, made["title"].id]

    @pytest.mark.asyncio
    async def test_search_sessions_refuses_bad_cursors(self, store: PersistenceStore) -> None:
        """A damaged cursor, a page_api_calls cursor or limit < 1: ValueError."""
        for _ in range(3):
            await self._session(store)
        await store.save_api_calls([make_api_call(), make_api_call()])
        calls = (await store.page_api_calls(QueryFilter(), limit=1)).next_cursor
        mine = (await store.search_sessions(SessionQuery(), limit=1)).next_cursor
        assert calls is not None
        assert mine is not None
        for cursor in ("", "garbage", mine[:-2], calls):
            with pytest.raises(ValueError, match="cursor"):
                await store.search_sessions(SessionQuery(), cursor=cursor)
        for limit in (0, -5):
            with pytest.raises(ValueError, match="limit"):
                await store.search_sessions(SessionQuery(), limit=limit)

    # -- time to first token -----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_time_to_first_token_percentiles(self, store: PersistenceStore) -> None:
        """TTFT p50/p95/p99 interpolate as latency's do, skip calls without one, per group too."""
        await store.save_api_calls(
            [
                make_api_call(time_to_first_token_ms=ms, model_name=model)
                for ms, model in ((100, "a"), (None, "a"), (200, "a"), (400, "b"), (300, "b"))
            ]
        )
        stats = await store.get_statistics(QueryFilter())
        assert stats.p50_time_to_first_token_ms == pytest.approx(250.0)
        assert stats.p95_time_to_first_token_ms == pytest.approx(385.0)
        assert stats.p99_time_to_first_token_ms == pytest.approx(397.0)
        rows = await store.get_usage_breakdown(QueryFilter(), ["model"])
        assert [r.keys["model"] for r in rows] == ["a", "b"]
        assert rows[0].stats.p50_time_to_first_token_ms == pytest.approx(150.0)
        assert rows[0].stats.p95_time_to_first_token_ms == pytest.approx(195.0)
        assert rows[1].stats.p50_time_to_first_token_ms == pytest.approx(350.0)
        assert rows[1].stats.p95_time_to_first_token_ms == pytest.approx(395.0)
        empty = await store.get_statistics(QueryFilter().model("c"))
        assert empty.p50_time_to_first_token_ms is None
        filtered = await store.get_statistics(QueryFilter().model("b"))
        assert filtered.p99_time_to_first_token_ms == pytest.approx(399.0)

    # -- rollups ---------------------------------------------------------------------------

    @staticmethod
    def _rollup_queries(
        population: _Population, rng: random.Random
    ) -> list[tuple[QueryFilter, list[GroupKey], Bucket | None]]:
        """Random statistics the rollups answer: rollup keys, bounds on the hour (or none)."""
        hours = 90 * 24
        asked: list[tuple[QueryFilter, list[GroupKey], Bucket | None]] = []
        for _ in range(40):
            query = QueryFilter()
            if rng.random() < 0.3:
                query = query.tenant(rng.choice(population.tenants))
            if rng.random() < 0.2:
                query = query.user(rng.choice(population.users))
            if rng.random() < 0.2:
                query = query.agent(rng.choice(population.agents))
            if rng.random() < 0.3:
                query = query.model(rng.choice(population.models))
            if rng.random() < 0.2:
                query = query.with_status(rng.choice(list(ApiCallStatus)))
            if rng.random() < 0.7:
                start = population.start + timedelta(hours=rng.randint(-5, hours))
                end = start + timedelta(hours=rng.randint(1, hours))
                query = query.time_range(
                    start if rng.random() < 0.8 else None, end if rng.random() < 0.8 else None
                )
            keys: list[GroupKey] = rng.sample(
                ["model", "agent", "user", "tenant", "status"], rng.choice([0, 0, 1, 1, 1, 2])
            )
            bucket: Bucket | None = rng.choice([None, None, "hour", "day", "week", "month"])
            asked.append((query, keys, bucket))
        return asked

    @staticmethod
    def _assert_same_answer(rolled: list[Any], scanned: list[Any]) -> None:
        """Rollup rows equal scan rows: groups, counts, tokens and cost exactly; percentiles
        within the histograms' documented error."""
        assert [(r.keys, r.bucket_start) for r in rolled] == [
            (r.keys, r.bucket_start) for r in scanned
        ]
        exact = (
            "total_calls", "success_count", "failed_count", "status_counts", "total_tokens",
            "total_prompt_tokens", "total_completion_tokens", "total_cost",
            "total_cached_tokens", "total_reasoning_tokens", "total_cache_write_tokens",
        )  # fmt: skip
        for row, want in zip(rolled, scanned, strict=True):
            got, expected = row.stats, want.stats
            for name in exact:
                assert getattr(got, name) == getattr(expected, name), name
            for name in ("avg_latency_ms", "avg_tokens_per_second", "avg_time_to_first_token_ms"):
                value, reference = getattr(got, name), getattr(expected, name)
                assert (value is None) == (reference is None), name
                if reference is not None:
                    assert value == pytest.approx(reference, rel=1e-9), name
            for metric in ("latency_ms", "time_to_first_token_ms"):
                for percent in (50, 95, 99):
                    name = f"p{percent}_{metric}"
                    value, reference = getattr(got, name), getattr(expected, name)
                    assert (value is None) == (reference is None), name
                    if reference is not None:
                        error = PERCENTILE_RELATIVE_ERROR * reference + 1e-9
                        assert abs(value - reference) <= error, (name, value, reference)

    @pytest.mark.asyncio
    async def test_rollup_answers_equal_a_scan_of_the_calls(self, store: PersistenceStore) -> None:
        """Random filters over random calls: the rollups' answer is the calls' answer.

        Counts, tokens and cost identically; percentiles exactly when few
        values are concerned, and within the histograms' documented error when
        they are read from the histograms.
        """
        population = _Population(seed=1414, count=1500)
        await store.save_api_calls(population.calls[:900])
        for call in population.calls[900:1000]:
            await store.save_api_call(call)
        await store.ingest_records(calls=population.calls[1000:])
        rng = random.Random(1414)  # noqa: S311  (reproducible test data)
        for query, keys, bucket in self._rollup_queries(population, rng):
            rolled = await store.get_usage_breakdown(query, keys, bucket)
            with scan_only():
                scanned = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(rolled, scanned)
            with exact_values_up_to(0):  # histograms wherever they serve
                histograms = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(histograms, scanned)
            if len(keys) == 1:  # the top groups, ranked before their sums are read
                limit = rng.randint(1, 4)
                top = await store.get_usage_breakdown(query, keys, bucket, limit=limit)
                with scan_only():
                    top_scanned = await store.get_usage_breakdown(query, keys, bucket, limit=limit)
                self._assert_same_answer(top, top_scanned)
        everything = await store.get_statistics(QueryFilter())
        _assert_statistics(everything, population.calls)

    @pytest.mark.asyncio
    async def test_bounds_off_the_hour_give_a_scans_answer(self, store: PersistenceStore) -> None:
        """Bounds to the second: the whole hours between them and the parts at the ends add up.

        The rollups serve the whole hours; the calls in the part of an hour
        at either bound are counted in from the calls themselves.
        """
        population = _Population(seed=6060, count=1200)
        await store.save_api_calls(population.calls)
        rng = random.Random(6060)  # noqa: S311  (reproducible test data)
        asked = self._rollup_queries(population, rng)
        for index, (query, keys, bucket) in enumerate(asked[:24]):
            offset = timedelta(minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
            start = query.start_time or population.start + timedelta(days=rng.randint(0, 30))
            end = start + timedelta(hours=rng.choice([1, 2, 5, 30, 24 * 20]), minutes=7 * index)
            query = query.time_range(start + offset, end if index % 3 else None)
            with scan_only():
                scanned = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(await store.get_usage_breakdown(query, keys, bucket), scanned)
            with exact_values_up_to(0):
                histograms = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(histograms, scanned)
            if len(keys) == 1:
                with scan_only():
                    top_scanned = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                top = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                self._assert_same_answer(top, top_scanned)
        # The part of an hour holding most of the range's calls, beside a whole day read
        # from the histograms: its calls' latencies make the percentiles.
        day = datetime(2025, 3, 10, tzinfo=UTC)
        await store.save_api_calls(
            [
                *(make_api_call(model_name="edge", create_time=day + timedelta(hours=h),
                                latency_ms=100) for h in range(20)),
                *(make_api_call(model_name="edge", create_time=day - timedelta(minutes=m),
                                latency_ms=50_000 + m) for m in range(61, 91)),
            ]
        )  # fmt: skip
        query = QueryFilter(model_name="edge").time_range(
            day - timedelta(hours=1, minutes=40), day + timedelta(days=1, minutes=50)
        )
        with scan_only():
            scanned = await store.get_usage_breakdown(query, ["model"], None)
        assert scanned[0].stats.p50_latency_ms is not None
        assert scanned[0].stats.p50_latency_ms > 50_000
        with exact_values_up_to(0):
            self._assert_same_answer(
                await store.get_usage_breakdown(query, ["model"], None), scanned
            )

    @pytest.mark.asyncio
    async def test_a_days_histogram_serves_the_hours_that_hold_the_whole_day(
        self, store: PersistenceStore
    ) -> None:
        """Hours beside whole days that hold all of their day's calls: the same answer.

        A range ending after the last call of its last day may be answered
        from that day's histogram; a call later that day (after the range)
        must not be counted in.
        """
        day = BASE_TIME.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
        rng = random.Random(9)  # noqa: S311  (reproducible test data)
        calls = [
            make_api_call(
                model_name=rng.choice(["m1", "m2"]),
                create_time=day - timedelta(days=rng.randint(0, 2), minutes=rng.randint(0, 900)),
                latency_ms=rng.randint(5, 5000),
            )
            for _ in range(120)
        ] + [
            make_api_call(
                model_name="m1",
                create_time=day + timedelta(hours=1, minutes=i),
                latency_ms=10_000 + 1000 * i,
            )
            for i in range(20)
        ]
        await store.save_api_calls(calls)
        query = QueryFilter().time_range(day - timedelta(days=3), day + timedelta(hours=3))
        for later in (None, day + timedelta(hours=5)):  # then a call after the range's end
            if later is not None:
                await store.save_api_call(
                    make_api_call(model_name="m1", create_time=later, latency_ms=1)
                )
            for keys, bucket, limit in (
                ([], None, None),
                (["model"], None, None),
                (["model"], None, 1),  # the top group's calls: m1's, all of them that day
                ([], "day", None),
            ):
                with scan_only():
                    scanned = await store.get_usage_breakdown(query, keys, bucket, limit)  # type: ignore[arg-type]
                with exact_values_up_to(0):
                    rolled = await store.get_usage_breakdown(query, keys, bucket, limit)  # type: ignore[arg-type]
                self._assert_same_answer(rolled, scanned)

    async def _assert_rollups_match_a_scan(
        self, store: PersistenceStore, population: _Population, seed: int
    ) -> None:
        """Breakdowns over weeks, months and random filters: the rollups' answer is a scan's."""
        rng = random.Random(seed)  # noqa: S311  (reproducible test data)
        start = population.start
        asked: list[tuple[QueryFilter, list[GroupKey], Bucket | None]] = [
            (QueryFilter(), [], None),
            (QueryFilter(), ["user"], None),
            (QueryFilter(), ["model", "status"], None),
            (QueryFilter().time_range(start + timedelta(days=31), None), ["agent"], None),
            (QueryFilter().time_range(None, start + timedelta(days=75)), ["tenant"], None),
            (
                QueryFilter().time_range(start + timedelta(days=20), start + timedelta(days=70)),
                ["model"],
                None,
            ),
            (QueryFilter().tenant(population.tenants[0]), ["user"], None),
            (QueryFilter().with_status(ApiCallStatus.FAILED), [], "month"),
            *self._rollup_queries(population, rng)[:12],
        ]
        for query, keys, bucket in asked:
            with scan_only():
                scanned = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(await store.get_usage_breakdown(query, keys, bucket), scanned)
            with exact_values_up_to(0):  # histograms wherever they serve
                histograms = await store.get_usage_breakdown(query, keys, bucket)
            self._assert_same_answer(histograms, scanned)
            if len(keys) == 1:
                with scan_only():
                    top_scanned = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                with exact_values_up_to(0):
                    top = await store.get_usage_breakdown(query, keys, bucket, limit=2)
                self._assert_same_answer(top, top_scanned)

    @pytest.mark.asyncio
    async def test_breakdowns_asked_together_answer_as_asked_alone(
        self, store: PersistenceStore
    ) -> None:
        """get_usage_breakdowns: each answer is get_usage_breakdown's, in the order asked.

        Asked as the dashboard asks (totals, a timeline, the top groups of each
        key) over ranges of hours and of days; a bad breakdown raises as alone.
        """
        population = _Population(seed=2718, count=900)
        await store.save_api_calls(population.calls)
        asked: list[tuple[list[GroupKey], Bucket | None, int | None]] = [
            ([], None, None),
            ([], "hour", None),
            ([], "day", None),
            (["model"], None, 3),
            (["agent"], None, 3),
            (["user"], None, 3),
            (["tenant"], None, 3),
            (["status"], None, 6),
            (["model", "status"], "week", 4),
        ]
        day = population.start + timedelta(days=40)
        for query in (
            QueryFilter().time_range(day, day + timedelta(hours=24)),  # values read once
            QueryFilter().time_range(day, day + timedelta(days=30)),
            QueryFilter().tenant(population.tenants[1]),
            QueryFilter(),
        ):
            together = await store.get_usage_breakdowns(query, asked)
            assert len(together) == len(asked)
            for (keys, bucket, limit), rows in zip(asked, together, strict=True):
                alone = await store.get_usage_breakdown(query, keys, bucket, limit)
                self._assert_same_answer(rows, alone)  # float sums may add up in any order
        with pytest.raises(ValueError, match="limit"):
            await store.get_usage_breakdowns(QueryFilter(), [([], None, 0)])
        with pytest.raises(ValueError, match="colour"):
            await store.get_usage_breakdowns(QueryFilter(), [(_any(["colour"]), None, None)])

    @pytest.mark.asyncio
    async def test_sealed_periods_answer_as_their_days_through_every_change(
        self, store: PersistenceStore
    ) -> None:
        """seal_periods changes no answer, nor does any write into a sealed period after it.

        A call saved (alone, in a batch, by ingest), deleted or pruned in a
        sealed week or month, or a user erased, unseals what it changes: the
        answers stay a scan's. Sealing again then changes nothing either.
        """
        population = _Population(seed=3131, count=1200)
        await store.save_api_calls(population.calls[:1100])
        sealed = await store.seal_periods()
        assert sealed >= 0
        assert await store.seal_periods() == 0  # nothing left to seal
        await self._assert_rollups_match_a_scan(store, population, 1)
        late = [
            make_api_call(**{**call.model_dump(), "id": uuid7()}) for call in population.calls[:3]
        ]
        await store.save_api_call(late[0])
        await store.save_api_calls([late[1]])
        await store.ingest_records(calls=[late[2], *population.calls[1100:]])
        await self._assert_rollups_match_a_scan(store, population, 2)
        resealed = await store.seal_periods()  # the periods written into, sealed again
        assert resealed <= sealed
        assert resealed > 0 or sealed == 0
        assert await store.delete_api_call(population.calls[5].id)
        await store.cleanup_old_records(population.start + timedelta(days=10))
        await self._assert_rollups_match_a_scan(store, population, 3)
        await store.seal_periods()
        await store.erase_user(population.users[0])
        await self._assert_rollups_match_a_scan(store, population, 4)
        await store.seal_periods()
        await self._assert_rollups_match_a_scan(store, population, 5)
        assert await store.rebuild_rollups() == await store.count_records(
            "api_calls", QueryFilter()
        )
        await self._assert_rollups_match_a_scan(store, population, 6)

    @pytest.mark.asyncio
    async def test_rollups_subtract_deleted_and_pruned_calls(self, store: PersistenceStore) -> None:
        """delete_api_call and cleanup_old_records take their calls out of the rollups too."""
        population = _Population(seed=77, count=400)
        await store.save_api_calls(population.calls)
        gone = population.calls[:30]
        for call in gone:
            assert await store.delete_api_call(call.id)
        assert not await store.delete_api_call(gone[0].id)  # twice: subtracted once
        cutoff = population.start + timedelta(days=30, minutes=17)
        pruned = await store.cleanup_old_records(cutoff)
        left = [c for c in population.calls[30:] if c.create_time >= cutoff]
        assert pruned == 370 - len(left)
        _assert_statistics(await store.get_statistics(QueryFilter()), left)
        for keys, bucket in ((["model"], "day"), (["tenant", "status"], None), ([], "hour")):
            rolled = await store.get_usage_breakdown(QueryFilter(), keys, bucket)  # type: ignore[arg-type]
            with scan_only():
                scanned = await store.get_usage_breakdown(QueryFilter(), keys, bucket)  # type: ignore[arg-type]
            self._assert_same_answer(rolled, scanned)

    @pytest.mark.asyncio
    async def test_rollups_count_a_batch_shipped_twice_once(self, store: PersistenceStore) -> None:
        """ingest_records skips stored calls: the rollups count each call once."""
        population = _Population(seed=5150, count=200)
        await store.ingest_records(calls=population.calls[:120])
        await store.ingest_records(calls=[*population.calls, population.calls[0]])
        _assert_statistics(await store.get_statistics(QueryFilter()), population.calls)
        rows = await store.get_usage_breakdown(QueryFilter(), ["user"], "week")
        with scan_only():
            self._assert_same_answer(
                rows, await store.get_usage_breakdown(QueryFilter(), ["user"], "week")
            )

    @pytest.mark.asyncio
    async def test_rebuild_rollups_recounts_every_call(self, store: PersistenceStore) -> None:
        """rebuild_rollups returns the calls counted, reports its steps, and changes no answer."""
        population = _Population(seed=31, count=300)
        await store.save_api_calls(population.calls)
        before = await store.get_usage_breakdown(QueryFilter(), ["model", "status"], "day")
        steps: list[tuple[int, int]] = []
        assert await store.rebuild_rollups(lambda done, total: steps.append((done, total))) == 300
        assert steps
        assert steps[-1][0] == steps[-1][1]
        assert [done for done, _ in steps] == list(range(1, len(steps) + 1))
        after = await store.get_usage_breakdown(QueryFilter(), ["model", "status"], "day")
        self._assert_same_answer(after, before)
        assert await store.rebuild_rollups() == 300

    @pytest.mark.asyncio
    async def test_prices_past_ten_decimals_sum_as_stored(self, store: PersistenceStore) -> None:
        """A price with more than ten decimals counts as a money column rounds it.

        (Not at a tie: SQLite keeps prices as REAL, whose binary value lies
        beside a decimal tie.)
        """
        prices = [Decimal("0.00000000006"), Decimal("0.12345678904999"), Decimal("1.23456789016")]
        await store.save_api_calls([make_api_call(total_price=price) for price in prices])
        expected = Decimal("0.0000000001") + Decimal("0.1234567890") + Decimal("1.2345678902")
        assert (await store.get_statistics(QueryFilter())).total_cost == expected
        with scan_only():
            assert (await store.get_statistics(QueryFilter())).total_cost == expected

    # -- breakdown limit, calls by message, messages per session ----------------------------

    @pytest.mark.asyncio
    async def test_breakdown_limit_keeps_the_groups_with_most_calls(
        self, store: PersistenceStore
    ) -> None:
        """limit keeps the groups with the most calls (ties by key), in every bucket."""
        days = [BASE_TIME, BASE_TIME + timedelta(days=1)]
        counts = {"a": 3, "b": 5, "c": 3, "d": 1, "e": 4}
        calls = [
            make_api_call(model_name=model, create_time=days[i % 2])
            for model, count in counts.items()
            for i in range(count)
        ]
        await store.save_api_calls(calls)
        for scan in (False, True):
            with scan_only() if scan else contextlib.nullcontext():
                rows = await store.get_usage_breakdown(QueryFilter(), ["model"], limit=3)
                assert [r.keys["model"] for r in rows] == ["a", "b", "e"]  # a beats c on key
                assert [r.stats.total_calls for r in rows] == [3, 5, 4]
                daily = await store.get_usage_breakdown(QueryFilter(), ["model"], "day", limit=2)
                assert {r.keys["model"] for r in daily} == {"b", "e"}
                assert sum(r.stats.total_calls for r in daily) == 9
                everything = await store.get_usage_breakdown(QueryFilter(), ["model"], limit=99)
                assert len(everything) == 5
                (overall,) = await store.get_usage_breakdown(QueryFilter(), limit=1)
                assert overall.stats.total_calls == 16
        for wrong in (0, -1):
            with pytest.raises(ValueError, match="limit"):
                await store.get_usage_breakdown(QueryFilter(), ["model"], limit=wrong)
        with pytest.raises(TypeError, match="limit"):
            await store.get_usage_breakdown(QueryFilter(), ["model"], limit=_any("3"))

    @pytest.mark.asyncio
    async def test_calls_for_messages_finds_calls_by_reply_or_request(
        self, store: PersistenceStore
    ) -> None:
        """Calls whose response or request message is asked for, each once, oldest first."""
        session = await self._session(store)
        messages = [make_message(session, f"turn {i}") for i in range(4)]
        await store.save_messages(messages)
        first = make_api_call(
            session,
            request_message_id=messages[0].id,
            response_message_id=messages[1].id,
            create_time=BASE_TIME + timedelta(seconds=2),
        )
        retry = make_api_call(
            session,
            request_message_id=messages[0].id,
            status=ApiCallStatus.FAILED,
            response_message_id=NIL_UUID,
            create_time=BASE_TIME + timedelta(seconds=1),
        )
        later = make_api_call(
            session,
            request_message_id=messages[2].id,
            response_message_id=messages[3].id,
            create_time=BASE_TIME + timedelta(seconds=3),
        )
        other = make_api_call(create_time=BASE_TIME)
        await store.save_api_calls([first, retry, later, other])
        found = await store.calls_for_messages([messages[1].id, messages[0].id])
        assert found == [retry, first]
        assert await store.calls_for_messages([messages[3].id]) == [later]
        assert await store.calls_for_messages([m.id for m in messages]) == [retry, first, later]
        assert await store.calls_for_messages([]) == []
        assert await store.calls_for_messages([uuid7()]) == []
        many = [uuid7() for _ in range(1500)] + [messages[3].id]
        assert await store.calls_for_messages(many) == [later]
        with pytest.raises(TypeError, match="message_ids"):
            await store.calls_for_messages(_any(messages[0].id))
        with pytest.raises(TypeError, match=r"message_ids\[0\]"):
            await store.calls_for_messages(_any([str(messages[0].id)]))

    @pytest.mark.asyncio
    async def test_count_messages_by_session(self, store: PersistenceStore) -> None:
        """Each asked session's message count, 0 for one without messages or unknown."""
        sessions = [await self._session(store) for _ in range(3)]
        await store.save_messages([make_message(sessions[0], f"m{i}") for i in range(3)])
        await store.save_messages([make_message(sessions[2], "only")])
        unknown = uuid7()
        asked = [sessions[0].id, sessions[1].id, sessions[2].id, unknown]
        assert await store.count_messages_by_session(asked) == {
            sessions[0].id: 3,
            sessions[1].id: 0,
            sessions[2].id: 1,
            unknown: 0,
        }
        assert await store.count_messages_by_session([]) == {}
        many = [uuid7() for _ in range(1200)] + [sessions[0].id]
        counted = await store.count_messages_by_session(many)
        assert counted[sessions[0].id] == 3
        assert sum(counted.values()) == 3
        assert len(counted) == len(many)

    # -- shared filters ------------------------------------------------------------------

    @staticmethod
    def _filters(
        population: _Population,
    ) -> list[tuple[QueryFilter, Callable[[LLMApiCall], bool]]]:
        """One query per filter field (and a combination), with the predicate it means."""
        tenant, user, session = population.tenants[1], population.users[2], population.sessions[3]
        agent, model = population.agents[0], population.models[3]
        start = population.start + timedelta(days=20)
        end = population.start + timedelta(days=50)
        status = ApiCallStatus.TIMEOUT
        code = population.error_codes[1]
        # bounds equal to stored values, so inclusive bounds are tested at their edges
        prices = sorted({c.total_price for c in population.calls if c.total_price is not None})
        low_cost, high_cost = prices[len(prices) // 4], prices[len(prices) // 2]
        latencies = sorted({c.latency_ms for c in population.calls if c.latency_ms is not None})
        low_ms, high_ms = latencies[len(latencies) // 3], latencies[2 * len(latencies) // 3]
        return [
            (QueryFilter().tenant(tenant), lambda c: c.tenant_id == tenant),
            (QueryFilter().user(user), lambda c: c.user_id == user),
            (QueryFilter().session(session), lambda c: c.chat_session_id == session),
            (QueryFilter().agent(agent), lambda c: c.agent_id == agent),
            (QueryFilter().with_status(status), lambda c: c.status is status),
            (QueryFilter().model(model), lambda c: c.model_name == model),
            (QueryFilter().time_range(start, end), lambda c: start <= c.create_time < end),
            (
                QueryFilter().tenant(tenant).model(model).time_range(start, None),
                lambda c: (
                    c.tenant_id == tenant and c.model_name == model and c.create_time >= start
                ),
            ),
            (QueryFilter().with_error_code(code), lambda c: c.error_code == code),
            (
                QueryFilter().cost_range(low_cost, high_cost),
                lambda c: c.total_price is not None and low_cost <= c.total_price <= high_cost,
            ),
            (
                QueryFilter().cost_range(None, high_cost),
                lambda c: c.total_price is not None and c.total_price <= high_cost,
            ),
            (
                QueryFilter().cost_range(low_cost, None),
                lambda c: c.total_price is not None and c.total_price >= low_cost,
            ),
            (
                QueryFilter().latency_range(low_ms, high_ms),
                lambda c: c.latency_ms is not None and low_ms <= c.latency_ms <= high_ms,
            ),
            (
                QueryFilter().latency_range(None, high_ms),
                lambda c: c.latency_ms is not None and c.latency_ms <= high_ms,
            ),
            (
                QueryFilter().latency_range(low_ms, None),
                lambda c: c.latency_ms is not None and c.latency_ms >= low_ms,
            ),
            (
                QueryFilter().tenant(tenant).with_error_code(code).latency_range(low_ms, None),
                lambda c: (
                    c.tenant_id == tenant
                    and c.error_code == code
                    and c.latency_ms is not None
                    and c.latency_ms >= low_ms
                ),
            ),
        ]
