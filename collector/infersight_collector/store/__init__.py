"""One small interface over two ClickHouse backends: chDB (embedded) and a ClickHouse server.

    store = open_store(data_dir=".infersight")           # chDB, the zero-setup default
    store = open_store(url="http://user:pw@host:8123")   # clickhouse-connect
    insert_spans(store, arrow_table, token)              # columns of schema.BASE_COLUMNS
    df = store.query("SELECT ... WHERE Feature = {f:String}", {"f": "search"})

The same DDL and the same parameterised SQL run on both; `migrate()` applies numbered
migrations and records them, so it is safe to call on every start. Inserts may carry a
deduplication token: ClickHouse drops a second insert with the same token (within
`schema.DEDUP_WINDOW_BLOCKS`), which makes retries and spool replays idempotent.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from . import schema
from .schema import Target

log = logging.getLogger(__name__)

# Settings of every insert, on both backends. A spans insert feeds its rollup views one after
# another by default: pushed in parallel, a 10k-span insert took 1.3x less time here (median
# of 6 x 80k spans, 2 cores, when six views read the spans; since migration 12 three do, and
# the coarser rollups follow from the per-minute and hourly ones).
INSERT_SETTINGS: dict[str, Any] = {"parallel_view_processing": 1}


class Store(Protocol):
    database: str

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None: ...
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame: ...
    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None: ...
    def close(self) -> None: ...


def unanswered(store: Store) -> str | None:
    """Why the store does not answer a trivial query, or None when it does: the readiness
    probe's question, and the native inserter's before it blames a statement."""
    try:
        store.query("SELECT 1 AS one")
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def insert_spans(store: Store, batch: pa.Table, dedup_token: str | None = None) -> None:
    """Insert a columnar batch of spans (columns named as in `schema.BASE_COLUMNS`); a second
    insert with the same `dedup_token` is dropped by ClickHouse."""
    store.insert_arrow(f"{store.database}.{schema.SPANS_TABLE}", batch, dedup_token)


def migrate(store: Store, ttl_days: int = 30, cluster: str | None = None) -> list[int]:
    """Apply the migrations not yet recorded, then the retention; return the versions applied."""
    target = Target(store.database, ttl_days, cluster)
    for stmt in schema.bootstrap_statements(target):
        store.command(stmt)
    done = set(
        store.query(f"SELECT Version FROM {store.database}.{schema.MIGRATIONS_TABLE}")["Version"]
    )
    applied = []
    for m in schema.MIGRATIONS:
        if m.version in done:
            continue
        for stmt in m.statements(target):
            store.command(stmt)
        store.command(
            f"INSERT INTO {store.database}.{schema.MIGRATIONS_TABLE} (Version, Name) "
            "VALUES ({v:UInt32}, {n:String})",
            {"v": m.version, "n": m.name},
        )
        applied.append(m.version)
        log.info("applied migration %d: %s", m.version, m.name)
    set_retention(store, target)
    return applied


def retention_days(store: Store, table: str, cluster: str | None = None) -> int | None:
    """The TTL in days `table` has now, read from its CREATE statement."""
    local = Target(store.database, 1, cluster).local(table).split(".", 1)[1]
    ddl = store.query(
        "SELECT create_table_query AS q FROM system.tables WHERE database = {db:String} "
        "AND name = {t:String}", {"db": store.database, "t": local}).q
    found = re.search(r"toIntervalDay\((\d+)\)", ddl.iloc[0]) if len(ddl) else None
    return int(found.group(1)) if found else None


def set_retention(store: Store, target: Target) -> None:
    """Make every table with a TTL keep `target.ttl_days` days; a no-op when it already does."""
    for table in schema.TTL_COLUMNS:
        current = retention_days(store, table, target.cluster)
        if current != target.ttl_days:
            store.command(schema.retention_statement(target, table))
            log.info("retention of %s: %s -> %d days", table, current, target.ttl_days)


def open_store(*, url: str | None = None, data_dir: str | None = None,
               database: str = schema.DATABASE, ttl_days: int = 30,
               cluster: str | None = None) -> Store:
    """Open the server backend when `url` is given, else chDB in `data_dir`; migrate it.
    `cluster` (server only) renders the schema for that ClickHouse cluster."""
    if url:
        from .clickhouse import ClickHouseStore
        store: Store = ClickHouseStore(url, database, distributed=bool(cluster))
    else:
        if cluster:
            raise ValueError("cluster mode needs a ClickHouse server (--clickhouse-url)")
        from .chdb import ChdbStore
        store = ChdbStore(data_dir or ".infersight", database)
    migrate(store, ttl_days, cluster)
    return store
