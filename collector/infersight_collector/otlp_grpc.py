"""OTLP/gRPC TraceService (port 4317), per the OTLP specification.

The request is parsed here rather than by grpcio so that a malformed payload is answered
with INVALID_ARGUMENT and a message, not a generic INTERNAL error. Spans with invalid ids are
reported through `partial_success`; the rest of the request is stored. The reply is sent
only once the batch is durable. When the pipeline is overloaded or the store fails, the client
gets UNAVAILABLE with a RetryInfo delay, sent twice because exporters read it in different
places: in `grpc-status-details-bin` (a google.rpc.Status with the RetryInfo among its details,
what the Go OpenTelemetry Collector reads) and as the `google.rpc.retryinfo-bin` trailer (what
the Python exporter reads).

With API keys configured, a call needs `authorization: Bearer <key>` metadata (else
UNAUTHENTICATED) and its spans are stamped with the key's project. With a certificate and key
the port speaks TLS only.
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .auth import ApiKeys, Unauthenticated
from .decode import DEFAULT_LIMITS, Limits
from .decode_pool import DecodePool
from .ingest import Ingest, RetryLater
from .ops import Metrics
from .pipeline import Pipeline

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
MALFORMED_HINT = ("malformed ExportTraceServiceRequest (truncated, not protobuf, or a string "
                  "field that is not valid UTF-8)")


def abort_retry_later(context: grpc.ServicerContext, message: str, retry_after_s: float) -> None:
    """End the call with UNAVAILABLE and a RetryInfo of `retry_after_s`, in both places."""
    retry = RetryInfo()
    retry.retry_delay.FromNanoseconds(int(retry_after_s * 1e9))
    status = Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message=message)
    status.details.add().Pack(retry)
    context.set_trailing_metadata(((STATUS_DETAILS_KEY, status.SerializeToString()),
                                   (RETRY_INFO_KEY, retry.SerializeToString())))
    context.abort(grpc.StatusCode.UNAVAILABLE, message)


class TraceService:
    def __init__(self, ingest: Ingest):
        self.ingest = ingest

    def export(self, payload: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        authorization = next((v for k, v in context.invocation_metadata()
                              if k == "authorization"), None)
        try:
            project = self.ingest.authenticate(authorization)
        except Unauthenticated as exc:
            self.ingest.refused("grpc", "unauthenticated")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            return self.ingest.export_payload(payload, project, "grpc")
        except DecodeError as exc:
            self.ingest.refused("grpc", "malformed")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{MALFORMED_HINT} ({len(payload)} bytes): {exc}")
        except RetryLater as exc:
            abort_retry_later(context, str(exc), exc.retry_after_s)


def _credentials(tls: tuple[str, str]) -> grpc.ServerCredentials:
    cert, key = (Path(p).read_bytes() for p in tls)
    return grpc.ssl_server_credentials([(key, cert)])


def create_server(pipeline: Pipeline, host: str = "0.0.0.0", port: int = 4317,
                  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, workers: int = 16,
                  limits: Limits = DEFAULT_LIMITS, api_keys: ApiKeys | None = None,
                  metrics: Metrics | None = None, tls: tuple[str, str] | None = None,
                  decode_pool: DecodePool | None = None) -> tuple[grpc.Server, int]:
    """A started-later gRPC server with the TraceService; returns it and the bound port.
    `tls` is (certificate file, private key file), both PEM."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
        options=[("grpc.max_receive_message_length", max_message_bytes),
                 ("grpc.max_send_message_length", 16 * 1024 * 1024)],
    )
    service = TraceService(Ingest(pipeline, limits, api_keys, metrics, decode_pool))
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Export": grpc.unary_unary_rpc_method_handler(
            service.export, request_deserializer=None,
            response_serializer=ExportTraceServiceResponse.SerializeToString),
    })
    server.add_generic_rpc_handlers((handler,))
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, _credentials(tls)) if tls else \
        server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}; is the port in use?")
    return server, bound
