"""A loopback Mistral API: `/v1/chat/completions`, JSON or server-sent events ending in
`[DONE]`, the last chunk carrying the finish reason and usage, as the API sends them.

`mistralai.client.Mistral(api_key="x", server_url=fake.url)` reaches it.
"""

from __future__ import annotations

import json
from typing import Any

from infersight_collector.fake_provider import Reply

from . import Answer, error_answer, words

SERVED = "mistral-large-2411"  # what `mistral-large-latest` is served as, unless the reply says


def _usage(reply: Reply) -> dict[str, Any]:
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else 10
    completion = (reply.completion_tokens if reply.completion_tokens is not None
                  else len(words(reply.content)))
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if reply.cached_tokens:  # inside prompt_tokens, as OpenAI counts them
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    return usage


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [{"id": f"call{i}", "type": "function", "index": i,
             "function": {"name": name, "arguments": "{}"}}
            for i, name in enumerate(reply.tool_calls)]


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls(reply)
    return {"id": "cmpl_mistral_1", "object": "chat.completion", "created": 1700000000,
            "model": reply.model or SERVED,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": _usage(reply)}


def _events(body: dict[str, Any], reply: Reply):
    envelope = {"id": "cmpl_mistral_1", "object": "chat.completion.chunk",
                "created": 1700000000, "model": reply.model or SERVED}
    deltas = [{"role": "assistant", "content": w} for w in words(reply.content)]
    if reply.tool_calls:
        deltas.append({"content": "", "tool_calls": _tool_calls(reply)})
    for i, delta in enumerate(deltas or [{"role": "assistant", "content": ""}]):
        last = i == max(len(deltas), 1) - 1
        chunk = {**envelope, "choices": [{"index": 0, "delta": delta,
                                          "finish_reason": reply.finish_reason if last else None}]}
        if last:
            chunk["usage"] = _usage(reply)
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def route(path: str, body: dict[str, Any], reply: Reply) -> Answer:
    if reply.status != 200:
        return error_answer(reply)
    if path.split("?")[0] != "/v1/chat/completions":
        return 404, "application/json", b'{"message": "no route"}'
    if body.get("stream"):
        return 200, "text/event-stream", _events(body, reply)
    return 200, "application/json", json.dumps(_completion(body, reply)).encode()
