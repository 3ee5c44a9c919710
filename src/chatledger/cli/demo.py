"""``chatledger demo``: an offline agent, recorded by its persistence plugin, then the usage.

``chatledger demo [--db URL]`` (what ``make demo`` runs) builds an
:class:`~chatledger.agent.LLMAgent` on a :class:`~chatledger.agent.ScriptedProvider`
(no network, no key) with a :class:`~chatledger.plugin.PersistencePlugin` on
the command line's database (``./chatledger.db`` unless told otherwise).
The agent streams a conversation across three sessions, one of its calls
is refused with HTTP 429, one turn asks a tool (a real Python function,
``get_weather``) before it answers, and the plugin records every message
(the tool call and its result too) and every API call, priced.
The transcript is printed as it streams, then the usage by model over
everything the database holds: the table ``chatledger stats --by model``
prints, with a total.

Run it again and it resumes: it finds the three sessions it created before
(fixed demo tenant, user and agent ids), loads their history and continues
each one, so the sessions grow and the usage table covers every run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chatledger import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    ModelPrice,
    PersistenceStore,
    QueryFilter,
    StaticPricingRegistry,
    connect,
    uuid7,
)
from chatledger.agent import (
    LLMAgent,
    LLMAgentBuilder,
    ScriptedProvider,
    ScriptedReply,
    ScriptedToolCall,
    Tool,
)
from chatledger.cli.commands import Terminal
from chatledger.cli.render import breakdown_table, money
from chatledger.entities import ToolCallContent, ToolResultContent, utc_now
from chatledger.plugin import LLMAgentEventHandler, LLMResponseMetadata, PersistencePlugin
from chatledger.pricing import PricingRegistry, default_pricing_registry
from chatledger.stores.urls import redact

__all__ = [
    "DEMO_AGENT",
    "DEMO_TENANT",
    "DEMO_USER",
    "MODELS",
    "TOPICS",
    "DemoRateLimitError",
    "get_weather",
    "pricing_registry",
    "run_demo",
]

DEMO_TENANT = uuid.UUID("01970000-0000-7000-8000-00000000d3e0")
DEMO_USER = uuid.UUID("01970000-0000-7000-8000-00000000d3e1")
DEMO_AGENT = uuid.UUID("01970000-0000-7000-8000-00000000d3e2")

PROVIDER = "openai"
MODELS = ("gpt-4o-mini", "gpt-4o")
"""The agent asks for the first; the provider answers planning questions with the second."""

# Used only when genai-prices is not installed (or does not know a model): clearly not live.
DEMO_PRICES = StaticPricingRegistry(
    {  # USD per million tokens: input, output, cached input
        (PROVIDER, "gpt-4o-mini"): ModelPrice(Decimal("0.15"), Decimal("0.60"), Decimal("0.075")),
        (PROVIDER, "gpt-4o"): ModelPrice(Decimal("2.50"), Decimal("10.00"), Decimal("1.25")),
    }
)

WIDTH = 80
_INDENT = 13  # the transcript's text column: two spaces, the role, padding
_TOPIC_KEY = "demo_topic"  # session metadata: which topic a session holds
_RUNS_KEY = "demo_runs"  # session metadata: how many runs have chatted in it


class DemoRateLimitError(Exception):
    """A stand-in for ``openai.RateLimitError`` when the ``openai`` package is absent."""

    status_code = 429
    code = "rate_limit_exceeded"


_RATE_LIMIT_MESSAGE = (
    "Rate limit reached for gpt-4o-mini: tokens per min (TPM): limit 200000. "
    "Please try again in 1.2s."
)


def _rate_limit_error() -> Exception:
    """The error a provider raises on HTTP 429: the real SDK's when it is installed."""
    try:
        import openai
    except ImportError:
        return DemoRateLimitError(_RATE_LIMIT_MESSAGE)
    # openai builds its errors on the HTTP library it ships with: httpx2 in recent
    # releases, httpx before; the response must come from that one.
    for name in ("httpx2", "httpx"):
        try:
            http: Any = importlib.import_module(name)
        except ImportError:
            continue
        request = http.Request("POST", "https://api.openai.com/v1/chat/completions")
        return openai.RateLimitError(
            _RATE_LIMIT_MESSAGE,
            response=http.Response(429, request=request),
            body={"message": _RATE_LIMIT_MESSAGE, "code": "rate_limit_exceeded"},
        )
    return DemoRateLimitError(_RATE_LIMIT_MESSAGE)


