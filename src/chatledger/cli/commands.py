"""What each command does: open the database, ask the store, show the answer.

Every command is an ``async`` function taking the parsed arguments and a
:class:`Terminal`, returning the exit status. Errors a user can fix are
raised as :class:`CommandError` (or the store's own ``PersistenceError``)
and shown by ``main`` as one line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import aclosing, asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from rich.console import Console, Group
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from chatledger.cli.arguments import (
    EXPORT_KINDS,
    IdPrefix,
    database_url,
    parse_id,
    query_filter,
)
from chatledger.cli.export import ExportTarget, format_for, write_records
from chatledger.cli.render import (
    CALL_COLUMNS,
    Column,
    add_row,
    bar_chart,
    breakdown_table,
    call_summary,
    calls_table,
    json_record,
    message_body,
    money,
    sessions_table,
    statistics_table,
    when,
)
from chatledger.entities import (
    ApiCallStatus,
    CallSort,
    ErasureReport,
    LLMApiCall,
    MessageRole,
    QueryFilter,
)
from chatledger.ids import NIL_UUID
from chatledger.stores import PersistenceStore, connect
from chatledger.stores.base import RECORD_KINDS
from chatledger.stores.opening import LATEST_SCHEMA, open_current, open_existing
from chatledger.stores.urls import redact

__all__ = ["COMMANDS", "CommandError", "Terminal", "resolve_id"]

_SHOW_PAGE = 1000
# Measured on SQLite: 500 records a chunk export a quarter faster than 2,000.
_EXPORT_CHUNK = 500
_ROLE_STYLE = {
    MessageRole.SYSTEM: "dim",
    MessageRole.USER: "bold blue",
    MessageRole.ASSISTANT: "bold green",
    MessageRole.TOOL: "bold magenta",
}


class CommandError(Exception):
    """A mistake the user can fix, said in one line; ``status`` is the exit status (1)."""

    def __init__(self, message: str, *, status: int = 1) -> None:
        """The message to show, and the status to exit with."""
        super().__init__(message)
        self.status = status


# A pipe or a file has no width: lines are this long at most, so in effect never cut.
_PIPE_WIDTH = 10_000


class Terminal:
    """Where output goes: rich consoles over standard output and standard error.

    On a terminal, tables fit its width (leaving columns out in their
    stated order). In a pipe or a file, nothing is cut to a width unless
    ``$COLUMNS`` names one: each row stays on one line, whole.
    """

    def __init__(self) -> None:
        """Print to the process's standard output and standard error."""
        self.out = Console(highlight=False)
        self.err = Console(highlight=False, stderr=True)
        self.width: int | None = self.out.width
        """The width output is fitted to; None in a pipe (no limit)."""
        if not self.out.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
            self.out = Console(highlight=False, width=_PIPE_WIDTH)
            self.width = None

    def show(self, renderable: Any) -> None:
        """Print a table or text: coloured on a terminal, plain and unpadded in a pipe or file."""
        if isinstance(renderable, str):
            renderable = Text(renderable)  # our own words and the user's data: never markup
        # crop=False: a table wider than the screen (an id that cannot be left out) is wrapped
        # by the terminal, never cut
        if self.out.is_terminal:
            self.out.print(renderable, crop=False)
            return
        with self.out.capture() as captured:
            self.out.print(renderable, crop=False)
        lines = captured.get().splitlines()
        self.out.file.write("".join(line.rstrip() + "\n" for line in lines))
        self.out.file.flush()  # a reader following the output sees each piece as it comes

    def json(self, value: Any) -> None:
        """Print ``value`` as indented JSON, uncoloured, for scripts."""
        self.out.file.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")

    def note(self, text: str) -> None:
        """A dim line for people, under a table."""
        self.show(Text(text, style="dim"))


@asynccontextmanager
async def _open(args: argparse.Namespace) -> AsyncIterator[PersistenceStore]:
    """The database the arguments name, which must hold a current chatledger schema.

    Reading commands never change the schema: an old one is refused with
    the command that upgrades it. Id prefixes among the arguments (``--user
    01a2``) are replaced by the whole ids they start, found in the store.
    """
    store = await open_current(database_url(args.db))
    try:
        for name in ("tenant", "user", "agent", "session"):
            value = getattr(args, name, None)
            if isinstance(value, IdPrefix):
                setattr(args, name, await resolve_id(store, name, value))
        yield store
    finally:
        await store.close()


