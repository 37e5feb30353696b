"""Threads: the feature / user / session tags (and the current span) follow work handed to
`ThreadPoolExecutor.submit` and `threading.Thread.start`.

Python copies context variables into asyncio tasks but not into threads, so without this a
call made from a worker thread would lose its feature. Like OpenTelemetry's threading
instrumentation, only the OTel context is carried (not every context variable of the app): it
is captured where the work is submitted and attached while it runs.
"""

from __future__ import annotations

from typing import Any, Callable

from opentelemetry import context as otel_context

from . import Instrumentor


class ThreadsInstrumentor(Instrumentor):
    module = "concurrent.futures.thread"

    def patches(self):
        return [
            ("concurrent.futures.thread", "ThreadPoolExecutor.submit", _submit),
            ("threading", "Thread.start", _start),
        ]


def in_context(fn: Callable, ctx: Any) -> Callable:
    """`fn` run with the OTel context `ctx` attached."""
    def run(*args, **kwargs):
        token = otel_context.attach(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)
    return run


def _submit(wrapped, instance, args, kwargs):
    ctx = otel_context.get_current()
    if ctx and args:  # an empty context needs no carrying
        args = (in_context(args[0], ctx), *args[1:])
    return wrapped(*args, **kwargs)


def _start(wrapped, instance, args, kwargs):
    ctx = otel_context.get_current()
    if ctx:  # an instance attribute, so a Thread subclass's own run() is carried too
        instance.run = in_context(instance.run, ctx)
    return wrapped(*args, **kwargs)
