"""The real `anthropic` client against a loopback server speaking the Anthropic wire format."""

from __future__ import annotations

import asyncio
import gc
import importlib

import anthropic
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import infersight

from infersight import _state
from infersight import attributes as A
from infersight.instrumentors import anthropic as anthropic_instr
from infersight.pricing import Usage, cost_usd
from infersight_collector.fake_provider import FakeAnthropic, Reply
from tests.span_checks import only_span, recorded

MODEL = "claude-haiku-4-5-20251001"
MESSAGES = [{"role": "user", "content": "Summarise this ticket"}]


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def client(fake):
    # open_telemetry=False: the SDK's own spans are not what these tests are about.
    return anthropic.Anthropic(base_url=fake.base_url, api_key="test", max_retries=0,
                               open_telemetry=False)


@pytest.fixture
def aclient(fake):
    return anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test", max_retries=0,
                                    open_telemetry=False)


CACHED = Reply(model=MODEL, prompt_tokens=200, completion_tokens=50, cached_tokens=1000,
               cache_write_tokens=300, content="Three words here")


def expected_cost():
    cost = cost_usd(MODEL, Usage(input=1500, output=50, cache_read=1000, cache_write=300))
    assert cost is not None
    return cost


def assert_cached_usage(attrs):
    assert attrs[A.INPUT_TOKENS] == 200 + 1000 + 300  # the contract: input includes cache
    assert attrs[A.OUTPUT_TOKENS] == 50
    assert attrs[A.CACHE_READ_TOKENS] == 1000
    assert attrs[A.CACHE_WRITE_TOKENS] == 300
    assert attrs[A.COST] == pytest.approx(expected_cost())
    assert attrs[A.COST_SOURCE] == "sdk"


def test_patch_targets_exist_in_installed_anthropic():
    for module_name, path, _ in anthropic_instr.AnthropicInstrumentor().patches():
        owner_name, _, attr = path.rpartition(".")
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        assert callable(owner.__dict__[attr])


def test_create_tokens_cache_priced_at_own_rates(spans, client, fake):
    fake.expect(CACHED)
    message = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    span = only_span(spans)
    attrs = span.attributes
    assert span.name == f"chat {MODEL}"
    assert attrs[A.PROVIDER] == "anthropic" and attrs[A.OPERATION] == "chat"
    assert attrs[A.REQUEST_MAX_TOKENS] == 100
    assert attrs[A.RESPONSE_ID] == message.id
    assert attrs[A.RESPONSE_MODEL] == attrs[A.MODEL_VERSION] == MODEL
    assert list(attrs[A.FINISH_REASONS]) == ["end_turn"]
    assert_cached_usage(attrs)
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per 1M tokens.
    assert attrs[A.COST] == pytest.approx((200 * 1 + 1000 * 0.1 + 300 * 1.25 + 50 * 5) / 1e6)


def test_tool_use_names_without_input(spans, client, fake):
    fake.expect(Reply(tool_calls=("get_weather",), finish_reason="tool_calls"))
    client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    attrs = only_span(spans).attributes
    assert attrs[A.TOOL_CALL_COUNT] == 1 and list(attrs[A.TOOL_CALL_NAMES]) == ["get_weather"]
    assert list(attrs[A.FINISH_REASONS]) == ["tool_use"]


def test_create_stream_usage_from_final_event(spans, client, fake):
    fake.expect(CACHED)
    events = list(client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES,
                                         stream=True))
    assert [e.type for e in events][0] == "message_start" and events[-1].type == "message_stop"
    span = only_span(spans)
    assert_cached_usage(span.attributes)
    assert list(span.attributes[A.FINISH_REASONS]) == ["end_turn"]
    assert 0 < span.attributes[A.TIME_TO_FIRST_CHUNK] <= (span.end_time - span.start_time) / 1e9


