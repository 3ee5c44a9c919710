"""Bad values refused when an entity is made, the same whatever store it goes to.

What a store checks (argument types, NaN in JSON, missing parents) is in the
conformance suite, run on every backend. What an entity can know by itself
is refused here, by pydantic, before any store sees it: a price that is not
a finite amount a money column holds, a time no backend stores and reads
back, numbers and names too large for MoFA's columns.
"""

from __future__ import annotations

import decimal
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chatledger import sync
from chatledger.entities import LLMApiCall, PriceDetails, QueryFilter
from chatledger.testing import (
    make_agent,
    make_api_call,
    make_message,
    make_provider,
    make_session,
)

CHATLEDGER = Path(sys.executable).with_name("chatledger")
LARGEST_PRICE = Decimal("99999999999999.9999999999")  # NUMERIC(24, 10)


@pytest.mark.parametrize(
    "price",
    ["abc", "", "1e400", "-0.01", "NaN", "Infinity", float("nan"), float("inf"), Decimal("1e14")],
)
def test_with_price_refuses_what_is_not_a_storable_amount(price: Any) -> None:
    """Text that is no number, NaN, infinity, a negative or 10**14 or more: ValidationError."""
    call = make_api_call()
    with pytest.raises(ValidationError, match="total_price") as caught:
        call.with_price(price)
    assert not isinstance(caught.value, decimal.InvalidOperation)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("price", ["0.0000000001", "12.5", 0.1, 3, LARGEST_PRICE])
def test_with_price_takes_text_floats_and_decimals(price: Any) -> None:
    """Anything that reads as a finite amount below 10**14 is taken, floats by their shortest form."""  # noqa: E501
    call = make_api_call().with_price(price)
    assert call.total_price == Decimal(str(price))


def test_price_details_are_bounded_like_the_total() -> None:
    """A detail price follows the same rule as the total."""
    with pytest.raises(ValidationError, match="input_price"):
        PriceDetails(input_price=Decimal("1e400"))
    with pytest.raises(ValidationError, match="output_price"):
        PriceDetails(output_price=Decimal("NaN"))


EARLY = datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        EARLY,
        LAST,
        datetime(1000, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),  # 999 in UTC
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))),  # past 9999
    ],
)
def test_times_outside_the_stored_range_are_refused(moment: datetime) -> None:
    """Before 1000-01-01 or at datetime.max (PostgreSQL's infinity): ValidationError, for every record."""  # noqa: E501
    provider = make_provider()
    makers = [
        lambda: make_session(create_time=moment, update_time=moment),
        lambda: make_message(make_session(), create_time=moment),
        lambda: make_api_call(create_time=moment, update_time=moment),
        lambda: type(provider).model_validate(
            {**provider.model_dump(), "api_key": "k", "create_time": moment}
        ),
        lambda: make_agent(provider)._replace(update_time=moment),
    ]
    for make in makers:
        with pytest.raises(ValidationError, match="out of range"):
            make()


def test_a_filter_takes_any_time() -> None:
    """A filter's bounds are only compared: datetime.min and max are fine there."""
    start, end = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    query = QueryFilter().time_range(start, end)
    assert (query.start_time, query.end_time) == (start, end)


def test_a_filter_refuses_a_limit_no_database_binds() -> None:
    """Offset and limit fit a 64-bit integer."""
    with pytest.raises(ValidationError, match="limit"):
        QueryFilter(limit=2**63)
    with pytest.raises(ValidationError, match="offset"):
        QueryFilter().paginate(2**63, 10)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", float("nan")),
        ("temperature", float("inf")),
        ("agent_order", 2**31),
        ("context_limit", -(2**31) - 1),
        ("max_completion_tokens", 2**40),
        ("response_format", "x" * 51),
        ("agent_code", "x" * 256),
        ("model_name", "x" * 256),
    ],
)
def test_agent_values_beyond_mofa_columns_are_refused(field: str, value: Any) -> None:
    """What MoFA's agent columns (INT4, FLOAT, VARCHAR) cannot hold is refused at once."""
    with pytest.raises(ValidationError, match=field):
        make_agent(make_provider())._replace(**{field: value})


def test_provider_names_beyond_mofa_columns_are_refused() -> None:
    """A provider's name and type fit MoFA's VARCHAR(255) and VARCHAR(100)."""
    provider = make_provider()
    for field, value in (("provider_name", "x" * 256), ("provider_type", "x" * 101)):
        data = {**provider.model_dump(), "api_key": "k", field: value}
        with pytest.raises(ValidationError, match=field):
            type(provider).model_validate(data)


def test_the_largest_price_is_stored_and_summed_on_sqlite(tmp_path: Path) -> None:
    """Prices at the limit stay finite on SQLite's REAL column; statistics and the CLI read them."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    largest = Decimal("99999999999999")  # the largest whole amount; a REAL holds it exactly
    with sync.connect(url) as store:
        calls: list[LLMApiCall] = [make_api_call().with_price(largest) for _ in range(3)]
        store.save_api_calls(calls)
        assert store.get_statistics(QueryFilter()).total_cost == 3 * largest
    environment = {k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"}
    done = subprocess.run(
        [str(CHATLEDGER), "stats", "--db", url, "--json"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
