"""Starting a model call's span without the OTel SDK's per-span sampling objects.

For each span, the SDK's `Tracer.start_span` asks its sampler, which for the default
parent-based always-on reads the current span again, then again for the trace state, and
builds a SamplingResult (with a read-only view of its attributes); it builds the trace flags
twice and looks up the current span a third time. That is about 3 us of the 19 us or so that
a bare span costs the host app here, export included. With the SDK's default sampling
(parent-based always-on, or always-on) and id generator the answer is known beforehand: a
root span, or the child of a sampled parent, is recorded and sampled. `starter` gives a
function making that span as the SDK does (its span class and constructor, ids, flags, trace
state, processors and internal span metrics), and leaves every other case to the SDK: another
sampler or id generator, a disabled tracer, an unsampled parent, an SDK without the parts used
here. The tests make each kind of span both ways and compare them field by field.
"""

from __future__ import annotations

from typing import Any, Callable

from opentelemetry.trace import Span, SpanContext, SpanKind, TraceFlags, get_current_span

Start = Callable[[str, SpanKind], Span]
# A ParentBased sampler's delegates, in its constructor's order: for a root span, then for a
# remote parent sampled / not sampled, then a local parent sampled / not sampled.
PARENT_BASED_DELEGATES = ("_root", "_remote_parent_sampled", "_remote_parent_not_sampled",
                          "_local_parent_sampled", "_local_parent_not_sampled")


def starter(tracer: Any) -> Start:
    """`start(name, kind)`: a started span of `tracer` with no attributes, as
    `tracer.start_span(name, kind=kind)` makes it."""

    def sdk_start(name: str, kind: SpanKind) -> Span:
        return tracer.start_span(name, kind=kind)

    try:
        return _direct(tracer, sdk_start) or sdk_start
    except Exception:  # an SDK whose parts differ from the ones checked
        return sdk_start


def _direct(tracer: Any, sdk_start: Start) -> Start | None:
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.sdk.trace.sampling import Decision

    span_class = getattr(sdk_trace, "_Span", None)
    metrics = getattr(tracer, "_tracer_metrics", None)
    random_flag = getattr(TraceFlags, "RANDOM_TRACE_ID", None)
    if (type(tracer) is not sdk_trace.Tracer or span_class is None or metrics is None
            or random_flag is None or not hasattr(tracer, "_is_enabled")
            or type(tracer.id_generator) is not RandomIdGenerator):
        return None
    sampler = tracer.sampler
    follow_parent = _default_sampling(sampler)
    if follow_parent is None:
        return None
    ids = tracer.id_generator
    sampled = TraceFlags(TraceFlags.SAMPLED | random_flag)  # the generator's ids are random
    sampled_plain = TraceFlags(TraceFlags.SAMPLED)  # a parent whose trace id is not
    recorded = Decision.RECORD_AND_SAMPLE

    def start(name: str, kind: SpanKind) -> Span:
        if tracer.sampler is not sampler or not tracer._is_enabled():
            return sdk_start(name, kind)
        parent = get_current_span().get_span_context()
        if parent is not None and parent.is_valid:
            flags = parent.trace_flags
            if follow_parent and not flags.sampled:
                return sdk_start(name, kind)  # dropped, as the parent was
            trace_id, trace_state = parent.trace_id, parent.trace_state
            flags = sampled if flags.random_trace_id else sampled_plain
        else:
            parent, trace_state = None, None
            trace_id, flags = ids.generate_trace_id(), sampled
        span = span_class(
            name=name,
            context=SpanContext(trace_id, ids.generate_span_id(), False, flags, trace_state),
            parent=parent, sampler=sampler, resource=tracer.resource, attributes=None,
            span_processor=tracer.span_processor, kind=kind, links=(),
            instrumentation_info=tracer.instrumentation_info, record_exception=True,
            set_status_on_exception=True, limits=tracer._span_limits,
            instrumentation_scope=tracer._instrumentation_scope,
            record_end_metrics=metrics.start_span(parent, recorded))
        span.start()
        return span

    return start


def _default_sampling(sampler: Any) -> bool | None:
    """True for parent-based always-on (the SDK's default), False for always-on, None for
    any other sampler: exact classes only, since a subclass may decide otherwise."""
    from opentelemetry.sdk.trace import sampling as s

    def static(delegate: Any, decision: Any) -> bool:
        return (type(delegate) in (s.StaticSampler, getattr(s, "_AlwaysOn", None),
                                   getattr(s, "_AlwaysOff", None))
                and delegate._decision is decision)

    on, off = s.Decision.RECORD_AND_SAMPLE, s.Decision.DROP
    if static(sampler, on):
        return False
    if type(sampler) in (s.ParentBased, getattr(s, "_ParentBasedAlwaysOn", None)):
        delegates = [getattr(sampler, name, None) for name in PARENT_BASED_DELEGATES]
        if all(static(d, want) for d, want in zip(delegates, (on, on, off, on, off))):
            return True
    return None
