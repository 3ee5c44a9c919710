"""Entities: MoFA-compatible JSON forms, constructors, copies and validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from chatledger.entities import (
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    MessageContent,
    MessageRole,
    PriceDetails,
    Provider,
    QueryFilter,
    SessionQuery,
    TokenDetails,
    ToolCallContent,
    ToolResultContent,
    UsageStatistics,
    tokens_per_second,
)
from chatledger.ids import NIL_UUID, uuid7
from chatledger.pricing import ModelPrice, StaticPricingRegistry

T0 = datetime(2024, 5, 6, 12, 0, 0, 123456, tzinfo=UTC)


def _call(**fields: Any) -> LLMApiCall:
    values: dict[str, Any] = {
        "id": uuid7(),
        "chat_session_id": uuid7(),
        "agent_id": uuid7(),
        "user_id": uuid7(),
        "tenant_id": uuid7(),
        "request_message_id": uuid7(),
        "response_message_id": uuid7(),
        "model_name": "gpt-4o",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "create_time": T0,
        "update_time": T0,
    }
    values.update(fields)
    return LLMApiCall(**values)


def _message(**fields: Any) -> LLMMessage:
    values: dict[str, Any] = {
        "id": uuid7(),
        "chat_session_id": uuid7(),
        "agent_id": uuid7(),
        "user_id": uuid7(),
        "tenant_id": uuid7(),
        "role": "user",
        "content": {"text": "hi"},
        "create_time": T0,
        "update_time": T0,
    }
    values.update(fields)
    return LLMMessage(**values)


# -- JSON forms -------------------------------------------------------------------


def test_message_content_json_omits_absent_fields() -> None:
    """MessageContent's JSON holds only the fields that are set."""
    assert MessageContent.from_text("hi").model_dump(mode="json") == {"text": "hi"}
    assert MessageContent().model_dump(mode="json") == {}


def test_message_content_flattens_extra_keys() -> None:
    """Extra keys sit at the top level of MessageContent's JSON and read back as `extra`."""
    content = MessageContent(text="hi", image_url="https://x/y.png", meta={"n": 1})
    assert content.model_dump(mode="json") == {
        "text": "hi",
        "image_url": "https://x/y.png",
        "meta": {"n": 1},
    }
    parsed = MessageContent.model_validate_json('{"text": "hi", "lang": "zh"}')
    assert parsed.text == "hi"
    assert parsed.extra == {"lang": "zh"}


def test_tool_call_and_result_json_forms() -> None:
    """from_tool_calls and from_tool_result produce MoFA's nested JSON forms."""
    calls = MessageContent.from_tool_calls(
        [ToolCallContent(id="c1", name="search", arguments={"q": "x"})]
    )
    assert calls.model_dump(mode="json") == {
        "tool_calls": [{"id": "c1", "name": "search", "arguments": {"q": "x"}}]
    }
    result = MessageContent.from_tool_result(ToolResultContent(tool_call_id="c1", content="ok"))
    assert result.model_dump(mode="json") == {
        "tool_result": {"tool_call_id": "c1", "content": "ok", "is_error": False}
    }


def test_message_json_uses_lowercase_role_and_omits_missing_parent() -> None:
    """LLMMessage's JSON has a lowercase role and no parent_message_id key when absent."""
    message = _message(role=MessageRole.ASSISTANT)
    data = message.model_dump(mode="json")
    assert data["role"] == "assistant"
    assert "parent_message_id" not in data
    assert data["content"] == {"text": "hi"}
    parent = uuid7()
    assert message.with_parent(parent).model_dump(mode="json")["parent_message_id"] == str(parent)
    assert LLMMessage.model_validate_json(message.model_dump_json()) == message


def test_api_call_json_uses_lowercase_status_and_omits_optionals() -> None:
    """LLMApiCall's JSON has a snake_case lowercase status and omits unset optionals."""
    call = _call(status=ApiCallStatus.RATE_LIMITED)
    data = call.model_dump(mode="json")
    assert data["status"] == "rate_limited"
    for absent in (
        "prompt_tokens_details",
        "completion_tokens_details",
        "total_price",
        "price_details",
        "latency_ms",
        "time_to_first_token_ms",
        "tokens_per_second",
        "api_response_id",
        "error_message",
        "error_code",
    ):
        assert absent not in data
    assert LLMApiCall.model_validate_json(call.model_dump_json()) == call


