"""The command line's grammar: every command, its options, its help and its examples.

Values that need more than a type (times, durations, ids, statuses) are
parsed here too, so a bad value is refused by argparse with the option's
name before any database is opened. An id may be a unique prefix, as git
takes a commit's (:class:`IdPrefix`); the commands resolve it in the store.

Building the parser imports neither the entities nor the stores nor rich:
``chatledger --help`` and a mistyped option answer at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatledger.entities import ApiCallStatus, QueryFilter
    from chatledger.stores.base import RecordKind

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DATABASE_URL_VARIABLE",
    "EXPORT_KINDS",
    "GROUP_KEYS",
    "STATUSES",
    "IdPrefix",
    "build_parser",
    "database_url",
    "parse_id",
    "parse_time",
    "query_filter",
]

DEFAULT_DATABASE_URL = "sqlite:///./chatledger.db"
"""The database when neither ``--db`` nor ``$CHATLEDGER_DATABASE_URL`` names one."""

DATABASE_URL_VARIABLE = "CHATLEDGER_DATABASE_URL"

EXPORT_KINDS: dict[str, RecordKind] = {
    "sessions": "sessions",
    "messages": "messages",
    "api-calls": "api_calls",
}
"""What ``export`` accepts, by its command-line spelling."""

STATUSES = ("success", "failed", "timeout", "rate_limited", "cancelled")
"""``ApiCallStatus``'s values, spelled here so that the parser need not import the entities."""
GROUP_KEYS = ("model", "agent", "user", "tenant", "session", "status")
"""The stores' ``GROUP_BY_KEYS``, spelled here for the same reason."""
ID_PREFIX_SHORTEST = 4
"""The fewest hexadecimal digits an id prefix may have."""

