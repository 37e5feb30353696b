"""`python -m benchmarks [--quick] [--only NAME ...] [--no-doc]`: run, tabulate, document."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report

BENCHMARKS = ("sdk_overhead", "ingest", "queries", "storage")


def _run(name: str, quick: bool, out: Path) -> report.Result:
    cmd = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out)] + (["--quick"] if quick
                                                                             else [])
    started = time.monotonic()
    print(f"== {name} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=report.ROOT)
    print(f"== {name} done in {time.monotonic() - started:.0f} s (exit {proc.returncode})",
          file=sys.stderr, flush=True)
    if proc.returncode != 0 or not out.exists():
        return report.Result(name, name, skipped=[f"{name}: the benchmark process failed "
                                                  f"(exit {proc.returncode}); see its output"])
    return report.load(out)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="small settings (seconds per benchmark) to check the harness")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    p.add_argument("--no-doc", action="store_true",
                   help="print the table only; leave docs/benchmarks.md and the plots alone")
    args = p.parse_args()
    names = args.only or BENCHMARKS
    with tempfile.TemporaryDirectory(prefix="infersight-bench-") as tmp:
        results = [_run(name, args.quick, Path(tmp) / f"{name}.json") for name in names]
    print(report.table(results))
    if not args.no_doc and not args.only:  # the doc always holds every benchmark of one run
        command = "python -m benchmarks" + (" --quick" if args.quick else "")
        print(f"wrote {report.write_doc(results, args.quick, command)}")
    return 1 if any(not r.rows for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
