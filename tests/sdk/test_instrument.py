"""instrument() as a host app meets it: import order, its own provider, bad config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as semconv

from infersight import attributes as A


def run_app(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter, as a host application would."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


HOST_PROVIDER = """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
"""

CALL = """
    from infersight_collector.fake_provider import FakeOpenAI
    with FakeOpenAI() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    print([s.attributes["gen_ai.request.model"] for s in exporter.get_finished_spans()])
"""


def test_instrument_before_openai_import_and_uses_the_apps_provider():
    result = run_app(HOST_PROVIDER + """
    import sys, infersight
    infersight.instrument()
    assert "openai" not in sys.modules
    import openai
    assert trace.get_tracer_provider() is provider
    """ + CALL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['gpt-4o-mini']"


def test_instrument_after_openai_import():
    result = run_app(HOST_PROVIDER + """
    import openai, infersight
    infersight.instrument()
    """ + CALL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['gpt-4o-mini']"


def test_bad_config_warns_once_and_never_raises():
    result = run_app("""
    import infersight
    infersight.instrument()
    infersight.instrument()
    print("app still running")
    """, INFERSIGHT_MAX_QUEUE_SIZE="lots")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "app still running"
    assert result.stderr.count("instrument() failed") == 1, result.stderr
    assert "INFERSIGHT_MAX_QUEUE_SIZE" in result.stderr


def test_disabled_by_environment_patches_nothing():
    result = run_app("""
    import openai, infersight
    infersight.instrument()
    import wrapt
    print(isinstance(openai.resources.chat.completions.Completions.__dict__["create"],
                     wrapt.FunctionWrapper))
    """, INFERSIGHT_DISABLED="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_attribute_names_match_the_genai_semantic_conventions():
    assert A.OPERATION == semconv.GEN_AI_OPERATION_NAME
    assert A.PROVIDER == semconv.GEN_AI_PROVIDER_NAME
    assert A.REQUEST_MODEL == semconv.GEN_AI_REQUEST_MODEL
    assert A.RESPONSE_MODEL == semconv.GEN_AI_RESPONSE_MODEL
    assert A.RESPONSE_ID == semconv.GEN_AI_RESPONSE_ID
    assert A.FINISH_REASONS == semconv.GEN_AI_RESPONSE_FINISH_REASONS
    assert A.TIME_TO_FIRST_CHUNK == semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
    assert A.INPUT_TOKENS == semconv.GEN_AI_USAGE_INPUT_TOKENS
    assert A.OUTPUT_TOKENS == semconv.GEN_AI_USAGE_OUTPUT_TOKENS
    assert A.CACHE_READ_TOKENS == semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
    assert A.CACHE_WRITE_TOKENS == semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
    assert A.REASONING_TOKENS == semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
    assert A.SESSION == semconv.GEN_AI_CONVERSATION_ID
    assert A.INPUT_MESSAGES == semconv.GEN_AI_INPUT_MESSAGES
    assert A.OUTPUT_MESSAGES == semconv.GEN_AI_OUTPUT_MESSAGES
    assert A.EMBEDDING_DIMENSIONS == semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT
