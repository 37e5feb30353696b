"""Evaluate alert rules against the store, keep each rule's state, record the transitions.

Each evaluation at time `now` looks at the window that ends `lag` before `now` (rounded down
to the minute), so spans still on their way through the pipeline do not read as a drop. Rules
run on the per-minute rollup (`otel_traces_1m`); cost per user and feedback read the span and
feedback tables, which hold what the rollup does not.

States are OK, WARNING, ALERT and NO_DATA (too few calls to judge). A worse state is taken at
once; a better one only after it has held for the rule's `resolve_after` (hysteresis), so a
metric wobbling around its bound does not flap. Every state change is a row in the `alerts`
table and a notification. `now` is always passed in, so tests drive the clock.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import drift
from ..store import Store
from ..store.schema import ALERTS_TABLE, FEEDBACK_TABLE, ROLLUP_TABLE, SPANS_TABLE
from .rules import QUANTILES, USER_KEY, Rule, RuleSet

log = logging.getLogger(__name__)

OK, WARNING, ALERT, NO_DATA = "OK", "WARNING", "ALERT", "NO_DATA"
STATES = (OK, WARNING, ALERT, NO_DATA)
_SEVERITY = {OK: 0, NO_DATA: 0, WARNING: 1, ALERT: 2}
# Evenly spaced levels read from a confidence t-digest: 99 points that each stand for 1% of
# the calls are the sample PSI and KS are computed on.
_DRIFT_LEVELS = ", ".join(f"{i / 100:.2f}" for i in range(1, 100))

# Scope key -> column, in the rollup and in the span table.
_ROLLUP_COLUMNS = {"service": "ServiceName", "project": "ProjectId", "feature": "Feature",
                   "provider": "Provider", "model": "Model", "version": "ModelVersion"}
_SPAN_COLUMNS = {**_ROLLUP_COLUMNS,
                 "model": "if(ResponseModel != '', ResponseModel, RequestModel)",
                 USER_KEY: "UserId"}


@dataclass(frozen=True)
class Transition:
    """One state change of one rule (and group), as stored and as notified."""

    rule: str
    kind: str
    group: str
    state: str
    previous: str
    value: float | None
    threshold: float | None
    message: str
    at: datetime
    window_start: datetime
    window_end: datetime
    scope: dict[str, str]

    def as_event(self) -> dict[str, Any]:
        """The generic JSON webhook body."""
        return {"rule": self.rule, "kind": self.kind, "group": self.group, "state": self.state,
                "previous_state": self.previous, "value": self.value,
                "threshold": self.threshold, "message": self.message,
                "at": self.at.isoformat(), "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat(), "scope": self.scope}


@dataclass
class _Tracked:
    state: str
    better: str | None = None  # the better state seen since `better_since`, not yet taken
    better_since: datetime | None = None


@dataclass(frozen=True)
class Reading:
    """What a rule's query found for one group: the value compared with the bounds, and the
    raw state it implies before hysteresis."""

    group: str
    state: str
    value: float | None
    message: str


class Evaluator:
    def __init__(self, store: Store, rules: RuleSet, notifier=None):
        self.store = store
        self.rules = rules
        self.notifier = notifier
        self._tracked: dict[tuple[str, str], _Tracked] = self._load_states()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the schedule -------------------------------------------------------------------

    def start(self, interval_s: float = 60.0) -> "Evaluator":
        """Evaluate every `interval_s` on a thread of its own until `stop()`."""
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.evaluate(datetime.now(timezone.utc))
                except Exception:
                    log.exception("alert evaluation failed; trying again next round")
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="alert-evaluator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ---- one round ----------------------------------------------------------------------

    def evaluate(self, now: datetime) -> list[Transition]:
        """Evaluate every rule at `now`; store and notify the state changes, return them."""
        transitions = []
        for rule in self.rules.rules:
            try:
                transitions += self.evaluate_rule(rule, now)
            except Exception:
                log.exception("alert rule %s could not be evaluated", rule.name)
        if transitions:
            self._store(transitions)
            if self.notifier is not None:
                for t in transitions:
                    self.notifier.notify(t.as_event(), self.rules.targets(t.rule))
        return transitions

    def evaluate_rule(self, rule: Rule, now: datetime) -> list[Transition]:
        start, end = window(rule, now)
        readings = {r.group: r for r in read(self.store, rule, start, end)}
        # A group seen before that the query no longer returns has nothing to judge on.
        for (name, group) in list(self._tracked):
            if name == rule.name and group not in readings:
                readings[group] = Reading(group, NO_DATA, None, "no calls in the window")
        out = []
        for reading in readings.values():
            changed = self._step(rule, reading, now)
            if changed is not None:
                out.append(Transition(
                    rule=rule.name, kind=rule.kind, group=reading.group, state=changed[1],
                    previous=changed[0], value=reading.value,
                    threshold=rule.alert if changed[1] == ALERT else rule.warning,
                    message=reading.message, at=now, window_start=start, window_end=end,
                    scope={**{k: ",".join(v) for k, v in rule.scope.items()},
                           **_group_scope(rule, reading.group)}))
        return out

    def states(self) -> dict[tuple[str, str], str]:
        """(rule, group) -> current state."""
        return {key: t.state for key, t in self._tracked.items()}

    def _step(self, rule: Rule, reading: Reading, now: datetime) -> tuple[str, str] | None:
        """Apply hysteresis; (old, new) when the state changes."""
        key = (rule.name, reading.group)
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = self._tracked[key] = _Tracked(OK)
        old, raw = tracked.state, reading.state
        if raw == old:
            tracked.better = tracked.better_since = None
            return None
        if _SEVERITY[raw] >= _SEVERITY[old]:  # worse, or an equal-severity swap (OK<->NO_DATA)
            tracked.state, tracked.better, tracked.better_since = raw, None, None
            return old, raw
        if tracked.better_since is None:
            tracked.better_since = now
        tracked.better = raw
        if now - tracked.better_since >= timedelta(seconds=rule.resolve_after):
            tracked.state, tracked.better, tracked.better_since = raw, None, None
            return old, raw
        return None

    def _load_states(self) -> dict[tuple[str, str], _Tracked]:
        """The last stored state of each rule and group, so a restart neither re-fires nor
        forgets an open alert."""
        names = {r.name for r in self.rules.rules}
        rows = self.store.query(
            f"SELECT Rule, GroupKey, argMax(State, Timestamp) AS State "
            f"FROM {self.store.database}.{ALERTS_TABLE} GROUP BY Rule, GroupKey")
        return {(r.Rule, r.GroupKey): _Tracked(r.State) for r in rows.itertuples()
                if r.Rule in names}

    def _store(self, transitions: list[Transition]) -> None:
        self.store.insert_arrow(f"{self.store.database}.{ALERTS_TABLE}", pa.table({
            "Timestamp": pa.array([t.at for t in transitions], pa.timestamp("ms", tz="UTC")),
            "Rule": [t.rule for t in transitions], "Kind": [t.kind for t in transitions],
            "GroupKey": [t.group for t in transitions],
            "State": [t.state for t in transitions],
            "PreviousState": [t.previous for t in transitions],
            "Value": pa.array([t.value for t in transitions], pa.float64()),
            "Threshold": pa.array([t.threshold for t in transitions], pa.float64()),
            "Message": [t.message for t in transitions],
            "WindowStart": pa.array([t.window_start for t in transitions],
                                    pa.timestamp("ms", tz="UTC")),
            "WindowEnd": pa.array([t.window_end for t in transitions],
                                  pa.timestamp("ms", tz="UTC")),
            "Scope": pa.array([list(t.scope.items()) for t in transitions],
                              pa.map_(pa.string(), pa.string())),
        }))


# ---- windows and queries, one per kind ----------------------------------------------------

def window(rule: Rule, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) the rule judges at `now`: `window` long, ending `lag` ago on a minute; for
    cost, from the start of the UTC day or month."""
    now = now.astimezone(timezone.utc)
    end = (now - timedelta(seconds=rule.lag)).replace(second=0, microsecond=0)
    if rule.kind == "cost":
        start = end.replace(hour=0, minute=0)
        if rule.params["period"] == "month":
            start = start.replace(day=1)
        if start == end:  # the first minute of a period judges an empty window
            return start, end + timedelta(minutes=1)
        return start, end
    return end - timedelta(seconds=rule.window), end


