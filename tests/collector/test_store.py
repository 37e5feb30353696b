"""Schema and migrations on the embedded store (the same DDL runs on a ClickHouse server)."""

from __future__ import annotations

from infersight_collector.store import migrate, schema


def test_migrations_are_recorded_and_applied_once(store):
    assert migrate(store) == []  # the fixture's open_store applied them already
    versions = store.query(
        f"SELECT Version, Name FROM {store.database}.{schema.MIGRATIONS_TABLE} ORDER BY Version")
    assert list(versions.Version) == [m.version for m in schema.MIGRATIONS]


def test_otel_traces_keeps_the_otel_exporter_columns_and_adds_typed_ai_columns(store):
    columns = store.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} "
        "AND table = {t:String}", {"db": store.database, "t": schema.SPANS_TABLE})
    types = dict(zip(columns.name, columns.type))
    otel = {
        "Timestamp": "DateTime64(9)", "TraceId": "String", "SpanId": "String",
        "ParentSpanId": "String", "TraceState": "String", "SpanName": "LowCardinality(String)",
        "SpanKind": "LowCardinality(String)", "ServiceName": "LowCardinality(String)",
        "ResourceAttributes": "Map(LowCardinality(String), String)",
        "ScopeName": "String", "ScopeVersion": "String",
        "SpanAttributes": "Map(LowCardinality(String), String)", "Duration": "UInt64",
        "StatusCode": "LowCardinality(String)", "StatusMessage": "String",
        "Events.Timestamp": "Array(DateTime64(9))", "Events.Name": "Array(LowCardinality(String))",
        "Links.TraceId": "Array(String)",
    }
    for name, typ in otel.items():
        assert types[name] == typ, name
    for name, typ, _ in schema.AI_COLUMNS:
        assert types[name] == typ, name
