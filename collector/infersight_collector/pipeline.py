"""Bounded queue and writer between the receivers and the store, with a disk spool.

Receivers `submit()` a decoded batch and wait on the returned future, which resolves once the
batch is durable: in the store, or, when the store fails, fsynced into the spool (spool.py).
It fails only when neither took the batch; the receiver then asks the client to retry.

One writer thread takes everything queued at once (up to `max_batch_spans`), so a lone request
is written without waiting for a timer and a burst is handled in one pass with one spool fsync.
Each request is inserted with its own deduplication token, a hash of its content: a client
retrying a request whose reply it lost (collector killed, deadline passed) and a spool replay
after a crash both land as a duplicate insert, which ClickHouse drops. That is why requests
are not concatenated into one insert: the token must cover exactly what a client re-sends.

When an insert fails the store is taken as down: new batches go straight to the spool, and the
store is probed again every `store_retry_s`. Once it answers, the spool is drained, oldest
first, one record between queue passes. When the spool is full, or there is none, `submit()`
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

from .spool import Record, Spool, SpoolFull
from .store import Store, insert_spans

log = logging.getLogger(__name__)

DEFAULT_STORE_RETRY_S = 1.0


class Overloaded(Exception):
    """The collector cannot take this batch now; the client should retry after
    `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: float = DEFAULT_STORE_RETRY_S):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def content_token(batch: pa.Table) -> str:
    """A deduplication token that is the same for the same spans decoded the same way."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{batch.num_rows}:{','.join(batch.column_names)}".encode())
    for column in batch.columns:
        for chunk in column.chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    digest.update(buffer)
    return digest.hexdigest()


@dataclass
class _Request:
    batch: pa.Table
    token: str
    future: Future = field(default_factory=Future)


class Pipeline:
    def __init__(self, store: Store, max_queued_spans: int = 200_000,
                 max_batch_spans: int = 100_000, spool: Spool | None = None,
                 store_retry_s: float = DEFAULT_STORE_RETRY_S):
        self.store = store
        self.spool = spool
        self.max_queued_spans = max_queued_spans
        self.max_batch_spans = max_batch_spans
        self.store_retry_s = store_retry_s
        self._queue: deque[_Request] = deque()
        self._queued_spans = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="infersight-writer", daemon=True)
        self._store_up = True
        self._next_probe = 0.0
        self._draining: tuple[str, list[Record]] | None = None
        self.written_spans = 0
        self.spooled_spans = 0
        self.replayed_spans = 0
        self.failed_batches = 0
        self.store_errors = 0

    def start(self) -> "Pipeline":
        if self.spool is not None and self.spool.records:
            log.info("spool holds %d batches (%d bytes) from before; writing them to the store",
                     self.spool.records, self.spool.bytes)
        self._thread.start()
        return self

    def submit(self, batch: pa.Table, token: str | None = None) -> Future:
        """Queue `batch`; the future resolves once it is durable. `token` (default: a hash of
        the content) makes a repeated submit of the same batch a no-op in the store."""
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

    def stop(self, timeout: float = 30.0) -> None:
        """Make what was accepted durable (store, else spool), then stop the writer."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        if self.spool is not None:
            self.spool.close()

    def _backlog(self) -> bool:
        return self._draining is not None or (self.spool is not None and self.spool.records > 0)

    def _take(self) -> list[_Request] | None:
        """The next group of queued requests; [] when it is time for a drain step; None
        when stopping and the queue is empty."""
        with self._cond:
            while not self._queue and not self._stopping:
                if self._backlog():
                    wait = 0.0 if self._store_up else self._next_probe - time.monotonic()
                    if wait <= 0:
                        return []
                    self._cond.wait(wait)
                else:
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
            return taken

    def _run(self) -> None:
        while (group := self._take()) is not None:
            if group:
                self._write(group)
            if not self._stopping:
                self._drain_step()

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

    def _write(self, group: list[_Request]) -> None:
        for i, request in enumerate(group):
            if not self._may_try_store():
                self._spool_or_fail(group[i:], None)
                return
            try:
                insert_spans(self.store, request.batch, request.token)
            except Exception as exc:
                self._store_failed(exc)
                self._spool_or_fail(group[i:], exc)
                return
            self._store_answered()
            self.written_spans += request.batch.num_rows
            request.future.set_result(None)

    def _spool_or_fail(self, requests: list[_Request], cause: Exception | None) -> None:
        error: Exception
        if self.spool is None:
            error = cause or Overloaded("store unavailable", self.store_retry_s)
        else:
            try:
                self.spool.append([Record(r.token, r.batch) for r in requests])
            except SpoolFull as exc:
                error = Overloaded(f"store unavailable and {exc}", self.store_retry_s)
            except OSError as exc:
                log.error("cannot write the spool: %s", exc)
                error = exc
            else:
                for r in requests:
                    self.spooled_spans += r.batch.num_rows
                    r.future.set_result(None)
                return
        self.failed_batches += len(requests)
        for r in requests:
            r.future.set_exception(error)

    def _drain_step(self) -> None:
        """Write one spooled batch to the store; delete a segment once all of it is written."""
        if self.spool is None or not self._may_try_store():
            return
        if self._draining is None:
            self._draining = self.spool.oldest()
            if self._draining is None:
                return
        segment, records = self._draining
        if records:
            record = records[0]
            try:
                insert_spans(self.store, record.batch, record.token)
            except Exception as exc:
                self._store_failed(exc)
                return
            self._store_answered()
            records.pop(0)
            self.replayed_spans += record.batch.num_rows
            self.written_spans += record.batch.num_rows
        if not records:
            self.spool.remove(segment)
            self._draining = None
            if not self.spool.records:
                log.info("spool drained")
