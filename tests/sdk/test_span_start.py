"""A model call's span, started without the SDK's sampler objects (`_span_start`), is the span
the OTel SDK's own `start_span` makes: the same class, ids, flags, trace state, parent,
processors and internal metrics, for every kind of parent. Every other case is the SDK's."""

from __future__ import annotations

import random

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from infersight import _span_start

RANDOM_SAMPLED = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)


class Recorder(SpanProcessor):
    """What the processors are told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_start(self, span, parent_context=None) -> None:
        self.calls.append(("start", span.name))

    def on_end(self, span) -> None:
        self.calls.append(("end", span.name))


def _remote(flags: TraceFlags, state: TraceState | None = None) -> NonRecordingSpan:
    return NonRecordingSpan(SpanContext(0x1234, 0x5678, True, flags, state))


PARENTS = {
    "root": None,
    "local sampled parent": "local",
    "remote sampled parent, trace state": _remote(TraceFlags(TraceFlags.SAMPLED),
                                                  TraceState([("vendor", "v1")])),
    "remote random sampled parent": _remote(RANDOM_SAMPLED),
    "remote unsampled parent": _remote(TraceFlags(TraceFlags.DEFAULT)),
}


def _both(provider: TracerProvider, parent, kind=SpanKind.CLIENT):
    """(the SDK's span, the direct one) under `parent`, ids drawn from the same seed."""
    tracer = provider.get_tracer("infersight", "0.1.0")
    start = _span_start.starter(tracer)
    if parent == "local":
        parent = tracer.start_span("app")
    spans = []
    for make in (lambda: tracer.start_span("chat m", kind=kind), lambda: start("chat m", kind)):
        token = context.attach(trace.set_span_in_context(parent)) if parent else None
        try:
            random.seed(7)
            spans.append(make())
        finally:
            if token is not None:
                context.detach(token)
    return spans[0], spans[1]


def _same(sdk, direct) -> None:
    assert type(direct) is type(sdk)
    if isinstance(sdk, NonRecordingSpan):
        assert direct.get_span_context() == sdk.get_span_context()
        return
    assert sorted(vars(direct)) == sorted(vars(sdk))  # a field the SDK added would show here
    for name, value in vars(sdk).items():
        if name in ("_lock", "_attributes", "_events", "_links"):  # per-span objects
            assert type(vars(direct)[name]) is type(value), name
        elif name in ("_start_time", "_end_time"):
            assert (vars(direct)[name] is None) is (value is None), name
        elif name == "_record_end_metrics":  # a closure per span when metrics are on
            assert getattr(vars(direct)[name], "__qualname__", None) == \
                getattr(value, "__qualname__", None)
        else:
            assert vars(direct)[name] == value, name
    assert dict(direct.attributes) == dict(sdk.attributes) == {}
    assert list(direct.events) == list(sdk.events) == []
    assert list(direct.links) == list(sdk.links) == []


@pytest.mark.parametrize("sampler", [sampling.DEFAULT_ON, sampling.ALWAYS_ON,
                                     sampling.ParentBased(sampling.ALWAYS_ON)])
@pytest.mark.parametrize("parent", list(PARENTS))
def test_the_direct_span_is_the_sdks_span(sampler, parent):
    recorder = Recorder()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(recorder)
    sdk, direct = _both(provider, PARENTS[parent])
    _same(sdk, direct)
    dropped = sampler is not sampling.ALWAYS_ON and parent == "remote unsampled parent"
    assert direct.is_recording() is sdk.is_recording() is not dropped  # dropped with its parent
    assert direct.get_span_context().trace_flags.sampled is not dropped
    sdk.end()
    direct.end()
    ours = [call for call in recorder.calls if call[1] == "chat m"]
    assert ours == ([] if dropped else [("start", "chat m")] * 2 + [("end", "chat m")] * 2)


def test_the_default_provider_takes_the_direct_path():
    """Else the span is right but costs the SDK's start (a change in the SDK's parts)."""
    tracer = TracerProvider().get_tracer("infersight")
    assert _span_start._direct(tracer, tracer.start_span) is not None


class OwnIds(RandomIdGenerator):
    pass


@pytest.mark.parametrize("provider", [
    TracerProvider(sampler=sampling.TraceIdRatioBased(0.5)),
    TracerProvider(sampler=sampling.ParentBasedTraceIdRatio(0.5)),
    TracerProvider(sampler=sampling.ParentBased(sampling.ALWAYS_ON,
                                                remote_parent_not_sampled=sampling.ALWAYS_ON)),
    TracerProvider(sampler=sampling.ALWAYS_OFF),
    TracerProvider(id_generator=OwnIds()),
], ids=["ratio", "parent ratio", "custom delegates", "always off", "own id generator"])
def test_any_other_sampler_or_id_generator_is_left_to_the_sdk(provider):
    tracer = provider.get_tracer("infersight")
    assert _span_start._direct(tracer, tracer.start_span) is None
    for parent in PARENTS.values():
        _same(*_both(provider, parent))


def test_a_disabled_tracer_is_left_to_the_sdk():
    provider = TracerProvider()
    tracer = provider.get_tracer("infersight")
    start = _span_start.starter(tracer)
    tracer._set_tracer_config(type(tracer._tracer_config)(is_enabled=False))
    assert isinstance(start("chat m", SpanKind.CLIENT), NonRecordingSpan)


def test_a_tracer_of_another_implementation_starts_its_own_spans():
    tracer = trace.NoOpTracer()
    span = _span_start.starter(tracer)("chat m", SpanKind.CLIENT)
    assert not span.is_recording()


def test_the_sdks_span_metrics_count_direct_spans(monkeypatch):
    """With the SDK's own span metrics on, a direct span is counted as started and live
    while open, as the SDK's are."""
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    provider = TracerProvider(meter_provider=MeterProvider(metric_readers=[reader]))

    def counts() -> dict[str, float]:
        data = reader.get_metrics_data()
        return {m.name: sum(p.value for p in m.data.data_points)
                for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                if m.name.startswith("otel.sdk.span.")}

    sdk, direct = _both(provider, None)
    _same(sdk, direct)
    assert counts() == {"otel.sdk.span.started": 2, "otel.sdk.span.live": 2}
    direct.end()
    sdk.end()
    assert counts() == {"otel.sdk.span.started": 2, "otel.sdk.span.live": 0}