# --- the tool -----------------------------------------------------------------------------

# The demo is offline: its forecasts are a table, but the tool is a real function the agent runs.
_FORECASTS: dict[tuple[str, str], dict[str, Any]] = {
    ("lisbon", "saturday"): {"high_c": 19, "low_c": 13, "wind_kmh": 22, "rain_chance": 0.1},
    ("lisbon", "sunday"): {"high_c": 21, "low_c": 14, "wind_kmh": 12, "rain_chance": 0.0},
}


def get_weather(city: str, day: str = "today") -> dict[str, Any]:
    """The weather forecast for a city on a day of this week."""
    forecast = _FORECASTS.get((city.lower(), day.lower()))
    if forecast is None:
        raise ValueError(f"no forecast for {city} on {day}")
    return {"city": city, "day": day, **forecast}


# --- the script --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    """What the user asks and what the scripted provider answers (or the error it raises).

    ``asks``, when set, is a first reply that asks for tools; the agent runs
    them and ``reply`` is the answer that follows.
    """

    question: str
    reply: ScriptedReply
    asks: ScriptedReply | None = None

    def replies(self) -> tuple[ScriptedReply, ...]:
        """What the provider is scripted to say in this turn, in order."""
        return (self.reply,) if self.asks is None else (self.asks, self.reply)


@dataclass(frozen=True, slots=True)
class Topic:
    """One session: its title, the turns of its first run and the follow-ups of later runs."""

    key: str
    title: str
    opening: tuple[Turn, ...]
    follow_ups: tuple[Turn, ...]
    refused: Turn | None = None  # a last turn of every run, which the provider refuses

    def turns(self, run: int) -> tuple[Turn, ...]:
        """The turns of run ``run`` (1-based): the opening, then one follow-up per run."""
        turns = self.opening if run == 1 else (self.follow_ups[(run - 2) % len(self.follow_ups)],)
        return turns if self.refused is None else (*turns, self.refused)


def _mini(text: str, prompt: int, completion: int, cached: int = 0) -> ScriptedReply:
    return ScriptedReply(text, prompt, completion, cached_tokens=cached)


def _big(text: str, prompt: int, completion: int, cached: int = 0) -> ScriptedReply:
    return ScriptedReply(text, prompt, completion, cached_tokens=cached, model="gpt-4o")


TOPICS = (
    Topic(
        "lisbon",
        "A weekend in Lisbon",
        (
            Turn(
                "I have a free weekend in Lisbon. What should I not miss?",
                _mini(
                    "Start early in Alfama, before the crowds: the Sé, the Miradouro de Santa "
                    "Luzia and a ride on tram 28. Spend Saturday afternoon in Belém for the "
                    "tower, the monastery and a pastel de nata.",
                    1236,
                    64,
                ),
            ),
            Turn(
                "And if it rains on Saturday?",
                _mini(
                    "Swap Belém for the Gulbenkian museum and the Oceanário, both indoors and "
                    "a short metro ride apart.",
                    1318,
                    31,
                    cached=1280,
                ),
            ),
        ),
        (
            Turn(
                "Where can I hear fado?",
                _mini("Try a small tasca in Alfama or Mouraria after 9 pm.", 1402, 18, 1280),
            ),
            Turn(
                "Is a day trip to Sintra worth it?",
                _mini(
                    "Yes: take the train from Rossio (40 min) and start at Pena before noon.",
                    1410,
                    22,
                    1280,
                ),
            ),
        ),
    ),
    Topic(
        "packing",
        "Packing for the weather",
        (
            # The model asks the weather tool first; the agent runs it and asks again.
            Turn(
                "Will I need a jacket in Lisbon this Saturday?",
                _mini(
                    "Yes, a light one: around 19°C by day, 13°C at night, with a breeze off "
                    "the river.",
                    1478,
                    27,
                    cached=1408,
                ),
                asks=ScriptedReply(
                    prompt_tokens=1410,
                    completion_tokens=19,
                    cached_tokens=1280,
                    tool_calls=[
                        ScriptedToolCall("get_weather", {"city": "Lisbon", "day": "Saturday"})
                    ],
                ),
            ),
        ),
        (
            Turn(
                "Which shoes for the hills, then?",
                _mini("Trainers with a good grip: the cobbles are slippery.", 1452, 14, 1408),
            ),
            Turn(
                "An umbrella too?",
                _mini("A small folding one; the wind makes big ones useless.", 1460, 15, 1408),
            ),
        ),
        # Every run meets one 429: the plugin records it as rate_limited and the chat goes on.
        Turn("Anything else to pack?", ScriptedReply(error=_rate_limit_error())),
    ),
    Topic(
        "plan",
        "A two-day plan",
        (
            Turn(
                "Turn all that into a two-day plan from Baixa.",
                _big(
                    "Day 1: the Sé and Santa Luzia, tram 28 to Graça for lunch, then Belém. "
                    "Day 2: the Gulbenkian in the morning, LX Factory after lunch, and "
                    "Senhora do Monte for the sunset.",
                    1530,
                    58,
                    cached=1408,
                ),
            ),
        ),
        (
            Turn(
                "Add dinner for both evenings.",
                _big(
                    "Day 1: seafood at Cervejaria Ramiro. Day 2: petiscos in Bairro Alto.",
                    1604,
                    21,
                    1536,
                ),
            ),
            Turn(
                "Make day 2 lighter on walking.",
                _big("Take the metro to the Gulbenkian and a taxi to LX Factory.", 1630, 16, 1536),
            ),
        ),
    ),
)


# --- printing ------------------------------------------------------------------------------


def _out(text: str = "", end: str = "\n") -> None:
    print(text, end=end, flush=True)  # flushed so the stream shows piece by piece


class _StreamPrinter:
    """Prints streamed pieces after a role label, wrapping words at ``WIDTH`` columns."""

    def __init__(self, label: str) -> None:
        """Start a line with ``label`` in the role column."""
        _out(f"  {label:<{_INDENT - 2}}", end="")
        self._column = _INDENT
        self._space = False

    def write(self, piece: str) -> None:
        """Print one piece (a word and maybe a trailing space)."""
        word = piece.rstrip(" ")
        if word:
            needed = len(word) + (1 if self._space else 0)
            if self._column + needed > WIDTH and self._column > _INDENT:
                _out()
                _out(" " * _INDENT, end="")
                self._column = _INDENT
            elif self._space:
                _out(" ", end="")
                self._column += 1
            _out(word, end="")
            self._column += len(word)
        self._space = piece.endswith(" ")

    def end(self) -> None:
        """Finish the line."""
        _out()


def _say(label: str, text: str) -> None:
    printer = _StreamPrinter(label)
    for word in text.split(" "):
        printer.write(word + " ")
    printer.end()


class _ToolPrinter(LLMAgentEventHandler):
    """Prints each tool call the model asks for and the result the tool gave, as they happen."""

    def __init__(self) -> None:
        """Nothing printed yet."""
        self.rounds = 0  # model round trips that asked for tools, in the turn being printed

    async def after_chat_with_tool_calls(
        self, response: str, tool_calls: Sequence[ToolCallContent], metadata: LLMResponseMetadata
    ) -> None:
        """Print the calls: ``tool call  get_weather(city='Lisbon', day='Saturday')``."""
        self.rounds += 1
        for call in tool_calls:
            arguments = call.arguments if isinstance(call.arguments, dict) else {}
            shown = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
            _say("tool call", f"{call.name}({shown})")

    async def on_tool_result(self, call: ToolCallContent, result: ToolResultContent) -> None:
        """Print what the tool returned (its JSON spaced out to wrap)."""
        text = result.content
        with contextlib.suppress(ValueError):  # not JSON: shown as it is
            text = json.dumps(json.loads(text), ensure_ascii=False, separators=(", ", ": "))
        _say("tool error" if result.is_error else "tool", text)


def _describe_call(call: LLMApiCall) -> str:
    if call.status is not ApiCallStatus.SUCCESS:
        return f"[{call.model_name}: {call.status.value}, error {call.error_code}]"
    cached = 0 if call.prompt_tokens_details is None else call.prompt_tokens_details.cached_tokens
    cost = "unpriced" if call.total_price is None else money(call.total_price)
    return (
        f"[{call.model_name}: {call.prompt_tokens:,} in ({cached or 0:,} cached), "
        f"{call.completion_tokens:,} out, {cost}]"
    )


def _heading(text: str) -> str:
    return f"== {text} ".ljust(WIDTH, "=")


# --- the program ---------------------------------------------------------------------------


def pricing_registry() -> tuple[PricingRegistry, str]:
    """genai-prices' bundled table when it prices every demo model, else labelled demo prices."""
    try:
        registry: PricingRegistry = default_pricing_registry()
    except ImportError:
        return DEMO_PRICES, "demo prices (genai-prices is not installed), not live rates"
    now = utc_now()
    for model in MODELS:
        probe = LLMApiCall.success(
            uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), model, 1, 1, now, now
        )
        if registry.price(PROVIDER, probe) is None:
            return DEMO_PRICES, f"demo prices (genai-prices does not know {model})"
    return registry, "genai-prices' bundled table, in USD"


