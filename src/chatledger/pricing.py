"""Pricing of LLM API calls: the registry protocol, a static price table and genai-prices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Protocol, Self, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import TieredPrices

    from chatledger.entities import LLMApiCall, PriceDetails

__all__ = [
    "GenaiPricesRegistry",
    "ModelPrice",
    "PricingRegistry",
    "StaticPricingRegistry",
    "default_pricing_registry",
]

_PER_MILLION = Decimal(1_000_000)
_PER_THOUSAND = Decimal(1_000)
_INSTALL_HINT = "pip install 'chatledger[pricing]'"


@runtime_checkable
class PricingRegistry(Protocol):
    """Knows what a call to a provider's model costs."""

    def price(self, provider: str, call: LLMApiCall) -> tuple[Decimal, PriceDetails] | None:
        """The total price and its split for ``call``, or None when the model is unknown."""
        ...


_PriceValue: TypeAlias = Decimal | int | float | str
"""A price as a caller may write it; floats and strings are read as written (0.15 is 0.15)."""


@dataclass(frozen=True, slots=True, init=False)
class ModelPrice:
    """Prices in currency units per million tokens; cache reads and writes may have their own.

    Rates may be given as ``Decimal``, ``int``, ``float`` or ``str`` and are kept
    as exact ``Decimal`` values: a float is read through its shortest decimal form,
    so ``ModelPrice(0.15, 0.6)`` charges 0.15 and 0.6, not the binary values
    nearest them. A rate that is negative, not finite, or not a number is
    refused here, never later when a call is priced. :meth:`per_token` and
    :meth:`per_thousand` (the unit of MoFA's ``ModelPricing``) take rates in
    other units and convert them exactly.
    """

    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None
    currency: str
    cache_write_per_million: Decimal | None

    def __init__(
        self,
        input_per_million: _PriceValue,
        output_per_million: _PriceValue,
        cached_input_per_million: _PriceValue | None = None,
        currency: str = "USD",
        cache_write_per_million: _PriceValue | None = None,
    ) -> None:
        """Rates per million tokens for input, output and (optionally) cache reads and writes.

        Without their own rate, cache reads and cache writes cost the input rate.
        """
        cached = cached_input_per_million
        write = cache_write_per_million
        if not isinstance(currency, str) or not currency.strip():
            raise ValueError(f"ModelPrice currency must be a non-empty string, not {currency!r}")
        set_field = object.__setattr__  # the dataclass is frozen
        set_field(self, "input_per_million", _price("input_per_million", input_per_million))
        set_field(self, "output_per_million", _price("output_per_million", output_per_million))
        set_field(
            self,
            "cached_input_per_million",
            None if cached is None else _price("cached_input_per_million", cached),
        )
        set_field(self, "currency", currency)
        set_field(
            self,
            "cache_write_per_million",
            None if write is None else _price("cache_write_per_million", write),
        )

    @classmethod
    def per_token(
        cls,
        input_price: _PriceValue,
        output_price: _PriceValue,
        cached_input_price: _PriceValue | None = None,
        currency: str = "USD",
    ) -> Self:
        """Rates given per single token."""
        return cls._scaled(Decimal(1), input_price, output_price, cached_input_price, currency)

    @classmethod
    def per_thousand(
        cls,
        input_price: _PriceValue,
        output_price: _PriceValue,
        cached_input_price: _PriceValue | None = None,
        currency: str = "USD",
    ) -> Self:
        """Rates given per 1,000 tokens, as MoFA's ``ModelPricing::new`` takes them."""
        return cls._scaled(_PER_THOUSAND, input_price, output_price, cached_input_price, currency)

    @classmethod
    def _scaled(
        cls,
        tokens_per_unit: Decimal,
        input_price: _PriceValue,
        output_price: _PriceValue,
        cached_input_price: _PriceValue | None,
        currency: str,
    ) -> Self:
        factor = _PER_MILLION / tokens_per_unit
        return cls(
            _price("input_price", input_price) * factor,
            _price("output_price", output_price) * factor,
            None
            if cached_input_price is None
            else _price("cached_input_price", cached_input_price) * factor,
            currency,
        )

    def price_of(
        self, call: LLMApiCall, price_table: str | None = None
    ) -> tuple[Decimal, PriceDetails]:
        """The total price and its split for ``call`` at these rates, from ``price_table``."""
        from chatledger.entities import PriceDetails

        cached = written = 0
        if call.prompt_tokens_details is not None:
            cached = call.prompt_tokens_details.cached_tokens or 0
            written = call.prompt_tokens_details.cache_write_tokens or 0
        # Cache reads and writes are subsets of prompt_tokens (OpenTelemetry); a provider that
        # reports more would otherwise make the plain part, and so the price, negative.
        cached = min(cached, call.prompt_tokens)
        written = min(written, call.prompt_tokens - cached)
        plain = call.prompt_tokens - cached - written
        input_price = (
            Decimal(plain) * self.input_per_million
            + Decimal(cached) * _or(self.cached_input_per_million, self.input_per_million)
            + Decimal(written) * _or(self.cache_write_per_million, self.input_per_million)
        ) / _PER_MILLION
        # Reasoning tokens are part of completion_tokens, so they are billed as output here.
        output_price = Decimal(call.completion_tokens) * self.output_per_million / _PER_MILLION
        details = PriceDetails(
            input_price=input_price,
            output_price=output_price,
            currency=self.currency,
            price_table=price_table,
        )
        return input_price + output_price, details


