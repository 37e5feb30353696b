"""LiteLLM: `litellm.completion` and `litellm.acompletion` (incl. `stream=True`), whatever
provider they route to.

Usage:
    infersight.instrument()   # patches litellm when it is imported, before or after

One span per call. LiteLLM reaches some providers through their own SDK (OpenAI and
OpenAI-compatible servers through `openai`, for instance): the LiteLLM span is exclusive, so
the SDK call underneath adds no second span for the same call and tokens are counted once.

LiteLLM answers in OpenAI's shape whatever the provider, so OpenAI's usage extraction reads
it; its prompt tokens already include cache reads and writes (the contract), and Anthropic's
cache writes, which OpenAI's shape has no field for, come from
`usage.cache_creation_input_tokens`.
The provider is named from the model's prefix (`anthropic/...`) or `custom_llm_provider`,
else from what LiteLLM reports it used, in `gen_ai.provider.name` values.
"""

from __future__ import annotations

import json
from typing import Any

from .. import _state
from .. import attributes as A
from . import Instrumentor, Operation, choice_attributes, finish_attributes, tool_call_attributes
from . import openai as _openai

# LiteLLM's provider names -> gen_ai.provider.name (semantic-convention values where the
# convention has one); a name not listed is kept as LiteLLM spells it.
_PROVIDERS = {
    "openai": "openai", "text-completion-openai": "openai", "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference", "anthropic": "anthropic", "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai", "vertex_ai_beta": "gcp.vertex_ai", "bedrock": "aws.bedrock",
    "mistral": "mistral_ai", "cohere": "cohere", "cohere_chat": "cohere", "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai", "ollama_chat": "ollama", "hosted_vllm": "vllm",
}


class LiteLLMInstrumentor(Instrumentor):
    module = "litellm"

    def patches(self):
        return [
            ("litellm", "completion", COMPLETION.wrapper()),
            ("litellm", "acompletion", COMPLETION.async_wrapper()),
        ]


def provider_name(litellm_provider: str) -> str:
    return _PROVIDERS.get(litellm_provider, litellm_provider)


# ---- pure extraction -------------------------------------------------------------------

def request_attributes(_instance: Any, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    model = kwargs.get("model", args[0] if args else None)
    attrs = _openai.chat_request(None, (), {**kwargs, "model": model})
    del attrs[A.PROVIDER]  # known below, or from the response
    routed = kwargs.get("custom_llm_provider")
    if not isinstance(routed, str) and isinstance(model, str) and "/" in model:
        routed = model.split("/", 1)[0]
    if isinstance(routed, str):
        attrs[A.PROVIDER] = provider_name(routed)
    return attrs


def usage_attributes(usage: Any) -> dict[str, int]:
    """OpenAI's usage fields, plus the cache writes LiteLLM adds for Anthropic."""
    attrs = _openai.usage_attributes(usage)
    cache_write = getattr(usage, "cache_creation_input_tokens", None)
    if isinstance(cache_write, int) and cache_write:
        attrs[A.CACHE_WRITE_TOKENS] = cache_write
    return attrs


def _tool_names(message: Any) -> list[str]:
    return [_openai._tool_name(c) or "" for c in getattr(message, "tool_calls", None) or ()]


def _finish(attrs: dict[str, Any], model: str | None, id_: str | None, usage: Any,
            routed: Any, request_model: str | None) -> dict[str, Any]:
    if model:
        attrs[A.RESPONSE_MODEL] = model
    if id_:
        attrs[A.RESPONSE_ID] = id_
    if usage is not None:
        attrs.update(usage_attributes(usage))
    if isinstance(routed, str) and routed:
        attrs[A.PROVIDER] = provider_name(routed)  # picks a host's own price in add_cost
    finish_attributes(attrs, request_model)
    return attrs


def response_attributes(response: Any, request_model: str | None) -> dict[str, Any]:
    """A LiteLLM ModelResponse (OpenAI's shape; its choices lack fields OpenAI always has)."""
    attrs: dict[str, Any] = {}
    choices = getattr(response, "choices", None) or ()
    reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
    if reasons:
        attrs[A.FINISH_REASONS] = reasons
    tool_call_attributes(attrs, [n for c in choices for n in _tool_names(c.message)])
    if _state.capture_content:
        attrs[A.OUTPUT_MESSAGES] = json.dumps(
            [c.message.model_dump(exclude_none=True) for c in choices], default=str)
    hidden = getattr(response, "_hidden_params", None) or {}
    return _finish(attrs, getattr(response, "model", None), getattr(response, "id", None),
                   getattr(response, "usage", None), hidden.get("custom_llm_provider"),
                   request_model)


class ChunkAccumulator:
    """LiteLLM's stream chunks: usage comes on the last one when the caller asks for it
    (`stream_options={"include_usage": True}`)."""

    def __init__(self, request_model: str | None):
        self.request_model = request_model
        self.routed: str | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.usage: Any = None
        self.reasons: dict[int, str] = {}
        self.tools: dict[tuple[int, int], str] = {}
        self.text: dict[int, list[str]] = {}

    def add(self, chunk: Any) -> None:
        if self.model is None and getattr(chunk, "model", None):
            self.model, self.id = chunk.model, getattr(chunk, "id", None)
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or ():
            if getattr(choice, "finish_reason", None):
                self.reasons[choice.index] = choice.finish_reason
            delta = getattr(choice, "delta", None)
            for call in getattr(delta, "tool_calls", None) or ():
                name = _openai._tool_name(call)
                if name:
                    self.tools[(choice.index, call.index)] = name
            if _state.capture_content and getattr(delta, "content", None):
                self.text.setdefault(choice.index, []).append(delta.content)

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        choice_attributes(attrs, self.reasons, self.text, "assistant")
        tool_call_attributes(attrs, [self.tools[k] for k in sorted(self.tools)])
        return _finish(attrs, self.model, self.id, self.usage, self.routed, self.request_model)


def _accumulate(_args: tuple, kwargs: dict[str, Any], attrs: dict[str, Any]):
    return ChunkAccumulator(attrs.get(A.REQUEST_MODEL)) if kwargs.get("stream") else None


def _attach(result: Any, state: Any, proxy: type) -> Any:
    if not (hasattr(result, "__next__") or hasattr(result, "__anext__")):
        return None
    state.accumulator.routed = getattr(result, "custom_llm_provider", None)
    return proxy(result, state)


COMPLETION = Operation("litellm", request_attributes, response_attributes, _accumulate,
                       _attach, exclusive=True)
