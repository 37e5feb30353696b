"""The collector's OTLP/gRPC receiver, fed by the real OTel SDK and OTLP exporter."""

from __future__ import annotations

import time

import grpc
import pandas as pd
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from infersight_collector.otlp_grpc import SERVICE

EXPORT = f"/{SERVICE}/Export"


def spans_table(store):
    return store.query(f"SELECT * FROM {store.database}.otel_traces ORDER BY SpanName")


def exporting_provider(endpoint: str, service: str = "checkout") -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True)))
    return provider


def export_raw(endpoint: str, payload: bytes) -> ExportTraceServiceResponse:
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None,
                                   response_deserializer=ExportTraceServiceResponse.FromString)
        return call(payload, timeout=10)


def test_spans_from_the_otlp_exporter_are_stored_with_typed_ai_columns(collector, store):
    tracer = exporting_provider(collector.endpoint).get_tracer("test-scope", "1.2")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT,
                                          attributes={
                                              "gen_ai.operation.name": "chat",
                                              "gen_ai.provider.name": "openai",
                                              "gen_ai.request.model": "gpt-4o-mini",
                                              "gen_ai.usage.input_tokens": 1200,
                                              "gen_ai.usage.output_tokens": 34,
                                              "gen_ai.usage.cost": 3.75e-06,
                                              "infersight.confidence": 0.82,
                                              "infersight.feature": "search",
                                              "gen_ai.response.finish_reasons": ["stop"],
                                              "flag": True,
                                          }) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
            child.add_event("retry", {"attempt": 2})
    rows = spans_table(store)
    assert len(rows) == 2
    chat, parent = rows.iloc[0], rows.iloc[1]
    assert chat.ServiceName == "checkout"
    assert chat.ScopeName == "test-scope" and chat.ScopeVersion == "1.2"
    assert chat.SpanKind == "Client" and parent.SpanKind == "Server"
    assert chat.ParentSpanId == parent.SpanId and chat.TraceId == parent.TraceId
    assert len(chat.TraceId) == 32 and len(chat.SpanId) == 16
    assert chat.StatusCode == "Error" and chat.StatusMessage == "boom"
    assert chat.Duration > 0
    assert list(chat["Events.Name"]) == ["retry"]
    assert chat.SpanAttributes["gen_ai.response.finish_reasons"] == '["stop"]'
    assert chat.SpanAttributes["flag"] == "true"
    # typed columns computed by ClickHouse from the attributes
    assert chat.Operation == "chat" and chat.Provider == "openai"
    assert chat.RequestModel == "gpt-4o-mini" and chat.Feature == "search"
    assert chat.InputTokens == 1200 and chat.OutputTokens == 34
    assert chat.CostUsd == pytest.approx(3.75e-06)
    assert chat.Confidence == pytest.approx(0.82)
    assert parent.Operation == "" and parent.CostUsd == 0
    assert pd.isna(parent.Confidence)  # NULL: no confidence, not zero


def test_malformed_request_is_rejected_and_the_next_batch_lands(collector, store):
    with pytest.raises(grpc.RpcError) as raised:
        export_raw(collector.endpoint, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed ExportTraceServiceRequest" in raised.value.details()

    provider = exporting_provider(collector.endpoint)
    with provider.get_tracer("t").start_as_current_span("after-garbage"):
        pass
    assert list(spans_table(store).SpanName) == ["after-garbage"]


def test_span_with_invalid_ids_is_rejected_alone_with_partial_success(collector, store):
    start = time.time_ns()  # within the table's retention
    good = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="good",
                start_time_unix_nano=start, end_time_unix_nano=start + 500_000_000)
    bad = Span(trace_id=b"\x01" * 3, span_id=b"\x02" * 8, name="bad")
    request = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(scope_spans=[ScopeSpans(spans=[good, bad])])])
    response = export_raw(collector.endpoint, request.SerializeToString())
    assert response.partial_success.rejected_spans == 1
    assert "'bad'" in response.partial_success.error_message
    rows = spans_table(store)
    assert list(rows.SpanName) == ["good"]
    assert rows.Duration[0] == 500_000_000


def test_exporter_sees_success(collector):
    exporter = OTLPSpanExporter(endpoint=f"http://{collector.endpoint}", insecure=True)
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("x")
    span.end()
    assert exporter.export([span]) == SpanExportResult.SUCCESS
