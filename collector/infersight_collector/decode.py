"""OTLP `ExportTraceServiceRequest` -> one columnar Arrow batch for `otel_traces`.

Values are stored as the OpenTelemetry Collector ClickHouse exporter stores them: attribute
maps of strings (numbers in decimal, booleans as true/false, arrays and maps as JSON), hex ids,
nanosecond timestamps and durations, status and kind by name. The batch is built column by
column in one pass; a span with an invalid id is rejected alone, with a reason.

Hostile input gets a bounded, documented treatment (`Limits`, all configurable):
- a value longer than `max_value_chars` is cut there and ends with `TRUNCATED_MARKER`;
  a key longer than `max_key_chars` is cut the same way;
- at most `max_attributes` attributes per span, resource, event and link are kept (the first
  ones, in the sender's order) and `DROPPED_ATTRIBUTES` counts the rest; likewise
  `max_events` and `max_links` per span (`DROPPED_EVENTS`, `DROPPED_LINKS`). So millions of
  distinct keys cost at most `max_attributes` map entries per span: the Map column stores
  keys as data, never as columns, and no per-key state is kept anywhere;
- arrays and maps nested deeper than `max_depth` are replaced by `NESTED_MARKER`;
- invalid UTF-8 never gets this far: the protobuf parser rejects the whole request.
Checks run once per span on whole maps (`max(map(len, ...))` in C), not per attribute.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .auth import PROJECT_ATTRIBUTE
from .normalize import normalize

# Enum values outside these (an open enum on the wire, even negative) read as the default.
_STATUS = dict(enumerate(("Unset", "Ok", "Error")))
_KIND = dict(enumerate(("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")))

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


TRUNCATED_MARKER = "...[truncated by infersight: {n} more chars]"
NESTED_MARKER = "...[nested deeper than {n} levels, dropped by infersight]"
DROPPED_ATTRIBUTES = "infersight.dropped_attributes_count"
DROPPED_EVENTS = "infersight.dropped_events_count"
DROPPED_LINKS = "infersight.dropped_links_count"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one span may cost to store (see the module docstring)."""

    max_value_chars: int = 65_536
    max_key_chars: int = 256
    max_attributes: int = 256
    max_events: int = 1_024
    max_links: int = 1_024
    max_depth: int = 8


DEFAULT_LIMITS = Limits()


@dataclass
class Decoded:
    batch: pa.Table
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.batch.num_rows