def read(store: Store, rule: Rule, start: datetime, end: datetime) -> list[Reading]:
    """Run the rule's query for [start, end) and judge each group it returns."""
    return _READERS[rule.kind](store, rule, start, end)


def _where(rule: Rule, columns: dict[str, str], params: dict) -> str:
    """The scope as SQL over `columns`; values travel as parameters."""
    clauses = []
    for key, values in rule.scope.items():
        names = [f"scope_{key}_{i}" for i in range(len(values))]
        params.update(zip(names, values))
        listed = ", ".join(f"{{{name}:String}}" for name in names)
        clauses.append(f" AND {columns[key]} IN ({listed})")
    return "".join(clauses)


def _group(rule: Rule, columns: dict[str, str]) -> str:
    return columns[rule.group_by] if rule.group_by else "''"


def _group_scope(rule: Rule, group: str) -> dict[str, str]:
    return {rule.group_by: group} if rule.group_by else {}


def _rollup_query(store: Store, rule: Rule, select: str, start: datetime, end: datetime,
                  since: datetime | None = None, extra: dict | None = None,
                  where: str = "") -> pd.DataFrame:
    params = {"start": _text(start), "end": _text(end), "since": _text(since or start),
              **(extra or {})}
    sql = (f"SELECT {_group(rule, _ROLLUP_COLUMNS)} AS g, {select} "
           f"FROM {store.database}.{ROLLUP_TABLE} "
           "WHERE Minute >= {since:DateTime('UTC')} AND Minute < {end:DateTime('UTC')} "
           "AND Operation != ''"
           f"{_where(rule, _ROLLUP_COLUMNS, params)}{where} GROUP BY g")
    return store.query(sql, params)


