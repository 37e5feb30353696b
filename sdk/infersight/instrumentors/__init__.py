"""Instrumentors, one module per patched library, and what they share.

Each instrumentor patches with `wrapt` through a post-import hook, so `instrument()` works
whether the library is imported before or after it, and `uninstrument()` restores exactly
the functions it patched.
"""

from __future__ import annotations

import contextvars
import importlib
import itertools
import json
import sys
import time
from collections import deque
from typing import Any, Callable, Protocol

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .. import _state
from .. import attributes as A
from ..budget import budgets as _budgets
from ..budget import enforce as _enforce_budgets
from ..context import current_tags
from ..pricing import Usage, cost_usd

_SUPPRESS_KEY = otel_context._SUPPRESS_INSTRUMENTATION_KEY  # shared with OTel contrib


class Instrumentor:
    """Base: subclasses name the module to hook and the (module, "Class.method", wrapper) list."""

    module: str = ""

    def __init__(self) -> None:
        self._active = False
        self._hooked = False
        self._patched: list[tuple[Any, str]] = []

    def patches(self) -> list[tuple[str, str, Callable]]:
        raise NotImplementedError

    def instrument(self) -> None:
        self._active = True
        if not self._hooked:
            wrapt.register_post_import_hook(self._on_import, self.module)
            self._hooked = True
        elif self.module in sys.modules:  # instrumented again after uninstrument()
            self._on_import(sys.modules[self.module])

    def _on_import(self, _module: Any) -> None:
        # Hooks cannot be unregistered; an uninstrumented instrumentor ignores a late import.
        if not self._active or self._patched:
            return
        for module_name, path, wrapper in self.patches():
            try:
                module = importlib.import_module(module_name)
                owner_name, _, attr = path.rpartition(".")
                owner = getattr(module, owner_name) if owner_name else module
                if isinstance(owner.__dict__.get(attr), wrapt.FunctionWrapper):
                    continue  # patched already, by us in an earlier life of this process
                wrapt.wrap_function_wrapper(owner, attr, wrapper)
                self._patched.append((owner, attr))
            except Exception as exc:  # a library version without this method
                _state.record_failure(f"patch {module_name}.{path}", exc)

    def uninstrument(self) -> None:
        self._active = False
        for owner, attr in self._patched:
            current = owner.__dict__.get(attr)
            if isinstance(current, wrapt.FunctionWrapper):
                setattr(owner, attr, current.__wrapped__)
        self._patched.clear()


# Set while a span of ours that covers whole SDK calls is open (LiteLLM), so that the SDK it
# calls underneath (openai, anthropic, ...) adds no second span for the same call.
_inside_exclusive: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "infersight_inside_exclusive", default=False)


def suppressed() -> bool:
    return _inside_exclusive.get() or bool(otel_context.get_value(_SUPPRESS_KEY))


def start_span(name: str, attributes: dict[str, Any]) -> Span:
    """A CLIENT span for one model call, tagged with the feature/user/session in context."""
    tags = current_tags()
    if tags:
        attributes.update(tags)
    if _state.attribute_blind:  # the sampler ignores them: written as `set_attributes` does
        span = _state.start_bare(name, SpanKind.CLIENT)
        set_attributes(span, attributes)
        return span
    return _state.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def add_cost(attrs: dict[str, Any], request_model: str | None, provider: str | None) -> None:
    """Price the tokens in `attrs` (contract names: the response's attributes) and record the
    cost and its source. The served model is priced, else the requested one; the provider
    (the response's, e.g. where a router sent the call, else the request's) picks a host's own
    price, e.g. Groq's for an open model that Together prices differently. Without token counts
    (a stream sent without usage) the cost is unknown: left absent."""
    if A.INPUT_TOKENS not in attrs and A.OUTPUT_TOKENS not in attrs:
        return
    model = attrs.get(A.RESPONSE_MODEL) or request_model
    get = attrs.get
    # Positional: a named tuple's keyword call costs twice as much, once per priced call.
    usage = Usage(get(A.INPUT_TOKENS, 0), get(A.OUTPUT_TOKENS, 0),
                  get(A.CACHE_READ_TOKENS, 0), get(A.CACHE_WRITE_TOKENS, 0))
    cost = cost_usd(model, usage, None, get(A.PROVIDER) or provider)
    if cost is None:
        attrs[A.COST_SOURCE] = A.COST_UNKNOWN_MODEL
    else:
        attrs[A.COST] = cost
        attrs[A.COST_SOURCE] = A.COST_FROM_SDK


_PLAIN = frozenset({str, int, float, bool})


