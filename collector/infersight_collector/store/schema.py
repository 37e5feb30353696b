"""The ClickHouse schema, as numbered migrations shared by both backends and by cluster mode.

`otel_traces` keeps the column names and types of the OpenTelemetry Collector ClickHouse
exporter, so that exporter can write into the same table. The typed AI columns are DEFAULT
expressions over `SpanAttributes`: rows from the OTel exporter (which omits them) get them
computed by ClickHouse, while our collector, after normalising foreign conventions into the
canonical attribute names, also omits them and gets the same computation.

Every statement is rendered for a `Target`: one node (the default), or a cluster, where the
same tables get `ON CLUSTER`, Replicated engines and a `<name>_local` table per shard behind a
Distributed table of the original name, sharded by trace id. Queries and inserts use the
original names in both modes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from infersight import attributes as A

DATABASE = "infersight"
SPANS_TABLE = "otel_traces"
ROLLUP_TABLE = "otel_traces_1m"
ROLLUP_VIEW = "otel_traces_1m_mv"
# The dashboard's rollups of AI calls (migration 6): per minute and per hour, keyed by exactly
# the dimensions the dashboard filters and groups by.
CALLS_1M_TABLE = "ai_calls_1m"
CALLS_1H_TABLE = "ai_calls_1h"
# Cost per user (and the user's tenant) per hour (migration 7): the dashboard's per-user and
# per-tenant charts read it when no service, feature, model or version filter narrows the
# calls. A user is expected to belong to one tenant; one who calls for many only adds rows.
USERS_1H_TABLE = "ai_users_1h"
# The same per day (migration 8): a week's aggregates merge 7 days' states, not 168 hours'.
CALLS_1D_TABLE = "ai_calls_1d"
USERS_1D_TABLE = "ai_users_1d"
FEEDBACK_TABLE = "feedback"
ALERTS_TABLE = "alerts"
MIGRATIONS_TABLE = "schema_migrations"
# Tables with rows (not views); tests empty these between cases.
DATA_TABLES = (SPANS_TABLE, ROLLUP_TABLE, FEEDBACK_TABLE, ALERTS_TABLE, CALLS_1M_TABLE,
               CALLS_1H_TABLE, USERS_1H_TABLE, CALLS_1D_TABLE, USERS_1D_TABLE)

# Inserts recently seen per table, by deduplication token: a retried or replayed insert within
# this many blocks is dropped by ClickHouse. Replicated tables keep their own window
# (`replicated_deduplication_window`).
DEDUP_WINDOW_BLOCKS = 10_000
# Latency and confidence quantile states keep a t-digest; any level can be read back, e.g.
# `quantilesTDigestMerge(0.5, 0.95)(LatencyState)`.
_QUANTILE = "quantileTDigest"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Target:
    """Where the DDL goes: a database, the retention, and a cluster name in cluster mode."""

    database: str = DATABASE
    ttl_days: int = 30
    cluster: str | None = None

    def __post_init__(self) -> None:
        for name in (self.database, self.cluster or "x"):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"{name!r} is not a plain identifier (letters, digits, _)")
        if int(self.ttl_days) < 1:
            raise ValueError(f"ttl_days must be at least 1, got {self.ttl_days}")

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def local(self, table: str) -> str:
        """The table that holds the rows: `<table>_local` on each shard in cluster mode."""
        return f"{self.database}.{table}_local" if self.cluster else f"{self.database}.{table}"

    def engine(self, kind: str = "MergeTree") -> str:
        # Without arguments, Replicated engines use the server's default_replica_path/name.
        return f"Replicated{kind}" if self.cluster else kind


def create_table(t: Target, table: str, body: str, engine: str, tail: str,
                 shard_key: str | None) -> list[str]:
    """CREATE TABLE for one node, or the local table plus a Distributed one in cluster mode."""
    statements = [f"CREATE TABLE IF NOT EXISTS {t.local(table)}{t.on_cluster} (\n{body}\n) "
                  f"ENGINE = {t.engine(engine)}\n{tail}"]
    if t.cluster:
        key = f", {shard_key}" if shard_key else ""
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {t.database}.{table}{t.on_cluster} "
            f"AS {t.local(table)} "
            f"ENGINE = Distributed({t.cluster}, {t.database}, {table}_local{key})")
    return statements


def _ttl(column: str, t: Target) -> str:
    return f"TTL {column} + toIntervalDay({int(t.ttl_days)})"


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

_SPANS_BODY = f"""    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
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
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1"""

# (column, expression over otel_traces): the rollup's key, in ORDER BY order after Minute.
ROLLUP_KEY: tuple[tuple[str, str], ...] = (
    ("ServiceName", "ServiceName"),
    ("ProjectId", "ProjectId"),
    ("Feature", "Feature"),
    ("Operation", "Operation"),
    ("Provider", "Provider"),
    ("Model", "if(ResponseModel != '', ResponseModel, RequestModel)"),
    ("ModelVersion", "ModelVersion"),
)
# (column, type, state expression): what each minute of each key adds up.
ROLLUP_VALUES: tuple[tuple[str, str, str], ...] = (
    ("Spans", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(count())"),
    ("Errors", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(countIf(StatusCode = 'Error'))"),
    ("InputTokens", "SimpleAggregateFunction(sum, UInt64)", "sum(InputTokens)"),
    ("OutputTokens", "SimpleAggregateFunction(sum, UInt64)", "sum(OutputTokens)"),
    ("CostUsd", "SimpleAggregateFunction(sum, Float64)", "sum(CostUsd)"),
    ("LatencyState", f"AggregateFunction({_QUANTILE}, UInt64)", f"{_QUANTILE}State(Duration)"),
    ("ConfidenceState", f"AggregateFunction({_QUANTILE}, Float64)",
     f"{_QUANTILE}StateIf(assumeNotNull(Confidence), isNotNull(Confidence))"),
)


def _spans(t: Target) -> list[str]:
    return create_table(
        t, SPANS_TABLE, _SPANS_BODY, "MergeTree",
        "PARTITION BY toDate(Timestamp)\n"
        "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))\n"
        f"{_ttl('toDateTime(Timestamp)', t)}\n"
        "SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1",
        shard_key="cityHash64(TraceId)")


def _dedup_window(t: Target) -> list[str]:
    if t.cluster:
        return []
    return [f"ALTER TABLE {t.local(SPANS_TABLE)} MODIFY SETTING "
            f"non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}"]


def _dedup_setting(t: Target) -> str:
    return "" if t.cluster else (
        f"\nSETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}")


def _rollup(t: Target) -> list[str]:
    key = ",\n".join(f"    {name} LowCardinality(String)" for name, _ in ROLLUP_KEY)
    values = ",\n".join(f"    {name} {typ}" for name, typ, _ in ROLLUP_VALUES)
    order = ", ".join(name for name, _ in ROLLUP_KEY)
    # The rollup dedups too, so a replayed spans insert is not counted twice in it.
    settings = _dedup_setting(t)
    table = create_table(
        t, ROLLUP_TABLE, f"    Minute DateTime,\n{key},\n{values}", "AggregatingMergeTree",
        f"PARTITION BY toYYYYMM(Minute)\nORDER BY ({order}, Minute)\n"
        f"{_ttl('Minute', t)}{settings}",
        shard_key=None)
    select = ",\n    ".join(
        ["toStartOfMinute(Timestamp) AS Minute"]
        + [f"{expr} AS {name}" for name, expr in ROLLUP_KEY]
        + [f"{expr} AS {name}" for name, _, expr in ROLLUP_VALUES])
    view = (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {t.local(ROLLUP_VIEW)}{t.on_cluster} "
            f"TO {t.local(ROLLUP_TABLE)} AS\nSELECT\n    {select}\n"
            f"FROM {t.local(SPANS_TABLE)}\nGROUP BY Minute, {order}")
    return [*table, view]


_FEEDBACK_BODY = """    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    FeedbackId String CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ProjectId LowCardinality(String) CODEC(ZSTD(1)),
    Score Nullable(Float64) CODEC(ZSTD(1)),
    Label LowCardinality(String) CODEC(ZSTD(1)),
    Comment String CODEC(ZSTD(1)),
    Correction String CODEC(ZSTD(1)),
    Source LowCardinality(String) CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1))"""


def _feedback(t: Target) -> list[str]:
    settings = _dedup_setting(t)
    return create_table(
        t, FEEDBACK_TABLE, _FEEDBACK_BODY, "MergeTree",
        "PARTITION BY toDate(Timestamp)\nORDER BY (TraceId, SpanId, Timestamp)\n"
        f"{_ttl('toDateTime(Timestamp)', t)}{settings}",
        shard_key="cityHash64(TraceId)")


# One row per state change of an alert rule (per group when the rule is grouped).
_ALERTS_BODY = """    Timestamp DateTime64(3) CODEC(Delta, ZSTD(1)),
    Rule LowCardinality(String) CODEC(ZSTD(1)),
    Kind LowCardinality(String) CODEC(ZSTD(1)),
    GroupKey String CODEC(ZSTD(1)),
    State LowCardinality(String) CODEC(ZSTD(1)),
    PreviousState LowCardinality(String) CODEC(ZSTD(1)),
    Value Nullable(Float64) CODEC(ZSTD(1)),
    Threshold Nullable(Float64) CODEC(ZSTD(1)),
    Message String CODEC(ZSTD(1)),
    WindowStart DateTime64(3) CODEC(ZSTD(1)),
    WindowEnd DateTime64(3) CODEC(ZSTD(1)),
    Scope Map(LowCardinality(String), String) CODEC(ZSTD(1))"""


def _alerts(t: Target) -> list[str]:
    return create_table(
        t, ALERTS_TABLE, _ALERTS_BODY, "MergeTree",
        "PARTITION BY toYYYYMM(Timestamp)\nORDER BY (Rule, GroupKey, Timestamp)\n"
        f"{_ttl('toDateTime(Timestamp)', t)}",
        shard_key="cityHash64(Rule)")


# The dashboard rollups' key: (column, expression over otel_traces). The expressions are the
# dashboard's own readings of a call (`infersight_dashboard.queries`): the model the code asked
# for (Family), the model that answered (Model), and the served version, "(none)" when a call
# failed before a response told it.
CALLS_KEY: tuple[tuple[str, str], ...] = (
    ("ServiceName", "ServiceName"),
    ("ProjectId", "ProjectId"),
    ("Feature", "Feature"),
    ("Family", "if(RequestModel != '', RequestModel, ResponseModel)"),
    ("Model", "if(ResponseModel != '', ResponseModel, RequestModel)"),
    ("Version", "multiIf(ModelVersion != '', ModelVersion, ResponseModel != '', ResponseModel,"
                " '(none)')"),
)
# (column, type, expression): sums are exact; first/last call and the summed call times (for
# a mean time) are exact too. Migrations 6 to 8 created these with a t-digest latency state
# (`_TDIGEST_LATENCY`); migration 9 replaced it with `LATENCY_HIST` (see there).
_CALLS_SUMS: tuple[tuple[str, str, str], ...] = (
    ("Calls", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(count())"),
    ("Errors", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(countIf(StatusCode = 'Error'))"),
    ("InputTokens", "SimpleAggregateFunction(sum, UInt64)", "sum(InputTokens)"),
    ("OutputTokens", "SimpleAggregateFunction(sum, UInt64)", "sum(OutputTokens)"),
    ("CacheReadTokens", "SimpleAggregateFunction(sum, UInt64)", "sum(CacheReadTokens)"),
    ("CostUsd", "SimpleAggregateFunction(sum, Float64)", "sum(CostUsd)"),
    ("ConfidenceSum", "SimpleAggregateFunction(sum, Float64)",
     "sum(ifNull(Confidence, 0))"),
    ("ConfidenceCalls", "SimpleAggregateFunction(sum, UInt64)", "toUInt64(count(Confidence))"),
    ("FirstCall", "SimpleAggregateFunction(min, DateTime64(9))", "min(Timestamp)"),
    ("LastCall", "SimpleAggregateFunction(max, DateTime64(9))", "max(Timestamp)"),
    ("TimeSumMs", "SimpleAggregateFunction(sum, Float64)",
     "sum(toFloat64(toUnixTimestamp64Milli(Timestamp)))"),
)
_TDIGEST_LATENCY = (
    "LatencyState", f"AggregateFunction({_QUANTILE}, UInt64)", f"{_QUANTILE}State(Duration)")
_CALLS_VALUES_6 = _CALLS_SUMS + (_TDIGEST_LATENCY,)  # as migrations 6 to 8 created them

# Migration 9. Latency per key and time as a log histogram (DDSketch's buckets): a call of
# Duration d ns counts in bucket k = ceil(log(d) / log(LATENCY_GAMMA)), which holds
# (GAMMA^(k-1), GAMMA^k]; `latency_of_bucket` reads a bucket back as the value within 1% of
# every duration in it. Histograms merge by adding counts (`sumMap`): for a week's hourly
# rows at 10M spans, 8 ms against 29 ms for their t-digests into one group, 36 against 40 ms
# into a thousand; they compress four times smaller, and a quantile read from one is within
# 1% of the true value (a t-digest's error is in rank, unbounded in value).
LATENCY_GAMMA = 1.02
LATENCY_HIST = (
    "LatencyHist", "SimpleAggregateFunction(sumMap, Map(Int16, UInt64))",
    f"sumMap(map(toInt16(ceil(log(greatest(Duration, 1)) / log({LATENCY_GAMMA}))),"
    " toUInt64(1)))")
_CALLS_VALUES_9 = _CALLS_SUMS + (LATENCY_HIST,)  # as migration 9 left them (and histograms)


def latency_of_bucket(k: str) -> str:
    """SQL for the latency (ns) that stands for bucket `k` of `LATENCY_HIST`: the harmonic
    mean of its bounds, 2 GAMMA^k / (1 + GAMMA), within (GAMMA - 1) / (GAMMA + 1) < 1% of
    every value in the bucket."""
    return f"(2 * pow({LATENCY_GAMMA}, {k}) / (1 + {LATENCY_GAMMA}))"

# (table, time column, expression over Timestamp) of each dashboard rollup.
CALLS_ROLLUPS: tuple[tuple[str, str, str], ...] = (
    (CALLS_1M_TABLE, "Minute", "toStartOfMinute(Timestamp, 'UTC')"),
    (CALLS_1H_TABLE, "Hour", "toStartOfHour(Timestamp, 'UTC')"),
)


def _calls_rollup(t: Target, table: str, time_col: str, time_expr: str,
                  key: tuple[tuple[str, str], ...], values: tuple[tuple[str, str, str], ...],
                  string_keys: tuple[str, ...] = ()) -> list[str]:
    """An AggregatingMergeTree of AI calls per `time_col` and `key` (LowCardinality columns,
    plain String for `string_keys`), fed by a materialized view, then filled from the spans
    already stored (single node; a cluster's are filled by new inserts only)."""
    key_ddl = ",\n".join(
        f"    {name} {'String' if name in string_keys else 'LowCardinality(String)'}"
        for name, _ in key)
    value_ddl = ",\n".join(f"    {name} {typ}" for name, typ, _ in values)
    order = ", ".join(name for name, _ in key)
    statements = create_table(
        t, table, f"    {time_col} DateTime,\n{key_ddl},\n{value_ddl}", "AggregatingMergeTree",
        f"PARTITION BY toYYYYMM({time_col})\nORDER BY ({time_col}, {order})\n"
        f"{_ttl(time_col, t)}{_dedup_setting(t)}",
        shard_key=None)
    body = _rollup_select(t, time_col, time_expr, key, values)
    statements.append(_rollup_view(t, table, body))
    if not t.cluster:  # INSERT has no ON CLUSTER; a second run finds the table filled
        empty = f"WHERE (SELECT count() FROM {t.local(table)}) = 0 AND "
        statements.append(f"INSERT INTO {t.local(table)}\n{body.replace('WHERE ', empty, 1)}")
    return statements


def _rollup_select(t: Target, time_col: str, time_expr: str, key: tuple[tuple[str, str], ...],
                   values: tuple[tuple[str, str, str], ...]) -> str:
    """The SELECT a rollup's view runs on each insert of spans: AI calls per time and key."""
    select = ",\n    ".join(
        [f"{time_expr} AS {time_col}"]
        + [f"{expr} AS {name}" for name, expr in key]
        + [f"{expr} AS {name}" for name, _, expr in values])
    order = ", ".join(name for name, _ in key)
    return (f"SELECT\n    {select}\nFROM {t.local(SPANS_TABLE)}\n"
            f"WHERE Operation != ''\nGROUP BY {time_col}, {order}")


def _rollup_view(t: Target, table: str, select: str) -> str:
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {t.local(table + '_mv')}{t.on_cluster} "
            f"TO {t.local(table)} AS\n{select}")


