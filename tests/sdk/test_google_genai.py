"""The real `google-genai` client against a loopback Gemini API (JSON and server-sent events)."""

from __future__ import annotations

import asyncio
import gc
import importlib

import pytest
from google import genai
from google.genai import errors, types
from opentelemetry.trace import StatusCode

from infersight import _state
from infersight import attributes as A
from infersight.instrumentors import google_genai as google_instr
from infersight.pricing import resolve_model
from infersight_collector.fake_provider import Reply
from tests.fakes import LoopbackServer
from tests.fakes.google import SERVED, route
from tests.span_checks import only_span, priced, recorded

MODEL = "gemini-2.5-flash"


@pytest.fixture
def fake():
    with LoopbackServer(route) as server:
        yield server


@pytest.fixture
def client(fake):
    return genai.Client(api_key="test", http_options={
        "base_url": fake.url, "retry_options": {"attempts": 1}})


def test_patch_targets_exist_in_installed_google_genai():
    for module_name, path, _ in google_instr.GoogleGenAIInstrumentor().patches():
        owner_name, _, attr = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module_name), owner_name).__dict__[attr])


def test_served_names_are_priced():
    assert resolve_model(SERVED) == resolve_model(f"models/{SERVED}") == "gemini-2.5-flash"


def test_generate_content_tokens_cache_thoughts_cost(spans, client, fake):
    fake.expect(Reply(prompt_tokens=1200, completion_tokens=40, cached_tokens=1000,
                      reasoning_tokens=25, content="Three words here"))
    response = client.models.generate_content(
        model=f"models/{MODEL}", contents="Summarise this ticket",
        config=types.GenerateContentConfig(max_output_tokens=200, temperature=0.2))
    assert response.text == "Three words here"
    span = only_span(spans)
    attrs = span.attributes
    assert span.name == f"chat models/{MODEL}"
    assert attrs[A.PROVIDER] == "gcp.gemini" and attrs[A.OPERATION] == "chat"
    assert attrs[A.REQUEST_MAX_TOKENS] == 200 and attrs[A.REQUEST_TEMPERATURE] == 0.2
    assert attrs[A.RESPONSE_MODEL] == attrs[A.MODEL_VERSION] == SERVED
    assert attrs[A.RESPONSE_ID] == response.response_id
    assert list(attrs[A.FINISH_REASONS]) == ["STOP"]
    # promptTokenCount includes the cached tokens; thinking is billed as output.
    assert attrs[A.INPUT_TOKENS] == 1200 and attrs[A.CACHE_READ_TOKENS] == 1000
    assert attrs[A.OUTPUT_TOKENS] == 40 + 25 and attrs[A.REASONING_TOKENS] == 25
    assert attrs[A.COST] == pytest.approx(priced(SERVED, input=1200, output=65,
                                                 cache_read=1000))
    assert attrs[A.COST_SOURCE] == "sdk"


def test_dict_config_and_function_call_names(spans, client, fake):
    fake.expect(Reply(tool_calls=("get_weather",), content=""))
    client.models.generate_content(model=MODEL, contents="Weather?",
                                   config={"max_output_tokens": 50})
    attrs = only_span(spans).attributes
    assert attrs[A.REQUEST_MAX_TOKENS] == 50
    assert attrs[A.TOOL_CALL_COUNT] == 1 and list(attrs[A.TOOL_CALL_NAMES]) == ["get_weather"]


def test_stream_usage_from_last_chunk_and_first_chunk_time(spans, client, fake):
    fake.expect(Reply(prompt_tokens=30, completion_tokens=9, content="one two three"))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Count"))
    assert "".join(c.text for c in chunks) == "one two three "
    assert len(chunks) == 3  # earlier chunks carried smaller, cumulative usage
    span = only_span(spans)
    attrs = span.attributes
    assert attrs[A.INPUT_TOKENS] == 30 and attrs[A.OUTPUT_TOKENS] == 9
    assert list(attrs[A.FINISH_REASONS]) == ["STOP"]
    assert attrs[A.COST] == pytest.approx(priced(SERVED, input=30, output=9))
    assert 0 < attrs[A.TIME_TO_FIRST_CHUNK] <= (span.end_time - span.start_time) / 1e9


