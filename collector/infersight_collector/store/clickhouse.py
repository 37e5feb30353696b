"""Server backend: a ClickHouse server through clickhouse-connect (`CLICKHOUSE_URL`)."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
import pandas as pd
import pyarrow as pa

from . import INSERT_SETTINGS


class ClickHouseStore:
    def __init__(self, url: str, database: str, distributed: bool = False):
        self.database = database
        self._client = clickhouse_connect.get_client(dsn=url, database="default")
        # Through a Distributed table, a deduplication token reaches the shards only when the
        # insert is forwarded synchronously.
        self._insert_settings = dict(INSERT_SETTINGS)
        if distributed:
            self._insert_settings["distributed_foreground_insert"] = 1

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self._client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
        return self._client.query_df(sql, parameters=parameters)

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        settings = dict(self._insert_settings)
        if dedup_token:
            settings.update(insert_deduplicate=1, insert_deduplication_token=dedup_token)
        self._client.insert_arrow(table, data, settings=settings)

    def close(self) -> None:
        self._client.close()
