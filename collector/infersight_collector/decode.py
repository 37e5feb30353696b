"""OTLP `ExportTraceServiceRequest` -> one columnar Arrow batch for `otel_traces`.

Values are stored as the OpenTelemetry Collector ClickHouse exporter stores them: attribute
maps of strings (numbers in decimal, booleans as true/false, arrays and maps as JSON), hex ids,
nanosecond timestamps and durations, status and kind by name. The batch is built column by
column in one pass; a span with an invalid id is rejected alone, with a reason.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_STATUS = ("Unset", "Ok", "Error")
_KIND = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")

_STR_MAP = pa.map_(pa.string(), pa.string())
ARROW_SCHEMA = pa.schema([
    ("Timestamp", pa.timestamp("ns")),
    ("TraceId", pa.string()),
    ("SpanId", pa.string()),
    ("ParentSpanId", pa.string()),
    ("TraceState", pa.string()),
    ("SpanName", pa.string()),
    ("SpanKind", pa.string()),
    ("ServiceName", pa.string()),
    ("ResourceAttributes", _STR_MAP),
    ("ScopeName", pa.string()),
    ("ScopeVersion", pa.string()),
    ("SpanAttributes", _STR_MAP),
    ("Duration", pa.uint64()),
    ("StatusCode", pa.string()),
    ("StatusMessage", pa.string()),
    ("Events.Timestamp", pa.list_(pa.timestamp("ns"))),
    ("Events.Name", pa.list_(pa.string())),
    ("Events.Attributes", pa.list_(_STR_MAP)),
    ("Links.TraceId", pa.list_(pa.string())),
    ("Links.SpanId", pa.list_(pa.string())),
    ("Links.TraceState", pa.list_(pa.string())),
    ("Links.Attributes", pa.list_(_STR_MAP)),
])


@dataclass
class Decoded:
    batch: pa.Table
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.batch.num_rows


def _plain(value) -> object:
    """An AnyValue as a JSON-able Python value (for arrays and maps)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _text(value) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind is None:
        return ""
    plain = _plain(value)
    return plain if isinstance(plain, str) else json.dumps(plain, separators=(",", ":"))


def _attrs(kvs) -> list[tuple[str, str]]:
    return [(kv.key, _text(kv.value)) for kv in kvs]


def decode_request(request: ExportTraceServiceRequest) -> Decoded:
    cols: dict[str, list] = {name: [] for name in ARROW_SCHEMA.names}
    ts, trace_ids, span_ids, parents, states = (cols["Timestamp"], cols["TraceId"],
                                                cols["SpanId"], cols["ParentSpanId"],
                                                cols["TraceState"])
    rejected = 0
    errors: list[str] = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        service = next((v for k, v in resource if k == "service.name"), "")
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            for span in ss.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    rejected += 1
                    if len(errors) < 5:
                        errors.append(f"span {span.name!r}: trace_id must be 16 bytes and "
                                      f"span_id 8 bytes (got {len(span.trace_id)} and "
                                      f"{len(span.span_id)})")
                    continue
                ts.append(span.start_time_unix_nano)
                trace_ids.append(span.trace_id.hex())
                span_ids.append(span.span_id.hex())
                parents.append(span.parent_span_id.hex())
                states.append(span.trace_state)
                cols["SpanName"].append(span.name)
                cols["SpanKind"].append(_KIND[span.kind] if span.kind < len(_KIND) else "Unspecified")
                cols["ServiceName"].append(service)
                cols["ResourceAttributes"].append(resource)
                cols["ScopeName"].append(scope_name)
                cols["ScopeVersion"].append(scope_version)
                cols["SpanAttributes"].append(_attrs(span.attributes))
                cols["Duration"].append(max(span.end_time_unix_nano - span.start_time_unix_nano, 0))
                code = span.status.code
                cols["StatusCode"].append(_STATUS[code] if code < len(_STATUS) else "Unset")
                cols["StatusMessage"].append(span.status.message)
                cols["Events.Timestamp"].append([e.time_unix_nano for e in span.events])
                cols["Events.Name"].append([e.name for e in span.events])
                cols["Events.Attributes"].append([_attrs(e.attributes) for e in span.events])
                cols["Links.TraceId"].append([link.trace_id.hex() for link in span.links])
                cols["Links.SpanId"].append([link.span_id.hex() for link in span.links])
                cols["Links.TraceState"].append([link.trace_state for link in span.links])
                cols["Links.Attributes"].append([_attrs(link.attributes) for link in span.links])
    batch = pa.Table.from_pydict(cols, schema=ARROW_SCHEMA)
    return Decoded(batch, rejected, errors)
