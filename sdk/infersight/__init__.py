"""Infersight SDK: one line traces every model and LLM call in this process.

    import infersight
    infersight.instrument(service_name="support-bot")
    with infersight.feature("ticket-summary"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Spans follow the OpenTelemetry GenAI conventions plus `infersight.*` attributes (cost,
confidence, model version, feature) and are exported over OTLP/gRPC to the collector.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from . import _export, _state, config, pricing
from ._export import CountingProcessor
from .budget import Budget, BudgetExceeded, BudgetWarning, SpendProcessor, budget
from .context import extract, feature, inject, session, tenant, user
from .feedback import feedback
from .instrumentors.anthropic import AnthropicInstrumentor
from .instrumentors.bedrock import BedrockInstrumentor
from .instrumentors.google_genai import GoogleGenAIInstrumentor
from .instrumentors.litellm import LiteLLMInstrumentor
from .instrumentors.mistral import MistralInstrumentor
from .instrumentors.openai import OpenAIInstrumentor
from .instrumentors.sklearn import SklearnInstrumentor
from .instrumentors.threads import ThreadsInstrumentor
from .instrumentors.transformers import TransformersInstrumentor
from .observe import observe, watch

__all__ = ["instrument", "uninstrument", "flush", "feature", "user", "session", "tenant",
           "observe", "watch", "stats", "inject", "extract", "feedback", "budget", "Budget",
           "BudgetExceeded", "BudgetWarning"]
__version__ = "0.1.0"

log = logging.getLogger("infersight")

_lock = threading.Lock()
_instrumentors = [  # one line per instrumented library
    OpenAIInstrumentor(),
    AnthropicInstrumentor(),
    BedrockInstrumentor(),
    GoogleGenAIInstrumentor(),
    MistralInstrumentor(),
    LiteLLMInstrumentor(),
    SklearnInstrumentor(),
    ThreadsInstrumentor(),
    TransformersInstrumentor(),
]
_provider: TracerProvider | None = None
_instrumented = False
_warned: set[str] = set()
_spend_counted: "weakref.WeakSet[TracerProvider]" = weakref.WeakSet()  # has our SpendProcessor


def _exporter(settings: config.Settings):
    from ._otlp import SpanExporter

    return SpanExporter(endpoint=settings.endpoint, headers=settings.headers or None)


def _processor(settings: config.Settings) -> CountingProcessor:
    """Batching on a worker thread with a bounded queue; drops and failed exports are counted
    (`stats()`) and a collector that is down costs one export timeout (see `_export`)."""
    return CountingProcessor(_exporter(settings), max_queue_size=settings.max_queue_size,
                             max_export_batch_size=512)


def _choose_provider(settings: config.Settings, given: TracerProvider | None) -> TracerProvider:
    """The app's own SDK provider if it has one (ours added when an endpoint is named),
    else a new provider exporting to the collector, installed as the global one."""
    existing = given or trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        if settings.endpoint_given:
            existing.add_span_processor(_processor(settings))
        return existing
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(_processor(settings))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:  # another library won the race
        return trace.get_tracer_provider()  # type: ignore[return-value]
    return provider


def _add_spend_processor(provider: TracerProvider) -> None:
    """Counts spend for budgets; once per provider, however often `instrument()` names it (each
    processor is called for every span of the provider)."""
    if hasattr(provider, "add_span_processor") and provider not in _spend_counted:
        provider.add_span_processor(SpendProcessor())
        _spend_counted.add(provider)


def instrument(service_name: str | None = None, *, endpoint: str | None = None,
               api_key: str | None = None, capture_content: bool | None = None,
               tracer_provider: TracerProvider | None = None,
               prices: str | os.PathLike | dict | None = None,
               budgets: list[dict] | None = None) -> None:
    """Trace every supported model and LLM call in this process. Safe to call twice;
    never raises: a bad setting is reported once as a warning and tracing stays off.
    `tracer_provider` sends the spans to that provider instead of the app's or a new one.
    `prices` adds or overrides price entries (a JSON file or a dict, see `pricing`); bad
    entries are reported and the bundled prices are used. `budgets` is a list of
    `infersight.budget(...)` keyword dicts, e.g. [{"feature": "chat", "usd_per_day": 50}]."""
    global _provider, _instrumented
    if prices is not None:
        try:
            pricing.load_overrides(prices)
        except ValueError as exc:
            log.warning("infersight: price overrides not loaded: %s", exc)
    try:
        with _lock:
            settings = config.load(service_name, endpoint, api_key, capture_content)
            if not settings.enabled:
                return
            _state.capture_content = settings.capture_content
            if _provider is None or tracer_provider is not None:
                _provider = _choose_provider(settings, tracer_provider)
                _state.use_tracer(_provider.get_tracer("infersight", __version__))
                _add_spend_processor(_provider)
            if not _instrumented:
                for instrumentor in _instrumentors:
                    instrumentor.instrument()
                _instrumented = True
    except Exception as exc:
        message = str(exc)
        if message not in _warned:
            _warned.add(message)
            log.warning("infersight: instrument() failed, tracing is off: %s", message)
    for spec in budgets or ():
        try:
            budget(**{"endpoint": endpoint, "api_key": api_key, **spec})
        except (TypeError, ValueError) as exc:
            log.warning("infersight: budget %r not set: %s", spec, exc)


def uninstrument() -> None:
    """Restore every patched function. Spans already recorded are still exported."""
    global _instrumented
    with _lock:
        for instrumentor in _instrumentors:
            instrumentor.uninstrument()
        _instrumented = False


def flush(timeout_s: float = 5.0) -> bool:
    """Export the spans recorded so far; True when done within the timeout."""
    provider = _provider
    if provider is None or not hasattr(provider, "force_flush"):
        return True
    return provider.force_flush(int(timeout_s * 1000))


def stats() -> dict:
    """What the SDK dropped or failed to send, and its own caught errors by place and type:
    {"spans_dropped": n, "spans_export_failed": n, "spans_exported": n,
     "instrumentation_errors": {"openai response:KeyError": n, ...}}."""
    return {**_export.counts(), "instrumentation_errors": _state.failures()}
