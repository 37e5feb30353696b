"""The dashboard queries against a real chDB store holding spans whose answers we know."""

from __future__ import annotations

import itertools
import math
import random
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
                                "input_tokens", "output_tokens", "cache_read_tokens",
                                "p95_latency_ms"]
    assert [tuple(r) for r in df.itertuples(index=False)] == [
        ("summarize", "claude-sonnet-4", 2, 2, 6.0, 2000, 600, 0, _ms(2500.5)),
        ("search", "gpt-4o-2024-08-06", 10, 1, 5.0, 1000, 100, 0, _ms(900)),
        ("(none)", "gpt-4o", 1, 0, 0.125, 7, 3, 0, _ms(40)),
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


def _rows(df: pd.DataFrame, *columns: str) -> list[tuple]:
    """The chosen columns as plain tuples (timestamps as datetimes, NaN as None)."""
    def plain(v):
        if isinstance(v, pd.Timestamp):
            return v.to_pydatetime()
        if isinstance(v, float) and v != v:
            return None
        return v.item() if hasattr(v, "item") else v
    return [tuple(plain(v) for v in row) for row in df[list(columns)].itertuples(index=False)]


def _version_summary(store, start, end, **kw) -> pd.DataFrame:
    """`version_stats`'s summary, read with the bucket the dashboard would chart."""
    return queries.version_stats(store, start, end, queries.choose_bucket_seconds(start, end),
                                 **kw)[0]


def _ms(latency_ms: float):
    """A latency quantile as the rollups return it: within 1% of the true value."""
    return pytest.approx(latency_ms, rel=0.01)


def _latency_mix(add_calls, at, **kw):
    """200 calls whose exact p50, p95 and p99 are 100, 200 and 900 ms under any quantile
    definition: ranks 0-119 are 100 ms, 120-191 are 200 ms, 192-199 are 900 ms."""
    add_calls(at, n=120, duration_ms=100, **kw)
    add_calls(at, n=72, duration_ms=200, **kw)
    add_calls(at, n=8, duration_ms=900, **kw)


def test_summary_counts_the_window(store, add_calls):
    add_calls(T0 + 10 * S, n=18, cost=0.5, input_tokens=100, output_tokens=20, duration_ms=100)
    add_calls(T0 + 20 * S, n=2, cost=0.5, input_tokens=100, output_tokens=20, duration_ms=300,
              status="Error")
    add_calls(T0 + 30 * S, feature="other", cost=7.0)
    filters = queries.Filters(feature="search")

    got = _rows(queries.summary(store, *_window(), filters), "calls", "errors", "cost_usd",
                "input_tokens", "output_tokens", "tokens", "p95_latency_ms")
    empty = queries.summary(store, T0 - timedelta(hours=1), T0)

    assert got == [(20, 2, 10.0, 2000, 400, 2400, _ms(300))]
    assert _rows(empty, "calls", "cost_usd", "p95_latency_ms") == [(0, 0.0, None)]


def test_totals_per_bucket_and_for_the_window(store, add_calls):
    add_calls(T0 + 10 * S, n=18, cost=0.5, duration_ms=100)
    add_calls(T0 + 20 * S, n=2, cost=0.5, duration_ms=300, status="Error")
    add_calls(T0 + 400 * S, cost=1.0, input_tokens=40, output_tokens=10, duration_ms=40)

    whole, df = queries.totals(store, *_window(), 300)
    empty, none = queries.totals(store, T0 - timedelta(hours=1), T0, 300)

    assert _rows(df, "bucket", "calls", "errors", "cost_usd", "tokens", "p95_latency_ms") == [
        (T0, 20, 2, 10.0, 2400, _ms(300)), (T0 + 300 * S, 1, 0, 1.0, 50, _ms(40))]
    pd.testing.assert_frame_equal(whole, queries.summary(store, *_window()))
    assert _rows(whole, "calls", "tokens", "p95_latency_ms") == [(21, 2450, _ms(300))]
    assert none.empty and _rows(empty, "calls", "cost_usd", "p95_latency_ms") == [(0, 0.0, None)]


def test_cost_by_user_with_unit_costs_and_limit(store, add_calls):
    add_calls(T0 + 10 * S, n=2, user="u1", cost=0.25, input_tokens=400, output_tokens=100,
              cache_read_tokens=300)
    add_calls(T0 + 20 * S, user="u2", cost=1.5, input_tokens=0, output_tokens=0)
    add_calls(T0 + 30 * S, cost=0.125, input_tokens=50, output_tokens=0)

    df = queries.cost_by(store, *_window(), "user")
    top = queries.cost_by(store, *_window(), "user", limit=2)

    assert _rows(df, "key", "calls", "cost_usd", "input_tokens", "output_tokens",
                 "cache_read_tokens", "cost_per_call", "cost_per_1k_tokens") == [
        ("u2", 1, 1.5, 0, 0, 0, 1.5, None),
        ("u1", 2, 0.5, 800, 200, 600, 0.25, 0.5),
        ("(none)", 1, 0.125, 50, 0, 0, 0.125, 2.5),
    ]
    assert list(top["key"]) == ["u2", "u1"]
    with pytest.raises(ValueError, match="cannot group cost by 'colour'"):
        queries.cost_by(store, *_window(), "colour")


@pytest.mark.parametrize("by, expected", [
    ("service", ["billing", "checkout"]),
    ("project", ["p1", "(none)"]),
    ("feature", ["chat", "search"]),
    ("model", ["claude-sonnet-4", "gpt-4o"]),
    ("version", ["v2", "gpt-4o-2024-08-06"]),
    ("tenant", ["acme", "(none)"]),
])
def test_cost_by_each_dimension(store, add_calls, by, expected):
    add_calls(T0 + 10 * S, cost=0.25)
    add_calls(T0 + 20 * S, cost=2.0, service="billing", project="p1", feature="chat",
              request_model="claude-sonnet-4", version="v2", tenant="acme")

    assert list(queries.cost_by(store, *_window(), by)["key"]) == expected


def test_cost_by_each_reads_several_dimensions_at_once(store, add_calls):
    add_calls(T0 + 10 * S, cost=0.25)  # search, gpt-4o
    add_calls(T0 + 20 * S, feature="chat", request_model="claude-sonnet-4", cost=2.0)
    add_calls(T0 + 30 * S, feature="summarize", cost=1.0)

    both = queries.cost_by_each(store, *_window(), ("feature", "model"), limit=2)

    assert _rows(both, "dimension", "key", "calls", "cost_usd") == [
        ("feature", "chat", 1, 2.0), ("feature", "summarize", 1, 1.0),
        ("model", "claude-sonnet-4", 1, 2.0), ("model", "gpt-4o", 2, 1.25)]
    with pytest.raises(ValueError, match="user"):
        queries.cost_by_each(store, *_window(), ("feature", "user"))


def test_month_to_date_is_the_months_window(store, add_calls):
    """The Cost page's month-to-date is `cost_by` over [month start, now); its projection is
    `project_month_end` (test_pages)."""
    now = T0 + timedelta(minutes=30)
    month_start = now.replace(day=1, hour=0, minute=0)
    add_calls(month_start + (now - month_start) / 2, n=3, cost=2.0)
    add_calls(now - timedelta(milliseconds=1), feature="chat", cost=1.0)
    add_calls(month_start - timedelta(milliseconds=1), cost=100.0)  # last month
    add_calls(now, cost=100.0)  # after "now"

    month = queries.cost_by(store, month_start, now, "feature")

    assert _rows(month, "key", "cost_usd") == [("search", 6.0), ("chat", 1.0)]


def test_feature_model_table_counts_cache_reads_per_served_model(store, add_calls):
    add_calls(T0 + 10 * S, response_model="gpt-4o-mini-2024-07-18", cache_read_tokens=600)
    add_calls(T0 + 20 * S, response_model="gpt-4o-mini-2024-07-18", cache_read_tokens=400)
    add_calls(T0 + 30 * S, response_model="claude-sonnet-4", cache_read_tokens=5000)
    add_calls(T0 + 40 * S, response_model="gpt-4o")  # no cache reads: not listed

    df = queries.feature_model_table(store, *_window())

    assert sorted(_rows(df, "model", "cache_read_tokens")) == [
        ("claude-sonnet-4", 5000), ("gpt-4o", 0), ("gpt-4o-mini-2024-07-18", 1000)]


def test_expensive_calls_most_costly_first(store, add_calls):
    add_calls(T0 + 10 * S, cost=0.1, trace_id="t1")
    add_calls(T0 + 20 * S, cost=2.0, trace_id="t2", duration_ms=1234.5, status="Error",
              input_tokens=7, output_tokens=3)
    add_calls(T0 + 30 * S, cost=0.5, trace_id="t3")
    add_calls(T0 + 40 * S, cost=0.5, trace_id="t4")  # ties: the newer first
    add_calls(T0 + 50 * S, cost=None, trace_id="t5")

    df = queries.expensive_calls(store, *_window(), limit=4)

    assert _rows(df, "trace_id", "cost_usd") == [
        ("t2", 2.0), ("t4", 0.5), ("t3", 0.5), ("t1", 0.1)]
    assert _rows(df.head(1), "time", "service", "feature", "model", "input_tokens",
                 "output_tokens", "duration_ms", "status") == [
        (T0 + 20 * S, "checkout", "search", "gpt-4o-2024-08-06", 7, 3, 1234.5, "Error")]


def test_versions_are_ordered_by_the_mean_time_of_their_calls(store, add_calls):
    mini = dict(request_model="gpt-4o-mini")
    add_calls(T0 + 5 * S, version="v2", **mini)  # a canary before v1's first call here
    add_calls(T0 + 10 * S, version="v1", **mini)
    add_calls(T0 + timedelta(minutes=20), n=5, version="v1", **mini)
    add_calls(T0 + timedelta(minutes=50), n=5, version="v2", **mini)
    add_calls(T0 + timedelta(minutes=30), response_model="", **mini)  # failed: no version

    expected = [
        ("gpt-4o-mini", "v1", T0 + 10 * S, T0 + timedelta(minutes=20), 6),
        ("gpt-4o-mini", "(none)", T0 + timedelta(minutes=30), T0 + timedelta(minutes=30), 1),
        ("gpt-4o-mini", "v2", T0 + 5 * S, T0 + timedelta(minutes=50), 6),
    ]
    for df in (_version_summary(store, *_window()),
               queries.version_history(store, *_window())):  # the window is inside one day
        assert _rows(df, "model", "version", "first_seen", "last_seen", "calls") == expected


def test_version_changes_marks_only_versions_that_take_over_in_the_window(store, add_calls):
    add_calls(T0 + timedelta(minutes=10), n=3, request_model="m", version="v1")
    add_calls(T0 + timedelta(minutes=40), n=3, request_model="m", version="v2")
    add_calls(T0 + timedelta(minutes=45), request_model="m", response_model="")  # "(none)"
    add_calls(T0 + timedelta(minutes=35), request_model="solo", version="s1")
    add_calls(T0 + timedelta(minutes=70), request_model="m", version="v3")  # after the window
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(minutes=60)

    changes = queries.version_changes(store, start, end)
    whole = queries.version_changes(store, T0 + timedelta(minutes=5), end)
    later = queries.version_changes(store, T0 + timedelta(minutes=45), T0 + timedelta(minutes=75))

    assert _rows(changes, "model", "version", "first_seen") == [
        ("m", "v2", T0 + timedelta(minutes=40))]
    assert _rows(whole, "model", "version") == [("m", "v2")]
    # v2 served before this window (its look back reaches v1 and v2): only v3 took over in it.
    assert _rows(later, "model", "version", "first_seen") == [
        ("m", "v3", T0 + timedelta(minutes=70))]


def test_version_timeseries_quantiles_error_rates_and_tokens(store, add_calls):
    mini = dict(request_model="gpt-4o-mini", version="v1")
    add_calls(T0 + 10 * S, n=120, duration_ms=100, **mini)
    add_calls(T0 + 10 * S, n=72, duration_ms=200, **mini)
    add_calls(T0 + 10 * S, n=8, duration_ms=900, status="Error", input_tokens=1000,
              output_tokens=200, confidence=0.25, **mini)
    # A bucket of 4 calls: too few for an error rate.
    add_calls(T0 + 310 * S, n=4, duration_ms=50, status="Error",
              request_model="gpt-4o-mini", version="v2")

    df = queries.version_stats(store, *_window(), 300)[1]

    assert _rows(df, "bucket", "model", "version", "calls", "errors", "error_rate", "p50_ms",
                 "p95_ms", "p99_ms", "tokens_per_call", "mean_confidence") == [
        (T0, "gpt-4o-mini", "v1", 200, 8, 0.04, _ms(100), _ms(200), _ms(900),
         (192 * 120 + 8 * 1200) / 200, 0.25),
        (T0 + 300 * S, "gpt-4o-mini", "v2", 4, 4, None, _ms(50), _ms(50), _ms(50), 120.0, None),
    ]
    lowered = queries.version_stats(store, *_window(), 300, min_calls=4)[1]
    assert list(lowered["error_rate"]) == [0.04, 1.0]


def test_version_summary_per_version(store, add_calls):
    _latency_mix(add_calls, T0 + 10 * S, request_model="m", version="v1", cost=0.5)
    add_calls(T0 + timedelta(minutes=40), n=5, request_model="m", version="v2", cost=1.0,
              duration_ms=80, status="Error", confidence=0.5)
    add_calls(T0 + timedelta(minutes=41), n=5, request_model="m", version="v2", cost=2.0,
              duration_ms=80, confidence=1.0)

    df = _version_summary(store, *_window())

    assert _rows(df, "model", "version", "calls", "errors", "error_rate", "p50_ms", "p95_ms",
                 "p99_ms", "tokens_per_call", "cost_per_call", "mean_confidence") == [
        ("m", "v1", 200, 0, 0.0, _ms(100), _ms(200), _ms(900), 120.0, 0.5, None),
        ("m", "v2", 10, 5, 0.5, _ms(80), _ms(80), _ms(80), 120.0, 1.5, 0.75),
    ]


def test_confidence_histogram_counts_rounded_values(store, add_calls):
    add_calls(T0 + 10 * S, n=2, version="v1", confidence=0.1234)
    add_calls(T0 + 20 * S, version="v1", confidence=0.1236)
    add_calls(T0 + 30 * S, version="v1", confidence=0.12349)
    add_calls(T0 + 40 * S, version="v1")  # no confidence: left out
    add_calls(T0 + 50 * S, version="v2", confidence=1.0)

    df = queries.confidence_histogram(store, *_window())

    assert _rows(df, "model", "version", "confidence", "calls") == [
        ("gpt-4o", "v1", 0.123, 3), ("gpt-4o", "v1", 0.124, 1), ("gpt-4o", "v2", 1.0, 1)]


def test_filter_options_lists_every_value_busiest_first(store, add_calls):
    add_calls(T0 + 10 * S, n=3, feature="search", project="p1")
    add_calls(T0 + 20 * S, feature="chat", service="billing", version="v9")
    add_calls(T0 + 30 * S, operation="", feature="not-ai")

    df = queries.filter_options(store, *_window())
    got = {k: list(zip(g["value"], g["calls"])) for k, g in df.groupby("key")}

    assert got == {
        "feature": [("search", 3), ("chat", 1)],
        "model": [("gpt-4o", 4)],
        "project": [("p1", 3), ("(none)", 1)],
        "service": [("checkout", 3), ("billing", 1)],
        "version": [("gpt-4o-2024-08-06", 3), ("v9", 1)],
    }


_TRACE = "ab" * 16


def _two_traces(add_calls):
    """One trace: an HTTP root span, two AI calls (one failed); another trace elsewhere."""
    add_calls(T0 + 10 * S, operation="", name="POST /answer", trace_id=_TRACE,
              span_id="root000000000000", duration_ms=900, cost=None)
    add_calls(T0 + 10 * S + timedelta(milliseconds=50), trace_id=_TRACE,
              span_id="llm0000000000001", parent_span_id="root000000000000", cost=0.25,
              duration_ms=300, confidence=0.75, version="v1", project="p1",
              input_messages='[{"role": "user", "content": "hi"}]',
              output_messages='[{"role": "assistant", "content": "hello"}]')
    add_calls(T0 + 10 * S + timedelta(milliseconds=400), trace_id=_TRACE,
              span_id="llm0000000000002", parent_span_id="root000000000000", cost=0.5,
              duration_ms=450, status="Error", input_tokens=10, output_tokens=0)
    add_calls(T0 + 20 * S, trace_id="cd" * 16, feature="chat", service="billing",
              request_model="claude-sonnet-4", response_model="", version="c1")


def test_search_traces_aggregates_each_trace_newest_first(store, add_calls):
    _two_traces(add_calls)

    df = queries.search_traces(store, *_window())
    one = queries.search_traces(store, *_window(), limit=1)

    assert _rows(df, "trace_id", "time", "service", "feature", "calls", "errors", "cost_usd",
                 "tokens", "duration_ms") == [
        ("cd" * 16, T0 + 20 * S, "billing", "chat", 1, 0, 0.25, 120, 100.0),
        (_TRACE, T0 + 10 * S + timedelta(milliseconds=50), "checkout", "search", 2, 1, 0.75,
         130, 450.0),
    ]
    assert list(one["trace_id"]) == ["cd" * 16]


@pytest.mark.parametrize("narrowing, found", [
    (dict(filters=queries.Filters(service="billing")), ["cd" * 16]),
    (dict(filters=queries.Filters(project="p1")), [_TRACE]),
    (dict(filters=queries.Filters(feature="chat")), ["cd" * 16]),
    (dict(filters=queries.Filters(model="claude-sonnet-4")), ["cd" * 16]),
    (dict(filters=queries.Filters(version="v1")), [_TRACE]),
    (dict(status="Error"), [_TRACE]),
    (dict(status="Unset"), []),
    (dict(trace_id=f"  {_TRACE.upper()} "), [_TRACE]),
    (dict(trace_id="ef" * 16), []),
])
def test_search_traces_by_each_filter(store, add_calls, narrowing, found):
    _two_traces(add_calls)

    assert list(queries.search_traces(store, *_window(), **narrowing)["trace_id"]) == found


def test_search_traces_is_bounded_in_time(store, add_calls):
    _two_traces(add_calls)

    assert list(queries.search_traces(store, T0 + 15 * S, T0 + 60 * S)["trace_id"]) == [
        "cd" * 16]


def test_trace_spans_are_the_waterfall_rows(store, add_calls):
    _two_traces(add_calls)

    df = queries.trace_spans(store, *_window(), _TRACE.upper())
    late = queries.trace_spans(store, T0 + 10 * S + timedelta(milliseconds=100), T0 + 60 * S,
                               _TRACE)

    t0_ns = int((T0 + 10 * S).timestamp()) * 10**9
    assert _rows(df, "span_id", "parent_span_id", "name", "service", "start_ns", "duration_ms",
                 "status", "operation", "provider", "model", "version", "feature",
                 "input_tokens", "output_tokens", "cost_usd") == [
        ("root000000000000", "", "POST /answer", "checkout", t0_ns, 900.0, "Ok", "", "openai",
         "gpt-4o-2024-08-06", "", "search", 100, 20, 0.0),
        ("llm0000000000001", "root000000000000", "chat gpt-4o", "checkout",
         t0_ns + 50_000_000, 300.0, "Ok", "chat", "openai", "gpt-4o-2024-08-06", "v1",
         "search", 100, 20, 0.25),
        ("llm0000000000002", "root000000000000", "chat gpt-4o", "checkout",
         t0_ns + 400_000_000, 450.0, "Error", "chat", "openai", "gpt-4o-2024-08-06", "",
         "search", 10, 0, 0.5),
    ]
    assert _rows(df, "confidence")[:2] == [(None,), (0.75,)]
    assert _rows(df, "input_messages", "output_messages") == [
        ("", ""), ('[{"role": "user", "content": "hi"}]',
                   '[{"role": "assistant", "content": "hello"}]'), ("", "")]
    assert list(late["span_id"]) == ["llm0000000000002"]


def _feedback(store, trace_id, span_id="", at=None, **fields):
    from infersight_collector.feedback import record_feedback

    at = at or T0 + timedelta(minutes=30)
    record_feedback(store, {"trace_id": trace_id, "span_id": span_id,
                            "time_unix_nano": int(at.timestamp() * 1e9), **fields})


def _tid(i: int) -> str:
    return f"{i:032x}"


def test_feedback_per_version_over_time(store, add_calls):
    m = dict(request_model="m")
    for i, verdict in enumerate([{"score": 1}, {"score": 1.0}, {"score": 1}, {"score": 0},
                                 {"score": 0.25}, {"label": "Hallucination"}], start=1):
        add_calls(T0 + 10 * S, version="v1", trace_id=_tid(i), span_id=f"{i:016x}", **m)
        _feedback(store, _tid(i), **verdict)
    _feedback(store, _tid(1), comment="nice wording")  # no score, no label: no verdict
    _feedback(store, _tid(2), score=1, feedback_id="retried")
    _feedback(store, _tid(2), score=1, feedback_id="retried")
    # A trace with a v1 and a v2 call: span feedback counts for its span's version, trace
    # feedback once for each version in it.
    add_calls(T0 + 310 * S, version="v1", trace_id=_tid(7), span_id="7" * 16, **m)
    add_calls(T0 + 310 * S, n=1, version="v2", trace_id=_tid(7), span_id="8" * 16, **m)
    add_calls(T0 + 320 * S, version="v2", trace_id=_tid(7), span_id="9" * 16, **m)
    _feedback(store, _tid(7), span_id="8" * 16, score=0.75)
    _feedback(store, _tid(7), label="wrong")
    # Not counted: a call before the window, feedback far from it, another feature.
    add_calls(T0 - 10 * S, version="v1", trace_id=_tid(10), **m)
    _feedback(store, _tid(10), score=0)
    add_calls(T0 + 20 * S, version="v1", trace_id=_tid(11), **m)
    _feedback(store, _tid(11), score=0, at=T0 - timedelta(days=8))
    add_calls(T0 + 20 * S, version="v1", trace_id=_tid(12), feature="chat", **m)
    _feedback(store, _tid(12), score=0)

    df = queries.feedback_stats(store, *_window(), 300, queries.Filters(feature="search"))[1]

    assert _rows(df, "bucket", "model", "version", "feedback", "scored", "mean_score",
                 "negative", "negative_share") == [
        (T0, "m", "v1", 7, 6, pytest.approx((1 + 1 + 1 + 0 + 0.25 + 1) / 6), 3, 3 / 7),
        (T0 + 300 * S, "m", "v1", 1, 0, None, 1, None),
        (T0 + 300 * S, "m", "v2", 2, 1, 0.75, 1, None),
    ]
    # Any verdict makes a share now, and without the feature filter the "chat" call's counts.
    fewer = queries.feedback_stats(store, *_window(), 300, min_feedback=1)[1]
    assert list(fewer["negative_share"]) == [4 / 8, 1.0, 0.5]


def test_feedback_summary_per_version_oldest_first(store, add_calls):
    for i in range(1, 6):
        add_calls(T0 + timedelta(minutes=40), version="new", trace_id=_tid(i))
        _feedback(store, _tid(i), score=0 if i <= 2 else 1, label="")
    add_calls(T0 + timedelta(minutes=5), version="old", trace_id=_tid(9))
    _feedback(store, _tid(9), score=0.5, label="correct")
    add_calls(T0 + timedelta(minutes=6), version="unrated", trace_id=_tid(10))

    df = queries.feedback_stats(store, *_window(), 300)[0]

    assert _rows(df, "model", "version", "feedback", "scored", "mean_score", "negative",
                 "negative_share") == [
        ("gpt-4o", "old", 1, 1, 0.5, 0, None),
        ("gpt-4o", "new", 5, 5, 0.6, 2, 0.4),
    ]


def test_no_feedback_is_an_empty_frame_with_columns(store, add_calls):
    add_calls(T0 + 10 * S)

    df = queries.feedback_stats(store, *_window(), 300)[0]

    assert df.empty and "negative_share" in df.columns


class _Recording:
    """A store that keeps the SQL text of every query it runs."""

    def __init__(self, store):
        self.database, self._store, self.sql = store.database, store, []

    def query(self, sql, parameters=None):
        self.sql.append(sql)
        return self._store.query(sql, parameters)


_EVIL = "o'brien\"); DROP TABLE infersight.otel_traces; -- {start:String} `{{x}}`"
_EVIL_FILTERS = queries.Filters(**{k: _EVIL for k in ("service", "project", "feature", "model",
                                                     "version")})
# Every query, called with filter and search values taken from `f` (a Filters) and `text`,
# and what identifies the one matching call in its answer.
_EVERY_QUERY = {
    "cost_per_feature_over_time": (lambda s, f, t: queries.cost_per_feature_over_time(
        s, *_window(), 300, f), "feature"),
    "feature_model_table": (lambda s, f, t: queries.feature_model_table(s, *_window(), f),
                            "feature"),
    "filter_options": (lambda s, f, t: queries.filter_options(s, *_window())
                       .query("key == 'feature'"), "value"),
    "summary": (lambda s, f, t: queries.summary(s, *_window(), f), "calls"),
    "totals": (lambda s, f, t: queries.totals(s, *_window(), 300, f)[1], "calls"),
    "cost_by": (lambda s, f, t: queries.cost_by(s, *_window(), "model", f), "key"),
    "cost_by_each": (lambda s, f, t: queries.cost_by_each(s, *_window(), ("feature", "model"), f)
                     .query("dimension == 'model'"), "key"),
    "cost_per_user_and_tenant": (
        lambda s, f, t: queries.cost_per_user_and_tenant(s, *_window(), f)
        .query("dimension == 'tenant'"), "key"),
    "expensive_calls": (lambda s, f, t: queries.expensive_calls(s, *_window(), f), "service"),
    "version_history": (lambda s, f, t: queries.version_history(s, *_window(), f), "version"),
    "version_stats": (lambda s, f, t: queries.version_stats(s, *_window(), 300, f)[1],
                      "version"),
    "confidence_histogram": (lambda s, f, t: queries.confidence_histogram(s, *_window(), f),
                             "version"),
    "search_traces": (lambda s, f, t: queries.search_traces(
        s, *_window(), f, status=t, trace_id=t), "trace_id"),
    "trace_spans": (lambda s, f, t: queries.trace_spans(s, *_window(), t), "span_id"),
    "feedback_stats": (lambda s, f, t: queries.feedback_stats(
        s, *_window(), 300, f, min_feedback=1)[1], "version"),
}


def test_every_query_a_filter_or_search_value_reaches_is_in_the_parameter_test():
    import inspect

    reached = {n for n, v in vars(queries).items()
               if inspect.isfunction(v) and v.__module__ == queries.__name__
               and not n.startswith("_")
               and {"filters", "trace_id"} & set(inspect.signature(v).parameters)}
    # version_changes runs version_history and adds no SQL of its own; filter_options takes
    # no filter, but the values it lists are data too.
    assert reached - {"version_changes"} == set(_EVERY_QUERY) - {"filter_options"}


@pytest.mark.parametrize("name", list(_EVERY_QUERY))
def test_a_value_full_of_sql_is_data_and_never_changes_the_sql(store, add_calls, name):
    run, column = _EVERY_QUERY[name]
    add_calls(T0 + 10 * S, service=_EVIL, project=_EVIL, feature=_EVIL, request_model=_EVIL,
              response_model="", version=_EVIL, tenant=_EVIL, status=_EVIL,
              trace_id=_EVIL.lower(), span_id=_EVIL, confidence=0.5, cache_read_tokens=10)
    add_calls(T0 + 20 * S, trace_id=_tid(1), confidence=0.9, cache_read_tokens=10)
    _feedback(store, _tid(1), score=1)
    recording = _Recording(store)

    plain = run(recording, queries.Filters(), "")
    narrowed = run(recording, _EVIL_FILTERS, _EVIL)

    first, second = recording.sql[:len(recording.sql) // 2], recording.sql[len(recording.sql) // 2:]
    assert first == second
    assert not any("o'brien" in sql or "DROP" in sql for sql in recording.sql)
    assert store.query("SELECT count() AS n FROM infersight.otel_traces")["n"][0] == 2
    if name == "filter_options":
        assert set(plain[column]) == {_EVIL, "search"}
    elif name == "trace_spans":
        assert (list(plain[column]), list(narrowed[column])) == ([], [_EVIL])
    elif name in ("summary", "totals"):
        assert (plain[column].sum(), narrowed[column].sum()) == (2, 1)
    elif name.startswith("feedback"):
        assert list(plain[column]) == ["gpt-4o-2024-08-06"] and narrowed.empty
    else:
        assert list(narrowed[column]) == [_EVIL.lower() if name == "search_traces" else _EVIL]
        assert len(plain) == 2


@pytest.mark.parametrize("value", ["a\\'b", "tab\there", "new\\nline", "real\nnewline"])
def test_a_filter_with_backslashes_or_tabs_matches_itself(store, add_calls, value):
    add_calls(T0 + 10 * S, feature=value)

    df = queries.feature_model_table(store, *_window(), queries.Filters(feature=value))

    assert list(df["feature"]) == [value]


def test_rollup_tiers_and_raw_edges_add_up_exactly(store, add_calls):
    """A window on no minute boundary: its whole hours come from the hourly rollup, the whole
    minutes either side from the per-minute one, the seconds at its ends from the spans; each
    call counts once, and first / last call times stay exact."""
    start, end = T0 - 90 * S, T0 + timedelta(hours=2) + 90 * S
    add_calls(start - timedelta(milliseconds=1), cost=100.0)  # before the window
    add_calls(start, cost=1.0, duration_ms=100)  # raw edge
    add_calls(T0 - 30 * S, cost=2.0, duration_ms=100)  # minute tier
    add_calls(T0 + timedelta(minutes=30), n=3, cost=4.0, duration_ms=100)  # hour tier
    add_calls(T0 + timedelta(hours=2) + 30 * S, cost=8.0, duration_ms=300,
              status="Error")  # minute tier
    add_calls(end - timedelta(milliseconds=1), cost=16.0, duration_ms=100)  # raw edge
    add_calls(end, cost=100.0)  # after the window

    got = _rows(queries.summary(store, start, end), "calls", "errors", "cost_usd")
    seen = _rows(_version_summary(store, start, end), "first_seen", "last_seen",
                 "calls")
    hourly = queries.totals(store, start, end, 3600)[1]
    per_minute = queries.cost_per_feature_over_time(store, start, end, 60)
    per_second = queries.totals(store, start, end, 30)[1]

    assert got == [(7, 1, 39.0)]
    assert seen == [(start, end - timedelta(milliseconds=1), 7)]
    assert _rows(hourly, "bucket", "calls", "cost_usd") == [
        (T0 - timedelta(hours=1), 2, 3.0), (T0, 3, 12.0), (T0 + timedelta(hours=2), 2, 24.0)]
    assert per_minute["cost_usd"].sum() == 39.0 and per_minute["calls"].sum() == 7
    assert len(per_minute) == 5  # one bucket per minute that has calls
    assert per_second["calls"].sum() == 7 and per_second["cost_usd"].sum() == 39.0
    assert list(_version_summary(store, start, end)["p99_ms"]) == [_ms(300)]


def test_latency_quantiles_are_within_one_percent_of_the_nearest_rank_call(store, add_calls):
    """Random latencies (log-normal, 1 ms to minutes) at random times over raw edges, minutes,
    hours and a day: every p50 / p95 / p99 the queries return, over the window and per hourly
    bucket, is within 1% of the call of rank ceil(q n) (1 the fastest)."""
    rng = random.Random(11)
    day = T0.replace(hour=0) - timedelta(days=1)
    start, end = day - 90 * S, day + timedelta(days=1, hours=2) + 90 * S
    calls = []
    for i in range(120):
        at = start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds() - 1))
        if i % 3 == 0:  # a third at the ragged edges, read from the spans
            at = rng.choice([start, end - timedelta(seconds=60)]) + rng.uniform(0, 59) * S
        latency = max(1.0, round(rng.lognormvariate(math.log(300), 1.5), 3))
        add_calls(at, duration_ms=latency)
        calls.append((at, latency))

    def nearest_rank(latencies, q):
        ordered = sorted(latencies)
        return ordered[math.ceil(q * len(ordered)) - 1]

    every = [latency for _, latency in calls]
    summary = queries.summary(store, start, end).iloc[0]
    versions = _version_summary(store, start, end).iloc[0]
    hourly = queries.totals(store, start, end, 3600)[1]

    assert summary["p95_latency_ms"] == _ms(nearest_rank(every, 0.95))
    for column, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        assert versions[column] == _ms(nearest_rank(every, q)), column
    assert len(hourly) > 10
    for bucket, p95 in zip(hourly["bucket"], hourly["p95_latency_ms"]):
        inside = [latency for at, latency in calls
                  if bucket <= pd.Timestamp(at) < bucket + pd.Timedelta(hours=1)]
        assert p95 == _ms(nearest_rank(inside, 0.95)), bucket