def test_plain_stream_folds_only_its_first_and_last_chunks(spans, client, fake, monkeypatch):
    """No tools and no capture: the chunks wait in a window, and only the first and those
    from the finishing one on are read, at the end (see `instrumentors.Window`)."""
    fake.expect(Reply(prompt_tokens=300, completion_tokens=100,
                      content=" ".join(f"w{i}" for i in range(100))))
    folded = recorded(monkeypatch, google_instr.ChunkAccumulator, "add")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Count"))
    assert len(chunks) == 100
    assert folded == [chunks[0], chunks[-1]]
    attrs = only_span(spans).attributes
    assert attrs[A.INPUT_TOKENS] == 300 and attrs[A.OUTPUT_TOKENS] == 100
    assert list(attrs[A.FINISH_REASONS]) == ["STOP"] and attrs[A.RESPONSE_MODEL] == SERVED
    assert attrs[A.COST] == pytest.approx(priced(SERVED, input=300, output=100))


def test_stream_left_early_and_abandoned_end_the_span(spans, client, fake):
    stream = client.models.generate_content_stream(model=MODEL, contents="Count")
    next(stream)
    stream.close()
    assert len(spans.get_finished_spans()) == 1

    def read_one():
        next(client.models.generate_content_stream(model=MODEL, contents="Count"))

    read_one()
    gc.collect()
    assert len(spans.get_finished_spans()) == 2


def test_async_generate_and_stream(spans, client, fake):
    fake.expect(Reply(prompt_tokens=11, completion_tokens=2),
                Reply(prompt_tokens=22, completion_tokens=3, content="a b c"))

    async def main():
        await client.aio.models.generate_content(model=MODEL, contents="Hi")
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Hi")
        return [c.text async for c in stream]

    assert "".join(asyncio.run(main())) == "a b c "
    plain, streamed = spans.get_finished_spans()
    assert [plain.attributes[A.INPUT_TOKENS], streamed.attributes[A.INPUT_TOKENS]] == [11, 22]
    assert [plain.attributes[A.OUTPUT_TOKENS], streamed.attributes[A.OUTPUT_TOKENS]] == [2, 3]
    assert A.TIME_TO_FIRST_CHUNK in streamed.attributes


def test_one_span_per_request_with_automatic_function_calling(spans, client, fake):
    """The SDK calls the function and asks again: two requests, two billed spans."""
    fake.expect(Reply(tool_calls=("get_weather",), content="", prompt_tokens=40,
                      completion_tokens=5),
                Reply(content="Sunny", prompt_tokens=60, completion_tokens=1))

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    response = client.models.generate_content(
        model=MODEL, contents="Weather in Paris?",
        config=types.GenerateContentConfig(tools=[get_weather]))
    assert response.text == "Sunny"
    first, second = spans.get_finished_spans()
    assert [first.attributes[A.INPUT_TOKENS], second.attributes[A.INPUT_TOKENS]] == [40, 60]
    assert list(first.attributes[A.TOOL_CALL_NAMES]) == ["get_weather"]


def test_error_reaches_caller_unchanged(spans, client, fake):
    fake.expect(Reply(status=400, error_type="INVALID_ARGUMENT"))
    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_content(model=MODEL, contents="Hi")
    assert raised.value.code == 400
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "ClientError"


def test_stream_error_ends_span_with_error(spans, client, fake):
    fake.expect(Reply(status=500, error_type="INTERNAL"))
    with pytest.raises(errors.ServerError):
        list(client.models.generate_content_stream(model=MODEL, contents="Hi"))
    assert only_span(spans).status.status_code == StatusCode.ERROR


def test_content_only_on_opt_in(spans, client, monkeypatch):
    client.models.generate_content(model=MODEL, contents="Secret question")
    monkeypatch.setattr(_state, "capture_content", True)
    client.models.generate_content(model=MODEL, contents="Secret question")
    off, on = spans.get_finished_spans()
    assert A.INPUT_MESSAGES not in off.attributes and A.OUTPUT_MESSAGES not in off.attributes
    assert "Secret question" in on.attributes[A.INPUT_MESSAGES]
    assert "fake provider" in on.attributes[A.OUTPUT_MESSAGES]


def test_uninstrument_restores(spans, client):
    import infersight

    infersight.uninstrument()
    client.models.generate_content(model=MODEL, contents="Hi")
    assert spans.get_finished_spans() == ()
    assert not hasattr(genai.models.Models._generate_content, "__wrapped__")
