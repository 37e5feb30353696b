"""Storage: bytes per span on disk, and insert throughput into chDB alone.

Synthetic spans (`loadgen.generate_spans`, a week) go into a fresh chDB store in large Arrow
batches; only the inserts are timed. After `OPTIMIZE ... FINAL` the active parts give bytes
on disk per span, against the same spans' OTLP protobuf size measured in the same run. A second
insert rate uses 500-span batches with a deduplication token each, which is how the collector
writes one request, so the cost of small inserts is visible next to the ceiling.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timedelta, timezone

from infersight_collector.loadgen import export_requests, fill_store, generate_spans
from infersight_collector.decode import content_token
from infersight_collector.store import insert_spans, open_store

from . import report

DAYS = 7


def run(quick: bool) -> report.Result:
    n = 1_000_000 if quick else 10_000_000
    small_batches = 40 if quick else 200
    result = report.Result("storage", "Storage (chDB)", settings={
        "spans": f"{n:,} over {DAYS} days", "insert batches": "500,000 spans (Arrow)",
        "small inserts": f"{small_batches} x 500 spans, each with its dedup token"})
    end = datetime.now(timezone.utc)
    start = end - timedelta(days=DAYS)
    sample = generate_spans(5_000, start, end, seed=99)
    wire = sum(len(p) for p in export_requests(sample, 500)) / sample.num_rows

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as data_dir:
        store = open_store(data_dir=data_dir)
        seconds = fill_store(store, n, start, end, seed=1, batch_rows=500_000)
        bulk_rate = n / seconds
        small = [generate_spans(500, start, end, seed=1000 + i) for i in range(small_batches)]
        t = time.perf_counter()
        for batch in small:
            insert_spans(store, batch, content_token(batch))
        small_rate = 500 * small_batches / (time.perf_counter() - t)
        db = store.database
        store.command(f"OPTIMIZE TABLE {db}.otel_traces FINAL")
        parts = store.query(
            "SELECT sum(rows) AS rows, sum(bytes_on_disk) AS disk, "
            "sum(data_compressed_bytes) AS compressed, "
            "sum(data_uncompressed_bytes) AS uncompressed, count() AS parts "
            "FROM system.parts WHERE active AND database = {db:String} "
            "AND table = 'otel_traces'", {"db": db}).iloc[0]
        columns = store.query(
            "SELECT name, sum(data_compressed_bytes) AS compressed FROM system.columns "
            "WHERE database = {db:String} AND table = 'otel_traces' GROUP BY name "
            "ORDER BY compressed DESC", {"db": db})
        other = store.query(
            "SELECT table, sum(bytes_on_disk) AS disk FROM system.parts WHERE active AND "
            "database = {db:String} AND table != 'otel_traces' GROUP BY table", {"db": db})
        store.close()

    rows = int(parts["rows"])
    per_span = float(parts["disk"]) / rows
    result.add("bytes per span on disk (otel_traces)", per_span, "B", baseline=f"OTLP protobuf "
               f"{wire:.0f} B/span", ratio=per_span / wire)
    result.add("compression (uncompressed / compressed)",
               float(parts["uncompressed"]) / float(parts["compressed"]), "x")
    result.add("chDB insert, 500k-span Arrow batches", bulk_rate, "spans/s")
    result.add("chDB insert, 500-span batches + dedup token", small_rate, "spans/s",
               baseline="500k-span batches", ratio=small_rate / bulk_rate)
    result.notes.append(f"{rows:,} rows in {int(parts['parts'])} active parts.")
    top = columns.head(8)
    result.notes.append("Bytes per span by column (compressed): " + ", ".join(
        f"{r.name} {r.compressed / rows:.0f}" for r in top.itertuples()) + ".")
    if len(other):
        result.notes.append("Other tables on disk: " + ", ".join(
            f"{r.table} {r.disk / 2**20:.1f} MiB" for r in other.itertuples()) + ".")
    result.plot = {"title": f"Bytes per span on disk by column ({rows:,} spans)",
                   "ylabel": "bytes per span", "labels": list(top["name"]),
                   "series": {"compressed": [float(c) / rows for c in top["compressed"]]}}
    return result


if __name__ == "__main__":
    args = report.parse_args(__doc__.splitlines()[0])
    report.emit(run(args.quick), args.out)