def set_attributes(span: Span, attrs: dict[str, Any]) -> None:
    """`span.set_attributes(attrs)` without the OTel SDK's per-value checks (about 0.6 us a
    value, half of what ending a call costs us) for what needs none: str, int, float and bool,
    and lists of them, stored as the SDK stores them (lists as tuples). Any other value, a span
    with a value-length limit, a full span or one not from the SDK takes the SDK's own path."""
    bounded = getattr(span, "_attributes", None)
    store = getattr(bounded, "_dict", None)
    lock = getattr(span, "_lock", None)
    if (type(store) is not dict or lock is None or bounded.max_value_len is not None
            or (bounded.maxlen is not None and len(store) + len(attrs) > bounded.maxlen)
            or getattr(span, "_end_time", 0) is not None):
        span.set_attributes(attrs)
        return
    rest = None
    with lock:
        for key, value in attrs.items():
            kind = type(value)
            if kind in _PLAIN:
                store[key] = value
            elif kind is list and all(type(v) in _PLAIN for v in value):
                store[key] = tuple(value)
            elif rest is None:
                rest = {key: value}
            else:
                rest[key] = value
    if rest:
        span.set_attributes(rest)


def end_with_error(span: Span, exc: BaseException) -> None:
    """Record the app-visible exception on the span; the caller re-raises it unchanged."""
    try:
        span.set_attribute(A.ERROR_TYPE, type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)))
    finally:
        span.end()


def now() -> float:
    return time.perf_counter()


def finish_attributes(attrs: dict[str, Any], request_model: str | None) -> None:
    """The model version, once the served model is known (cost is added by `_Call` and
    `StreamState`, which know the call's provider)."""
    model = attrs.get(A.RESPONSE_MODEL) or request_model
    if model:
        attrs[A.MODEL_VERSION] = model


def choice_attributes(attrs: dict[str, Any], reasons: dict[int, str],
                      texts: dict[int, list[str]], role: str) -> None:
    """A stream's finish reasons and (with capture on) streamed text of each choice, in
    choice order, from what an accumulator gathered by choice index."""
    if reasons:
        attrs[A.FINISH_REASONS] = [reasons[i] for i in sorted(reasons)]
    if _state.capture_content and texts:
        attrs[A.OUTPUT_MESSAGES] = json.dumps(
            [{"role": role, "content": "".join(texts[i])} for i in sorted(texts)])


def tool_call_attributes(attrs: dict[str, Any], names: list[str]) -> None:
    """How many tools the model asked to call, and which: never their arguments."""
    if names:
        attrs[A.TOOL_CALL_COUNT] = len(names)
        attrs[A.TOOL_CALL_NAMES] = names


def uncached_usage_attributes(input_tokens: int | None, output_tokens: int | None,
                             cache_read: int | None, cache_write: int | None) -> dict[str, int]:
    """Token attributes for providers (Anthropic, Bedrock) whose input count leaves out cache
    reads and writes: the contract's input count includes them."""
    cache_read, cache_write = cache_read or 0, cache_write or 0
    attrs = {A.INPUT_TOKENS: (input_tokens or 0) + cache_read + cache_write,
             A.OUTPUT_TOKENS: output_tokens or 0}
    if cache_read:
        attrs[A.CACHE_READ_TOKENS] = cache_read
    if cache_write:
        attrs[A.CACHE_WRITE_TOKENS] = cache_write
    return attrs


# ---- traced calls and streams, shared by every LLM provider ----------------------------------

class Accumulator(Protocol):
    """Folds the chunks or events of one stream into the span's attributes."""

    def add(self, item: Any) -> None: ...

    def attributes(self) -> dict[str, Any]: ...