IdKind = Literal["session", "user", "agent", "tenant"]
_CANDIDATES_SHOWN = 8
_SCAN_CHUNK = 1000


async def resolve_id(
    store: PersistenceStore, kind: IdKind, prefix: IdPrefix, *, sessions_only: bool = False
) -> uuid.UUID:
    """The one ``kind`` id that starts with ``prefix``, as git finds a commit by its start.

    Candidates are the ids the sessions hold and, unless ``sessions_only``,
    those the API calls' usage counts (a pruned session's calls, a user
    without sessions). No match is a CommandError; several are one with
    status 2 that lists them.
    """
    found: set[uuid.UUID] = set()
    width = len(prefix.digits)
    async with aclosing(_session_ids(store, "id" if kind == "session" else f"{kind}_id")) as ids:
        async for held in ids:
            if prefix.matches(held):
                found.add(held)
            elif kind == "session" and held.hex[:width] > prefix.digits:
                break  # sessions come in id order: none further can match
    if not sessions_only:
        for row in await store.get_usage_breakdown(QueryFilter(), [kind]):
            value = row.keys.get(kind)
            if isinstance(value, uuid.UUID) and prefix.matches(value):
                found.add(value)
    if not found:
        raise CommandError(f"no {kind} id starts with {prefix.digits}")
    if len(found) > 1:
        ordered = sorted(found, key=str)
        listed = ", ".join(map(str, ordered[:_CANDIDATES_SHOWN]))
        more = len(ordered) - _CANDIDATES_SHOWN
        raise CommandError(
            f"{prefix.digits} starts {len(found)} {kind} ids: {listed}"
            + (f" and {more} more" if more > 0 else "")
            + "; give more of the id",
            status=2,
        )
    return found.pop()


async def _session_ids(store: PersistenceStore, field: str) -> AsyncGenerator[uuid.UUID, None]:
    """The ``field`` id of every session, in the sessions' id order (none where it is unset)."""
    records = store.export_records("sessions", QueryFilter(), chunk_size=_SCAN_CHUNK)
    try:
        async for chunk in records:
            for record in chunk:
                if (value := record.get(field)) is not None:
                    yield uuid.UUID(str(value))
    finally:
        close = getattr(records, "aclose", None)  # stop the export's reads when left early
        if close is not None:
            await close()


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _footer(shown: int, offset: int, total: int, noun: str) -> str:
    if shown == 0:
        return (
            f"no {noun} match"
            if total == 0
            else f"no {noun} past --offset {offset} ({total:,} in all)"
        )
    last = offset + shown
    text = f"{offset + 1:,}-{last:,} of {total:,} {noun}"
    return text + (f"; next page: --offset {last}" if last < total else "")


# --- db ----------------------------------------------------------------------------------


async def db_upgrade(args: argparse.Namespace, terminal: Terminal) -> int:
    """Create or migrate the schema; say from which version to which."""
    url = database_url(args.db)
    store = await connect(url, migrate=False)  # may create an SQLite file, not its tables
    try:
        before = await store.schema_version()
    finally:
        await store.close()
    store = await open_existing(url, migrate=True)
    try:
        after = await store.schema_version()
    finally:
        await store.close()
    if args.json:
        terminal.json({"database": redact(url), "from_version": before, "to_version": after})
    elif before == after:
        terminal.show(f"{redact(url)}: schema already at version {after}, nothing to do")
    elif before == 0:
        terminal.show(f"{redact(url)}: created chatledger's tables, schema version {after}")
    else:
        terminal.show(f"{redact(url)}: schema upgraded from version {before} to {after}")
    return 0


