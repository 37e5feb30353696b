"""Server backend: a ClickHouse server through clickhouse-connect (`CLICKHOUSE_URL`)."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
import pandas as pd
import pyarrow as pa


class ClickHouseStore:
    def __init__(self, url: str, database: str):
        self.database = database
        self._client = clickhouse_connect.get_client(dsn=url, database="default")

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self._client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
        return self._client.query_df(sql, parameters=parameters)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self._client.insert_arrow(table, data)

    def close(self) -> None:
        self._client.close()
