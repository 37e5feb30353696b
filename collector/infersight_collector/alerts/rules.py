"""The alert rule file: YAML, validated on load with errors that name the rule and the field.

    notifiers:
      oncall: {url: "https://hooks.slack.com/services/...", format: slack}
    defaults: {window: 15m, lag: 2m, resolve_after: 10m, notify: [oncall]}
    rules:
      - name: summary-latency
        kind: latency
        scope: {feature: ticket-summary}
        quantile: p95
        warning: 1500        # ms
        alert: 3000

docs/alerts.md is the reference of every kind and field; `load_rules(path)` reads a file and
`parse_rules(data)` an already-parsed mapping. Every problem in the file is reported at once
(`RuleError`), so a bad deploy is fixed in one round.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..drift import PSI_ALERT, PSI_WARN

KINDS = ("confidence_drift", "latency", "error_rate", "cost", "tokens_growth",
         "feedback_drop", "no_data")
# What a rule can be narrowed or grouped by; `user` reads the span table (the rollup has no
# user), so it is allowed where that query exists: cost.
SCOPE_KEYS = ("service", "project", "feature", "provider", "model", "version")
USER_KEY = "user"
FORMATS = ("json", "slack")
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
PERIODS = ("day", "month")
DRIFT_METRICS = ("psi", "ks")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")

# Fields every rule has, with their defaults (seconds for durations).
_COMMON_DEFAULTS: dict[str, Any] = {"window": 900, "lag": 120, "resolve_after": 600,
                                    "notify": [], "group_by": None}
# Per kind: fields it takes beyond the common ones, with their defaults (None: unset).
_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "confidence_drift": {"metric": "psi", "warning": PSI_WARN, "alert": PSI_ALERT,
                         "reference_window": 86400, "baseline_version": None,
                         "min_calls": 50},
    "latency": {"quantile": "p95", "warning": None, "alert": None, "min_calls": 1},
    "error_rate": {"warning": None, "alert": None, "min_calls": 20},
    "cost": {"period": "day", "budget_usd": None, "warning_at": 0.8},
    "tokens_growth": {"warning": 0.2, "alert": 0.5, "reference_window": 7 * 86400,
                      "min_calls": 20},
    "feedback_drop": {"warning": 0.1, "alert": 0.2, "reference_window": 7 * 86400,
                      "min_count": 10},
    "no_data": {"lookback": 86400},
}
_REQUIRED = {"latency": ("alert",), "error_rate": ("alert",), "cost": ("budget_usd",)}
_DURATION_FIELDS = ("window", "lag", "resolve_after", "reference_window", "lookback")


class RuleError(ValueError):
    """The rule file cannot be used; the message lists every problem, one per line."""


@dataclass(frozen=True)
class Notifier:
    name: str
    url: str
    format: str = "json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One validated rule. Durations are seconds; `scope` maps a SCOPE_KEYS (or `user`) key to
    the values it may take; `params` holds the kind's own fields with defaults filled in."""

    name: str
    kind: str
    scope: dict[str, tuple[str, ...]]
    window: float
    lag: float
    resolve_after: float
    notify: tuple[str, ...]
    group_by: str | None
    params: dict[str, Any]

    @property
    def warning(self) -> float | None:
        if self.kind == "cost":
            return self.params["budget_usd"] * self.params["warning_at"]
        return self.params.get("warning")

    @property
    def alert(self) -> float | None:
        if self.kind == "cost":
            return self.params["budget_usd"]
        return self.params.get("alert")


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    notifiers: dict[str, Notifier]

    def get(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        known = ", ".join(r.name for r in self.rules) or "none"
        raise KeyError(f"no rule named {name!r} (rules: {known})")

    def targets(self, name: str) -> list[Notifier]:
        """The notifiers a rule sends to."""
        return [self.notifiers[n] for n in self.get(name).notify]


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"30s"`, `"15m"`, `"2h"` or `"7d"`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 15m, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 30s, 15m, 2h or 7d, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rule file; `RuleError` names the file and every problem."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"cannot read alert rules {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_rules(data)
    except RuleError as exc:
        raise RuleError(f"{path}:\n{exc}") from None


def parse_rules(data: Any) -> RuleSet:
    errors: list[str] = []
    if not isinstance(data, dict):
        raise RuleError("the rule file must be a mapping with a `rules:` list")
    unknown = set(data) - {"rules", "notifiers", "defaults"}
    if unknown:
        errors.append(f"unknown top-level keys: {', '.join(sorted(map(str, unknown)))} "
                      "(expected rules, notifiers, defaults)")
    notifiers = _notifiers(data.get("notifiers") or {}, errors)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        errors.append("defaults: must be a mapping, e.g. {window: 15m, notify: [oncall]}")
        defaults = {}
    bad_defaults = set(defaults) - set(_COMMON_DEFAULTS)
    if bad_defaults:
        errors.append(f"defaults: unknown keys {', '.join(sorted(map(str, bad_defaults)))} "
                      f"(allowed: {', '.join(_COMMON_DEFAULTS)})")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        errors.append("rules: must be a non-empty list of rules")
        raw_rules = []
    rules, names = [], set()
    for i, raw in enumerate(raw_rules):
        rule = _rule(i, raw, defaults, notifiers, errors)
        if rule is None:
            continue
        if rule.name in names:
            errors.append(f"rules[{i}] ({rule.name}): the name is used twice; names must be "
                          "unique")
        names.add(rule.name)
        rules.append(rule)
    if errors:
        raise RuleError("\n".join(errors))
    return RuleSet(tuple(rules), notifiers)


def _notifiers(raw: Any, errors: list[str]) -> dict[str, Notifier]:
    if not isinstance(raw, dict):
        errors.append("notifiers: must map a name to {url: ..., format: json|slack}")
        return {}
    out = {}
    for name, spec in raw.items():
        where = f"notifiers.{name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str) \
                or not spec["url"].startswith(("http://", "https://")):
            errors.append(f"{where}: needs `url: http(s)://...`")
            continue
        extra = set(spec) - {"url", "format", "headers"}
        if extra:
            errors.append(f"{where}: unknown keys {', '.join(sorted(map(str, extra)))}")
        fmt = spec.get("format", "json")
        if fmt not in FORMATS:
            errors.append(f"{where}: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        headers = spec.get("headers") or {}
        if not isinstance(headers, dict):
            errors.append(f"{where}: headers must map a header name to a value")
            headers = {}
        out[str(name)] = Notifier(str(name), spec["url"], fmt,
                                  {str(k): str(v) for k, v in headers.items()})
    return out


def _rule(i: int, raw: Any, defaults: dict, notifiers: dict[str, Notifier],
          errors: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        errors.append(f"rules[{i}]: must be a mapping with name and kind")
        return None
    name = raw.get("name")
    where = f"rules[{i}] ({name})" if name else f"rules[{i}]"
    start = len(errors)
    if not isinstance(name, str) or not _NAME.match(name):
        errors.append(f"{where}: name must be letters, digits, _ . : - (e.g. summary-latency)")
    kind = raw.get("kind")
    if kind not in KINDS:
        errors.append(f"{where}: kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
        return None
    own = _KIND_FIELDS[kind]
    allowed = {"name", "kind", "scope", *_COMMON_DEFAULTS, *own}
    extra = set(raw) - allowed
    if extra:
        errors.append(f"{where}: unknown keys {', '.join(sorted(map(str, extra)))} for kind "
                      f"{kind} (allowed: {', '.join(sorted(allowed))})")
    values = {**_COMMON_DEFAULTS, **own, **defaults,
              **{k: v for k, v in raw.items() if k in allowed}}
    for key in _DURATION_FIELDS:
        if key in values:
            try:
                values[key] = parse_duration(values[key])
            except ValueError as exc:
                errors.append(f"{where}: {key}: {exc}")
    for key in _REQUIRED.get(kind, ()):
        if values.get(key) is None:
            errors.append(f"{where}: {key} is required for kind {kind}")
    scope_keys = (*SCOPE_KEYS, USER_KEY) if kind == "cost" else SCOPE_KEYS
    scope = _scope(where, raw.get("scope") or {}, scope_keys, errors)
    group_by = values.get("group_by")
    if group_by is not None and group_by not in scope_keys:
        errors.append(f"{where}: group_by must be one of {', '.join(scope_keys)}, "
                      f"got {group_by!r}")
    notify = values.get("notify") or []
    if isinstance(notify, str):
        notify = [notify]
    for target in notify:
        if target not in notifiers:
            errors.append(f"{where}: notify names {target!r}, which is not under notifiers")
    _check_kind(where, kind, values, errors)
    if len(errors) > start:
        return None
    return Rule(name=name, kind=kind, scope=scope, window=values["window"], lag=values["lag"],
                resolve_after=values["resolve_after"], notify=tuple(notify),
                group_by=group_by, params={k: values[k] for k in own})


def _scope(where: str, raw: Any, keys: tuple[str, ...],
           errors: list[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        errors.append(f"{where}: scope must map {', '.join(keys)} to a value or a list")
        return {}
    scope = {}
    for key, value in raw.items():
        if key not in keys:
            errors.append(f"{where}: scope key {key!r} unknown; expected one of "
                          f"{', '.join(keys)}")
            continue
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, (str, int, float)) and str(v) for v in items):
            errors.append(f"{where}: scope.{key} must be a value or a non-empty list of values")
            continue
        scope[key] = tuple(str(v) for v in items)
    return scope


def _number(where: str, name: str, value: Any, errors: list[str], low: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        errors.append(f"{where}: {name} must be a number of at least {low:g}, got {value!r}")


def _check_kind(where: str, kind: str, v: dict, errors: list[str]) -> None:
    if isinstance(v.get("window"), float) and v["window"] <= 0:
        errors.append(f"{where}: window must be longer than 0")
    for name in ("warning", "alert", "budget_usd", "warning_at", "min_calls", "min_count"):
        if v.get(name) is not None and name in _KIND_FIELDS[kind]:
            _number(where, name, v[name], errors)
    if kind not in ("cost", "no_data"):
        warning, alert = v.get("warning"), v.get("alert")
        if isinstance(warning, (int, float)) and isinstance(alert, (int, float)) \
                and warning > alert:
            errors.append(f"{where}: warning ({warning}) must not be above alert ({alert})")
    if kind == "error_rate":
        for name in ("warning", "alert"):
            if isinstance(v.get(name), (int, float)) and v[name] > 1:
                errors.append(f"{where}: {name} is a fraction of calls (0-1), got {v[name]}")
    if kind == "latency" and v.get("quantile") not in QUANTILES:
        errors.append(f"{where}: quantile must be one of {', '.join(QUANTILES)}, "
                      f"got {v.get('quantile')!r}")
    if kind == "cost":
        if v.get("period") not in PERIODS:
            errors.append(f"{where}: period must be day or month, got {v.get('period')!r}")
        if isinstance(v.get("warning_at"), (int, float)) and v["warning_at"] > 1:
            errors.append(f"{where}: warning_at is a fraction of the budget (0-1)")
    if kind == "confidence_drift" and v.get("metric") not in DRIFT_METRICS:
        errors.append(f"{where}: metric must be psi or ks, got {v.get('metric')!r}")