async def db_status(args: argparse.Namespace, terminal: Terminal) -> int:
    """The schema version, unchanged, and the record counts when the schema is current."""
    url = database_url(args.db)
    store = await open_existing(url, migrate=False)
    try:
        version = await store.schema_version()
        current = version >= LATEST_SCHEMA
        counts = {}
        if current:
            everything = QueryFilter()
            for kind in RECORD_KINDS:
                counts[kind] = await store.count_records(kind, everything)
        backend = store.backend_name
    finally:
        await store.close()
    if args.json:
        terminal.json(
            {
                "database": redact(url),
                "backend": backend,
                "schema_version": version,
                "latest_schema_version": LATEST_SCHEMA,
                "current": current,
                "counts": counts or None,
            }
        )
        return 0
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    add_row(table, "database", redact(url))
    add_row(table, "backend", backend)
    if current:
        add_row(table, "schema", f"version {version} (current)")
    else:
        add_row(
            table,
            "schema",
            Text(
                f"version {version}, needs {LATEST_SCHEMA}: run 'chatledger db upgrade'",
                style="yellow",
            ),
        )
    for kind, count in counts.items():
        add_row(table, kind.replace("_", " "), f"{count:,}")
    terminal.show(table)
    return 0


async def db_rebuild_rollups(args: argparse.Namespace, terminal: Terminal) -> int:
    """Recount the usage rollups from the API calls, showing each step; say what was counted."""
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        terminal.err.print(Text(f"rebuilding the usage rollups: step {done} of {total}"))

    async with _open(args) as store:
        counted = await store.rebuild_rollups(None if args.json else progress)
    seconds = time.perf_counter() - started
    url = redact(database_url(args.db))
    if args.json:
        terminal.json({"database": url, "api_calls": counted, "seconds": round(seconds, 3)})
    else:
        terminal.show(
            f"usage rollups rebuilt from {_plural(counted, 'API call')} in {seconds:.1f} s"
        )
    return 0


# --- reading -----------------------------------------------------------------------------


async def sessions(args: argparse.Namespace, terminal: Terminal) -> int:
    """List sessions, most recently active first, one page at a time."""
    async with _open(args) as store:
        query = query_filter(args)
        found = await store.list_sessions(query.paginate(args.offset, args.limit))
        counts = await asyncio.gather(*(store.count_session_messages(s.id) for s in found))
        total = await store.count_records("sessions", query)
    if args.json:
        terminal.json(
            [
                {**json_record(session), "message_count": count}
                for session, count in zip(found, counts, strict=True)
            ]
        )
        return 0
    if found:
        terminal.show(sessions_table(list(zip(found, counts, strict=True))))
    terminal.note(_footer(len(found), args.offset, total, "sessions"))
    return 0


async def _session_calls(store: PersistenceStore, session_id: uuid.UUID) -> list[LLMApiCall]:
    """Every API call of a session, read a page at a time."""
    calls: list[LLMApiCall] = []
    while True:
        page = await store.query_api_calls(
            QueryFilter().session(session_id).paginate(len(calls), _SHOW_PAGE)
        )
        calls.extend(page)
        if len(page) < _SHOW_PAGE:
            return calls


