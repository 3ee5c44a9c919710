"""Write src/chatledger/_sync_methods.py: a blocking twin of every store-protocol coroutine.

``chatledger.sync.SyncStore`` inherits the generated ``SyncMethods``, so each
blocking method has the async protocol's own signature and type checkers see
them all (``__getattr__`` would make every call ``Any``). The signatures are
copied from the protocols' source (``stores/base.py``) as written, defaults
included; ``tests/test_sync.py`` fails when the file on disk is not what this
script writes. Run it after changing a protocol::

    python scripts/generate_sync.py
"""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = ROOT / "src" / "chatledger" / "stores" / "base.py"
TARGET = ROOT / "src" / "chatledger" / "_sync_methods.py"
# The protocols the persistence store is made of, in the order the methods are written.
CLASSES = ("MessageStore", "ApiCallStore", "SessionStore", "ProviderStore", "AgentStore")
FULL = "PersistenceStore"
# Written by hand in sync.py: closing also stops the loop.
BY_HAND = frozenset({"close"})

HEADER = '''"""Blocking twins of the store protocols' coroutines: generated, do not edit.

Written by scripts/generate_sync.py from chatledger/stores/base.py; tests/test_sync.py
fails when this file is out of date.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Coroutine
from typing import Any, TypeVar

{imports}

__all__ = ["SyncMethods"]

_T = TypeVar("_T")


class SyncMethods:
    """Each store coroutine as a method that blocks until it is done (see chatledger.sync)."""

    __slots__ = ()

    @property
    @abstractmethod
    def _async_store(self) -> PersistenceStore:
        """The async store the calls go to."""

    @abstractmethod
    def _wait(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the store's loop; its result."""
'''


def _imports(tree: ast.Module) -> dict[str, str]:
    """Where each name base.py uses comes from: ``from x import name`` or ``import name``."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            for alias in node.names:
                found[alias.asname or alias.name] = f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name] = f"import {alias.name}"
        elif isinstance(node, ast.ClassDef):
            found[node.name] = f"from chatledger.stores.base import {node.name}"
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = f"from chatledger.stores.base import {target.id}"
    return found


def _methods(tree: ast.Module) -> list[ast.AsyncFunctionDef]:
    """The protocols' coroutines, each once, in the order of CLASSES then the full store."""
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    seen: set[str] = set()
    methods: list[ast.AsyncFunctionDef] = []
    for name in (*CLASSES, FULL):
        for node in classes[name].body:
            if (
                isinstance(node, ast.AsyncFunctionDef)
                and not node.name.startswith("_")
                and node.name not in seen | BY_HAND
            ):
                seen.add(node.name)
                methods.append(node)
    return methods


def _method(node: ast.AsyncFunctionDef) -> str:
    """The blocking twin of ``node``: same parameters, its first docstring line."""
    args = node.args
    parameters = ast.unparse(
        ast.arguments(
            posonlyargs=args.posonlyargs,
            args=args.args,
            vararg=args.vararg,
            kwonlyargs=args.kwonlyargs,
            kw_defaults=args.kw_defaults,
            kwarg=args.kwarg,
            defaults=args.defaults,
        )
    )
    passed = [a.arg for a in (*args.posonlyargs, *args.args) if a.arg != "self"]
    passed += [f"{a.arg}={a.arg}" for a in args.kwonlyargs]
    returns = "None" if node.returns is None else ast.unparse(node.returns)
    # The protocol's own summary (its first paragraph), rewrapped to fit.
    first = (ast.get_docstring(node) or f"Blocking ``{node.name}``.").split("\n\n")[0]
    lines = textwrap.wrap(" ".join(first.split()), width=100 - 8 - 6)  # indentation and both quotes
    summary = lines[0] if len(lines) == 1 else "\n        ".join([*lines, ""])
    return (
        f"    def {node.name}({parameters}) -> {returns}:\n"
        f'        """{summary}"""\n'
        f"        return self._wait(self._async_store.{node.name}({', '.join(passed)}))\n"
    )


def _names(nodes: list[ast.AsyncFunctionDef]) -> set[str]:
    """Every name the twins' parameters, defaults and return types mention."""
    names: set[str] = {"PersistenceStore"}
    for node in nodes:
        for part in (node.args, node.returns):
            if part is None:
                continue
            names.update(n.id for n in ast.walk(part) if isinstance(n, ast.Name))
    return {name for name in names if not hasattr(builtins, name)}


def generate() -> str:
    """The module's text, formatted as ruff formats the project."""
    tree = ast.parse(PROTOCOLS.read_text(encoding="utf-8"))
    methods = _methods(tree)
    sources = _imports(tree)
    plain = sorted(sources[n] for n in _names(methods) if sources[n].startswith("import "))
    grouped: dict[str, list[str]] = {}
    for name in _names(methods):
        statement = sources[name]
        if statement.startswith("from "):
            module = statement.split()[1]
            grouped.setdefault(module, []).append(statement.split()[-1])
    imports = "\n".join(plain)
    imports += "\n\n" + "\n".join(
        f"from {module} import {', '.join(sorted(set(names)))}"
        for module, names in sorted(grouped.items())
    )
    text = HEADER.format(imports=imports.strip()) + "".join("\n" + _method(m) for m in methods)
    formatted = subprocess.run(  # noqa: S603  (this interpreter's ruff, on our own text)
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return subprocess.run(  # noqa: S603  (as above)
        [sys.executable, "-m", "ruff", "check", "--select", "I", "--fix", "--quiet",
         "--stdin-filename", str(TARGET), "-"],
        input=formatted,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    ).stdout  # fmt: skip


def main() -> None:
    """Write the module, saying whether it changed."""
    text = generate()
    old = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
    if text == old:
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
