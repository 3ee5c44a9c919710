"""What starting chatledger costs: `import chatledger` and `chatledger --help`, fresh processes.

Every sample is a new interpreter, timed from spawn to exit, so it includes
the interpreter's own start-up; ``python -c pass`` measured in the same run is
that floor. Beside chatledger: the peers' imports (``openai``,
``langchain_core``, ``litellm``, and ``pydantic``, chatledger's one required
dependency) and other command lines' cheapest invocations. The commands run
in rounds, each round one sample of every command, so a burst of load on the
machine falls on all of them alike. The bytecode caches are warm (one
untimed round first): "cold" means a fresh process, not an empty disk cache.
"""

from __future__ import annotations

import importlib.util
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

from benchmarks.measure import Latency
from benchmarks.report import Cell, Result, Section, Target

__all__ = ["FULL", "QUICK", "ImportSizes", "run_import_time"]

Progress = Callable[[str], None]

IMPORT_TARGET_MS = 150.0  # issue 15: `import chatledger`
HELP_TARGET_MS = 250.0  # issue 15: `chatledger --help`
# Import peers: the SDK and the frameworks chatledger records, and its own dependency.
_PEER_MODULES = ("pydantic", "openai", "langchain_core", "litellm")
_IMPORTTIME_RUNS = 5  # `-X importtime` runs whose per-module medians the notes list
_TOP = 6  # modules the notes list per command


@dataclass(frozen=True, slots=True)
class ImportSizes:
    """How many fresh processes each command gets."""

    name: str
    runs: int  # timed rounds: one fresh process per command per round

    def describe(self) -> str:
        """The sizes as the report says them."""
        return f"{self.runs} fresh processes per command, after one untimed round"


FULL = ImportSizes("full", runs=20)
QUICK = ImportSizes("quick", runs=3)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _script(name: str) -> str | None:
    """The console script ``name`` installed beside this interpreter, if any."""
    return shutil.which(name, path=str(Path(sys.executable).parent))


def _commands() -> dict[str, list[str] | None]:
    """Every command measured, by label; None when it is not installed here."""
    chatledger = _script("chatledger")
    sqlite_utils = _script("sqlite-utils")
    commands: dict[str, list[str] | None] = {
        "python -c pass": _python("pass"),
        "import chatledger": _python("import chatledger"),
        "chatledger --help": [chatledger, "--help"] if chatledger else None,
        "python -m pip --version": [sys.executable, "-m", "pip", "--version"],
        "sqlite-utils --help": [sqlite_utils, "--help"] if sqlite_utils else None,
    }
    for module in _PEER_MODULES:
        found = importlib.util.find_spec(module) is not None
        commands[f"import {module}"] = _python(f"import {module}") if found else None
    return commands


def _run_once(command: Sequence[str]) -> float:
    """Milliseconds from spawning ``command`` to its exit; it must succeed."""
    start = perf_counter()
    subprocess.run(  # noqa: S603  (this interpreter and the venv's own scripts)
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return (perf_counter() - start) * 1000


def _time_all(commands: dict[str, list[str]], runs: int, progress: Progress) -> dict[str, Latency]:
    """Each command's latencies over ``runs`` rounds, after one untimed round."""
    samples: dict[str, list[float]] = {label: [] for label in commands}
    for round_number in range(runs + 1):
        for label, command in commands.items():
            elapsed = _run_once(command)
            if round_number:  # the first round only warms the caches
                samples[label].append(elapsed)
        if round_number:
            progress(f"import time: round {round_number}/{runs}")
    return {label: Latency.of(values) for label, values in samples.items()}


def _importtime(command: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{module: (self µs, cumulative µs)}`` from one ``-X importtime`` run of ``command``."""
    # A console script is a Python file: run it under this interpreter with the flag.
    rest = command[1:] if command[0] == sys.executable else command
    argv = [sys.executable, "-X", "importtime", *rest]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)  # noqa: S603
    found: dict[str, tuple[int, int]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|")
        found[name.strip()] = (int(own), int(total))
    return found


def _heaviest(command: Sequence[str], floor: set[str]) -> str:
    """The modules ``command`` spends most on (median self time), without the interpreter's."""
    runs = [_importtime(command) for _ in range(_IMPORTTIME_RUNS)]
    names = set(runs[0]).difference(floor)
    own = {name: statistics.median(run.get(name, (0, 0))[0] for run in runs) for name in names}
    total = {name: statistics.median(run.get(name, (0, 0))[1] for run in runs) for name in names}
    top = sorted(names, key=lambda name: own[name], reverse=True)[:_TOP]
    return ", ".join(f"{n} {own[n] / 1000:.1f} ms ({total[n] / 1000:.1f} cumulative)" for n in top)


def _cell(latencies: dict[str, Latency], label: str, which: str) -> Cell:
    if label not in latencies:
        return Cell(note="not installed")
    latency = latencies[label]
    return Cell(latency.p50 if which == "p50" else latency.p95)


def run_import_time(sizes: ImportSizes, progress: Progress) -> Section:
    """Time the fresh-process commands and list what each imports most, beside the targets."""
    everything = _commands()
    commands = {label: command for label, command in everything.items() if command is not None}
    latencies = _time_all(commands, sizes.runs, progress)
    for label, latency in latencies.items():
        progress(f"{label}: median {latency.p50:.1f} ms, p95 {latency.p95:.1f} ms")

    def row(label: str, ours: str, baseline: str, which: str = "p50") -> Result:
        return Result(label, "ms", _cell(latencies, ours, which), _cell(latencies, baseline, which))

    results = [
        row("import chatledger, median (baseline: python -c pass)", "import chatledger",
            "python -c pass"),
        row("  p95", "import chatledger", "python -c pass", "p95"),
        *(row(f"  median vs import {module}", "import chatledger", f"import {module}")
          for module in _PEER_MODULES),
        row("chatledger --help, median (baseline: python -c pass)", "chatledger --help",
            "python -c pass"),
        row("  p95", "chatledger --help", "python -c pass", "p95"),
        row("  median vs python -m pip --version", "chatledger --help",
            "python -m pip --version"),
        row("  median vs sqlite-utils --help", "chatledger --help", "sqlite-utils --help"),
    ]  # fmt: skip
    imported = latencies["import chatledger"].p50
    helped = latencies["chatledger --help"].p50 if "chatledger --help" in latencies else None
    targets = [
        Target("import chatledger, median of fresh processes", imported, IMPORT_TARGET_MS, False,
               "ms"),
        Target("chatledger --help, median of fresh processes", helped, HELP_TARGET_MS, False,
               "ms"),
    ]  # fmt: skip

    progress("import time: -X importtime")
    floor = set(_importtime(commands["python -c pass"]))
    notes = [
        "Each figure is the wall time of a fresh process, spawn to exit, interpreter start-up "
        "included (`python -c pass` is that floor); the baseline column holds the command each "
        "row names, measured in the same rounds. `import X` is `python -c 'import X'`; "
        "`chatledger --help` is the installed console script.",
        f"Heaviest imports of `import chatledger` (self time, median of {_IMPORTTIME_RUNS} "
        f"`-X importtime` runs, interpreter start-up left out): "
        f"{_heaviest(commands['import chatledger'], floor)}.",
    ]
    if "chatledger --help" in commands:
        notes.append(
            f"Heaviest imports of `chatledger --help`: "
            f"{_heaviest(commands['chatledger --help'], floor)}."
        )
    return Section(results, targets, notes)