class StaticPricingRegistry:
    """A registry from a fixed table keyed by ``(provider, model_name)``."""

    def __init__(
        self, prices: Mapping[tuple[str, str], ModelPrice], *, name: str = "static"
    ) -> None:
        """Price calls from ``prices``, keyed by ``(provider, model_name)``.

        ``name`` (with a version, if the table has one) is stored on every call
        this table prices, as ``price_details.price_table``. A key that is not
        a pair of strings, or a value that is not a :class:`ModelPrice`, is
        refused here with ``TypeError``.
        """
        self._prices = {_price_key(key): _model_price(key, value) for key, value in prices.items()}
        self.name = name

    def price(self, provider: str, call: LLMApiCall) -> tuple[Decimal, PriceDetails] | None:
        """The price of ``call`` from the table, cache reads and writes at their own rates."""
        entry = self._prices.get((provider, call.model_name))
        return None if entry is None else entry.price_of(call, self.name)


class GenaiPricesRegistry:
    """Prices from the data bundled with the ``genai-prices`` package, with user overrides.

    Only the price table shipped inside the installed package is read: nothing is
    fetched at run time, even when another library in the process has started
    genai-prices' opt-in ``UpdatePrices`` background download.
    """

    def __init__(self, overrides: Mapping[tuple[str, str], ModelPrice] | None = None) -> None:
        """Price from genai-prices; ``overrides`` keyed by ``(provider, model_name)`` win."""
        self._overrides = StaticPricingRegistry(overrides or {}, name="overrides")
        self._snapshot = _bundled_snapshot()
        from importlib.metadata import version  # only here: it costs milliseconds to import

        self.name = f"genai-prices {version('genai-prices')}"

    def price(self, provider: str, call: LLMApiCall) -> tuple[Decimal, PriceDetails] | None:
        """The price of ``call``: an override, else genai-prices' rates at the call's time."""
        overridden = self._overrides.price(provider, call)
        if overridden is not None:
            return overridden
        rates = self._rates(provider, call)
        return None if rates is None else rates.price_of(call, self.name)

    def _rates(self, provider: str, call: LLMApiCall) -> ModelPrice | None:
        try:
            _, model = self._snapshot.find_provider_model(call.model_name, None, provider, None)
        except LookupError:
            return None
        # The rates in force when the call was made, so re-pricing an old call is stable.
        rates = model.get_prices(call.create_time)
        return ModelPrice(
            input_per_million=_rate(rates.input_mtok, call.prompt_tokens),
            output_per_million=_rate(rates.output_mtok, call.prompt_tokens),
            cached_input_per_million=(
                None
                if rates.cache_read_mtok is None
                else _rate(rates.cache_read_mtok, call.prompt_tokens)
            ),
            currency="USD",  # genai-prices publishes every price in US dollars
            cache_write_per_million=(
                None
                if rates.cache_write_mtok is None
                else _rate(rates.cache_write_mtok, call.prompt_tokens)
            ),
        )


