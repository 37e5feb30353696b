"""Mistral (`mistralai`): `chat.complete` and `chat.stream`, sync and async (`complete_async`,
`stream_async`); `chat.parse*` go through them and are traced once.

Usage:
    infersight.instrument()   # patches mistralai when it is imported, before or after

Mistral's usage is OpenAI-shaped: prompt tokens include cached ones (`prompt_tokens_details.
cached_tokens`, recorded apart as cache reads). A stream's last chunk carries the usage.

`mistralai` can emit its own spans (scope "mistralai_sdk_tracer") with `gen_ai.usage.*`; it
does only when asked (`telemetry=` on the client, MISTRAL_SDK_TELEMETRY, or
`configure_telemetry`), and then counts each call a second time: see the README.
"""

from __future__ import annotations

import json
from typing import Any

from .. import _state
from .. import attributes as A
from . import (Instrumentor, Operation, Window, choice_attributes, finish_attributes,
               tool_call_attributes)
from . import openai as _openai

PROVIDER = "mistral_ai"
_CHAT = "mistralai.client.chat"


class MistralInstrumentor(Instrumentor):
    module = _CHAT

    def patches(self):
        return [
            (_CHAT, "Chat.complete", COMPLETE.wrapper()),
            (_CHAT, "Chat.complete_async", COMPLETE.async_wrapper()),
            (_CHAT, "Chat.stream", STREAM.wrapper()),
            (_CHAT, "Chat.stream_async", STREAM.async_wrapper()),
        ]


# ---- pure extraction -------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


def request_attributes(_instance: Any, _args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {A.OPERATION: "chat", A.PROVIDER: PROVIDER}
    model = kwargs.get("model")
    if isinstance(model, str):
        attrs[A.REQUEST_MODEL] = model
    max_tokens = kwargs.get("max_tokens")  # UNSET, a sentinel, when not given
    if isinstance(max_tokens, int):
        attrs[A.REQUEST_MAX_TOKENS] = max_tokens
    temperature = kwargs.get("temperature")
    if isinstance(temperature, (int, float)):
        attrs[A.REQUEST_TEMPERATURE] = float(temperature)
    if _state.capture_content and kwargs.get("messages") is not None:
        attrs[A.INPUT_MESSAGES] = json.dumps([_jsonable(m) for m in kwargs["messages"]],
                                             default=str)
    return attrs


def usage_attributes(usage: Any) -> dict[str, int]:
    attrs = {A.INPUT_TOKENS: usage.prompt_tokens or 0,
             A.OUTPUT_TOKENS: usage.completion_tokens or 0}
    # Not in the SDK's model (kept as an extra field): {"cached_tokens": n}.
    details = (getattr(usage, "model_extra", None) or {}).get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if isinstance(cached, int) and cached:
        attrs[A.CACHE_READ_TOKENS] = cached
    return attrs


def _tool_names(message: Any) -> list[str]:
    calls = getattr(message, "tool_calls", None)
    return [call.function.name for call in calls] if isinstance(calls, list) else []


def _envelope(response: Any, attrs: dict[str, Any]) -> None:
    if getattr(response, "model", None):
        attrs[A.RESPONSE_MODEL] = response.model
    if getattr(response, "id", None):
        attrs[A.RESPONSE_ID] = response.id


def response_attributes(response: Any, request_model: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    _envelope(response, attrs)
    choices = response.choices or ()
    reasons = [str(c.finish_reason) for c in choices if c.finish_reason]
    if reasons:
        attrs[A.FINISH_REASONS] = reasons
    tool_call_attributes(attrs, [name for c in choices for name in _tool_names(c.message)])
    if response.usage is not None:
        attrs.update(usage_attributes(response.usage))
    if _state.capture_content:
        attrs[A.OUTPUT_MESSAGES] = json.dumps([_jsonable(c.message) for c in choices],
                                              default=str)
    finish_attributes(attrs, request_model)
    return attrs


class ChunkAccumulator:
    """CompletionEvents of a stream: `event.data` is an OpenAI-shaped chunk; tool calls arrive
    whole, each in one delta."""

    def __init__(self, request_model: str | None):
        self.request_model = request_model
        self.envelope: dict[str, Any] = {}
        self.usage: Any = None
        self.reasons: dict[int, str] = {}
        self.tools: list[str] = []
        self.text: dict[int, list[str]] = {}

    def add(self, event: Any) -> None:
        chunk = event.data
        if not self.envelope:
            _envelope(chunk, self.envelope)
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.finish_reason:
                self.reasons[choice.index] = str(choice.finish_reason)
            self.tools.extend(_tool_names(choice.delta))
            if _state.capture_content and isinstance(choice.delta.content, str):
                self.text.setdefault(choice.index, []).append(choice.delta.content)

    def attributes(self) -> dict[str, Any]:
        attrs = dict(self.envelope)
        choice_attributes(attrs, self.reasons, self.text, "assistant")
        tool_call_attributes(attrs, self.tools)
        if self.usage is not None:
            attrs.update(usage_attributes(self.usage))
        finish_attributes(attrs, self.request_model)
        return attrs


def _chunks(_args: tuple, kwargs: dict[str, Any], attrs: dict[str, Any]) -> Any:
    accumulator = ChunkAccumulator(attrs.get(A.REQUEST_MODEL))
    # UNSET, the SDK's sentinel for a parameter not given, is false.
    if _state.capture_content or kwargs.get("tools") or (kwargs.get("n") or 1) != 1:
        return accumulator
    # One choice, no tool to call and no text recorded: as OpenAI's (`openai._chat_stream`).
    return Window(accumulator, _finishes, "mistral")


def _finishes(event: Any) -> bool:
    return _openai.finishes(event.data)


COMPLETE = Operation("mistral", request_attributes, response_attributes)
STREAM = Operation("mistral", request_attributes, response_attributes, _chunks)
