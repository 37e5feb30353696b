"""transformers pipelines traced by instrument(): a tiny BERT built from a config (no hub)."""

from __future__ import annotations

import pytest
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer, pipeline

import infersight
from infersight import _state
from infersight import attributes as A
from infersight.instrumentors import transformers as tf_instr

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "is"]


@pytest.fixture(scope="module")
def classify(tmp_path_factory):
    """A real text-classification pipeline, saved and loaded from a local directory."""
    path = tmp_path_factory.mktemp("tiny-bert")
    (path / "vocab.txt").write_text("\n".join(VOCAB))
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(path)
    BertTokenizer(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path).eval()
    return pipeline("text-classification", model=model, tokenizer=BertTokenizer.from_pretrained(path))


def test_batch_call_is_one_span_with_pipeline_scores(spans, classify):
    texts = ["good movie", "bad movie", "the movie is good"]
    results = classify(texts)
    [span] = spans.get_finished_spans()
    attrs = span.attributes
    assert attrs[A.PROVIDER] == "transformers" and attrs[A.MODEL_TASK] == "text-classification"
    assert attrs[A.REQUEST_MODEL] == classify.model.config.name_or_path
    assert attrs[A.BATCH_ROWS] == 3
    scores = [r["score"] for r in results]
    assert attrs[A.CONFIDENCE] == pytest.approx(sum(scores) / 3)
    assert attrs[A.CONFIDENCE_P50] == pytest.approx(sorted(scores)[1])
    assert attrs[A.CONFIDENCE_METHOD] == "pipeline_score"


def test_top_k_confidence_is_the_top_score(spans, classify):
    result = classify("good", top_k=None)
    [span] = spans.get_finished_spans()
    assert span.attributes[A.BATCH_ROWS] == 1
    assert span.attributes[A.CONFIDENCE] == pytest.approx(max(r["score"] for r in result))


def test_revision_is_the_version_and_watch_overrides(spans, classify, monkeypatch):
    # from_pretrained records the hub commit the weights came from here; a local directory
    # has none, so the test sets it as the hub download would.
    monkeypatch.setattr(classify.model.config, "_commit_hash", "3f2a9c1", raising=False)
    classify("good")
    infersight.watch(classify, name="sentiment", version="v2")
    classify("bad")
    first, second = spans.get_finished_spans()
    assert first.attributes[A.MODEL_VERSION] == "3f2a9c1"
    assert (second.attributes[A.REQUEST_MODEL], second.attributes[A.MODEL_VERSION]) == (
        "sentiment", "v2")


def test_failures_are_counted_and_results_unchanged(spans, classify, monkeypatch):
    expected = classify("good movie")

    def broken(*args):
        raise RuntimeError("injected")

    monkeypatch.setattr(tf_instr, "result_attributes", broken)
    assert classify("good movie") == expected
    assert _state.failures()["transformers pipeline:RuntimeError"] >= 1
    with pytest.raises(Exception) as raised:
        classify(12345)  # not text: the pipeline's own error reaches the app unchanged
    assert spans.get_finished_spans()[-1].attributes[A.ERROR_TYPE] == type(raised.value).__qualname__
