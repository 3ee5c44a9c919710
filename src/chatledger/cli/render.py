"""How the command line shows records to people: rich tables that fit the screen.

Times are shown in UTC, as stored. Numbers are right-aligned with thousands
separators, money by its magnitude (:func:`money`); failed calls are red.
A table wider than the screen leaves out columns in a stated order
(:class:`FittedTable`) rather than cutting an id or a model name. Everything
here builds renderables or text; printing is the commands' business.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel
from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    UsageBucket,
    UsageStatistics,
)
from chatledger.ids import NIL_UUID
from chatledger.stores.base import Bucket
from chatledger.stores.statistics import next_bucket

__all__ = [
    "BarChart",
    "Column",
    "FittedTable",
    "add_row",
    "bar_chart",
    "breakdown_table",
    "call_summary",
    "calls_table",
    "dead_letters_table",
    "duration",
    "json_record",
    "message_body",
    "money",
    "sessions_table",
    "shorten",
    "spool_files_table",
    "statistics_table",
    "when",
]

_STATUS_STYLE = {
    ApiCallStatus.SUCCESS: "green",
    ApiCallStatus.FAILED: "bold red",
    ApiCallStatus.TIMEOUT: "red",
    ApiCallStatus.RATE_LIMITED: "red",
    ApiCallStatus.CANCELLED: "yellow",
}


def json_record(record: BaseModel) -> Any:
    """A record as ``--json`` prints it: its JSON form, money as exact decimal strings.

    The entities' JSON form is MoFA's (money as numbers); a script reading
    totals wants the exact amounts the README promises as ``Decimal``. A
    failed call's response is stored as MoFA's nil UUID, and printed as null.
    """
    dumped = record.model_dump(mode="json")
    for name in type(record).model_fields:
        value = getattr(record, name)
        if name not in dumped:
            continue
        if isinstance(value, Decimal):
            dumped[name] = format(value.normalize(), "f")  # one form on every backend
        elif isinstance(value, BaseModel):
            dumped[name] = json_record(value)
        elif value == NIL_UUID and name == "response_message_id":
            dumped[name] = None
    return dumped


def add_row(table: Table, *cells: str | Text, style: str | None = None) -> None:
    """Add a row whose text cells are shown as they are: a title like ``[b]`` is not markup."""
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells), style=style)


def when(moment: datetime, *, seconds: bool = True) -> str:
    """A UTC time as ``2026-11-25 18:40:12``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


_SMALLEST = Decimal("0.000001")


def money(value: Decimal | None) -> str:
    """USD by magnitude: ``$1,234.57``, ``$0.002645``, ``<$0.000001``; ``-`` when unpriced.

    From a dollar up, cents and thousands separators; below, four significant
    digits (at most six decimals, a millionth being the smallest amount
    shown), trailing zeros dropped down to two decimals.
    """
    if value is None:
        return "-"
    sign, amount = ("-" if value < 0 else ""), abs(value)
    if amount == 0:
        return "$0.00"
    if amount < _SMALLEST:
        return f"{sign}<$0.000001"
    if amount < 1:
        decimals = min(6, 3 - amount.adjusted())
        rounded = amount.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
        if rounded < 1:
            text = format(rounded, "f").rstrip("0")
            whole, _, fraction = text.partition(".")
            return f"{sign}${whole}.{fraction.ljust(2, '0')}"
    return f"{sign}${amount.quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}"


