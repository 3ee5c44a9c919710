"""``chatledger spool status|retry|drop``: what waits in the local spool, and its dead letters.

Recorders append each record to a spool file of their own (one per process)
in the database's spool directory before it ships to the store; a record the
store refuses for good is moved to that file's dead letters. These commands
open the store only to find that directory (and, for ``retry``, to ship to
it); they never change the schema.

Dead letters are numbered within their spool file (``seq``), so ``--seq``
names one in whichever file holds it, and ``--file`` says which when two do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from chatledger.cli.arguments import database_url
from chatledger.cli.commands import CommandError, Terminal, _open, _plural
from chatledger.cli.render import dead_letters_table, spool_files_table
from chatledger.stores.urls import redact

if TYPE_CHECKING:
    from chatledger.recording.spool import DeadLetter, SpoolDirectory, SpoolReport
    from chatledger.stores.base import PersistenceStore

__all__ = ["SPOOL_COMMANDS", "spool_drop", "spool_retry", "spool_status"]

_ENDED = "ended — ships when a recorder starts"
_KINDS = ("session", "message", "call")
_KIND_NOUNS = {"session": "session", "message": "message", "call": "API call"}


@dataclass(slots=True)
class _SpoolFile:
    """One file of the spool directory as the commands see it."""

    path: Path
    report: SpoolReport | None  # None when it cannot be read
    problem: str | None = None  # why it cannot be read (damaged)
    set_aside: bool = False  # a *.damaged-* file a recorder moved aside

    @property
    def state(self) -> str:
        if self.report is None:
            return "damaged"
        return "running" if self.report.owner_alive else "ended"

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [] if self.report is None else self.report.dead_letters

    def matches(self, name: str) -> bool:
        """True when ``name`` is this file's name, with or without ``.spool``."""
        return name in (self.path.name, self.path.stem)


def _spool_directory(args: argparse.Namespace, store: PersistenceStore) -> Path:
    """The directory of ``store``'s spools under ``--spool-dir`` (else the default root)."""
    from chatledger.recording.recorder import spool_directory_for
    from chatledger.recording.spool import default_spool_root

    root = Path(args.spool_dir).expanduser() if args.spool_dir else default_spool_root()
    return spool_directory_for(store, root).resolve()  # as a Recorder(spool="auto") finds it


def _located(args: argparse.Namespace) -> Path:
    """The spool directory of the database the arguments name, found without connecting.

    The spool matters most while the database is down, so status and drop never need it.
    """
    from chatledger.recording.recorder import spool_directory_for_url
    from chatledger.recording.spool import default_spool_root

    root = Path(args.spool_dir).expanduser() if args.spool_dir else default_spool_root()
    try:
        directory = spool_directory_for_url(database_url(args.db), root)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if directory is None:  # a database of one process: it never has a spool
        return root / "no-spool-for-this-database"
    return directory.resolve()


def _survey(directory: Path) -> list[_SpoolFile]:
    """Every spool file in ``directory`` (those set aside as damaged last), read, never changed."""
    from chatledger.recording.spool import SpoolDirectory, SpoolError, report_spool

    found: list[_SpoolFile] = []
    for path in SpoolDirectory(directory).files():
        try:
            found.append(_SpoolFile(path, report_spool(path)))
        except SpoolError as exc:
            found.append(_SpoolFile(path, None, str(exc)))
    if directory.is_dir():
        set_aside = sorted(directory.glob(f"*{SpoolDirectory.SUFFIX}.damaged-*"))
        found.extend(
            _SpoolFile(path, None, "a recorder could not read it and set it aside", set_aside=True)
            for path in set_aside
            if not path.name.endswith(("-wal", "-shm"))
        )
    return found


def _only_file(files: list[_SpoolFile], name: str | None) -> list[_SpoolFile]:
    """``files``, or only the one ``--file`` names."""
    if name is None:
        return files
    chosen = [f for f in files if f.matches(name)]
    if not chosen:
        raise CommandError(
            f"no spool file {name!r} for this database; see 'chatledger spool status'"
        )
    return chosen


def _chosen_letters(
    files: list[_SpoolFile], seqs: Sequence[int] | None, name: str | None
) -> dict[Path, list[DeadLetter]]:
    """The dead letters ``--seq`` and ``--file`` choose (all when neither), by spool file."""
    files = _only_file(files, name)
    if not seqs:
        return {f.path: f.dead_letters for f in files if f.dead_letters}
    chosen: dict[Path, list[DeadLetter]] = {}
    for seq in dict.fromkeys(seqs):
        holders = [(f, d) for f in files for d in f.dead_letters if d.seq == seq]
        if not holders:
            where = f"the spool file {name}" if name else "the spool"
            raise CommandError(f"no dead letter {seq} in {where}; see 'chatledger spool status'")
        if len(holders) > 1:
            names = ", ".join(f.path.name for f, _ in holders)
            raise CommandError(
                f"dead letter {seq} is in {len(holders)} spool files ({names}); "
                "say which with --file NAME"
            )
        holder, letter = holders[0]
        chosen.setdefault(holder.path, []).append(letter)
    return chosen


