"""Cost in USD of a model call, from the bundled, versioned price file `prices.json`.

Prices are per 1M tokens and date-effective, so a price change does not rewrite the past.
A model that is not in the file has no cost (None), never a guess. Names are resolved the way
providers and gateways spell them: dated snapshots (`gpt-4o-mini-2024-07-18`,
`claude-3-5-haiku-20241022`, `mistral-large-2411`, `-latest`), Gemini versions and paths
(`models/gemini-2.5-flash`, `gemini-2.0-flash-001`), Bedrock ids
(`us.anthropic.claude-sonnet-4-20250514-v1:0`, `meta.llama3-1-70b-instruct-v1:0`), router
prefixes (`openai/gpt-4o`). An open model a host prices itself is keyed `<provider>/<model>`
(provider as in `gen_ai.provider.name`: `groq/llama-3.3-70b-versatile`); pass `provider=` to
pick a host's price when several hosts serve the same name.

Your own prices (a negotiated rate, a fine-tune) override or add entries, same schema as the
file's `models`: `INFERSIGHT_PRICES_FILE=path.json`, `instrument(prices=...)`, or
`load_overrides(path_or_dict)`.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import functools
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

# One suffix a provider appends to a base name: a date or version, "-latest", a Gemini
# "-001" or "-preview-05-20", a Bedrock "-v1" or ":0".
_SUFFIX = re.compile(
    r"(-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|latest|preview-\d{2}-\d{2}|v\d+)|:\d+)$")
# Bedrock: a cross-region inference profile ("us.") and the model's vendor ("anthropic.").
_REGION = re.compile(r"^(us|eu|apac|global|us-gov|ca|jp|au)\.")
_VENDOR = re.compile(r"^(anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen)\.")
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")


class Usage(NamedTuple):
    """Token counts as the contract defines them: `input` includes cache reads and writes.
    A named tuple: one is built per priced call, in a third of a frozen dataclass's time."""

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
    """The parsed bundled price file (schema, version, models)."""
    with resources.files(__package__).joinpath("prices.json").open("r", encoding="utf-8") as f:
        return json.load(f)


_overrides: dict[str, dict] = {}
_overrides_lock = threading.Lock()
# INFERSIGHT_PRICES_FILE is read on the first priced call, under a lock that other threads'
# first calls wait on; `_env_claimed` keeps the loading thread from loading it twice.
_env_lock = threading.RLock()
_env_claimed = _env_loaded = False
# Bumped whenever the overrides change. The tables derived from them are cached under the
# generation they were asked for, and a price found under an older generation is not kept,
# so a call that read the tables just before `load_overrides` cannot leave its answer cached.
_generation = 0


def _check_entry(name: Any, entry: Any) -> None:
    where = f"price override {name!r}"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: the model name must be a non-empty string")
    if not isinstance(entry, dict) or not isinstance(entry.get("prices"), list) \
            or not entry["prices"]:
        raise ValueError(f"{where}: needs a 'prices' list, e.g. "
                         '{"prices": [{"from": "2025-01-01", "input": 1.0, "output": 4.0}]}')
    for price in entry["prices"]:
        if not isinstance(price, dict) or "from" not in price or "input" not in price:
            raise ValueError(f"{where}: each price needs 'from' (YYYY-MM-DD) and 'input' "
                             "(USD per 1M tokens)")
        _dt.date.fromisoformat(price["from"])
        for key in TOKEN_TYPES:
            value = price.get(key, 0.0)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{where}: {key} must be a non-negative number, got {value!r}")


def load_overrides(source: str | os.PathLike | dict) -> int:
    """Add or replace price entries from a JSON file or a dict: either a whole price file
    (with "models") or its `models` mapping. Returns how many entries were loaded.
    Raises ValueError saying which entry is malformed; nothing is loaded then."""
    if isinstance(source, (str, os.PathLike)):
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read price overrides from {source}: {exc}") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise ValueError("price overrides must be a mapping of model name -> entry")
    models = data.get("models", data) if isinstance(data.get("models"), dict) else data
    for name, entry in models.items():
        _check_entry(name, entry)
    _load_env_overrides()  # the environment's file first, so what the code passes wins
    with _overrides_lock:
        _overrides.update({name.strip().lower(): entry for name, entry in models.items()})
        _clear_caches()
    return len(models)


def clear_overrides() -> None:
    """Back to the bundled prices only."""
    global _env_loaded, _env_claimed
    with _env_lock:
        _env_claimed = _env_loaded = True  # an explicit reset also drops INFERSIGHT_PRICES_FILE
        with _overrides_lock:
            _overrides.clear()
            _clear_caches()


def _clear_caches() -> None:
    """Called under `_overrides_lock`, with the change itself, so a table cached under the
    new generation always holds the change."""
    global _generation
    _generation += 1
    _day_prices.clear()
    _models.cache_clear()
    _index.cache_clear()
    _resolve.cache_clear()