class StreamState:
    """One stream's span and accumulator: times the first chunk, ends the span exactly once."""

    __slots__ = ("span", "accumulator", "started", "where", "first", "ended", "model", "provider")

    def __init__(self, span: Span, accumulator: Accumulator, started: float, where: str,
                 model: str | None = None, provider: str | None = None):
        self.span = span
        self.accumulator = accumulator
        self.started = started
        self.where = where
        self.first: float | None = None
        self.ended = False
        self.model = model
        self.provider = provider

    def end(self, exc: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            attrs = self.accumulator.attributes()
            add_cost(attrs, self.model, self.provider)
            if self.first is not None:
                attrs[A.TIME_TO_FIRST_CHUNK] = self.first - self.started
            set_attributes(self.span, attrs)
        except Exception as failure:
            _state.record_failure(f"{self.where} stream end", failure)
        if exc is not None:
            end_with_error(self.span, exc)
        else:
            self.span.end()


class Stream(wrapt.ObjectProxy):
    """The caller's stream, unchanged in behaviour; ends the span when exhausted, closed, left
    by its context manager, or garbage-collected half-read. Takes iterators and iterables."""

    _self_chunks = None  # the iterator `next` reads, once made: a class default costs no set

    def __init__(self, stream: Any, state: StreamState):
        super().__init__(stream)
        self._self_state = state

    def __del__(self):  # a stream dropped half-read (cheaper per stream than weakref.finalize)
        state = getattr(self, "_self_state", None)
        if state is not None:
            state.end()

    def __iter__(self):  # a `for` loop
        return _follow(self.__wrapped__, self._self_state, self)

    def __next__(self):  # `next(stream)` called by hand: the same generator, kept
        chunks = self._self_chunks
        if chunks is None:  # not holding the proxy, which holds it
            chunks = self._self_chunks = _follow(self.__wrapped__, self._self_state)
        return next(chunks)

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


def _follow(stream: Any, state: StreamState, holder: Any = None):
    """The chunks of `stream`, each given to the accumulator on its way to the caller; times
    the first, ends the span when the stream ends or raises. A generator resumes for a
    fraction of a proxy's Python `__next__`, which a streamed call pays once per chunk.
    `holder` is the proxy when the caller iterates it: the generator keeps it alive, since
    a caller may keep only the iterator (`yield from`) and the proxy's collection ends the
    span. Leaving a loop early ends nothing by itself: the proxy's close, exit or collection
    does. The first chunk is taken on its own, so later ones pay for no first-chunk check."""
    accumulator = state.accumulator
    add = accumulator.add
    items = iter(stream)
    try:
        for item in items:
            if state.first is None:  # else a second loop over a stream read by hand
                state.first = now()
            _fold(getattr(accumulator, "first", add), item, state.where)
            yield item
            break
        for item in items:
            try:
                add(item)
            except Exception as exc:
                _state.record_failure(f"{state.where} stream chunk", exc)
            yield item
    except Exception as exc:
        state.end(exc)
        raise
    state.end()


def _fold(add: Callable[[Any], None], item: Any, where: str) -> None:
    """`add(item)`, a failure counted as a stream chunk's of `where` (the loops of `_follow`
    spell this out for the chunks after the first: a call per chunk costs)."""
    try:
        add(item)
    except Exception as exc:
        _state.record_failure(f"{where} stream chunk", exc)


async def _follow_async(stream: Any, state: StreamState, holder: Any = None):
    """`_follow` for an async stream."""
    accumulator = state.accumulator
    add = accumulator.add
    items = stream.__aiter__()
    try:
        async for item in items:
            if state.first is None:
                state.first = now()
            _fold(getattr(accumulator, "first", add), item, state.where)
            yield item
            break
        async for item in items:
            try:
                add(item)
            except Exception as exc:
                _state.record_failure(f"{state.where} stream chunk", exc)
            yield item
    except Exception as exc:
        state.end(exc)
        raise
    state.end()


class Window:
    """An accumulator that keeps a stream's first item and its last `size` items, and folds
    into `accumulator`, when the stream ends, the first and the last items from the newest
    one that `last` marks (the whole kept tail if none is marked): for streams whose
    attributes all ride there, when nothing in between is recorded (no tool calls, logprobs
    or captured text). A chat completion's model rides its first chunk, its finish reason and
    usage its last ones; Anthropic's message_start comes first, message_delta last. Keeping
    a chunk is a deque append; folding each as it passed cost about 0.25 us, paid by every
    chunk of a long answer."""

    __slots__ = ("accumulator", "last", "where", "head", "tail", "add")

    def __init__(self, accumulator: Accumulator, last: Callable[[Any], bool], where: str,
                 size: int = 32):
        self.accumulator = accumulator
        self.last = last
        self.where = where
        self.head: list[Any] = []
        self.tail: deque[Any] = deque(maxlen=size)
        self.add = self.tail.append

    def first(self, item: Any) -> None:
        self.head.append(item)

    def attributes(self) -> dict[str, Any]:
        tail = self.tail
        start = 0
        for i in range(len(tail) - 1, -1, -1):  # the newest items: a deque's ends index fast
            try:
                marked = self.last(tail[i])
            except Exception as exc:
                _state.record_failure(f"{self.where} stream chunk", exc)
                marked = False
            if marked:
                start = i
                break
        add = self.accumulator.add
        items = self.head
        items.extend(itertools.islice(tail, start, None))
        for item in items:  # `_fold`, spelt out as in `_follow`
            try:
                add(item)
            except Exception as exc:
                _state.record_failure(f"{self.where} stream chunk", exc)
        items.clear()
        tail.clear()
        return self.accumulator.attributes()


class AsyncStream(wrapt.ObjectProxy):
    """The async twin of `Stream`: async iterators, async generators and async iterables."""

    _self_chunks = None  # the iterator `next` reads, once made: a class default costs no set

    def __init__(self, stream: Any, state: StreamState):
        super().__init__(stream)
        self._self_state = state

    def __del__(self):  # a stream dropped half-read (cheaper per stream than weakref.finalize)
        state = getattr(self, "_self_state", None)
        if state is not None:
            state.end()

    def __aiter__(self):  # an `async for` loop: see `Stream`
        return _follow_async(self.__wrapped__, self._self_state, self)

    def __anext__(self):  # `await anext(stream)` called by hand
        chunks = self._self_chunks
        if chunks is None:
            chunks = self._self_chunks = _follow_async(self.__wrapped__, self._self_state)
        return chunks.__anext__()

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

    async def aclose(self):
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_state.end()


def _proxy(result: Any, state: StreamState, proxy: type) -> Any:
    return proxy(result, state)


class Operation:
    """How to trace one patched method, as pure functions of its library:

    request(instance, args, kwargs) -> the span's starting attributes (operation, provider,
        request model, ...), or None for a call that is not a model call (left untraced);
    response(result, request_model) -> attributes of a returned, non-streamed result;
    stream(args, kwargs, attrs) -> an Accumulator when this call streams, else None;
    attach(result, state, proxy) -> the result with its stream behind `proxy`, or None when
        this result cannot be followed (the span then ends at once).
    `exclusive`: no span of ours starts inside this one (a router calling an SDK underneath).
    """

    __slots__ = ("where", "request", "response", "stream", "attach", "exclusive")

    def __init__(self, where: str, request: Callable, response: Callable,
                 stream: Callable | None = None, attach: Callable = _proxy,
                 exclusive: bool = False):
        self.where = where
        self.request = request
        self.response = response
        self.stream = stream
        self.attach = attach
        self.exclusive = exclusive

    def begin(self, instance: Any, args: tuple, kwargs: dict) -> "_Call | None":
        try:
            attrs = self.request(instance, args, kwargs)
            if attrs is None:
                return None
            accumulator = self.stream(args, kwargs, attrs) if self.stream is not None else None
            model = attrs.get(A.REQUEST_MODEL)
            operation = attrs[A.OPERATION]
            span = start_span(f"{operation} {model}" if model else operation, attrs)
            return _Call(self, span, model, attrs.get(A.PROVIDER), accumulator)
        except Exception as exc:
            _state.record_failure(f"{self.where} request", exc)
            return None

    def wrapper(self) -> Callable:
        def traced(wrapped, instance, args, kwargs):
            if suppressed():
                return wrapped(*args, **kwargs)
            if _budgets:  # spend limits act before the provider is called
                kwargs = _enforce_budgets(self.request, instance, args, kwargs)
            call = self.begin(instance, args, kwargs)
            if call is None:
                return wrapped(*args, **kwargs)
            token = _inside_exclusive.set(True) if self.exclusive else None
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                end_with_error(call.span, exc)
                raise
            finally:
                if token is not None:
                    _inside_exclusive.reset(token)
            return call.complete(result, Stream)
        return traced

    def async_wrapper(self) -> Callable:
        async def traced(wrapped, instance, args, kwargs):
            if suppressed():
                return await wrapped(*args, **kwargs)
            if _budgets:
                kwargs = _enforce_budgets(self.request, instance, args, kwargs)
            call = self.begin(instance, args, kwargs)
            if call is None:
                return await wrapped(*args, **kwargs)
            token = _inside_exclusive.set(True) if self.exclusive else None
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                end_with_error(call.span, exc)
                raise
            finally:
                if token is not None:
                    _inside_exclusive.reset(token)
            return call.complete(result, AsyncStream)
        return traced


class _Call:
    __slots__ = ("op", "span", "model", "provider", "accumulator", "started")

    def __init__(self, op: Operation, span: Span, model: str | None, provider: str | None,
                 accumulator: Any):
        self.op = op
        self.span = span
        self.model = model
        self.provider = provider
        self.accumulator = accumulator
        self.started = now()

    def complete(self, result: Any, proxy: type) -> Any:
        """End the span for a returned result, or hand it to a stream proxy that will."""
        try:
            if self.accumulator is not None:
                state = StreamState(self.span, self.accumulator, self.started, self.op.where,
                                    self.model, self.provider)
                followed = self.op.attach(result, state, proxy)
                if followed is not None:
                    return followed
            else:
                attrs = self.op.response(result, self.model)
                add_cost(attrs, self.model, self.provider)
                set_attributes(self.span, attrs)
        except Exception as exc:
            _state.record_failure(f"{self.op.where} response", exc)
        self.span.end()
        return result
