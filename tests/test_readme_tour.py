"""The README's command-line tour is what the commands print.

The tour runs on the demo's database. Each ``$ chatledger …`` line of the
README's tour is run after ``chatledger demo`` in a new folder, and its output
is compared with the README's line by line, once ids, clock times and
durations (which differ on every run) are masked and runs of spaces (column
widths follow those values) are collapsed. Tokens, costs, counts, titles and
the words around them must match exactly.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
CHATLEDGER = Path(sys.executable).with_name("chatledger")
BEGIN, END = "<!-- cli tour: begin -->", "<!-- cli tour: end -->"

_MASKS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?"), "<time>"),
    (re.compile(r"\b\d{2}-\d{2} \d{2}:\d{2}:\d{2}"), "<time>"),
    (re.compile(r"\b\d[\d,]*(\.\d+)? (ms|s)\b"), "<duration>"),
    (re.compile(r"─+"), "─"),
    (re.compile(r" +"), " "),
)


def normalise(text: str) -> list[str]:
    """The lines of ``text`` with what changes from run to run masked."""
    lines = []
    for line in text.strip().splitlines():
        for pattern, mask in _MASKS:
            line = pattern.sub(mask, line)
        lines.append(line.strip())
    return lines


def tour() -> list[tuple[str, str]]:
    """Each command of the README's tour with the output the README shows for it."""
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text, "the README has no command-line tour"
    assert END in text, "the README's command-line tour has no end marker"
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    steps: list[tuple[str, str]] = []
    for block in re.findall(r"```console\n(.*?)```", section, re.DOTALL):
        for chunk in re.split(r"^(?=\$ )", block, flags=re.MULTILINE):
            if chunk.strip():
                command, _, output = chunk.partition("\n")
                steps.append((command.removeprefix("$ "), output))
    return steps


def test_the_readme_tour_is_what_the_commands_print(tmp_path: Path) -> None:
    """Every command of the tour, run on a new demo database, prints what the README shows."""
    steps = tour()
    assert len(steps) >= 6
    env = {k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"}
    env.update(COLUMNS="80", NO_COLOR="1")
    demo = subprocess.run(
        [str(CHATLEDGER), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    for command, shown in steps:
        words = shlex.split(command)
        assert words[0] == "chatledger", command
        done = subprocess.run(
            [str(CHATLEDGER), *words[1:]], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stderr)
        assert normalise(done.stdout + done.stderr) == normalise(shown), command
