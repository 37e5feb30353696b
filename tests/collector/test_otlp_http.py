"""The OTLP/HTTP receiver, fed by the real OTel SDK and OTLP/HTTP exporter and by raw requests."""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time

import pytest
import requests
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from infersight_collector.otlp_http import create_http_server
from infersight_collector.pipeline import Pipeline

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACE_ID = "5b8efff798038103d269b633813fc60c"
NOW_NS = time.time_ns()  # older spans would fall out of the table's retention


@contextlib.contextmanager
def http_server(pipeline, **kwargs):
    server = create_http_server(pipeline, "127.0.0.1", 0, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def rows(store):
    return store.query(f"SELECT * FROM {store.database}.otel_traces ORDER BY SpanName")


def json_request(span_id="eee19b7ec3c1b174", trace_id=TRACE_ID, name="chat gpt-4o-mini"):
    """An OTLP/JSON body as the spec's example writes it: hex ids, camelCase, int enums,
    int64 as strings."""
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "manual", "version": "1.0"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "parentSpanId": "",
            "name": name, "kind": 3,
            "startTimeUnixNano": str(NOW_NS), "endTimeUnixNano": str(NOW_NS + 250_000_000),
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1000"}},
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 20}},
                {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
            ],
            "status": {"code": 2, "message": "boom"},
        }]}],
    }]}


def test_spans_from_the_otlp_http_exporter_are_stored(http_collector, store):
    for compression in (Compression.NoCompression, Compression.Gzip):
        provider = TracerProvider(resource=Resource.create({"service.name": "web"}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=http_collector.url, compression=compression)))
        with provider.get_tracer("t").start_as_current_span(
                f"chat {compression.value}", attributes={"gen_ai.provider.name": "openai",
                                                         "gen_ai.usage.input_tokens": 7}):
            pass
        provider.shutdown()
    got = rows(store)
    assert sorted(got.SpanName) == ["chat gzip", "chat none"]
    assert set(got.ServiceName) == {"web"}
    assert list(got.Provider) == ["openai", "openai"] and list(got.InputTokens) == [7, 7]


def test_json_body_with_hex_ids_is_stored_and_answered_in_json(http_collector, store):
    reply = requests.post(http_collector.url, json=json_request(), timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json() == {}
    row = rows(store).iloc[0]
    assert row.TraceId == TRACE_ID and row.SpanId == "eee19b7ec3c1b174" and row.ParentSpanId == ""
    assert row.SpanKind == "Client" and row.StatusCode == "Error" and row.StatusMessage == "boom"
    assert row.Duration == 250_000_000 and row.ServiceName == "json-svc"
    assert row.InputTokens == 1000 and row.OutputTokens == 20
    assert row.SpanAttributes["tags"] == '["a"]'


def test_json_span_with_a_bad_id_is_rejected_alone(http_collector, store):
    body = json_request()
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(dict(spans[0], spanId="not-hex!", name="bad"))
    reply = requests.post(http_collector.url, json=body, timeout=10)
    assert reply.status_code == 200
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "span_id must be 8 bytes" in partial["errorMessage"]
    assert list(rows(store).SpanName) == ["chat gpt-4o-mini"]


def test_partial_success_in_a_protobuf_response(http_collector, store):
    good = json_request()
    request = ExportTraceServiceRequest()
    request.ParseFromString(_protobuf_of(good))
    request.resource_spans[0].scope_spans[0].spans.add(name="short id", span_id=b"\x01",
                                                       trace_id=b"\x02" * 16)
    reply = requests.post(http_collector.url, data=request.SerializeToString(),
                          headers=PROTOBUF, timeout=10)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(reply.content)
    assert response.partial_success.rejected_spans == 1
    assert "'short id'" in response.partial_success.error_message
    assert len(rows(store)) == 1


def _protobuf_of(json_body: dict) -> bytes:
    from infersight_collector.otlp_http import parse_json

    return parse_json(json.dumps(json_body).encode()).SerializeToString()


@pytest.mark.parametrize("body, headers, fragment", [
    (b"\x0a\xff\xff\xff", PROTOBUF, "malformed ExportTraceServiceRequest"),
    (b"{not json", {"Content-Type": "application/json"}, "body is not JSON"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5, "kind": "x"}]}]}]}',
     {"Content-Type": "application/json"}, "malformed OTLP/JSON request"),
    (b"[1, 2]", {"Content-Type": "application/json"}, "not an object"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x", "kind": Infinity}]}]}]}',
     {"Content-Type": "application/json"}, "not the OTLP JSON shape"),
])
def test_malformed_bodies_get_400_with_a_status_and_the_next_request_is_served(
        http_collector, store, body, headers, fragment):
    reply = requests.post(http_collector.url, data=body, headers=headers, timeout=10)
    assert reply.status_code == 400
    if headers["Content-Type"] == "application/json":
        message = reply.json()["message"]
    else:
        message = Status.FromString(reply.content).message
    assert fragment in message
    assert requests.post(http_collector.url, json=json_request(), timeout=10).status_code == 200
    assert len(rows(store)) == 1


