"""The rule file: the example loads, and every mistake is named with its rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from infersight_collector.alerts.rules import KINDS, RuleError, load_rules, parse_rules

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "alerts.example.yaml"


def test_the_example_file_loads_with_every_kind_and_defaults_applied():
    rules = load_rules(EXAMPLE)
    assert {r.kind for r in rules.rules} == set(KINDS)
    latency = rules.get("summary-latency")
    assert (latency.window, latency.lag, latency.resolve_after) == (900, 120, 600)
    assert latency.scope == {"feature": ("ticket-summary",)}
    budget = rules.get("summary-daily-budget")
    assert (budget.warning, budget.alert) == (40.0, 50)
    assert [n.format for n in rules.targets(budget.name)] == ["slack", "json"]
    drift = rules.get("classifier-drift")
    assert (drift.warning, drift.alert, drift.params["reference_window"]) == (0.1, 0.2, 604800)


def test_every_problem_is_reported_at_once():
    with pytest.raises(RuleError) as error:
        parse_rules({"notifiers": {"hook": {"url": "ftp://x"}}, "rules": [
            {"name": "a", "kind": "latncy"},
            {"name": "b", "kind": "latency", "quantile": "p42", "alert": 10, "warning": 20},
            {"name": "c", "kind": "error_rate", "alert": 5, "scope": {"colour": "red"}},
            {"name": "d", "kind": "cost", "window": "soon", "notify": ["hook"]},
            {"name": "e", "kind": "no_data", "group_by": "user", "extra": 1},
        ]})
    lines = str(error.value).splitlines()
    expected = [
        "notifiers.hook: needs `url: http(s)://...`",
        "rules[0] (a): kind 'latncy' unknown",
        "rules[1] (b): quantile must be one of p50, p90, p95, p99, got 'p42'",
        "rules[1] (b): warning (20) must not be above alert (10)",
        "rules[2] (c): alert is a fraction of calls (0-1), got 5",
        "rules[2] (c): scope key 'colour' unknown",
        "rules[3] (d): window: expected a duration such as 30s, 15m, 2h or 7d, got 'soon'",
        "rules[3] (d): budget_usd is required for kind cost",
        "rules[3] (d): notify names 'hook', which is not under notifiers",
        "rules[4] (e): unknown keys extra",
        "rules[4] (e): group_by must be one of service, project, feature, provider, model, "
        "version, got 'user'",
    ]
    for text in expected:
        assert any(text in line for line in lines), (text, lines)


def test_duplicate_names_and_an_empty_file_are_errors(tmp_path):
    with pytest.raises(RuleError, match="used twice"):
        parse_rules({"rules": [{"name": "x", "kind": "no_data"}] * 2})
    empty = tmp_path / "rules.yaml"
    empty.write_text("rules: []\n")
    with pytest.raises(RuleError, match=f"{empty}:\nrules: must be a non-empty list"):
        load_rules(empty)
    empty.write_text("rules: [\n")
    with pytest.raises(RuleError, match="not valid YAML"):
        load_rules(empty)