def test_windows_of_every_shape_count_each_call_once(store, add_calls):
    """Windows whose ends fall on a second, a minute, an hour or a midnight, in every pairing
    (each shape leaves out the tiers it has no range for): the summary counts exactly the
    calls inside, and the first and last call times are theirs."""
    day = T0.replace(hour=0) - timedelta(days=1)
    times = [day + offset for offset in (
        -timedelta(hours=1, seconds=1), -timedelta(seconds=61), -timedelta(seconds=1),
        timedelta(0), timedelta(seconds=30), timedelta(minutes=1, seconds=1),
        timedelta(hours=1), timedelta(hours=5, minutes=7, seconds=3),
        timedelta(days=1, seconds=-1), timedelta(days=1), timedelta(days=1, seconds=59),
        timedelta(days=1, minutes=59, seconds=59), timedelta(days=1, hours=1, seconds=1))]
    for i, at in enumerate(times):
        add_calls(at, cost=2.0 ** i)
    edges = [day + offset for offset in (
        -timedelta(hours=1), -timedelta(minutes=1, seconds=30), -timedelta(minutes=1),
        timedelta(0), timedelta(seconds=45), timedelta(hours=1), timedelta(days=1),
        timedelta(days=1, seconds=30), timedelta(days=1, minutes=1),
        timedelta(days=1, hours=1), timedelta(days=1, hours=1, seconds=2))]
    for start, end in itertools.combinations(edges, 2):
        inside = [(i, at) for i, at in enumerate(times) if start <= at < end]
        got = _rows(queries.summary(store, start, end), "calls", "cost_usd")
        assert got == [(len(inside), float(sum(2.0 ** i for i, _ in inside)))], (start, end)
        if inside:
            seen = _rows(_version_summary(store, start, end), "first_seen", "last_seen")
            assert seen == [(inside[0][1], inside[-1][1])], (start, end)