def duration(ms: float | None) -> str:
    """``830 ms``, ``1.24 s`` or ``2m 05s``; ``-`` when unknown."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:,.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, rest = divmod(round(ms / 1000), 60)
    return f"{minutes}m {rest:02d}s"


def _table(*columns: str, title: str | None = None) -> Table:
    """A table with a rule under its header, one space between columns.

    A column named ``name:n`` is a right-aligned number and ``name:fixed``
    never wraps; the others give way first when 80 columns are tight.
    """
    table = Table(
        box=box.SIMPLE_HEAD,
        title=None if title is None else Text(title),
        title_justify="left",
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    for column in columns:
        name, _, kind = column.partition(":")
        if kind == "n":
            table.add_column(name, justify="right", no_wrap=True)
        elif kind == "fixed":
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, overflow="fold", ratio=1)
    return table


ColumnKind = Literal["whole", "number", "text"]
# SIMPLE_HEAD's rule under the header, and the same rule between sections (above a total).
_RULED = box.Box("    \n    \n ── \n    \n ── \n    \n    \n    \n")
_TEXT_NARROWEST = 10  # a text column narrower than this is not worth keeping
_GAP = 2  # between two columns: a cell's right padding and the box's (blank) divider


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a :class:`FittedTable`.

    ``whole`` cells (ids, model names, times) and ``number`` cells (right
    aligned) are never wrapped nor cut: when they do not fit, columns are
    dropped instead. ``text`` cells wrap, down to ten characters. ``drop`` is
    the column's place in the order columns are left out when the table is
    too wide (1 goes first); None keeps it always. ``width`` is the least
    width it gets, so that rows printed a batch at a time line up.
    """

    header: str
    kind: ColumnKind = "whole"
    drop: int | None = None
    width: int = 0


class FittedTable:
    """A table that leaves out columns, in their stated order, until it fits the width it has.

    Ids and model names are never wrapped nor shortened. When even the
    columns that are never dropped do not fit, the table is drawn wider than
    the screen (a terminal wraps the line; copied, an id is still whole).
    """

    def __init__(
        self, *columns: Column, title: str | None = None, show_header: bool = True
    ) -> None:
        """An empty table with ``columns``, a title above it, and a header unless told not to."""
        self.columns = columns
        self.title = title
        self.show_header = show_header
        self.rows: list[tuple[list[Text], str | None]] = []
        self.sections: set[int] = set()  # rows drawn under a rule (a total)

    def add_row(self, *cells: str | Text, style: str | None = None, section: bool = False) -> None:
        """Add a row; text cells are shown as they are (a title like ``[b]`` is not markup)."""
        if section:
            self.sections.add(len(self.rows))
        self.rows.append(([Text(c) if isinstance(c, str) else c for c in cells], style))

    def _least_width(self, index: int) -> int:
        column = self.columns[index]
        widest = max(
            (max(map(cell_len, row[index].plain.splitlines() or [""])) for row, _ in self.rows),
            default=0,
        )
        header = cell_len(column.header) if self.show_header else 0
        if column.kind == "text":
            return max(column.width, min(widest, max(_TEXT_NARROWEST, header)))
        return max(column.width, widest, header)

    def fitting(self, width: int) -> list[int]:
        """The indexes of the columns kept at ``width``: the droppable ones go in their order."""
        kept = list(range(len(self.columns)))
        least = {index: self._least_width(index) for index in kept}
        droppable = sorted((c.drop, i) for i, c in enumerate(self.columns) if c.drop is not None)
        for _, index in droppable:
            if sum(least[i] for i in kept) + _GAP * (len(kept) - 1) <= width:
                break
            kept.remove(index)
        return kept

    def needed(self, kept: Sequence[int]) -> int:
        """The narrowest the ``kept`` columns can be drawn in."""
        return sum(self._least_width(i) for i in kept) + _GAP * (len(kept) - 1)

    def table(self, width: int) -> Table:
        """The rich table of the columns that fit ``width``."""
        kept = self.fitting(width)
        table = Table(
            box=_RULED,
            title=None if self.title is None else Text(self.title),
            title_justify="left",
            padding=(0, 1, 0, 0),
            pad_edge=False,
            show_edge=False,
            show_header=self.show_header,
        )
        for index in kept:
            column = self.columns[index]
            if column.kind == "text":
                table.add_column(column.header, overflow="fold", min_width=column.width or None)
            else:
                table.add_column(
                    column.header,
                    justify="right" if column.kind == "number" else "left",
                    no_wrap=True,
                    min_width=self._least_width(index),
                )
        for number, (cells, style) in enumerate(self.rows):
            table.add_row(
                *(cells[i] for i in kept), style=style, end_section=number + 1 in self.sections
            )
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Draw the columns that fit the width rich offers; never narrower than they need."""
        width = options.max_width
        table = self.table(width)
        needed = self.needed(self.fitting(width))
        yield from console.render(table, options.update_width(max(width, needed)))


def sessions_table(rows: Sequence[tuple[ChatSession, int]]) -> FittedTable:
    """Sessions with their last activity, message count and title.

    Too wide, it leaves out the last activity, then the count, then the title.
    """
    table = FittedTable(
        Column("session"),
        Column("last active (UTC)", drop=1),
        Column("msgs", "number", drop=2),
        Column("title", "text", drop=3),
    )
    for session, messages in rows:
        table.add_row(
            str(session.id),
            when(session.update_time, seconds=False),
            f"{messages:,}",
            session.title or Text("(untitled)", style="dim"),
        )
    return table


CALL_COLUMNS = (
    Column("time (UTC)"),
    Column("session", drop=1),
    Column("model"),
    Column("status", drop=6),
    Column("in", "number", drop=5),
    Column("out", "number", drop=4),
    Column("cost", "number"),
    Column("latency", "number", drop=3),
    Column("error", "text", drop=2),
)
"""The calls table's columns.

