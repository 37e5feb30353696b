"""Each rule kind fires on data made to cross it and stays quiet on data that does not."""

from __future__ import annotations

from infersight_collector.feedback import record_feedback
from infersight_collector.store.schema import ALERTS_TABLE

from tests.alerts.clock import NOON, minutes


def states(evaluator, now=NOON):
    evaluator.evaluate(now)
    return {group: state for (_, group), state in evaluator.states().items()}


def test_latency_quantile_above_its_bound(evaluator, add_calls):
    add_calls(NOON - minutes(5), 20, feature="slow", duration_ms=900)
    add_calls(NOON - minutes(5), 20, feature="fast", duration_ms=100)
    add_calls(NOON - minutes(5), 20, feature="middling", duration_ms=400)
    ev = evaluator({"name": "lat", "kind": "latency", "quantile": "p95", "warning": 300,
                    "alert": 500, "group_by": "feature"})
    assert states(ev) == {"slow": "ALERT", "middling": "WARNING", "fast": "OK"}


def test_error_rate_needs_its_minimum_call_count(evaluator, add_calls):
    add_calls(NOON - minutes(5), 20, feature="flaky")
    add_calls(NOON - minutes(5), 10, feature="flaky", status="Error")
    add_calls(NOON - minutes(5), 30, feature="solid")
    add_calls(NOON - minutes(5), 5, feature="rare", status="Error")
    ev = evaluator({"name": "err", "kind": "error_rate", "warning": 0.05, "alert": 0.2,
                    "min_calls": 20, "group_by": "feature"})
    assert states(ev) == {"flaky": "ALERT", "solid": "OK", "rare": "NO_DATA"}


def test_cost_budget_per_feature_per_day(evaluator, add_calls):
    add_calls(NOON - minutes(60), 48, feature="summary", cost=0.25)  # 12 USD
    add_calls(NOON - minutes(60), 34, feature="search", cost=0.25)   # 8.5 USD
    add_calls(NOON - minutes(60), 4, feature="chat", cost=0.25)      # 1 USD
    add_calls(NOON - minutes(60 * 13), 100, feature="chat", cost=0.25)  # yesterday
    ev = evaluator({"name": "budget", "kind": "cost", "period": "day", "budget_usd": 10,
                    "group_by": "feature"})
    assert states(ev) == {"summary": "ALERT", "search": "WARNING", "chat": "OK"}


def test_cost_budget_per_user_reads_the_span_table(evaluator, add_calls):
    add_calls(NOON - minutes(30), 10, user="alice", cost=0.5)
    add_calls(NOON - minutes(30), 5, user="bob", cost=0.5)
    ev = evaluator({"name": "per-user", "kind": "cost", "period": "month", "budget_usd": 4,
                    "warning_at": 0.5, "group_by": "user"})
    assert states(ev) == {"alice": "ALERT", "bob": "WARNING"}


def test_cost_scoped_to_a_model_with_nothing_spent_is_ok(evaluator, add_calls):
    add_calls(NOON - minutes(30), 100, cost=1.0, response_model="gpt-4o-2024-08-06")
    ev = evaluator({"name": "mini", "kind": "cost", "budget_usd": 5,
                    "scope": {"model": "gpt-4o-mini"}})
    assert states(ev) == {"": "OK"}


def test_tokens_per_call_growth_against_the_reference(evaluator, add_calls):
    for feature, now_tokens in (("bloated", 200), ("steady", 100)):
        add_calls(NOON - minutes(90), 30, feature=feature, input_tokens=80, output_tokens=20)
        add_calls(NOON - minutes(5), 30, feature=feature, input_tokens=now_tokens - 20,
                  output_tokens=20)
    ev = evaluator({"name": "tokens", "kind": "tokens_growth", "window": "15m",
                    "reference_window": "2h", "warning": 0.2, "alert": 0.5,
                    "group_by": "feature"})
    evaluated = ev.evaluate(NOON)
    assert states(ev) == {"bloated": "ALERT", "steady": "OK"}
    assert evaluated[0].value == 1.0  # 200 tokens per call against 100


def _confidences(add_calls, at, low, high, **kw):
    for i in range(50):
        add_calls(at, 2, confidence=round(low + (high - low) * i / 49, 4), **kw)


def test_confidence_drift_against_the_previous_window(evaluator, add_calls):
    for feature in ("shifted", "stable"):
        _confidences(add_calls, NOON - minutes(60), 0.5, 0.99, feature=feature)
    _confidences(add_calls, NOON - minutes(5), 0.1, 0.5, feature="shifted")
    _confidences(add_calls, NOON - minutes(5), 0.5, 0.99, feature="stable")
    ev = evaluator({"name": "drift", "kind": "confidence_drift", "reference_window": "2h",
                    "group_by": "feature"})
    assert states(ev) == {"shifted": "ALERT", "stable": "OK"}


