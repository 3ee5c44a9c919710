"""``chatledger import``: move a framework store's conversation history into chatledger.

``import agents-sqlite SOURCE`` reads the OpenAI Agents SDK's ``SQLiteSession``
file (or, by URL, a ``SQLAlchemySession`` database: same tables) and
``import langchain-sql SOURCE`` LangChain's ``SQLChatMessageHistory`` table.
Each framework session is written through chatledger's adapter for that
framework (``ChatledgerSession``, ``ChatledgerChatMessageHistory``) under the
same session key, so the adapter gives back exactly what the framework's own
store gave, and the conversation is a chatledger session like any other.

- The source is only read: SQLite files with :mod:`sqlite3` (opened read-only),
  PostgreSQL and MySQL URLs with SQLAlchemy's asyncio engine when SQLAlchemy
  is installed (it is not a dependency of chatledger).
- Items are written in order, up to :data:`BATCH` a transaction.
- A session chatledger already holds messages of is skipped and reported
  (importing it again would repeat them) unless ``--append`` is given.
- Rows whose JSON cannot be read are skipped and counted, as the Agents SDK's
  own stores skip them.
- A source that cannot be read (no such file, table or column, a bad URL, a
  server that does not answer) ends the command with one line and exit
  status 2; chatledger's own database failing, with status 1 as elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from chatledger.cli.arguments import database_url
from chatledger.cli.commands import CommandError, Terminal, _plural
from chatledger.errors import PersistenceError
from chatledger.recording.scope import id_for_key
from chatledger.stores import PersistenceStore, connect
from chatledger.stores.opening import LATEST_SCHEMA, sqlite_file
from chatledger.stores.urls import redact

__all__ = ["BATCH", "IMPORT_COMMANDS", "SOURCE_ERROR_STATUS", "SourceError"]

BATCH = 500
"""Items written per transaction (and read per fetch)."""

SOURCE_ERROR_STATUS = 2
"""The exit status when the store to import from cannot be read."""

_SHOWN_SKIPS = 10  # sessions named one by one on standard error, then a count


class SourceError(CommandError):
    """The store to import from cannot be read: no such file, table or column, a bad URL."""


@dataclass(frozen=True)
class Layout:
    """Where a framework keeps its items: the tables and columns an import reads."""

    framework: str
    messages_table: str
    messages_option: str
    session_column: str
    data_column: str
    sessions_table: str | None = None
    sessions_option: str | None = None
    time_column: str | None = None
    """Ordering items before the id when read by URL (SQLAlchemySession's ``created_at``)."""

    def order(self, by_time: bool) -> tuple[str, ...]:
        """The columns that order a session's items."""
        return (self.time_column, "id") if by_time and self.time_column else ("id",)

    def columns(self, by_time: bool) -> tuple[str, ...]:
        """The columns the messages table must have."""
        return tuple(dict.fromkeys((*self.order(by_time), self.session_column, self.data_column)))


# --- reading the source ------------------------------------------------------------------


class Source(ABC):
    """A framework's store, read one session at a time."""

    def __init__(self, label: str, layout: Layout, *, by_time: bool) -> None:
        """Read ``layout``'s tables; ``label`` names the source in messages (no secret in it)."""
        self.label = label
        self.layout = layout
        self.by_time = by_time

    @abstractmethod
    async def tables(self) -> dict[str, list[str] | None]:
        """Each table the layout names, with its columns (None when it does not exist)."""

    @abstractmethod
    async def table_names(self) -> list[str]:
        """Every table of the source, for the message naming a missing one."""

    @abstractmethod
    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row ``sql`` selects (``?`` placeholders)."""

    @abstractmethod
    def stream(self, sql: str, parameters: Sequence[Any]) -> AsyncIterator[list[Any]]:
        """The first column of the rows ``sql`` selects, :data:`BATCH` at a time."""

    @abstractmethod
    def quote(self, name: str) -> str:
        """``name`` (``table`` or ``schema.table``) quoted as an SQL identifier."""

    @abstractmethod
    async def close(self) -> None:
        """Release the connection."""

    async def check(self) -> None:
        """Raise :class:`SourceError` unless the layout's tables and columns are there."""
        layout = self.layout
        found = await self.tables()
        wanted = [
            (layout.messages_table, layout.messages_option, self.layout.columns(self.by_time))
        ]
        if layout.sessions_table is not None:
            wanted.append((layout.sessions_table, layout.sessions_option or "", ("session_id",)))
        for table, option, columns in wanted:
            have = found.get(table)
            if have is None:
                names = await self.table_names()
                there = f"its tables: {', '.join(names[:8])}" if names else "it has no tables"
                raise SourceError(
                    f"{self.label} has no table {table} ({there}); "
                    f"is it {layout.framework}'s store? name the table with {option}"
                )
            missing = [c for c in columns if c.lower() not in {h.lower() for h in have}]
            if missing:
                raise SourceError(
                    f"table {table} of {self.label} has no column {', '.join(missing)}: "
                    f"not {layout.framework}'s table (its columns: {', '.join(have)})"
                )

    async def sessions(self) -> list[tuple[Any, int]]:
        """Each session key with items, and how many, in the order of their first item."""
        layout = self.layout
        key = self.quote(layout.session_column)
        return [
            (row[0], int(row[1]))
            for row in await self.fetch(
                f"SELECT {key}, COUNT(*) FROM {self.quote(layout.messages_table)} "
                f"GROUP BY {key} ORDER BY MIN(id)"
            )
        ]

    async def empty_sessions(self) -> int:
        """How many sessions of the sessions table hold no item."""
        layout = self.layout
        if layout.sessions_table is None:
            return 0
        sessions, messages = self.quote(layout.sessions_table), self.quote(layout.messages_table)
        rows = await self.fetch(
            f"SELECT COUNT(*) FROM {sessions} s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {messages} m WHERE m.session_id = s.session_id)"
        )
        return int(rows[0][0])

    def items(self, key: Any) -> AsyncIterator[list[Any]]:
        """The stored data of one session's items, oldest first, :data:`BATCH` at a time."""
        layout = self.layout
        order = ", ".join(self.quote(c) for c in layout.order(self.by_time))
        return self.stream(
            f"SELECT {self.quote(layout.data_column)} FROM {self.quote(layout.messages_table)} "
            f"WHERE {self.quote(layout.session_column)} = ? ORDER BY {order}",
            (key,),
        )


class _SqliteSource(Source):
    """An SQLite file, opened read-only."""

    def __init__(self, path: Path, layout: Layout, *, by_time: bool) -> None:
        super().__init__(str(path), layout, by_time=by_time)
        if not path.exists():
            raise SourceError(f"no such file: {path}")
        if not path.is_file():
            raise SourceError(f"{path} is not a file")
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise SourceError(f"cannot open {path}: {exc}") from None

    def quote(self, name: str) -> str:
        return ".".join(f'"{part}"' for part in name.split("."))

    def _run(self, sql: str, parameters: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(parameters))
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise SourceError(f"{self.label} is not an SQLite database") from None
            raise SourceError(f"cannot read {self.label}: {exc}") from None

    async def table_names(self) -> list[str]:
        rows = self._run(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name",
            (),
        )
        return [row[0] for row in rows]

    async def tables(self) -> dict[str, list[str] | None]:
        names = set(await self.table_names())
        found: dict[str, list[str] | None] = {}
        for table in (self.layout.messages_table, self.layout.sessions_table):
            if table is None:
                continue
            if table not in names:
                found[table] = None
                continue
            rows = self._run(f"PRAGMA table_info({self.quote(table)})", ())
            found[table] = [row[1] for row in rows]
        return found

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._run(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise SourceError(f"cannot read {self.label}: {exc}") from None

    async def stream(self, sql: str, parameters: Sequence[Any]) -> AsyncIterator[list[Any]]:
        cursor = self._run(sql, parameters)
        while True:
            try:
                rows = cursor.fetchmany(BATCH)
            except sqlite3.Error as exc:
                raise SourceError(f"cannot read {self.label}: {exc}") from None
            if not rows:
                return
            yield [row[0] for row in rows]

    async def close(self) -> None:
        self._db.close()


_ASYNC_DRIVERS = {
    "postgresql": ("postgresql+asyncpg", "asyncpg", "chatledger[postgres]"),
    "postgres": ("postgresql+asyncpg", "asyncpg", "chatledger[postgres]"),
    "mysql": ("mysql+asyncmy", "asyncmy", "chatledger[mysql]"),
    "mariadb": ("mysql+asyncmy", "asyncmy", "chatledger[mysql]"),
}


class _ServerSource(Source):
    """A PostgreSQL or MySQL database, read through SQLAlchemy's asyncio engine."""

    def __init__(self, url: str, layout: Layout, *, by_time: bool) -> None:
        super().__init__(redact(url), layout, by_time=by_time)
        self._secret = urlsplit(url).password or None
        scheme = url.split("://", 1)[0].lower().split("+", 1)[0]
        drivername, driver, extra = _ASYNC_DRIVERS[scheme]
        try:
            import sqlalchemy
            from sqlalchemy.ext.asyncio import create_async_engine
        except ImportError:
            raise CommandError(
                f"reading {self.label} needs SQLAlchemy, which is not installed: "
                "pip install 'sqlalchemy[asyncio]' (SQLite files need nothing more)"
            ) from None
        self._sa = sqlalchemy
        try:
            address = sqlalchemy.engine.make_url(url).set(drivername=drivername)
        except (sqlalchemy.exc.ArgumentError, ValueError):
            raise SourceError(f"{self.label} is not a database URL") from None
        try:
            self._engine = create_async_engine(address)
        except ImportError:
            raise CommandError(
                f"reading {self.label} needs the {driver} driver, which is not installed: "
                f"pip install '{extra}'"
            ) from None
        self._preparer = self._engine.dialect.identifier_preparer
        self._connection: Any = None

    def _said(self, exc: BaseException) -> str:
        """The driver's own words, on one line, without the password."""
        cause = getattr(exc, "orig", None) or exc
        text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if self._secret:
            for secret in {self._secret, unquote(self._secret)}:
                text = text.replace(secret, "***")
        return text

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[Any]:
        """The connection, made on first use; a driver's error said as a :class:`SourceError`."""
        try:
            if self._connection is None:
                try:
                    self._connection = await self._engine.connect()
                except ImportError:
                    raise CommandError(
                        f"reading {self.label}: SQLAlchemy's asyncio support is missing: "
                        "pip install 'sqlalchemy[asyncio]'"
                    ) from None
                except (self._sa.exc.SQLAlchemyError, OSError, TimeoutError) as exc:
                    raise SourceError(
                        f"cannot connect to {self.label}: {self._said(exc)}"
                    ) from None
            yield self._connection
        except (self._sa.exc.SQLAlchemyError, OSError, TimeoutError) as exc:
            raise SourceError(f"cannot read {self.label}: {self._said(exc)}") from None

    def quote(self, name: str) -> str:
        return ".".join(self._preparer.quote(part) for part in name.split("."))

    def _statement(self, sql: str, parameters: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        names = {}
        for number, value in enumerate(parameters):
            sql = sql.replace("?", f":p{number}", 1)
            names[f"p{number}"] = value
        return self._sa.text(sql), names

    async def table_names(self) -> list[str]:
        async with self._reading() as connection:
            names: list[str] = await connection.run_sync(
                lambda sync: self._sa.inspect(sync).get_table_names()
            )
        return sorted(names)

    async def tables(self) -> dict[str, list[str] | None]:
        wanted = [t for t in (self.layout.messages_table, self.layout.sessions_table) if t]

        def inspect(sync: Any) -> dict[str, list[str] | None]:
            inspector = self._sa.inspect(sync)
            found: dict[str, list[str] | None] = {}
            for table in wanted:
                schema, _, name = table.rpartition(".")
                if not inspector.has_table(name, schema=schema or None):
                    found[table] = None
                else:
                    columns = inspector.get_columns(name, schema=schema or None)
                    found[table] = [str(column["name"]) for column in columns]
            return found

        async with self._reading() as connection:
            result: dict[str, list[str] | None] = await connection.run_sync(inspect)
        return result

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        statement, values = self._statement(sql, parameters)
        async with self._reading() as connection:
            result = await connection.execute(statement, values)
            return [tuple(row) for row in result.all()]

    async def stream(self, sql: str, parameters: Sequence[Any]) -> AsyncIterator[list[Any]]:
        statement, values = self._statement(sql, parameters)
        async with self._reading() as connection:
            result = await connection.stream(statement, values)
            async for rows in result.partitions(BATCH):
                yield [row[0] for row in rows]

    async def close(self) -> None:
        try:
            if self._connection is not None:
                await self._connection.close()
            await self._engine.dispose()
        except (self._sa.exc.SQLAlchemyError, OSError):
            pass  # only reading was done: nothing is lost


def open_source(text: str, layout: Layout) -> Source:
    """The store ``text`` names: an SQLite file path, ``sqlite:///PATH``, or a server URL.

    A path is read as the Agents SDK's ``SQLiteSession`` orders items (by
    row id); a URL as ``SQLAlchemySession`` does (``created_at``, then id).
    """
    if "://" not in text:
        return _SqliteSource(Path(text).expanduser(), layout, by_time=False)
    scheme = text.split("://", 1)[0].lower().split("+", 1)[0]
    if scheme == "sqlite":
        parts = urlsplit(text)
        if parts.netloc:
            raise SourceError(
                f"{text} has a host: write sqlite:///relative.db or sqlite:////abs.db"
            )
        path = unquote(parts.path)[1:]
        if path in ("", ":memory:"):
            raise SourceError("an in-memory SQLite database holds nothing to import")
        return _SqliteSource(Path(path).expanduser(), layout, by_time=True)
    if scheme in _ASYNC_DRIVERS:
        return _ServerSource(text, layout, by_time=True)
    raise SourceError(
        f"cannot read {redact(text)}: give an SQLite file path, sqlite:///PATH, "
        "postgresql://… or mysql://…"
    )


# --- writing into chatledger --------------------------------------------------------------


@dataclass(frozen=True)
class Framework:
    """How one framework's stored items are read, and written through its chatledger adapter."""

    layout: Layout
    decode: Callable[[Any], Any]
    """One stored value as the framework's item (raises ValueError or TypeError if unreadable)."""
    writer: Callable[
        [str, PersistenceStore, dict[str, str | None]], Callable[[list[Any]], Awaitable[None]]
    ]
    """The adapter for a session key: a function appending items in one transaction."""


def _json(value: Any) -> Any:
    """A stored JSON value (text, or already decoded by the driver)."""
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8")
    return json.loads(value) if isinstance(value, str) else value


def _agents_item(value: Any) -> Any:
    item = _json(value)
    if not isinstance(item, dict):
        raise TypeError("an Agents SDK item is a JSON object")
    return item


def _agents_writer(
    key: str, store: PersistenceStore, owners: dict[str, str | None]
) -> Callable[[list[Any]], Awaitable[None]]:
    from chatledger.integrations.openai_agents import ChatledgerSession

    return ChatledgerSession(
        key,
        store,
        tenant_id=owners["tenant_id"],
        user_id=owners["user_id"],
        agent_id=owners["agent_id"],
    ).add_items


def _langchain_message(value: Any) -> Any:
    from langchain_core.messages import messages_from_dict

    data = _json(value)
    if not isinstance(data, dict):
        raise TypeError("a LangChain message is a JSON object")
    try:
        return messages_from_dict([data])[0]
    except (KeyError, ValueError, TypeError) as exc:  # ValidationError is a ValueError
        raise ValueError(str(exc)) from None


def _langchain_writer(
    key: str, store: PersistenceStore, owners: dict[str, str | None]
) -> Callable[[list[Any]], Awaitable[None]]:
    from chatledger.integrations.langchain import ChatledgerChatMessageHistory

    return ChatledgerChatMessageHistory(
        key,
        store,
        tenant_id=owners["tenant_id"],
        user_id=owners["user_id"],
        agent_id=owners["agent_id"],
    ).aadd_messages


def _agents(args: argparse.Namespace) -> Framework:
    layout = Layout(
        framework="the Agents SDK",
        messages_table=args.messages_table,
        messages_option="--messages-table",
        session_column="session_id",
        data_column="message_data",
        sessions_table=args.sessions_table,
        sessions_option="--sessions-table",
        time_column="created_at",
    )
    return Framework(layout, _agents_item, _agents_writer)


def _langchain(args: argparse.Namespace) -> Framework:
    layout = Layout(
        framework="LangChain's SQLChatMessageHistory",
        messages_table=args.table,
        messages_option="--table",
        session_column=args.session_column,
        data_column="message",
    )
    return Framework(layout, _langchain_message, _langchain_writer)


@dataclass
class Report:
    """What an import did (or, dry, would do)."""

    source: str
    database: str
    dry_run: bool
    sessions: int = 0
    items: int = 0
    unreadable_items: int = 0
    empty_sessions: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The report for ``--json``."""
        return {
            "source": self.source,
            "database": self.database,
            "dry_run": self.dry_run,
            "sessions": self.sessions,
            "items": self.items,
            "unreadable_items": self.unreadable_items,
            "empty_sessions": self.empty_sessions,
            "skipped_sessions": self.skipped,
            "skipped_items": sum(s["items"] for s in self.skipped),
        }


@asynccontextmanager
async def _destination(url: str, *, dry_run: bool) -> AsyncIterator[PersistenceStore | None]:
    """chatledger's database; created when it does not exist yet (None on a dry run then)."""
    file = sqlite_file(url)
    if file is not None and not file.exists() and dry_run:
        yield None
        return
    store = await connect(url, migrate=False)
    try:
        version = await store.schema_version()
        if version == 0 and not dry_run:
            await store.close()
            store = await connect(url, migrate=True)
        elif 0 < version < LATEST_SCHEMA:
            raise CommandError(
                f"{redact(url)} is at schema version {version}; this chatledger needs version "
                f"{LATEST_SCHEMA}: run 'chatledger db upgrade'"
            )
        yield None if version == 0 and dry_run else store
    finally:
        await store.close()


async def _run(args: argparse.Namespace, terminal: Terminal, framework: Framework) -> int:
    """Import every session of the source; a source that cannot be read gives status 2."""
    try:
        return await _import(args, terminal, framework)
    except SourceError as exc:
        terminal.err.print(
            f"chatledger import {args.import_command}: error: {exc}", markup=False, soft_wrap=True
        )
        return SOURCE_ERROR_STATUS


async def _import(args: argparse.Namespace, terminal: Terminal, framework: Framework) -> int:
    url = database_url(args.db)
    source = open_source(args.source, framework.layout)
    try:
        await source.check()
        found = await source.sessions()
        report = Report(source=source.label, database=redact(url), dry_run=args.dry_run)
        report.empty_sessions = await source.empty_sessions()
        owners = {"tenant_id": args.tenant, "user_id": args.user, "agent_id": args.agent}
        async with _destination(url, dry_run=args.dry_run) as store:
            todo = await _plan(found, store, report, append=args.append)
            await _copy(source, framework, todo, store, owners, report, args, terminal)
    finally:
        await source.close()
    _tell(report, args, terminal)
    return 0


async def _plan(
    found: list[tuple[Any, int]],
    store: PersistenceStore | None,
    report: Report,
    *,
    append: bool,
) -> list[tuple[Any, str, int]]:
    """The sessions to import: (source key, session key, items); the others noted as skipped."""
    todo = []
    for raw, count in found:
        key = "" if raw is None else str(raw)
        if not key:
            report.skipped.append({"session": key, "items": count, "reason": "empty session id"})
            continue
        held = 0 if store is None else await store.count_session_messages(_chatledger_id(key))
        if held and not append:
            report.skipped.append(
                {
                    "session": key,
                    "items": count,
                    "reason": f"chatledger holds {held} of its messages",
                }
            )
            continue
        todo.append((raw, key, count))
    return todo


def _chatledger_id(key: str) -> uuid.UUID:
    """The chatledger session a framework's session key maps to (as the adapters map it)."""
    return id_for_key(key)


async def _copy(
    source: Source,
    framework: Framework,
    todo: list[tuple[Any, str, int]],
    store: PersistenceStore | None,
    owners: dict[str, str | None],
    report: Report,
    args: argparse.Namespace,
    terminal: Terminal,
) -> None:
    """Read each session's items and write them through the adapter, a batch a transaction."""
    show_progress = not args.quiet and not args.json and terminal.err.is_terminal
    progress = Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=terminal.err,
        transient=True,
        disable=not show_progress,
    )
    with progress:
        task = progress.add_task("items", total=sum(count for _, _, count in todo))
        for number, (raw, key, count) in enumerate(todo, 1):
            progress.update(task, description=f"session {number:,}/{len(todo):,}")
            write = None if store is None else framework.writer(key, store, owners)
            written = 0
            async for values in source.items(raw):
                batch = []
                for value in values:
                    try:
                        batch.append(framework.decode(value))
                    except (ValueError, TypeError):
                        report.unreadable_items += 1
                if write is not None and batch:
                    try:
                        await write(batch)
                    except (PersistenceError, ValueError, TypeError) as exc:
                        raise CommandError(
                            f"{exc} (while importing session {key!r}: {written:,} of "
                            f"{count:,} items written, {_plural(report.sessions, 'session')} "
                            "imported before it)"
                        ) from exc
                written += len(batch)
                progress.advance(task, len(values))
            report.items += written
            report.sessions += 1 if written else 0


def _tell(report: Report, args: argparse.Namespace, terminal: Terminal) -> None:
    """The report: JSON, or a few lines for people (skipped sessions named on stderr)."""
    if args.json:
        terminal.json(report.as_json())
        return
    for skip in report.skipped[:_SHOWN_SKIPS]:
        terminal.err.print(
            f"skipped session {skip['session']!r} ({_plural(skip['items'], 'item')}): "
            f"{skip['reason']}",
            markup=False,
            soft_wrap=True,
        )
    if len(report.skipped) > _SHOWN_SKIPS:
        terminal.err.print(
            f"... and {len(report.skipped) - _SHOWN_SKIPS:,} more sessions skipped", markup=False
        )
    verb = "would import" if report.dry_run else "imported"
    terminal.show(
        f"{verb} {_plural(report.sessions, 'session')} ({_plural(report.items, 'item')}) "
        f"from {report.source} into {report.database}"
        + ("; nothing written (dry run)" if report.dry_run else "")
    )
    held = [s for s in report.skipped if s["reason"].startswith("chatledger holds")]
    if held:
        items = sum(s["items"] for s in held)
        terminal.show(
            f"skipped {_plural(len(held), 'session')} ({_plural(items, 'item')}) chatledger "
            "already holds; --append adds their items again after what it holds"
        )
    others = len(report.skipped) - len(held)
    if others:
        terminal.show(f"skipped {_plural(others, 'session')} without a session id")
    if report.unreadable_items:
        terminal.show(
            f"skipped {_plural(report.unreadable_items, 'unreadable item')} "
            "(not the JSON of an item)"
        )
    if report.empty_sessions:
        terminal.show(
            f"{_plural(report.empty_sessions, 'session')} without items: nothing to import"
        )


async def import_agents(args: argparse.Namespace, terminal: Terminal) -> int:
    """Import the Agents SDK's SQLiteSession / SQLAlchemySession history."""
    return await _run(args, terminal, _agents(args))


async def import_langchain(args: argparse.Namespace, terminal: Terminal) -> int:
    """Import LangChain's SQLChatMessageHistory table."""
    return await _run(args, terminal, _langchain(args))


IMPORT_COMMANDS = {
    "import agents-sqlite": import_agents,
    "import langchain-sql": import_langchain,
}
"""Each import command's function, by the words that name it."""
