"""Spans from other AI tracers land in the same typed columns, priced at ingest when unpriced.

OpenLLMetry and OpenInference run live (their real OpenAI instrumentation against the fake
OpenAI server, exported by the real OTLP exporter, in a subprocess each); older conventions
that today's packages no longer emit are checked on attribute maps written as those versions
documented them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infersight import attributes as A
from infersight.pricing import Usage, cost_usd
from infersight_collector.normalize import normalize

PEER = Path(__file__).with_name("peer_tracer.py")
PAYLOADS = Path(__file__).with_name("payloads")
NOW_NS = 1_750_000_000_000_000_000


def run_peer(peer: str, fake_openai, collector) -> list[dict]:
    done = subprocess.run([sys.executable, str(PEER), peer, fake_openai.base_url,
                           collector.endpoint], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def stored(store):
    return store.query(f"SELECT * FROM {store.database}.otel_traces")


@pytest.mark.parametrize("peer", ["openllmetry", "openinference"])
def test_live_peer_spans_fill_the_typed_columns(peer, fake_openai, collector, store):
    emitted = run_peer(peer, fake_openai, collector)
    assert A.COST not in emitted[0]  # neither prices the call: the collector must
    rows = stored(store)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row.ServiceName == f"{peer}-app"
    assert row.Provider == "openai" and row.Operation == "chat"
    assert "gpt-4o-mini" in (row.RequestModel, row.ResponseModel)
    assert row.ModelVersion == "gpt-4o-mini"
    assert row.InputTokens == 5 and row.OutputTokens == 5
    assert row.CostSource == A.COST_FROM_COLLECTOR
    assert row.CostUsd == pytest.approx(cost_usd("gpt-4o-mini", Usage(input=5, output=5)))


def test_older_otel_genai_conventions():
    attrs = normalize({"gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-4o",
                       "gen_ai.usage.prompt_tokens": "1000",
                       "gen_ai.usage.completion_tokens": "100"}, NOW_NS)
    assert attrs[A.PROVIDER] == "openai" and "gen_ai.system" not in attrs
    assert attrs[A.INPUT_TOKENS] == "1000" and attrs[A.OUTPUT_TOKENS] == "100"
    assert float(attrs[A.COST]) == pytest.approx(
        cost_usd("gpt-4o", Usage(input=1000, output=100)))
    assert attrs[A.COST_SOURCE] == A.COST_FROM_COLLECTOR


def test_older_openllmetry_and_association_properties():
    # As traceloop-sdk < 0.30 wrote them; association properties come from
    # Traceloop.set_association_properties({...}) (traceloop-sdk, not the instrumentation).
    attrs = normalize({"llm.request.type": "chat", "gen_ai.system": "openai",
                       "gen_ai.request.model": "gpt-4o-mini",
                       "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                       "llm.usage.prompt_tokens": "200", "llm.usage.completion_tokens": "20",
                       "llm.usage.total_tokens": "220",
                       "traceloop.association.properties.feature": "search",
                       "traceloop.association.properties.user_id": "u-1",
                       "traceloop.association.properties.session_id": "s-1",
                       "traceloop.association.properties.other": "kept"}, NOW_NS)
    assert attrs[A.OPERATION] == "chat" and attrs[A.FEATURE] == "search"
    assert attrs[A.USER] == "u-1" and attrs[A.SESSION] == "s-1"
    assert attrs["traceloop.association.properties.other"] == "kept"
    assert attrs["llm.usage.total_tokens"] == "220"
    assert attrs[A.MODEL_VERSION] == "gpt-4o-mini-2024-07-18"
    assert float(attrs[A.COST]) == pytest.approx(
        cost_usd("gpt-4o-mini-2024-07-18", Usage(input=200, output=20)))


def test_openlit_cost_is_kept_and_marked_as_the_clients():
    attrs = normalize({"gen_ai.system": "openai", "gen_ai.operation.name": "chat",
                       "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": "5",
                       "gen_ai.usage.output_tokens": "5", "gen_ai.usage.cost": "0.0000045",
                       "gen_ai.application_name": "shop"}, NOW_NS)
    assert attrs[A.COST] == "0.0000045" and attrs[A.COST_SOURCE] == A.COST_FROM_SDK
    assert attrs[A.PROVIDER] == "openai"


def test_recorded_openlit_span_over_otlp_http_is_priced_by_the_collector(http_collector, store):
    """openlit 1.45 offline sends cost 0 for a call that used tokens (see payloads/README.md)."""
    import urllib.request

    payload = json.loads((PAYLOADS / "openlit-1.45.0-openai-chat.json").read_text())
    now = time.time_ns()  # within the table's retention
    for rs in payload["resourceSpans"]:
        for span in rs["scopeSpans"][0]["spans"]:
            span["startTimeUnixNano"], span["endTimeUnixNano"] = str(now), str(now + 10**8)
    request = urllib.request.Request(http_collector.url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    row = stored(store).iloc[0]
    assert row.ServiceName == "openlit-app"
    assert (row.Provider, row.Operation, row.RequestModel) == ("openai", "chat", "gpt-4o-mini")
    assert row.ModelVersion == "gpt-4o-mini-2024-07-18"
    assert (row.InputTokens, row.OutputTokens) == (1200, 80)
    assert row.CostSource == A.COST_FROM_COLLECTOR
    assert row.CostUsd == pytest.approx(
        cost_usd("gpt-4o-mini-2024-07-18", Usage(input=1200, output=80)))


def test_zero_cost_without_a_price_is_dropped_when_the_model_is_unknown():
    attrs = normalize({A.REQUEST_MODEL: "my-finetune", A.INPUT_TOKENS: "10", A.COST: "0"}, NOW_NS)
    assert A.COST not in attrs and attrs[A.COST_SOURCE] == A.COST_UNKNOWN_MODEL


def test_canonical_keys_win_and_unknown_values_are_left_alone():
    attrs = normalize({A.PROVIDER: "anthropic", "llm.provider": "openai",
                       "openinference.span.kind": "CHAIN"}, NOW_NS)
    assert attrs == {A.PROVIDER: "anthropic", "llm.provider": "openai",
                     "openinference.span.kind": "CHAIN"}


def test_unpriced_model_gets_no_cost_but_a_reason():
    attrs = normalize({"llm.model_name": "my-finetune", "llm.token_count.prompt": "10"}, NOW_NS)
    assert A.COST not in attrs and attrs[A.COST_SOURCE] == A.COST_UNKNOWN_MODEL


def test_sdk_spans_pass_unchanged():
    ours = {A.PROVIDER: "openai", A.INPUT_TOKENS: "5", A.COST: "0.1", A.COST_SOURCE: "sdk",
            A.MODEL_VERSION: "gpt-4o"}
    assert normalize(dict(ours), NOW_NS) == ours
