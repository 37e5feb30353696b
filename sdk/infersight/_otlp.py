"""OTLP trace encoding straight to protobuf wire bytes, for the SDK's exporter.

The OTel exporter builds one protobuf object per span, attribute and value in Python before
serialising: about 3 us per attribute, most of what a traced model call costs the host app
(its spans carry a dozen attributes). This writes the same ExportTraceServiceRequest as
`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans` directly as bytes, with
attribute keys cached, and each key's last string value whole. The tests parse its output and
compare it with the OTel encoder's message for spans of every shape.

Field numbers are those of opentelemetry-proto's trace.proto and common.proto.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan

from . import _state

_KIND = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}  # SpanKind value -> OTLP enum (INTERNAL=1, ...)
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack

_SMALL = [bytes((i,)) for i in range(128)]
_MAX_CACHED = 4096
_key_prefixes: dict[str, bytes] = {}
# By field tag, then key: the (type, value, whole encoded KeyValue) of the key's last string,
# bool or string-tuple value. A tag's keys are forgotten when they are too many.
_last: dict[int, dict[str, tuple[type, Any, bytes]]] = {}
# KeyValue heads (`_head`) by (field tag, key, value type, value size), for strings.
_heads: dict[tuple[int, str, type, int], bytes] = {}
# The numbers' heads, by field tag, then key: a float's, and an int's in a list by the size
# of its varint (1-10 bytes). A lookup by key alone: a tuple key's build and hash cost more
# than the rest of an attribute's encoding. A tag's keys are forgotten when too many.
_float_heads: dict[int, dict[str, bytes]] = {}
_int_heads: dict[int, dict[str, list[bytes | None]]] = {}


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field; `tag` is (field number << 3) | 2."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _value(value: Any) -> bytes:
    """An AnyValue's contents (its oneof member); None is the empty AnyValue."""
    kind = type(value)  # the exact types the SDK stores first: isinstance on an ABC is slow
    if kind is tuple:
        return _len_field(0x2A, b"".join([_len_field(0x0A, _value(v)) for v in value]))
    if kind is int and -(1 << 63) <= value < 1 << 63:
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, str):
        raw = value.encode()
        return b"\x0a" + _varint(len(raw)) + raw
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise TypeError("an int attribute value past int64")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if value is None:
        return b""
    if isinstance(value, bytes):
        return b"\x3a" + _varint(len(value)) + value
    if isinstance(value, Sequence):
        items = b"".join(_len_field(0x0A, _value(v)) for v in value)
        return _len_field(0x2A, items)
    if isinstance(value, Mapping):
        return _len_field(0x32, _attributes(value, 0x0A))
    raise TypeError(f"cannot encode a {type(value).__name__} attribute value")


def _key_prefix(key: str) -> bytes:
    prefix = _key_prefixes.get(key)
    if prefix is None:
        raw = str(key).encode()
        prefix = b"\x0a" + _varint(len(raw)) + raw
        if len(_key_prefixes) < _MAX_CACHED:
            _key_prefixes[key] = prefix
    return prefix


def _field(tag: int, key: str, value: Any) -> bytes:
    """One attribute as a KeyValue in field `tag`; raises TypeError for a value OTLP cannot
    carry."""
    body = _value(value)
    kv = _key_prefix(key) + b"\x12" + _varint(len(body)) + body
    return _SMALL[tag] + _varint(len(kv)) + kv


def _head(tag: int, key: str, kind: type, size: int) -> bytes:
    """All of a KeyValue in field `tag` before the bytes of its value, for a str (`size`
    bytes of UTF-8), a non-negative int (`size` bytes of varint) or a float: tag, lengths,
    key and the AnyValue's header."""
    header = b"\x0a" + _varint(size) if kind is str else b"\x18" if kind is int else b"\x21"
    body = len(header) + size
    kv = _key_prefix(key) + b"\x12" + _varint(body)
    return _SMALL[tag] + _varint(len(kv) + body) + kv + header


