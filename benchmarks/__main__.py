"""``python -m benchmarks [--quick] [--out docs/benchmarks.md]``: run the suite, print the table."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import astuple, fields
from pathlib import Path
from time import perf_counter

from benchmarks.report import Environment, Section, render_markdown, render_text, write_markdown
from benchmarks.sizes import FULL, QUICK, Sizes
from benchmarks.sqlite_reads import run_reads
from benchmarks.sqlite_writes import run_writes

__all__ = ["main"]

_LEGEND = (
    "cl/raw: chatledger's figure divided by raw sqlite3's (rows/s: higher is better; "
    "ms: lower is better); LangChain is SQLChatMessageHistory"
)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="chatledger's SqliteStore beside raw sqlite3, SQLiteSession and "
        "SQLChatMessageHistory.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
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


async def _run(sizes: Sizes, tmp: Path) -> list[Section]:
    _progress(f"writes ({sizes.name} sizes) in {tmp}")
    writes = await run_writes(sizes, tmp, _progress)
    _progress("reads")
    reads = await run_reads(sizes, tmp, _progress)
    return [writes, reads]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; print the table; write ``--out`` if given. Return the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if args.quick else FULL
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    if os.environ.get("MAKELEVEL"):  # started by make: the Makefile's bench target
        command = f"make bench ({command})"
    env = Environment(command=command, sizes=_describe(sizes))
    start = perf_counter()
    with tempfile.TemporaryDirectory(prefix="chatledger-bench-") as tmp:
        sections = asyncio.run(_run(sizes, Path(tmp)))
    _progress(f"done in {perf_counter() - start:.0f} s")
    results = [result for section in sections for result in section.results]
    targets = [target for section in sections for target in section.targets]
    notes = [_LEGEND, *(note for section in sections for note in section.notes)]
    print(render_text(env, results, targets, notes))
    if args.out is not None:
        write_markdown(args.out, render_markdown(env, results, targets, notes))
        _progress(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
