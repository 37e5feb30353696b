"""The listeners started together, /healthz, /readyz, /metrics, and JSON logs."""

from __future__ import annotations

import json
import logging
import threading

import requests
from prometheus_client.parser import text_string_to_metric_families
from test_native import GoneStore
from test_otlp_http import json_request

from infersight_collector.ops import JsonFormatter, Metrics, create_ops_server
from infersight_collector.pipeline import Pipeline
from infersight_collector.receivers import Receivers, ReceiverSettings
from infersight_collector.spool import Spool


def samples(base: str) -> dict[tuple, float]:
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_health_readiness_and_metrics_follow_the_traffic(store, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("sk-1 = shop\n")
    pipeline = Pipeline(store, spool=Spool(str(tmp_path / "spool"), 1 << 24),
                        insert_interval_s=0).start()
    receivers = Receivers(pipeline, store, ReceiverSettings(
        host="127.0.0.1", grpc_port=0, http_port=0, metrics_port=0, api_keys_file=str(keys)))
    base = f"http://127.0.0.1:{receivers.ops.server_address[1]}"
    url = f"http://127.0.0.1:{receivers.http.server_address[1]}/v1/traces"
    try:
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
        auth = {"Authorization": "Bearer sk-1"}
        body = json_request()
        spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
        spans.append(dict(spans[0], spanId="00", name="bad id"))
        assert requests.post(url, json=body, headers=auth, timeout=10).status_code == 200
        assert requests.post(url, json=body, timeout=10).status_code == 401
        assert requests.post(url, data=b"{", headers={**auth, "Content-Type": "application/json"},
                             timeout=10).status_code == 400
        got = samples(base)
        assert got[("infersight_received_spans_total", (("transport", "http"),))] == 2
        assert got[("infersight_accepted_spans_total", (("transport", "http"),))] == 1
        assert got[("infersight_rejected_spans_total", (("reason", "invalid_id"),))] == 1
        for reason in ("unauthenticated", "malformed"):
            key = ("infersight_rejected_requests_total", (("reason", reason), ("transport", "http")))
            assert got[key] == 1
        assert got[("infersight_write_latency_seconds_count", ())] == 1
        assert got[("infersight_queue_spans", ())] == 0
        assert got[("infersight_store_errors_total", ())] == 0
        assert pipeline.flush()
        got = samples(base)
        assert got[("infersight_written_spans", ())] == 1
        assert got[("infersight_spool_bytes", ())] == 0
        receivers.ready.clear()  # as on shutdown
        reply = requests.get(f"{base}/readyz", timeout=10)
        assert reply.status_code == 503 and "shutting down" in reply.text
    finally:
        receivers.stop(grace=5).wait()
        pipeline.stop()
    assert list(store.query(f"SELECT ProjectId FROM {store.database}.otel_traces").ProjectId) \
        == ["shop"]


def test_readiness_fails_while_the_store_does_not_answer(store):
    ready = threading.Event()
    ready.set()
    server = create_ops_server(Metrics(), GoneStore(store), ready, host="127.0.0.1", port=0)
    try:
        reply = requests.get(f"http://127.0.0.1:{server.server_address[1]}/readyz", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert reply.status_code == 503
    assert "store not answering: connection refused" in reply.text


def test_json_logs_carry_extra_fields():
    record = logging.LogRecord("infersight.x", logging.WARNING, __file__, 1, "wrote %d spans",
                               (3,), None)
    record.batch = 7
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "wrote 3 spans" and entry["level"] == "WARNING"
    assert entry["logger"] == "infersight.x" and entry["batch"] == 7


def test_native_decoding_is_counted_and_stamps_the_keys_project(store, tmp_path):
    """With native decoding (the embedded store's default) a protobuf request is kept as
    received and decoded by chDB at insert, with its API key's project."""
    import os

    import pytest
    from test_otlp_http import _protobuf_of

    from infersight_collector.decode import DEFAULT_LIMITS
    from infersight_collector.native import Native

    if os.environ.get("CLICKHOUSE_URL"):
        pytest.skip("native decoding is the embedded store's")
    keys = tmp_path / "keys"
    keys.write_text("sk-1 = shop\n")
    native = Native(store, DEFAULT_LIMITS, str(tmp_path / "native"))
    pipeline = Pipeline(store, spool=Spool(str(tmp_path / "spool"), 1 << 24),
                        insert_interval_s=0, native=native).start()
    receivers = Receivers(pipeline, store, ReceiverSettings(
        host="127.0.0.1", grpc_port=0, http_port=0, metrics_port=0, api_keys_file=str(keys)))
    base = f"http://127.0.0.1:{receivers.ops.server_address[1]}"
    url = f"http://127.0.0.1:{receivers.http.server_address[1]}/v1/traces"
    priced = json_request(span_id="eee19b7ec3c1b175")  # by its tracer: stored by chDB
    priced["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] += [
        {"key": "gen_ai.usage.cost", "value": {"doubleValue": 0.25}},
        {"key": "infersight.cost.source", "value": {"stringValue": "sdk"}}]
    try:
        for body in (priced, json_request()):  # the second, priced at ingest: by Python
            reply = requests.post(url, data=_protobuf_of(body), timeout=10, headers={
                "Authorization": "Bearer sk-1", "Content-Type": "application/x-protobuf"})
            assert reply.status_code == 200
        assert pipeline.flush()
        got = samples(base)
        assert got[("infersight_written_spans", ())] == 2
        assert got[("infersight_native_spans", ())] == 1
        assert got[("infersight_native_fallbacks", ())] == 0
    finally:
        receivers.stop(grace=5).wait()
        pipeline.stop()
    assert list(store.query(f"SELECT ProjectId FROM {store.database}.otel_traces").ProjectId) \
        == ["shop", "shop"]
