"""What a page's query string asks for, parsed and checked, with what was typed kept.

Every filter of every view lives in the URL, so a view can be bookmarked and
shared. A value that does not parse is not an exception: it is an entry in
:attr:`Form.errors` (keyed by the parameter's name), the page answers 400 and
shows the form again with what was typed and what is wrong with it.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final

from pydantic import ValidationError

from chatledger.cli.arguments import parse_time
from chatledger.entities import ApiCallStatus, CallSort, QueryFilter, SessionQuery, utc_now

__all__ = [
    "CALL_FILTER_NAMES",
    "RANGES",
    "SESSION_FILTER_NAMES",
    "Form",
    "OverviewRange",
    "call_filter",
    "overview_range",
    "session_query",
]

CALL_FILTER_NAMES: Final = (
    "tenant",
    "user",
    "agent",
    "session",
    "model",
    "status",
    "error_code",
    "since",
    "until",
    "min_cost",
    "max_cost",
    "min_latency",
    "max_latency",
)
"""The query-string names of the calls filter, in the order the form shows them."""

SESSION_FILTER_NAMES: Final = ("q", "tenant", "user", "agent", "since", "until")
"""The query-string names of the sessions search."""

RANGES: Final = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}
"""The overview's preset ranges, by the ``range`` value that picks them."""

DEFAULT_RANGE: Final = "7d"
_MAX_TEXT = 200  # longer filter text is a mistake (or an attack), not a model name


@dataclass
class Form:
    """The raw values a page was given (to show again) and what is wrong with them."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, params: Mapping[str, str], names: tuple[str, ...]) -> Form:
        """The named parameters, stripped; empty ones are left out (no condition)."""
        values = {}
        for name in names:
            value = params.get(name, "").strip()
            if value:
                values[name] = value
        return cls(values=values)

    @property
    def ok(self) -> bool:
        """True when every value parsed."""
        return not self.errors

    def text(self, name: str) -> str | None:
        """A free-text value, refused when it is absurdly long."""
        value = self.values.get(name)
        if value is not None and len(value) > _MAX_TEXT:
            self.errors[name] = f"at most {_MAX_TEXT} characters"
            return None
        return value

    def uuid(self, name: str) -> uuid.UUID | None:
        """A UUID value, or None (an error noted) when it is not one."""
        value = self.values.get(name)
        if value is None:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            self.errors[name] = (
                "not an id: expected a UUID like 0192f1c2-7a4e-7c33-9d1e-4b2a8c3d5e6f"
            )
            return None

    def time(self, name: str, *, now: datetime) -> datetime | None:
        """A moment: an age (``7d``, ``12h``), ``now``, or an ISO date or time, taken as UTC."""
        value = self.values.get(name)
        if value is None:
            return None
        try:
            return parse_time(value, now=now)
        except (argparse.ArgumentTypeError, ValueError, OverflowError):
            self.errors[name] = (
                "not a time: use an age like 12h, 7d or 2w, or a UTC date or time "
                "like 2026-11-01 or 2026-11-01T09:30"
            )
            return None

    def decimal(self, name: str) -> Decimal | None:
        """A non-negative amount, or None (an error noted)."""
        value = self.values.get(name)
        if value is None:
            return None
        try:
            amount = Decimal(value.removeprefix("$"))
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite() or amount < 0 or amount >= Decimal(10) ** 14:
            self.errors[name] = "not an amount: use a number like 0.01"
            return None
        return amount

    def count(self, name: str) -> int | None:
        """A non-negative whole number, or None (an error noted)."""
        value = self.values.get(name)
        if value is None:
            return None
        if not value.isdigit() or len(value) > 12:
            self.errors[name] = "not a whole number of milliseconds"
            return None
        return int(value)

    def status(self, name: str) -> ApiCallStatus | None:
        """An API-call status, or None (an error noted)."""
        value = self.values.get(name)
        if value is None:
            return None
        try:
            return ApiCallStatus(value.lower())
        except ValueError:
            self.errors[name] = "not a status: " + ", ".join(s.value for s in ApiCallStatus)
            return None

    def check_range(
        self, low: Decimal | int | None, high: Decimal | int | None, low_name: str, high_name: str
    ) -> None:
        """Note an error on ``high_name`` when both bounds are set and ``low`` is past ``high``."""
        if low is not None and high is not None and Decimal(low) > Decimal(high):
            self.errors[high_name] = f"must not be below {self.values[low_name]}"


def call_filter(
    params: Mapping[str, str], *, now: datetime | None = None
) -> tuple[Form, QueryFilter]:
    """The calls filter of a query string: the form to show again, and the QueryFilter.

    When the form has errors the filter holds only the values that parsed;
    pages then show the errors and no results.
    """
    now = now or utc_now()
    form = Form.read(params, CALL_FILTER_NAMES)
    since, until = form.time("since", now=now), form.time("until", now=now)
    if since is not None and until is not None and since >= until:
        form.errors["until"] = "must be after the start of the range"
    min_cost, max_cost = form.decimal("min_cost"), form.decimal("max_cost")
    form.check_range(min_cost, max_cost, "min_cost", "max_cost")
    min_latency, max_latency = form.count("min_latency"), form.count("max_latency")
    form.check_range(min_latency, max_latency, "min_latency", "max_latency")
    fields = {
        "tenant_id": form.uuid("tenant"),
        "user_id": form.uuid("user"),
        "agent_id": form.uuid("agent"),
        "session_id": form.uuid("session"),
        "model_name": form.text("model"),
        "status": form.status("status"),
        "error_code": form.text("error_code"),
        "start_time": since,
        "end_time": until,
        "min_cost": min_cost,
        "max_cost": max_cost,
        "min_latency_ms": min_latency,
        "max_latency_ms": max_latency,
    }
    try:
        query = QueryFilter(**fields)
    except ValidationError as exc:  # a value past what the store's columns hold
        form.errors.setdefault("since", _first_error(exc))
        query = QueryFilter()
    return form, query


def call_sort(params: Mapping[str, str], form: Form) -> CallSort:
    """The ``sort`` of the calls table (newest first unless it says otherwise)."""
    value = params.get("sort", "").strip()
    if not value:
        return CallSort.NEWEST
    try:
        return CallSort(value)
    except ValueError:
        form.errors["sort"] = "not an order: " + ", ".join(s.value for s in CallSort)
        return CallSort.NEWEST


def session_query(
    params: Mapping[str, str], *, now: datetime | None = None
) -> tuple[Form, SessionQuery]:
    """The sessions search of a query string: the form to show again, and the SessionQuery."""
    now = now or utc_now()
    form = Form.read(params, SESSION_FILTER_NAMES)
    since, until = form.time("since", now=now), form.time("until", now=now)
    if since is not None and until is not None and since >= until:
        form.errors["until"] = "must be after the start of the range"
    fields = {
        "tenant_id": form.uuid("tenant"),
        "user_id": form.uuid("user"),
        "agent_id": form.uuid("agent"),
        "text": form.text("q"),
        "start_time": since,
        "end_time": until,
    }
    try:
        query = SessionQuery(**fields)
    except ValidationError as exc:
        form.errors.setdefault("since", _first_error(exc))
        query = SessionQuery()
    return form, query


@dataclass(frozen=True)
class OverviewRange:
    """The overview's time range: a preset (``24h``, ``7d``, ``30d``, ``all``) or ``custom``."""

    preset: str  # a key of RANGES, or "custom" (from since/until)
    start: datetime | None  # None: from the first call
    end: datetime  # exclusive


