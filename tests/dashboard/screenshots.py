"""The README's screenshots: every page after a few minutes of `infersight demo` traffic.

    .venv/bin/python tests/dashboard/screenshots.py docs/screenshots --duration 180 --rate 20

Runs the collector and the dashboard in this process over a temporary embedded store, sends the
demo's traffic through the real SDK, records user feedback on a share of the demo's calls (the
demo sends none, and the Degradation page charts it), then saves one PNG per page from headless
Chromium (Debian `chromium` + `chromium-driver`). Not a test: look at the pictures.
"""

from __future__ import annotations

import argparse
import socket
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from infersight_collector import demo
from infersight_collector.feedback import record_feedback
from infersight_collector.otlp_grpc import create_server
from infersight_collector.pipeline import Pipeline
from infersight_collector.store import open_store
from infersight_collector.store.schema import DATABASE, SPANS_TABLE
from infersight_dashboard.app import create_app, serve_dashboard
from infersight_dashboard.auth import Protection

# The query string of each page's picture, and the element whose presence says it has drawn.
PAGES = {
    "overview": ("/?range=15m", "#overview-content .js-plotly-plot"),
    "cost": ("/cost?range=15m", "#cost-chart .js-plotly-plot"),
    "degradation": ("/degradation?range=15m", "#degradation-feedback-score .js-plotly-plot"),
    "traces": ("/traces?range=15m", "#traces-table a"),
}
# Share of thumbs up per version: the newer snapshot answers worse, as its confidence says.
_LIKED = {demo.OLD_SNAPSHOT: 0.85, demo.NEW_SNAPSHOT: 0.6}


def add_feedback(store, share: float = 0.3, seed: int = 7) -> int:
    """Thumbs up (1) or down (0), given a minute after the call, on `share` of the AI calls
    that answered;
    now and then a thumbs down is a labelled hallucination. Returns how many were recorded."""
    rng = random.Random(seed)
    calls = store.query(
        f"SELECT TraceId, SpanId, ModelVersion, toUnixTimestamp64Nano(Timestamp) AS ns "
        f"FROM {store.database}.{SPANS_TABLE} WHERE Operation != '' AND StatusCode != 'Error' "
        f"ORDER BY ns")
    n = 0
    for trace_id, span_id, version, ns in calls.itertuples(index=False):
        if rng.random() >= share:
            continue
        liked = rng.random() < _LIKED.get(version, 0.8)
        label = "" if liked or rng.random() < 0.7 else "hallucination"
        record_feedback(store, {"trace_id": trace_id, "span_id": span_id, "score": float(liked),
                                "label": label, "source": "user",
                                "time_unix_nano": int(ns) + 60 * 10**9})
        n += 1
    return n


def capture(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--hide-scrollbars", "--window-size=1440,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        for name, (path, drawn) in PAGES.items():
            driver.get(url + path)
            _wait(lambda: driver.find_elements(By.CSS_SELECTOR, drawn), f"{name} to draw")
            _wait(lambda: not driver.execute_script(
                "return document.querySelector('[data-dash-is-loading=\"true\"]') !== null"),
                f"{name} to settle")
            time.sleep(1.5)  # plotly's transitions
            # The whole page, not just the first screenful.
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1440, min(max(height + 40, 1000), 4000))
            time.sleep(0.5)
            driver.save_screenshot(str(out / f"{name}.png"))
            driver.set_window_size(1440, 1000)
            print(f"saved {out / f'{name}.png'} ({height} px tall)")
    finally:
        driver.quit()


def _wait(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as data_dir:
        store = open_store(data_dir=data_dir, database=DATABASE)
        pipeline = Pipeline(store).start()
        server, port = create_server(pipeline, "127.0.0.1", 0)
        server.start()
        demo.run(f"http://127.0.0.1:{port}", duration_s=args.duration, rate_per_s=args.rate)
        server.stop(grace=5).wait()
        pipeline.stop()
        print(f"recorded {add_feedback(store)} feedback verdicts")
        app = create_app(store, Protection())
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            web_port = probe.getsockname()[1]
        threading.Thread(target=serve_dashboard, args=(app, "127.0.0.1", web_port),
                         daemon=True).start()
        capture(f"http://127.0.0.1:{web_port}", args.out)
        store.close()


if __name__ == "__main__":
    sys.exit(main())
