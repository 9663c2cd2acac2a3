"""The price table: shipped list prices, overridden by the run config; cost of token usage."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from rapport.config.decoding import load_file
from rapport.config.run import Price


class PriceTable:
    """Prices per model name, matched by longest prefix (so dated snapshots match too)."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    def price_for(self, model: str) -> Price | None:
        matches = [name for name in self._prices if model.startswith(name)]
        return self._prices[max(matches, key=len)] if matches else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """US dollars, or None when the model has no known price."""
        price = self.price_for(model)
        if price is None:
            return None
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000


def load_prices(overrides: Mapping[str, Price] | None = None) -> PriceTable:
    path = Path(str(resources.files("rapport.config") / "prices.yaml"))
    shipped = load_file(path, dict[str, Price], str(path))
    return PriceTable({**shipped, **(overrides or {})})
