"""Every SQL query the dashboard pages run, one function each, returning a DataFrame (or two,
where one read groups the same rows two ways: a summary and its series).

Each is a plain function `f(store, start, end, ..., filters=None)`, so benchmarks time exactly
what the pages run. Values travel as ClickHouse server-side parameters
(`{name:Type}`), never as SQL text: the SQL of a query is the same string whatever the filter
values (an unset filter is `''` and its clause reads `({f:String} = '' OR col = {f:String})`);
only our own table name and fixed expressions are formatted in. Every query is bounded by
`[start, end)` (datetimes; naive ones are taken as UTC; `version_history` by the whole UTC
days it touches) and, except a trace's own spans, counts AI spans only (`Operation != ''`), so
the plain HTTP or database spans of a service never show up as calls. The same SQL runs on chDB and a ClickHouse server.

Aggregates (totals, cost per feature / model / version, version series and summaries, filter
options) read the per-day, per-hour and per-minute rollups of schema migrations 6 and 8 plus
the raw spans at the window's ragged edges (see "the rollups" below): sums, counts and
first/last times are exact; latency quantiles come from merged log histograms and are within
1% of a true quantile (migration 9). Confidence histograms read the daily
and hourly rollups' histogram column, and per-user / per-tenant cost the per-user daily and
hourly rollups (migrations 7 and 8), each with the raw spans outside the window's whole hours;
expensive calls, trace search and the waterfall read the spans.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone

import pandas as pd

from infersight import attributes as A
from infersight_collector.store import Store
from infersight_collector.store.schema import (
    ALERTS_TABLE, CALLS_1D_TABLE, CALLS_1H_TABLE, CALLS_1M_TABLE, CALLS_KEY, CALLS_VALUES,
    FEEDBACK_TABLE, SPANS_TABLE, USERS_1D_TABLE, USERS_1H_TABLE,
    latency_of_bucket,
)
from infersight_dashboard.auth import current_project
from infersight_dashboard.filters import Filters

# Bucket widths a time axis reads well in: each divides the next larger unit evenly.
_BUCKET_STEPS = (
    1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800,
)
_MAX_POINTS = 120

# Below this many calls in a bucket an error rate says more about chance than about the model.
MIN_CALLS_FOR_RATE = 5

# Feedback is negative when its score is below NEGATIVE_SCORE_BELOW (scores run from 0, thumbs
# down, to 1, thumbs up, as the Feedback proto suggests) or its label, lower-cased, is one of
# NEGATIVE_LABELS. Feedback with neither a score nor a label (a bare comment) is no verdict.
NEGATIVE_SCORE_BELOW = 0.5
NEGATIVE_LABELS = ("bad", "hallucination", "harmful", "incorrect", "negative", "off-topic",
                   "thumbs_down", "unhelpful", "wrong")
# Below this many verdicts a share of negative feedback is mostly chance.
MIN_FEEDBACK_FOR_SHARE = 5
# Feedback arrives after the call it is about: it is looked for this far either side of the
# window (either side, because the service's clock and the reviewer's can disagree).
FEEDBACK_LAG = timedelta(days=7)

NO_VALUE = "(none)"  # the label of an empty dimension value
# How each dimension reads: the label a person sees is also what a filter matches.
_FEATURE = f"if(Feature = '', '{NO_VALUE}', Feature)"
_MODEL = "if(ResponseModel != '', ResponseModel, RequestModel)"  # the model that answered
_FAMILY = "if(RequestModel != '', RequestModel, ResponseModel)"  # the model the code asked for
# A call that failed before a response has no served version: it counts under "(none)".
_VERSION = (f"multiIf(ModelVersion != '', ModelVersion, ResponseModel != '', ResponseModel,"
            f" '{NO_VALUE}')")
_DIMENSIONS = {
    "service": "ServiceName",
    "project": f"if(ProjectId = '', '{NO_VALUE}', ProjectId)",
    "feature": _FEATURE,
    "model": _FAMILY,
    "version": _VERSION,
    "user": f"if(UserId = '', '{NO_VALUE}', UserId)",
    "tenant": f"if(TenantId = '', '{NO_VALUE}', TenantId)",
}

# Shared SQL fragments: the window, the "AI spans only" rule, and the global filters.
_WINDOW = "Timestamp >= {start:DateTime64(3, 'UTC')} AND Timestamp < {end:DateTime64(3, 'UTC')}"
_WHERE = f"{_WINDOW} AND Operation != ''" + "".join(
    f" AND ({{{key}:String}} = '' OR {_DIMENSIONS[key]} = {{{key}:String}})"
    for key in asdict(Filters())
)
_PROJECT = f"({{project:String}} = '' OR {_DIMENSIONS['project']} = {{project:String}})"
_ALERT_PROJECT = "({project:String} = '' OR Scope['project'] = {project:String})"
_BUCKET = ("toDateTime64(toStartOfInterval(Timestamp, INTERVAL {bucket:UInt32} SECOND, 'UTC'),"
           " 3, 'UTC')")
_ERROR = "StatusCode = 'Error'"
_TOKENS = "(InputTokens + OutputTokens)"
_MEAN_TIME = "avg(toUnixTimestamp64Milli(Timestamp))"

_FEEDBACK_BUCKET = _BUCKET.replace("(Timestamp,", "(at,")  # bucketed by the call's time
_FEEDBACK_COLUMNS = (
    "count() AS feedback, count(score) AS scored, ifNull(avg(score), nan) AS mean_score,"
    " countIf(negative) AS negative,"
    " if(feedback >= {min_feedback:UInt32}, negative / feedback, nan) AS negative_share"
)


# ---- the rollups (schema migrations 6, 8 and 9) --------------------------------------------
# Aggregates read `ai_calls_1d` for the whole UTC days of the window, `ai_calls_1h` for the
# whole hours left at either end, `ai_calls_1m` for the whole minutes left, and otel_traces
# only for the seconds before the first whole minute and after the last: the same rows, so
# sums, counts, first/last call times and mean times are exact. A chart whose bucket is not a
# whole number of minutes (hours, days) leaves the minute (hour, day) table out. Latency
# quantiles add up log histograms (`LATENCY_HIST`): the value returned is within 1% of the
# call's at that rank, rounded to the microsecond.
_ROLLUP_DIMENSIONS = {**_DIMENSIONS, "model": "Family", "version": "Version"}
_ROLLUP_FILTERS = "".join(
    f" AND ({{{key}:String}} = '' OR {_ROLLUP_DIMENSIONS[key]} = {{{key}:String}})"
    for key in asdict(Filters())
)
_CALL_COLUMNS = ", ".join([name for name, _ in CALLS_KEY] + [name for name, _, _ in CALLS_VALUES])
_RAW_CALLS = ", ".join([f"{expr} AS {name}" for name, expr in CALLS_KEY]
                       + [f"{expr} AS {name}" for name, _, expr in CALLS_VALUES])
_RAW_GROUP = ", ".join(name for name, _ in CALLS_KEY)
_R_BUCKET = "toDateTime64(toStartOfInterval(T, INTERVAL {bucket:UInt32} SECOND, 'UTC'), 3, 'UTC')"
_R_FEATURE = f"if(Feature = '', '{NO_VALUE}', Feature)"
_R_ERROR_RATE = "if(calls >= {min_calls:UInt32}, errors / calls, nan)"


def _latency_ms(levels: str) -> str:
    """The latency quantiles (ms, as an array) at `levels` (SQL numbers) of a group's calls,
    from their merged histogram: the q-quantile of n calls is the one of rank ceil(q n), 1
    being the fastest (the nearest-rank definition: at least q of the calls took no longer),
    and its bucket is read back as `latency_of_bucket`. `sumMap` returns its keys sorted."""
    keys, counts = "mapKeys(sumMap(LatencyHist))", "mapValues(sumMap(LatencyHist))"
    rank = f"arrayFirstIndex(c -> c >= q * arraySum({counts}), arrayCumSum({counts}))"
    return f"arrayMap(q -> round({latency_of_bucket(f'{keys}[{rank}]')} / 1e6, 3), [{levels}])"


_R_QUANTILES = _latency_ms("0.5, 0.95, 0.99")
_R_P95 = f"{_latency_ms('0.95')}[1]"
_R_MEAN_CONFIDENCE = "if(sum(ConfidenceCalls) = 0, nan, sum(ConfidenceSum) / sum(ConfidenceCalls))"


def _calls(store: Store, start: datetime, end: datetime, bucket: int | None = None) -> str:
    """A subquery over AI calls in `[start, end)` and the filters: one row per time T and key,
    with the rollups' value columns (see above; `_tier_params(start, end, bucket)` sets the
    ranges). A tier whose range is empty is left out (an empty read still costs chDB 5-13 ms):
    the SQL depends on the window's shape, never on a filter value."""
    db = store.database
    t = {**_tier_params(start, end, bucket), **_window(start, end)}
    days, hours, minutes = ((t[f"{x}_start"], t[f"{x}_end"]) for x in "dhm")
    branches = []
    if days[0] != days[1]:
        branches.append(f"""
        SELECT toDateTime(Day, 'UTC') AS T, {_CALL_COLUMNS}
        FROM {db}.{CALLS_1D_TABLE}
        WHERE {_DAYS} {_ROLLUP_FILTERS}""")
    if hours[0] != hours[1] and hours != days:
        branches.append(f"""
        SELECT toDateTime(Hour, 'UTC') AS T, {_CALL_COLUMNS}
        FROM {db}.{CALLS_1H_TABLE}
        WHERE {_HOURS_OUTSIDE_DAYS} {_ROLLUP_FILTERS}""")
    if minutes[0] != minutes[1] and minutes != hours:
        branches.append(f"""
        SELECT toDateTime(Minute, 'UTC') AS T, {_CALL_COLUMNS}
        FROM {db}.{CALLS_1M_TABLE}
        WHERE Minute >= {{m_start:DateTime64(3, 'UTC')}} AND Minute < {{m_end:DateTime64(3, 'UTC')}}
              AND (Minute < {{h_start:DateTime64(3, 'UTC')}}
                   OR Minute >= {{h_end:DateTime64(3, 'UTC')}})
              {_ROLLUP_FILTERS}""")
    if (t["start"], t["end"]) != minutes or not branches:
        branches.append(f"""
        SELECT toDateTime(toStartOfInterval(Timestamp, INTERVAL {{raw_grain:UInt32}} SECOND,
                                            'UTC'), 'UTC') AS T, {_RAW_CALLS}
        FROM {_table(store)}
        WHERE {_WHERE}
              AND (Timestamp < {{m_start:DateTime64(3, 'UTC')}}
                   OR Timestamp >= {{m_end:DateTime64(3, 'UTC')}})
        GROUP BY T, {_RAW_GROUP}""")
    return "(" + "\n        UNION ALL".join(branches) + "\n    )"


