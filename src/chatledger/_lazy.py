"""Names a package exports before importing the module that defines them (PEP 562).

A package lists such names in a table, ``{name: module}`` (``table`` builds
one from ``{module: names}``), and ``attach`` gives it the module-level
``__getattr__`` and ``__dir__`` that load them. The module is imported on first access and the value
kept in the package's namespace, so later lookups are plain attribute reads.
A name that maps to the package's own submodule of that name is that
submodule. This keeps ``import chatledger`` from loading pydantic, the stores,
the recorder, the server backends, the agent and the plugins until they are
used.

A module that fails to import because an optional driver is missing raises an
``ImportError`` naming the extra that installs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

__all__: list[str] = []

# The top-level package of each optional driver, and the extra that installs it.
_EXTRA_OF_DRIVER = {"asyncpg": "postgres", "asyncmy": "mysql", "openai": "openai"}


def table(
    package: str, names_by_module: Mapping[str, Iterable[str]], submodules: Iterable[str] = ()
) -> dict[str, str]:
    """``{name: module}`` from ``{module: names}`` and ``package``'s ``submodules``.

    A name listed twice is an error.
    """
    modules = {name: f"{package}.{name}" for name in submodules}
    for module, names in names_by_module.items():
        for name in names:
            if name in modules:
                raise ValueError(f"{name!r} is listed for {modules[name]} and {module}")
            modules[name] = module
    return modules


def load(namespace: dict[str, Any], table: Mapping[str, str], name: str) -> Any:
    """The value of ``name`` from the module ``table`` maps it to, kept in ``namespace``."""
    module_name = table.get(name)
    if module_name is None:
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        driver = (exc.name or "").partition(".")[0]
        extra = _EXTRA_OF_DRIVER.get(driver)
        if extra is None:
            raise
        raise ImportError(
            f"{name} needs the {driver} package: pip install 'chatledger[{extra}]'",
            name=exc.name,
        ) from exc
    # The submodule itself, as ``import package.name`` would bind it.
    own = module_name == f"{namespace['__name__']}.{name}"
    value = module if own else getattr(module, name)
    namespace[name] = value
    return value


def attach(namespace: dict[str, Any], table: Mapping[str, str]) -> None:
    """Give the package whose ``namespace`` this is the ``__getattr__`` and ``__dir__`` that
    load ``table``'s names (PEP 562).

    Set at run time, so type checkers read the package's ``TYPE_CHECKING``
    imports instead, and flag a name it does not have.
    """

    def get(name: str) -> Any:
        return load(namespace, table, name)

    def listed() -> list[str]:
        return names(namespace, table)

    namespace["__getattr__"] = get
    namespace["__dir__"] = listed


def names(namespace: Mapping[str, Any], table: Mapping[str, str]) -> list[str]:
    """What ``dir()`` of the package lists: what it holds and what it will load."""
    return sorted({*namespace, *table})
