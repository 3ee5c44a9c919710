"""Pricing: the genai-prices registry, overrides, Decimal money and no network."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest

from chatledger import (
    GenaiPricesRegistry,
    LLMApiCall,
    ModelPrice,
    PricingRegistry,
    StaticPricingRegistry,
    TokenDetails,
    default_pricing_registry,
)
from chatledger.ids import uuid7

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MILLION = Decimal(1_000_000)


def _call(model: str, prompt: int, completion: int, cached: int | None = None) -> LLMApiCall:
    call = LLMApiCall.success(
        uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), uuid7(), model, prompt, completion, T0, T0
    )
    if cached is None:
        return call
    return call.with_token_details(TokenDetails(cached_tokens=cached), None)


def _published_rates(provider_id: str, model_id: str) -> Any:
    """The model's rates straight from the package's data table, not through our code."""
    from genai_prices.data import providers

    provider = next(p for p in providers if p.id == provider_id)
    model = next(m for m in provider.models if m.id == model_id)
    return model.prices


def test_registry_satisfies_the_protocol() -> None:
    """GenaiPricesRegistry is a PricingRegistry; the default registry is one too."""
    assert isinstance(GenaiPricesRegistry(), PricingRegistry)
    assert isinstance(default_pricing_registry(), GenaiPricesRegistry)


def test_known_model_is_priced_at_the_published_rates() -> None:
    """gpt-4o: uncached input, cached input and output each at the package's per-million rate."""
    rates = _published_rates("openai", "gpt-4o")
    assert rates.cache_read_mtok != rates.input_mtok  # the test needs two distinct input rates
    call = _call("gpt-4o", prompt=1000, completion=500, cached=400)

    priced = call.with_auto_price(default_pricing_registry(), "openai")

    expected_input = (600 * rates.input_mtok + 400 * rates.cache_read_mtok) / MILLION
    expected_output = 500 * rates.output_mtok / MILLION
    assert priced.price_details is not None
    assert priced.price_details.input_price == expected_input
    assert priced.price_details.output_price == expected_output
    assert priced.price_details.currency == "USD"
    assert priced.total_price == expected_input + expected_output
    # The package's own calculator agrees on the same usage.
    theirs = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=500),
        "gpt-4o",
        provider_id="openai",
        genai_request_timestamp=T0,
    )
    assert priced.total_price == theirs.total_price


def test_cached_tokens_change_only_the_input_price() -> None:
    """Moving prompt tokens into the cache lowers the input price by the rate difference."""
    rates = _published_rates("openai", "gpt-4o-mini")
    registry = GenaiPricesRegistry()
    plain = registry.price("openai", _call("gpt-4o-mini", 2000, 100))
    cached = registry.price("openai", _call("gpt-4o-mini", 2000, 100, cached=1500))
    assert plain is not None
    assert cached is not None
    saving = 1500 * (rates.input_mtok - rates.cache_read_mtok) / MILLION
    assert plain[0] - cached[0] == saving
    assert plain[1].output_price == cached[1].output_price


def test_reasoning_tokens_are_billed_as_output() -> None:
    """Reasoning tokens sit inside completion_tokens, so reporting them changes nothing."""
    registry = GenaiPricesRegistry()
    call = _call("gpt-4o", 100, 300)
    with_reasoning = call.with_token_details(None, TokenDetails(reasoning_tokens=200))
    assert registry.price("openai", call) == registry.price("openai", with_reasoning)


def test_tiered_prices_follow_the_prompt_length() -> None:
    """Past a tier's start every token is billed at the tier's rate (genai-prices' cliff model)."""
    rates = _published_rates("anthropic", "claude-haiku-5-5")
    tier = rates.input_mtok.tiers[0]
    registry = GenaiPricesRegistry()
    short = registry.price("anthropic", _call("claude-haiku-5-5", tier.start, 0))
    long = registry.price("anthropic", _call("claude-haiku-5-5", tier.start + 1, 0))
    assert short is not None
    assert long is not None
    assert short[0] == tier.start * rates.input_mtok.base / MILLION
    assert long[0] == (tier.start + 1) * tier.price / MILLION


