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

    def cost(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        batch: bool = False,
    ) -> float | None:
        """US dollars, or None when the model has no known price (see `usage_cost`)."""
        price = self.price_for(model)
        if price is None:
            return None
        return usage_cost(
            price,
            prompt_tokens,
            completion_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            batch=batch,
        )


def usage_cost(
    price: Price,
    prompt_tokens: int,
    completion_tokens: int,
    *,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    batch: bool = False,
) -> float:
    """US dollars for one usage. `prompt_tokens` counts every input token; the cached ones
    are priced at the cache prices, the rest at the input price (the batch one for `batch`)."""
    input_price = price.batch_input if batch and price.batch_input is not None else price.input
    output_price = price.batch_output if batch and price.batch_output is not None else price.output
    read_price = price.cache_read if price.cache_read is not None else input_price
    write_price = price.cache_write if price.cache_write is not None else input_price
    uncached = max(0, prompt_tokens - cache_read_tokens - cache_write_tokens)
    return (
        uncached * input_price
        + cache_read_tokens * read_price
        + cache_write_tokens * write_price
        + completion_tokens * output_price
    ) / 1_000_000


def load_prices(overrides: Mapping[str, Price] | None = None) -> PriceTable:
    path = Path(str(resources.files("rapport.config") / "prices.yaml"))
    shipped = load_file(path, dict[str, Price], str(path))
    return PriceTable({**shipped, **(overrides or {})})