# The whole days of the window ([d_start, d_end) of `_tier_params`) read from a daily rollup,
# the whole hours outside them ([h_start, h_end)) from an hourly one, and the spans outside them.
_DAYS = "Day >= {d_start:DateTime64(3, 'UTC')} AND Day < {d_end:DateTime64(3, 'UTC')}"
_HOURS_OUTSIDE_DAYS = (
    "Hour >= {h_start:DateTime64(3, 'UTC')} AND Hour < {h_end:DateTime64(3, 'UTC')}"
    " AND (Hour < {d_start:DateTime64(3, 'UTC')} OR Hour >= {d_end:DateTime64(3, 'UTC')})")
_OUTSIDE_HOURS = ("(Timestamp < {h_start:DateTime64(3, 'UTC')}"
                  " OR Timestamp >= {h_end:DateTime64(3, 'UTC')})")


def _unit_costs(input_tokens: str, output_tokens: str, cache_read_tokens: str) -> str:
    """Token sums (of the given columns) and unit costs, after `calls` and `cost_usd`."""
    return f"""sum({input_tokens}) AS input_tokens, sum({output_tokens}) AS output_tokens,
               sum({cache_read_tokens}) AS cache_read_tokens,
               cost_usd / calls AS cost_per_call,
               if(input_tokens + output_tokens = 0, nan,
                  cost_usd * 1000 / (input_tokens + output_tokens)) AS cost_per_1k_tokens"""


