"""The benchmark harness in seconds: the generators are faithful and no query escapes."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks import queries as query_bench
from benchmarks import report
from benchmarks.report import ROOT
from infersight_collector.decode import ARROW_SCHEMA, decode_request
from infersight_collector.loadgen import (
    export_requests,
    generate_spans,
    id_offsets,
    with_fresh_ids,
)

END = datetime(2026, 11, 23, tzinfo=timezone.utc)
START = END - timedelta(days=7)


def test_generated_spans_survive_the_otlp_round_trip():
    table = generate_spans(600, START, END, seed=3)
    assert table.schema == ARROW_SCHEMA
    decoded = {}
    for payload in export_requests(table, 250):
        batch = decode_request(ExportTraceServiceRequest.FromString(payload)).batch
        decoded.update((row["SpanId"], row) for row in batch.to_pylist())
    assert [decoded[row["SpanId"]] for row in table.to_pylist()] == table.to_pylist()


def test_resent_requests_carry_new_ids():
    payload = export_requests(generate_spans(50, START, END, seed=4))[0]
    offsets = id_offsets(payload)

    def span_ids(p: bytes) -> set[tuple[bytes, bytes]]:
        request = ExportTraceServiceRequest.FromString(p)
        return {(s.trace_id, s.span_id) for rs in request.resource_spans
                for ss in rs.scope_spans for s in ss.spans}

    ids = [span_ids(p) for p in (payload, with_fresh_ids(payload, offsets, 1),
                            with_fresh_ids(payload, offsets, 2))]
    assert all(len(s) == 50 for s in ids)
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])


class _FakeStore:
    database = "infersight"

    def query(self, sql, parameters=None):
        return pd.DataFrame({"TraceId": ["0af7651916cd43dd8448eb211c80319c"]})


def _ingest_bench_prints(spans: int, code: str) -> list[str]:
    """The words `code` prints, run with `ingest` and the `payloads` of `spans` recent
    load-generator spans (500 a request) in a fresh process: chDB opens one directory a
    process, and the suite's store is open here."""
    prelude = ("from datetime import datetime, timedelta, timezone\n"
               "from benchmarks import ingest\n"
               "from infersight_collector.loadgen import export_requests, generate_spans\n"
               "now = datetime.now(timezone.utc)\n"  # recent: older rows are past the retention
               f"payloads = export_requests(generate_spans({spans}, now - timedelta(minutes=1), "
               "now, seed=5), 500)\n"
               + code)
    out = subprocess.run([sys.executable, "-c", prelude], capture_output=True, text=True,
                         cwd=ROOT, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_the_inserter_row_counts_every_span_and_its_cpu():
    """Through the real inserter into a fresh chDB store: a rate and a CPU cost a span in
    microseconds (not seconds, not a request)."""
    printed = _ingest_bench_prints(2000, "print(*ingest._native_insert_rate(payloads))")
    rate, cpu_us = map(float, printed[-2:])
    assert rate > 0
    assert 1 < cpu_us < 10_000  # about 25 here; a unit slip is off by 500 or a million


def test_the_inserter_stages_run_every_statement_and_write_every_span():
    """The inserter's statement taken apart (`ingest._inserter_stages`): every stage's
    statement runs, the MergeTree ones write each span of the chunk once a round (the
    function checks), and each cost is CPU-us a span."""
    spans, *costs = _ingest_bench_prints(
        1000, "stages, spans = ingest._inserter_stages(payloads, 2)\n"
              "print(spans, *(cpu for _, cpu in stages))")[-6:]
    assert int(spans) >= 30_000  # a whole statement's chunk, from two distinct requests
    assert len(costs) == 5 and all(0.1 < float(c) < 10_000 for c in costs)  # about 4 to 20


def test_every_dashboard_query_is_benchmarked():
    calls = list(query_bench._calls(_FakeStore(), START, END, query_bench.discover()))
    assert calls
    assert [(label, reason) for label, fn, reason in calls if fn is None] == []


def test_table_shows_targets_and_skips():
    result = report.Result("demo", "Demo", skipped=["peer: not installed"])
    result.add("rate", 12345.6, "spans/s", baseline="target", ratio=0.12, target=">= 1x", ok=False)
    result.add("nothing", float("nan"), "ms")
    text = report.table([result])
    assert "12,346 spans/s" in text and "MISSED" in text and "n/a" in text
    assert "skipped (demo): peer: not installed" in text


def test_stubbed_sdk_rows_run_the_installed_wrapper(spans):
    """The "provider stubbed" rows of the SDK benchmark call what `instrument()` put on each
    client class, fed the client's own results: each call leaves a span with its tokens."""
    from benchmarks import sdk_overhead as bench

    calls = {**bench.openai_stubbed_calls(), **bench.anthropic_stubbed_calls()}
    spans.clear()  # the spans of capturing each client's results
    for call in calls.values():
        call()

    ended = spans.get_finished_spans()
    assert [s.attributes["gen_ai.provider.name"] for s in ended] == [
        "openai", "openai", "anthropic", "anthropic"]
    assert all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in ended)


