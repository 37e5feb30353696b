"""The ceiling of a decode path the collector does not have: ClickHouse parsing OTLP itself.

The collector decodes each request in Python (`decode_request`, about 40k spans/s a core),
which is what holds ingest under its target. ClickHouse reads protobuf natively: given a schema
for `ExportTraceServiceRequest`, chDB parses length-delimited requests and builds the base
`otel_traces` columns in SQL. This measures how fast, so the ingest table shows what moving
decode into the engine could give; it is a benchmark baseline, not a collector feature.

Left out of the SQL, so a collector built on it would still need them: the foreign-convention
renames and ingest-side pricing of `normalize`, the `Limits` on hostile input, rejecting spans
with invalid ids one by one, events and links, and values nested in arrays beyond one level
of scalars. The smoke test checks that these rows match `decode_request`'s for the load
generator's spans, which need none of that.
"""

from __future__ import annotations

import os
import tempfile
import time

from infersight._otlp import _varint
from infersight_collector.store.chdb import INSERT_SETTINGS_SQL

# Field numbers are opentelemetry-proto's. Array values keep scalar elements only (a message
# type may not nest itself in a ClickHouse structure); deeper ones are skipped by the parser.
SCHEMA = """syntax = "proto3";
message AnyScalar {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
                double double_value = 4; bytes bytes_value = 7; }
}
message ArrayValue { repeated AnyScalar values = 1; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
                double double_value = 4; ArrayValue array_value = 5; bytes bytes_value = 7; }
}
message KeyValue { string key = 1; AnyValue value = 2; }
message Resource { repeated KeyValue attributes = 1; }
message InstrumentationScope { string name = 1; string version = 2; }
message Status { string message = 2; int32 code = 3; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9; Status status = 15;
}
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
"""

# `value` (the oneof's name) says which member was on the wire.
_VALUE = ("Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, "
          "array_value Tuple(values Array(Tuple(string_value String))), "
          "value Enum8(\\'none\\' = 0, \\'string_value\\' = 1, \\'bool_value\\' = 2, "
          "\\'int_value\\' = 3, \\'double_value\\' = 4, \\'array_value\\' = 5, "
          "\\'bytes_value\\' = 7))")
_ATTRS = f"Array(Tuple(key String, value {_VALUE}))"
STRUCTURE = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_ATTRS}), "
    "scope_spans Array(Tuple(scope Tuple(name String, version String), "
    "spans Array(Tuple(trace_id String, span_id String, trace_state String, "
    "parent_span_id String, name String, kind Int32, start_time_unix_nano UInt64, "
    f"end_time_unix_nano UInt64, attributes {_ATTRS}, "
    "status Tuple(message String, code Int32)))))))")

# An attribute's value as text, as `decode` stores it (arrays of strings as JSON).
_TEXT = ("multiIf(a.2.value = 'string_value', a.2.string_value, "
         "a.2.value = 'int_value', toString(a.2.int_value), "
         "a.2.value = 'double_value', toString(a.2.double_value), "
         "a.2.value = 'bool_value', if(a.2.bool_value, 'true', 'false'), "
         "a.2.value = 'array_value', toJSONString(a.2.array_value.values.string_value), '')")


def _map(attributes: str) -> str:
    return f"mapFromArrays(arrayMap(a -> a.1, {attributes}), arrayMap(a -> {_TEXT}, {attributes}))"


COLUMNS = ("Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, "
           "ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, "
           "StatusCode, StatusMessage")


