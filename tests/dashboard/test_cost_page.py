"""The app and the cost page: callbacks called directly, and the app served by Flask's client."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import dash
import pytest

from infersight_dashboard.app import create_app, get_store, serve_dashboard, time_window


@pytest.fixture
def app(store):
    return create_app(store)


@pytest.fixture
def cost(app):
    # Dash loads the page modules when the app is built; import the one it loaded.
    from infersight_dashboard.pages import cost
    return cost


def _ago(**kw):
    return datetime.now(timezone.utc) - timedelta(**kw)


def test_time_window_maps_each_range_to_utc_instants():
    now = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
    assert time_window("15m", now) == (now - timedelta(minutes=15), now)
    assert time_window("7d", now) == (now - timedelta(days=7), now)
    assert time_window("junk", now) == (now - timedelta(hours=1), now)
    assert time_window(None, now) == (now - timedelta(hours=1), now)
    start, end = time_window("1h")
    assert end.tzinfo is not None and end - start == timedelta(hours=1)


def test_empty_store_shows_how_to_send_data(cost, app):
    figure, rows, empty_hidden, content_hidden = cost.update("1h", None)

    assert list(figure.data) == [] and rows == []
    assert (empty_hidden, content_hidden) == (False, True)
    assert "infersight demo" in str(cost.layout) and "infersight.instrument()" in str(cost.layout)


def test_cost_chart_and_table_show_each_feature(cost, add_calls):
    add_calls(_ago(minutes=10), n=2, feature="search", cost=0.25)
    add_calls(_ago(minutes=10), feature="summarize", request_model="claude-sonnet-4",
              response_model="", cost=1.5, status="Error")
    add_calls(_ago(minutes=5), operation="", feature="search", cost=9.0)

    figure, rows, empty_hidden, content_hidden = cost.update("1h", 3)

    assert (empty_hidden, content_hidden) == (True, False)
    assert {t.name: sum(t.y) for t in figure.data} == {"search": 0.5, "summarize": 1.5}
    assert all(t.type == "bar" for t in figure.data)
    assert [(r["feature"], r["model"], r["calls"], r["errors"], r["cost_usd"]) for r in rows] == [
        ("summarize", "claude-sonnet-4", 1, 1, 1.5),
        ("search", "gpt-4o-2024-08-06", 2, 0, 0.5),
    ]


def test_time_range_selects_the_spans_shown(cost, add_calls):
    add_calls(_ago(hours=3), feature="older")

    assert cost.update("1h", None)[1] == []
    assert [r["feature"] for r in cost.update("6h", None)[1]] == ["older"]


def test_every_app_gets_the_pages_and_their_callbacks(store):
    first, second = create_app(store), create_app(store)

    pages = [p for p in dash.page_registry.values() if p["path"] == "/"]
    assert [p["name"] for p in pages] == ["Cost"]
    assert get_store() is store
    for app in (second, first):
        client = app.server.test_client()
        assert client.get("/").status_code == 200
        layout = client.get("/_dash-layout")
        assert layout.status_code == 200 and "time-range" in layout.get_data(as_text=True)
        outputs = [d["output"] for d in client.get("/_dash-dependencies").get_json()]
        assert sum("cost-chart.figure" in o for o in outputs) == 1
        update = client.post("/_dash-update-component", json={
            "output": next(o for o in outputs if "cost-chart.figure" in o),
            "outputs": [{"id": "cost-chart", "property": "figure"},
                        {"id": "cost-table", "property": "data"},
                        {"id": "cost-empty", "property": "hidden"},
                        {"id": "cost-content", "property": "hidden"}],
            "inputs": [{"id": "time-range", "property": "value", "value": "1h"},
                       {"id": "cost-refresh", "property": "n_intervals", "value": None}],
            "changedPropIds": ["time-range.value"],
        })
        assert update.status_code == 200
        assert update.get_json()["response"]["cost-empty"]["hidden"] is False


def test_page_layout_renders_at_the_root_path(app):
    client = app.server.test_client()
    outputs = [d["output"] for d in client.get("/_dash-dependencies").get_json()]
    routed = client.post("/_dash-update-component", json={
        "output": next(o for o in outputs if "_pages_content.children" in o),
        "outputs": [{"id": "_pages_content", "property": "children"},
                    {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/"},
                   {"id": "_pages_location", "property": "search", "value": ""}],
        "changedPropIds": ["_pages_location.pathname"],
    })
    assert routed.status_code == 200
    assert "cost-chart" in routed.get_data(as_text=True)


def test_serve_dashboard_serves_an_app_built_in_the_main_thread(app):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Daemon: waitress has no stop from outside; the thread ends with the test process.
    threading.Thread(target=serve_dashboard, args=(app, "127.0.0.1", port), daemon=True).start()

    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=2) as r:
                assert r.status == 200 and b"time-range" in r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
