"""An offline agent conversation saved to a database, then its transcript and usage.

``python -m chatledger.demo [--db URL]`` (what ``make demo`` runs) writes one
run of a scripted conversation: three sessions of one tenant, user and agent,
with a tool call, token details, prices and one rate-limited call. It then
reads back the sessions it wrote and prints their transcript, and the usage
by model of every run the database holds. Nothing goes over the network.

The times are real: the run ends now and the calls take plausible latencies.
Each run appends three new sessions, so the usage grows run after run.
This module stands in for ``chatledger demo`` until the agent and its
persistence plugin exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import textwrap
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from chatledger import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    ModelPrice,
    NotFoundError,
    PersistenceError,
    PersistenceStore,
    QueryFilter,
    StaticPricingRegistry,
    TokenDetails,
    ToolCallContent,
    ToolResultContent,
    UsageStatistics,
    connect,
    uuid7,
)
from chatledger.entities import utc_now

__all__ = [
    "DEFAULT_DB",
    "DEMO_AGENT",
    "DEMO_TENANT",
    "DEMO_USER",
    "SESSIONS_PER_RUN",
    "main",
]

DEFAULT_DB = "sqlite:///./chatledger.db"
"""Where the demo writes unless ``--db`` or ``CHATLEDGER_DATABASE_URL`` says otherwise."""

DEMO_TENANT = uuid.UUID("01970000-0000-7000-8000-00000000d3e0")
DEMO_USER = uuid.UUID("01970000-0000-7000-8000-00000000d3e1")
DEMO_AGENT = uuid.UUID("01970000-0000-7000-8000-00000000d3e2")

PROVIDER = "openai"
PRICES = StaticPricingRegistry(
    {  # USD per million tokens: input, output, cached input
        (PROVIDER, "gpt-4o-mini"): ModelPrice(Decimal("0.15"), Decimal("0.60"), Decimal("0.075")),
        (PROVIDER, "gpt-4o"): ModelPrice(Decimal("2.50"), Decimal("10.00"), Decimal("1.25")),
        (PROVIDER, "o4-mini"): ModelPrice(Decimal("1.10"), Decimal("4.40"), Decimal("0.275")),
    }
)

WIDTH = 80
_LABEL = 11  # width of the role column in the transcript
_RUN_KEY = "demo_run"  # session metadata: which run of the demo wrote it


# --- the script --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Said:
    """A user message or a tool result, ``after_ms`` after the step before it."""

    role: MessageRole
    content: MessageContent
    after_ms: int

    @property
    def duration_ms(self) -> int:
        """How long this step moves the clock."""
        return self.after_ms


@dataclass(frozen=True, slots=True)
class Reply:
    """An assistant message and the API call that produced it, sent right after the step before."""

    content: MessageContent
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    latency_ms: int
    ttft_ms: int

    @property
    def duration_ms(self) -> int:
        """How long this step moves the clock."""
        return self.latency_ms


@dataclass(frozen=True, slots=True)
class RateLimited:
    """An API call the provider refused with HTTP 429; no assistant message."""

    model: str
    latency_ms: int
    error_message: str

    @property
    def duration_ms(self) -> int:
        """How long this step moves the clock."""
        return self.latency_ms


Step = Said | Reply | RateLimited


@dataclass(frozen=True, slots=True)
class Conversation:
    """One session's title and steps, starting ``after_ms`` after the session before."""

    title: str
    after_ms: int
    steps: tuple[Step, ...]


def _user(text: str, after_ms: int) -> Said:
    return Said(MessageRole.USER, MessageContent.from_text(text), after_ms)


