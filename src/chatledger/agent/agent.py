"""The agent: a conversation with a model, its sessions, and the plugins and handlers around it.

:class:`LLMAgentBuilder` puts an agent together; :class:`LLMAgent` chats, whole
(:meth:`LLMAgent.chat`) or streamed (:meth:`LLMAgent.chat_stream`). Around every
call it runs each event handler (a persistence plugin is one): before the
call, after it with what is known about the response, or on its error. When
the provider reports no usage the agent counts the tokens itself and says so
in the metadata. History is kept per session; with a persistence plugin the
sessions live in its store and are loaded from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Self

from chatledger.agent.providers import ChatMessage, ChatRequest, LLMProvider, StreamEnd
from chatledger.entities import ChatSession, MessageRole
from chatledger.ids import NIL_UUID, uuid7
from chatledger.plugin.events import LLMAgentEventHandler, LLMResponseMetadata
from chatledger.plugin.kernel import AgentPlugin, PluginContext, PluginState
from chatledger.plugin.persistence import PersistencePlugin
from chatledger.usage import count_tokens

__all__ = ["LLMAgent", "LLMAgentBuilder"]


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

    async def build_async(self) -> LLMAgent:
        """The agent, its plugins started and its session's history loaded."""
        if self._provider is None or self._model is None:
            raise ValueError("an agent needs with_provider(...) and with_model(...)")
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
            self._history = [
                ChatMessage(m.role.value, m.content.text or "")
                for m in history
                if m.role in (MessageRole.USER, MessageRole.ASSISTANT)
            ]
            return session_id
        if session_id not in self._local:
            session = ChatSession.new(NIL_UUID, self._local_agent).with_id(session_id)
            self._local[session_id] = (session, [])
        self._history = self._local[session_id][1]  # the same list: turns land in it
        return session_id

    # --- chatting -----------------------------------------------------------------------

    async def chat(self, message: str) -> str:
        """Send ``message``; return the reply (after every handler had its say)."""
        message = await self._before(message)
        request = self._request(message)
        try:
            completion = await self.provider.complete(request)
        except BaseException as exc:  # noqa: BLE001  (recorded, then re-raised or replaced)
            return await self._failed(message, exc)
        metadata = completion.metadata
        if not completion.usage_reported:
            metadata = self._estimate(request, completion.text, metadata)
        return await self._after(message, completion.text, metadata)

    async def chat_stream(self, message: str) -> AsyncGenerator[str, None]:
        """Send ``message``; yield the reply as it arrives. Handlers run when it ends."""
        message = await self._before(message)
        request = self._request(message)
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
            await self._failed(message, exc, reraise=True)
            raise
        text = "".join(pieces)
        if end is None:
            metadata = self._estimate(
                request, text, LLMResponseMetadata(model=self.model, time_to_first_token_ms=0)
            )
        elif not end.usage_reported:
            metadata = self._estimate(request, text, end.metadata)
        else:
            metadata = end.metadata
        await self._after(message, text, metadata)

    def _request(self, message: str) -> ChatRequest:
        window = self._history
        if self._rounds is not None:
            window = window[-2 * self._rounds :]
        system = [] if self._system_prompt is None else [ChatMessage("system", self._system_prompt)]
        return ChatRequest(
            model=self.model,
            messages=[*system, *window, ChatMessage("user", message)],
            temperature=self._temperature,
            max_tokens=self._max_tokens,
        )

    def _estimate(
        self, request: ChatRequest, reply: str, metadata: LLMResponseMetadata
    ) -> LLMResponseMetadata:
        """The metadata with tokens counted here, marked as estimated."""
        prompt = sum(count_tokens(m.content, metadata.model)[0] for m in request.messages)
        completion, _ = count_tokens(reply, metadata.model)
        return metadata.model_copy(
            update={"prompt_tokens": prompt, "completion_tokens": completion, "estimated": True}
        )

    async def _before(self, message: str) -> str:
        for handler in self._handlers:
            replaced = await handler.before_chat_with_model(message, self.model)
            if replaced is not None:
                message = replaced
        return message

    async def _after(self, message: str, reply: str, metadata: LLMResponseMetadata) -> str:
        for handler in self._handlers:
            replaced = await handler.after_chat_with_metadata(reply, metadata)
            if replaced is not None:
                reply = replaced
        self._history += [ChatMessage("user", message), ChatMessage("assistant", reply)]
        return reply

    async def _failed(self, message: str, error: BaseException, *, reraise: bool = False) -> str:
        """Tell every handler; a handler's reply stands in for the model's, else re-raise."""
        replacement: str | None = None
        for handler in self._handlers:
            said = await handler.on_error(error)
            replacement = replacement if said is None else said
        if reraise or replacement is None or isinstance(error, asyncio.CancelledError):
            raise error
        self._history += [ChatMessage("user", message), ChatMessage("assistant", replacement)]
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
