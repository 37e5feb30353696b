"""Native decode: chDB parses OTLP requests as received and builds their rows in SQL.

Building a span's row in Python costs about 26 CPU-us (`decode_request`); ClickHouse's own
protobuf reader and SQL do the same in about 8, most of it on more than one core. So with the
embedded store a receiver only parses a request (upb, about 1 us a span) and checks its ids
and times, which it must answer for at once; the spool keeps the request's bytes as they came,
and the inserter inserts them with `INSERT ... SELECT ... FROM file(..., 'Protobuf')`
(`Native.insert`), `CHUNK_SPANS` spans a statement. A statement costs about 15 ms to plan
whatever it reads, which is why this happens per segment, not per request.

The SQL covers the spans that need none of `decode_request`'s special cases, which is what
tracers send: scalar and string-array attributes under the `Limits`, no events or links, no
foreign conventions to rename, and either a cost source or no tokens to price. Each statement
is guarded: when a request has any other span it stops, writing nothing; the requests that
need Python are then looked up (`complex_sql`), the rest inserted, and those decoded by the
caller. So every span is stored exactly as `decode_request` stores it, and the tests hold the
two paths to the same rows. The ClickHouse server backend reads files on its own host, so it
keeps decoding in Python.

Each stored request is the client's bytes with two fields appended (protobuf merges them into
the message): the project its API key gave, and its index in the statement. Field numbers of
the rest are opentelemetry-proto's.
"""


from __future__ import annotations

import hashlib
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import xxhash

from infersight import attributes as A
from infersight._otlp import _varint

from . import usable_cores
from .auth import PROJECT_ATTRIBUTE
from .decode import Limits, storable
from .normalize import RENAMES
from .store import unanswered

log = logging.getLogger(__name__)

# Appended to each stored request; far above any field number OTLP uses.
_PROJECT_FIELD, _INDEX_FIELD = 1000, 1001

# `bytes` members are read for the oneof's presence only (a message is length-delimited too).
SCHEMA = f"""syntax = "proto3";
message AnyScalar {{
  oneof value {{ string string_value = 1; bool bool_value = 2; int64 int_value = 3;
                double double_value = 4; bytes array_value = 5; bytes kvlist_value = 6;
                bytes bytes_value = 7; }}
}}
message ArrayValue {{ repeated AnyScalar values = 1; }}
message AnyValue {{
  oneof value {{ string string_value = 1; bool bool_value = 2; int64 int_value = 3;
                double double_value = 4; ArrayValue array_value = 5; bytes kvlist_value = 6;
                bytes bytes_value = 7; }}
}}
message KeyValue {{ string key = 1; AnyValue value = 2; }}
message Resource {{ repeated KeyValue attributes = 1; }}
message InstrumentationScope {{ string name = 1; string version = 2; }}
message Status {{ string message = 2; int32 code = 3; }}
message Span {{
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9;
  repeated bytes events = 11; repeated bytes links = 13; Status status = 15;
}}
message ScopeSpans {{ InstrumentationScope scope = 1; repeated Span spans = 2; }}
message ResourceSpans {{ Resource resource = 1; repeated ScopeSpans scope_spans = 2; }}
message ExportTraceServiceRequest {{
  repeated ResourceSpans resource_spans = 1;
  string infersight_project = {_PROJECT_FIELD};
  uint32 infersight_index = {_INDEX_FIELD};
}}
"""

_KINDS = ("'none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, "
          "'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7")
# The presence enum is set only for members that have a column, so every member has one.
# Scalars are read into String columns: the reader writes them as text (`true`, `42`, and
# doubles as `toString` does), which costs a fifth of converting them in SQL.
_VALUE = (f"Tuple(string_value String, bool_value String, int_value String, "
          f"double_value String, "
          f"array_value Tuple(values Array(Tuple(string_value String, value Enum8({_KINDS})))), "
          f"kvlist_value String, bytes_value String, value Enum8({_KINDS}))")
