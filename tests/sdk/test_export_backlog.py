"""The exporting thread is not starved by a host that keeps the GIL busy: while spans back up,
the GIL switch interval is cut, and put back once they are exported (the burst benchmark
measures the spans this saves)."""

from __future__ import annotations

import sys
import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from infersight._export import BACKLOG_BATCHES, FAST_SWITCH_S, CountingProcessor

BATCH = 100


class Gated(SpanExporter):
    """Holds every export until the gate opens: a collector the worker cannot reach in time."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.exported = 0

    def export(self, spans):
        self.gate.wait(30)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def _backed_up():
    exporter = Gated()
    processor = CountingProcessor(exporter, max_queue_size=10_000, max_export_batch_size=BATCH)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for _ in range(BATCH * (BACKLOG_BATCHES + 2)):
        tracer.start_span("call").end()
    return exporter, processor, provider


def test_a_backlog_cuts_the_switch_interval_until_the_spans_are_exported():
    before = sys.getswitchinterval()
    exporter, processor, provider = _backed_up()
    try:
        assert sys.getswitchinterval() == pytest.approx(FAST_SWITCH_S)
        exporter.gate.set()
        assert processor.force_flush(30_000)
        assert exporter.exported == BATCH * (BACKLOG_BATCHES + 2)
        assert sys.getswitchinterval() == before
    finally:
        exporter.gate.set()
        provider.shutdown()
        sys.setswitchinterval(before)


def test_an_interval_the_app_set_meanwhile_is_kept():
    before = sys.getswitchinterval()
    exporter, processor, provider = _backed_up()
    try:
        sys.setswitchinterval(0.002)  # the app's own choice, made during the backlog
        exporter.gate.set()
        assert processor.force_flush(30_000)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        exporter.gate.set()
        provider.shutdown()
        sys.setswitchinterval(before)


def test_shutdown_with_a_backlog_puts_the_interval_back():
    before = sys.getswitchinterval()
    exporter, processor, provider = _backed_up()
    assert sys.getswitchinterval() == pytest.approx(FAST_SWITCH_S)
    exporter.gate.set()
    provider.shutdown()
    assert sys.getswitchinterval() == before
