"""Assertions and probes shared by the instrumentation tests."""

from __future__ import annotations

from infersight.pricing import Usage, cost_usd


def only_span(exporter):
    """The one finished span in an in-memory exporter (fails, naming them, if not exactly one)."""
    finished = exporter.get_finished_spans()
    assert len(finished) == 1, [s.name for s in finished]
    return finished[0]


def priced(model: str, **usage: int) -> float:
    """The price-file cost of `usage` on `model`, which must be priced."""
    cost = cost_usd(model, Usage(**usage))
    assert cost is not None, f"{model} is not in the price file"
    return cost


def recorded(monkeypatch, owner: type, method: str) -> list:
    """Patch `owner.method` (one taking an item, as an accumulator's `add`) to record each item
    it is given before doing its work; the list it records into."""
    items: list = []
    original = getattr(owner, method)

    def recording(self, item):
        items.append(item)
        return original(self, item)

    monkeypatch.setattr(owner, method, recording)
    return items