def _calls_rollups(t: Target) -> list[str]:
    """Per-minute and per-hour rollups of AI calls (Operation != '') for the dashboard. A
    minmax index on Timestamp lets a short, time-bounded read of otel_traces (the rollups'
    ragged edges, a trace search) skip granules, since Timestamp is only the third column of
    its ORDER BY."""
    statements = []
    for table, time_col, time_expr in CALLS_ROLLUPS:
        statements += _calls_rollup(t, table, time_col, time_expr, CALLS_KEY, _CALLS_VALUES_6)
    statements.append(
        f"ALTER TABLE {t.local(SPANS_TABLE)}{t.on_cluster} ADD INDEX IF NOT EXISTS "
        "idx_timestamp Timestamp TYPE minmax GRANULARITY 1")
    return statements


# Migration 7. The hourly rollup also counts confidence values, rounded to thousandths, per
# key and hour: a histogram read back as `sumMap(ConfidenceHist)` (keys are thousandths), so
# PSI and KS need no scan of the spans. Values beyond +-1e6 are clamped to it.
CONFIDENCE_HIST = (
    "ConfidenceHist", "SimpleAggregateFunction(sumMap, Map(Int32, UInt64))",
    "sumMapIf(map(toInt32(round(greatest(-1e6, least(1e6, assumeNotNull(Confidence))) * 1000)),"
    " toUInt64(1)), isNotNull(Confidence))")
