"""Shared fixtures: real things on loopback with free ports.

chDB allows one data directory per process, so the whole test session shares one embedded
store; `store` empties the span table before each test that uses it. Set CLICKHOUSE_URL to
run the same store tests against a ClickHouse server.
"""

from __future__ import annotations

import os

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import infersight
from infersight_collector.fake_provider import FakeOpenAI
from infersight_collector.store import open_store, schema


@pytest.fixture(scope="session")
def _session_store(tmp_path_factory):
    # With CLICKHOUSE_URL set, the same tests run against that server, in their own database.
    url = os.environ.get("CLICKHOUSE_URL")
    store = open_store(url=url, data_dir=str(tmp_path_factory.mktemp("chdb")),
                       database="infersight_test" if url else schema.DATABASE)
    yield store
    store.close()


@pytest.fixture
def store(_session_store):
    _session_store.command(f"TRUNCATE TABLE {_session_store.database}.{schema.SPANS_TABLE}")
    return _session_store


@pytest.fixture
def fake_openai():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def spans():
    """Instrument with an in-memory exporter; yields it, uninstruments afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    infersight.instrument(tracer_provider=provider)
    yield exporter
    infersight.uninstrument()


@pytest.fixture
def collector(store):
    """The OTLP/gRPC collector on a free loopback port, writing into `store`."""
    from infersight_collector.otlp_grpc import create_server
    from infersight_collector.pipeline import Pipeline

    pipeline = Pipeline(store).start()
    server, port = create_server(pipeline, "127.0.0.1", 0)
    server.start()
    server.endpoint = f"127.0.0.1:{port}"
    yield server
    server.stop(grace=None)
    pipeline.stop()
