"""The bundled price file and the cost function."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from infersight.pricing import Usage, cost_usd, price_table, resolve_model

# Token-type prices each kind of entry must carry, by provider.
REQUIRED = {
    ("openai", "chat"): {"input", "output"},
    ("openai", "embeddings"): {"input"},
    ("anthropic", "chat"): {"input", "output", "cache_read", "cache_write"},
}


def test_price_file_schema_and_required_prices():
    table = price_table()
    assert table["schema"] == 1
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table["version"])
    assert table["unit"] == "per 1M tokens"
    for name, entry in table["models"].items():
        assert name == name.lower(), name
        assert entry["source"].startswith("https://"), name
        dt.date.fromisoformat(entry["checked"])
        required = REQUIRED[(entry["provider"], entry["kind"])]
        starts = [p["from"] for p in entry["prices"]]
        assert starts == sorted(set(starts)), f"{name}: 'from' dates must be unique and sorted"
        for price in entry["prices"]:
            dt.date.fromisoformat(price["from"])
            assert required <= price.keys(), f"{name} lacks {required - price.keys()}"
            assert all(price[k] >= 0 for k in price if k != "from"), name


def test_snapshot_names_resolve_to_their_base_model():
    assert resolve_model("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert resolve_model("claude-3-5-haiku-20241022") == "claude-3-5-haiku"
    assert resolve_model("openai/gpt-4o") == "gpt-4o"
    assert resolve_model("GPT-4o") == "gpt-4o"


def test_unknown_models_are_not_guessed():
    assert resolve_model("gpt-4o-realtime-preview") is None
    assert cost_usd("my-finetune", Usage(input=100, output=100)) is None
    assert cost_usd(None, Usage(input=100)) is None


def test_prices_are_date_effective():
    usage = Usage(input=1_000_000, output=1_000_000)
    # o3 cost $10/$40 at launch and $2/$8 from 2025-06-10.
    assert cost_usd("o3", usage, at=dt.date(2025, 5, 1)) == pytest.approx(50.0)
    assert cost_usd("o3", usage, at=dt.date(2025, 6, 10)) == pytest.approx(10.0)


def test_cached_and_cache_write_tokens_have_their_own_rates():
    # claude-sonnet-4: $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M.
    usage = Usage(input=10_000, cache_read=6_000, cache_write=2_000, output=1_000)
    expected = (2_000 * 3 + 6_000 * 0.30 + 2_000 * 3.75 + 1_000 * 15) / 1e6
    assert cost_usd("claude-sonnet-4-20250514", usage) == pytest.approx(expected)
