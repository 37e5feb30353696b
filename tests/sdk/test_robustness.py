"""Never hurt the host app: a collector that is down, the process exiting, the SDK's own errors."""

from __future__ import annotations

import ast
import time

import pytest

import infersight
from infersight import _state

from test_instrument import run_app

# A collector that is not there: a loopback port nobody listens on.
UNREACHABLE_APP = """
    import socket, time
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    import infersight
    from infersight import _state
    infersight.instrument(endpoint=f"http://127.0.0.1:{port}")
    for i in range(20000):
        _state.tracer.start_span("call").end()
    print(infersight.stats(), flush=True)
"""


def test_unreachable_collector_drops_counted_spans_and_exit_is_bounded():
    started = time.monotonic()
    result = run_app(UNREACHABLE_APP, INFERSIGHT_MAX_QUEUE_SIZE="1000",
                     OTEL_EXPORTER_OTLP_TIMEOUT="3")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    stats = ast.literal_eval(result.stdout.strip())
    # At most the queue (1,000) plus one batch the worker took can be held; the rest is dropped
    # and counted, so memory stays bounded however long the collector is away.
    assert stats["spans_dropped"] >= 20000 - 1000 - 512
    assert "Queue full" not in result.stderr  # the batch processor's silent per-span drop
    # Exiting costs about one export timeout (3 s here), not one per queued batch.
    assert elapsed < 15, f"exit took {elapsed:.1f} s"


def test_flush_with_collector_down_is_bounded_and_counts_failed_exports():
    result = run_app(UNREACHABLE_APP + """
    infersight.flush()
    s = infersight.stats()
    print(s["spans_dropped"] + s["spans_export_failed"])
    """, INFERSIGHT_MAX_QUEUE_SIZE="4000", OTEL_EXPORTER_OTLP_TIMEOUT="2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "20000"  # every span accounted for


def test_stats_report_instrumentation_errors(spans):
    @infersight.observe(name="scorer", confidence=lambda out: 7.0)  # not in [0, 1]
    def score(x):
        return x

    assert score(3) == 3
    errors = infersight.stats()["instrumentation_errors"]
    assert errors["observe scorer:ValueError"] >= 1
    assert errors == _state.failures()


def test_app_exception_is_the_same_object(spans):
    boom = KeyError("missing feature")

    @infersight.observe
    def model(_):
        raise boom

    with pytest.raises(KeyError) as raised:
        model(1)
    assert raised.value is boom
    assert spans.get_finished_spans()[0].attributes["error.type"] == "KeyError"
