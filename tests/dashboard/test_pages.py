"""Each page's callbacks called as plain functions over a real chDB store with known spans."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from infersight_dashboard.app import create_app
from infersight_dashboard.auth import Protection
from infersight_dashboard.components import INSTRUMENT_LINES


@pytest.fixture
def pages(store):
    create_app(store, Protection())
    # Dash loads the page modules when the app is built; import the ones it loaded.
    from infersight_dashboard.pages import cost, degradation, overview, traces
    return {"overview": overview, "cost": cost, "degradation": degradation, "traces": traces}


def _ago(**kw):
    return datetime.now(timezone.utc) - timedelta(**kw)


@pytest.mark.parametrize("page, args", [
    ("overview", ("", None)), ("cost", ("", None)), ("traces", ("", None, None, None)),
    ("degradation", ("", None, None, "previous", None, None))])
def test_an_empty_range_shows_how_to_send_data(pages, page, args):
    out = pages[page].update(*args)

    assert out[-2:] == (False, True)  # empty state shown, content hidden
    text = _texts(pages[page].layout())
    assert "infersight demo" in text and INSTRUMENT_LINES in text


def _texts(component) -> list[str]:
    """Every string in a component tree (str() of a component is truncated)."""
    if isinstance(component, str):
        return [component]
    children = getattr(component, "children", component if isinstance(component, list) else [])
    if not isinstance(children, list):
        children = [children]
    return [t for child in children for t in _texts(child)]


def test_overview_compares_with_the_previous_period(pages, add_calls):
    add_calls(_ago(minutes=10), n=3, feature="search", cost=0.5, duration_ms=200)
    add_calls(_ago(minutes=20), feature="chat", request_model="gpt-4o-mini", cost=2.0,
              status="Error")
    add_calls(_ago(minutes=80), n=2, feature="search", cost=1.0)  # the previous hour

    cards, features, models, empty_hidden, content_hidden = pages["overview"].update("", None)

    values = {c.id: (c.children[1].children, c.children[2].children) for c in cards}
    assert values["kpi-calls"] == ("4", "+100% vs previous period")
    assert values["kpi-errors"] == ("1", "no previous data")
    assert values["kpi-cost_usd"] == ("$3.50", "+75% vs previous period")
    assert dict(zip(features.data[0].y, features.data[0].x)) == {"chat": 2.0, "search": 1.5}
    assert dict(zip(models.data[0].y, models.data[0].x)) == {"gpt-4o-mini": 2.0, "gpt-4o": 1.5}
    assert (empty_hidden, content_hidden) == (True, False)


def test_filters_from_the_url_narrow_every_number(pages, add_calls):
    add_calls(_ago(minutes=10), n=2, feature="search", cost=0.5)
    add_calls(_ago(minutes=10), feature="chat", cost=2.0, service="billing")

    cards = pages["overview"].update("?feature=search", None)[0]
    rows = pages["cost"].update("?service=billing", None)[6]

    assert {c.id: c.children[1].children for c in cards}["kpi-cost_usd"] == "$1.00"
    assert [(r["feature"], r["cost_usd"]) for r in rows] == [("chat", 2.0)]


def test_cost_page_charts_features_models_users_and_links_expensive_calls(pages, add_calls):
    add_calls(_ago(minutes=10), n=2, feature="search", cost=0.25, user="u1", tenant="acme",
              input_tokens=400, output_tokens=100)
    add_calls(_ago(minutes=10), feature="summarize", request_model="claude-sonnet-4",
              response_model="", cost=1.5, status="Error", user="u2")
    add_calls(_ago(minutes=5), operation="", feature="search", cost=9.0)

    (over_time, by_model, by_user, by_tenant, month, savings, rows, calls,
     empty_hidden, content_hidden) = pages["cost"].update("?range=6h", None)

    assert {t.name: sum(t.y) for t in over_time.data} == {"search": 0.5, "summarize": 1.5}
    assert all(t.type == "bar" for t in over_time.data)
    assert dict(zip(by_user.data[0].y, by_user.data[0].x)) == {"u1": 0.5, "u2": 1.5}
    assert dict(zip(by_tenant.data[0].y, by_tenant.data[0].x)) == {"acme": 0.5, "(none)": 1.5}
    assert [(r["feature"], r["model"], r["calls"], r["errors"], r["cost_usd"]) for r in rows] == [
        ("summarize", "claude-sonnet-4", 1, 1, 1.5), ("search", "gpt-4o-2024-08-06", 2, 0, 0.5)]
    search = rows[1]
    assert search["cost_per_call"] == 0.25 and search["cost_per_1k_tokens"] == 0.5
    assert [c["cost_usd"] for c in calls] == [1.5, 0.25, 0.25]
    assert calls[0]["trace"].endswith(f"(/traces?range=6h&trace={calls[0]['trace_id']})")
    assert savings == "No cached-token savings in this range."
    assert (empty_hidden, content_hidden) == (True, False)


def test_month_end_projection_runs_at_the_month_so_far():
    from infersight_dashboard.pages.cost import month_bounds, project_month_end

    now = datetime(2025, 4, 11, 0, 0, tzinfo=timezone.utc)  # 10 of April's 30 days gone
    start, end = month_bounds(now)
    assert (start, end) == (datetime(2025, 4, 1, tzinfo=timezone.utc),
                            datetime(2025, 5, 1, tzinfo=timezone.utc))
    assert project_month_end(12.0, start, now, end) == pytest.approx(36.0)
    assert month_bounds(datetime(2024, 2, 29, 23, tzinfo=timezone.utc))[1].day == 1


def test_cache_savings_price_cached_tokens_as_fresh_input_minus_cache_reads():
    from infersight.pricing import Usage, cost_usd
    from infersight_dashboard.pages.cost import cache_savings

    rows = pd.DataFrame({"model": ["gpt-4o-mini", "no-such-model"],
                         "cache_read_tokens": [1_000_000, 5]})
    day = datetime(2025, 6, 1).date()
    out = cache_savings(rows, day)

    fresh = cost_usd("gpt-4o-mini", Usage(input=1_000_000), day)
    cached = cost_usd("gpt-4o-mini", Usage(input=1_000_000, cache_read=1_000_000), day)
    assert list(out["model"]) == ["gpt-4o-mini"]
    assert out["saved_usd"][0] == pytest.approx(fresh - cached) and fresh > cached


def test_degradation_measures_drift_of_the_new_version(pages, add_calls):
    old, new = "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2025-06-01"
    for i in range(10):  # the old version: one call at each of 0.905 ... 0.995
        add_calls(_ago(minutes=50), request_model="gpt-4o-mini", version=old,
                  confidence=0.905 + i / 100, duration_ms=100)
    for i in range(10):  # the new one, all below every old value
        add_calls(_ago(minutes=20), request_model="gpt-4o-mini", version=new,
                  confidence=0.505 + i / 100, duration_ms=300, status="Error" if i < 5 else "Ok")
    add_calls(_ago(minutes=30), request_model="gpt-4o", version="gpt-4o-2024-08-06",
              confidence=0.5)

    models, chosen = pages["degradation"].choose_model("", None)
    out = pages["degradation"].update("", None, chosen, "previous", None, None)
    rows, _conf, conf_time, latency, errors, _tokens, options, a, _, b, *hidden = out

    assert (models[0], chosen) == ("gpt-4o-mini", "gpt-4o-mini")
    assert [(r["version"], r["reference"], r["calls"]) for r in rows] == [
        (old, "—", 10), (new, old, 10)]
    assert rows[0]["psi"] == "—"
    assert rows[1]["ks"] == 1.0 and rows[1]["level"] == "alert" and rows[1]["psi"] > 0.2
    assert (a, b) == (old, new) and [o["value"] for o in options] == [old, new]
    marks = [s.x0 for s in latency.layout.shapes]
    assert len(marks) == 1 and conf_time.layout.shapes[0].name == f"version {new}"
    assert {t.name: list(t.y) for t in errors.data}[new] == [0.5]
    assert hidden == [True, False]

    columns, compare, _ = pages["degradation"].compare("", chosen, a, b)
    by_metric = {r["metric"]: r for r in compare}
    assert by_metric["Error rate"]["a"] == "0.00%" and by_metric["Error rate"]["b"] == "50.00%"
    assert by_metric["Latency p50 (ms)"]["change"] == "+200.0%"
    assert by_metric["Confidence drift B vs A (PSI / KS)"]["change"] == "alert"
    assert columns[2]["name"] == f"B: {new}"


def test_a_pinned_baseline_is_the_reference_of_every_version(pages):
    rows = pages["degradation"].drift_rows(
        pd.DataFrame({"version": ["v1"] * 10, "confidence": [0.05 + i / 10 for i in range(10)],
                      "calls": [1] * 10}), ["v1"],
        baseline=pd.DataFrame({"confidence": [0.05 + i / 10 for i in range(10)],
                               "calls": [1] * 10}))
    assert rows == [{"version": "v1", "reference": "baseline window", "calls": 10,
                     "psi": 0.0, "ks": 0.0, "level": "ok"}]
    start = datetime(2025, 5, 10, 12, tzinfo=timezone.utc)
    assert pages["degradation"].baseline_window("2025-05-01", "2025-05-02", start, start) == (
        datetime(2025, 5, 1, tzinfo=timezone.utc), datetime(2025, 5, 3, tzinfo=timezone.utc))


def test_traces_search_and_waterfall_with_captured_text(pages, add_calls):
    trace = "ab" * 16
    t = _ago(minutes=5)
    add_calls(t, operation="", name="POST /answer", trace_id=trace, span_id="root0000",
              duration_ms=500)
    add_calls(t + timedelta(milliseconds=50), trace_id=trace, span_id="llm00000",
              parent_span_id="root0000", duration_ms=300, confidence=0.75,
              input_messages='[{"role": "user", "content": "hi"}]',
              output_messages='[{"role": "assistant", "content": "hello"}]')
    add_calls(t, feature="other", status="Error")

    rows, detail, *hidden = pages["traces"].update("", None, None, trace.upper())
    assert [r["trace_id"] for r in rows] == [trace] and hidden == [True, False]
    waterfall = detail[1].figure.data[0]
    assert list(waterfall.base) == [0.0, 50.0] and list(waterfall.x) == [500.0, 300.0]
    assert waterfall.y[1].startswith("  chat gpt-4o")  # indented under its parent
    llm = str(detail[3])
    assert '"content": "hello"' in llm and "0.75" in llm and "not captured" not in llm

    errors = pages["traces"].update("?feature=other", None, "Error", None)[0]
    assert [(r["feature"], r["errors"]) for r in errors] == [("other", 1)]
    missing = pages["traces"].update("", None, None, "f" * 32)[1]
    assert "No span of trace" in str(missing)