def test_day_hour_minute_tiers_and_raw_edges_add_up_exactly(store, add_calls):
    """A window from before a UTC midnight to past the next day: its whole day comes from the
    daily rollup, the whole hours after it from the hourly one, the whole minutes and seconds
    at its ends from the per-minute one and the spans; each call counts once, in the right
    bucket of a daily, two-hourly or hourly chart, and quantiles and confidences merge across
    the tiers."""
    day = T0.replace(hour=0) - timedelta(days=1)
    start, end = day - 90 * S, day + timedelta(days=1, hours=2) + 90 * S
    add_calls(start - timedelta(milliseconds=1), cost=100.0)  # before the window
    add_calls(start, cost=1.0, confidence=0.5)  # raw edge
    add_calls(day - 30 * S, cost=2.0, confidence=0.75)  # minute tier
    add_calls(day + timedelta(hours=5), n=3, cost=4.0, duration_ms=300,
              confidence=0.25)  # day tier
    add_calls(day + timedelta(days=1, minutes=30), cost=8.0, status="Error",
              confidence=0.25)  # hour tier
    add_calls(day + timedelta(days=1, hours=2, seconds=30), cost=16.0)  # minute tier
    add_calls(end - timedelta(milliseconds=1), cost=32.0)  # raw edge
    add_calls(end, cost=100.0)  # after the window

    got = _rows(queries.summary(store, start, end), "calls", "errors", "cost_usd",
                "p95_latency_ms")
    seen = _rows(_version_summary(store, start, end), "first_seen", "last_seen",
                 "calls")
    daily = queries.totals(store, start, end, 86400)[1]
    two_hourly = queries.totals(store, start, end, 7200)[1]
    hourly = queries.cost_per_feature_over_time(store, start, end, 3600)
    hist = queries.confidence_histogram(store, start, end)

    assert got == [(8, 1, 71.0, _ms(300))]
    assert seen == [(start, end - timedelta(milliseconds=1), 8)]
    assert _rows(daily, "bucket", "calls", "cost_usd") == [
        (day - timedelta(days=1), 2, 3.0), (day, 3, 12.0), (day + timedelta(days=1), 3, 56.0)]
    assert _rows(two_hourly, "bucket", "calls", "cost_usd") == [
        (day - timedelta(hours=2), 2, 3.0), (day + timedelta(hours=4), 3, 12.0),
        (day + timedelta(days=1), 1, 8.0), (day + timedelta(days=1, hours=2), 2, 48.0)]
    assert _rows(hourly, "bucket", "calls", "cost_usd") == [
        (day - timedelta(hours=1), 2, 3.0), (day + timedelta(hours=5), 3, 12.0),
        (day + timedelta(days=1), 1, 8.0), (day + timedelta(days=1, hours=2), 2, 48.0)]
    assert _rows(hist, "confidence", "calls") == [(0.25, 4), (0.5, 1), (0.75, 1)]
    assert list(_version_summary(store, start, end)["p99_ms"]) == [_ms(300)]
    # The summary adds up whichever tiers the series' bucket reads: the same answer for each.
    summaries = [queries.version_stats(store, start, end, bucket)[0]
                 for bucket in (30, 60, 3600, 86400)]
    for other in summaries[1:]:
        pd.testing.assert_frame_equal(other, summaries[0])


