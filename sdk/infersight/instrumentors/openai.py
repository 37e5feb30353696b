"""OpenAI chat completions: sync, async, streaming and async streaming.

Usage:
    infersight.instrument()   # patches openai when it is imported, before or after

Each `chat.completions.create` call becomes one CLIENT span with the attributes of the
Infersight contract: tokens (cached and reasoning included), cost, finish reasons, response
model as model version, time to first chunk for streams, and the mean token probability as
confidence when the caller asked for `logprobs`. Prompt and completion text are recorded only
with `capture_content=True` (or INFERSIGHT_CAPTURE_CONTENT=true).

Extraction is written once as pure functions (request kwargs -> attributes, response ->
attributes, stream chunks -> accumulator); the wrappers are thin shells around them.
"""

from __future__ import annotations

import json
import math
import weakref
from typing import Any

import wrapt

from .. import _state
from .. import attributes as A
from . import Instrumentor, add_cost, end_with_error, now, start_span, suppressed

PROVIDER = "openai"
_COMPLETIONS = "openai.resources.chat.completions"


class OpenAIInstrumentor(Instrumentor):
    module = "openai"

    def patches(self):
        return [
            (_COMPLETIONS, "Completions.create", _create),
            (_COMPLETIONS, "AsyncCompletions.create", _acreate),
        ]


# ---- pure extraction -------------------------------------------------------------------

def request_attributes(kwargs: dict[str, Any]) -> dict[str, Any]:
    model = kwargs.get("model")
    attrs: dict[str, Any] = {A.OPERATION: "chat", A.PROVIDER: PROVIDER}
    if isinstance(model, str):
        attrs[A.REQUEST_MODEL] = model
    max_tokens = kwargs.get("max_completion_tokens") or kwargs.get("max_tokens")
    if isinstance(max_tokens, int):
        attrs[A.REQUEST_MAX_TOKENS] = max_tokens
    temperature = kwargs.get("temperature")
    if isinstance(temperature, (int, float)):
        attrs[A.REQUEST_TEMPERATURE] = float(temperature)
    if _state.capture_content and kwargs.get("messages") is not None:
        attrs[A.INPUT_MESSAGES] = json.dumps(kwargs["messages"], default=str)
    return attrs


def usage_attributes(usage: Any) -> dict[str, int]:
    attrs = {
        A.INPUT_TOKENS: usage.prompt_tokens or 0,
        A.OUTPUT_TOKENS: usage.completion_tokens or 0,
    }
    cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
    if cached:
        attrs[A.CACHE_READ_TOKENS] = cached
    reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None)
    if reasoning:
        attrs[A.REASONING_TOKENS] = reasoning
    return attrs


class _Confidence:
    """Running mean of token probabilities from `logprobs.content`."""

    __slots__ = ("total", "count")

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, logprobs: Any) -> None:
        content = getattr(logprobs, "content", None) if logprobs is not None else None
        for token in content or ():
            self.total += math.exp(token.logprob)
            self.count += 1

    def into(self, attrs: dict[str, Any]) -> None:
        if self.count:
            attrs[A.CONFIDENCE] = self.total / self.count
            attrs[A.CONFIDENCE_METHOD] = "mean_token_prob"


def finish_attributes(attrs: dict[str, Any], request_model: str | None) -> None:
    """Model version and cost, once tokens and the response model are known."""
    model = attrs.get(A.RESPONSE_MODEL) or request_model
    if model:
        attrs[A.MODEL_VERSION] = model
    add_cost(attrs, model)


def response_attributes(response: Any, request_model: str | None) -> dict[str, Any]:
    if not hasattr(response, "choices") and hasattr(response, "parse"):
        response = response.parse()  # with_raw_response; openai caches the parsed object
    attrs: dict[str, Any] = {}
    if getattr(response, "model", None):
        attrs[A.RESPONSE_MODEL] = response.model
    if getattr(response, "id", None):
        attrs[A.RESPONSE_ID] = response.id
    confidence = _Confidence()
    reasons = []
    for choice in response.choices or ():
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
        confidence.add(choice.logprobs)
    if reasons:
        attrs[A.FINISH_REASONS] = reasons
    confidence.into(attrs)
    if response.usage is not None:
        attrs.update(usage_attributes(response.usage))
    if _state.capture_content:
        attrs[A.OUTPUT_MESSAGES] = json.dumps(
            [c.message.model_dump(exclude_none=True) for c in response.choices], default=str)
    finish_attributes(attrs, request_model)
    return attrs