# What every call rollup (`_CALL_TIERS`) holds per time and key since migration 10.
CALLS_VALUES = _CALLS_SUMS + (LATENCY_HIST, CONFIDENCE_HIST)
USERS_KEY: tuple[tuple[str, str], ...] = (
    ("ProjectId", "ProjectId"),
    ("TenantId", "TenantId"),
    ("UserId", "UserId"),
)
USERS_VALUES: tuple[tuple[str, str, str], ...] = tuple(
    v for v in _CALLS_SUMS
    if v[0] in ("Calls", "InputTokens", "OutputTokens", "CacheReadTokens", "CostUsd"))


def _hourly_confidence_and_users(t: Target) -> list[str]:
    """Adds `CONFIDENCE_HIST` to `ai_calls_1h` (its view is re-created with the column, and
    the column is filled from the spans already stored: extra rows carrying only the histogram
    and the same first and last call times, which add nothing else), and `ai_users_1h`, keyed
    by project, tenant and user, filled like migration 6's; and a minmax index on CostUsd,
    with which ClickHouse's top-k reading skips granules. Run before ingest
    starts: spans written while it runs may be missed or counted twice in the histogram."""
    name, typ, _ = CONFIDENCE_HIST
    table, time_col, time_expr = CALLS_ROLLUPS[1]
    statements = [
        f"ALTER TABLE {t.local(table)}{t.on_cluster} ADD COLUMN IF NOT EXISTS {name} {typ}",
        f"DROP VIEW IF EXISTS {t.local(table + '_mv')}{t.on_cluster}",
        _rollup_view(t, table, _rollup_select(t, time_col, time_expr, CALLS_KEY,
                                              _CALLS_VALUES_6 + (CONFIDENCE_HIST,))),
    ]
    if not t.cluster:
        statements.append(_fill_call_column(t, table, time_col, time_expr, CONFIDENCE_HIST,
                                            only="Confidence IS NOT NULL"))
    statements += _calls_rollup(t, USERS_1H_TABLE, "Hour", "toStartOfHour(Timestamp, 'UTC')",
                                USERS_KEY, USERS_VALUES, string_keys=("UserId",))
    # The most expensive calls: ORDER BY CostUsd DESC LIMIT n skips granules by their max.
    statements += [
        f"ALTER TABLE {t.local(SPANS_TABLE)}{t.on_cluster} ADD INDEX IF NOT EXISTS "
        "idx_cost CostUsd TYPE minmax GRANULARITY 1",
        f"ALTER TABLE {t.local(SPANS_TABLE)}{t.on_cluster} MATERIALIZE INDEX idx_cost"]
    return statements


