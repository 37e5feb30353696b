"""Alerts: every rule's current state, the state changes in the time range, and for each a link
to the chart that shows what triggered it (cost rules on Cost, the others on Degradation, with
the rule's scope as the filters). The collector's evaluator writes them (docs/alerts.md)."""

from __future__ import annotations

import dash
import pandas as pd
from dash import Input, Output, dash_table, html

from infersight_dashboard import queries
from infersight_dashboard.app import get_store
from infersight_dashboard.filters import FILTER_KEYS, Filters, View

dash.register_page(__name__, path="/alerts", name="Alerts", title="Alerts · Infersight",
                   order=4)

_STATE_STYLE = [{"if": {"filter_query": f'{{state}} = "{state}"', "column_id": "state"},
                 "color": color, "fontWeight": "bold"}
                for state, color in (("ALERT", "#b91c1c"), ("WARNING", "#b45309"),
                                     ("NO_DATA", "#6b7280"), ("OK", "#15803d"))]
_COLUMNS = [("rule", "Rule"), ("group", "Group"), ("state", "State"), ("value", "Value"),
            ("threshold", "Bound"), ("message", "Why"), ("chart", "Chart")]
_TABLE_STYLE = dict(style_cell={"fontFamily": "inherit", "padding": "0.3em 0.75em",
                                "textAlign": "left"},
                    style_header={"fontWeight": "bold"}, style_data_conditional=_STATE_STYLE,
                    markdown_options={"link_target": "_self"}, page_size=20)


def _columns(first: list[tuple[str, str]]) -> list[dict]:
    return [{"id": c, "name": n, **({"presentation": "markdown"} if c == "chart" else {})}
            for c, n in first + _COLUMNS]


def layout(**query):
    return html.Div([
        html.H3("Current state per rule"),
        html.P(id="alerts-none", className="note", hidden=True,
               children="No alert has been evaluated yet. Start the collector with "
                        "--alert-rules FILE (see docs/alerts.md)."),
        dash_table.DataTable(id="alerts-current", columns=_columns([("since", "Since (UTC)")]),
                             **_TABLE_STYLE),
        html.H3("State changes in this time range"),
        dash_table.DataTable(id="alerts-history", columns=_columns(
            [("at", "Time (UTC)"), ("previous", "From")]), **_TABLE_STYLE),
    ])


@dash.callback(
    Output("alerts-current", "data"),
    Output("alerts-history", "data"),
    Output("alerts-none", "hidden"),
    Input("url", "search"),
    Input("refresh-timer", "n_intervals"),
)
def update(search, _n_intervals):
    store, view = get_store(), View.from_query(search)
    start, end = view.window()
    current = queries.alert_states(store)
    history = queries.alert_history(store, start, end)
    return (rows(current, "since", view), rows(history, "at", view), not current.empty)


def rows(frame: pd.DataFrame, time_column: str, view: View) -> list[dict]:
    """Table rows: times as text, numbers rounded, and the link to the triggering chart."""
    out = []
    for row in frame.to_dict("records"):
        row[time_column] = pd.Timestamp(row[time_column]).strftime("%Y-%m-%d %H:%M:%S")
        for key in ("value", "threshold"):
            row[key] = None if pd.isna(row[key]) else round(float(row[key]), 4)
        row["chart"] = f"[{chart_name(row['kind'])}]({chart_href(row, view)})"
        row.pop("scope", None)
        out.append({k: v for k, v in row.items()
                    if k not in ("window_start", "window_end", "kind")})
    return out


def chart_name(kind: str) -> str:
    return "Cost" if kind in queries.COST_ALERT_KINDS else "Degradation"


def chart_href(row: dict, view: View) -> str:
    """The page that charts what the rule watches, filtered to its scope where a filter can
    say it (one value per dimension), over the view's time range."""
    scope = dict(row.get("scope") or {})
    filters = Filters(**{k: scope[k] for k in FILTER_KEYS
                         if k in scope and "," not in scope[k]})
    path = "/cost" if row["kind"] in queries.COST_ALERT_KINDS else "/degradation"
    return path + View(range=view.range, refresh=view.refresh, filters=filters).to_query()
