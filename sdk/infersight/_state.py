"""Process-wide SDK state: the tracer in use, settings, and the SDK's own failure counts.

The SDK must never break the host app, so extraction code catches its own exceptions and
reports them here: counted always, logged once per kind.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from opentelemetry import trace

log = logging.getLogger("infersight")

tracer: trace.Tracer = trace.NoOpTracer()
capture_content = False

_failures: Counter[str] = Counter()
_failures_lock = threading.Lock()


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