def _judge(rule: Rule, group: str, value: float, what: str) -> Reading:
    """Higher is worse: ALERT at or above `alert`, WARNING at or above `warning`."""
    if rule.alert is not None and value >= rule.alert:
        return Reading(group, ALERT, value, f"{what} {value:.4g} >= alert bound {rule.alert:g}")
    if rule.warning is not None and value >= rule.warning:
        return Reading(group, WARNING, value,
                       f"{what} {value:.4g} >= warning bound {rule.warning:g}")
    return Reading(group, OK, value, f"{what} {value:.4g} within bounds")


def _too_few(group: str, calls: float, needed: int, what: str = "calls") -> Reading:
    return Reading(group, NO_DATA, None, f"{int(calls)} {what} in the window, fewer than the "
                                         f"{needed} needed to judge")


def _latency(store, rule, start, end):
    q = QUANTILES[rule.params["quantile"]]
    df = _rollup_query(store, rule, "sum(Spans) AS calls, "
                       "quantileTDigestMerge({q:Float64})(LatencyState) / 1e6 AS value",
                       start, end, extra={"q": q})
    return [_judge(rule, r.g, float(r.value), f"latency {rule.params['quantile']} (ms)")
            if r.calls >= max(rule.params["min_calls"], 1)
            else _too_few(r.g, r.calls, rule.params["min_calls"]) for r in df.itertuples()]


def _error_rate(store, rule, start, end):
    df = _rollup_query(store, rule, "sum(Spans) AS calls, sum(Errors) AS errors",
                       start, end)
    return [_judge(rule, r.g, r.errors / r.calls, "error rate")
            if r.calls >= max(rule.params["min_calls"], 1)
            else _too_few(r.g, r.calls, rule.params["min_calls"]) for r in df.itertuples()]