def _attributes(attributes: Mapping[str, Any] | None, tag: int) -> bytes:
    """Each attribute as a KeyValue in field `tag`; a value that cannot be encoded is left out
    (as the OTel encoder does, which logs it)."""
    if not attributes:
        return b""
    # The SDK's BoundedAttributes reads through Python-level Mapping methods; its dict does not.
    items = getattr(attributes, "_dict", attributes).items()
    last = _last.get(tag)
    if last is None or len(last) >= _MAX_CACHED:
        last = _last[tag] = {}
    floats = _float_heads.get(tag)
    if floats is None or len(floats) >= _MAX_CACHED:
        floats = _float_heads[tag] = {}
    ints = _int_heads.get(tag)
    if ints is None or len(ints) >= _MAX_CACHED:
        ints = _int_heads[tag] = {}
    parts = []
    append = parts.append
    for key, value in items:
        kind = type(value)
        # Counts and costs: a cached head and the value's own bytes.
        if kind is int and 0 <= value < 1 << 63:
            if value < 0x80:
                payload = _SMALL[value]
            elif value < 0x4000:  # most token counts: two bytes, without `_varint`'s loop
                payload = bytes(((value & 0x7F) | 0x80, value >> 7))
            else:
                payload = _varint(value)
            sized = ints.get(key)
            if sized is None:
                sized = ints[key] = [None] * 11
            head = sized[len(payload)]
            if head is None:
                head = sized[len(payload)] = _head(tag, key, int, len(payload))
            append(head + payload)
            continue
        if kind is float:
            head = floats.get(key)
            if head is None:
                head = floats[key] = _head(tag, key, float, 8)
            append(head + _DOUBLE(value))
            continue
        # Strings, bools and tuples of strings (finish reasons) mostly repeat the key's
        # value in the span before (operation, provider, models, cost source): then its
        # whole KeyValue is that one's. By type too, since equal values of two types
        # collide (True == 1, (True,) == (1,)).
        seen = last.get(key)
        if seen is not None and seen[0] is kind and seen[1] == value:
            append(seen[2])
            continue
        if kind is str:
            payload = value.encode()
            encoded = _cached_head(tag, key, kind, len(payload)) + payload
        elif kind is bool or (kind is tuple and all(type(v) is str for v in value)):
            encoded = _field(tag, key, value)
        else:
            try:
                append(_field(tag, key, value))
            except TypeError:
                pass
            continue
        last[key] = (kind, value, encoded)
        append(encoded)
    return b"".join(parts)


def _cached_head(tag: int, key: str, kind: type, size: int) -> bytes:
    head = _heads.get((tag, key, kind, size))
    if head is None:
        if len(_heads) >= _MAX_CACHED:
            _heads.clear()
        head = _heads[(tag, key, kind, size)] = _head(tag, key, kind, size)
    return head


def _flags(parent: Any) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote \
        else _HAS_IS_REMOTE


