"""What a ``QueryFilter`` asks of an API call: one table, read by every backend.

:func:`call_conditions` turns a filter into conditions on the call's own
fields; the memory store tests them in Python (:func:`meets`), the SQL
backends write them as a ``WHERE`` clause (``queries.filter_clause``). A
call without the value a condition is on (no price, no latency, no error
code) meets none of its conditions, as a comparison with NULL in SQL.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chatledger.entities import LLMApiCall, QueryFilter

__all__ = ["Condition", "ValueKind", "call_conditions", "meets"]

ValueKind = Literal["id", "text", "time", "money", "number"]
"""How a condition's value is encoded for a database."""

# QueryFilter field, the call's field (its column), the comparison, the kind of value.
_TABLE: tuple[tuple[str, str, str, ValueKind], ...] = (
    ("tenant_id", "tenant_id", "=", "id"),
    ("user_id", "user_id", "=", "id"),
    ("session_id", "chat_session_id", "=", "id"),
    ("agent_id", "agent_id", "=", "id"),
    ("status", "status", "=", "text"),
    ("model_name", "model_name", "=", "text"),
    ("error_code", "error_code", "=", "text"),
    ("start_time", "create_time", ">=", "time"),  # a time range is half-open
    ("end_time", "create_time", "<", "time"),
    ("min_cost", "total_price", ">=", "money"),  # cost and latency bounds are inclusive
    ("max_cost", "total_price", "<=", "money"),
    ("min_latency_ms", "latency_ms", ">=", "number"),
    ("max_latency_ms", "latency_ms", "<=", "number"),
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """``field operator value`` on an API call: ``create_time >= 2026-01-01``."""

    field: str
    operator: str
    value: Any
    kind: ValueKind


def call_conditions(query: QueryFilter) -> list[Condition]:
    """The conditions ``query`` sets on API calls, in one fixed order (offset and limit aside)."""
    return [
        Condition(field, comparison, value, kind)
        for name, field, comparison, kind in _TABLE
        if (value := getattr(query, name)) is not None
    ]


def meets(call: LLMApiCall, conditions: Sequence[Condition]) -> bool:
    """Whether ``call`` meets every condition; a missing value meets none."""
    for condition in conditions:
        value = getattr(call, condition.field)
        if value is None or not _COMPARE[condition.operator](value, condition.value):
            return False
    return True
