"""The demo program: an agent streaming three sessions, recorded, resumed run after run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

import chatledger.cli.demo
from chatledger import ApiCallStatus, MessageRole, QueryFilter, UsageStatistics, sync
from chatledger.cli import main as cli_main
from chatledger.cli.demo import (
    DEMO_AGENT,
    DEMO_PRICES,
    DEMO_TENANT,
    DEMO_USER,
    MODELS,
    TOPICS,
    DemoRateLimitError,
    get_weather,
    pricing_registry,
)
from chatledger.usage import error_code, status_for_error


def main(argv: list[str]) -> int:
    """``chatledger demo`` with ``argv`` (its options), run in this process."""
    return cli_main(["demo", *argv])


def _statistics(url: str) -> UsageStatistics:
    with sync.connect(url) as store:
        stats: UsageStatistics = store.get_statistics(QueryFilter())
        return stats


def _messages_by_session(url: str) -> dict[str, int]:
    with sync.connect(url) as store:
        return {
            str(session.id): store.count_session_messages(session.id)
            for session in store.get_user_sessions(DEMO_USER)
        }


def _printed_row(output: str, name: str) -> list[str]:
    """The cells of the usage table's row for ``name`` (a model, or ``total``)."""
    rows = [line.split() for line in output.splitlines() if line.startswith(f"{name} ")]
    assert len(rows) == 1, output
    return rows[0]


def _printed_cost(row: list[str]) -> float:
    """The cost a row of the usage table shows, in USD (``$1,234.57``)."""
    (cost,) = [cell for cell in row if cell.startswith("$")]
    return float(cost.removeprefix("$").replace(",", ""))


def test_two_runs_stream_record_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run twice: the transcript, the table by model with costs, a 429 stored, sessions resumed."""
    url = f"sqlite:///{tmp_path}/demo.db"

    assert main(["--db", url]) == 0
    first = capsys.readouterr().out
    sessions_after_one = _messages_by_session(url)
    stats_after_one = _statistics(url)

    assert main(["--db", url]) == 0
    second = capsys.readouterr().out
    sessions_after_two = _messages_by_session(url)
    stats_after_two = _statistics(url)

    # The transcript, streamed and labelled.
    assert "chatledger demo, run 1:" in first
    assert "chatledger demo, run 2:" in second
    for number, topic in enumerate(TOPICS, start=1):
        assert f"Session {number} of {len(TOPICS)}: {topic.title}" in first
    assert "  user       I have a free weekend in Lisbon. What should I not miss?" in first
    assert "  assistant  Start early in Alfama" in first
    assert "rate_limited, error rate_limit_exceeded" in first
    assert "  tool call  get_weather(city='Lisbon', day='Saturday')" in first
    assert '  tool       {"city": "Lisbon", "day": "Saturday", "high_c": 19' in first
    assert first.count("new session ") == len(TOPICS)
    assert "new session " not in second
    assert second.count("resumed ") == len(TOPICS)
    assert "  user       Where can I hear fado?" in second

    # The usage table: both models, a cost column, totals that match the database.
    for out, stats in ((first, stats_after_one), (second, stats_after_two)):
        assert "Usage by model" in out
        header = _printed_row(out, "model")
        assert header[:2] == ["model", "calls"]
        assert "cost" in header
        assert "in USD" in out
        for model in MODELS:
            assert _printed_cost(_printed_row(out, model)) > 0
        total = _printed_row(out, "total")
        assert int(total[1]) == stats.total_calls
        assert stats.total_cost is not None
        assert _printed_cost(total) == pytest.approx(float(stats.total_cost), rel=1e-3)
        assert max(len(line) for line in out.splitlines() if url not in line) <= 80

    # Every run meets one 429, stored as rate_limited; the second run resumes the sessions.
    assert stats_after_one.status_counts[ApiCallStatus.RATE_LIMITED] == 1
    assert stats_after_two.status_counts[ApiCallStatus.RATE_LIMITED] == 2
    assert stats_after_two.total_calls > stats_after_one.total_calls
    assert stats_after_one.total_cost is not None
    assert stats_after_two.total_cost is not None
    assert stats_after_two.total_cost > stats_after_one.total_cost
    assert len(sessions_after_one) == len(TOPICS)
    assert sessions_after_two.keys() == sessions_after_one.keys()
    for session_id, count in sessions_after_one.items():
        assert sessions_after_two[session_id] > count


def test_the_rate_limited_call_is_in_the_ledger(tmp_path: Path) -> None:
    """The refused turn: its user message is stored, its call is rate_limited with its code."""
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["--db", url]) == 0

    with sync.connect(url) as store:
        (call,) = store.query_api_calls(QueryFilter().with_status(ApiCallStatus.RATE_LIMITED))
        assert call.tenant_id == DEMO_TENANT
        assert call.agent_id == DEMO_AGENT
        assert call.error_code == "rate_limit_exceeded"
        request = store.get_message(call.request_message_id)
        assert request is not None
        assert request.role is MessageRole.USER


def test_saved_messages_chain_and_calls_link_them(tmp_path: Path) -> None:
    """Across two runs every message's parent is the one before it; every call links its own."""
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["--db", url]) == 0
    assert main(["--db", url]) == 0

    with sync.connect(url) as store:
        sessions = store.get_user_sessions(DEMO_USER)
        assert sorted(session.title or "" for session in sessions) == sorted(
            topic.title for topic in TOPICS
        )
        for session in sessions:
            assert session.tenant_id == DEMO_TENANT
            messages = store.get_session_messages(session.id)
            assert messages[0].parent_message_id is None
            for before, message in pairwise(messages):
                assert message.parent_message_id == before.id
            by_id = {message.id: message for message in messages}
            for call in store.query_api_calls(QueryFilter().session(session.id)):
                # A call answers the user, or (after a tool ran) the tool's result.
                assert by_id[call.request_message_id].role in (MessageRole.USER, MessageRole.TOOL)
                if call.status is ApiCallStatus.SUCCESS:
                    assert call.response_message_id is not None
                    assert by_id[call.response_message_id].role is MessageRole.ASSISTANT
                    assert call.model_name in MODELS
                    assert call.time_to_first_token_ms is not None  # streamed
                    assert call.total_price is not None


