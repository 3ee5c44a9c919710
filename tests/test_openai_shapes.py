"""chatledger.integrations.openai_shapes: OpenAI's wire formats read into chatledger's records."""

from __future__ import annotations

import time
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from chatledger.entities import MessageContent, MessageRole, ToolCallContent
from chatledger.integrations.openai_shapes import (
    ChatStreamReader,
    ResponsesStreamReader,
    chat_message,
    chat_messages,
    chat_reply,
    chat_usage,
    estimated_usage,
    responses_input,
    responses_output,
    responses_usage,
    tool_arguments,
)
from chatledger.recording.recorder import fingerprint
from chatledger.testing.fake_openai import (
    json_reply,
    responses_reply,
    responses_stream,
    stream_reply,
    tool_call,
    usage,
)
from chatledger.testing.fake_openai import responses_usage as responses_usage_body

MODEL = "gpt-4o-mini-2024-07-18"
WEATHER = tool_call("get_weather", '{"city": "Paris"}', call_id="call_w")


def _body(script: Any) -> dict[str, Any]:
    assert script.body is not None
    return dict(script.body)


def _same(*contents: MessageContent | None) -> None:
    """The contents are equal and so are their de-duplication fingerprints."""
    assert all(c is not None for c in contents)
    first = contents[0]
    assert first is not None
    for content in contents[1:]:
        assert content == first
        assert content is not None
        assert fingerprint(MessageRole.ASSISTANT, content) == fingerprint(
            MessageRole.ASSISTANT, first
        )


# --- a resent history reads as the response that produced it ------------------------------------


def test_a_chat_reply_reads_the_same_however_the_caller_resends_it() -> None:
    """The SDK's message object, its model_dump, and the dict a caller writes by hand."""
    for script in (
        json_reply("Paris.", model=MODEL),
        json_reply(None, model=MODEL, tool_calls=[WEATHER]),
        json_reply("Let me look.", model=MODEL, tool_calls=[WEATHER, tool_call("f", "not json")]),
    ):
        response = ChatCompletion.model_validate(_body(script))
        message = response.choices[0].message
        handwritten: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            handwritten["tool_calls"] = [call.model_dump() for call in message.tool_calls]
        _same(
            chat_reply(response),
            chat_reply(_body(script)),
            chat_message(message)[1],
            chat_message(message.model_dump())[1],
            chat_message(message.model_dump(exclude_none=True))[1],
            chat_message(handwritten)[1],
        )


def test_a_streamed_chat_reply_reads_as_the_whole_one() -> None:
    """What a stream carried equals the same reply sent whole, tool calls included."""
    whole = chat_reply(_body(json_reply("Let me look.", model=MODEL, tool_calls=[WEATHER])))
    reader = ChatStreamReader()
    for chunk in stream_reply(["Let me ", "look."], model=MODEL, tool_calls=[WEATHER]).chunks:
        assert isinstance(chunk, dict)
        reader.add(ChatCompletionChunk.model_validate(chunk))
    _same(whole, reader.reply())


def test_chat_messages_read_every_role() -> None:
    """System, developer, user parts, tool results; attachments named by kind."""
    messages = chat_messages(
        [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:..."}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_w", "content": "18C"},
        ]
    )
    assert [role for role, _ in messages] == [MessageRole.SYSTEM, MessageRole.USER,
                                              MessageRole.TOOL]  # fmt: skip
    assert messages[1][1].text == "What is this?"
    assert messages[1][1].model_extra == {"attachments": ["image_url"]}
    result = messages[2][1].tool_result
    assert result is not None
    assert (result.tool_call_id, result.content) == ("call_w", "18C")


def test_a_responses_output_reads_the_same_when_resent_as_input() -> None:
    """Output items (SDK objects or dicts) resent as input read as the reply they were."""
    for script in (
        responses_reply("Paris.", model=MODEL, reasoning=True),
        responses_reply(None, model=MODEL, tool_calls=[WEATHER], reasoning=True),
        responses_reply("Checking.", model=MODEL, tool_calls=[WEATHER]),
    ):
        response = Response.model_validate(_body(script))
        reply = responses_output(response)
        for resent in (
            list(response.output),
            [item.model_dump() for item in response.output],
            _body(script)["output"],
        ):
            turns = responses_input([{"role": "user", "content": "Hi"}, *resent], "Be brief.")
            assert [role for role, _ in turns] == [
                MessageRole.SYSTEM,
                MessageRole.USER,
                MessageRole.ASSISTANT,
            ]
            _same(reply, turns[-1][1])


