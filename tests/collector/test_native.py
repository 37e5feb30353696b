"""The native path stores exactly what `decode_request` stores, and hands every span it
cannot store that way back to Python."""

from __future__ import annotations

import itertools
import math
import os
import random
import struct
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from infersight import attributes as A
from infersight_collector import native as native_module
from infersight_collector.decode import DEFAULT_LIMITS, Limits, decode_request
from infersight_collector.loadgen import export_requests, generate_spans
from infersight_collector.native import Native, RawRequest, valid_spans
from infersight_collector.normalize import stored_double
from infersight_collector.store import insert_spans

pytestmark = pytest.mark.skipif(bool(os.environ.get("CLICKHOUSE_URL")),
                                reason="the native path is the embedded store's")

END = datetime.now(timezone.utc)  # recent: rows past the store's retention are dropped
START = END - timedelta(days=1)
START_NS = int(START.timestamp()) * 10 ** 9
_IDS = itertools.count(1)
PRICED = {A.COST: 0.5, A.COST_SOURCE: "sdk"}  # a span normalize leaves alone


def test_doubles_are_written_as_decode_writes_them(native_store):
    """Through the Protobuf reader's text and `double_text`, as the native path stores them."""
    random.seed(3)
    values = [0.0, -0.0, 1.0, 100.0, 1e16, 1e15, 9999999999999998.0, 1e-4, 9.9e-5, 3e-05, 1e-6,
              9.9e-7, 1e21, 9.99e20, 2.0 ** 60,
              -2.5e-07, 1e22, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3, float("inf"),
              float("-inf"), float("nan")]
    for _ in range(20_000):
        values.append(struct.unpack("<d", random.getrandbits(64).to_bytes(8, "little"))[0])
        values.append(random.random() * 10 ** random.randint(-12, 20))
        values.append(float(random.randint(-10 ** 17, 10 ** 17)))
    request, per_span = ExportTraceServiceRequest(), 100
    for first in range(0, len(values), per_span):
        _span(request, {f"d{i}": v for i, v in enumerate(values[first:first + per_span])})
    native = Native(native_store, DEFAULT_LIMITS, str(native_store.native_dir))
    assert native.insert([_raw(request)], "doubles") == []
    rows = native_store.query(f"SELECT SpanAttributes AS a FROM {native_store.database}."
                              f"otel_traces ORDER BY SpanId")["a"]
    written = [dict(row)[f"d{i}"] for row in rows for i in range(len(row) - len(PRICED))]
    assert written == [stored_double(v) for v in values]


def _span(request, attributes=None, **fields):
    """A span with valid ids in a new resource of `request`; returns it."""
    n = next(_IDS)
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "infersight", "1.0"
    span = ss.spans.add(**{"trace_id": n.to_bytes(16, "big"), "span_id": n.to_bytes(8, "big"),
                           "name": f"span {n}",
                           "start_time_unix_nano": START_NS + n,
                           "end_time_unix_nano": START_NS + 500_000_000, **fields})
    for key, value in {**PRICED, **(attributes or {})}.items():
        span.attributes.add(key=key, value=_any(value))
    return span


def _any(value) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    return AnyValue(string_value=value)


def _one(attributes=None, **fields) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    _span(request, attributes, **fields)
    return request


def _simple_requests() -> list[ExportTraceServiceRequest]:
    """Spans of every shape the native path stores itself."""
    out = [_one({"text": "ünïcode 'quoted' \"double\" \\ / \n\ttab", "empty": "",
                 "count": -7, "big": 2 ** 62, "flag": True, "off": False, "cost": 3e-05,
                 "whole": 2.0, "huge": 1e300, "reasons": ["stop", "length"], "none": [],
                 "unset": AnyValue(), "": "empty key"}),
           _one(kind=3, trace_state="k=v"), _one(kind=42), _one(kind=-1),
           _one({A.INPUT_TOKENS: 5, A.OUTPUT_TOKENS: 7, A.COST: 0.0}),  # priced by its tracer
           _one(end_time_unix_nano=START_NS - 1)]  # ends before it starts: duration 0
    parent = _one()
    parent.resource_spans[0].scope_spans[0].spans[0].parent_span_id = b"\x09" * 8
    parent.resource_spans[0].scope_spans[0].spans[0].status.code = 2
    parent.resource_spans[0].scope_spans[0].spans[0].status.message = "boom"
    out.append(parent)
    odd_status = _one()
    odd_status.resource_spans[0].scope_spans[0].spans[0].status.code = 9
    out.append(odd_status)
    no_cost = _one()  # neither cost nor tokens
    del no_cost.resource_spans[0].scope_spans[0].spans[0].attributes[:]
    out.append(no_cost)
    several = ExportTraceServiceRequest()
    for _ in range(3):
        _span(several, {"i": 1})
    several.resource_spans[1].scope_spans.add()  # a scope without spans
    several.resource_spans.add()  # a resource without scopes
    out.append(several)
    return out


