"""What both OTLP receivers do with a parsed request: authenticate, decode, hand to the
pipeline, wait until durable, count. The receivers only translate to their wire (gRPC status
codes, HTTP status codes) and back.
"""

from __future__ import annotations

import logging
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .auth import ApiKeys
from .decode import DEFAULT_LIMITS, Decoded, Limits, decode_request
from .decode_pool import DecodePool
from .native import RawRequest, valid_spans
from .ops import Metrics
from .pipeline import Overloaded, Pipeline

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 60.0
DEFAULT_RETRY_AFTER_S = 1.0


class RetryLater(Exception):
    """Nothing of the request was kept; the client should send it again after `retry_after_s`.
    `overloaded` tells a full queue or spool (the client sends too much) from a failing store."""

    def __init__(self, message: str, retry_after_s: float, overloaded: bool):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.overloaded = overloaded


class Ingest:
    def __init__(self, pipeline: Pipeline, limits: Limits = DEFAULT_LIMITS,
                 api_keys: ApiKeys | None = None, metrics: Metrics | None = None,
                 decode_pool: DecodePool | None = None):
        self.pipeline = pipeline
        self.limits = limits
        self.api_keys = api_keys
        self.metrics = metrics or Metrics()
        self.decode_pool = decode_pool

    def authenticate(self, authorization: str | None) -> str | None:
        """The caller's project; None when keys are off. Raises `auth.Unauthenticated`."""
        return None if self.api_keys is None else self.api_keys.project_for(authorization)

    def refused(self, transport: str, reason: str) -> None:
        """Count a request refused whole before decoding (malformed, too large, ...)."""
        self.metrics.rejected_requests.labels(transport, reason).inc()

    def export_payload(self, payload: bytes, project: str | None,
                       transport: str) -> ExportTraceServiceResponse:
        """`export` of a serialised request, decoded by the pool when there is one, or kept
        as received for the store to decode (`pipeline.native`) when its spans' ids and times
        are valid; raises protobuf's DecodeError when it is malformed."""
        if self.pipeline.native is not None:
            request = ExportTraceServiceRequest.FromString(payload)
            spans = valid_spans(request)
            if spans is not None:
                return self._store(Decoded(RawRequest(payload, project or "", spans)), transport)
            return self.export(request, project, transport)
        if self.decode_pool is None:
            return self.export(ExportTraceServiceRequest.FromString(payload), project, transport)
        decoded, token = self.decode_pool.decode(payload, self.limits, project)
        return self._store(decoded, transport, token)

    def export(self, request: ExportTraceServiceRequest, project: str | None,
               transport: str) -> ExportTraceServiceResponse:
        return self._store(decode_request(request, self.limits, project), transport)

    def _store(self, decoded: Decoded, transport: str,
               token: str | None = None) -> ExportTraceServiceResponse:
        m = self.metrics
        m.received_spans.labels(transport).inc(decoded.accepted + decoded.rejected)
        if decoded.rejected:
            m.rejected_spans.labels("invalid_id").inc(decoded.rejected)
        if decoded.accepted:
            started = time.perf_counter()
            try:
                self.pipeline.submit(decoded.batch, token).result(timeout=WRITE_TIMEOUT_S)
            except Overloaded as exc:
                m.rejected_spans.labels("overloaded").inc(decoded.accepted)
                raise RetryLater(f"{exc}; retry later",
                                 getattr(exc, "retry_after_s", DEFAULT_RETRY_AFTER_S),
                                 overloaded=True) from exc
            except Exception as exc:
                m.store_errors.inc()
                m.rejected_spans.labels("store_error").inc(decoded.accepted)
                log.warning("write of %d spans failed, client will retry: %s",
                            decoded.accepted, exc)
                raise RetryLater(f"store unavailable: {exc}", DEFAULT_RETRY_AFTER_S,
                                 overloaded=False) from exc
            m.write_latency.observe(time.perf_counter() - started)
            m.accepted_spans.labels(transport).inc(decoded.accepted)
        response = ExportTraceServiceResponse()
        if decoded.rejected:
            response.partial_success.CopyFrom(ExportTracePartialSuccess(
                rejected_spans=decoded.rejected, error_message="; ".join(decoded.errors)))
        return response
