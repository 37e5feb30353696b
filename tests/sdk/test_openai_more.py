"""The real `openai` client beyond chat.create: Responses API, embeddings, legacy completions,
parse, tool calls, the stream helpers, and provider naming from the client's base_url."""

from __future__ import annotations

import asyncio
import gc
import importlib

import openai
import pydantic
import pytest
from opentelemetry.trace import StatusCode

from infersight import attributes as A
from infersight.instrumentors import openai as openai_instr
from infersight.pricing import Usage, cost_usd
from infersight_collector.fake_provider import EMBEDDING_DIMENSIONS, Reply
from tests.span_checks import only_span, priced

MESSAGES = [{"role": "user", "content": "Summarise this ticket"}]


def test_patch_targets_exist_in_installed_openai():
    for module_name, path, _ in openai_instr.OpenAIInstrumentor().patches():
        owner_name, _, attr = path.rpartition(".")
        owner = getattr(importlib.import_module(module_name), owner_name)
        assert callable(owner.__dict__.get(attr)), \
            f"{module_name}.{path} missing in openai {openai.__version__}"


# ---- Responses API -------------------------------------------------------------------------

def test_responses_create_tokens_cached_reasoning_tools_and_cost(spans, client, fake_openai):
    fake_openai.expect(Reply(model="gpt-4o-mini-2024-07-18", prompt_tokens=1000,
                             completion_tokens=300, cached_tokens=600, reasoning_tokens=100,
                             tool_calls=("lookup_order", "refund")))
    response = client.responses.create(model="gpt-4o-mini", input="Where is my order?",
                                       max_output_tokens=400)
    span = only_span(spans)
    attrs = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert attrs[A.OPERATION] == "chat" and attrs[A.PROVIDER] == "openai"
    assert attrs[A.RESPONSE_ID] == response.id
    assert attrs[A.RESPONSE_MODEL] == attrs[A.MODEL_VERSION] == "gpt-4o-mini-2024-07-18"
    assert attrs[A.REQUEST_MAX_TOKENS] == 400
    assert (attrs[A.INPUT_TOKENS], attrs[A.OUTPUT_TOKENS]) == (1000, 300)
    assert attrs[A.CACHE_READ_TOKENS] == 600
    assert attrs[A.REASONING_TOKENS] == 100
    assert list(attrs[A.FINISH_REASONS]) == ["completed"]
    assert attrs[A.TOOL_CALL_COUNT] == 2
    assert list(attrs[A.TOOL_CALL_NAMES]) == ["lookup_order", "refund"]
    assert not any("{}" in str(v) for v in attrs.values())  # no tool arguments without capture
    assert attrs[A.COST] == pytest.approx(
        priced("gpt-4o-mini", input=1000, output=300, cache_read=600))
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    assert attrs[A.COST] == pytest.approx((400 * 0.15 + 600 * 0.075 + 300 * 0.60) / 1e6)


def test_responses_incomplete_reports_its_reason(spans, client, fake_openai):
    fake_openai.expect(Reply(finish_reason="length"))
    client.responses.create(model="gpt-4o-mini", input="hi")
    assert list(only_span(spans).attributes[A.FINISH_REASONS]) == ["max_output_tokens"]


def test_responses_stream_usage_from_final_event(spans, client, fake_openai):
    fake_openai.expect(Reply(content="a b c", prompt_tokens=50, completion_tokens=3))
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    span = only_span(spans)
    attrs = span.attributes
    assert (attrs[A.INPUT_TOKENS], attrs[A.OUTPUT_TOKENS]) == (50, 3)
    assert attrs[A.COST] == pytest.approx(priced("gpt-4o-mini", input=50, output=3))
    assert 0 < attrs[A.TIME_TO_FIRST_CHUNK] <= (span.end_time - span.start_time) / 1e9


def test_responses_stream_helper_gives_one_span(spans, client, fake_openai):
    fake_openai.expect(Reply(content="one two", prompt_tokens=9, completion_tokens=2))
    with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        final = stream.get_final_response()
    assert final.usage.input_tokens == 9
    attrs = only_span(spans).attributes
    assert attrs[A.INPUT_TOKENS] == 9 and A.TIME_TO_FIRST_CHUNK in attrs