def test_an_sdk_overhead_verdict_needs_a_measured_ratio_within_the_target():
    from benchmarks.sdk_overhead import verdict

    assert verdict(1.2, 1.25) and verdict(0.0, 1.25)
    assert not verdict(1.3, 1.25)
    assert not verdict(-0.4, 1.25)  # a negative overhead is noise, not a pass
    assert not verdict(float("nan"), 1.25)


def test_round_ratios_pair_each_rounds_overheads_and_skip_a_floor_lost_in_noise():
    from benchmarks.sdk_overhead import quartiles, round_ratios

    samples = {"bare": [10.0, 12.0, 11.0, 10.0], "floor": [20.0, 22.0, 11.0, 30.0],
               "instrumented": [25.0, 24.0, 15.0, 40.0]}
    # (25-10)/(20-10), (24-12)/(22-12), round 3 dropped (floor not above bare), (40-10)/(30-10)
    assert round_ratios(samples) == [1.2, 1.5, 1.5]
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (1.5, 4.5)


def test_full_collections_are_held_off_in_the_rounds_and_counted_per_way_apart():
    """In a fresh interpreter (a full collection's pace depends on the heap): calls that keep
    what they make get no full collection while held off, then have their full collections
    counted and timed; calls that keep nothing have none."""
    code = """
import gc
from benchmarks.sdk_overhead import _no_full_collections, full_collections
kept, seen = [], []
gc.callbacks.append(lambda phase, info: phase == "stop" and seen.append(info["generation"]))
keep = lambda: kept.append([None])
before = gc.get_threshold()
with _no_full_collections():
    seen.clear()
    for _ in range(200_000):
        keep()
    held = sorted(set(seen))
kept.clear()
rates, costs = full_collections({"keeps": (int, keep), "nothing": (int, lambda: None)},
                                lambda: None, 200_000)
print(held, gc.get_threshold() == before, rates["keeps"] > 0, rates["nothing"],
      len(costs) >= 2 and min(costs) > 0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("]")[0] == "[0, 1"  # the young generations only
    assert out.stdout.split("]")[1].split() == ["True", "True", "0.0", "True"]


@pytest.fixture
def peer_module():
    """The stand-in peer's module; its wrapper is taken off `Completions.create` afterwards."""
    from openai.resources.chat.completions import Completions

    original = Completions.__dict__["create"]
    yield "tests.benchmarks_smoke.peer_instrumentor"
    Completions.create = original


def test_a_peer_is_checked_then_timed_bare_and_floor_before_it_instruments(peer_module):
    from benchmarks import sdk_overhead as bench

    check = bench._peer_check(peer_module)
    one_round = bench._peer_child(peer_module, calls=3, queue=2048, stubbed=True)

    assert (check["spans"], check["stubbed spans"], check["error"]) == (2, 2, "")
    assert set(one_round) == {"openai sync", "openai stream", "openai sync, provider stubbed",
                              "openai stream, provider stubbed"}
    assert all(set(ways) == {"bare", "floor", "instrumented"} and min(ways.values()) > 0
               for ways in one_round.values())


def test_query_percentiles_are_nearest_rank():
    """p95 of 20 page loads is the 19th fastest, not the slowest (which is p100)."""
    loads = [float(x) for x in range(20, 0, -1)]
    p = query_bench._percentile
    assert (p(loads, 0.95), p(loads, 0.5), p([7.0], 0.95)) == (
        19.0, 10.0, 7.0)


def test_npm_tiktoken_ranks_become_tiktokens_own_file():
    """OpenLIT's tiktoken reads its encodings from a cache the benchmark fills from npm's
    compressed copy: lines of `<char> <first rank> <tokens...>`, not always in rank order."""
    from benchmarks.sdk_overhead import tiktoken_file

    assert tiktoken_file("! 2 Iw== JA==\n! 0 IQ== Ig==\n") == b"IQ== 0\nIg== 1\nIw== 2\nJA== 3\n"
