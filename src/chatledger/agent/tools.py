"""Tools an agent's model may call: their description, and what runs them.

A :class:`Tool` is what the model is told about a function it may ask for:
a name, a description and the JSON schema of its arguments (MoFA's
``Tool::function``). A :class:`ToolExecutor` runs a call, ``(name,
arguments)`` to a result string, as MoFA's ``ToolExecutor`` does; the
arguments are the JSON text the model sent. :class:`FunctionToolExecutor`
is the executor an agent makes from tools that carry a Python function,
sync or async, so that ``with_tool(Tool.from_function(get_weather))`` is all
it takes.

A :class:`ToolCall` is one call the model asked for. Its ``arguments`` stay
the model's JSON text, so that what goes back to the model is exactly what
it sent, even when that text is not valid JSON.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from chatledger.entities import ToolCallContent

__all__ = [
    "FunctionToolExecutor",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolExecutor",
    "ToolRoundsExceededError",
]

_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}
_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


class ToolError(Exception):
    """A tool call that could not run: an unknown tool, or arguments that are not a JSON object."""


class ToolRoundsExceededError(RuntimeError):
    """The model still asked for tools after the agent's last allowed round of tool calls."""

    def __init__(self, rounds: int) -> None:
        """The agent ran ``rounds`` rounds of tool calls and the model asked for more."""
        super().__init__(
            f"the model still asked for tools after {rounds} rounds of tool calls; "
            "raise the limit with LLMAgentBuilder.with_max_tool_rounds(n) if that is expected"
        )
        self.rounds = rounds


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for: its id, the tool's name and the JSON arguments text."""

    id: str
    name: str
    arguments: str = "{}"

    def to_content(self) -> ToolCallContent:
        """The call as the ledger stores it: arguments parsed when they are JSON (as MoFA's)."""
        arguments = ToolCallContent.parse_arguments(self.arguments)
        return ToolCallContent(id=self.id, name=self.name, arguments=arguments)

    @classmethod
    def from_content(cls, content: ToolCallContent) -> ToolCall:
        """A stored call, its arguments as JSON text again."""
        arguments = content.arguments
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return cls(id=content.id, name=content.name, arguments=text)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, description and JSON-schema parameters.

    ``function``, when given, is what :class:`FunctionToolExecutor` runs: it is
    called with the model's arguments as keyword arguments and may be async.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(_EMPTY_SCHEMA))
    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Refuse a name the APIs would refuse."""
        if not self.name or len(self.name) > 64:
            raise ValueError(f"a tool name has 1 to 64 characters, not {self.name!r}")

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Tool:
        """A tool for ``function``: its name, docstring and a schema read from its signature.

        Parameters annotated ``str``, ``int``, ``float``, ``bool``, ``list``,
        ``dict``, ``Literal[...]`` or ``X | None`` get their JSON type; a
        parameter without a default is required. Pass ``parameters`` to give
        the schema yourself.
        """
        doc = inspect.getdoc(function) or ""
        return cls(
            name=name or function.__name__,
            description=description if description is not None else doc.split("\n\n")[0],
            parameters=parameters if parameters is not None else _schema_of(function),
            function=function,
        )

    def to_openai(self) -> dict[str, Any]:
        """The tool in OpenAI's function-tool form."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@runtime_checkable
class ToolExecutor(Protocol):
    """Runs the tool calls a model asks for (MoFA's ``ToolExecutor``).

    An executor may also offer ``async available_tools() -> list[Tool]``; the
    agent then tells the model about those when it was given no tools itself.
    """

    async def execute(self, name: str, arguments: str) -> str:
        """Run tool ``name`` with ``arguments`` (the model's JSON text); its result as text."""
        ...


class FunctionToolExecutor:
    """Runs tools by calling their Python functions (sync ones directly, async ones awaited)."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        """An executor for ``tools``; each must carry a function."""
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.function is None:
                raise ValueError(f"tool {tool.name!r} has no function to run")
            self._tools[tool.name] = tool

    async def available_tools(self) -> list[Tool]:
        """The tools this executor runs."""
        return list(self._tools.values())

    async def execute(self, name: str, arguments: str) -> str:
        """Call tool ``name``'s function with the parsed arguments; its result as text."""
        tool = self._tools.get(name)
        if tool is None or tool.function is None:
            raise ToolError(f"no tool named {name!r}; known tools: {sorted(self._tools)}")
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise ToolError(f"the arguments of {name!r} are not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ToolError(f"the arguments of {name!r} are not a JSON object")
        result = tool.function(**parsed)
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, str) else json.dumps(result, default=str)


def _schema_of(function: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of ``function``'s keyword arguments, from its signature and annotations."""
    try:
        hints = typing.get_type_hints(function)
    except (NameError, TypeError):  # an annotation that cannot be resolved: untyped
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        properties[parameter.name] = _json_type(hints.get(parameter.name, Any))
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _json_type(annotation: Any) -> dict[str, Any]:
    """The JSON schema for one annotation; ``{}`` (anything) for what it cannot say."""
    origin = typing.get_origin(annotation)
    arguments: Sequence[Any] = typing.get_args(annotation)
    if origin is Literal:
        return {"enum": list(arguments)}
    if origin in (typing.Union, types.UnionType):
        present = [a for a in arguments if a is not type(None)]
        return _json_type(present[0]) if len(present) == 1 else {}
    json_type = _JSON_TYPES.get(origin or annotation)
    if json_type is None:
        return {}
    schema: dict[str, Any] = {"type": json_type}
    if json_type == "array" and len(arguments) == 1:
        schema["items"] = _json_type(arguments[0])
    return schema
