"""SDK spend limits with the real openai client against the local fake provider, and a fleet
budget two processes share through the collector's Spend service."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import openai
import pytest

import infersight
from infersight import BudgetExceeded, BudgetWarning
from infersight.budget import budgets as active_budgets
from infersight_collector.fake_provider import Reply

MESSAGES = [{"role": "user", "content": "Summarise this ticket"}]
# gpt-4o per 1M tokens: $2.50 input, $10 output; 1000 in + 500 out = $0.0075 a call.
CALL = Reply(model="gpt-4o-2024-08-06", prompt_tokens=1000, completion_tokens=500)
CALL_USD = (1000 * 2.50 + 500 * 10) / 1e6


@pytest.fixture
def client(fake_openai):
    return openai.OpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=0)


@pytest.fixture
def budgets():
    """`budgets(**kw)` sets a budget for this test only."""
    made = []

    def make(**kw):
        made.append(infersight.budget(**kw))
        return made[-1]
    yield make
    for b in made:
        b.close()


def chat(client, **kw):
    return client.chat.completions.create(model="gpt-4o", messages=MESSAGES, **kw)


def test_spend_crosses_the_budget_and_the_next_call_is_stopped(spans, client, fake_openai,
                                                               budgets):
    limit = budgets(feature="summary", usd_per_day=CALL_USD * 2.5, fleet=False)
    fake_openai.expect(CALL, CALL, CALL)
    with infersight.feature("summary"):
        chat(client)
        chat(client)
        assert limit.spent_usd() == pytest.approx(2 * CALL_USD)
        with pytest.raises(BudgetExceeded) as stopped:
            chat(client, max_tokens=500)  # 2 calls spent + this one's bound > 2.5 calls
    assert len(fake_openai.requests) == 2  # the provider never saw the third call
    assert stopped.value.spent_usd == pytest.approx(2 * CALL_USD)
    assert stopped.value.estimate_usd == pytest.approx(
        (len(str(MESSAGES)) // 4 * 2.50 + 500 * 10) / 1e6)
    with infersight.feature("search"):  # another feature is not in this budget's scope
        chat(client)
    assert len(fake_openai.requests) == 3


def test_the_estimate_uses_max_tokens_before_any_spend(spans, client, fake_openai, budgets):
    budgets(model="gpt-4o", usd_per_day=0.004, fleet=False)
    fake_openai.expect(CALL)
    with pytest.raises(BudgetExceeded):
        chat(client, max_tokens=1000)  # $0.01 of output alone
    chat(client, max_tokens=100)
    assert len(fake_openai.requests) == 1


def test_warn_lets_the_call_through(spans, client, fake_openai, budgets):
    budgets(feature="summary", usd_per_day=0.0, on_exceed="warn", fleet=False)
    fake_openai.expect(CALL)
    with infersight.feature("summary"), pytest.warns(BudgetWarning, match="summary"):
        chat(client)
    assert len(fake_openai.requests) == 1


def test_a_callable_switches_to_a_cheaper_model(spans, client, fake_openai, budgets):
    budgets(model="gpt-4o", usd_per_day=0.0, fleet=False,
            on_exceed=lambda exceeded, kwargs: {**kwargs, "model": "gpt-4o-mini"})
    fake_openai.expect(Reply(prompt_tokens=10, completion_tokens=10))
    chat(client)
    assert fake_openai.requests[0].body["model"] == "gpt-4o-mini"
    assert spans.get_finished_spans()[0].attributes["gen_ai.request.model"] == "gpt-4o-mini"


def test_async_calls_are_stopped_too(spans, fake_openai, budgets):
    import asyncio

    budgets(usd_per_day=0.0, fleet=False)
    aclient = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="t", max_retries=0)
    with pytest.raises(BudgetExceeded):
        asyncio.run(aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    assert fake_openai.requests == []


def test_instrument_takes_budgets_and_bad_ones_are_reported(fake_openai, caplog):
    from opentelemetry.sdk.trace import TracerProvider

    infersight.instrument(tracer_provider=TracerProvider(), budgets=[
        {"feature": "x", "usd_per_day": 1, "fleet": False}, {"feature": "y"}])
    try:
        assert [(b.feature, b.limit_usd) for b in active_budgets] == [("x", 1.0)]
        assert "needs exactly one of usd_per_day and usd_per_month" in caplog.text
    finally:
        for b in list(active_budgets):
            b.close()
        infersight.uninstrument()


def test_no_budget_means_no_check(spans, client, fake_openai):
    assert not active_budgets
    fake_openai.expect(CALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chat(client, max_tokens=10**6)
    assert len(fake_openai.requests) == 1


REPLICA = """
import openai, infersight
infersight.instrument(service_name="replica")
limit = infersight.budget(feature="summary", usd_per_day={limit}, refresh_s=3600)
assert limit.refresh(10), "the collector's Spend service was not reachable"
client = openai.OpenAI(base_url="{base_url}", api_key="x", max_retries=0)
with infersight.feature("summary"):
    for _ in range({calls}):
        try:
            client.chat.completions.create(model="gpt-4o", messages=[])
            print("called")
        except infersight.BudgetExceeded:
            print("stopped")
assert infersight.flush(10)
"""


def test_two_processes_share_one_fleet_budget_through_the_collector(spend_collector,
                                                                    fake_openai):
    fake_openai.expect(*[CALL] * 3)
    limit = CALL_USD * 2.5  # a call goes ahead while the spend is at most the limit

    def replica(calls: int) -> list[str]:
        code = textwrap.dedent(REPLICA.format(limit=limit, base_url=fake_openai.base_url,
                                              calls=calls))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT":
                                                f"http://{spend_collector.endpoint}"})
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert replica(2) == ["called", "called"]
    # Alone, the second replica would make 3 calls (at 0, 1 and 2 calls spent); the fleet
    # has spent 2 already.
    assert replica(3) == ["called", "stopped", "stopped"]
    assert len(fake_openai.requests) == 3
