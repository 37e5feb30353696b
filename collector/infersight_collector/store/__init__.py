"""One small interface over two ClickHouse backends: chDB (embedded) and a ClickHouse server.

    store = open_store(data_dir=".infersight")           # chDB, the zero-setup default
    store = open_store(url="http://user:pw@host:8123")   # clickhouse-connect
    store.insert_spans(arrow_table)                      # columns of schema.BASE_COLUMNS
    df = store.query("SELECT ... WHERE Feature = {f:String}", {"f": "search"})

The same DDL and the same parameterised SQL run on both; `migrate()` applies numbered
migrations and records them, so it is safe to call on every start.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from . import schema

log = logging.getLogger(__name__)


class Store(Protocol):
    database: str

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None: ...
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame: ...
    def insert_arrow(self, table: str, data: pa.Table) -> None: ...
    def close(self) -> None: ...


def insert_spans(store: Store, batch: pa.Table) -> None:
    """Insert a columnar batch of spans (columns named as in `schema.BASE_COLUMNS`)."""
    store.insert_arrow(f"{store.database}.{schema.SPANS_TABLE}", batch)


def migrate(store: Store, ttl_days: int = 30) -> list[int]:
    """Apply the migrations not yet recorded; return the versions applied now."""
    for stmt in schema.bootstrap_statements(store.database):
        store.command(stmt)
    done = set(
        store.query(f"SELECT Version FROM {store.database}.{schema.MIGRATIONS_TABLE}")["Version"]
    )
    applied = []
    for m in schema.MIGRATIONS:
        if m.version in done:
            continue
        for stmt in m.statements:
            store.command(schema.render(stmt, store.database, ttl_days))
        store.command(
            f"INSERT INTO {store.database}.{schema.MIGRATIONS_TABLE} (Version, Name) "
            "VALUES ({v:UInt32}, {n:String})",
            {"v": m.version, "n": m.name},
        )
        applied.append(m.version)
        log.info("applied migration %d: %s", m.version, m.name)
    return applied


def open_store(*, url: str | None = None, data_dir: str | None = None,
               database: str = schema.DATABASE, ttl_days: int = 30) -> Store:
    """Open the server backend when `url` is given, else chDB in `data_dir`; migrate it."""
    if url:
        from .clickhouse import ClickHouseStore
        store: Store = ClickHouseStore(url, database)
    else:
        from .chdb import ChdbStore
        store = ChdbStore(data_dir or ".infersight", database)
    migrate(store, ttl_days)
    return store
