"""Schema and migrations on the embedded store (the same DDL runs on a ClickHouse server)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from infersight import attributes as A
from infersight_collector.store import insert_spans, migrate, retention_days, schema


def test_migrations_are_recorded_and_applied_once(store):
    assert migrate(store) == []  # the fixture's open_store applied them already
    versions = store.query(
        f"SELECT Version, Name FROM {store.database}.{schema.MIGRATIONS_TABLE} ORDER BY Version")
    assert list(versions.Version) == [m.version for m in schema.MIGRATIONS]


def test_spans_are_merged_with_the_lower_write_amplification(store):
    settings = store.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} "
        "AND name = {t:String}", {"db": store.database, "t": schema.SPANS_TABLE}).engine_full[0]
    assert f"merge_selector_base = {schema.MERGE_SELECTOR_BASE}" in settings


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


class _OtherDatabase:
    """The shared store pointed at another database (chDB allows one store per process)."""

    def __init__(self, store, database: str):
        self._store, self.database = store, database
        self.command, self.query = store.command, store.query


def test_a_database_made_by_migration_1_upgrades_and_keeps_its_rows(store, span_batch):
    old = _OtherDatabase(store, "infersight_upgrade")
    store.command(f"DROP DATABASE IF EXISTS {old.database}")
    target = schema.Target(old.database)
    for stmt in schema.bootstrap_statements(target) + schema.MIGRATIONS[0].statements(target):
        store.command(stmt)
    store.command(f"INSERT INTO {old.database}.{schema.MIGRATIONS_TABLE} (Version, Name) "
                  "VALUES (1, 'otel_traces with typed AI columns')")
    store.insert_arrow(f"{old.database}.{schema.SPANS_TABLE}", span_batch(3))
    try:
        assert migrate(old) == [m.version for m in schema.MIGRATIONS[1:]]
        counts = store.query(f"SELECT (SELECT count() FROM {old.database}.otel_traces) AS spans,"
                             f" (SELECT count() FROM {old.database}.feedback) AS feedback")
        assert (counts.spans[0], counts.feedback[0]) == (3, 0)
    finally:
        store.command(f"DROP DATABASE {old.database}")


def test_migrations_7_to_10_fill_the_histograms_user_and_daily_rollups_from_stored_spans(
        store, span_batch):
    """Spans stored under migration 6 count in the hourly confidence histogram and per-user
    rollup after migration 7, the backfill changes no other sum of the hourly rollup, the
    daily rollups of migration 8 hold the same sums, migration 9 puts every stored call in
    the latency histograms of all three call rollups (their t-digests gone), and migration 10
    every stored confidence in the per-minute one's histogram; before and after a new
    insert."""
    old = _OtherDatabase(store, "infersight_upgrade7")
    store.command(f"DROP DATABASE IF EXISTS {old.database}")
    target = schema.Target(old.database)
    for stmt in schema.bootstrap_statements(target) + [
            s for m in schema.MIGRATIONS[:6] for s in m.statements(target)]:
        store.command(stmt)
    store.command(f"INSERT INTO {old.database}.{schema.MIGRATIONS_TABLE} (Version, Name) "
                  "SELECT number + 1, 'before' FROM numbers(6)")
    call = {A.OPERATION: "chat", A.USER: "u1", A.TENANT: "acme", A.COST: "0.5"}
    for confidence, n in (("0.25", 3), ("0.7504", 2)):
        store.insert_arrow(f"{old.database}.{schema.SPANS_TABLE}",
                           span_batch(n, attributes={**call, A.CONFIDENCE: confidence}))
    store.insert_arrow(f"{old.database}.{schema.SPANS_TABLE}",
                       span_batch(4, attributes=call, duration_ns=50_000_000))
    db = old.database
    ms1, ms50 = _latency_bucket(1_000_000), _latency_bucket(50_000_000)
    try:
        assert migrate(old) == [m.version for m in schema.MIGRATIONS[6:]]
        hourly = store.query(
            f"SELECT sum(Calls) AS calls, sum(CostUsd) AS cost, sum(ConfidenceCalls) AS conf,"
            f" toString(sumMap(ConfidenceHist)) AS hist FROM {db}.{schema.CALLS_1H_TABLE}")
        assert hourly.iloc[0].tolist() == [9, 4.5, 5, "{250:3,750:2}"]
        users = store.query(f"SELECT UserId, TenantId, sum(Calls) AS calls, sum(CostUsd) AS cost"
                            f" FROM {db}.{schema.USERS_1H_TABLE} GROUP BY UserId, TenantId")
        assert users.values.tolist() == [["u1", "acme", 9, 4.5]]
        assert _daily_sums(store, db) == ([9, 4.5, 5, "{250:3,750:2}"], [["u1", "acme", 9, 4.5]])
        assert _latency_histograms(store, db) == [f"{{{ms1}:5,{ms50}:4}}"] * 3
        assert _minute_confidence(store, db) == ["{250:3,750:2}", 9]
        # New spans reach all of them through the re-created views.
        store.insert_arrow(f"{db}.{schema.SPANS_TABLE}",
                           span_batch(1, attributes={**call, A.CONFIDENCE: "0.25"}))
        after = store.query(f"SELECT toString(sumMap(ConfidenceHist)) AS h, sum(Calls) AS n"
                            f" FROM {db}.{schema.CALLS_1H_TABLE}")
        assert after.iloc[0].tolist() == ["{250:4,750:2}", 10]
        assert store.query(f"SELECT sum(Calls) AS n FROM {db}.{schema.USERS_1H_TABLE}").n[0] == 10
        assert _daily_sums(store, db) == ([10, 5.0, 6, "{250:4,750:2}"], [["u1", "acme", 10, 5.0]])
        assert _latency_histograms(store, db) == [f"{{{ms1}:6,{ms50}:4}}"] * 3
        assert _minute_confidence(store, db) == ["{250:4,750:2}", 10]
    finally:
        store.command(f"DROP DATABASE {db}")


def _latency_bucket(duration_ns: int) -> int:
    return math.ceil(math.log(duration_ns) / math.log(schema.LATENCY_GAMMA))


def _minute_confidence(store, db: str) -> list:
    row = store.query(f"SELECT toString(sumMap(ConfidenceHist)) AS h, sum(Calls) AS n"
                      f" FROM {db}.{schema.CALLS_1M_TABLE}")
    return row.iloc[0].tolist()


def _latency_histograms(store, db: str) -> list[str]:
    """Each call rollup's summed latency histogram; checks the t-digest column is gone."""
    out = []
    for table in (schema.CALLS_1M_TABLE, schema.CALLS_1H_TABLE, schema.CALLS_1D_TABLE):
        columns = store.query("SELECT name FROM system.columns WHERE database = {db:String}"
                              " AND table = {t:String}", {"db": db, "t": table})
        assert "LatencyState" not in set(columns.name), table
        out.append(store.query(f"SELECT toString(sumMap(LatencyHist)) AS h FROM {db}.{table}").h[0])
    return out


