"""Synthetic AI spans for load tests and benchmarks (`infersight loadgen`).

    table = generate_spans(1_000_000, start, end, seed=1)   # Arrow, decode.ARROW_SCHEMA layout
    fill_store(store, 10_000_000, start, end)                # a week of data for the dashboard
    payloads = export_requests(table, spans_per_request=500) # serialised OTLP requests
    send_load("localhost:4317", duration_s=60, processes=3)  # sustained load on a collector

One data model, two encodings: spans are generated column by column with numpy (millions per
second, so a 10M-span store fills in about a minute), and the same rows become OTLP requests
with typed attribute values, as the SDK sends them. The spread is the one the dashboard has to
show: features on different models, a snapshot rollout whose newer version is less confident,
rate-limit and server errors, cached and reasoning tokens, a few thousand users.

Load is sent from worker processes, each with its own pool of requests serialised once before
the clock starts, so the generator is not what limits the collector. Three paths: `grpc` (raw
gRPC channel, pre-serialised bytes), `http` (OTLP/HTTP protobuf POSTs) and `otel` (the real
OpenTelemetry `OTLPSpanExporter`, which encodes every batch itself, as an app's exporter does).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infersight import attributes as A
from infersight.pricing import Usage, cost_usd

from .decode import ARROW_SCHEMA
from .demo import FEATURES, NEW_SNAPSHOT, OLD_SNAPSHOT

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Feature:
    name: str
    service: str
    provider: str
    operation: str
    model: str
    weight: float
    prompt_tokens: tuple[int, int]
    completion_tokens: tuple[int, int]
    stream: bool


# The demo's product features (all OpenAI chat), plus an Anthropic one and a classic model.
_CATALOG: tuple[_Feature, ...] = tuple(
    _Feature(f.name, "support-bot", "openai", "chat", f.model, f.weight, f.prompt_tokens,
             f.completion_tokens, f.stream) for f in FEATURES
) + (
    _Feature("contract-qa", "legal-api", "anthropic", "chat", "claude-3-5-haiku", 2,
             (2000, 12000), (100, 600), True),
    _Feature("fraud-score", "risk-engine", "sklearn", "predict", "fraud-gbm", 6, (0, 0), (0, 0),
             False),
)
_SERVED = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
           "o4-mini": "o4-mini-2025-04-16", "claude-3-5-haiku": "claude-3-5-haiku-20241022"}
_TENANTS = 20
_USERS = 5000

# OTLP value type of each attribute whose value is not a string (the SDK sends typed values;
# the collector stores them as text, as the OTel ClickHouse exporter does).
_INT_KEYS = {A.INPUT_TOKENS, A.OUTPUT_TOKENS, A.CACHE_READ_TOKENS, A.REASONING_TOKENS,
             A.REQUEST_MAX_TOKENS}
_DOUBLE_KEYS = {A.COST, A.CONFIDENCE, A.TIME_TO_FIRST_CHUNK}
_ARRAY_KEYS = {A.FINISH_REASONS}
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> pa.Array:
    """n random ids as lowercase hex, built as one buffer (no Python string per id)."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    chars = np.empty((n, nbytes * 2), np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, n * nbytes * 2 + 1, nbytes * 2, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))


def _prefixed(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(pa.array(numbers), pa.string()),
                                       "")


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _pick(choices: list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(choices, pa.string()).take(pa.array(np.asarray(idx, np.int64)))


def _map(n: int, entries: list[tuple[str, pa.Array, np.ndarray | None]]) -> pa.MapArray:
    """A map<string,string> column from per-key value columns; `mask` leaves a key out."""
    k = len(entries)
    present = np.ones((n, k), bool)
    for j, (_, _, mask) in enumerate(entries):
        if mask is not None:
            present[:, j] = mask
    # Key-major: entry j of row i is at j*n+i.
    values = pa.concat_arrays([v for _, v, _ in entries])
    where = (np.arange(k)[None, :] * n + np.arange(n)[:, None])[present]  # row-major
    keys = pa.array([key for key, _, _ in entries], pa.string()).take(
        pa.array(np.nonzero(present)[1]))
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values.take(pa.array(where)))


def _empty_lists(n: int, value_type: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)),
                                    pa.array([], value_type))


