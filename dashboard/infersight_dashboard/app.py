"""The Dash app: navigation, the global filters kept in the URL, auto-refresh, and the pages.

    app = create_app(store)                   # app.server is the WSGI app (gunicorn, waitress)
    serve_dashboard(app, "127.0.0.1", 8050)   # blocking, with waitress; may run in a thread

The header's controls (time range, auto-refresh, service, project, feature, model, version) and
the URL's query string mirror each other (`sync_url`), so a view can be linked. Pages read the
view from the query string the router hands their `layout`, and the store with `get_store()`.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import dash
import pandas as pd
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from infersight_collector.store import Store
from infersight_dashboard import auth, queries
from infersight_dashboard.filters import (
    DEFAULT_REFRESH, DEFAULT_TIME_RANGE, FILTER_KEYS, REFRESH_CHOICES, TIME_RANGES, Filters,
    View, time_window,
)

__all__ = ["TIME_RANGES", "create_app", "get_store", "serve_dashboard", "time_window"]

PAGES_DIR = Path(__file__).resolve().parent / "pages"

_store: Store | None = None


def get_store() -> Store:
    """The store given to the most recent `create_app`; pages are modules, not app objects."""
    if _store is None:
        raise RuntimeError("no store for the dashboard: call create_app(store) first")
    return _store


def create_app(store: Store, protection: auth.Protection | None = None) -> Dash:
    """A dashboard over `store`, protected as `protection` says (by default as the
    INFERSIGHT_DASHBOARD_TOKEN / INFERSIGHT_DASHBOARD_USERS environment says; open if unset).

    Safe to call more than once in a process, but only in the main thread: Dash's
    `register_page` reads a context variable that only the thread that imported Dash has set,
    so the pages fail to load anywhere else."""
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
    pages = sorted(dash.page_registry.values(), key=lambda p: p["order"])
    app.layout = _layout(pages)
    _register_callbacks(app, pages)
    auth.protect(app.server, protection if protection is not None else auth.from_env())
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


def sync_url(trigger: str | None, search: str | None, range_key: str, refresh: str,
             filter_values: list[str | None], paths: list[str]) -> tuple:
    """Keep the URL and the header's controls saying the same.

    When the URL changed (a linked view was opened, or the page loaded), the controls take its
    values; when a control changed, the URL takes theirs, keeping page parameters such as a
    trace id. Returns (search, range, refresh, filter values, nav hrefs), `no_update` for the
    side that already agrees."""
    if trigger in (None, "url"):
        view = View.from_query(search)
        controls = [view.range, view.refresh, *[v or None for v in asdict(view.filters).values()]]
        new_search = no_update
    else:
        view = replace(
            View.from_query(search), range=range_key or DEFAULT_TIME_RANGE,
            refresh=refresh or DEFAULT_REFRESH,
            filters=Filters(**{k: v or "" for k, v in zip(FILTER_KEYS, filter_values)}))
        controls = [no_update] * (2 + len(FILTER_KEYS))
        new_search = view.to_query()
    # Page parameters belong to the page they were set on; the nav carries only the globals.
    nav_query = replace(view, extra=()).to_query()
    return (new_search, *controls, *[path + nav_query for path in paths])


def filter_choices(options: pd.DataFrame, selected: dict[str, str | None]) -> list[list[dict]]:
    """Dropdown options per filter key from `queries.filter_options`, busiest first; a selected
    value missing from the window (a linked view) stays listed so it still shows."""
    out = []
    for key in FILTER_KEYS:
        rows = options[options["key"] == key]
        choices = [{"label": f"{v} ({n:,})", "value": v}
                   for v, n in zip(rows["value"], rows["calls"])]
        current = selected.get(key)
        if current and current not in set(rows["value"]):
            choices.insert(0, {"label": f"{current} (0)", "value": current})
        out.append(choices)
    return out


def refresh_interval(choice: str | None) -> tuple[int, bool]:
    """(interval ms, disabled) of the refresh timer for an auto-refresh choice."""
    _, ms = REFRESH_CHOICES.get(choice or "", REFRESH_CHOICES[DEFAULT_REFRESH])
    return (ms or 60_000), ms == 0


def _register_callbacks(app: Dash, pages: list[dict]) -> None:
    paths = [p["relative_path"] for p in pages]
    filter_ids = [f"filter-{k}" for k in FILTER_KEYS]

    @app.callback(
        Output("url", "search"), Output("time-range", "value"), Output("refresh", "value"),
        *[Output(i, "value") for i in filter_ids],
        *[Output(f"nav-{i}", "href") for i in range(len(paths))],
        Input("url", "search"), Input("time-range", "value"), Input("refresh", "value"),
        *[Input(i, "value") for i in filter_ids],
    )
    def _sync(search, range_key, refresh, *filter_values):
        return sync_url(ctx.triggered_id, search, range_key, refresh, list(filter_values), paths)

    @app.callback(
        *[Output(i, "options") for i in filter_ids],
        Input("time-range", "value"), Input("refresh-timer", "n_intervals"),
        *[State(i, "value") for i in filter_ids],
    )
    def _options(range_key, _n, *selected):
        start, end = time_window(range_key)
        options = queries.filter_options(get_store(), start, end)
        return tuple(filter_choices(options, dict(zip(FILTER_KEYS, selected))))

    @app.callback(Output("refresh-timer", "interval"), Output("refresh-timer", "disabled"),
                  Input("refresh", "value"))
    def _refresh(choice):
        return refresh_interval(choice)


def _dropdown(id_: str, options: list[dict], value, placeholder: str = "",
              clearable: bool = True, width: str = "11em") -> dcc.Dropdown:
    return dcc.Dropdown(id=id_, options=options, value=value, placeholder=placeholder,
                        clearable=clearable, style={"width": width}, className="control")


def _layout(pages: list[dict]) -> html.Div:
    nav = [dcc.Link(page["name"], id=f"nav-{i}", href=page["relative_path"], className="nav")
           for i, page in enumerate(pages)]
    controls = [
        _dropdown("time-range", [{"label": label, "value": key}
                                 for key, (label, _) in TIME_RANGES.items()],
                  DEFAULT_TIME_RANGE, clearable=False, width="12em"),
        *[_dropdown(f"filter-{key}", [], None, placeholder=f"Any {key}") for key in FILTER_KEYS],
        _dropdown("refresh", [{"label": label, "value": key}
                              for key, (label, _) in REFRESH_CHOICES.items()],
                  DEFAULT_REFRESH, clearable=False, width="13em"),
    ]
    interval, disabled = refresh_interval(DEFAULT_REFRESH)
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Interval(id="refresh-timer", interval=interval, disabled=disabled),
        html.Header([html.Strong("Infersight", className="brand"), html.Nav(nav)],
                    className="topbar"),
        html.Div(controls, className="filters"),
        html.Main(dash.page_container, className="page"),
    ])
