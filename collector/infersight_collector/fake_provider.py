"""A loopback HTTP server that speaks the OpenAI and Anthropic wire formats (JSON and SSE).

OpenAI: chat completions, the Responses API, embeddings and legacy completions. Anthropic:
`/v1/messages` with its named-event stream (message_start ... message_stop). The demo sends
its traffic through it, and the tests drive the real `openai` and `anthropic` clients against
it, so both exercise the real HTTP path with no network. Replies are deterministic: tests
queue exact ones with `expect()`, otherwise `default_reply` derives one from the request.
"""

from __future__ import annotations

import base64
import json
import struct
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
    cached_tokens: int = 0  # cache reads (Anthropic: cache_read_input_tokens)
    cache_write_tokens: int = 0  # Anthropic's cache_creation_input_tokens
    reasoning_tokens: int = 0
    tool_calls: tuple[str, ...] = ()  # names of the tools the model calls, with arguments "{}"
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
                route = _route(self.path.split("?")[0])
                if route is None:
                    return self._json(404, {"error": {"message": f"no route {self.path}",
                                                      "type": "invalid_request_error"}})
                reply = fake._next_reply(body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    return self._json(reply.status, {"type": "error", "error": {
                        "message": f"fake {reply.error_type}", "type": reply.error_type,
                        "param": None, "code": None}})
                whole, events, done = route
                if body.get("stream") and events is not None:
                    return self._stream(events(body, reply), done)
                return self._json(200, whole(body, reply))

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, events: Any, done: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for name, event in events:
                        line = f"event: {name}\n" if name else ""
                        self._chunk(f"{line}data: {json.dumps(event)}\n\n".encode())
                    if done:
                        self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client closed the stream early

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        return Handler


def _prompt_tokens(body: dict[str, Any], reply: Reply) -> int:
    if reply.prompt_tokens is not None:
        return reply.prompt_tokens
    if "messages" in body:
        return sum(len(str(m.get("content", "")).split()) + 3 for m in body["messages"])
    return len(str(body.get("input") or body.get("prompt") or "").split()) + 3


def _completion_tokens(reply: Reply) -> int:
    if reply.completion_tokens is not None:
        return reply.completion_tokens
    return len(_words(reply.content)) + reply.reasoning_tokens


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    prompt, completion = _prompt_tokens(body, reply), _completion_tokens(reply)
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


def _ident(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _tool_calls(reply: Reply) -> list[dict[str, Any]] | None:
    return [{"id": _ident("call_"), "type": "function",
             "function": {"name": name, "arguments": "{}"}} for name in reply.tool_calls] or None


# ---- OpenAI chat completions -------------------------------------------------------------

def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    out = _envelope(body, reply, "chat.completion", _ident("chatcmpl-"))
    n = int(body.get("n") or 1)
    out["choices"] = [{
        "index": i, "finish_reason": reply.finish_reason,
        "message": {"role": "assistant", "content": reply.content, "refusal": None,
                    "tool_calls": _tool_calls(reply)},
        "logprobs": _logprobs(_words(reply.content), reply) if body.get("logprobs") else None,
    } for i in range(n)]
    out["usage"] = _usage(body, reply)
    return out


def _chunks(body: dict[str, Any], reply: Reply):
    ident = _ident("chatcmpl-")
    want_logprobs = bool(body.get("logprobs"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None, tokens: list[str] = ()):
        out = _envelope(body, reply, "chat.completion.chunk", ident)
        out["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish,
                           "logprobs": _logprobs(list(tokens), reply) if want_logprobs else None}]
        if include_usage:
            out["usage"] = None
        return None, out

    yield chunk({"role": "assistant", "content": ""})
    for word in _words(reply.content):
        yield chunk({"content": word}, tokens=[word])
    for i, call in enumerate(_tool_calls(reply) or ()):
        yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                     "function": {"name": call["function"]["name"],
                                                  "arguments": ""}}]})
        yield chunk({"tool_calls": [{"index": i, "function": {"arguments": "{}"}}]})
    yield chunk({}, finish=reply.finish_reason)
    if include_usage:
        out = _envelope(body, reply, "chat.completion.chunk", ident)
        out["choices"] = []
        out["usage"] = _usage(body, reply)
        yield None, out


# ---- OpenAI legacy completions -----------------------------------------------------------

def _text_completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    out = _envelope(body, reply, "text_completion", _ident("cmpl-"))
    out["choices"] = [{"index": 0, "text": reply.content, "finish_reason": reply.finish_reason,
                       "logprobs": None}]
    out["usage"] = _usage(body, reply)
    return out


def _text_chunks(body: dict[str, Any], reply: Reply):
    ident = _ident("cmpl-")
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    words = _words(reply.content)
    for i, word in enumerate(words):
        out = _envelope(body, reply, "text_completion", ident)
        finish = reply.finish_reason if i == len(words) - 1 else None
        out["choices"] = [{"index": 0, "text": word, "finish_reason": finish, "logprobs": None}]
        yield None, out
    if include_usage:
        out = _envelope(body, reply, "text_completion", ident)
        out["choices"] = []
        out["usage"] = _usage(body, reply)
        yield None, out


