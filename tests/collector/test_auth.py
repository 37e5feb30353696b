"""API keys: the keys file, and OTLP/HTTP refusing bad keys and stamping the key's project."""

from __future__ import annotations

import pytest
import requests
from test_otlp_http import http_server, json_request, rows

from infersight_collector.auth import ApiKeys, Unauthenticated
from infersight_collector.pipeline import Pipeline


def test_keys_file_maps_keys_to_projects(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# keys\n\nsk-1 = checkout  # the shop\nsk-2=search\n")
    keys = ApiKeys.load(path)
    assert len(keys) == 2
    assert keys.project_for("Bearer sk-1") == "checkout"
    assert keys.project_for("bearer  sk-2 ") == "search"
    for bad, fragment in ((None, "missing API key"), ("sk-1", "Bearer <key>"),
                          ("Bearer ", "Bearer <key>"), ("Bearer sk-3", "unknown API key")):
        with pytest.raises(Unauthenticated, match=fragment):
            keys.project_for(bad)


@pytest.mark.parametrize("text, fragment", [("sk-1 checkout\n", ":1: expected `key = project`"),
                                            ("# nothing\n", "no API keys")])
def test_malformed_keys_file_says_where(tmp_path, text, fragment):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError, match=fragment):
        ApiKeys.load(path)


def test_http_refuses_bad_keys_and_stamps_the_project(store):
    pipeline = Pipeline(store).start()
    keys = ApiKeys({"sk-alpha": "alpha"})
    body = json_request()
    body["resourceSpans"][0]["resource"]["attributes"].append(
        {"key": "infersight.project.id", "value": {"stringValue": "spoofed"}})
    try:
        with http_server(pipeline, api_keys=keys) as url:
            reply = requests.post(url, json=body, timeout=10)
            assert reply.status_code == 401 and "missing API key" in reply.json()["message"]
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
            reply = requests.post(url, json=body, headers={"Authorization": "Bearer sk-x"},
                                  timeout=10)
            assert reply.status_code == 401 and "unknown API key" in reply.json()["message"]
            reply = requests.post(url, json=body, headers={"Authorization": "Bearer sk-alpha"},
                                  timeout=10)
            assert reply.status_code == 200
    finally:
        pipeline.stop()
    got = rows(store)
    assert list(got.ProjectId) == ["alpha"]
    assert got.iloc[0].ResourceAttributes["infersight.project.id"] == "alpha"


def test_without_keys_the_client_project_is_kept(http_collector, store):
    body = json_request()
    body["resourceSpans"][0]["resource"]["attributes"].append(
        {"key": "infersight.project.id", "value": {"stringValue": "mine"}})
    assert requests.post(http_collector.url, json=body, timeout=10).status_code == 200
    assert list(rows(store).ProjectId) == ["mine"]
