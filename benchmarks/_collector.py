"""`infersight collector` in its own process, on free loopback ports and a fresh chDB directory.

`--http-port` is passed only when its `--help` lists it; the metrics port tells how many spans
it has written to the store while it runs (chDB allows one process per directory).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

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
    `c.cpu_seconds()`, `c.memory()`, `c.peak_memory` (collector and decode workers together),
    `c.peak_main_rss` and `c.wait_written(n)`; leaving the block sends SIGTERM (which writes
    what was accepted) and waits for the process to exit."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.grpc_port = free_port()
        help_text = collector_flags()
        self.http_port = free_port() if "--http-port" in help_text else None
        self._args = ["collector", "--data-dir", data_dir, "--host", "127.0.0.1",
                      "--grpc-port", str(self.grpc_port)]
        if self.http_port:
            self._args += ["--http-port", str(self.http_port)]
        self.metrics_port = free_port()
        self._args += ["--metrics-port", str(self.metrics_port)]
        self.proc: subprocess.Popen | None = None
        self.peak_memory = 0
        self.peak_main_rss = 0
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

    def _processes(self) -> list[psutil.Process]:
        """The collector and its decode workers."""
        return [self._ps] + self._ps.children(recursive=True)

    def _watch_rss(self) -> None:
        while not self._sampling.wait(0.25):
            try:
                self.peak_memory = max(self.peak_memory, self.memory())
                self.peak_main_rss = max(self.peak_main_rss, self._ps.memory_info().rss)
            except psutil.Error:
                return

    def cpu_seconds(self) -> float:
        """CPU of the collector and its workers (a worker's exit would drop its share; they
        live as long as the collector)."""
        return sum(sum(p.cpu_times()[:2]) for p in self._processes())

    def memory(self) -> int:
        """Bytes of memory the collector and its workers hold: the sum of their PSS (each
        shared page split between the processes sharing it). A sum of RSS would count the
        libraries the spawned workers share with each other once per worker."""
        return sum(p.memory_full_info().pss for p in self._processes())

    def written_spans(self) -> int:
        """Spans the collector has inserted into the store (its /metrics)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        line = next(x for x in text.splitlines() if x.startswith("infersight_written_spans "))
        return int(float(line.split()[1]))

    def wait_written(self, spans: int, timeout: float = 300.0) -> float:
        """Wait until `spans` are in the store; the seconds it took."""
        started = time.monotonic()
        while self.written_spans() < spans:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{spans} spans not in the store {timeout:.0f} s after the load")
            time.sleep(0.05)
        return time.monotonic() - started

    def __exit__(self, *exc) -> None:
        self._sampling.set()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
