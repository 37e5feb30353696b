"""The ClickHouse schema, as numbered migrations shared by both backends.

`otel_traces` keeps the column names and types of the OpenTelemetry Collector ClickHouse
exporter, so that exporter can write into the same table. The typed AI columns are DEFAULT
expressions over `SpanAttributes`: rows from the OTel exporter (which omits them) get them
computed by ClickHouse, while our collector, after normalising foreign conventions into the
canonical attribute names, also omits them and gets the same computation.
"""

from __future__ import annotations

from dataclasses import dataclass

from infersight import attributes as A

DATABASE = "infersight"
SPANS_TABLE = "otel_traces"
MIGRATIONS_TABLE = "schema_migrations"


def _attr(name: str) -> str:
    return f"SpanAttributes['{name}']"


# Typed AI columns: (name, type, default expression). Order matters only for readability.
AI_COLUMNS: list[tuple[str, str, str]] = [
    ("Provider", "LowCardinality(String)", _attr(A.PROVIDER)),
    ("Operation", "LowCardinality(String)", _attr(A.OPERATION)),
    ("RequestModel", "LowCardinality(String)", _attr(A.REQUEST_MODEL)),
    ("ResponseModel", "LowCardinality(String)", _attr(A.RESPONSE_MODEL)),
    ("ModelVersion", "LowCardinality(String)", _attr(A.MODEL_VERSION)),
    ("ProjectId", "LowCardinality(String)", "ResourceAttributes['infersight.project.id']"),
    ("Feature", "LowCardinality(String)", _attr(A.FEATURE)),
    ("UserId", "String", _attr(A.USER)),
    ("SessionId", "String", _attr(A.SESSION)),
    ("TenantId", "LowCardinality(String)", _attr(A.TENANT)),
    ("InputTokens", "UInt64", f"toUInt64OrZero({_attr(A.INPUT_TOKENS)})"),
    ("OutputTokens", "UInt64", f"toUInt64OrZero({_attr(A.OUTPUT_TOKENS)})"),
    ("CacheReadTokens", "UInt64", f"toUInt64OrZero({_attr(A.CACHE_READ_TOKENS)})"),
    ("CacheWriteTokens", "UInt64", f"toUInt64OrZero({_attr(A.CACHE_WRITE_TOKENS)})"),
    ("ReasoningTokens", "UInt64", f"toUInt64OrZero({_attr(A.REASONING_TOKENS)})"),
    ("CostUsd", "Float64", f"toFloat64OrZero({_attr(A.COST)})"),
    ("CostSource", "LowCardinality(String)", _attr(A.COST_SOURCE)),
    ("Confidence", "Nullable(Float64)", f"toFloat64OrNull({_attr(A.CONFIDENCE)})"),
    ("TimeToFirstChunk", "Nullable(Float64)", f"toFloat64OrNull({_attr(A.TIME_TO_FIRST_CHUNK)})"),
]

_AI_COLUMN_DDL = ",\n".join(
    f"    {name} {typ} DEFAULT {expr} CODEC(ZSTD(1))" for name, typ, expr in AI_COLUMNS
)

_SPANS_DDL = f"""
CREATE TABLE IF NOT EXISTS {{db}}.{SPANS_TABLE} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
{_AI_COLUMN_DDL},
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
TTL toDateTime(Timestamp) + toIntervalDay({{ttl_days}})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "otel_traces with typed AI columns", (_SPANS_DDL,)),
)

# Columns our collector writes; everything else in otel_traces is a DEFAULT.
BASE_COLUMNS: tuple[str, ...] = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
    "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes",
    "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes",
    "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
)


def bootstrap_statements(db: str = DATABASE) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"CREATE TABLE IF NOT EXISTS {db}.{MIGRATIONS_TABLE} "
        "(Version UInt32, Name String, AppliedAt DateTime DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY Version",
    ]


def render(statement: str, db: str = DATABASE, ttl_days: int = 30) -> str:
    return statement.replace("{db}", db).replace("{ttl_days}", str(int(ttl_days)))
