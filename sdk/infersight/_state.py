"""Process-wide SDK state: the tracer in use, settings, and the SDK's own failure counts.

The SDK must never break the host app, so extraction code catches its own exceptions and
reports them here: counted always, logged once per kind.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from opentelemetry import trace

from ._span_start import PARENT_BASED_DELEGATES, Start, starter

log = logging.getLogger("infersight")

tracer: trace.Tracer = trace.NoOpTracer()
# Whether `tracer`'s sampler decides without reading a span's attributes (the SDK's built-in
# samplers): then a span's starting attributes can skip the SDK's per-value checks.
attribute_blind = False
# Starts `tracer`'s bare spans (`_span_start`): the SDK's own span, made for less by default.
start_bare: Start = starter(tracer)
capture_content = False

_failures: Counter[str] = Counter()
_failures_lock = threading.Lock()


def use_tracer(new: trace.Tracer) -> None:
    global tracer, attribute_blind, start_bare
    tracer = new
    attribute_blind = _attribute_blind(getattr(new, "sampler", None))
    start_bare = starter(new)


def _attribute_blind(sampler: object) -> bool:
    """True for the SDK's samplers that never read attributes: always on/off, trace-id ratio,
    and parent-based ones whose delegates are all such. A subclass may override
    `should_sample`, so only these exact classes count; a class this SDK version lacks is
    simply not one of them."""
    from opentelemetry.sdk.trace import sampling as s

    def classes(*names: str) -> tuple[type, ...]:
        return tuple(c for c in (getattr(s, n, None) for n in names) if isinstance(c, type))

    if type(sampler) in classes("StaticSampler", "_AlwaysOn", "_AlwaysOff", "TraceIdRatioBased"):
        return True
    if type(sampler) in classes("ParentBased", "ParentBasedTraceIdRatio", "_ParentBasedAlwaysOn",
                                "_ParentBasedAlwaysOff"):
        return all(_attribute_blind(getattr(sampler, name, None))
                   for name in PARENT_BASED_DELEGATES)
    return False


def record_failure(where: str, exc: BaseException) -> None:
    """Count an instrumentation failure; log the first of each kind with its traceback."""
    key = f"{where}:{type(exc).__name__}"
    with _failures_lock:
        _failures[key] += 1
        first = _failures[key] == 1
    if first:
        log.warning("infersight: instrumentation error in %s (the call itself was not affected)",
                    where, exc_info=exc)


def failures() -> dict[str, int]:
    with _failures_lock:
        return dict(_failures)
