"""The agent: a conversation with a model, its sessions, and the plugins and handlers around it.

:class:`LLMAgentBuilder` puts an agent together; :class:`LLMAgent` chats, whole
(:meth:`LLMAgent.chat`) or streamed (:meth:`LLMAgent.chat_stream`). Around every
call it runs each event handler (a persistence plugin is one): before the
call, after it with what is known about the response, or on its error. When
the provider reports no usage the agent counts the tokens itself and says so
in the metadata. History is kept per session; with a persistence plugin the
sessions live in its store and are loaded from it.

With tools (:meth:`LLMAgentBuilder.with_tool`, :meth:`~LLMAgentBuilder.with_tool_executor`)
one turn may take several model round trips: while the model asks for tools,
the agent runs the calls one after another, in the order the model gave them
(a later call may depend on an earlier one's effect), offers each to every
handler's ``on_tool_call`` first (a handler's reply stands in for the tool's
result, as in MoFA), sends every result back as a ``tool`` message, and asks
again. A tool that raises does not end the chat: its error text becomes the
result, marked as an error. After ``max_tool_rounds`` rounds of tool calls a
model that still asks for tools ends the turn with
:class:`~chatledger.agent.tools.ToolRoundsExceededError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from chatledger.agent.providers import (
    ChatMessage,
    ChatRequest,
    Completion,
    LLMProvider,
    StreamEnd,
    partial_metadata,
)
from chatledger.agent.tools import (
    FunctionToolExecutor,
    Tool,
    ToolCall,
    ToolExecutor,
    ToolRoundsExceededError,
)
from chatledger.entities import ChatSession, LLMMessage, MessageRole, ToolResultContent
from chatledger.ids import NIL_UUID, uuid7
from chatledger.plugin.events import LLMAgentEventHandler, LLMResponseMetadata
from chatledger.plugin.kernel import AgentPlugin, PluginContext, PluginState
from chatledger.plugin.persistence import PersistencePlugin
from chatledger.usage import count_tokens

__all__ = ["DEFAULT_MAX_TOOL_ROUNDS", "LLMAgent", "LLMAgentBuilder"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOOL_ROUNDS = 10
"""Rounds of tool calls one turn may take before the agent gives up (MoFA's limit too)."""


class LLMAgentBuilder:
    """Builds an :class:`LLMAgent`: ``LLMAgentBuilder().with_provider(p).with_model(m)...``."""

    def __init__(self) -> None:
        """An empty builder; a provider and a model are required before building."""
        self._provider: LLMProvider | None = None
        self._model: str | None = None
        self._system_prompt: str | None = None
        self._temperature: float | None = None
        self._max_tokens: int | None = None
        self._name = "agent"
        self._plugins: list[AgentPlugin] = []
        self._handlers: list[LLMAgentEventHandler] = []
        self._persistence: PersistencePlugin | None = None
        self._session_id: uuid.UUID | None = None
        self._rounds: int | None = None
        self._tools: list[Tool] = []
        self._executor: ToolExecutor | None = None
        self._max_tool_rounds = DEFAULT_MAX_TOOL_ROUNDS

    def with_provider(self, provider: LLMProvider) -> Self:
        """The provider that answers."""
        self._provider = provider
        return self

    def with_model(self, model: str) -> Self:
        """The model to ask for."""
        self._model = model
        return self

    def with_system_prompt(self, prompt: str) -> Self:
        """The system prompt sent before the conversation."""
        self._system_prompt = prompt
        return self

    def with_temperature(self, temperature: float) -> Self:
        """The sampling temperature."""
        self._temperature = temperature
        return self

    def with_max_tokens(self, max_tokens: int) -> Self:
        """The most completion tokens to ask for."""
        self._max_tokens = max_tokens
        return self

    def with_name(self, name: str) -> Self:
        """The agent's name."""
        self._name = name
        return self

    def with_plugin(self, plugin: AgentPlugin) -> Self:
        """A plugin started with the agent; called around chats if it handles events."""
        self._plugins.append(plugin)
        return self

    def with_persistence_plugin(self, plugin: PersistencePlugin) -> Self:
        """The plugin that records chats; its store holds the agent's sessions."""
        self._persistence = plugin
        return self.with_plugin(plugin)

    def with_event_handler(self, handler: LLMAgentEventHandler) -> Self:
        """A handler called around every chat."""
        self._handlers.append(handler)
        return self

    def with_session_id(self, session_id: uuid.UUID) -> Self:
        """The session to start in (its history is loaded when the agent is built)."""
        self._session_id = session_id
        return self

    def with_sliding_window(self, rounds: int) -> Self:
        """Send only the last ``rounds`` user/assistant exchanges to the model."""
        if rounds < 1:
            raise ValueError(f"a sliding window holds at least one round, not {rounds}")
        self._rounds = rounds
        return self

    def with_tool(self, tool: Tool | Callable[..., Any]) -> Self:
        """A tool the model may call; a plain function is made one with ``Tool.from_function``."""
        self._tools.append(tool if isinstance(tool, Tool) else Tool.from_function(tool))
        return self

    def with_tools(self, tools: Iterable[Tool | Callable[..., Any]]) -> Self:
        """Several tools the model may call, added to those given before."""
        for tool in tools:
            self.with_tool(tool)
        return self

    def with_tool_executor(self, executor: ToolExecutor) -> Self:
        """What runs the tool calls (by default, the functions the tools carry)."""
        self._executor = executor
        return self

    def with_max_tool_rounds(self, rounds: int) -> Self:
        """How many rounds of tool calls one turn may take (10 by default)."""
        if rounds < 1:
            raise ValueError(f"a turn allows at least one round of tool calls, not {rounds}")
        self._max_tool_rounds = rounds
        return self

    async def build_async(self) -> LLMAgent:
        """The agent, its plugins started and its session's history loaded."""
        if self._provider is None or self._model is None:
            raise ValueError("an agent needs with_provider(...) and with_model(...)")
        names = [tool.name for tool in self._tools]
        if len(set(names)) != len(names):
            raise ValueError(f"two tools share a name: {sorted(names)}")
        tools = list(self._tools)
        executor = self._executor
        if executor is None and tools:
            unrunnable = [tool.name for tool in tools if tool.function is None]
            if unrunnable:
                raise ValueError(
                    f"tools {unrunnable} have no function: give them one, or give the agent "
                    "with_tool_executor(...)"
                )
            executor = FunctionToolExecutor(tools)
        elif executor is not None and not tools:
            # MoFA's rule: an executor that lists its tools describes them to the model.
            available = getattr(executor, "available_tools", None)
            if available is not None:
                tools = list(await available())
        agent = LLMAgent(
            provider=self._provider,
            model=self._model,
            system_prompt=self._system_prompt,
            temperature=self._temperature,
            max_tokens=self._max_tokens,
            name=self._name,
            plugins=self._plugins,
            handlers=self._handlers,
            persistence=self._persistence,
            rounds=self._rounds,
            tools=tools,
            executor=executor,
            max_tool_rounds=self._max_tool_rounds,
        )
        await agent._start()
        session_id = self._session_id
        if session_id is None and self._persistence is not None:
            session_id = self._persistence.session_id
        await agent.get_or_create_session(session_id or uuid7())
        return agent


class LLMAgent:
    """A conversation with a model; build one with :class:`LLMAgentBuilder`."""

    def __init__(
        self,
        *,
        provider: LLMProvider,
        model: str,
        system_prompt: str | None,
        temperature: float | None,
        max_tokens: int | None,
        name: str,
        plugins: Sequence[AgentPlugin],
        handlers: Sequence[LLMAgentEventHandler],
        persistence: PersistencePlugin | None,
        rounds: int | None,
        tools: Sequence[Tool] = (),
        executor: ToolExecutor | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    ) -> None:
        """Use :class:`LLMAgentBuilder`."""
        self.provider = provider
        self.model = model
        self.name = name
        self._system_prompt = system_prompt
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._plugins = list(plugins)
        self._persistence = persistence
        self._handlers = [
            *(p for p in self._plugins if isinstance(p, LLMAgentEventHandler)),
            *handlers,
        ]
        self._rounds = rounds
        self._tools = tuple(tools)
        self._executor = executor
        self._max_tool_rounds = max_tool_rounds
        self._session_id = uuid7()
        self._history: list[ChatMessage] = []
        # Without a persistence plugin, sessions live here: each with its history.
        self._local: dict[uuid.UUID, tuple[ChatSession, list[ChatMessage]]] = {}
        self._local_agent = uuid7()

    # --- sessions ---------------------------------------------------------------------

    @property
    def current_session_id(self) -> uuid.UUID:
        """The session the agent is chatting in."""
        return self._session_id

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The tools the model is told it may call."""
        return self._tools

    @property
    def history(self) -> list[ChatMessage]:
        """The current session's messages, oldest first (a copy)."""
        return list(self._history)

    def clear_history(self) -> None:
        """Forget the current session's messages in memory (the store keeps them)."""
        self._history.clear()

    async def create_session(self) -> uuid.UUID:
        """Start a new, empty session and chat in it."""
        return await self._enter(uuid7(), load=False)

    async def switch_session(self, session_id: uuid.UUID) -> uuid.UUID:
        """Chat in ``session_id`` from now on, its history loaded from the store."""
        return await self._enter(session_id, load=True)

    async def get_or_create_session(self, session_id: uuid.UUID) -> uuid.UUID:
        """Switch to ``session_id``, which starts empty if it does not exist yet."""
        return await self._enter(session_id, load=True)

    async def delete_session(self, session_id: uuid.UUID) -> bool:
        """Delete a session and its messages; True when it existed."""
        plugin = self._persistence
        sessions = None if plugin is None else plugin.session_store
        existed = self._local.pop(session_id, None) is not None
        if plugin is not None and sessions is not None:
            await plugin.flush()  # nothing of it may ship after the delete
            existed = await sessions.delete_session(session_id) or existed
            plugin.recorder.forget(session_id)
        if session_id == self._session_id:
            await self.create_session()
        return existed

    async def list_sessions(self) -> list[ChatSession]:
        """The agent's sessions for its user, most recently updated first."""
        plugin = self._persistence
        if plugin is None or plugin.session_store is None:
            sessions = [session for session, _ in self._local.values()]
            return sorted(sessions, key=lambda session: session.update_time, reverse=True)
        await plugin.flush()  # sessions this process recorded are listed too
        sessions = await plugin.session_store.get_user_sessions(plugin.user_id)
        return [s for s in sessions if s.agent_id == plugin.agent_id]

    async def _enter(self, session_id: uuid.UUID, *, load: bool) -> uuid.UUID:
        self._session_id = session_id
        if self._persistence is not None:
            self._persistence.with_session_id(session_id)
            history = await self._persistence.load_history() if load else []
            self._history = _conversation(history)
            return session_id
        if session_id not in self._local:
            session = ChatSession.new(NIL_UUID, self._local_agent).with_id(session_id)
            self._local[session_id] = (session, [])
        self._history = self._local[session_id][1]  # the same list: turns land in it
        return session_id

    # --- chatting -----------------------------------------------------------------------

    async def chat(self, message: str) -> str:
        """Send ``message``; return the reply (after every handler had its say).

        While the model asks for tools, they run and the model is asked again.
        """
        turn = _Turn([ChatMessage("user", await self._before(message))])
        while True:
            request = self._request(turn.messages)
            try:
                completion = await self.provider.complete(request)
            except BaseException as exc:  # noqa: BLE001  (recorded, then re-raised or replaced)
                return await self._failed(turn, exc)
            metadata = completion.metadata
            if not completion.usage_reported:
                metadata = self._estimate(request, completion, metadata)
            if not completion.tool_calls:
                return await self._after(turn, completion.text, metadata)
            try:
                await self._run_tools(turn, completion.text, completion.tool_calls, metadata)
            except ToolRoundsExceededError as exc:
                return await self._failed(turn, exc, metadata)

    async def chat_stream(self, message: str) -> AsyncGenerator[str, None]:
        """Send ``message``; yield the reply as it arrives. Handlers run when it ends.

        Tool rounds happen inside: what is yielded is the text the model says,
        the final answer's as it streams (and any text a tool round says first).
        """
        turn = _Turn([ChatMessage("user", await self._before(message))])
        while True:
            request = self._request(turn.messages)
            pieces: list[str] = []
            end: StreamEnd | None = None
            try:
                # aclosing: a reader that stops early closes the provider's stream at once
                async with contextlib.aclosing(self.provider.stream(request)) as stream:
                    async for item in stream:
                        if isinstance(item, StreamEnd):
                            end = item
                        else:
                            pieces.append(item)
                            yield item
            except BaseException as exc:  # GeneratorExit too: recorded as cancelled
                await self._failed(turn, exc, reraise=True)
                raise
            text = "".join(pieces)
            completion = Completion(
                text,
                LLMResponseMetadata(model=self.model, time_to_first_token_ms=0),
                usage_reported=False,
            )
            if end is not None:
                completion = Completion(text, end.metadata, end.usage_reported, end.tool_calls)
            metadata = completion.metadata
            if not completion.usage_reported:
                metadata = self._estimate(request, completion, metadata)
            if not completion.tool_calls:
                await self._after(turn, text, metadata)
                return
            try:
                await self._run_tools(turn, text, completion.tool_calls, metadata)
            except ToolRoundsExceededError as exc:
                await self._failed(turn, exc, metadata, reraise=True)
                raise

    def _request(self, turn: Sequence[ChatMessage]) -> ChatRequest:
        window = self._history
        if self._rounds is not None:
            # A round starts at a user message: its tool calls and results go with it.
            starts = [i for i, m in enumerate(window) if m.role == "user"]
            if len(starts) > self._rounds:
                window = window[starts[-self._rounds] :]
        system = [] if self._system_prompt is None else [ChatMessage("system", self._system_prompt)]
        return ChatRequest(
            model=self.model,
            messages=[*system, *window, *turn],
            temperature=self._temperature,
            max_tokens=self._max_tokens,
            tools=self._tools,
        )

    def _estimate(
        self, request: ChatRequest, completion: Completion, metadata: LLMResponseMetadata
    ) -> LLMResponseMetadata:
        """The metadata with tokens counted here, marked as estimated."""
        model = metadata.model
        prompt = sum(
            count_tokens(_said(m.content, m.tool_calls), model)[0] for m in request.messages
        )
        completion_tokens, _ = count_tokens(_said(completion.text, completion.tool_calls), model)
        counts = {"prompt_tokens": prompt, "completion_tokens": completion_tokens}
        return metadata.model_copy(update={**counts, "estimated": True})

    async def _before(self, message: str) -> str:
        for handler in self._handlers:
            replaced = await handler.before_chat_with_model(message, self.model)
            if replaced is not None:
                message = replaced
        return message

    async def _after(self, turn: _Turn, reply: str, metadata: LLMResponseMetadata) -> str:
        for handler in self._handlers:
            replaced = await handler.after_chat_with_metadata(reply, metadata)
            if replaced is not None:
                reply = replaced
        self._history += [*turn.messages, ChatMessage("assistant", reply)]
        return reply

    async def _run_tools(
        self,
        turn: _Turn,
        text: str,
        calls: Sequence[ToolCall],
        metadata: LLMResponseMetadata,
    ) -> None:
        """Run one round of tool calls, in order, each result added to the turn."""
        if turn.tool_rounds >= self._max_tool_rounds:
            raise ToolRoundsExceededError(turn.tool_rounds)
        turn.tool_rounds += 1
        contents = [call.to_content() for call in calls]
        for handler in self._handlers:
            await handler.after_chat_with_tool_calls(text, contents, metadata)
        turn.messages.append(ChatMessage("assistant", text, tool_calls=tuple(calls)))
        for call, content in zip(calls, contents, strict=True):
            result = await self._run_tool(call)
            for handler in self._handlers:
                await handler.on_tool_result(content, result)
            turn.messages.append(ChatMessage("tool", result.content, tool_call_id=call.id))

    async def _run_tool(self, call: ToolCall) -> ToolResultContent:
        """One call's result: a handler's stand-in, else the executor's; an error as its text."""
        stand_in: str | None = None
        for handler in self._handlers:
            said = await handler.on_tool_call(call.name, call.arguments)
            stand_in = stand_in if said is None else said
        if stand_in is not None:
            return ToolResultContent(tool_call_id=call.id, content=stand_in)
        if self._executor is None:
            error = f"Error: no tool executor can run {call.name!r}"
            return ToolResultContent(tool_call_id=call.id, content=error, is_error=True)
        try:
            content = await self._executor.execute(call.name, call.arguments)
        except Exception as exc:  # the model is told, as agent SDKs do; the chat goes on
            logger.warning("tool %r failed", call.name, exc_info=True)
            error = f"Error: {type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return ToolResultContent(tool_call_id=call.id, content=error, is_error=True)
        return ToolResultContent(tool_call_id=call.id, content=content)

    async def _failed(
        self,
        turn: _Turn,
        error: BaseException,
        metadata: LLMResponseMetadata | None = None,
        *,
        reraise: bool = False,
    ) -> str:
        """Tell every handler; a handler's reply stands in for the model's, else re-raise."""
        metadata = metadata or partial_metadata(error)
        replacement: str | None = None
        for handler in self._handlers:
            said = await handler.on_error_with_metadata(error, metadata)
            replacement = replacement if said is None else said
        if reraise or replacement is None or isinstance(error, asyncio.CancelledError):
            raise error
        self._history += [*turn.messages, ChatMessage("assistant", replacement)]
        return replacement

    # --- plugins ------------------------------------------------------------------------

    async def _start(self) -> None:
        context = PluginContext(agent_id=self.name)
        for plugin in self._plugins:
            if plugin.state is PluginState.UNLOADED:
                await plugin.load(context)
            if plugin.state is PluginState.LOADED:
                await plugin.init_plugin()
            if plugin.state in (PluginState.INITIALIZED, PluginState.STOPPED):
                await plugin.start()

    async def flush(self) -> int:
        """Ship what the persistence plugin recorded; return how many records still wait."""
        return 0 if self._persistence is None else await self._persistence.flush()

    async def close(self) -> None:
        """Stop and unload every plugin (a persistence plugin stores what waits)."""
        for plugin in reversed(self._plugins):
            if plugin.state is PluginState.RUNNING:
                await plugin.stop()
            if plugin.state is not PluginState.UNLOADED:
                await plugin.unload()
        if self._persistence is not None:
            await self._persistence.close()


@dataclass(slots=True)
class _Turn:
    """One turn in progress: its messages so far (the user's, tool calls, tool results)."""

    messages: list[ChatMessage]
    tool_rounds: int = 0


def _said(text: str, calls: Sequence[ToolCall]) -> str:
    """What a message says to the tokenizer: its text, and its tool calls' names and arguments."""
    return " ".join([text, *(f"{call.name} {call.arguments}" for call in calls)])


def _conversation(history: Sequence[LLMMessage]) -> list[ChatMessage]:
    """The stored messages as the model is sent them, tool calls and results included.

    A tool-call message whose results are not all stored (a turn cut short)
    is left out with what results it has: the APIs refuse a call without its result.
    """
    messages: list[ChatMessage] = []
    pending: dict[str, int] = {}  # a call's id -> the index of the message that asked for it
    for stored in history:
        content = stored.content
        if stored.role is MessageRole.USER:
            messages.append(ChatMessage("user", content.text or ""))
        elif stored.role is MessageRole.ASSISTANT:
            calls = tuple(ToolCall.from_content(call) for call in content.tool_calls or ())
            messages.append(ChatMessage("assistant", content.text or "", tool_calls=calls))
            pending.update({call.id: len(messages) - 1 for call in calls})
        elif stored.role is MessageRole.TOOL and content.tool_result is not None:
            result = content.tool_result
            messages.append(ChatMessage("tool", result.content, tool_call_id=result.tool_call_id))
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    broken = {index for call_id, index in pending.items() if call_id not in answered}
    dropped = {call.id for index in broken for call in messages[index].tool_calls}
    return [
        m
        for index, m in enumerate(messages)
        if index not in broken
        and not (m.role == "tool" and (m.tool_call_id in dropped or m.tool_call_id not in pending))
    ]
