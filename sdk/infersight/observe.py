"""`@infersight.observe` for any model function, and `infersight.watch()` for model objects.

Usage:
    @infersight.observe(name="churn", version="2024-06", confidence=lambda out: out["p"])
    def score(features): ...

    model = infersight.watch(model, name="fraud", version="v7")   # sklearn, torch, pipelines

A traced model call is one span (`gen_ai.operation.name = predict`) with the model's name and
version, the batch's row count and, where known, its confidence: the mean over the rows and
the batch's p10/p50/p90. `confidence` is a function of the call's output returning one number
or one number per row, each in [0, 1].
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from opentelemetry import context as otel_context, trace

from . import _state
from . import attributes as A
from .instrumentors import end_with_error, set_attributes, start_span, suppressed

OPERATION = "predict"
CUSTOM_PROVIDER = "custom"


@dataclass(frozen=True)
class Watched:
    """What the user said about one model object through `watch()`."""

    name: str | None = None
    version: str | None = None
    confidence: Callable[[Any], Any] | None = None


_watched: "weakref.WeakKeyDictionary[Any, Watched]" = weakref.WeakKeyDictionary()


def watched(model: Any) -> Watched | None:
    """The `watch()` settings of `model`, or None (also for objects that cannot be watched)."""
    try:
        return _watched.get(model)
    except TypeError:
        return None


def _check(name: str | None, version: str | None, confidence: Any) -> None:
    for label, value in (("name", name), ("version", version)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"infersight: {label} must be a string, got {type(value).__name__}")
    if confidence is not None and not callable(confidence):
        raise TypeError("infersight: confidence must be a function of the model's output "
                        f"returning a number or one number per row, got {type(confidence).__name__}")


def watch(model: Any, *, name: str | None = None, version: str | None = None,
          confidence: Callable[[Any], Any] | None = None) -> Any:
    """Name and version a model object and return it. sklearn estimators and transformers
    pipelines are traced by `instrument()` and take the name/version given here; a torch
    module's forward is traced from now on. Without `version`, an sklearn model is versioned
    by a fingerprint of its fitted parameters."""
    _check(name, version, confidence)
    try:
        _watched[model] = Watched(name, version, confidence)
    except TypeError:
        raise TypeError(f"infersight.watch() cannot track a {type(model).__name__}; decorate the "
                        "function that calls it with @infersight.observe instead") from None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from .instrumentors.torch import trace_module

        trace_module(model)
    return model


# ---- shared by the classic-model instrumentors ---------------------------------------------

# Confidences of up to this many rows are summarised as Python floats rather than in numpy,
# whose per-call costs dominate a small batch: 8-11 CPU-us less from 1 to 32 rows, 3 at 128.
_SMALL_BATCH = 64


def confidence_attributes(values: Any, method: str) -> dict[str, Any]:
    """Mean and p10/p50/p90 of per-row confidences (a number, a sequence or a numpy array)."""
    if values is None:
        return {}
    if isinstance(values, (int, float)) or getattr(values, "ndim", None) == 0:
        value = float(values)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"confidence must lie in [0, 1], got {value}")
        return {A.CONFIDENCE: value, A.CONFIDENCE_METHOD: method}
    if hasattr(values, "shape"):
        import numpy as np

        array = np.asarray(values, dtype=float).ravel()
        if array.size <= _SMALL_BATCH:
            # A single prediction: numpy's sort, mean and scalar arithmetic cost about 16
            # CPU-us after a 1-row predict_proba, Python floats about 7.
            rows = sorted(array.tolist())
        else:
            rows = np.sort(array)
    else:
        rows = sorted(float(v) for v in values)
    if not len(rows):
        return {}
    mean = math.fsum(rows) / len(rows) if type(rows) is list else float(rows.mean())
    low, high = float(rows[0]), float(rows[-1])
    p10, p50, p90 = (_percentile(rows, q) for q in (0.1, 0.5, 0.9))
    # NaN sorts anywhere in a list and makes the mean NaN.
    if not (0.0 <= low and high <= 1.0 and mean == mean):
        raise ValueError(f"confidence must lie in [0, 1], got values in [{low}, {high}]"
                         + (" and NaN" if mean != mean else ""))
    return {A.CONFIDENCE: mean, A.CONFIDENCE_METHOD: method,
            A.CONFIDENCE_P10: p10, A.CONFIDENCE_P50: p50, A.CONFIDENCE_P90: p90}


def guarded_confidence(where: str, values: Callable[[], Any], method: str) -> dict[str, Any]:
    """`confidence_attributes(values(), method)`, or none when computing or checking them
    fails (counted under `where`): a bad confidence must not cost the span the rest of what
    its result tells, such as its rows."""
    try:
        return confidence_attributes(values(), method)
    except Exception as exc:
        _state.record_failure(where, exc)
        return {}


def _percentile(ordered: Any, q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method); a few index
    operations where `np.percentile` costs tens of microseconds on a small batch."""
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def rows_of(batch: Any) -> int | None:
    """Rows in a batch: the first dimension of an array or tensor, the length of a list."""
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    if isinstance(batch, (list, tuple)):
        return len(batch)
    return None


