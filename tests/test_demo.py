"""The demo program: what it saves, what it prints, and that runs accumulate."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from chatledger import ApiCallStatus, MessageRole, QueryFilter, UsageStatistics, sync
from chatledger.demo import DEMO_TENANT, DEMO_USER, SESSIONS_PER_RUN, main


def _statistics(url: str) -> UsageStatistics:
    with sync.connect(url) as store:
        stats: UsageStatistics = store.get_statistics(QueryFilter().tenant(DEMO_TENANT))
        return stats


def _printed_total_calls(output: str) -> int:
    """The calls column of the first ``total`` row the usage table printed."""
    totals = [line.split() for line in output.splitlines() if line.startswith("total ")]
    assert totals, output
    return int(totals[0][1].replace(",", ""))


def test_each_run_appends_and_the_usage_covers_every_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs save two sets of sessions; the printed totals match the database's, doubled."""
    url = f"sqlite:///{tmp_path}/demo.db"

    assert main(["--db", url]) == 0
    first = capsys.readouterr().out
    after_one = _statistics(url)

    assert main(["--db", url]) == 0
    second = capsys.readouterr().out
    after_two = _statistics(url)

    assert after_one.total_calls > 0
    assert after_one.status_counts[ApiCallStatus.RATE_LIMITED] == 1
    assert after_one.total_cached_tokens > 0
    assert after_one.total_reasoning_tokens > 0
    assert after_one.total_cost is not None
    assert after_one.total_cost > 0
    assert after_two.total_calls == 2 * after_one.total_calls
    assert after_two.total_tokens == 2 * after_one.total_tokens
    assert _printed_total_calls(first) == after_one.total_calls
    assert _printed_total_calls(second) == after_two.total_calls
    assert "chatledger demo, run 1:" in first
    assert "chatledger demo, run 2:" in second
    assert "2 demo runs so far" in second


def test_prints_the_transcript_and_the_usage_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The output shows each session's messages, the tool call, the failed call and the table."""
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["--db", url]) == 0
    out = capsys.readouterr().out

    for number in range(1, SESSIONS_PER_RUN + 1):
        assert f"Session {number} of {SESSIONS_PER_RUN}" in out
    assert "  user       I have a free weekend in Lisbon." in out
    assert '  assistant  calls get_weather(city="Lisbon"' in out
    assert "  tool       result: {" in out
    assert "rate_limited, error 429" in out
    for header in ("calls", "success", "failed", "cost (USD)", "p95 latency", "reasoning"):
        assert header in out
    for model in ("gpt-4o-mini", "gpt-4o", "o4-mini"):
        assert any(line.startswith(f"{model} ") for line in out.splitlines()), model
    assert max(len(line) for line in out.splitlines() if url not in line) <= 80


def test_saved_messages_chain_to_the_one_before(tmp_path: Path) -> None:
    """Every message's parent is the message saved before it in its session; calls link both."""
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["--db", url]) == 0

    with sync.connect(url) as store:
        sessions = store.get_user_sessions(DEMO_USER)
        assert len(sessions) == SESSIONS_PER_RUN
        for session in sessions:
            assert session.title
            assert session.tenant_id == DEMO_TENANT
            messages = store.get_session_messages(session.id)
            assert messages[0].parent_message_id is None
            for before, message in pairwise(messages):
                assert message.parent_message_id == before.id
            ids = {message.id for message in messages}
            for call in store.query_api_calls(QueryFilter().session(session.id)):
                assert call.request_message_id in ids
                if call.status is ApiCallStatus.SUCCESS:
                    assert call.response_message_id in ids
                    response = next(m for m in messages if m.id == call.response_message_id)
                    assert response.role is MessageRole.ASSISTANT
                    assert call.api_response_id
                    assert call.time_to_first_token_ms is not None
                    assert call.total_price is not None


def test_a_database_that_cannot_be_opened_exits_with_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing folder is reported on stderr, with exit status 1 and no traceback."""
    assert main(["--db", f"sqlite:///{tmp_path}/missing/demo.db"]) == 1
    assert "does not exist" in capsys.readouterr().err
