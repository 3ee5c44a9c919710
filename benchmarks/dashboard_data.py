"""The dashboard benchmark's data: agent conversations and their calls, as live systems make them.

Many tenants (a few large, most small), their users and agents, each agent on
its own model; sessions spread over the last ``days`` days, each a
conversation: a system prompt, then turns of a user message, an input-guard
call on a small model, rounds of tool calls (the assistant asks, the tools
answer), a final reply and an output-guard call; a call fails now and then
and is retried; a reply is sometimes regenerated (a branch: two replies to
one parent). The guards' verdicts are calls without a message, which is
what makes calls about as many as messages. Every
assistant message is the response of the call that made it, so a session's
page can show each call under its reply.

Each session is generated from a random generator of its own, so the rows
can be generated twice (messages, then calls) without holding either in
memory, and both come out in time order (as a live system inserts them):
sessions start in order, and a small heap holds the rows of those still
running until no later session can have older rows.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.workload import Row, failure_columns, success_columns, uuid7_at
from chatledger.entities import ApiCallStatus, MessageRole
from chatledger.ids import NIL_UUID

__all__ = ["COMMON_WORD", "MODELS", "Dashboard", "Population", "order_number"]

# name: (input, output) price in nano-dollars per token (dollars per million tokens x 1000),
# and whether it reasons
MODELS: dict[str, tuple[int, int, bool]] = {
    "gpt-4o": (2_500, 10_000, False),
    "gpt-4o-mini": (150, 600, False),
    "gpt-4.1": (2_000, 8_000, False),
    "gpt-4.1-mini": (400, 1_600, False),
    "o3-mini": (1_100, 4_400, True),
    "o4-mini": (1_100, 4_400, True),
    "claude-sonnet-4": (3_000, 15_000, False),
    "claude-3-5-haiku": (800, 4_000, False),
    "gemini-2.5-pro": (1_250, 10_000, True),
    "gemini-2.5-flash": (300, 2_500, False),
    "llama-3.1-70b": (600, 600, False),
    "mistral-large": (2_000, 6_000, False),
}
_MAIN_MODELS = (  # what agents run on, the popular ones more often
    ("gpt-4o", 20), ("gpt-4.1", 12), ("claude-sonnet-4", 14), ("o3-mini", 6), ("o4-mini", 6),
    ("gemini-2.5-pro", 6), ("gpt-4.1-mini", 10), ("claude-3-5-haiku", 6),
    ("gemini-2.5-flash", 6), ("llama-3.1-70b", 8), ("mistral-large", 6),
)  # fmt: skip
_GUARD_MODELS = ("gpt-4o-mini", "gemini-2.5-flash")
_FAILURES = (  # status, error code, message, share among failures
    (ApiCallStatus.RATE_LIMITED, "rate_limit_exceeded", "429 Too Many Requests", 0.40),
    (ApiCallStatus.FAILED, "server_error", "500 upstream error, retry", 0.25),
    (ApiCallStatus.FAILED, "context_length_exceeded", "prompt is too long", 0.05),
    (ApiCallStatus.TIMEOUT, "timeout", "no answer in 60 s", 0.20),
    (ApiCallStatus.CANCELLED, "cancelled", "the client went away", 0.10),
)
_FAILURE_RATE = 0.05  # of call attempts
_REGENERATED = 0.03  # of final replies: regenerated, a second reply to the same parent
_TOPICS = (
    "refund", "weather", "invoice", "travel", "contract", "sql", "translation", "calendar",
    "onboarding", "pricing", "shipping", "password", "report", "meeting", "recipe",
    "insurance", "mortgage", "warranty", "subscription", "complaint", "hiring", "budget",
    "migration", "outage", "newsletter", "lesson", "workout", "diagnosis", "lease", "tax",
)  # fmt: skip
COMMON_WORD = "refund"
"""A topic: in the title or the first message of about one session in thirty."""
_SENTENCES = (
    "the agent asked for the weather in Lisbon and then booked a table for two at eight "
    "please summarise this document tool call returned an error retry with a smaller page "
    "size translate the answer into French and keep the markdown code block as it is "
    "what does the customer want next week compare both options and explain the trade offs"
)
_WORDS = tuple(_SENTENCES.split(" "))
_TOOLS = ("get_weather", "search_docs", "lookup_order", "run_sql", "send_email", "create_event")
_TURNS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12)
_TURN_WEIGHTS = (18, 16, 14, 12, 10, 9, 7, 6, 5, 3)
_ROUNDS = (0, 1, 2, 3)  # tool rounds before the final reply
_ROUND_WEIGHTS = (50, 30, 15, 5)


def order_number(index: int) -> str:
    """The order number session ``index`` mentions (every third session mentions one)."""
    return f"#{index * 7_919 % 10_000_000:07d}-{index:06d}"


def _failure(roll: float) -> tuple[ApiCallStatus, str, str]:
    """The failure a roll in [0, 1) picks, by their shares."""
    for status, code, text, share in _FAILURES:
        if roll < share:
            return status, code, text
        roll -= share
    return _FAILURES[-1][:3]


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(low, high)))


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: its id, users and agents."""

    id: uuid.UUID
    users: tuple[uuid.UUID, ...]
    agents: tuple[tuple[uuid.UUID, str, str], ...]  # (id, main model, guard model)


