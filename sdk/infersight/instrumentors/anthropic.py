"""Anthropic messages: `messages.create` (sync, async, stream=True) and the `messages.stream()`
helper (sync and async).

Usage:
    infersight.instrument()   # patches anthropic when it is imported, before or after

Input tokens follow the contract: Anthropic reports `input_tokens` without cache reads and
writes, so the span's input count is input + cache read + cache creation, with the two cache
counts recorded apart and priced at their own rates.

The `messages.stream()` helper sends its request when its context manager is entered, so the
span starts there; the span follows the raw event stream under the helper, which is what
`text_stream`, `get_final_message()` and `until_done()` read too.

Recent anthropic releases emit their own span per API call (scope "com.anthropic.sdk.python",
on the global tracer provider), with `gen_ai.usage.*` too: beside ours it would count each call
twice. The SDK does not honour OTel's suppress-instrumentation key, and its switch
(`open_telemetry=False`) is per client, fixed when the client is made. So during a messages call
that passes through Infersight, the SDK's own `start_api_call_span` answers None, its documented
"no span" result, and the call runs as with tracing off: one span per call, ours. Its spans for
calls we do not trace (`count_tokens`, `beta.*`, tool runs) are left as they are.
"""

from __future__ import annotations

import contextvars
import json
from typing import Any

import wrapt

from .. import _state
from .. import attributes as A
from . import (AsyncStream, Instrumentor, Operation, Stream, Window, end_with_error,
               finish_attributes, suppressed, tool_call_attributes, uncached_usage_attributes)

PROVIDER = "anthropic"
_MESSAGES = "anthropic.resources.messages.messages"

# Set while a messages call passes through us: the SDK then starts no span of its own for it.
_ours: contextvars.ContextVar[bool] = contextvars.ContextVar("infersight_anthropic_call",
                                                            default=False)


class AnthropicInstrumentor(Instrumentor):
    module = "anthropic"

    def patches(self):
        return [
            (_MESSAGES, "Messages.create", _owning(CREATE.wrapper())),
            (_MESSAGES, "AsyncMessages.create", _owning_async(CREATE.async_wrapper())),
            (_MESSAGES, "Messages.stream", _stream_helper),
            (_MESSAGES, "AsyncMessages.stream", _stream_helper),
            ("anthropic._base_client", "start_api_call_span", _no_native_span),
        ]


# ---- one span per call: the SDK's own span stands aside for ours -----------------------------

def _no_native_span(wrapped, _instance, args, kwargs):
    return None if _ours.get() else wrapped(*args, **kwargs)


def _owning(traced):
    def call(wrapped, instance, args, kwargs):
        token = _ours.set(True)
        try:
            return traced(wrapped, instance, args, kwargs)
        finally:
            _ours.reset(token)
    return call


def _owning_async(traced):
    async def call(wrapped, instance, args, kwargs):
        token = _ours.set(True)
        try:
            return await traced(wrapped, instance, args, kwargs)
        finally:
            _ours.reset(token)
    return call


# ---- pure extraction -------------------------------------------------------------------

def request_attributes(_instance: Any, _args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {A.OPERATION: "chat", A.PROVIDER: PROVIDER}
    model = kwargs.get("model")
    if isinstance(model, str):
        attrs[A.REQUEST_MODEL] = model
    if isinstance(kwargs.get("max_tokens"), int):
        attrs[A.REQUEST_MAX_TOKENS] = kwargs["max_tokens"]
    temperature = kwargs.get("temperature")
    if isinstance(temperature, (int, float)):
        attrs[A.REQUEST_TEMPERATURE] = float(temperature)
    if _state.capture_content and kwargs.get("messages") is not None:
        messages = list(kwargs["messages"])
        if isinstance(kwargs.get("system"), (str, list)):
            messages.insert(0, {"role": "system", "content": kwargs["system"]})
        attrs[A.INPUT_MESSAGES] = json.dumps(messages, default=str)
    return attrs


_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens",
                 "cache_creation_input_tokens")


def usage_attributes(usage: Any) -> dict[str, int]:
    # `_USAGE_FIELDS` spelled out: a generator over them costs 0.27 us more a call.
    return uncached_usage_attributes(
        getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None),
        getattr(usage, "cache_read_input_tokens", None),
        getattr(usage, "cache_creation_input_tokens", None))