def _prices(model: str) -> tuple[float, float, float] | None:
    """USD per token (input, cached input, output), or None for an unpriced model."""
    full = cost_usd(model, Usage(input=1_000_000))
    if full is None:
        return None
    cached = cost_usd(model, Usage(input=1_000_000, cache_read=1_000_000))
    out = cost_usd(model, Usage(output=1_000_000))
    return full / 1e6, cached / 1e6, out / 1e6


def generate_spans(n: int, start: datetime, end: datetime, seed: int = 0) -> pa.Table:
    """`n` AI spans spread over `[start, end)`, in the collector's `otel_traces` base layout.

    Strings are picked by index from small lists (Arrow `take`), never built per row in numpy.
    """
    rng = np.random.default_rng(seed)
    k = len(_CATALOG)
    weights = np.array([f.weight for f in _CATALOG], float)
    fi = rng.choice(k, size=n, p=weights / weights.sum())
    t0, t1 = (int(t.replace(tzinfo=t.tzinfo or timezone.utc).timestamp() * 1e9)
              for t in (start, end))
    ts = rng.integers(t0, t1, size=n, dtype=np.int64)
    progress = (ts - t0) / max(t1 - t0, 1)

    def per_feature(get) -> np.ndarray:
        return np.array([get(f) for f in _CATALOG])[fi]

    def names(field: str) -> list[str]:
        return [getattr(f, field) for f in _CATALOG]

    llm = per_feature(lambda f: f.operation == "chat")
    stream = per_feature(lambda f: f.stream)
    # gpt-4o-mini is served as two snapshots while the newer one rolls out; it is less confident.
    rolling = per_feature(lambda f: f.model == "gpt-4o-mini")
    newer = rolling & (rng.random(n) < 0.2 + 0.6 * progress)
    served_names = [_SERVED.get(f.model, f.model) for f in _CATALOG] + [OLD_SNAPSHOT, NEW_SNAPSHOT]
    served = np.where(rolling, k + newer, fi)
    # The classic model ships v13 60% of the way through, and v13 drifts.
    later = progress >= 0.6
    version = np.where(llm, served, k + 2 + later)
    confidence = np.where(newer, rng.uniform(0.58, 0.78, n), rng.uniform(0.88, 0.97, n))
    confidence = np.where(llm, confidence,
                          np.where(later, rng.beta(5, 2, n), rng.beta(12, 1.5, n))).round(4)

    roll = rng.random(n)
    rate_limited = llm & (roll < 0.02)
    failed = rate_limited | (roll >= 0.02) & (roll < 0.03)
    ok_llm = llm & ~failed
    inp = rng.integers(per_feature(lambda f: f.prompt_tokens[0]),
                       per_feature(lambda f: f.prompt_tokens[1]) + 1)
    max_out = per_feature(lambda f: f.completion_tokens[1])
    out = rng.integers(per_feature(lambda f: f.completion_tokens[0]), max_out + 1)
    cached = (inp * rng.choice([0.0, 0.0, 0.5], n)).astype(np.int64)
    reasoning = np.where(per_feature(lambda f: f.model.startswith("o")),
                         rng.integers(100, 600, n), 0)
    out = out + reasoning
    cost = np.full(n, np.nan)
    for j, f in enumerate(_CATALOG):
        prices = _prices(f.model) if f.operation == "chat" else None
        if prices is not None:
            sel = fi == j
            p_in, p_cached, p_out = prices
            cost[sel] = ((inp[sel] - cached[sel]) * p_in + cached[sel] * p_cached
                         + out[sel] * p_out)
    priced = ~np.isnan(cost)
    duration = np.where(llm, 0.25 + out * rng.uniform(0.008, 0.02, n), rng.uniform(0.001, 0.01, n))
    duration = np.where(failed, rng.uniform(0.01, 0.3, n), duration)
    user = rng.integers(1, _USERS + 1, n)

    entries: list[tuple[str, pa.Array, np.ndarray | None]] = [
        (A.OPERATION, _pick(names("operation"), fi), None),
        (A.PROVIDER, _pick(names("provider"), fi), None),
        (A.REQUEST_MODEL, _pick(names("model"), fi), None),
        (A.RESPONSE_MODEL, _pick(served_names, served), ok_llm),
        (A.MODEL_VERSION, _pick(served_names + ["v12", "v13"], version), ~failed),
        (A.RESPONSE_ID, pc.binary_join_element_wise("chatcmpl-", _hex_ids(rng, n, 12), ""),
         ok_llm),
        (A.FINISH_REASONS, _pick(['["stop"]'], np.zeros(n, int)), ok_llm),
        (A.REQUEST_MAX_TOKENS, _text(max_out + 200), llm),
        (A.INPUT_TOKENS, _text(inp), ok_llm),
        (A.OUTPUT_TOKENS, _text(out), ok_llm),
        (A.CACHE_READ_TOKENS, _text(cached), ok_llm & (cached > 0)),
        (A.REASONING_TOKENS, _text(reasoning), ok_llm & (reasoning > 0)),
        (A.COST, _text(cost.round(9)), ok_llm & priced),
        (A.COST_SOURCE, _pick([A.COST_UNKNOWN_MODEL, A.COST_FROM_SDK], priced), ok_llm),
        (A.CONFIDENCE, _text(confidence), ~failed),
        (A.CONFIDENCE_METHOD, _pick(["max_proba", "mean_token_prob"], llm), ~failed),
        (A.TIME_TO_FIRST_CHUNK, _text(rng.uniform(0.15, 0.9, n).round(4)), ok_llm & stream),
        (A.FEATURE, _pick(names("name"), fi), None),
        (A.USER, _prefixed("user-", user), llm),
        (A.SESSION, _hex_ids(rng, n, 8), llm),
        (A.TENANT, _prefixed("tenant-", 1 + user * 7919 % _TENANTS), None),  # a user's own
        (A.ERROR_TYPE, _pick(["InternalServerError", "RateLimitError"], rate_limited), failed),
    ]
    zeros = np.zeros(n, int)
    service = _pick(names("service"), fi)
    resource = _map(n, [
        ("service.name", service, None),
        ("telemetry.sdk.language", _pick(["python"], zeros), None),
        ("telemetry.sdk.name", _pick(["opentelemetry"], zeros), None),
        ("deployment.environment.name", _pick(["production"], zeros), None),
    ])
    span_name = pc.binary_join_element_wise(_pick(names("operation"), fi),
                                            _pick(names("model"), fi), " ")
    parents = pc.if_else(pa.array(rng.random(n) < 0.7), _hex_ids(rng, n, 8), "")
    empty_str_lists = _empty_lists(n, pa.string())
    empty_map_lists = _empty_lists(n, ARROW_SCHEMA.field("Events.Attributes").type.value_type)
    columns = {
        "Timestamp": pa.array(ts, pa.timestamp("ns")),
        "TraceId": _hex_ids(rng, n, 16),
        "SpanId": _hex_ids(rng, n, 8),
        "ParentSpanId": parents,
        "TraceState": _pick([""], zeros),
        "SpanName": span_name,
        "SpanKind": _pick(["Client"], zeros),
        "ServiceName": service,
        "ResourceAttributes": resource,
        "ScopeName": _pick(["infersight"], zeros),
        "ScopeVersion": _pick(["0.1.0"], zeros),
        "SpanAttributes": _map(n, entries),
        "Duration": pa.array((duration * 1e9).astype(np.uint64)),
        "StatusCode": _pick(["Unset", "Error"], failed),
        "StatusMessage": _pick(["", "Internal server error", "Rate limit reached"],
                               failed.astype(int) + rate_limited),
        "Events.Timestamp": _empty_lists(n, pa.timestamp("ns")),
        "Events.Name": empty_str_lists,
        "Events.Attributes": empty_map_lists,
        "Links.TraceId": empty_str_lists,
        "Links.SpanId": empty_str_lists,
        "Links.TraceState": empty_str_lists,
        "Links.Attributes": empty_map_lists,
    }
    return pa.Table.from_pydict(columns, schema=ARROW_SCHEMA)


