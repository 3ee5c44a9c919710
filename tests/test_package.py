"""The package itself: public names, lazy optional imports, typing marker."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import chatledger

DRIVERS = ("asyncmy", "asyncpg", "openai")
LAZY_MODULES = (
    "chatledger.agent.openai_provider",
    "chatledger.stores.mysql",
    "chatledger.stores.postgres",
)

# Top-level modules whose names the root deliberately does not re-export, and why.
NOT_REEXPORTED = {
    "chatledger.cli": "the command line: an application, not library API",
    "chatledger.testing": "the conformance suite for backend authors; it needs pytest",
    "chatledger.sync": "blocking twins, reached as `chatledger.sync` (its connect is not ours)",
    "chatledger.ui": "the dashboard behind `chatledger ui`, behind the ui extra",
    "chatledger.integrations": (
        "one module per framework, each behind its own extra: imported explicitly as "
        "chatledger.integrations.<name>, never re-exported"
    ),
}


def _why_not_at_root(module: str) -> str | None:
    """Why ``module``'s ``__all__`` need not be at the root; None when it must be."""
    parts = module.split(".")
    if any(part.startswith("_") for part in parts[1:]):
        return "private"
    package = ".".join(parts[:2])
    if package in NOT_REEXPORTED:
        return NOT_REEXPORTED[package]
    if len(parts) > 2:
        return f"how {package} is built: what it makes public, {package}.__all__ lists"
    return None


def _walk(package: ModuleType) -> Iterator[str]:
    """Every module under ``package``, descending into the public packages only."""
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        yield info.name
        if info.ispkg and _why_not_at_root(info.name) is None:
            yield from _walk(importlib.import_module(info.name))


def test_root_exports_every_public_module_s_names() -> None:
    """``chatledger.__all__`` holds the ``__all__`` of every public module, as the same objects.

    The rule: a public module is a module or package directly under
    ``chatledger`` whose name has no leading underscore, and it must declare
    ``__all__``. For a package, that is its ``__init__``'s ``__all__``; its
    submodules are how it is built (``chatledger.stores.sqlite``,
    ``chatledger.plugin.usage``, ...), and what a package makes public it
    lists in its own ``__all__``. Not re-exported, each for its reason in
    NOT_REEXPORTED: the command line (``chatledger.cli``, with the demo),
    ``chatledger.testing``, ``chatledger.sync`` (a namespace of blocking twins)
    and ``chatledger.integrations`` (imported explicitly, each behind its
    extra). A package directory without ``__init__.py`` (one being written) is
    not a package yet and is not walked; ``chatledger.recording`` is checked
    as soon as it is one.
    """
    walked = list(_walk(chatledger))
    public = [name for name in walked if _why_not_at_root(name) is None]
    missing: dict[str, list[str]] = {}
    for name in public:
        module = importlib.import_module(name)
        exported: list[str] = module.__all__
        if absent := sorted(set(exported) - set(chatledger.__all__)):
            missing[name] = absent
        for export in set(exported) - set(absent):
            assert getattr(chatledger, export) is getattr(module, export), (name, export)
    assert missing == {}
    assert {
        "chatledger.agent",
        "chatledger.entities",
        "chatledger.errors",
        "chatledger.ids",
        "chatledger.plugin",
        "chatledger.pricing",
        "chatledger.stores",
    } <= set(public)
    assert {"chatledger.stores.sqlite", "chatledger.cli", "chatledger.testing"} <= set(walked)


def test_every_public_name_is_importable_from_the_root() -> None:
    """Everything in chatledger.__all__ exists at the root and is listed by dir()."""
    missing = [name for name in chatledger.__all__ if not hasattr(chatledger, name)]
    assert missing == []
    assert set(chatledger.__all__) <= set(dir(chatledger))
    assert len(set(chatledger.__all__)) == len(chatledger.__all__)


def test_the_spec_s_names_are_at_the_root() -> None:
    """The names SPEC §1 and §4 promise at the root, among them the lazily imported ones."""
    from chatledger import (  # noqa: F401
        AgentPlugin,
        LLMAgent,
        LLMAgentBuilder,
        LLMAgentEventHandler,
        LLMResponseMetadata,
        MySqlStore,
        OpenAIProvider,
        PersistenceContext,
        PersistencePlugin,
        PluginContext,
        PluginMetadata,
        PluginState,
        PluginType,
        PostgresStore,
        ScriptedProvider,
    )
    from chatledger.stores import MySqlStore as StoresMySql
    from chatledger.stores import PostgresStore as StoresPostgres

    assert (StoresPostgres, StoresMySql) == (PostgresStore, MySqlStore)
    assert PostgresStore.__module__ == "chatledger.stores.postgres"


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_import_pulls_in_no_optional_driver_or_test_tool() -> None:
    """`import chatledger` loads no database driver, SDK or pytest: extras stay optional."""
    code = (
        "import sys, chatledger, chatledger.sync; "
        "print(sorted(m for m in ('asyncpg', 'asyncmy', 'openai', 'pytest', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    assert _run(code) == "[]"


def test_driver_backed_names_are_imported_on_first_use() -> None:
    """The server stores and OpenAIProvider load on access, and even then import no driver."""
    code = (
        "import sys, chatledger, chatledger.stores, chatledger.agent\n"
        f"print(sorted(m for m in {DRIVERS + LAZY_MODULES} if m in sys.modules))\n"
        "from chatledger import *\n"
        "from chatledger.stores import PostgresStore, MySqlStore\n"
        f"print(sorted(m for m in {DRIVERS} if m in sys.modules))\n"
        f"print(sorted(m for m in {LAZY_MODULES} if m in sys.modules))\n"
    )
    assert _run(code).splitlines() == ["[]", "[]", str(sorted(LAZY_MODULES))]


def test_a_missing_driver_names_the_extra_to_install() -> None:
    """Without asyncpg the name still resolves, and using it names `chatledger[postgres]`.

    Should the backend's module itself need the driver to import, the
    ImportError on attribute access names the extra too.
    """
    code = """
import asyncio, sys
sys.modules["asyncpg"] = None
import chatledger
try:
    asyncio.run(chatledger.PostgresStore.connect("postgresql://u@127.0.0.1:1/db"))
except ImportError as exc:
    print(exc)

class NeedsDriver:
    def find_spec(self, name, path=None, target=None):
        if name == "chatledger.stores.mysql":
            raise ModuleNotFoundError("No module named 'asyncmy'", name="asyncmy")

sys.meta_path.insert(0, NeedsDriver())
try:
    chatledger.MySqlStore
except ImportError as exc:
    print(exc)
"""
    connect_error, attribute_error = _run(code).splitlines()
    assert "pip install 'chatledger[postgres]'" in connect_error
    assert attribute_error == (
        "MySqlStore needs the asyncmy package: pip install 'chatledger[mysql]'"
    )


def test_unknown_names_are_attribute_errors() -> None:
    """A name the package does not have is an AttributeError, lazy table or not."""
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = chatledger.NoSuchThing  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        from chatledger.stores import NoSuchStore  # type: ignore[attr-defined]  # noqa: F401


def test_package_is_typed() -> None:
    """py.typed ships beside the package, so users' type checkers read our hints."""
    assert (Path(chatledger.__file__).parent / "py.typed").is_file()