def _script(today: date) -> tuple[Conversation, ...]:
    """The conversation of one run; the weather question is about the coming Saturday."""
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    return (
        Conversation(
            "A weekend in Lisbon",
            0,
            (
                _user("I have a free weekend in Lisbon. What should I not miss?", 0),
                Reply(
                    MessageContent.from_text(
                        "Start early in Alfama, before the crowds: the Sé, the Miradouro de "
                        "Santa Luzia and a ride on tram 28. Spend Saturday afternoon in Belém "
                        "for the tower, the monastery and a pastel de nata. Keep Sunday for "
                        "LX Factory and the sunset at the Miradouro da Senhora do Monte."
                    ),
                    "gpt-4o-mini",
                    prompt_tokens=1236,
                    completion_tokens=96,
                    cached_tokens=0,
                    reasoning_tokens=0,
                    latency_ms=1420,
                    ttft_ms=310,
                ),
                _user("And if it rains on Saturday?", 21_400),
                Reply(
                    MessageContent.from_text(
                        "Swap Belém for the Gulbenkian museum and the Oceanário, both indoors "
                        "and a short metro ride apart; the Time Out Market is a covered lunch "
                        "stop in between."
                    ),
                    "gpt-4o-mini",
                    prompt_tokens=1351,
                    completion_tokens=58,
                    cached_tokens=1280,
                    reasoning_tokens=0,
                    latency_ms=1080,
                    ttft_ms=270,
                ),
            ),
        ),
        Conversation(
            "Packing for the weather",
            94_000,
            (
                _user("Will I need a jacket in Lisbon this Saturday?", 0),
                Reply(
                    MessageContent.from_tool_calls(
                        [
                            ToolCallContent(
                                id=call_id,
                                name="get_weather",
                                arguments={"city": "Lisbon", "date": saturday.isoformat()},
                            )
                        ]
                    ),
                    "gpt-4o",
                    prompt_tokens=1410,
                    completion_tokens=22,
                    cached_tokens=1280,
                    reasoning_tokens=0,
                    latency_ms=840,
                    ttft_ms=610,
                ),
                Said(
                    MessageRole.TOOL,
                    MessageContent.from_tool_result(
                        ToolResultContent(
                            tool_call_id=call_id,
                            content=json.dumps(
                                {"high_c": 19, "low_c": 13, "rain_mm": 2.5, "wind_kmh": 24}
                            ),
                        )
                    ),
                    180,
                ),
                Reply(
                    MessageContent.from_text(
                        "Yes, pack a light jacket: Saturday peaks at 19°C but drops to 13°C "
                        "in the evening, with a little rain and a breeze off the river."
                    ),
                    "gpt-4o",
                    prompt_tokens=1489,
                    completion_tokens=41,
                    cached_tokens=1408,
                    reasoning_tokens=0,
                    latency_ms=1120,
                    ttft_ms=450,
                ),
            ),
        ),
        Conversation(
            "A two-day plan",
            131_000,
            (
                _user("Turn that into a two-day plan with walking times, from Baixa.", 0),
                Reply(
                    MessageContent.from_text(
                        "Day 1: Baixa to the Sé (10 min), up to Santa Luzia (10 min), tram 28 "
                        "to Graça for lunch, then down to Cais do Sodré (25 min) and tram 15 "
                        "to Belém. Day 2: the Gulbenkian in the morning (metro, 20 min), LX "
                        "Factory after lunch, and Senhora do Monte for the sunset."
                    ),
                    "o4-mini",
                    prompt_tokens=1530,
                    completion_tokens=612,
                    cached_tokens=1408,
                    reasoning_tokens=448,
                    latency_ms=6850,
                    ttft_ms=4920,
                ),
                _user("Can you add dinner bookings for both evenings?", 38_700),
                # Last on purpose: LLMApiCall.failed measures its latency up to now.
                RateLimited(
                    "o4-mini",
                    380,
                    "Rate limit reached for o4-mini: tokens per min (TPM) limit 200000. "
                    "Please try again in 1.2s.",
                ),
            ),
        ),
    )


SESSIONS_PER_RUN = len(_script(date(2025, 1, 1)))
"""How many sessions one run of the demo appends."""


# --- writing one run ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Written:
    """One session of the run with its messages and API calls, ready to save."""

    session: ChatSession
    messages: list[LLMMessage]
    calls: list[LLMApiCall]


def _span_ms(script: Sequence[Conversation]) -> int:
    return sum(conv.after_ms + sum(step.duration_ms for step in conv.steps) for conv in script)


def _build_run(run: int, script: Sequence[Conversation], end: datetime) -> list[_Written]:
    """The records of one run, timed so that its last step ends at ``end``."""
    clock = end - timedelta(milliseconds=_span_ms(script))
    written = []
    for conversation in script:
        clock += timedelta(milliseconds=conversation.after_ms)
        session = ChatSession(
            id=uuid7(),
            user_id=DEMO_USER,
            agent_id=DEMO_AGENT,
            tenant_id=DEMO_TENANT,
            title=conversation.title,
            metadata={_RUN_KEY: run},
            create_time=clock,
            update_time=clock,
        )
        messages: list[LLMMessage] = []
        calls: list[LLMApiCall] = []
        for step in conversation.steps:
            previous = messages[-1] if messages else None
            request_time = clock
            clock += timedelta(milliseconds=step.duration_ms)
            if isinstance(step, Said):
                messages.append(_message(session, step.role, step.content, clock, previous))
            elif isinstance(step, Reply):
                if previous is None:
                    raise ValueError(f"{conversation.title!r}: a reply needs a message before it")
                reply = _message(session, MessageRole.ASSISTANT, step.content, clock, previous)
                messages.append(reply)
                calls.append(_success(step, session, previous, reply, request_time, clock))
            else:
                if previous is None:
                    raise ValueError(f"{conversation.title!r}: a call needs a message before it")
                calls.append(
                    LLMApiCall.failed(
                        session.id,
                        DEMO_AGENT,
                        DEMO_USER,
                        DEMO_TENANT,
                        previous.id,
                        step.model,
                        step.error_message,
                        "429",
                        request_time,
                        status=ApiCallStatus.RATE_LIMITED,
                    )
                )
        written.append(_Written(session, messages, calls))
    return written


