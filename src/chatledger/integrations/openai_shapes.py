"""OpenAI's wire formats read into chatledger's records: messages, replies, usage, streams.

Chat Completions and the Responses API are what most frameworks speak, or
translate to: the OpenAI SDK itself, LiteLLM (which answers in OpenAI's
shapes for every provider), the Agents SDK (whose spans carry them). Every
function here takes the SDK's objects and plain dicts alike.

One rule keeps a resent conversation stored once: a message reads the same
whether it comes back in a later request (as the caller resends it) or came
from the response that produced it, so the recorder's fingerprints match.
Tool-call arguments are parsed JSON when they are JSON, the text otherwise;
an assistant turn of the Responses API (its message and function calls,
separate items there) is one message here, as in Chat Completions.

Usage follows the OpenTelemetry GenAI conventions: prompt tokens include
cache reads and writes, completion tokens include reasoning.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chatledger.entities import MessageContent, MessageRole, ToolCallContent, ToolResultContent
from chatledger.recording.recorder import CallUsage
from chatledger.usage import count_tokens

__all__ = [
    "ChatStreamReader",
    "ResponsesStreamReader",
    "chat_messages",
    "chat_reply",
    "chat_usage",
    "content_text",
    "estimated_usage",
    "field",
    "responses_input",
    "responses_item",
    "responses_output",
    "responses_usage",
    "tool_arguments",
]

Message = tuple[MessageRole, MessageContent]
"""A message as the recorder takes it."""

_ROLES = {
    "system": MessageRole.SYSTEM,
    "developer": MessageRole.SYSTEM,
    "user": MessageRole.USER,
    "assistant": MessageRole.ASSISTANT,
    "tool": MessageRole.TOOL,
    "function": MessageRole.TOOL,
}


def field(item: Any, name: str, default: Any = None) -> Any:
    """``item[name]`` for a mapping, ``item.name`` for an SDK object; ``default`` if absent."""
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def tool_arguments(arguments: Any) -> Any:
    """A tool call's arguments: the parsed JSON when the model wrote JSON, else as given."""
    return ToolCallContent.parse_arguments(arguments)


# Parts that are not what was said: the provider's own reasoning state, and tool calls
# (read from the message's tool calls instead).
_NOT_SAID = frozenset(
    {"reasoning", "thinking", "redacted_thinking", "tool_use", "function_call", "tool_call"}
)


def content_text(content: Any) -> tuple[str | None, list[str]]:
    """A message content's text (None when empty) and the kinds of its other parts (images...).

    Content is a string or a list of parts (OpenAI's, Anthropic's or LangChain's
    blocks, as dicts or SDK objects, or plain strings).
    """
    if content is None or isinstance(content, str):
        return content or None, []
    texts: list[str] = []
    others: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = field(part, "type")
        text = field(part, "text")
        if isinstance(text, str) and kind in (None, "text", "input_text", "output_text"):
            texts.append(text)
        elif kind == "refusal":
            texts.append(field(part, "refusal") or "")
        elif kind not in _NOT_SAID:
            others.append(str(kind))
    return ("\n".join(texts) or None), others


def _content(
    text: str | None,
    tool_calls: Sequence[ToolCallContent] = (),
    attachments: Sequence[str] = (),
    **extra: Any,
) -> MessageContent:
    values: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if attachments:
        values["attachments"] = list(attachments)  # what the text leaves out, by kind
    return MessageContent(text=text, tool_calls=list(tool_calls) or None, **values)


def _chat_tool_calls(calls: Any) -> list[ToolCallContent]:
    found = []
    for call in calls or ():
        function = field(call, "function") or {}
        found.append(
            ToolCallContent(
                id=field(call, "id") or "",
                name=field(function, "name") or "",
                arguments=tool_arguments(field(function, "arguments")),
            )
        )
    return found


