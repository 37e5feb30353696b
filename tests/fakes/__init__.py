"""Loopback servers speaking other providers' wire formats, for the SDK tests.

Each fake answers with replies derived from `Reply` (collector/infersight_collector/
fake_provider.py) so the tests queue exact token counts the same way for every provider.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Iterable

from infersight_collector.fake_provider import Reply, _Server

# What a fake's route returns: status, content type, and the body (bytes, or chunks to stream).
Answer = tuple[int, str, "bytes | Iterable[bytes]"]


class LoopbackServer:
    """An HTTP server on a free loopback port; `route(path, body, reply)` answers each POST."""

    def __init__(self, route: Callable[[str, dict[str, Any], Reply], Answer]):
        self.route = route
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._queued: deque[Reply] = deque()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def expect(self, *replies: Reply) -> None:
        self._queued.extend(replies)

    def __enter__(self) -> "LoopbackServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw or b"{}")
                fake.requests.append((self.path, body))
                reply = fake._queued.popleft() if fake._queued else Reply()
                status, content_type, payload = fake.route(self.path, body, reply)
                self.send_response(status)
                self.send_header("content-type", content_type)
                if isinstance(payload, bytes):
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in payload:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client closed the stream early

        return Handler


def words(text: str) -> list[str]:
    return [w + " " for w in text.split(" ")] if text else []


def error_answer(reply: Reply) -> Answer:
    return reply.status, "application/json", json.dumps(
        {"message": f"fake {reply.error_type}", "error": {
            "code": reply.status, "message": f"fake {reply.error_type}",
            "status": reply.error_type}}).encode()
