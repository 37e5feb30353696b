"""Instrumentors, one module per patched library, and what they share.

Each instrumentor patches with `wrapt` through a post-import hook, so `instrument()` works
whether the library is imported before or after it, and `uninstrument()` restores exactly
the functions it patched.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, Callable

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .. import _state
from .. import attributes as A
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


def suppressed() -> bool:
    return bool(otel_context.get_value(_SUPPRESS_KEY))


def start_span(name: str, attributes: dict[str, Any]) -> Span:
    """A CLIENT span for one model call, tagged with the feature/user/session in context."""
    tags = current_tags()
    if tags:
        attributes.update(tags)
    return _state.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def add_cost(attrs: dict[str, Any], model: str | None) -> None:
    """Price the tokens in `attrs` (contract names) and record the cost and its source.
    Without token counts (a stream sent without usage) the cost is unknown: left absent."""
    if A.INPUT_TOKENS not in attrs and A.OUTPUT_TOKENS not in attrs:
        return
    usage = Usage(
        input=attrs.get(A.INPUT_TOKENS, 0), output=attrs.get(A.OUTPUT_TOKENS, 0),
        cache_read=attrs.get(A.CACHE_READ_TOKENS, 0),
        cache_write=attrs.get(A.CACHE_WRITE_TOKENS, 0),
    )
    cost = cost_usd(model, usage)
    if cost is None:
        attrs[A.COST_SOURCE] = A.COST_UNKNOWN_MODEL
    else:
        attrs[A.COST] = cost
        attrs[A.COST_SOURCE] = A.COST_FROM_SDK


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