def _daily_rollups(t: Target) -> list[str]:
    """`ai_calls_1d` (with the confidence histogram) and `ai_users_1d`: the hourly rollups per
    UTC day, fed and filled the same way. Merging a week's t-digest states was most of the
    time of a week-long summary (2,689 hourly states at 10M spans, about 37 ms); the users'
    hourly rollup had 843k rows a week, its daily one 40k."""
    day = "toStartOfDay(Timestamp, 'UTC')"
    return (_calls_rollup(t, CALLS_1D_TABLE, "Day", day, CALLS_KEY,
                          _CALLS_VALUES_6 + (CONFIDENCE_HIST,))
            + _calls_rollup(t, USERS_1D_TABLE, "Day", day, USERS_KEY, USERS_VALUES,
                            string_keys=("UserId",)))


# The call rollups: (table, time column, its expression over Timestamp).
_CALL_TIERS = CALLS_ROLLUPS + ((CALLS_1D_TABLE, "Day", "toStartOfDay(Timestamp, 'UTC')"),)


def _add_call_column(t: Target, table: str, time_col: str, time_expr: str,
                     column: tuple[str, str, str], values: tuple[tuple[str, str, str], ...],
                     also: tuple[tuple[str, str, str], ...] = (), only: str = "") -> list[str]:
    """`column` added to a call rollup: the column (with `also`'s on the Distributed table in
    cluster mode), its view re-created to feed `values`, and `column` counted for the spans
    already stored (single node): extra rows carrying only it and the same first and last
    call times (`_fill_call_column`, with `only`). Run before ingest starts: spans written
    meanwhile may be missed or counted twice in it. Written for migrations 9 and 10, before
    migration 12 fed the hourly and daily tiers from the tier below: a later migration must
    not re-create those views over the spans, and a fill of `ai_calls_1m` now reaches the
    hourly and daily tiers through their views (fill only the per-minute tier)."""
    name, typ, _ = column
    added = [(name, typ)] + [(n, ty) for n, ty, _ in also if t.cluster]
    statements = [f"ALTER TABLE {each}{t.on_cluster} ADD COLUMN IF NOT EXISTS {n} {ty}"
                  for each in _local_and_distributed(t, table) for n, ty in added]
    statements += [
        f"DROP VIEW IF EXISTS {t.local(table + '_mv')}{t.on_cluster}",
        _rollup_view(t, table, _rollup_select(t, time_col, time_expr, CALLS_KEY, values))]
    if not t.cluster:
        statements.append(_fill_call_column(t, table, time_col, time_expr, column, only))
    return statements


