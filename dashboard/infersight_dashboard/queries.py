"""Every SQL query the dashboard pages run, one function each, returning a DataFrame.

Values travel as ClickHouse server-side parameters (`{name:Type}`), never as SQL text; only our
own table name is formatted in. Every query is bounded by `[start, end)` (datetimes; naive ones
are taken as UTC) and counts AI spans only (`Operation != ''`), so the plain HTTP or database
spans of a service never show up as calls. The same SQL runs on chDB and a ClickHouse server.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from infersight_collector.store import Store
from infersight_collector.store.schema import SPANS_TABLE

# Bucket widths a time axis reads well in: each divides the next larger unit evenly.
_BUCKET_STEPS = (
    1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800,
)
_MAX_POINTS = 120

# Shared SQL fragments: the window and the "AI spans only" rule every query applies.
_WHERE = (
    "Timestamp >= {start:DateTime64(3, 'UTC')} AND Timestamp < {end:DateTime64(3, 'UTC')}"
    " AND Operation != ''"
)
_FEATURE = "if(Feature = '', '(none)', Feature)"
_MODEL = "if(ResponseModel != '', ResponseModel, RequestModel)"


def choose_bucket_seconds(start: datetime, end: datetime) -> int:
    """The smallest readable bucket that keeps a chart of `[start, end)` to at most 120 points."""
    span = (end - start).total_seconds()
    for step in _BUCKET_STEPS:
        if span / step <= _MAX_POINTS:
            return step
    return _BUCKET_STEPS[-1]


def cost_per_feature_over_time(store: Store, start: datetime, end: datetime,
                               bucket_seconds: int) -> pd.DataFrame:
    """Cost and call count per feature per time bucket: bucket, feature, cost_usd, calls."""
    # A bare DateTime bucket would come back zone-less or in the server's zone; DateTime64 with
    # an explicit zone arrives as a UTC timestamp from both backends.
    sql = f"""
        SELECT
            toDateTime64(toStartOfInterval(Timestamp, INTERVAL {{bucket:UInt32}} SECOND, 'UTC'),
                         3, 'UTC') AS bucket,
            {_FEATURE} AS feature,
            sum(CostUsd) AS cost_usd,
            count() AS calls
        FROM {_table(store)}
        WHERE {_WHERE}
        GROUP BY bucket, feature
        ORDER BY bucket, feature
    """
    params = {**_window(start, end), "bucket": int(bucket_seconds)}
    return store.query(sql, params)


def feature_model_table(store: Store, start: datetime, end: datetime) -> pd.DataFrame:
    """One row per (feature, model), most expensive first.

    Columns: feature, model, calls, errors, cost_usd, input_tokens, output_tokens,
    p95_latency_ms. The p95 is exact (`quantileExact`: the value at 0-based rank floor(0.95 * n)),
    since per-pair call counts are small enough that an approximate quantile would visibly wander.
    """
    sql = f"""
        SELECT
            {_FEATURE} AS feature,
            {_MODEL} AS model,
            count() AS calls,
            countIf(StatusCode = 'Error') AS errors,
            sum(CostUsd) AS cost_usd,
            sum(InputTokens) AS input_tokens,
            sum(OutputTokens) AS output_tokens,
            quantileExact(0.95)(Duration) / 1e6 AS p95_latency_ms
        FROM {_table(store)}
        WHERE {_WHERE}
        GROUP BY feature, model
        ORDER BY cost_usd DESC, feature, model
    """
    return store.query(sql, _window(start, end))


def _table(store: Store) -> str:
    return f"{store.database}.{SPANS_TABLE}"


def _window(start: datetime, end: datetime) -> dict[str, str]:
    # chDB cannot bind a zone-aware datetime, and a naive one is read in the server's zone, so
    # both backends get the same UTC text.
    return {"start": _utc_text(start), "end": _utc_text(end)}


def _utc_text(t: datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

