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
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from . import _state, config
from .context import feature, session, tenant, user
from .instrumentors.openai import OpenAIInstrumentor

__all__ = ["instrument", "uninstrument", "flush", "feature", "user", "session", "tenant"]
__version__ = "0.1.0"

log = logging.getLogger("infersight")

_lock = threading.Lock()
_instrumentors = [  # one line per instrumented library
    OpenAIInstrumentor(),
]
_provider: TracerProvider | None = None
_instrumented = False
_warned: set[str] = set()


def _exporter(settings: config.Settings):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.endpoint, headers=settings.headers or None)


def _processor(settings: config.Settings) -> BatchSpanProcessor:
    return BatchSpanProcessor(_exporter(settings), max_queue_size=settings.max_queue_size,
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


def instrument(service_name: str | None = None, *, endpoint: str | None = None,
               api_key: str | None = None, capture_content: bool | None = None,
               tracer_provider: TracerProvider | None = None) -> None:
    """Trace every supported model and LLM call in this process. Safe to call twice;
    never raises: a bad setting is reported once as a warning and tracing stays off.
    `tracer_provider` sends the spans to that provider instead of the app's or a new one."""
    global _provider, _instrumented
    try:
        with _lock:
            settings = config.load(service_name, endpoint, api_key, capture_content)
            if not settings.enabled:
                return
            _state.capture_content = settings.capture_content
            if _provider is None or tracer_provider is not None:
                _provider = _choose_provider(settings, tracer_provider)
                _state.tracer = _provider.get_tracer("infersight", __version__)
            if not _instrumented:
                for instrumentor in _instrumentors:
                    instrumentor.instrument()
                _instrumented = True
    except Exception as exc:
        message = str(exc)
        if message not in _warned:
            _warned.add(message)
            log.warning("infersight: instrument() failed, tracing is off: %s", message)


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