_ATTRS = f"Array(Tuple(key String, value {_VALUE}))"
STRUCTURE = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_ATTRS}), "
    "scope_spans Array(Tuple(scope Tuple(name String, version String), "
    "spans Array(Tuple(trace_id String, span_id String, trace_state String, "
    "parent_span_id String, name String, kind Int32, start_time_unix_nano UInt64, "
    f"end_time_unix_nano UInt64, attributes {_ATTRS}, events Array(String), "
    "links Array(String), status Tuple(message String, code Int32))))))), "
    "infersight_project String, infersight_index UInt32")


def double_text(text: str) -> str:
    """SQL for `normalize.stored_double` of a double as the Protobuf reader writes it into a
    String column: ClickHouse's shortest digits (`toString`'s), in fixed notation but below
    1e-6 and from 1e21 on, where it writes `2.5e-7`; those few are spelled out (`if`
    evaluates this branch for them alone)."""
    e_at = f"position({text}, 'e')"
    power = f"toInt32(substring({text}, {e_at} + 1))"
    digits = f"replaceOne(trimLeft(substring({text}, 1, {e_at} - 1), '-'), '.', '')"
    fixed = (f"if({power} >= 0, rightPad({digits}, toUInt32({power} + 1), '0'), "
             f"concat('0.', repeat('0', toUInt32(-{power} - 1)), {digits}))")
    return f"if({e_at} = 0, {text}, concat(if(startsWith({text}, '-'), '-', ''), {fixed}))"


def _map(attributes: str) -> str:
    """SQL for a KeyValue list's map of stored texts, as `decode._attrs` writes them, for the
    kinds the native path takes (string arrays of plain ASCII are JSON without escapes).

    Scalars come as text from the reader (`_VALUE`); a lambda's `multiIf` evaluates every
    branch for every value, so each is a plain pick, and doubles in exponent form, which
    are rare, are spelled out in a second pass only for maps that have one. The lambdas
    take the subcolumns they read, not the whole tuple, which they would copy."""
    v = f"{attributes}.value"
    strings = "if(empty(arr), '[]', concat('[\"', arrayStringConcat(arr, '\",\"'), '\"]'))"
    texts = (f"arrayMap((k, s, i, d, b, arr) -> multiIf(k = 'string_value', s, "
             f"k = 'int_value', i, k = 'double_value', d, k = 'bool_value', b, "
             f"k = 'array_value', {strings}, ''), {v}.value, {v}.string_value, "
             f"{v}.int_value, {v}.double_value, {v}.bool_value, "
             f"{v}.array_value.values.string_value)")
    # A value of another kind reads as `0` here, so only doubles can hold an `e`.
    spelled = (f"if(arrayExists(d -> position(d, 'e') > 0, {v}.double_value), "
               f"arrayMap((t, d) -> if(position(d, 'e') > 0, {double_text('d')}, t), "
               f"{texts}, {v}.double_value), {texts})")
    return f"mapFromArrays({attributes}.key, {spelled})"


# Printable ASCII but for the characters JSON escapes, and '/' (ClickHouse escapes it).
_PLAIN = r"'^[ !#-.0-\\[\\]-~]*$'"


def _complex_values(attributes: str, limits: Limits) -> str:
    """SQL: among `attributes` (KeyValues, flattened across spans or resources), one that
    `decode._attrs` would store otherwise: a key or value too long (in bytes, which bounds
    characters from above), a value of another kind, or an array of anything but plain
    strings. Each check reads one subcolumn, and the strings of every array are matched
    as one."""
    v = f"{attributes}.value"
    arrays = f"{v}.array_value.values"
    longest = limits.max_value_chars
    return (f"(arrayExists(k -> length(k) > {limits.max_key_chars}, {attributes}.key) "
            f"OR arrayExists(s -> length(s) > {longest}, {v}.string_value) "
            f"OR arrayExists(k -> k IN ('kvlist_value', 'bytes_value'), {v}.value) "
            f"OR ({limits.max_depth} < 1 AND has({v}.value, 'array_value')) "
            f"OR arrayExists(k -> k != 'string_value', arrayFlatten({arrays}.value)) "
            f"OR NOT match(arrayStringConcat(arrayFlatten({arrays}.string_value)), {_PLAIN}) "
            f"OR arrayExists(a -> length(arrayStringConcat(a)) + 3 * length(a) + 2 > {longest}, "
            f"{arrays}.string_value))")


