"""The data every side of a benchmark works on, generated deterministically from a seed.

Rows are plain dicts keyed by chatledger's column names and holding Python
values (UUIDs, aware datetimes, dicts for JSON columns), so the same rows
feed chatledger's entities, the raw sqlite3 baseline and the peers' items.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from benchmarks.sizes import Sizes
from chatledger import entities

__all__ = [
    "MODELS",
    "Clock",
    "History",
    "Ledger",
    "Population",
    "Row",
    "api_call_rows",
    "conversation",
    "session_row",
    "sessions",
    "to_api_call",
    "to_chat_session",
    "to_llm_message",
    "uuid7_at",
]

Row = dict[str, Any]
"""One table row keyed by column name, holding Python values."""

MODELS = ("gpt-4o", "gpt-4o-mini", "o3-mini", "claude-sonnet-4", "llama-3.1-70b")
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_SENTENCES = (
    "the agent asked for the weather in Lisbon and then booked a table for two at eight "
    "please summarise this invoice tool call returned an error retry with a smaller page "
    "size translate the answer into French and keep the markdown code block as it is"
)
_WORDS = tuple(_SENTENCES.split(" "))
_STATUSES = (
    (entities.ApiCallStatus.SUCCESS, 0.95),
    (entities.ApiCallStatus.FAILED, 0.02),
    (entities.ApiCallStatus.TIMEOUT, 0.01),
    (entities.ApiCallStatus.RATE_LIMITED, 0.015),
    (entities.ApiCallStatus.CANCELLED, 0.005),
)


def uuid7_at(moment: datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 whose timestamp is ``moment``, so ids sort the way their rows were made."""
    millis = int(moment.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    return uuid.UUID(int=value)


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(10, 60)))


def _time(rng: random.Random, days: int = 90) -> datetime:
    # Never a whole second: every stored time then carries its microseconds.
    return _EPOCH + timedelta(
        seconds=rng.randrange(days * 86_400), microseconds=rng.randint(1, 999_999)
    )


class Clock:
    """Increasing times, as a live system stamps its rows: random gaps averaging ``mean_gap``."""

    def __init__(self, rng: random.Random, mean_gap: timedelta, start: datetime = _EPOCH) -> None:
        """Start at ``start``; each tick moves forward by up to twice ``mean_gap``."""
        self._rng = rng
        self._now = start
        self._max_micros = max(2, int(mean_gap / timedelta(microseconds=1)) * 2)

    def tick(self) -> datetime:
        """The next time, never on a whole second (so every stored time has its microseconds)."""
        self._now += timedelta(microseconds=self._rng.randint(1, self._max_micros))
        if self._now.microsecond == 0:
            self._now += timedelta(microseconds=1)
        return self._now


def failure_columns(code: str, message: str, latency: int, started: datetime) -> Row:
    """A call's columns when it failed before any token: no reply, usage, price or TTFT."""
    return {
        "response_message_id": uuid.UUID(int=0),
        "error_message": message,
        "error_code": code,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
        "cached_tokens": None,
        "reasoning_tokens": None,
        "total_price": None,
        "price_details": None,
        "latency_ms": latency,
        "time_to_first_token_ms": None,
        "tokens_per_second": None,
        "api_response_id": None,
        "update_time": started + timedelta(milliseconds=latency),
    }