def _message(
    session: ChatSession,
    role: MessageRole,
    content: MessageContent,
    at: datetime,
    parent: LLMMessage | None,
) -> LLMMessage:
    return LLMMessage(
        id=uuid7(),
        parent_message_id=None if parent is None else parent.id,
        chat_session_id=session.id,
        agent_id=session.agent_id,
        user_id=session.user_id,
        tenant_id=session.tenant_id,
        role=role,
        content=content,
        create_time=at,
        update_time=at,
    )


def _success(
    step: Reply,
    session: ChatSession,
    request: LLMMessage,
    response: LLMMessage,
    request_time: datetime,
    response_time: datetime,
) -> LLMApiCall:
    return (
        LLMApiCall.success(
            session.id,
            session.agent_id,
            session.user_id,
            session.tenant_id,
            request.id,
            response.id,
            step.model,
            step.prompt_tokens,
            step.completion_tokens,
            request_time,
            response_time,
        )
        .with_token_details(
            TokenDetails(cached_tokens=step.cached_tokens),
            TokenDetails(reasoning_tokens=step.reasoning_tokens),
        )
        .with_time_to_first_token(step.ttft_ms)
        .with_api_response_id(f"chatcmpl-{uuid.uuid4().hex[:29]}")
        .with_auto_price(PRICES, PROVIDER)
    )


async def _previous_runs(store: PersistenceStore) -> set[int]:
    """The run numbers the demo's sessions in ``store`` carry."""
    runs = set()
    for session in await store.get_user_sessions(DEMO_USER):
        value = session.metadata.get(_RUN_KEY)
        if isinstance(value, int):
            runs.add(value)
    return runs


async def _save(store: PersistenceStore, written: Iterable[_Written]) -> None:
    for item in written:
        await store.create_session(item.session)
        await store.save_messages(item.messages)  # one transaction per session
        await store.save_api_calls(item.calls)


# --- printing ------------------------------------------------------------------------------


def _wrap(label: str, text: str) -> list[str]:
    """``text`` wrapped to the page, ``label`` in the role column of its first line."""
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=f"  {label:<{_LABEL}}",
        subsequent_indent=" " * (_LABEL + 2),
        break_on_hyphens=False,
    ) or [f"  {label}"]


def _describe(content: MessageContent) -> str:
    if content.tool_calls:
        return "; ".join(
            f"calls {call.name}({_arguments(call.arguments)})" for call in content.tool_calls
        )
    if content.tool_result is not None:
        error = " (error)" if content.tool_result.is_error else ""
        return f"result{error}: {content.tool_result.content}"
    if content.text is not None:
        return content.text
    return json.dumps(content.extra, default=str)


def _arguments(arguments: object) -> str:
    if isinstance(arguments, dict):
        return ", ".join(f"{key}={json.dumps(value)}" for key, value in arguments.items())
    return json.dumps(arguments, default=str)


def _describe_call(call: LLMApiCall) -> list[str]:
    """The call behind a message, in parts that a line break may separate."""
    if call.status is not ApiCallStatus.SUCCESS:
        return [
            f"-- {call.model_name}: {call.status.value}",
            f"error {call.error_code}",
            f"{_ms(call.latency_ms)}; no reply",
        ]
    subsets = []
    if call.prompt_tokens_details is not None and call.prompt_tokens_details.cached_tokens:
        subsets.append(f"{call.prompt_tokens_details.cached_tokens:,} cached")
    if call.completion_tokens_details is not None:
        reasoning = call.completion_tokens_details.reasoning_tokens
        if reasoning:
            subsets.append(f"{reasoning:,} reasoning")
    detail = f" ({', '.join(subsets)})" if subsets else ""
    return [
        f"-- {call.model_name}",
        f"{call.prompt_tokens:,} + {call.completion_tokens:,} tokens{detail}",
        _ms(call.latency_ms),
        _cost(call.total_price),
    ]