async def show(args: argparse.Namespace, terminal: Terminal) -> int:
    """One session: its header, then every message with the calls that made or failed it."""
    async with _open(args) as store:
        if args.session.strip().lower() == "latest":
            newest = await store.list_sessions(QueryFilter().paginate(0, 1))
            if not newest:
                raise CommandError("the database holds no sessions yet")
            session = newest[0]
        else:
            try:
                given = parse_id(args.session)
            except argparse.ArgumentTypeError:
                raise CommandError(
                    f"{args.session!r} is not a session id; give a UUID, the start of one, "
                    "or 'latest'"
                ) from None
            session_id = (
                await resolve_id(store, "session", given, sessions_only=True)
                if isinstance(given, IdPrefix)
                else given
            )
            found = await store.get_session(session_id)
            if found is None:
                raise CommandError(f"no session {session_id} in this database")
            session = found
        if args.last:
            messages = await store.get_recent_messages(session.id, args.last)
        else:
            messages = await store.get_session_messages(session.id)
        total_messages = await store.count_session_messages(session.id)
        calls = await _session_calls(store, session.id)
        stats = await store.get_statistics(QueryFilter().session(session.id))
    if args.json:
        terminal.json(
            {
                "session": json_record(session),
                "messages": [json_record(m) for m in messages],
                "api_calls": [json_record(c) for c in reversed(calls)],
                "statistics": json_record(stats),
            }
        )
        return 0

    made_by: dict[uuid.UUID, list[LLMApiCall]] = {}
    for call in reversed(calls):  # oldest first
        anchor = call.response_message_id
        if anchor == NIL_UUID or call.status is not ApiCallStatus.SUCCESS:
            anchor = call.request_message_id  # a failed call made nothing: show it by its request
        made_by.setdefault(anchor, []).append(call)

    header = Table(
        box=None,
        show_header=False,
        pad_edge=False,
        title=Text(session.title or "(untitled)"),
        title_justify="left",
        title_style="bold",
    )
    header.add_column(style="bold", no_wrap=True)
    header.add_column(overflow="fold")
    add_row(header, "session", str(session.id))
    add_row(header, "user", str(session.user_id))
    add_row(header, "agent", str(session.agent_id))
    add_row(header, "tenant", str(session.tenant_id))
    add_row(header, "started", f"{when(session.create_time)} UTC")
    add_row(header, "last active", f"{when(session.update_time)} UTC")
    cost = "unpriced" if stats.total_cost is None else money(stats.total_cost)
    add_row(
        header,
        "usage",
        f"{_plural(stats.total_calls, 'call')} ({stats.failed_count:,} failed), "
        f"{stats.total_tokens:,} tokens, {cost}",
    )
    terminal.show(header)
    if len(messages) < total_messages:
        terminal.note(f"\nthe newest {len(messages)} of {total_messages:,} messages:")
    for message in messages:
        label = Text(message.role.value, style=_ROLE_STYLE[message.role])
        label.append(f"  {when(message.create_time)}", style="dim")
        # expand=False: a padded line is as long as its text, not as the (unlimited) pipe
        parts: list[Any] = [
            Text(""),
            label,
            Padding(message_body(message), (0, 0, 0, 2), expand=False),
        ]
        parts.extend(
            Padding(call_summary(c), (0, 0, 0, 2), expand=False)
            for c in made_by.get(message.id, ())
        )
        terminal.show(Group(*parts))
    if not messages:
        terminal.note("\nno messages in this session")
    return 0


def _describe(query: QueryFilter) -> str:
    parts = []
    if query.start_time is not None:
        parts.append(f"since {when(query.start_time, seconds=False)}")
    if query.end_time is not None:
        parts.append(f"until {when(query.end_time, seconds=False)}")
    for name, value in (
        ("tenant", query.tenant_id),
        ("user", query.user_id),
        ("agent", query.agent_id),
        ("session", query.session_id),
        ("model", query.model_name),
        ("status", query.status.value if query.status else None),
    ):
        if value is not None:
            parts.append(f"{name} {value}")
    return ", ".join(parts) + " (UTC)" if parts else "every call"


async def stats(args: argparse.Namespace, terminal: Terminal) -> int:
    """Usage totals over the filtered calls, or one row (or bar) per group and time bucket."""
    if args.chart and not (args.by or args.bucket):
        raise CommandError(
            "--chart draws a breakdown: add --bucket day (or hour, week, month) or --by KEYS"
        )
    async with _open(args) as store:
        query = query_filter(args)
        if args.by or args.bucket:
            rows = await store.get_usage_breakdown(query, args.by, args.bucket)
            overall = None
        else:
            rows = []
            overall = await store.get_statistics(query)
    if overall is not None:
        if args.json:
            terminal.json(json_record(overall))
        else:
            terminal.show(statistics_table(overall, f"Usage: {_describe(query)}"))
        return 0
    if args.json:
        terminal.json([json_record(row) for row in rows])
        return 0
    if not rows:
        terminal.note(f"no API calls match: {_describe(query)}")
        return 0
    by = ", ".join([*args.by, *([args.bucket] if args.bucket else [])])
    if args.chart:
        terminal.show(f"{args.chart.capitalize()} by {by}: {_describe(query)}")
        # In a pipe there is no screen to fill: the bars take 80 columns.
        terminal.show(bar_chart(rows, args.by, args.bucket, args.chart, most=terminal.width or 80))
        return 0
    terminal.show(f"Usage by {by}: {_describe(query)}")
    terminal.show(breakdown_table(rows, args.by, args.bucket))
    return 0