def _fill_call_column(t: Target, table: str, time_col: str, time_expr: str,
                      column: tuple[str, str, str], only: str = "") -> str:
    """The INSERT that counts `column` for the spans already stored in a call rollup: rows
    carrying only it and the same first and last call times, which add nothing else; `only`
    (SQL) skips the spans that add nothing to it."""
    name, _, expr = column
    order = ", ".join(n for n, _ in CALLS_KEY)
    fill = ",\n    ".join([f"{time_expr} AS {time_col}"] + [f"{e} AS {n}" for n, e in CALLS_KEY]
                          + ["min(Timestamp) AS FirstCall", "max(Timestamp) AS LastCall",
                             f"{expr} AS {name}"])
    return (f"INSERT INTO {t.local(table)} ({time_col}, {order}, FirstCall, LastCall, {name})\n"
            f"SELECT\n    {fill}\nFROM {t.local(SPANS_TABLE)}\n"
            f"WHERE Operation != ''{f' AND {only}' if only else ''}\n"
            f"GROUP BY {time_col}, {order}")


def _local_and_distributed(t: Target, table: str) -> list[str]:
    """Where an ALTER of `table`'s columns goes: its local table, and in cluster mode also
    the Distributed table in front of it."""
    return [t.local(table)] + ([f"{t.database}.{table}"] if t.cluster else [])


