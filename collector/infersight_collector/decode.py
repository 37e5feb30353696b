"""OTLP `ExportTraceServiceRequest` -> one columnar Arrow batch for `otel_traces`.

Values are stored as the OpenTelemetry Collector ClickHouse exporter stores them: attribute
maps of strings (numbers in decimal, never with an exponent: `stored_double`; booleans as
true/false, arrays and maps as JSON), hex ids,
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

import numpy as np
import pyarrow as pa
import xxhash
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .auth import PROJECT_ATTRIBUTE
from .normalize import normalize, stored_double

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
    batch: pa.Table  # or a `native.RawRequest`, for the store to decode
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


_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call


def _text(value, depth: int) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return stored_double(value.double_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind is None:
        return ""
    plain = _plain(value, depth)
    return plain if isinstance(plain, str) else _JSON.encode(plain)


def _cut(text: str, limit: int) -> str:
    return text[:limit] + TRUNCATED_MARKER.format(n=len(text) - limit) if len(text) > limit else text


_SCALAR = {
    "int_value": lambda v: str(v.int_value),
    "double_value": lambda v: stored_double(v.double_value),
    "bool_value": lambda v: "true" if v.bool_value else "false",
}


def _attrs(kvs, limits: Limits) -> dict[str, str]:
    """A KeyValue list as a bounded {key: text} map."""
    if len(kvs) > limits.max_attributes:
        out = _attrs(kvs[:limits.max_attributes], limits)
        out[DROPPED_ATTRIBUTES] = str(len(kvs) - limits.max_attributes)
        return out
    out = {}
    for kv in kvs:  # the hot loop of ingest: one WhichOneof per value, strings inline
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = value.string_value
        else:
            scalar = _SCALAR.get(kind)
            out[kv.key] = scalar(value) if scalar else _text(value, limits.max_depth)
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
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


def storable(trace_id: bytes, span_id: bytes, parent: bytes, start: int, end: int) -> bool:
    """A span's ids and times are ones `otel_traces` can hold (`_invalid` says why not)."""
    return (len(trace_id) == 16 and len(span_id) == 8 and len(parent) in (0, 8)
            and trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN
            and start <= _MAX_NS and end <= _MAX_NS)


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


def _hex(ids: list[bytes], width: int) -> pa.Array:
    """Ids of `width` bytes each as one hex string column, built in one pass in C."""
    data = b"".join(ids).hex().encode()
    offsets = pa.py_buffer(np.arange(0, 2 * width * len(ids) + 1, 2 * width, dtype=np.int32))
    return pa.StringArray.from_buffers(len(ids), offsets, pa.py_buffer(data))


def _maps(dicts: list[dict[str, str]]) -> pa.MapArray:
    """A list of {key: text} as a Map column, from flat key and value lists."""
    keys: list[str] = []
    values: list[str] = []
    offsets = [0]
    for d in dicts:
        keys.extend(d)
        values.extend(d.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()),
                                   pa.array(values, pa.string()))


def decode_request(request: ExportTraceServiceRequest, limits: Limits = DEFAULT_LIMITS,
                   project: str | None = None) -> Decoded:
    """Decode, bound, normalise and price the spans; stamp `project` on every resource.

    Columns are filled span by span with the fewest Python operations (no per-span lists for
    the usual span without events or links); ids and maps are converted column-wide."""
    trace_ids, span_ids, parents = [], [], []
    ts, ends, states, names, kinds, services, resources, scope_names, scope_versions = \
        [], [], [], [], [], [], [], [], []
    span_attrs, codes, messages = [], [], []
    events_col: list = []
    links_col: list = []
    rejected = 0
    errors: list[str] = []
    max_chars = limits.max_value_chars
    no_events = ([], [], [])
    no_links = ([], [], [], [])
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes, limits)
        if project is not None:
            resource[PROJECT_ATTRIBUTE] = project  # the key's project, whatever the client said
        service = resource.get("service.name", "")
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            for span in ss.spans:
                trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if not storable(trace_id, span_id, parent, start, end):
                    rejected += 1
                    if len(errors) < 5:
                        errors.append(f"span {span.name[:100]!r}: {_invalid(span)}")
                    continue
                attrs = normalize(_attrs(span.attributes, limits), start)
                trace_ids.append(trace_id)
                span_ids.append(span_id)
                parents.append(parent)
                ts.append(start)
                ends.append(end)
                states.append(span.trace_state)
                name = span.name
                names.append(name if len(name) <= max_chars else _cut(name, max_chars))
                kinds.append(_KIND.get(span.kind, "Unspecified"))
                services.append(service)
                resources.append(resource)
                scope_names.append(scope_name)
                scope_versions.append(scope_version)
                span_attrs.append(attrs)
                status = span.status
                codes.append(_STATUS.get(status.code, "Unset"))
                message = status.message
                messages.append(message if len(message) <= max_chars else _cut(message, max_chars))
                if span.events:
                    events = _capped(span.events, limits.max_events, attrs, DROPPED_EVENTS)
                    events_col.append(([min(e.time_unix_nano, _MAX_NS) for e in events],
                                       [e.name for e in events],
                                       [_attrs(e.attributes, limits) for e in events]))
                else:
                    events_col.append(no_events)
                if span.links:
                    links = _capped(span.links, limits.max_links, attrs, DROPPED_LINKS)
                    links_col.append(([link.trace_id.hex() for link in links],
                                      [link.span_id.hex() for link in links],
                                      [link.trace_state for link in links],
                                      [_attrs(link.attributes, limits) for link in links]))
                else:
                    links_col.append(no_links)
    columns = {
        "Timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp("ns")),
        "TraceId": _hex(trace_ids, 16),
        "SpanId": _hex(span_ids, 8),
        "ParentSpanId": pa.array([p.hex() for p in parents], pa.string()),
        "TraceState": states, "SpanName": names, "SpanKind": kinds, "ServiceName": services,
        "ResourceAttributes": _maps(resources),
        "ScopeName": scope_names, "ScopeVersion": scope_versions,
        "SpanAttributes": _maps(span_attrs),
        "Duration": [max(e - s, 0) for s, e in zip(ts, ends)],
        "StatusCode": codes, "StatusMessage": messages,
    }
    for i, name in enumerate(("Events.Timestamp", "Events.Name", "Events.Attributes")):
        columns[name] = [e[i] for e in events_col]
    for i, name in enumerate(("Links.TraceId", "Links.SpanId", "Links.TraceState",
                              "Links.Attributes")):
        columns[name] = [link[i] for link in links_col]
    return Decoded(pa.Table.from_pydict(columns, schema=ARROW_SCHEMA), rejected, errors)


def content_token(batch: pa.Table) -> str:
    """A deduplication token that is the same for the same spans decoded the same way (XXH3,
    as `native.RawRequest.token`)."""
    digest = xxhash.xxh3_128()
    digest.update(f"{batch.num_rows}:{','.join(batch.column_names)}".encode())
    for column in batch.columns:
        for chunk in column.chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(buffer)
    return digest.hexdigest()
