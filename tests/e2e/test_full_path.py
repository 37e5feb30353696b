"""Real client -> SDK -> OTLP/gRPC -> collector -> chDB -> the dashboard's query functions.

The service runs in its own interpreter with only `instrument()` and the standard OTLP
endpoint variable, as a user would run it; the collector and store run in this process.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap

import pytest

from infersight_collector.fake_provider import Reply
from infersight_dashboard import queries

SERVICE = """
import openai, infersight
infersight.instrument(service_name="support-bot")
client = openai.OpenAI(base_url="{base_url}", api_key="x", max_retries=0)
with infersight.feature("ticket-summary"):
    client.chat.completions.create(model="gpt-4o-mini", messages=[], logprobs=True)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True,
                                            stream_options={{"include_usage": True}})
    for _ in stream:
        pass
with infersight.feature("search"):
    try:
        client.chat.completions.create(model="gpt-4o", messages=[])
    except openai.InternalServerError:
        pass
assert infersight.flush(10)
"""


def test_calls_arrive_in_the_dashboard_with_exact_cost_tokens_and_feature(
        collector, store, fake_openai):
    fake_openai.expect(
        Reply(model="gpt-4o-mini-2024-07-18", prompt_tokens=1000, completion_tokens=200,
              cached_tokens=400, token_logprob=-0.25),
        Reply(model="gpt-4o-mini-2024-07-18", prompt_tokens=2000, completion_tokens=100),
        Reply(status=500),
    )
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SERVICE.format(base_url=fake_openai.base_url))],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.endpoint}"})
    assert result.returncode == 0, result.stderr
    ended = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)

    table = queries.feature_model_table(store, started, ended).set_index("feature")
    summary = table.loc["ticket-summary"]
    assert summary.model == "gpt-4o-mini-2024-07-18"
    assert summary.calls == 2 and summary.errors == 0
    assert summary.input_tokens == 3000 and summary.output_tokens == 300
    # gpt-4o-mini per 1M: $0.15 input, $0.075 cached input, $0.60 output
    expected = ((600 * 0.15 + 400 * 0.075 + 200 * 0.60) + (2000 * 0.15 + 100 * 0.60)) / 1e6
    assert summary.cost_usd == pytest.approx(expected)
    assert table.loc["search"].errors == 1 and table.loc["search"].calls == 1

    over_time = queries.cost_per_feature_over_time(store, started, ended, 60)
    assert over_time[over_time.feature == "ticket-summary"].cost_usd.sum() == pytest.approx(expected)

    stored = store.query(
        f"SELECT ServiceName, ModelVersion, Confidence, TimeToFirstChunk, CostSource "
        f"FROM {store.database}.otel_traces WHERE Feature = {{f:String}} ORDER BY Timestamp",
        {"f": "ticket-summary"})
    assert set(stored.ServiceName) == {"support-bot"}
    assert set(stored.ModelVersion) == {"gpt-4o-mini-2024-07-18"}
    assert set(stored.CostSource) == {"sdk"}
    assert stored.Confidence[0] == pytest.approx(0.7788007830714049)  # exp(-0.25)
    assert stored.TimeToFirstChunk[1] > 0