def _daily_sums(store, db: str) -> tuple[list, list]:
    calls = store.query(
        f"SELECT sum(Calls) AS calls, sum(CostUsd) AS cost, sum(ConfidenceCalls) AS conf,"
        f" toString(sumMap(ConfidenceHist)) AS hist FROM {db}.{schema.CALLS_1D_TABLE}")
    users = store.query(f"SELECT UserId, TenantId, sum(Calls) AS calls, sum(CostUsd) AS cost"
                        f" FROM {db}.{schema.USERS_1D_TABLE} GROUP BY UserId, TenantId")
    return calls.iloc[0].tolist(), users.values.tolist()


def test_an_insert_retried_with_the_same_token_is_stored_once(store, span_batch):
    batch, other = span_batch(5), span_batch(2)
    insert_spans(store, batch, "request-a")
    insert_spans(store, batch, "request-a")
    insert_spans(store, other, "request-b")
    insert_spans(store, other)  # no token: no deduplication
    assert store.query(f"SELECT count() AS n FROM {store.database}.otel_traces").n[0] == 5 + 2 + 2
    # the rollup is fed once per stored insert, not per attempt (every call and user tier:
    # test_every_call_and_user_rollup_tier_counts_a_retried_insert_once)
    assert store.query(f"SELECT sum(Spans) AS n FROM {store.database}.otel_traces_1m").n[0] == 9


def test_spans_feed_three_views_and_each_coarser_rollup_reads_the_finer_one(store):
    """Migration 12: a span insert runs the per-minute calls, hourly users and alerts'
    per-minute views; the hourly and daily tiers are fed from the tier below them."""
    rows = store.query("SELECT name, dependencies_table AS views FROM system.tables "
                       "WHERE database = {db:String}", {"db": store.database})
    views = {r.name: sorted(r.views) for r in rows.itertuples() if len(r.views)}
    assert views == {
        schema.SPANS_TABLE: sorted([f"{schema.CALLS_1M_TABLE}_mv", f"{schema.USERS_1H_TABLE}_mv",
                                    schema.ROLLUP_VIEW]),
        schema.CALLS_1M_TABLE: [f"{schema.CALLS_1H_TABLE}_mv"],
        schema.CALLS_1H_TABLE: [f"{schema.CALLS_1D_TABLE}_mv"],
        schema.USERS_1H_TABLE: [f"{schema.USERS_1D_TABLE}_mv"]}


def test_every_call_and_user_rollup_tier_counts_a_retried_insert_once(store, span_batch):
    call = {A.OPERATION: "chat", A.USER: "u1", A.COST: "0.25", A.CONFIDENCE: "0.5"}
    batch = span_batch(5, attributes=call)
    for _ in range(3):
        insert_spans(store, batch, "request-a")
    insert_spans(store, span_batch(2, attributes=call), "request-b")
    db = store.database
    for table in (schema.CALLS_1M_TABLE, schema.CALLS_1H_TABLE, schema.CALLS_1D_TABLE,
                  schema.USERS_1H_TABLE, schema.USERS_1D_TABLE):
        row = store.query(f"SELECT sum(Calls) AS n, sum(CostUsd) AS cost FROM {db}.{table}")
        assert row.iloc[0].tolist() == [7, 1.75], table
    for table in (schema.CALLS_1M_TABLE, schema.CALLS_1H_TABLE, schema.CALLS_1D_TABLE):
        hist = store.query(f"SELECT toString(sumMap(ConfidenceHist)) AS h FROM {db}.{table}")
        assert hist.h[0] == "{500:7}", table


