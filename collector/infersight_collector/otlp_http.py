"""OTLP/HTTP receiver: `POST /v1/traces` (port 4318), protobuf or JSON, per the OTLP spec.

- Bodies: `application/x-protobuf` or `application/json` (the OTLP JSON mapping: hex trace and
  span ids, camelCase or snake_case field names, enums as integers, int64 as strings), plain or
  `Content-Encoding: gzip`. The response uses the request's content type.
- 200 with an ExportTraceServiceResponse (partial success for spans with invalid ids), 400 for
  a malformed body, 401 without a valid API key, 404/405 for other paths and methods, 411
  without a length, 413 over the size limit (also after gunzip, so a zip bomb is refused
  while inflating), 415 for other content types or encodings, 429 (queue or spool full) and
  503 (store failing) with `Retry-After`. Error bodies are a google.rpc.Status.

Server: the standard library's ThreadingHTTPServer, not waitress (already a dependency, used
by the dashboard), because the receiver must also speak TLS and waitress has none. A handler
thread per connection, bounded by `max_connections` (the accept loop waits when all are
busy: back-pressure rather than unbounded threads), with a socket timeout so a slow client
cannot hold a thread for ever. With TLS the handshake runs in the connection's own thread.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import ssl
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from infersight.v1.feedback_pb2 import RecordFeedbackResponse

from .auth import ApiKeys, Unauthenticated
from .feedback import InvalidFeedback, record_feedback
from .decode import DEFAULT_LIMITS, Limits
from .decode_pool import DecodePool
from .ingest import Ingest, RetryLater
from .ops import Metrics
from .otlp_grpc import MALFORMED_HINT
from .pipeline import Pipeline

log = logging.getLogger(__name__)

PATH = "/v1/traces"
FEEDBACK_PATH = "/v1/feedback"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
CONNECTION_TIMEOUT_S = 30.0
_CHUNK = 64 * 1024


class _Refused(Exception):
    """A request refused whole: HTTP status, metric reason, message for the client."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason = status, reason


def _hex_to_base64(value: object) -> str:
    """An OTLP/JSON id (hex) as proto3 JSON bytes (base64). An id that is not hex becomes empty,
    so the span is rejected alone (partial success) rather than the whole request."""
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except (TypeError, ValueError):
        return ""