async def calls(args: argparse.Namespace, terminal: Terminal) -> int:
    """The API-call ledger, newest first, one page at a time; or followed as it grows."""
    async with _open(args) as store:
        query = query_filter(args)
        if args.follow:
            return await _follow(store, query, args, terminal)
        found = await store.query_api_calls(query.paginate(args.offset, args.limit))
        total = await store.count_records("api_calls", query)
    if args.json:
        terminal.json([json_record(call) for call in found])
        return 0
    if found:
        terminal.show(calls_table(found))
    terminal.note(_footer(len(found), args.offset, total, "API calls"))
    return 0


# The followed table's columns get fixed widths, so that rows printed a batch at a time line
# up (a dated model name like gpt-4o-mini-2024-07-18 fits).
_FOLLOWED_WIDTHS = {"model": 22, "status": 12, "in": 7, "out": 6, "cost": 10, "latency": 8}
_FOLLOWED_COLUMNS = tuple(
    Column(c.header, c.kind, c.drop, _FOLLOWED_WIDTHS.get(c.header, c.width)) for c in CALL_COLUMNS
)
_FOLLOW_PAGE = 500


async def _follow(
    store: PersistenceStore, query: QueryFilter, args: argparse.Namespace, terminal: Terminal
) -> int:
    """The newest ``--limit`` calls oldest first, then each new call as it is recorded.

    "New" is later by create time, then id, than the last printed: each
    look reads the calls from the last printed one's time on, oldest first,
    and skips those already printed. Runs until interrupted (Ctrl+C), which
    ``main`` takes as a normal end.
    """

    def emit(found: list[LLMApiCall], *, header: bool) -> None:
        if args.json:  # one object a line, so that a reader can act on each as it comes
            for call in found:
                terminal.out.file.write(json.dumps(json_record(call), ensure_ascii=False) + "\n")
            terminal.out.file.flush()
        else:
            terminal.show(calls_table(found, columns=_FOLLOWED_COLUMNS, header=header))

    latest = list(reversed(await store.query_api_calls(query.paginate(0, args.limit))))
    emit(latest, header=True)
    since = latest[-1].create_time if latest else query.start_time
    printed = {call.id for call in latest if call.create_time == since}
    while True:
        await asyncio.sleep(args.interval)
        new: list[LLMApiCall] = []
        cursor: str | None = None
        while True:
            page = await store.page_api_calls(
                query.time_range(since, query.end_time),
                sort=CallSort.OLDEST,
                cursor=cursor,
                limit=_FOLLOW_PAGE,
            )
            new.extend(call for call in page.calls if call.id not in printed)
            cursor = page.next_cursor
            if cursor is None:
                break
        if not new:
            continue
        emit(new, header=False)
        if new[-1].create_time != since:
            since, printed = new[-1].create_time, set()
        printed.update(call.id for call in new if call.create_time == since)


# --- writing -----------------------------------------------------------------------------


