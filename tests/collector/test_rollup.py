"""The per-minute rollup: filled by a materialized view as spans are inserted, keyed by
service, project, feature, operation, provider, model and model version."""

from __future__ import annotations

import pytest

from infersight import attributes as A
from infersight_collector.store import insert_spans

ROLLUP = """
SELECT Feature, Model, ModelVersion, sum(Spans) AS spans, sum(Errors) AS errors,
       sum(InputTokens) AS input_tokens, sum(CostUsd) AS cost,
       quantilesTDigestMerge(0.5, 0.99)(LatencyState) AS latency,
       quantileTDigestMerge(0.5)(ConfidenceState) AS confidence
FROM {db}.otel_traces_1m GROUP BY Feature, Model, ModelVersion ORDER BY Feature
"""


def call(feature: str, confidence: str | None = None) -> dict[str, str]:
    attrs = {A.OPERATION: "chat", A.PROVIDER: "openai", A.FEATURE: feature,
             A.REQUEST_MODEL: "gpt-4o", A.RESPONSE_MODEL: "gpt-4o-2024-08-06",
             A.MODEL_VERSION: "v7", A.INPUT_TOKENS: "100", A.COST: "0.25"}
    if confidence is not None:
        attrs[A.CONFIDENCE] = confidence
    return attrs


def test_rollup_sums_counts_and_quantile_states_per_key(store, span_batch):
    insert_spans(store, span_batch(30, attributes=call("search", "0.9"), duration_ns=10_000_000))
    insert_spans(store, span_batch(10, attributes=call("search"), duration_ns=50_000_000,
                                   status="Error"))
    insert_spans(store, span_batch(5, attributes=call("summary", "0.4")))
    rows = store.query(ROLLUP.format(db=store.database))
    search, summary = rows.iloc[0], rows.iloc[1]
    assert (search.Feature, search.Model, search.ModelVersion) == ("search", "gpt-4o-2024-08-06",
                                                                   "v7")
    assert (search.spans, search.errors, search.input_tokens) == (40, 10, 4000)
    assert search.cost == pytest.approx(10.0)
    assert list(search.latency) == [10_000_000, 50_000_000]
    assert search.confidence == pytest.approx(0.9)  # the 10 spans without one do not count
    assert (summary.spans, summary.errors) == (5, 0)
    assert summary.confidence == pytest.approx(0.4)


def test_rollup_agrees_with_the_spans_it_summarises(store, span_batch):
    for i in range(4):
        insert_spans(store, span_batch(25 * (i + 1), attributes=call(f"f{i % 2}")))
    direct = store.query(f"SELECT Feature, count() AS n, sum(CostUsd) AS cost FROM "
                         f"{store.database}.otel_traces GROUP BY Feature ORDER BY Feature")
    rolled = store.query(ROLLUP.format(db=store.database))
    assert list(rolled.Feature) == list(direct.Feature)
    assert list(rolled.spans) == list(direct.n) == [100, 150]
    assert list(rolled.cost) == pytest.approx(list(direct.cost))
