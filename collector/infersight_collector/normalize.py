"""Foreign AI-tracer conventions -> the canonical attributes, then cost at ingest.

The typed AI columns of `otel_traces` are computed by ClickHouse from the canonical attribute
names (DESIGN section 3), so a span made by another tracer lands in the same columns once its
keys are rewritten here. Covered: the older OTel GenAI conventions, OpenLLMetry (Traceloop),
OpenLIT and OpenInference (Arize Phoenix). A foreign key is renamed to its canonical key unless
the span already carries that key (the canonical value wins and the foreign one is kept as is).

A span with token counts but no cost is priced here from the same price file the SDK uses,
with `infersight.cost.source` = collector (or unknown_model when the model has no price).
Spans that need nothing (the SDK's own) cost a few set look-ups per span, no per-key work.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from infersight import attributes as A
from infersight.pricing import Usage, cost_usd

# Foreign key -> canonical key. Where two foreign keys name the same thing, the first present
# in this order wins.
RENAMES: dict[str, str] = {
    # OTel GenAI semantic conventions before 1.37 (`gen_ai.system`) and before 1.27 (tokens).
    "gen_ai.system": A.PROVIDER,
    "gen_ai.usage.prompt_tokens": A.INPUT_TOKENS,
    "gen_ai.usage.completion_tokens": A.OUTPUT_TOKENS,
    # OpenLLMetry (traceloop-sdk, opentelemetry-instrumentation-*).
    "llm.request.type": A.OPERATION,
    "llm.usage.prompt_tokens": A.INPUT_TOKENS,
    "llm.usage.completion_tokens": A.OUTPUT_TOKENS,
    "llm.usage.cache_read_input_tokens": A.CACHE_READ_TOKENS,
    "gen_ai.usage.cache_read_input_tokens": A.CACHE_READ_TOKENS,
    "gen_ai.usage.cache_creation_input_tokens": A.CACHE_WRITE_TOKENS,
    "traceloop.association.properties.feature": A.FEATURE,
    "traceloop.association.properties.user_id": A.USER,
    "traceloop.association.properties.session_id": A.SESSION,
    "traceloop.association.properties.tenant_id": A.TENANT,
    # OpenLIT (already on current GenAI names for tokens and `gen_ai.usage.cost`).
    "gen_ai.usage.reasoning_tokens": A.REASONING_TOKENS,
    # OpenInference (Arize Phoenix).
    "openinference.span.kind": A.OPERATION,
    "llm.provider": A.PROVIDER,
    "llm.system": A.PROVIDER,
    "llm.model_name": A.RESPONSE_MODEL,
    "llm.token_count.prompt": A.INPUT_TOKENS,
    "llm.token_count.completion": A.OUTPUT_TOKENS,
    "llm.token_count.prompt_details.cache_read": A.CACHE_READ_TOKENS,
    "llm.token_count.prompt_details.cache_write": A.CACHE_WRITE_TOKENS,
    "llm.token_count.completion_details.reasoning": A.REASONING_TOKENS,
    "session.id": A.SESSION,
}

# Foreign values of a renamed key -> canonical values; a value not listed here is not renamed
# (an OpenInference CHAIN span is not a model call, so it gets no operation).
_OPERATION_VALUES = {
    "chat": "chat", "completion": "text_completion", "embedding": "embeddings",
    "rerank": "rerank",
    "LLM": "chat", "EMBEDDING": "embeddings", "TOOL": "execute_tool", "AGENT": "invoke_agent",
    "RERANKER": "rerank",
}
_VALUE_MAPS: dict[str, dict[str, str]] = {
    "llm.request.type": _OPERATION_VALUES,
    "openinference.span.kind": _OPERATION_VALUES,
}
_LOWERCASE = frozenset({"gen_ai.system", "llm.provider", "llm.system"})  # "OpenAI" -> "openai"

_FOREIGN = frozenset(RENAMES)


def normalize(attrs: dict[str, str], start_ns: int) -> dict[str, str]:
    """Rewrite `attrs` (one span's attributes, values as stored) in place and return it."""
    if A.COST in attrs and A.COST_SOURCE not in attrs and _unpriced_zero(attrs):
        del attrs[A.COST]
    if not _FOREIGN.isdisjoint(attrs):
        _rename(attrs)
    elif (A.COST_SOURCE in attrs or A.COST in attrs
          or (A.INPUT_TOKENS not in attrs and A.OUTPUT_TOKENS not in attrs)):
        return attrs
    if A.MODEL_VERSION not in attrs:  # as the SDK does: the served model is the version
        model = attrs.get(A.RESPONSE_MODEL) or attrs.get(A.REQUEST_MODEL)
        if model:
            attrs[A.MODEL_VERSION] = model
    if A.COST in attrs:
        attrs.setdefault(A.COST_SOURCE, A.COST_FROM_SDK)  # priced by the client's tracer
    elif A.COST_SOURCE not in attrs and (A.INPUT_TOKENS in attrs or A.OUTPUT_TOKENS in attrs):
        _add_cost(attrs, start_ns)
    return attrs


def _rename(attrs: dict[str, str]) -> None:
    for foreign in [k for k in RENAMES if k in attrs]:
        canonical = RENAMES[foreign]
        if canonical in attrs:
            continue
        value = attrs[foreign]
        if foreign in _VALUE_MAPS:
            value = _VALUE_MAPS[foreign].get(value)
            if value is None:
                continue
        elif foreign in _LOWERCASE:
            value = value.lower()
        del attrs[foreign]
        attrs[canonical] = value


def _unpriced_zero(attrs: dict[str, str]) -> bool:
    """A peer's cost of 0 on a call that used tokens means it had no price, not a free call:
    OpenLIT writes 0 when it cannot fetch its price list (seen with openlit 1.45 offline)."""
    try:
        zero = float(attrs[A.COST]) == 0.0
    except ValueError:
        return False
    return zero and (_tokens(attrs, A.INPUT_TOKENS) > 0 or _tokens(attrs, A.OUTPUT_TOKENS) > 0)


def _tokens(attrs: dict[str, str], key: str) -> int:
    try:
        return int(float(attrs.get(key, 0)))
    except ValueError:
        return 0


def stored_double(value: float) -> str:
    """A double attribute as stored, as the ClickHouse exporter writes one (Go's
    `FormatFloat(v, 'f', -1, 64)`): the shortest digits that read back exactly, in fixed
    notation (3e-05 is 0.00003, 2.0 is 2). `decode` writes doubles so, this module its costs,
    and `native` the same in SQL."""
    text = repr(value)
    if "e" in text:
        return format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _add_cost(attrs: dict[str, str], start_ns: int) -> None:
    usage = Usage(input=_tokens(attrs, A.INPUT_TOKENS), output=_tokens(attrs, A.OUTPUT_TOKENS),
                  cache_read=_tokens(attrs, A.CACHE_READ_TOKENS),
                  cache_write=_tokens(attrs, A.CACHE_WRITE_TOKENS))
    day = dt.datetime.fromtimestamp(start_ns / 1e9, dt.timezone.utc).date() if start_ns else None
    model = attrs.get(A.RESPONSE_MODEL) or attrs.get(A.REQUEST_MODEL)
    cost = cost_usd(model, usage, at=day)
    if cost is None:
        attrs[A.COST_SOURCE] = A.COST_UNKNOWN_MODEL
    else:
        attrs[A.COST] = stored_double(cost)
        attrs[A.COST_SOURCE] = A.COST_FROM_COLLECTOR
