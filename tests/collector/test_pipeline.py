"""The writer between receivers and the store: acks only what is durable, never twice."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from infersight_collector.pipeline import (
    Overloaded,
    Pipeline,
    content_token,
    group_token,
    segment_token,
)
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
    """Two segments were waiting; the crash came after the first reached the store but
    before the spool knew. On start both are inserted again, whole; the store drops one."""
    first, second = [span_batch(10) for _ in range(3)], [span_batch(10) for _ in range(2)]
    spool = Spool(str(tmp_path), max_bytes=1 << 24, segment_bytes=1)  # a segment per append
    spool.append([Record(content_token(b), b) for b in first])
    spool.append([Record(content_token(b), b) for b in second])
    spool.close()
    records = [Record(content_token(b), b) for b in first]
    insert_spans(store, pa.concat_tables(first), segment_token(records))
    counting = CountingStore(store)
    pipeline = Pipeline(counting, spool=Spool(str(tmp_path), max_bytes=1 << 24)).start()
    try:
        assert pipeline.flush()
    finally:
        pipeline.stop()
    assert stored(store) == (50, 50)
    assert counting.inserts == 2 and pipeline.written_spans == 50


def test_acknowledged_means_spooled_and_flush_means_stored(store, span_batch, tmp_path):
    """With a spool the client waits for the fsync, not for the store: a request is
    acknowledged while the store is stuck in an insert, and is stored once that ends."""
    gate = threading.Event()
    slow = CountingStore(store, before_insert=gate.wait)
    pipeline = Pipeline(slow, spool=Spool(str(tmp_path), 1 << 24)).start()
    try:
        pipeline.submit(span_batch(5)).result(10)  # its insert now waits on the gate
        for _ in range(4):
            pipeline.submit(span_batch(5)).result(10)  # acknowledged all the same
        assert stored(store) == (0, 0) and not pipeline.flush(timeout=0.2)
        gate.set()
        assert pipeline.flush()
    finally:
        pipeline.stop()
    assert stored(store) == (25, 25)
    assert slow.inserts == 2  # the first group, then the four committed meanwhile, as one


class CountingStore:
    """The real store, counting inserts; `before_insert` runs first (to hold one back)."""

    def __init__(self, store, before_insert=lambda: None):
        self.store, self.database, self.inserts = store, store.database, 0
        self.before_insert = before_insert

    def insert_arrow(self, table, data, dedup_token=None):
        self.before_insert()
        self.inserts += 1
        self.store.insert_arrow(table, data, dedup_token)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_queued_requests_are_committed_as_one_group(store, span_batch, tmp_path):
    counting = CountingStore(store)
    pipeline = Pipeline(counting, spool=Spool(str(tmp_path), 1 << 24))  # not started yet
    futures = [pipeline.submit(span_batch(10)) for _ in range(30)]
    pipeline.start()
    try:
        for f in futures:
            f.result(10)
    finally:
        pipeline.stop()
    assert counting.inserts == 1
    assert stored(store) == (300, 300)
    assert pipeline.spool.records == 0


def test_a_request_resent_after_a_restart_is_acknowledged_and_stored_once(store, span_batch,
                                                                           tmp_path):
    """The client lost the reply to a request that was stored, the collector restarted, and
    the client sends the same request again."""
    batches = [span_batch(20) for _ in range(3)]
    pipeline = Pipeline(store, spool=Spool(str(tmp_path), 1 << 24)).start()
    for b in batches:
        pipeline.submit(b).result(10)
    pipeline.stop()
    counting = CountingStore(store)
    pipeline = Pipeline(counting, spool=Spool(str(tmp_path), 1 << 24)).start()
    try:
        for b in batches:
            pipeline.submit(b).result(10)
        pipeline.submit(batches[0]).result(10)  # and once more in the same life
    finally:
        pipeline.stop()
    assert counting.inserts == 0 and pipeline.duplicate_requests == 4
    assert stored(store) == (60, 60)


def test_a_request_resent_while_queued_is_stored_once(store, span_batch, tmp_path):
    pipeline = Pipeline(store, spool=Spool(str(tmp_path), 1 << 24))
    batch = span_batch(15)
    first, again = pipeline.submit(batch), pipeline.submit(batch)
    pipeline.start()
    try:
        first.result(10), again.result(10)
    finally:
        pipeline.stop()
    assert stored(store) == (15, 15)


def test_a_crash_between_insert_and_done_replays_without_duplicates(store, span_batch,
                                                                    tmp_path):
    """The segment reached the store but the collector died before deleting it: on start
    it is inserted again under its token (dropped by the store), and its requests are
    recognised when their clients re-send them."""
    batches = [span_batch(10) for _ in range(4)]
    tokens = tuple(content_token(b) for b in batches)
    group = Record(group_token(tokens), pa.concat_tables(batches), tokens)
    spool = Spool(str(tmp_path), 1 << 24)
    spool.append([group])
    spool.close()
    insert_spans(store, group.batch, segment_token([group]))
    counting = CountingStore(store)
    pipeline = Pipeline(counting, spool=Spool(str(tmp_path), 1 << 24)).start()
    try:
        wait_until(lambda: pipeline.spool.records == 0)
        for b in batches:
            pipeline.submit(b).result(10)
    finally:
        pipeline.stop()
    assert counting.inserts == 1  # the replay; the re-sent requests were not inserted
    assert stored(store) == (40, 40)