def _pack(parts: Sequence[str]) -> list[str]:
    """``parts`` joined by commas into indented lines that fit the page."""
    indent = " " * (_LABEL + 2)
    lines = [indent + parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 2 + len(part) + 1 <= WIDTH:
            lines[-1] += f", {part}"
        else:
            lines[-1] += ","
            lines.append(indent + part)
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{round(value):,} ms"


def _cost(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:,.6f}"


async def _transcript(store: PersistenceStore, sessions: Sequence[ChatSession]) -> list[str]:
    """The sessions as read back from ``store``: each message, and the call behind a reply."""
    lines = []
    for number, session in enumerate(sessions, start=1):
        stored = await store.get_session(session.id)
        if stored is None:
            raise NotFoundError(f"session {session.id} was saved but cannot be read back")
        heading = f"== Session {number} of {len(sessions)}: {stored.title or '(untitled)'} "
        lines += ["", heading.ljust(WIDTH, "=")]
        started = stored.create_time.strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"  id {stored.id}, started {started}")
        calls = await store.query_api_calls(QueryFilter().session(session.id))
        ok = ApiCallStatus.SUCCESS
        succeeded = {call.response_message_id: call for call in calls if call.status is ok}
        failed = {call.request_message_id: call for call in calls if call.status is not ok}
        for message in await store.get_session_messages(session.id):
            lines += _wrap(message.role.value, _describe(message.content))
            for call in (succeeded.get(message.id), failed.get(message.id)):
                if call is not None:
                    lines += _pack(_describe_call(call))
    return lines


_CALL_COLUMNS = ("model", "calls", "success", "failed", "cost (USD)", "avg latency", "p95 latency")
_TOKEN_COLUMNS = ("model", "prompt", "completion", "cached", "reasoning", "total")


def _call_cells(name: str, stats: UsageStatistics) -> list[str]:
    cost = "-" if stats.total_cost is None else f"{stats.total_cost:,.6f}"
    return [
        name,
        f"{stats.total_calls:,}",
        f"{stats.success_count:,}",
        f"{stats.failed_count:,}",
        cost,
        _ms(stats.avg_latency_ms),
        _ms(stats.p95_latency_ms),
    ]


def _token_cells(name: str, stats: UsageStatistics) -> list[str]:
    return [
        name,
        f"{stats.total_prompt_tokens:,}",
        f"{stats.total_completion_tokens:,}",
        f"{stats.total_cached_tokens:,}",
        f"{stats.total_reasoning_tokens:,}",
        f"{stats.total_tokens:,}",
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns sized to their cells, numbers right-aligned, a rule above the last row."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [line(header), rule, *(line(row) for row in rows[:-1]), rule, line(rows[-1])]


async def _usage(store: PersistenceStore, runs: int) -> list[str]:
    """Usage by model of every demo call in ``store``, then the totals."""
    query = QueryFilter().tenant(DEMO_TENANT)
    breakdown = await store.get_usage_breakdown(query, ["model"])
    total = await store.get_statistics(query)
    named = [(str(bucket.keys["model"]), bucket.stats) for bucket in breakdown]
    named.append(("total", total))
    plural = "run" if runs == 1 else "runs"
    heading = f"== Usage by model: the whole database, {runs} demo {plural} so far "
    return [
        "",
        heading.ljust(WIDTH, "="),
        f"  tenant {DEMO_TENANT}; every run appends {SESSIONS_PER_RUN} new sessions",
        "",
        *_table(_CALL_COLUMNS, [_call_cells(name, stats) for name, stats in named]),
        "",
        *_table(_TOKEN_COLUMNS, [_token_cells(name, stats) for name, stats in named]),
        "",
        "Prompt tokens include cached ones; completion tokens include reasoning ones.",
    ]


# --- the program ---------------------------------------------------------------------------


async def run_demo(url: str) -> list[str]:
    """Write one run into the database at ``url``; return the lines to print."""
    async with await connect(url) as store:
        run = max(await _previous_runs(store), default=0) + 1
        end = utc_now()
        written = _build_run(run, _script(end.astimezone(UTC).date()), end)
        await _save(store, written)
        messages = sum(len(item.messages) for item in written)
        calls = sum(len(item.calls) for item in written)
        lines = [
            f"chatledger demo, run {run}: {len(written)} new sessions, {messages} messages "
            f"and {calls} API calls saved to",
            f"  {url}",
            "Offline: no model was called. Each run appends; the usage covers every run.",
        ]
        lines += await _transcript(store, [item.session for item in written])
        lines += await _usage(store, len(await _previous_runs(store)))
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m chatledger.demo",
        description="Save an offline agent conversation, then print it and its usage.",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get("CHATLEDGER_DATABASE_URL", DEFAULT_DB),
        help=f"database URL (default: $CHATLEDGER_DATABASE_URL, else {DEFAULT_DB})",
    )
    args = parser.parse_args(argv)
    try:
        lines = asyncio.run(run_demo(args.db))
    except (PersistenceError, ValueError) as exc:
        print(f"chatledger demo: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