def _latency_histograms(t: Target) -> list[str]:
    """`LATENCY_HIST` in place of the t-digest `LatencyState` in the per-minute, hourly and
    daily call rollups (`_add_call_column`), which then lose the t-digest column. In cluster
    mode the Distributed tables get the same columns, and the hourly one the confidence
    histogram migration 7 added to the local table only."""
    statements = []
    for table, time_col, time_expr in _CALL_TIERS:
        extra = () if table == CALLS_1M_TABLE else (CONFIDENCE_HIST,)
        statements += _add_call_column(t, table, time_col, time_expr, LATENCY_HIST,
                                       _CALLS_VALUES_9 + extra, also=extra)
        statements += [f"ALTER TABLE {each}{t.on_cluster} DROP COLUMN IF EXISTS LatencyState"
                       for each in _local_and_distributed(t, table)]
    return statements


def _minute_confidence(t: Target) -> list[str]:
    """`CONFIDENCE_HIST` in the per-minute call rollup too (`_add_call_column`): every call
    rollup then has the columns of `CALLS_VALUES`, and a window's confidence histogram reads
    its whole minutes from the rollup, where it read up to two hours of spans at its ends."""
    table, time_col, time_expr = _CALL_TIERS[0]
    return _add_call_column(t, table, time_col, time_expr, CONFIDENCE_HIST, CALLS_VALUES,
                            only="Confidence IS NOT NULL")