def _complex_keys(keys: str, limits: Limits) -> str:
    """SQL: one span's or resource's keys (of `keys`, an array of them) are too many or
    repeat one."""
    return (f"arrayExists(k -> length(k) > {limits.max_attributes} "
            f"OR arrayUniq(k) != length(k), {keys})")


def _complex_spans(spans: str, limits: Limits) -> str:
    """SQL: among `spans`, one `decode_request` would change beyond its attributes' text:
    events, links, cut name or message, or attributes `normalize` would price (it leaves a
    span alone that has a cost source, or no cost and no tokens)."""
    longest = limits.max_value_chars
    unpriced = (f"arrayExists(k -> NOT (has(k, '{A.COST_SOURCE}') OR NOT hasAny(k, "
                f"{_quoted([A.COST, A.INPUT_TOKENS, A.OUTPUT_TOKENS])})), "
                f"{spans}.attributes.key)")
    return (f"(notEmpty(arrayFlatten({spans}.events)) OR notEmpty(arrayFlatten({spans}.links)) "
            f"OR arrayExists(n -> length(n) > {longest}, {spans}.name) "
            f"OR arrayExists(m -> length(m) > {longest}, {spans}.status.message) "
            f"OR {_complex_keys(f'{spans}.attributes.key', limits)} OR {unpriced})")


def _complex_request(limits: Limits) -> str:
    """SQL: the request (a row of `STRUCTURE`) has a span the native path cannot store.
    Checks run on the request's spans and attributes flattened, one subcolumn each: a
    lambda over whole tuples copies them, and checking span by span cost ten times more."""
    resources = "resource_spans.resource.attributes"
    spans = "arrayFlatten(resource_spans.scope_spans.spans)"
    attributes = f"arrayFlatten({spans}.attributes)"
    foreign = "(" + ", ".join(map(_literal, RENAMES)) + ")"
    return (f"has(arrayFlatten({resources}.key), '{PROJECT_ATTRIBUTE}') "
            f"OR {_complex_keys(f'{resources}.key', limits)} "
            f"OR {_complex_values(f'arrayFlatten({resources})', limits)} "
            f"OR arrayExists(k -> k IN {foreign}, {attributes}.key) "
            f"OR {_complex_values(attributes, limits)} "
            f"OR {_complex_spans(spans, limits)}")


COLUMNS = ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName",
           "SpanKind", "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion",
           "SpanAttributes", "Duration", "StatusCode", "StatusMessage")


def _quoted(values) -> str:
    return "[" + ", ".join(map(_literal, values)) + "]"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _from(path: str) -> str:
    return f"file({_literal(path)}, 'Protobuf', {_literal(STRUCTURE)})"


def complex_sql(path: str, limits: Limits) -> str:
    """The indexes of the requests in `path` that have a span the native path cannot store."""
    return f"SELECT infersight_index FROM {_from(path)} WHERE {_complex_request(limits)}"


