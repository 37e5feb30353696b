"""Faults: the collector killed mid-stream, the store unavailable, the spool's tail corrupt.

Every test counts on the client side which spans the collector acknowledged (an exporter
wrapper records the spans of each export that returned SUCCESS, or the futures that resolved)
and asserts each of them is in the store exactly once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from infersight_collector.otlp_grpc import create_server
from infersight_collector.pipeline import Overloaded, Pipeline
from infersight_collector.spool import Spool

KILLS = 2
FLUSH_S = 60
COUNT_BY_SPAN = """
import sys
from infersight_collector.store import open_store
store = open_store(data_dir=sys.argv[1])
for row in store.query("SELECT SpanId, count() AS n FROM infersight.otel_traces GROUP BY SpanId"
                       ).itertuples():
    print(row.SpanId, row.n)
store.close()
"""


class UnavailableStore:
    """The real store, made to refuse inserts while `down` is set. chDB is embedded and cannot
    be stopped on its own, so this wrapper stands in for a server that went away."""

    def __init__(self, store):
        self._store = store
        self.database = store.database
        self.down = threading.Event()
        self.command, self.query, self.close = store.command, store.query, store.close

    def insert_arrow(self, table, data, dedup_token=None):
        if self.down.is_set():
            raise ConnectionError("store unavailable (fault injected by the test)")
        self._store.insert_arrow(table, data, dedup_token)


class AckRecorder(SpanExporter):
    """The real OTLP exporter; remembers the span ids of every export that succeeded."""

    def __init__(self, endpoint: str):
        # The collector comes back within seconds of a kill: reconnect within a second of that,
        # not after gRPC's reconnect backoff, which grows to two minutes.
        self.inner = OTLPSpanExporter(
            endpoint=f"http://{endpoint}", insecure=True, timeout=30,
            channel_options=(("grpc.initial_reconnect_backoff_ms", 100),
                             ("grpc.max_reconnect_backoff_ms", 1000)))
        self.acked: set[str] = set()

    def export(self, spans):
        result = self.inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.acked.update(format(s.context.span_id, "016x") for s in spans)
        return result

    def shutdown(self):
        self.inner.shutdown()


@contextmanager
def span_stream(endpoint: str):
    """A sustained stream of spans through the SDK's batch processor; yields the recorder and
    flushes everything when the block ends."""
    recorder = AckRecorder(endpoint)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(recorder, max_queue_size=200_000,
                                                   schedule_delay_millis=20,
                                                   max_export_batch_size=200))
    tracer, stop = provider.get_tracer("faults"), threading.Event()

    def produce():
        while not stop.is_set():
            for _ in range(20):
                tracer.start_span("work").end()
            time.sleep(0.01)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        yield recorder
    finally:
        stop.set()
        producer.join()
        # The SDK's force_flush ignores its timeout and exports the whole queue, retrying each
        # batch for up to the exporter's 30 s: with the collector gone that is hours. So the
        # flush gets a deadline of its own; shutdown then waits up to 30 s for the batch
        # worker and shuts the exporter, which cuts any retry still waiting.
        flusher = threading.Thread(target=provider.force_flush, daemon=True)
        flusher.start()
        flusher.join(FLUSH_S)
        flushed = not flusher.is_alive()
        provider.shutdown()
    assert flushed, f"the spans did not flush in {FLUSH_S} s"


def wait_until(condition, timeout: float = 30.0, explain=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in {timeout} s\n{explain()}"
        time.sleep(0.05)


def counts_by_span(store) -> dict[str, int]:
    rows = store.query(f"SELECT SpanId, count() AS n FROM {store.database}.otel_traces "
                       "GROUP BY SpanId")
    return dict(zip(rows.SpanId, rows.n))


def assert_exactly_once(acked: set[str], counts: dict[str, int]) -> None:
    assert acked, "the test acknowledged nothing"
    missing = acked - counts.keys()
    assert not missing, f"{len(missing)} acknowledged spans are not in the store"
    twice = {s: n for s, n in counts.items() if n != 1}
    assert not twice, f"{len(twice)} spans are stored more than once"


def test_store_unavailable_for_a_while(store, tmp_path):
    flaky = UnavailableStore(store)
    pipeline = Pipeline(flaky, spool=Spool(str(tmp_path), 1 << 28), store_retry_s=0.2,
                        insert_interval_s=0.05).start()
    server, port = create_server(pipeline, "127.0.0.1", 0)
    server.start()
    try:
        with span_stream(f"127.0.0.1:{port}") as recorder:
            wait_until(lambda: len(recorder.acked) > 200)
            flaky.down.set()
            wait_until(lambda: pipeline.store_errors > 1
                       and pipeline.spooled_spans - pipeline.written_spans > 500)
            flaky.down.clear()
        assert pipeline.flush()
    finally:
        server.stop(grace=None)
        pipeline.stop()
    assert pipeline.store_errors > 0 and pipeline.failed_batches == 0
    assert_exactly_once(recorder.acked, counts_by_span(store))


def test_a_full_spool_pushes_back_and_memory_stays_bounded(store, span_batch, tmp_path):
    flaky = UnavailableStore(store)
    flaky.down.set()
    pipeline = Pipeline(flaky, max_queued_spans=500, spool=Spool(str(tmp_path), 200_000),
                        store_retry_s=0.2).start()
    acked, pushed_back = [], None
    try:
        for _ in range(200):
            batch = span_batch(50)
            try:
                pipeline.submit(batch).result(10)
                acked.extend(batch.column("SpanId").to_pylist())
            except Overloaded as exc:
                pushed_back = exc
                break
            assert pipeline.queued_spans <= 500
        assert pushed_back is not None and pushed_back.retry_after_s > 0
        assert pipeline.spool.bytes <= 200_000
        flaky.down.clear()
        wait_until(lambda: pipeline.spool.records == 0)
    finally:
        pipeline.stop()
    assert_exactly_once(set(acked), counts_by_span(store))


def test_a_corrupt_spool_tail_is_cut_and_every_acknowledged_batch_lands(store, span_batch,
                                                                         tmp_path, caplog):
    flaky = UnavailableStore(store)
    flaky.down.set()
    pipeline = Pipeline(flaky, spool=Spool(str(tmp_path), 1 << 24)).start()
    batches = [span_batch(30) for _ in range(5)]
    for b in batches:
        pipeline.submit(b).result(10)  # acknowledged: in the spool
    pipeline.stop()
    segment = max(n for n in os.listdir(tmp_path) if n.endswith(".spool"))
    with open(tmp_path / segment, "ab") as f:  # a record cut short by a crash
        f.write(b"ISP1\x00\x10\x00\x00garbage")
    flaky.down.clear()
    with caplog.at_level(logging.WARNING, logger="infersight_collector.spool"):
        pipeline = Pipeline(flaky, spool=Spool(str(tmp_path), 1 << 24)).start()
    try:
        wait_until(lambda: pipeline.spool.records == 0)
    finally:
        pipeline.stop()
    assert "corrupt or torn record" in caplog.text
    acked = {s for b in batches for s in b.column("SpanId").to_pylist()}
    assert_exactly_once(acked, counts_by_span(store))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(data_dir, port: int, log) -> subprocess.Popen:
    """Starts the collector on `port`, its output appended to `log`, and waits for it to listen."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infersight_collector.cli", "collector", "--host", "127.0.0.1",
             "--data-dir", str(data_dir), "--grpc-port", str(port),
             "--http-port", str(free_port()), "--metrics-port", str(free_port())],
            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"collector exited while starting:\n{tail(log)}")
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"collector did not start in 60 s:\n{tail(log)}")


def tail(path, size: int = 4000) -> str:
    with open(path, "rb") as f:
        return f.read()[-size:].decode(errors="replace")


@pytest.mark.timeout(600)  # its own waits, when they fail, add up to more than the 300 s
def test_kill_9_mid_stream_and_restart(tmp_path):
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "collector.log"
    proc = start_collector(data_dir, port, log)
    try:
        with span_stream(f"127.0.0.1:{port}") as recorder:
            def more_acked():
                # After a restart the exporter may sit in its retry backoff (up to 16 s).
                before = len(recorder.acked)
                wait_until(lambda: len(recorder.acked) > before + 300, 90, lambda: tail(log))

            for _ in range(KILLS):
                more_acked()
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                proc = start_collector(data_dir, port, log)
            more_acked()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = subprocess.run([sys.executable, "-c", COUNT_BY_SPAN, str(data_dir)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    counts = {span: int(n) for span, n in (line.split() for line in out.splitlines())}
    assert_exactly_once(recorder.acked, counts)
