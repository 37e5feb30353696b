"""A way to fill the shared `store` (tests/conftest.py) with spans whose answers we know."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from infersight import attributes as A
from infersight_collector.store import insert_spans
from infersight_collector.store.schema import BASE_COLUMNS

_MAP = pa.map_(pa.string(), pa.string())
_TS = pa.timestamp("ns", tz="UTC")
_TYPES = {
    "Timestamp": _TS, "ResourceAttributes": _MAP, "SpanAttributes": _MAP,
    "Duration": pa.uint64(),
    "Events.Timestamp": pa.list_(_TS), "Events.Name": pa.list_(pa.string()),
    "Events.Attributes": pa.list_(_MAP),
    "Links.TraceId": pa.list_(pa.string()), "Links.SpanId": pa.list_(pa.string()),
    "Links.TraceState": pa.list_(pa.string()), "Links.Attributes": pa.list_(_MAP),
}


@pytest.fixture
def add_calls(store):
    """`add_calls(at, n=1, feature=..., cost=..., ...)` inserts `n` identical spans at `at`.

    They are AI calls unless `operation=""`; `feature=""`, `cost=None`, `response_model=""`
    (and the other empty defaults) leave that attribute out, as a span without it would. Each
    span gets its own id and, unless `trace_id` is given, its own trace.
    """
    counter = iter(range(1, 1_000_000))

    def add(at: datetime, n: int = 1, *, feature: str = "search", operation: str = "chat",
            request_model: str = "gpt-4o", response_model: str = "gpt-4o-2024-08-06",
            cost: float | None = 0.25, input_tokens: int = 100, output_tokens: int = 20,
            duration_ms: float = 100.0, status: str = "Ok", service: str = "checkout",
            version: str = "", confidence: float | None = None, user: str = "",
            tenant: str = "", project: str = "", cache_read_tokens: int = 0, trace_id: str = "",
            span_id: str = "", parent_span_id: str = "", name: str = "", input_messages: str = "",
            output_messages: str = "") -> None:
        attrs = {
            A.OPERATION: operation, A.PROVIDER: "openai", A.FEATURE: feature,
            A.REQUEST_MODEL: request_model, A.RESPONSE_MODEL: response_model,
            A.COST: "" if cost is None else repr(cost),
            A.INPUT_TOKENS: str(input_tokens), A.OUTPUT_TOKENS: str(output_tokens),
            A.MODEL_VERSION: version, A.USER: user, A.TENANT: tenant,
            A.CONFIDENCE: "" if confidence is None else repr(confidence),
            A.CACHE_READ_TOKENS: str(cache_read_tokens) if cache_read_tokens else "",
            A.INPUT_MESSAGES: input_messages, A.OUTPUT_MESSAGES: output_messages,
        }
        attrs = [(k, v) for k, v in attrs.items() if v != ""]
        ids = [span_id] if span_id else [f"{next(counter):016x}" for _ in range(n)]
        row = {
            "Timestamp": at, "TraceId": "", "SpanId": "", "ParentSpanId": parent_span_id,
            "TraceState": "", "SpanName": name or f"{operation or 'GET'} {request_model}",
            "SpanKind": "Client",
            "ServiceName": service, "ResourceAttributes": [("service.name", service)]
            + ([("infersight.project.id", project)] if project else []),
            "ScopeName": "infersight", "ScopeVersion": "0.1.0", "SpanAttributes": attrs,
            "Duration": round(duration_ms * 1_000_000), "StatusCode": status,
            "StatusMessage": "", "Events.Timestamp": [], "Events.Name": [],
            "Events.Attributes": [], "Links.TraceId": [], "Links.SpanId": [],
            "Links.TraceState": [], "Links.Attributes": [],
        }
        columns = {c: [row[c]] * n for c in BASE_COLUMNS}
        columns["TraceId"] = [trace_id or i * 2 for i in ids]
        columns["SpanId"] = ids
        insert_spans(store, pa.table(
            {c: pa.array(v, type=_TYPES.get(c, pa.string())) for c, v in columns.items()}))

    return add