def chat_message(message: Any) -> Message:
    """One Chat Completions message (request or response) as the recorder takes it."""
    role = _ROLES.get(str(field(message, "role") or "user"), MessageRole.USER)
    text, attachments = content_text(field(message, "content"))
    if role is MessageRole.TOOL:
        call_id = field(message, "tool_call_id") or field(message, "name") or ""
        result = ToolResultContent(tool_call_id=call_id, content=text or "")
        return role, MessageContent(tool_result=result)
    calls = _chat_tool_calls(field(message, "tool_calls"))
    legacy = field(message, "function_call")  # the functions API before tools
    if legacy is not None:
        arguments = tool_arguments(field(legacy, "arguments"))
        calls.append(ToolCallContent(id="", name=field(legacy, "name") or "", arguments=arguments))
    refusal = field(message, "refusal")
    return role, _content(text, calls, attachments, name=field(message, "name"), refusal=refusal)


def chat_messages(messages: Iterable[Any]) -> list[Message]:
    """A Chat Completions request's messages, in order."""
    return [chat_message(message) for message in messages]


def chat_reply(response: Any) -> MessageContent | None:
    """The assistant message of a chat completion's first choice; None without choices."""
    choices = field(response, "choices") or ()
    if not choices:
        return None
    return chat_message(field(choices[0], "message") or {})[1]


def chat_usage(usage: Any) -> CallUsage:
    """The usage a chat completion reported, as :class:`CallUsage` (empty when it has none).

    ``prompt_tokens_details.cache_write_tokens`` (OpenAI) or
    ``cache_creation_input_tokens`` (Anthropic-compatible gateways) become
    ``cache_write_tokens``.
    """
    if usage is None:
        return {}
    prompt_details = field(usage, "prompt_tokens_details")
    completion_details = field(usage, "completion_tokens_details")
    cache_write = field(prompt_details, "cache_write_tokens") if prompt_details else None
    if cache_write is None:
        cache_write = field(usage, "cache_creation_input_tokens")
    fields: CallUsage = {
        "prompt_tokens": field(usage, "prompt_tokens") or 0,
        "completion_tokens": field(usage, "completion_tokens") or 0,
        "cached_tokens": field(prompt_details, "cached_tokens") if prompt_details else None,
        "reasoning_tokens": (
            field(completion_details, "reasoning_tokens") if completion_details else None
        ),
        "cache_write_tokens": cache_write or None,
    }
    return fields


def responses_usage(usage: Any) -> CallUsage:
    """The usage a Responses API response reported, as :class:`CallUsage`."""
    if usage is None:
        return {}
    input_details = field(usage, "input_tokens_details")
    output_details = field(usage, "output_tokens_details")
    fields: CallUsage = {
        "prompt_tokens": field(usage, "input_tokens") or 0,
        "completion_tokens": field(usage, "output_tokens") or 0,
        "cached_tokens": field(input_details, "cached_tokens") if input_details else None,
        "reasoning_tokens": (field(output_details, "reasoning_tokens") if output_details else None),
        "cache_write_tokens": (
            field(input_details, "cache_write_tokens") if input_details else None
        )
        or None,
    }
    return fields


def _responses_items(items: Iterable[Any]) -> list[Message]:
    """Responses API items as messages: an assistant's text and function calls are one."""
    messages: list[Message] = []
    texts: list[str] = []
    calls: list[ToolCallContent] = []

    def close_turn() -> None:
        if texts or calls:
            messages.append((MessageRole.ASSISTANT, _content("\n".join(texts) or None, calls)))
        texts.clear()
        calls.clear()

    for item in items:
        kind = field(item, "type") or "message"
        if kind == "message" and field(item, "role") == "assistant":
            text, _ = content_text(field(item, "content"))
            if text is not None:
                texts.append(text)
        elif kind == "function_call":
            arguments = tool_arguments(field(item, "arguments"))
            call_id = field(item, "call_id") or field(item, "id") or ""
            calls.append(ToolCallContent(id=call_id, name=field(item, "name") or "",
                                         arguments=arguments))  # fmt: skip
        elif kind == "message":
            close_turn()
            role = _ROLES.get(str(field(item, "role") or "user"), MessageRole.USER)
            text, attachments = content_text(field(item, "content"))
            messages.append((role, _content(text, (), attachments)))
        elif kind == "function_call_output":
            close_turn()
            output = field(item, "output")
            text = output if isinstance(output, str) else content_text(output)[0]
            result = ToolResultContent(tool_call_id=field(item, "call_id") or "",
                                       content=text or "")  # fmt: skip
            messages.append((MessageRole.TOOL, MessageContent(tool_result=result)))
        # Reasoning items and hosted tools' items are the provider's own state, not turns.
    close_turn()
    return messages