# When the per-user rollup can answer: no filter it lacks a column for.
_USERS_ROLLUP = ("({service:String} = '' AND {feature:String} = '' AND {model:String} = ''"
                 " AND {version:String} = '')")


def _floor(t: datetime, step: int) -> datetime:
    return datetime.fromtimestamp(math.floor(t.timestamp() / step) * step, timezone.utc)


def _ceil(t: datetime, step: int) -> datetime:
    return datetime.fromtimestamp(math.ceil(t.timestamp() / step) * step, timezone.utc)


def _aware(t: datetime) -> datetime:
    """A naive datetime is UTC."""
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _tier_params(start: datetime, end: datetime, bucket: int | None = None) -> dict:
    """Where `_calls` reads each tier: days [d_start, d_end), hours [h_start, h_end) outside
    them, minutes [m_start, m_end) outside the hours, raw spans outside the minutes; a bucket
    the minutes (hours, days) cannot build leaves that tier empty."""
    start, end = _aware(start), _aware(end)
    m_start, m_end = _ceil(start, 60), _floor(end, 60)
    if (bucket and bucket % 60) or m_start >= m_end:
        m_start = m_end = end
    h_start, h_end = _ceil(m_start, 3600), _floor(m_end, 3600)
    if (bucket and bucket % 3600) or h_start >= h_end:
        h_start = h_end = m_end
    d_start, d_end = _ceil(h_start, 86400), _floor(h_end, 86400)
    if (bucket and bucket % 86400) or d_start >= d_end:
        d_start = d_end = h_end
    grain = math.gcd(int(bucket), 60) if bucket else 60
    return {"m_start": _utc_text(m_start), "m_end": _utc_text(m_end),
            "h_start": _utc_text(h_start), "h_end": _utc_text(h_end),
            "d_start": _utc_text(d_start), "d_end": _utc_text(d_end), "raw_grain": grain}


def choose_bucket_seconds(start: datetime, end: datetime) -> int:
    """The smallest readable bucket that keeps a chart of `[start, end)` to at most 120 points."""
    span = (end - start).total_seconds()
    for step in _BUCKET_STEPS:
        if span / step <= _MAX_POINTS:
            return step
    return _BUCKET_STEPS[-1]


def cost_per_feature_over_time(store: Store, start: datetime, end: datetime,
                               bucket_seconds: int, filters: Filters | None = None
                               ) -> pd.DataFrame:
    """Cost and call count per feature per time bucket: bucket, feature, cost_usd, calls."""
    # A bare DateTime bucket would come back zone-less or in the server's zone; DateTime64 with
    # an explicit zone arrives as a UTC timestamp from both backends.
    sql = f"""
        SELECT {_R_BUCKET} AS bucket, {_R_FEATURE} AS feature, sum(CostUsd) AS cost_usd,
               sum(Calls) AS calls
        FROM {_calls(store, start, end, int(bucket_seconds))}
        GROUP BY bucket, feature
        ORDER BY bucket, feature
    """
    return store.query(sql, _params(start, end, filters, bucket=int(bucket_seconds),
                                    **_tier_params(start, end, int(bucket_seconds))))


def feature_model_table(store: Store, start: datetime, end: datetime,
                        filters: Filters | None = None) -> pd.DataFrame:
    """One row per (feature, served model), most expensive first.

    Columns: feature, model, calls, errors, cost_usd, input_tokens, output_tokens,
    cache_read_tokens, p95_latency_ms (within 1%: see the rollups above).
    """
    sql = f"""
        SELECT {_R_FEATURE} AS feature, Model AS model, sum(Calls) AS calls,
               sum(Errors) AS errors, sum(CostUsd) AS cost_usd,
               sum(InputTokens) AS input_tokens, sum(OutputTokens) AS output_tokens,
               sum(CacheReadTokens) AS cache_read_tokens, {_R_P95} AS p95_latency_ms
        FROM {_calls(store, start, end)}
        GROUP BY feature, model
        ORDER BY cost_usd DESC, feature, model
    """
    return store.query(sql, _params(start, end, filters, **_tier_params(start, end)))