def _cost(store, rule, start, end):
    on_spans = rule.group_by == USER_KEY or USER_KEY in rule.scope
    if on_spans:  # the rollup has no user
        params = {"start": _text(start), "end": _text(end)}
        df = store.query(
            f"SELECT {_group(rule, _SPAN_COLUMNS)} AS g, sum(CostUsd) AS value "
            f"FROM {store.database}.{SPANS_TABLE} WHERE Timestamp >= {{start:DateTime('UTC')}} "
            "AND Timestamp < {end:DateTime('UTC')} AND Operation != ''"
            f"{_where(rule, _SPAN_COLUMNS, params)} GROUP BY g", params)
    else:
        df = _rollup_query(store, rule, "sum(CostUsd) AS value", start, end)
    period = rule.params["period"]
    readings = [_judge(rule, r.g, float(r.value), f"spend this {period} (USD)")
                for r in df.itertuples()]
    if not rule.group_by and not readings:  # nothing spent yet is within budget
        readings = [_judge(rule, "", 0.0, f"spend this {period} (USD)")]
    return readings


def _tokens_growth(store, rule, start, end):
    since = start - timedelta(seconds=rule.params["reference_window"])
    df = _rollup_query(
        store, rule,
        "sumIf(Spans, Minute >= {start:DateTime('UTC')}) AS calls, "
        "sumIf(Spans, Minute < {start:DateTime('UTC')}) AS ref_calls, "
        "sumIf(InputTokens + OutputTokens, Minute >= {start:DateTime('UTC')}) AS tokens, "
        "sumIf(InputTokens + OutputTokens, Minute < {start:DateTime('UTC')}) AS ref_tokens",
        start, end, since)
    needed = rule.params["min_calls"]
    out = []
    for r in df.itertuples():
        if r.calls < max(needed, 1) or r.ref_calls < max(needed, 1) or r.ref_tokens == 0:
            out.append(_too_few(r.g, min(r.calls, r.ref_calls), needed,
                                "calls (window or reference)"))
            continue
        growth = (r.tokens / r.calls) / (r.ref_tokens / r.ref_calls) - 1
        out.append(_judge(rule, r.g, growth, "tokens per call growth vs reference"))
    return out


def _confidence_drift(store, rule, start, end):
    baseline = rule.params["baseline_version"]
    reference_s = rule.params["reference_window"]
    quantiles = f"quantilesTDigestMergeIf({_DRIFT_LEVELS})(ConfidenceState, {{cond}})"
    current = quantiles.format(cond="Minute >= {start:DateTime('UTC')}")
    extra = {"start": _text(start)}
    if baseline:
        # One reference for every group: the pinned version over the reference window up to
        # now, whatever version the rule's scope or grouping names.
        pinned = replace(rule, group_by=None, scope={k: v for k, v in rule.scope.items()
                                                     if k != "version"})
        ref = _rollup_query(store, pinned, quantiles.format(cond="1") + " AS reference",
                            end - timedelta(seconds=reference_s), end,
                            extra={"baseline": str(baseline)},
                            where=" AND ModelVersion = {baseline:String}")
        df = _rollup_query(store, rule, f"sumIf(Spans, Minute >= {{start:DateTime('UTC')}}) "
                           f"AS calls, {current} AS current", start, end, extra=extra)
        df["reference"] = [ref.reference.iloc[0] if len(ref) else [np.nan]] * len(df)
        if rule.group_by == "version":  # the baseline is not compared with itself
            df = df[df.g != str(baseline)]
    else:  # the reference window just before this one
        before = quantiles.format(cond="Minute < {start:DateTime('UTC')}")
        df = _rollup_query(
            store, rule, f"sumIf(Spans, Minute >= {{start:DateTime('UTC')}}) AS calls, "
            f"{current} AS current, {before} AS reference",
            start, end, start - timedelta(seconds=reference_s), extra)
    metric = rule.params["metric"]
    needed = rule.params["min_calls"]
    out = []
    for r in df.itertuples():
        cur, ref = np.asarray(r.current, float), np.asarray(r.reference, float)
        if r.calls < max(needed, 1) or np.isnan(cur).any():
            out.append(_too_few(r.g, r.calls, needed, "calls with confidence"))
            continue
        if np.isnan(ref).any():
            out.append(Reading(r.g, NO_DATA, None, "no confidence in the reference"))
            continue
        value = drift.psi(ref, cur) if metric == "psi" else drift.ks_distance(ref, cur)
        what = f"confidence {metric.upper()} vs " + (f"version {baseline}" if baseline
                                                     else "the reference window")
        out.append(_judge(rule, r.g, value, what))
    return out


