"""The real boto3 bedrock-runtime client against a loopback Bedrock (JSON and the binary
AWS event-stream encoding)."""

from __future__ import annotations

import gc
import json

import boto3
import botocore.exceptions
import pytest
from opentelemetry.trace import StatusCode

from infersight import attributes as A
from infersight.pricing import Usage, cost_usd
from infersight_collector.fake_provider import Reply
from tests.fakes import LoopbackServer
from tests.fakes.bedrock import route
from tests.span_checks import only_span

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Summarise this ticket"}]}]


@pytest.fixture
def fake():
    with LoopbackServer(route) as server:
        yield server


@pytest.fixture
def client(fake):
    return boto3.client("bedrock-runtime", endpoint_url=fake.url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=botocore.config.Config(retries={"max_attempts": 1}))


def assert_cost_agrees(attrs, model, **usage):
    """The span's cost is the pricing module's for these tokens, or absent when unpriced."""
    assert attrs.get(A.COST) == pytest.approx(cost_usd(model, Usage(**usage)))


def test_converse_tokens_cache_tools(spans, client, fake):
    fake.expect(Reply(prompt_tokens=100, completion_tokens=20, cached_tokens=500,
                      cache_write_tokens=50, tool_calls=("lookup",), finish_reason="tool_calls"))
    result = client.converse(modelId=CLAUDE, messages=MESSAGES,
                             inferenceConfig={"maxTokens": 64, "temperature": 0.1})
    assert result["usage"]["inputTokens"] == 100
    span = only_span(spans)
    attrs = span.attributes
    assert span.name == f"chat {CLAUDE}"
    assert attrs[A.PROVIDER] == "aws.bedrock" and attrs[A.REQUEST_MODEL] == CLAUDE
    assert attrs[A.REQUEST_MAX_TOKENS] == 64 and attrs[A.REQUEST_TEMPERATURE] == 0.1
    assert attrs[A.INPUT_TOKENS] == 650 and attrs[A.OUTPUT_TOKENS] == 20
    assert attrs[A.CACHE_READ_TOKENS] == 500 and attrs[A.CACHE_WRITE_TOKENS] == 50
    assert list(attrs[A.FINISH_REASONS]) == ["tool_use"]
    assert list(attrs[A.TOOL_CALL_NAMES]) == ["lookup"]
    assert_cost_agrees(attrs, CLAUDE, input=650, output=20, cache_read=500, cache_write=50)


def test_converse_stream_usage_from_metadata_event(spans, client, fake):
    fake.expect(Reply(content="a b c", prompt_tokens=30, completion_tokens=3))
    result = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
    events = list(result["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events
                   if "contentBlockDelta" in e) == "a b c "
    span = only_span(spans)
    attrs = span.attributes
    assert (attrs[A.INPUT_TOKENS], attrs[A.OUTPUT_TOKENS]) == (30, 3)
    assert list(attrs[A.FINISH_REASONS]) == ["end_turn"]
    assert 0 < attrs[A.TIME_TO_FIRST_CHUNK] <= (span.end_time - span.start_time) / 1e9
    assert_cost_agrees(attrs, CLAUDE, input=30, output=3)


def test_converse_stream_closed_early_and_abandoned(spans, client):
    stream = client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
    next(iter(stream))
    stream.close()
    assert len(spans.get_finished_spans()) == 1

    def read_one():
        next(iter(client.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]))

    read_one()
    gc.collect()
    assert len(spans.get_finished_spans()) == 2


def test_invoke_model_anthropic_body_and_caller_still_reads_it(spans, client, fake):
    fake.expect(Reply(model="claude-3-5-haiku-20241022", content="hi", prompt_tokens=40,
                      completion_tokens=2, cached_tokens=100))
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "hi"}]})
    result = client.invoke_model(modelId=CLAUDE, body=body)
    payload = json.loads(result["body"].read())
    assert payload["content"][0]["text"] == "hi"
    attrs = only_span(spans).attributes
    assert attrs[A.INPUT_TOKENS] == 140 and attrs[A.CACHE_READ_TOKENS] == 100
    assert attrs[A.RESPONSE_MODEL] == "claude-3-5-haiku-20241022"
    cost = cost_usd("claude-3-5-haiku-20241022", Usage(input=140, output=2, cache_read=100))
    assert cost is not None and attrs[A.COST] == pytest.approx(cost)


def test_invoke_model_llama_body(spans, client, fake):
    fake.expect(Reply(content="ok", prompt_tokens=12, completion_tokens=1))
    result = client.invoke_model(modelId=LLAMA, body=json.dumps({"prompt": "hi",
                                                                  "max_gen_len": 5}))
    assert json.loads(result["body"].read())["generation"] == "ok"
    attrs = only_span(spans).attributes
    assert (attrs[A.INPUT_TOKENS], attrs[A.OUTPUT_TOKENS]) == (12, 1)
    assert list(attrs[A.FINISH_REASONS]) == ["stop"]
    assert_cost_agrees(attrs, LLAMA, input=12, output=1)


def test_error_reaches_caller_unchanged(spans, client, fake):
    fake.expect(Reply(status=400, error_type="ValidationException"))
    with pytest.raises(botocore.exceptions.ClientError):
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    span = only_span(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "ClientError"


def test_other_services_and_operations_are_not_traced(spans, client, fake):
    sts = boto3.client("sts", endpoint_url=fake.url, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    with pytest.raises(Exception):
        sts.get_caller_identity()  # the fake does not speak STS; no span either way
    assert spans.get_finished_spans() == ()
