"""The command line's parts that need no database: money, tables, charts, ids, completion."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console

from chatledger import ApiCallStatus, UsageBucket, UsageStatistics
from chatledger.cli.arguments import GROUP_KEYS, STATUSES, IdPrefix, build_parser, parse_id
from chatledger.cli.completion import completion_script
from chatledger.cli.render import Column, FittedTable, bar_chart, money
from chatledger.stores.base import GROUP_BY_KEYS


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (None, "-"),
        ("0", "$0.00"),
        ("0.0000004", "<$0.000001"),
        ("0.00000099", "<$0.000001"),
        ("0.000001", "$0.000001"),
        ("0.0000015", "$0.000002"),
        ("0.000123", "$0.000123"),
        ("0.002645", "$0.002645"),
        ("0.0015", "$0.0015"),
        ("0.012345", "$0.01235"),
        ("0.5", "$0.50"),
        ("0.99999", "$1.00"),
        ("1", "$1.00"),
        ("1234.567", "$1,234.57"),
        ("1234567.891", "$1,234,567.89"),
        ("-2.5", "-$2.50"),
    ],
)
def test_money_is_shown_by_its_magnitude(amount: str | None, shown: str) -> None:
    """Cents from a dollar up, four significant digits below, a floor at a millionth."""
    assert money(None if amount is None else Decimal(amount)) == shown


def _drawn(renderable: object, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        console.print(renderable, crop=False)  # as the commands print
    return [line.rstrip() for line in captured.get().splitlines()]


def _table() -> FittedTable:
    table = FittedTable(
        Column("id"),
        Column("model"),
        Column("when", drop=2),
        Column("tokens", "number", drop=1),
        Column("note", "text", drop=3),
    )
    table.add_row(str(uuid.UUID(int=1)), "gpt-4o-mini-2024-07-18", "11-30 02:52", "1,234", "a note")
    return table


@pytest.mark.parametrize(
    ("width", "headers"),
    [
        (89, ["id", "model", "when", "tokens", "note"]),
        (88, ["id", "model", "when", "note"]),  # tokens went first
        (80, ["id", "model", "note"]),  # then when
        (67, ["id", "model"]),  # then note; id and model always stay
        (60, ["id", "model"]),
    ],
)
def test_a_fitted_table_drops_columns_in_their_order(width: int, headers: list[str]) -> None:
    """Too wide, a table leaves columns out in their stated order; ids and names stay whole."""
    lines = _drawn(_table(), width)
    assert lines[0].split() == headers
    assert str(uuid.UUID(int=1)) in lines[2]
    assert "gpt-4o-mini-2024-07-18" in lines[2]
    assert all(len(line) <= width for line in lines)


def test_a_table_that_cannot_fit_is_drawn_wider_rather_than_cut() -> None:
    """When even the columns that stay do not fit, they are drawn whole, wider than asked."""
    lines = _drawn(_table(), 40)
    assert lines[0].split() == ["id", "model"]
    assert str(uuid.UUID(int=1)) in lines[2]
    assert "gpt-4o-mini-2024-07-18" in lines[2]


def _day(start: datetime, calls: int, cost: str | None) -> UsageBucket:
    stats = UsageStatistics(
        total_calls=calls,
        success_count=calls,
        total_cost=None if cost is None else Decimal(cost),
        status_counts={ApiCallStatus.SUCCESS: calls},
    )
    return UsageBucket(keys={}, bucket_start=start, stats=stats)


def test_a_bar_chart_scales_to_its_width_and_shows_the_days_without_calls() -> None:
    """The biggest value fills the width; an empty day in between is drawn, bare; slivers show."""
    first = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        _day(first, 10, "2.00"),
        _day(first + timedelta(days=2), 5, "1.00"),
        _day(first + timedelta(days=3), 1, "0.0001"),
    ]
    lines = _drawn(bar_chart(rows, [], "day", "cost", most=60), 200)
    assert [line.split()[0] for line in lines] == [
        "2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04",
    ]  # fmt: skip
    assert max(len(line) for line in lines) == 60
    assert lines[1].split() == ["2026-11-02", "$0.00"]
    full, half = lines[0].count("█"), lines[2].count("█")
    assert half in (full // 2, full // 2 - 1)
    assert lines[3].split()[-1] in "▏▎▍▌▋▊▉█"  # a sliver, not nothing
    calls = _drawn(bar_chart(rows, [], "day", "calls"), 40)
    assert calls[0].split()[1] == "10"
    assert max(len(line) for line in calls) == 40


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("01a22a5e-91fb-7638-a02a-3f77930d3028", uuid.UUID("01a22a5e-91fb-7638-a02a-3f77930d3028")),
        ("01a22a5e", IdPrefix("01a22a5e")),
        ("01A2-2A5E-91", IdPrefix("01a22a5e91")),
        ("beef", IdPrefix("beef")),
    ],
)
def test_an_id_is_a_uuid_or_a_prefix_of_one(text: str, parsed: object) -> None:
    """Whole UUIDs stay UUIDs; four or more hexadecimal digits (dashes ignored) are a prefix."""
    assert parse_id(text) == parsed


@pytest.mark.parametrize("text", ["abc", "alice", "01a-", "0" * 33])
def test_what_is_not_an_id_is_refused(text: str) -> None:
    """Too short, not hexadecimal, or too long: refused by the option parser."""
    with pytest.raises(argparse.ArgumentTypeError, match="not a UUID"):
        parse_id(text)


def test_the_parser_s_own_spellings_match_the_library_s() -> None:
    """The statuses and group keys the parser spells out are the entities' and the stores'."""
    assert tuple(status.value for status in ApiCallStatus) == STATUSES
    assert GROUP_KEYS == GROUP_BY_KEYS


def test_help_imports_neither_rich_nor_the_commands() -> None:
    """``chatledger --help`` and parsing import the grammar alone (rich and the commands wait)."""
    code = (
        "import sys\n"
        "from chatledger.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in ('rich', 'chatledger.cli.commands', 'chatledger.cli.render')"
        " if m in sys.modules]\n"
        "print('loaded:', loaded, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "loaded: []" in done.stderr


BASH = shutil.which("bash") or "/bin/bash"


def _complete(*words: str) -> list[str]:
    """What bash offers for ``words`` (the last being typed), with chatledger's script loaded."""
    script = completion_script(build_parser(), "bash")
    quoted = " ".join(f"'{word}'" for word in words)
    program = (
        f"{script}\n"
        "complete -p chatledger >/dev/null || exit 3\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        '_chatledger; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [BASH, "--norc", "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.split()


def test_bash_completes_commands_actions_options_and_choices() -> None:
    """The bash script completes each level of the grammar, from the parser itself."""
    assert _complete("chatledger", "st") == ["stats"]
    assert {"sessions", "show", "calls", "demo", "--db"} <= set(_complete("chatledger", ""))
    assert set(_complete("chatledger", "db", "")) >= {"upgrade", "status", "rebuild-rollups"}
    assert _complete("chatledger", "calls", "--fo") == ["--follow"]
    assert _complete("chatledger", "stats", "--bucket", "") == ["hour", "day", "week", "month"]
    assert _complete("chatledger", "stats", "--chart", "c") == ["cost", "calls"]
    assert _complete("chatledger", "--db", "x.db", "export", "m") == ["messages"]
    assert _complete("chatledger", "db", "upgrade", "--j") == ["--json"]
    assert _complete("chatledger", "calls", "--limit", "") == []  # a number: nothing to offer


def test_the_zsh_script_is_the_bash_function_through_bashcompinit() -> None:
    """zsh gets the same function, loaded through zsh's bashcompinit."""
    script = completion_script(build_parser(), "zsh")
    assert "bashcompinit" in script
    assert "complete -o default -F _chatledger chatledger" in script
    with pytest.raises(ValueError, match="fish"):
        completion_script(build_parser(), "fish")