def test_responses_input_reads_strings_items_and_tool_outputs() -> None:
    """A bare string, message items with input_text parts, function_call_output."""
    assert responses_input("Hi") == [(MessageRole.USER, MessageContent(text="Hi"))]
    turns = responses_input(
        [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sun"},
        ]
    )
    assert [role for role, _ in turns] == [MessageRole.USER, MessageRole.ASSISTANT,
                                           MessageRole.TOOL]  # fmt: skip
    assert turns[1][1].tool_calls == [ToolCallContent(id="c1", name="get_weather", arguments={})]


def test_tool_arguments_are_parsed_json_or_the_text() -> None:
    """JSON becomes a value; anything else stays the model's text."""
    assert tool_arguments('{"a": 1}') == {"a": 1}
    assert tool_arguments("not json") == "not json"
    assert tool_arguments({"a": 1}) == {"a": 1}


# --- usage -------------------------------------------------------------------------------------


def test_chat_usage_field_for_field() -> None:
    """Cached and reasoning subsets, as the SDK parses them, and from dicts."""
    body = usage(2048, 410, cached=1920, reasoning=384)
    parsed = ChatCompletion.model_validate(
        {**_body(json_reply("x", model=MODEL)), "usage": body}
    ).usage
    for given in (body, parsed):
        assert chat_usage(given) == {
            "prompt_tokens": 2048,
            "completion_tokens": 410,
            "cached_tokens": 1920,
            "reasoning_tokens": 384,
            "cache_write_tokens": None,
        }
    assert chat_usage(None) == {}
    bare = chat_usage(usage(5, 1))
    assert (bare["cached_tokens"], bare["reasoning_tokens"]) == (None, None)


def test_chat_usage_reads_cache_writes_in_both_spellings() -> None:
    """Anthropic-style ``cache_creation_input_tokens`` and ``prompt_tokens_details.cache_write_tokens``."""  # noqa: E501
    anthropic_style = usage(3000, 20, cached=0, cache_write=2500)
    assert chat_usage(anthropic_style)["cache_write_tokens"] == 2500
    openai_style = {
        "prompt_tokens": 3000,
        "completion_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1800},
    }
    assert chat_usage(openai_style)["cache_write_tokens"] == 1800
    parsed = ChatCompletion.model_validate(
        {**_body(json_reply("x", model=MODEL)), "usage": anthropic_style}
    ).usage  # the SDK keeps unknown fields
    assert chat_usage(parsed)["cache_write_tokens"] == 2500
    assert (
        chat_usage({**openai_style, "prompt_tokens_details": {"cache_write_tokens": 0}})[
            "cache_write_tokens"
        ]
        is None
    )  # zero written is reported as absent, like no report


def test_responses_usage_field_for_field() -> None:
    """Input and output token details of the Responses API, cache writes included."""
    body = responses_usage_body(1500, 60, cached=1024, reasoning=52)
    body["input_tokens_details"]["cache_write_tokens"] = 0  # this SDK requires the field
    response = Response.model_validate({**_body(responses_reply("x", model=MODEL)), "usage": body})
    for given in (body, response.usage):
        assert responses_usage(given) == {
            "prompt_tokens": 1500,
            "completion_tokens": 60,
            "cached_tokens": 1024,
            "reasoning_tokens": 52,
            "cache_write_tokens": None,  # none written is reported as absent
        }
    body["input_tokens_details"]["cache_write_tokens"] = 300
    assert responses_usage(body)["cache_write_tokens"] == 300
    assert responses_usage(None) == {}


def test_estimated_usage_is_marked_and_says_how_it_counted() -> None:
    """Prompt and completion counted locally, tool calls and results included."""
    messages = chat_messages([{"role": "user", "content": "What is the weather in Paris?"}])
    reply = chat_reply(_body(json_reply(None, model=MODEL, tool_calls=[WEATHER])))
    counted = estimated_usage(messages, reply, MODEL)
    assert counted["estimated"] is True
    assert counted["prompt_tokens"] > 0
    assert counted["completion_tokens"] > 0
    assert counted["counted_by"]


