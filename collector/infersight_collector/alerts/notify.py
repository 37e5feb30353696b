"""Webhook notifications for alert transitions: generic JSON or Slack-compatible.

`Notifier.notify(event, targets)` only puts the event on a bounded queue and returns; a thread
of its own POSTs it, retrying a failure (a connection error, a timeout, a 5xx or 429) with
exponential backoff. A hanging or failing webhook therefore never holds up evaluation, let
alone ingest; when the queue is full the newest event is dropped and counted (`dropped`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from .rules import Notifier as Target

log = logging.getLogger(__name__)

_ICONS = {"ALERT": ":rotating_light:", "WARNING": ":warning:", "OK": ":white_check_mark:",
          "NO_DATA": ":grey_question:"}


def body(event: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The POST body for a target format: the event itself, or a Slack message."""
    if fmt != "slack":
        return event
    where = ", ".join(f"{k}={v}" for k, v in event.get("scope", {}).items()) or "all calls"
    text = (f"{_ICONS.get(event['state'], '')} *{event['rule']}* is {event['state']} "
            f"(was {event['previous_state']}) on {where}: {event['message']}")
    return {"text": text}


def post(target: Target, event: dict[str, Any], timeout_s: float = 10.0) -> int:
    """Send one event to one target; returns the HTTP status (raises on network errors)."""
    request = urllib.request.Request(
        target.url, data=json.dumps(body(event, target.format)).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "infersight-alerts",
                 **target.headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Notifier:
    """Delivers events on its own thread; `attempts` tries per target, the wait doubling from
    `backoff_s` between them."""

    def __init__(self, max_queue: int = 1000, attempts: int = 5, backoff_s: float = 1.0,
                 timeout_s: float = 10.0, sleep: Callable[[float], Any] | None = None):
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="alert-notifier", daemon=True)
        self._thread.start()

    def notify(self, event: dict[str, Any], targets: list[Target]) -> bool:
        """Queue `event` for `targets`; never blocks. False when the queue is full."""
        if not targets:
            return True
        try:
            self._queue.put_nowait((event, targets))
            return True
        except queue.Full:
            self.dropped += 1
            log.warning("alert notification queue full: dropped %s %s", event.get("rule"),
                        event.get("state"))
            return False

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, targets = item
            for target in targets:
                if self.deliver(target, event):
                    self.delivered += 1
                else:
                    self.failed += 1

    def deliver(self, target: Target, event: dict[str, Any]) -> bool:
        """POST with retries; True once the webhook answered 2xx. A 4xx other than 429 is
        the request's fault, so it is not retried."""
        wait = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                status = post(target, event, self.timeout_s)
                if 200 <= status < 300:
                    return True
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status != 429:
                    break
            except OSError as exc:
                problem = str(exc)
            if attempt < self.attempts and not self._stop.is_set():
                log.info("webhook %s failed (%s); retry %d in %.1f s", target.name, problem,
                         attempt, wait)
                self._sleep(wait)
                wait *= 2
        log.warning("webhook %s gave up on %s %s: %s", target.name, event.get("rule"),
                    event.get("state"), problem)
        return False