# Migration 11. A merge waits until the parts it takes add up to about this many times the
# largest of them (ClickHouse's simple merge selector). With its default of 5, merges
# rewrote each span about three times in its first minutes: 13-14 CPU-us a span of the
# collector's 44-48 at full ingest on 2 cores; with 20, 7.4-8.9. The price is parts left
# unmerged for longer: after 1.8M spans in 30k-span inserts, 12 parts against 3, and a
# trace search over them took 98 against 82 ms (median). The setting exists from
# ClickHouse 24.11 on.
MERGE_SELECTOR_BASE = 20


def _fewer_merges(t: Target) -> list[str]:
    return [f"ALTER TABLE {t.local(SPANS_TABLE)}{t.on_cluster} MODIFY SETTING "
            f"merge_selector_base = {MERGE_SELECTOR_BASE}"]


# Migration 12. Each span insert ran six views over the spans, five of them call and user
# rollups (the per-minute, hourly and daily calls, the hourly and daily users), each reading
# and grouping every span; the views were about a quarter of the native inserter's CPU (4.4
# of 18 CPU-us a span, merges aside). The coarser tiers are now fed from the finer one's
# rows as they are inserted (a view on a view): the hourly calls from the per-minute rows,
# the daily calls and users from the hourly ones, which hold the same sums over fewer rows
# (about 0.7 CPU-us a span less).
_SIMPLE = re.compile(r"^SimpleAggregateFunction\((\w+), ")


def _coarser(t: Target, time_col: str, time_expr: str, source: str,
             key: tuple[tuple[str, str], ...], values: tuple[tuple[str, str, str], ...]) -> str:
    """The SELECT of a rollup tier's view over the finer tier `source`: its rows regrouped
    by `time_expr` (over the finer time column), each value merged by its column's function
    (`SimpleAggregateFunction(f, ...)`: f of the finer values)."""
    select = ",\n    ".join(
        [f"{time_expr} AS {time_col}"] + [name for name, _ in key]
        + [f"{_SIMPLE.match(typ).group(1)}({name}) AS {name}" for name, typ, _ in values])
    order = ", ".join(name for name, _ in key)
    return (f"SELECT\n    {select}\nFROM {t.local(source)}\n"
            f"GROUP BY {time_col}, {order}")


