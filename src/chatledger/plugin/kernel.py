"""The plugin kernel: what a plugin is, and the lifecycle every plugin goes through.

A plugin is loaded into a context, initialised (which also starts it), and
stopped and unloaded again; :class:`AgentPlugin` checks each step against the
state the plugin is in, so a plugin used out of order says so instead of
half-working. Subclasses implement the ``on_*`` hooks; the public methods stay
in charge of the state.

``init_plugin()`` leaves the plugin ``RUNNING``, as MoFA's does: MoFA's
``LLMAgent`` only ever calls ``load`` and ``init_plugin`` on its plugins, and
its ``PersistencePlugin`` is running from then on. So ``init_plugin()`` runs
``on_init`` and then ``on_start`` (the plugin is ``INITIALIZED`` while
``on_start`` runs), and a later ``start()``, as a generic plugin manager
sends it, finds the plugin running and does nothing.

::

    UNLOADED --load--> LOADED --init_plugin--> RUNNING <--start-- STOPPED
                          (on_init, then on_start)   |               ^
                                                     +----- stop ----+
    start() on a RUNNING plugin: nothing to do
    any state but RUNNING --unload--> UNLOADED;  a hook that raises --> ERROR
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "AgentPlugin",
    "PluginContext",
    "PluginMetadata",
    "PluginState",
    "PluginStateError",
    "PluginType",
]


class PluginType(StrEnum):
    """What kind of work a plugin does."""

    LLM = "llm"
    TOOL = "tool"
    STORAGE = "storage"
    MEMORY = "memory"
    VECTOR_DB = "vector_db"
    COMMUNICATION = "communication"
    MONITOR = "monitor"
    CUSTOM = "custom"


class PluginState(StrEnum):
    """Where a plugin is in its lifecycle."""

    UNLOADED = "unloaded"
    LOADED = "loaded"
    INITIALIZED = "initialized"
    """Initialised and being started: the state ``on_start`` sees inside ``init_plugin()``."""
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


class PluginStateError(RuntimeError):
    """A lifecycle step was asked of a plugin in a state that does not allow it."""


@dataclass(frozen=True, slots=True)
class PluginMetadata:
    """Who a plugin is and what it can do."""

    id: str
    name: str
    plugin_type: PluginType
    version: str = "0.1.0"
    description: str = ""
    dependencies: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()

    def has_capability(self, capability: str) -> bool:
        """Whether the plugin declares ``capability``."""
        return capability in self.capabilities


@dataclass(slots=True)
class PluginContext:
    """What a plugin is loaded into: its agent, its configuration, state plugins share."""

    agent_id: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)


# Which states each step may start from, and the state it leads to.
_STEPS: dict[str, tuple[frozenset[PluginState], PluginState]] = {
    "load": (frozenset({PluginState.UNLOADED}), PluginState.LOADED),
    # init_plugin goes on to "start": LOADED -> INITIALIZED -> RUNNING.
    "init_plugin": (frozenset({PluginState.LOADED}), PluginState.INITIALIZED),
    "start": (frozenset({PluginState.INITIALIZED, PluginState.STOPPED}), PluginState.RUNNING),
    "stop": (frozenset({PluginState.RUNNING}), PluginState.STOPPED),
    "unload": (frozenset(PluginState) - {PluginState.RUNNING}, PluginState.UNLOADED),
}
_NEXT_STEP = {
    PluginState.UNLOADED: "load()",
    PluginState.LOADED: "init_plugin()",
    PluginState.INITIALIZED: "start()",
    PluginState.RUNNING: "stop()",
    PluginState.STOPPED: "start() or unload()",
    PluginState.ERROR: "unload()",
}


class AgentPlugin:
    """A plugin with a checked lifecycle; subclasses override the ``on_*`` hooks.

    Each lifecycle method moves the plugin to its next state only when its
    hook succeeds; a hook that raises leaves the plugin in ``ERROR``, from
    which only :meth:`unload` leads out.
    """

    def __init__(self, metadata: PluginMetadata) -> None:
        """A plugin described by ``metadata``, not loaded yet."""
        self._metadata = metadata
        self._state = PluginState.UNLOADED
        self._context: PluginContext | None = None

    @property
    def metadata(self) -> PluginMetadata:
        """Who the plugin is and what it can do."""
        return self._metadata

    @property
    def state(self) -> PluginState:
        """Where the plugin is in its lifecycle."""
        return self._state

    @property
    def context(self) -> PluginContext | None:
        """The context the plugin was loaded into, if it is loaded."""
        return self._context

    async def load(self, ctx: PluginContext) -> None:
        """Load the plugin into ``ctx``."""
        self._context = ctx
        await self._step("load", self.on_load)

    async def init_plugin(self) -> None:
        """Initialise the loaded plugin and start it: it is ``RUNNING`` afterwards, as in MoFA."""
        await self._step("init_plugin", self.on_init)
        await self._step("start", self.on_start)

    async def start(self) -> None:
        """Start the stopped plugin again; a running plugin is left as it is."""
        if self._state is PluginState.RUNNING:
            return
        await self._step("start", self.on_start)

    async def stop(self) -> None:
        """Stop the running plugin."""
        await self._step("stop", self.on_stop)

    async def unload(self) -> None:
        """Unload the plugin; a running plugin must be stopped first."""
        await self._step("unload", self.on_unload)
        self._context = None

    async def execute(self, input: Any) -> Any:
        """Run the plugin on ``input``; only a running plugin executes."""
        if self._state is not PluginState.RUNNING:
            raise PluginStateError(
                f"plugin {self._metadata.id!r} cannot execute: it is {self._state.value}, "
                f"not running; next: {_NEXT_STEP[self._state]}"
            )
        return await self.on_execute(input)

    def stats(self) -> dict[str, Any]:
        """Counters describing the plugin's work so far."""
        return {"state": self._state.value}

    # --- hooks for subclasses ---------------------------------------------------------

    async def on_load(self) -> None:
        """Called by :meth:`load`; ``self.context`` is set."""

    async def on_init(self) -> None:
        """Called by :meth:`init_plugin`, before :meth:`on_start`."""

    async def on_start(self) -> None:
        """Called by :meth:`init_plugin` after :meth:`on_init`, and by :meth:`start` after stop."""

    async def on_stop(self) -> None:
        """Called by :meth:`stop`."""

    async def on_unload(self) -> None:
        """Called by :meth:`unload`."""

    async def on_execute(self, input: Any) -> Any:
        """Called by :meth:`execute`; plugins that take direct input override it."""
        raise NotImplementedError(f"plugin {self._metadata.id!r} does not execute input")

    # --- the state machine -------------------------------------------------------------

    async def _step(self, step: str, hook: Any) -> None:
        allowed, target = _STEPS[step]
        if self._state not in allowed:
            raise PluginStateError(
                f"cannot {step} plugin {self._metadata.id!r}: it is {self._state.value}; "
                f"next: {_NEXT_STEP[self._state]}"
            )
        try:
            await hook()
        except BaseException:
            self._state = PluginState.ERROR
            raise
        self._state = target
