"""The app: pages and callbacks per app, the URL <-> filters sync, served by Flask and waitress."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import dash
import pandas as pd
import pytest
from dash import no_update

from infersight_dashboard.app import (
    create_app, filter_choices, get_store, refresh_interval, serve_dashboard, sync_url,
)
from infersight_dashboard.auth import Protection
from infersight_dashboard.filters import FILTER_KEYS, Filters, View, time_window

PATHS = ["/", "/cost", "/degradation", "/traces"]


@pytest.fixture
def app(store):
    return create_app(store, Protection())


def test_time_window_maps_each_range_to_utc_instants():
    now = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
    assert time_window("15m", now) == (now - timedelta(minutes=15), now)
    assert time_window("7d", now) == (now - timedelta(days=7), now)
    assert time_window("junk", now) == (now - timedelta(hours=1), now)
    assert time_window(None, now) == (now - timedelta(hours=1), now)
    start, end = time_window("1h")
    assert end.tzinfo is not None and end - start == timedelta(hours=1)
    # A window ends at the first whole minute from now on, so it holds every call up to now.
    assert time_window("1h", now + timedelta(seconds=1, microseconds=5)) == (
        now + timedelta(minutes=1) - timedelta(hours=1), now + timedelta(minutes=1))
    assert time_window("1h", now + timedelta(seconds=59.999)) == time_window(
        "1h", now + timedelta(minutes=1))
    assert end >= datetime.now(timezone.utc) - timedelta(seconds=1) and end.second == 0


def test_view_round_trips_through_the_query_string():
    view = View(range="24h", refresh="off", filters=Filters(feature="o'brien & co", model="m"),
                extra=(("trace", "abc"),))
    assert View.from_query(view.to_query()) == view
    assert View().to_query() == ""
    junk = View.from_query("?range=99y&refresh=never&feature=x&zzz=1")
    assert (junk.range, junk.refresh, junk.filters.feature, junk.get("zzz")) == ("1h", "30s",
                                                                                 "x", "1")


def test_opening_a_linked_url_sets_the_controls_and_the_nav_keeps_the_filters():
    out = sync_url("url", "?range=24h&feature=search&trace=abc", "1h", "30s",
                   [None] * len(FILTER_KEYS), PATHS)

    search, range_key, refresh, *rest = out
    filters, hrefs = rest[:len(FILTER_KEYS)], rest[len(FILTER_KEYS):]
    assert search is no_update
    assert (range_key, refresh) == ("24h", "30s")
    assert dict(zip(FILTER_KEYS, filters))["feature"] == "search"
    assert all(v is None for k, v in zip(FILTER_KEYS, filters) if k != "feature")
    assert hrefs == [p + "?range=24h&feature=search" for p in PATHS]


def test_changing_a_control_writes_the_url_and_keeps_page_parameters():
    values = {k: None for k in FILTER_KEYS} | {"model": "gpt-4o-mini"}
    out = sync_url("filter-model", "?range=24h&trace=abc", "6h", "off", list(values.values()),
                   PATHS)

    search, *controls = out[:3 + len(FILTER_KEYS)]
    assert View.from_query(search) == View(range="6h", refresh="off",
                                           filters=Filters(model="gpt-4o-mini"),
                                           extra=(("trace", "abc"),))
    assert all(c is no_update for c in controls)
    assert out[-1] == "/traces?range=6h&refresh=off&model=gpt-4o-mini"


def test_filter_choices_list_values_by_calls_and_keep_a_linked_value():
    options = pd.DataFrame({"key": ["feature", "feature", "model"],
                            "value": ["search", "chat", "gpt-4o"], "calls": [1200, 3, 7]})

    choices = dict(zip(FILTER_KEYS, filter_choices(options, {"feature": "gone"})))

    assert [c["value"] for c in choices["feature"]] == ["gone", "search", "chat"]
    assert choices["feature"][1]["label"] == "search (1,200)"
    assert [c["value"] for c in choices["model"]] == ["gpt-4o"]
    assert choices["service"] == []


def test_refresh_choice_sets_the_timer():
    assert refresh_interval("10s") == (10_000, False)
    assert refresh_interval("off")[1] is True
    assert refresh_interval("junk") == (30_000, False)


def test_every_app_gets_the_pages_and_their_callbacks(store):
    first, second = create_app(store, Protection()), create_app(store, Protection())

    assert {p["path"]: p["name"] for p in dash.page_registry.values()} == {
        "/": "Overview", "/cost": "Cost", "/degradation": "Degradation", "/traces": "Traces",
        "/alerts": "Alerts"}
    assert get_store() is store
    for app in (second, first):
        client = app.server.test_client()
        assert client.get("/").status_code == 200
        layout = client.get("/_dash-layout")
        assert layout.status_code == 200 and "filter-feature" in layout.get_data(as_text=True)
        outputs = [d["output"] for d in client.get("/_dash-dependencies").get_json()]
        assert sum("cost-chart.figure" in o for o in outputs) == 1
        # The header's sync, and the Degradation page's controls (allow_duplicate: "@hash").
        assert sorted("@" in o for o in outputs if "url.search" in o) == [False, True]
        update = client.post("/_dash-update-component", json={
            "output": next(o for o in outputs if "overview-kpis.children" in o),
            "outputs": [{"id": i, "property": p} for i, p in [
                ("overview-kpis", "children"), ("overview-features", "figure"),
                ("overview-models", "figure"), ("overview-empty", "hidden"),
                ("overview-content", "hidden")]],
            "inputs": [{"id": "url", "property": "search", "value": "?range=15m"},
                       {"id": "refresh-timer", "property": "n_intervals", "value": None}],
            "changedPropIds": ["url.search"],
        })
        assert update.status_code == 200
        assert update.get_json()["response"]["overview-empty"]["hidden"] is False


@pytest.mark.parametrize("path, marker", [
    ("/", "overview-kpis"), ("/cost", "cost-chart"), ("/degradation", "degradation-model"),
    ("/traces", "traces-table")])
def test_each_page_renders_at_its_path(app, path, marker):
    client = app.server.test_client()
    outputs = [d["output"] for d in client.get("/_dash-dependencies").get_json()]
    routed = client.post("/_dash-update-component", json={
        "output": next(o for o in outputs if "_pages_content.children" in o),
        "outputs": [{"id": "_pages_content", "property": "children"},
                    {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                   {"id": "_pages_location", "property": "search",
                    "value": "?range=7d&trace=ab12"}],
        "changedPropIds": ["_pages_location.pathname"],
    })
    body = routed.get_data(as_text=True)
    assert routed.status_code == 200 and marker in body
    # A page parameter in the URL reaches the page: the Traces page opens that trace.
    assert ('"value":"ab12"' in body) == (path == "/traces")


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
