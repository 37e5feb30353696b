"""Fuzz both decoders (protobuf and OTLP/JSON) with a bounded budget: any input either decodes
into a batch or raises the decoder's own error, never anything else."""

from __future__ import annotations

import json

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_otlp_http import _protobuf_of, json_request

from infersight_collector.decode import decode_request
from infersight_collector.otlp_http import parse_json

BUDGET = settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
SEED = _protobuf_of(json_request())


def decode_protobuf(data: bytes) -> None:
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except DecodeError:
        return
    decoded = decode_request(request)
    assert decoded.accepted + decoded.rejected == sum(
        len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


@BUDGET
@given(st.binary(max_size=2048))
def test_protobuf_decoder_on_random_bytes(data):
    decode_protobuf(data)


@BUDGET
@given(st.integers(0, len(SEED) - 1), st.binary(min_size=1, max_size=8))
def test_protobuf_decoder_on_mutated_requests(at, junk):
    decode_protobuf(SEED[:at] + junk + SEED[at + len(junk):])


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)


@BUDGET
@given(st.sampled_from(["traceId", "spanId", "name", "kind", "attributes", "startTimeUnixNano",
                        "status", "links", "events"]), JSON_VALUES)
@example("kind", -7)  # found by this test: a negative enum indexed the kind names from the end
@example("kind", float("inf"))  # found by this test: protobuf raised OverflowError, not ValueError
def test_json_decoder_on_wrong_field_values(field, value):
    body = json_request()
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = value
    try:
        request = parse_json(json.dumps(body).encode())
    except ValueError:
        return
    decode_request(request)
