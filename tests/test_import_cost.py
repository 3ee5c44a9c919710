"""What importing chatledger loads: nothing heavy until a name is used (issue 15).

Each check runs in a fresh interpreter and looks at ``sys.modules``, not at a
clock, so it holds on a loaded machine; ``python -m benchmarks --only import``
measures the time itself.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import chatledger

# Third-party and standard modules `import chatledger` must not load: the models
# (pydantic), the terminal UI (rich), drivers and SDKs, and what the stores and the
# recorder bring (sqlite3, asyncio).
HEAVY = (
    "asyncio",
    "asyncmy",
    "asyncpg",
    "genai_prices",
    "openai",
    "pydantic",
    "pydantic_core",
    "rich",
    "sqlite3",
    "tiktoken",
)
INIT = Path(chatledger.__file__)


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import sys\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_import_chatledger_loads_only_the_package_itself() -> None:
    """`import chatledger` loads no other chatledger module and nothing heavy."""
    loaded = _loaded_after("import chatledger")
    ours = sorted(name for name in loaded if name.split(".")[0] == "chatledger")
    assert ours == ["chatledger", "chatledger._lazy"]
    assert sorted(name for name in loaded if name.split(".")[0] in HEAVY) == []


@pytest.mark.parametrize(
    ("name", "loads", "spares"),
    [
        ("uuid7", "chatledger.ids", ("pydantic", "chatledger.entities")),
        ("NotFoundError", "chatledger.errors", ("pydantic", "chatledger.entities")),
        ("LLMMessage", "chatledger.entities", ("chatledger.stores", "chatledger.sync")),
        ("scope", "chatledger.recording.scope", ("pydantic", "chatledger.recording.recorder")),
        ("PersistenceStore", "chatledger.stores.base", ("chatledger.stores.sqlite", "sqlite3")),
        ("InMemoryStore", "chatledger.stores.memory", ("chatledger.stores.sqlite", "sqlite3")),
        ("SqliteStore", "chatledger.stores.sqlite", ("chatledger.recording.recorder",)),
        ("Recorder", "chatledger.recording.recorder", ("chatledger.stores.sqlite", "rich")),
        ("sync", "chatledger.sync", ("chatledger.stores.sqlite", "chatledger.recording")),
        ("StaticPricingRegistry", "chatledger.pricing", ("pydantic", "genai_prices")),
    ],
)
def test_a_name_loads_its_module_and_not_the_rest(
    name: str, loads: str, spares: tuple[str, ...]
) -> None:
    """Using one name loads the module that defines it, not every other module."""
    loaded = _loaded_after(f"import chatledger\nchatledger.{name}")
    assert loads in loaded
    assert sorted(set(spares) & loaded) == []


def test_each_lazy_name_is_the_object_its_module_defines() -> None:
    """Every public name resolves, and is the very object of the module the table names."""
    import importlib

    for name, module_name in chatledger._LAZY.items():
        module = importlib.import_module(module_name)
        expected = module if module_name == f"chatledger.{name}" else getattr(module, name)
        assert getattr(chatledger, name) is expected, name
    assert chatledger.sync is sys.modules["chatledger.sync"]
    assert chatledger.scope is sys.modules["chatledger.recording.scope"].scope


def _type_checking_imports(path: Path) -> dict[str, str]:
    """``{name: module}`` of the ``from module import name`` under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
                for alias in statement.names:
                    module = statement.module or ""
                    # `from chatledger import sync` names the submodule itself.
                    found[alias.asname or alias.name] = (
                        f"{module}.{alias.name}" if module == "chatledger" else module
                    )
    return found


def test_what_type_checkers_see_is_what_the_package_loads() -> None:
    """The root's TYPE_CHECKING imports are its public names, from the modules it loads."""
    seen = _type_checking_imports(INIT)
    public = {name: module for name, module in chatledger._LAZY.items() if name in seen}
    assert seen == public
    assert set(seen) == set(chatledger.__all__) - {"__version__"}


@pytest.mark.parametrize("package", ["chatledger.stores", "chatledger.recording"])
def test_a_lazy_subpackage_types_every_name_it_loads(package: str) -> None:
    """stores and recording list each lazy name under TYPE_CHECKING, from the module it loads."""
    import importlib

    module = importlib.import_module(package)
    assert module.__file__ is not None
    seen = _type_checking_imports(Path(module.__file__))
    assert seen == {name: source for name, source in module._LAZY.items() if name in seen}
    assert set(module._LAZY) - set(seen) <= {"base", "memory", "sqlite"}  # submodules
    assert set(module.__all__) <= set(dir(module))


def test_the_old_eager_submodules_are_still_attributes() -> None:
    """`import chatledger; chatledger.stores.connect` keeps working as when it was eager."""
    loaded = _loaded_after(
        "import chatledger\n"
        "assert chatledger.stores.connect and chatledger.entities.LLMMessage\n"
        "assert chatledger.errors.NotFoundError and chatledger.usage.count_tokens"
    )
    assert {"chatledger.stores", "chatledger.entities", "chatledger.usage"} <= loaded
    assert "chatledger.stores.sqlite" not in loaded


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name the package does not export raises AttributeError, so hasattr says False."""
    assert not hasattr(chatledger, "no_such_name")
    with pytest.raises(ImportError):
        from chatledger import no_such_name  # type: ignore[attr-defined]  # noqa: F401


@pytest.mark.parametrize(
    "module",
    [
        "chatledger.errors",
        "chatledger.ids",
        "chatledger.recording.retention",  # parse_duration: the command line's parser uses it
        "chatledger.recording.scope",
        "chatledger.stores.urls",  # redact: every command's error messages use it
    ],
)
def test_light_modules_load_no_pydantic_and_no_store(module: str) -> None:
    """Modules a program (or the command line) needs before touching a record stay light."""
    loaded = _loaded_after(f"import {module}")
    heavy = {"pydantic", "chatledger.entities", "chatledger.stores.base", "sqlite3", "asyncio"}
    assert sorted(heavy & loaded) == []
