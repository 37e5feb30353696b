"""`infersight collector` in its own process, on free loopback ports and a fresh chDB directory.

Flags the collector may not have yet (`--http-port`, `--metrics-port`) are passed only when
its `--help` lists them, so the benchmarks follow the collector as it grows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil

from .report import ROOT

_CLI = [sys.executable, "-m", "infersight_collector.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collector_flags() -> str:
    return subprocess.run(_CLI + ["collector", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60).stdout


def count_spans(data_dir: str) -> int:
    """Spans in the store at `data_dir`, counted in a fresh process (one chDB dir per process)."""
    code = ("import sys; from infersight_collector.store import open_store; "
            "s = open_store(data_dir=sys.argv[1]); "
            "print(int(s.query(f'SELECT count() AS n FROM {s.database}.otel_traces')['n'][0])); "
            "s.close()")
    out = subprocess.run([sys.executable, "-c", code, data_dir], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"counting spans in {data_dir} failed: {out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


class Collector:
    """`with Collector(data_dir) as c:` gives `c.grpc_endpoint`, `c.http_endpoint` (or None),
    `c.cpu_seconds()`, `c.rss()` and `c.peak_rss`; leaving the block sends SIGTERM (which
    writes what was accepted) and waits for the process to exit."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.grpc_port = free_port()
        help_text = collector_flags()
        self.http_port = free_port() if "--http-port" in help_text else None
        self._args = ["collector", "--data-dir", data_dir, "--host", "127.0.0.1",
                      "--grpc-port", str(self.grpc_port)]
        if self.http_port:
            self._args += ["--http-port", str(self.http_port)]
        if "--metrics-port" in help_text:
            self._args += ["--metrics-port", str(free_port())]
        self.proc: subprocess.Popen | None = None
        self.peak_rss = 0
        self._ps: psutil.Process | None = None
        self._sampling = threading.Event()

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str | None:
        return f"http://127.0.0.1:{self.http_port}/v1/traces" if self.http_port else None

    def __enter__(self) -> "Collector":
        env = {**os.environ, "INFERSIGHT_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(_CLI + self._args, cwd=ROOT, env=env)
        self._ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited at start (code {self.proc.returncode})")
            try:
                socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("collector did not listen within 90 s")
        threading.Thread(target=self._watch_rss, daemon=True).start()
        return self

    def _watch_rss(self) -> None:
        while not self._sampling.wait(0.25):
            try:
                self.peak_rss = max(self.peak_rss, self._ps.memory_info().rss)
            except psutil.Error:
                return

    def cpu_seconds(self) -> float:
        t = self._ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return self._ps.memory_info().rss

    def __exit__(self, *exc) -> None:
        self._sampling.set()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