def test_unknown_model_or_provider_is_unpriced() -> None:
    """An unknown model or provider gives None, and with_auto_price leaves the call as it was."""
    registry = GenaiPricesRegistry()
    call = _call("no-such-model-xyz", 10, 10)
    assert registry.price("openai", call) is None
    assert registry.price("no-such-provider-xyz", _call("gpt-4o", 10, 10)) is None
    assert call.with_auto_price(registry, "openai") == call


def test_overrides_win_over_the_package() -> None:
    """An override prices its model, even one the package knows; others still use the package."""
    mine = ModelPrice(
        input_per_million=Decimal("1.10"),
        output_per_million=Decimal("4.40"),
        cached_input_per_million=Decimal("0.55"),
    )
    registry = GenaiPricesRegistry(
        overrides={("openai", "my-finetune"): mine, ("openai", "gpt-4o"): mine}
    )
    finetune = _call("my-finetune", 1000, 500, cached=400)
    expected = StaticPricingRegistry({("openai", "my-finetune"): mine}, name="overrides").price(
        "openai", finetune
    )
    assert registry.price("openai", finetune) == expected
    assert expected is not None
    assert (
        expected[0]
        == (600 * Decimal("1.10") + 400 * Decimal("0.55") + 500 * Decimal("4.40")) / MILLION
    )
    overridden = registry.price("openai", _call("gpt-4o", 1000, 0))
    assert overridden is not None
    assert overridden[0] == Decimal("0.0011")
    assert registry.price("openai", _call("gpt-4o-mini", 1000, 0)) == GenaiPricesRegistry().price(
        "openai", _call("gpt-4o-mini", 1000, 0)
    )


def test_money_is_decimal() -> None:
    """Total, input and output prices are Decimal, never float."""
    result = GenaiPricesRegistry().price("openai", _call("gpt-4o", 1234, 567, cached=200))
    assert result is not None
    total, details = result
    assert type(total) is Decimal
    assert type(details.input_price) is Decimal
    assert type(details.output_price) is Decimal


def test_missing_extra_raises_an_import_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without genai-prices the registry says which extra to install."""
    monkeypatch.setitem(sys.modules, "genai_prices", None)
    with pytest.raises(ImportError, match=r"pip install 'chatledger\[pricing\]'"):
        default_pricing_registry()
    with pytest.raises(ImportError, match=r"chatledger\[pricing\]"):
        GenaiPricesRegistry(overrides={})


def test_pricing_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a registry and pricing known and unknown models opens no connection."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    registry = default_pricing_registry()
    assert registry.price("openai", _call("gpt-4o", 100, 100, cached=10)) is not None
    assert registry.price("anthropic", _call("claude-haiku-5-5", 100, 100)) is not None
    assert registry.price("openai", _call("no-such-model-xyz", 1, 1)) is None


def test_import_chatledger_does_not_load_genai_prices() -> None:
    """The extra is loaded only when a package-backed registry is built."""
    code = "import sys, chatledger; print('genai_prices' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_float_prices_are_read_as_written() -> None:
    """ModelPrice(0.15, 0.6) means 0.15 and 0.6 exactly: floats go through str, never binary."""
    price = ModelPrice(0.15, 0.6, 0.075)
    assert price == ModelPrice(Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))
    assert type(price.input_per_million) is Decimal
    registry = StaticPricingRegistry({("openai", "gpt-4o-mini"): price})

    priced = _call("gpt-4o-mini", 1000, 500, cached=400).with_auto_price(registry, "openai")

    expected_input = (600 * Decimal("0.15") + 400 * Decimal("0.075")) / MILLION
    expected_output = 500 * Decimal("0.6") / MILLION
    assert priced.price_details is not None
    assert priced.price_details.input_price == expected_input == Decimal("0.00012")
    assert priced.price_details.output_price == expected_output == Decimal("0.0003")
    assert priced.total_price == Decimal("0.00042")


def test_int_and_str_prices_are_exact_too() -> None:
    """Whole numbers and decimal strings are as good as Decimal."""
    assert ModelPrice(2, "10.00", "1.25") == ModelPrice(
        Decimal(2), Decimal("10.00"), Decimal("1.25")
    )


def test_prices_in_other_units_convert_exactly() -> None:
    """per_token and per_thousand (MoFA's ModelPricing unit) give the same per-million rates."""
    per_million = ModelPrice(Decimal("0.15"), Decimal("0.6"), Decimal("0.075"), currency="EUR")
    assert ModelPrice.per_thousand(0.00015, 0.0006, 0.000075, currency="EUR") == per_million
    assert ModelPrice.per_token("0.00000015", 6e-7, 7.5e-8, currency="EUR") == per_million
    assert ModelPrice.per_thousand(2.5, 10).cached_input_per_million is None


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((float("nan"), 1), ValueError, "input_per_million.*finite"),
        ((1, float("inf")), ValueError, "output_per_million.*finite"),
        ((Decimal("NaN"), 1), ValueError, "input_per_million.*finite"),
        ((-0.1, 1), ValueError, "input_per_million.*negative"),
        ((1, 1, "-1"), ValueError, "cached_input_per_million.*negative"),
        (("cheap", 1), ValueError, "input_per_million.*'cheap'"),
        ((True, 1), TypeError, "input_per_million.*bool"),
        ((None, 1), TypeError, "input_per_million.*NoneType"),
        ((1, 1, None, ""), ValueError, "currency"),
    ],
)
def test_bad_prices_are_refused_at_construction(
    arguments: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    """A price that could not be charged is refused when made, not when a call is priced."""
    with pytest.raises(error, match=message):
        ModelPrice(*arguments)


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({("openai", "gpt-4o"): (0.15, 0.6)}, r"ModelPrice.*tuple"),
        ({"openai/gpt-4o": ModelPrice(1, 1)}, r"\('openai', 'gpt-4o'\)"),
        ({("openai",): ModelPrice(1, 1)}, r"\(provider, model_name\)"),
    ],
)
def test_static_registry_refuses_a_bad_table_when_built(
    prices: dict[Any, Any], message: str
) -> None:
    """Entries that are not ModelPrice, or keys not (provider, model), fail at construction."""
    with pytest.raises(TypeError, match=message):
        StaticPricingRegistry(prices)
    with pytest.raises(TypeError, match=message):
        GenaiPricesRegistry(overrides=prices)


def test_cache_writes_are_billed_at_their_own_rate() -> None:
    """Anthropic's cache-creation tokens: a subset of the prompt, at the cache-write rate."""
    price = ModelPrice(3, 15, cached_input_per_million="0.30", cache_write_per_million="3.75")
    call = _call("claude", 10_000, 100).with_token_details(
        TokenDetails(cached_tokens=2_000, cache_write_tokens=5_000), None
    )
    total, details = price.price_of(call, "mine v1")
    # 3,000 plain at 3, 2,000 read at 0.30, 5,000 written at 3.75 (per million), 100 out at 15.
    assert details.input_price == Decimal("0.009") + Decimal("0.0006") + Decimal("0.01875")
    assert details.output_price == Decimal("0.0015")
    assert total == Decimal("0.02985")
    assert details.price_table == "mine v1"
    # Without a rate of its own, a cache write costs the input rate.
    plain, _ = ModelPrice(3, 15).price_of(call)
    assert plain == Decimal("0.0315")


def test_every_price_names_the_table_and_version_that_priced_it() -> None:
    """genai-prices' version, or the static table's name, is kept in the price details."""
    call = _call("gpt-4o", 1000, 10)
    _, details = GenaiPricesRegistry().price("openai", call) or (None, None)
    assert details is not None
    assert details.price_table == f"genai-prices {genai_prices.__version__}"
    table = StaticPricingRegistry({("openai", "gpt-4o"): ModelPrice(1, 2)}, name="ours 2026-11")
    priced = call.with_auto_price(table, "openai")
    assert priced.price_details is not None
    assert priced.price_details.price_table == "ours 2026-11"
    assert LLMApiCall.model_validate_json(priced.model_dump_json()) == priced


def test_genai_prices_has_cache_write_rates_for_anthropic() -> None:
    """Claude's cache writes cost more than its input: the registry uses genai-prices' rate."""
    registry = GenaiPricesRegistry()
    base = _call("claude-3-5-sonnet-latest", 1_000_000, 0)
    written = base.with_token_details(TokenDetails(cache_write_tokens=1_000_000), None)
    plain_price = registry.price("anthropic", base)
    write_price = registry.price("anthropic", written)
    assert plain_price is not None
    assert write_price is not None
    assert write_price[0] > plain_price[0]
