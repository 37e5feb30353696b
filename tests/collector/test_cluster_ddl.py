"""Cluster mode is a rendering of the same migrations: ON CLUSTER, Replicated engines, local
tables behind Distributed ones sharded by trace id. No cluster runs here, so the generated DDL
is checked as text, and the single-node rendering is what the store tests run."""

from __future__ import annotations

import re

import pytest

from infersight_collector.store import schema
from infersight_collector.store.schema import Target

CLUSTER = Target("infersight", 14, cluster="prod")


def creates(statements: list[str]) -> dict[str, str]:
    """name -> statement, for every CREATE in `statements`."""
    found = {}
    for stmt in statements:
        m = re.match(r"CREATE (?:TABLE|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS (\S+)", stmt)
        if m:
            found[m.group(1)] = stmt
    return found


def test_every_statement_runs_on_the_whole_cluster():
    for stmt in schema.all_statements(CLUSTER):
        assert " ON CLUSTER prod " in stmt or stmt.rstrip().endswith("ON CLUSTER prod"), stmt


def test_rows_live_in_replicated_local_tables_behind_distributed_ones():
    ddl = creates(schema.all_statements(CLUSTER))
    for table in schema.DATA_TABLES:
        local = ddl[f"infersight.{table}_local"]
        assert re.search(r"ENGINE = Replicated\w*MergeTree\n", local), local
        assert "toIntervalDay(14)" in local
        assert f"ENGINE = Distributed(prod, infersight, {table}_local" in ddl[f"infersight.{table}"]
    assert "Distributed(prod, infersight, otel_traces_local, cityHash64(TraceId))" in ddl[
        "infersight.otel_traces"]
    assert "cityHash64(TraceId)" in ddl["infersight.feedback"]
    assert "ReplicatedAggregatingMergeTree" in ddl["infersight.otel_traces_1m_local"]


def test_the_rollup_view_reads_and_writes_local_tables_on_each_shard():
    view = creates(schema.all_statements(CLUSTER))["infersight.otel_traces_1m_mv_local"]
    assert "TO infersight.otel_traces_1m_local" in view
    assert "FROM infersight.otel_traces_local" in view


def test_each_rollup_tier_is_fed_on_its_shard_from_the_local_tier_below_it():
    views = creates(schema.all_statements(CLUSTER))  # the last definition of each
    for table, source in (("ai_calls_1m", "otel_traces"), ("ai_users_1h", "otel_traces"),
                          ("ai_calls_1h", "ai_calls_1m"), ("ai_calls_1d", "ai_calls_1h"),
                          ("ai_users_1d", "ai_users_1h")):
        view = views[f"infersight.{table}_mv_local"]
        assert f"TO infersight.{table}_local AS" in view
        assert f"FROM infersight.{source}_local\n" in view, view


def test_single_node_ddl_has_no_cluster_parts():
    text = "\n".join(schema.all_statements(Target()))
    for word in ("ON CLUSTER", "Replicated", "Distributed", "_local"):
        assert word not in text
    assert "non_replicated_deduplication_window" in text


@pytest.mark.parametrize("bad", ["prod; DROP TABLE x", "a b", ""])
def test_cluster_and_database_names_must_be_identifiers(bad):
    with pytest.raises(ValueError):
        Target(cluster=bad or "1x")
    with pytest.raises(ValueError):
        Target(database=bad or "1x")