class _StreamState:
    """Accumulates chunks of one stream and ends its span exactly once."""

    def __init__(self, span: Any, request_model: str | None, started: float):
        self.span = span
        self.request_model = request_model
        self.started = started
        self.first_chunk: float | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.reasons: dict[int, str] = {}
        self.confidence = _Confidence()
        self.text: dict[int, list[str]] = {}
        self.ended = False

    def add(self, chunk: Any) -> None:
        try:
            if self.first_chunk is None:
                self.first_chunk = now()
            if self.response_model is None and getattr(chunk, "model", None):
                self.response_model = chunk.model
                self.response_id = chunk.id
            if getattr(chunk, "usage", None) is not None:
                self.usage = chunk.usage
            for choice in chunk.choices or ():
                if choice.finish_reason:
                    self.reasons[choice.index] = choice.finish_reason
                if choice.logprobs is not None:
                    self.confidence.add(choice.logprobs)
                if _state.capture_content and choice.delta and choice.delta.content:
                    self.text.setdefault(choice.index, []).append(choice.delta.content)
        except Exception as exc:
            _state.record_failure("openai stream chunk", exc)

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.response_model:
            attrs[A.RESPONSE_MODEL] = self.response_model
        if self.response_id:
            attrs[A.RESPONSE_ID] = self.response_id
        if self.first_chunk is not None:
            attrs[A.TIME_TO_FIRST_CHUNK] = self.first_chunk - self.started
        if self.reasons:
            attrs[A.FINISH_REASONS] = [self.reasons[i] for i in sorted(self.reasons)]
        self.confidence.into(attrs)
        if self.usage is not None:
            attrs.update(usage_attributes(self.usage))
        if _state.capture_content and self.text:
            attrs[A.OUTPUT_MESSAGES] = json.dumps(
                [{"role": "assistant", "content": "".join(self.text[i])} for i in sorted(self.text)])
        finish_attributes(attrs, self.request_model)
        return attrs

    def end(self, exc: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            self.span.set_attributes(self.attributes())
        except Exception as failure:
            _state.record_failure("openai stream end", failure)
        if exc is not None:
            end_with_error(self.span, exc)
        else:
            self.span.end()


class _Stream(wrapt.ObjectProxy):
    """The caller's `Stream`, unchanged in behaviour; ends the span when exhausted, closed,
    left by its context manager, or garbage-collected half-read."""

    def __init__(self, stream: Any, state: _StreamState):
        super().__init__(stream)
        self._self_state = state
        weakref.finalize(self, state.end)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            chunk = self.__wrapped__.__next__()
        except StopIteration:
            self._self_state.end()
            raise
        except Exception as exc:
            self._self_state.end(exc)
            raise
        self._self_state.add(chunk)
        return chunk

    def __enter__(self):
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info):
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_state.end()

    def close(self):
        try:
            return self.__wrapped__.close()
        finally:
            self._self_state.end()


class _AsyncStream(wrapt.ObjectProxy):
    """The async twin of `_Stream`."""

    def __init__(self, stream: Any, state: _StreamState):
        super().__init__(stream)
        self._self_state = state
        weakref.finalize(self, state.end)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            chunk = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_state.end()
            raise
        except Exception as exc:
            self._self_state.end(exc)
            raise
        self._self_state.add(chunk)
        return chunk

    async def __aenter__(self):
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info):
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_state.end()

    async def close(self):
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_state.end()


# ---- wrappers ----------------------------------------------------------------------------

def _begin(kwargs: dict[str, Any]):
    try:
        attrs = request_attributes(kwargs)
        model = attrs.get(A.REQUEST_MODEL)
        return start_span(f"chat {model}" if model else "chat", attrs), model
    except Exception as exc:
        _state.record_failure("openai request", exc)
        return None, None


def _complete(span: Any, model: str | None, result: Any, started: float, stream_cls: type):
    """Finish the span for a returned result, or hand it to a stream proxy."""
    try:
        if stream_cls is not None:
            if hasattr(result, "__next__") or hasattr(result, "__anext__"):
                return stream_cls(result, _StreamState(span, model, started))
            # A raw streamed response: reading it here would consume the caller's stream.
        else:
            span.set_attributes(response_attributes(result, model))
    except Exception as exc:
        _state.record_failure("openai response", exc)
    span.end()
    return result


def _create(wrapped, instance, args, kwargs):
    if suppressed():
        return wrapped(*args, **kwargs)
    span, model = _begin(kwargs)
    if span is None:
        return wrapped(*args, **kwargs)
    started = now()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        end_with_error(span, exc)
        raise
    return _complete(span, model, result, started, _Stream if kwargs.get("stream") else None)


async def _acreate(wrapped, instance, args, kwargs):
    if suppressed():
        return await wrapped(*args, **kwargs)
    span, model = _begin(kwargs)
    if span is None:
        return await wrapped(*args, **kwargs)
    started = now()
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        end_with_error(span, exc)
        raise
    return _complete(span, model, result, started, _AsyncStream if kwargs.get("stream") else None)