def filter_options(store: Store, start: datetime, end: datetime) -> pd.DataFrame:
    """The values each global filter can take in the window: key, value, calls (most first).

    Not narrowed by the filters themselves, so choosing one feature still lists the others."""
    pairs = ", ".join(f"('{key}', {_ROLLUP_DIMENSIONS[key]})" for key in asdict(Filters()))
    sql = f"""
        SELECT kv.1 AS key, kv.2 AS value, sum(Calls) AS calls
        FROM {_calls(store, start, end)}
        ARRAY JOIN [{pairs}] AS kv
        GROUP BY key, value
        ORDER BY key, calls DESC, value
    """
    return store.query(sql, _params(start, end, None, **_tier_params(start, end)))


_TOTALS = f"""sum(Calls) AS calls, sum(Errors) AS errors, sum(CostUsd) AS cost_usd,
               sum(InputTokens) AS input_tokens, sum(OutputTokens) AS output_tokens,
               input_tokens + output_tokens AS tokens,
               if(calls = 0, nan, {_R_P95}) AS p95_latency_ms"""


def summary(store: Store, start: datetime, end: datetime,
            filters: Filters | None = None) -> pd.DataFrame:
    """One row for the window: calls, errors, cost_usd, input_tokens, output_tokens, tokens,
    p95_latency_ms (NaN without calls; within 1%, see the rollups above)."""
    sql = f"SELECT {_TOTALS} FROM {_calls(store, start, end)}"
    return store.query(sql, _params(start, end, filters, **_tier_params(start, end)))


def totals(store: Store, start: datetime, end: datetime, bucket_seconds: int,
           filters: Filters | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`summary`, series) of the window from one read grouped both ways (GROUPING SETS);
    the series has per time bucket: bucket, calls, errors, cost_usd, tokens, p95_latency_ms."""
    bucket = int(bucket_seconds)
    sql = f"""
        SELECT {_R_BUCKET} AS bucket, grouping(bucket) AS whole, {_TOTALS}
        FROM {_calls(store, start, end, bucket)}
        GROUP BY GROUPING SETS ((bucket), ())
        ORDER BY whole, bucket
    """
    df = store.query(sql, _params(start, end, filters, bucket=bucket,
                                  **_tier_params(start, end, bucket)))
    summary, series = _split_grouping(df)
    return summary, series[["bucket", "calls", "errors", "cost_usd", "tokens", "p95_latency_ms"]]


# The dimensions the call rollups are keyed by (`cost_by_each`); users and tenants are not.
_ROLLUP_KEYS = ("service", "project", "feature", "model", "version")


def cost_by(store: Store, start: datetime, end: datetime, by: str,
            filters: Filters | None = None, limit: int = 50) -> pd.DataFrame:
    """Cost per value of one dimension (`by`: service, project, feature, model, version, user,
    tenant), most expensive first, at most `limit` rows.

    Columns: key, calls, cost_usd, input_tokens, output_tokens, cache_read_tokens,
    cost_per_call, cost_per_1k_tokens (NaN without tokens). Users and tenants come from
    `cost_per_user_and_tenant`; the other dimensions from the rollups (`cost_by_each`).
    """
    if by not in _DIMENSIONS:
        raise ValueError(f"cannot group cost by {by!r}; choose one of {sorted(_DIMENSIONS)}")
    if by in _ROLLUP_KEYS:
        rows = cost_by_each(store, start, end, (by,), filters, limit)
    else:
        rows = cost_per_user_and_tenant(store, start, end, filters, limit)
    return rows[rows["dimension"] == by].drop(columns="dimension").reset_index(drop=True)



def cost_by_each(store: Store, start: datetime, end: datetime, dimensions: tuple[str, ...],
                 filters: Filters | None = None, limit: int = 50) -> pd.DataFrame:
    """`cost_by` for each of several rollup dimensions (service, project, feature, model,
    version) in one read of the rollups: dimension, then the columns of `cost_by`, each
    dimension's rows most expensive first, at most `limit` of them."""
    unknown = sorted(set(dimensions) - set(_ROLLUP_KEYS))
    if unknown or not dimensions:
        raise ValueError(f"cannot group cost by {unknown or 'nothing'} in one read; choose "
                         f"from {list(_ROLLUP_KEYS)}")
    pairs = ", ".join(f"('{by}', {_ROLLUP_DIMENSIONS[by]})" for by in dimensions)
    sql = f"""
        SELECT d.1 AS dimension, d.2 AS key, sum(Calls) AS calls, sum(CostUsd) AS cost_usd,
               {_unit_costs("InputTokens", "OutputTokens", "CacheReadTokens")}
        FROM {_calls(store, start, end)}
        ARRAY JOIN [{pairs}] AS d
        GROUP BY dimension, key
        ORDER BY dimension, cost_usd DESC, key
        LIMIT {{limit:UInt32}} BY dimension
    """
    return store.query(sql, _params(start, end, filters, limit=int(limit),
                                    **_tier_params(start, end)))