def test_the_tool_turn_records_its_call_its_result_and_two_api_calls(tmp_path: Path) -> None:
    """The jacket question: user, tool call, tool result, answer; a call per round trip."""
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["--db", url]) == 0

    with sync.connect(url) as store:
        (packing,) = [s for s in store.get_user_sessions(DEMO_USER) if s.title == TOPICS[1].title]
        messages = store.get_session_messages(packing.id)
        roles = [message.role for message in messages]
        assert roles[:4] == [
            MessageRole.USER, MessageRole.ASSISTANT, MessageRole.TOOL, MessageRole.ASSISTANT,
        ]  # fmt: skip
        question, asked, result, answer = messages[:4]
        assert question.content.text == "Will I need a jacket in Lisbon this Saturday?"
        assert asked.content.tool_calls is not None
        (call,) = asked.content.tool_calls
        assert (call.name, call.arguments) == ("get_weather", {"city": "Lisbon", "day": "Saturday"})
        tool_result = result.content.tool_result
        assert tool_result is not None
        assert tool_result.tool_call_id == call.id
        assert tool_result.is_error is False
        assert json.loads(tool_result.content) == get_weather("Lisbon", "Saturday")
        assert answer.content.text is not None
        assert answer.content.text.startswith("Yes, a light one")

        calls = store.query_api_calls(QueryFilter().session(packing.id))
        links = {(c.request_message_id, c.response_message_id) for c in calls}
        assert (question.id, asked.id) in links
        assert (result.id, answer.id) in links
        assert len(calls) == 3  # two round trips for the tool turn, one refused with 429


def test_the_weather_tool_refuses_a_forecast_it_does_not_have() -> None:
    """The demo's tool is a real function: unknown places raise (the agent tells the model)."""
    assert get_weather("lisbon", "SUNDAY")["high_c"] == 21
    with pytest.raises(ValueError, match="no forecast for Atlantis"):
        get_weather("Atlantis")


def test_make_demo_writes_chatledger_db_in_the_working_directory(tmp_path: Path) -> None:
    """``python -m chatledger demo`` with no options: ./chatledger.db, exit 0, offline."""
    env = {k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"}
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, "-m", "chatledger", "demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"chatledger demo, run {run}:" in done.stdout
    assert (tmp_path / "chatledger.db").is_file()


def test_the_offline_rate_limit_error_maps_to_rate_limited() -> None:
    """Without the openai package the demo's own 429 error is still recorded as rate_limited."""
    error = DemoRateLimitError("slow down")
    assert status_for_error(error) is ApiCallStatus.RATE_LIMITED
    assert error_code(error) == "rate_limit_exceeded"


def test_without_genai_prices_the_demo_uses_labelled_demo_prices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When genai-prices is missing, the static table is used and says it is not live."""

    def missing() -> None:
        raise ImportError("No module named 'genai_prices'")

    monkeypatch.setattr(chatledger.cli.demo, "default_pricing_registry", missing)
    registry, label = pricing_registry()
    assert registry is DEMO_PRICES
    assert "demo prices" in label


def test_a_database_that_cannot_be_opened_exits_with_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing folder is reported on stderr, with exit status 1 and no traceback."""
    assert main(["--db", f"sqlite:///{tmp_path}/missing/demo.db"]) == 1
    error = capsys.readouterr().err
    assert "does not exist" in error
    assert "Traceback" not in error
