"""The dashboard queries against a real chDB store holding spans whose answers we know."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from infersight_dashboard import queries
from infersight_dashboard.app import TIME_RANGES

# On a 5-minute boundary, recent enough that the 30-day TTL keeps it.
T0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
S = timedelta(seconds=1)


def _window():
    return T0, T0 + timedelta(hours=1)


def test_cost_per_feature_sums_each_bucket(store, add_calls):
    add_calls(T0 + 10 * S, cost=0.25)
    add_calls(T0 + 20 * S, n=2, cost=0.5)
    add_calls(T0 + 310 * S, cost=0.125)
    add_calls(T0 + 30 * S, feature="chat", cost=1.0)
    add_calls(T0 + 40 * S, feature="", cost=0.25)
    add_calls(T0 + 50 * S, feature="chat", cost=None)

    df = queries.cost_per_feature_over_time(store, *_window(), bucket_seconds=300)

    assert list(df.columns) == ["bucket", "feature", "cost_usd", "calls"]
    assert isinstance(df["bucket"].dtype, pd.DatetimeTZDtype)
    assert str(df["bucket"].dt.tz) == "UTC"
    got = [(b.to_pydatetime(), f, c, int(n)) for b, f, c, n in df.itertuples(index=False)]
    assert got == [
        (T0, "(none)", 0.25, 1),
        (T0, "chat", 1.0, 2),
        (T0, "search", 1.25, 3),
        (T0 + 300 * S, "search", 0.125, 1),
    ]


def test_window_is_start_inclusive_end_exclusive(store, add_calls):
    start, end = _window()
    add_calls(start - timedelta(milliseconds=1), feature="before")
    add_calls(start, feature="at-start")
    add_calls(end - timedelta(milliseconds=1), feature="before-end")
    add_calls(end, feature="at-end")

    features = set(queries.feature_model_table(store, start, end)["feature"])
    series = queries.cost_per_feature_over_time(store, start, end, 3600)

    assert features == {"at-start", "before-end"}
    assert set(series["feature"]) == {"at-start", "before-end"}


def test_window_in_another_timezone_means_the_same_instants(store, add_calls):
    add_calls(T0 + 10 * S)
    tokyo = timezone(timedelta(hours=9))
    start, end = (t.astimezone(tokyo) for t in _window())

    assert queries.feature_model_table(store, start, end)["calls"].tolist() == [1]
    assert queries.feature_model_table(store, start + 20 * S, end)["calls"].tolist() == []


def test_spans_that_are_not_ai_calls_do_not_count(store, add_calls):
    add_calls(T0 + 10 * S, operation="", feature="search", cost=5.0)
    add_calls(T0 + 20 * S, feature="search", cost=0.5)

    table = queries.feature_model_table(store, *_window())
    series = queries.cost_per_feature_over_time(store, *_window(), 300)

    assert table[["calls", "cost_usd"]].values.tolist() == [[1, 0.5]]
    assert series[["calls", "cost_usd"]].values.tolist() == [[1, 0.5]]


def test_feature_model_table_aggregates_each_pair(store, add_calls):
    add_calls(T0 + 10 * S, n=9, cost=0.5, input_tokens=100, output_tokens=10, duration_ms=100)
    add_calls(T0 + 20 * S, cost=0.5, input_tokens=100, output_tokens=10, duration_ms=900,
              status="Error")
    add_calls(T0 + 30 * S, n=2, feature="summarize", request_model="claude-sonnet-4",
              response_model="", cost=3.0, input_tokens=1000, output_tokens=300,
              duration_ms=2500.5, status="Error")
    add_calls(T0 + 40 * S, feature="", request_model="gpt-4o", response_model="",
              cost=0.125, input_tokens=7, output_tokens=3, duration_ms=40)

    df = queries.feature_model_table(store, *_window())

    assert list(df.columns) == ["feature", "model", "calls", "errors", "cost_usd",
                                "input_tokens", "output_tokens", "p95_latency_ms"]
    assert [tuple(r) for r in df.itertuples(index=False)] == [
        ("summarize", "claude-sonnet-4", 2, 2, 6.0, 2000, 600, 2500.5),
        ("search", "gpt-4o-2024-08-06", 10, 1, 5.0, 1000, 100, 900.0),
        ("(none)", "gpt-4o", 1, 0, 0.125, 7, 3, 40.0),
    ]


@pytest.mark.parametrize("feature", [
    "o'brien", "x'); DROP TABLE infersight.otel_traces; --", "{start:String}", "\\'"])
def test_feature_values_are_data_not_sql(store, add_calls, feature):
    add_calls(T0 + 10 * S, feature=feature, cost=0.25)

    table = queries.feature_model_table(store, *_window())
    series = queries.cost_per_feature_over_time(store, *_window(), 300)

    assert table["feature"].tolist() == [feature]
    assert series["feature"].tolist() == [feature]


def test_empty_window_keeps_the_columns(store):
    table = queries.feature_model_table(store, *_window())
    series = queries.cost_per_feature_over_time(store, *_window(), 300)

    assert table.empty and "p95_latency_ms" in table.columns
    assert series.empty and list(series.columns) == ["bucket", "feature", "cost_usd", "calls"]


@pytest.mark.parametrize("key", list(TIME_RANGES))
def test_every_time_range_charts_60_to_120_points(key):
    _, length = TIME_RANGES[key]
    bucket = queries.choose_bucket_seconds(T0, T0 + length)
    assert 60 <= length.total_seconds() / bucket <= 120


@pytest.mark.parametrize("length, bucket", [
    (timedelta(seconds=30), 1),
    (timedelta(hours=2), 60),
    (timedelta(days=3), 3600),
    (timedelta(days=365), 604800),
])
def test_bucket_is_the_smallest_readable_step(length, bucket):
    assert queries.choose_bucket_seconds(T0, T0 + length) == bucket
