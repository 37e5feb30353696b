"""Webhooks: a real local HTTP server receives the notifications; failures are retried with
backoff; a hanging webhook holds up neither evaluation nor ingest."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from infersight_collector.alerts import Notifier, sample_event
from infersight_collector.alerts.rules import Notifier as Target
from infersight_collector.alerts.rules import parse_rules
from infersight_collector.cli import main
from tests.alerts.clock import NOON, minutes


class Webhook(ThreadingHTTPServer):
    """Records each POSTed JSON body; answers with `statuses` in turn (then 200), or waits on
    `release` first while `hang` is set."""

    daemon_threads = True

    def __init__(self):
        self.bodies: list[dict] = []
        self.statuses: list[int] = []
        self.hang = False
        self.release = threading.Event()
        self.arrived = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                server.arrived.set()
                if server.hang:
                    server.release.wait(30)
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def webhook():
    server = Webhook()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def notifier():
    n = Notifier(backoff_s=0.01)
    yield n
    n.stop()


def test_a_transition_is_posted_as_json_and_as_slack(evaluator, add_calls, webhook, notifier):
    add_calls(NOON - minutes(5), 10, feature="summary", duration_ms=900)
    ev = evaluator({"name": "lat", "kind": "latency", "alert": 500, "group_by": "feature",
                    "notify": ["json", "slack"]},
                   notifiers={"json": {"url": webhook.url},
                              "slack": {"url": webhook.url, "format": "slack"}},
                   notifier=notifier)
    ev.evaluate(NOON)
    notifier.stop()
    event, slack = webhook.bodies
    assert {k: event[k] for k in ("rule", "kind", "group", "state", "previous_state")} == {
        "rule": "lat", "kind": "latency", "group": "summary", "state": "ALERT",
        "previous_state": "OK"}
    assert event["value"] == pytest.approx(900) and event["threshold"] == 500
    assert event["scope"] == {"feature": "summary"}
    assert set(slack) == {"text"}
    assert "*lat* is ALERT (was OK) on feature=summary" in slack["text"]


def test_failures_are_retried_with_backoff_and_client_errors_are_not(webhook):
    waits = []
    sender = Notifier(attempts=4, backoff_s=0.5, sleep=waits.append)
    target = Target("hook", webhook.url)
    webhook.statuses = [500, 503]
    assert sender.deliver(target, {"rule": "r", "state": "ALERT"})
    assert waits == [0.5, 1.0] and len(webhook.bodies) == 3
    webhook.statuses = [400]
    assert not sender.deliver(target, {"rule": "r", "state": "ALERT"})
    assert len(webhook.bodies) == 4 and waits == [0.5, 1.0]
    unreachable = Target("gone", "http://127.0.0.1:1/hook")
    assert not sender.deliver(unreachable, {"rule": "r", "state": "ALERT"})
    assert waits == [0.5, 1.0, 0.5, 1.0, 2.0]
    sender.stop()


def test_a_hanging_webhook_blocks_neither_evaluation_nor_ingest(store, collector, evaluator,
                                                                add_calls, webhook):
    webhook.hang = True
    notifier = Notifier(max_queue=1, backoff_s=0.01)
    ev = evaluator({"name": "lat", "kind": "latency", "alert": 500, "group_by": "feature",
                    "notify": ["hook"]}, notifiers={"hook": {"url": webhook.url}},
                   notifier=notifier)
    add_calls(NOON - minutes(5), 10, feature="a", duration_ms=900)
    assert len(ev.evaluate(NOON)) == 1
    assert webhook.arrived.wait(10)  # being delivered, and hanging
    add_calls(NOON - minutes(4), 10, feature="b", duration_ms=900)
    add_calls(NOON - minutes(4), 10, feature="c", duration_ms=900)
    # Two more transitions: one waits in the queue of one, the other is dropped.
    assert len(ev.evaluate(NOON + minutes(1))) == 2
    assert notifier.dropped == 1

    provider = TracerProvider(resource=Resource.create({"service.name": "ingest"}))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://{collector.endpoint}", insecure=True)))
    for i in range(20):
        provider.get_tracer("t").start_span(f"op {i}").end()
    provider.shutdown()
    stored = store.query(f"SELECT count() AS n FROM {store.database}.otel_traces "
                         "WHERE ServiceName = 'ingest'")
    assert stored.n.iloc[0] == 20
    assert notifier.delivered == 0  # the webhook is still hanging all this time

    webhook.release.set()
    notifier.stop(10)
    assert notifier.delivered == 2 and len(webhook.bodies) == 2


def test_alerts_test_command_sends_a_sample(tmp_path, webhook, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""
notifiers:
  hook: {{url: "{webhook.url}", format: json}}
rules:
  - {{name: budget, kind: cost, budget_usd: 5, notify: [hook]}}
  - {{name: quiet, kind: no_data}}
""")
    assert main(["alerts", "test", "budget", "--alert-rules", str(rules)]) == 0
    (body,) = webhook.bodies
    assert body["test"] is True and body["rule"] == "budget" and body["state"] == "ALERT"
    assert "hook (json" in capsys.readouterr().out
    assert main(["alerts", "test", "quiet", "--alert-rules", str(rules)]) == 2
    assert main(["alerts", "test", "nope", "--alert-rules", str(rules)]) == 2
    assert "no rule named 'nope' (rules: budget, quiet)" in capsys.readouterr().err
    assert main(["alerts", "check", "--alert-rules", str(rules)]) == 0


def test_sample_event_names_the_rule_and_its_bound():
    rule = parse_rules({"rules": [{"name": "x", "kind": "latency", "alert": 3000,
                                   "scope": {"model": ["a", "b"]}}]}).rules[0]
    event = sample_event(rule, NOON)
    assert (event["threshold"], event["scope"], event["window_end"]) == (
        3000, {"model": "a,b"}, (NOON - minutes(2)).isoformat())
