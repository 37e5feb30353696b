"""The Dash app: top navigation, the shared time-range picker, and the pages under `pages/`.

    app = create_app(store)                   # app.server is the WSGI app (gunicorn, waitress)
    serve_dashboard(app, "127.0.0.1", 8050)   # blocking, with waitress; may run in a thread

Pages read the store with `get_store()` and the picker (id `time-range`, in this layout so it
survives page changes) with `time_window(value)`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dash
from dash import Dash, dcc, html

from infersight_collector.store import Store

PAGES_DIR = Path(__file__).resolve().parent / "pages"

TIME_RANGES: dict[str, tuple[str, timedelta]] = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "6h": ("Last 6 hours", timedelta(hours=6)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
DEFAULT_TIME_RANGE = "1h"

_store: Store | None = None


def get_store() -> Store:
    """The store given to the most recent `create_app`; pages are modules, not app objects."""
    if _store is None:
        raise RuntimeError("no store for the dashboard: call create_app(store) first")
    return _store


def time_window(range_key: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end) in UTC for a picker value; an unknown value (it comes from the browser)
    means the default range."""
    end = now or datetime.now(timezone.utc)
    _, length = TIME_RANGES.get(range_key or "", TIME_RANGES[DEFAULT_TIME_RANGE])
    return end - length, end


def create_app(store: Store) -> Dash:
    """A dashboard over `store`. Safe to call more than once in a process, but only in the main
    thread: Dash's `register_page` reads a context variable that only the thread that imported
    Dash has set, so the pages fail to load anywhere else."""
    global _store
    _store = store
    # Naming the package (not this module) makes Dash import the pages under their real module
    # names, so a page imported by a test and the page Dash loaded are the same module.
    app = Dash(
        "infersight_dashboard",
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        title="Infersight",
        suppress_callback_exceptions=True,
    )
    app.layout = _layout()
    # Dash re-runs every page module for each app, and `dash.callback` puts the callbacks in one
    # process-wide list that the first app to serve a request takes whole. Take them now, so
    # each app owns the callbacks of its own pages and a second app is not left with none.
    app._setup_server()
    return app


def serve_dashboard(app: Dash, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Serve an app from `create_app` with waitress until the process ends (blocking). It takes
    the app, not the store, so that a caller serving from a thread builds it in the main one."""
    from waitress import serve

    serve(app.server, host=host, port=port, threads=8)


def _layout() -> html.Div:
    nav = [
        dcc.Link(page["name"], href=page["relative_path"], style={"marginRight": "1.5em"})
        for page in dash.page_registry.values()
    ]
    picker = dcc.Dropdown(
        id="time-range",
        options=[{"label": label, "value": key} for key, (label, _) in TIME_RANGES.items()],
        value=DEFAULT_TIME_RANGE,
        clearable=False,
        persistence=True,
        style={"width": "14em"},
    )
    header = html.Header(
        [html.Strong("Infersight", style={"marginRight": "2em"}), html.Nav(nav, style={"flex": 1}),
         picker],
        style={"display": "flex", "alignItems": "center", "padding": "0.75em 1.5em",
               "borderBottom": "1px solid #ddd"},
    )
    return html.Div(
        [dcc.Location(id="url"), header,
         html.Main(dash.page_container, style={"padding": "1.5em"})],
        style={"fontFamily": "system-ui, sans-serif"},
    )
