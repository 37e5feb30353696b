"""The instrumentors' fast attribute setter stores exactly what the OTel SDK's own
`set_attributes` stores, and hands the SDK whatever it cannot take itself."""

from __future__ import annotations

import enum
import logging

import openai
import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan

import infersight
from infersight import _state
from infersight.instrumentors import set_attributes


class Reason(str, enum.Enum):
    STOP = "stop"


class Opaque:
    def __str__(self) -> str:
        return "opaque"


VALUES = {
    "text": "gpt-4o-mini", "empty": "", "count": 420, "zero": 0, "price": 0.00012,
    "yes": True, "no": False, "reasons": ["stop", "length"], "numbers": [1, 2],
    "mixed": [1, "a", 2.5], "empty_list": [], "tuple": ("a", "b"), "none": None,
    "enum": Reason.STOP, "enum_list": [Reason.STOP], "nested": {"a": 1}, "object": Opaque(),
    "list_of_objects": [Opaque()],
}


def _two_spans(limits: SpanLimits | None = None, start: dict | None = None):
    tracer = TracerProvider(span_limits=limits).get_tracer("t")
    return (tracer.start_span("fast", attributes=dict(start or {})),
            tracer.start_span("sdk", attributes=dict(start or {})))


def _same(fast, sdk) -> None:
    assert dict(fast.attributes) == dict(sdk.attributes)  # order aside: an overwritten key
    assert {k: type(v) for k, v in fast.attributes.items()} == \
        {k: type(v) for k, v in sdk.attributes.items()}
    assert fast.dropped_attributes == sdk.dropped_attributes


def test_every_kind_of_value_is_stored_as_the_sdk_stores_it():
    fast, sdk = _two_spans(start={"gen_ai.operation.name": "chat"})
    set_attributes(fast, dict(VALUES))
    sdk.set_attributes(dict(VALUES))
    _same(fast, sdk)
    assert fast.attributes["reasons"] == ("stop", "length")  # lists become tuples
    assert fast.attributes["object"] == "opaque"  # left to the SDK, which stringifies it


def test_an_existing_key_is_overwritten():
    fast, sdk = _two_spans(start={"gen_ai.request.model": "a"})
    set_attributes(fast, {"gen_ai.request.model": "b"})
    sdk.set_attributes({"gen_ai.request.model": "b"})
    _same(fast, sdk)
    assert fast.attributes["gen_ai.request.model"] == "b"


@pytest.mark.parametrize("limits", [
    SpanLimits(max_attribute_length=5),  # strings are cut: the SDK cuts them
    SpanLimits(max_span_attributes=4),  # a full span drops its oldest: the SDK drops them
])
def test_span_limits_are_the_sdks_to_apply(limits):
    fast, sdk = _two_spans(limits, start={"first": "x" * 10, "second": 2})
    set_attributes(fast, dict(VALUES))
    sdk.set_attributes(dict(VALUES))
    _same(fast, sdk)


def test_an_ended_span_is_left_alone(caplog):
    fast, _ = _two_spans()
    fast.end()
    with caplog.at_level(logging.WARNING):
        set_attributes(fast, {"late": 1})
    assert "late" not in fast.attributes
    assert "ended span" in caplog.text


class ForeignSpan(NonRecordingSpan):
    """A span of another tracer implementation: it keeps what set_attributes gives it."""

    def __init__(self) -> None:
        super().__init__(INVALID_SPAN.get_span_context())
        self.given: list[dict] = []

    def set_attributes(self, attributes) -> None:
        self.given.append(dict(attributes))


def test_a_span_that_is_not_the_sdks_gets_its_own_set_attributes():
    span = ForeignSpan()
    set_attributes(span, {"a": 1, "reasons": ["stop"]})
    assert span.given == [{"a": 1, "reasons": ["stop"]}]
    set_attributes(INVALID_SPAN, {"a": 1})  # a non-recording span: nothing to store, no error


# ---- a span's starting attributes and the sampler -------------------------------------------

class ByModel(Sampler):
    """Reads the attributes it is given: samples only calls of one request model."""

    def __init__(self, model: str):
        self.model = model

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                      links=None, trace_state=None):
        keep = (attributes or {}).get("gen_ai.request.model") == self.model
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "ByModel"


class Ratio(sampling.TraceIdRatioBased):
    """A subclass may read attributes: it is not taken for the built-in one."""


@pytest.mark.parametrize("sampler, blind", [
    (sampling.ALWAYS_ON, True), (sampling.ALWAYS_OFF, True),
    (sampling.DEFAULT_ON, True), (sampling.ParentBasedTraceIdRatio(0.5), True),
    (sampling.TraceIdRatioBased(0.5), True), (sampling.ParentBased(sampling.ALWAYS_ON), True),
    (ByModel("x"), False), (sampling.ParentBased(ByModel("x")), False),
    (sampling.ParentBased(sampling.ALWAYS_ON, local_parent_sampled=ByModel("x")), False),
    (Ratio(0.5), False), (None, False),
])
def test_only_samplers_that_never_read_attributes_are_called_blind(sampler, blind):
    assert _state._attribute_blind(sampler) is blind


@pytest.mark.parametrize("sampler", [sampling.DEFAULT_ON, ByModel("gpt-4o-mini")])
def test_a_call_span_starts_with_its_request_attributes_whichever_the_sampler(
        sampler, fake_openai):
    """Under a built-in sampler the request attributes skip the SDK's checks; a sampler that
    reads them still gets them, and decides by them."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    infersight.instrument(tracer_provider=provider)
    try:
        assert _state.attribute_blind is (sampler is sampling.DEFAULT_ON)
        client = openai.OpenAI(base_url=fake_openai.base_url, api_key="t", max_retries=0)
        for model in ("gpt-4o-mini", "gpt-4o"):
            client.chat.completions.create(model=model, max_tokens=10, temperature=0.5,
                                           messages=[{"role": "user", "content": "hi"}])
    finally:
        infersight.uninstrument()
    spans = exporter.get_finished_spans()
    expected = ["gpt-4o-mini", "gpt-4o"] if sampler is sampling.DEFAULT_ON else ["gpt-4o-mini"]
    assert [s.attributes["gen_ai.request.model"] for s in spans] == expected
    for span in spans:
        assert span.attributes["gen_ai.request.max_tokens"] == 10
        assert type(span.attributes["gen_ai.request.temperature"]) is float
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