def _span(span: ReadableSpan) -> bytes:
    ctx = span.context
    parts = [b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
             b"\x12\x08" + ctx.span_id.to_bytes(8, "big")]
    if ctx.trace_state:
        parts.append(_len_field(0x1A, ",".join(
            f"{k}={v}" for k, v in ctx.trace_state.items()).encode()))
    parent = span.parent
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_len_field(0x2A, span.name.encode()))
    parts.append(b"\x30" + _varint(_KIND[span.kind.value]))
    if span.start_time:
        parts.append(b"\x39" + _FIXED64(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _FIXED64(span.end_time))
    # The span's own BoundedAttributes: its public `attributes` wraps it in a read-only proxy
    # that iterates through Python-level Mapping methods.
    attributes = getattr(span, "_attributes", None)
    parts.append(_attributes(span.attributes if attributes is None else attributes, 0x4A))
    if span.dropped_attributes:
        parts.append(b"\x50" + _varint(span.dropped_attributes))
    for event in span.events:
        body = b"".join((
            b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b"",
            _len_field(0x12, event.name.encode()) if event.name else b"",
            _attributes(event.attributes, 0x1A),
            b"\x20" + _varint(event.dropped_attributes) if event.dropped_attributes else b""))
        parts.append(_len_field(0x5A, body))
    if span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    for link in span.links:
        body = b"".join((
            b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + link.context.span_id.to_bytes(8, "big"),
            _attributes(link.attributes, 0x22),
            b"\x28" + _varint(link.dropped_attributes) if link.dropped_attributes else b"",
            b"\x35" + _FIXED32(_flags(link.context))))
        parts.append(_len_field(0x6A, body))
    if span.dropped_links:
        parts.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status is not None:
        body = b""
        if status.description:
            body += _len_field(0x12, status.description.encode())
        if status.status_code.value:
            body += b"\x18" + _varint(status.status_code.value)
        parts.append(_len_field(0x7A, body))
    parts.append(b"\x85\x01" + _FIXED32(_flags(parent)))  # field 16, fixed32
    return _len_field(0x12, b"".join(parts))  # ScopeSpans.spans


def _scope(scope: Any) -> bytes:
    if scope is None:
        return _len_field(0x0A, b"")
    body = b"".join((
        _len_field(0x0A, scope.name.encode()) if scope.name else b"",
        _len_field(0x12, scope.version.encode()) if scope.version else b"",
        _attributes(scope.attributes, 0x1A)))
    return _len_field(0x0A, body)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """A serialised ExportTraceServiceRequest of `spans`, grouped by resource, then by
    instrumentation scope, as the OTel encoder groups them."""
    # Grouped by identity (a Resource's hash dumps its attributes to JSON), then equal
    # resources or scopes that are distinct objects are folded together.
    resources: dict[int, Any] = {}
    groups: dict[int, dict[int, list[bytes]]] = {}
    scopes: dict[int, Any] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        r = id(resource)
        if r not in resources:
            r = next((k for k, v in resources.items() if v == resource), r)
            resources.setdefault(r, resource)
        s = id(scope)
        if s not in scopes:
            s = next((k for k, v in scopes.items() if v == scope), s)
            scopes.setdefault(s, scope)
        groups.setdefault(r, {}).setdefault(s, []).append(_span(span))
    # Written with one join: a batch is hundreds of KB, and each nested `_len_field` copied
    # all of it again (1.6 us a span of a dozen attributes, in 512-span batches).
    out: list[bytes] = []
    for r, by_scope in groups.items():
        resource = resources[r]
        head = _len_field(0x0A, _attributes(resource.attributes, 0x0A))
        pieces, size = [head], len(head)
        for s, encoded in by_scope.items():
            scope = scopes[s]
            first = _scope(scope)
            last = (_len_field(0x1A, scope.schema_url.encode())
                    if scope is not None and scope.schema_url else b"")
            length = len(first) + sum(map(len, encoded)) + len(last)
            tag = b"\x12" + _varint(length)  # ResourceSpans.scope_spans
            pieces.append(tag)
            pieces.append(first)
            pieces.extend(encoded)
            pieces.append(last)
            size += len(tag) + length
        if resource.schema_url:
            last = _len_field(0x1A, resource.schema_url.encode())
            pieces.append(last)
            size += len(last)
        out.append(b"\x0a" + _varint(size))  # ExportTraceServiceRequest.resource_spans
        out.extend(pieces)
    return b"".join(out)


class _ExportBytesStub:
    """TraceService's Export, taking the request already serialised (`encode_spans`): the
    OTel stub would take a message, which costs a parse of our bytes and a serialisation
    again, about 2 us per span of a dozen attributes."""

    def __init__(self, channel: Any):
        self.Export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,  # bytes go as they are
            response_deserializer=ExportTraceServiceResponse.FromString)


class SpanExporter(OTLPSpanExporter):
    """The OTel OTLP/gRPC exporter (its channel, retries, TLS and OTEL_EXPORTER_OTLP_* settings)
    sending the batch as encoded here; should that fail, the OTel encoder takes over
    (counted)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The OTel exporter makes its client with `self._stub(channel)`, at start and again
        # when it reconnects (OTel exporter 1.3x); one that does neither keeps its own stub,
        # and is sent a message (`_translate_data`).
        channel = getattr(self, "_channel", None)
        if channel is not None and hasattr(self, "_stub"):
            self._stub = _ExportBytesStub
            self._client = _ExportBytesStub(channel)

    def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
        raw = isinstance(self._client, _ExportBytesStub)
        try:
            encoded = encode_spans(data)
            return encoded if raw else ExportTraceServiceRequest.FromString(encoded)
        except Exception as exc:
            _state.record_failure("encode spans", exc)
            request = super()._translate_data(data)
            return request.SerializeToString() if raw else request
