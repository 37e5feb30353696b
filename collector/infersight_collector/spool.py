"""Append-only on-disk spool: the write-ahead log between the receivers and the store.

Every group of requests the writer commits is appended here (one fsync for the group), with
the tokens of the client requests it holds, and acknowledged: it is durable. The inserter then
takes the oldest segment, whole, and inserts it as one: under load a segment holds every group
committed while the previous insert ran, so inserts grow with the load (ClickHouse's cost per
span falls steeply with the size of an insert). A segment taken for insertion is sealed, so its
records never change: after a crash it is inserted again with the same records under the same
deduplication token (ClickHouse drops it if it got there), and the request tokens it holds are
known again, so a client re-sending one of those requests is acknowledged without storing it
twice. While the store is down, segments wait here until it answers again.

A spool is a directory of segment files (`00000001.spool`, ...). Each record is

    magic (4 bytes) | payload length (u32) | crc32 of payload (u32) | payload

with the payload = token length (u16) | dedup token (utf-8) | Arrow IPC stream of the batch,
whose schema metadata holds the request tokens. A record that also holds requests kept as
received (`native.RawRequest`) has the magic `ISP2`, the IPC stream's length (u32) before it,
and after it each request as project length (u16) | project | spans (u32) | length (u32) |
its bytes. Segments roll over at `segment_bytes` and are
deleted once every record in them is in the store; their request tokens are first appended to
`requests.window` (fsynced), which keeps the last `window_requests` of them.

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
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from .native import RawRequest

log = logging.getLogger(__name__)

MAGIC = b"ISP1"
MAGIC_RAW = b"ISP2"  # a record with raw requests
_HEADER = struct.Struct("<4sII")
_TOKEN_LEN = struct.Struct("<H")
_U32 = struct.Struct("<I")
_RAW_HEAD = struct.Struct("<HII")  # project length, spans, payload length
_SUFFIX = ".spool"
_REQUESTS_KEY = b"infersight.requests"
WINDOW_FILE = "requests.window"
# A segment is what one insert writes: some 65,000 spans decoded (about 1 KB a span), some
# 95,000 kept as received (about 0.7 KB a span; chDB inserts those 30,000 a statement).
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# Client request tokens remembered: a re-sent request among the last this many is not stored
# again. At 500 spans a request that is 20 minutes at 100k spans/s.
DEFAULT_WINDOW_REQUESTS = 250_000
# Records appended by this process stay in memory until they are in the store, up to this
# many bytes (a segment's worth); past it (a backlog, a store outage) they are read back from
# disk, most often from the page cache.
_CACHE_BYTES = 64 * 1024 * 1024


class SpoolFull(Exception):
    """The spool reached its size limit; the client should retry later."""


@dataclass(frozen=True)
class Record:
    token: str
    batch: pa.Table
    requests: tuple[str, ...] = ()  # tokens of the client requests whose spans these are
    raw: tuple[RawRequest, ...] = ()  # requests kept as received, decoded at insert

    @property
    def nbytes(self) -> int:
        return self.batch.nbytes + sum(len(r.payload) for r in self.raw)


def encode(record: Record) -> list[bytes]:
    """The record as written: its header, then its payload in parts. The parts are not
    joined: a request's bytes are copied once, into the file (joining a few requests cost
    about 1 CPU-us a span, mostly the page faults of a new copy of each)."""
    batch = record.batch
    if record.requests:
        batch = batch.replace_schema_metadata({_REQUESTS_KEY: "\n".join(record.requests)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    token = record.token.encode()
    ipc = sink.getvalue().to_pybytes()
    parts = [_TOKEN_LEN.pack(len(token)), token]
    if record.raw:
        parts.append(_U32.pack(len(ipc)))
    parts.append(ipc)
    for r in record.raw:
        project = r.project.encode()
        parts += [_RAW_HEAD.pack(len(project), r.spans, len(r.payload)), project, r.payload]
    crc = size = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        size += len(part)
    magic = MAGIC_RAW if record.raw else MAGIC
    return [_HEADER.pack(magic, size, crc), *parts]


def _decode_payload(magic: bytes, payload: bytes, with_batch: bool = True) -> Record:
    (n,) = _TOKEN_LEN.unpack_from(payload)
    token = payload[_TOKEN_LEN.size:_TOKEN_LEN.size + n].decode()
    start = _TOKEN_LEN.size + n
    end = len(payload)
    if magic == MAGIC_RAW:
        (ipc_len,) = _U32.unpack_from(payload, start)
        start += _U32.size
        end = start + ipc_len
    with pa.ipc.open_stream(payload[start:end]) as reader:
        meta = reader.schema.metadata or {}
        requests = tuple(meta[_REQUESTS_KEY].decode().split("\n")) if _REQUESTS_KEY in meta \
            else ()
        batch = reader.read_all().replace_schema_metadata(None) if with_batch else None
    raw = []
    while with_batch and end < len(payload):
        project_len, spans, size = _RAW_HEAD.unpack_from(payload, end)
        end += _RAW_HEAD.size
        project = payload[end:end + project_len].decode()
        end += project_len
        raw.append(RawRequest(payload[end:end + size], project, spans))
        end += size
    return Record(token, batch, requests, tuple(raw))


def _scan(path: str) -> tuple[list[tuple[int, int]], int]:
    """(offset, length) of every intact record in a segment, and where the intact part ends."""
    spans, offset = [], 0
    with open(path, "rb") as f:
        data = f.read()
    while offset + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if magic not in (MAGIC, MAGIC_RAW) or start + length > len(data) or \
                zlib.crc32(data[start:start + length]) != crc:
            break
        spans.append((start, length))
        offset = start + length
    return spans, offset


def fsync_dir(directory: str) -> None:
    """Make a new or removed name in `directory` survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(eq=False)
