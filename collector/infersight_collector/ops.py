"""Operating the collector: `/healthz`, `/readyz` and Prometheus `/metrics` (port 8888), and
structured (JSON lines) logs.

- `/healthz`: 200 while the process serves HTTP at all (a liveness probe).
- `/readyz`: 200 when the receivers are up (`ready` is set; cleared on shutdown) and the store
  answers a query, else 503 with the reason, so a load balancer sends traffic elsewhere.
- `/metrics`: the counters below in the Prometheus text format, from a registry of our own
  (not the process-global one), so several collectors can live in one process, as in tests.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .store import unanswered

log = logging.getLogger(__name__)

DEFAULT_PORT = 8888


class Metrics:
    """The collector's counters; receivers update them, `/metrics` exposes them."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received_spans = Counter("infersight_received_spans", "Spans received",
                                      ["transport"], registry=r)
        self.accepted_spans = Counter("infersight_accepted_spans",
                                      "Spans acknowledged to the client as durable",
                                      ["transport"], registry=r)
        self.rejected_spans = Counter(
            "infersight_rejected_spans",
            "Spans not kept, by reason (invalid_id: reported as partial success; "
            "overloaded, store_error: the client was told to retry)", ["reason"], registry=r)
        self.rejected_requests = Counter(
            "infersight_rejected_requests",
            "Requests refused whole before decoding, by transport and reason "
            "(unauthenticated, malformed, too_large, unsupported_media_type, ...)",
            ["transport", "reason"], registry=r)
        self.write_latency = Histogram(
            "infersight_write_latency_seconds",
            "Time from hand-off to the pipeline until the spans are durable (queue and spool "
            "fsync; the insert itself without a spool)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r)
        self.store_errors = Counter("infersight_store_errors",
                                    "Writes that failed in the store", registry=r)

    def watch_pipeline(self, pipeline) -> None:
        """Expose the pipeline's queue depth, the spans it wrote to the store (acknowledged
        spans are queryable once counted here), and the spool's size where it keeps one."""
        Gauge("infersight_queue_spans", "Spans waiting to be written",
              registry=self.registry).set_function(lambda: pipeline.queued_spans)
        Gauge("infersight_written_spans", "Spans inserted into the store since start",
              registry=self.registry).set_function(lambda: pipeline.written_spans)
        if pipeline.spool is not None:
            Gauge("infersight_spool_bytes", "Bytes in the on-disk spool, not yet in the store",
                  registry=self.registry).set_function(lambda: pipeline.spool.bytes)
        if pipeline.native is not None:
            Gauge("infersight_native_spans", "Of the spans written, those chDB decoded in SQL",
                  registry=self.registry).set_function(lambda: pipeline.native_spans)
            Gauge("infersight_native_fallbacks", "Statements of raw requests decoded in "
                  "Python because the native insert failed (see the log)",
                  registry=self.registry).set_function(lambda: pipeline.native.fallbacks)


def _readiness(ready: threading.Event, store) -> str | None:
    """Why the collector is not ready, or None."""
    if not ready.is_set():
        return "receivers not started or shutting down"
    why = unanswered(store)
    return None if why is None else f"store not answering: {why}"


def create_ops_server(metrics: Metrics, store, ready: threading.Event, host: str = "0.0.0.0",
                      port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A started ops HTTP server (daemon thread); `server.server_address[1]` is the port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                why = _readiness(ready, store)
                self._send(503, f"not ready: {why}\n".encode()) if why else self._send(200, b"ready\n")
            elif path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found: try /healthz, /readyz or /metrics\n")

        def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # probes every few seconds: quiet
            log.debug("ops %s", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    return server


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        entry.update((k, v) for k, v in vars(record).items() if k not in self._STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