def test_token_and_price_details_flatten_extra() -> None:
    """TokenDetails and PriceDetails keep unknown keys at the top level of their JSON."""
    details = TokenDetails(cached_tokens=3, audio_tokens=2)
    assert details.model_dump(mode="json") == {"cached_tokens": 3, "audio_tokens": 2}
    price = PriceDetails(input_price=Decimal("0.5"), tier="batch")
    assert price.model_dump(mode="json") == {
        "input_price": 0.5,
        "currency": "USD",
        "tier": "batch",
    }


def test_enum_values_are_lowercase_strings() -> None:
    """MessageRole and ApiCallStatus are string enums with MoFA's lowercase values."""
    assert [r.value for r in MessageRole] == ["system", "user", "assistant", "tool"]
    assert [s.value for s in ApiCallStatus] == [
        "success",
        "failed",
        "timeout",
        "rate_limited",
        "cancelled",
    ]


# -- constructors and copies --------------------------------------------------------


def test_message_new_stamps_now_with_uuid7() -> None:
    """LLMMessage.new makes a UUIDv7 id and equal, aware UTC create and update times."""
    session, agent, user, tenant = uuid7(), uuid7(), uuid7(), uuid7()
    message = LLMMessage.new(session, agent, user, tenant, "user", "hello")
    assert message.id.version == 7
    assert message.content == MessageContent(text="hello")
    assert message.role is MessageRole.USER
    assert message.create_time == message.update_time
    assert message.create_time.tzinfo is not None
    assert message.create_time.utcoffset() == timedelta(0)
    copy = message.with_tenant(uuid7()).with_parent(session)
    assert copy.parent_message_id == session
    assert message.parent_message_id is None
    assert copy.id == message.id


def test_success_derives_totals_latency_and_speed() -> None:
    """success() sets total = prompt + completion, latency in ms and completion tokens/s."""
    call = LLMApiCall.success(
        uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), "gpt-4o", 100, 50, T0,
        T0 + timedelta(milliseconds=2500),
    )  # fmt: skip
    assert call.total_tokens == 150
    assert call.latency_ms == 2500
    assert call.tokens_per_second == pytest.approx(20.0)
    assert call.create_time == T0
    assert call.update_time == T0 + timedelta(milliseconds=2500)
    assert call.status is ApiCallStatus.SUCCESS
    instant = LLMApiCall.success(
        uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), "gpt-4o", 1, 1, T0, T0
    )
    assert instant.latency_ms == 0
    assert instant.tokens_per_second is None
    silent = LLMApiCall.success(
        uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), "gpt-4o", 10, 0, T0,
        T0 + timedelta(seconds=1),
    )  # fmt: skip
    assert silent.tokens_per_second == 0.0  # no token in a second: MoFA's success()
    assert tokens_per_second(0, 1000) == 0.0  # the recorders' rule is the same one
    assert tokens_per_second(5, 1000, time_to_first_token_ms=1000) is None  # no time left


def test_failed_has_nil_response_and_no_tokens() -> None:
    """failed() has the nil response id, zero tokens and the given status and error."""
    start = datetime.now(UTC) - timedelta(seconds=1)
    call = LLMApiCall.failed(
        uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), "gpt-4o", "timed out", "504", start,
        status=ApiCallStatus.TIMEOUT,
    )  # fmt: skip
    assert call.response_message_id == NIL_UUID
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (0, 0, 0)
    assert call.status is ApiCallStatus.TIMEOUT
    assert call.error_message == "timed out"
    assert call.error_code == "504"
    assert call.create_time == start
    assert call.update_time >= start


def test_api_call_copies_leave_the_original_alone() -> None:
    """with_* methods return changed copies; the original keeps its values."""
    call = _call(prompt_tokens=1000, completion_tokens=500, total_tokens=1500)
    priced = call.with_price(0.1, PriceDetails(input_price=Decimal("0.04")))
    assert priced.total_price == Decimal("0.1")
    assert call.total_price is None
    assert call.with_api_response_id("resp_1").api_response_id == "resp_1"
    assert call.with_time_to_first_token(42).time_to_first_token_ms == 42
    detailed = call.with_token_details(
        TokenDetails(cached_tokens=400), TokenDetails(reasoning_tokens=100)
    )
    assert detailed.prompt_tokens_details == TokenDetails(cached_tokens=400)
    assert detailed.completion_tokens_details == TokenDetails(reasoning_tokens=100)
    assert call.prompt_tokens_details is None


