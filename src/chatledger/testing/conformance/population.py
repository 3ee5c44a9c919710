"""Records worth querying (varied API calls, sessions over time) and filters that select them."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from chatledger.entities import ApiCallStatus, ChatSession, LLMApiCall, QueryFilter, TokenDetails
from chatledger.ids import uuid7
from chatledger.stores.base import SessionStore
from chatledger.testing.factories import BASE_TIME, make_api_call, make_session

__all__ = ["Population", "call_filters", "session_filters", "sessions_over_time"]


class Population:
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


def call_filters(
    population: Population,
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
            lambda c: c.tenant_id == tenant and c.model_name == model and c.create_time >= start,
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


async def sessions_over_time(store: SessionStore) -> list[ChatSession]:
    """Twenty sessions of two tenants, three users and two agents, active over 40 days."""
    rng = random.Random(11)  # noqa: S311  (reproducible test data, not security)
    tenants, users, agents = (
        [uuid7() for _ in range(2)],
        [uuid7() for _ in range(3)],
        [uuid7() for _ in range(2)],
    )
    sessions = []
    for _ in range(20):
        created = BASE_TIME + timedelta(days=rng.randint(0, 20), microseconds=rng.randint(0, 999))
        session = make_session(
            tenant_id=rng.choice(tenants),
            user_id=rng.choice(users),
            agent_id=rng.choice(agents),
            create_time=created,
            update_time=created + timedelta(days=rng.randint(0, 20), seconds=rng.randint(0, 99)),
        )
        await store.create_session(session)
        sessions.append(session)
    return sessions


def session_filters(
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
