"""Results shared by every benchmark: rows, the machine they ran on, the table, the doc, the plots.

A benchmark module builds a `Result` and `emit()`s it as JSON; `python -m benchmarks` gathers
them into one table, `docs/benchmarks.md` and one plot per benchmark in `docs/bench/`. Every
figure is a rate or a ratio against a baseline measured in the same run, because these
machines are shared and noisy; absolute numbers are printed beside it for context only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "bench"
LIBRARIES = ("openai", "anthropic", "opentelemetry-sdk", "grpcio", "protobuf", "chdb", "pyarrow",
             "numpy", "scikit-learn")


@dataclass
class Row:
    metric: str
    value: float
    unit: str
    baseline: str = ""  # what `ratio` divides by, measured in the same run
    ratio: float | None = None
    target: str = ""  # e.g. "<= 1.25x"; empty when there is none
    ok: bool | None = None  # met the target; None when there is no target

    def verdict(self) -> str:
        return "" if self.ok is None else ("ok" if self.ok else "MISSED")


@dataclass
class Result:
    name: str
    title: str
    settings: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "what: why"
    notes: list[str] = field(default_factory=list)
    # {"kind": "bars", "title", "ylabel", "labels": [...], "series": {name: [values]}}
    plot: dict | None = None

    def add(self, metric: str, value: float, unit: str, **kw) -> Row:
        row = Row(metric, float(value), unit, **kw)
        self.rows.append(row)
        return row


def parse_args(description: str) -> argparse.Namespace:
    """The flags every benchmark module takes when run alone (`python -m benchmarks.NAME`)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small settings, a few seconds")
    p.add_argument("--out", help="write the result as JSON here (default: print the table)")
    return p.parse_args()


def emit(result: Result, out: str | None) -> None:
    if out:
        Path(out).write_text(json.dumps(asdict(result), indent=1))
    else:
        print(table([result]))


def load(path: str | Path) -> Result:
    raw = json.loads(Path(path).read_text())
    raw["rows"] = [Row(**r) for r in raw["rows"]]
    return Result(**raw)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _cells(result: Result, row: Row) -> list[str]:
    ratio = "" if row.ratio is None else f"{_fmt(row.ratio)}x"
    return [result.name, row.metric, f"{_fmt(row.value)} {row.unit}".strip(), ratio,
            row.baseline, row.target, row.verdict()]


_HEAD = ["benchmark", "metric", "value", "ratio", "baseline (same run)", "target", ""]


def table(results: list[Result]) -> str:
    """One plain-text table of every row, then what was skipped and why."""
    lines = [_HEAD] + [_cells(r, row) for r in results for row in r.rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEAD))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        out += [f"skipped ({r.name}): {s}" for s in r.skipped]
    return "\n".join(out)


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    versions = []
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))})",
        "memory": f"{mem_gb:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": ", ".join(versions),
        "commit": commit,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def plot(result: Result, path: Path) -> bool:
    """Draw `result.plot` (grouped bars, log scale when values span decades); False if none."""
    spec = result.plot
    if not spec:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, series = spec["labels"], spec["series"]
    fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.6 * len(labels) + 2)), 4.8))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, [v if v == v else 0 for v in values], width, label=name)
    for y, text in spec.get("lines", []):
        ax.axhline(y, color="crimson", linestyle="--", linewidth=1)
        ax.annotate(text, (0, y), xycoords=("axes fraction", "data"), color="crimson",
                    fontsize=8, va="bottom")
    finite = [v for values in series.values() for v in values if v == v and v > 0]
    if spec.get("log") or (finite and max(finite) / min(finite) > 200):
        ax.set_yscale("log")
    many = len(labels) > 4
    ax.set_xticks(range(len(labels)), labels, rotation=35 if many else 0,
                  ha="right" if many else "center", fontsize=7 if len(labels) > 12 else 8)
    ax.set_ylabel(spec.get("ylabel", ""))
    ax.set_title(spec.get("title", result.title), fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _md_table(result: Result) -> list[str]:
    lines = ["| metric | value | ratio | baseline (same run) | target | |",
             "| --- | ---: | ---: | --- | --- | --- |"]
    for row in result.rows:
        cells = _cells(result, row)[1:]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def write_doc(results: list[Result], quick: bool, command: str) -> Path:
    """Write docs/benchmarks.md and docs/bench/<name>.png from this run's results."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kind = ("QUICK run (small settings, for checking the harness; not the published figures)"
            if quick else "full run")
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m benchmarks`); do not edit by hand, run it again.",
        "Every figure is a rate or a ratio against a baseline measured in the same run, because",
        "the machines are shared and noisy; absolute times are for context. No benchmark is a",
        "timed assertion in the tests.",
        "",
        f"**{kind}**, {now}, `{command}`.",
        "",
        "Run it: `make bench` (full settings), `make bench BENCH_QUICK=1` (minutes, to check the",
        "harness), `python -m benchmarks.NAME --quick` for one benchmark. The generators are",
        "reusable: `infersight loadgen --endpoint HOST:4317 --duration 60 --processes 2` loads a",
        "collector, `infersight loadgen --generate 10000000 --data-dir D` fills a store.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in machine().items()]
    for result in results:
        out += ["", f"## {result.title}", ""]
        if result.settings:
            out.append("Settings: " + ", ".join(f"{k} = {v}" for k, v in result.settings.items())
                       + ".")
            out.append("")
        if result.rows:
            out += _md_table(result)
        if plot(result, PLOTS / f"{result.name}.png"):
            out += ["", f"![{result.title}](bench/{result.name}.png)"]
        if result.notes:
            out += [""] + [f"- {n}" for n in result.notes]
        if result.skipped:
            out += ["", "Skipped:"] + [f"- {s}" for s in result.skipped]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(out) + "\n")
    return DOC