def test_with_auto_price_uses_the_registry() -> None:
    """with_auto_price prices cached input at its own rate; unknown models stay unpriced."""
    registry = StaticPricingRegistry(
        {
            ("openai", "gpt-4o"): ModelPrice(
                input_per_million=Decimal(2),
                output_per_million=Decimal(8),
                cached_input_per_million=Decimal(1),
            )
        }
    )
    call = _call(prompt_tokens=1000, completion_tokens=500, total_tokens=1500).with_token_details(
        TokenDetails(cached_tokens=400), None
    )
    priced = call.with_auto_price(registry, "openai")
    assert priced.total_price == Decimal("0.0056")
    assert priced.price_details is not None
    assert priced.price_details.input_price == Decimal("0.0016")
    assert priced.price_details.output_price == Decimal("0.004")
    assert call.with_auto_price(registry, "other") == call


def test_session_new_and_copies() -> None:
    """ChatSession.new uses the nil tenant; with_* return changed copies."""
    user, agent = uuid7(), uuid7()
    session = ChatSession.new(user, agent)
    assert session.tenant_id == NIL_UUID
    assert session.metadata == {}
    new_id, tenant = uuid7(), uuid7()
    changed = (
        session.with_title("Plans").with_id(new_id).with_tenant_id(tenant).with_metadata("k", 1)
    )
    assert (changed.title, changed.id, changed.tenant_id) == ("Plans", new_id, tenant)
    assert changed.metadata == {"k": 1}
    assert session.title is None
    assert session.metadata == {}


def test_query_filter_fluent_methods() -> None:
    """QueryFilter's fluent methods set their fields and leave the original unchanged."""
    ids = [uuid7() for _ in range(4)]
    end = T0 + timedelta(days=1)
    query = (
        QueryFilter()
        .tenant(ids[0])
        .user(ids[1])
        .session(ids[2])
        .agent(ids[3])
        .time_range(T0, end)
        .with_status("failed")
        .model("gpt-4o")
        .paginate(5, 10)
    )
    assert (query.tenant_id, query.user_id, query.session_id, query.agent_id) == tuple(ids)
    assert (query.start_time, query.end_time) == (T0, end)
    assert query.status is ApiCallStatus.FAILED
    assert (query.model_name, query.offset, query.limit) == ("gpt-4o", 5, 10)
    assert QueryFilter() == QueryFilter()


def test_usage_statistics_defaults() -> None:
    """Empty UsageStatistics counts every status as 0 and leaves cost and averages None."""
    stats = UsageStatistics()
    assert stats.status_counts == dict.fromkeys(ApiCallStatus, 0)
    assert stats.total_cost is None
    assert stats.p99_latency_ms is None


def test_non_utc_times_are_normalised_to_utc() -> None:
    """An aware datetime in another zone is stored as the same instant in UTC."""
    local = datetime(2024, 5, 6, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    message = _message(create_time=local, update_time=local)
    assert message.create_time == datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
    assert message.create_time.utcoffset() == timedelta(0)


def test_provider_api_key_is_hidden() -> None:
    """A provider's API key appears in neither repr nor str, nor in validation errors."""
    provider = Provider(
        id=uuid7(),
        tenant_id=uuid7(),
        provider_name="openai",
        provider_type="openai",
        api_base="https://api.openai.com/v1",
        api_key="sk-very-secret",
        create_time=T0,
        update_time=T0,
    )
    assert "sk-very-secret" not in repr(provider)
    assert "sk-very-secret" not in str(provider)
    assert provider.api_key.get_secret_value() == "sk-very-secret"


def test_entities_are_frozen() -> None:
    """Assigning to a field of a stored entity raises ValidationError."""
    message = _message()
    with pytest.raises(ValidationError):
        message.role = MessageRole.TOOL  # type: ignore[misc]


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"prompt_tokens": -1, "total_tokens": 4}, "prompt_tokens"),
        ({"completion_tokens": -5, "total_tokens": 5}, "completion_tokens"),
        ({"total_tokens": 16}, "total_tokens"),
        ({"prompt_tokens_details": TokenDetails(cached_tokens=11)}, "cached_tokens"),
        ({"completion_tokens_details": TokenDetails(reasoning_tokens=6)}, "reasoning_tokens"),
        ({"update_time": T0 - timedelta(microseconds=1)}, "update_time"),
        ({"model_name": ""}, "model_name"),
        ({"model_name": "m" * 101}, "model_name"),
        ({"status": "exploded"}, "status"),
        ({"create_time": datetime(2024, 1, 1), "update_time": T0}, "create_time"),  # naive
    ],
)
def test_api_call_refuses_bad_values(fields: dict[str, Any], needle: str) -> None:
    """LLMApiCall refuses bad token counts, details, times, model names and statuses."""
    with pytest.raises(ValidationError, match=needle):
        _call(**fields)


def test_model_name_of_100_characters_is_accepted() -> None:
    """A 100-character model name is the longest accepted."""
    assert _call(model_name="m" * 100).model_name == "m" * 100


