"""Google Gen AI (`google-genai`): `client.models.generate_content` and
`generate_content_stream`, sync and `client.aio`, for the Gemini API and Vertex AI.

Usage:
    infersight.instrument()   # patches google.genai when it is imported, before or after

One span per request sent to the API, not per public call: `generate_content` may send several
(automatic function calling, automatic continuation), each billed on its own, so the patch sits
on the per-request methods `Models._generate_content` and `_generate_content_stream` (and the
`AsyncModels` twins) that every public path, `chats` included, goes through.

Tokens follow the contract: `prompt_token_count` already includes cached content (recorded
apart as cache reads) and tool-use prompt tokens are input too; thinking tokens are billed as
output, so output is candidates + thoughts, with thoughts recorded as reasoning tokens. A stream
reports cumulative usage on its chunks; the last one counts.
"""

from __future__ import annotations

import json
from typing import Any

from .. import _state
from .. import attributes as A
from . import (Instrumentor, Operation, Window, choice_attributes, finish_attributes,
               tool_call_attributes)

GEMINI = "gcp.gemini"
VERTEX = "gcp.vertex_ai"
_MODELS = "google.genai.models"


class GoogleGenAIInstrumentor(Instrumentor):
    module = "google.genai.models"

    def patches(self):
        return [
            (_MODELS, "Models._generate_content", GENERATE.wrapper()),
            (_MODELS, "Models._generate_content_stream", GENERATE_STREAM.wrapper()),
            (_MODELS, "AsyncModels._generate_content", GENERATE.async_wrapper()),
            (_MODELS, "AsyncModels._generate_content_stream", GENERATE_STREAM.async_wrapper()),
        ]


# ---- pure extraction -------------------------------------------------------------------

def _field(obj: Any, name: str) -> Any:
    """A field of a config given as a pydantic model or as a dict."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def request_attributes(instance: Any, _args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    vertex = getattr(getattr(instance, "_api_client", None), "vertexai", False)
    attrs: dict[str, Any] = {A.OPERATION: "chat", A.PROVIDER: VERTEX if vertex else GEMINI}
    model = kwargs.get("model")
    if isinstance(model, str):
        attrs[A.REQUEST_MODEL] = model
    config = kwargs.get("config")
    if config is not None:
        max_tokens = _field(config, "max_output_tokens")
        if isinstance(max_tokens, int):
            attrs[A.REQUEST_MAX_TOKENS] = max_tokens
        temperature = _field(config, "temperature")
        if isinstance(temperature, (int, float)):
            attrs[A.REQUEST_TEMPERATURE] = float(temperature)
    if _state.capture_content and kwargs.get("contents") is not None:
        attrs[A.INPUT_MESSAGES] = json.dumps(_jsonable(kwargs["contents"]), default=str)
    return attrs


def usage_attributes(usage: Any) -> dict[str, int]:
    thoughts = usage.thoughts_token_count or 0
    cached = usage.cached_content_token_count or 0
    attrs = {
        A.INPUT_TOKENS: (usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
        A.OUTPUT_TOKENS: (usage.candidates_token_count or 0) + thoughts,
    }
    if cached:
        attrs[A.CACHE_READ_TOKENS] = cached
    if thoughts:
        attrs[A.REASONING_TOKENS] = thoughts
    return attrs


def _reason(candidate: Any) -> str | None:
    reason = candidate.finish_reason
    return getattr(reason, "value", reason) if reason else None


def _tool_names(candidate: Any) -> list[str]:
    content = candidate.content
    return [part.function_call.name or "" for part in (content.parts if content else None) or ()
            if part.function_call is not None]


def _text(candidate: Any) -> str:
    content = candidate.content
    return "".join(part.text for part in (content.parts if content else None) or ()
                   if part.text and not part.thought)


def response_attributes(response: Any, request_model: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if response.model_version:
        attrs[A.RESPONSE_MODEL] = response.model_version
    if response.response_id:
        attrs[A.RESPONSE_ID] = response.response_id
    candidates = response.candidates or ()
    reasons = [r for r in map(_reason, candidates) if r]
    if reasons:
        attrs[A.FINISH_REASONS] = reasons
    tool_call_attributes(attrs, [name for c in candidates for name in _tool_names(c)])
    if response.usage_metadata is not None:
        attrs.update(usage_attributes(response.usage_metadata))
    if _state.capture_content:
        attrs[A.OUTPUT_MESSAGES] = json.dumps(
            [_jsonable(c.content) for c in candidates if c.content is not None], default=str)
    finish_attributes(attrs, request_model)
    return attrs


class ChunkAccumulator:
    """Chunks of a streamed response: each may carry cumulative usage, the served model and a
    finish reason per candidate; function calls arrive whole, each in one chunk."""

    def __init__(self, request_model: str | None):
        self.request_model = request_model
        self.model: str | None = None
        self.id: str | None = None
        self.usage: Any = None
        self.reasons: dict[int, str] = {}
        self.tools: list[str] = []
        self.text: dict[int, list[str]] = {}

    def add(self, chunk: Any) -> None:
        self.model = chunk.model_version or self.model
        self.id = chunk.response_id or self.id
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata
        for position, candidate in enumerate(chunk.candidates or ()):
            index = candidate.index if candidate.index is not None else position
            reason = _reason(candidate)
            if reason:
                self.reasons[index] = reason
            self.tools.extend(_tool_names(candidate))
            if _state.capture_content:
                self.text.setdefault(index, []).append(_text(candidate))

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.model:
            attrs[A.RESPONSE_MODEL] = self.model
        if self.id:
            attrs[A.RESPONSE_ID] = self.id
        choice_attributes(attrs, self.reasons, self.text, "model")
        tool_call_attributes(attrs, self.tools)
        if self.usage is not None:
            attrs.update(usage_attributes(self.usage))
        finish_attributes(attrs, self.request_model)
        return attrs


GENERATE = Operation("google_genai", request_attributes, response_attributes)
GENERATE_STREAM = Operation("google_genai", request_attributes, response_attributes,
                            lambda _args, kwargs, attrs: _chunks(kwargs, attrs))


def _chunks(kwargs: dict[str, Any], attrs: dict[str, Any]) -> Any:
    accumulator = ChunkAccumulator(attrs.get(A.REQUEST_MODEL))
    config = kwargs.get("config")
    if (_state.capture_content or config is not None and (
            _field(config, "tools") or (_field(config, "candidate_count") or 1) != 1)):
        return accumulator
    # One candidate, no function to call and no text recorded: the model and id ride every
    # chunk, the finish reason and the final (cumulative) usage the last one.
    return Window(accumulator, _finishes, "google_genai")


def _finishes(chunk: Any) -> bool:
    return any(_reason(candidate) for candidate in chunk.candidates or ())