def iter_span_batches(n: int, start: datetime, end: datetime, seed: int = 0,
                      batch_rows: int = 1_000_000) -> Iterator[pa.Table]:
    """`generate_spans` in batches of at most `batch_rows`, each with its own seed."""
    for i, first in enumerate(range(0, n, batch_rows)):
        yield generate_spans(min(batch_rows, n - first), start, end, seed * 100_003 + i)


def fill_store(store, n: int, start: datetime, end: datetime, seed: int = 0,
               batch_rows: int = 1_000_000) -> float:
    """Insert `n` generated spans; returns the seconds spent inserting (generation excluded)."""
    from .store import insert_spans

    inserting = 0.0
    for batch in iter_span_batches(n, start, end, seed, batch_rows):
        t = time.perf_counter()
        insert_spans(store, batch)
        inserting += time.perf_counter() - t
    return inserting


# ---- OTLP encoding ------------------------------------------------------------------------

def _set_value(any_value, key: str, text: str) -> None:
    if key in _INT_KEYS:
        any_value.int_value = int(text)
    elif key in _DOUBLE_KEYS:
        any_value.double_value = float(text)
    elif key in _ARRAY_KEYS:
        for item in json.loads(text):
            any_value.array_value.values.add().string_value = item
    else:
        any_value.string_value = text


