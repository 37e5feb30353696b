"""Export that never hurts the host app: a bounded queue whose drops are counted, and a
collector that is down costs one export timeout, not one per batch.

The OTel `BatchSpanProcessor` already keeps the app's calls off the network (a worker thread
exports) and bounds memory (a fixed-size queue), but it drops silently when the queue is full,
and with the collector down each batch waits out the exporter's full retry timeout, so
`flush()` and the exit-time shutdown could block for minutes. Two thin wrappers, using only
the public SpanProcessor and SpanExporter interfaces, close those gaps:

- `CountingProcessor` counts the spans handed to the batch processor and not yet taken by its
  exporter; at the queue's size it drops (and counts) the span itself, so the batch
  processor's own silent drop never happens.
- While more than `BACKLOG_BATCHES` batches wait, the interpreter's GIL switch interval is cut
  from 5 ms to 0.5 ms, and put back once the queue is down to one batch. A host thread that
  keeps the GIL busy otherwise starves the exporting thread: each of the many GIL hand-offs in
  a gRPC export waits out a full interval, and in a 50,000-call CPU-bound burst 57% of spans
  were dropped (all of them failed with the OTel encoder: the first export timed out). Only
  hosts that already queue spans faster than they export them pay the extra switches.
- `GuardedExporter` fails a batch at once (counted) for `cooldown_s` after an export failed,
  i.e. after the OTLP exporter's own retries ran out; so a flush or the exit waits at most
  about one export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

_counts: Counter[str] = Counter()
_lock = threading.Lock()

DROPPED = "spans_dropped"
EXPORT_FAILED = "spans_export_failed"
EXPORTED = "spans_exported"


def counts() -> dict[str, int]:
    with _lock:
        return {DROPPED: _counts[DROPPED], EXPORT_FAILED: _counts[EXPORT_FAILED],
                EXPORTED: _counts[EXPORTED]}


def _add(key: str, n: int) -> None:
    with _lock:
        _counts[key] += n


class GuardedExporter(SpanExporter):
    """Wraps the OTLP exporter: counts outcomes and skips exports while the collector is down."""

    def __init__(self, exporter: SpanExporter, cooldown_s: float = 30.0):
        self._exporter = exporter
        self._cooldown_s = cooldown_s
        self._down_until = 0.0
        self.queued: "_Queued | None" = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.queued is not None:
            self.queued.taken(len(spans))
        if time.monotonic() < self._down_until:
            _add(EXPORT_FAILED, len(spans))
            return SpanExportResult.FAILURE
        try:
            result = self._exporter.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            _add(EXPORTED, len(spans))
        else:
            self._down_until = time.monotonic() + self._cooldown_s
            _add(EXPORT_FAILED, len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


BACKLOG_BATCHES = 4
FAST_SWITCH_S = 0.0005


class _Queued:
    """Spans handed to the batch processor minus spans its worker handed to the exporter: never
    less than the batch processor's queue length. Cuts the GIL switch interval while a backlog
    waits (see the module docstring)."""

    def __init__(self, batch: int = 512) -> None:
        self.n = 0
        self._batch = batch
        self._lock = threading.Lock()
        self._saved_switch: float | None = None  # the interval to put back, while cut

    def offer(self, limit: int) -> bool:
        with self._lock:
            if self.n >= limit:
                return False
            self.n += 1
            if self.n > BACKLOG_BATCHES * self._batch and self._saved_switch is None:
                current = sys.getswitchinterval()
                if current > FAST_SWITCH_S:
                    self._saved_switch = current
                    sys.setswitchinterval(FAST_SWITCH_S)
            return True

    def taken(self, n: int) -> None:
        with self._lock:
            self.n = max(self.n - n, 0)
            if self.n <= self._batch:
                self.restore()

    def restore(self) -> None:
        """Put the switch interval back, unless the app set one of its own meanwhile."""
        if self._saved_switch is not None:
            if abs(sys.getswitchinterval() - FAST_SWITCH_S) < 1e-7:
                sys.setswitchinterval(self._saved_switch)
            self._saved_switch = None


class CountingProcessor(SpanProcessor):
    """A BatchSpanProcessor over a GuardedExporter whose queue-full drops are counted."""

    def __init__(self, exporter: SpanExporter, max_queue_size: int, max_export_batch_size: int,
                 cooldown_s: float = 30.0):
        self.exporter = GuardedExporter(exporter, cooldown_s)
        self._queued = self.exporter.queued = _Queued(max_export_batch_size)
        self._max_queue_size = max_queue_size
        self._batch = BatchSpanProcessor(self.exporter, max_queue_size=max_queue_size,
                                         max_export_batch_size=max_export_batch_size)

    def on_start(self, span, parent_context=None) -> None:
        self._batch.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        if self._queued.offer(self._max_queue_size):
            self._batch.on_end(span)
        else:
            _add(DROPPED, 1)

    def shutdown(self) -> None:
        self._batch.shutdown()
        with self._queued._lock:
            self._queued.restore()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)