def _load_env_overrides() -> None:
    global _env_loaded, _env_claimed
    if _env_loaded:
        return
    with _env_lock:
        if _env_claimed:  # done by another thread meanwhile, or this one is loading it
            return
        _env_claimed = True
        path = os.environ.get("INFERSIGHT_PRICES_FILE", "").strip()
        try:
            if path:
                load_overrides(path)
        except ValueError as exc:  # never fail a call over it: the bundled prices still apply
            logging.getLogger("infersight").warning(
                "infersight: INFERSIGHT_PRICES_FILE not loaded: %s", exc)
        finally:
            _env_loaded = True


@functools.lru_cache(maxsize=1)
def _models(generation: int) -> dict[str, tuple[tuple[str, ...], tuple[_Price, ...]]]:
    """Model -> (sorted start dates, prices), bundled entries then overrides."""
    with _overrides_lock:
        entries = {**price_table()["models"], **_overrides}
    out = {}
    for name, entry in entries.items():
        prices = tuple(
            _Price(start=p["from"], input=p["input"], output=p.get("output", 0.0),
                   cache_read=p.get("cache_read", p["input"]),
                   cache_write=p.get("cache_write", p["input"]))
            for p in sorted(entry["prices"], key=lambda p: p["from"]))
        out[name] = (tuple(p.start for p in prices), prices)
    return out


@functools.lru_cache(maxsize=1)
def _index(generation: int) -> dict[str, str]:
    """Every name a model is known by -> its key: the key itself and, for a host-priced
    `<provider>/<model>` key, the bare model name when only one host prices it."""
    models = _models(generation)
    index = {name: name for name in models}
    hosted: dict[str, list[str]] = {}
    for name in models:
        _, sep, rest = name.partition("/")
        if sep:
            hosted.setdefault(rest, []).append(name)
    for alias, keys in hosted.items():
        if alias not in index and len(keys) == 1:
            index[alias] = keys[0]
    return index


def _variants(name: str):
    """`name` and what it becomes as provider suffixes are stripped one by one."""
    while name:
        yield name
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            return
        name = stripped


def resolve_model(model: str, provider: str | None = None) -> str | None:
    """The price-file key for a served or requested model name, or None when unknown."""
    _load_env_overrides()
    return _resolve(model, provider, _generation)


@functools.lru_cache(maxsize=8192)
def _resolve(model: str, provider: str | None, generation: int) -> str | None:
    index = _index(generation)
    name = _REGION.sub("", model.strip().lower())
    bases = [name, _VENDOR.sub("", name)]
    if "/" in name:  # "models/gemini-2.5-flash", "openai/gpt-4o" as routers name them
        bases.append(name.rsplit("/", 1)[1])
    prefix = f"{provider.lower()}/" if provider else None
    for base in dict.fromkeys(bases):
        for candidate in _variants(base):
            if prefix and prefix + candidate in index:
                return index[prefix + candidate]
            if candidate in index:
                return index[candidate]
    return None


_today: list = [-1, ""]  # [UTC day number, its ISO date]: one date object a day, not a call


def _utc_today() -> str:
    day = int(time.time() // 86400)
    if day != _today[0]:
        _today[:] = [day, (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()]
    return _today[1]


# (model, provider, ISO day) -> that day's price, or None: one dict lookup a priced call
# instead of resolving the name and finding the day's price again each time.
_day_prices: dict[tuple[str, str | None, str], _Price | None] = {}


def _price(model: str, provider: str | None, day: str, generation: int) -> _Price | None:
    key = _resolve(model, provider, generation)
    # The tables are rebuilt from the overrides as they are now when the generation moved on
    # meanwhile, so the key may be gone: no price, and `cost_usd` keeps nothing of it.
    entry = None if key is None else _models(generation).get(key)
    if entry is None:
        return None
    starts, prices = entry
    return prices[max(bisect.bisect_right(starts, day) - 1, 0)]


def cost_usd(model: str | None, usage: Usage, at: _dt.date | None = None,
             provider: str | None = None) -> float | None:
    """USD cost of `usage` on `model` at date `at` (today in UTC, as the collector
    prices, by default); None if unpriced.
    `provider` (a gen_ai.provider.name) prefers that host's own price for the model."""
    if not model:
        return None
    day = at.isoformat() if at else _utc_today()
    try:
        price = _day_prices[(model, provider, day)]
    except KeyError:
        _load_env_overrides()
        generation = _generation
        price = _price(model, provider, day, generation)
        if len(_day_prices) >= 8192:
            _day_prices.clear()
        _day_prices[(model, provider, day)] = price
        if generation != _generation:  # the overrides changed meanwhile: next call finds it anew
            _day_prices.pop((model, provider, day), None)
    if price is None:
        return None
    tokens_in, tokens_out, cache_read, cache_write = usage  # once per priced call: unpacked
    uncached = tokens_in - cache_read - cache_write
    total = ((uncached if uncached > 0 else 0) * price.input + cache_read * price.cache_read
             + cache_write * price.cache_write + tokens_out * price.output)
    return total / 1_000_000
