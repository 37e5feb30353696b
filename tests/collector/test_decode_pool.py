"""Decoding in worker processes gives what decoding in the receiving thread gives."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from infersight_collector.decode import Limits, content_token, decode_request
from infersight_collector.loadgen import export_requests, generate_spans


def requests() -> list[bytes]:
    """Realistic AI spans, then a hostile request: a bad id, an over-long value, a deep
    array, in a project."""
    now = datetime.now(timezone.utc)
    payloads = export_requests(generate_spans(300, now - timedelta(hours=1), now, seed=3), 100)
    hostile = ExportTraceServiceRequest.FromString(payloads[0])
    spans = hostile.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = b"\x01" * 3
    spans[1].attributes.add(key="long").value.string_value = "x" * 500
    deep = spans[2].attributes.add(key="deep").value
    for _ in range(12):
        deep = deep.array_value.values.add()
    deep.int_value = 7
    return payloads + [hostile.SerializeToString()]


@pytest.mark.parametrize("project", [None, "acme"])
def test_pool_decodes_as_the_thread_does(_decode_pool, project):
    limits = Limits(max_value_chars=100)
    for payload in requests():
        expected = decode_request(ExportTraceServiceRequest.FromString(payload), limits, project)
        got, token = _decode_pool.decode(payload, limits, project)
        assert got.batch.equals(expected.batch)
        assert token == content_token(expected.batch)
        assert (got.rejected, got.errors) == (expected.rejected, expected.errors)
    assert got.rejected == 1 and "trace_id" in got.errors[0]


def test_a_malformed_payload_raises_the_parser_error(_decode_pool):
    with pytest.raises(DecodeError):
        _decode_pool.decode(b"\x0a\xff\xff\xff\xff\x0f garbage", Limits(), None)
    assert _decode_pool.decode(requests()[0], Limits(), None)[0].accepted == 100