# --- stream readers ------------------------------------------------------------------------------


def test_a_tool_call_only_chat_stream_has_its_first_token_at_the_first_call_delta() -> None:
    """Not at the end: the role chunk is no token, the tool call's first delta is."""
    chunks = [
        ChatCompletionChunk.model_validate(chunk)
        for chunk in stream_reply(
            [], model=MODEL, response_id="chatcmpl-t", tool_calls=[WEATHER]
        ).chunks
        if isinstance(chunk, dict)
    ]
    reader = ChatStreamReader(time.perf_counter() - 0.05)
    reader.add(chunks[0])  # role only
    assert reader.first_token_ms is None
    reader.add(chunks[1])  # the call's id and name
    first = reader.first_token_ms
    assert first is not None
    assert first >= 50
    time.sleep(0.02)
    for chunk in chunks[2:]:
        reader.add(chunk)
    assert reader.first_token_ms == first
    fields = reader.fields()
    assert (fields["response_id"], reader.model) == ("chatcmpl-t", MODEL)
    assert "prompt_tokens" not in fields  # no usage chunk: nothing reported
    assert reader.reply().tool_calls == [
        ToolCallContent(id="call_w", name="get_weather", arguments={"city": "Paris"})
    ]


def test_a_chat_stream_reader_takes_the_usage_chunk() -> None:
    """The last chunk (no choices) carries the usage."""
    reader = ChatStreamReader()
    script = stream_reply(["Hi"], model=MODEL, usage=usage(12, 1, cached=0))
    for chunk in (*script.chunks, script.usage_chunk):
        assert isinstance(chunk, dict)
        reader.add(ChatCompletionChunk.model_validate(chunk))
    fields = reader.fields()
    assert (fields["prompt_tokens"], fields["completion_tokens"], fields["cached_tokens"]) == (
        12,
        1,
        0,
    )


def _events(script: Any) -> list[dict[str, Any]]:
    return [data for _, data in script.chunks]


def test_a_function_call_only_responses_stream_has_a_first_token_but_reasoning_does_not() -> None:
    """The function call's item is the first output; a reasoning item before it is not."""
    events = _events(
        responses_stream(
            [],
            model=MODEL,
            response_id="resp_t",
            tool_calls=[WEATHER],
            reasoning=True,
            usage=responses_usage_body(30, 9),
        )
    )
    reader = ResponsesStreamReader()
    for event in events:
        reader.add(event)
        item = event.get("item") or {}
        if event["type"] == "response.output_item.added" and item.get("type") == "reasoning":
            assert reader.first_token_ms is None
        if event["type"] == "response.output_item.added" and item.get("type") == "function_call":
            assert reader.first_token_ms is not None
    fields = reader.fields()
    assert (fields["response_id"], fields["prompt_tokens"], fields["completion_tokens"]) == (
        "resp_t",
        30,
        9,
    )
    reply = reader.reply()
    assert reply is not None
    assert reply.tool_calls == [
        ToolCallContent(id="call_w", name="get_weather", arguments={"city": "Paris"})
    ]
    assert reader.error is None


def test_a_responses_stream_cut_before_its_end_keeps_its_id_and_text() -> None:
    """No final response: the text streamed so far, the id from response.created."""
    events = _events(responses_stream(["Par", "is."], model=MODEL, response_id="resp_cut"))
    reader = ResponsesStreamReader()
    for event in events[:5]:
        reader.add(event)
    assert reader.response is None
    assert reader.fields()["response_id"] == "resp_cut"
    reply = reader.reply()
    assert reply is not None
    assert reply.text == "Par"


def test_a_responses_stream_error_event_is_kept() -> None:
    """The stream's own ``error`` event (it then ends with no response)."""
    reader = ResponsesStreamReader()
    reader.add({"type": "error", "code": "server_error", "message": "The model failed.",
                "sequence_number": 0})  # fmt: skip
    assert reader.error == "The model failed."
    assert reader.first_token_ms is None