def test_confidence_drift_against_a_pinned_baseline_version(evaluator, add_calls):
    _confidences(add_calls, NOON - minutes(300), 0.6, 0.99, version="v1")
    _confidences(add_calls, NOON - minutes(5), 0.6, 0.99, version="v2")
    _confidences(add_calls, NOON - minutes(5), 0.2, 0.7, version="v3")
    ev = evaluator({"name": "ks", "kind": "confidence_drift", "metric": "ks",
                    "baseline_version": "v1", "reference_window": "1d", "warning": 0.2,
                    "alert": 0.4, "group_by": "version"})
    assert states(ev) == {"v2": "OK", "v3": "ALERT"}


def test_feedback_score_drop(store, evaluator, add_calls):
    for i, (feature, at, score) in enumerate(
            [("summary", -90, 1.0)] * 10 + [("summary", -5, 0.5)] * 10
            + [("search", -90, 1.0)] * 10 + [("search", -5, 1.0)] * 10):
        trace = f"{i + 1:032x}"
        add_calls(NOON + minutes(at), feature=feature, trace_id=trace)
        record_feedback(store, {"trace_id": trace, "score": score,
                                "time_unix_nano": int((NOON + minutes(at)).timestamp() * 1e9)})
    ev = evaluator({"name": "fb", "kind": "feedback_drop", "reference_window": "2h",
                    "warning": 0.1, "alert": 0.3, "group_by": "feature"})
    assert states(ev) == {"summary": "ALERT", "search": "OK"}


def test_no_data_for_a_feature_that_stopped_sending(evaluator, add_calls):
    add_calls(NOON - minutes(120), 5, feature="stopped")
    add_calls(NOON - minutes(120), 5, feature="live")
    add_calls(NOON - minutes(5), 5, feature="live")
    ev = evaluator({"name": "silent", "kind": "no_data", "window": "15m",
                    "group_by": "feature"},
                   {"name": "never", "kind": "no_data", "scope": {"feature": "nope"}})
    ev.evaluate(NOON)
    assert ev.states() == {("silent", "stopped"): "ALERT", ("silent", "live"): "OK",
                           ("never", ""): "ALERT"}


def test_write_lag_keeps_the_newest_minutes_out_of_the_window(evaluator, add_calls):
    add_calls(NOON - minutes(1), 20, duration_ms=5000)  # still arriving at NOON
    ev = evaluator({"name": "lat", "kind": "latency", "alert": 1000, "lag": "2m"})
    assert states(ev) == {}
    assert states(ev, NOON + minutes(3)) == {"": "ALERT"}


def test_hysteresis_resolves_only_after_the_condition_stays_clear(store, evaluator,
                                                                  add_calls):
    rule = {"name": "lat", "kind": "latency", "alert": 500, "window": "5m", "lag": 0,
            "resolve_after": "10m"}
    ev = evaluator(rule)
    add_calls(NOON - minutes(2), 10, duration_ms=900)
    assert states(ev, NOON) == {"": "ALERT"}
    add_calls(NOON + minutes(3), 10, duration_ms=100)
    assert states(ev, NOON + minutes(6)) == {"": "ALERT"}  # clear for 0 min
    add_calls(NOON + minutes(9), 10, duration_ms=900)     # relapse restarts the clock
    assert states(ev, NOON + minutes(12)) == {"": "ALERT"}
    add_calls(NOON + minutes(14), 10, duration_ms=100)
    assert states(ev, NOON + minutes(17)) == {"": "ALERT"}  # clear since +17
    add_calls(NOON + minutes(21), 10, duration_ms=100)
    assert states(ev, NOON + minutes(24)) == {"": "ALERT"}  # 7 min clear
    add_calls(NOON + minutes(26), 10, duration_ms=100)
    assert states(ev, NOON + minutes(28)) == {"": "OK"}  # 11 min clear
    rows = store.query(f"SELECT PreviousState, State FROM {store.database}.{ALERTS_TABLE} "
                       "ORDER BY Timestamp")
    assert list(zip(rows.PreviousState, rows.State)) == [("OK", "ALERT"), ("ALERT", "OK")]
    # A restarted evaluator picks the state up from the table instead of firing again.
    assert evaluator(rule).states() == {("lat", ""): "OK"}


def test_no_data_state_when_calls_stop(evaluator, add_calls):
    ev = evaluator({"name": "err", "kind": "error_rate", "alert": 0.5, "min_calls": 1,
                    "window": "5m", "lag": 0, "resolve_after": "10m"})
    add_calls(NOON - minutes(2), 10, status="Error")
    assert states(ev, NOON) == {"": "ALERT"}
    assert states(ev, NOON + minutes(8)) == {"": "ALERT"}  # silent, but held
    transitions = ev.evaluate(NOON + minutes(19))
    assert [(t.previous, t.state) for t in transitions] == [("ALERT", "NO_DATA")]
    add_calls(NOON + minutes(20), 10)
    assert states(ev, NOON + minutes(22)) == {"": "OK"}  # from NO_DATA at once


def test_a_restart_does_not_fire_an_open_alert_again(store, evaluator, add_calls):
    rule = {"name": "lat", "kind": "latency", "alert": 500}
    add_calls(NOON - minutes(5), 10, duration_ms=900)
    assert len(evaluator(rule).evaluate(NOON)) == 1
    assert evaluator(rule).evaluate(NOON + minutes(1)) == []