@dataclass(frozen=True, slots=True)
class Population:
    """The tenants, most traffic from a few of them (weights fall off as 1/rank^0.8)."""

    tenants: tuple[Tenant, ...]
    weights: tuple[float, ...]

    @classmethod
    def make(
        cls, rng: random.Random, tenants: int, users: int, agents_per_tenant: int
    ) -> Population:
        """``tenants`` tenants sharing ``users`` users in proportion to their weights."""
        weights = tuple(1 / (rank + 1) ** 0.8 for rank in range(tenants))
        total = sum(weights)
        made = []
        for weight in weights:
            count = max(1, round(users * weight / total))
            agents = tuple(
                (
                    uuid.UUID(int=rng.getrandbits(128)),
                    rng.choices([m for m, _ in _MAIN_MODELS], [w for _, w in _MAIN_MODELS])[0],
                    rng.choice(_GUARD_MODELS),
                )
                for _ in range(agents_per_tenant)
            )
            made.append(
                Tenant(
                    uuid.UUID(int=rng.getrandbits(128)),
                    tuple(uuid.UUID(int=rng.getrandbits(128)) for _ in range(count)),
                    agents,
                )
            )
        return cls(tuple(made), weights)

    @property
    def user_count(self) -> int:
        """Users of every tenant."""
        return sum(len(tenant.users) for tenant in self.tenants)

    @property
    def agent_count(self) -> int:
        """Agents of every tenant."""
        return sum(len(tenant.agents) for tenant in self.tenants)


@dataclass(slots=True)
class _Session:
    """One session's rows, as generated."""

    row: Row
    messages: list[Row]
    calls: list[Row]


