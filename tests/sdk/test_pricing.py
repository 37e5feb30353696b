"""The bundled price file and the cost function."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import pytest

import infersight
from infersight import pricing
from infersight.pricing import Usage, cost_usd, price_table, resolve_model

from test_instrument import run_app

# Token-type prices each kind of entry must carry, by provider (gen_ai.provider.name).
CHAT = {"input", "output"}
CACHED_CHAT = CHAT | {"cache_read"}
EMBEDDINGS = {"input"}
REQUIRED = {
    ("openai", "chat"): CHAT,
    ("openai", "completion"): CHAT,
    ("openai", "embeddings"): EMBEDDINGS,
    ("anthropic", "chat"): CHAT | {"cache_read", "cache_write"},
    ("gcp.gemini", "chat"): CHAT,
    ("gcp.gemini", "embeddings"): EMBEDDINGS,
    ("mistral_ai", "chat"): CHAT,
    ("mistral_ai", "embeddings"): EMBEDDINGS,
    ("aws.bedrock", "chat"): CHAT,
    ("aws.bedrock", "embeddings"): EMBEDDINGS,
    ("groq", "chat"): CHAT,
    ("together_ai", "chat"): CHAT,
    ("deepseek", "chat"): CACHED_CHAT,
    ("x_ai", "chat"): CACHED_CHAT,
    ("cohere", "chat"): CHAT,
    ("cohere", "embeddings"): EMBEDDINGS,
}


def test_price_file_schema_and_required_prices():
    table = price_table()
    assert table["schema"] == 1
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table["version"])
    assert table["unit"] == "per 1M tokens"
    for name, entry in table["models"].items():
        assert name == name.lower(), name
        assert entry["source"].startswith("https://"), name
        dt.date.fromisoformat(entry["recorded"])
        required = REQUIRED[(entry["provider"], entry["kind"])]
        if "/" in name:  # a host's own price: keyed by that host
            assert name.split("/", 1)[0] == entry["provider"], name
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


def test_covers_at_least_150_models_of_every_provider():
    models = price_table()["models"]
    assert len(models) >= 150
    providers = {entry["provider"] for entry in models.values()}
    assert {"openai", "anthropic", "gcp.gemini", "mistral_ai", "aws.bedrock", "groq",
            "together_ai"} <= providers


@pytest.mark.parametrize("served, key", [
    ("models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("mistral-large-latest", "mistral-large"),
    ("mistral-small-2503", "mistral-small"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
    ("meta.llama3-1-70b-instruct-v1:0", "aws.bedrock/meta.llama3-1-70b-instruct"),
    ("amazon.nova-pro-v1:0", "nova-pro"),
    ("amazon.titan-embed-text-v2:0", "titan-embed-text-v2"),
    ("mistral.mistral-large-2402-v1:0", "aws.bedrock/mistral.mistral-large-2402"),
    ("llama-3.3-70b-versatile", "groq/llama-3.3-70b-versatile"),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo",
     "together_ai/meta-llama/llama-3.3-70b-instruct-turbo"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # a snapshot with its own price
])
def test_provider_spellings_resolve_to_priced_entries(served, key):
    assert resolve_model(served) == key
    assert cost_usd(served, Usage(input=1000, output=1000)) > 0


def test_a_hosts_own_price_is_picked_by_provider():
    usage = Usage(input=1_000_000, output=1_000_000)
    assert resolve_model("openai/gpt-oss-120b") is None  # two hosts, two prices: no guess
    assert cost_usd("openai/gpt-oss-120b", usage, provider="groq") == pytest.approx(0.90)
    assert cost_usd("openai/gpt-oss-120b", usage, provider="together_ai") == pytest.approx(0.75)
    # A router that passes a maker's model through is priced as the maker prices it.
    assert resolve_model("openai/gpt-4o", provider="openrouter") == "gpt-4o"


def test_several_price_changes_each_apply_from_their_date():
    usage = Usage(input=1_000_000, cache_read=500_000, output=1_000_000)
    # deepseek-chat: V3 0.27/1.10 (hit 0.07), V3.1 0.56/1.68 (hit 0.07), V3.2 0.28/0.42 (0.028)
    assert cost_usd("deepseek-chat", usage, at=dt.date(2025, 3, 1)) == pytest.approx(
        0.5 * 0.27 + 0.5 * 0.07 + 1.10)
    assert cost_usd("deepseek-chat", usage, at=dt.date(2025, 9, 10)) == pytest.approx(
        0.5 * 0.56 + 0.5 * 0.07 + 1.68)
    assert cost_usd("deepseek-chat", usage, at=dt.date(2025, 10, 1)) == pytest.approx(
        0.5 * 0.28 + 0.5 * 0.028 + 0.42)


def test_without_a_date_the_price_of_the_current_utc_day_applies(monkeypatch):
    """The day is read from the clock on every call (cached per day), in UTC as the collector
    prices: a process running across midnight switches to the new price."""
    usage = Usage(input=1_000_000, cache_read=500_000, output=1_000_000)
    for day in (dt.date(2025, 9, 10), dt.date(2025, 10, 1), dt.date(2025, 3, 1)):
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
        for seconds in (0, 86_399):
            monkeypatch.setattr(pricing.time, "time", lambda: midnight.timestamp() + seconds)
            assert cost_usd("deepseek-chat", usage) == cost_usd("deepseek-chat", usage, at=day)
    assert cost_usd("deepseek-chat", usage, at=dt.date(2025, 9, 10)) != \
        cost_usd("deepseek-chat", usage, at=dt.date(2025, 10, 1))


@pytest.fixture
def overrides():
    yield pricing
    pricing.clear_overrides()


def test_overrides_from_a_dict_add_and_replace_entries(overrides):
    usage = Usage(input=1_000_000, output=1_000_000)
    bundled = cost_usd("gpt-4o-mini", usage)
    overrides.load_overrides({
        "gpt-4o-mini": {"prices": [{"from": "2024-01-01", "input": 0.1, "output": 0.5}]},
        "acme-ft-v2": {"prices": [{"from": "2025-01-01", "input": 3.0, "output": 6.0}]},
    })
    assert cost_usd("gpt-4o-mini-2024-07-18", usage) == pytest.approx(0.6) != bundled
    assert cost_usd("ACME-FT-V2", usage) == pytest.approx(9.0)
    overrides.clear_overrides()
    assert cost_usd("gpt-4o-mini", usage) == bundled
    assert cost_usd("acme-ft-v2", usage) is None


def test_overrides_from_a_file_and_instrument(overrides, tmp_path, spans):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"acme-ft": {
        "prices": [{"from": "2025-01-01", "input": 2.0, "output": 4.0}]}}}))
    infersight.instrument(prices=str(path))
    assert cost_usd("acme-ft", Usage(input=500_000)) == pytest.approx(1.0)


def test_bad_overrides_are_clear_errors_and_load_nothing(overrides):
    with pytest.raises(ValueError, match="'cheap'.*'prices' list"):
        overrides.load_overrides({"ok": {"prices": [{"from": "2025-01-01", "input": 1}]},
                                  "cheap": {"input": 1}})
    with pytest.raises(ValueError, match="output must be a non-negative number"):
        overrides.load_overrides({"m": {"prices": [{"from": "2025-01-01", "input": 1,
                                                    "output": -2}]}})
    with pytest.raises(ValueError, match="cannot read price overrides"):
        overrides.load_overrides("/nonexistent/prices.json")
    assert resolve_model("ok") is None


def test_prices_file_from_the_environment(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"gpt-4o": {"prices": [{"from": "2020-01-01", "input": 1.0,
                                                       "output": 1.0}]}}))
    result = run_app("""
    from infersight.pricing import Usage, cost_usd
    print(cost_usd("gpt-4o", Usage(input=1_000_000, output=1_000_000)))
    """, INFERSIGHT_PRICES_FILE=str(path))
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(2.0)


def test_calls_made_while_the_environment_prices_load_wait_for_them(tmp_path):
    """The first priced call loads INFERSIGHT_PRICES_FILE; a call on another thread meanwhile
    must wait for it, not price with the bundled file and cache that. The file is a FIFO, so
    the load stays open until this app writes it."""
    fifo = tmp_path / "prices.fifo"
    os.mkfifo(fifo)
    result = run_app(f"""
    import json, threading
    from infersight.pricing import Usage, cost_usd
    usage, costs = Usage(input=1_000_000, output=1_000_000), {{}}
    def call(name):
        costs[name] = cost_usd("gpt-4o", usage)
    first = threading.Thread(target=call, args=("first",))
    first.start()
    with open({str(fifo)!r}, "w") as f:  # returns once the first call opened it to load
        second = threading.Thread(target=call, args=("second",))
        second.start()
        second.join(0.5)
        costs["second waited"] = second.is_alive()
        f.write(json.dumps({{"gpt-4o": {{"prices": [{{"from": "2020-01-01", "input": 1.0,
                                                      "output": 1.0}}]}}}}))
    first.join(); second.join()
    call("after")
    print(json.dumps(costs))
    """, INFERSIGHT_PRICES_FILE=str(fifo))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"first": 2.0, "second waited": True, "second": 2.0,
                                         "after": 2.0}


def test_a_price_found_while_overrides_change_is_not_kept(overrides):
    """A call that resolved its model from the tables as they were before `load_overrides`
    keeps nothing of it: the next call sees the new entry. The overrides change inside the
    name's resolution here, the one place a test can pause a call."""
    usage = Usage(input=1_000_000, output=1_000_000)
    real_variants = pricing._variants

    def variants_meanwhile(name):
        pricing._variants = real_variants
        overrides.load_overrides({"acme-ft": {"prices": [{"from": "2020-01-01", "input": 1.0,
                                                           "output": 2.0}]}})
        yield from real_variants(name)

    pricing._variants = variants_meanwhile
    try:
        assert cost_usd("acme-ft-20250101", usage) is None  # resolved against the old tables
    finally:
        pricing._variants = real_variants
    assert cost_usd("acme-ft-20250101", usage) == pytest.approx(3.0)
    assert resolve_model("acme-ft-20250101") == "acme-ft"


def test_resolutions_and_day_prices_are_cached():
    """A name is resolved once; a (model, provider, day) price is found once."""
    with pricing._overrides_lock:
        pricing._clear_caches()
    name = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    first = cost_usd(name, Usage(input=1))
    assert cost_usd(name, Usage(input=2)) == pytest.approx(2 * first)
    assert (pricing._resolve.cache_info().misses, pricing._resolve.cache_info().hits) == (1, 0)
    cost_usd(name, Usage(input=1), at=dt.date(2025, 6, 1))  # another day: the name is known
    assert (pricing._resolve.cache_info().misses, pricing._resolve.cache_info().hits) == (1, 1)