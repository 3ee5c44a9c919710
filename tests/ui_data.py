"""The data the dashboard's tests look at: chatledger's own demo, and a week of history.

``chatledger demo`` records three sessions (one with a tool call and its
result, one with a 429); :func:`add_history` adds what the demo alone does not
show: calls spread over the last seven days across models, agents and
outcomes (so charts have a shape and the calls table has pages), and a
session whose messages try to inject ``<script>`` and which branches.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from chatledger import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    TokenDetails,
    uuid7,
)
from chatledger.cli.demo import DEMO_TENANT, run_demo
from chatledger.stores.base import PersistenceStore

SCRIPT = "<script>alert(1)</script>"
"""A message that must show as text, never run."""
SCRIPT_TITLE = 'Escaping check <img src=x onerror="alert(2)">'
HISTORY_AGENTS = (
    uuid.UUID("01970000-0000-7000-8000-0000000a9e01"),
    uuid.UUID("01970000-0000-7000-8000-0000000a9e02"),
)
HISTORY_USER = uuid.UUID("01970000-0000-7000-8000-0000000a9e10")
HISTORY_MODELS = ("gpt-4o-mini", "gpt-4o", "o3-mini")
HISTORY_TURNS = 40  # per history session
HISTORY_SESSIONS = 4


@dataclass(frozen=True)
class History:
    """What :func:`add_history` stored, for tests to look for."""

    script_session: uuid.UUID
    branch_message: uuid.UUID
    history_sessions: tuple[uuid.UUID, ...]
    calls: int  # how many calls it added


async def run_quiet_demo(url: str) -> None:
    """``chatledger demo`` into ``url``, its transcript swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        await run_demo(url)


def _turn_call(
    session: ChatSession,
    request: LLMMessage,
    reply: LLMMessage | None,
    index: int,
    start: datetime,
) -> LLMApiCall:
    """The call of one history turn: a model, an outcome, tokens, a price, timings."""
    model = HISTORY_MODELS[index % len(HISTORY_MODELS)]
    if reply is None:
        rate_limited = index % 2 == 0
        call = LLMApiCall.failed(
            session.id,
            session.agent_id,
            session.user_id,
            session.tenant_id,
            request.id,
            model,
            "Rate limit reached" if rate_limited else "The server had an error",
            "rate_limit_exceeded" if rate_limited else "server_error",
            start,
            ApiCallStatus.RATE_LIMITED if rate_limited else ApiCallStatus.FAILED,
        )
        return LLMApiCall.model_validate(
            {**dict(call), "latency_ms": 120 + index, "update_time": start + timedelta(seconds=1)}
        )
    prompt = 800 + 37 * index
    completion = 40 + 7 * (index % 13)
    latency = 300 + 45 * (index % 17) + (1500 if index % 11 == 0 else 0)
    call = LLMApiCall.success(
        session.id,
        session.agent_id,
        session.user_id,
        session.tenant_id,
        request.id,
        reply.id,
        model,
        prompt,
        completion,
        start,
        start + timedelta(milliseconds=latency),
    )
    reasoning = completion // 2 if model == "o3-mini" else None
    call = call.with_token_details(
        TokenDetails(cached_tokens=prompt // 2 if index % 3 else 0),
        None if reasoning is None else TokenDetails(reasoning_tokens=reasoning),
    )
    price = Decimal(prompt) * Decimal("0.0000025") + Decimal(completion) * Decimal("0.00001")
    return call.with_price(price).with_time_to_first_token(90 + 13 * (index % 9))


async def add_history(store: PersistenceStore, now: datetime) -> History:
    """Store a week of calls in four sessions, and the ``<script>`` session with a branch."""
    sessions: list[uuid.UUID] = []
    calls: list[LLMApiCall] = []
    span = timedelta(days=7) - timedelta(hours=2)
    total_turns = HISTORY_SESSIONS * HISTORY_TURNS
    for number in range(HISTORY_SESSIONS):
        first = now - timedelta(days=7) + timedelta(hours=1) + span * number / total_turns
        session = ChatSession(
            id=uuid7(),
            user_id=HISTORY_USER,
            agent_id=HISTORY_AGENTS[number % 2],
            tenant_id=DEMO_TENANT,
            title=f"Support ticket {number + 1}: invoices and refunds",
            create_time=first,
            update_time=first,
        )
        await store.create_session(session)
        sessions.append(session.id)
        messages: list[LLMMessage] = []
        parent: uuid.UUID | None = None
        for turn in range(HISTORY_TURNS):
            index = number + HISTORY_SESSIONS * turn  # interleaved: every session spans the week
            start = now - timedelta(days=7) + timedelta(hours=1) + span * index / total_turns
            request = _message(session, MessageRole.USER, f"Question {turn + 1}", start, parent)
            messages.append(request)
            failed = index % 13 == 5 or index % 29 == 7
            reply = None
            if not failed:
                reply = _message(
                    session,
                    MessageRole.ASSISTANT,
                    f"Answer {turn + 1}: the refund for invoice {1000 + index} is on its way.",
                    start + timedelta(seconds=2),
                    request.id,
                )
                messages.append(reply)
            calls.append(_turn_call(session, request, reply, index, start))
            parent = (reply or request).id
        await store.save_messages(messages)

    # The escaping session: a title and a message that try to inject HTML, and a branch.
    start = now - timedelta(hours=3)
    session = ChatSession(
        id=uuid7(),
        user_id=HISTORY_USER,
        agent_id=HISTORY_AGENTS[0],
        tenant_id=DEMO_TENANT,
        title=SCRIPT_TITLE,
        create_time=start,
        update_time=start,
    )
    await store.create_session(session)
    question = _message(session, MessageRole.USER, SCRIPT, start, None)
    first = _message(
        session,
        MessageRole.ASSISTANT,
        f"You wrote {SCRIPT}",
        start + timedelta(seconds=1),
        question.id,
    )
    follow = _message(
        session, MessageRole.USER, "Try again", start + timedelta(seconds=2), first.id
    )
    # A second answer to the first question: a branch from the conversation's first message.
    branch = _message(
        session,
        MessageRole.ASSISTANT,
        "A second answer, on a branch",
        start + timedelta(seconds=3),
        question.id,
    )
    await store.save_messages([question, first, follow, branch])
    calls.append(_turn_call(session, question, first, 1, start))
    calls.append(_turn_call(session, question, branch, 2, start + timedelta(seconds=2)))
    await store.save_api_calls(calls)
    return History(session.id, branch.id, tuple(sessions), len(calls))


def _message(
    session: ChatSession,
    role: MessageRole,
    text: str,
    when: datetime,
    parent: uuid.UUID | None,
) -> LLMMessage:
    return LLMMessage(
        id=uuid7(),
        parent_message_id=parent,
        chat_session_id=session.id,
        agent_id=session.agent_id,
        user_id=session.user_id,
        tenant_id=session.tenant_id,
        role=role,
        content=MessageContent(text=text),
        create_time=when,
        update_time=when,
    )
