"""Entities to driver parameters, and result rows back to entities or export records.

:class:`RowCodec` is the one place that knows the column order of each
table and how a dialect wants UUIDs, times, JSON, booleans and money. Text
no backend can store is refused here, before anything reaches a database,
and a row that does not make a valid entity is named in the error.

Export records skip the entities: each is built straight from its row as the
dict the entity's ``model_dump(mode="json")`` would give, at a tenth of the
cost of validating the entity first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from chatledger.entities import (
    Agent,
    ApiCallStatus,
    ChatSession,
    LLMApiCall,
    LLMMessage,
    Provider,
    UsageStatistics,
)
from chatledger.errors import SerializationError
from chatledger.stores.dialect import Dialect
from chatledger.stores.encoding import ensure_storable_text, storable_json
from chatledger.stores.queries import API_CALL_COLUMNS, TOTALS_WIDTH
from chatledger.stores.schema import AGENT, PROVIDER, SESSION
from chatledger.stores.secret_box import (
    SecretBox,
    configured_box,
    is_encrypted,
    open_api_key,
    seal_api_key,
)
from chatledger.stores.statistics import UsageTotals, build_statistics

__all__ = ["RowCodec"]

_E = TypeVar("_E")
_M = TypeVar("_M", LLMMessage, LLMApiCall, ChatSession, Provider, Agent)

_DETAIL_FIELDS = ("prompt_tokens_details", "completion_tokens_details", "price_details")
# Column orders, computed once: Table.column_names builds a new tuple on every call.
_SESSION_COLUMNS = SESSION.column_names
_PROVIDER_COLUMNS = PROVIDER.column_names
_AGENT_COLUMNS = AGENT.column_names
_UUID_GROUPS = frozenset({"agent", "user", "tenant", "session"})
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}
# The named fields of the open models; any other key is an extra, kept after them.
_TOKEN_FIELDS = frozenset({"cached_tokens", "reasoning_tokens"})
_PRICE_FIELDS = frozenset({"input_price", "output_price", "currency"})
_CONTENT_FIELDS = frozenset({"text", "tool_calls", "tool_result"})

Row = Sequence[Any]
Record = dict[str, Any]


def encode(encoder: Callable[[_E], tuple[Any, ...]], entity: _E) -> tuple[Any, ...]:
    """Run an entity encoder, turning what it cannot encode into SerializationError."""
    try:
        return encoder(entity)
    except (UnicodeError, ValueError) as exc:
        raise SerializationError(f"cannot store {type(entity).__name__}: {exc}") from exc


def _validate(model: type[_M], rows: list[dict[str, Any]]) -> list[_M]:
    """Build entities from rows in one validation pass, naming the row that cannot be read."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    try:
        result: list[_M] = adapter.validate_python(rows)
    except ValidationError as exc:
        index = exc.errors()[0]["loc"][0]
        row_id = rows[index].get("id") if isinstance(index, int) else None
        raise SerializationError(
            f"row {row_id!r} of {model.__name__} cannot be read: {exc}"
        ) from exc
    return result


def _token_details(data: dict[str, Any] | None) -> Record | None:
    """TokenDetails' JSON: the named subsets first, left out when null, then the extra keys."""
    if data is None:  # a JSON null in the column: no details, as for SQL NULL
        return None
    record: Record = {}
    if (cached := data.get("cached_tokens")) is not None:
        record["cached_tokens"] = cached
    if (reasoning := data.get("reasoning_tokens")) is not None:
        record["reasoning_tokens"] = reasoning
    if not data.keys() <= _TOKEN_FIELDS:
        record.update((key, value) for key, value in data.items() if key not in _TOKEN_FIELDS)
    return record


def _price_details(data: dict[str, Any] | None) -> Record | None:
    """PriceDetails' JSON: prices as floats (left out when null), currency, then extra keys."""
    if data is None:
        return None
    record: Record = {}
    if (price := data.get("input_price")) is not None:
        record["input_price"] = float(price)
    if (price := data.get("output_price")) is not None:
        record["output_price"] = float(price)
    record["currency"] = data.get("currency", "USD")
    if not data.keys() <= _PRICE_FIELDS:
        record.update((key, value) for key, value in data.items() if key not in _PRICE_FIELDS)
    return record


def _content(data: dict[str, Any]) -> Record:
    """MessageContent's JSON: text, tool calls, tool result (each left out when null), extras."""
    record: Record = {}
    if (text := data.get("text")) is not None:
        record["text"] = text
    if (calls := data.get("tool_calls")) is not None:
        record["tool_calls"] = [
            {"id": call["id"], "name": call["name"], "arguments": call["arguments"]}
            for call in calls
        ]
    if (result := data.get("tool_result")) is not None:
        record["tool_result"] = {
            "tool_call_id": result["tool_call_id"],
            "content": result["content"],
            "is_error": result.get("is_error", False),
        }
    if not data.keys() <= _CONTENT_FIELDS:
        record.update((key, value) for key, value in data.items() if key not in _CONTENT_FIELDS)
    return record


