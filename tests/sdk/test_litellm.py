"""The real `litellm` against loopback OpenAI and Anthropic servers.

LiteLLM's releases that install here pin openai below 3, which the main suite tests, so it is
not in the dev environment: `make test-litellm` runs this file in a virtualenv of its own
(.venv-litellm); elsewhere it is skipped.
"""

from __future__ import annotations

import asyncio

import pytest

litellm = pytest.importorskip(
    "litellm", reason="litellm is not in the dev environment (it pins openai<3): "
                      "run `make test-litellm`")

from opentelemetry.trace import StatusCode  # noqa: E402

from infersight import attributes as A  # noqa: E402
from infersight_collector.fake_provider import FakeAnthropic, Reply  # noqa: E402
from tests.span_checks import priced  # noqa: E402

MESSAGES = [{"role": "user", "content": "Summarise this ticket"}]
GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5-20251001"


@pytest.fixture
def fake_anthropic():
    with FakeAnthropic() as server:
        yield server


def only_span(spans):
    finished = spans.get_finished_spans()
    assert len(finished) == 1, [(s.name, s.instrumentation_scope.name) for s in finished]
    return finished[0]


def openai_call(fake, **kwargs):
    return dict(model=f"openai/{GPT}", messages=MESSAGES, api_base=fake.base_url,
                api_key="test", num_retries=0, **kwargs)


def test_openai_route_one_span_though_openai_sdk_is_instrumented(spans, fake_openai):
    fake_openai.expect(Reply(model=GPT, prompt_tokens=120, completion_tokens=7,
                             cached_tokens=100))
    response = litellm.completion(**openai_call(fake_openai, max_tokens=50))
    assert len(fake_openai.requests) == 1  # LiteLLM went through the openai SDK
    span = only_span(spans)
    attrs = span.attributes
    assert span.instrumentation_scope.name == "infersight"
    assert span.name == f"chat openai/{GPT}"
    assert attrs[A.PROVIDER] == "openai" and attrs[A.REQUEST_MAX_TOKENS] == 50
    assert attrs[A.RESPONSE_MODEL] == response.model
    assert attrs[A.INPUT_TOKENS] == 120 and attrs[A.OUTPUT_TOKENS] == 7
    assert attrs[A.CACHE_READ_TOKENS] == 100
    assert attrs[A.COST] == pytest.approx(priced(response.model, input=120, output=7,
                                                 cache_read=100))


def test_openai_sdk_alone_still_traced(spans, fake_openai):
    """The exclusive LiteLLM span is what hides the SDK's span, not a broken SDK patch."""
    import openai

    openai.OpenAI(base_url=fake_openai.base_url, api_key="test").chat.completions.create(
        model=GPT, messages=MESSAGES)
    assert only_span(spans).attributes[A.PROVIDER] == "openai"


def test_async_and_streamed_with_usage(spans, fake_openai):
    fake_openai.expect(Reply(model=GPT, prompt_tokens=10, completion_tokens=2),
                       Reply(model=GPT, prompt_tokens=20, completion_tokens=3,
                             content="one two three"))

    async def main():
        await litellm.acompletion(**openai_call(fake_openai))
        stream = await litellm.acompletion(**openai_call(
            fake_openai, stream=True, stream_options={"include_usage": True}))
        return [c async for c in stream]

    chunks = asyncio.run(main())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
        == "one two three "
    plain, streamed = spans.get_finished_spans()
    assert [plain.attributes[A.INPUT_TOKENS], streamed.attributes[A.INPUT_TOKENS]] == [10, 20]
    assert [plain.attributes[A.OUTPUT_TOKENS], streamed.attributes[A.OUTPUT_TOKENS]] == [2, 3]
    assert A.TIME_TO_FIRST_CHUNK in streamed.attributes
    assert streamed.attributes[A.PROVIDER] == "openai"


def test_sync_stream_closed_early_ends_span(spans, fake_openai):
    stream = litellm.completion(**openai_call(fake_openai, stream=True))
    next(iter(stream))
    del stream
    import gc

    gc.collect()
    only_span(spans)


def test_anthropic_route_cache_writes_priced(spans, fake_anthropic):
    fake_anthropic.expect(Reply(model=CLAUDE, prompt_tokens=200, completion_tokens=50,
                                cached_tokens=1000, cache_write_tokens=300))
    litellm.completion(model=f"anthropic/{CLAUDE}", messages=MESSAGES, max_tokens=100,
                       api_base=fake_anthropic.base_url, api_key="test", num_retries=0)
    attrs = only_span(spans).attributes
    assert attrs[A.PROVIDER] == "anthropic"
    assert attrs[A.INPUT_TOKENS] == 200 + 1000 + 300 and attrs[A.OUTPUT_TOKENS] == 50
    assert attrs[A.CACHE_READ_TOKENS] == 1000 and attrs[A.CACHE_WRITE_TOKENS] == 300
    assert attrs[A.COST] == pytest.approx(priced(CLAUDE, input=1500, output=50,
                                                 cache_read=1000, cache_write=300))


def test_error_reaches_caller_unchanged(spans, fake_openai):
    fake_openai.expect(Reply(status=429, error_type="rate_limit_exceeded"))
    with pytest.raises(litellm.RateLimitError) as raised:
        litellm.completion(**openai_call(fake_openai))
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == type(raised.value).__qualname__
