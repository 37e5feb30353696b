"""The SDK's own OTLP encoding gives the request the OTel encoder gives, for spans of every shape."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as otel_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from infersight import _otlp, _state


def _provider(memory: InMemorySpanExporter, resource: dict, limits: SpanLimits | None = None,
              schema_url: str | None = None):
    provider = TracerProvider(resource=Resource.create(resource, schema_url), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider


def _varied_spans() -> list:
    memory = InMemorySpanExporter()
    one = _provider(memory, {"service.name": "a", "deployment.environment": "prod"})
    # Equal resource, distinct object: the OTel encoder groups them together.
    same = _provider(memory, {"service.name": "a", "deployment.environment": "prod"})
    small = _provider(memory, {"service.name": "b"},
                      SpanLimits(max_span_attributes=3, max_events=1, max_links=1),
                      schema_url="https://opentelemetry.io/schemas/1.4")
    plain = one.get_tracer("plain")
    scoped = one.get_tracer("scoped", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.2",
                            attributes={"scope.flag": True})
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "value"), ("other", "x")]))
    local = SpanContext(0xABCDEF, 0x42, is_remote=False)
    attributes = {
        "gen_ai.operation.name": "chat", "empty": "", "unicode": "Grüße 🚀",
        "long": "x" * 300, "yes": True, "no": False, "zero": 0, "negative": -7,
        "big": 2**62, "int64.min": -(2**63), "past.int64": 2**64, "cost": 6.54e-05, "float.zero": 0.0,
        "nan.ish": -1.5, "finish_reasons": ("stop", "length"), "ints": [1, -2, 3],
        "floats": [0.5, 2.0], "bools": [True, False], "empty.list": [],
    }
    with plain.start_as_current_span("root", kind=SpanKind.SERVER, attributes=attributes) as root:
        root.add_event("first", {"at": 1, "what": "x"}, timestamp=1_700_000_000_000_000_000)
        root.add_event("bare")
        with scoped.start_as_current_span("child", kind=SpanKind.CLIENT,
                                          links=[Link(local, {"why": "batch"}), Link(remote)]):
            pass
        root.set_status(Status(StatusCode.ERROR, "upstream said no"))
    with plain.start_as_current_span(
            "from remote", kind=SpanKind.CONSUMER,
            context=trace.set_span_in_context(trace.NonRecordingSpan(remote))) as span:
        span.set_status(Status(StatusCode.OK))
    for kind in (SpanKind.INTERNAL, SpanKind.PRODUCER):
        same.get_tracer("plain").start_span("k", kind=kind).end()
    limited = small.get_tracer("limits").start_span(
        "over limits", attributes={f"a{i}": i for i in range(6)},
        links=[Link(local), Link(remote)])
    limited.add_event("e1")
    limited.add_event("e2")
    limited.end()
    token = context.attach(context.Context())
    try:
        small.get_tracer("").start_span("").end()  # empty names
    finally:
        context.detach(token)
    return list(memory.get_finished_spans())


def test_encoding_equals_the_otel_encoders_request_for_spans_of_every_shape():
    spans = _varied_spans()
    assert len(spans) == 7
    ours = ExportTraceServiceRequest.FromString(_otlp.encode_spans(spans))
    assert ours == otel_encode(spans)
    # The shapes the spans were built to have are really there.
    assert len(ours.resource_spans) == 2  # equal resources folded, as the OTel encoder does
    assert [rs.schema_url for rs in ours.resource_spans] == [
        "", "https://opentelemetry.io/schemas/1.4"]
    limited = [s for rs in ours.resource_spans for ss in rs.scope_spans for s in ss.spans
               if s.name == "over limits"][0]
    assert (limited.dropped_attributes_count, limited.dropped_events_count,
            limited.dropped_links_count) == (3, 1, 1)


def test_encoding_equals_otel_for_instrumented_model_calls(fake_openai):
    import infersight
    from openai import OpenAI

    memory = InMemorySpanExporter()
    provider = _provider(memory, {"service.name": "bot"})
    infersight.instrument(tracer_provider=provider)
    try:
        client = OpenAI(api_key="k", base_url=fake_openai.base_url, max_retries=0)
        with infersight.feature("search"):
            client.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{"role": "user", "content": "hi"}])
            for _ in client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                    stream=True, stream_options={"include_usage": True}):
                pass
    finally:
        infersight.uninstrument()
    spans = memory.get_finished_spans()
    assert len(spans) == 2
    assert ExportTraceServiceRequest.FromString(_otlp.encode_spans(spans)) == otel_encode(spans)


def test_a_key_whose_value_changes_type_or_value_is_encoded_anew():
    """A key's last encoding is reused only for an equal value of the same type, whatever
    the key held before: each span is encoded as the OTel encoder encodes it."""
    memory = InMemorySpanExporter()
    tracer = _provider(memory, {"service.name": "types"}).get_tracer("t")
    for value in (True, 1, "1", 1, True, ("1",), (1,), (True,), ("1",), ("1", "2"), 1.0, 1,
                  "1", "one", "one", False, 0, 0.0, "", ("",)):
        tracer.start_span("call", attributes={"flag": value}).end()
        tracer.start_span("call", attributes={"flag": value}).end()  # the repeat reuses it
    spans = memory.get_finished_spans()
    assert ExportTraceServiceRequest.FromString(_otlp.encode_spans(spans)) == otel_encode(spans)


def test_a_count_is_encoded_right_at_every_varint_size_and_after_a_size_change():
    """Counts and costs reuse a head cached by key (and, for a count, by its varint's size):
    one key's values cross each size boundary, up and down, across spans."""
    memory = InMemorySpanExporter()
    tracer = _provider(memory, {"service.name": "sizes"}).get_tracer("t")
    counts = [0, 127, 128, 300, 16383, 16384, 2**21 - 1, 2**21, 2**35, 2**63 - 1, 5, 16384, 200]
    for i, count in enumerate(counts):
        tracer.start_span("call", attributes={"tokens": count, "cost": count / 7 + 0.5,
                                              "other": counts[-1 - i]}).end()
    spans = memory.get_finished_spans()
    request = ExportTraceServiceRequest.FromString(_otlp.encode_spans(spans))
    assert request == otel_encode(spans)
    encoded = request.resource_spans[0].scope_spans[0].spans
    assert [s.attributes[0].value.int_value for s in encoded] == counts


def test_the_cache_of_encoded_values_stays_bounded():
    """Unique values (response ids) and a growing set of keys: each encoded as itself, while
    the caches keep at most `_MAX_CACHED` entries."""
    memory = InMemorySpanExporter()
    tracer = _provider(memory, {"service.name": "ids"}).get_tracer("t")
    n = _otlp._MAX_CACHED + 500
    for i in range(n):
        tracer.start_span("call", attributes={"gen_ai.response.id": f"resp-{i}",
                                              f"key-{i}": "same", "reasons": (f"r{i}",),
                                              f"count-{i}": 300, f"cost-{i}": 0.5}).end()
    spans = memory.get_finished_spans()
    request = ExportTraceServiceRequest.FromString(_otlp.encode_spans(spans))
    assert all(len(cache) <= _otlp._MAX_CACHED for cache in _otlp._last.values())
    assert len(_otlp._heads) <= _otlp._MAX_CACHED
    assert all(len(cache) <= _otlp._MAX_CACHED for cache in _otlp._int_heads.values())
    assert all(len(cache) <= _otlp._MAX_CACHED for cache in _otlp._float_heads.values())
    encoded = request.resource_spans[0].scope_spans[0].spans

    def value(v):
        kind = v.WhichOneof("value")
        return v.array_value.values[0].string_value if kind == "array_value" else getattr(v, kind)

    assert [[(a.key, value(a.value)) for a in s.attributes] for s in encoded] == \
        [[("gen_ai.response.id", f"resp-{i}"), (f"key-{i}", "same"), ("reasons", f"r{i}"),
          (f"count-{i}", 300), (f"cost-{i}", 0.5)] for i in range(n)]


def test_an_encoding_failure_falls_back_to_the_otel_encoder_and_is_counted(monkeypatch):
    spans = _varied_spans()

    def broken(_spans):
        raise RuntimeError("encoder bug")

    monkeypatch.setattr(_otlp, "encode_spans", broken)
    before = _state.failures().get("encode spans:RuntimeError", 0)
    exporter = _otlp.SpanExporter(endpoint="http://127.0.0.1:1", insecure=True)
    try:
        sent = exporter._translate_data(spans)
        assert ExportTraceServiceRequest.FromString(sent) == otel_encode(spans)
    finally:
        exporter.shutdown()
    assert _state.failures()["encode spans:RuntimeError"] == before + 1


@pytest.mark.parametrize("value", [object(), {"nested": "dict"}])
def test_a_value_otlp_cannot_carry_is_left_out_as_otel_leaves_it(value):
    """The SDK's Span refuses such values; a span whose attributes were filled another way
    might still carry one."""
    spans = _varied_spans()
    spans[0]._attributes = dict(spans[0].attributes, odd=value)
    ours = ExportTraceServiceRequest.FromString(_otlp.encode_spans(spans))
    assert ours == otel_encode(spans)


def test_cached_encodings_keep_equal_values_of_two_types_apart():
    """True == 1 and (True,) == (1,) in Python: a cache keyed by value alone would send one
    as the other."""
    memory = InMemorySpanExporter()
    tracer = _provider(memory, {"service.name": "types"}).get_tracer("t")
    for value in (True, 1, (True,), (1,), 1.0, "1", False, 0, 0.0, 127, 128, 2**63 - 1, -1):
        tracer.start_span("s", attributes={"same.key": value}).end()
    spans = memory.get_finished_spans()
    assert ExportTraceServiceRequest.FromString(_otlp.encode_spans(spans)) == otel_encode(spans)


def test_the_sdk_exporter_sends_its_bytes_to_a_collector_and_after_a_reconnect(collector,
                                                                              store):
    """The batch goes out as `encode_spans` wrote it (no message built); a reconnect, which
    the OTel exporter makes on transient errors, keeps the bytes stub."""
    exporter = _otlp.SpanExporter(endpoint=f"http://{collector.endpoint}", insecure=True)
    provider = TracerProvider(resource=Resource.create({"service.name": "raw"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    try:
        tracer.start_span("first", attributes={"gen_ai.usage.input_tokens": 420}).end()
        exporter._initialize_channel_and_stub()
        assert isinstance(exporter._client, _otlp._ExportBytesStub)
        tracer.start_span("second", attributes={"gen_ai.request.model": "gpt-4o-mini"}).end()
    finally:
        provider.shutdown()
    rows = store.query(f"SELECT SpanName, SpanAttributes FROM {store.database}.otel_traces "
                       "ORDER BY SpanName")
    assert list(rows.SpanName) == ["first", "second"]
    assert dict(rows.SpanAttributes[1])["gen_ai.request.model"] == "gpt-4o-mini"


def test_an_exporter_left_with_the_otel_stub_is_sent_a_message(collector, store):
    """An OTel exporter version that makes its client another way than `self._stub(channel)`
    keeps the OTel stub, which takes a message: the spans still arrive."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    exporter = _otlp.SpanExporter(endpoint=f"http://{collector.endpoint}", insecure=True)
    exporter._client = TraceServiceStub(exporter._channel)
    provider = TracerProvider(resource=Resource.create({"service.name": "message"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        provider.get_tracer("t").start_span("via a message").end()
        assert isinstance(exporter._translate_data(_varied_spans()), ExportTraceServiceRequest)
    finally:
        provider.shutdown()
    rows = store.query(f"SELECT SpanName FROM {store.database}.otel_traces")
    assert list(rows.SpanName) == ["via a message"]