# ---- OpenAI Responses API ------------------------------------------------------------------

def _response(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    output: list[dict[str, Any]] = [
        {"type": "function_call", "id": _ident("fc_"), "call_id": _ident("call_"),
         "name": name, "arguments": "{}", "status": "completed"} for name in reply.tool_calls]
    if reply.content:
        output.append({"type": "message", "id": _ident("msg_"), "role": "assistant",
                       "status": "completed", "content": [
                           {"type": "output_text", "text": reply.content, "annotations": []}]})
    prompt, completion = _prompt_tokens(body, reply), _completion_tokens(reply)
    incomplete = reply.finish_reason == "length"
    return {
        "id": _ident("resp_"), "object": "response", "created_at": int(time.time()),
        "model": reply.model or body.get("model", "unknown"),
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None, "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "usage": {
            "input_tokens": prompt, "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_tokens_details": {"cached_tokens": reply.cached_tokens},
            "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens}},
    }


def _response_events(body: dict[str, Any], reply: Reply):
    final = _response(body, reply)
    started = {**final, "status": "in_progress", "output": [], "usage": None,
               "incomplete_details": None}
    seq = iter(range(1, 10_000))
    yield "response.created", {"type": "response.created", "sequence_number": 0,
                               "response": started}
    for index, item in enumerate(final["output"]):
        empty = {**item, "content": []} if item["type"] == "message" else {**item, "arguments": ""}
        yield "response.output_item.added", {"type": "response.output_item.added",
                                             "sequence_number": next(seq),
                                             "output_index": index, "item": empty}
        for part_index, part in enumerate(item.get("content", ())):
            common = {"item_id": item["id"], "output_index": index, "content_index": part_index}
            yield "response.content_part.added", {
                "type": "response.content_part.added", "sequence_number": next(seq),
                "part": {**part, "text": ""}, **common}
            for word in _words(part["text"]):
                yield "response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": next(seq),
                    "delta": word, "logprobs": [], **common}
        yield "response.output_item.done", {"type": "response.output_item.done",
                                            "sequence_number": next(seq),
                                            "output_index": index, "item": item}
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield kind, {"type": kind, "sequence_number": next(seq), "response": final}


# ---- OpenAI embeddings ---------------------------------------------------------------------

EMBEDDING_DIMENSIONS = 8


def _embedding(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    vector = [i / EMBEDDING_DIMENSIONS for i in range(EMBEDDING_DIMENSIONS)]
    if body.get("encoding_format") == "base64":  # what the openai client asks for by default
        encoded: Any = base64.b64encode(struct.pack(f"{len(vector)}f", *vector)).decode()
    else:
        encoded = vector
    prompt = _prompt_tokens(body, reply)
    return {"object": "list", "model": reply.model or body.get("model", "unknown"),
            "data": [{"object": "embedding", "index": i, "embedding": encoded}
                     for i in range(len(inputs))],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


# ---- Anthropic messages --------------------------------------------------------------------

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _anthropic_usage(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Anthropic's `input_tokens` leaves out cache reads and writes, which come apart."""
    return {"input_tokens": _prompt_tokens(body, reply),
            "output_tokens": _completion_tokens(reply),
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens}


def _message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.content}] if reply.content \
        else []
    content += [{"type": "tool_use", "id": _ident("toolu_"), "name": name, "input": {}}
                for name in reply.tool_calls]
    return {"id": _ident("msg_"), "type": "message", "role": "assistant",
            "model": reply.model or body.get("model", "unknown"), "content": content,
            "stop_reason": _STOP_REASONS.get(reply.finish_reason, reply.finish_reason),
            "stop_sequence": None, "usage": _anthropic_usage(body, reply)}


def _message_events(body: dict[str, Any], reply: Reply):
    whole = _message(body, reply)
    usage = whole["usage"]
    start = {**whole, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}  # as the API does: final count comes last
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(whole["content"]):
        if block["type"] == "text":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}}
            for word in _words(block["text"]):
                yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": word}}
        else:
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {**block, "input": {}}}
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "input_json_delta",
                                                    "partial_json": "{}"}}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": whole["stop_reason"], "stop_sequence": None},
                            "usage": {"output_tokens": usage["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


# Path suffix -> (whole reply, stream events or None, whether the stream ends with [DONE]).
# "/chat/completions" comes before "/completions", which it ends with.
_ROUTES = (
    ("/chat/completions", _completion, _chunks, True),
    ("/completions", _text_completion, _text_chunks, True),
    ("/responses", _response, _response_events, False),
    ("/embeddings", _embedding, None, False),
    ("/messages", _message, _message_events, False),
)


def _route(path: str):
    for suffix, whole, events, done in _ROUTES:
        if path.endswith(suffix):
            return whole, events, done
    return None


class FakeAnthropic(FakeOpenAI):
    """The same server, addressed as Anthropic clients expect:
    `Anthropic(base_url=fake.base_url)`."""

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
