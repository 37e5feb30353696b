"""Feedback: a human or programmatic verdict on a span or trace, stored in the `feedback` table.

Two doors, one function: the gRPC `infersight.v1.Feedback` service (proto/infersight/v1/),
served on the OTLP/gRPC server by `add_feedback_service(server, store)`, and
`record_feedback(store, dict)` for the same fields as HTTP JSON (any HTTP server can mount it;
`InvalidFeedback` is a 400). A feedback id chosen by the client is the insert's deduplication
token, so a retried call is stored once. With API keys on, the caller's project is stamped on
the row, as on spans.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from typing import Any

import grpc
import pyarrow as pa

from infersight.v1 import feedback_pb2, feedback_pb2_grpc

from .auth import ApiKeys, grpc_project
from .store import Store
from .store.schema import FEEDBACK_TABLE

MAX_TEXT_CHARS = 16 * 1024
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
_TEXT_FIELDS = ("label", "comment", "correction", "source", "feedback_id")
_MAP = pa.map_(pa.string(), pa.string())
_SCHEMA = pa.schema([
    ("Timestamp", pa.timestamp("ns")), ("FeedbackId", pa.string()), ("TraceId", pa.string()),
    ("SpanId", pa.string()), ("ProjectId", pa.string()), ("Score", pa.float64()),
    ("Label", pa.string()), ("Comment", pa.string()), ("Correction", pa.string()),
    ("Source", pa.string()), ("Attributes", _MAP),
])


class InvalidFeedback(ValueError):
    """The feedback cannot be stored as sent; the message says which field is wrong."""


def _validate(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidFeedback("feedback must be a JSON object")
    unknown = set(data) - {"trace_id", "span_id", "score", "time_unix_nano", "attributes",
                           *_TEXT_FIELDS}
    if unknown:
        raise InvalidFeedback(f"unknown fields: {', '.join(sorted(unknown))}")
    trace_id = str(data.get("trace_id") or "").lower()
    span_id = str(data.get("span_id") or "").lower()
    if not _TRACE_ID.match(trace_id):
        raise InvalidFeedback(f"trace_id must be 32 hex characters, got {trace_id!r}")
    if span_id and not _SPAN_ID.match(span_id):
        raise InvalidFeedback(f"span_id must be 16 hex characters or empty, got {span_id!r}")
    score = data.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) \
                or not math.isfinite(score):
            raise InvalidFeedback(f"score must be a finite number, got {score!r}")
        score = float(score)
    text = {}
    for name in _TEXT_FIELDS:
        value = data.get(name) or ""
        if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
            raise InvalidFeedback(f"{name} must be text of at most {MAX_TEXT_CHARS} characters")
        text[name] = value
    if score is None and not (text["label"] or text["comment"] or text["correction"]):
        raise InvalidFeedback("feedback needs a score, label, comment or correction")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
        raise InvalidFeedback("attributes must map text to text")
    at = int(data.get("time_unix_nano") or 0) or time.time_ns()
    return {"trace_id": trace_id, "span_id": span_id, "score": score, "at": at,
            "attributes": attributes, **text}


def record_feedback(store: Store, data: dict[str, Any], project: str | None = None) -> dict:
    """Store one feedback given as a dict of the proto's fields (the HTTP JSON body);
    returns `{"feedback_id": ...}`. Raises `InvalidFeedback`."""
    f = _validate(data)
    feedback_id = f["feedback_id"] or uuid.uuid4().hex
    row = pa.table({
        "Timestamp": [f["at"]], "FeedbackId": [feedback_id], "TraceId": [f["trace_id"]],
        "SpanId": [f["span_id"]], "ProjectId": [project or ""], "Score": [f["score"]],
        "Label": [f["label"]], "Comment": [f["comment"]], "Correction": [f["correction"]],
        "Source": [f["source"]], "Attributes": [list(f["attributes"].items())],
    }, schema=_SCHEMA)
    store.insert_arrow(f"{store.database}.{FEEDBACK_TABLE}", row, f"feedback:{feedback_id}")
    return {"feedback_id": feedback_id}


class FeedbackService(feedback_pb2_grpc.FeedbackServicer):
    def __init__(self, store: Store, api_keys: ApiKeys | None = None):
        self.store = store
        self.api_keys = api_keys

    def Record(self, request: feedback_pb2.RecordFeedbackRequest,
               context: grpc.ServicerContext) -> feedback_pb2.RecordFeedbackResponse:
        project = grpc_project(self.api_keys, context)
        data = {name: getattr(request, name) for name in
                ("trace_id", "span_id", "time_unix_nano", *_TEXT_FIELDS)}
        data["score"] = request.score if request.HasField("score") else None
        data["attributes"] = dict(request.attributes)
        try:
            result = record_feedback(self.store, data, project)
        except InvalidFeedback as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable, retry: {exc}")
        return feedback_pb2.RecordFeedbackResponse(**result)


def add_feedback_service(server: grpc.Server, store: Store,
                         api_keys: ApiKeys | None = None) -> None:
    """Serve `infersight.v1.Feedback` on `server` (the OTLP/gRPC one) before it starts."""
    feedback_pb2_grpc.add_FeedbackServicer_to_server(FeedbackService(store, api_keys), server)