def _failed_at(letter: DeadLetter) -> datetime | None:
    try:
        moment = datetime.fromisoformat(letter.failed_at)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _letter_json(letter: DeadLetter, *, body: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "seq": letter.seq,
        "kind": letter.kind,
        "failed_at": letter.failed_at,
        "error": letter.error,
    }
    if body:
        data["body"] = letter.body  # the record's JSON, exactly as it waits
    return data


def _letters_table(letters: Sequence[DeadLetter], title: str) -> Table:
    return dead_letters_table([(d.seq, d.kind, _failed_at(d), d.error) for d in letters], title)


# --- status --------------------------------------------------------------------------------


async def spool_status(args: argparse.Namespace, terminal: Terminal) -> int:
    """One row per spool file (owner, records waiting, dead letters), then the dead letters."""
    directory = _located(args)
    files = _survey(directory)
    waiting = sum(f.report.waiting for f in files if f.report is not None)
    dead = sum(len(f.dead_letters) for f in files)
    if args.json:
        terminal.json(
            {
                "database": redact(database_url(args.db)),
                "spool_directory": str(directory),
                "waiting": waiting,
                "dead_letters": dead,
                "spools": [
                    {
                        "file": f.path.name,
                        "path": str(f.path),
                        "state": f.state,
                        "owner_alive": None if f.report is None else f.report.owner_alive,
                        "waiting": None if f.report is None else f.report.waiting,
                        "dead_letters": [_letter_json(d) for d in f.dead_letters],
                        "error": f.problem,
                    }
                    for f in files
                ],
            }
        )
        return 0
    if not files:
        terminal.show("no spool for this database")
        terminal.note(f"spool directory: {directory}")
        return 0
    rows: list[tuple[str, str | Text, str, str]] = []
    for f in files:
        if f.report is None:
            state = "damaged, set aside" if f.set_aside else "damaged"
            rows.append((f.path.name, Text(state, style="red"), "-", "-"))
            continue
        owner = "running" if f.report.owner_alive else _ENDED
        rows.append((f.path.name, owner, f"{f.report.waiting:,}", f"{len(f.dead_letters):,}"))
    terminal.show(spool_files_table(rows))
    for f in files:
        if f.problem is not None and not f.set_aside:
            terminal.show(Text(f"{f.path.name}: {f.problem}", style="red"))
    for f in files:
        if f.dead_letters:
            terminal.show("")
            terminal.show(_letters_table(f.dead_letters, f"Dead letters in {f.path.name}"))
    terminal.show("")
    summary = f"{_plural(waiting, 'record')} waiting, {_plural(dead, 'dead letter')}"
    terminal.note(f"{summary}; spool directory: {directory}")
    if dead:
        terminal.note(
            "'chatledger spool retry' ships the dead letters again; "
            "'chatledger spool drop' deletes them"
        )
    return 0


# --- retry ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _ShipperLog:
    """What the shipper would have logged about records this command reports itself."""

    unreachable: list[str] = field(default_factory=list)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "refuses a" in message and "for good" in message:
            return False  # a dead letter refused again: in the command's report
        if record.levelno == logging.WARNING and "will retry" in message:
            args = record.args
            reason = args[-1] if isinstance(args, tuple) and args else message
            self.unreachable.append(str(reason))
            return False
        return True  # anything unexpected (with its traceback) is still shown


@contextmanager
def _shipper_log() -> Iterator[_ShipperLog]:
    log = _ShipperLog()
    logger = logging.getLogger("chatledger.recording.shipper")
    logger.addFilter(log.filter)
    try:
        yield log
    finally:
        logger.removeFilter(log.filter)


@dataclass(slots=True)
class _Retried:
    """What ``retry`` did."""

    tried: int = 0
    stored: int = 0
    refused: list[tuple[Path, DeadLetter]] = field(default_factory=list)
    not_tried: int = 0  # the store stopped taking records before these were tried
    shipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_KINDS, 0))
    ended_spools: int = 0
    still_waiting: int = 0
    newly_dead: int = 0  # waiting records of ended spools the store refused for good
    skipped: list[str] = field(default_factory=list)  # damaged, or another database's
    unreachable: str | None = None


