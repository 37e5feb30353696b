"""Hugging Face transformers pipelines: each call of a pipeline is one predict span.

Usage:
    infersight.instrument()
    classify = pipeline("text-classification", model="...")
    classify(["great product", "broken on arrival"])

The span carries the task, the model's name (`name_or_path`) and revision (the hub commit the
weights came from) as version, the rows in the batch, and confidence from the pipeline's own
scores: per input, the top score (the predicted label's probability for classification), then
the mean and p10/p50/p90 over the batch. Pipelines without scores (generation) have none.
`infersight.watch(pipe, name=..., version=...)` overrides name and version.
"""

from __future__ import annotations

import contextvars
from typing import Any

from .. import attributes as A
from ..observe import guarded_confidence, model_attributes, outer_call, watched
from . import Instrumentor

PROVIDER = "transformers"
WHERE = "transformers pipeline"  # its failures are counted under this

_in_call: contextvars.ContextVar[bool] = contextvars.ContextVar("infersight_transformers_call",
                                                                default=False)


class TransformersInstrumentor(Instrumentor):
    module = "transformers.pipelines.base"

    def patches(self):
        return [("transformers.pipelines.base", "Pipeline.__call__", _call)]


# ---- pure extraction -------------------------------------------------------------------

def request_attributes(pipe: Any) -> dict[str, Any]:
    user = watched(pipe)
    model = getattr(pipe, "model", None)
    config = getattr(model, "config", None)
    name = ((user and user.name) or getattr(config, "name_or_path", None)
            or type(model).__name__)
    version = (user and user.version) or getattr(config, "_commit_hash", None)
    attrs = model_attributes(PROVIDER, name, version)
    if getattr(pipe, "task", None):
        attrs[A.MODEL_TASK] = pipe.task
    return attrs


def row_score(row: Any) -> float | None:
    """The top score of one input's result: a {"score": ...} dict or a list of them."""
    if isinstance(row, dict):
        score = row.get("score")
        return float(score) if isinstance(score, (int, float)) else None
    if isinstance(row, list) and row:
        scores = [s for s in map(row_score, row) if s is not None]
        return max(scores) if scores else None
    return None


def result_attributes(pipe: Any, inputs: Any, result: Any) -> dict[str, Any]:
    batched = isinstance(inputs, list)
    rows = result if batched and isinstance(result, list) else [result]
    attrs: dict[str, Any] = {A.BATCH_ROWS: len(inputs) if batched else 1}
    user = watched(pipe)
    if user is not None and user.confidence is not None:
        attrs.update(guarded_confidence(WHERE, lambda: user.confidence(result), "user"))
        return attrs
    scores = [s for s in map(row_score, rows) if s is not None]
    if scores and len(scores) == len(rows):
        attrs.update(guarded_confidence(WHERE, lambda: scores, "pipeline_score"))
    return attrs


# ---- wrapper ----------------------------------------------------------------------------

def _call(wrapped, instance, args, kwargs):
    inputs = args[0] if args else kwargs.get("inputs")
    return outer_call(_in_call, WHERE, lambda: request_attributes(instance),
                      lambda result: result_attributes(instance, inputs, result),
                      wrapped, args, kwargs)
