"""How the command line shows records to people: rich tables that fit 80 columns.

Times are shown in UTC, as stored. Numbers are right-aligned with thousands
separators; failed calls are red. Everything here builds renderables or
text; printing is the commands' business.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from rich import box
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

__all__ = [
    "add_row",
    "breakdown_table",
    "call_summary",
    "calls_table",
    "cost",
    "dead_letters_table",
    "duration",
    "json_record",
    "message_body",
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


def cost(value: Decimal | None) -> str:
    """A price in USD with six decimals (a call can cost a millionth), or ``-`` unpriced."""
    return "-" if value is None else f"{value:,.6f}"


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


def sessions_table(rows: Sequence[tuple[ChatSession, int]]) -> Table:
    """Sessions with their last activity, message count and title."""
    table = _table("session:fixed", "last active (UTC):fixed", "msgs:n", "title")
    for session, messages in rows:
        add_row(
            table,
            str(session.id),
            when(session.update_time, seconds=False),
            f"{messages:,}",
            session.title or Text("(untitled)", style="dim"),
        )
    return table


def calls_table(calls: Iterable[LLMApiCall]) -> Table:
    """API calls: time, model, outcome, tokens in and out, cost, latency; failures in red."""
    table = _table(
        "time (UTC):fixed", "model", "status:fixed", "in:n", "out:n", "cost $:n", "latency:n"
    )
    for call in calls:
        style = _STATUS_STYLE[call.status]
        add_row(
            table,
            call.create_time.strftime("%m-%d %H:%M:%S"),
            call.model_name,
            Text(call.status.value, style=style),
            f"{call.prompt_tokens:,}",
            f"{call.completion_tokens:,}",
            cost(call.total_price),
            duration(call.latency_ms),
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
        ("cost (USD)", cost(stats.total_cost)),
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
    buckets: Sequence[UsageBucket], keys: Sequence[str], bucket: str | None
) -> Table:
    """One row per group and time bucket: calls, failures, tokens, cost, p50 and p95 latency."""
    columns = [f"{key}" for key in keys]
    if bucket is not None:
        columns.append(f"{bucket} (UTC):fixed")
    table = _table(*columns, "calls:n", "failed:n", "tokens:n", "cost $:n", "p50:n", "p95:n")
    for row in buckets:
        cells: list[str | Text] = [_key_text(row.keys[key]) for key in keys]
        if bucket is not None and row.bucket_start is not None:
            cells.append(_bucket_label(row.bucket_start, bucket))
        stats = row.stats
        failed = Text(f"{stats.failed_count:,}", style="red" if stats.failed_count else "")
        cells.extend(
            [
                f"{stats.total_calls:,}",
                failed,
                f"{stats.total_tokens:,}",
                cost(stats.total_cost),
                duration(stats.p50_latency_ms),
                duration(stats.p95_latency_ms),
            ]
        )
        add_row(table, *cells)
    return table


def _key_text(value: Any) -> str:
    if isinstance(value, ApiCallStatus):
        return value.value
    return "-" if value is None else str(value)


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
        "unpriced" if call.total_price is None else f"${call.total_price:,.6f}",
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