_BUCKETS = ("hour", "day", "week", "month")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def database_url(given: str | None) -> str:
    """``--db`` if given, else ``$CHATLEDGER_DATABASE_URL``, else the SQLite file here.

    A bare path (no ``scheme://``) is taken for an SQLite file.
    """
    url = given or os.environ.get(DATABASE_URL_VARIABLE) or DEFAULT_DATABASE_URL
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A moment from ``7d`` / ``12h`` / ``30m`` / ``2w`` ago, ``now``, or an ISO 8601 date or time.

    A date or time without a zone is taken as UTC.
    """
    now = now or datetime.now(UTC)
    if text.strip().lower() == "now":
        return now
    match = _DURATION.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2).lower()
        return now - timedelta(seconds=amount * _UNITS[unit])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use an age like 30m, 12h, 7d or 2w, "
            "or an ISO date or time like 2026-11-01 or 2026-11-01T09:30"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class IdPrefix:
    """The first hexadecimal digits of an id (dashes left out), as typed for a whole one."""

    digits: str

    def matches(self, value: uuid.UUID) -> bool:
        """Whether ``value`` starts with these digits."""
        return value.hex.startswith(self.digits)

    def __str__(self) -> str:
        return self.digits


def parse_id(text: str) -> uuid.UUID | IdPrefix:
    """A whole UUID, or a prefix of one: at least four hexadecimal digits, dashes allowed."""
    text = text.strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    digits = text.replace("-", "").lower()
    hexadecimal = all(c in "0123456789abcdef" for c in digits)
    if hexadecimal and ID_PREFIX_SHORTEST <= len(digits) < 32:
        return IdPrefix(digits)
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a UUID, nor the start of one (at least {ID_PREFIX_SHORTEST} "
        "hexadecimal digits)"
    )


def _status(text: str) -> ApiCallStatus:
    from chatledger.entities import ApiCallStatus

    try:
        return ApiCallStatus(text.strip().lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a status; choose from {', '.join(STATUSES)}"
        ) from None


def _kept_since(text: str) -> datetime:
    """The cutoff ``prune --keep DURATION`` means: that long before now."""
    from chatledger.recording.retention import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the smallest allowed, {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{value} is not between 0.05 and 3600 seconds")
    return value


def _identifier(text: str) -> str:
    if not _IDENTIFIER.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a table or column name (letters, digits, _; schema.name allowed)"
        )
    return text


def _group_keys(text: str) -> list[str]:
    keys = [key.strip().lower() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in GROUP_KEYS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"{text!r}: group by a comma-separated list of {', '.join(GROUP_KEYS)}"
        )
    return list(dict.fromkeys(keys))


def query_filter(args: argparse.Namespace) -> QueryFilter:
    """The ``QueryFilter`` the filter options of ``args`` describe (those a command has).

    Id prefixes must have been resolved to whole ids first.
    """
    from chatledger.entities import QueryFilter

    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None and since >= until:
        raise ValueError(
            f"--since ({since:%Y-%m-%d %H:%M:%S}) must be before --until "
            f"({until:%Y-%m-%d %H:%M:%S}) UTC"
        )
    return QueryFilter(
        tenant_id=getattr(args, "tenant", None),
        user_id=getattr(args, "user", None),
        agent_id=getattr(args, "agent", None),
        session_id=getattr(args, "session", None),
        start_time=since,
        end_time=until,
        status=getattr(args, "status", None),
        model_name=getattr(args, "model", None),
    )


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions to the terminal but keeps the examples' lines as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=min(_terminal_width(), 100))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _terminal_width() -> int:
    try:
        return int(os.environ.get("COLUMNS", "")) or 80
    except ValueError:
        return 80


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


_DB_HELP = (
    "database URL: sqlite:///path.db, postgresql://user@host/db, mysql://user@host/db, "
    f"or an SQLite file path (default: ${DATABASE_URL_VARIABLE}, else {DEFAULT_DATABASE_URL})"
)


def _common(parser: argparse.ArgumentParser, *, json: bool = True) -> None:
    # SUPPRESS: a value given before the command must survive the subparser's defaults.
    parser.add_argument("--db", metavar="URL", default=argparse.SUPPRESS, help=_DB_HELP)
    if json:
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts instead of a table"
        )


def _filters(parser: argparse.ArgumentParser, *, calls: bool) -> None:
    """The filter options; ``calls`` adds those only API calls have (model, status)."""
    group = parser.add_argument_group("filters")
    group.add_argument("--tenant", type=parse_id, metavar="ID", help="only this tenant")
    group.add_argument("--user", type=parse_id, metavar="ID", help="only this user")
    group.add_argument("--agent", type=parse_id, metavar="ID", help="only this agent")
    if not calls:
        return
    group.add_argument("--session", type=parse_id, metavar="ID", help="only this session")
    group.add_argument("--model", metavar="NAME", help="only this model, e.g. gpt-4o-mini")
    group.add_argument(
        "--status",
        type=_status,
        metavar="STATUS",
        help=f"only this outcome: {', '.join(STATUSES)}",
    )
    _time_filters(group)


def _time_filters(group: Any) -> None:
    group.add_argument(
        "--since", type=parse_time, metavar="WHEN", help="from this time on: 7d, 12h, 2026-11-01"
    )
    group.add_argument(
        "--until", type=parse_time, metavar="WHEN", help="before this time: 1d, 2026-11-20T12:00"
    )


def _page(parser: argparse.ArgumentParser, limit: int) -> None:
    parser.add_argument(
        "--limit", type=_count(1), default=limit, metavar="N", help=f"show N rows (default {limit})"
    )
    parser.add_argument(
        "--offset", type=_count(0), default=0, metavar="N", help="skip the first N rows"
    )


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from importlib import metadata

        sys.stdout.write(f"chatledger {metadata.version('chatledger')}\n")
        parser.exit()


class _PrintCompletion(argparse.Action):
    """``--print-completion SHELL``: the completion script made from this very parser."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, *args: Any
    ) -> None:
        from chatledger.cli.completion import completion_script

        sys.stdout.write(completion_script(parser, values))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``chatledger`` parser with every command."""
    parser = argparse.ArgumentParser(
        prog="chatledger",
        formatter_class=_Formatter,
        description=(
            "Inspect, analyse and export what LLM agents said and spent: the sessions, "
            "messages and API-call ledger chatledger keeps."
        ),
        epilog=_examples(
            "chatledger demo                        # record an offline agent into ./chatledger.db",
            "chatledger sessions",
            "chatledger show latest",
            "chatledger stats --since 7d --by model",
            "chatledger --db postgresql://app@db/app calls --status rate_limited",
        )
        + "\n\nRun 'chatledger COMMAND --help' for a command's options.",
    )
    parser.add_argument("--db", metavar="URL", help=_DB_HELP)
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print chatledger's version and exit"
    )
    parser.add_argument(
        "--print-completion",
        action=_PrintCompletion,
        choices=("bash", "zsh"),
        metavar="SHELL",
        help="print a completion script for bash or zsh and exit: "
        'eval "$(chatledger --print-completion bash)" in ~/.bashrc',
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, *examples: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=_examples(*examples),
            formatter_class=_Formatter,
        )

    demo = command(
        "demo",
        "record an offline agent conversation over three sessions, then show its usage",
        "chatledger demo",
        "chatledger demo --db postgresql://postgres@127.0.0.1/test",
    )
    _common(demo, json=False)

    db = command(
        "db",
        "create, upgrade or inspect the database schema",
        "chatledger db upgrade",
        "chatledger db status --db postgresql://app@db/app",
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="create the tables, or bring them to this version's schema",
        description="Create chatledger's tables, or migrate them to this version's schema. "
        "Safe to run again; concurrent runs wait for each other.",
        epilog=_examples("chatledger db upgrade", "chatledger db upgrade --db mysql://root@db/app"),
        formatter_class=_Formatter,
    )
    _common(upgrade)
    status = db_commands.add_parser(
        "status",
        help="the schema version and how many records each table holds",
        description="Show the schema version (without changing it) and the record counts.",
        epilog=_examples("chatledger db status", "chatledger db status --json"),
        formatter_class=_Formatter,
    )
    _common(status)
    rebuild = db_commands.add_parser(
        "rebuild-rollups",
        help="recount from the API calls the usage rollups that statistics read",
        description="Recount the usage rollups (what statistics and the dashboard read "
        "instead of every API call) from the API calls, a week of calls at a time. Every "
        "write through chatledger keeps them current: run this after writing or deleting "
        "API calls by other means (your own SQL, MoFA). Writers may go on meanwhile.",
        epilog=_examples(
            "chatledger db rebuild-rollups",
            "chatledger db rebuild-rollups --db postgresql://app@db/app",
        ),
        formatter_class=_Formatter,
    )
    _common(rebuild)
    # -- row-level security (PostgreSQL): tenants kept apart by the database -----------------
    for action, summary, description in (
        (
            "enable-rls",
            "keep tenants apart in PostgreSQL: row-level security on chatledger's tables",
            "Put chatledger's tables under PostgreSQL row-level security: a role that does "
            "not own them then sees and writes only the rows of the tenant its "
            "chatledger.tenant_id setting names, and no row without one. The tables' owner "
            "(chatledger's own store) is not bound. Safe to run again. PostgreSQL only; "
            "run it as the tables' owner.",
        ),
        (
            "disable-rls",
            "take chatledger's tables off PostgreSQL row-level security",
            "Drop the policies 'db enable-rls' made: every role with rights on the tables "
            "sees every tenant's rows again. Safe to run again. PostgreSQL only.",
        ),
    ):
        rls = db_commands.add_parser(
            action,
            help=summary,
            description=description,
            epilog=_examples(
                f"chatledger db {action} --db postgresql://owner@db/app",
                f"chatledger db {action} --json",
            ),
            formatter_class=_Formatter,
        )
        _common(rls)

    sessions = command(
        "sessions",
        "list sessions, most recently active first",
        "chatledger sessions",
        "chatledger sessions --user 0192f1c2-7a4e-7c33-9d1e-4b2a8c3d5e6f --limit 50",
        "chatledger sessions --since 1d --json",
    )
    _common(sessions)
    _filters(sessions, calls=False)
    _time_filters(sessions.add_argument_group("last activity"))
    _page(sessions, 20)

    show = command(
        "show",
        "print one session's conversation with each turn's model, tokens, cost and latency",
        "chatledger show latest",
        "chatledger show 0192f1c2-7a4e-7c33-9d1e-4b2a8c3d5e6f --last 10",
        "chatledger show 0192f1c27a4e      # a unique start of an id is enough",
    )
    show.add_argument(
        "session",
        metavar="SESSION",
        help="a session id or a unique start of one (01a22a5e-91fb), or 'latest' for the "
        "last active session",
    )
    show.add_argument("--last", type=_count(1), metavar="N", help="only the newest N messages")
    _common(show)

    stats = command(
        "stats",
        "usage totals, or broken down by model, agent, user, tenant, session, status and time",
        "chatledger stats --since 7d",
        "chatledger stats --since 30d --by model,status",
        "chatledger stats --since 2026-11-01 --until 2026-12-01 --bucket day --json",
        "chatledger stats --since 30d --bucket day --chart",
    )
    _common(stats)
    _filters(stats, calls=True)
    breakdown = stats.add_argument_group("breakdown")
    breakdown.add_argument(
        "--by",
        type=_group_keys,
        default=[],
        metavar="KEYS",
        help=f"group by any of {','.join(GROUP_KEYS)}",
    )
    breakdown.add_argument(
        "--bucket", choices=_BUCKETS, help="one row per UTC hour, day, week or month"
    )
    breakdown.add_argument(
        "--chart",
        nargs="?",
        const="cost",
        choices=("cost", "calls", "tokens"),
        metavar="WHAT",
        help="draw the breakdown as bars of cost (the default), calls or tokens; "
        "needs --bucket or --by",
    )

    calls = command(
        "calls",
        "the API-call ledger, newest first; failed calls in red",
        "chatledger calls",
        "chatledger calls --status rate_limited --since 1d",
        "chatledger calls --model gpt-4o --limit 100 --json",
        "chatledger calls --follow --status failed",
    )
    _common(calls)
    _filters(calls, calls=True)
    _page(calls, 20)
    calls.add_argument(
        "--follow",
        action="store_true",
        help="the newest --limit calls oldest first, then each new call as it is recorded, "
        "until Ctrl+C",
    )
    calls.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="with --follow, how often to look for new calls (default 1)",
    )

    export = command(
        "export",
        "write sessions, messages or API calls as JSON lines or CSV, streamed",
        "chatledger export api-calls -o calls.jsonl",
        "chatledger export messages --since 7d --format csv -o messages.csv.gz",
        "chatledger export sessions --since 1d | jq .title",
    )
    export.add_argument(
        "kind", choices=list(EXPORT_KINDS), metavar="KIND", help="sessions, messages or api-calls"
    )
    export.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        help="jsonl (one JSON object per line, the default) or csv; "
        "by default taken from the output file's name",
    )
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write here instead of standard output (.gz compresses); "
        "written to FILE.partial and renamed when complete",
    )
    export.add_argument("--force", action="store_true", help="replace FILE if it exists")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(export, json=False)
    _filters(export, calls=True)

    prune = command(
        "prune",
        "delete API calls made before a time and sessions inactive since then",
        "chatledger prune --before 90d --dry-run",
        "chatledger prune --keep 90d --yes",
        "chatledger prune --before 2026-01-01 --only calls --yes",
    )
    cutoff = prune.add_mutually_exclusive_group(required=True)
    cutoff.add_argument(
        "--before",
        type=parse_time,
        metavar="WHEN",
        help="the cutoff: 90d, 2026-01-01",
    )
    cutoff.add_argument(
        "--keep",
        dest="before",
        type=_kept_since,
        metavar="DURATION",
        help="keep this much history and prune the rest: 90d, 12h, 2w (the same as "
        "--before 90d; see docs/erasure.md to prune on a schedule)",
    )
    prune.add_argument(
        "--only",
        choices=("calls", "sessions"),
        help="prune only API calls, or only sessions (with their messages)",
    )
    prune.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    prune.add_argument("--yes", action="store_true", help="delete without asking")
    _common(prune)

    erase = command(
        "erase",
        "erase a user's or a tenant's sessions and messages; their API calls stay, anonymised",
        "chatledger erase --user 0192f1c2-7a4e-7c33-9d1e-4b2a8c3d5e6f",
        "chatledger erase --user 0192f1c2-7a4e-7c33-9d1e-4b2a8c3d5e6f --yes",
        "chatledger erase --tenant 0192f1c2-7a4e-7c33-9d1e-4b2a8c3d5e6f --yes --json",
    )
    erase.description = (
        "Erase a user (every session of theirs with its messages, and their messages in "
        "other sessions) or a tenant (every session and message of it, its providers and "
        "agents), in one transaction. API calls stay in the ledger, anonymised: no user, "
        "session or message ids, no error text; tokens, cost, model, agent and tenant "
        "kept, so usage totals still add up. Without --yes it only counts what would go."
    )
    whose = erase.add_mutually_exclusive_group(required=True)
    whose.add_argument("--user", type=parse_id, metavar="ID", help="the user to erase")
    whose.add_argument(
        "--tenant",
        type=parse_id,
        metavar="ID",
        help="the tenant to erase: all of its users' records, its providers and agents",
    )
    erase.add_argument(
        "--yes", action="store_true", help="erase; without it, only say what would be erased"
    )
    _common(erase)

    _spool_commands(command)
    _import_commands(command)
    _ui_command(command)
    return parser


def _port(text: str) -> int:
    port = _count(0)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def _ui_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``ui``: the local web dashboard (needs the ui extra)."""
    ui = command(
        "ui",
        "serve a local web dashboard: usage over time, calls, sessions with their "
        "conversations, and a live view (needs pip install 'chatledger[ui]')",
        "chatledger ui",
        "chatledger ui --db postgresql://app@db/app --open",
        "CHATLEDGER_UI_TOKEN=$(openssl rand -hex 16) chatledger ui --host 0.0.0.0",
    )
    _common(ui, json=False)
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this machine only); "
        "any other needs a token",
    )
    ui.add_argument("--port", type=_port, default=8765, metavar="N", help="the port (default 8765)")
    ui.add_argument(
        "--open", dest="open_browser", action="store_true", help="open it in a web browser"
    )
    ui.add_argument(
        "--allow-delete",
        action="store_true",
        help="let the dashboard delete sessions (it is read-only without this)",
    )
    ui.add_argument(
        "--token",
        metavar="TOKEN",
        help="require this token: open the dashboard once at /?token=TOKEN, or send "
        "'Authorization: Bearer TOKEN' (default: $CHATLEDGER_UI_TOKEN)",
    )