def cost_per_user_and_tenant(store: Store, start: datetime, end: datetime,
                             filters: Filters | None = None, limit: int = 50) -> pd.DataFrame:
    """Cost per user and per tenant in one read, most expensive first, at most `limit` rows
    each: dimension ('tenant' or 'user'), then the columns of `cost_by`.

    Reads the hourly per-user rollup, unless a service, feature, model or version filter is
    set (it has no such columns): then the spans. Which branch reads is decided by the
    parameters (a folded constant), so the SQL text stays the same."""
    sums = "sum(CostUsd) AS cost, sum(InputTokens) AS i, sum(OutputTokens) AS o, " \
           "sum(CacheReadTokens) AS c"
    sql = f"""
        SELECT d.1 AS dimension, d.2 AS key, sum(n) AS calls, sum(cost) AS cost_usd,
               {_unit_costs("i", "o", "c")}
        FROM (
            SELECT UserId, TenantId, sum(Calls) AS n, {sums}
            FROM {store.database}.{USERS_1D_TABLE}
            WHERE {_DAYS} AND {_USERS_ROLLUP} AND {_PROJECT}
            GROUP BY UserId, TenantId
            UNION ALL
            SELECT UserId, TenantId, sum(Calls) AS n, {sums}
            FROM {store.database}.{USERS_1H_TABLE}
            WHERE {_HOURS_OUTSIDE_DAYS} AND {_USERS_ROLLUP} AND {_PROJECT}
            GROUP BY UserId, TenantId
            UNION ALL
            SELECT UserId, TenantId, count() AS n, {sums}
            FROM {_table(store)}
            WHERE {_WHERE} AND (NOT {_USERS_ROLLUP} OR {_OUTSIDE_HOURS})
            GROUP BY UserId, TenantId
        )
        ARRAY JOIN [('tenant', {_DIMENSIONS["tenant"]}), ('user', {_DIMENSIONS["user"]})] AS d
        GROUP BY dimension, key
        ORDER BY dimension, cost_usd DESC, key
        LIMIT {{limit:UInt32}} BY dimension
    """
    return store.query(sql, _params(start, end, filters, limit=int(limit),
                                    **_tier_params(start, end)))


def expensive_calls(store: Store, start: datetime, end: datetime,
                    filters: Filters | None = None, limit: int = 20) -> pd.DataFrame:
    """The `limit` most expensive calls: time, trace_id, span_id, service, feature, model,
    cost_usd, input_tokens, output_tokens, duration_ms, status."""
    sql = f"""
        SELECT toDateTime64(Timestamp, 3, 'UTC') AS time, TraceId AS trace_id,
               SpanId AS span_id, ServiceName AS service, {_FEATURE} AS feature,
               {_MODEL} AS model, CostUsd AS cost_usd, InputTokens AS input_tokens,
               OutputTokens AS output_tokens, Duration / 1e6 AS duration_ms, StatusCode AS status
        FROM {_table(store)}
        WHERE {_WHERE}
        ORDER BY cost_usd DESC, time DESC
        LIMIT {{limit:UInt32}}
    """
    return store.query(sql, _params(start, end, filters, limit=int(limit)))


def version_history(store: Store, start: datetime, end: datetime,
                    filters: Filters | None = None) -> pd.DataFrame:
    """Each (model, version) that served in the UTC days `[start, end)` touches, oldest first:
    model, version, first_seen, last_seen, calls.

    "Oldest" is by the mean time of a version's calls, not its first call: during a gradual
    rollout the new version's first call can come before the old one's. Whole days, from the
    daily rollup alone: a few hundred rows for a fortnight, where the exact window reads four
    tiers; the first and last call times are exact all the same, so a caller that needs the
    versions first seen inside a window compares them with it (`version_changes`)."""
    sql = f"""
        SELECT Family AS model, Version AS version,
               toDateTime64(min(FirstCall), 3, 'UTC') AS first_seen,
               toDateTime64(max(LastCall), 3, 'UTC') AS last_seen, sum(Calls) AS calls
        FROM {store.database}.{CALLS_1D_TABLE}
        WHERE {_DAYS} {_ROLLUP_FILTERS}
        GROUP BY model, version
        ORDER BY model, sum(TimeSumMs) / calls, version
    """
    days = {"d_start": _utc_text(_floor(_aware(start), 86400)),
            "d_end": _utc_text(_ceil(_aware(end), 86400))}
    return store.query(sql, _params(start, end, filters, **days))


def version_changes(store: Store, start: datetime, end: datetime,
                    filters: Filters | None = None) -> pd.DataFrame:
    """Model versions that replaced another inside `[start, end)`: model, version, first_seen
    (where the line is drawn).

    A version counts as a change when its first call is in the window and its model had an
    older version (`version_history` order); the look for one goes back at least one window
    length before `start` (to that day's midnight), so a version already serving when the
    window opens is not marked at its left edge. Calls with no known version ("(none)")
    change nothing."""
    seen = version_history(store, start - (end - start), end, filters)
    seen = seen[seen["version"] != NO_VALUE]
    newer = seen.groupby("model").cumcount() > 0
    inside = ((seen["first_seen"] >= pd.Timestamp(_aware(start)))
              & (seen["first_seen"] < pd.Timestamp(_aware(end))))
    changes = seen[newer & inside]
    return changes[["model", "version", "first_seen"]].reset_index(drop=True)


