"""The global filters every page shares, and their form in the URL's query string.

    f = Filters.from_query("?range=24h&feature=search")   # what a linked view says
    f.to_query()                                          # "?range=24h&feature=search"

Only non-default values are written, so a plain page URL means "everything, last hour". Values
come from the browser, so parsing never fails: an unknown range or refresh means the default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

TIME_RANGES: dict[str, tuple[str, timedelta]] = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "6h": ("Last 6 hours", timedelta(hours=6)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
DEFAULT_TIME_RANGE = "1h"

# Auto-refresh choices: key -> (label, interval in ms; 0 means off).
REFRESH_CHOICES: dict[str, tuple[str, int]] = {
    "off": ("No auto-refresh", 0),
    "10s": ("Refresh every 10 s", 10_000),
    "30s": ("Refresh every 30 s", 30_000),
    "1m": ("Refresh every minute", 60_000),
    "5m": ("Refresh every 5 minutes", 300_000),
}
DEFAULT_REFRESH = "30s"


@dataclass(frozen=True)
class Filters:
    """What every query is narrowed by besides time; "" means "any"."""

    service: str = ""
    project: str = ""
    feature: str = ""
    model: str = ""
    version: str = ""


# The dimensions of `Filters`, in the order the header shows them.
FILTER_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Filters))


@dataclass(frozen=True)
class View:
    """Everything the URL's query string holds: time range, refresh, filters, page extras."""

    range: str = DEFAULT_TIME_RANGE
    refresh: str = DEFAULT_REFRESH
    filters: Filters = Filters()
    # Page-specific parameters (e.g. a trace id), kept as they are when the globals change.
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_query(cls, search: str | None) -> View:
        params = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=False))
        return cls.from_params(params)

    @classmethod
    def from_params(cls, params: dict[str, str]) -> View:
        """From already-parsed query parameters (what Dash passes a page's `layout`)."""
        params = {k: v for k, v in params.items() if isinstance(v, str)}
        range_key = params.pop("range", "")
        refresh = params.pop("refresh", "")
        filters = Filters(**{k: params.pop(k, "") for k in FILTER_KEYS})
        return cls(
            range=range_key if range_key in TIME_RANGES else DEFAULT_TIME_RANGE,
            refresh=refresh if refresh in REFRESH_CHOICES else DEFAULT_REFRESH,
            filters=filters,
            extra=tuple(sorted(params.items())),
        )

    def to_query(self) -> str:
        """The query string ("?..." or "") that `from_query` reads back as this view."""
        pairs = []
        if self.range != DEFAULT_TIME_RANGE:
            pairs.append(("range", self.range))
        if self.refresh != DEFAULT_REFRESH:
            pairs.append(("refresh", self.refresh))
        pairs += [(k, v) for k, v in asdict(self.filters).items() if v]
        pairs += [(k, v) for k, v in self.extra if v]
        return "?" + urlencode(pairs) if pairs else ""

    def with_extra(self, **values: str) -> View:
        """This view with page parameters set ("" removes one)."""
        extra = dict(self.extra) | values
        return replace(self, extra=tuple(sorted((k, v) for k, v in extra.items() if v)))

    def get(self, key: str) -> str:
        return dict(self.extra).get(key, "")

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        return time_window(self.range, now)


def time_window(range_key: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end) in UTC for a range key; an unknown value (it comes from the browser)
    means the default range. The window ends at the first whole minute from `now` on: it
    holds every call up to now, and its ends fall on the per-minute rollup's edges, so no
    query reads spans for a partial minute (that read was about a third of a summary's time
    at 10M spans)."""
    now = now or datetime.now(timezone.utc)
    minute = now.replace(second=0, microsecond=0)
    end = minute if minute == now else minute + timedelta(minutes=1)
    _, length = TIME_RANGES.get(range_key or "", TIME_RANGES[DEFAULT_TIME_RANGE])
    return end - length, end
