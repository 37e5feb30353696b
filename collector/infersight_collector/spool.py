"""Append-only on-disk spool: batches the store could not take, kept until it can.

A spool is a directory of segment files (`00000001.spool`, ...). Each record is

    magic (4 bytes) | payload length (u32) | crc32 of payload (u32) | payload

with the payload = token length (u16) | dedup token (utf-8) | Arrow IPC stream of the batch.

Durability: `append()` writes the records of one group, then fsyncs the segment (and the
directory when it created the segment) before returning, so a batch acknowledged after
`append()` survives a crash of the process or the machine. Segments roll over at
`segment_bytes`; the oldest is read first and deleted once every record in it is in the store.

On open, every segment is checked record by record. A torn or corrupt record (a crash during a
write, a bad disk) ends that segment: the file is truncated there and a warning says how many
bytes were dropped. Such a record was never fsynced, so it was never acknowledged.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

log = logging.getLogger(__name__)

MAGIC = b"ISP1"
_HEADER = struct.Struct("<4sII")
_TOKEN_LEN = struct.Struct("<H")
_SUFFIX = ".spool"
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024


class SpoolFull(Exception):
    """The spool reached its size limit; the client should retry later."""


@dataclass(frozen=True)
class Record:
    token: str
    batch: pa.Table


def encode(record: Record) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, record.batch.schema) as writer:
        writer.write_table(record.batch)
    token = record.token.encode()
    payload = _TOKEN_LEN.pack(len(token)) + token + sink.getvalue().to_pybytes()
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode_payload(payload: bytes) -> Record:
    (n,) = _TOKEN_LEN.unpack_from(payload)
    token = payload[_TOKEN_LEN.size:_TOKEN_LEN.size + n].decode()
    with pa.ipc.open_stream(payload[_TOKEN_LEN.size + n:]) as reader:
        return Record(token, reader.read_all())


def _scan(path: str) -> tuple[list[tuple[int, int]], int]:
    """(offset, length) of every intact record in a segment, and where the intact part ends."""
    spans, offset = [], 0
    with open(path, "rb") as f:
        data = f.read()
    while offset + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if magic != MAGIC or start + length > len(data) or \
                zlib.crc32(data[start:start + length]) != crc:
            break
        spans.append((start, length))
        offset = start + length
    return spans, offset


class Spool:
    def __init__(self, directory: str, max_bytes: int,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        os.makedirs(directory, exist_ok=True)
        self._segments: list[str] = sorted(
            os.path.join(directory, name) for name in os.listdir(directory)
            if name.endswith(_SUFFIX))
        self._bytes = 0
        self._records = 0
        for path in self._segments:
            self._recover(path)
        self._append_file = None

    def _recover(self, path: str) -> None:
        spans, end = _scan(path)
        size = os.path.getsize(path)
        if end < size:
            log.warning("spool segment %s: corrupt or torn record at byte %d; dropping the "
                        "last %d bytes (never acknowledged: a write cut short)", path, end,
                        size - end)
            with open(path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        self._bytes += end
        self._records += len(spans)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def records(self) -> int:
        return self._records

    def has_room(self, nbytes: int = 0) -> bool:
        return self._bytes + nbytes <= self.max_bytes

    def append(self, records: list[Record]) -> None:
        """Write `records` and fsync; raises SpoolFull (writing nothing) past `max_bytes`."""
        data = b"".join(encode(r) for r in records)
        with self._lock:
            if not self.has_room(len(data)):
                raise SpoolFull(f"spool at {self._bytes} of {self.max_bytes} bytes; "
                                f"{len(data)} more do not fit")
            f = self._writable()
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            self._bytes += len(data)
            self._records += len(records)

    def _writable(self):
        if self._append_file is not None and self._append_file.tell() < self.segment_bytes:
            return self._append_file
        if self._append_file is not None:
            self._append_file.close()
        last = int(os.path.basename(self._segments[-1])[:-len(_SUFFIX)]) if self._segments else 0
        path = os.path.join(self.directory, f"{last + 1:08d}{_SUFFIX}")
        self._append_file = open(path, "ab")
        self._segments.append(path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name must survive a crash too
        finally:
            os.close(dir_fd)
        return self._append_file

    def oldest(self) -> tuple[str, list[Record]] | None:
        """The oldest segment that has records, and its records (one segment bounds memory).
        Call `remove(segment)` once they are all in the store."""
        with self._lock:
            for path in list(self._segments):
                if self._append_file is not None and path == self._append_file.name:
                    # Seal the segment being appended to, so it can be drained and removed.
                    self._append_file.close()
                    self._append_file = None
                spans, _ = _scan(path)
                if not spans:  # emptied by recovery: nothing to drain
                    os.remove(path)
                    self._segments.remove(path)
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                return path, [_decode_payload(data[s:s + n]) for s, n in spans]
            return None

    def remove(self, segment: str) -> None:
        with self._lock:
            spans, end = _scan(segment)
            os.remove(segment)
            self._segments.remove(segment)
            self._bytes -= end
            self._records -= len(spans)

    def __iter__(self) -> Iterator[Record]:
        """Every record in the spool, oldest first (for inspection and tests)."""
        for path in list(self._segments):
            spans, _ = _scan(path)
            with open(path, "rb") as f:
                data = f.read()
            for s, n in spans:
                yield _decode_payload(data[s:s + n])

    def close(self) -> None:
        with self._lock:
            if self._append_file is not None:
                self._append_file.close()
                self._append_file = None
