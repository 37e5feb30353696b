"""A loopback AWS Bedrock Runtime: Converse (JSON), ConverseStream (the binary AWS event-stream
encoding) and InvokeModel with Anthropic and Llama bodies.

boto3 reaches it with `endpoint_url=fake.url` and dummy credentials; its requests are signed
as usual and the signature is not checked.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any
from urllib.parse import unquote

from infersight_collector.fake_provider import Reply

from . import Answer, error_answer, words

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return (struct.pack("B", len(name_bytes)) + name_bytes + b"\x07"  # 7: string value
            + struct.pack(">H", len(value_bytes)) + value_bytes)


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message of the AWS event-stream encoding: prelude (total and headers length, CRC32),
    headers, JSON payload, CRC32 of the whole message."""
    headers = (_header(":event-type", event_type) + _header(":content-type", "application/json")
               + _header(":message-type", "event"))
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def _usage(reply: Reply) -> dict[str, int]:
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else 10
    completion = (reply.completion_tokens if reply.completion_tokens is not None
                  else len(words(reply.content)))
    usage = {"inputTokens": prompt, "outputTokens": completion,
             "totalTokens": prompt + completion + reply.cached_tokens + reply.cache_write_tokens}
    if reply.cached_tokens:
        usage["cacheReadInputTokens"] = reply.cached_tokens
    if reply.cache_write_tokens:
        usage["cacheWriteInputTokens"] = reply.cache_write_tokens
    return usage


def _content(reply: Reply) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"text": reply.content}] if reply.content else []
    return content + [{"toolUse": {"toolUseId": f"tu{i}", "name": name, "input": {}}}
                      for i, name in enumerate(reply.tool_calls)]


def _converse(reply: Reply) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": _content(reply)}},
            "stopReason": _STOP.get(reply.finish_reason, reply.finish_reason),
            "usage": _usage(reply), "metrics": {"latencyMs": 12}}


def _converse_events(reply: Reply):
    yield event_message("messageStart", {"role": "assistant"})
    for index, block in enumerate(_content(reply)):
        if "toolUse" in block:
            tool = block["toolUse"]
            yield event_message("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}})
            yield event_message("contentBlockDelta", {"contentBlockIndex": index,
                                                      "delta": {"toolUse": {"input": "{}"}}})
        else:
            for word in words(block["text"]):
                yield event_message("contentBlockDelta", {"contentBlockIndex": index,
                                                          "delta": {"text": word}})
        yield event_message("contentBlockStop", {"contentBlockIndex": index})
    yield event_message("messageStop", {"stopReason": _STOP.get(reply.finish_reason,
                                                                reply.finish_reason)})
    yield event_message("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 12}})


def _invoke(model_id: str, reply: Reply) -> dict[str, Any]:
    usage = _usage(reply)
    if "anthropic." in model_id:
        return {"id": "msg_bdrk_1", "type": "message", "role": "assistant",
                "model": reply.model or "claude-3-5-haiku-20241022",
                "content": [{"type": "text", "text": reply.content}],
                "stop_reason": _STOP.get(reply.finish_reason, reply.finish_reason),
                "usage": {"input_tokens": usage["inputTokens"],
                          "output_tokens": usage["outputTokens"],
                          "cache_read_input_tokens": reply.cached_tokens,
                          "cache_creation_input_tokens": reply.cache_write_tokens}}
    return {"generation": reply.content, "prompt_token_count": usage["inputTokens"],
            "generation_token_count": usage["outputTokens"], "stop_reason": reply.finish_reason}


def route(path: str, _body: dict[str, Any], reply: Reply) -> Answer:
    if reply.status != 200:
        return error_answer(reply)
    _, _, model_id, action = unquote(path).split("/", 3)
    if action == "converse":
        return 200, "application/json", json.dumps(_converse(reply)).encode()
    if action == "converse-stream":
        return 200, "application/vnd.amazon.eventstream", _converse_events(reply)
    if action == "invoke":
        return 200, "application/json", json.dumps(_invoke(model_id, reply)).encode()
    return 404, "application/json", b'{"message": "no route"}'
