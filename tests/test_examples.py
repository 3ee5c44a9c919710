"""Every program in examples/ runs on its own, exits 0 and prints what it is about."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_every_example_is_tested() -> None:
    """A new example gets a row above, or (if it needs the fake OpenAI server) a test of its own."""
    tests = "\n".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    untested = [p.name for p in EXAMPLES.glob("*.py") if f'"{p.name}"' not in tests]
    assert untested == []
