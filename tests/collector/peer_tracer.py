"""Run one chat call through another AI tracer's OpenAI instrumentation and export its spans.

    python peer_tracer.py <peer> <openai base url> <collector grpc endpoint>

Run in a subprocess per peer: each patches the openai client in its own way, and they (and our
SDK) would interfere within one process. Prints the span attributes it exported as JSON so a
failing test can show what the peer actually emitted.
"""

from __future__ import annotations

import json
import sys

import openai
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def instrument(peer: str, provider: TracerProvider) -> None:
    if peer == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif peer == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown peer {peer!r}")


def main(peer: str, base_url: str, endpoint: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": f"{peer}-app"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True)))
    instrument(peer, provider)
    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini",
                                   messages=[{"role": "user", "content": "hello there"}])
    provider.shutdown()
    print(json.dumps([dict(s.attributes) for s in memory.get_finished_spans()], default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