def default_pricing_registry(
    overrides: Mapping[tuple[str, str], ModelPrice] | None = None,
) -> GenaiPricesRegistry:
    """The package-backed registry (extra ``pricing``), with optional overrides."""
    return GenaiPricesRegistry(overrides)


def _bundled_snapshot() -> DataSnapshot:
    """A genai-prices snapshot of the data shipped in the package, never a downloaded one."""
    try:
        # The top-level package first: a cached submodule could otherwise import on its own.
        import genai_prices  # noqa: F401
        from genai_prices.data import providers
        from genai_prices.data_snapshot import DataSnapshot
    except ImportError as exc:
        raise ImportError(
            f"GenaiPricesRegistry needs the genai-prices package: {_INSTALL_HINT}"
        ) from exc
    # Our own snapshot rather than genai_prices.calc_price, whose global snapshot
    # UpdatePrices may have replaced with prices downloaded from GitHub.
    return DataSnapshot(providers=providers, from_auto_update=False)


def _rate(price: Decimal | TieredPrices | None, prompt_tokens: int) -> Decimal:
    """One per-million rate; a tiered one at the tier the prompt length reaches."""
    from genai_prices.types import TieredPrices

    if price is None:
        # genai-prices charges nothing for a unit it has no price for.
        return Decimal(0)
    if isinstance(price, TieredPrices):
        # genai-prices' cliff model: crossing a tier's start bills every token at its rate.
        applicable = price.base
        for tier in reversed(price.tiers):
            if prompt_tokens > tier.start:
                applicable = tier.price
                break
        return _decimal(applicable)
    return _decimal(price)


def _price(name: str, value: object) -> Decimal:
    """``value`` as an exact, finite, non-negative Decimal, or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise TypeError(
            f"ModelPrice {name} must be a Decimal, int, float or str, not {type(value).__name__}"
        )
    try:
        # str() of a float is its shortest round-tripping form: 0.15 -> "0.15".
        price = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"ModelPrice {name} is not a number: {value!r}") from None
    if not price.is_finite():
        raise ValueError(f"ModelPrice {name} must be finite, not {value!r}")
    if price < 0:
        raise ValueError(f"ModelPrice {name} must not be negative, not {value!r}")
    return price


def _price_key(key: object) -> tuple[str, str]:
    """A price table's key, checked to be ``(provider, model_name)``."""
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(part, str) for part in key):
        return key[0], key[1]
    hint = ""
    if isinstance(key, str) and "/" in key:
        provider, model = key.split("/", 1)
        hint = f"; write {(provider, model)!r}"
    raise TypeError(f"a price table key must be a (provider, model_name) tuple, not {key!r}{hint}")


def _model_price(key: object, value: object) -> ModelPrice:
    """A price table's entry, checked to be a :class:`ModelPrice`."""
    if isinstance(value, ModelPrice):
        return value
    raise TypeError(
        f"the price of {key!r} must be a ModelPrice, not {type(value).__name__} {value!r}; "
        "e.g. ModelPrice(0.15, 0.6) for rates per million tokens"
    )


def _or(rate: Decimal | None, default: Decimal) -> Decimal:
    """``rate``, or ``default`` when the model has no rate of its own for that part."""
    return default if rate is None else rate


def _decimal(value: Decimal | float) -> Decimal:
    """A Decimal; floats are read through their shortest decimal form, never their binary value."""
    return value if isinstance(value, Decimal) else Decimal(str(value))
