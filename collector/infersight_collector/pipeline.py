"""Bounded queue, writer and inserter between the receivers and the store, with a disk spool.

Receivers `submit()` a decoded batch and wait on the returned future, which resolves once the
batch is durable. It fails only when it could not be made durable; the receiver then asks the
client to retry.

With a spool (what `infersight collector` runs): write-behind. The writer thread takes
everything queued at once and appends it to the spool as one group (one fsync), then
acknowledges its requests. The inserter thread inserts the spool's oldest segment, whole, as
one insert under a token derived from its records (spool.py), and deletes it once it is in the
store. So clients wait for an fsync, not for ClickHouse, and each insert carries every group
committed in the last `insert_interval_s` (or a full segment): ClickHouse's cost per span falls
steeply with the size of an insert (a 4,000-span insert costs about 6x as much per span as a
100,000-span one, merges included), and that is what lets ingest keep up. A span is queryable
about `insert_interval_s` after its acknowledgement; `flush()` waits for it.

A request's token is a hash of its content. The writer remembers the tokens of the last
`window_requests` requests made durable (loaded from the spool on start, so it survives a
crash): a client that lost the reply and re-sends a request gets it acknowledged without a
second insert. Without a spool there is nothing to recover a group from, so each request is
inserted on its own under its own token, as ClickHouse's deduplication window then covers it,
and acknowledged once in the store.

With `native` (the embedded store, with a spool), a receiver may submit a request's bytes as
received (`native.RawRequest`) instead of a decoded batch: the spool keeps them, and the
inserter has chDB decode a segment's requests in SQL (native.py), those the SQL cannot store
in Python (as are those of a native statement that failed while the store answers; that
decision is kept on disk until the segment is deleted, so a replay makes the same one).

When an insert fails the store is taken as down and probed again every `store_retry_s`;
meanwhile segments wait in the spool. When the spool is full, or there is none, `submit()`
raises `Overloaded` with a retry hint, and memory stays bounded by `max_queued_spans`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import pyarrow as pa

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .decode import ARROW_SCHEMA, content_token, decode_request
from .native import Native, RawRequest
from .spool import DEFAULT_WINDOW_REQUESTS, Record, Spool, SpoolFull
from .store import Store, insert_spans

log = logging.getLogger(__name__)

DEFAULT_STORE_RETRY_S = 1.0
# With a spool, at most one insert a second unless a full segment waits: a span is queryable
# about a second after it is acknowledged, and each insert carries a second of spans.
DEFAULT_INSERT_INTERVAL_S = 1.0


class Overloaded(Exception):
    """The collector cannot take this batch now; the client should retry after
    `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: float = DEFAULT_STORE_RETRY_S):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def group_token(tokens: tuple[str, ...]) -> str:
    """The deduplication token of a group: the same requests in the same order, the same."""
    return hashlib.blake2b("\n".join(tokens).encode(), digest_size=16).hexdigest()


@dataclass
class _Request:
    batch: pa.Table | RawRequest
    token: str
    future: Future = field(default_factory=Future)


class _Window:
    """The last `size` request tokens made durable, for set look-ups."""

    def __init__(self, size: int):
        self.size = size
        self._order: deque[str] = deque()
        self._set: set[str] = set()

    def __contains__(self, token: str) -> bool:
        return token in self._set

    def add(self, token: str) -> None:
        if token in self._set:
            return
        self._order.append(token)
        self._set.add(token)
        if len(self._order) > self.size:
            self._set.discard(self._order.popleft())


class Pipeline:
    def __init__(self, store: Store, max_queued_spans: int = 200_000,
                 max_batch_spans: int = 50_000, spool: Spool | None = None,
                 store_retry_s: float = DEFAULT_STORE_RETRY_S,
                 window_requests: int = DEFAULT_WINDOW_REQUESTS,
                 insert_interval_s: float = DEFAULT_INSERT_INTERVAL_S,
                 native: Native | None = None):
        self.store = store
        self.spool = spool
        # Raw requests need the spool: the inserter decodes them a segment at a time.
        self.native = native if spool is not None else None
        self.max_queued_spans = max_queued_spans
        self.max_batch_spans = max_batch_spans
        self.store_retry_s = store_retry_s
        self.insert_interval_s = insert_interval_s
        self._queue: deque[_Request] = deque()
        self._queued_spans = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._in_hand = False  # the writer holds a group taken from the queue
        self._thread = threading.Thread(target=self._run, name="infersight-writer", daemon=True)
        # The inserter's state: segments to insert, the store's health, and closing down.
        self._spooled = threading.Condition()
        self._inserter = threading.Thread(target=self._insert_loop, name="infersight-inserter",
                                          daemon=True)
        self._closing = False
        self._next_insert = 0.0
        self._store_up = True
        self._next_probe = 0.0
        self._durable = _Window(window_requests)
        self.written_spans = 0
        self.spooled_spans = 0
        self.duplicate_requests = 0
        self.failed_batches = 0
        self.store_errors = 0
        self.native_spans = 0  # of `written_spans`, those chDB decoded (native.py)

    def start(self) -> "Pipeline":
        if self.spool is not None:
            for token in self.spool.recent_requests():
                self._durable.add(token)
            if self.spool.records:
                log.info("spool holds %d batches (%d bytes) not yet in the store; writing them",
                         self.spool.records, self.spool.bytes)
            self._inserter.start()
        self._thread.start()
        return self

    def submit(self, batch: pa.Table | RawRequest, token: str | None = None) -> Future:
        """Queue `batch` (a raw request only when `native` is set); the future resolves once
        it is durable. `token` (default: a hash of the content) makes a repeated submit of the
        same batch a no-op in the store."""
        if isinstance(batch, RawRequest):
            if self.native is None:
                raise ValueError("raw requests need a pipeline with a native decoder and a spool")
            token = token or batch.token()
        request = _Request(batch, token or content_token(batch))
        with self._cond:
            if self._stopping:
                raise Overloaded("collector is shutting down")
            if not self._store_up and (self.spool is None or not self.spool.has_room()):
                raise Overloaded(
                    "store unavailable and spool full" if self.spool else "store unavailable",
                    retry_after_s=max(self._next_probe - time.monotonic(), self.store_retry_s))
            if self._queued_spans + batch.num_rows > self.max_queued_spans and self._queue:
                raise Overloaded(f"write queue full ({self._queued_spans} spans waiting)")
            self._queue.append(request)
            self._queued_spans += batch.num_rows
            self._cond.notify()
        return request.future

    @property
    def queued_spans(self) -> int:
        return self._queued_spans

    @property
    def store_up(self) -> bool:
        return self._store_up

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything acknowledged is in the store; False if it is not by
        `timeout` (the store is down, or behind)."""
        deadline = time.monotonic() + timeout
        while self._queue or self._in_hand or (self.spool is not None and self.spool.records):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Make what was accepted durable, write what the store takes in `timeout`, stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        if self.spool is not None:
            with self._spooled:
                self._closing = True
                self._spooled.notify()
            self._inserter.join(max(deadline - time.monotonic(), 0.0))
            self.spool.close()

    def _take(self) -> list[_Request] | None:
        """The next group of queued requests; None when stopping and the queue is empty."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            taken, rows = [], 0
            while self._queue and (not taken or rows + self._queue[0].batch.num_rows
                                   <= self.max_batch_spans):
                request = self._queue.popleft()
                taken.append(request)
                rows += request.batch.num_rows
            self._queued_spans -= rows
            self._in_hand = True
            return taken

    def _run(self) -> None:
        while (group := self._take()) is not None:
            try:
                self._write(group)
            finally:
                self._in_hand = False

    def _may_try_store(self) -> bool:
        return self._store_up or time.monotonic() >= self._next_probe

    def _store_failed(self, exc: Exception) -> None:
        self.store_errors += 1
        if self._store_up:
            log.error("store insert failed, spooling until it answers again: %s", exc)
        self._store_up = False
        self._next_probe = time.monotonic() + self.store_retry_s

    def _store_answered(self) -> None:
        if not self._store_up:
            log.info("store answers again")
        self._store_up = True

    def _new(self, group: list[_Request]) -> list[_Request]:
        """The requests of `group` not already durable; the others are acknowledged now (a
        client re-sending what it was not told was stored), or when their twin is."""
        new: dict[str, _Request] = {}
        for request in group:
            twin = new.get(request.token)
            if request.token in self._durable:
                self.duplicate_requests += 1
                request.future.set_result(None)
            elif twin is not None:
                self.duplicate_requests += 1
                twin.future.add_done_callback(lambda f, r=request: _copy_outcome(f, r.future))
            else:
                new[request.token] = request
        return list(new.values())

    def _write(self, group: list[_Request]) -> None:
        requests = self._new(group)
        if not requests:
            return
        if self.spool is None:
            self._write_each(requests)
            return
        tokens = tuple(r.token for r in requests)
        raw = tuple(r.batch for r in requests if isinstance(r.batch, RawRequest))
        batch = pa.concat_tables([ARROW_SCHEMA.empty_table()] + [
            r.batch for r in requests if not isinstance(r.batch, RawRequest)])
        try:
            self.spool.append([Record(group_token(tokens), batch, tokens, raw)])
        except SpoolFull as exc:
            self._fail(requests, Overloaded(f"{exc}; the store is behind", self.store_retry_s))
            return
        except OSError as exc:
            log.error("cannot write the spool, inserting without it: %s", exc)
            self._write_each(requests)
            return
        self.spooled_spans += batch.num_rows + sum(r.spans for r in raw)
        for r in requests:
            self._durable.add(r.token)
            r.future.set_result(None)
        with self._spooled:
            self._spooled.notify()

    def _insert(self, token: str, batch: pa.Table,
                raw: tuple[RawRequest, ...] = ()) -> Exception | None:
        """Insert `batch` and the raw requests under `token`; the error when the store
        failed, else None."""
        try:
            native_spans = 0
            if raw:
                batch, native_spans = self._insert_raw(token, batch, raw)
            if batch.num_rows:
                insert_spans(self.store, batch, token)
        except Exception as exc:
            self._store_failed(exc)
            return exc
        self._store_answered()
        self.written_spans += batch.num_rows + native_spans
        self.native_spans += native_spans
        return None

    def _insert_raw(self, token: str, batch: pa.Table,
                    raw: tuple[RawRequest, ...]) -> tuple[pa.Table, int]:
        """Insert what chDB can decode of `raw` (under its own token); return `batch` with
        the rest decoded in Python, and the spans chDB inserted."""
        skip = set(self.native.insert(list(raw), token + _NATIVE))
        limits = self.native.limits
        decoded = [decode_request(ExportTraceServiceRequest.FromString(raw[i].payload), limits,
                                  raw[i].project or None).batch for i in sorted(skip)]
        native_spans = sum(r.spans for i, r in enumerate(raw) if i not in skip)
        return (pa.concat_tables([batch] + decoded) if decoded else batch), native_spans

    def _write_each(self, requests: list[_Request]) -> None:
        """Insert each request under its own token (no spool to recover a group from)."""
        for i, request in enumerate(requests):
            error = self._insert(request.token, request.batch) \
                if self._may_try_store() else Overloaded("store unavailable", self.store_retry_s)
            if error is not None:
                self._fail(requests[i:], error)
                return
            self._durable.add(request.token)
            request.future.set_result(None)

    def _fail(self, requests: list[_Request], error: Exception) -> None:
        self.failed_batches += len(requests)
        for r in requests:
            r.future.set_exception(error)

    def _next_segment(self) -> bool:
        """Wait until a segment is due and the store may be tried; False when closing and
        nothing more will be."""
        with self._spooled:
            while True:
                if self._closing and (not self.spool.records or not self._store_up):
                    return False
                if not self._store_up:
                    due = self._next_probe
                elif self.spool.oldest_sealed or self._closing:
                    due = 0.0
                else:
                    due = self._next_insert
                wait = due - time.monotonic()
                if self.spool.records and wait <= 0:
                    return True
                self._spooled.wait(wait if self.spool.records else None)

    def _insert_loop(self) -> None:
        """Insert the spool's segments, oldest first, each whole (see the module docstring)."""
        while self._next_segment():
            self._next_insert = time.monotonic() + self.insert_interval_s
            segment, records = self.spool.take_segment()
            batch = pa.concat_tables([r.batch for r in records])
            raw = tuple(r for record in records for r in record.raw)
            token = segment_token(records)
            if self._insert(token, batch, raw) is None:
                self.spool.segment_done(segment)
                if raw:
                    self.native.done(token + _NATIVE)


_NATIVE = "/native"  # the suffix of a segment's token for its native statements


def segment_token(records: list[Record]) -> str:
    """The deduplication token of a segment's insert: the same records, the same token."""
    return group_token(tuple(r.token for r in records))


def _copy_outcome(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(None)