def test_message_refuses_unknown_role_and_naive_time() -> None:
    """LLMMessage refuses an unknown role and a naive datetime."""
    with pytest.raises(ValidationError, match="role"):
        _message(role="robot")
    with pytest.raises(ValidationError, match="create_time"):
        _message(create_time=datetime(2024, 1, 1))  # naive on purpose


def test_query_filter_refuses_naive_times_and_negative_paging() -> None:
    """QueryFilter refuses naive datetimes and a negative offset or limit."""
    with pytest.raises(ValidationError):
        QueryFilter().time_range(datetime(2024, 1, 1), None)  # naive on purpose
    with pytest.raises(ValidationError):
        QueryFilter().paginate(-1, 10)
    with pytest.raises(ValidationError):
        QueryFilter().paginate(0, -1)


def test_query_filter_call_only_builders() -> None:
    """Error code, cost and latency builders set inclusive bounds; floats read as decimals."""
    query = QueryFilter().with_error_code("rate_limit_exceeded").cost_range(0.1, "2.5")
    query = query.latency_range(None, 900)
    assert query.error_code == "rate_limit_exceeded"
    assert (query.min_cost, query.max_cost) == (Decimal("0.1"), Decimal("2.5"))
    assert (query.min_latency_ms, query.max_latency_ms) == (None, 900)
    assert query.cost_range(None, None).min_cost is None
    assert query.model_dump(mode="json")["min_cost"] == 0.1


@pytest.mark.parametrize(
    "changes",
    [
        {"min_cost": Decimal(-1)},
        {"max_cost": Decimal("NaN")},
        {"max_cost": Decimal("1e15")},
        {"min_latency_ms": -1},
        {"max_latency_ms": 2**63},
    ],
)
def test_query_filter_refuses_bounds_no_call_can_have(changes: dict[str, Any]) -> None:
    """A negative, infinite or unstorable cost bound, or a negative latency bound, is refused."""
    with pytest.raises(ValidationError):
        QueryFilter(**changes)


def test_session_query_treats_empty_text_as_none() -> None:
    """An empty search text is no condition; any other text is kept as written."""
    assert SessionQuery(text="").text is None
    assert SessionQuery(text=" 50%_ ").text == " 50%_ "
    with pytest.raises(ValidationError):
        SessionQuery(start_time=datetime(2024, 1, 1))  # naive on purpose


def test_tokens_beyond_int32_are_refused() -> None:
    """Token counts beyond a 32-bit signed integer are refused (every SQL column holds them)."""
    big = 2**31
    with pytest.raises(ValidationError):
        _call(prompt_tokens=big, completion_tokens=0, total_tokens=big)


def test_session_title_is_limited_to_255_characters() -> None:
    """A session title over 255 characters is refused."""
    with pytest.raises(ValidationError, match="title"):
        ChatSession.new(uuid.uuid4(), uuid.uuid4()).with_title("t" * 256)


def test_provider_validation_errors_do_not_echo_the_key() -> None:
    """A provider that fails validation does not show its API key in the error."""
    with pytest.raises(ValidationError) as caught:
        Provider.model_validate({"api_key": "sk-live-7f3a"})  # short: pydantic would not cut it
    assert "7f3a" not in str(caught.value)


_FIRST_USE_IN_THREADS = """
import sys, threading, uuid
from concurrent.futures import ThreadPoolExecutor
from chatledger import entities
from chatledger.testing.factories import make_api_call, make_message, make_session

# Import built none of the models where they are built on first use.
assert entities.LLMApiCall.__pydantic_complete__ is not entities._DEFER_BUILD
threads = 16
start = threading.Barrier(threads)

def first_use(_: int) -> str:
    start.wait()  # every thread validates for the first time at once
    session = make_session()
    make_message(session)
    return make_api_call(session).model_dump_json()

with ThreadPoolExecutor(threads) as pool:
    dumps = list(pool.map(first_use, range(threads)))
assert len(set(dumps)) == threads
print("ok", entities._DEFER_BUILD)
"""


def test_models_validated_first_by_many_threads_at_once() -> None:
    """Threads that validate the entities for the first time together all succeed.

    Where the models build on first use (pydantic 2.14 and later), the build
    runs under pydantic's lock; before it, a thread could get a parent's
    validator, so older pydantic builds the models at import instead.
    """
    import subprocess
    import sys

    for _ in range(3):  # a race: a few fresh processes, each with its first use
        result = subprocess.run(
            [sys.executable, "-c", _FIRST_USE_IN_THREADS],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ok")
