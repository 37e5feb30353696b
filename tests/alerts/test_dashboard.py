"""The Alerts page and the alert periods marked on charts, from transitions the evaluator
stored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import plotly.graph_objects as go
import pytest

from infersight_dashboard import queries
from infersight_dashboard.app import create_app
from infersight_dashboard.auth import Protection
from infersight_dashboard.components import mark_alert_periods

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


def ago(minutes: int) -> datetime:
    return NOW - timedelta(minutes=minutes)


@pytest.fixture
def alerted(evaluator, add_calls):
    """`slow` was in ALERT from 38 to 18 minutes ago; `fast` never left OK."""
    ev = evaluator({"name": "lat", "kind": "latency", "alert": 500, "window": "5m", "lag": 0,
                    "resolve_after": 0, "group_by": "feature",
                    "scope": {"model": "gpt-4o-2024-08-06"}})
    add_calls(ago(40), 10, feature="slow", duration_ms=900)
    add_calls(ago(40), 10, feature="fast", duration_ms=100)
    ev.evaluate(ago(38))
    add_calls(ago(20), 10, feature="slow", duration_ms=100)
    add_calls(ago(20), 10, feature="fast", duration_ms=100)
    ev.evaluate(ago(18))
    return ev


def test_alert_periods_cover_the_time_in_alert(store, alerted):
    periods = queries.alert_periods(store, ago(60), NOW)
    assert periods[["rule", "group", "state"]].values.tolist() == [["lat", "slow", "ALERT"]]
    assert (periods.start[0], periods.end[0]) == (ago(38), ago(18))
    clipped = queries.alert_periods(store, ago(30), NOW)
    assert (clipped.start[0], clipped.end[0]) == (ago(30), ago(18))
    assert queries.alert_periods(store, ago(60), NOW, kinds=queries.COST_ALERT_KINDS).empty
    figure = mark_alert_periods(go.Figure(), periods)
    (band,) = figure.layout.shapes
    assert (band.x0, band.x1, band.fillcolor) == (ago(38), ago(18), "#dc2626")


def test_the_alerts_page_lists_states_history_and_the_triggering_chart(store, alerted):
    create_app(store, Protection())
    from infersight_dashboard.pages import alerts

    current, history, none_hidden = alerts.update("", None)
    assert none_hidden
    assert [(r["group"], r["state"]) for r in current] == [("slow", "OK")]
    assert [(r["previous"], r["state"]) for r in history] == [("ALERT", "OK"), ("OK", "ALERT")]
    assert history[1]["value"] == pytest.approx(900) and history[1]["threshold"] == 500
    assert history[1]["chart"] == (
        "[Degradation](/degradation?feature=slow&model=gpt-4o-2024-08-06)")


def test_the_alerts_page_says_how_to_turn_alerts_on(store):
    create_app(store, Protection())
    from infersight_dashboard.pages import alerts

    assert alerts.update("", None) == ([], [], False)