async def _retry_letters(
    store: PersistenceStore, chosen: dict[Path, list[DeadLetter]], done: _Retried
) -> None:
    """Ship the chosen dead letters, file by file; note which the store refuses again."""
    from chatledger.recording.recorder import store_identity
    from chatledger.recording.shipper import ShipCounters, Shipper
    from chatledger.recording.spool import DeadLetterQueue, SpoolError, report_spool

    mine = store_identity(store)
    for path, letters in chosen.items():
        theirs = _spool_identity(path)
        if theirs not in (None, mine):
            done.skipped.append(_foreign(path, theirs))
            continue
        done.tried += len(letters)
        if done.unreachable is not None:
            done.not_tried += len(letters)
            continue
        seqs = [d.seq for d in letters]
        try:
            queue = DeadLetterQueue(path, seqs)
            try:
                reached = await Shipper(store, ShipCounters()).ship(queue)
            finally:
                queue.close()
            after = {d.seq: d for d in report_spool(path).dead_letters}
        except sqlite3.Error as exc:
            raise CommandError(f"cannot change the spool {path}: {exc}") from None
        except SpoolError as exc:
            raise CommandError(str(exc)) from None
        for letter in letters:
            now = after.get(letter.seq)
            if now is None:
                done.stored += 1
            elif now.failed_at != letter.failed_at:  # tried, and buried again
                done.refused.append((path, now))
            else:
                done.not_tried += 1
        if not reached:
            done.unreachable = "the store stopped taking records"


def _spool_identity(path: Path) -> str | None:
    """The database a spool file's records are for, as its recorder wrote it (None: unsaid)."""
    from chatledger.recording.spool import SpoolError, report_spool

    try:
        return report_spool(path).database
    except SpoolError:
        return None


def _foreign(path: Path, identity: str | None) -> str:
    return f"{path.name} holds records for another database ({identity}); not shipped here"


async def _ship_ended(
    store: PersistenceStore, directory: Path, only: set[Path] | None, done: _Retried
) -> None:
    """Ship what spools whose owner ended still hold; remove those left empty."""
    from chatledger.recording.recorder import store_identity
    from chatledger.recording.shipper import ShipCounters, Shipper
    from chatledger.recording.spool import FileSpool, SpoolDirectory, SpoolError, report_spool

    mine = store_identity(store)
    spools = SpoolDirectory(directory)
    counters = ShipCounters()
    shipper = Shipper(store, counters)
    for path, release in spools.orphans():  # each locked: no recorder adopts it meanwhile
        try:
            if only is not None and path not in only:
                continue
            try:
                report = report_spool(path)
            except SpoolError as exc:
                done.skipped.append(str(exc))
                continue
            if report.waiting and done.unreachable is None:
                try:
                    spool = await asyncio.to_thread(FileSpool, path)
                except SpoolError as exc:
                    done.skipped.append(str(exc))
                    continue
                if spool.identity not in (None, mine):  # never ship to another database
                    await asyncio.to_thread(spool.close)
                    done.skipped.append(_foreign(path, spool.identity))
                    continue
                done.ended_spools += 1
                try:
                    if not await shipper.ship(spool):
                        done.unreachable = "the store stopped taking records"
                finally:
                    await asyncio.to_thread(spool.close)
                report = report_spool(path)
            done.still_waiting += report.waiting
            if not report.waiting and not report.dead_letters:
                spools.remove(path)  # emptied by this retry or an earlier one
        finally:
            release()
    for kind in _KINDS:
        done.shipped[kind] += counters.shipped[kind]
    done.newly_dead = counters.dead_letters


async def spool_retry(args: argparse.Namespace, terminal: Terminal) -> int:
    """Ship dead letters into the store again, and what ended processes left waiting."""
    done = _Retried()
    async with _open(args) as store:  # records go in: the schema must be current
        directory = _spool_directory(args, store)
        files = _survey(directory)
        chosen = _chosen_letters(files, args.seq, args.file)
        only = None if args.file is None else {f.path for f in _only_file(files, args.file)}
        with _shipper_log() as log:
            await _retry_letters(store, chosen, done)
            await _ship_ended(store, directory, only, done)
        if done.unreachable is not None and log.unreachable:
            done.unreachable = log.unreachable[-1]
    shipped = sum(done.shipped.values())
    if args.json:
        terminal.json(
            {
                "database": redact(database_url(args.db)),
                "spool_directory": str(directory),
                "dead_letters": {
                    "retried": done.tried,
                    "stored": done.stored,
                    "refused_again": [
                        {"file": path.name, **_letter_json(d, body=False)}
                        for path, d in done.refused
                    ],
                    "not_tried": done.not_tried,
                },
                "ended_spools": {
                    "spools": done.ended_spools,
                    "shipped": done.shipped,
                    "dead_letters": done.newly_dead,
                    "still_waiting": done.still_waiting,
                    "skipped": done.skipped,
                },
                "store_unreachable": done.unreachable,
            }
        )
    elif done.tried == 0 and done.ended_spools == 0 and not done.skipped:
        terminal.show("nothing to retry: no dead letters, and no records left by ended processes")
    else:
        _show_retried(terminal, done, shipped)
    problem = _retry_problem(done)
    if problem is not None:
        raise CommandError(problem)
    return 0