# (table, time column, its expression over the finer tier's time column, finer tier, key,
# values) of each tier fed by another.
_CHAINED = (
    (CALLS_1H_TABLE, "Hour", "toStartOfHour(Minute, 'UTC')", CALLS_1M_TABLE, CALLS_KEY,
     CALLS_VALUES),
    (CALLS_1D_TABLE, "Day", "toStartOfDay(Hour, 'UTC')", CALLS_1H_TABLE, CALLS_KEY,
     CALLS_VALUES),
    (USERS_1D_TABLE, "Day", "toStartOfDay(Hour, 'UTC')", USERS_1H_TABLE, USERS_KEY,
     USERS_VALUES),
)


def _chained_rollups(t: Target) -> list[str]:
    """Each tier of `_CHAINED` re-created as a view on its finer tier. Run before ingest
    starts: spans written while it runs may be missed in the re-created tiers."""
    statements = []
    for table, time_col, time_expr, source, key, values in _CHAINED:
        statements += [
            f"DROP VIEW IF EXISTS {t.local(table + '_mv')}{t.on_cluster}",
            _rollup_view(t, table, _coarser(t, time_col, time_expr, source, key, values))]
    return statements


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Callable[[Target], list[str]]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "otel_traces with typed AI columns", _spans),
    Migration(2, "deduplication window for idempotent span inserts", _dedup_window),
    Migration(3, "per-minute rollup fed by a materialized view", _rollup),
    Migration(4, "feedback table", _feedback),
    Migration(5, "alerts table: alert rule state transitions", _alerts),
    Migration(6, "dashboard rollups of AI calls per minute and per hour", _calls_rollups),
    Migration(7, "hourly confidence histogram, hourly cost per user and tenant, cost index",
              _hourly_confidence_and_users),
    Migration(8, "daily rollups of AI calls (with confidence histogram) and of cost per user",
              _daily_rollups),
    Migration(9, "latency histograms in place of t-digests in the AI call rollups",
              _latency_histograms),
    Migration(10, "confidence histogram in the per-minute AI call rollup", _minute_confidence),
    Migration(11, "otel_traces merges wider, rewriting spans less often", _fewer_merges),
    Migration(12, "hourly and daily rollups fed from the finer rollup, not the spans",
              _chained_rollups),
)

# Tables with a retention TTL, and the column it is counted from.
TTL_COLUMNS: dict[str, str] = {
    SPANS_TABLE: "toDateTime(Timestamp)",
    ROLLUP_TABLE: "Minute",
    FEEDBACK_TABLE: "toDateTime(Timestamp)",
    ALERTS_TABLE: "toDateTime(Timestamp)",
    CALLS_1M_TABLE: "Minute",
    CALLS_1H_TABLE: "Hour",
    USERS_1H_TABLE: "Hour",
    CALLS_1D_TABLE: "Day",
    USERS_1D_TABLE: "Day",
}

# Columns our collector writes; everything else in otel_traces is a DEFAULT.
BASE_COLUMNS: tuple[str, ...] = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
    "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes",
    "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes",
    "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
)


def bootstrap_statements(t: Target) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS {t.database}{t.on_cluster}",
        f"CREATE TABLE IF NOT EXISTS {t.database}.{MIGRATIONS_TABLE}{t.on_cluster} "
        "(Version UInt32, Name String, AppliedAt DateTime DEFAULT now()) "
        f"ENGINE = {t.engine('MergeTree')} ORDER BY Version",
    ]


def retention_statement(t: Target, table: str) -> str:
    """ALTER that sets `table`'s TTL to the target's retention without rewriting existing
    parts now; background TTL merges drop the expired ones."""
    return (f"ALTER TABLE {t.local(table)}{t.on_cluster} "
            f"MODIFY {_ttl(TTL_COLUMNS[table], t)} SETTINGS materialize_ttl_after_modify = 0")


def all_statements(t: Target) -> list[str]:
    """The whole schema for `t`, in order (`infersight migrate --print-ddl`)."""
    return bootstrap_statements(t) + [s for m in MIGRATIONS for s in m.statements(t)]
