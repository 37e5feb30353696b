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
    for table in schema.DATA_TABLES:
        _session_store.command(f"TRUNCATE TABLE {_session_store.database}.{table}")
    return _session_store


@pytest.fixture
def span_batch():
    """`span_batch(n, name)` builds an Arrow batch of `n` distinct spans as the decoder would;
    `attributes` go on every span."""
    import time

    import pyarrow as pa

    from infersight_collector.decode import ARROW_SCHEMA

    counter = iter(range(1, 1 << 62))

    def build(n: int, name: str = "span", attributes: dict[str, str] | None = None,
              duration_ns: int = 1_000_000, status: str = "Unset") -> pa.Table:
        ids = [next(counter) for _ in range(n)]
        empty = [[] for _ in ids]
        return pa.table({
            "Timestamp": pa.array([time.time_ns()] * n, pa.timestamp("ns")),
            "TraceId": [f"{i:032x}" for i in ids], "SpanId": [f"{i:016x}" for i in ids],
            "ParentSpanId": [""] * n, "TraceState": [""] * n, "SpanName": [name] * n,
            "SpanKind": ["Client"] * n, "ServiceName": ["checkout"] * n,
            "ResourceAttributes": [[("service.name", "checkout")]] * n,
            "ScopeName": ["t"] * n, "ScopeVersion": [""] * n,
            "SpanAttributes": [list((attributes or {}).items())] * n,
            "Duration": [duration_ns] * n, "StatusCode": [status] * n, "StatusMessage": [""] * n,
            "Events.Timestamp": empty, "Events.Name": empty, "Events.Attributes": empty,
            "Links.TraceId": empty, "Links.SpanId": empty, "Links.TraceState": empty,
            "Links.Attributes": empty,
        }, schema=ARROW_SCHEMA)

    return build


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


@pytest.fixture(scope="session")
def _decode_pool():
    from infersight_collector.decode_pool import DecodePool

    pool = DecodePool(1)
    yield pool
    pool.close()


@pytest.fixture(params=["in-thread", "decode-pool"])
def decode_pool(request):
    """Each receiver test runs twice: decoding in the receiving thread, and in a worker
    process as `infersight collector` does on more than one core."""
    return request.getfixturevalue("_decode_pool") if request.param == "decode-pool" else None


@pytest.fixture
def collector(store, decode_pool):
    """The OTLP/gRPC collector on a free loopback port, writing into `store`."""
    from infersight_collector.otlp_grpc import create_server
    from infersight_collector.pipeline import Pipeline

    pipeline = Pipeline(store).start()
    server, port = create_server(pipeline, "127.0.0.1", 0, decode_pool=decode_pool)
    server.start()
    server.endpoint = f"127.0.0.1:{port}"
    yield server
    server.stop(grace=None)
    pipeline.stop()


@pytest.fixture
def http_collector(store, decode_pool):
    """The OTLP/HTTP collector on a free loopback port, writing into `store`;
    `http_collector.url` is its /v1/traces URL."""
    import threading

    from infersight_collector.otlp_http import create_http_server
    from infersight_collector.pipeline import Pipeline

    pipeline = Pipeline(store).start()
    server = create_http_server(pipeline, "127.0.0.1", 0, decode_pool=decode_pool)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    yield server
    server.shutdown()
    server.server_close()
    pipeline.stop()
