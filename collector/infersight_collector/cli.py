"""The `infersight` command: serve, collector, dashboard, demo, migrate.

`serve` runs the collector and the dashboard in one process on the embedded store (chDB allows
one process per data directory). `collector` and `dashboard` run apart against a ClickHouse
server (`CLICKHOUSE_URL`). SIGTERM or Ctrl-C writes what was accepted before exiting.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("infersight")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _open_store(args: argparse.Namespace):
    from .store import open_store

    return open_store(url=args.clickhouse_url or None, data_dir=args.data_dir,
                      ttl_days=args.ttl_days)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _start_collector(store, args: argparse.Namespace):
    from .otlp_grpc import create_server
    from .pipeline import Pipeline

    pipeline = Pipeline(store).start()
    server, port = create_server(pipeline, args.host, args.grpc_port)
    server.start()
    log.info("OTLP/gRPC listening on %s:%d", args.host, port)
    return pipeline, server


def _start_dashboard(store, args: argparse.Namespace) -> None:
    from infersight_dashboard.app import create_app, serve_dashboard

    app = create_app(store)
    threading.Thread(target=serve_dashboard, args=(app, args.host, args.dashboard_port),
                     daemon=True, name="dashboard").start()
    log.info("dashboard on http://%s:%d", "localhost" if args.host == "0.0.0.0" else args.host,
             args.dashboard_port)


def _shutdown(pipeline, server, store) -> None:
    log.info("shutting down: finishing in-flight requests and writing accepted spans")
    server.stop(grace=10).wait()
    pipeline.stop()
    store.close()


def cmd_serve(args: argparse.Namespace) -> int:
    store = _open_store(args)
    pipeline, server = _start_collector(store, args)
    _start_dashboard(store, args)
    _wait_for_signal()
    _shutdown(pipeline, server, store)
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    store = _open_store(args)
    pipeline, server = _start_collector(store, args)
    _wait_for_signal()
    _shutdown(pipeline, server, store)
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


def cmd_migrate(args: argparse.Namespace) -> int:
    store = _open_store(args)
    store.close()
    print("schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infersight", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def store_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=os.environ.get("INFERSIGHT_DATA_DIR", ".infersight"),
                       help="embedded store directory (default ./.infersight)")
        p.add_argument("--clickhouse-url", default=os.environ.get("CLICKHOUSE_URL", ""),
                       help="use a ClickHouse server instead of the embedded store")
        p.add_argument("--ttl-days", type=int, default=_env_int("INFERSIGHT_TTL_DAYS", 30),
                       help="days spans are kept (set when the table is created)")

    def listen_flags(p: argparse.ArgumentParser, grpc: bool, dashboard: bool) -> None:
        p.add_argument("--host", default=os.environ.get("INFERSIGHT_HOST", "0.0.0.0"))
        if grpc:
            p.add_argument("--grpc-port", type=int, default=_env_int("INFERSIGHT_GRPC_PORT", 4317))
        if dashboard:
            p.add_argument("--dashboard-port", type=int,
                           default=_env_int("INFERSIGHT_DASHBOARD_PORT", 8050))

    p = sub.add_parser("serve", help="collector + dashboard on the embedded store")
    store_flags(p)
    listen_flags(p, grpc=True, dashboard=True)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("collector", help="the OTLP collector alone")
    store_flags(p)
    listen_flags(p, grpc=True, dashboard=False)
    p.set_defaults(func=cmd_collector)

    p = sub.add_parser("dashboard", help="the dashboard alone, on a ClickHouse server")
    store_flags(p)
    listen_flags(p, grpc=False, dashboard=True)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("demo", help="send realistic AI traffic to a running collector")
    p.add_argument("--endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT",
                                                         "http://localhost:4317"))
    p.add_argument("--duration", type=float, default=180.0, help="seconds (default 180)")
    p.add_argument("--rate", type=float, default=10.0, help="calls per second (default 10)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("migrate", help="create or upgrade the schema")
    store_flags(p)
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("INFERSIGHT_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "waitress.queue"):  # one line per demo call otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
