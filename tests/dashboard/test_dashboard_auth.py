"""Optional protection, through Flask's test client, and the WSGI entry point in its own process."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from infersight_dashboard.app import create_app
from infersight_dashboard.auth import Protection, from_env


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def client(store):
    protection = Protection(token="t0ken", users={"alice": "pw1", "bob": "s:cret"})
    return create_app(store, protection).server.test_client()


@pytest.mark.parametrize("path", ["/", "/cost", "/_dash-layout", "/_dash-dependencies"])
def test_without_credentials_every_path_asks_for_them(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="Infersight"')


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer t0ken"}, _basic("alice", "pw1"), _basic("bob", "s:cret"),
    _basic("anyone", "t0ken")])
def test_the_token_or_a_user_gets_in(client, headers):
    assert client.get("/_dash-layout", headers=headers).status_code == 200


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}, _basic("alice", "pw2"),
    _basic("mallory", "pw1"), {"Authorization": "Basic !!notbase64"},
    {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    {"Authorization": "Token t0ken"}])
def test_wrong_credentials_are_refused(client, headers):
    assert client.get("/_dash-layout", headers=headers).status_code == 401


def test_settings_come_from_the_environment_and_default_to_open(store):
    assert not from_env({}).enabled
    assert from_env({"INFERSIGHT_DASHBOARD_USERS": "a:1, b:x:y"}).users == {"a": "1", "b": "x:y"}
    assert from_env({"INFERSIGHT_DASHBOARD_TOKEN": " t "}).token == "t"
    with pytest.raises(ValueError, match="user:password"):
        from_env({"INFERSIGHT_DASHBOARD_USERS": "alice"})
    open_app = create_app(store, Protection()).server.test_client()
    assert open_app.get("/_dash-layout").status_code == 200


def test_wsgi_module_serves_the_dashboard_for_gunicorn(tmp_path):
    # Its own process: it opens its own embedded store, and chDB allows one per process.
    code = ("from infersight_dashboard.wsgi import server\n"
            "c = server.test_client()\n"
            "print(c.get('/_dash-layout').status_code, c.get('/cost').status_code)\n")
    env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_URL"}
    env.update(INFERSIGHT_DATA_DIR=str(tmp_path / "data"), INFERSIGHT_DASHBOARD_TOKEN="")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "200"]


def test_a_user_bound_to_a_project_sees_only_that_project(store, add_calls):
    """The scope is applied where every query gets its parameters, inside the real request
    handling (before_request), so no filter value or crafted callback reaches other projects."""
    from datetime import datetime, timedelta, timezone

    from infersight_dashboard import queries
    from infersight_dashboard.filters import Filters

    t0 = datetime.now(timezone.utc) - timedelta(minutes=30)
    add_calls(t0, 2, project="shop", feature="search", trace_id="aa" * 16)
    add_calls(t0, 3, project="ads", feature="bidding", trace_id="bb" * 16)
    window = (t0 - timedelta(minutes=1), t0 + timedelta(minutes=1))
    protection = Protection(token="t0ken", users={"alice": "pw1", "root": "pw2"},
                            projects={"alice": "shop"})
    server = create_app(store, protection).server

    def seen(headers):
        with server.test_request_context("/_dash-update-component", headers=headers):
            assert server.preprocess_request() is None  # signed in
            asked_for_ads = Filters(project="ads")
            return (set(queries.feature_model_table(store, *window, asked_for_ads).feature),
                    set(queries.filter_options(store, *window).value),
                    len(queries.trace_spans(store, *window, "bb" * 16)))

    features, options, ads_trace = seen(_basic("alice", "pw1"))
    assert features == {"search"}
    assert "ads" not in options and "bidding" not in options and "shop" in options
    assert ads_trace == 0
    features, options, ads_trace = seen(_basic("root", "pw2"))  # a user bound to no project
    assert (features, ads_trace) == ({"bidding"}, 3) and {"ads", "shop"} <= options
    assert {"ads", "shop"} <= seen({"Authorization": "Bearer t0ken"})[1]


def test_project_bindings_come_from_the_environment():
    env = {"INFERSIGHT_DASHBOARD_USERS": "alice:pw1,bob:pw2",
           "INFERSIGHT_DASHBOARD_PROJECTS": "alice=shop"}
    assert from_env(env).projects == {"alice": "shop"}
    with pytest.raises(ValueError, match="user=project"):
        from_env({**env, "INFERSIGHT_DASHBOARD_PROJECTS": "carol=shop"})
