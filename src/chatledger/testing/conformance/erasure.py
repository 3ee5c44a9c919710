"""Conformance of erasure: a user or a tenant erased, their ledger kept anonymised.

An erasure deletes the subject's sessions and messages and keeps its API
calls for the ledger, anonymised: user, session and message ids set to the
nil UUID, error message and provider response id cleared, everything the
ledger adds up (tokens, cost, model, agent, tenant, status, times) as it was.
A tenant's providers and agents go too. Expected values are computed here
from the records the tests wrote, never by chatledger's own helpers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest

from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    ErasureReport,
    LLMApiCall,
    LLMMessage,
    PriceDetails,
    QueryFilter,
    SessionQuery,
    TokenDetails,
    UsageBucket,
)
from chatledger.errors import StoreConnectionError
from chatledger.ids import NIL_UUID, uuid7
from chatledger.stores.base import GroupKey, PersistenceStore
from chatledger.stores.rollups import scan_only
from chatledger.stores.statistics import PERCENTILE_RELATIVE_ERROR
from chatledger.testing.conformance.capability import CapabilityConformance
from chatledger.testing.factories import (
    BASE_TIME,
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)

__all__ = ["ErasureConformance"]

# What anonymising a call changes; every other field stays as it was.
_ANONYMISED = {
    "user_id": NIL_UUID,
    "chat_session_id": NIL_UUID,
    "request_message_id": NIL_UUID,
    "response_message_id": NIL_UUID,
    "error_message": None,
    "api_response_id": None,
}
_EXACT_FIGURES = (
    "total_calls", "success_count", "failed_count", "status_counts", "total_tokens",
    "total_prompt_tokens", "total_completion_tokens", "total_cost", "total_cached_tokens",
    "total_reasoning_tokens", "total_cache_write_tokens",
)  # fmt: skip
_BREAKDOWNS: tuple[tuple[tuple[GroupKey, ...], str | None], ...] = (
    ((), None),
    (("user",), None),
    (("user",), "day"),
    (("user", "model"), None),
    (("tenant", "user"), "hour"),
    (("user", "status"), "week"),
    (("tenant",), "day"),
    (("agent", "model"), None),
)


def _fields(call: LLMApiCall) -> dict[str, Any]:
    """Every field of ``call``, those left out of its dumps when None included."""
    return {name: getattr(call, name) for name in type(call).model_fields}


def _as_kept(call: LLMApiCall) -> dict[str, Any]:
    """What erasure must leave of ``call``: every field, those it anonymises as it sets them."""
    return {**_fields(call), **_ANONYMISED}


def _message_in(session: ChatSession, text: str, minute: int, **changes: Any) -> LLMMessage:
    message = make_message(session, text, create_time=BASE_TIME + timedelta(minutes=minute))
    return message.model_copy(update=changes) if changes else message


@dataclass
class _Ledger:
    """Two tenants' records, one user of the first (``erased``) to be erased.

    ``erased`` has two sessions of their own, a message and a call in
    ``kept``'s session, and a call in the other tenant; ``kept`` replied to
    the erased user's message there.
    """

    tenant: UUID = field(default_factory=uuid7)
    other_tenant: UUID = field(default_factory=uuid7)
    erased: UUID = field(default_factory=uuid7)
    kept: UUID = field(default_factory=uuid7)
    stranger: UUID = field(default_factory=uuid7)
    agent: UUID = field(default_factory=uuid7)
    sessions: dict[str, ChatSession] = field(default_factory=dict)
    messages: dict[str, LLMMessage] = field(default_factory=dict)
    calls: dict[str, LLMApiCall] = field(default_factory=dict)

    async def write(self, store: PersistenceStore) -> None:
        """Build the records and store them."""
        owners = {
            "mine": (self.erased, self.tenant),
            "plans": (self.erased, self.tenant),
            "theirs": (self.kept, self.tenant),
            "elsewhere": (self.stranger, self.other_tenant),
        }
        for name, (user, tenant) in owners.items():
            session = make_session(user_id=user, agent_id=self.agent, tenant_id=tenant)
            self.sessions[name] = session
            await store.create_session(session)
        mine, plans = self.sessions["mine"], self.sessions["plans"]
        theirs, elsewhere = self.sessions["theirs"], self.sessions["elsewhere"]
        asked = _message_in(mine, "my phone number is 555-0100", 0)
        self.messages = {
            "asked": asked,
            "answered": _message_in(mine, "noted", 1, parent_message_id=asked.id),
            "planned": _message_in(plans, "a trip to Lisbon", 2),
            "their question": _message_in(theirs, "what is the weather?", 3),
        }
        interjected = _message_in(theirs, "Bob, call me at 555-0100", 4, user_id=self.erased)
        self.messages["interjected"] = interjected
        self.messages["their reply"] = _message_in(
            theirs, "I will", 5, parent_message_id=interjected.id
        )
        self.messages["stranger's"] = _message_in(elsewhere, "hello", 6)
        for message in self.messages.values():
            await store.save_message(message)
        hour = timedelta(hours=1)
        self.calls = {
            "priced": make_api_call(
                mine,
                request_message_id=asked.id,
                response_message_id=self.messages["answered"].id,
                api_response_id="chatcmpl-erased-1",
                total_price=Decimal("0.0012345"),
                price_details=PriceDetails(
                    input_price=Decimal("0.001"), output_price=Decimal("0.0002345")
                ),
                prompt_tokens_details=TokenDetails(cached_tokens=4, cache_write_tokens=2),
                completion_tokens_details=TokenDetails(reasoning_tokens=3),
                time_to_first_token_ms=120,
                tokens_per_second=20.5,
                create_time=BASE_TIME,
                update_time=BASE_TIME + timedelta(seconds=2),
            ),
            "refused": make_api_call(
                plans,
                request_message_id=self.messages["planned"].id,
                status=ApiCallStatus.RATE_LIMITED,
                error_code="rate_limit_exceeded",
                error_message="Rate limit reached for alice@example.com",
                prompt_tokens=0,
                completion_tokens=0,
                latency_ms=40,
                create_time=BASE_TIME + 3 * hour,
            ),
            "interjected": make_api_call(
                theirs,
                user_id=self.erased,
                request_message_id=interjected.id,
                response_message_id=self.messages["their reply"].id,
                total_price=Decimal("0.5"),
                create_time=BASE_TIME + 26 * hour,
            ),
            "other tenant": make_api_call(
                user_id=self.erased,
                tenant_id=self.other_tenant,
                agent_id=self.agent,
                total_price=Decimal("0.25"),
                create_time=BASE_TIME + 27 * hour,
            ),
            "their own": make_api_call(
                theirs,
                request_message_id=self.messages["their question"].id,
                api_response_id="chatcmpl-kept",
                total_price=Decimal("0.75"),
                create_time=BASE_TIME + 3 * hour,
            ),
            "stranger's": make_api_call(
                elsewhere, error_message="kept as it is", create_time=BASE_TIME + 50 * hour
            ),
        }
        await store.save_api_calls(list(self.calls.values()))

    @property
    def erased_calls(self) -> list[str]:
        """The calls whose user is the one erased."""
        return [name for name, call in self.calls.items() if call.user_id == self.erased]

    @property
    def gone_messages(self) -> list[str]:
        """The messages erasing ``erased`` deletes: in their sessions, or written by them."""
        return ["asked", "answered", "planned", "interjected"]


def _same_answer(got: Sequence[UsageBucket], expected: Sequence[UsageBucket]) -> None:
    """Rows alike: groups, counts, tokens and cost exactly; averages and percentiles closely."""
    assert [(r.keys, r.bucket_start) for r in got] == [(r.keys, r.bucket_start) for r in expected]
    for row, want in zip(got, expected, strict=True):
        for name in _EXACT_FIGURES:
            assert getattr(row.stats, name) == getattr(want.stats, name), (row.keys, name)
        for name, value in row.stats.model_dump().items():
            if name in _EXACT_FIGURES:
                continue
            reference = getattr(want.stats, name)
            assert (value is None) == (reference is None), (row.keys, name)
            if reference is not None:
                margin = PERCENTILE_RELATIVE_ERROR * abs(reference) + 1e-9
                assert abs(value - reference) <= margin, (row.keys, name, value, reference)


def _random_calls(users: Sequence[UUID], tenants: Sequence[UUID], count: int) -> list[LLMApiCall]:
    """Varied calls over ``users`` and ``tenants``, across hours and days."""
    rng = random.Random(1414)  # noqa: S311  (reproducible test data)
    calls = []
    for _ in range(count):
        status = rng.choice(list(ApiCallStatus))
        created = BASE_TIME + timedelta(minutes=rng.randint(0, 9 * 24 * 60))
        prompt, completion = rng.randint(0, 900), rng.randint(0, 300)
        calls.append(
            make_api_call(
                user_id=rng.choice(users),
                tenant_id=rng.choice(tenants),
                agent_id=rng.choice(users[:2]),  # a few agents: any ids will do
                model_name=rng.choice(["gpt-4o", "gpt-4o-mini", "claude"]),
                status=status,
                error_message=None if status is ApiCallStatus.SUCCESS else "failed for Alice",
                prompt_tokens=prompt,
                completion_tokens=completion,
                prompt_tokens_details=TokenDetails(cached_tokens=rng.randint(0, prompt)),
                total_price=(
                    Decimal(rng.randint(0, 10**6)) / Decimal(10**7) if rng.random() < 0.7 else None
                ),
                latency_ms=rng.randint(5, 20_000) if rng.random() < 0.9 else None,
                time_to_first_token_ms=rng.randint(1, 900) if rng.random() < 0.5 else None,
                tokens_per_second=round(rng.uniform(1, 90), 3) if rng.random() < 0.8 else None,
                create_time=created,
                update_time=created + timedelta(seconds=rng.randint(0, 30)),
            )
        )
    return calls


class ErasureConformance(CapabilityConformance):
    """Erasure: a user's or tenant's sessions and messages deleted, their calls anonymised.

    ``erase_user`` and ``erase_tenant`` belong to ``PersistenceStore``: a
    store that keeps every kind of record runs these tests, any other skips them.
    """

    protocols: ClassVar[tuple[type, ...]] = (PersistenceStore,)

    # -- a user ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_erase_user_deletes_their_sessions_and_messages(
        self, store: PersistenceStore
    ) -> None:
        """Their sessions and every message of theirs go, in others' sessions too; all counted."""
        ledger = _Ledger()
        await ledger.write(store)
        report = await store.erase_user(ledger.erased)
        assert report == ErasureReport(
            user_id=ledger.erased,
            sessions_deleted=2,
            messages_deleted=len(ledger.gone_messages),
            api_calls_anonymised=len(ledger.erased_calls),
        )
        assert report.records_touched == 2 + 4 + 4
        for name in ("mine", "plans"):
            assert await store.get_session(ledger.sessions[name].id) is None
            assert await store.count_session_messages(ledger.sessions[name].id) == 0
        assert await store.get_user_sessions(ledger.erased) == []
        for name in ledger.gone_messages:
            assert await store.get_message(ledger.messages[name].id) is None
        everything_of_theirs = QueryFilter().user(ledger.erased)
        for kind in ("sessions", "messages", "api_calls"):
            assert await store.count_records(kind, everything_of_theirs) == 0, kind
        theirs = await store.get_session_messages(ledger.sessions["theirs"].id)
        assert [m.id for m in theirs] == [
            ledger.messages["their question"].id,
            ledger.messages["their reply"].id,
        ]
        assert theirs[1].parent_message_id is None  # its parent was the erased user's
        found = await store.search_sessions(SessionQuery(text="555-0100"))
        assert found.sessions == []

    @pytest.mark.asyncio
    async def test_erase_user_anonymises_their_calls_and_keeps_what_they_cost(
        self, store: PersistenceStore
    ) -> None:
        """Each call of theirs stays, with nil ids, no error text, no response id; all else kept."""
        ledger = _Ledger()
        await ledger.write(store)
        await store.erase_user(ledger.erased)
        for name in ledger.erased_calls:
            original = ledger.calls[name]
            stored = await store.get_api_call(original.id)
            assert stored is not None, name
            assert _fields(stored) == _as_kept(original), name
        kept = await store.query_api_calls(QueryFilter().user(NIL_UUID))
        assert sorted(c.id for c in kept) == sorted(ledger.calls[n].id for n in ledger.erased_calls)
        assert await store.calls_for_messages([ledger.messages["asked"].id]) == []

    @pytest.mark.asyncio
    async def test_erase_user_leaves_other_users_and_tenants_untouched(
        self, store: PersistenceStore
    ) -> None:
        """Other users' sessions, messages and calls are exactly as they were."""
        ledger = _Ledger()
        await ledger.write(store)
        await store.erase_user(ledger.erased)
        for name in ("theirs", "elsewhere"):
            assert await store.get_session(ledger.sessions[name].id) is not None
        for name in ("their question", "stranger's"):
            assert await store.get_message(ledger.messages[name].id) == ledger.messages[name]
        for name in ("their own", "stranger's"):
            assert await store.get_api_call(ledger.calls[name].id) == ledger.calls[name]
        assert [s.id for s in await store.get_user_sessions(ledger.kept)] == [
            ledger.sessions["theirs"].id
        ]

    @pytest.mark.asyncio
    async def test_erase_user_keeps_every_total_and_rollups_equal_a_scan(
        self, store: PersistenceStore
    ) -> None:
        """Totals per tenant, model, agent and status are unchanged; per user the erased user's
        calls are the nil user's; the rollups answer as a scan of the calls does."""
        users = [uuid7() for _ in range(4)]
        tenants = [uuid7() for _ in range(2)]
        calls = _random_calls([*users, NIL_UUID], tenants, 400)
        await store.save_api_calls(calls)
        unchanged = [QueryFilter(), QueryFilter().tenant(tenants[0]), QueryFilter().model("claude")]
        before = [await store.get_statistics(query) for query in unchanged]
        by_dimensions = await store.get_usage_breakdown(
            QueryFilter(), ["tenant", "agent", "model", "status"], "day"
        )
        report = await store.erase_user(users[0])
        assert report.api_calls_anonymised == sum(1 for c in calls if c.user_id == users[0])
        for query, stats in zip(unchanged, before, strict=True):
            after = await store.get_statistics(query)
            _same_answer([UsageBucket(keys={}, stats=after)], [UsageBucket(keys={}, stats=stats)])
        _same_answer(
            await store.get_usage_breakdown(
                QueryFilter(), ["tenant", "agent", "model", "status"], "day"
            ),
            by_dimensions,
        )
        nil_calls = [c for c in calls if c.user_id in (users[0], NIL_UUID)]
        nil_stats = await store.get_statistics(QueryFilter().user(NIL_UUID))
        assert nil_stats.total_calls == len(nil_calls)
        assert nil_stats.total_tokens == sum(c.total_tokens for c in nil_calls)
        assert (await store.get_statistics(QueryFilter().user(users[0]))).total_calls == 0
        day = BASE_TIME.replace(hour=0, minute=0, second=0, microsecond=0)
        filters = [
            QueryFilter(),
            QueryFilter().user(NIL_UUID),
            QueryFilter().user(users[0]),
            QueryFilter().user(users[1]),
            QueryFilter().tenant(tenants[1]),
            QueryFilter().time_range(day + timedelta(days=1, hours=5), day + timedelta(days=6)),
        ]
        for query in filters:
            for keys, bucket in _BREAKDOWNS:
                rolled = await store.get_usage_breakdown(query, keys, bucket)  # type: ignore[arg-type]
                with scan_only():
                    scanned = await store.get_usage_breakdown(query, keys, bucket)  # type: ignore[arg-type]
                _same_answer(rolled, scanned)
        users_left = {
            row.keys["user"] for row in await store.get_usage_breakdown(QueryFilter(), ["user"])
        }
        assert users_left == {NIL_UUID, *users[1:]}

    @pytest.mark.asyncio
    async def test_erase_user_dry_run_counts_and_changes_nothing(
        self, store: PersistenceStore
    ) -> None:
        """A dry run reports what erasing would do, and erasing then does exactly that."""
        ledger = _Ledger()
        await ledger.write(store)
        preview = await store.erase_user(ledger.erased, dry_run=True)
        assert preview.dry_run
        for name, call in ledger.calls.items():
            assert await store.get_api_call(call.id) == call, name
        for name, message in ledger.messages.items():
            assert await store.get_message(message.id) is not None, name
        report = await store.erase_user(ledger.erased)
        assert report == preview.model_copy(update={"dry_run": False})
        assert report.records_touched == 10

    @pytest.mark.asyncio
    async def test_erase_user_twice_or_unknown_erases_nothing(
        self, store: PersistenceStore
    ) -> None:
        """An unknown user, or one erased already, gives a report of zeros and changes nothing."""
        ledger = _Ledger()
        await ledger.write(store)
        stranger = uuid7()
        assert await store.erase_user(stranger) == ErasureReport(user_id=stranger)
        await store.erase_user(ledger.erased)
        stats = await store.get_statistics(QueryFilter())
        again = await store.erase_user(ledger.erased)
        assert again == ErasureReport(user_id=ledger.erased)
        assert again.records_touched == 0
        assert await store.get_statistics(QueryFilter()) == stats

    @pytest.mark.asyncio
    async def test_erase_user_refuses_the_nil_user(self, store: PersistenceStore) -> None:
        """The nil user is where erased calls go: erasing it raises ValueError, touching nothing."""
        session = make_session(user_id=NIL_UUID)
        await store.create_session(session)
        with pytest.raises(ValueError, match="nil user"):
            await store.erase_user(NIL_UUID)
        with pytest.raises(ValueError, match="nil user"):
            await store.erase_user(NIL_UUID, dry_run=True)
        assert await store.get_session(session.id) == session

    @pytest.mark.asyncio
    async def test_erase_checks_arguments_and_needs_an_open_store(
        self, store: PersistenceStore
    ) -> None:
        """A text id raises TypeError naming the parameter; a closed store StoreConnectionError."""
        some_id = uuid7()
        with pytest.raises(TypeError, match="user_id must be"):
            await store.erase_user(str(some_id))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="tenant_id must be"):
            await store.erase_tenant(None)  # type: ignore[arg-type]
        await store.close()
        with pytest.raises(StoreConnectionError):
            await store.erase_user(some_id)
        with pytest.raises(StoreConnectionError):
            await store.erase_tenant(some_id, dry_run=True)

    # -- a tenant ----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_erase_tenant_deletes_its_records_and_keeps_its_ledger(
        self, store: PersistenceStore
    ) -> None:
        """Its sessions, messages, providers and agents go; its calls stay, anonymised, its own."""
        ledger = _Ledger()
        await ledger.write(store)
        elsewhere = ledger.sessions["elsewhere"]
        strayed = _message_in(
            elsewhere, "posted under the wrong tenant", 9, tenant_id=ledger.tenant
        )
        await store.save_message(strayed)
        providers = [
            # No key: how keys are kept is not what this test is about.
            make_provider(tenant_id=ledger.tenant, name="openai", api_key=""),
            make_provider(tenant_id=ledger.tenant, name="anthropic", api_key=""),
            make_provider(tenant_id=ledger.other_tenant, name="openai", api_key=""),
        ]
        for provider in providers:
            await store.save_provider(provider)
        agents = [
            make_agent(providers[0]),
            make_agent(providers[0]),
            make_agent(providers[1], tenant_id=ledger.other_tenant),  # served by the tenant's key
            make_agent(providers[2]),
        ]
        for agent in agents:
            await store.save_agent(agent)
        tenant_calls = [c for c in ledger.calls.values() if c.tenant_id == ledger.tenant]
        usage = await store.get_statistics(QueryFilter().tenant(ledger.tenant))
        preview = await store.erase_tenant(ledger.tenant, dry_run=True)
        report = await store.erase_tenant(ledger.tenant)
        assert report == ErasureReport(
            tenant_id=ledger.tenant,
            sessions_deleted=3,
            messages_deleted=7,  # six in its sessions, one of its own elsewhere
            api_calls_anonymised=len(tenant_calls),
            providers_deleted=2,
            agents_deleted=3,
        )
        assert preview == report.model_copy(update={"dry_run": True})
        for name in ("mine", "plans", "theirs"):
            assert await store.get_session(ledger.sessions[name].id) is None
        assert await store.get_message(strayed.id) is None
        for kind in ("sessions", "messages"):
            assert await store.count_records(kind, QueryFilter().tenant(ledger.tenant)) == 0
        assert await store.list_providers(ledger.tenant) == []
        assert await store.list_agents(ledger.tenant) == []
        assert await store.get_agent(agents[2].id) is None
        assert await store.get_provider(providers[2].id) == providers[2]
        assert await store.get_agent(agents[3].id) == agents[3]
        for call in tenant_calls:
            stored = await store.get_api_call(call.id)
            assert stored is not None
            assert _fields(stored) == _as_kept(call)
        after = await store.get_statistics(QueryFilter().tenant(ledger.tenant))
        _same_answer([UsageBucket(keys={}, stats=after)], [UsageBucket(keys={}, stats=usage)])
        by_user = await store.get_usage_breakdown(QueryFilter().tenant(ledger.tenant), ["user"])
        assert [row.keys["user"] for row in by_user] == [NIL_UUID]
        for name in ("other tenant", "stranger's"):
            assert await store.get_api_call(ledger.calls[name].id) == ledger.calls[name]
        assert await store.get_session(elsewhere.id) is not None
        assert await store.get_message(ledger.messages["stranger's"].id) is not None
        again = await store.erase_tenant(ledger.tenant)  # its calls are still its own
        assert again == ErasureReport(
            tenant_id=ledger.tenant, api_calls_anonymised=len(tenant_calls)
        )

    @pytest.mark.asyncio
    async def test_erase_tenant_rollups_equal_a_scan(self, store: PersistenceStore) -> None:
        """After a tenant's erasure the rollups answer as a scan of the calls does."""
        users = [uuid7() for _ in range(4)]
        tenants = [uuid7() for _ in range(3)]
        calls = _random_calls(users, tenants, 300)
        await store.save_api_calls(calls)
        report = await store.erase_tenant(tenants[0])
        assert report.api_calls_anonymised == sum(1 for c in calls if c.tenant_id == tenants[0])
        for query in (
            QueryFilter(),
            QueryFilter().tenant(tenants[0]),
            QueryFilter().user(users[2]),
        ):
            for keys, bucket in _BREAKDOWNS:
                rolled = await store.get_usage_breakdown(query, keys, bucket)  # type: ignore[arg-type]
                with scan_only():
                    scanned = await store.get_usage_breakdown(query, keys, bucket)  # type: ignore[arg-type]
                _same_answer(rolled, scanned)

    @pytest.mark.asyncio
    async def test_erase_unknown_tenant_reports_zero(self, store: PersistenceStore) -> None:
        """A tenant with no records gives a report of zeros; others' records stay."""
        ledger = _Ledger()
        await ledger.write(store)
        nobody = uuid7()
        assert await store.erase_tenant(nobody) == ErasureReport(tenant_id=nobody)
        assert await store.count_records("messages", QueryFilter()) == len(ledger.messages)