def test_the_chained_rollup_tiers_hold_what_their_old_views_over_the_spans_computed(
        store, span_batch):
    """Migration 12 fed the hourly and daily tiers from the tier below; each must hold, row
    for row (time bucket, every key column, sums, histograms, first and last call), what its
    view over the spans computed before. The calls straddle an hour and a day boundary."""
    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    times = [day - timedelta(seconds=10), day + timedelta(minutes=59, seconds=30),
             day + timedelta(hours=1, seconds=5)]
    calls = [{A.OPERATION: "chat", A.FEATURE: "search", A.REQUEST_MODEL: "gpt-4o",
              A.RESPONSE_MODEL: "gpt-4o-2024-08-06", A.USER: "u1", A.TENANT: "acme",
              A.COST: "0.5", A.CONFIDENCE: "0.25"},
             {A.OPERATION: "chat", A.FEATURE: "chat", A.REQUEST_MODEL: "claude",
              A.MODEL_VERSION: "v2", A.USER: "u2", A.COST: "0.125"},
             {A.OPERATION: "embeddings", A.FEATURE: "search", A.RESPONSE_MODEL: "e5",
              A.USER: "u1", A.TENANT: "acme"}]
    for i, when in enumerate(times):
        for j, call in enumerate(calls):
            batch = span_batch(1 + i + j, attributes=call, duration_ns=(1 + j) * 7_000_000,
                               status="Error" if j == 1 else "Unset")
            stamps = pa.array([int(when.timestamp() * 1e9) + j] * batch.num_rows,
                              pa.timestamp("ns"))
            insert_spans(store, batch.set_column(0, "Timestamp", stamps))
    t = schema.Target(store.database)
    # Each tier's time bucket as its old view took it from the spans.
    over_spans = {time_col: expr for _, time_col, expr in schema._CALL_TIERS}
    for table, time_col, _, _, key, values in schema._CHAINED:
        order = ", ".join([time_col] + [k for k, _ in key])
        shown = ", ".join([f"toUnixTimestamp({time_col})"] + [k for k, _ in key] + [
            f"toString({n})" if "sumMap" in typ else f"round({n}, 9)" if "Float64" in typ
            else n for n, typ, _ in values])
        expected = store.query(
            f"SELECT {shown} FROM "
            f"({schema._rollup_select(t, time_col, over_spans[time_col], key, values)}) "
            f"ORDER BY {order}")
        # The tier's rows merged by time and key (its parts may not be merged yet).
        merged = schema._coarser(t, time_col, time_col, table, key, values)
        got = store.query(f"SELECT {shown} FROM ({merged}) ORDER BY {order}")
        assert len(got) > 1 and got.values.tolist() == expected.values.tolist(), table
    hours = store.query(f"SELECT DISTINCT Hour FROM {store.database}.{schema.CALLS_1H_TABLE}")
    assert len(hours) == 3


@pytest.mark.parametrize("values", [
    ["plain", "it's", "back\\slash", "tab\there", "new\nline", "`tick`", "[a,b]", ""], []])
def test_string_and_list_parameters_reach_clickhouse_unchanged(store, values):
    got = store.query("SELECT {one:String} AS one, {many:Array(String)} AS many",
                      {"one": values[1] if values else "", "many": values})
    assert got.one[0] == (values[1] if values else "")
    assert list(got.many[0]) == values


def test_retention_is_a_setting_that_follows_the_configured_days(store):
    try:
        migrate(store, ttl_days=7)
        assert {t: retention_days(store, t) for t in schema.TTL_COLUMNS} == dict.fromkeys(
            schema.TTL_COLUMNS, 7)
    finally:
        migrate(store)
    assert retention_days(store, schema.SPANS_TABLE) == 30


_IMPORT_PROBE = """
import importlib.abc, os, sys, json
seen = {}
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "chdb" and "chdb" not in seen:
            seen["chdb"] = os.environ.get("JE_MALLOC_CONF")
        return None
sys.meta_path.insert(0, Probe())
import infersight_collector.store.chdb
print(json.dumps(seen))
"""


def _allocator_conf_when_chdb_loads(env: dict) -> str | None:
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"} | env
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return json.loads(out.splitlines()[-1])["chdb"]


def test_chdb_loads_with_its_allocator_returning_freed_memory():
    """chDB's jemalloc reads JE_MALLOC_CONF once, when the library loads: the setting must be
    in the environment by then, or the collector keeps ~300 MiB of freed pages under load
    (measured by the ingest benchmark's memory row)."""
    conf = _allocator_conf_when_chdb_loads({})
    assert conf is not None and "dirty_decay_ms:100" in conf


def test_a_users_own_allocator_setting_is_kept():
    assert _allocator_conf_when_chdb_loads({"JE_MALLOC_CONF": "narenas:2"}) == "narenas:2"
