"""``python -m benchmarks [--quick] [--only NAME] [--out FILE]``: run the suite, print it."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import astuple, fields
from pathlib import Path
from time import perf_counter

from benchmarks import adapters, analytics, import_time, integrations, recorder, ui
from benchmarks.cli_export import run_export
from benchmarks.recorder import Database, PostgresDatabase, SqliteDatabase, run_recorder, spool_root
from benchmarks.report import PARTS, Environment, Part, render_text, write_markdown
from benchmarks.scratch_databases import ServerUnavailableError
from benchmarks.server_reads import run_server_reads
from benchmarks.server_writes import BACKENDS, Backend, run_server_writes
from benchmarks.sizes import FULL, QUICK, Sizes
from benchmarks.sqlite_reads import run_reads
from benchmarks.sqlite_writes import run_writes

__all__ = ["main"]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="chatledger's SqliteStore, PostgresStore and MySqlStore beside their raw "
        "drivers (sqlite3, asyncpg, asyncmy) and peer libraries.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="run this backend's part only (repeatable); with --out, the file keeps the others",
    )
    parser.add_argument("--out", type=Path, help="write the results into this Markdown file")
    return parser.parse_args(argv)


def _progress(message: str) -> None:
    print(f"  . {message}", file=sys.stderr, flush=True)


def _describe(sizes: Sizes) -> str:
    values = dict(zip((f.name for f in fields(sizes)), astuple(sizes), strict=True))
    return ", ".join(
        f"{name}={value:,}" if isinstance(value, int) else f"{name}={value}"
        for name, value in values.items()
    )


async def _sqlite(sizes: Sizes, command: str) -> Part:
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        _progress(f"SQLite: writes ({sizes.name} sizes) in {tmp}")
        writes = await run_writes(sizes, Path(tmp), _progress)
        _progress("SQLite: reads")
        reads = await run_reads(sizes, Path(tmp), _progress)
    return Part(
        key="sqlite",
        title=f"SQLite {sqlite3.sqlite_version} (SqliteStore)",
        raw="raw sqlite3",
        peers=("SQLiteSession", "LangChain"),
        command=command,
        sizes=_describe(sizes),
        sections=(writes, reads),
    )


async def _server(backend: Backend, sizes: Sizes, command: str) -> Part:
    title = f"{backend.server.title} ({backend.store})"
    peers = ("SQLAlchemySession", "LangChain") if backend.peers else ()
    raw_name = "raw asyncpg" if backend.key == "postgres" else "raw asyncmy"
    try:
        await backend.server.probe()
    except ServerUnavailableError as exc:
        print(f"skipping {backend.server.title}: {exc}", file=sys.stderr, flush=True)
        return Part(
            backend.key, title, raw_name, peers, command, _describe(sizes), skipped=str(exc)
        )
    async with backend.server.scratch_database() as url:
        await (await backend.opener(url, 1)()).close()  # chatledger creates its schema
        raw = await backend.open_raw(url, 1)
        try:
            settings = await raw.settings()
        finally:
            await raw.close()
    _progress(f"{settings}; scratch database {backend.server.scratch}")
    writes = await run_server_writes(backend, sizes, settings, _progress)
    reads = await run_server_reads(backend, sizes, _progress)
    return Part(
        key=backend.key,
        title=f"{settings.split(':')[0]} ({backend.store})",
        raw=raw_name,
        peers=peers,
        command=command,
        sizes=_describe(sizes),
        sections=(writes, reads),
    )


async def _recorder(sizes: Sizes, command: str) -> Part:
    sizing = recorder.QUICK if sizes.name == "quick" else recorder.FULL
    postgres = BACKENDS[0]
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        databases: list[Database] = [SqliteDatabase(Path(tmp))]
        with spool_root(Path(tmp) / "spool"):
            try:
                await postgres.server.probe()
            except ServerUnavailableError as exc:
                print(f"recorder without PostgreSQL: {exc}", file=sys.stderr, flush=True)
                section = await run_recorder(databases, sizing, _progress)
            else:
                async with postgres.server.scratch_database() as url:
                    server = await PostgresDatabase.open(url)
                    try:
                        _progress(await server.settings())
                        section = await run_recorder([*databases, server], sizing, _progress)
                    finally:
                        await server.close()
    return Part(
        key="recorder",
        title="Recorder (PersistencePlugin's durable write path)",
        raw="baseline",
        peers=("without plugin",),
        command=command,
        sizes=sizing.describe(),
        sections=(section,),
    )


async def _export(sizes: Sizes, command: str) -> Part:
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        section = await run_export(sizes, Path(tmp), _progress)
    return Part(
        key="export",
        title="Export (the chatledger command, SQLite)",
        raw="raw sqlite3",
        peers=("sqlite-utils",),
        command=command,
        sizes=f"api_calls={sizes.api_calls:,}",
        sections=(section,),
    )


def _integrations(sizes: Sizes, command: str) -> Part:
    sizing = integrations.QUICK if sizes.name == "quick" else integrations.FULL
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        section = integrations.run_integrations(Path(tmp), sizing, _progress)
    return Part(
        key="integrations",
        title="Integrations (one call through each framework, fake OpenAI server, SQLite)",
        raw="uninstrumented",
        peers=(),
        command=command,
        sizes=sizing.describe(),
        sections=(section,),
    )


async def _adapters(sizes: Sizes, command: str) -> Part:
    sizing = adapters.QUICK if sizes.name == "quick" else adapters.FULL
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        section = await adapters.run_adapters(Path(tmp), sizing, _progress)
    return Part(
        key="adapters",
        title="Adapters (framework memory on chatledger vs the framework's own SQL store)",
        raw="built-in store",
        peers=(),
        command=command,
        sizes=sizing.describe(),
        sections=(section,),
    )


async def _ui(sizes: Sizes, command: str) -> Part:
    sizing = ui.QUICK if sizes.name == "quick" else ui.FULL
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        section = await ui.run_ui(Path(tmp), sizing, _progress)
    return Part(
        key="ui",
        title="Dashboard (chatledger ui over HTTP, SQLite and PostgreSQL)",
        raw="store API",
        peers=("page p50", "store p50"),
        command=command,
        sizes=sizing.describe(),
        sections=(section,),
    )


async def _analytics(sizes: Sizes, command: str) -> Part:
    sizing = analytics.sizes_from_env(analytics.QUICK if sizes.name == "quick" else analytics.FULL)
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        section = await analytics.run_analytics(Path(tmp), sizing, _progress)
    return Part(
        key="analytics",
        title="Analytics (usage rollups at scale: SQLite, PostgreSQL, MariaDB)",
        raw="raw SQL",
        peers=("without rollups", "rollups p50"),
        command=command,
        sizes=sizing.describe(),
        sections=(section,),
    )


def _import_time(sizes: Sizes, command: str) -> Part:
    sizing = import_time.QUICK if sizes.name == "quick" else import_time.FULL
    section = import_time.run_import_time(sizing, _progress)
    return Part(
        key="import",
        title="Import time (import chatledger and chatledger --help, fresh processes)",
        raw="baseline",
        peers=(),
        command=command,
        sizes=sizing.describe(),
        sections=(section,),
    )


async def _run(sizes: Sizes, only: Sequence[str], command: str) -> list[Part]:
    parts = []
    if "sqlite" in only:
        parts.append(await _sqlite(sizes, command))
    for backend in BACKENDS:
        if backend.key in only:
            parts.append(await _server(backend, sizes, command))
    if "recorder" in only:
        parts.append(await _recorder(sizes, command))
    if "export" in only:
        parts.append(await _export(sizes, command))
    if "integrations" in only:
        # Synchronous clients, as most apps call them: off this loop, in a thread.
        parts.append(await asyncio.to_thread(_integrations, sizes, command))
    if "adapters" in only:
        parts.append(await _adapters(sizes, command))
    if "ui" in only:
        parts.append(await _ui(sizes, command))
    if "analytics" in only:
        parts.append(await _analytics(sizes, command))
    if "import" in only:
        # Child processes timed one by one: off this loop, in a thread.
        parts.append(await asyncio.to_thread(_import_time, sizes, command))
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; print the tables; write ``--out`` if given. Return the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if args.quick else FULL
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    if os.environ.get("MAKELEVEL"):  # started by make: the Makefile's bench target
        command = f"make bench ({command})"
    start = perf_counter()
    parts = asyncio.run(_run(sizes, args.only or PARTS, command))
    _progress(f"done in {perf_counter() - start:.0f} s")
    env = Environment()
    print(render_text(env, parts))
    if args.out is not None:
        write_markdown(args.out, env, parts)
        _progress(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