# Hosted tools' call items (run by the provider, their results inside the item): the
# tool's name as a tool call names it, and the item fields that are its arguments.
_HOSTED_CALLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "web_search_call": ("web_search", ("action",)),
    "file_search_call": ("file_search", ("queries",)),
    "computer_call": ("computer", ("action", "actions")),
    "code_interpreter_call": ("code_interpreter", ("code", "container_id")),
    "image_generation_call": ("image_generation", ("revised_prompt", "size", "quality")),
    "local_shell_call": ("local_shell", ("action",)),
    "shell_call": ("shell", ("action",)),
    "apply_patch_call": ("apply_patch", ("operation",)),
    "tool_search_call": ("tool_search", ("arguments",)),
    "program": ("program", ("code",)),
}
# Items answering a call: the field naming the call.
_CALL_OUTPUTS: dict[str, str] = {
    "function_call_output": "call_id",
    "custom_tool_call_output": "call_id",
    "computer_call_output": "call_id",
    "local_shell_call_output": "id",  # its id is the call's (the API has no call_id there)
    "shell_call_output": "call_id",
    "apply_patch_call_output": "call_id",
    "tool_search_output": "call_id",
    "program_output": "call_id",
    "mcp_approval_response": "approval_request_id",
}


def _output_text(output: Any) -> str:
    """A tool output as text: as given when text, its text parts, else compact JSON."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(
        isinstance(part, str) or field(part, "type") for part in output
    ):  # content parts (text, images, files), not records (a shell's runs)
        text, kinds = content_text(output)
        if text is not None or kinds:
            return text or " ".join(f"[{kind}]" for kind in kinds)
    try:
        return json.dumps(output, ensure_ascii=False, separators=(",", ":"), default=str)
    except ValueError:  # a value JSON cannot spell (NaN): its repr
        return repr(output)


def responses_item(item: Any) -> Message:
    """One Responses API item alone, as one message (an Agents SDK session item, say).

    Unlike a request's items (:func:`responses_input`), nothing is merged: a
    function call is an assistant message of its own and its output a tool
    message. A message item keeps its role and text; a call of a function, a
    custom tool, an MCP server or a hosted tool (web or file search, computer,
    code interpreter, image generation, shell, patch) is an assistant tool call
    (a hosted call's id is the item's); an output answering a call is a tool
    result. Reasoning and the provider's other state items are assistant
    messages with no text.
    """
    kind = field(item, "type") or "message"
    if kind == "message":
        role = _ROLES.get(str(field(item, "role") or "user"), MessageRole.USER)
        text, attachments = content_text(field(item, "content"))
        return role, _content(text, (), attachments)
    if kind in ("function_call", "custom_tool_call"):
        raw = field(item, "arguments") if kind == "function_call" else field(item, "input")
        call = ToolCallContent(
            id=field(item, "call_id") or field(item, "id") or "",
            name=field(item, "name") or "",
            arguments=tool_arguments(raw) if kind == "function_call" else (raw or ""),
        )
        return MessageRole.ASSISTANT, _content(None, [call])
    if kind in ("mcp_call", "mcp_approval_request"):
        call = ToolCallContent(
            id=field(item, "id") or "",
            name=field(item, "name") or "",
            arguments=tool_arguments(field(item, "arguments")),
        )
        return MessageRole.ASSISTANT, _content(
            None, [call], server_label=field(item, "server_label")
        )
    if kind in _HOSTED_CALLS:
        name, argument_fields = _HOSTED_CALLS[kind]
        arguments = {k: field(item, k) for k in argument_fields if field(item, k) is not None}
        if kind == "tool_search_call":
            arguments = tool_arguments(arguments.get("arguments")) or {}
        call = ToolCallContent(
            id=field(item, "call_id") or field(item, "id") or "", name=name, arguments=arguments
        )
        return MessageRole.ASSISTANT, _content(None, [call])
    if kind in _CALL_OUTPUTS:
        if kind == "mcp_approval_response":
            approved = bool(field(item, "approve"))
            reason = field(item, "reason")
            text = ("approved" if approved else "rejected") + (f": {reason}" if reason else "")
            is_error = not approved
        else:
            output = field(item, "output")
            for other in ("result", "tools"):  # program_output, tool_search_output
                output = field(item, other) if output is None else output
            text = _output_text(output)
            is_error = field(item, "status") in ("failed", "incomplete")
        result = ToolResultContent(
            tool_call_id=field(item, _CALL_OUTPUTS[kind]) or "", content=text, is_error=is_error
        )
        return MessageRole.TOOL, MessageContent(tool_result=result)
    # Reasoning, compaction, MCP tool lists, item references...: the provider's state.
    role = _ROLES.get(str(field(item, "role") or "assistant"), MessageRole.ASSISTANT)
    return role, MessageContent()


def responses_input(input_: Any, instructions: str | None = None) -> list[Message]:
    """A Responses API request (``instructions`` and ``input``) as messages, in order."""
    messages: list[Message] = []
    if instructions:
        messages.append((MessageRole.SYSTEM, MessageContent(text=instructions)))
    if isinstance(input_, str):
        messages.append((MessageRole.USER, MessageContent(text=input_)))
    elif input_ is not None:
        messages += _responses_items(input_)
    return messages


def responses_output(response: Any) -> MessageContent | None:
    """A Responses API response's output as one assistant message; None when it has none."""
    turns = _responses_items(field(response, "output") or ())
    assistant = [content for role, content in turns if role is MessageRole.ASSISTANT]
    return assistant[-1] if assistant else None


