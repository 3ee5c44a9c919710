"""Every program in examples/ runs on its own, exits 0 and prints what it is about."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatledger.testing.fake_openai import (
    FakeOpenAIServer,
    Script,
    error_reply,
    json_reply,
    responses_reply,
    responses_usage,
    stream_reply,
    tool_call,
    usage,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("agent_with_plugin.py", "  assistant About 2.1 million."),
        ("manual_context.py", "session usage: 1 call, 49 tokens"),
        ("reading_usage.py", "by status: {'success': 6, 'rate_limited': 1}"),
        ("recording_any_framework.py", "7 messages stored once each, from 3 calls"),
    ],
)
def test_example_runs(name: str, expected: str, tmp_path: Path) -> None:
    """Run from an empty folder (they write only to a temporary directory)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout.splitlines(), done.stdout
    assert list(tmp_path.iterdir()) == []


ANSWERED = "gpt-4o-mini-2024-07-18"
_CHAT = (
    json_reply("Paris.", model=ANSWERED, usage=usage(20, 2)),
    stream_reply(["It is ", "18°C."], model=ANSWERED, usage=usage(30, 4)),
    error_reply(429, "Slow down", error_type="requests", code="rate_limit_exceeded"),
)
_TOOL_RUN = (
    responses_reply(None, model=ANSWERED, response_id="resp_1", usage=responses_usage(80, 17),
                    tool_calls=[tool_call("get_weather", '{"city": "Paris"}')]),
    responses_reply("Sunny in Paris.", model=ANSWERED, response_id="resp_2",
                    usage=responses_usage(110, 6, cached=64)),
)  # fmt: skip
_ONE_CALL = (json_reply("Paris.", model=ANSWERED, response_id="chatcmpl-ex",
                        usage=usage(21, 3, cached=0)),)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "script", "expected"),
    [
        ("openai_sdk.py", _CHAT,
         ["3 calls recorded: success, success, rate_limited", "6 messages stored once each"]),
        ("litellm_logger.py", _CHAT,
         ["3 calls recorded: success, success, rate_limited", "6 messages stored once each"]),
        ("langchain_callback.py", _CHAT,
         ["3 calls recorded: success, success, rate_limited", "6 messages stored once each"]),
        # The fake server does not echo the instructions, as OpenAI does: no system message.
        ("openai_agents_tracing.py", _TOOL_RUN,
         ["2 calls by agent 'Weather bot'", "4 messages: user, assistant, tool, assistant"]),
        ("otel_exporter.py", _ONE_CALL,
         ["1 call: gpt-4o-mini-2024-07-18, 21 in, 3 out, response chatcmpl-ex, $0.000005",
          "session 'support-7': user, assistant"]),
    ],
)  # fmt: skip
async def test_an_integration_example_runs_against_the_fake_server(
    name: str, script: tuple[Script, ...], expected: list[str], tmp_path: Path
) -> None:
    """As a user runs it: the SDK's environment variables, the ledger a sqlite file here."""
    async with FakeOpenAIServer(list(script)) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        env.pop("CHATLEDGER_DATABASE_URL", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / name), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    for line in expected:
        assert line in lines, lines


def test_every_example_is_tested() -> None:
    """A new example gets a row in one of the two tables above."""
    text = Path(__file__).read_text()
    assert [p.name for p in EXAMPLES.glob("*.py") if f'"{p.name}"' not in text] == []
