"""`infersight loadgen` sends what a collector is sent: spans that started in the last
`SPREAD_S` seconds, unless told otherwise, through the real gRPC channel into the store."""

from __future__ import annotations

import time

import pytest

from infersight_collector.loadgen import SPREAD_S, send_load


def _start_times(store, expected: int) -> tuple[float, float]:
    deadline = time.monotonic() + 30
    while True:
        row = store.query(f"SELECT count() AS n, toUnixTimestamp64Nano(min(Timestamp)) AS lo, "
                          f"toUnixTimestamp64Nano(max(Timestamp)) AS hi "
                          f"FROM {store.database}.otel_traces")
        if row.n[0] >= expected or time.monotonic() > deadline:
            assert row.n[0] == expected
            return row.lo[0] / 1e9, row.hi[0] / 1e9
        time.sleep(0.2)


@pytest.mark.parametrize("spread_s", [None, 3600.0], ids=["default", "an hour"])
def test_load_spans_start_within_the_spread_before_the_load(collector, store, spread_s):
    before = time.time()
    load = send_load(collector.endpoint, duration_s=30, processes=1, spans_per_request=100,
                     max_spans=400, pool_requests=4,
                     **({} if spread_s is None else {"spread_s": spread_s}))
    assert load.acked_spans == 400
    first, last = _start_times(store, 400)
    spread = SPREAD_S if spread_s is None else spread_s
    assert before - spread - 1 <= first and last <= time.time()
    assert last - first > spread / 2  # spread across it, not bunched at one end