def _show_retried(terminal: Terminal, done: _Retried, shipped: int) -> None:
    if done.tried:
        refused = len(done.refused)
        text = (
            f"retried {_plural(done.tried, 'dead letter')}: {done.stored:,} stored, "
            f"{refused:,} refused again"
        )
        terminal.show(text + (f", {done.not_tried:,} not tried" if done.not_tried else ""))
    if done.ended_spools:
        kinds = ", ".join(
            _plural(count, _KIND_NOUNS[kind]) for kind, count in done.shipped.items() if count
        )
        text = (
            f"shipped {_plural(shipped, 'record')} ({kinds or 'none'}) left by "
            f"{done.ended_spools:,} ended process{'' if done.ended_spools == 1 else 'es'}"
        )
        if done.newly_dead:
            text += f"; {_plural(done.newly_dead, 'record')} refused for good (now dead letters)"
        if done.still_waiting:
            text += f"; {done.still_waiting:,} still waiting"
        terminal.show(text)
    by_file: dict[Path, list[DeadLetter]] = {}
    for path, letter in done.refused:
        by_file.setdefault(path, []).append(letter)
    for path, letters in by_file.items():
        terminal.show("")
        terminal.show(_letters_table(letters, f"Refused again, kept in {path.name}"))
    for problem in done.skipped:
        terminal.show(Text(f"skipped: {problem}", style="red"))


def _retry_problem(done: _Retried) -> str | None:
    """The one line a retry that did not store everything ends with."""
    if done.unreachable is not None:
        left = done.not_tried + done.still_waiting
        return (
            f"the store stopped taking records ({done.unreachable}); "
            f"the spool keeps {_plural(left, 'record')}: try again later"
        )
    if done.refused:
        return (
            f"{len(done.refused):,} of {_plural(done.tried, 'dead letter')} refused again; "
            "kept in the spool with the new reason (see 'chatledger spool status')"
        )
    if done.newly_dead:
        return (
            f"{_plural(done.newly_dead, 'record')} left by ended processes refused for good; "
            "kept as dead letters (see 'chatledger spool status')"
        )
    return None


# --- drop ----------------------------------------------------------------------------------


async def spool_drop(args: argparse.Namespace, terminal: Terminal) -> int:
    """Delete dead letters for good: the chosen ones, or all; count and ask first."""
    from chatledger.recording.spool import SpoolDirectory, SpoolError, drop_dead_letters

    directory = _located(args)
    files = _survey(directory)
    chosen = _chosen_letters(files, args.seq, args.file)
    total = sum(len(letters) for letters in chosen.values())
    plan = f"{_plural(total, 'dead letter')} from {_plural(len(chosen), 'spool file')}"
    if total == 0 or args.dry_run:
        if args.json:
            terminal.json({"dry_run": True, "dead_letters": total, "spool_files": len(chosen)})
        elif total == 0:
            terminal.show("no dead letters to drop")
        else:
            terminal.show(f"would drop {plan}; nothing dropped (dry run)")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(
                f"would drop {plan} for good; pass --yes to drop them, or --dry-run to only count"
            )
        answer = terminal.out.input(Text(f"drop {plan} for good? [y/N] "))
        if answer.strip().lower() not in ("y", "yes"):
            terminal.show("nothing dropped")
            return 1
    dropped = 0
    for path, letters in chosen.items():
        try:
            dropped += drop_dead_letters(path, [d.seq for d in letters])
        except SpoolError as exc:
            raise CommandError(str(exc)) from None
    _remove_emptied(SpoolDirectory(directory), set(chosen))
    if args.json:
        terminal.json({"dry_run": False, "dead_letters": dropped, "spool_files": len(chosen)})
    else:
        terminal.show(f"dropped {_plural(dropped, 'dead letter')} for good")
    return 0


def _remove_emptied(spools: SpoolDirectory, paths: set[Path]) -> None:
    """Delete the files among ``paths`` whose owner ended and that now hold nothing."""
    from chatledger.recording.spool import SpoolError, report_spool

    for path, release in spools.orphans():
        try:
            if path in paths:
                report = report_spool(path)
                if not report.waiting and not report.dead_letters:
                    spools.remove(path)
        except SpoolError:
            pass  # left for 'spool status' to show
        finally:
            release()


SPOOL_COMMANDS = {
    "spool status": spool_status,
    "spool retry": spool_retry,
    "spool drop": spool_drop,
}
"""The spool commands' functions, by the words that name them."""