def _request(rows: dict[str, list], ts: list[int]):
    """One ExportTraceServiceRequest: a ResourceSpans per service, typed attribute values."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    scopes = {}
    for i in range(len(ts)):
        service = rows["ServiceName"][i]
        scope = scopes.get(service)
        if scope is None:
            rs = request.resource_spans.add()
            for key, text in rows["ResourceAttributes"][i]:
                kv = rs.resource.attributes.add(key=key)
                kv.value.string_value = text
            scope = scopes[service] = rs.scope_spans.add()
            scope.scope.name, scope.scope.version = rows["ScopeName"][i], rows["ScopeVersion"][i]
        span = scope.spans.add(
            trace_id=bytes.fromhex(rows["TraceId"][i]), span_id=bytes.fromhex(rows["SpanId"][i]),
            parent_span_id=bytes.fromhex(rows["ParentSpanId"][i]), name=rows["SpanName"][i],
            kind=3,  # SPAN_KIND_CLIENT
            start_time_unix_nano=ts[i], end_time_unix_nano=ts[i] + rows["Duration"][i])
        if rows["StatusCode"][i] == "Error":
            span.status.code = 2
            span.status.message = rows["StatusMessage"][i]
        for key, text in rows["SpanAttributes"][i]:
            _set_value(span.attributes.add(key=key).value, key, text)
    return request


def export_requests(table: pa.Table, spans_per_request: int = 500) -> list[bytes]:
    """The rows of `table` as serialised OTLP ExportTraceServiceRequests."""
    out = []
    for first in range(0, table.num_rows, spans_per_request):
        part = table.slice(first, spans_per_request)
        rows = {name: part.column(name).to_pylist() for name in (
            "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "TraceId", "SpanId",
            "ParentSpanId", "SpanName", "Duration", "StatusCode", "StatusMessage",
            "SpanAttributes")}
        ts = part.column("Timestamp").cast(pa.int64()).to_pylist()
        out.append(_request(rows, ts).SerializeToString())
    return out


# ---- load -----------------------------------------------------------------------------------

@dataclass
class LoadResult:
    protocol: str
    processes: int
    seconds: float
    sent_spans: int
    acked_spans: int
    rejected_spans: int
    refused_requests: int  # the collector said "retry later" (UNAVAILABLE / 429 / 503)
    failed_requests: int
    client_cpu_s: float

    @property
    def acked_per_s(self) -> float:
        return self.acked_spans / self.seconds if self.seconds else 0.0


def id_offsets(payload: bytes) -> np.ndarray:
    """Byte offsets of the last 4 bytes of every trace id and span id in a serialised request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    offsets, pos = [], 0
    for rs in ExportTraceServiceRequest.FromString(payload).resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:  # serialised in this order, so one forward scan finds them
                for ident in (span.trace_id, span.span_id):
                    pos = payload.index(ident, pos) + len(ident)
                    offsets.append(pos - 4)
    return np.asarray(offsets, np.int64)


def with_fresh_ids(payload: bytes, offsets: np.ndarray, counter: int) -> bytes:
    """`payload` with `counter` written into every trace and span id: a resent request is new
    spans, not a retry that the collector's deduplication would drop."""
    data = np.frombuffer(payload, np.uint8).copy()
    data[offsets[:, None] + np.arange(4)] = np.frombuffer(
        (counter & 0xFFFFFFFF).to_bytes(4, "big"), np.uint8)
    return data.tobytes()