class _Conversation:
    """Builds one session's messages and calls, moving its clock forward."""

    def __init__(self, rng: random.Random, session: Row, main: str, guard: str) -> None:
        self.rng = rng
        self.session = session
        self.main = main
        self.guard = guard
        self.now: datetime = session["create_time"]
        self.messages: list[Row] = []
        self.calls: list[Row] = []
        self.context = 0  # tokens of the conversation so far: the next prompt's size

    def wait(self, low: float, high: float) -> None:
        self.now += timedelta(seconds=self.rng.uniform(low, high))
        if self.now.microsecond == 0:  # never a whole second, as the other workloads
            self.now += timedelta(microseconds=1)

    def message(self, role: MessageRole, content: dict[str, Any], parent: uuid.UUID | None) -> Row:
        session = self.session
        row = {
            "id": uuid7_at(self.now, self.rng),
            "parent_message_id": parent,
            "chat_session_id": session["id"],
            "agent_id": session["agent_id"],
            "user_id": session["user_id"],
            "tenant_id": session["tenant_id"],
            "role": role,
            "content": content,
            "create_time": self.now,
            "update_time": self.now,
        }
        self.messages.append(row)
        self.context += 30 + len(str(content)) // 4
        return row

    def call(self, request: uuid.UUID, model: str, prompt: int, completion: int) -> Row:
        """One attempt after another until one succeeds (most do at once); the success's row."""
        while self.rng.random() < _FAILURE_RATE:
            self._failure(request, model)
            self.wait(0.5, 8.0)  # the client's backoff
        return self._success(request, model, prompt, completion)

    def _base(self, request: uuid.UUID, model: str) -> Row:
        session = self.session
        self.wait(0.01, 0.2)
        return {
            "id": uuid7_at(self.now, self.rng),
            "chat_session_id": session["id"],
            "agent_id": session["agent_id"],
            "user_id": session["user_id"],
            "tenant_id": session["tenant_id"],
            "request_message_id": request,
            "model_name": model,
            "create_time": self.now,
        }

    def _failure(self, request: uuid.UUID, model: str) -> None:
        row = self._base(request, model)
        status, code, text = _failure(self.rng.random())
        latency = (
            self.rng.randint(55_000, 60_000)
            if status is ApiCallStatus.TIMEOUT
            else self.rng.randint(20, 2_000)
        )
        row["status"] = status
        row.update(failure_columns(code, f"{code}: {text}", latency, self.now))
        self.calls.append(row)
        self.now = row["update_time"]

    def _success(self, request: uuid.UUID, model: str, prompt: int, completion: int) -> Row:
        rng = self.rng
        row = self._base(request, model)
        in_rate, out_rate, reasons = MODELS[model]
        cached = None
        if prompt > 1024 and rng.random() < 0.6:  # a long prompt's prefix is often cached
            cached = int(prompt * rng.uniform(0.5, 0.95))
        reasoning = rng.randint(completion // 4, completion * 3) if reasons else None
        completion_total = completion + (reasoning or 0)
        first_token = rng.randint(150, 900) + (reasoning or 0) // 40
        latency = first_token + int(completion_total / rng.uniform(30.0, 160.0) * 1000)
        row.update(
            success_columns(
                rng,
                (in_rate, out_rate),
                (prompt, completion_total, reasoning, cached),
                (first_token, latency),
                self.now,
                NIL_UUID,  # set to the reply's id by the caller, if stored
            )
        )
        self.calls.append(row)
        self.now = row["update_time"]
        return row

    def reply(self, request: Row, content: dict[str, Any], completion: int) -> Row:
        """A call on the main model and the assistant message it produced."""
        call = self.call(request["id"], self.main, self.context, completion)
        message = self.message(MessageRole.ASSISTANT, content, request["id"])
        call["response_message_id"] = message["id"]
        return message

    def turn(self, first: bool, topic: str, order: str | None) -> None:
        rng = self.rng
        if first:
            self.wait(1, 10)
        else:
            self.wait(5, 300)
        words = _text(rng, 5, 40)
        if first:
            words = f"{topic}: {words}" + (f" about order {order}" if order else "")
        parent = self.messages[-1]["id"]
        user = self.message(MessageRole.USER, {"text": words}, parent)
        # the input guard: a small model's verdict, kept as a call only (no message)
        self.call(user["id"], self.guard, 120 + len(words) // 4, rng.randint(1, 12))
        request = user
        rounds = rng.choices(_ROUNDS, _ROUND_WEIGHTS)[0]
        for _ in range(rounds):
            asked = [
                {
                    "id": f"call_{rng.getrandbits(48):012x}",
                    "name": rng.choice(_TOOLS),
                    "arguments": {"query": _text(rng, 2, 6), "limit": rng.randint(1, 50)},
                }
                for _ in range(1 if rng.random() < 0.7 else 2)
            ]
            assistant = self.reply(request, {"tool_calls": asked}, rng.randint(15, 80))
            parent_id = assistant["id"]
            for tool in asked:
                self.wait(0.05, 3.0)
                failed = rng.random() < 0.04
                result = {
                    "tool_call_id": tool["id"],
                    "content": "error: upstream timed out" if failed else _text(rng, 10, 80),
                    "is_error": failed,
                }
                request = self.message(MessageRole.TOOL, {"tool_result": result}, parent_id)
                parent_id = request["id"]
        final = self.reply(request, {"text": _text(rng, 20, 120)}, rng.randint(40, 700))
        if rng.random() < _REGENERATED:  # the user asked for another answer: a branch
            self.wait(3, 30)
            final = self.reply(request, {"text": _text(rng, 20, 120)}, rng.randint(40, 700))
        # the output guard checks the reply shown (a call only, as the input guard)
        self.call(final["id"], self.guard, 120 + len(final["content"]["text"]) // 4, 2)


@dataclass(frozen=True, slots=True)
class Dashboard:
    """``sessions`` sessions over the ``days`` days before ``end``; rows made on demand."""

    seed: int
    population: Population
    starts: tuple[datetime, ...]  # each session's start, ascending
    end: datetime

    @classmethod
    def make(
        cls,
        *,
        seed: int,
        calls: int,
        messages: int,
        tenants: int,
        users: int,
        agents_per_tenant: int,
        days: int = 90,
        end: datetime | None = None,
    ) -> Dashboard:
        """The fewest sessions that hold at least ``calls`` calls and ``messages`` messages."""
        rng = random.Random(seed)
        population = Population.make(rng, tenants, users, agents_per_tenant)
        end = end or datetime.now(UTC)
        # Sessions start until two hours before the end: none runs past it (the longest
        # lasts about an hour), so no row lies in the future.
        last = end - timedelta(hours=2)
        # A session's rows depend on its index alone (its start only shifts their times):
        # count them, session by session, until both totals are reached.
        probe = cls(seed, population, (), end)
        count = found_messages = found_calls = 0
        while found_messages < messages or found_calls < calls:
            made = probe.build(count, last)
            found_messages += len(made.messages)
            found_calls += len(made.calls)
            count += 1
        span = timedelta(days=days).total_seconds()
        starts = sorted(
            last - timedelta(seconds=rng.uniform(0, span), microseconds=rng.randint(1, 999_999))
            for _ in range(count)
        )
        return cls(seed, population, tuple(starts), end)

    def session(self, index: int) -> _Session:
        """Session ``index``: its row, messages and calls (the same every time)."""
        return self.build(index, self.starts[index])

    def build(self, index: int, start: datetime) -> _Session:
        """Session ``index`` as if it started at ``start``."""
        rng = random.Random(self.seed * 1_000_003 + index)
        tenant = rng.choices(self.population.tenants, self.population.weights)[0]
        agent, main, guard = rng.choice(tenant.agents)
        topic = rng.choice(_TOPICS)
        order = order_number(index) if index % 3 == 0 else None
        title = None
        if rng.random() < 0.8:
            title = f"{topic.capitalize()}: {_text(rng, 2, 6)}"
        session = {
            "id": uuid7_at(start, rng),
            "user_id": rng.choice(tenant.users),
            "agent_id": agent,
            "tenant_id": tenant.id,
            "title": title,
            "metadata": {"channel": rng.choice(("web", "api", "slack"))},
            "create_time": start,
            "update_time": start,
        }
        chat = _Conversation(rng, session, main, guard)
        chat.wait(0.001, 0.5)
        chat.message(MessageRole.SYSTEM, {"text": f"You are {main}'s {topic} agent."}, None)
        turns = rng.choices(_TURNS, _TURN_WEIGHTS)[0]
        for number in range(turns):
            chat.turn(number == 0, topic, order)
        session["update_time"] = chat.messages[-1]["create_time"]
        return _Session(session, chat.messages, chat.calls)

    @property
    def session_count(self) -> int:
        """How many sessions there are."""
        return len(self.starts)

    def _in_time_order(self, rows_of: Callable[[_Session], list[Row]]) -> Iterator[Row]:
        """Every session's ``rows_of`` rows, merged by create_time (a live system's order)."""
        heap: list[tuple[datetime, int, Row]] = []
        pushed = 0
        for index, start in enumerate(self.starts):
            while heap and heap[0][0] < start:  # no later session has rows this old
                yield heapq.heappop(heap)[2]
            for row in rows_of(self.session(index)):
                heapq.heappush(heap, (row["create_time"], pushed, row))
                pushed += 1
        while heap:
            yield heapq.heappop(heap)[2]

    def messages(self) -> Iterator[Row]:
        """Every message, oldest first."""
        return self._in_time_order(lambda s: s.messages)

    def calls(self) -> Iterator[Row]:
        """Every API call, oldest first."""
        return self._in_time_order(lambda s: s.calls)

    def sessions(self) -> Iterator[Row]:
        """Every session row (its update_time its last message's), oldest first."""
        for index in range(self.session_count):
            yield self.session(index).row
