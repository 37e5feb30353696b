"""A loopback Gemini API (`generativelanguage`): `models/{model}:generateContent` (JSON) and
`:streamGenerateContent?alt=sse` (server-sent events, cumulative usage on every chunk, as the
API sends it).

`google.genai.Client(api_key="x", http_options={"base_url": fake.url})` reaches it.
"""

from __future__ import annotations

import json
from typing import Any

from infersight_collector.fake_provider import Reply

from . import Answer, error_answer, words

_STOP = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
SERVED = "gemini-2.5-flash"  # the model version the fake reports when the reply names none


def _usage(reply: Reply, completion: int | None = None) -> dict[str, int]:
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else 10
    if completion is None:
        completion = (reply.completion_tokens if reply.completion_tokens is not None
                      else len(words(reply.content)))
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": completion,
             "totalTokenCount": prompt + completion + reply.reasoning_tokens}
    if reply.cached_tokens:  # Gemini counts cached content inside promptTokenCount
        usage["cachedContentTokenCount"] = reply.cached_tokens
    if reply.reasoning_tokens:
        usage["thoughtsTokenCount"] = reply.reasoning_tokens
    return usage


def _parts(reply: Reply, text: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    return parts + [{"functionCall": {"name": name, "args": {}}} for name in reply.tool_calls]


def _response(reply: Reply, parts: list[dict[str, Any]], finish: bool,
              usage: dict[str, int]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = _STOP.get(reply.finish_reason, reply.finish_reason)
    return {"candidates": [candidate], "usageMetadata": usage,
            "modelVersion": reply.model or SERVED, "responseId": "resp_gemini_1"}


def _events(reply: Reply):
    chunks = words(reply.content) or [""]
    for i, word in enumerate(chunks):
        last = i == len(chunks) - 1
        parts = _parts(reply, word) if last else [{"text": word}]
        # Each chunk carries the usage so far; the last one the final counts.
        usage = _usage(reply) if last else _usage(reply, completion=i + 1)
        payload = json.dumps(_response(reply, parts, last, usage))
        yield f"data: {payload}\r\n\r\n".encode()


def route(path: str, _body: dict[str, Any], reply: Reply) -> Answer:
    if reply.status != 200:
        return error_answer(reply)
    if ":streamGenerateContent" in path:
        return 200, "text/event-stream", _events(reply)
    if path.endswith(":generateContent"):
        body = _response(reply, _parts(reply, reply.content), True, _usage(reply))
        return 200, "application/json", json.dumps(body).encode()
    return 404, "application/json", b'{"error": {"code": 404, "message": "no route"}}'
