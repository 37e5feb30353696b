"""The `infersight` command: serve, collector, dashboard, demo, loadgen, alerts, migrate.

`serve` runs the collector and the dashboard in one process on the embedded store (chDB allows
one process per data directory). `collector` and `dashboard` run apart against a ClickHouse
server (`CLICKHOUSE_URL`). SIGTERM or Ctrl-C writes what was accepted before exiting.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading

from . import usable_cores

log = logging.getLogger("infersight")


def _number(low: float, kind: type = int, high: float | None = None, above: bool = False):
    """An argparse type for a number of `kind` from `low` (above it, with `above`) up to
    `high`: a flag or an INFERSIGHT_* variable out of range stops the command with a line
    that says why, not a traceback or a silent substitute."""
    bound = f"above {low}" if above else f"at least {low}"
    if high is not None:
        bound = f"from {low} to {high}"
    word = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}")
        if (value <= low if above else value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {bound}")
        return value

    return parse


_COUNT = _number(1)  # something there must be one of
_PORT = _number(0, high=65535)  # 0: any free port


def _env(name: str, default) -> str:
    """An environment variable as a flag's default, as a string: argparse checks it with the
    flag's type, naming the flag; the help names the variable."""
    return os.environ.get(name, str(default))


def _decode_workers(args: argparse.Namespace, native: bool) -> int:
    """--decode-workers, else one per core for Python decode on more than one core. With
    native decode the receivers decode only requests with invalid ids: none."""
    if args.decode_workers is not None:
        return args.decode_workers
    cores = usable_cores()
    return cores if cores > 1 and not native else 0


def _open_store(args: argparse.Namespace):
    from .store import open_store

    return open_store(url=args.clickhouse_url or None, data_dir=args.data_dir,
                      ttl_days=args.ttl_days, cluster=args.cluster or None)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _start_collector(store, args: argparse.Namespace):
    from .decode import Limits
    from .receivers import Receivers, ReceiverSettings
    from .pipeline import Pipeline
    from .spool import Spool

    spool = Spool(args.spool_dir or os.path.join(args.data_dir, "spool"), args.spool_max_bytes)
    limits = Limits(max_value_chars=args.max_attribute_chars)
    native = None
    if args.decode == "native" and not args.clickhouse_url:  # a server reads its own disk
        from .native import Native

        native = Native(store, limits, os.path.join(spool.directory, "native"),
                        lanes=args.insert_lanes)
    pipeline = Pipeline(store, spool=spool, native=native).start()
    server = Receivers(pipeline, store, ReceiverSettings(
        host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
        metrics_port=args.metrics_port, max_message_bytes=args.max_message_bytes,
        api_keys_file=args.api_keys_file, tls_cert=args.tls_cert, tls_key=args.tls_key,
        limits=limits, decode_workers=_decode_workers(args, native is not None)))
    return pipeline, server


def _start_dashboard(store, args: argparse.Namespace) -> None:
    from infersight_dashboard.app import create_app, serve_dashboard

    app = create_app(store)
    threading.Thread(target=serve_dashboard, args=(app, args.host, args.dashboard_port),
                     daemon=True, name="dashboard").start()
    log.info("dashboard on http://%s:%d", "localhost" if args.host == "0.0.0.0" else args.host,
             args.dashboard_port)


def _start_alerts(store, args: argparse.Namespace):
    """The alert evaluator on its own thread, or None without a rule file."""
    if not args.alert_rules:
        return None
    from .alerts import Evaluator, Notifier, load_rules

    rules = load_rules(args.alert_rules)
    evaluator = Evaluator(store, rules, Notifier()).start(args.alert_interval)
    log.info("alerts: %d rules from %s, evaluated every %g s", len(rules.rules),
             args.alert_rules, args.alert_interval)
    return evaluator


def _shutdown(pipeline, server, store, alerts=None) -> None:
    log.info("shutting down: finishing in-flight requests and writing accepted spans")
    if alerts is not None:
        alerts.stop()
    server.stop(grace=10).wait()
    server.close()
    pipeline.stop()
    store.close()


