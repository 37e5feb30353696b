"""Spend limits: stop, flag or reroute a model call before it is made once a scope is over budget.

    infersight.budget(feature="ticket-summary", usd_per_day=50, on_exceed="raise")
    try:
        client.chat.completions.create(...)      # inside `with infersight.feature(...)`
    except infersight.BudgetExceeded:
        ...                                      # fall back

`on_exceed` is "raise" (`BudgetExceeded`), "warn" (a `BudgetWarning` and a log line; the call
goes ahead) or a callable `f(exceeded, kwargs) -> kwargs | None` whose returned keyword
arguments replace the call's, e.g. `lambda e, kw: {**kw, "model": "gpt-4o-mini"}`.

A budget counts the cost of this process's calls in its scope (feature, model, user; an unset
key matches anything) since 00:00 UTC (day) or the 1st (month). With a collector reachable it
also asks the collector's Spend service, every `refresh_s` in the background, what the whole
fleet spent, so replicas share one budget; the figure used is the larger of the local count
and the fleet's plus what this process spent since it last asked. Before each call the cost is
estimated from the price table, the prompt's size and the request's max_tokens, and the call
is over budget when spent + estimate exceeds the limit.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from opentelemetry.sdk.trace import SpanProcessor

from . import _state, config
from . import attributes as A
from .context import current_tags
from .pricing import Usage, cost_usd

log = logging.getLogger("infersight")

# Budgets in force; the call path checks this list's truth and nothing else when it is empty.
budgets: list["Budget"] = []
_lock = threading.Lock()
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infersight-budget")
_REFRESH_TIMEOUT_S = 5.0
_CHARS_PER_TOKEN = 4  # a prompt's size in tokens, roughly, without a tokenizer
_PROMPT_KEYS = ("messages", "input", "prompt", "contents", "system", "instructions")


class BudgetExceeded(RuntimeError):
    """A call was stopped before it reached the provider: its scope is over budget."""

    def __init__(self, budget: "Budget", spent_usd: float, estimate_usd: float):
        self.budget = budget
        self.spent_usd = spent_usd
        self.estimate_usd = estimate_usd
        super().__init__(
            f"budget {budget.describe()} exceeded: spent ${spent_usd:.4f} + this call's "
            f"estimate ${estimate_usd:.4f} > ${budget.limit_usd:g} per {budget.period}")


class BudgetWarning(UserWarning):
    """A call over budget went ahead because its budget says on_exceed="warn"."""


class Budget:
    def __init__(self, *, feature: str | None = None, model: str | None = None,
                 user: str | None = None, usd_per_day: float | None = None,
                 usd_per_month: float | None = None,
                 on_exceed: str | Callable = "raise", fleet: bool = True,
                 refresh_s: float = 30.0, endpoint: str | None = None,
                 api_key: str | None = None):
        if (usd_per_day is None) == (usd_per_month is None):
            raise ValueError("a budget needs exactly one of usd_per_day and usd_per_month "
                             "(create two budgets for both)")
        limit = usd_per_day if usd_per_day is not None else usd_per_month
        if not isinstance(limit, (int, float)) or limit < 0:
            raise ValueError(f"a budget's limit must be a number of USD >= 0, got {limit!r}")
        if on_exceed not in ("raise", "warn") and not callable(on_exceed):
            raise ValueError('on_exceed must be "raise", "warn" or a callable '
                             f"f(exceeded, kwargs) -> kwargs, got {on_exceed!r}")
        self.feature, self.model, self.user = feature, model, user
        self.limit_usd = float(limit)
        self.period = "day" if usd_per_day is not None else "month"
        self.on_exceed = on_exceed
        self.fleet = fleet
        self.refresh_s = refresh_s
        self._settings = (endpoint, api_key)
        self._lock = threading.Lock()
        self._period_key = self._current_period()
        self._local = 0.0
        self._fleet: float | None = None
        self._local_at_refresh = 0.0
        self._refreshed_at = -float("inf")
        self._refreshing = False

    def describe(self) -> str:
        scope = ", ".join(f"{k}={v}" for k, v in
                          (("feature", self.feature), ("model", self.model),
                           ("user", self.user)) if v) or "all calls"
        return f"[{scope}]"

    def matches(self, tags: dict[str, Any], model: str | None) -> bool:
        if self.feature is not None and tags.get(A.FEATURE) != self.feature:
            return False
        if self.user is not None and tags.get(A.USER) != self.user:
            return False
        return self.model is None or _same_model(self.model, model)

    def spent_usd(self) -> float:
        """This period's spend: the larger of this process's and the fleet's (as last read,
        plus what this process spent since)."""
        with self._lock:
            self._roll_period()
            if self._fleet is None:
                return self._local
            return max(self._local, self._fleet + self._local - self._local_at_refresh)

    def record(self, cost: float) -> None:
        with self._lock:
            self._roll_period()
            self._local += cost

    def refresh(self, timeout_s: float = _REFRESH_TIMEOUT_S) -> bool:
        """Read the fleet's spend for this scope from the collector now; False when it could
        not be reached (the local count is used until it can)."""
        try:
            usd = _fleet_spend(self, timeout_s)
        except Exception as exc:
            _state.record_failure("budget refresh", exc)
            return False
        finally:
            self._refreshing = False
        with self._lock:
            self._roll_period()
            self._fleet, self._local_at_refresh = usd, self._local
            self._refreshed_at = time.monotonic()
        return True

    def close(self) -> None:
        """Stop enforcing this budget."""
        with _lock:
            if self in budgets:
                budgets.remove(self)

    def _refresh_soon(self) -> None:
        if (self.fleet and not self._refreshing
                and time.monotonic() - self._refreshed_at >= self.refresh_s):
            self._refreshing = True
            self._refreshed_at = time.monotonic()  # failed or not, ask again after refresh_s
            _executor.submit(self.refresh)

    def _current_period(self) -> str:
        today = _dt.datetime.now(_dt.timezone.utc).date()
        return today.isoformat() if self.period == "day" else today.isoformat()[:7]

    def _roll_period(self) -> None:
        key = self._current_period()
        if key != self._period_key:
            self._period_key, self._local, self._fleet, self._local_at_refresh = key, 0.0, None, 0.0


def budget(feature: str | None = None, *, model: str | None = None, user: str | None = None,
           usd_per_day: float | None = None, usd_per_month: float | None = None,
           on_exceed: str | Callable = "raise", fleet: bool = True, refresh_s: float = 30.0,
           endpoint: str | None = None, api_key: str | None = None) -> Budget:
    """Enforce a spend limit on the calls in a scope from now on; returns the `Budget`
    (`.spent_usd()`, `.refresh()`, `.close()`). Bad arguments raise ValueError."""
    b = Budget(feature=feature, model=model, user=user, usd_per_day=usd_per_day,
               usd_per_month=usd_per_month, on_exceed=on_exceed, fleet=fleet,
               refresh_s=refresh_s, endpoint=endpoint, api_key=api_key)
    with _lock:
        budgets.append(b)
    b._refresh_soon()
    return b


def enforce(request: Callable, instance: Any, args: tuple, kwargs: dict) -> dict:
    """Before a model call: act on every budget in scope that this call would exceed. Returns
    the keyword arguments to call with (a callable `on_exceed` may replace them)."""
    try:
        attrs = request(instance, args, kwargs)
    except Exception as exc:  # the call's own tracing reports it; never block on our bug
        _state.record_failure("budget request", exc)
        return kwargs
    if attrs is None:
        return kwargs
    tags = current_tags()
    model = attrs.get(A.REQUEST_MODEL)
    for b in list(budgets):
        if not b.matches(tags, model):
            continue
        b._refresh_soon()
        estimate = estimate_usd(model, attrs, args, kwargs)
        spent = b.spent_usd()
        if spent + estimate <= b.limit_usd:
            continue
        exceeded = BudgetExceeded(b, spent, estimate)
        if b.on_exceed == "raise":
            raise exceeded
        if b.on_exceed == "warn":
            log.warning("infersight: %s", exceeded)
            warnings.warn(str(exceeded), BudgetWarning, stacklevel=4)
            continue
        replaced = b.on_exceed(exceeded, dict(kwargs))
        if isinstance(replaced, dict):
            kwargs = replaced
    return kwargs


def estimate_usd(model: str | None, attrs: dict, args: tuple, kwargs: dict) -> float:
    """The most this call should cost: its prompt's size in tokens (about 4 characters each)
    and all of `max_tokens`, at the model's price; 0 for an unpriced model."""
    prompt = sum(len(str(kwargs[k])) for k in _PROMPT_KEYS if k in kwargs) + sum(
        len(a) for a in args if isinstance(a, str))
    usage = Usage(input=prompt // _CHARS_PER_TOKEN,
                  output=int(attrs.get(A.REQUEST_MAX_TOKENS) or 0))
    return cost_usd(model, usage, provider=attrs.get(A.PROVIDER)) or 0.0