async def _demo_sessions(store: PersistenceStore) -> dict[str, ChatSession]:
    """The sessions earlier runs created, by topic (the newest if a topic has several)."""
    found: dict[str, ChatSession] = {}
    for session in await store.get_user_sessions(DEMO_USER):  # most recently updated first
        topic = session.metadata.get(_TOPIC_KEY)
        if session.agent_id == DEMO_AGENT and isinstance(topic, str):
            found.setdefault(topic, session)
    return found


async def _enter(
    agent: LLMAgent, store: PersistenceStore, topic: Topic, known: ChatSession | None, run: int
) -> ChatSession:
    """Resume the topic's session, or create it with a title; print what happened."""
    if known is not None:
        await agent.switch_session(known.id)
        earlier = len(agent.history)
        _out(f"  resumed {known.id}: {earlier} earlier messages")
        if agent.history:
            last = agent.history[-1]
            text = last.content if len(last.content) <= 50 else last.content[:47] + "..."
            _out(f"  last: {last.role}: {text}")
        session = known.with_metadata(_RUNS_KEY, run)
        await store.update_session(session)
        return session
    session_id = await agent.create_session()
    now = utc_now()
    # Created here rather than on first use by the plugin, so that it has a title to show.
    session = ChatSession(
        id=session_id,
        user_id=DEMO_USER,
        agent_id=DEMO_AGENT,
        tenant_id=DEMO_TENANT,
        title=topic.title,
        metadata={_TOPIC_KEY: topic.key, _RUNS_KEY: run},
        create_time=now,
        update_time=now,
    )
    await store.create_session(session)
    _out(f"  new session {session_id}")
    return session


