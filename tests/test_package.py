"""The package itself: public names, lazy optional imports, typing marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import chatledger


def test_every_public_name_is_importable_from_the_root() -> None:
    """Everything in chatledger.__all__ exists at the root."""
    missing = [name for name in chatledger.__all__ if not hasattr(chatledger, name)]
    assert missing == []


def test_import_pulls_in_no_optional_driver_or_test_tool() -> None:
    """`import chatledger` loads no database driver, SDK or pytest: extras stay optional."""
    code = (
        "import sys, chatledger, chatledger.sync; "
        "print(sorted(m for m in ('asyncpg', 'asyncmy', 'openai', 'pytest', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_package_is_typed() -> None:
    """py.typed ships beside the package, so users' type checkers read our hints."""
    assert (Path(chatledger.__file__).parent / "py.typed").is_file()