def record_span(attributes: Any) -> None:
    """After a call: add its cost to the budgets whose scope its span is in."""
    cost = attributes.get(A.COST)
    if not cost:
        return
    model = attributes.get(A.REQUEST_MODEL) or attributes.get(A.RESPONSE_MODEL)
    for b in list(budgets):
        if b.matches(attributes, model) or b.matches(attributes,
                                                     attributes.get(A.RESPONSE_MODEL)):
            b.record(float(cost))


class SpendProcessor(SpanProcessor):
    """Feeds each finished call's cost to the budgets (streams included, whose cost is known
    only when they end)."""

    def on_end(self, span: Any) -> None:
        if budgets and span.attributes:
            record_span(span.attributes)


def _same_model(wanted: str, model: str | None) -> bool:
    """A budget's model matches that name or a dated snapshot of it."""
    return bool(model) and (model == wanted or model.startswith(wanted + "-"))


def _fleet_spend(b: Budget, timeout_s: float) -> float:
    from .feedback import _target
    from .v1 import spend_pb2, spend_pb2_grpc

    settings = config.load(endpoint=b._settings[0], api_key=b._settings[1])
    request = spend_pb2.GetSpendRequest(feature=b.feature or "", model=b.model or "",
                                        user=b.user or "", period=b.period)
    with _target(settings.endpoint) as channel:
        return spend_pb2_grpc.SpendStub(channel).Get(
            request, timeout=timeout_s, metadata=tuple(settings.headers.items())).usd
