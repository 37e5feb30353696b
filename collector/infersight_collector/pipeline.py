"""Bounded queue and batch writer between the receivers and the store.

Receivers `submit()` a decoded batch and wait on the returned future: a batch is acknowledged
to the client only after it is in the store. One writer thread takes everything queued at
once (group commit), so concurrent requests share one insert under load and a lone request
is written without waiting for a timer. When the queue is full, `submit()` raises
`Overloaded` and the receiver asks the client to retry later.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future

import pyarrow as pa

from .store import Store, insert_spans

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full; the client should retry after a pause."""


class Pipeline:
    def __init__(self, store: Store, max_queued_spans: int = 200_000,
                 max_batch_spans: int = 100_000):
        self.store = store
        self.max_queued_spans = max_queued_spans
        self.max_batch_spans = max_batch_spans
        self._queue: deque[tuple[pa.Table, Future]] = deque()
        self._queued_spans = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="infersight-writer", daemon=True)
        self.written_spans = 0
        self.failed_batches = 0

    def start(self) -> "Pipeline":
        self._thread.start()
        return self

    def submit(self, batch: pa.Table) -> Future:
        future: Future = Future()
        with self._cond:
            if self._stopping:
                raise Overloaded("collector is shutting down")
            if self._queued_spans + batch.num_rows > self.max_queued_spans and self._queue:
                raise Overloaded(f"write queue full ({self._queued_spans} spans waiting)")
            self._queue.append((batch, future))
            self._queued_spans += batch.num_rows
            self._cond.notify()
        return future

    @property
    def queued_spans(self) -> int:
        return self._queued_spans

    def stop(self, timeout: float = 30.0) -> None:
        """Write what was accepted, then stop the writer."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    def _take(self) -> list[tuple[pa.Table, Future]]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            taken, rows = [], 0
            while self._queue and (not taken or rows + self._queue[0][0].num_rows
                                   <= self.max_batch_spans):
                item = self._queue.popleft()
                taken.append(item)
                rows += item[0].num_rows
            self._queued_spans -= rows
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                return  # stopping and drained
            try:
                batch = taken[0][0] if len(taken) == 1 else pa.concat_tables(t for t, _ in taken)
                insert_spans(self.store, batch)
                self.written_spans += batch.num_rows
            except Exception as exc:
                self.failed_batches += 1
                log.error("insert of %d spans failed: %s", sum(t.num_rows for t, _ in taken), exc)
                for _, future in taken:
                    future.set_exception(exc)
                continue
            for _, future in taken:
                future.set_result(None)
