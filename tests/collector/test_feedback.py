"""Feedback over gRPC (SDK -> collector -> `feedback` table, joined to spans) and as JSON."""

from __future__ import annotations

import socket

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import infersight
from infersight.v1 import feedback_pb2, feedback_pb2_grpc
from infersight_collector.feedback import InvalidFeedback, add_feedback_service, record_feedback
from infersight_collector.otlp_grpc import create_server
from infersight_collector.pipeline import Pipeline

TRACE = "0af7651916cd43dd8448eb211c80319c"
JOINED = """
SELECT t.SpanName AS span, f.Score AS score, f.Label AS label, f.Comment AS comment,
       f.Correction AS correction, f.Source AS source
FROM {db}.feedback AS f INNER JOIN {db}.otel_traces AS t
  ON f.TraceId = t.TraceId AND f.SpanId = t.SpanId
"""


@pytest.fixture
def endpoint(store):
    """The collector's gRPC server as production wires it: OTLP and Feedback on one port."""
    pipeline = Pipeline(store).start()
    server, port = create_server(pipeline, "127.0.0.1", 0)
    add_feedback_service(server, store)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)
    pipeline.stop()


def feedback_rows(store):
    return store.query(f"SELECT * FROM {store.database}.feedback ORDER BY Timestamp")


def test_sdk_feedback_on_the_current_span_lands_joined_to_that_span(store, endpoint):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True)))
    with provider.get_tracer("t").start_as_current_span("answer question"):
        sent = infersight.feedback(score=0.0, label="hallucination", comment="made up a date",
                                   correction="1969", source="reviewer",
                                   endpoint=f"http://{endpoint}")
    assert sent.result(15)  # the feedback id
    rows = store.query(JOINED.format(db=store.database))
    assert rows.to_dict("records") == [{
        "span": "answer question", "score": 0.0, "label": "hallucination",
        "comment": "made up a date", "correction": "1969", "source": "reviewer"}]


def test_a_retried_call_with_the_same_feedback_id_is_stored_once(store, endpoint):
    request = feedback_pb2.RecordFeedbackRequest(trace_id=TRACE, label="correct",
                                                 feedback_id="fb-1")
    with grpc.insecure_channel(endpoint) as channel:
        stub = feedback_pb2_grpc.FeedbackStub(channel)
        assert stub.Record(request, timeout=10).feedback_id == "fb-1"
        assert stub.Record(request, timeout=10).feedback_id == "fb-1"
    rows = feedback_rows(store)
    assert list(rows.FeedbackId) == ["fb-1"] and rows.SpanId[0] == ""  # a whole-trace verdict


def test_invalid_feedback_is_refused_with_the_field_named(endpoint):
    with grpc.insecure_channel(endpoint) as channel:
        stub = feedback_pb2_grpc.FeedbackStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Record(feedback_pb2.RecordFeedbackRequest(trace_id="abc", score=1), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trace_id" in raised.value.details()


def test_json_feedback_is_validated_and_stored(store):
    got = record_feedback(store, {"trace_id": TRACE.upper(), "span_id": "00f067aa0ba902b7",
                                  "score": 4, "attributes": {"ui": "stars"}}, project="shop")
    row = feedback_rows(store).iloc[0]
    assert row.FeedbackId == got["feedback_id"] and row.TraceId == TRACE
    assert (row.Score, row.ProjectId, row.Attributes) == (4.0, "shop", {"ui": "stars"})
    for bad, field in [({"trace_id": TRACE}, "score, label"),
                       ({"trace_id": TRACE, "score": float("nan")}, "score"),
                       ({"trace_id": TRACE, "score": 1, "span_id": "xyz"}, "span_id"),
                       ({"trace_id": TRACE, "score": 1, "mood": "sad"}, "mood")]:
        with pytest.raises(InvalidFeedback, match=field):
            record_feedback(store, bad)
    assert len(feedback_rows(store)) == 1


def test_sdk_feedback_never_raises_into_the_app():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert infersight.feedback(score=1, endpoint=dead).result(5) is None  # no current span
    sent = infersight.feedback(score=1, trace_id=TRACE, endpoint=dead)
    assert sent.result(30) is None


def test_the_running_collector_takes_feedback_over_grpc_and_http_json(store):
    """`Receivers` is what `infersight serve` and `collector` start: both transports answer."""
    import json
    import urllib.error
    import urllib.request

    from infersight_collector.receivers import Receivers, ReceiverSettings

    pipeline = Pipeline(store).start()
    receivers = Receivers(pipeline, store, ReceiverSettings(
        host="127.0.0.1", grpc_port=0, http_port=0, metrics_port=0))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{receivers.grpc_port}") as channel:
            feedback_pb2_grpc.FeedbackStub(channel).Record(
                feedback_pb2.RecordFeedbackRequest(trace_id=TRACE, label="via-grpc"), timeout=10)
        url = f"http://127.0.0.1:{receivers.http.server_address[1]}/v1/feedback"

        def post(body: bytes) -> tuple[int, dict]:
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, answer = post(json.dumps({"trace_id": TRACE, "score": 1, "label": "via-http"})
                              .encode())
        assert status == 200 and answer["feedbackId"]
        status, answer = post(b'{"trace_id": "%s", "mood": "sad"}' % TRACE.encode())
        assert status == 400 and "mood" in answer["message"]
        status, answer = post(b"not json")
        assert status == 400 and "not JSON" in answer["message"]
    finally:
        receivers.stop(grace=1).wait(5)
        pipeline.stop()
    assert sorted(feedback_rows(store).Label) == ["via-grpc", "via-http"]