def test_search_traces_past_the_recent_calls_is_still_newest_first(store, add_calls):
    """The search first aggregates only traces with a recent call; a trace whose first call
    is older than that still sorts by its first call, not its recent one."""
    add_calls(T0 + 10 * S, trace_id="old-and-recent")
    add_calls(T0 + timedelta(minutes=50), trace_id="old-and-recent")
    add_calls(T0 + timedelta(minutes=20), n=9, trace_id="")  # nine one-call traces
    for i in range(12):
        add_calls(T0 + timedelta(minutes=40, seconds=i), trace_id=f"recent-{i:02d}")

    top = queries.search_traces(store, *_window(), limit=3)
    every = queries.search_traces(store, *_window(), limit=100)

    assert list(top["trace_id"]) == ["recent-11", "recent-10", "recent-09"]
    assert len(every) == 12 + 9 + 1 and every["trace_id"].iloc[-1] == "old-and-recent"
    assert every["calls"].iloc[-1] == 2


def test_search_traces_ranks_like_aggregating_every_trace(store, add_calls):
    """Traces whose first call is long before their latest (which the candidate ranking sees
    first), traces with one call at any time, some sharing a first-call time (ties go by trace
    id), features whose recent calls come from two traces only (which began long before, or
    recently), non-AI spans and calls outside the window: every limit, status and feature
    gets the rows of ranking every trace in the window."""
    rng = random.Random(7)
    start, end = _window()
    calls = []  # (trace, time, status, feature) of the AI calls in the window

    def trace(*seconds: float, feature: str = "search") -> None:
        trace = f"{rng.getrandbits(128):032x}"
        for at in (T0 + timedelta(milliseconds=round(1000 * s)) for s in seconds):
            state = rng.choice(["Ok", "Ok", "Error"])
            add_calls(at, trace_id=trace, status=state, feature=feature)
            calls.append((trace, at, state, feature))
        add_calls(T0 + seconds[0] * S - 30 * S, trace_id=trace, operation="")  # not AI
        add_calls(end + 5 * S, trace_id=trace, feature=feature)  # after the window

    for _ in range(16):  # long: first call early, latest in the last minute
        trace(rng.uniform(0, 1800), *(rng.uniform(3540, 3599) for _ in range(rng.randrange(1, 3))))
    for _ in range(16):
        trace(rng.uniform(1800, 3599))
    for _ in range(4):
        trace(3500)
    for feature, first in (("agent", (0, 100)), ("rag", (3540, 3550))):
        for _ in range(2):  # all of the feature's recent calls, in two traces
            trace(rng.uniform(*first), *(rng.uniform(3580, 3599) for _ in range(7)),
                  feature=feature)
        for _ in range(3):
            trace(rng.uniform(2000, 3000), feature=feature)

    cases = [*itertools.product(("", "Error", "Ok"), ("",), (1, 2, 3, 5, 8, 13, 30, 100)),
             *itertools.product(("",), ("agent", "rag"), (1, 2, 3, 4, 5))]
    for status, feature, limit in cases:
        matching = [(t, at) for t, at, state, f in calls
                    if status in ("", state) and feature in ("", f)]
        first = {t: min(at for u, at in matching if u == t) for t, _ in matching}
        ranked = sorted(first.items(), key=lambda tf: (-tf[1].timestamp(), tf[0]))[:limit]
        got = queries.search_traces(store, start, end, queries.Filters(feature=feature),
                                    status=status, limit=limit)
        assert list(zip(got["trace_id"], got["time"].dt.to_pydatetime())) == ranked
        assert list(got["calls"]) == [sum(1 for u, _ in matching if u == t) for t, _ in ranked]