def success_columns(
    rng: random.Random,
    rates: tuple[int, int],
    usage: tuple[int, int, int | None, int | None],
    timing: tuple[int, int],
    started: datetime,
    response_id: uuid.UUID,
) -> Row:
    """A successful call's columns: ``usage`` (prompt, completion, reasoning, cached tokens)
    priced at ``rates`` (input, output: per 1e9 tokens), ``timing`` (first token, latency)."""
    prompt, completion, reasoning, cached = usage
    first_token, latency = timing
    input_price = Decimal(prompt * rates[0]).scaleb(-9)
    output_price = Decimal(completion * rates[1]).scaleb(-9)
    return {
        "status": entities.ApiCallStatus.SUCCESS,
        "response_message_id": response_id,
        "error_message": None,
        "error_code": None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": None if cached is None else {"cached_tokens": cached},
        "completion_tokens_details": (
            None if reasoning is None else {"reasoning_tokens": reasoning}
        ),
        "cached_tokens": cached,
        "reasoning_tokens": reasoning,
        "total_price": input_price + output_price,
        "price_details": {
            "input_price": float(input_price),
            "output_price": float(output_price),
            "currency": "USD",
        },
        "latency_ms": latency,
        "time_to_first_token_ms": first_token,
        "tokens_per_second": completion / (latency / 1000.0),
        "api_response_id": f"chatcmpl-{rng.getrandbits(64):016x}",
        "update_time": started + timedelta(milliseconds=latency),
    }


@dataclass(frozen=True, slots=True)
class Population:
    """The tenant, agents and users the generated rows belong to."""

    tenant_id: uuid.UUID
    agent_ids: tuple[uuid.UUID, ...]
    user_ids: tuple[uuid.UUID, ...]

    @classmethod
    def make(cls, rng: random.Random, users: int, agents: int = 10) -> Population:
        """A tenant with ``users`` users and ``agents`` agents."""
        return cls(
            tenant_id=uuid.UUID(int=rng.getrandbits(128)),
            agent_ids=tuple(uuid.UUID(int=rng.getrandbits(128)) for _ in range(agents)),
            user_ids=tuple(uuid.UUID(int=rng.getrandbits(128)) for _ in range(users)),
        )


def session_row(population: Population, rng: random.Random, create_time: datetime) -> Row:
    """One chat session row starting at ``create_time``."""
    return {
        "id": uuid7_at(create_time, rng),
        "user_id": rng.choice(population.user_ids),
        "agent_id": rng.choice(population.agent_ids),
        "tenant_id": population.tenant_id,
        "title": None,
        "metadata": {},
        "create_time": create_time,
        "update_time": create_time,
    }


def sessions(
    population: Population, rng: random.Random, count: int, clock: Clock | None = None
) -> list[Row]:
    """``count`` session rows, started in turn by ``clock`` or at random over 90 days."""
    return [
        session_row(population, rng, clock.tick() if clock else _time(rng)) for _ in range(count)
    ]


def conversation(session: Row, rng: random.Random, count: int) -> Iterator[Row]:
    """``count`` messages of ``session``: user and assistant in turn, each the next one's parent."""
    moment = session["create_time"]
    parent: uuid.UUID | None = None
    for index in range(count):
        moment += timedelta(seconds=rng.randint(2, 90), microseconds=rng.randint(1, 999_999))
        message_id = uuid7_at(moment, rng)
        yield {
            "id": message_id,
            "parent_message_id": parent,
            "chat_session_id": session["id"],
            "agent_id": session["agent_id"],
            "user_id": session["user_id"],
            "tenant_id": session["tenant_id"],
            "role": entities.MessageRole.USER if index % 2 == 0 else entities.MessageRole.ASSISTANT,
            "content": {"text": _text(rng)},
            "create_time": moment,
            "update_time": moment,
        }
        parent = message_id


def _status(rng: random.Random) -> entities.ApiCallStatus:
    roll = rng.random()
    for status, share in _STATUSES:
        if roll < share:
            return status
        roll -= share
    return entities.ApiCallStatus.SUCCESS


def api_call_rows(
    session_list: list[Row], rng: random.Random, count: int, clock: Clock
) -> Iterator[Row]:
    """``count`` API calls over ``session_list``, in ``clock`` order; a few of every failure."""
    for _ in range(count):
        session = rng.choice(session_list)
        create_time = clock.tick()
        status = _status(rng)
        row: Row = {
            "id": uuid7_at(create_time, rng),
            "chat_session_id": session["id"],
            "agent_id": session["agent_id"],
            "user_id": session["user_id"],
            "tenant_id": session["tenant_id"],
            "request_message_id": uuid7_at(create_time, rng),
            "model_name": rng.choice(MODELS),
            "status": status,
        }
        if status is entities.ApiCallStatus.SUCCESS:
            row.update(_success_fields(rng, create_time))
        else:
            latency = rng.randint(5, 30_000)
            row.update(failure_columns(
                status.value.upper(), f"{status.value}: upstream answered 5xx", latency,
                create_time,
            ))  # fmt: skip
        row["create_time"] = create_time
        yield row


