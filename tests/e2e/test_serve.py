"""`infersight serve` as a user runs it: one process, embedded store, survives a restart."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

COUNT_SPANS = """
import sys
from infersight_collector.store import open_store
store = open_store(data_dir=sys.argv[1])
print(store.query("SELECT count() AS n FROM infersight.otel_traces").n[0])
store.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(data_dir, grpc_port: int, dashboard_port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infersight_collector.cli", "serve", "--host", "127.0.0.1",
         "--data-dir", str(data_dir), "--grpc-port", str(grpc_port),
         "--dashboard-port", str(dashboard_port), "--http-port", str(free_port()),
         "--metrics-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"serve did not start: {proc.stdout.read()}")


def stored_spans(data_dir) -> int:
    out = subprocess.run([sys.executable, "-c", COUNT_SPANS, str(data_dir)], check=True,
                         capture_output=True, text=True, timeout=60)
    return int(out.stdout.strip())


def test_serve_stores_spans_flushes_on_sigterm_and_keeps_them_across_restart(tmp_path):
    data_dir = tmp_path / "data"
    grpc_port, dashboard_port = free_port(), free_port()
    proc = start_serve(data_dir, grpc_port, dashboard_port)
    try:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{grpc_port}", insecure=True)))
        tracer = provider.get_tracer("t")
        for i in range(300):
            tracer.start_span(f"span-{i}").end()
        assert provider.force_flush(20_000)
        provider.shutdown()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "shutting down" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stored_spans(data_dir) == 300

    proc = start_serve(data_dir, grpc_port, dashboard_port)  # the same data directory again
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert stored_spans(data_dir) == 300
