"""The benchmark report: a run of some parts keeps the rest of docs/benchmarks.md's block."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is the repository's, not an installed package

from benchmarks.report import Environment, Part, render_markdown  # noqa: E402

HERE = Environment(python="3.11.7", machine="this machine", packages="here")
THERE = Environment(python="3.11.7", machine="the full run's machine", packages="there")


def _part(key: str) -> Part:
    return Part(key=key, title=key.title(), raw="raw", peers=(), command=f"run {key}",
                sizes="small", skipped="not measured", source="abc1234")  # fmt: skip


def test_a_run_of_one_part_keeps_the_others_and_the_header_that_names_their_machine() -> None:
    """The header still names where the kept parts ran; the new part names its own machine."""
    full = render_markdown(THERE, [_part("sqlite"), _part("import")])
    assert "- **machine**: the full run's machine" in full
    again = render_markdown(HERE, [_part("import")], previous=full)
    header, _, parts = again.partition("<!-- part sqlite: begin -->")
    assert "- **machine**: the full run's machine" in header
    assert "this machine" not in header
    kept, _, fresh = parts.partition("<!-- part import: begin -->")
    assert "this machine" not in kept
    assert "- **machine**: this machine" in fresh
    assert "- **packages**: here" in fresh


def test_a_run_of_every_part_writes_its_own_header() -> None:
    """Nothing kept: the header is this run's, and no part repeats it."""
    from benchmarks.report import PARTS

    full = render_markdown(THERE, [_part(key) for key in PARTS])
    again = render_markdown(HERE, [_part(key) for key in PARTS], previous=full)
    assert again.count("- **machine**: this machine") == 1
    assert "the full run's machine" not in again
