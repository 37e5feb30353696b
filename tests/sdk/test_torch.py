"""PyTorch modules traced through infersight.watch(): a small real network, CPU."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

import infersight
from infersight import _state
from infersight import attributes as A
from infersight.instrumentors import torch as torch_instr


class Classifier(nn.Module):
    def __init__(self, fail: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        self.fail = fail

    def forward(self, x):
        if self.fail:
            raise ValueError("bad batch shape")
        return self.body(x)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.randn(16, 4)


def test_forward_is_a_span_with_softmax_confidence(spans, batch):
    model = infersight.watch(Classifier(), name="intent", version="2024-06-01")
    logits = model(batch)
    [span] = spans.get_finished_spans()
    attrs = span.attributes
    assert (attrs[A.PROVIDER], attrs[A.REQUEST_MODEL], attrs[A.MODEL_VERSION]) == (
        "torch", "intent", "2024-06-01")
    assert attrs[A.BATCH_ROWS] == 16
    top = torch.softmax(logits.detach(), dim=-1).amax(dim=-1).numpy()
    assert attrs[A.CONFIDENCE] == pytest.approx(float(top.mean()), rel=1e-5)
    assert attrs[A.CONFIDENCE_P90] == pytest.approx(float(np.percentile(top, 90)), rel=1e-5)
    assert attrs[A.CONFIDENCE_METHOD] == "max_proba"


def test_unwatched_modules_and_submodules_make_no_spans(spans, batch):
    model = Classifier()
    model(batch)
    infersight.watch(model)
    infersight.watch(model)  # watching twice traces once
    model(batch)
    [span] = spans.get_finished_spans()
    assert span.attributes[A.REQUEST_MODEL] == "Classifier"


def test_user_confidence_and_regression_outputs(spans, batch):
    regressor = infersight.watch(nn.Linear(4, 1), name="price")
    scored = infersight.watch(nn.Linear(4, 2), name="scored",
                              confidence=lambda out: torch.sigmoid(out[:, 0]).detach().numpy())
    regressor(batch)
    out = scored(batch)
    reg_span, scored_span = spans.get_finished_spans()
    assert A.CONFIDENCE not in reg_span.attributes  # one output column: not class logits
    expected = torch.sigmoid(out[:, 0]).detach().numpy().mean()
    assert scored_span.attributes[A.CONFIDENCE] == pytest.approx(float(expected), rel=1e-5)
    assert scored_span.attributes[A.CONFIDENCE_METHOD] == "user"


def test_a_failing_user_confidence_is_counted_and_costs_the_span_nothing_else(spans, batch):
    def broken(out):
        raise RuntimeError("bad scorer")

    model = infersight.watch(nn.Linear(4, 2), name="scored", confidence=broken)
    before = _state.failures().get("torch forward:RuntimeError", 0)
    out = model(batch)
    [span] = spans.get_finished_spans()
    assert out.shape == (len(batch), 2)
    assert span.attributes[A.BATCH_ROWS] == len(batch)
    assert A.CONFIDENCE not in span.attributes
    assert _state.failures()["torch forward:RuntimeError"] == before + 1


def test_forward_exception_reaches_the_app_and_ends_the_span(spans, batch):
    model = infersight.watch(Classifier(fail=True))
    with pytest.raises(ValueError, match="bad batch shape"):
        model(batch)
    [span] = spans.get_finished_spans()
    assert span.attributes[A.ERROR_TYPE] == "ValueError"
    assert span.end_time is not None


def test_nested_watched_modules_are_parent_and_child(spans, batch):
    model = Classifier()
    infersight.watch(model.body, name="body")
    infersight.watch(model, name="outer")
    model(batch)
    inner, outer = spans.get_finished_spans()
    assert inner.parent.span_id == outer.context.span_id


def test_extraction_failure_is_counted_and_output_unchanged(spans, batch, monkeypatch):
    model = infersight.watch(Classifier())
    expected = model(batch)

    def broken(*args):
        raise RuntimeError("injected")

    monkeypatch.setattr(torch_instr, "result_attributes", broken)
    torch.testing.assert_close(model(batch), expected)
    assert _state.failures()["torch forward:RuntimeError"] >= 1


def test_watched_module_still_pickles(batch):
    model = infersight.watch(Classifier(), name="intent")
    clone = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(clone(batch), model(batch))
