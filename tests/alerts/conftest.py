"""Alert tests build rules from dicts and evaluate them at clock times they choose."""

from __future__ import annotations

import pytest

from infersight_collector.alerts import Evaluator
from infersight_collector.alerts.rules import parse_rules
from tests.dashboard.conftest import add_calls  # noqa: F401  (the shared span inserter)


@pytest.fixture
def evaluator(store):
    """`evaluator(*rules, notifiers=None)`: an Evaluator over `store` for rule dicts."""
    def build(*rules: dict, notifiers: dict | None = None, notifier=None) -> Evaluator:
        return Evaluator(store, parse_rules({"rules": list(rules),
                                             "notifiers": notifiers or {}}), notifier)
    return build


@pytest.fixture
def spend_collector(store):
    """The OTLP/gRPC collector with the Spend service, on a free loopback port."""
    from infersight_collector.alerts.spend import add_spend_service
    from infersight_collector.otlp_grpc import create_server
    from infersight_collector.pipeline import Pipeline

    pipeline = Pipeline(store).start()
    server, port = create_server(pipeline, "127.0.0.1", 0)
    add_spend_service(server, store)
    server.start()
    server.endpoint = f"127.0.0.1:{port}"
    yield server
    server.stop(grace=None)
    pipeline.stop()
