"""A loopback HTTP server that speaks the OpenAI chat-completions wire format (JSON and SSE).

The demo sends its traffic through it, and the tests drive the real `openai` client against
it, so both exercise the real HTTP path with no network. Replies are deterministic: tests
queue exact ones with `expect()`, otherwise `default_reply` derives one from the request.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    content: str = "Hello from the fake provider."
    model: str | None = None  # served model; defaults to the requested one
    prompt_tokens: int | None = None  # default: derived from the request's words
    completion_tokens: int | None = None  # default: words of `content`
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    token_logprob: float = -0.1  # logprob of every output token, when logprobs were asked for
    finish_reason: str = "stop"
    status: int = 200
    error_type: str = "server_error"
    delay_s: float = 0.0  # before the response starts
    system_fingerprint: str = "fp_fake"


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is normal
            super().handle_error(request, client_address)


def default_reply(body: dict[str, Any]) -> Reply:
    return Reply()


def _words(text: str) -> list[str]:
    return [w + " " for w in text.split(" ")] if text else []


class FakeOpenAI:
    """`with FakeOpenAI() as fake: OpenAI(base_url=fake.base_url, api_key="x")`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 responder: Callable[[dict[str, Any]], Reply] = default_reply):
        self.responder = responder
        self.requests: list[Request] = []
        self._queued: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def expect(self, *replies: Reply) -> None:
        """Queue exact replies for the next requests, in order."""
        with self._lock:
            self._queued.extend(replies)

    def start(self) -> "FakeOpenAI":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                         name="fake-openai")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queued:
                return self._queued.popleft()
        return self.responder(body)

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(Request(self.path, body, dict(self.headers.items())))
                if not self.path.endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": f"no route {self.path}",
                                                      "type": "invalid_request_error"}})
                reply = fake._next_reply(body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    return self._json(reply.status, {"error": {
                        "message": f"fake {reply.error_type}", "type": reply.error_type,
                        "param": None, "code": None}})
                if body.get("stream"):
                    return self._stream(body, reply)
                return self._json(200, _completion(body, reply))

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for event in _chunks(body, reply):
                        self._chunk(f"data: {json.dumps(event)}\n\n".encode())
                    self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client closed the stream early

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = sum(len(str(m.get("content", "")).split()) + 3 for m in body.get("messages", []))
    completion = reply.completion_tokens
    if completion is None:
        completion = len(_words(reply.content)) + reply.reasoning_tokens
    return {
        "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens,
                                      "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def _logprobs(tokens: list[str], reply: Reply) -> dict[str, Any]:
    return {"content": [{"token": t, "logprob": reply.token_logprob, "bytes": list(t.encode()),
                         "top_logprobs": []} for t in tokens], "refusal": None}


def _envelope(body: dict[str, Any], reply: Reply, obj: str, ident: str) -> dict[str, Any]:
    return {"id": ident, "object": obj, "created": int(time.time()),
            "model": reply.model or body.get("model", "unknown"),
            "system_fingerprint": reply.system_fingerprint}


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    out = _envelope(body, reply, "chat.completion", ident)
    n = int(body.get("n") or 1)
    out["choices"] = [{
        "index": i, "finish_reason": reply.finish_reason,
        "message": {"role": "assistant", "content": reply.content, "refusal": None},
        "logprobs": _logprobs(_words(reply.content), reply) if body.get("logprobs") else None,
    } for i in range(n)]
    out["usage"] = _usage(body, reply)
    return out


def _chunks(body: dict[str, Any], reply: Reply):
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    want_logprobs = bool(body.get("logprobs"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None, tokens: list[str] = ()):
        out = _envelope(body, reply, "chat.completion.chunk", ident)
        out["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish,
                           "logprobs": _logprobs(list(tokens), reply) if want_logprobs else None}]
        if include_usage:
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": ""})
    for word in _words(reply.content):
        yield chunk({"content": word}, tokens=[word])
    yield chunk({}, finish=reply.finish_reason)
    if include_usage:
        out = _envelope(body, reply, "chat.completion.chunk", ident)
        out["choices"] = []
        out["usage"] = _usage(body, reply)
        yield out