def cmd_serve(args: argparse.Namespace) -> int:
    store = _open_store(args)
    pipeline, server = _start_collector(store, args)
    alerts = _start_alerts(store, args)
    _start_dashboard(store, args)
    _wait_for_signal()
    _shutdown(pipeline, server, store, alerts)
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    store = _open_store(args)
    pipeline, server = _start_collector(store, args)
    alerts = _start_alerts(store, args)
    _wait_for_signal()
    _shutdown(pipeline, server, store, alerts)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not args.clickhouse_url:
        print("infersight dashboard needs a ClickHouse server (--clickhouse-url or "
              "CLICKHOUSE_URL); on the embedded store run `infersight serve`, which serves "
              "the dashboard in the collector's process.", file=sys.stderr)
        return 2
    from infersight_dashboard.app import create_app, serve_dashboard

    serve_dashboard(create_app(_open_store(args)), args.host, args.dashboard_port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    print(f"sending demo traffic to {args.endpoint} for {args.duration:.0f} s "
          f"(about {args.rate:g} calls/s); open the dashboard to watch it arrive")
    calls = run(args.endpoint, args.duration, args.rate)
    print(f"done: {calls} calls sent")
    return 0


def cmd_loadgen(args: argparse.Namespace) -> int:
    from datetime import datetime, timedelta, timezone

    from . import loadgen

    if args.generate:
        end = datetime.now(timezone.utc)
        store = _open_store(args)
        print(f"generating {args.generate:,} spans over the last {args.days:g} days")
        seconds = loadgen.fill_store(store, args.generate, end - timedelta(days=args.days), end,
                                     seed=args.seed)
        store.close()
        print(f"done: inserted in {seconds:.1f} s ({args.generate / seconds:,.0f} spans/s)")
        return 0
    endpoint = args.endpoint or ("http://localhost:4318/v1/traces" if args.protocol == "http"
                                 else "localhost:4317")
    print(f"sending {args.protocol} load to {endpoint} from {args.processes} processes for "
          f"{args.duration:g} s" + (f" at {args.rate:,.0f} spans/s" if args.rate else ""))
    r = loadgen.send_load(endpoint, protocol=args.protocol, duration_s=args.duration,
                          processes=args.processes, spans_per_request=args.spans_per_request,
                          spans_per_s=args.rate, max_spans=args.max_spans, seed=args.seed,
                          spread_s=args.spread or loadgen.SPREAD_S)
    print(f"acknowledged {r.acked_spans:,} of {r.sent_spans:,} spans in {r.seconds:.1f} s: "
          f"{r.acked_per_s:,.0f} spans/s; {r.rejected_spans} rejected, {r.refused_requests} "
          f"requests refused (retry later), {r.failed_requests} failed")
    return 0 if r.acked_spans == r.sent_spans else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    if args.print_ddl:
        from .store.schema import Target, all_statements

        target = Target(ttl_days=args.ttl_days, cluster=args.cluster or None)
        print(";\n\n".join(all_statements(target)) + ";")
        return 0
    store = _open_store(args)
    store.close()
    print("schema is up to date")
    return 0


def _alert_rules(args: argparse.Namespace):
    """The validated rule file, or None after printing what is wrong with it."""
    from .alerts import RuleError, load_rules

    if not args.alert_rules:
        print("name the rule file: --alert-rules FILE or INFERSIGHT_ALERT_RULES", file=sys.stderr)
        return None
    try:
        return load_rules(args.alert_rules)
    except RuleError as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_alerts_test(args: argparse.Namespace) -> int:
    from .alerts import Notifier, sample_event

    rules = _alert_rules(args)
    if rules is None:
        return 2
    try:
        rule = rules.get(args.rule)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    targets = rules.targets(rule.name)
    if not targets:
        print(f"rule {rule.name} has no `notify:` targets to send to", file=sys.stderr)
        return 2
    event = sample_event(rule)
    sender = Notifier(attempts=args.attempts)
    failed = 0
    for target in targets:
        ok = sender.deliver(target, event)
        failed += not ok
        print(f"{target.name} ({target.format}, {target.url}): "
              f"{'delivered' if ok else 'FAILED, see the log above'}")
    sender.stop()
    return 1 if failed else 0


def cmd_alerts_check(args: argparse.Namespace) -> int:
    rules = _alert_rules(args)
    if rules is None:
        return 2
    print(f"{len(rules.rules)} rules and {len(rules.notifiers)} notifiers are valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infersight", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def store_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=_env("INFERSIGHT_DATA_DIR", ".infersight"),
                       help="embedded store directory (default ./.infersight)")
        p.add_argument("--clickhouse-url", default=_env("CLICKHOUSE_URL", ""),
                       help="use a ClickHouse server instead of the embedded store")
        p.add_argument("--ttl-days", type=_COUNT, default=_env("INFERSIGHT_TTL_DAYS", 30),
                       help="days spans, rollups and feedback are kept (applied on start; "
                            "INFERSIGHT_TTL_DAYS)")
        p.add_argument("--cluster", default=_env("INFERSIGHT_CLUSTER", ""),
                       help="ClickHouse cluster name: ON CLUSTER, Replicated and Distributed "
                            "tables (server only)")

    def receiver_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--http-port", type=_PORT, default=_env("INFERSIGHT_HTTP_PORT", 4318),
                       help="OTLP/HTTP port (default 4318; INFERSIGHT_HTTP_PORT)")
        p.add_argument("--metrics-port", type=_PORT,
                       default=_env("INFERSIGHT_METRICS_PORT", 8888),
                       help="/healthz, /readyz and Prometheus /metrics (default 8888; "
                            "INFERSIGHT_METRICS_PORT)")
        p.add_argument("--api-keys-file", default=_env("INFERSIGHT_API_KEYS_FILE", ""),
                       help="`key = project` lines; clients must send `Authorization: Bearer "
                            "<key>` and spans are stamped with its project (default: no keys)")
        p.add_argument("--tls-cert", default=_env("INFERSIGHT_TLS_CERT", ""),
                       help="PEM certificate: both OTLP listeners speak TLS only")
        p.add_argument("--tls-key", default=_env("INFERSIGHT_TLS_KEY", ""),
                       help="PEM private key for --tls-cert")
        p.add_argument("--max-message-bytes", type=_COUNT,
                       default=_env("INFERSIGHT_MAX_MESSAGE_BYTES", 16 << 20),
                       help="largest OTLP request, gRPC message or HTTP body after gunzip "
                            "(default 16 MiB)")
        p.add_argument("--max-attribute-chars", type=_COUNT,
                       default=_env("INFERSIGHT_MAX_ATTRIBUTE_CHARS", 65536),
                       help="longer attribute values are cut and marked (default 65536)")
        p.add_argument("--decode", choices=("native", "python"),
                       default=_env("INFERSIGHT_DECODE", "native"),
                       help="native: the embedded store decodes requests in SQL, a spool "
                            "segment at a time (what it cannot, Python does); python: each "
                            "request is decoded in Python (always with --clickhouse-url) "
                            "(default native)")
        p.add_argument("--insert-lanes", type=_COUNT,
                       default=_env("INFERSIGHT_INSERT_LANES", 1),
                       help="with native decode, statements inserting at once, each on its "
                            "own connection: 2 inserted 1.3-1.5x faster on 2 cores, for "
                            "about 250 MB more memory (default 1)")
        p.add_argument("--decode-workers", type=_number(0),
                       default=os.environ.get("INFERSIGHT_DECODE_WORKERS"),
                       help="processes that decode OTLP requests, so ingest is not held to "
                            "one core by the GIL; 0 decodes in the receiving threads "
                            "(default: one per core with --decode python on more than one "
                            "core, else 0)")

    def listen_flags(p: argparse.ArgumentParser, grpc: bool, dashboard: bool) -> None:
        p.add_argument("--host", default=_env("INFERSIGHT_HOST", "0.0.0.0"))
        if grpc:
            p.add_argument("--grpc-port", type=_PORT, default=_env("INFERSIGHT_GRPC_PORT", 4317),
                           help="OTLP/gRPC port (default 4317; INFERSIGHT_GRPC_PORT)")
            receiver_flags(p)
        if dashboard:
            p.add_argument("--dashboard-port", type=_PORT,
                           default=_env("INFERSIGHT_DASHBOARD_PORT", 8050),
                           help="dashboard port (default 8050; INFERSIGHT_DASHBOARD_PORT)")

    def alert_flags(p: argparse.ArgumentParser, schedule: bool = True) -> None:
        p.add_argument("--alert-rules", default=_env("INFERSIGHT_ALERT_RULES", ""),
                       help="YAML alert rule file (docs/alerts.md); alerts are off without one")
        if schedule:
            p.add_argument("--alert-interval", type=_number(0, float, above=True),
                           default=_env("INFERSIGHT_ALERT_INTERVAL", 60),
                           help="seconds between rule evaluations (default 60; "
                                "INFERSIGHT_ALERT_INTERVAL)")

    def spool_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--spool-dir", default=_env("INFERSIGHT_SPOOL_DIR", ""),
                       help="where batches wait while the store is down (default DATA_DIR/spool)")
        p.add_argument("--spool-max-bytes", type=_COUNT,
                       default=_env("INFERSIGHT_SPOOL_MAX_BYTES", 1 << 30),
                       help="spool size past which clients are told to retry (default 1 GiB)")

    p = sub.add_parser("serve", help="collector + dashboard on the embedded store")
    store_flags(p)
    spool_flags(p)
    alert_flags(p)
    listen_flags(p, grpc=True, dashboard=True)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("collector", help="the OTLP collector alone")
    store_flags(p)
    spool_flags(p)
    alert_flags(p)
    listen_flags(p, grpc=True, dashboard=False)
    p.set_defaults(func=cmd_collector)

    p = sub.add_parser("dashboard", help="the dashboard alone, on a ClickHouse server")
    store_flags(p)
    listen_flags(p, grpc=False, dashboard=True)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("demo", help="send realistic AI traffic to a running collector")
    p.add_argument("--endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT",
                                                         "http://localhost:4317"))
    p.add_argument("--duration", type=_number(0, float, above=True), default=180.0,
                   help="seconds (default 180)")
    p.add_argument("--rate", type=_number(0, float, above=True), default=10.0,
                   help="calls per second (default 10)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("loadgen", help="load-test a collector, or fill a store with synthetic "
                                       "spans (--generate N)")
    store_flags(p)
    p.add_argument("--generate", type=_number(0), default=0, metavar="N",
                   help="insert N synthetic spans into the store (--data-dir or "
                        "--clickhouse-url) instead of sending load")
    p.add_argument("--days", type=_number(0, float, above=True), default=7.0,
                   help="--generate: spread over this many days up to now (default 7)")
    p.add_argument("--endpoint", default="", help="collector to load (default localhost:4317, "
                                                  "or http://localhost:4318/v1/traces for http)")
    p.add_argument("--protocol", choices=("grpc", "http", "otel"), default="grpc",
                   help="raw gRPC, OTLP/HTTP, or the OTel SDK's gRPC exporter (default grpc)")
    p.add_argument("--duration", type=_number(0, float, above=True), default=60.0,
                   help="seconds (default 60)")
    p.add_argument("--processes", type=_COUNT, default=2, help="sending processes (default 2)")
    p.add_argument("--rate", type=_number(0, float), default=0.0,
                   help="total spans per second (default 0: as fast as acknowledged)")
    p.add_argument("--max-spans", type=_number(0), default=0, help="stop after this many spans")
    p.add_argument("--spans-per-request", type=_COUNT, default=500)
    p.add_argument("--spread", type=_number(0, float, above=True), default=None,
                   metavar="SECONDS", help="spans start in this many seconds before the load "
                                           "(default 60, as a collector is sent them)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_loadgen)

    p = sub.add_parser("alerts", help="check an alert rule file, or send a rule's test "
                                      "notification")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("test", help="send a sample ALERT for RULE to its webhooks")
    a.add_argument("rule", metavar="RULE")
    alert_flags(a, schedule=False)
    a.add_argument("--attempts", type=_COUNT, default=3, help="tries per webhook (default 3)")
    a.set_defaults(func=cmd_alerts_test)
    a = actions.add_parser("check", help="validate the rule file and report every problem")
    alert_flags(a, schedule=False)
    a.set_defaults(func=cmd_alerts_check)

    p = sub.add_parser("migrate", help="create or upgrade the schema")
    store_flags(p)
    p.add_argument("--print-ddl", action="store_true",
                   help="print the schema for --cluster / --ttl-days instead of applying it")
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("INFERSIGHT_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("INFERSIGHT_LOG_FORMAT", "text") == "json":  # structured, one per line
        from .ops import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    for noisy in ("httpx", "httpx2", "waitress.queue"):  # one line per demo call otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
