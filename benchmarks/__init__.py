"""Infersight benchmarks: SDK overhead, collector ingest, dashboard queries, storage.

`make bench` (or `python -m benchmarks`) runs them all, prints one table and rewrites
docs/benchmarks.md and docs/bench/*.png; `--quick` uses small settings to check the harness.
Each benchmark runs in its own process (chDB allows one data directory per process, and the
SDK's instrumentation is process-wide); `python -m benchmarks.NAME --quick` runs one alone.
"""