def select_sql(path: str, skip: str, guard: Limits | None = None) -> str:
    """The `COLUMNS` of the spans of the requests in `path` whose index is not in `skip` (an
    SQL array), as `decode_request` builds them. With `guard`, the query fails with
    `COMPLEX` when a request is complex under those limits. Each resource's map is built
    once, and each ARRAY JOIN unnests only the arrays it names, so no row carries its
    neighbours."""
    where = f"NOT has({skip}, infersight_index)"
    if guard is not None:
        where += f" AND throwIf({_complex_request(guard)}, '{COMPLEX}') = 0"
    resource = (f"if(infersight_project = '', {_map('attributes')}, "
                f"mapUpdate({_map('attributes')}, "
                f"map('{PROJECT_ATTRIBUTE}', infersight_project)))")
    return f"""SELECT
    fromUnixTimestamp64Nano(toInt64(sp.start_time_unix_nano)) AS Timestamp,
    lower(hex(sp.trace_id)) AS TraceId, lower(hex(sp.span_id)) AS SpanId,
    lower(hex(sp.parent_span_id)) AS ParentSpanId, sp.trace_state AS TraceState,
    sp.name AS SpanName,
    if(sp.kind BETWEEN 0 AND 5,
       ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'][sp.kind + 1],
       'Unspecified') AS SpanKind,
    Resource['service.name'] AS ServiceName,
    Resource AS ResourceAttributes,
    scope.name AS ScopeName, scope.version AS ScopeVersion,
    {_map('sp.attributes')} AS SpanAttributes,
    toUInt64(greatest(toInt64(sp.end_time_unix_nano) - toInt64(sp.start_time_unix_nano), 0))
        AS Duration,
    if(sp.status.code BETWEEN 0 AND 2, ['Unset', 'Ok', 'Error'][sp.status.code + 1], 'Unset')
        AS StatusCode,
    sp.status.message AS StatusMessage
FROM (
    SELECT {resource} AS Resource, scopes
    FROM (SELECT * FROM {_from(path)} WHERE {where})
    ARRAY JOIN resource_spans.resource.attributes AS attributes,
               resource_spans.scope_spans AS scopes)
ARRAY JOIN scopes.scope AS scope, scopes.spans AS spans
ARRAY JOIN spans AS sp"""


def valid_spans(request) -> int | None:
    """The number of spans in a parsed request when every one has valid ids and times (the
    checks of `decode_request`, which the receiver answers for at once); None when one has
    not, and the request is decoded in Python, which rejects those spans one by one."""
    n = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if not storable(span.trace_id, span.span_id, span.parent_span_id,
                                span.start_time_unix_nano, span.end_time_unix_nano):
                    return None
                n += 1
    return n


@dataclass(frozen=True)
class RawRequest:
    """A request kept as received, for the store to decode at insert: its bytes, the project
    of its API key, and how many spans it holds."""

    payload: bytes
    project: str
    spans: int

    @property
    def num_rows(self) -> int:
        """Its spans: the pipeline counts it as it counts a decoded batch's rows."""
        return self.spans

    def token(self) -> str:
        """Its deduplication token: the same bytes for the same project, the same. XXH3's 128
        bits, not a cryptographic hash: a request's token is taken as it is received, and
        blake2b cost 0.8 CPU-us a span there, XXH3 0.01."""
        digest = xxhash.xxh3_128(self.payload)
        digest.update(b"\0" + self.project.encode())
        return "r" + digest.hexdigest()


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


_PROJECT_TAG, _INDEX_TAG = _field(_PROJECT_FIELD, 2), _field(_INDEX_FIELD, 0)


def delimited(requests: list[RawRequest], start: int = 0, step: int = 1) -> bytes:
    """Every `step`th of the requests from `start`, as the Protobuf format reads them: each
    after its varint length, with its project and its index in `requests` appended."""
    out = []
    for i in range(start, len(requests), step):
        r = requests[i]
        project = r.project.encode()
        tail = _PROJECT_TAG + _varint(len(project)) + project + _INDEX_TAG + _varint(i)
        out.append(_varint(len(r.payload) + len(tail)))
        out.append(r.payload)
        out.append(tail)
    return b"".join(out)


