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

    They are AI calls unless `operation=""`; `feature=""`, `cost=None`, `response_model=""` leave
    that attribute out, as a span without it would.
    """
    counter = iter(range(1, 1_000_000))

    def add(at: datetime, n: int = 1, *, feature: str = "search", operation: str = "chat",
            request_model: str = "gpt-4o", response_model: str = "gpt-4o-2024-08-06",
            cost: float | None = 0.25, input_tokens: int = 100, output_tokens: int = 20,
            duration_ms: float = 100.0, status: str = "Ok") -> None:
        attrs = {
            A.OPERATION: operation, A.PROVIDER: "openai", A.FEATURE: feature,
            A.REQUEST_MODEL: request_model, A.RESPONSE_MODEL: response_model,
            A.COST: "" if cost is None else repr(cost),
            A.INPUT_TOKENS: str(input_tokens), A.OUTPUT_TOKENS: str(output_tokens),
        }
        attrs = [(k, v) for k, v in attrs.items() if v != ""]
        ids = [f"{next(counter):016x}" for _ in range(n)]
        row = {
            "Timestamp": at, "TraceId": "", "SpanId": "", "ParentSpanId": "", "TraceState": "",
            "SpanName": f"{operation or 'GET'} {request_model}", "SpanKind": "Client",
            "ServiceName": "checkout", "ResourceAttributes": [("service.name", "checkout")],
            "ScopeName": "infersight", "ScopeVersion": "0.1.0", "SpanAttributes": attrs,
            "Duration": round(duration_ms * 1_000_000), "StatusCode": status,
            "StatusMessage": "", "Events.Timestamp": [], "Events.Name": [],
            "Events.Attributes": [], "Links.TraceId": [], "Links.SpanId": [],
            "Links.TraceState": [], "Links.Attributes": [],
        }
        columns = {c: [row[c]] * n for c in BASE_COLUMNS}
        columns["TraceId"] = [i * 2 for i in ids]
        columns["SpanId"] = ids
        insert_spans(store, pa.table(
            {c: pa.array(v, type=_TYPES.get(c, pa.string())) for c, v in columns.items()}))

    return add