Too wide, it leaves out session, error, latency, out, in, then status (a
failed call's row is red on a terminal, its cost ``-``); time, model and
cost stay.
"""


def call_error(call: LLMApiCall) -> str:
    """A failed call's error in short: its code, else its message shortened; empty on success."""
    if call.status is ApiCallStatus.SUCCESS:
        return ""
    return call.error_code or shorten(call.error_message or "", 40)


def calls_table(
    calls: Iterable[LLMApiCall], *, columns: Sequence[Column] = CALL_COLUMNS, header: bool = True
) -> FittedTable:
    """API calls: time, session, model, outcome, tokens, cost, latency, error; failures in red."""
    table = FittedTable(*columns, show_header=header)
    for call in calls:
        style = _STATUS_STYLE[call.status]
        table.add_row(
            call.create_time.strftime("%m-%d %H:%M:%S"),
            str(call.chat_session_id),
            call.model_name,
            Text(call.status.value, style=style),
            f"{call.prompt_tokens:,}",
            f"{call.completion_tokens:,}",
            money(call.total_price),
            duration(call.latency_ms),
            call_error(call),
            style=None if call.status is ApiCallStatus.SUCCESS else "red",
        )
    return table


def _statistics_rows(stats: UsageStatistics) -> list[tuple[str, str]]:
    counts = ", ".join(
        f"{status.value} {count:,}"
        for status, count in stats.status_counts.items()
        if count and status is not ApiCallStatus.SUCCESS
    )
    rate = "-" if stats.avg_tokens_per_second is None else f"{stats.avg_tokens_per_second:,.1f}"
    return [
        ("calls", f"{stats.total_calls:,}"),
        ("succeeded", f"{stats.success_count:,}"),
        ("failed", f"{stats.failed_count:,}" + (f" ({counts})" if counts else "")),
        ("prompt tokens", f"{stats.total_prompt_tokens:,} ({stats.total_cached_tokens:,} cached)"),
        (
            "completion tokens",
            f"{stats.total_completion_tokens:,} ({stats.total_reasoning_tokens:,} reasoning)",
        ),
        ("total tokens", f"{stats.total_tokens:,}"),
        ("cost (USD)", money(stats.total_cost)),
        ("latency avg", duration(stats.avg_latency_ms)),
        (
            "latency p50 / p95 / p99",
            " / ".join(
                duration(value)
                for value in (stats.p50_latency_ms, stats.p95_latency_ms, stats.p99_latency_ms)
            ),
        ),
        ("time to first token avg", duration(stats.avg_time_to_first_token_ms)),
        ("tokens per second avg", rate),
    ]


def statistics_table(stats: UsageStatistics, title: str) -> Table:
    """One statistic as a two-column table of figures."""
    table = Table(
        box=None, show_header=False, title=Text(title), title_justify="left", pad_edge=False
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in _statistics_rows(stats):
        add_row(table, name, value)
    return table


def _bucket_label(start: datetime, bucket: str) -> str:
    return start.strftime("%Y-%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d")


def breakdown_table(
    buckets: Sequence[UsageBucket],
    keys: Sequence[str],
    bucket: str | None,
    *,
    total: UsageStatistics | None = None,
) -> FittedTable:
    """One row per group and time bucket: calls, failures, tokens, cost, p50 and p95 latency.

    ``total`` adds a row of it under a rule. Too wide, the table leaves out
    p95, p50, tokens, failed, then calls; the groups and the cost stay.
    """
    columns = [Column(key) for key in keys]
    if bucket is not None:
        columns.append(Column(f"{bucket} (UTC)"))
    table = FittedTable(
        *columns,
        Column("calls", "number", drop=5),
        Column("failed", "number", drop=4),
        Column("tokens", "number", drop=3),
        Column("cost", "number"),
        Column("p50", "number", drop=2),
        Column("p95", "number", drop=1),
    )
    rows: list[tuple[list[str | Text], UsageStatistics]] = []
    for row in buckets:
        cells: list[str | Text] = [_key_text(row.keys[key]) for key in keys]
        if bucket is not None and row.bucket_start is not None:
            cells.append(_bucket_label(row.bucket_start, bucket))
        rows.append((cells, row.stats))
    if total is not None:
        rows.append((["total", *[""] * (len(columns) - 1)], total))
    for number, (cells, stats) in enumerate(rows):
        failed = Text(f"{stats.failed_count:,}", style="red" if stats.failed_count else "")
        table.add_row(
            *cells,
            f"{stats.total_calls:,}",
            failed,
            f"{stats.total_tokens:,}",
            money(stats.total_cost),
            duration(stats.p50_latency_ms),
            duration(stats.p95_latency_ms),
            section=total is not None and number == len(rows) - 1,
        )
    return table


def _key_text(value: Any) -> str:
    if isinstance(value, ApiCallStatus):
        return value.value
    return "-" if value is None else str(value)


ChartMeasure = Literal["cost", "calls", "tokens"]
_EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclass(frozen=True, slots=True)
class BarChart:
    """Horizontal bars of unicode blocks, one per label, scaled to the width they are drawn in.

    ``most`` caps that width (a pipe has no screen to fill). A value above
    zero always shows at least a sliver.
    """

    rows: Sequence[tuple[str, Decimal, str]]  # label, value, the value as shown
    most: int | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """One line per row: the label, the value, then its bar."""
        width = options.max_width if self.most is None else min(self.most, options.max_width)
        labels = max((cell_len(label) for label, _, _ in self.rows), default=0)
        shown = max((cell_len(text) for _, _, text in self.rows), default=0)
        room = max(width - labels - shown - 2, 10)
        top = max((value for _, value, _ in self.rows), default=Decimal(0))
        for label, value, text in self.rows:
            eighths = 0 if top <= 0 else int(value / top * room * 8)
            if value > 0 and eighths == 0:
                eighths = 1
            whole, part = divmod(eighths, 8)
            line = Text(f"{label:<{labels}} {text:>{shown}} ")
            line.append("█" * whole + (_EIGHTHS[part] if part else ""), style="cyan")
            yield line


def bar_chart(
    buckets: Sequence[UsageBucket],
    keys: Sequence[str],
    bucket: Bucket | None,
    measure: ChartMeasure,
    *,
    most: int | None = None,
) -> BarChart:
    """A bar per row of a breakdown: its cost (unpriced counts as none), calls or tokens.

    Over time alone (no ``keys``), the buckets without calls between the
    first and the last are drawn too, empty, so gaps show.
    """
    rows: list[tuple[str, Decimal, str]] = []

    def add(label: str, stats: UsageStatistics | None) -> None:
        if measure == "cost":
            value = Decimal(0) if stats is None else stats.total_cost or Decimal(0)
            rows.append((label, value, money(value)))
        else:
            count = (
                0
                if stats is None
                else (stats.total_calls if measure == "calls" else stats.total_tokens)
            )
            rows.append((label, Decimal(count), f"{count:,}"))

    expected: datetime | None = None
    for row in buckets:
        start = row.bucket_start
        if not keys and bucket is not None and start is not None:
            while expected is not None and expected < start:
                add(_bucket_label(expected, bucket), None)
                expected = next_bucket(expected, bucket)
            expected = next_bucket(start, bucket)
        label = [_key_text(row.keys[key]) for key in keys]
        if bucket is not None and start is not None:
            label.append(_bucket_label(start, bucket))
        add("  ".join(label), row.stats)
    return BarChart(rows, most)


def call_summary(call: LLMApiCall) -> Text:
    """One line under a message: the call's model, tokens, cost and latency, or its failure."""
    if call.status is not ApiCallStatus.SUCCESS:
        reason = call.error_message or ""
        if len(reason) > 60:
            reason = reason[:57] + "..."
        code = f" {call.error_code}" if call.error_code else ""
        return Text(
            f"x {call.model_name}: {call.status.value}{code} after {duration(call.latency_ms)}"
            + (f": {reason}" if reason else ""),
            style="red",
        )
    parts = [
        call.model_name,
        f"{call.prompt_tokens:,} in, {call.completion_tokens:,} out",
        "unpriced" if call.total_price is None else money(call.total_price),
        duration(call.latency_ms),
    ]
    if call.time_to_first_token_ms is not None:
        parts.append(f"first token {duration(call.time_to_first_token_ms)}")
    return Text(" · ".join(parts), style="dim")


def message_body(message: LLMMessage) -> Text:
    """A message's text, tool calls (``->``) and tool result (``<-``), one per line."""
    content = message.content
    body = Text()
    if content.text:
        body.append(content.text)
    for call in content.tool_calls or ():
        arguments = (
            call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        )
        body.append(("\n" if body else "") + f"-> {call.name}({arguments})", style="cyan")
    result = content.tool_result
    if result is not None:
        style = "red" if result.is_error else "magenta"
        label = "<- error" if result.is_error else "<-"
        body.append(
            ("\n" if body else "") + f"{label} [{result.tool_call_id}] {result.content}",
            style=style,
        )
    if not body:
        extra = content.extra
        body.append(json.dumps(extra) if extra else "(empty)", style="dim")
    return body


def shorten(text: str, most: int) -> str:
    """``text`` on one line, cut to ``most`` characters with ``...`` when longer."""
    line = " ".join(text.split())
    return line if len(line) <= most else line[: most - 3] + "..."


def spool_files_table(rows: Iterable[tuple[str, str | Text, str, str]]) -> Table:
    """Spool files: name, owner, records waiting, dead letters."""
    table = _table("spool file", "owner", "waiting:n", "dead letters:n")
    for name, owner, waiting, dead in rows:
        add_row(
            table, name, owner, waiting, Text(dead, style="red" if dead not in ("0", "-") else "")
        )
    return table


def dead_letters_table(
    letters: Iterable[tuple[int, str, datetime | None, str]], title: str
) -> Table:
    """Dead letters of one spool file: seq, kind, when it was refused, why (shortened)."""
    table = _table("seq:n", "kind:fixed", "refused (UTC):fixed", "error", title=title)
    for seq, kind, failed_at, error in letters:
        add_row(
            table,
            str(seq),
            kind,
            "-" if failed_at is None else when(failed_at),
            Text(shorten(error, 160), style="red"),
        )
    return table
