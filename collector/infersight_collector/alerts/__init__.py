"""Alerts: rules in a YAML file (`rules`), evaluated on a schedule against the store
(`evaluate`), their state changes sent to webhooks (`notify`); and the fleet-wide spend the
SDK's budgets read (`spend`). docs/alerts.md is the user's reference."""

from __future__ import annotations

from datetime import datetime, timezone

from .evaluate import ALERT, Evaluator, Transition, window
from .notify import Notifier
from .rules import Rule, RuleError, RuleSet, load_rules

__all__ = ["Evaluator", "Notifier", "Rule", "RuleError", "RuleSet", "Transition",
           "load_rules", "sample_event"]


def sample_event(rule: Rule, now: datetime | None = None) -> dict:
    """An ALERT event for `rule` marked as a test (`infersight alerts test RULE`), so a
    webhook can be checked end to end without waiting for real data to cross a bound."""
    now = now or datetime.now(timezone.utc)
    start, end = window(rule, now)
    return Transition(
        rule=rule.name, kind=rule.kind, group="", state=ALERT, previous="OK",
        value=rule.alert, threshold=rule.alert,
        message="test notification from `infersight alerts test`; nothing is wrong",
        at=now, window_start=start, window_end=end,
        scope={k: ",".join(v) for k, v in rule.scope.items()}).as_event() | {"test": True}