# The message of a guarded insert that met a request the SQL cannot store.
COMPLEX = "infersight: a request needs Python decoding"
# Spans a statement: reading and building rows takes about 10 KB a span at once; at 30k
# spans a statement inserts nearly as fast as at 90k (61k against 65k spans/s here) in half
# the memory (peak RSS 0.78 against 1.46 GB).
CHUNK_SPANS = 30_000
# The files are read in parallel, so rows come in no set order: a statement must insert one
# block, deduplicated by its token alone, or a replay could cut the rows into blocks
# differently and drop some as duplicates of the first try.
_ONE_BLOCK = "min_insert_block_size_rows = 1000000000, min_insert_block_size_bytes = 0"


@dataclass(frozen=True)
class _Lane:
    """A connection and the files its statements read."""

    store: object
    parts: list[str]

    @property
    def path(self) -> str:
        return os.path.join(os.path.dirname(self.parts[0]), "requests-*.bin")


class Native:
    """Inserts raw requests into a chDB store's `otel_traces`, through files in `directory`
    (the spool's), `lanes` statements at once, each on its own connection where the store
    can open more (`ChdbStore.connection`; `--insert-lanes`).

    A statement parses on every core but sorts and writes its part on one, so two lanes
    overlap: 60 statements of 30k spans inserted at 98-104k spans/s, against 66-72k one at
    a time (2 cores). In the collector under full load two lanes once gave 45k queryable
    spans/s against 34-39k; since migration 12 and a lighter receiving side, 47.6k against
    44.8-49.7k for one lane (runs of the same code), at a peak PSS of 1.19 GiB against 0.9,
    over the 1 GiB the benchmark holds it to. So one lane is the default."""

    def __init__(self, store, limits: Limits, directory: str, lanes: int = 1):
        self.store = store
        self.limits = limits
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        schema = os.path.join(directory, "otlp.proto")
        with open(schema, "w") as f:
            f.write(SCHEMA)
        # Requests are written round robin into one file per core, which ClickHouse parses
        # in parallel (one file is one thread's work).
        cores = usable_cores()
        stores = [store] + ([store.connection() for _ in range(lanes - 1)]
                            if hasattr(store, "connection") else [])
        self.lanes = []
        for n, each in enumerate(stores):
            os.makedirs(os.path.join(directory, f"lane-{n}"), exist_ok=True)
            self.lanes.append(_Lane(each, [os.path.join(directory, f"lane-{n}",
                                                        f"requests-{i}.bin")
                                           for i in range(cores)]))
        # Lanes but the first run on the pool; the caller's thread runs the first.
        self._pool = ThreadPoolExecutor(len(self.lanes) - 1, thread_name_prefix="native") \
            if len(self.lanes) > 1 else None
        self.fallbacks = 0  # chunks decoded in Python because their statement failed
        self.settings = (f"format_schema = {_literal(schema + ':ExportTraceServiceRequest')}, "
                         "input_format_protobuf_oneof_presence = 1")

    def insert(self, requests: list[RawRequest], token: str) -> list[int]:
        """Insert the spans of `requests` that the SQL can store, `CHUNK_SPANS` at most a
        statement, each chunk under `token` and its number; return the indexes of those it
        cannot store (`complex_sql`), for the caller to decode in Python. A chunk whose
        statement fails for any reason but the store being down is returned whole (and
        counted in `fallbacks`), so no request is ever stuck in the spool by this path.
        Chunks are shared among the lanes; each lane inserts its own in order.

        A chunk that falls back is remembered on disk under `token` until `done(token)`, so a
        replay of the same segment after a crash sends it to Python again, where the
        caller's insert deduplicates it, rather than storing it natively a second time.

        A chunk is first inserted whole, guarded: in the usual case, where every request is
        simple, that is the only statement, and the requests are parsed once. Only when the
        guard stops it (nothing is written: the rows reach the table as one block, at the
        end) are the complex requests looked up and the rest inserted."""
        chunks, chunk, spans = [], [], 0
        for i, request in enumerate(requests):
            chunk.append(request)
            spans += request.spans
            if spans >= CHUNK_SPANS or i == len(requests) - 1:
                chunks.append((i + 1 - len(chunk), chunk))
                chunk, spans = [], 0
        fallen = self._fallen(token)
        lanes = self.lanes[:len(chunks)]
        outcomes: list = [None] * len(chunks)

        def run(n: int) -> None:
            for c in range(n, len(chunks), len(lanes)):
                first, chunk = chunks[c]
                if first in fallen:  # a replay: decided on the first try
                    outcomes[c] = range(len(chunk))
                    continue
                try:
                    outcomes[c] = self._insert_chunk(lanes[n], chunk, f"{token}/{first}")
                except Exception as exc:
                    outcomes[c] = exc

        futures = [self._pool.submit(run, n) for n in range(1, len(lanes))]  # none: 1 lane
        run(0)
        for future in futures:
            future.result()
        skipped = []
        for (first, chunk), outcome in zip(chunks, outcomes):
            if isinstance(outcome, Exception):
                if unanswered(self.store) is not None:
                    raise outcome  # the store is down: the caller retries the whole later
                self.fallbacks += 1
                log.error("native insert of %d requests failed, decoding them in Python: %s",
                          len(chunk), outcome)
                self._remember(token, first)
                outcome = range(len(chunk))
            skipped += [first + j for j in outcome]
        return skipped

    def done(self, token: str) -> None:
        """Forget the fallbacks of `token`'s insert: its segment has left the spool."""
        directory = self._fallbacks(token)
        if os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)

    def _fallbacks(self, token: str) -> str:
        name = hashlib.blake2b(token.encode(), digest_size=16).hexdigest()
        return os.path.join(self.directory, "fallbacks", name)

    def _fallen(self, token: str) -> set[int]:
        """The first request of each chunk of `token`'s insert that fell back before."""
        directory = self._fallbacks(token)
        if not os.path.isdir(directory):  # the usual case: one stat a segment
            return set()
        return {int(name) for name in os.listdir(directory) if name.isdigit()}

    def _remember(self, token: str, first: int) -> None:
        """Durably, before the caller inserts the chunk's rows decoded in Python."""
        from .spool import fsync_dir  # spool imports this module

        directory = self._fallbacks(token)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, str(first)), "wb") as f:
            os.fsync(f.fileno())
        fsync_dir(directory)

    def _insert_chunk(self, lane: _Lane, requests: list[RawRequest], token: str) -> list[int]:
        for start, path in enumerate(lane.parts):
            with open(path, "wb") as f:
                f.write(delimited(requests, start, len(lane.parts)))
        try:
            self._insert(lane, [], token, guard=True)
            return []
        except Exception as exc:
            if COMPLEX not in str(exc):
                raise
        found = lane.store.query(f"{complex_sql(lane.path, self.limits)} "
                                 f"SETTINGS {self.settings}")
        skip = sorted(int(i) for i in found["infersight_index"])
        if len(skip) < len(requests):
            self._insert(lane, skip, token)
        return skip

    def _insert(self, lane: _Lane, skip: list[int], token: str, guard: bool = False) -> None:
        """Insert the spans of the requests in the lane's files, but those at `skip`."""
        from .store.chdb import INSERT_SETTINGS_SQL

        select = select_sql(lane.path, "[" + ",".join(map(str, skip)) + "]",
                            self.limits if guard else None)
        lane.store.command(
            f"INSERT INTO {self.store.database}.otel_traces ({', '.join(COLUMNS)}) {select} "
            f"SETTINGS {self.settings}, {INSERT_SETTINGS_SQL}, {_ONE_BLOCK}, "
            "insert_deduplicate = 1, insert_deduplication_token = {token:String}",
            {"token": token})