def test_cost_by_user_and_tenant_over_a_window_off_day_and_hour_edges(store,
                                                                                  add_calls):
    """Users and tenants over a window that starts and ends off UTC day and hour boundaries
    (where a rollup would have to split it): each call counts once, the
    filters narrow both, and non-AI spans count in neither."""
    from infersight_dashboard.filters import Filters

    day = T0.replace(hour=0) - timedelta(days=1)
    start, end = day - 90 * S, day + timedelta(days=1, hours=1) + 90 * S
    add_calls(start - timedelta(milliseconds=1), user="u1", tenant="t1", cost=100.0)  # before
    add_calls(start, user="u1", tenant="t1", cost=1.0, input_tokens=10,
              output_tokens=0)  # in a part-hour at an end of the window
    add_calls(day, n=2, user="u1", tenant="t2", cost=2.0, input_tokens=20, output_tokens=0,
              cache_read_tokens=5)  # inside a whole day
    add_calls(day + timedelta(hours=5), user="u2", tenant="t2", feature="chat", cost=4.0,
              input_tokens=0, output_tokens=40)  # inside a whole day
    add_calls(day + timedelta(hours=6), operation="", user="u2", tenant="t2",
              cost=50.0)  # not an AI call
    add_calls(day + timedelta(days=1) - timedelta(milliseconds=1), tenant="t1", cost=8.0,
              input_tokens=0, output_tokens=0)  # inside a whole day, no user
    add_calls(day + timedelta(days=1), user="u2", tenant="t1", feature="chat", cost=16.0,
              input_tokens=0, output_tokens=0)  # in a whole hour
    add_calls(day + timedelta(days=1, hours=1, seconds=30), user="u2", tenant="t1",
              feature="chat", cost=0.5, input_tokens=0, output_tokens=0)  # in a part-hour at an end of the window
    add_calls(end - timedelta(milliseconds=1), user="u1", cost=32.0, input_tokens=0,
              output_tokens=0)  # in a part-hour at an end of the window, no tenant
    add_calls(end, user="u1", tenant="t1", cost=100.0)  # after

    users = queries.cost_by(store, start, end, "user")
    tenants = queries.cost_by(store, start, end, "tenant")
    chat = queries.cost_by(store, start, end, "user", Filters(feature="chat"))
    top = queries.cost_by(store, start, end, "tenant", limit=1)

    assert _rows(users, "key", "calls", "cost_usd", "input_tokens", "output_tokens",
                 "cache_read_tokens") == [
        ("u1", 4, 37.0, 50, 0, 10), ("u2", 3, 20.5, 0, 40, 0), ("(none)", 1, 8.0, 0, 0, 0)]
    assert _rows(tenants, "key", "calls", "cost_usd") == [
        ("(none)", 1, 32.0), ("t1", 4, 25.5), ("t2", 3, 8.0)]
    assert _rows(chat, "key", "calls", "cost_usd") == [("u2", 3, 20.5)]
    assert list(top["key"]) == ["(none)"]