class _Segment:
    path: str
    size: int = 0
    live: int = 0  # records not yet in the store
    requests: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    segment: _Segment
    start: int
    length: int
    record: Record | None  # None: read it back from the segment


class Spool:
    def __init__(self, directory: str, max_bytes: int,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 window_requests: int = DEFAULT_WINDOW_REQUESTS):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.window_requests = window_requests
        self._lock = threading.Lock()
        os.makedirs(directory, exist_ok=True)
        self._window_path = os.path.join(directory, WINDOW_FILE)
        self._window_lines = len(self._read_window())
        self._segments: list[_Segment] = []
        self._pending: deque[_Pending] = deque()
        self._bytes = 0
        self._cached = 0
        for name in sorted(os.listdir(directory)):
            if name.endswith(_SUFFIX):
                self._recover(os.path.join(directory, name))
        self._append_file = None
        self._active: _Segment | None = None

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
        if not spans:  # nothing intact: nothing to replay
            os.remove(path)
            return
        segment = _Segment(path, end, len(spans))
        with open(path, "rb") as f:
            data = f.read()
        for s, n in spans:
            magic = data[s - _HEADER.size:s - _HEADER.size + len(MAGIC)]
            segment.requests.extend(
                _decode_payload(magic, data[s:s + n], with_batch=False).requests)
            self._pending.append(_Pending(segment, s, n, None))
        self._segments.append(segment)
        self._bytes += end

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def records(self) -> int:
        """Records not yet in the store."""
        return len(self._pending)

    @property
    def oldest_sealed(self) -> bool:
        """The oldest segment not yet in the store is complete: full, or left by a crash."""
        return bool(self._pending) and self._pending[0].segment is not self._active

    def has_room(self, nbytes: int = 0) -> bool:
        return self._bytes + nbytes <= self.max_bytes

    def append(self, records: list[Record]) -> None:
        """Write `records` and fsync; raises SpoolFull (writing nothing) past `max_bytes`."""
        encoded = [encode(r) for r in records]
        sizes = [sum(map(len, parts)) for parts in encoded]
        size = sum(sizes)
        with self._lock:
            if not self.has_room(size):
                raise SpoolFull(f"spool at {self._bytes} of {self.max_bytes} bytes; "
                                f"{size} more do not fit")
            f, segment = self._writable()
            offset = segment.size
            for parts in encoded:
                f.writelines(parts)
            f.flush()
            os.fsync(f.fileno())
            segment.size += size
            self._bytes += size
            for record, length in zip(records, sizes):
                keep = self._cached + record.nbytes <= _CACHE_BYTES
                self._cached += record.nbytes if keep else 0
                self._pending.append(_Pending(segment, offset + _HEADER.size,
                                              length - _HEADER.size, record if keep else None))
                segment.live += 1
                segment.requests.extend(record.requests)
                offset += length

    def _writable(self):
        if self._active is not None and self._active.size < self.segment_bytes:
            return self._append_file, self._active
        if self._active is not None:
            self._seal()
        last = int(os.path.basename(self._segments[-1].path)[:-len(_SUFFIX)]) \
            if self._segments else 0
        path = os.path.join(self.directory, f"{last + 1:08d}{_SUFFIX}")
        self._append_file = open(path, "ab")
        self._active = _Segment(path)
        self._segments.append(self._active)
        fsync_dir(self.directory)  # the new file's name must survive a crash too
        return self._append_file, self._active

    def _seal(self) -> None:
        segment = self._active
        self._append_file.close()
        self._append_file = self._active = None
        if not segment.live:
            self._retire(segment)

    def take_segment(self) -> tuple[_Segment, list[Record]] | None:
        """The oldest segment not yet in the store and all its records, to insert as one;
        call `segment_done()` once they are. The segment being appended to is sealed first,
        so a segment's records never change once taken: a replay after a crash inserts the
        same records under the same token, and the store drops them if they got there."""
        with self._lock:
            if not self._pending:
                return None
            segment = self._pending[0].segment
            if segment is self._active:
                self._seal()
            records = []
            for p in self._pending:
                if p.segment is not segment:
                    break
                records.append(p.record if p.record is not None else self._read(p))
            return segment, records

    def _read(self, p: _Pending) -> Record:
        with open(p.segment.path, "rb") as f:
            f.seek(p.start - _HEADER.size)
            data = f.read(_HEADER.size + p.length)
        return _decode_payload(data[:len(MAGIC)], data[_HEADER.size:])

    def segment_done(self, segment: _Segment) -> None:
        """Every record of `segment` (from `take_segment`) is in the store: delete it."""
        with self._lock:
            self._retire(segment)  # first: `records` reads 0 only once the bytes are gone
            while self._pending and self._pending[0].segment is segment:
                p = self._pending.popleft()
                if p.record is not None:
                    self._cached -= p.record.nbytes

    def _retire(self, segment: _Segment) -> None:
        """Keep the segment's request tokens in the window file, then delete the segment."""
        if segment is self._active:
            self._append_file.close()
            self._append_file = self._active = None
        self._remember(segment.requests)
        os.remove(segment.path)
        self._segments.remove(segment)
        self._bytes -= segment.size

    def _read_window(self) -> list[str]:
        try:
            with open(self._window_path, encoding="utf-8", errors="replace") as f:
                return [line for line in f.read().split("\n") if line]
        except FileNotFoundError:
            return []

    def _remember(self, tokens: list[str]) -> None:
        if not tokens:
            return
        if self._window_lines + len(tokens) > 2 * self.window_requests:
            keep = (self._read_window() + tokens)[-self.window_requests:]
            tmp = self._window_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(t + "\n" for t in keep))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._window_path)
            fsync_dir(self.directory)
            self._window_lines = len(keep)
            return
        with open(self._window_path, "a", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in tokens))
            f.flush()
            os.fsync(f.fileno())
        self._window_lines += len(tokens)

    def recent_requests(self) -> list[str]:
        """Tokens of the client requests made durable lately, oldest first: those in the
        window file, then those of the segments still here."""
        with self._lock:
            tokens = self._read_window()
            for segment in self._segments:
                tokens.extend(segment.requests)
            return tokens[-self.window_requests:]

    def __iter__(self) -> Iterator[Record]:
        """Every record not yet in the store, oldest first (for inspection and tests)."""
        with self._lock:
            pending = list(self._pending)
        for p in pending:
            yield p.record if p.record is not None else self._read(p)

    def close(self) -> None:
        """Close the segment being appended to (what is in it waits for the next start)."""
        with self._lock:
            if self._active is not None:
                self._seal()
