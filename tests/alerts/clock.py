"""The controlled clock alert tests evaluate at."""

from datetime import datetime, timedelta, timezone

# Noon UTC today, so a day's cost window is never cut at midnight.
NOON = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