def _complex_requests(limits: Limits) -> dict[str, ExportTraceServiceRequest]:
    """One request per reason a span goes back to Python."""
    events = _one()
    events.resource_spans[0].scope_spans[0].spans[0].events.add(name="e", time_unix_nano=1)
    links = _one()
    links.resource_spans[0].scope_spans[0].spans[0].links.add(trace_id=b"\x01" * 16,
                                                               span_id=b"\x02" * 8)
    duplicate = _one({"k": "a"})
    duplicate.resource_spans[0].scope_spans[0].spans[0].attributes.add(
        key="k", value=AnyValue(string_value="b"))
    own_project = _one()
    own_project.resource_spans[0].resource.attributes.add(
        key="infersight.project.id", value=AnyValue(string_value="p"))
    long_resource = _one()
    long_resource.resource_spans[0].resource.attributes.add(
        key="r", value=AnyValue(string_value="x" * (limits.max_value_chars + 1)))
    unpriced = _one()
    span = unpriced.resource_spans[0].scope_spans[0].spans[0]
    del span.attributes[:]
    span.attributes.add(key=A.INPUT_TOKENS, value=AnyValue(int_value=3))
    cost_only = _one()
    del cost_only.resource_spans[0].scope_spans[0].spans[0].attributes[1:]  # no cost source
    return {
        "events": events, "links": links, "duplicate key": duplicate,
        "resource names a project": own_project, "long resource value": long_resource,
        "tokens to price": unpriced, "cost without a source": cost_only,
        "long value": _one({"v": "x" * (limits.max_value_chars + 1)}),
        "long key": _one({"k" * (limits.max_key_chars + 1): "v"}),
        "many attributes": _one({f"a{i}": i for i in range(limits.max_attributes)}),
        "long name": _one(name="n" * (limits.max_value_chars + 1)),
        "long status": _one(status={"message": "m" * (limits.max_value_chars + 1)}),
        "foreign convention": _one({"llm.usage.prompt_tokens": 3}),
        "map value": _one({"m": AnyValue(kvlist_value=KeyValueList(values=[
            KeyValue(key="a", value=AnyValue(int_value=1))]))}),
        "bytes value": _one({"b": AnyValue(bytes_value=b"\x00\x01")}),
        "array of numbers": _one({"a": [1, 2]}),
        "nested array": _one({"a": [["x"]]}),
        "array of escaped strings": _one({"a": ["say \"hi\""]}),
        "array of non-ASCII strings": _one({"a": ["é"]}),
        "array with a slash": _one({"a": ["a/b"]}),
        "long array": _one({"a": ["x" * (limits.max_value_chars // 2)] * 3}),
    }


def _raw(request: ExportTraceServiceRequest, project: str = "") -> RawRequest:
    return RawRequest(request.SerializeToString(), project, valid_spans(request))


def _rows(store) -> int:
    """Rows in `otel_traces`, duplicates included (`_stored` keys them by span id)."""
    return int(store.query(f"SELECT count() AS n FROM {store.database}.otel_traces")["n"][0])


def _stored(store) -> dict[str, dict]:
    frame = store.query(f"SELECT * "
                        f"FROM {store.database}.otel_traces ORDER BY SpanId")
    rows = {}
    for row in frame.to_dict("records"):
        for key, value in row.items():
            if isinstance(value, dict):
                row[key] = sorted(value.items())
            elif hasattr(value, "tolist"):
                row[key] = value.tolist()
            elif isinstance(value, float) and math.isnan(value):
                row[key] = None  # NaN != NaN
        rows[row["SpanId"]] = row
    return rows


def _differences(ours: dict, theirs: dict) -> list:
    """(span id, column, native's value, decode's value) wherever the two differ."""
    assert ours.keys() == theirs.keys()
    return [(span, column, value, theirs[span][column]) for span, row in ours.items()
            for column, value in row.items() if value != theirs[span][column]]


def _both_ways(store, requests: list[RawRequest], limits: Limits = DEFAULT_LIMITS):
    """(rows the native path stored, rows decode_request's batches stored, the indexes the
    native path handed back)."""
    native = Native(store, limits, str(store.native_dir))
    skip = native.insert(requests, "native")
    ours = _stored(store)
    store.command(f"TRUNCATE TABLE {store.database}.otel_traces")
    for i, r in enumerate(requests):
        if i not in skip:
            decoded = decode_request(ExportTraceServiceRequest.FromString(r.payload), limits,
                                     r.project or None)
            insert_spans(store, decoded.batch)
    return ours, _stored(store), skip


@pytest.fixture
def native_store(store, tmp_path):
    store.native_dir = tmp_path
    return store


def test_simple_spans_are_stored_as_decode_stores_them(native_store):
    requests = [_raw(r) for r in _simple_requests()]
    ours, theirs, skip = _both_ways(native_store, requests)
    assert skip == []
    assert len(ours) == sum(r.spans for r in requests) == len(theirs)
    assert _differences(ours, theirs) == []


def test_load_generator_spans_with_a_project_are_stored_as_decode_stores_them(native_store):
    payloads = export_requests(generate_spans(6000, START, END, seed=11), 500)
    requests = [RawRequest(p, project, 500)
                for p, project in zip(payloads, ["", "acme", "b'c"] * 4)]
    # One the SQL cannot store, among them: the guarded insert stops, writing nothing.
    requests.insert(5, _raw(_one({"llm.usage.prompt_tokens": 3})))
    ours, theirs, skip = _both_ways(native_store, requests)
    assert skip == [5]
    assert len(ours) == 6000
    assert _differences(ours, theirs) == []
    assert {row["ProjectId"] for row in ours.values()} == {"", "acme", "b'c"}


@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, Limits(max_value_chars=40, max_key_chars=30,
                                                           max_attributes=12)])
def test_every_span_native_cannot_store_goes_back_to_python(native_store, limits, monkeypatch):
    monkeypatch.setattr(native_module, "CHUNK_SPANS", 2)  # indexes hold across statements
    cases = _complex_requests(limits)
    simple = _simple_requests()[1:]  # the first has keys and values past the small limits
    requests = [_raw(r) for r in cases.values()] + [_raw(r) for r in simple]
    ours, theirs, skip = _both_ways(native_store, requests, limits)
    missed = [name for i, name in enumerate(cases) if i not in skip]
    assert missed == []
    assert skip == list(range(len(cases)))
    assert _differences(ours, theirs) == []


def test_a_request_token_follows_its_bytes_and_project():
    payload = _one().SerializeToString()
    token = RawRequest(payload, "p1", 1).token()
    assert token == RawRequest(bytes(payload), "p1", 1).token()
    others = {RawRequest(payload, "p2", 1).token(), RawRequest(payload, "", 1).token(),
              RawRequest(payload + b"\0", "p1", 1).token(),
              RawRequest(payload[:-1], "p1", 1).token()}
    assert token not in others and len(others) == 4
    assert token.startswith("r") and len(token) == 33  # 128 bits in hex


def test_the_same_token_inserts_once(native_store):
    native = Native(native_store, DEFAULT_LIMITS, str(native_store.native_dir))
    requests = [_raw(_one()), _raw(_one())]
    for _ in range(2):
        assert native.insert(requests, "same token") == []
    assert len(_stored(native_store)) == 2


def test_chunks_are_shared_between_two_connections_and_stored_once(native_store,
                                                                     monkeypatch):
    monkeypatch.setattr(native_module, "CHUNK_SPANS", 2)
    native = Native(native_store, DEFAULT_LIMITS, str(native_store.native_dir), lanes=2)
    assert [lane.store is native_store for lane in native.lanes] == [True, False]
    requests = [_raw(_one()) for _ in range(9)]  # five chunks: three on one lane, two on the other
    for _ in range(2):  # the second time, every chunk is a duplicate by its token
        assert native.insert(requests, "lanes") == []
    assert len(_stored(native_store)) == 9
    for lane in native.lanes:
        assert sum(os.path.getsize(part) for part in lane.parts) > 0


def test_spans_with_invalid_ids_are_left_to_python():
    assert valid_spans(_one()) == 1
    for bad in (dict(span_id=b"\0" * 8), dict(trace_id=b"\x01" * 15),
                dict(parent_span_id=b"\x01" * 3), dict(end_time_unix_nano=1 << 63)):
        request = _one()
        for key, value in bad.items():
            setattr(request.resource_spans[0].scope_spans[0].spans[0], key, value)
        assert valid_spans(request) is None, bad


@pytest.fixture
def native_collector(native_store, tmp_path):
    """The OTLP/gRPC collector as `infersight collector --insert-lanes 2` runs it on the
    embedded store: spool, native decode. Yields (channel, pipeline, spool directory)."""
    import grpc

    from infersight_collector.otlp_grpc import create_server
    from infersight_collector.pipeline import Pipeline
    from infersight_collector.spool import Spool

    spool = Spool(str(tmp_path / "spool"), 1 << 30)
    native = Native(native_store, DEFAULT_LIMITS, str(tmp_path / "spool" / "native"), lanes=2)
    pipeline = Pipeline(native_store, spool=spool, native=native, insert_interval_s=0.05).start()
    server, port = create_server(pipeline, "127.0.0.1", 0)
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, pipeline
    server.stop(None)
    pipeline.stop()


def test_the_collector_stores_what_decode_stores_through_either_path(native_collector):
    from test_otlp_grpc_spec import call

    channel, pipeline = native_collector
    complex_ones = list(_complex_requests(DEFAULT_LIMITS).values())
    invalid = _one()
    _span(invalid).span_id = b"\0" * 8  # a second span, rejected alone
    requests = _simple_requests() + complex_ones + [invalid]
    responses = [call(channel, r.SerializeToString()) for r in requests]
    assert [r.partial_success.rejected_spans for r in responses] == [0] * (len(requests) - 1) + [1]
    assert pipeline.flush(30)
    ours = _stored(pipeline.store)
    pipeline.store.command(f"TRUNCATE TABLE {pipeline.store.database}.otel_traces")
    for r in requests:
        insert_spans(pipeline.store, decode_request(r).batch)
    theirs = _stored(pipeline.store)
    assert len(ours) == sum(len(ss.spans) for r in requests for rs in r.resource_spans
                            for ss in rs.scope_spans) - 1
    assert _differences(ours, theirs) == []
    assert pipeline.native.fallbacks == 0
    assert pipeline.native_spans == sum(valid_spans(r) for r in _simple_requests())
    # A re-sent request is acknowledged, not stored twice.
    call(channel, requests[0].SerializeToString())
    assert pipeline.flush(30)
    assert pipeline.duplicate_requests == 1


def _pipeline(store, directory, native=None):
    from infersight_collector.pipeline import Pipeline
    from infersight_collector.spool import Spool

    native = native or Native(store, DEFAULT_LIMITS, str(directory / "native"))
    return Pipeline(store, spool=Spool(str(directory / "spool"), 1 << 24), native=native,
                    insert_interval_s=0.05)


def _restart(store, directory, native) -> None:
    """A collector restarted on the spool in `directory`: it replays every segment left
    there, and stops once the spool is empty."""
    pipeline = _pipeline(store, directory, native).start()
    try:
        assert pipeline.flush(30)
        assert pipeline.spool.records == 0
    finally:
        pipeline.stop()


def _spooled(directory, raw: tuple[RawRequest, ...]):
    """A spool in `directory` holding one group: `raw` and a decoded span; the record."""
    from infersight_collector.pipeline import group_token
    from infersight_collector.spool import Record, Spool

    decoded = decode_request(_one()).batch
    tokens = tuple(r.token() for r in raw) + ("decoded",)
    record = Record(group_token(tokens), decoded, tokens, raw)
    spool = Spool(str(directory / "spool"), 1 << 24)
    spool.append([record])
    spool.close()
    return record


def test_raw_requests_survive_the_spool_and_a_crash_replays_them_once(native_store, tmp_path):
    """A group of raw requests and a decoded batch reached the store, but the collector
    died before deleting the segment: on start it is inserted again, and nothing twice."""
    from infersight_collector.pipeline import segment_token
    from infersight_collector.spool import Spool

    raw = tuple(_raw(r, project) for r, project in zip(_simple_requests()[:3], ["", "p", ""]))
    record = _spooled(tmp_path, raw)
    decoded, tokens = record.batch, record.requests
    (back,) = list(Spool(str(tmp_path / "spool"), 1 << 24))  # read from disk
    assert back.raw == raw and back.requests == tokens and back.batch.equals(decoded)
    native = Native(native_store, DEFAULT_LIMITS, str(tmp_path / "native"))
    token = segment_token([record])
    native.insert(list(raw), token + "/native")
    insert_spans(native_store, decoded, token)
    before = _stored(native_store)
    _restart(native_store, tmp_path, native)
    assert _stored(native_store) == before
    assert len(before) == _rows(native_store) == sum(r.spans for r in raw) + 1


def test_a_chunk_that_fell_back_is_replayed_in_python_once(native_store, tmp_path,
                                                         monkeypatch):
    """A chunk's statement failed for a passing reason (injected: chDB does not fail on
    cue) and went to Python; the collector died before deleting the segment. On replay the
    statement would succeed, so without the remembered fallback the chunk would be stored
    natively beside its Python rows."""
    from infersight_collector.pipeline import segment_token

    monkeypatch.setattr(native_module, "CHUNK_SPANS", 1)  # a statement per request
    raw = tuple(_raw(r) for r in _simple_requests()[:3])
    record = _spooled(tmp_path, raw)
    decoded = record.batch
    native = Native(native_store, DEFAULT_LIMITS, str(tmp_path / "native"))
    insert_chunk, calls, failed = Native._insert_chunk, [], []

    def passing_failure(self, lane, requests, token):
        calls.append(token)
        if not failed:
            failed.append(token)
            raise RuntimeError("injected: a statement that fails once")
        return insert_chunk(self, lane, requests, token)

    monkeypatch.setattr(Native, "_insert_chunk", passing_failure)
    first = _pipeline(native_store, tmp_path, native)  # its first try, then the crash
    assert first._insert(segment_token([record]), decoded, raw) is None
    assert native.fallbacks == 1
    expected = sum(r.spans for r in raw) + 1
    assert _rows(native_store) == expected
    first.spool.close()
    calls.clear()
    _restart(native_store, tmp_path, native)
    assert _rows(native_store) == expected
    assert len(calls) == 2  # the chunk that fell back was not tried again
    assert native._fallen(segment_token([record]) + "/native") == set()  # forgotten


def test_a_failing_native_statement_falls_back_to_python(native_store, tmp_path):
    """Whatever makes the SQL fail (here its protobuf schema is damaged), the spooled
    requests are decoded in Python and stored, not left in the spool."""
    pipeline = _pipeline(native_store, tmp_path)
    with open(tmp_path / "native" / "otlp.proto", "w") as f:
        f.write("not a schema")
    requests = [_raw(r) for r in _simple_requests()]
    pipeline.start()
    try:
        for r in requests:
            pipeline.submit(r).result(10)
        assert pipeline.flush(30)
    finally:
        pipeline.stop()
    assert pipeline.native.fallbacks >= 1 and pipeline.native_spans == 0
    assert len(_stored(native_store)) == sum(r.spans for r in requests)


class GoneStore:
    """The real store, made to refuse every statement while `down` is set: chDB is embedded
    and cannot be stopped on its own, so this stands in for a server that went away."""

    def __init__(self, store):
        self._store, self.database, self.down = store, store.database, True

    def command(self, sql, parameters=None):
        self._check()
        return self._store.command(sql, parameters)

    def query(self, sql, parameters=None):
        self._check()
        return self._store.query(sql, parameters)

    def _check(self):
        if self.down:
            raise ConnectionError("connection refused (fault injected by the test)")


def test_a_statement_that_fails_because_the_store_is_gone_is_retried_not_decoded(
        native_store, tmp_path):
    """A store that answers nothing is not a reason to decode in Python: the insert raises,
    so the caller keeps the requests and retries them later, natively."""
    gone = GoneStore(native_store)
    native = Native(gone, DEFAULT_LIMITS, str(tmp_path))
    requests = [_raw(r) for r in _simple_requests()]
    with pytest.raises(ConnectionError):
        native.insert(requests, "t")
    assert native.fallbacks == 0 and native._fallen("t") == set()
    gone.down = False
    assert native.insert(requests, "t") == []
    assert native.fallbacks == 0
    assert len(_stored(native_store)) == sum(r.spans for r in requests)


def test_a_request_that_breaks_its_statement_costs_only_its_chunk(native_store, tmp_path,
                                                                   monkeypatch):
    """A request upb accepts but chDB's reader refuses (here it carries our project field as
    a number) fails its statement: that chunk is decoded in Python, the others natively, and
    nothing is stored twice."""
    monkeypatch.setattr(native_module, "CHUNK_SPANS", 1)  # a statement per request
    hostile = _one().SerializeToString() + bytes([0xC0, 0x3E, 0x07])  # field 1000, varint 7
    requests = [_raw(_one()), RawRequest(hostile, "", 1), _raw(_one())]
    native = Native(native_store, DEFAULT_LIMITS, str(tmp_path))
    assert native.insert(requests, "t") == [1]
    assert native.fallbacks == 1
    assert len(_stored(native_store)) == 2