def _bytes_source(table: pa.Table, spans_per_request: int):
    payloads = export_requests(table, spans_per_request)
    offsets = [id_offsets(p) for p in payloads]
    return len(payloads), lambda k, counter: with_fresh_ids(payloads[k], offsets[k], counter)


def _grpc_sender(endpoint: str):
    """Raw gRPC channel; up to 4 requests in flight so the worker never idles on an ack."""
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    target = endpoint.split("://", 1)[-1]
    channel = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    grpc.channel_ready_future(channel).result(timeout=30)
    export = channel.unary_unary(EXPORT_METHOD, request_serializer=None,
                                 response_deserializer=ExportTraceServiceResponse.FromString)

    def send(payload: bytes):
        """Start one export; the returned callable waits and gives (ok, rejected, refused)."""
        future = export.future(payload, timeout=120)

        def wait() -> tuple[bool, int, bool]:
            try:
                response = future.result()
            except grpc.RpcError as exc:
                return False, 0, exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                                grpc.StatusCode.RESOURCE_EXHAUSTED)
            return True, response.partial_success.rejected_spans, False
        return wait

    return send, 4


def _http_sender(endpoint: str):
    """OTLP/HTTP protobuf on one keep-alive connection, one request at a time."""
    import http.client
    from urllib.parse import urlsplit

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    conn = http.client.HTTPConnection(url.hostname, url.port or 4318, timeout=120)
    path = url.path if url.path not in ("", "/") else "/v1/traces"

    def send(payload: bytes):
        conn.request("POST", path, payload, {"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        body = response.read()

        def wait() -> tuple[bool, int, bool]:
            if response.status != 200:
                return False, 0, response.status in (429, 503)
            rejected = ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans
            return True, rejected, False
        return wait

    return send, 1


def _otel_source(table: pa.Table, spans_per_request: int):
    """Batches of ReadableSpans for the OTel exporter, made anew per send with fresh ids (the
    exporter encodes every batch itself, as in an app)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    scope = InstrumentationScope("infersight", "0.1.0")
    resources: dict[str, Resource] = {}
    spans = []
    ts = table.column("Timestamp").cast(pa.int64()).to_pylist()
    for row, start in zip(table.to_pylist(), ts):
        service = row["ServiceName"]
        if service not in resources:
            resources[service] = Resource(dict(row["ResourceAttributes"]))
        spans.append((int(row["TraceId"], 16), int(row["SpanId"], 16), dict(
            name=row["SpanName"], kind=SpanKind.CLIENT, resource=resources[service],
            instrumentation_scope=scope,
            attributes={key: _typed(key, text) for key, text in row["SpanAttributes"]},
            start_time=start, end_time=start + row["Duration"],
            status=Status(StatusCode.ERROR if row["StatusCode"] == "Error" else StatusCode.UNSET))))
    batches = [spans[i:i + spans_per_request] for i in range(0, len(spans), spans_per_request)]

    def make(k: int, counter: int) -> list:
        return [ReadableSpan(context=SpanContext(trace ^ counter, span ^ counter, False,
                                                 TraceFlags(1)), **kw)
                for trace, span, kw in batches[k]]

    return len(batches), make


def _otel_sender(endpoint: str):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)

    def send(batch: list):
        ok = exporter.export(batch) == SpanExportResult.SUCCESS
        return lambda: (ok, 0, False)

    return send, 1


def _typed(key: str, text: str):
    if key in _INT_KEYS:
        return int(text)
    if key in _DOUBLE_KEYS:
        return float(text)
    if key in _ARRAY_KEYS:
        return tuple(json.loads(text))
    return text


def _worker(protocol: str, endpoint: str, index: int, processes: int, seed: int,
            pool_requests: int, spans_per_request: int, spans_per_s: float, max_spans: int,
            spread_s: float, ready, go, deadline_box, results) -> None:
    now = datetime.now(timezone.utc)
    table = generate_spans(pool_requests * spans_per_request,
                           datetime.fromtimestamp(now.timestamp() - spread_s, timezone.utc), now,
                           seed * 1000 + index)
    source = _otel_source if protocol == "otel" else _bytes_source
    count, make = source(table, spans_per_request)
    sizes = [min(spans_per_request, table.num_rows - k * spans_per_request) for k in range(count)]
    send, concurrency = {"grpc": _grpc_sender, "http": _http_sender,
                         "otel": _otel_sender}[protocol](endpoint)
    ready.release()
    go.wait()
    deadline = deadline_box.value
    cpu0, t0 = time.process_time(), time.monotonic()
    sent = acked = rejected = refused = failed = 0
    inflight: list[tuple[int, object]] = []
    i = 0

    def settle(size: int, wait) -> None:
        nonlocal acked, rejected, refused, failed
        ok, rej, retry_later = wait()
        if ok:
            acked += size - rej
            rejected += rej
        elif retry_later:
            refused += 1
            time.sleep(0.05)
        else:
            failed += 1

    while time.time() < deadline and (not max_spans or sent < max_spans):
        if spans_per_s:
            due = t0 + sent / spans_per_s
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
        k = i % count
        # Every send gets ids no earlier send had: counter i*processes+index is unique per run.
        inflight.append((sizes[k], send(make(k, (i + 1) * processes + index))))
        sent += sizes[k]
        i += 1
        if len(inflight) >= concurrency:
            settle(*inflight.pop(0))
    for item in inflight:
        settle(*item)
    results.put(dict(sent=sent, acked=acked, rejected=rejected, refused=refused, failed=failed,
                     seconds=time.monotonic() - t0, cpu=time.process_time() - cpu0))


# The span start times of a load worker's requests lie in this many seconds before it starts:
# a collector is sent spans seconds after they end (an SDK exports every few seconds), and a
# model call lasts seconds, so a busy collector's inserts each cover about the last minute.
# Spread over an hour (as the load was before), each insert's spans interleave with every
# other insert's in the spans' sort order, a merge switches parts at nearly every row, and
# merging costs about twice as much (6.2 against 2.8 CPU-us a span, 8 inserts of 30k spans).
SPREAD_S = 60.0


def send_load(endpoint: str = "localhost:4317", *, protocol: str = "grpc", duration_s: float = 60.0,
              processes: int = 3, spans_per_request: int = 500, spans_per_s: float = 0.0,
              max_spans: int = 0, pool_requests: int = 64, seed: int = 0,
              spread_s: float = SPREAD_S) -> LoadResult:
    """Send spans from `processes` workers for `duration_s` (or until `max_spans` are sent),
    starting in the `spread_s` seconds before (`SPREAD_S`).

    `spans_per_s` caps the total rate (0: as fast as the collector acknowledges). The clock
    starts once every worker has built its requests; a span counts as acknowledged when the
    collector answered its request with success (minus any `rejected_spans`).
    """
    if protocol not in ("grpc", "http", "otel"):
        raise ValueError(f"protocol must be grpc, http or otel (got {protocol!r})")
    ctx = mp.get_context("spawn")  # grpc does not survive fork
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    deadline_box = ctx.Value("d", 0.0)
    per_process_max = -(-max_spans // processes) if max_spans else 0
    workers = [ctx.Process(target=_worker, daemon=True, args=(
        protocol, endpoint, i, processes, seed, pool_requests, spans_per_request,
        spans_per_s / processes, per_process_max, spread_s, ready, go, deadline_box, results))
        for i in range(processes)]
    for w in workers:
        w.start()
    for _ in workers:
        if not ready.acquire(timeout=300):
            raise RuntimeError("a load worker did not get ready in 300 s (is the endpoint up?)")
    t0 = time.monotonic()
    deadline_box.value = time.time() + (duration_s if duration_s > 0 else 1e9)
    go.set()
    parts = [results.get(timeout=(duration_s if duration_s > 0 else 3600) + 300)
             for _ in workers]
    seconds = time.monotonic() - t0
    for w in workers:
        w.join()
    return LoadResult(
        protocol=protocol, processes=processes, seconds=seconds,
        sent_spans=sum(p["sent"] for p in parts), acked_spans=sum(p["acked"] for p in parts),
        rejected_spans=sum(p["rejected"] for p in parts),
        refused_requests=sum(p["refused"] for p in parts),
        failed_requests=sum(p["failed"] for p in parts),
        client_cpu_s=sum(p["cpu"] for p in parts))