async def export(args: argparse.Namespace, terminal: Terminal) -> int:
    """Stream every matching record to standard output or a file; progress on a terminal."""
    kind = EXPORT_KINDS[args.kind]
    fmt = format_for(args.output, args.format)
    target = ExportTarget(args.output, force=args.force)
    to_terminal = target.path is None and sys.stdout.isatty()
    show_progress = not args.quiet and terminal.err.is_terminal and not to_terminal
    started = time.perf_counter()
    async with _open(args) as store:
        query = query_filter(args)
        total = await store.count_records(kind, query) if show_progress else None
        progress = Progress(
            TextColumn(f"exporting {args.kind}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=terminal.err,
            transient=True,
            disable=not show_progress,
        )
        with progress, target as stream:
            task = progress.add_task("export", total=total)
            written = await write_records(
                store.export_records(kind, query, chunk_size=_EXPORT_CHUNK),
                kind,
                fmt,
                stream,
                on_chunk=lambda n: progress.advance(task, n),
            )
    elapsed = time.perf_counter() - started
    if not args.quiet and target.path is not None:
        rate = f", {written / elapsed:,.0f} per second" if elapsed >= 1 else ""  # else noise
        terminal.err.print(
            f"wrote {written:,} {args.kind} to {target.path} as {fmt} in {elapsed:.1f} s{rate}",
            markup=False,
        )
    return 0


async def prune(args: argparse.Namespace, terminal: Terminal) -> int:
    """Delete API calls made before the cutoff and sessions inactive since; count first."""
    before: datetime = args.before
    older = QueryFilter(end_time=before)
    async with _open(args) as store:
        calls_due = 0 if args.only == "sessions" else await store.count_records("api_calls", older)
        sessions_due = 0 if args.only == "calls" else await store.count_records("sessions", older)
        plan = " and ".join(
            part
            for part, due in (
                (
                    f"{calls_due:,} API calls made before {when(before)} UTC",
                    args.only != "sessions",
                ),
                (
                    f"{sessions_due:,} sessions inactive since before {when(before)} UTC "
                    "(with their messages)",
                    args.only != "calls",
                ),
            )
            if due
        )
        if args.dry_run or calls_due + sessions_due == 0:
            if args.json:
                terminal.json(
                    {
                        "before": before.isoformat(),
                        "dry_run": True,
                        "api_calls": calls_due,
                        "sessions": sessions_due,
                    }
                )
            elif calls_due + sessions_due == 0:
                terminal.show(f"nothing to prune before {when(before)} UTC")
            else:
                terminal.show(f"would delete {plan}; nothing deleted (dry run)")
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                raise CommandError(
                    f"would delete {plan}; pass --yes to delete, or --dry-run to only count"
                )
            answer = terminal.out.input(Text(f"delete {plan}? [y/N] "))  # no markup
            if answer.strip().lower() not in ("y", "yes"):
                terminal.show("nothing deleted")
                return 1
        calls_deleted = 0 if args.only == "sessions" else await store.cleanup_old_records(before)
        sessions_deleted = 0 if args.only == "calls" else await store.cleanup_old_sessions(before)
    if args.json:
        terminal.json(
            {
                "before": before.isoformat(),
                "dry_run": False,
                "api_calls": calls_deleted,
                "sessions": sessions_deleted,
            }
        )
    else:
        terminal.show(
            f"deleted {calls_deleted:,} API calls and {sessions_deleted:,} sessions "
            f"(with their messages) from before {when(before)} UTC"
        )
    return 0


async def demo(args: argparse.Namespace, terminal: Terminal) -> int:
    """Run the offline agent demo into the database."""
    from chatledger.cli.demo import run_demo  # the demo pulls in the agent and pricing

    await run_demo(database_url(args.db), terminal)
    return 0


async def ui(args: argparse.Namespace, terminal: Terminal) -> int:
    """Serve the web dashboard over the database until interrupted; 2 if it may not bind."""
    from chatledger.ui import UnsafeBindError, serve_async  # needs the ui extra
    from chatledger.ui.server import TOKEN_VARIABLE, check_exposure

    token = args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE) or None
    try:
        check_exposure(args.host, token)
    except UnsafeBindError as exc:
        terminal.err.print(f"chatledger ui: error: {exc}", markup=False, soft_wrap=True)
        return 2
    url = database_url(args.db)

    def ready(address: str) -> None:
        suffix = "?token=YOUR_TOKEN" if token is not None else ""
        terminal.err.print(
            f"chatledger ui: {redact(url)} at {address}{suffix} (Ctrl+C to stop)",
            markup=False,
            soft_wrap=True,
        )

    await serve_async(
        url,
        args.host,
        args.port,
        allow_delete=args.allow_delete,
        token=token,
        open_browser=args.open_browser,
        on_ready=ready,
    )
    return 0


Command = Callable[[argparse.Namespace, Terminal], Coroutine[Any, Any, int]]