def test_long_stream_folds_only_message_start_and_the_events_from_message_delta(
        spans, client, fake, monkeypatch):
    """Without tools or content capture, a stream's events wait in a window: only its
    message_start and the events from message_delta on are read, at its end."""
    fake.expect(Reply(model=MODEL, content=" ".join(f"w{i}" for i in range(100)),
                      prompt_tokens=200, completion_tokens=100, cached_tokens=1000))
    folded = recorded(monkeypatch, anthropic_instr.EventAccumulator, "add")
    events = list(client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES,
                                         stream=True))
    assert len(events) > 100
    assert [e.type for e in folded] == ["message_start", "message_delta", "message_stop"]
    assert folded == [events[0]] + events[-2:]
    attrs = only_span(spans).attributes
    assert attrs[A.INPUT_TOKENS] == 1200 and attrs[A.OUTPUT_TOKENS] == 100
    assert attrs[A.CACHE_READ_TOKENS] == 1000
    assert list(attrs[A.FINISH_REASONS]) == ["end_turn"]
    assert attrs[A.RESPONSE_MODEL] == MODEL and A.COST in attrs


def test_stream_helper_text_stream_and_final_message(spans, client, fake):
    fake.expect(CACHED)
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Three words here "
    assert final.usage.output_tokens == 50
    span = only_span(spans)
    assert_cached_usage(span.attributes)
    assert A.TIME_TO_FIRST_CHUNK in span.attributes


def test_stream_helper_left_early_ends_span(spans, client, fake):
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        next(iter(stream))
    span = only_span(spans)
    assert span.attributes[A.RESPONSE_MODEL] == MODEL
    assert A.OUTPUT_TOKENS in span.attributes  # input known from message_start


def test_create_stream_abandoned_half_read(spans, client):
    def read_one():
        stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES,
                                        stream=True)
        next(iter(stream))

    read_one()
    gc.collect()
    only_span(spans)


def test_async_create_stream_and_helper(spans, aclient, fake):
    fake.expect(Reply(prompt_tokens=10, completion_tokens=2),
                Reply(prompt_tokens=20, completion_tokens=3),
                Reply(prompt_tokens=30, completion_tokens=4))

    async def main():
        await aclient.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
        stream = await aclient.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES,
                                               stream=True)
        async with stream:
            [e async for e in stream]
        async with aclient.messages.stream(model=MODEL, max_tokens=10,
                                           messages=MESSAGES) as helper:
            return await helper.get_final_message()

    final = asyncio.run(main())
    assert final.usage.input_tokens == 30
    plain, streamed, helped = spans.get_finished_spans()
    assert [s.attributes[A.INPUT_TOKENS] for s in (plain, streamed, helped)] == [10, 20, 30]
    assert [s.attributes[A.OUTPUT_TOKENS] for s in (plain, streamed, helped)] == [2, 3, 4]


def test_error_reaches_caller_unchanged(spans, client, fake):
    fake.expect(Reply(status=429, error_type="rate_limit_error"))
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert raised.value.status_code == 429
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "RateLimitError"


def test_stream_helper_error_on_enter(spans, client, fake):
    fake.expect(Reply(status=500))
    with pytest.raises(anthropic.InternalServerError):
        with client.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES):
            pass
    assert only_span(spans).status.status_code == StatusCode.ERROR


def test_content_only_on_opt_in(spans, client, monkeypatch):
    client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    monkeypatch.setattr(_state, "capture_content", True)
    client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, system="Be brief")
    off, on = spans.get_finished_spans()
    assert A.INPUT_MESSAGES not in off.attributes
    assert "Be brief" in on.attributes[A.INPUT_MESSAGES]
    assert "fake provider" in on.attributes[A.OUTPUT_MESSAGES]


def test_sdk_own_tracing_on_still_one_span_with_usage_per_call(fake, monkeypatch):
    """anthropic traces every API call itself (on the global provider, usage included);
    with Infersight instrumenting, each messages call has one span with usage: ours."""
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # the global provider, restored
    client = anthropic.Anthropic(base_url=fake.base_url, api_key="test", max_retries=0)
    aclient = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test", max_retries=0)

    def with_usage():
        return [s for s in exporter.get_finished_spans() if A.INPUT_TOKENS in s.attributes]

    infersight.instrument(tracer_provider=provider)
    try:
        client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
        list(client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, stream=True))
        with client.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES) as stream:
            stream.get_final_message()
        asyncio.run(aclient.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES))
    finally:
        infersight.uninstrument()
    assert [s.instrumentation_scope.name for s in exporter.get_finished_spans()] \
        == ["infersight"] * 4
    assert len(with_usage()) == 4

    exporter.clear()  # uninstrumented, the SDK's own span is back, with the usage
    client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert [s.instrumentation_scope.name for s in with_usage()] == ["com.anthropic.sdk.python"]
