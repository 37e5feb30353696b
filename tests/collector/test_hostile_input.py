"""Hostile input gets a clear error or a bounded, documented treatment, and the next request
is served."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from test_otlp_grpc_spec import call
from test_otlp_http import _protobuf_of, json_request, rows

from infersight_collector import decode as D


def request_with(attributes=(), span_id=b"\x01" * 8) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest.FromString(_protobuf_of(json_request()))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.span_id = span_id
    span.attributes.extend(attributes)
    return request


def nested(depth: int) -> AnyValue:
    value = AnyValue(string_value="leaf")
    for _ in range(depth):
        value = AnyValue(array_value={"values": [value]})
    return value


def test_long_values_and_keys_are_cut_with_a_marker():
    limits = D.Limits(max_value_chars=100, max_key_chars=20)
    request = request_with([KeyValue(key="big", value=AnyValue(string_value="x" * 1000)),
                            KeyValue(key="k" * 50, value=AnyValue(string_value="v"))])
    attrs = dict(D.decode_request(request, limits).batch.column("SpanAttributes")[0].as_py())
    assert attrs["big"] == "x" * 100 + D.TRUNCATED_MARKER.format(n=900)
    assert attrs["k" * 20 + D.TRUNCATED_MARKER.format(n=30)] == "v"


def test_attribute_count_is_capped_and_the_rest_counted():
    many = [KeyValue(key=f"key{i}", value=AnyValue(int_value=i)) for i in range(10_000)]
    decoded = D.decode_request(request_with(many), D.Limits(max_attributes=50))
    attrs = dict(decoded.batch.column("SpanAttributes")[0].as_py())
    assert attrs[D.DROPPED_ATTRIBUTES] == str(10_004 - 50)
    assert len(attrs) < 60  # 50 sent, the marker, and what the collector derives (cost, ...)


def test_deep_nesting_is_bounded():
    # (past about 50 levels the protobuf parser itself refuses the request: a DecodeError)
    decoded = D.decode_request(request_with([KeyValue(key="deep", value=nested(20))]),
                               D.Limits(max_depth=3))
    value = dict(decoded.batch.column("SpanAttributes")[0].as_py())["deep"]
    assert value == '[[["' + D.NESTED_MARKER + '"]]]'


def test_invalid_ids_are_rejected_per_span():
    request = request_with(span_id=b"\0" * 8)
    request.resource_spans[0].scope_spans[0].spans.add(
        name="ok", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    request.resource_spans[0].scope_spans[0].spans.add(
        name="bad parent", trace_id=b"\x01" * 16, span_id=b"\x03" * 8, parent_span_id=b"\x04")
    decoded = D.decode_request(request)
    assert decoded.accepted == 1 and decoded.rejected == 2
    assert "not all zero" in decoded.errors[0] and "parent_span_id" in decoded.errors[1]


def test_invalid_utf8_gets_a_clear_error_and_the_next_request_lands(collector, store):
    payload = request_with([KeyValue(key="name", value=AnyValue(string_value="MARK"))])
    raw = payload.SerializeToString().replace(b"MARK", b"M\xffRK")
    with grpc.insecure_channel(collector.endpoint) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            call(channel, raw)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "UTF-8" in raised.value.details()
        call(channel, _protobuf_of(json_request()))
    assert len(rows(store)) == 1


def test_invalid_utf8_json_body_gets_400(http_collector):
    import requests

    reply = requests.post(http_collector.url, data=b'{"resourceSpans": "\xff"}',
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert reply.status_code == 400 and "not JSON" in reply.json()["message"]
