"""Pricing of LLM API calls: the registry protocol and a static price table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from chatledger.entities import LLMApiCall, PriceDetails

__all__ = ["ModelPrice", "PricingRegistry", "StaticPricingRegistry"]

_PER_MILLION = Decimal(1_000_000)


@runtime_checkable
class PricingRegistry(Protocol):
    """Knows what a call to a provider's model costs."""

    def price(self, provider: str, call: LLMApiCall) -> tuple[Decimal, PriceDetails] | None:
        """The total price and its split for ``call``, or None when the model is unknown."""
        ...


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices in currency units per million tokens; cached input may have its own rate."""

    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None
    currency: str = "USD"


class StaticPricingRegistry:
    """A registry from a fixed table keyed by ``(provider, model_name)``."""

    def __init__(self, prices: Mapping[tuple[str, str], ModelPrice]) -> None:
        """Price calls from ``prices``."""
        self._prices = dict(prices)

    def price(self, provider: str, call: LLMApiCall) -> tuple[Decimal, PriceDetails] | None:
        """The price of ``call`` from the table, cached input at its own rate."""
        from chatledger.entities import PriceDetails

        entry = self._prices.get((provider, call.model_name))
        if entry is None:
            return None
        cached = 0
        if call.prompt_tokens_details is not None:
            cached = call.prompt_tokens_details.cached_tokens or 0
        cached_rate = entry.cached_input_per_million
        if cached_rate is None:
            cached_rate = entry.input_per_million
        input_price = (
            Decimal(call.prompt_tokens - cached) * entry.input_per_million
            + Decimal(cached) * cached_rate
        ) / _PER_MILLION
        output_price = Decimal(call.completion_tokens) * entry.output_per_million / _PER_MILLION
        details = PriceDetails(
            input_price=input_price, output_price=output_price, currency=entry.currency
        )
        return input_price + output_price, details
