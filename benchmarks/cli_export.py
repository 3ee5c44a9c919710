"""``chatledger export`` on a million API calls: rows per second and the child's peak memory.

Every exporter runs as its own child process, as a user would run it, writing
to a file; its peak resident set comes from the kernel's accounting for that
child alone (``os.wait4``). Beside chatledger: the raw driver (a plain
``sqlite3`` loop writing each row as a JSON object, the least an export can
do in Python) and the peer tool ``sqlite-utils rows --nl``, all on the same
database file in the same run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from time import perf_counter

from benchmarks import workload
from benchmarks.bulk_load import bulk_load, learn_layouts
from benchmarks.report import Cell, Result, Section, Target
from benchmarks.sizes import Sizes
from chatledger.stores.sqlite import SqliteStore

__all__ = ["run_export"]

SEED = 20251125
_TABLE = "entity_llm_api_call"
# The raw baseline: what a hand-written export loop does with the driver alone.
_RAW_EXPORT = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
cursor = conn.execute("SELECT * FROM entity_llm_api_call ORDER BY id")
names = [d[0] for d in cursor.description]
with open(sys.argv[2], "w", encoding="utf-8") as out:
    while rows := cursor.fetchmany(5000):
        out.write("".join(json.dumps(dict(zip(names, row))) + "\\n" for row in rows))
"""


# Runs the exporter as its own child and reports that child's peak RSS. A child
# started from the benchmark itself (fork or posix_spawn) would inherit the
# benchmark's memory high-water mark at exec; forked from this small launcher it
# starts from the launcher's.
_LAUNCHER = """
import os, sys
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
pid = os.fork()
if pid == 0:
    os.dup2(out, 1)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)
"""


def _run_child(command: Sequence[str], stdout_path: Path | None = None) -> tuple[float, float]:
    """Run ``command`` to the end; return its wall time in s and its peak RSS in MB."""
    target = str(stdout_path) if stdout_path else os.devnull
    start = perf_counter()
    done = subprocess.run(  # noqa: S603  (our own interpreter and arguments)
        [sys.executable, "-c", _LAUNCHER, target, *command],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = perf_counter() - start
    code, peak_kb = (int(word) for word in done.stderr.split()[-2:])
    if code != 0:
        raise RuntimeError(f"{shlex.join(command)} failed with exit status {code}")
    return elapsed, peak_kb / 1024  # Linux reports kilobytes


def _lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


def _measure(
    name: str, command: Sequence[str], out: Path, expected: int, progress: Callable[[str], None],
    *, header: bool = False, stdout: bool = False,
) -> tuple[Cell, Cell]:  # fmt: skip
    """Rows per second and peak RSS of one exporter, the better of two runs.

    Each run's file is counted (every row must be there) and removed, and
    the disk is synced before the next, so no run pays for another's writes.
    """
    best, peak = float("inf"), 0.0
    for _ in range(2):
        elapsed, run_peak = _run_child(command, out if stdout else None)
        written = _lines(out) - (1 if header else 0)
        if written != expected:
            raise RuntimeError(f"{name} wrote {written:,} rows, not {expected:,}")
        out.unlink()
        os.sync()
        best, peak = min(best, elapsed), max(peak, run_peak)
    rate = written / best
    progress(f"export, {name}: {rate:,.0f} rows/s, peak RSS {peak:,.0f} MB, {best:.1f} s")
    return Cell(rate), Cell(peak)


async def run_export(sizes: Sizes, tmp: Path, progress: Callable[[str], None]) -> Section:
    """Export ``sizes.api_calls`` API calls from SQLite with each exporter, beside the targets."""
    ledger = workload.Ledger(sizes, SEED)
    path = tmp / "export.db"
    start = perf_counter()
    layouts = await learn_layouts(path)
    rows = bulk_load(path, [(layouts.api_call, ledger.calls())])
    progress(f"loaded {rows:,} API calls for the export in {perf_counter() - start:.1f} s")
    # As the application leaves it: its store refreshed the planner's statistics on
    # connect, which the first export would otherwise pay for (about a second).
    await (await SqliteStore.connect(path)).close()
    os.sync()  # the gigabyte just loaded is written back now, not during the first export

    script = Path(sys.executable).with_name("chatledger")
    url = f"sqlite:///{path}"
    jsonl, csv = tmp / "calls.jsonl", tmp / "calls.csv"
    ours = _measure(
        "chatledger jsonl", [str(script), "export", "api-calls", "--db", url, "-o", str(jsonl),
                             "--quiet"], jsonl, rows, progress,
    )  # fmt: skip
    ours_csv = _measure(
        "chatledger csv", [str(script), "export", "api-calls", "--db", url, "-o", str(csv),
                           "--quiet"], csv, rows, progress, header=True,
    )  # fmt: skip
    raw = _measure(
        "raw sqlite3", [sys.executable, "-c", _RAW_EXPORT, str(path), str(jsonl)], jsonl, rows,
        progress,
    )  # fmt: skip
    utils = shutil.which("sqlite-utils", path=str(Path(sys.executable).parent))
    if utils is None:
        peer = (Cell(note="not installed"), Cell(note="not installed"))
    else:
        peer = _measure(
            "sqlite-utils", [utils, "rows", str(path), _TABLE, "--nl"], jsonl, rows, progress,
            stdout=True,
        )  # fmt: skip

    label = f"{rows:,} API calls"
    to_jsonl = Result(f"export {label} to JSON lines", "rows/s", ours[0], raw[0], peer[0])
    memory = Result("  peak RSS of the exporting process", "MB", ours[1], raw[1], peer[1])
    to_csv = Result(f"export {label} to CSV", "rows/s", ours_csv[0], raw[0])
    csv_memory = Result("  peak RSS of the exporting process", "MB", ours_csv[1], raw[1])
    targets = [
        Target("export to JSON lines on SQLite, rows/s", ours[0].value, 100_000, True, "rows/s"),
        Target("peak RSS of the export process", ours[1].value, 200, False, "MB"),
    ]
    notes = [
        "export: each exporter is a child process writing a file from the same SQLite "
        "database; chatledger is the installed `chatledger export api-calls -o FILE` "
        "(the entities' own JSON: times in RFC 3339, omitted empty fields, nested details); "
        "raw is a sqlite3 fetchmany loop writing json.dumps of each row as stored; the peer "
        "is `sqlite-utils rows DB TABLE --nl`; peak RSS is the child's own maximum resident "
        "set (os.wait4), interpreter included; each figure is the faster of two runs, with "
        "the disk synced before each",
    ]
    return Section([to_jsonl, memory, to_csv, csv_memory], targets, notes)
