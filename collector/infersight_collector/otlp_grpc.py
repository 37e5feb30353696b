"""OTLP/gRPC TraceService (port 4317), per the OTLP specification.

The request is parsed here rather than by grpcio so that a malformed payload is answered
with INVALID_ARGUMENT and a message, not a generic INTERNAL error. Spans with invalid ids are
reported through `partial_success`; the rest of the request is stored. The reply is sent
only once the batch is in the store; when the writer is overloaded or the store fails, the
client gets UNAVAILABLE, which OTLP exporters retry.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .decode import decode_request
from .pipeline import Overloaded, Pipeline

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
WRITE_TIMEOUT_S = 60.0


class TraceService:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def export(self, payload: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        try:
            request = ExportTraceServiceRequest.FromString(payload)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"malformed ExportTraceServiceRequest ({len(payload)} bytes): {exc}")
        decoded = decode_request(request)
        if decoded.accepted:
            try:
                self.pipeline.submit(decoded.batch).result(timeout=WRITE_TIMEOUT_S)
            except Overloaded as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry later")
            except Exception as exc:
                log.warning("store write failed, client will retry: %s", exc)
                context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")
        response = ExportTraceServiceResponse()
        if decoded.rejected:
            response.partial_success.CopyFrom(ExportTracePartialSuccess(
                rejected_spans=decoded.rejected, error_message="; ".join(decoded.errors)))
        return response


def create_server(pipeline: Pipeline, host: str = "0.0.0.0", port: int = 4317,
                  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                  workers: int = 16) -> tuple[grpc.Server, int]:
    """A started-later gRPC server with the TraceService; returns it and the bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
        options=[("grpc.max_receive_message_length", max_message_bytes),
                 ("grpc.max_send_message_length", 16 * 1024 * 1024)],
    )
    service = TraceService(pipeline)
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Export": grpc.unary_unary_rpc_method_handler(
            service.export, request_deserializer=None,
            response_serializer=ExportTraceServiceResponse.SerializeToString),
    })
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}; is the port in use?")
    return server, bound
