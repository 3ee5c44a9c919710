"""The Jinja2 environment of the pages: autoescaped, with the filters that format the ledger.

Every value reaches HTML through Jinja2's autoescape; no filter here marks
data safe. Numbers, money, durations and times are formatted once, here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

__all__ = ["TEMPLATES", "environment", "query_string"]

TEMPLATES: Final = Path(__file__).parent / "templates"
NONE: Final = "\u2013"
"""What a cell shows for no value: an en dash."""


def number(value: int | float | Decimal | None) -> str:
    """``1,234`` (whole numbers) or ``1,234.5``; an en dash for none."""
    if value is None:
        return NONE
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{float(value):,.1f}"


def money(value: Decimal | float | None) -> str:
    """``$0.002645``: six decimals below a dollar, two above; an en dash for unpriced."""
    if value is None:
        return NONE
    amount = Decimal(str(value))
    if amount == 0:
        return "$0"
    if abs(amount) < 1:
        return f"${amount:.6f}"
    return f"${amount:,.2f}"


def duration(value: float | None) -> str:
    """``820 ms`` or ``3.4 s``; an en dash when there is no value."""
    if value is None:
        return NONE
    if value < 1000:
        return f"{value:,.0f} ms"
    return f"{value / 1000:,.2f} s"


def percent(value: float | None) -> str:
    """``12.5%``; an en dash when there is no value."""
    return NONE if value is None else f"{value:.1f}%"


def when(value: datetime | None, *, seconds: bool = True) -> str:
    """A UTC time as ``2026-11-01 09:30:12``."""
    if value is None:
        return NONE
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def iso(value: datetime | None) -> str:
    """A UTC time for a ``<time datetime>`` attribute."""
    return "" if value is None else value.astimezone(UTC).isoformat()


def short_id(value: uuid.UUID | str | None) -> str:
    """The last eight hex digits of an id: UUIDv7s share their leading (time) digits."""
    if value is None:
        return NONE
    return "…" + str(value).replace("-", "")[-8:]


def query_string(values: Mapping[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` from ``values`` with ``changes`` applied; None or empty drops a key."""
    merged = {**values, **changes}
    kept = [(key, str(value)) for key, value in merged.items() if value not in (None, "")]
    return "?" + urlencode(kept) if kept else ""


def environment() -> Environment:
    """The pages' environment: templates from the package, autoescape on, strict undefined."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html",), default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=number,
        money=money,
        duration=duration,
        percent=percent,
        when=when,
        iso=iso,
        short_id=short_id,
    )
    env.globals["query_string"] = query_string
    return env
