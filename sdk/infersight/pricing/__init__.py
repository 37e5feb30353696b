"""Cost in USD of a model call, from the bundled, versioned price file `prices.json`.

Prices are per 1M tokens and date-effective, so a price change does not rewrite the past.
A model that is not in the file has no cost (None), never a guess; a dated snapshot name
such as `gpt-4o-mini-2024-07-18` or `claude-3-5-haiku-20241022` is priced as its base model.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")


@dataclass(frozen=True)
class Usage:
    """Token counts as the contract defines them: `input` includes cache reads and writes."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class _Price:
    start: str  # ISO date
    input: float
    output: float
    cache_read: float
    cache_write: float


@functools.lru_cache(maxsize=1)
def price_table() -> dict:
    """The parsed price file (schema, version, models)."""
    with resources.files(__package__).joinpath("prices.json").open("r", encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=1)
def _models() -> dict[str, list[_Price]]:
    out = {}
    for name, entry in price_table()["models"].items():
        prices = []
        for p in sorted(entry["prices"], key=lambda p: p["from"]):
            prices.append(_Price(
                start=p["from"], input=p["input"], output=p.get("output", 0.0),
                cache_read=p.get("cache_read", p["input"]),
                cache_write=p.get("cache_write", p["input"]),
            ))
        out[name] = prices
    return out


@functools.lru_cache(maxsize=4096)
def resolve_model(model: str) -> str | None:
    """The price-file name for a served or requested model name, or None when unknown."""
    models = _models()
    name = model.strip().lower()
    if "/" in name:  # "openai/gpt-4o" as routers and gateways name it
        name = name.rsplit("/", 1)[1]
    while name:
        if name in models:
            return name
        stripped = _SNAPSHOT_SUFFIX.sub("", name)
        if stripped == name:
            return None
        name = stripped
    return None


def cost_usd(model: str | None, usage: Usage, at: _dt.date | None = None) -> float | None:
    """USD cost of `usage` on `model` at date `at` (today by default); None if unpriced."""
    if not model:
        return None
    key = resolve_model(model)
    if key is None:
        return None
    prices = _models()[key]
    day = (at or _dt.date.today()).isoformat()
    i = bisect.bisect_right([p.start for p in prices], day) - 1
    price = prices[max(i, 0)]
    uncached = max(usage.input - usage.cache_read - usage.cache_write, 0)
    total = (uncached * price.input + usage.cache_read * price.cache_read
             + usage.cache_write * price.cache_write + usage.output * price.output)
    return total / 1_000_000
