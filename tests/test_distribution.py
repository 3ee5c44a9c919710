"""The wheel and the sdist as PyPI would receive them: built, listed and checked.

Built without build isolation (hatchling comes with the dev group), so the
test needs no index; ``twine check`` validates the metadata PyPI renders.
"""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel of this checkout, built once for the module."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def _wheel(dist: Path) -> zipfile.ZipFile:
    (path,) = dist.glob("chatledger-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_the_package_and_its_data_only(dist: Path) -> None:
    """Every module, the typing marker, the dashboard's files and the licence; no tests."""
    names = _wheel(dist).namelist()
    sources = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py")}
    assert sources <= set(names)
    assert "chatledger/py.typed" in names
    assert any(name.startswith("chatledger/ui/templates/") for name in names)
    assert any(name.startswith("chatledger/ui/static/") for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    top = {name.split("/")[0] for name in names}
    assert top <= {"chatledger", *(n for n in top if n.endswith(".dist-info"))}, top


def test_the_wheel_s_metadata_says_what_pypi_shows(dist: Path) -> None:
    """Licence expression, Python versions, classifiers, extras; no dev or bench extra."""
    wheel = _wheel(dist)
    (path,) = (name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
    metadata = email.message_from_bytes(wheel.read(path))
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"postgres", "mysql", "pricing", "tiktoken", "ui", "all", "testing"} <= extras
    assert not extras & {"dev", "bench"}  # the project's own tools are dependency groups
    pricing = [r for r in metadata.get_all("Requires-Dist") or [] if r.startswith("genai-prices")]
    assert pricing
    assert all("<" in requirement for requirement in pricing)


def test_the_sdist_holds_what_rebuilds_and_tests_the_package(dist: Path) -> None:
    """pyproject, README, LICENSE, the sources, the tests; no virtualenv or local database."""
    (path,) = dist.glob("chatledger-*.tar.gz")
    with tarfile.open(path) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "LICENSE", "src/chatledger/__init__.py"} <= names
    assert "tests/conftest.py" in names
    assert not any(name.startswith(".venv/") or name.endswith(".db") for name in names)


def test_twine_accepts_both(dist: Path) -> None:
    """``twine check --strict``: the README renders and the metadata is complete."""
    found = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stdout.count("PASSED") == 2
