"""Feature / user / session / tenant tags, carried in OpenTelemetry baggage.

Baggage follows the OTel context across threads that copy it, asyncio tasks, and, through
W3C `baggage` headers, to downstream services; every span the SDK starts copies the tags.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from opentelemetry import baggage, context as otel_context, propagate

from . import attributes as A


class _Tag:
    """Context manager and decorator that sets one baggage entry for its extent."""

    def __init__(self, key: str, value: str):
        self._key = key
        self._value = str(value)
        self._tokens: list[object] = []

    def __enter__(self) -> "_Tag":
        ctx = baggage.set_baggage(self._key, self._value)
        self._tokens.append(otel_context.attach(ctx))
        return self

    def __exit__(self, *exc: Any) -> None:
        otel_context.detach(self._tokens.pop())

    def __call__(self, fn: Callable) -> Callable:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                with _Tag(self._key, self._value):
                    return await fn(*args, **kwargs)
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _Tag(self._key, self._value):
                return fn(*args, **kwargs)
        return wrapper


def feature(name: str) -> _Tag:
    """Attribute the calls made inside to a product feature: `with infersight.feature("search"):`."""
    return _Tag(A.FEATURE, name)


def user(user_id: str) -> _Tag:
    return _Tag(A.USER, user_id)


def session(session_id: str) -> _Tag:
    return _Tag(A.SESSION, session_id)


def tenant(tenant_id: str) -> _Tag:
    return _Tag(A.TENANT, tenant_id)


def current_tags() -> dict[str, str]:
    """The tags in the current context, as span attributes."""
    entries = baggage.get_all()
    if not entries:
        return {}
    return {k: str(entries[k]) for k in A.TAG_KEYS if k in entries}


# ---- across services: W3C `traceparent` and `baggage` headers ------------------------------
# Outbound requests are not patched: the tags (user ids included) would otherwise go to every
# host the app calls, model providers too. An app that already runs OpenTelemetry's HTTP
# instrumentations (requests, httpx, Flask, FastAPI, ...) carries them with no code, since the
# tags are OTel baggage and the default propagators are W3C trace context + baggage.

def inject(headers: dict | None = None) -> dict:
    """Add the current trace and tags to `headers` (a new dict when None) as W3C
    `traceparent` / `baggage` headers, for a call to another service of yours."""
    carrier = {} if headers is None else headers
    propagate.inject(carrier)
    return carrier


class extract:
    """`with infersight.extract(request.headers):` continues the caller's trace and tags in
    this service; model calls made inside count against the caller's feature."""

    def __init__(self, headers: Any):
        self._ctx = propagate.extract(headers)
        self._tokens: list[object] = []

    def __enter__(self) -> "extract":
        self._tokens.append(otel_context.attach(self._ctx))
        return self

    def __exit__(self, *exc: Any) -> None:
        otel_context.detach(self._tokens.pop())
