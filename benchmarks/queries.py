"""Dashboard queries over synthetic stores of 1M and 10M spans: p50 / p95 per query and per page.

Every public function of `infersight_dashboard.queries` that takes `(store, start, end, ...)`
is found by inspection and run, so a new query cannot escape the benchmark: one whose extra
required argument this module cannot supply shows up as a MISSED row naming the argument.
A page's load is the query functions its module calls (found in its source), each as often as
the source calls it (the overview's summary of now and of the period before, the degradation
page's histograms of the window, the pinned baseline and the comparison), run one after the
other; a `cost_by` call is charged as the variant its first string literal names (the
overview draws features and models, the cost page month-to-date features). The window is the
whole generated week, the most a page reads.
The baseline, measured in the same run, is the cheapest useful query over the same window
(one `sum` over the AI spans); a query's ratio says how many such scans it costs.
"""

from __future__ import annotations

import inspect
import math
import re
import statistics
from collections import Counter
import tempfile
import time
from datetime import datetime
from pathlib import Path

from infersight_collector.loadgen import fill_store
from infersight_collector.store import open_store
from infersight_collector.store.schema import DATA_TABLES
from infersight_dashboard.filters import time_window

from . import report

TARGET_P95_MS = 300.0
DAYS = 7
# Values for the extra arguments a query may require; a list runs one variant per value.
_COST_BY = ("feature", "model", "version", "user", "tenant")


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile: the value of rank ceil(q n), 1 the smallest (the 19th of
    20 for p95; `int(q n)` as an index read the 20th, the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()  # the first run reads the parts from disk; pages are opened more than once
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(1000 * (time.perf_counter() - t))
    return statistics.median(samples), _percentile(samples, 0.95)


def discover() -> dict[str, inspect.Signature]:
    from infersight_dashboard import queries

    found = {}
    for name, fn in inspect.getmembers(queries, inspect.isfunction):
        if name.startswith("_") or fn.__module__ != queries.__name__:
            continue
        params = list(inspect.signature(fn).parameters)
        if params[:3] == ["store", "start", "end"]:
            found[name] = inspect.signature(fn)
    return found


def page_queries() -> dict[str, Counter]:
    """Per page, how often its source calls each query (a call in a loop or a branch counts
    once: the page's callbacks on one load, a pinned baseline included)."""
    from infersight_dashboard import pages as pages_pkg

    pages = Path(pages_pkg.__file__).parent
    out = {}
    for path in sorted(pages.glob("*.py")):
        if path.name != "__init__.py":
            source = path.read_text()
            names = Counter(re.findall(r"queries\.([a-z_][a-z0-9_]*)\(", source))
            names.pop("cost_by", 0)  # each call as the `by` it passes
            names.update(f"cost_by(by={by})" for by in re.findall(
                r'queries\.cost_by\([^"]*"([a-z]+)"', source))
            out[path.stem] = names
    return out


def _calls(store, start: datetime, end: datetime, signatures: dict[str, inspect.Signature]):
    """(label, zero-argument callable or None, reason) for every query variant."""
    from infersight_dashboard import queries

    trace = store.query(f"SELECT TraceId FROM {store.database}.otel_traces LIMIT 1")["TraceId"][0]
    supplied = {"bucket_seconds": [queries.choose_bucket_seconds(start, end)],
                "by": list(_COST_BY), "dimensions": [("feature", "model")], "trace_id": [trace]}
    for name, sig in sorted(signatures.items()):
        fn = getattr(queries, name)
        required = [p for p in list(sig.parameters.values())[3:]
                    if p.default is inspect.Parameter.empty]
        missing = [p.name for p in required if p.name not in supplied]
        if missing:
            yield name, None, (f"needs argument {', '.join(missing)}; "
                               "supply it in benchmarks/queries.py")
            continue
        variants = [{}]
        for p in required:
            variants = [{**v, p.name: value} for v in variants for value in supplied[p.name]]
        for kwargs in variants:
            label = name + ("" if len(variants) == 1 else
                            "(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()
                                            if len(supplied[k]) > 1) + ")")
            yield label, (lambda fn=fn, kw=kwargs: fn(store, start, end, **kw)), ""


def run(quick: bool) -> report.Result:
    sizes = (200_000, 1_000_000) if quick else (1_000_000, 10_000_000)
    repeats = 5 if quick else 20
    result = report.Result("queries", "Dashboard queries", settings={
        "spans": " and ".join(f"{n:,}" for n in sizes), "window": f"the whole {DAYS} days",
        "runs per query": f"{repeats} after one warm-up", "store": "chDB, typed AI columns"})
    signatures = discover()
    pages = page_queries()
    start, end = time_window(f"{DAYS}d")  # the window the dashboard's 7-day range opens now
    per_size: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as data_dir:
        store = open_store(data_dir=data_dir)
        loaded = 0
        for size in sizes:
            fill_store(store, size - loaded, start, end, seed=size, batch_rows=250_000)
            loaded = size
            for table in DATA_TABLES:  # the store at rest, as background merges leave it
                store.command(f"OPTIMIZE TABLE {store.database}.{table} FINAL")
            base_p50, base_p95 = _time(lambda: store.query(
                f"SELECT sum(CostUsd) FROM {store.database}.otel_traces WHERE "
                "Timestamp >= {s:DateTime64(3, 'UTC')} AND Timestamp < {e:DateTime64(3, 'UTC')} "
                "AND Operation != ''", {"s": start.strftime("%Y-%m-%d %H:%M:%S"),
                                        "e": end.strftime("%Y-%m-%d %H:%M:%S")}), repeats)
            baseline = f"one-column scan {base_p95:.0f} ms"
            p95s, fns = {}, {}
            for label, fn, reason in _calls(store, start, end, signatures):
                if fn is None:
                    result.add(f"{label} @ {size:,}", float("nan"), "ms", target="runs",
                               ok=False, baseline=reason)
                    continue
                fns[label] = fn
                _, p95s[label] = _time(fn, repeats)
            for page, names in pages.items():
                members = [f for label, f in fns.items()
                           for _ in range(names[label] or names[label.split("(")[0]])]
                if not members:
                    continue
                _, p95 = _time(lambda m=members: [f() for f in m], repeats)
                result.add(f"page {page} ({len(members)} queries) p95 @ {size:,}", p95, "ms",
                           baseline=baseline, ratio=p95 / base_p95,
                           target=f"< {TARGET_P95_MS:.0f} ms", ok=p95 < TARGET_P95_MS)
            for label, p95 in p95s.items():
                result.add(f"{label} p95 @ {size:,}", p95, "ms", baseline=baseline,
                           ratio=p95 / base_p95, target=f"< {TARGET_P95_MS:.0f} ms",
                           ok=p95 < TARGET_P95_MS)
            per_size[size] = p95s
        store.close()
    unused = sorted(set(signatures) - {n.split("(")[0] for n in set().union(*pages.values())})
    if unused:
        result.notes.append("Queries no page module calls directly (benchmarked alone): "
                            + ", ".join(unused))
    labels = list(per_size[sizes[-1]])
    result.plot = {"title": "Query p95 (ms) by store size", "ylabel": "p95 ms",
                   "labels": labels,
                   "series": {f"{n:,} spans": [per_size[n].get(x, float("nan")) for x in labels]
                              for n in sizes},
                   "lines": [(TARGET_P95_MS, "target 300 ms")]}
    return result


if __name__ == "__main__":
    args = report.parse_args(__doc__.splitlines()[0])
    report.emit(run(args.quick), args.out)