def select(path: str) -> str:
    """The base `otel_traces` columns (`COLUMNS`) of the length-delimited requests in `path`."""
    return f"""SELECT
    fromUnixTimestamp64Nano(toInt64(sp.start_time_unix_nano)) AS Timestamp,
    lower(hex(sp.trace_id)) AS TraceId, lower(hex(sp.span_id)) AS SpanId,
    lower(hex(sp.parent_span_id)) AS ParentSpanId, sp.trace_state AS TraceState,
    sp.name AS SpanName,
    ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'][sp.kind + 1]
        AS SpanKind,
    ResourceAttributes['service.name'] AS ServiceName,
    {_map('rs.resource.attributes')} AS ResourceAttributes,
    ss.scope.name AS ScopeName, ss.scope.version AS ScopeVersion,
    {_map('sp.attributes')} AS SpanAttributes,
    toUInt64(greatest(toInt64(sp.end_time_unix_nano) - toInt64(sp.start_time_unix_nano), 0))
        AS Duration,
    ['Unset', 'Ok', 'Error'][sp.status.code + 1] AS StatusCode,
    sp.status.message AS StatusMessage
FROM file('{path}', 'Protobuf', '{STRUCTURE}')
ARRAY JOIN resource_spans AS rs ARRAY JOIN rs.scope_spans AS ss ARRAY JOIN ss.spans AS sp"""


def _delimited(payloads: list[bytes]) -> bytes:
    """The requests as the Protobuf format reads them: each after its varint length."""
    return b"".join(_varint(len(p)) + p for p in payloads)


class NativeDecode:
    """Groups of requests written where chDB's SQL reads them, one file a group, and a chDB
    store: `store`, else one of its own in a temporary directory."""

    def __init__(self, groups: list[list[bytes]], store=None):
        from infersight_collector.store import open_store

        self._tmp = tempfile.TemporaryDirectory(prefix="bench-native-", ignore_cleanup_errors=True)
        schema = os.path.join(self._tmp.name, "otlp.proto")
        with open(schema, "w") as f:
            f.write(SCHEMA)
        self.paths = []
        for i, group in enumerate(groups):
            self.paths.append(os.path.join(self._tmp.name, f"requests-{i}.bin"))
            with open(self.paths[-1], "wb") as f:
                f.write(_delimited(group))
        self.settings = (f"SETTINGS format_schema = '{schema}:ExportTraceServiceRequest', "
                         "input_format_protobuf_oneof_presence = 1")
        self._own = store is None
        self.store = store or open_store(data_dir=os.path.join(self._tmp.name, "store"))

    def rows(self):
        """Every group's rows as one DataFrame (for the smoke test)."""
        every = os.path.join(self._tmp.name, "requests-*.bin")
        return self.store.query(f"{select(every)} {self.settings}")

    def parse(self, group: int) -> None:
        self.store.command(
            f"SELECT * FROM ({select(self.paths[group])}) FORMAT Null {self.settings}")

    def insert(self, group: int) -> None:
        """Into `otel_traces`, whose typed AI columns and rollup views follow as they do for
        the collector's inserts (with its settings)."""
        self.store.command(f"INSERT INTO {self.store.database}.otel_traces ({COLUMNS}) "
                           f"{select(self.paths[group])} {self.settings}, {INSERT_SETTINGS_SQL}")

    def close(self) -> None:
        if self._own:
            self.store.close()
        self._tmp.cleanup()


def rates(payloads: list[bytes], spans_per_request: int, group_requests: int,
          min_seconds: float) -> tuple[float, float]:
    """(spans/s parsed into rows, spans/s parsed and inserted), a statement per
    `group_requests` requests, each step repeated over the groups for at least `min_seconds`."""
    groups = [payloads[i:i + group_requests]  # whole groups only, as the insert baseline
              for i in range(0, max(len(payloads) - group_requests + 1, 1), group_requests)]
    native = NativeDecode(groups)
    try:
        native.insert(0)  # warm up: the schema is compiled and the parts directory made
        out = []
        for step in (native.parse, native.insert):
            spans, started = 0, time.perf_counter()
            while True:
                for i, group in enumerate(groups):
                    step(i)
                    spans += spans_per_request * len(group)
                elapsed = time.perf_counter() - started
                if elapsed >= min_seconds:
                    break
            out.append(spans / elapsed)
        return out[0], out[1]
    finally:
        native.close()