def response_attributes(message: Any, request_model: str | None) -> dict[str, Any]:
    if not hasattr(message, "content") and type(message).__name__ == "LegacyAPIResponse":
        message = message.parse()  # with_raw_response; anthropic caches the parsed object
    attrs: dict[str, Any] = {}
    if getattr(message, "model", None):
        attrs[A.RESPONSE_MODEL] = message.model
    if getattr(message, "id", None):
        attrs[A.RESPONSE_ID] = message.id
    if getattr(message, "stop_reason", None):
        attrs[A.FINISH_REASONS] = [message.stop_reason]
    tool_call_attributes(attrs, [b.name for b in message.content or () if b.type == "tool_use"])
    if message.usage is not None:
        attrs.update(usage_attributes(message.usage))
    if _state.capture_content:
        attrs[A.OUTPUT_MESSAGES] = json.dumps(
            [{"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                               for b in message.content or ()]}], default=str)
    finish_attributes(attrs, request_model)
    return attrs


class EventAccumulator:
    """Raw stream events: message_start has the model and input counts (output is a
    placeholder), message_delta the stop reason and final counts; fields it leaves out keep
    their message_start value."""

    def __init__(self, request_model: str | None):
        self.request_model = request_model
        self.model: str | None = None
        self.id: str | None = None
        self.usage: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.tools: list[str] = []
        self.text: list[str] = []

    def _usage(self, usage: Any) -> None:
        for field in _USAGE_FIELDS:
            value = getattr(usage, field, None)
            if value is not None:
                self.usage[field] = value

    def add(self, event: Any) -> None:
        kind = event.type
        if kind == "content_block_delta":
            if _state.capture_content and getattr(event.delta, "text", None):
                self.text.append(event.delta.text)
        elif kind == "message_start":
            self.model, self.id = event.message.model, event.message.id
            self._usage(event.message.usage)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self._usage(event.usage)
        elif kind == "content_block_start" and event.content_block.type == "tool_use":
            self.tools.append(event.content_block.name)

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.model:
            attrs[A.RESPONSE_MODEL] = self.model
        if self.id:
            attrs[A.RESPONSE_ID] = self.id
        if self.stop_reason:
            attrs[A.FINISH_REASONS] = [self.stop_reason]
        tool_call_attributes(attrs, self.tools)
        usage = self.usage
        if "input_tokens" in usage:  # `_USAGE_FIELDS` spelled out, as in `usage_attributes`
            attrs.update(uncached_usage_attributes(
                usage["input_tokens"], usage.get("output_tokens"),
                usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens")))
        if _state.capture_content and self.text:
            attrs[A.OUTPUT_MESSAGES] = json.dumps([{"role": "assistant",
                                                    "content": "".join(self.text)}])
        finish_attributes(attrs, self.request_model)
        return attrs


def _events(kwargs: dict[str, Any], attrs: dict[str, Any]) -> Any:
    accumulator = EventAccumulator(attrs.get(A.REQUEST_MODEL))
    if _state.capture_content or kwargs.get("tools"):
        return accumulator
    # No text recorded and no tool to call: message_start comes first, message_delta (stop
    # reason, final counts) just before message_stop.
    return Window(accumulator, _delta, "anthropic")


def _delta(event: Any) -> bool:
    return event.type == "message_delta"


def _accumulate(_args: tuple, kwargs: dict[str, Any], attrs: dict[str, Any]):
    return _events(kwargs, attrs) if kwargs.get("stream") else None


def _attach(result: Any, state: Any, proxy: type) -> Any:
    if hasattr(result, "__next__") or hasattr(result, "__anext__"):
        return proxy(result, state)
    return None  # a raw streamed response: reading it would consume the caller's stream


def _follow_raw_stream(message_stream: Any, state: Any, proxy: type) -> Any:
    message_stream._raw_stream = proxy(message_stream._raw_stream, state)
    return message_stream


CREATE = Operation("anthropic", request_attributes, response_attributes, _accumulate, _attach)
STREAM_HELPER = Operation(
    "anthropic", request_attributes, response_attributes,
    lambda _args, kwargs, attrs: _events(kwargs, attrs),
    _follow_raw_stream)


# ---- the messages.stream() helper ------------------------------------------------------------

def _stream_helper(wrapped, instance, args, kwargs):
    manager = wrapped(*args, **kwargs)
    return _Manager(manager, instance, kwargs)


class _Manager(wrapt.ObjectProxy):
    """The helper's (async) context manager; the span covers the request made on entering."""

    def __init__(self, manager: Any, instance: Any, kwargs: dict[str, Any]):
        super().__init__(manager)
        self._self_instance = instance
        self._self_kwargs = kwargs

    def _begin(self):
        if suppressed():
            return None
        return STREAM_HELPER.begin(self._self_instance, (), self._self_kwargs)

    def __enter__(self):
        token = _ours.set(True)  # the request is sent here
        try:
            call = self._begin()
            if call is None:
                return self.__wrapped__.__enter__()
            try:
                stream = self.__wrapped__.__enter__()
            except BaseException as exc:
                end_with_error(call.span, exc)
                raise
        finally:
            _ours.reset(token)
        return call.complete(stream, Stream)

    def __exit__(self, *exc_info):
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self):
        token = _ours.set(True)
        try:
            call = self._begin()
            if call is None:
                return await self.__wrapped__.__aenter__()
            try:
                stream = await self.__wrapped__.__aenter__()
            except BaseException as exc:
                end_with_error(call.span, exc)
                raise
        finally:
            _ours.reset(token)
        return call.complete(stream, AsyncStream)

    async def __aexit__(self, *exc_info):
        return await self.__wrapped__.__aexit__(*exc_info)
