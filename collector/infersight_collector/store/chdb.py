"""Embedded backend: chDB, the ClickHouse engine in-process.

chDB allows one process per data directory, and one session must not run two queries at once,
so every call goes through a lock; the dashboard shares this object in `infersight serve`.
`connection()` opens another session on the same engine, for statements that should run
beside this one's (the native inserter's lanes).

chDB's allocator (its own jemalloc, configured by JE_MALLOC_CONF) keeps freed pages for 10 s
by default; under steady ingest that held about 300 MiB more than ClickHouse was using. A
background thread returning them after 100 ms costs about 10% more CPU per insert. Set before
chDB loads; a JE_MALLOC_CONF of the user's own is left alone.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

import pandas as pd
import pyarrow as pa

os.environ.setdefault("JE_MALLOC_CONF", "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0")

from chdb import session  # noqa: E402  (after its allocator's settings)

from . import INSERT_SETTINGS  # noqa: E402


# ClickHouse reads query parameter values in its escaped text format, so a backslash or a tab in
# a value must be escaped (clickhouse-connect does the same for the server backend).
_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "`": "\\`", "\t": "\\t", "\n": "\\n"})


def _escaped(parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    if not parameters:
        return None
    return {k: _text(v) for k, v in parameters.items()}


def _text(value: Any) -> Any:
    """A value as ClickHouse reads a parameter: a string escaped, a list or tuple of strings as
    an array literal of quoted strings (as clickhouse-connect sends them to a server)."""
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(f"'{_text(v)}'" if isinstance(v, str) else str(_text(v))
                              for v in value) + "]"
    return value


# `INSERT_SETTINGS` as a SETTINGS clause's list.
INSERT_SETTINGS_SQL = ", ".join(f"{name} = {value}" for name, value in INSERT_SETTINGS.items())


class ChdbStore:
    def __init__(self, data_dir: str, database: str):
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self.database = database
        self._session = session.Session(data_dir)
        self._lock = threading.Lock()
        self._closed = False
        self._connections: list[ChdbStore] = []
        # chDB can crash at interpreter exit if a session is still open.
        atexit.register(self.close)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._session.query(sql, "CSV", params=_escaped(parameters))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
        with self._lock:
            return self._session.query(sql, "DataFrame", params=_escaped(parameters))

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        cols = ", ".join(f"`{c}`" for c in data.column_names)
        sql = (f"INSERT INTO {table} ({cols}) SELECT * FROM Python(arrow_batch) "
               f"SETTINGS {INSERT_SETTINGS_SQL}")
        if dedup_token:
            sql += ", insert_deduplicate = 1, insert_deduplication_token = {token:String}"
        with self._lock:
            # chDB resolves Python(name) against the caller's local variables.
            arrow_batch = data  # noqa: F841
            self._session.query(sql, params={"token": dedup_token} if dedup_token else None)

    def connection(self) -> "ChdbStore":
        """Another connection to the same engine: its statements run beside this one's
        rather than after them. Closed with this one."""
        other = ChdbStore(self.data_dir, self.database)
        self._connections.append(other)
        return other

    def close(self) -> None:
        for other in self._connections:
            other.close()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session.close()
