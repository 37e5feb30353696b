"""Each page's callbacks called as plain functions over a real chDB store with known spans."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from dash import no_update

from infersight_dashboard.app import create_app
from infersight_dashboard.auth import Protection
from infersight_dashboard.components import INSTRUMENT_LINES
from infersight_dashboard.filters import View


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
    ("degradation", ("", None))])
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
    assert list(by_model.data[0].y) == ["gpt-4o-2024-08-06", "claude-sonnet-4"]  # top at top
    assert list(by_model.data[0].x) == [0.5, 1.5]
    assert dict(zip(by_tenant.data[0].y, by_tenant.data[0].x)) == {"acme": 0.5, "(none)": 1.5}
    assert [(r["feature"], r["model"], r["calls"], r["errors"], r["cost_usd"]) for r in rows] == [
        ("summarize", "claude-sonnet-4", 1, 1, 1.5), ("search", "gpt-4o-2024-08-06", 2, 0, 0.5)]
    search = rows[1]
    assert search["cost_per_call"] == 0.25 and search["cost_per_1k_tokens"] == 0.5
    assert [c["cost_usd"] for c in calls] == [1.5, 0.25, 0.25]
    assert calls[0]["trace"].endswith(f"(/traces?range=6h&trace={calls[0]['trace_id']})")
    assert savings == "No cached-token savings in this range."
    assert (empty_hidden, content_hidden) == (True, False)


def test_cost_per_served_model_sums_its_features():
    from infersight_dashboard.pages.cost import per_served_model

    table = pd.DataFrame({"feature": ["a", "b", "a"], "model": ["m1", "m1", "m2"],
                          "calls": [1, 3, 2], "cost_usd": [1.0, 3.0, 5.0],
                          "input_tokens": [600, 1400, 0], "output_tokens": [0, 0, 0]})

    out = per_served_model(table)

    assert out[["key", "calls", "cost_usd"]].values.tolist() == [["m2", 2, 5.0],
                                                                 ["m1", 4, 4.0]]
    assert out["cost_per_call"].tolist() == [2.5, 1.0]
    assert out["cost_per_1k_tokens"].iloc[1] == 2.0 and pd.isna(out["cost_per_1k_tokens"][0])


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
    # One timestamp per version: read anew per call, the clock can cross a chart bucket.
    old_at, new_at = _ago(minutes=50), _ago(minutes=20)
    for i in range(10):  # the old version: one call at each of 0.905 ... 0.995
        add_calls(old_at, request_model="gpt-4o-mini", version=old,
                  confidence=0.905 + i / 100, duration_ms=100)
    for i in range(10):  # the new one, all below every old value
        add_calls(new_at, request_model="gpt-4o-mini", version=new,
                  confidence=0.505 + i / 100, duration_ms=300, status="Error" if i < 5 else "Ok")
    add_calls(_ago(minutes=30), request_model="gpt-4o", version="gpt-4o-2024-08-06",
              confidence=0.5)

    (models, chosen, placeholder, *_), out, compare_out, _ = _degradation(pages, "")
    rows, _conf, conf_time, latency, errors, _tokens, options, a, _, b, *rest = out
    placeholders, hidden = rest[:2], rest[2:]

    assert (models[0], chosen, placeholder) == ("gpt-4o-mini", None, "gpt-4o-mini (most versions)")
    assert [(r["version"], r["reference"], r["calls"]) for r in rows] == [
        (old, "—", 10), (new, old, 10)]
    assert rows[0]["psi"] == "—"
    assert rows[1]["ks"] == 1.0 and rows[1]["level"] == "alert" and rows[1]["psi"] > 0.2
    assert (a, b) == (None, None) and [o["value"] for o in options] == [old, new]
    assert placeholders == [f"{old} (auto)", f"{new} (newest)"]
    marks = [s.x0 for s in latency.layout.shapes]
    assert len(marks) == 1 and conf_time.layout.shapes[0].name == f"version {new}"
    assert {t.name: list(t.y) for t in errors.data}[new] == [0.5]
    assert hidden == [True, False]

    columns, compare, _ = compare_out
    by_metric = {r["metric"]: r for r in compare}
    assert by_metric["Error rate"]["a"] == "0.00%" and by_metric["Error rate"]["b"] == "50.00%"
    # 100 ms against 300 ms, each within 1% (the rollups' latency histograms): +194% to +206%.
    change = by_metric["Latency p50 (ms)"]["change"]
    assert change.startswith("+") and float(change[1:-1]) == pytest.approx(200, abs=6)
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


def _record(store, trace_id, **fields):
    from infersight_collector.feedback import record_feedback

    record_feedback(store, {"trace_id": trace_id, **fields})


def test_degradation_charts_feedback_per_version(pages, store, add_calls):
    mini = dict(request_model="gpt-4o-mini")
    # One timestamp per version: read anew per call, the clock can cross a chart bucket.
    v1_at, v2_at = _ago(minutes=50), _ago(minutes=20)
    for i in range(6):  # the old version: liked
        add_calls(v1_at, version="v1", trace_id=f"{i + 1:032x}", **mini)
        _record(store, f"{i + 1:032x}", score=1)
    for i in range(6):  # the new one: two thumbs down, one hallucination, three thumbs up
        add_calls(v2_at, version="v2", trace_id=f"{i + 11:032x}", **mini)
        verdict = {"score": 0} if i < 2 else {"label": "hallucination"} if i == 2 else {
            "score": 1}
        _record(store, f"{i + 11:032x}", **verdict)

    *_, (score, negative, none_hidden, charts_hidden) = _degradation(pages, "")

    assert (none_hidden, charts_hidden) == (True, False)
    assert {t.name: [float(y) for y in t.y] for t in score.data} == {"v1": [1.0], "v2": [0.6]}
    assert {t.name: [float(y) for y in t.y] for t in negative.data} == {"v1": [0.0],
                                                                         "v2": [0.5]}
    assert [s.name for s in negative.layout.shapes] == ["version v2"]
    rows = {r["metric"]: r for r in _degradation(pages, "")[2][1]}
    assert (rows["Negative feedback"]["a"], rows["Negative feedback"]["b"]) == ("0.0%", "50.0%")
    assert rows["Mean feedback score"]["change"] == "-40.0%"


def test_degradation_without_feedback_says_how_to_send_it(pages, add_calls):
    add_calls(_ago(minutes=10), version="v1")

    _, _, compare, (*_, none_hidden, charts_hidden) = _degradation(pages, "")

    assert (none_hidden, charts_hidden) == (False, True)
    assert not any(r["metric"].endswith("feedback") or r["metric"] == "Mean feedback score"
                   for r in compare[1])
    text = " ".join(_texts(pages["degradation"].layout()))
    assert "infersight.feedback(" in text and "below 0.5" in text


def _degradation(pages, search: str) -> tuple:
    """The degradation page's one callback for `search`, split into its output groups:
    (controls, main, compare, feedback)."""
    deg = pages["degradation"]
    out, groups = deg.update(search, None), []
    for outputs in (deg.CONTROL_OUTPUTS, deg.MAIN_OUTPUTS, deg.COMPARE_OUTPUTS,
                    deg.FEEDBACK_OUTPUTS):
        groups.append(out[:len(outputs)])
        out = out[len(outputs):]
    assert not out
    return tuple(groups)


def _two_models(add_calls):
    for version, minutes in (("m1", 50), ("m2", 30), ("m3", 10)):
        add_calls(_ago(minutes=minutes), n=2, request_model="mini", version=version,
                  confidence=0.9 if version == "m1" else 0.5)
    add_calls(_ago(minutes=40), n=9, request_model="big", version="b1", confidence=0.7)


def test_degradation_view_comes_from_the_url(pages, add_calls):
    _two_models(add_calls)
    linked = "?range=6h&dmodel=mini&a=m1&b=m2&ref=baseline&base_from=2025-05-01&base_to=2025-05-02"

    controls, main, (columns, *_), _ = _degradation(pages, linked)
    models, model, _, reference, base_from, base_to = controls
    rows, *_, a_options, a, _, b, _pa, _pb, _eh, _ch = main

    assert (models, model, reference, base_from, base_to) == (
        ["mini", "big"], "mini", "baseline", "2025-05-01", "2025-05-02")
    assert (a, b) == ("m1", "m2") and [c["name"] for c in columns[1:3]] == ["A: m1", "B: m2"]
    # Pinned to days with no calls: every version's reference is the (empty) baseline window.
    assert {r["reference"] for r in rows} == {"baseline window"}
    # Automatic: the model with most versions, the newest against the one before.
    auto = _degradation(pages, "?range=6h")
    assert auto[0][1:3] == (None, "mini (most versions)")
    assert [c["name"] for c in auto[2][0][1:3]] == ["A: m2", "B: m3"]
    # A model or version the window does not hold means the automatic choice.
    stale = _degradation(pages, "?range=6h&dmodel=gone&a=m9&b=m1")
    assert stale[0][1] is None
    assert [c["name"] for c in stale[2][0][1:3]] == ["A: m2", "B: m1"]
    assert [r["version"] for r in _degradation(pages, "?range=6h&dmodel=big")[1][0]] == ["b1"]
    # The global model filter narrows the choice.
    assert _degradation(pages, "?range=6h&model=big")[0][:2] == (["big"], None)


def test_layout_starts_the_controls_at_the_urls_values(pages):
    layout = pages["degradation"].layout(dmodel="mini", ref="baseline", base_from="2025-05-01",
                                         base_to="not-a-day")

    def find(component, id_):
        if getattr(component, "id", None) == id_:
            return component
        children = getattr(component, "children", None)
        for child in children if isinstance(children, list) else [children]:
            if child is not None and not isinstance(child, str):
                if (hit := find(child, id_)) is not None:
                    return hit

    picker = find(layout, "degradation-baseline")
    assert find(layout, "degradation-model").value == "mini"
    assert find(layout, "degradation-reference").value == "baseline"
    assert (picker.start_date, picker.end_date) == ("2025-05-01", None)


@pytest.mark.parametrize("values, url", [
    # What the URL already says (or the automatic choice the controls show): no change.
    ([None, "previous", None, None, None, None], None),
    (["mini", "baseline", "2025-05-01", None, "m1", None], None),
    # A person picks something.
    (["mini", "baseline", "2025-05-01", "2025-05-03", "m1", None],
     "?range=6h&a=m1&base_from=2025-05-01&base_to=2025-05-03&dmodel=mini&ref=baseline"),
    (["mini", "previous", "2025-05-01", None, "m1", "m2"],
     "?range=6h&a=m1&b=m2&base_from=2025-05-01&dmodel=mini"),
    # Another model forgets the compared versions.
    (["big", "baseline", "2025-05-01", None, "m1", None],
     "?range=6h&base_from=2025-05-01&dmodel=big&ref=baseline"),
])
def test_controls_write_the_url_only_when_a_person_changed_them(pages, values, url):
    search = "?range=6h&a=m1&base_from=2025-05-01&dmodel=mini&ref=baseline&b=gone"
    if values[0] is None:
        search = "?range=6h&dmodel=gone&b=gone"
    got = pages["degradation"].controls_query(search, values, ["mini", "big"], ["m1", "m2"])

    assert (no_update if url is None else url) == got
    if url is not None:
        assert pages["degradation"].url_controls(View.from_query(got))[:4] == (
            values[0], values[1], values[2], values[3])
