"""PyTorch: a module's forward traced after `infersight.watch(module, ...)`.

Usage:
    model = infersight.watch(model, name="intent", version="2024-06-01")
    model(batch)          # one predict span per call of the watched module

Torch has no single "predict" to patch, so only watched modules are traced, through forward
hooks (the pre-hook opens the span, an `always_call` forward hook closes it, also when forward
raises). Watched modules nested in one another give nested spans. Default confidence: for a
2-D floating output (or an output's `.logits`) of shape (rows, classes), the softmax of each
row's logits, its max probability summarised over the batch. Pass `confidence=fn` (a function
of the output) for anything else, e.g. a model that already outputs probabilities.
"""

from __future__ import annotations

import contextvars
import sys
import weakref
from typing import Any

from .. import attributes as A
from ..observe import begin, fail, finish, guarded_confidence, model_attributes, rows_of, watched

PROVIDER = "torch"
WHERE = "torch forward"  # its failures are counted under this

_traced: "weakref.WeakSet[Any]" = weakref.WeakSet()
# The spans of the watched modules currently running in this context, innermost last.
_open: contextvars.ContextVar[tuple] = contextvars.ContextVar("infersight_torch_open", default=())


def trace_module(module: Any) -> None:
    """Trace `module`'s forward from now on (once, however often it is watched)."""
    if module in _traced:
        return
    module.register_forward_pre_hook(_before)
    module.register_forward_hook(_after, always_call=True)
    _traced.add(module)


def request_attributes(module: Any) -> dict[str, Any]:
    user = watched(module)
    name = (user and user.name) or type(module).__name__
    return model_attributes(PROVIDER, name, user and user.version)


def default_confidence(output: Any) -> Any:
    """Per-row max softmax probability of classification logits, or None if not logits."""
    import torch

    logits = getattr(output, "logits", output)
    if not (isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[-1] > 1
            and logits.is_floating_point()):
        return None
    with torch.no_grad():
        return torch.softmax(logits.detach().float(), dim=-1).amax(dim=-1).cpu().numpy()


def result_attributes(module: Any, inputs: tuple, output: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    rows = rows_of(inputs[0]) if inputs else None
    if rows is None:
        rows = rows_of(getattr(output, "logits", output))
    if rows is not None:
        attrs[A.BATCH_ROWS] = rows
    user = watched(module)
    if user is not None and user.confidence is not None:
        attrs.update(guarded_confidence(WHERE, lambda: user.confidence(output), "user"))
    else:
        attrs.update(guarded_confidence(WHERE, lambda: default_confidence(output), "max_proba"))
    return attrs


def _before(module, inputs):
    span, token = begin(WHERE, lambda: request_attributes(module))
    _open.set(_open.get() + ((module, span, token),))


def _after(module, inputs, output):
    stack = _open.get()
    if not stack or stack[-1][0] is not module:
        return None
    _open.set(stack[:-1])
    _, span, token = stack[-1]
    if span is None:
        return None
    exc = sys.exc_info()[1]
    if output is None and exc is not None:  # forward raised: torch calls us from its except
        fail(span, token, exc)
    else:
        finish(WHERE, span, token, lambda: result_attributes(module, inputs, output))
    return None