def model_attributes(provider: str, name: str, version: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {A.OPERATION: OPERATION, A.PROVIDER: provider,
                             A.REQUEST_MODEL: name}
    if version:
        attrs[A.MODEL_VERSION] = version
    return attrs


def begin(where: str, attributes: Callable[[], dict[str, Any]]):
    """Start the span of a model call and make it current, or (None, None) when building its
    attributes failed: the failure is counted and the call runs untraced."""
    try:
        attrs = attributes()
        span = start_span(f"{OPERATION} {attrs.get(A.REQUEST_MODEL, '')}".rstrip(), attrs)
        return span, otel_context.attach(trace.set_span_in_context(span))
    except Exception as exc:
        _state.record_failure(where, exc)
        return None, None


def finish(where: str, span: Any, token: Any, result_attributes: Callable[[], dict[str, Any]]):
    """Detach and end the span of a successful call, adding what the result tells."""
    otel_context.detach(token)
    try:
        set_attributes(span, result_attributes())
    except Exception as exc:
        _state.record_failure(where, exc)
    span.end()


def fail(span: Any, token: Any, exc: BaseException) -> None:
    otel_context.detach(token)
    end_with_error(span, exc)


def outer_call(in_call: contextvars.ContextVar[bool], where: str,
               attributes: Callable[[], dict[str, Any]],
               result_attributes: Callable[[Any], dict[str, Any]],
               wrapped: Callable, args: tuple, kwargs: dict) -> Any:
    """Run `wrapped` in a span unless a call traced through `in_call` is already running in
    this context, so a pipeline and the models it calls make one span, for the outer call."""
    if in_call.get() or suppressed():
        return wrapped(*args, **kwargs)
    nested = in_call.set(True)  # also when the span fails to start: inner calls stay untraced
    try:
        span, token = begin(where, attributes)
        if span is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(span, token, exc)
            raise
    finally:
        in_call.reset(nested)
    finish(where, span, token, lambda: result_attributes(result))
    return result


def output_attributes(result: Any, confidence: Callable[[Any], Any] | None,
                      where: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    rows = rows_of(result)
    if rows is not None:
        attrs[A.BATCH_ROWS] = rows
    if confidence is not None:
        attrs.update(guarded_confidence(where, lambda: confidence(result), "user"))
    return attrs


# ---- @observe --------------------------------------------------------------------------------

def observe(fn: Callable | None = None, *, name: str | None = None, version: str | None = None,
            confidence: Callable[[Any], Any] | None = None) -> Callable:
    """Trace each call of a model function (sync or async) as one predict span.
    Use bare (`@observe`) or with arguments; `name` defaults to the function's name."""
    _check(name, version, confidence)

    def decorate(func: Callable) -> Callable:
        model = name or func.__qualname__
        where = f"observe {model}"

        def attributes():
            return model_attributes(CUSTOM_PROVIDER, model, version)

        def result_attributes(result):
            return lambda: output_attributes(result, confidence, where)

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args, **kwargs):
                span, token = begin(where, attributes)
                if span is None:
                    return await func(*args, **kwargs)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    fail(span, token, exc)
                    raise
                finish(where, span, token, result_attributes(result))
                return result
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            span, token = begin(where, attributes)
            if span is None:
                return func(*args, **kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                fail(span, token, exc)
                raise
            finish(where, span, token, result_attributes(result))
            return result
        return wrapper

    return decorate(fn) if fn is not None else decorate