def test_async_responses_and_async_stream(spans, aclient, fake_openai):
    fake_openai.expect(Reply(prompt_tokens=11, completion_tokens=2),
                       Reply(prompt_tokens=22, completion_tokens=2))

    async def main():
        await aclient.responses.create(model="gpt-4o-mini", input="hi")
        stream = await aclient.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        return [event.type async for event in stream]

    types = asyncio.run(main())
    assert types[0] == "response.created" and types[-1] == "response.completed"
    plain, streamed = spans.get_finished_spans()
    assert plain.attributes[A.INPUT_TOKENS] == 11
    assert streamed.attributes[A.INPUT_TOKENS] == 22
    assert A.TIME_TO_FIRST_CHUNK in streamed.attributes


def test_responses_error_reaches_caller(spans, client, fake_openai):
    fake_openai.expect(Reply(status=400, error_type="invalid_request_error"))
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input="hi")
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "BadRequestError"


# ---- chat: tool calls, parse, the stream helper ------------------------------------------

def test_chat_tool_calls_names_without_arguments(spans, client, fake_openai):
    fake_openai.expect(Reply(content=None, tool_calls=("get_weather",), finish_reason="tool_calls"))
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.tool_calls[0].function.arguments == "{}"
    attrs = only_span(spans).attributes
    assert attrs[A.TOOL_CALL_COUNT] == 1
    assert list(attrs[A.TOOL_CALL_NAMES]) == ["get_weather"]
    assert list(attrs[A.FINISH_REASONS]) == ["tool_calls"]


TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
         for name in ("search", "fetch")]


def test_streamed_tool_calls_are_counted_once_each(spans, client, fake_openai):
    """Chunks are read for tool calls when the request declared tools (a model calls no
    other); a stream without them is read for finish reasons, usage, model and id only."""
    fake_openai.expect(Reply(content="", tool_calls=("search", "fetch"),
                             finish_reason="tool_calls"))
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            tools=TOOLS):
        pass
    attrs = only_span(spans).attributes
    assert attrs[A.TOOL_CALL_COUNT] == 2
    assert list(attrs[A.TOOL_CALL_NAMES]) == ["search", "fetch"]


class Answer(pydantic.BaseModel):
    answer: str


def test_chat_parse(spans, client, fake_openai):
    fake_openai.expect(Reply(content='{"answer": "42"}', prompt_tokens=30, completion_tokens=5))
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES,
                                           response_format=Answer)
    assert parsed.choices[0].message.parsed == Answer(answer="42")
    attrs = only_span(spans).attributes
    assert (attrs[A.INPUT_TOKENS], attrs[A.OUTPUT_TOKENS]) == (30, 5)


def test_chat_stream_helper_gives_one_span(spans, client, fake_openai):
    fake_openai.expect(Reply(content="x y z", prompt_tokens=8, completion_tokens=3))
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES,
                                        stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "x y z "
    attrs = only_span(spans).attributes
    assert attrs[A.INPUT_TOKENS] == 8 and attrs[A.OUTPUT_TOKENS] == 3


def test_async_stream_closed_early_and_abandoned(spans, aclient):
    async def main():
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                       stream=True)
        await stream.__anext__()
        await stream.close()
        abandoned = await aclient.chat.completions.create(model="gpt-4o-mini",
                                                          messages=MESSAGES, stream=True)
        await abandoned.__anext__()

    asyncio.run(main())
    gc.collect()
    assert len(spans.get_finished_spans()) == 2


# ---- embeddings and legacy completions -------------------------------------------------------

def test_embeddings(spans, client, fake_openai):
    fake_openai.expect(Reply(prompt_tokens=12))
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == EMBEDDING_DIMENSIONS
    span = only_span(spans)
    attrs = span.attributes
    assert span.name == "embeddings text-embedding-3-small"
    assert attrs[A.OPERATION] == "embeddings"
    assert attrs[A.INPUT_TOKENS] == 12 and A.OUTPUT_TOKENS not in attrs
    assert attrs[A.EMBEDDING_DIMENSIONS] == EMBEDDING_DIMENSIONS
    assert attrs[A.COST] == pytest.approx(priced("text-embedding-3-small", input=12))


def test_async_embeddings(spans, aclient, fake_openai):
    fake_openai.expect(Reply(prompt_tokens=4))
    asyncio.run(aclient.embeddings.create(model="text-embedding-3-small", input="a"))
    assert only_span(spans).attributes[A.INPUT_TOKENS] == 4


