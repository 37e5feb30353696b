"""The real `mistralai` client against a loopback Mistral API (JSON and server-sent events)."""

from __future__ import annotations

import asyncio
import gc
import importlib

import pytest
from mistralai.client import Mistral, errors
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import infersight
from infersight import _state
from infersight import attributes as A
from infersight.instrumentors import mistral as mistral_instr
from infersight.pricing import resolve_model
from infersight_collector.fake_provider import Reply
from tests.fakes import LoopbackServer
from tests.fakes.mistral import SERVED, route
from tests.span_checks import only_span, priced, recorded

MODEL = "mistral-large-latest"
MESSAGES = [{"role": "user", "content": "Summarise this ticket"}]


@pytest.fixture
def fake():
    with LoopbackServer(route) as server:
        yield server


@pytest.fixture
def client(fake):
    return Mistral(api_key="test", server_url=fake.url)


def test_patch_targets_exist_in_installed_mistralai():
    for module_name, path, _ in mistral_instr.MistralInstrumentor().patches():
        owner_name, _, attr = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module_name), owner_name).__dict__[attr])


def test_served_names_are_priced():
    assert resolve_model(MODEL) == resolve_model(SERVED) == "mistral-large"


def test_complete_tokens_cache_cost(spans, client, fake):
    fake.expect(Reply(prompt_tokens=900, completion_tokens=30, cached_tokens=600))
    response = client.chat.complete(model=MODEL, messages=MESSAGES, max_tokens=100,
                                    temperature=0.3)
    span = only_span(spans)
    attrs = span.attributes
    assert span.name == f"chat {MODEL}"
    assert attrs[A.PROVIDER] == "mistral_ai" and attrs[A.OPERATION] == "chat"
    assert attrs[A.REQUEST_MAX_TOKENS] == 100 and attrs[A.REQUEST_TEMPERATURE] == 0.3
    assert attrs[A.RESPONSE_MODEL] == attrs[A.MODEL_VERSION] == SERVED
    assert attrs[A.RESPONSE_ID] == response.id
    assert list(attrs[A.FINISH_REASONS]) == ["stop"]
    assert attrs[A.INPUT_TOKENS] == 900 and attrs[A.OUTPUT_TOKENS] == 30
    assert attrs[A.CACHE_READ_TOKENS] == 600
    assert attrs[A.COST] == pytest.approx(priced(SERVED, input=900, output=30, cache_read=600))
    assert attrs[A.COST_SOURCE] == "sdk"


def test_tool_call_names_without_arguments(spans, client, fake):
    fake.expect(Reply(tool_calls=("get_weather",), finish_reason="tool_calls", content=""))
    client.chat.complete(model=MODEL, messages=MESSAGES)
    attrs = only_span(spans).attributes
    assert attrs[A.TOOL_CALL_COUNT] == 1 and list(attrs[A.TOOL_CALL_NAMES]) == ["get_weather"]
    assert list(attrs[A.FINISH_REASONS]) == ["tool_calls"]


def test_stream_usage_from_last_chunk(spans, client, fake):
    fake.expect(Reply(prompt_tokens=50, completion_tokens=3, content="one two three",
                      tool_calls=("lookup",)))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    with client.chat.stream(model=MODEL, messages=MESSAGES, tools=tools) as stream:
        text = "".join(e.data.choices[0].delta.content or "" for e in stream)
    assert text == "one two three "
    span = only_span(spans)
    attrs = span.attributes
    assert attrs[A.INPUT_TOKENS] == 50 and attrs[A.OUTPUT_TOKENS] == 3
    assert attrs[A.RESPONSE_MODEL] == SERVED
    assert list(attrs[A.TOOL_CALL_NAMES]) == ["lookup"]
    assert attrs[A.COST] == pytest.approx(priced(SERVED, input=50, output=3))
    assert 0 < attrs[A.TIME_TO_FIRST_CHUNK] <= (span.end_time - span.start_time) / 1e9


