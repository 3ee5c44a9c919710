"""The ``chatledger`` command: inspect, analyse and export what agents did.

``chatledger sessions``, ``show``, ``stats``, ``calls``, ``export``, ``prune``,
``erase``, ``db upgrade`` / ``status`` / ``rebuild-rollups`` / ``enable-rls`` /
``disable-rls``, ``spool status`` / ``retry`` / ``drop``,
``import agents-sqlite`` / ``langchain-sql``, ``ui`` and ``demo``, on the database ``--db URL``
names (else ``$CHATLEDGER_DATABASE_URL``, else ``sqlite:///./chatledger.db``).
A mistake the user can fix — a bad URL, a server that does not answer, a
missing driver, a bad option — ends the command with one line on standard
error and exit status 1 (2 for a bad option or an ambiguous id prefix), never
a traceback.

Parsing imports only the grammar (:mod:`chatledger.cli.arguments`): the
commands, rich and the stores are imported once a command is to run, so
``--help`` and a usage error answer at once.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from chatledger.cli.arguments import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``chatledger`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    action = getattr(args, f"{args.command}_command", None)  # db, spool, import have actions
    name = args.command if action is None else f"{args.command} {action}"
    logging.basicConfig(level=logging.WARNING, format="chatledger: %(message)s")
    try:
        import rich  # noqa: F401  # the commands print through it
    except ImportError:
        sys.stderr.write(
            f"chatledger {name}: error: the command line needs rich: "
            "pip install 'chatledger[cli]'\n"
        )
        return 1

    import asyncio

    from chatledger.cli.commands import COMMANDS, CommandError, Terminal
    from chatledger.cli.importing import IMPORT_COMMANDS
    from chatledger.cli.spool import SPOOL_COMMANDS
    from chatledger.errors import PersistenceError

    terminal = Terminal()
    try:
        return asyncio.run({**COMMANDS, **SPOOL_COMMANDS, **IMPORT_COMMANDS}[name](args, terminal))
    except (CommandError, PersistenceError, ValueError, ImportError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _reader_went_away()
        # soft_wrap: one line however long, so scripts and people see it whole
        terminal.err.print(f"chatledger {name}: error: {exc}", markup=False, soft_wrap=True)
        return exc.status if isinstance(exc, CommandError) else 1
    except KeyboardInterrupt:
        if getattr(args, "follow", False):
            return 0  # Ctrl+C is how one stops following: not a failure
        terminal.err.print(f"chatledger {name}: interrupted", soft_wrap=True)
        return 130


def _reader_went_away() -> int:
    """The reader of standard output closed it (``| head``): stop quietly, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    return 141
