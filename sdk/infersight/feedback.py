"""`infersight.feedback(...)`: record a verdict on the current call's span, or a given one.

    with tracer.start_as_current_span("answer"):
        ...
        infersight.feedback(score=1, label="helpful", source="user")

    infersight.feedback(score=0, comment="wrong", trace_id=t, span_id=s)  # later, elsewhere

It is sent in the background over gRPC to the collector (the endpoint and API key of
`instrument()`'s settings) and never raises into the app: a failure is logged once per kind
and the returned future resolves to None. On success it resolves to the feedback id, which is
also the idempotency key, so the one retry on UNAVAILABLE cannot store it twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from opentelemetry import trace

from . import _state, config

log = logging.getLogger("infersight")

_SEND_TIMEOUT_S = 10.0
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infersight-feedback")


def _ids(span: Any, trace_id: str | None, span_id: str | None) -> tuple[str, str] | None:
    if trace_id:
        return trace_id.lower(), (span_id or "").lower()
    span = span if span is not None else trace.get_current_span()
    ctx = span.get_span_context() if hasattr(span, "get_span_context") else span.context
    if ctx is None or not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _target(endpoint: str):
    import grpc

    if endpoint.startswith("https://"):
        return grpc.secure_channel(endpoint[len("https://"):], grpc.ssl_channel_credentials())
    return grpc.insecure_channel(endpoint.removeprefix("http://"))


def _send(settings: config.Settings, fields: dict[str, Any]) -> str:
    import grpc

    from .v1 import feedback_pb2, feedback_pb2_grpc

    request = feedback_pb2.RecordFeedbackRequest(**fields)
    metadata = tuple(settings.headers.items())
    with _target(settings.endpoint) as channel:
        record = feedback_pb2_grpc.FeedbackStub(channel).Record
        try:
            return record(request, timeout=_SEND_TIMEOUT_S, metadata=metadata).feedback_id
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        time.sleep(1.0)  # the collector restarting or the store away: one retry, same id
        return record(request, timeout=_SEND_TIMEOUT_S, metadata=metadata).feedback_id


def feedback(score: float | None = None, *, label: str = "", comment: str = "",
             correction: str = "", source: str = "user", span: Any = None,
             trace_id: str | None = None, span_id: str | None = None,
             attributes: dict[str, str] | None = None, endpoint: str | None = None,
             api_key: str | None = None) -> Future:
    """Record feedback on `span` (default: the current span) or on `trace_id`/`span_id`.
    Returns a future of the feedback id (None if it could not be sent); never raises."""
    result: Future = Future()
    try:
        ids = _ids(span, trace_id, span_id)
        if ids is None:
            raise ValueError("no span to attach feedback to: call it inside a traced call or "
                             "pass span= or trace_id=")
        settings = config.load(endpoint=endpoint, api_key=api_key)
        fields = {"trace_id": ids[0], "span_id": ids[1], "label": label, "comment": comment,
                  "correction": correction, "source": source, "attributes": attributes or {},
                  "feedback_id": uuid.uuid4().hex, "time_unix_nano": time.time_ns()}
        if score is not None:
            fields["score"] = float(score)
        sent = _executor.submit(_send, settings, fields)
    except Exception as exc:
        _state.record_failure("feedback", exc)
        result.set_result(None)
        return result

    def settle(f: Future) -> None:
        if f.exception() is not None:
            _state.record_failure("feedback", f.exception())
        result.set_result(None if f.exception() is not None else f.result())

    sent.add_done_callback(settle)
    return result