def test_confidence_histogram_over_a_window_off_hour_edges(store,
                                                                               add_calls):
    """A window on no hour boundary (where a rollup would have to split it): confidences are
    rounded alike inside and at the ends, each call counts once, filters narrow it all."""
    from infersight_dashboard.filters import Filters

    start, end = T0 - 90 * S, T0 + timedelta(hours=2) + 90 * S
    add_calls(start - timedelta(milliseconds=1), version="v1", confidence=0.5)  # before
    add_calls(start, version="v1", confidence=0.1234)  # in a part-hour at an end of the window
    add_calls(T0, n=2, version="v1", confidence=0.12349)  # in a whole hour
    add_calls(T0 + timedelta(minutes=30), version="v1")  # in a whole hour, no confidence
    add_calls(T0 + timedelta(hours=1), version="v2", confidence=0.9996)  # in a whole hour
    add_calls(T0 + timedelta(hours=1, minutes=5), operation="", version="v2",
              confidence=0.2)  # not an AI call
    add_calls(T0 + timedelta(hours=2), version="v2", confidence=1.0)  # in a part-hour at an end of the window
    add_calls(end - timedelta(milliseconds=1), version="v1", confidence=0.1236)  # in a part-hour at an end of the window
    add_calls(end, version="v1", confidence=0.5)  # after

    df = queries.confidence_histogram(store, start, end)
    v2 = queries.confidence_histogram(store, start, end, Filters(version="v2"))

    assert _rows(df, "model", "version", "confidence", "calls") == [
        ("gpt-4o", "v1", 0.123, 3), ("gpt-4o", "v1", 0.124, 1), ("gpt-4o", "v2", 1.0, 2)]
    assert _rows(v2, "version", "confidence", "calls") == [("v2", 1.0, 2)]