def _feedback_drop(store, rule, start, end):
    since = start - timedelta(seconds=rule.params["reference_window"])
    params = {"start": _text(start), "end": _text(end), "since": _text(since)}
    # Feedback is joined to its trace's AI spans (a whole-trace verdict has no span id); the
    # spans may start up to a day before their feedback.
    sql = (f"SELECT s.g AS g, countIf(f.Timestamp >= {{start:DateTime('UTC')}}) AS count, "
           "countIf(f.Timestamp < {start:DateTime('UTC')}) AS ref_count, "
           "avgIf(f.Score, f.Timestamp >= {start:DateTime('UTC')}) AS score, "
           "avgIf(f.Score, f.Timestamp < {start:DateTime('UTC')}) AS ref_score "
           f"FROM {store.database}.{FEEDBACK_TABLE} AS f INNER JOIN ("
           f"SELECT TraceId, any({_group(rule, _SPAN_COLUMNS)}) AS g "
           f"FROM {store.database}.{SPANS_TABLE} "
           "WHERE Timestamp >= {since:DateTime('UTC')} - INTERVAL 1 DAY "
           "AND Timestamp < {end:DateTime('UTC')}"
           f" AND Operation != ''{_where(rule, _SPAN_COLUMNS, params)} GROUP BY TraceId"
           ") AS s ON f.TraceId = s.TraceId "
           "WHERE f.Timestamp >= {since:DateTime('UTC')} AND f.Timestamp < {end:DateTime('UTC')} "
           "AND f.Score IS NOT NULL GROUP BY g")
    df = store.query(sql, params)
    needed = rule.params["min_count"]
    out = []
    for r in df.itertuples():
        if r.count < max(needed, 1) or r.ref_count < max(needed, 1):
            out.append(_too_few(r.g, min(r.count, r.ref_count), needed,
                                "scores (window or reference)"))
            continue
        out.append(_judge(rule, r.g, float(r.ref_score - r.score),
                          f"mean feedback score drop ({r.ref_score:.3g} -> {r.score:.3g})"))
    return out


def _no_data(store, rule, start, end):
    since = start - timedelta(seconds=rule.params["lookback"])
    df = _rollup_query(store, rule, "sumIf(Spans, Minute >= {start:DateTime('UTC')}) AS calls",
                       start, end, since)
    rows = [(r.g, int(r.calls)) for r in df.itertuples()]
    if not rule.group_by and not rows:
        rows = [("", 0)]
    minutes = math.ceil(rule.window / 60)
    return [Reading(g, ALERT, float(calls), f"no calls in the last {minutes} min")
            if calls == 0 else Reading(g, OK, float(calls), f"{calls} calls in the window")
            for g, calls in rows]


_READERS = {"latency": _latency, "error_rate": _error_rate, "cost": _cost,
            "tokens_growth": _tokens_growth, "confidence_drift": _confidence_drift,
            "feedback_drop": _feedback_drop, "no_data": _no_data}


def _text(t: datetime) -> str:
    """UTC text both backends read the same way for a DateTime parameter."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
