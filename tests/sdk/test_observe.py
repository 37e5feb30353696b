"""@infersight.observe for any model function, and watch()'s argument checks."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import infersight
from infersight import attributes as A


def test_sync_function_span_with_rows_and_confidence(spans):
    @infersight.observe(name="churn", version="2024-06", confidence=lambda out: out[:, 1])
    def score(rows):
        return np.column_stack([rows, 1 - rows])

    out = score(np.array([0.1, 0.2, 0.6, 0.9]))
    [span] = spans.get_finished_spans()
    attrs = span.attributes
    assert (attrs[A.PROVIDER], attrs[A.OPERATION]) == ("custom", "predict")
    assert (attrs[A.REQUEST_MODEL], attrs[A.MODEL_VERSION]) == ("churn", "2024-06")
    assert attrs[A.BATCH_ROWS] == 4
    assert attrs[A.CONFIDENCE] == pytest.approx(out[:, 1].mean())
    assert attrs[A.CONFIDENCE_P10] == pytest.approx(np.percentile(out[:, 1], 10))


def test_bare_decorator_async_and_plain_lists(spans):
    @infersight.observe
    async def rerank(docs):
        await asyncio.sleep(0)
        return sorted(docs)

    @infersight.observe(confidence=lambda out: [0.2, 0.4, 0.9])
    def classify(items):
        return items

    assert asyncio.run(rerank([3, 1, 2])) == [1, 2, 3]
    classify(["a", "b", "c"])
    first, second = spans.get_finished_spans()
    assert first.attributes[A.REQUEST_MODEL].endswith("rerank")
    assert first.attributes[A.BATCH_ROWS] == 3
    assert second.attributes[A.CONFIDENCE] == pytest.approx(0.5)
    assert second.attributes[A.CONFIDENCE_P50] == pytest.approx(np.percentile([0.2, 0.4, 0.9], 50))


def test_llm_calls_inside_an_observed_function_are_children(spans, fake_openai):
    import openai

    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="x", max_retries=0)

    @infersight.observe(name="agent")
    def agent():
        return client.chat.completions.create(model="gpt-4o-mini", messages=[])

    agent()
    chat, outer = spans.get_finished_spans()
    assert chat.parent.span_id == outer.context.span_id


def test_async_exception_passes_through(spans):
    @infersight.observe(name="flaky")
    async def flaky():
        raise TimeoutError("model server slow")

    with pytest.raises(TimeoutError, match="model server slow"):
        asyncio.run(flaky())
    assert spans.get_finished_spans()[0].attributes[A.ERROR_TYPE] == "TimeoutError"


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="version must be a string"):
        infersight.observe(version=3)
    with pytest.raises(TypeError, match="confidence must be a function"):
        infersight.watch(object(), confidence=0.9)
    with pytest.raises(TypeError, match="decorate the function"):
        infersight.watch(42)


@pytest.mark.parametrize("bad", [
    [0.2, float("nan"), 0.9],                   # a list: NaN sorts anywhere
    np.array([0.2, np.nan, 0.9]),               # a few rows: summarised in Python
    np.append(np.full(100, 0.5), np.nan),       # many rows: summarised in numpy
    np.array([0.2, 1.5]),
])
def test_a_confidence_outside_0_1_is_left_out_and_counted_alone(spans, bad):
    from infersight import _state

    @infersight.observe(name="scorer", confidence=lambda out: bad)
    def score(rows):
        return rows

    before = sum(n for k, n in _state.failures().items() if k.endswith(":ValueError"))
    assert score([1, 2]) == [1, 2]  # the call itself is untouched
    [span] = spans.get_finished_spans()
    assert A.CONFIDENCE not in span.attributes
    assert span.attributes[A.BATCH_ROWS] == 2  # the rest of the result's attributes stay
    assert sum(n for k, n in _state.failures().items() if k.endswith(":ValueError")) == before + 1