def _unexportable(model: str, row: Row, exc: Exception) -> SerializationError:
    return SerializationError(
        f"row {row[0]!r} of {model} cannot be exported: {type(exc).__name__}: {exc}"
    )


class RowCodec:
    """Encodes entities for one dialect's driver and decodes what it returns."""

    def __init__(self, dialect: Dialect) -> None:
        """Use ``dialect``'s value encoders and decoders."""
        self.dialect = dialect
        self.uuid = dialect.encode_uuid
        self.time = dialect.encode_time
        self._json = dialect.encode_json

    # --- messages ----------------------------------------------------------------------

    def message(self, message: LLMMessage) -> tuple[Any, ...]:
        """A message's parameters in ``entity_llm_message`` column order."""
        u = self.uuid
        content = storable_json(message.content, "content")
        parent = message.parent_message_id
        return (
            u(message.id),
            None if parent is None else u(parent),
            u(message.chat_session_id),
            u(message.agent_id),
            u(message.user_id),
            u(message.tenant_id),
            message.role.value,
            content,
            self.time(message.create_time),
            self.time(message.update_time),
        )

    def messages(self, rows: Sequence[Row]) -> list[LLMMessage]:
        """Messages from ``entity_llm_message`` rows."""
        decode_json, decode_time = self.dialect.decode_json, self.dialect.decode_time
        # History is the hot read: a literal dict per row is a fifth cheaper than zip().
        found = [
            {
                "id": row[0],
                "parent_message_id": row[1],
                "chat_session_id": row[2],
                "agent_id": row[3],
                "user_id": row[4],
                "tenant_id": row[5],
                "role": row[6],
                "content": decode_json(row[7]),
                "create_time": decode_time(row[8]),
                "update_time": decode_time(row[9]),
            }
            for row in rows
        ]
        return _validate(LLMMessage, found)

    def message_records(self, rows: Sequence[Row]) -> list[Record]:
        """Export records of ``entity_llm_message`` rows, in LLMMessage's field order."""
        u, t = self.dialect.record_uuid, self.dialect.record_time
        records: list[Record] = []
        for row in rows:
            try:
                id_, parent, session, agent, user, tenant, role, content, created, updated = row
                record: Record = {"id": u(id_)}
                if parent is not None:
                    record["parent_message_id"] = u(parent)
                record["chat_session_id"] = u(session)
                record["agent_id"] = u(agent)
                record["content"] = _content(from_json(content))
                record["role"] = role
                record["user_id"] = u(user)
                record["tenant_id"] = u(tenant)
                record["create_time"] = t(created)
                record["update_time"] = t(updated)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise _unexportable("LLMMessage", row, exc) from exc
            records.append(record)
        return records

    # --- API calls ---------------------------------------------------------------------

    def api_call(self, call: LLMApiCall) -> tuple[Any, ...]:
        """An API call's parameters in ``API_CALL_COLUMNS`` order."""
        u, t = self.uuid, self.time
        for name in ("model_name", "error_message", "error_code", "api_response_id"):
            ensure_storable_text(getattr(call, name), name)
        details = [
            None if getattr(call, name) is None else storable_json(getattr(call, name), name)
            for name in _DETAIL_FIELDS
        ]
        prompt, completion = call.prompt_tokens_details, call.completion_tokens_details
        return (
            u(call.id),
            u(call.chat_session_id),
            u(call.agent_id),
            u(call.user_id),
            u(call.tenant_id),
            u(call.request_message_id),
            u(call.response_message_id),
            call.model_name,
            call.status.value,
            call.error_message,
            call.error_code,
            call.prompt_tokens,
            call.completion_tokens,
            call.total_tokens,
            details[0],
            details[1],
            None if call.total_price is None else self.dialect.encode_money(call.total_price),
            details[2],
            call.latency_ms,
            call.time_to_first_token_ms,
            call.tokens_per_second,
            call.api_response_id,
            t(call.create_time),
            t(call.update_time),
            None if prompt is None else prompt.cached_tokens,
            None if completion is None else completion.reasoning_tokens,
            None if prompt is None else prompt.cache_write_tokens,
        )

    def api_calls(self, rows: Sequence[Row]) -> list[LLMApiCall]:
        """API calls from rows in ``API_CALL_COLUMNS`` order."""
        dialect = self.dialect
        found = []
        for row in rows:
            data = dict(zip(API_CALL_COLUMNS, row, strict=True))
            # the details hold them
            del data["cached_tokens"], data["reasoning_tokens"], data["cache_write_tokens"]
            for name in _DETAIL_FIELDS:
                data[name] = dialect.decode_json(data[name])
            data["total_price"] = dialect.decode_money(data["total_price"])
            data["create_time"] = dialect.decode_time(data["create_time"])
            data["update_time"] = dialect.decode_time(data["update_time"])
            found.append(data)
        return _validate(LLMApiCall, found)

    def api_call_records(self, rows: Sequence[Row]) -> list[Record]:
        """Export records of rows in MoFA's API-call column order, in LLMApiCall's field order.

        The hot loop of an export. One dict display per row with every field,
        then the absent optional ones deleted (the entity's JSON leaves them
        out): a fifth cheaper than setting the present ones one by one.
        """
        u, t, j = self.dialect.record_uuid, self.dialect.record_time, from_json
        records: list[Record] = []
        append = records.append
        for row in rows:
            try:
                (
                    id_, session, agent, user, tenant, request, response, model, status,
                    error_message, error_code, prompt, completion, total, prompt_details,
                    completion_details, price, price_details, latency, first_token, speed,
                    response_id, created, updated,
                ) = row  # fmt: skip
                if prompt_details is not None:
                    prompt_details = _token_details(j(prompt_details))
                if completion_details is not None:
                    completion_details = _token_details(j(completion_details))
                if price_details is not None:
                    price_details = _price_details(j(price_details))
                record: Record = {
                    "id": u(id_),
                    "chat_session_id": u(session),
                    "agent_id": u(agent),
                    "user_id": u(user),
                    "tenant_id": u(tenant),
                    "request_message_id": u(request),
                    "response_message_id": u(response),
                    "model_name": model,
                    "prompt_tokens": prompt,
                    "prompt_tokens_details": prompt_details,
                    "completion_tokens": completion,
                    "completion_tokens_details": completion_details,
                    "total_tokens": total,
                    "total_price": None if price is None else float(price),
                    "price_details": price_details,
                    "latency_ms": latency,
                    "time_to_first_token_ms": first_token,
                    "tokens_per_second": speed,  # a float column: every driver gives a float
                    "api_response_id": response_id,
                    "status": status,
                    "error_message": error_message,
                    "error_code": error_code,
                    "create_time": t(created),
                    "update_time": t(updated),
                }
                if prompt_details is None:
                    del record["prompt_tokens_details"]
                if completion_details is None:
                    del record["completion_tokens_details"]
                if price is None:
                    del record["total_price"]
                if price_details is None:
                    del record["price_details"]
                if latency is None:
                    del record["latency_ms"]
                if first_token is None:
                    del record["time_to_first_token_ms"]
                if speed is None:
                    del record["tokens_per_second"]
                if response_id is None:
                    del record["api_response_id"]
                if error_message is None:
                    del record["error_message"]
                if error_code is None:
                    del record["error_code"]
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise _unexportable("LLMApiCall", row, exc) from exc
            append(record)
        return records

    def statistics(self, row: Row) -> UsageStatistics:
        """Statistics from a row of sums (``queries.usage_totals``) and the percentiles, if any."""
        return build_statistics(self.totals(row[:TOTALS_WIDTH]), row[TOTALS_WIDTH:] or None)

    def totals(self, sums: Row) -> UsageTotals:
        """The totals of a row of sums in ``queries.usage_totals`` order."""
        return UsageTotals.from_sums(sums, self.dialect.decode_money)

    @staticmethod
    def group_value(key: str, value: Any) -> Any:
        """A breakdown key's value as the entity holds it (UUID, ApiCallStatus or str)."""
        if key in _UUID_GROUPS:
            # exactly uuid.UUID: asyncpg hands back a subclass of its own
            return value if type(value) is uuid.UUID else uuid.UUID(str(value))
        if key == "status":
            return ApiCallStatus(value)
        return value

    # --- sessions ----------------------------------------------------------------------

    def session(self, session: ChatSession) -> tuple[Any, ...]:
        """A session's parameters in ``entity_chat_session`` column order."""
        ensure_storable_text(session.title, "title")
        ensure_storable_text(session.metadata, "metadata")
        u, t = self.uuid, self.time
        return (
            u(session.id),
            u(session.user_id),
            u(session.agent_id),
            u(session.tenant_id),
            session.title,
            self._json(session.metadata),
            t(session.create_time),
            t(session.update_time),
        )

    def sessions(self, rows: Sequence[Row]) -> list[ChatSession]:
        """Sessions from ``entity_chat_session`` rows."""
        dialect = self.dialect
        found = []
        for row in rows:
            data = dict(zip(_SESSION_COLUMNS, row, strict=True))
            data["metadata"] = dialect.decode_json(data["metadata"]) or {}
            data["create_time"] = dialect.decode_time(data["create_time"])
            data["update_time"] = dialect.decode_time(data["update_time"])
            found.append(data)
        return _validate(ChatSession, found)

    def session_records(self, rows: Sequence[Row]) -> list[Record]:
        """Export records of ``entity_chat_session`` rows, in ChatSession's field order."""
        u, t = self.dialect.record_uuid, self.dialect.record_time
        records: list[Record] = []
        for row in rows:
            try:
                id_, user, agent, tenant, title, metadata, created, updated = row
                records.append(
                    {
                        "id": u(id_),
                        "user_id": u(user),
                        "agent_id": u(agent),
                        "tenant_id": u(tenant),
                        "title": title,  # ChatSession keeps a null title in its JSON
                        "metadata": (None if metadata is None else from_json(metadata)) or {},
                        "create_time": t(created),
                        "update_time": t(updated),
                    }
                )
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise _unexportable("ChatSession", row, exc) from exc
        return records

    # --- providers and agents ------------------------------------------------------------

    #: The keys API keys are encrypted with; None reads ``CHATLEDGER_SECRET_KEY`` at each use.
    secret_box: SecretBox | None = None

    def _secrets(self) -> SecretBox | None:
        return self.secret_box if self.secret_box is not None else configured_box()

    def provider(self, provider: Provider) -> tuple[Any, ...]:
        """A provider's parameters in ``entity_provider`` column order, its API key encrypted."""
        secret = provider.api_key.get_secret_value()
        for name in ("provider_name", "provider_type", "api_base"):
            ensure_storable_text(getattr(provider, name), name)
        ensure_storable_text(secret, "api_key")
        if secret:  # an empty key hides nothing, and needs no key configured
            secret = seal_api_key(secret, self.secret_box)
        u, t = self.uuid, self.time
        return (
            u(provider.id),
            u(provider.tenant_id),
            provider.provider_name,
            provider.provider_type,
            provider.api_base,
            secret,
            self.dialect.encode_bool(provider.enabled),
            t(provider.create_time),
            t(provider.update_time),
        )

    def providers(self, rows: Sequence[Row]) -> list[Provider]:
        """Providers from ``entity_provider`` rows, API keys decrypted (plain ones kept as read)."""
        decode_time = self.dialect.decode_time
        found = []
        for row in rows:
            data = dict(zip(_PROVIDER_COLUMNS, row, strict=True))
            if is_encrypted(data["api_key"]):
                data["api_key"] = open_api_key(
                    data["api_key"],
                    self._secrets(),
                    name=data["provider_name"],
                    provider_id=data["id"],
                )
            data["enabled"] = bool(data["enabled"])
            data["create_time"] = decode_time(data["create_time"])
            data["update_time"] = decode_time(data["update_time"])
            found.append(data)
        return _validate(Provider, found)

    def agent(self, agent: Agent) -> tuple[Any, ...]:
        """An agent's parameters in ``entity_agent`` column order."""
        for name in ("agent_code", "agent_name", "model_name", "response_format", "system_prompt"):
            ensure_storable_text(getattr(agent, name), name)
        ensure_storable_text(agent.custom_params, "custom_params")
        ensure_storable_text(agent.thinking, "thinking")
        u, t, j, b = self.uuid, self.time, self._json, self.dialect.encode_bool
        return (
            u(agent.id),
            u(agent.tenant_id),
            agent.agent_code,
            agent.agent_name,
            agent.agent_order,
            b(agent.agent_status),
            agent.context_limit,
            None if agent.custom_params is None else j(agent.custom_params),
            agent.max_completion_tokens,
            agent.model_name,
            u(agent.provider_id),
            agent.response_format,
            agent.system_prompt,
            agent.temperature,
            None if agent.stream is None else b(agent.stream),
            None if agent.thinking is None else j(agent.thinking),
            t(agent.create_time),
            t(agent.update_time),
        )

    def agents(self, rows: Sequence[Row]) -> list[Agent]:
        """Agents from ``entity_agent`` rows."""
        dialect = self.dialect
        found = []
        for row in rows:
            data = dict(zip(_AGENT_COLUMNS, row, strict=True))
            data["agent_status"] = bool(data["agent_status"])
            if data["stream"] is not None:
                data["stream"] = bool(data["stream"])
            data["custom_params"] = dialect.decode_json(data["custom_params"])
            data["thinking"] = dialect.decode_json(data["thinking"])
            data["create_time"] = dialect.decode_time(data["create_time"])
            data["update_time"] = dialect.decode_time(data["update_time"])
            found.append(data)
        return _validate(Agent, found)