def test_wrong_content_type_path_and_method(http_collector):
    reply = requests.post(http_collector.url, data=b"x", headers={"Content-Type": "text/plain"},
                          timeout=10)
    assert reply.status_code == 415 and "application/x-protobuf" in Status.FromString(
        reply.content).message
    reply = requests.post(http_collector.url, data=b"x", timeout=10,
                          headers={**PROTOBUF, "Content-Encoding": "br"})
    assert reply.status_code == 415
    assert requests.post(http_collector.url.replace("traces", "logs"), data=b"",
                         headers=PROTOBUF, timeout=10).status_code == 404
    reply = requests.get(http_collector.url, timeout=10)
    assert reply.status_code == 405 and reply.headers["Allow"] == "POST"


def test_oversized_and_gzip_bomb_bodies_get_413(store):
    pipeline = Pipeline(store).start()
    try:
        with http_server(pipeline, max_body_bytes=10_000) as url:
            reply = requests.post(url, data=b"\0" * 20_000, headers=PROTOBUF, timeout=10)
            assert reply.status_code == 413
            assert "20000 bytes is over the 10000 byte limit" in Status.FromString(
                reply.content).message
            bomb = gzip.compress(b"\0" * 5_000_000)  # 5 KB on the wire
            reply = requests.post(url, data=bomb, timeout=10,
                                  headers={**PROTOBUF, "Content-Encoding": "gzip"})
            assert reply.status_code == 413 and "inflates" in Status.FromString(
                reply.content).message
            reply = requests.post(url, data=b"not gzip", timeout=10,
                                  headers={**PROTOBUF, "Content-Encoding": "gzip"})
            assert reply.status_code == 400
            small = json.dumps(json_request()).encode()
            reply = requests.post(url, data=gzip.compress(small), timeout=10,
                                  headers={"Content-Type": "application/json",
                                           "Content-Encoding": "gzip"})
            assert reply.status_code == 200
    finally:
        pipeline.stop()
    assert len(rows(store)) == 1


def test_chunked_body_is_read(http_collector, store):
    body = json.dumps(json_request()).encode()
    reply = requests.post(http_collector.url, data=iter([body[:50], body[50:]]), timeout=10,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 200 and len(rows(store)) == 1


def test_overloaded_pipeline_answers_429_with_retry_after_and_keeps_nothing(store):
    pipeline = Pipeline(store, max_queued_spans=1)  # not started: the first batch stays queued
    with http_server(pipeline) as url:
        assert pipeline.submit(_decoded_one()).done() is False
        reply = requests.post(url, json=json_request(name="refused"), timeout=10)
        assert reply.status_code == 429
        assert int(reply.headers["Retry-After"]) >= 1
        assert "queue full" in reply.json()["message"]
        pipeline.start()
        pipeline.stop()
    assert "refused" not in set(rows(store).SpanName)


def _decoded_one():
    from infersight_collector.decode import decode_request

    return decode_request(ExportTraceServiceRequest.FromString(_protobuf_of(json_request()))).batch
