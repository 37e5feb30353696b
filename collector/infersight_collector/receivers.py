"""Start the OTLP listeners (gRPC 4317, HTTP 4318) and the ops server (8888) together, sharing
one set of API keys, limits and metrics; stop them together on shutdown."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from .alerts.spend import add_spend_service
from .auth import ApiKeys
from .decode import Limits
from .decode_pool import DecodePool
from .feedback import add_feedback_service
from .ops import Metrics, create_ops_server
from .otlp_grpc import create_server
from .otlp_http import create_http_server

log = logging.getLogger(__name__)


@dataclass
class ReceiverSettings:
    host: str = "0.0.0.0"
    grpc_port: int = 4317
    http_port: int = 4318
    metrics_port: int = 8888
    max_message_bytes: int = 16 * 1024 * 1024
    api_keys_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    limits: Limits = Limits()
    decode_workers: int = 0  # processes that decode requests; 0: in the receiving thread


class Receivers:
    def __init__(self, pipeline, store, settings: ReceiverSettings):
        s = settings
        if bool(s.tls_cert) != bool(s.tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        tls = (s.tls_cert, s.tls_key) if s.tls_cert else None
        keys = ApiKeys.load(s.api_keys_file) if s.api_keys_file else None
        self.metrics = Metrics()
        self.metrics.watch_pipeline(pipeline)
        self.decode_pool = DecodePool(s.decode_workers) if s.decode_workers > 0 else None
        common = dict(limits=s.limits, api_keys=keys, metrics=self.metrics, tls=tls,
                      decode_pool=self.decode_pool)
        self.grpc, grpc_port = create_server(pipeline, s.host, s.grpc_port,
                                             max_message_bytes=s.max_message_bytes, **common)
        self.grpc_port = grpc_port
        add_feedback_service(self.grpc, store, keys)
        add_spend_service(self.grpc, store, keys)
        self.http = create_http_server(pipeline, s.host, s.http_port,
                                       max_body_bytes=s.max_message_bytes, **common)
        self.ready = threading.Event()
        self.ops = create_ops_server(self.metrics, store, self.ready, s.host, s.metrics_port)
        self.grpc.start()
        threading.Thread(target=self.http.serve_forever, name="otlp-http", daemon=True).start()
        self.ready.set()
        log.info("OTLP/gRPC on %s:%d, OTLP/HTTP on %s:%d, health and metrics on %s:%d "
                 "(TLS %s, API keys %s, %d decode processes)", s.host, grpc_port, s.host,
                 self.http.server_address[1], s.host, self.ops.server_address[1],
                 "on" if tls else "off", f"on ({len(keys)})" if keys else "off",
                 s.decode_workers)

    def stop(self, grace: float) -> threading.Event:
        """Refuse new requests, let those in flight finish; the returned event is set when
        the gRPC server has stopped."""
        self.ready.clear()
        self.http.shutdown()
        self.http.server_close()
        self.http.drain(grace)
        stopped = self.grpc.stop(grace)
        self.ops.shutdown()
        return stopped

    def close(self) -> None:
        """Once stopped: end the decode processes."""
        if self.decode_pool is not None:
            self.decode_pool.close()