def estimated_usage(
    messages: Sequence[Message], reply: MessageContent | None, model: str
) -> CallUsage:
    """Tokens counted here for a call whose provider reported none, marked estimated."""
    prompt = 0
    how = ""
    for _, content in messages:
        for text in _texts_of(content):
            count, how = count_tokens(text, model)
            prompt += count
    completion = 0
    for text in _texts_of(reply):
        count, how = count_tokens(text, model)
        completion += count
    fields: CallUsage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "estimated": True,
        "counted_by": how or count_tokens("", model)[1],
    }
    return fields


def _texts_of(content: MessageContent | None) -> list[str]:
    """What of a message a model reads or writes as tokens: text, tool calls, tool results."""
    if content is None:
        return []
    texts = [content.text] if content.text else []
    for call in content.tool_calls or ():
        arguments = call.arguments
        texts.append(call.name)
        texts.append(arguments if isinstance(arguments, str) else json.dumps(arguments))
    if content.tool_result is not None:
        texts.append(content.tool_result.content)
    return texts


class ChatStreamReader:
    """What a Chat Completions stream said, gathered chunk by chunk as the caller reads it.

    The time to first token is the first chunk that carries output: text,
    a refusal or a tool call (a reply of tool calls alone has one too).
    """

    __slots__ = ("_calls", "_pieces", "_started", "first_token_ms", "model", "response_id", "usage")

    def __init__(self, started: float | None = None) -> None:
        """A reader for a stream requested at ``started`` (``time.perf_counter()``)."""
        self._started = time.perf_counter() if started is None else started
        self._pieces: list[str] = []
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        self.first_token_ms: int | None = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        """Take one chunk into account."""
        if self.response_id is None:
            self.response_id = field(chunk, "id") or None
            self.model = field(chunk, "model") or None
        usage = field(chunk, "usage")
        if usage is not None:
            self.usage = usage
        for choice in field(chunk, "choices") or ():
            if field(choice, "index", 0):
                continue  # n > 1: the first choice is the reply, as for whole responses
            delta = field(choice, "delta")
            if delta is None:
                continue
            content = field(delta, "content")
            calls = field(delta, "tool_calls")
            if self.first_token_ms is None and (content or calls or field(delta, "refusal")):
                self.first_token_ms = int((time.perf_counter() - self._started) * 1000)
            if content:
                self._pieces.append(content)
            for call in calls or ():
                entry = self._calls.setdefault(field(call, "index", 0) or 0, ["", "", []])
                entry[0] = field(call, "id") or entry[0]
                function = field(call, "function")
                if function is not None:
                    entry[1] = field(function, "name") or entry[1]
                    piece = field(function, "arguments")
                    if piece:
                        entry[2].append(piece)

    def reply(self) -> MessageContent:
        """The assistant message the stream carried so far."""
        calls = [
            ToolCallContent(id=id_, name=name, arguments=tool_arguments("".join(pieces)))
            for id_, name, pieces in (self._calls[i] for i in sorted(self._calls))
        ]
        return _content("".join(self._pieces) or None, calls)

    def fields(self) -> CallUsage:
        """What the stream reported: response id, time to first token, usage (model apart)."""
        return {
            "time_to_first_token_ms": self.first_token_ms,
            "response_id": self.response_id,
            **chat_usage(self.usage),
        }