def _plain(value, depth: int) -> object:
    """An AnyValue as a JSON-able Python value (for arrays and maps), `depth` levels at most."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value") and depth <= 0:
        return NESTED_MARKER
    if kind == "array_value":
        return [_plain(v, depth - 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value, depth - 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _text(value, depth: int) -> str:
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
    plain = _plain(value, depth)
    return plain if isinstance(plain, str) else json.dumps(plain, separators=(",", ":"))


def _cut(text: str, limit: int) -> str:
    return text[:limit] + TRUNCATED_MARKER.format(n=len(text) - limit) if len(text) > limit else text


def _attrs(kvs, limits: Limits) -> dict[str, str]:
    """A KeyValue list as a bounded {key: text} map."""
    depth = limits.max_depth
    if len(kvs) <= limits.max_attributes:
        out = {kv.key: _text(kv.value, depth) for kv in kvs}
    else:
        out = {kv.key: _text(kv.value, depth) for kv in kvs[:limits.max_attributes]}
        out[DROPPED_ATTRIBUTES] = str(len(kvs) - limits.max_attributes)
    if out and max(map(len, out.values())) > limits.max_value_chars:
        for key, text in out.items():
            out[key] = _cut(text, limits.max_value_chars)
    if out and max(map(len, out)) > limits.max_key_chars:
        out = {_cut(key, limits.max_key_chars): text for key, text in out.items()}
    return out


def _capped(items, limit: int, attrs: dict[str, str], marker: str):
    """The first `limit` of a repeated field, noting how many were dropped in `attrs`."""
    if len(items) <= limit:
        return items
    attrs[marker] = str(len(items) - limit)
    return items[:limit]


_MAX_NS = (1 << 63) - 1  # timestamps are stored as signed 64-bit nanoseconds


def _invalid(span) -> str | None:
    """Why the span cannot be stored (OTLP: 16-byte non-zero trace id, 8-byte non-zero span
    id, parent absent or 8 bytes; times that fit a signed 64-bit nanosecond count), or None."""
    if span.start_time_unix_nano > _MAX_NS or span.end_time_unix_nano > _MAX_NS:
        return "start or end time past the year 2262 (nanoseconds since 1970 expected)"
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return f"trace_id must be 16 bytes, not all zero (got {len(span.trace_id)} bytes)"
    if len(span.span_id) != 8 or not any(span.span_id):
        return f"span_id must be 8 bytes, not all zero (got {len(span.span_id)} bytes)"
    if len(span.parent_span_id) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes (got {len(span.parent_span_id)} bytes)"
    return None


def decode_request(request: ExportTraceServiceRequest, limits: Limits = DEFAULT_LIMITS,
                   project: str | None = None) -> Decoded:
    """Decode, bound, normalise and price the spans; stamp `project` on every resource."""
    cols: dict[str, list] = {name: [] for name in ARROW_SCHEMA.names}
    ts, trace_ids, span_ids, parents, states = (cols["Timestamp"], cols["TraceId"],
                                                cols["SpanId"], cols["ParentSpanId"],
                                                cols["TraceState"])
    rejected = 0
    errors: list[str] = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes, limits)
        if project is not None:
            resource[PROJECT_ATTRIBUTE] = project  # the key's project, whatever the client said
        service = resource.get("service.name", "")
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            for span in ss.spans:
                bad = _invalid(span)
                if bad:
                    rejected += 1
                    if len(errors) < 5:
                        errors.append(f"span {span.name[:100]!r}: {bad}")
                    continue
                attrs = normalize(_attrs(span.attributes, limits), span.start_time_unix_nano)
                events = _capped(span.events, limits.max_events, attrs, DROPPED_EVENTS)
                links = _capped(span.links, limits.max_links, attrs, DROPPED_LINKS)
                ts.append(span.start_time_unix_nano)
                trace_ids.append(span.trace_id.hex())
                span_ids.append(span.span_id.hex())
                parents.append(span.parent_span_id.hex())
                states.append(span.trace_state)
                cols["SpanName"].append(_cut(span.name, limits.max_value_chars))
                cols["SpanKind"].append(_KIND.get(span.kind, "Unspecified"))
                cols["ServiceName"].append(service)
                cols["ResourceAttributes"].append(resource)
                cols["ScopeName"].append(scope_name)
                cols["ScopeVersion"].append(scope_version)
                cols["SpanAttributes"].append(attrs)
                cols["Duration"].append(max(span.end_time_unix_nano - span.start_time_unix_nano, 0))
                code = span.status.code
                cols["StatusCode"].append(_STATUS.get(code, "Unset"))
                cols["StatusMessage"].append(_cut(span.status.message, limits.max_value_chars))
                cols["Events.Timestamp"].append([min(e.time_unix_nano, _MAX_NS) for e in events])
                cols["Events.Name"].append([e.name for e in events])
                cols["Events.Attributes"].append([_attrs(e.attributes, limits) for e in events])
                cols["Links.TraceId"].append([link.trace_id.hex() for link in links])
                cols["Links.SpanId"].append([link.span_id.hex() for link in links])
                cols["Links.TraceState"].append([link.trace_state for link in links])
                cols["Links.Attributes"].append([_attrs(link.attributes, limits) for link in links])
    batch = pa.Table.from_pydict(cols, schema=ARROW_SCHEMA)
    return Decoded(batch, rejected, errors)
