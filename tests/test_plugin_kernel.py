"""The plugin kernel: a checked lifecycle, and events whose defaults change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chatledger.plugin import (
    AgentPlugin,
    LLMAgentEventHandler,
    LLMResponseMetadata,
    PluginContext,
    PluginMetadata,
    PluginState,
    PluginStateError,
    PluginType,
)

METADATA = PluginMetadata(
    id="echo",
    name="Echo",
    plugin_type=PluginType.TOOL,
    capabilities=("echo",),
)


class Echo(AgentPlugin):
    """Records the hooks it was called through and echoes its input."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        super().__init__(METADATA)
        self.calls: list[str] = []
        self.fail_on = fail_on

    async def _hook(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_on:
            raise RuntimeError(f"{name} failed")

    async def on_load(self) -> None:
        await self._hook("load")

    async def on_init(self) -> None:
        await self._hook("init")

    async def on_start(self) -> None:
        await self._hook("start")

    async def on_stop(self) -> None:
        await self._hook("stop")

    async def on_unload(self) -> None:
        await self._hook("unload")

    async def on_execute(self, input: Any) -> Any:
        return input


async def test_the_whole_lifecycle_in_order() -> None:
    """load, init_plugin (which starts, as MoFA's does), execute, stop, start again, unload."""
    plugin = Echo()
    assert plugin.state is PluginState.UNLOADED
    context = PluginContext(agent_id="agent-1", config={"k": 1})
    await plugin.load(context)
    assert (plugin.state, plugin.context) == (PluginState.LOADED, context)
    await plugin.init_plugin()
    assert plugin.state is PluginState.RUNNING
    assert await plugin.execute("ping") == "ping"
    await plugin.stop()
    assert plugin.state is PluginState.STOPPED
    await plugin.start()
    await plugin.stop()
    await plugin.unload()
    assert (plugin.state, plugin.context) == (PluginState.UNLOADED, None)
    assert plugin.calls == ["load", "init", "start", "stop", "start", "stop", "unload"]
    assert plugin.stats() == {"state": "unloaded"}
    assert plugin.metadata.has_capability("echo")
    assert not plugin.metadata.has_capability("storage")


async def test_init_plugin_leaves_the_plugin_running_as_in_mofa() -> None:
    """MoFA's agent calls load and init_plugin only, so init_plugin runs on_init then on_start.

    A later start(), as a generic plugin manager sends it, finds the plugin
    running and does nothing: on_start is not run twice.
    """

    class Watcher(Echo):
        seen: list[PluginState]

        async def on_start(self) -> None:
            self.seen = [self.state]
            await super().on_start()

    plugin = Watcher()
    await plugin.load(PluginContext())
    await plugin.init_plugin()
    assert plugin.state is PluginState.RUNNING
    assert plugin.seen == [PluginState.INITIALIZED]  # initialised, being started
    await plugin.start()
    assert plugin.state is PluginState.RUNNING
    assert plugin.calls == ["load", "init", "start"]


@pytest.mark.parametrize(
    ("steps", "refused", "hint"),
    [
        ([], "start", "load()"),
        (["load"], "start", "init_plugin()"),
        (["load", "init_plugin"], "init_plugin", "stop()"),
        (["load", "init_plugin"], "unload", "stop()"),
        (["load", "init_plugin"], "load", "stop()"),
        (["load", "init_plugin", "stop"], "init_plugin", r"start\(\) or unload()"),
        ([], "stop", "load()"),
    ],
)
async def test_steps_out_of_order_are_refused_with_the_next_step(
    steps: list[str], refused: str, hint: str
) -> None:
    """A step the state does not allow raises PluginStateError naming what to do next."""
    plugin = Echo()
    for step in steps:
        await (plugin.load(PluginContext()) if step == "load" else getattr(plugin, step)())
    before = plugin.state
    with pytest.raises(PluginStateError, match=rf"cannot {refused} plugin 'echo'.*{hint}"):
        await (plugin.load(PluginContext()) if refused == "load" else getattr(plugin, refused)())
    assert plugin.state is before


async def test_only_a_running_plugin_executes() -> None:
    """execute() before init_plugin() is refused; a plugin without on_execute takes none."""
    plugin = Echo()
    with pytest.raises(PluginStateError, match="not running"):
        await plugin.execute("x")
    bare = AgentPlugin(METADATA)
    await bare.load(PluginContext())
    await bare.init_plugin()
    with pytest.raises(NotImplementedError, match="does not execute input"):
        await bare.execute("x")


@pytest.mark.parametrize(
    ("fail_on", "calls"), [("init", ["load", "init"]), ("start", ["load", "init", "start"])]
)
async def test_a_failing_hook_leaves_the_plugin_in_error_until_unloaded(
    fail_on: str, calls: list[str]
) -> None:
    """The hook's exception propagates out of init_plugin; only unload() leads out of ERROR."""
    plugin = Echo(fail_on=fail_on)
    await plugin.load(PluginContext())
    with pytest.raises(RuntimeError, match=f"{fail_on} failed"):
        await plugin.init_plugin()
    assert plugin.state is PluginState.ERROR
    assert plugin.calls == calls
    with pytest.raises(PluginStateError, match=r"next: unload\(\)"):
        await plugin.start()
    await plugin.unload()
    assert plugin.state is PluginState.UNLOADED


async def test_a_failing_restart_leaves_the_plugin_in_error() -> None:
    """start() after stop() runs on_start again; when it raises, the plugin is in ERROR."""
    plugin = Echo()
    await plugin.load(PluginContext())
    await plugin.init_plugin()
    await plugin.stop()
    plugin.fail_on = "start"
    with pytest.raises(RuntimeError, match="start failed"):
        await plugin.start()
    assert plugin.state is PluginState.ERROR


async def test_event_handler_defaults_change_nothing() -> None:
    """Every default hook returns None: the text goes on unchanged."""
    handler = LLMAgentEventHandler()
    metadata = LLMResponseMetadata(model="gpt-4o-mini", prompt_tokens=10, completion_tokens=2)
    assert await handler.before_chat("hi") is None
    assert await handler.before_chat_with_model("hi", "gpt-4o-mini") is None
    assert await handler.after_chat("hello") is None
    assert await handler.after_chat_with_metadata("hello", metadata) is None
    assert await handler.on_tool_call("search", {"q": "x"}) is None
    assert await handler.on_error(RuntimeError("boom")) is None


def test_response_metadata_refuses_negative_counts() -> None:
    """Token counts are never negative; time to first token is optional."""
    with pytest.raises(ValidationError, match="prompt_tokens"):
        LLMResponseMetadata(model="m", prompt_tokens=-1)
    metadata = LLMResponseMetadata(model="m", cached_tokens=3, finish_reason="stop")
    assert (metadata.time_to_first_token_ms, metadata.estimated) == (None, False)
