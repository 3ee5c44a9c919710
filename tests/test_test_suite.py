"""The test suite itself: it says what to start when a server is down, and runs its
non-server part without the server drivers installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# A plugin that makes the server drivers impossible to import, as on a machine without them.
_NO_DRIVERS = """
import sys

class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("asyncpg", "asyncmy"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None

sys.meta_path.insert(0, _Missing())
"""


def _pytest(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("backend", "variable", "url", "server", "start"),
    [
        ("postgresql", "CHATLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:1/postgres",
         "PostgreSQL", "pg_ctlcluster"),
        ("mysql", "CHATLEDGER_TEST_MYSQL_URL", "mysql://root@127.0.0.1:1/test",
         "MariaDB", "start-stop-daemon"),
    ],
)  # fmt: skip
def test_a_server_that_is_down_fails_with_one_line_naming_what_to_start(
    backend: str, variable: str, url: str, server: str, start: str
) -> None:
    """No connection-refused traceback: the failure says which server and how to start it."""
    found = _pytest(
        str(TESTS / "test_rollups.py"),
        "-k",
        f"test_saved_rollups_are_what_sql_recounts and {backend}",
        env={variable: url},
        cwd=TESTS.parent,
    )
    assert found.returncode == 1, found.stdout
    assert f"{server} is not running at 127.0.0.1:1" in found.stdout
    assert start in found.stdout
    assert variable in found.stdout
    assert "Traceback" not in found.stdout
    assert "ConnectionRefusedError" not in found.stdout
    assert "OperationalError" not in found.stdout


def test_the_non_server_tests_need_no_server_driver(tmp_path: Path) -> None:
    """``pytest -m "not server"`` collects the modules of server tests too, without drivers.

    The modules that use a driver themselves, and two that use the scratch
    databases through the conftest's fixtures: collecting all 80 takes 15 s.
    """
    (tmp_path / "no_drivers.py").write_text(_NO_DRIVERS, encoding="utf-8")
    uses_drivers = [
        path
        for path in sorted(TESTS.glob("test_*.py"))
        if "pytest.importorskip(" in path.read_text(encoding="utf-8")
        and path.name != Path(__file__).name
    ]
    assert len(uses_drivers) >= 4
    found = _pytest(
        "-p",
        "no_drivers",
        "-m",
        "not server",
        "--collect-only",
        "-q",
        *map(str, uses_drivers),
        str(TESTS / "test_rollups.py"),
        str(TESTS / "test_conformance.py"),
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
        cwd=TESTS.parent,
    )
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-3000:]
    assert "error" not in found.stdout.lower().split("\n")[-2], found.stdout[-2000:]
    probe = _pytest(
        "-p",
        "no_drivers",
        "-m",
        "not server",
        "-q",
        str(TESTS / "test_rollups.py"),
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
        cwd=TESTS.parent,
    )
    assert probe.returncode == 0, probe.stdout[-3000:]
    assert " passed" in probe.stdout