def test_legacy_completions_and_stream(spans, client, fake_openai):
    fake_openai.expect(Reply(content="done", prompt_tokens=5, completion_tokens=1),
                       Reply(content="p q", prompt_tokens=6, completion_tokens=2))
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say done")
    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say p q",
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "p q "
    plain, streamed = spans.get_finished_spans()
    assert plain.attributes[A.OPERATION] == "text_completion"
    assert plain.attributes[A.INPUT_TOKENS] == 5
    assert list(plain.attributes[A.FINISH_REASONS]) == ["stop"]
    assert streamed.attributes[A.OUTPUT_TOKENS] == 2
    assert A.TIME_TO_FIRST_CHUNK in streamed.attributes
    # Priced when the price file knows the model; never a made-up number.
    assert plain.attributes.get(A.COST) == cost_usd("gpt-3.5-turbo-instruct",
                                                     Usage(input=5, output=1))


# ---- provider naming -------------------------------------------------------------------------

@pytest.mark.parametrize("url, provider", [
    ("https://api.openai.com/v1", "openai"),
    ("https://my-res.openai.azure.com/openai/deployments/gpt4", "azure.ai.openai"),
    ("https://my-res.cognitiveservices.azure.com/", "azure.ai.openai"),
    ("https://api.groq.com/openai/v1", "groq"),
    ("https://api.together.xyz/v1", "together_ai"),
    ("https://openrouter.ai/api/v1", "openrouter"),
    ("https://api.deepseek.com", "deepseek"),
    ("https://api.fireworks.ai/inference/v1", "fireworks_ai"),
    ("https://generativelanguage.googleapis.com/v1beta/openai/", "gcp.gemini"),
    ("http://localhost:11434/v1", "ollama"),
    ("http://vllm-server.models.svc:8000/v1", "vllm"),
    ("http://127.0.0.1:8000/v1", "openai"),
    ("http://gateway.internal/v1", "openai"),
])
def test_provider_named_from_base_url(url, provider):
    assert openai_instr.provider_name(url) == provider


def test_azure_client_is_named_and_named_once_per_client(spans, fake_openai):
    root = fake_openai.base_url.removesuffix("/v1")
    client = openai.AzureOpenAI(azure_endpoint=root, api_key="test", api_version="2024-10-21",
                                max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert only_span(spans).attributes[A.PROVIDER] == "azure.ai.openai"
    assert openai_instr._providers[client] == "azure.ai.openai"  # cached for the next calls
    assert fake_openai.requests[0].path.startswith("/openai/deployments/gpt-4o-mini/")


def test_provider_worked_out_once_per_client(spans, client, monkeypatch):
    calls = []
    real = openai_instr.provider_name
    monkeypatch.setattr(openai_instr, "provider_name", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(calls) == 1
    assert {s.attributes[A.PROVIDER] for s in spans.get_finished_spans()} == {"openai"}


@pytest.mark.parametrize("host, provider", [("api.groq.com/openai", "groq"),
                                            ("api.together.xyz", "together_ai")])
def test_a_hosts_own_price_applies_to_the_open_models_it_serves(spans, fake_openai, host,
                                                                 provider):
    """gpt-oss-120b costs differently on Groq and Together and has no provider-free price.
    The client reaches the named host through the fake server acting as an HTTP proxy, so the
    real client and the real provider naming see that host."""
    proxy = fake_openai.base_url.rsplit("/v1", 1)[0]
    client = openai.OpenAI(base_url=f"http://{host}/v1", api_key="test", max_retries=0,
                           http_client=openai.DefaultHttpxClient(proxy=proxy))
    fake_openai.expect(Reply(prompt_tokens=1000, completion_tokens=100))
    client.chat.completions.create(model="openai/gpt-oss-120b", messages=MESSAGES)
    attrs = only_span(spans).attributes
    assert attrs[A.PROVIDER] == provider
    assert cost_usd("openai/gpt-oss-120b", Usage(input=1000, output=100)) is None
    assert attrs[A.COST] == pytest.approx(cost_usd(
        "openai/gpt-oss-120b", Usage(input=1000, output=100), provider=provider))
    assert attrs[A.COST_SOURCE] == "sdk"


def test_async_stream_loop_left_by_break_stays_open_until_closed(spans, aclient, fake_openai):
    fake_openai.expect(Reply(content="a b", prompt_tokens=4, completion_tokens=2))

    async def main():
        whole = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True})
        chunks = [c async for c in whole]
        left = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                     stream=True)
        async for _ in left:
            break
        assert len(spans.get_finished_spans()) == 1
        await left.close()
        return chunks

    chunks = asyncio.run(main())
    whole, left = spans.get_finished_spans()
    assert chunks[-1].usage is not None
    assert whole.attributes[A.INPUT_TOKENS] == 4 and A.TIME_TO_FIRST_CHUNK in whole.attributes
    assert left.attributes[A.RESPONSE_MODEL] == "gpt-4o-mini"