def _success_fields(rng: random.Random, create_time: datetime) -> Row:
    prompt = rng.randint(50, 4_000)
    completion = rng.randint(10, 1_500)
    first_token = rng.randint(80, 1_500)
    latency = first_token + int(completion / rng.uniform(20.0, 150.0) * 1000)
    cached = rng.randint(0, prompt) if rng.random() < 0.4 else None
    reasoning = rng.randint(0, completion) if rng.random() < 0.2 else None
    return success_columns(
        rng,
        (2_500, 10_000),  # $2.50 and $10 per million tokens
        (prompt, completion, reasoning, cached),
        (first_token, latency),
        create_time,
        uuid7_at(create_time, rng),
    )


class History:
    """The history workload: sessions and their messages, interleaved as many live chats are."""

    def __init__(self, sizes: Sizes, seed: int) -> None:
        """The sessions of ``sizes.history_sessions`` chats; the same ``seed``, the same rows."""
        rng = random.Random(seed)
        population = Population.make(rng, users=max(1, sizes.users))
        self.rng = rng
        self.sizes = sizes
        self.sessions = sessions(population, rng, sizes.history_sessions)
        self.newest: list[uuid.UUID] = []  # the first session's message ids, oldest first

    def messages(self) -> Iterator[Row]:
        """Round-robin over the sessions: message 1 of each, then message 2 of each, ..."""
        count = self.sizes.messages_per_session
        chats = [conversation(s, self.rng, count) for s in self.sessions]
        for _ in range(count):
            for session, chat in zip(self.sessions, chats, strict=True):
                row = next(chat)
                session["update_time"] = row["create_time"]
                if session is self.sessions[0]:
                    self.newest.append(row["id"])
                yield row


class Ledger:
    """The statistics workload: ``sizes.api_calls`` calls spread evenly over 90 days of traffic."""

    def __init__(self, sizes: Sizes, seed: int) -> None:
        """The tenant, users and sessions; the same ``seed``, the same rows."""
        rng = random.Random(seed)
        self.rng = rng
        self.sizes = sizes
        self.population = Population.make(rng, users=sizes.users)
        self.sessions = sessions(self.population, rng, max(sizes.users, sizes.history_sessions))
        # The start of the newest week of the 90 days: what a dashboard's "--since 7d" asks for.
        self.week_start: datetime | None = None

    def calls(self) -> Iterator[Row]:
        """The API calls, oldest first; sets ``week_start`` on the way."""
        count = self.sizes.api_calls
        week = count - 1 - count * 7 // 90  # index of the oldest call of the newest week
        clock = Clock(self.rng, timedelta(days=90) / count)
        for index, row in enumerate(api_call_rows(self.sessions, self.rng, count, clock)):
            if index == week:
                self.week_start = row["create_time"]
            yield row


def to_chat_session(row: Row) -> entities.ChatSession:
    """The ChatSession a session row describes."""
    return entities.ChatSession.model_validate(row)


def to_llm_message(row: Row) -> entities.LLMMessage:
    """The LLMMessage a message row describes."""
    if row["parent_message_id"] is None:
        row = {key: value for key, value in row.items() if key != "parent_message_id"}
    return entities.LLMMessage.model_validate(row)


def to_api_call(row: Row) -> entities.LLMApiCall:
    """The LLMApiCall an API-call row describes (derived columns left out)."""
    fields = entities.LLMApiCall.model_fields
    return entities.LLMApiCall.model_validate(
        {key: value for key, value in row.items() if key in fields and value is not None}
    )