_SPOOL_DIR_HELP = (
    "where spools live (default: $CHATLEDGER_SPOOL_DIR, else "
    "$XDG_STATE_HOME/chatledger/spool); each database has a directory of its own in it"
)


def _spool_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``spool status``, ``spool retry`` and ``spool drop``."""
    spool = command(
        "spool",
        "show the records waiting in the local spool and handle its dead letters",
        "chatledger spool status",
        "chatledger spool retry",
        "chatledger spool drop --seq 12 --yes",
    )
    actions = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)

    def action(name: str, summary: str, description: str, *examples: str) -> Any:
        parser = actions.add_parser(
            name,
            help=summary,
            description=description,
            epilog=_examples(*examples),
            formatter_class=_Formatter,
        )
        _common(parser)
        parser.add_argument("--spool-dir", metavar="DIR", help=_SPOOL_DIR_HELP)
        return parser

    action(
        "status",
        "each spool file's owner, records waiting and dead letters",
        "Show the spool files of the database: whether the process that wrote each "
        "still runs, how many records wait to be shipped, and the dead letters (records "
        "the store refused for good) with the reason. --json adds each dead letter's record.",
        "chatledger spool status",
        "chatledger spool status --db postgresql://app@db/app --json",
        "chatledger spool status --spool-dir /var/lib/app/spool",
    )
    for name, summary, description, examples in (
        (
            "retry",
            "ship dead letters into the store again, and what ended processes left",
            "Ship dead letters (all, or those --seq names) into the store again, once "
            "whatever made the store refuse them is fixed; each refused again stays a dead "
            "letter with the new reason, and the status is then 1. Records that processes "
            "which have ended left waiting are shipped too.",
            (
                "chatledger spool retry",
                "chatledger spool retry --seq 12 --seq 13",
                "chatledger spool retry --file 4242-0a1b2c3d4e5f.spool --json",
            ),
        ),
        (
            "drop",
            "delete dead letters for good",
            "Delete dead letters (all, or those --seq names) for good. Asks first on a "
            "terminal; elsewhere it needs --yes. --dry-run only counts.",
            (
                "chatledger spool drop --dry-run",
                "chatledger spool drop --seq 12 --yes",
                "chatledger spool drop --file 4242-0a1b2c3d4e5f.spool --yes --json",
            ),
        ),
    ):
        parser = action(name, summary, description, *examples)
        parser.add_argument(
            "--seq",
            type=_count(1),
            action="append",
            metavar="N",
            help="only the dead letter numbered N (as 'spool status' shows it); repeatable",
        )
        parser.add_argument(
            "--file",
            metavar="NAME",
            help="only the spool file NAME (as 'spool status' shows it)",
        )
        if name == "drop":
            parser.add_argument(
                "--dry-run", action="store_true", help="count what would go; drop nothing"
            )
            parser.add_argument("--yes", action="store_true", help="drop without asking")


def _import_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``import agents-sqlite`` and ``import langchain-sql``."""
    importing = command(
        "import",
        "copy a framework's stored conversations (Agents SDK, LangChain) into chatledger",
        "chatledger import agents-sqlite conversations.db",
        "chatledger import langchain-sql postgresql://app@db/app --table message_store",
    )
    sources = importing.add_subparsers(dest="import_command", metavar="SOURCE", required=True)
    agents = sources.add_parser(
        "agents-sqlite",
        help="the OpenAI Agents SDK's SQLiteSession file, or a SQLAlchemySession database",
        description="Copy every session of the OpenAI Agents SDK's SQLiteSession file (or, "
        "given a URL, of a SQLAlchemySession database) into chatledger, through "
        "chatledger's ChatledgerSession under the same session ids: every item comes back "
        "exactly. A session chatledger already holds is skipped unless --append is given.",
        epilog=_examples(
            "chatledger import agents-sqlite conversations.db",
            "chatledger import agents-sqlite conversations.db --dry-run",
            "chatledger import agents-sqlite postgresql://app@db/app --db postgresql://app@db/ledger",
        ),
        formatter_class=_Formatter,
    )
    agents.add_argument(
        "source", metavar="PATH_OR_URL", help="an SQLite file, sqlite:///PATH, or a server URL"
    )
    agents.add_argument(
        "--sessions-table",
        type=_identifier,
        default="agent_sessions",
        metavar="NAME",
        help="the sessions table (default agent_sessions)",
    )
    agents.add_argument(
        "--messages-table",
        type=_identifier,
        default="agent_messages",
        metavar="NAME",
        help="the items table (default agent_messages)",
    )
    langchain = sources.add_parser(
        "langchain-sql",
        help="LangChain's SQLChatMessageHistory table",
        description="Copy every session of LangChain's SQLChatMessageHistory table (an SQLite "
        "file or a database URL) into chatledger, through chatledger's "
        "ChatledgerChatMessageHistory under the same session ids: every message comes back "
        "exactly. A session chatledger already holds is skipped unless --append is given.",
        epilog=_examples(
            "chatledger import langchain-sql chat_history.db",
            "chatledger import langchain-sql postgresql://app@db/app --table message_store",
        ),
        formatter_class=_Formatter,
    )
    langchain.add_argument(
        "source", metavar="PATH_OR_URL", help="an SQLite file, sqlite:///PATH, or a server URL"
    )
    langchain.add_argument(
        "--table",
        type=_identifier,
        default="message_store",
        metavar="NAME",
        help="the history table (default message_store)",
    )
    langchain.add_argument(
        "--session-column",
        type=_identifier,
        default="session_id",
        metavar="NAME",
        help="the column holding the session id (default session_id)",
    )
    for parser in (agents, langchain):
        parser.add_argument(
            "--append",
            action="store_true",
            help="also import sessions chatledger already holds, after their messages",
        )
        parser.add_argument("--dry-run", action="store_true", help="read and count; write nothing")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        owners = parser.add_argument_group("owners of the imported sessions (UUIDs or keys)")
        owners.add_argument("--tenant", metavar="ID", help="the tenant")
        owners.add_argument("--user", metavar="ID", help="the user")
        owners.add_argument("--agent", metavar="ID", help="the agent")
        _common(parser)