COMMANDS: dict[str, Command] = {
    "demo": demo,
    "db upgrade": db_upgrade,
    "db status": db_status,
    "db rebuild-rollups": db_rebuild_rollups,
    "sessions": sessions,
    "show": show,
    "stats": stats,
    "calls": calls,
    "export": export,
    "prune": prune,
    "ui": ui,
}
"""Each command's function, by the words that name it."""


# --- erasure -------------------------------------------------------------------------------


def _erasure_summary(report: ErasureReport) -> str:
    """What an erasure deleted and anonymised, in words."""
    deleted = [
        _plural(report.sessions_deleted, "session"),
        _plural(report.messages_deleted, "message"),
    ]
    if report.tenant_id is not None:
        deleted += [
            _plural(report.providers_deleted, "provider"),
            _plural(report.agents_deleted, "agent"),
        ]
    return (
        f"{', '.join(deleted[:-1])} and {deleted[-1]} deleted; "
        f"{_plural(report.api_calls_anonymised, 'API call')} anonymised (tokens and cost kept)"
    )


async def erase(args: argparse.Namespace, terminal: Terminal) -> int:
    """Erase a user or a tenant with --yes; without it, count what would be erased."""
    async with _open(args) as store:
        if args.user is not None:
            subject = f"user {args.user}"
            report = await store.erase_user(args.user, dry_run=not args.yes)
        else:
            subject = f"tenant {args.tenant}"
            report = await store.erase_tenant(args.tenant, dry_run=not args.yes)
    if args.json:
        terminal.json({"database": redact(database_url(args.db)), **json_record(report)})
    elif report.records_touched == 0:
        terminal.show(f"nothing to erase: no record of {subject}")
    elif report.dry_run:
        terminal.show(f"erasing {subject} would leave {_erasure_summary(report)}")
        terminal.note("nothing changed: pass --yes to erase")
    else:
        terminal.show(f"erased {subject}: {_erasure_summary(report)}")
    return 0


COMMANDS["erase"] = erase


# --- row-level security (PostgreSQL) ------------------------------------------------------


async def db_enable_rls(args: argparse.Namespace, terminal: Terminal) -> int:
    """Put the tenant tables under PostgreSQL row-level security; say which tables."""
    return await _row_level_security(args, terminal, enable=True)


async def db_disable_rls(args: argparse.Namespace, terminal: Terminal) -> int:
    """Take the tenant tables off PostgreSQL row-level security; say which tables."""
    return await _row_level_security(args, terminal, enable=False)


async def _row_level_security(args: argparse.Namespace, terminal: Terminal, *, enable: bool) -> int:
    """Enable or disable row-level security on a PostgreSQL database; refuse other backends."""
    from chatledger.stores import backend_of
    from chatledger.stores.postgres import PostgresStore

    url = database_url(args.db)
    backend = backend_of(url)
    if backend != "postgresql":
        raise CommandError(
            f"row-level security is PostgreSQL's, and {redact(url)} is a {backend} database; "
            "keep tenants apart there with store.for_tenant(tenant_id)"
        )
    async with _open(args) as store:
        if not isinstance(store, PostgresStore):  # pragma: no cover  (the URL said PostgreSQL)
            raise CommandError(f"{redact(url)} did not open as a PostgreSQL database")
        if enable:
            tables = await store.enable_row_level_security()
        else:
            tables = await store.disable_row_level_security()
    if args.json:
        terminal.json({"database": redact(url), "row_level_security": enable, "tables": tables})
    elif enable:
        terminal.show(
            f"row-level security on {_plural(len(tables), 'table')} of {redact(url)}: a role "
            f"that does not own them sees only the tenant its "
            f"{PostgresStore.ROW_LEVEL_SECURITY_SETTING} setting names, and no row without one"
        )
    else:
        terminal.show(
            f"row-level security off {_plural(len(tables), 'table')} of {redact(url)}: "
            "every role with rights on them sees every tenant's rows"
        )
    return 0


COMMANDS["db enable-rls"] = db_enable_rls
COMMANDS["db disable-rls"] = db_disable_rls
