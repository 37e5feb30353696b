"""Decoding in worker processes, so ingest is not bound to the one core the GIL allows.

Building a span's row from its protobuf objects is Python work (about 20 us a span), held to
one core by the GIL however many receiver threads there are. The pool sends each request's
bytes to a worker process, which parses and decodes them exactly as `decode_request` does
in-process and sends back the batch as Arrow IPC with its content token; reading it back is
zero-copy. Workers are spawned (gRPC and chDB do not survive a fork) and started at once.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .decode import Decoded, Limits, content_token, decode_request


def _decode(payload: bytes, limits: Limits, project: str | None):
    """In the worker: (Arrow IPC of the batch, content token, rejected, errors). A malformed
    payload raises protobuf's DecodeError, which reaches the caller."""
    decoded = decode_request(ExportTraceServiceRequest.FromString(payload), limits, project)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, decoded.batch.schema) as writer:
        writer.write_table(decoded.batch)
    return sink.getvalue(), content_token(decoded.batch), decoded.rejected, decoded.errors


def _ready() -> None:
    """Run once in each worker at start, so the first requests do not pay for imports."""


class DecodePool:
    def __init__(self, workers: int):
        self.workers = workers
        self._executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        for f in [self._executor.submit(_ready) for _ in range(workers)]:
            f.result()

    def decode(self, payload: bytes, limits: Limits, project: str | None) -> tuple[Decoded, str]:
        """The decoded request and its content token; raises DecodeError when malformed."""
        buffer, token, rejected, errors = self._executor.submit(
            _decode, payload, limits, project).result()
        with pa.ipc.open_stream(buffer) as reader:
            batch = reader.read_all()
        return Decoded(batch, rejected, errors), token

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