class ResponsesStreamReader:
    """What a Responses API stream said, event by event: its text, its response, timing."""

    __slots__ = (
        "_pieces",
        "_started",
        "error",
        "first_token_ms",
        "model",
        "response",
        "response_id",
    )

    _OUTPUT_EVENTS = frozenset(
        {
            "response.output_text.delta",
            "response.refusal.delta",
            "response.function_call_arguments.delta",
            "response.output_item.added",
        }
    )

    def __init__(self, started: float | None = None) -> None:
        """A reader for a stream requested at ``started`` (``time.perf_counter()``)."""
        self._started = time.perf_counter() if started is None else started
        self._pieces: list[str] = []
        self.first_token_ms: int | None = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.response: Any = None  # the final response, once it came
        self.error: str | None = None  # the message of an ``error`` event, if one came

    def add(self, event: Any) -> None:
        """Take one event into account."""
        kind = field(event, "type")
        if kind == "error":  # the stream's own failure report (it then ends without a response)
            self.error = str(field(event, "message") or field(event, "code") or "error")
            return
        response = field(event, "response")
        if response is not None:
            self.response_id = field(response, "id") or self.response_id
            self.model = field(response, "model") or self.model
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self.response = response
            return
        if self.first_token_ms is None and kind in self._OUTPUT_EVENTS:
            item = field(event, "item")
            if item is None or field(item, "type") in ("message", "function_call"):
                self.first_token_ms = int((time.perf_counter() - self._started) * 1000)
        if kind == "response.output_text.delta":
            self._pieces.append(field(event, "delta") or "")

    def reply(self) -> MessageContent | None:
        """The assistant's message: the final response's, else the text streamed so far."""
        if self.response is not None:
            return responses_output(self.response)
        return _content("".join(self._pieces)) if self._pieces else None

    def fields(self) -> CallUsage:
        """What the stream reported: response id, time to first token, usage (model apart)."""
        usage = None if self.response is None else field(self.response, "usage")
        return {
            "time_to_first_token_ms": self.first_token_ms,
            "response_id": self.response_id,
            **responses_usage(usage),
        }