def version_stats(store: Store, start: datetime, end: datetime, bucket_seconds: int,
                  filters: Filters | None = None, min_calls: int = MIN_CALLS_FOR_RATE
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, series) of each (model, version), from one read of the rollups whose rows
    are grouped both ways (GROUPING SETS); the summary adds up the same rows as the series.

    summary: one row per (model, version), oldest first (by the mean time of its calls, as
    `version_history`): model, version, first_seen, last_seen, calls, errors, error_rate (NaN
    below `min_calls` calls), p50_ms, p95_ms, p99_ms (within 1%: see the rollups above),
    tokens_per_call, cost_per_call, mean_confidence (NaN where no call reported one).
    series: per bucket and (model, version), in that order: bucket, model, version, calls,
    errors, error_rate, p50_ms, p95_ms, p99_ms, tokens_per_call, mean_confidence."""
    bucket = int(bucket_seconds)
    sql = f"""
        SELECT {_R_BUCKET} AS bucket, Family AS model, Version AS version,
               grouping(bucket) AS whole,
               toDateTime64(min(FirstCall), 3, 'UTC') AS first_seen,
               toDateTime64(max(LastCall), 3, 'UTC') AS last_seen,
               sum(Calls) AS calls, sum(Errors) AS errors,
               {_R_ERROR_RATE} AS error_rate,
               {_R_QUANTILES} AS q,
               q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms,
               (sum(InputTokens) + sum(OutputTokens)) / calls AS tokens_per_call,
               sum(CostUsd) / calls AS cost_per_call,
               {_R_MEAN_CONFIDENCE} AS mean_confidence
        FROM {_calls(store, start, end, bucket)}
        GROUP BY GROUPING SETS ((bucket, model, version), (model, version))
        ORDER BY whole, bucket, model, if(whole = 1, sum(TimeSumMs) / calls, 0), version
    """
    df = store.query(sql, _params(start, end, filters, bucket=bucket, min_calls=int(min_calls),
                                  **_tier_params(start, end, bucket)))
    summary, series = _split_grouping(df.drop(columns="q"))
    return summary, series.drop(columns=["first_seen", "last_seen", "cost_per_call"])


def confidence_histogram(store: Store, start: datetime, end: datetime,
                         filters: Filters | None = None) -> pd.DataFrame:
    """Confidence per (model, version) as counts of values rounded to 0.001: model, version,
    confidence, calls. Enough for PSI and KS (`drift`) at any row count; spans without a
    confidence are left out. Whole minutes, hours and days come from the rollups'
    histograms (`CONFIDENCE_HIST`)."""
    sql = f"""
        SELECT model, version, k / 1000 AS confidence, n AS calls
        FROM (
            SELECT Family AS model, Version AS version, sumMap(ConfidenceHist) AS h
            FROM {_calls(store, start, end)}
            GROUP BY model, version
        )
        ARRAY JOIN mapKeys(h) AS k, mapValues(h) AS n
        ORDER BY model, version, k
    """
    return store.query(sql, _params(start, end, filters, **_tier_params(start, end)))


def search_traces(store: Store, start: datetime, end: datetime, filters: Filters | None = None,
                  status: str = "", trace_id: str = "", limit: int = 100) -> pd.DataFrame:
    """Traces with AI calls matching the filters, newest first, at most `limit`.

    `status` ('Ok', 'Error', 'Unset' or '' for any) and `trace_id` ('' for any) narrow the
    calls. Columns: trace_id, time (first matching call), service, feature, model, calls,
    errors, cost_usd, tokens, duration_ms (the longest call).

    Aggregating every trace of a week is a scan of it, so the search ranks candidates first:
    `since` is the minute from which the rollup counts about 4 x `limit` calls; the traces with
    a matching call at or after it are ranked by their first such call, and only the first
    `limit` + a quarter are aggregated over the whole window, found by the TraceId bloom
    filter. A trace left out ranks after the last candidate (its first call in the window is
    no later than its first one after `since`), so the answer is exact when its last row ranks
    no later than that candidate; otherwise it is asked again from `start`, where ranking
    candidates is ranking the traces."""
    where = f"""{_WHERE}
          AND ({{status:String}} = '' OR StatusCode = {{status:String}})
          AND ({{trace_id:String}} = '' OR TraceId = {{trace_id:String}})"""
    time = "toDateTime64(min(Timestamp), 3, 'UTC') AS time"
    candidates_sql = f"""
        SELECT TraceId AS trace_id, {time}
        FROM {_table(store)}
        WHERE {where} AND Timestamp >= {{since:DateTime64(3, 'UTC')}}
        GROUP BY trace_id
        ORDER BY time DESC, trace_id
        LIMIT {{candidates:UInt32}}
    """
    sql = f"""
        SELECT TraceId AS trace_id, {time},
               any(ServiceName) AS service, any({_FEATURE}) AS feature, any({_MODEL}) AS model,
               count() AS calls, countIf({_ERROR}) AS errors, sum(CostUsd) AS cost_usd,
               sum({_TOKENS}) AS tokens, max(Duration) / 1e6 AS duration_ms
        FROM {_table(store)}
        WHERE {where} AND TraceId IN {{ids:Array(String)}}
        GROUP BY trace_id
        ORDER BY time DESC, trace_id
        LIMIT {{limit:UInt32}}
    """
    limit = int(limit)
    params = _params(start, end, filters, status=status, trace_id=trace_id.strip().lower(),
                     limit=limit, candidates=limit + limit // 4 + 1)
    first = pd.Timestamp(_utc_text(start), tz="UTC")
    since = _recent_start(store, start, end, filters, 4 * limit, status)
    while True:
        found = store.query(candidates_sql, {**params, "since": _utc_text(since)})
        df = store.query(sql, {**params, "ids": list(found["trace_id"])})
        if since <= first or _exact(df, found, since, limit, params["candidates"]):
            return df
        since = first


def _exact(df: pd.DataFrame, found: pd.DataFrame, since: pd.Timestamp, limit: int,
           candidates: int) -> bool:
    """Whether no trace left out of the candidates `found` (ranked by their first call from
    `since` on) can rank among the `limit` rows `df` (time descending, then trace id)."""
    if len(df) < limit:
        return False
    time = df["time"].iloc[-1]
    if len(found) < candidates:  # the traces left out have no matching call from `since` on
        return time >= since
    # A trace left out ranks after the last candidate, and its first call in the window comes
    # no later than that candidate's; a row at that candidate's time ranks before it, being a
    # candidate whose first call is from `since` on (so ranked on the same time).
    return time >= found["time"].iloc[-1]


def _recent_start(store: Store, start: datetime, end: datetime, filters: Filters | None,
                  calls: int, status: str = "") -> datetime:
    """The latest whole minute from which the minute rollup counts at least `calls` calls in
    the window, the filters and `status` (`start` if there are fewer). The rollup counts
    errors but not Ok and Unset apart, so for either of those it counts the calls that are
    not errors: more than match, which can only make the minute too late (searched again)."""
    matching = ("multiIf({status:String} = '', toUInt64(Calls),"
                " {status:String} = 'Error', toUInt64(Errors), toUInt64(Calls - Errors))")
    bucket = 60
    sql = f"""
        SELECT toDateTime64(T, 3, 'UTC') AS t, sum(sum({matching})) OVER (ORDER BY T DESC) AS n
        FROM {_calls(store, start, end, bucket)}
        GROUP BY T
        ORDER BY T DESC
    """
    rows = store.query(f"SELECT t FROM ({sql}) WHERE n >= {{calls:UInt32}} LIMIT 1",
                       _params(start, end, filters, calls=int(calls), bucket=bucket,
                               status=status, **_tier_params(start, end, bucket)))
    start_ts = pd.Timestamp(_utc_text(start), tz="UTC")
    if rows.empty:
        return start_ts
    return max(rows["t"].iloc[0], start_ts)


def trace_spans(store: Store, start: datetime, end: datetime, trace_id: str) -> pd.DataFrame:
    """Every span of one trace in the window (AI or not), in start order.

    Columns: span_id, parent_span_id, name, service, start_ns (Unix ns), duration_ms, status,
    status_message, operation, provider, model, version, feature, input_tokens, output_tokens,
    cost_usd, confidence, input_messages, output_messages (the last two '' unless captured)."""
    sql = f"""
        SELECT SpanId AS span_id, ParentSpanId AS parent_span_id, SpanName AS name,
               ServiceName AS service, toUnixTimestamp64Nano(Timestamp) AS start_ns,
               Duration / 1e6 AS duration_ms, StatusCode AS status,
               StatusMessage AS status_message, Operation AS operation, Provider AS provider,
               {_MODEL} AS model, ModelVersion AS version, Feature AS feature,
               InputTokens AS input_tokens, OutputTokens AS output_tokens, CostUsd AS cost_usd,
               Confidence AS confidence,
               SpanAttributes[{{input_key:String}}] AS input_messages,
               SpanAttributes[{{output_key:String}}] AS output_messages
        FROM {_table(store)}
        WHERE {_WINDOW} AND TraceId = {{trace_id:String}} AND {_PROJECT}
        ORDER BY start_ns, span_id
    """
    return store.query(sql, _params(start, end, None, trace_id=trace_id.strip().lower(),
                                    input_key=A.INPUT_MESSAGES, output_key=A.OUTPUT_MESSAGES))


def feedback_stats(store: Store, start: datetime, end: datetime, bucket_seconds: int,
                   filters: Filters | None = None, min_feedback: int = MIN_FEEDBACK_FOR_SHARE
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, series) of the feedback on each (model, version), in one read grouped both
    ways (GROUPING SETS). `_verdicts` says which verdicts count.

    summary: per (model, version), oldest version first (by the mean time of the calls the
    verdicts are about): model, version, feedback, scored, mean_score (NaN without scores),
    negative, negative_share (NaN below `min_feedback` verdicts).
    series: the same per bucket of the time of the call a verdict is about: bucket, model,
    version, then the summary's columns."""
    sql = f"""
        SELECT {_FEEDBACK_BUCKET} AS bucket, model, version, grouping(bucket) AS whole,
               {_FEEDBACK_COLUMNS}
        FROM ({_verdicts(store)})
        GROUP BY GROUPING SETS ((bucket, model, version), (model, version))
        ORDER BY whole, bucket, model, if(whole = 1, avg(toUnixTimestamp64Milli(at)), 0), version
    """
    df = store.query(sql, _feedback_params(start, end, filters, bucket=int(bucket_seconds),
                                           min_feedback=int(min_feedback)))
    return _split_grouping(df)