async def _chat(
    agent: LLMAgent,
    store: PersistenceStore,
    session: ChatSession,
    turn: Turn,
    tools: _ToolPrinter,
) -> None:
    """Stream one turn (tool calls printed as they run), then the API calls recorded for it."""
    _say("user", turn.question)
    tools.rounds = 0
    printer: _StreamPrinter | None = None  # opened at the answer's first piece, after any tools
    try:
        async for piece in agent.chat_stream(turn.question):
            printer = printer or _StreamPrinter("assistant")
            printer.write(piece)
    except Exception as exc:  # noqa: BLE001  (the demo shows the error and goes on)
        printer = printer or _StreamPrinter("assistant")
        for word in f"(no reply: {type(exc).__name__}; the agent moves on)".split(" "):
            printer.write(word + " ")
    if printer is not None:
        printer.end()
    await agent.flush()  # the turn's records, spooled by the plugin, into the store
    # One API call per model round trip: those that asked for tools, then the answer.
    newest = QueryFilter().session(session.id).paginate(0, tools.rounds + 1)
    for call in reversed(await store.query_api_calls(newest)):
        _out(" " * _INDENT + _describe_call(call))


async def _usage(store: PersistenceStore, prices: str, terminal: Terminal) -> None:
    """Print the usage by model of every call in the database, with the totals."""
    everything = QueryFilter()
    breakdown = await store.get_usage_breakdown(everything, ["model"])
    total = await store.get_statistics(everything)
    _out()
    _out(_heading("Usage by model, every run in the database"))
    terminal.show(breakdown_table(breakdown, ["model"], None, total=total))
    _out("failed: the calls refused (the 429s). Tokens include cached prompt tokens.")
    _out(f"Prices: {prices}.")


