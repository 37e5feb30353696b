"""The real `openai` client against a loopback server speaking the OpenAI wire format."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import time

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import infersight
from infersight import _state
from infersight import attributes as A
from infersight.instrumentors import openai as openai_instr
from infersight_collector.fake_provider import Reply
from tests.span_checks import only_span, recorded

MESSAGES = [{"role": "user", "content": "Summarise this ticket"}]


def test_chat_span_has_tokens_cost_and_models(spans, client, fake_openai):
    fake_openai.expect(Reply(model="gpt-4o-mini-2024-07-18", prompt_tokens=1000,
                             completion_tokens=200, cached_tokens=400))
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                              max_tokens=300, temperature=0.2)
    span = only_span(spans)
    attrs = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SpanKind.CLIENT
    assert attrs[A.OPERATION] == "chat"
    assert attrs[A.PROVIDER] == "openai"
    assert attrs[A.REQUEST_MODEL] == "gpt-4o-mini"
    assert attrs[A.RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[A.MODEL_VERSION] == "gpt-4o-mini-2024-07-18"
    assert attrs[A.RESPONSE_ID] == response.id
    assert attrs[A.REQUEST_MAX_TOKENS] == 300
    assert attrs[A.REQUEST_TEMPERATURE] == 0.2
    assert attrs[A.INPUT_TOKENS] == 1000
    assert attrs[A.OUTPUT_TOKENS] == 200
    assert attrs[A.CACHE_READ_TOKENS] == 400
    assert list(attrs[A.FINISH_REASONS]) == ["stop"]
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    assert attrs[A.COST] == pytest.approx((600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6)
    assert attrs[A.COST_SOURCE] == "sdk"
    assert A.CONFIDENCE not in attrs  # no logprobs asked for
    assert span.status.status_code == StatusCode.UNSET


def test_confidence_is_mean_token_probability_when_logprobs_asked(spans, client, fake_openai):
    fake_openai.expect(Reply(content="one two three four", token_logprob=-0.5))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, logprobs=True)
    attrs = only_span(spans).attributes
    assert attrs[A.CONFIDENCE] == pytest.approx(math.exp(-0.5))
    assert attrs[A.CONFIDENCE_METHOD] == "mean_token_prob"


def test_reasoning_tokens_are_recorded_and_priced_as_output(spans, client, fake_openai):
    fake_openai.expect(Reply(model="o4-mini-2025-04-16", prompt_tokens=100,
                             completion_tokens=500, reasoning_tokens=400))
    client.chat.completions.create(model="o4-mini", messages=MESSAGES)
    attrs = only_span(spans).attributes
    assert attrs[A.REASONING_TOKENS] == 400
    assert attrs[A.COST] == pytest.approx((100 * 1.10 + 500 * 4.40) / 1e6)


def test_unknown_model_gets_no_cost(spans, client, fake_openai):
    client.chat.completions.create(model="my-finetune-xyz", messages=MESSAGES)
    attrs = only_span(spans).attributes
    assert A.COST not in attrs
    assert attrs[A.COST_SOURCE] == "unknown_model"


def test_feature_user_session_tags_from_context(spans, client):
    with infersight.feature("ticket-summary"), infersight.user("u-1"), \
            infersight.session("s-9"), infersight.tenant("acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    tagged, untagged = spans.get_finished_spans()
    assert tagged.attributes[A.FEATURE] == "ticket-summary"
    assert tagged.attributes[A.USER] == "u-1"
    assert tagged.attributes[A.SESSION] == "s-9"
    assert tagged.attributes[A.TENANT] == "acme"
    assert A.FEATURE not in untagged.attributes


def test_feature_as_decorator_sync_and_async(spans, client, aclient):
    @infersight.feature("sync-feature")
    def call():
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    @infersight.feature("async-feature")
    async def acall():
        # a task created inside carries the context too
        await asyncio.create_task(aclient.chat.completions.create(model="gpt-4o-mini",
                                                                   messages=MESSAGES))

    call()
    asyncio.run(acall())
    features = [s.attributes[A.FEATURE] for s in spans.get_finished_spans()]
    assert features == ["sync-feature", "async-feature"]


def test_stream_reports_usage_ttfc_and_ends_when_exhausted(spans, client, fake_openai):
    fake_openai.expect(Reply(content="a b c d e", prompt_tokens=50, completion_tokens=5,
                             token_logprob=-0.2))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True},
                                            logprobs=True)
    assert spans.get_finished_spans() == ()  # still open while the caller reads
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "a b c d e "
    span = only_span(spans)
    attrs = span.attributes
    assert attrs[A.INPUT_TOKENS] == 50 and attrs[A.OUTPUT_TOKENS] == 5
    assert attrs[A.COST] == pytest.approx((50 * 0.15 + 5 * 0.60) / 1e6)
    assert list(attrs[A.FINISH_REASONS]) == ["stop"]
    assert attrs[A.CONFIDENCE] == pytest.approx(math.exp(-0.2))
    duration_s = (span.end_time - span.start_time) / 1e9
    assert 0 < attrs[A.TIME_TO_FIRST_CHUNK] <= duration_s


def test_stream_without_usage_has_no_cost(spans, client):
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    attrs = only_span(spans).attributes
    assert A.COST not in attrs and A.INPUT_TOKENS not in attrs
    assert A.TIME_TO_FIRST_CHUNK in attrs


def test_stream_span_ends_when_closed_early(spans, client):
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    assert only_span(spans).attributes[A.RESPONSE_MODEL] == "gpt-4o-mini"


def test_stream_span_ends_with_context_manager(spans, client):
    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                        stream=True) as stream:
        first = next(stream)
        assert first.choices[0].delta.role == "assistant"
    only_span(spans)


def test_stream_span_ends_when_abandoned(spans, client):
    def read_one():
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                stream=True)
        next(iter(stream))

    read_one()
    gc.collect()
    only_span(spans)


def _stream(client):
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                          stream_options={"include_usage": True})


def test_stream_read_by_hand_then_by_loop_counts_every_chunk(spans, client, fake_openai):
    fake_openai.expect(Reply(content="a b c", prompt_tokens=7, completion_tokens=3))
    called = time.perf_counter()
    stream = _stream(client)
    first = next(stream)
    first_read = time.perf_counter() - called
    time.sleep(0.05)  # the loop's first chunk comes later: not the stream's first
    rest = [c for c in stream]
    assert first.choices[0].delta.role == "assistant" and rest[-1].usage is not None
    attrs = only_span(spans).attributes
    assert attrs[A.INPUT_TOKENS] == 7 and attrs[A.OUTPUT_TOKENS] == 3
    assert list(attrs[A.FINISH_REASONS]) == ["stop"]
    assert 0 < attrs[A.TIME_TO_FIRST_CHUNK] <= first_read


def test_stream_relayed_by_yield_from_stays_open_until_its_last_chunk(spans, client,
                                                                      fake_openai):
    """A relay keeps only the iterator of the stream, not the stream object itself."""
    fake_openai.expect(Reply(content="a b c", prompt_tokens=7, completion_tokens=3))

    def relay():
        yield from _stream(client)

    chunks = relay()
    next(chunks)
    gc.collect()
    assert spans.get_finished_spans() == ()
    assert list(chunks)[-1].usage is not None
    assert only_span(spans).attributes[A.OUTPUT_TOKENS] == 3


def test_stream_left_by_break_stays_open_until_closed(spans, client):
    stream = _stream(client)
    for _ in stream:
        break
    gc.collect()
    assert spans.get_finished_spans() == ()
    stream.close()
    only_span(spans)


def test_stream_chunk_failure_is_counted_and_the_stream_goes_on(spans, client, fake_openai,
                                                                monkeypatch):
    fake_openai.expect(Reply(content="a b c", prompt_tokens=7, completion_tokens=3))

    def broken(_self, _chunk):
        raise RuntimeError("injected")

    monkeypatch.setattr(openai_instr.ChoicesAccumulator, "add", broken)
    monkeypatch.setattr(openai_instr.LeanChoicesAccumulator, "add", broken)
    before = _state.failures().get("openai stream chunk:RuntimeError", 0)
    assert "".join(c.choices[0].delta.content or "" for c in _stream(client) if c.choices) \
        == "a b c "
    # Six chunks (role, three words, finish, usage); a lean stream folds only the first and
    # the last two, at its end.
    assert _state.failures()["openai stream chunk:RuntimeError"] == before + 3
    only_span(spans)
    spans.clear()
    fake_openai.expect(Reply(content="a b c", prompt_tokens=7, completion_tokens=3))
    chunks = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True},
                                            logprobs=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c "
    assert _state.failures()["openai stream chunk:RuntimeError"] == before + 3 + 6  # each
    only_span(spans)


def test_lean_stream_folds_only_its_first_and_last_chunks(spans, client, fake_openai,
                                                         monkeypatch):
    """A stream that records nothing from its deltas keeps its chunks in a window and reads
    the first one and those from the finishing one on, whatever its length."""
    words = " ".join(f"w{i}" for i in range(200))
    fake_openai.expect(Reply(content=words, prompt_tokens=300, completion_tokens=200))
    folded = recorded(monkeypatch, openai_instr.LeanChoicesAccumulator, "add")
    read = list(_stream(client))
    assert len(read) == 203
    assert folded == [read[0], read[-2], read[-1]]
    attrs = only_span(spans).attributes
    assert attrs[A.RESPONSE_MODEL] == "gpt-4o-mini" and attrs[A.RESPONSE_ID]
    assert list(attrs[A.FINISH_REASONS]) == ["stop"]
    assert attrs[A.INPUT_TOKENS] == 300 and attrs[A.OUTPUT_TOKENS] == 200
    assert A.COST in attrs and A.TIME_TO_FIRST_CHUNK in attrs


@pytest.mark.parametrize("logprobs", [False, True], ids=["lean", "detailed"])
def test_a_read_stream_leaves_no_reference_cycle_of_ours(spans, client, fake_openai, logprobs):
    """What a traced stream allocates is freed by reference counting when it is done: a cycle
    waits for the host's garbage collector, and each one makes its collections run sooner."""
    fake_openai.expect(Reply(content="a b c", prompt_tokens=7, completion_tokens=3))
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                stream=True, logprobs=logprobs,
                                                stream_options={"include_usage": True}):
            pass
        gc.collect()
        # Objects of ours, and bound methods of ours (by the type's module: always a string).
        ours = [o for o in gc.garbage if any(type(x).__module__.startswith("infersight")
                                             for x in (o, getattr(o, "__self__", None)))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert only_span(spans).attributes[A.OUTPUT_TOKENS] == 3
    assert ours == []


def test_stream_raising_midway_ends_the_span_with_the_error(spans, client):
    """The provider's stream is stubbed (the fake server cannot break a stream midway): the
    wrapper `instrument()` installed is fed the client's own chunks, then an error."""
    chunks = list(_stream(client))
    spans.clear()

    def provider(*_args, **_kwargs):
        yield from chunks[:2]
        raise openai.APIConnectionError(request=None)

    wrapper = openai.resources.chat.completions.Completions.__dict__["create"]._self_wrapper
    stream = wrapper(provider, client.chat.completions, (),
                     {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    with pytest.raises(openai.APIConnectionError):
        for _ in stream:
            pass
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "APIConnectionError"
    assert span.attributes[A.RESPONSE_MODEL] == "gpt-4o-mini"  # from the chunks read


def test_async_chat_and_async_stream(spans, aclient, fake_openai):
    fake_openai.expect(Reply(prompt_tokens=10, completion_tokens=3),
                       Reply(content="x y", prompt_tokens=20, completion_tokens=2))

    async def main():
        await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True})
        async with stream:
            chunks = [c async for c in stream]
        return chunks

    chunks = asyncio.run(main())
    assert chunks[-1].usage.total_tokens == 22
    plain, streamed = spans.get_finished_spans()
    assert plain.attributes[A.INPUT_TOKENS] == 10
    assert streamed.attributes[A.INPUT_TOKENS] == 20
    assert A.TIME_TO_FIRST_CHUNK in streamed.attributes


def test_provider_error_reaches_caller_unchanged_and_marks_span(spans, client, fake_openai):
    fake_openai.expect(Reply(status=429, error_type="rate_limit_error"))
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 429
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "RateLimitError"
    assert [e.name for e in span.events] == ["exception"]


def test_async_error_reaches_caller(spans, aclient, fake_openai):
    fake_openai.expect(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        asyncio.run(aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
    assert only_span(spans).status.status_code == StatusCode.ERROR


def test_with_raw_response(spans, client, fake_openai):
    fake_openai.expect(Reply(prompt_tokens=7, completion_tokens=2))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.parse().usage.prompt_tokens == 7
    assert only_span(spans).attributes[A.INPUT_TOKENS] == 7


def test_content_not_captured_by_default(spans, client):
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attrs = only_span(spans).attributes
    assert A.INPUT_MESSAGES not in attrs and A.OUTPUT_MESSAGES not in attrs


def test_content_captured_on_opt_in(spans, client, monkeypatch):
    monkeypatch.setattr(_state, "capture_content", True)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attrs = only_span(spans).attributes
    assert "Summarise this ticket" in attrs[A.INPUT_MESSAGES]
    assert "fake provider" in attrs[A.OUTPUT_MESSAGES]


def test_extraction_failure_is_swallowed_and_counted(spans, client, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(openai_instr, "usage_attributes", broken)
    before = _state.failures().get("openai response:RuntimeError", 0)
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.content.startswith("Hello")
    assert _state.failures()["openai response:RuntimeError"] == before + 1
    only_span(spans)  # still ended


def test_instrument_twice_gives_one_span_and_uninstrument_restores(spans, client):
    original = openai.resources.chat.completions.Completions.__dict__["create"].__wrapped__
    infersight.instrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(spans.get_finished_spans()) == 1
    infersight.uninstrument()
    assert openai.resources.chat.completions.Completions.__dict__["create"] is original
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(spans.get_finished_spans()) == 1
    infersight.instrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(spans.get_finished_spans()) == 2


def test_streamed_content_captured_on_opt_in(spans, client, fake_openai, monkeypatch):
    monkeypatch.setattr(_state, "capture_content", True)
    fake_openai.expect(Reply(content="a b c", finish_reason="length"))
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    attrs = only_span(spans).attributes
    assert json.loads(attrs[A.OUTPUT_MESSAGES]) == [{"role": "assistant", "content": "a b c "}]
    assert list(attrs[A.FINISH_REASONS]) == ["length"]