def test_plain_stream_folds_only_its_first_and_last_chunks(spans, client, fake, monkeypatch):
    """No tools and no capture: the chunks wait in a window, and only the first and those
    from the finishing one on are read, at the end (see `instrumentors.Window`)."""
    fake.expect(Reply(prompt_tokens=500, completion_tokens=100,
                      content=" ".join(f"w{i}" for i in range(100))))
    folded = recorded(monkeypatch, mistral_instr.ChunkAccumulator, "add")
    with client.chat.stream(model=MODEL, messages=MESSAGES) as stream:
        events = list(stream)
    assert len(events) >= 100
    finishing = next(i for i, e in enumerate(events) if e.data.choices
                     and e.data.choices[0].finish_reason)
    assert folded == [events[0]] + events[finishing:]
    attrs = only_span(spans).attributes
    assert attrs[A.INPUT_TOKENS] == 500 and attrs[A.OUTPUT_TOKENS] == 100
    assert attrs[A.RESPONSE_MODEL] == SERVED and list(attrs[A.FINISH_REASONS]) == ["stop"]
    assert attrs[A.COST] == pytest.approx(priced(SERVED, input=500, output=100))


def test_stream_closed_early_and_abandoned(spans, client):
    stream = client.chat.stream(model=MODEL, messages=MESSAGES)
    next(stream)
    stream.close()
    assert len(spans.get_finished_spans()) == 1

    def read_one():
        next(client.chat.stream(model=MODEL, messages=MESSAGES))

    read_one()
    gc.collect()
    assert len(spans.get_finished_spans()) == 2


def test_async_complete_and_stream(spans, client, fake):
    fake.expect(Reply(prompt_tokens=12, completion_tokens=2),
                Reply(prompt_tokens=24, completion_tokens=3, content="a b c"))

    async def main():
        await client.chat.complete_async(model=MODEL, messages=MESSAGES)
        stream = await client.chat.stream_async(model=MODEL, messages=MESSAGES)
        async with stream:
            return [e.data.choices[0].delta.content async for e in stream]

    assert "".join(asyncio.run(main())) == "a b c "
    plain, streamed = spans.get_finished_spans()
    assert [plain.attributes[A.INPUT_TOKENS], streamed.attributes[A.INPUT_TOKENS]] == [12, 24]
    assert [plain.attributes[A.OUTPUT_TOKENS], streamed.attributes[A.OUTPUT_TOKENS]] == [2, 3]


def test_error_reaches_caller_unchanged(spans, client, fake):
    fake.expect(Reply(status=429, error_type="rate_limited"))
    with pytest.raises(errors.SDKError) as raised:
        client.chat.complete(model=MODEL, messages=MESSAGES)
    assert raised.value.status_code == 429
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == type(raised.value).__qualname__


def test_content_only_on_opt_in(spans, client, monkeypatch):
    client.chat.complete(model=MODEL, messages=MESSAGES)
    monkeypatch.setattr(_state, "capture_content", True)
    client.chat.complete(model=MODEL, messages=MESSAGES)
    off, on = spans.get_finished_spans()
    assert A.INPUT_MESSAGES not in off.attributes and A.OUTPUT_MESSAGES not in off.attributes
    assert "Summarise this ticket" in on.attributes[A.INPUT_MESSAGES]
    assert "fake provider" in on.attributes[A.OUTPUT_MESSAGES]


def test_sdk_emits_no_span_of_its_own_by_default(client, monkeypatch):
    """With a global SDK tracer provider, mistralai's own tracing stays off unless asked for,
    so each call has one span with usage: ours."""
    monkeypatch.delenv("MISTRAL_SDK_TELEMETRY", raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    infersight.instrument(tracer_provider=provider)
    try:
        client.chat.complete(model=MODEL, messages=MESSAGES)
    finally:
        infersight.uninstrument()
    with_usage = [s for s in exporter.get_finished_spans() if A.INPUT_TOKENS in s.attributes]
    assert [s.instrumentation_scope.name for s in with_usage] == ["infersight"]