def _split_grouping(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of a `GROUPING SETS` query with and without its `bucket` (told apart by its
    `whole` column, `grouping(bucket)`): (summary without bucket, series), re-indexed."""
    whole = df["whole"] == 1
    return (df[whole].drop(columns=["bucket", "whole"]).reset_index(drop=True),
            df[~whole].drop(columns="whole").reset_index(drop=True))


def _table(store: Store) -> str:
    return f"{store.database}.{SPANS_TABLE}"


def _verdicts(store: Store) -> str:
    """One row per verdict and (model, version) it is about: at (the first such call's time),
    score, negative. Feedback joins the AI calls in the window by TraceId, and by SpanId when
    it names a span; without one it is about every call of the trace, counted once per
    version. Grouping by FeedbackId also folds a retried insert into one verdict. Only the
    traces that have feedback are read from the spans (the TraceId bloom filter skips the
    rest)."""
    negative_labels = ", ".join(f"'{label}'" for label in NEGATIVE_LABELS)
    return f"""
        SELECT f.FeedbackId, s.model AS model, s.version AS version, min(s.call_time) AS at,
               any(f.Score) AS score,
               max(ifNull(f.Score < {NEGATIVE_SCORE_BELOW!r}, 0)
                   OR lower(f.Label) IN ({negative_labels})) AS negative
        FROM {store.database}.{FEEDBACK_TABLE} AS f
        INNER JOIN (
            SELECT TraceId, SpanId, Timestamp AS call_time, {_FAMILY} AS model,
                   {_VERSION} AS version
            FROM {_table(store)}
            WHERE {_WHERE}
              AND TraceId IN (
                  SELECT TraceId FROM {store.database}.{FEEDBACK_TABLE}
                  WHERE Timestamp >= {{feedback_start:DateTime64(3, 'UTC')}}
                    AND Timestamp < {{feedback_end:DateTime64(3, 'UTC')}})
        ) AS s ON f.TraceId = s.TraceId
        WHERE f.Timestamp >= {{feedback_start:DateTime64(3, 'UTC')}}
          AND f.Timestamp < {{feedback_end:DateTime64(3, 'UTC')}}
          AND (f.SpanId = '' OR f.SpanId = s.SpanId)
          AND (f.Score IS NOT NULL OR f.Label != '')
        GROUP BY f.FeedbackId, model, version
    """


def _feedback_params(start: datetime, end: datetime, filters: Filters | None, **extra) -> dict:
    lag = FEEDBACK_LAG
    return _params(start, end, filters, feedback_start=_utc_text(start - lag),
                   feedback_end=_utc_text(end + lag), **extra)


def _params(start: datetime, end: datetime, filters: Filters | None, **extra) -> dict:
    """Query parameters; a user bound to a project gets that project whatever was asked, so
    no filter value or crafted callback reaches another project's rows."""
    filters = filters or Filters()
    bound = current_project()
    if bound is not None:
        filters = replace(filters, project=bound)
    return {**_window(start, end), **asdict(filters), **extra}


def _scope() -> dict[str, str]:
    """The project parameter of queries outside the span filters (alerts)."""
    return {"project": current_project() or ""}


def _window(start: datetime, end: datetime) -> dict[str, str]:
    # chDB cannot bind a zone-aware datetime, and a naive one is read in the server's zone, so
    # both backends get the same UTC text.
    return {"start": _utc_text(start), "end": _utc_text(end)}


def _utc_text(t: datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# ---- alerts (the collector's evaluator writes `alerts`; one row per state change) ----------

# Rule kinds whose periods are marked on the cost charts; the rest go on degradation's.
COST_ALERT_KINDS = ("cost",)
# How far back a state change may have opened a period still open in the window.
_ALERT_LOOKBACK_DAYS = 31


def alert_states(store: Store) -> pd.DataFrame:
    """The current state of each rule and group: rule, kind, group, state, since, value,
    threshold, message, window_start, window_end, scope (a dict)."""
    sql = f"""
        SELECT Rule AS rule, any(Kind) AS kind, GroupKey AS group,
               argMax(State, Timestamp) AS state, max(Timestamp) AS since,
               argMax(Value, Timestamp) AS value, argMax(Threshold, Timestamp) AS threshold,
               argMax(Message, Timestamp) AS message,
               argMax(WindowStart, Timestamp) AS window_start,
               argMax(WindowEnd, Timestamp) AS window_end, argMax(Scope, Timestamp) AS scope
        FROM {store.database}.{ALERTS_TABLE}
        WHERE Timestamp >= now() - INTERVAL {_ALERT_LOOKBACK_DAYS} DAY AND {_ALERT_PROJECT}
        GROUP BY rule, group
        ORDER BY multiIf(state = 'ALERT', 0, state = 'WARNING', 1, state = 'NO_DATA', 2, 3),
                 rule, group
    """
    return store.query(sql, _scope())


def alert_history(store: Store, start: datetime, end: datetime) -> pd.DataFrame:
    """State changes in `[start, end)`, newest first."""
    sql = f"""
        SELECT Timestamp AS at, Rule AS rule, Kind AS kind, GroupKey AS group,
               PreviousState AS previous, State AS state, Value AS value,
               Threshold AS threshold, Message AS message, Scope AS scope
        FROM {store.database}.{ALERTS_TABLE}
        WHERE {_WINDOW} AND {_ALERT_PROJECT}
        ORDER BY at DESC, rule, group
        LIMIT 500
    """
    return store.query(sql, {**_window(start, end), **_scope()})


def alert_periods(store: Store, start: datetime, end: datetime,
                  kinds: tuple[str, ...] | None = None,
                  exclude_kinds: tuple[str, ...] = ()) -> pd.DataFrame:
    """Spans of time a rule (and group) spent in WARNING or ALERT that overlap
    `[start, end)`: rule, group, kind, state, start, end (cut to the window)."""
    sql = f"""
        SELECT Timestamp AS at, Rule AS rule, GroupKey AS group, Kind AS kind, State AS state
        FROM {store.database}.{ALERTS_TABLE}
        WHERE Timestamp >= {{start:DateTime64(3, 'UTC')}} - INTERVAL {_ALERT_LOOKBACK_DAYS} DAY
          AND Timestamp < {{end:DateTime64(3, 'UTC')}} AND {_ALERT_PROJECT}
        ORDER BY rule, group, at
    """
    rows = store.query(sql, {**_window(start, end), **_scope()})
    if kinds is not None:
        rows = rows[rows.kind.isin(kinds)]
    rows = rows[~rows.kind.isin(exclude_kinds)]
    lo, hi = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    periods = []
    for (rule, group), changes in rows.groupby(["rule", "group"], sort=False):
        at = pd.to_datetime(changes["at"], utc=True).tolist() + [hi]
        for i, row in enumerate(changes.itertuples(index=False)):
            begin, finish = max(at[i], lo), min(at[i + 1], hi)
            if row.state in ("WARNING", "ALERT") and begin < finish:
                periods.append({"rule": rule, "group": group, "kind": row.kind,
                                "state": row.state, "start": begin, "end": finish})
    return pd.DataFrame(periods, columns=["rule", "group", "kind", "state", "start", "end"])
