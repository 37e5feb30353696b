"""The writer between receivers and the store: acks only what is durable, never twice."""

from __future__ import annotations

import time

import pytest

from infersight_collector.pipeline import Overloaded, Pipeline, content_token
from infersight_collector.spool import Record, Spool
from infersight_collector.store import insert_spans


def stored(store) -> tuple[int, int]:
    """(rows, distinct span ids) in the span table."""
    got = store.query(f"SELECT count() AS n, uniqExact(SpanId) AS u FROM {store.database}"
                      ".otel_traces")
    return int(got.n[0]), int(got.u[0])


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_resubmitted_batch_is_stored_once(store, span_batch):
    """A client that lost the reply re-sends the same spans: they must not be stored twice."""
    pipeline = Pipeline(store).start()
    try:
        batch = span_batch(50)
        pipeline.submit(batch).result(10)
        pipeline.submit(batch).result(10)
        pipeline.submit(span_batch(7)).result(10)
    finally:
        pipeline.stop()
    assert stored(store) == (57, 57)


def test_content_token_follows_content_not_identity(span_batch):
    batch = span_batch(3)
    assert content_token(batch) == content_token(batch.slice(0))  # same spans, same token
    assert content_token(batch) != content_token(span_batch(3))


def test_stop_writes_everything_accepted(store, span_batch):
    pipeline = Pipeline(store).start()
    futures = [pipeline.submit(span_batch(100)) for _ in range(20)]
    pipeline.stop()
    assert all(f.done() and f.exception() is None for f in futures)
    assert stored(store) == (2000, 2000)
    with pytest.raises(Overloaded):
        pipeline.submit(span_batch(1))


def test_a_full_queue_pushes_back_with_a_retry_hint(store, span_batch):
    pipeline = Pipeline(store, max_queued_spans=100)  # not started: nothing leaves the queue
    pipeline.submit(span_batch(60))
    with pytest.raises(Overloaded) as raised:
        pipeline.submit(span_batch(60))
    assert raised.value.retry_after_s > 0
    assert pipeline.queued_spans == 60


def test_a_spool_left_by_a_crash_is_replayed_on_start_without_duplicates(store, span_batch,
                                                                         tmp_path):
    batches = [span_batch(10) for _ in range(5)]
    spool = Spool(str(tmp_path), max_bytes=1 << 24)
    spool.append([Record(content_token(b), b) for b in batches])
    spool.close()
    # The crash came after the first two were written to the store but before the spool knew.
    for b in batches[:2]:
        insert_spans(store, b, content_token(b))
    pipeline = Pipeline(store, spool=Spool(str(tmp_path), max_bytes=1 << 24)).start()
    try:
        wait_until(lambda: pipeline.spool.records == 0)
    finally:
        pipeline.stop()
    assert stored(store) == (50, 50)
    assert pipeline.replayed_spans == 50  # all five replayed; the store dropped two