def _fix_ids(container: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in container:
            container[key] = _hex_to_base64(container[key])


_SPAN_IDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
_LINK_IDS = ("traceId", "trace_id", "spanId", "span_id")


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body as a request; ValueError (with the reason) when it is not one."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise ValueError("body is JSON but not an object with `resourceSpans`")
    try:
        for rs in doc.get("resourceSpans") or doc.get("resource_spans") or ():
            for ss in rs.get("scopeSpans") or rs.get("scope_spans") or ():
                for span in ss.get("spans") or ():
                    _fix_ids(span, _SPAN_IDS)
                    for link in span.get("links") or ():
                        _fix_ids(link, _LINK_IDS)
        return json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    # A list where an object belongs, ...; Infinity (which Python's JSON reads) where an
    # integer or enum belongs, which protobuf's int() conversion lets out as OverflowError.
    except (AttributeError, TypeError, OverflowError) as exc:
        raise ValueError(f"not the OTLP JSON shape: {exc}") from None
    except (json_format.ParseError, RecursionError) as exc:
        raise ValueError(str(exc)[:500]) from None


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Refused(400, "malformed", f"Content-Encoding is gzip but the body is not: {exc}")
    if len(out) > limit:
        raise _Refused(413, "too_large", f"body inflates to over the {limit} byte limit; "
                                         "lower the exporter's batch size")
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, ingest: Ingest, max_body_bytes: int,
                 max_connections: int):
        self.ingest = ingest
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_connections)
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, handler)

    def exporting(self, delta: int) -> None:
        with self._idle:
            self._in_flight += delta
            self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no request is being handled (for a graceful shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def process_request(self, request, client_address) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        # A client gone mid-request or a failed TLS handshake: the client's problem, not ours.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT_S
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        json_body = self.headers.get("Content-Type", "").split(";")[0].strip().lower() == JSON
        self.server.exporting(+1)
        try:
            self._answer(json_body)
        finally:
            self.server.exporting(-1)

    def _answer(self, json_body: bool) -> None:
        try:
            response = self._export(json_body)
        except _Refused as exc:
            self.server.ingest.refused("http", exc.reason)
            self._send_status(exc.status, str(exc), json_body)
        except RetryLater as exc:
            self._send_status(429 if exc.overloaded else 503, str(exc), json_body,
                              {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})
        except Exception as exc:  # a bug of ours: answer, log, keep serving
            log.exception("OTLP/HTTP request failed")
            self.close_connection = True
            self._send_status(500, f"internal error: {exc}", json_body)
        else:
            self._send(200, response, json_body)

    def _export(self, json_body: bool):
        path = self.path.split("?", 1)[0]
        if path == FEEDBACK_PATH:
            return self._feedback(json_body)
        if path != PATH:
            raise _Refused(404, "not_found", f"no such path {self.path[:100]!r}; "
                                             f"OTLP traces go to {PATH}, feedback to "
                                             f"{FEEDBACK_PATH}")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in (PROTOBUF, JSON):
            self._skip_body()
            raise _Refused(415, "unsupported_media_type",
                           f"Content-Type {content_type or '(none)'!r} is not supported; "
                           f"send {PROTOBUF} or {JSON}")
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            self._skip_body()
            raise _Refused(415, "unsupported_media_type",
                           f"Content-Encoding {encoding!r} is not supported; send gzip or none")
        project = self._project()
        body = self._read_body()
        if encoding == "gzip":
            body = _gunzip(body, self.server.max_body_bytes)
        if not json_body:
            try:
                return self.server.ingest.export_payload(body, project, "http")
            except DecodeError as exc:
                raise _Refused(400, "malformed",
                               f"{MALFORMED_HINT} ({len(body)} bytes): {exc}") from None
        try:
            request = parse_json(body)
        except ValueError as exc:
            raise _Refused(400, "malformed",
                           f"malformed OTLP/JSON request ({len(body)} bytes): {exc}") from None
        return self.server.ingest.export(request, project, "http")

    def _feedback(self, json_body: bool) -> RecordFeedbackResponse:
        """The Feedback service's JSON twin: the body is a RecordFeedbackRequest as JSON."""
        if not json_body:
            self._skip_body()
            raise _Refused(415, "unsupported_media_type", f"feedback is JSON: send {JSON}")
        project = self._project()
        body = self._read_body()
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _Refused(400, "malformed", f"feedback body is not JSON: {exc}") from None
        try:
            result = record_feedback(self.server.ingest.pipeline.store, data, project)
        except InvalidFeedback as exc:
            raise _Refused(400, "invalid_feedback", str(exc)) from None
        return RecordFeedbackResponse(**result)

    def _project(self) -> str | None:
        """The project of the request's API key (None when keys are off); a request without a
        valid key is refused with 401, its body dropped."""
        try:
            return self.server.ingest.authenticate(self.headers.get("Authorization"))
        except Unauthenticated as exc:
            self._skip_body()
            raise _Refused(401, "unauthenticated", str(exc)) from None

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if self.headers.get("Transfer-Encoding", "").strip().lower() == "chunked":
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise _Refused(411, "no_length", "send Content-Length (or chunked transfer encoding)")
        if int(length) > limit:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise _Refused(413, "too_large", f"body of {int(length)} bytes is over the {limit} "
                                             "byte limit; lower the exporter's batch size")
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            self.close_connection = True
            raise _Refused(400, "malformed", f"body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _Refused(400, "malformed", "bad chunk size in chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise _Refused(413, "too_large", f"chunked body is over the {limit} byte limit; "
                                                 "lower the exporter's batch size")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _skip_body(self) -> None:
        """Drop a small refused body so the connection can be reused; close it otherwise."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= _CHUNK:
            self.rfile.read(int(length))
        elif length != "0":
            self.close_connection = True

    def _send_status(self, code: int, message: str, json_body: bool,
                     headers: dict[str, str] | None = None) -> None:
        self._send(code, Status(code=_GRPC_CODE.get(code, 2), message=message), json_body, headers)

    def _send(self, code: int, message: Message, json_body: bool,
              headers: dict[str, str] | None = None) -> None:
        body = (json_format.MessageToJson(message, indent=None).encode() if json_body
                else message.SerializeToString())
        self.send_response(code)
        self.send_header("Content-Type", JSON if json_body else PROTOBUF)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="infersight"')
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._send_status(405, f"use POST {PATH}", False, {"Allow": "POST"})

    do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args) -> None:
        log.debug("otlp-http %s", format % args)


# The google.rpc.Code that matches each HTTP status we send, for the Status body.
_GRPC_CODE = {500: 13, 400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 429: 8, 503: 14}


def create_http_server(pipeline: Pipeline, host: str = "0.0.0.0", port: int = 4318,
                       max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                       limits: Limits = DEFAULT_LIMITS, api_keys: ApiKeys | None = None,
                       metrics: Metrics | None = None, tls: tuple[str, str] | None = None,
                       max_connections: int = 256,
                       decode_pool: DecodePool | None = None) -> ThreadingHTTPServer:
    """A bound, not yet serving OTLP/HTTP server; run `serve_forever()` in a thread and
    `shutdown()` to stop. `tls` is (certificate file, private key file), both PEM."""
    try:
        ingest = Ingest(pipeline, limits, api_keys, metrics, decode_pool)
        server = _Server((host, port), _Handler, ingest, max_body_bytes, max_connections)
    except OSError as exc:
        raise OSError(f"cannot listen for OTLP/HTTP on {host}:{port} ({exc}); "
                      "is the port in use?") from exc
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    return server
