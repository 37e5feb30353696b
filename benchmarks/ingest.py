"""Collector ingest: spans per second from the wire into the store, and where the time goes.

Baselines measured in the same run, on the same pre-serialised 500-span requests:
- parse only (protobuf, upb) and decode (parse + `decode_request` to an Arrow batch), one core;
- chDB insert alone, of the decoded batches (group-committed as the writer does);
- the collector's inserter on the same requests kept as received: chDB parses them and builds
  the rows in SQL, then inserts (`infersight_collector.native`, what the collector does with
  the embedded store), and the same statement taken apart stage by stage (`_inserter_stages`).
Then `infersight collector` runs in its own process on a fresh chDB directory and load workers
(`infersight_collector.loadgen.send_load`, separate processes) send for the set duration over
raw gRPC (pre-serialised bytes), OTLP/HTTP when the collector has it, and the OpenTelemetry SDK's
own `OTLPSpanExporter`. A span counts as accepted when its request is acknowledged, which the
collector does once the span is fsynced in its spool; it is queryable once the collector has
inserted it (its `infersight_written_spans` gauge). Queryable spans per second = acknowledged
spans / (load time + the time until all of them were in the store). The CPU and memory are the
collector's with its decode workers; memory is their summed PSS (shared library pages
counted once, not once per process). After the run the store is counted to check that every
acknowledged span is there.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import os
import pstats
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa

from infersight_collector import native as native_module
from infersight_collector import usable_cores
from infersight_collector.decode import DEFAULT_LIMITS, decode_request
from infersight_collector.loadgen import SPREAD_S, export_requests, generate_spans, send_load
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from . import report
from ._collector import Collector, collector_flags, count_spans

TARGET_SPANS_PER_S = 100_000
TARGET_RSS_MB = 1024
SPANS_PER_REQUEST = 500
INSERT_REQUESTS = 20  # requests per insert in the chDB baselines: 10k spans


def _rate(fn, payloads: list[bytes], min_seconds: float) -> float:
    """Spans per second of `fn(payload)` over the payloads, repeated for at least min_seconds."""
    spans = 0
    started = time.perf_counter()
    while True:
        for p in payloads:
            fn(p)
            spans += SPANS_PER_REQUEST
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return spans / elapsed


def _decode(payload: bytes) -> pa.Table:
    return decode_request(ExportTraceServiceRequest.FromString(payload)).batch


def _top_functions(payloads: list[bytes], n: int = 6) -> list[str]:
    """The functions decode spends its own time in, as 'share% name'."""
    prof = cProfile.Profile()
    prof.enable()
    for p in payloads:
        _decode(p)
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values()) or 1.0
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [f"{100 * v[2] / total:.0f}% {fn[2]} ({fn[0].rsplit('/', 1)[-1]}:{fn[1]})"
            for fn, v in top]


def _insert_rate(payloads: list[bytes], batch_requests: int) -> float:
    from infersight_collector.store import insert_spans, open_store

    decoded = [_decode(p) for p in payloads]
    batches = [pa.concat_tables(decoded[i:i + batch_requests])
               for i in range(0, len(decoded), batch_requests)]
    with tempfile.TemporaryDirectory(prefix="bench-insert-") as tmp:
        store = open_store(data_dir=tmp)
        insert_spans(store, batches[0])  # warm up: first insert creates the parts directory
        started = time.perf_counter()
        for b in batches:
            insert_spans(store, b)
        elapsed = time.perf_counter() - started
        store.close()
    return sum(b.num_rows for b in batches) / elapsed


def _native_insert_rate(payloads: list[bytes], lanes: int = 1) -> tuple[float, float]:
    """Spans/s of the collector's inserter on requests kept as received: chDB parses them and
    builds the rows in SQL, then inserts them with the views (`native.Native.insert`), in
    statements of `native.CHUNK_SPANS` spans as it inserts a spool segment, `lanes` of them
    at once (`--insert-lanes`); and the CPU-us a span this process spent meanwhile, every
    thread (the merges that ran in the background meanwhile included)."""
    from infersight_collector.native import CHUNK_SPANS, Native, RawRequest
    from infersight_collector.store import open_store

    per = max(CHUNK_SPANS // SPANS_PER_REQUEST, 1)
    raw = [RawRequest(p, "", SPANS_PER_REQUEST) for p in payloads]
    chunks = [raw[i:i + per] for i in range(0, max(len(raw) - per + 1, 1), per)]
    # A segment of `lanes` chunks per insert, so each lane has one.
    segments = [sum(chunks[i:i + lanes], []) for i in range(0, len(chunks), lanes)]
    with tempfile.TemporaryDirectory(prefix="bench-native-") as tmp:
        store = open_store(data_dir=os.path.join(tmp, "store"))
        native = Native(store, DEFAULT_LIMITS, os.path.join(tmp, "native"), lanes=lanes)
        native.insert(segments[0], "warm-up")  # the first insert creates the parts directory
        started, cpu = time.perf_counter(), time.process_time()
        for i, segment in enumerate(segments):
            native.insert(segment, f"segment-{i}")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
    spans = sum(r.spans for segment in segments for r in segment)
    return spans / elapsed, 1e6 * cpu / spans


def _inserter_stages(payloads: list[bytes], repeats: int) -> tuple[list[tuple[str, float]], int]:
    """Where the inserter's statement spends its CPU: the same chunk of `native.CHUNK_SPANS`
    spans through statements that stop at each stage, each into a table of its own, stage
    after stage in each round; cumulative CPU-us a span, median of `repeats`. Deduplication
    is off, or `otel_traces` would drop the repeated block and write nothing; merges are held
    off, or one statement would be charged the merges of the parts the others wrote (the
    inserter's row above counts merges). The stages: ClickHouse's Protobuf reader reading
    every field; the rows built in SQL (maps, hex ids, the guard), into a Null table of those
    columns; a Null table of `otel_traces`'s columns (its DEFAULT columns computed); a
    MergeTree table like it without views (sorted, compressed, written); `otel_traces` itself,
    with its rollup views. Returns the stages and the spans of the chunk."""
    from infersight_collector.native import CHUNK_SPANS, RawRequest
    from infersight_collector.store import open_store

    raw = [RawRequest(p, "", SPANS_PER_REQUEST) for p in payloads]
    chunk = list(itertools.islice(itertools.cycle(raw), max(CHUNK_SPANS // SPANS_PER_REQUEST, 1)))
    spans = sum(r.spans for r in chunk)
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        store = open_store(data_dir=os.path.join(tmp, "store"))
        try:
            costs, written = _run_stages(store, os.path.join(tmp, "native"), chunk, repeats)
        finally:
            store.close()
    assert written == [repeats * spans] * 2, f"the MergeTree stages wrote {written} rows"
    return [(label, statistics.median(each)) for label, each in costs], spans


def _run_stages(store, directory: str, chunk: list, repeats: int):
    """`_inserter_stages` on an open store: each stage's CPU-us a span, a list per stage, and
    the rows the two MergeTree stages hold afterwards."""
    from infersight_collector.native import (_ONE_BLOCK, COLUMNS, STRUCTURE, Native, _from,
                                             delimited, select_sql)
    from infersight_collector.store.chdb import INSERT_SETTINGS_SQL

    native = Native(store, DEFAULT_LIMITS, directory)
    lane = native.lanes[0]
    for start, path in enumerate(lane.parts):
        with open(path, "wb") as f:
            f.write(delimited(chunk, start, len(lane.parts)))
    db, spans = store.database, sum(r.spans for r in chunk)
    types = store.query(f"SELECT name, type FROM system.columns WHERE database = '{db}' "
                        "AND table = 'otel_traces'")
    typed = dict(zip(types["name"], types["type"]))
    store.command(f"CREATE TABLE {db}.stage_reader ({STRUCTURE}) ENGINE = Null")
    store.command(f"CREATE TABLE {db}.stage_rows "
                  f"({', '.join(f'`{c}` {typed[c]}' for c in COLUMNS)}) ENGINE = Null")
    store.command(f"CREATE TABLE {db}.stage_defaults AS {db}.otel_traces ENGINE = Null")
    store.command(f"CREATE TABLE {db}.stage_write AS {db}.otel_traces")
    settings = (f"SETTINGS {native.settings}, {INSERT_SETTINGS_SQL}, {_ONE_BLOCK}, "
                "insert_deduplicate = 0")
    rows = f"({', '.join(COLUMNS)}) {select_sql(lane.path, '[]', DEFAULT_LIMITS)}"
    stages = [
        ("ClickHouse's Protobuf reader, every field",
         f"INSERT INTO {db}.stage_reader SELECT * FROM {_from(lane.path)}"),
        ("+ rows built in SQL (maps, hex ids, the guard)",
         f"INSERT INTO {db}.stage_rows {rows}"),
        ("+ the table's DEFAULT columns", f"INSERT INTO {db}.stage_defaults {rows}"),
        ("+ sort, compress, write (no views)", f"INSERT INTO {db}.stage_write {rows}"),
        ("+ the rollup views: the whole statement", f"INSERT INTO {db}.otel_traces {rows}"),
    ]
    costs: list[tuple[str, list[float]]] = [(label, []) for label, _ in stages]
    store.command("SYSTEM STOP MERGES")
    try:
        for _ in range(repeats):  # stage after stage in each round: drift hits them alike
            for (_, sql), (_, each) in zip(stages, costs):
                cpu = time.process_time()
                store.command(f"{sql} {settings}")
                each.append(1e6 * (time.process_time() - cpu) / spans)
    finally:
        store.command("SYSTEM START MERGES")
    written = [int(store.query(f"SELECT count() AS n FROM {db}.{table}")["n"][0])
               for table in ("stage_write", "otel_traces")]
    return costs, written


def _end_to_end(result: report.Result, protocol: str, seconds: float, processes: int,
                pool: int, decode_rate: float, spread_s: float = SPREAD_S) -> float:
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{protocol}-") as data_dir:
        with Collector(data_dir) as collector:
            endpoint = collector.http_endpoint if protocol == "http" else collector.grpc_endpoint
            cpu0 = collector.cpu_seconds()
            load = send_load(endpoint, protocol=protocol, duration_s=seconds, processes=processes,
                             spans_per_request=SPANS_PER_REQUEST, pool_requests=pool,
                             spread_s=spread_s)
            behind_s = collector.wait_written(load.acked_spans)
            cpu = collector.cpu_seconds() - cpu0
        peak_mb = collector.peak_memory / 2**20
        main_mb = collector.peak_main_rss / 2**20
        stored = count_spans(data_dir)
    label = {"grpc": "OTLP/gRPC (raw channel)", "http": "OTLP/HTTP",
             "otel": "OTLP/gRPC (OTel SDK exporter)"}[protocol]
    rate = load.acked_per_s
    queryable = load.acked_spans / (load.seconds + behind_s)
    if spread_s != SPREAD_S:  # a reference: no verdicts
        label += f", spans spread over {spread_s:g} s"
        result.add(f"{label}: queryable", queryable, "spans/s", baseline="accepted",
                   ratio=queryable / rate)
        result.add(f"{label}: collector CPU", cpu / (load.seconds + behind_s), "cores",
                   baseline=f"{1e6 * cpu / max(load.acked_spans, 1):.1f} CPU-us per span")
        result.notes.append(f"{label}: {stored:,} of {load.acked_spans:,} acknowledged spans "
                            f"in the store {behind_s:.2f} s after the load ended.")
        return rate
    result.add(f"{label}: accepted", rate, "spans/s", baseline="decode, 1 core",
               ratio=rate / decode_rate, target=f">= {TARGET_SPANS_PER_S:,} spans/s",
               ok=rate >= TARGET_SPANS_PER_S)
    result.add(f"{label}: queryable", queryable, "spans/s", baseline="accepted",
               ratio=queryable / rate, target=f">= {TARGET_SPANS_PER_S:,} spans/s",
               ok=queryable >= TARGET_SPANS_PER_S)
    result.add(f"{label}: acknowledged spans found in store",
               100 * stored / max(load.acked_spans, 1), "%",
               baseline=f"{stored:,} stored / {load.acked_spans:,} acked",
               ratio=stored / max(load.acked_spans, 1), target="= 100%",
               ok=stored == load.acked_spans)
    result.add(f"{label}: collector CPU", cpu / (load.seconds + behind_s), "cores",
               baseline=f"{1e6 * cpu / max(load.acked_spans, 1):.1f} CPU-us per span")
    result.add(f"{label}: collector peak memory (PSS, with workers)", peak_mb, "MiB",
               baseline=f"main process peak RSS {main_mb:.0f} MiB", ratio=peak_mb / TARGET_RSS_MB,
               target=f"< {TARGET_RSS_MB} MiB", ok=peak_mb < TARGET_RSS_MB)
    if load.refused_requests or load.failed_requests or load.rejected_spans:
        result.notes.append(f"{label}: {load.refused_requests} requests refused (retry later), "
                            f"{load.failed_requests} failed, {load.rejected_spans} spans "
                            "rejected by partial success.")
    result.notes.append(f"{label}: {load.processes} load processes used "
                        f"{load.client_cpu_s / load.seconds:.2f} cores; {load.acked_spans:,} "
                        f"spans acknowledged in {load.seconds:.1f} s, all of them in the store "
                        f"{behind_s:.2f} s after the load ended.")
    return rate


def run(quick: bool) -> report.Result:
    seconds = 5.0 if quick else 60.0
    otel_seconds = 5.0 if quick else 20.0
    processes = 2
    pool = 8 if quick else 64
    result = report.Result("ingest", "Collector ingest (OTLP -> chDB)", settings={
        "duration": f"{seconds:.0f} s per path ({otel_seconds:.0f} s for the OTel exporter)",
        "load processes": processes, "spans per request": SPANS_PER_REQUEST,
        "distinct requests per process": pool,
        "span start times": f"the last {SPREAD_S:g} s (`loadgen.SPREAD_S`)"})

    now = datetime.now(timezone.utc)
    table = generate_spans(pool * SPANS_PER_REQUEST, now - timedelta(seconds=SPREAD_S), now,
                           seed=7)
    payloads = export_requests(table, SPANS_PER_REQUEST)
    attrs = table.column("SpanAttributes").combine_chunks()
    result.notes.append(f"Requests: {len(payloads[0]) / SPANS_PER_REQUEST:.0f} bytes per span "
                        f"on the wire, {len(attrs.keys) / len(attrs):.1f} attributes per span.")
    stage_s = 1.0 if quick else 5.0
    parse = _rate(ExportTraceServiceRequest.FromString, payloads, stage_s)
    decode = _rate(_decode, payloads, stage_s)
    insert = _insert_rate(payloads * (1 if quick else 4), batch_requests=INSERT_REQUESTS)
    result.add("parse only (protobuf), 1 core", parse, "spans/s")
    result.add("decode (parse + Arrow batch), 1 core", decode, "spans/s",
               baseline="parse only", ratio=decode / parse)
    result.add("chDB insert alone (10k-span batches)", insert, "spans/s",
               baseline="decode, 1 core", ratio=insert / decode)
    native, native_cpu = _native_insert_rate(payloads * (1 if quick else 4))
    result.add("chDB parsing the requests itself + insert (the collector's inserter)", native,
               "spans/s", baseline="decode, 1 core", ratio=native / decode)
    cores = usable_cores()
    ceiling = cores * 1e6 / native_cpu
    # No verdict: a few seconds of inserts leave most merges for later (over 60 statements of
    # spans spread over an hour they added about 4 CPU-us a span; over the last minute,
    # `loadgen.SPREAD_S`, a merge costs half as much), so this is a floor on the sustained
    # cost, for reading the end-to-end rows against.
    result.add("the inserter's CPU a span (parse, rows, write, views; merges that ran)",
               native_cpu, "CPU-us", baseline=f"{cores} cores / that = {ceiling:,.0f} spans/s "
               "at most, receiving aside", ratio=ceiling / TARGET_SPANS_PER_S)
    stages, _ = _inserter_stages(payloads, 3 if quick else 15)
    whole = stages[-1][1]
    for label, cpu in stages:
        result.add(f"inserter, up to: {label}", cpu, "CPU-us",
                   baseline="the whole statement", ratio=cpu / whole)
    result.notes.append(
        "The inserter's stages are one statement's spans through statements that stop at "
        "each stage, into tables of their own (`_inserter_stages`), cumulative, merges held "
        f"off: {cores} cores / the whole statement = {cores * 1e6 / whole:,.0f} spans/s at "
        "most for storing alone, before merges and any CPU for receiving, spooling or the "
        "load generator.")
    two_lanes, _ = _native_insert_rate(payloads * (2 if quick else 8), lanes=2)
    result.add("the same, two statements at once (--insert-lanes 2)", two_lanes, "spans/s",
               baseline="one statement at a time", ratio=two_lanes / native)
    result.notes.append(
        "With the embedded store the collector keeps requests as received and its inserter has "
        "chDB parse them and build the rows in SQL (collector/infersight_collector/native.py), "
        f"{native_module.CHUNK_SPANS:,} spans a statement; the 'decode' and 'chDB insert alone' "
        "rows are the Python path, which the ClickHouse server backend and spans the SQL "
        "cannot store take.")
    result.notes.append("Where decode spends its time (cProfile, own time): "
                        + "; ".join(_top_functions(payloads[:4])) + ".")

    rates = {"parse": parse, "decode": decode, "chDB insert": insert,
             "chDB parses + inserts": native, "the same, 2 lanes": two_lanes}
    paths = ["grpc"] + (["http"] if "--http-port" in collector_flags() else []) + ["otel"]
    if "http" not in paths:
        result.skipped.append("OTLP/HTTP: `infersight collector` has no --http-port yet")
    for protocol in paths:
        secs = otel_seconds if protocol == "otel" else seconds
        try:
            rates[f"end to end ({protocol})"] = _end_to_end(result, protocol, secs, processes,
                                                            pool, decode)
        except Exception as exc:  # one path failing must not hide the others
            result.skipped.append(f"{protocol}: {type(exc).__name__}: {exc}")
    # The same gRPC load with its spans spread over an hour, as the load generator sent them
    # before: merges then switch parts at nearly every row (`loadgen.SPREAD_S`).
    try:
        _end_to_end(result, "grpc", seconds, processes, pool, decode, spread_s=3600.0)
    except Exception as exc:
        result.skipped.append(f"grpc, spread over an hour: {type(exc).__name__}: {exc}")
    result.plot = {"title": "Ingest throughput (spans/s, log scale)", "ylabel": "spans/s",
                   "labels": list(rates), "series": {"spans/s": list(rates.values())},
                   "lines": [(TARGET_SPANS_PER_S, "target 100k spans/s")], "log": True}
    return result


if __name__ == "__main__":
    args = report.parse_args(__doc__.splitlines()[0])
    report.emit(run(args.quick), args.out)