async def run_demo(url: str, terminal: Terminal | None = None) -> int:
    """Chat one run into the database at ``url``, printing as it goes; return the run number."""
    terminal = terminal or Terminal()
    registry, prices = pricing_registry()
    async with await connect(url) as store:
        known = await _demo_sessions(store)
        run = 1 + max((int(s.metadata.get(_RUNS_KEY, 0)) for s in known.values()), default=0)
        script = [(topic, turn) for topic in TOPICS for turn in topic.turns(run)]
        replies = [reply for _, turn in script for reply in turn.replies()]
        provider = ScriptedProvider(replies, provider_name=PROVIDER)
        tools = _ToolPrinter()
        plugin = PersistencePlugin.from_store(
            "persistence", store, DEMO_USER, DEMO_TENANT, DEMO_AGENT, uuid7(),
            pricing=registry, provider=PROVIDER,
        )  # fmt: skip
        agent = await (
            LLMAgentBuilder()
            .with_name("travel-assistant")
            .with_provider(provider)
            .with_model(MODELS[0])
            .with_system_prompt("You are a concise travel assistant.")
            .with_tool(Tool.from_function(get_weather))
            .with_persistence_plugin(plugin)
            .with_event_handler(tools)
            .build_async()
        )
        _out(f"chatledger demo, run {run}: an offline agent, recorded in")
        _out(f"  {redact(url)}")
        _out("No model is called: a ScriptedProvider answers; the plugin records it all.")
        try:
            for number, topic in enumerate(TOPICS, start=1):
                _out()
                _out(_heading(f"Session {number} of {len(TOPICS)}: {topic.title}"))
                session = await _enter(agent, store, topic, known.get(topic.key), run)
                for turn in topic.turns(run):
                    await _chat(agent, store, session, turn, tools)
        finally:
            await agent.close()  # stores anything still waiting
        await _usage(store, prices, terminal)
    _out()
    _out("Run it again: the demo resumes these three sessions and the table grows.")
    _out("Then look around: chatledger sessions, show latest, stats --by model.")
    _out("Or open the dashboard (pip install 'chatledger[ui]'):")
    command = f"  chatledger ui --db {redact(url)}"
    if len(command) > WIDTH:  # a long URL on a line of its own, still one shell command
        command = f"  chatledger ui \\\n    --db {redact(url)}"
    _out(command)
    return run