OVERVIEW_FILTER_NAMES: Final = ("tenant", "user", "agent", "model", "status", "since", "until")


def overview_range(
    params: Mapping[str, str], *, now: datetime | None = None
) -> tuple[Form, OverviewRange, QueryFilter]:
    """The overview's range and filters: the form, the range, and the QueryFilter over both.

    ``range`` is a preset, or ``custom`` for ``since``/``until``; without a
    ``range``, since or until make it custom, and else it is the last 7 days.
    """
    now = now or utc_now()
    form = Form.read(params, OVERVIEW_FILTER_NAMES)
    preset = params.get("range", "").strip()
    if not preset:
        preset = "custom" if "since" in form.values or "until" in form.values else DEFAULT_RANGE
    if preset != "custom" and preset not in RANGES:
        form.errors["range"] = "not a range: " + ", ".join([*RANGES, "custom"])
        preset = DEFAULT_RANGE
    if preset == "custom":
        since, until = form.time("since", now=now), form.time("until", now=now)
        if since is not None and until is not None and since >= until:
            form.errors["until"] = "must be after the start of the range"
        chosen = OverviewRange("custom", since, until or now)
    else:
        chosen = OverviewRange(preset, *_preset_bounds(RANGES[preset], now))
    form.values["range"] = preset
    fields = {
        "tenant_id": form.uuid("tenant"),
        "user_id": form.uuid("user"),
        "agent_id": form.uuid("agent"),
        "model_name": form.text("model"),
        "status": form.status("status"),
        "start_time": chosen.start,
        "end_time": chosen.end,
    }
    try:
        query = QueryFilter(**fields)
    except ValidationError as exc:
        form.errors.setdefault("since", _first_error(exc))
        query = QueryFilter(end_time=now)
    return form, chosen, query


def _preset_bounds(span: timedelta | None, now: datetime) -> tuple[datetime | None, datetime]:
    """A preset's range: whole hours up to the end of the current one, whole days if longer.

    The store answers such a range from its rollups instead of reading every
    call in it: hours from the hourly table and, for a range of days, every
    day from the daily tables and their histograms (today's too, while no
    call is dated after the range's end), with no partial day at the start
    whose percentiles would have to be read from its calls.
    """
    end = now.replace(minute=0, second=0, microsecond=0)
    if end < now:
        end += timedelta(hours=1)
    if span is None:
        return None, end
    start = end - span
    if span > timedelta(days=1):
        start = start.replace(hour=0)
    return start, end


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return str(errors[0]["msg"]) if errors else "not a value the database can hold"
