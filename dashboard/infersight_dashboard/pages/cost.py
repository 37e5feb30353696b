"""Cost: where the money goes (per feature over time, per model, user and tenant), what a call
and 1k tokens cost, the month so far and where it ends, the most expensive calls, and what
cache reads saved."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone

import dash
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from dash import Input, Output, dash_table, dcc, html
from dash.dash_table import FormatTemplate
from dash.dash_table.Format import Format, Group, Scheme

from infersight.pricing import Usage, cost_usd
from infersight_dashboard import queries
from infersight_dashboard.app import get_store
from infersight_dashboard.components import (
    empty_state, mark_alert_periods, mark_version_changes, style_figure, trace_href,
)
from infersight_dashboard.filters import View

dash.register_page(__name__, path="/cost", name="Cost", title="Cost · Infersight", order=1)

TOP_N = 15
_INT = Format(group=Group.yes)
_MONEY = FormatTemplate.money(4)
_MS = Format(precision=1, scheme=Scheme.fixed)

_TABLE_COLUMNS = [
    {"id": "feature", "name": "Feature"},
    {"id": "model", "name": "Model"},
    {"id": "calls", "name": "Calls", "type": "numeric", "format": _INT},
    {"id": "errors", "name": "Errors", "type": "numeric", "format": _INT},
    {"id": "cost_usd", "name": "Cost (USD)", "type": "numeric", "format": _MONEY},
    {"id": "cost_per_call", "name": "Per call", "type": "numeric", "format": _MONEY},
    {"id": "cost_per_1k_tokens", "name": "Per 1k tokens", "type": "numeric", "format": _MONEY},
    {"id": "input_tokens", "name": "Input tokens", "type": "numeric", "format": _INT},
    {"id": "output_tokens", "name": "Output tokens", "type": "numeric", "format": _INT},
    {"id": "p95_latency_ms", "name": "p95 latency (ms)", "type": "numeric", "format": _MS},
]
_CALL_COLUMNS = [
    {"id": "time", "name": "Time (UTC)"},
    {"id": "trace", "name": "Trace", "presentation": "markdown"},
    {"id": "feature", "name": "Feature"},
    {"id": "model", "name": "Model"},
    {"id": "cost_usd", "name": "Cost (USD)", "type": "numeric", "format": _MONEY},
    {"id": "input_tokens", "name": "Input tokens", "type": "numeric", "format": _INT},
    {"id": "output_tokens", "name": "Output tokens", "type": "numeric", "format": _INT},
    {"id": "duration_ms", "name": "Latency (ms)", "type": "numeric", "format": _MS},
]
_TABLE_STYLE = dict(style_cell={"fontFamily": "inherit", "padding": "0.3em 0.75em"},
                    style_header={"fontWeight": "bold"}, sort_action="native", page_size=15)


def layout(**query):
    graph = dcc.Graph
    return html.Div([
        empty_state("cost"),
        html.Div(id="cost-content", children=[
            html.H3("Cost per feature over time"),
            graph(id="cost-chart"),
            html.Div(className="grid3", children=[
                html.Div([html.H3("Per model (as served)"), graph(id="cost-by-model")]),
                html.Div([html.H3("Per user"), graph(id="cost-by-user")]),
                html.Div([html.H3("Per tenant"), graph(id="cost-by-tenant")]),
            ]),
            html.H3("Month to date and projected month-end, per feature"),
            graph(id="cost-month"),
            html.P(id="cost-savings", className="note"),
            html.H3("Cost by feature and model"),
            dash_table.DataTable(id="cost-table", columns=_TABLE_COLUMNS, **_TABLE_STYLE),
            html.H3("Most expensive calls"),
            dash_table.DataTable(id="cost-calls", columns=_CALL_COLUMNS,
                                 markdown_options={"link_target": "_self"}, **_TABLE_STYLE),
        ]),
    ])


@dash.callback(
    Output("cost-chart", "figure"),
    Output("cost-by-model", "figure"),
    Output("cost-by-user", "figure"),
    Output("cost-by-tenant", "figure"),
    Output("cost-month", "figure"),
    Output("cost-savings", "children"),
    Output("cost-table", "data"),
    Output("cost-calls", "data"),
    Output("cost-empty", "hidden"),
    Output("cost-content", "hidden"),
    Input("url", "search"),
    Input("refresh-timer", "n_intervals"),
)
def update(search, _n_intervals):
    """Every figure and table of the page, and which of the empty state and content to hide."""
    store, view = get_store(), View.from_query(search)
    start, end = view.window()
    table = queries.feature_model_table(store, start, end, view.filters)
    if table.empty:
        return (*[go.Figure()] * 5, "", [], [], False, True)
    series = queries.cost_per_feature_over_time(
        store, start, end, queries.choose_bucket_seconds(start, end), view.filters)
    over_time = px.bar(
        series, x="bucket", y="cost_usd", color="feature", hover_data=["calls"],
        labels={"bucket": "", "cost_usd": "Cost (USD)", "feature": "Feature", "calls": "Calls"})
    style_figure(over_time, (start, end), barmode="stack", yaxis_tickprefix="$",
                 legend_title_text="")
    mark_version_changes(over_time, queries.version_changes(store, start, end, view.filters))
    mark_alert_periods(over_time, queries.alert_periods(store, start, end,
                                                        kinds=queries.COST_ALERT_KINDS))
    people = queries.cost_per_user_and_tenant(store, start, end, view.filters, limit=TOP_N)
    by = {key: _by_figure(people[people["dimension"] == key]) for key in ("user", "tenant")}
    by["model"] = _by_figure(per_served_model(table).head(TOP_N))
    month_start, month_end = month_bounds(end)
    month = queries.cost_by(store, month_start, end, "feature", view.filters)
    savings = cache_savings(table, end.date())
    return (over_time, by["model"], by["user"], by["tenant"],
            _month_figure(month, month_start, end, month_end), _savings_text(savings),
            _with_unit_costs(table).to_dict("records"),
            _call_rows(queries.expensive_calls(store, start, end, view.filters), view),
            True, False)


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of the calendar month (UTC) holding `now`."""
    now = now.astimezone(timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(now.year, now.month)[1]
    return start, start + timedelta(days=days)


def project_month_end(spent: float, month_start: datetime, now: datetime,
                      month_end: datetime) -> float:
    """Month-end spend if the month goes on at the rate it has had so far."""
    elapsed = (now - month_start).total_seconds()
    if elapsed <= 0:
        return spent
    return spent * (month_end - month_start).total_seconds() / elapsed


def cache_savings(rows: pd.DataFrame, day) -> pd.DataFrame:
    """What cache reads saved per served model (from `queries.feature_model_table` rows):
    model, cache_read_tokens, saved_usd = their price as fresh input minus their price as cache
    reads, from the bundled price file (models it does not price are left out)."""
    per_model = rows.groupby("model")["cache_read_tokens"].sum()
    out = []
    for model, tokens in per_model[per_model > 0].items():
        fresh = cost_usd(model, Usage(input=int(tokens)), day)
        cached = cost_usd(model, Usage(input=int(tokens), cache_read=int(tokens)), day)
        if fresh is not None and cached is not None:
            out.append((model, int(tokens), fresh - cached))
    return pd.DataFrame(out, columns=["model", "cache_read_tokens", "saved_usd"])


def _savings_text(savings: pd.DataFrame) -> str:
    if savings.empty or savings["saved_usd"].sum() <= 0:
        return "No cached-token savings in this range."
    return (f"Cached input tokens saved ${savings['saved_usd'].sum():,.4f} in this range "
            f"({int(savings['cache_read_tokens'].sum()):,} tokens read from a prompt cache "
            f"across {len(savings)} model{'s' if len(savings) > 1 else ''}).")


def per_served_model(table: pd.DataFrame) -> pd.DataFrame:
    """`queries.feature_model_table` rows summed per served model, most expensive first, with
    the columns of `queries.cost_by` the chart shows (key, calls, cost_usd and unit costs)."""
    sums = (table.groupby("model", as_index=False)
            [["calls", "cost_usd", "input_tokens", "output_tokens"]].sum()
            .rename(columns={"model": "key"})
            .sort_values(["cost_usd", "key"], ascending=[False, True], ignore_index=True))
    return _with_unit_costs(sums)


def _with_unit_costs(table: pd.DataFrame) -> pd.DataFrame:
    tokens = table["input_tokens"] + table["output_tokens"]
    return table.assign(cost_per_call=table["cost_usd"] / table["calls"],
                        cost_per_1k_tokens=(table["cost_usd"] * 1000 / tokens).where(tokens > 0))


def _by_figure(rows: pd.DataFrame) -> go.Figure:
    figure = px.bar(rows.iloc[::-1], x="cost_usd", y="key", orientation="h",
                    hover_data={"calls": ":,", "cost_per_call": ":$.5f",
                                "cost_per_1k_tokens": ":$.5f"},
                    labels={"cost_usd": "Cost (USD)", "key": "", "calls": "Calls",
                            "cost_per_call": "Per call", "cost_per_1k_tokens": "Per 1k tokens"})
    return style_figure(figure, height=320, xaxis_tickprefix="$")


def _month_figure(month: pd.DataFrame, month_start, now, month_end) -> go.Figure:
    projected = [project_month_end(c, month_start, now, month_end) for c in month["cost_usd"]]
    figure = go.Figure([
        go.Bar(name="Month to date", x=month["key"], y=month["cost_usd"]),
        go.Bar(name="Projected month-end", x=month["key"], y=projected, opacity=0.5),
    ])
    return style_figure(figure, height=300, barmode="group", yaxis_tickprefix="$")


def _call_rows(calls: pd.DataFrame, view: View) -> list[dict]:
    rows = calls.assign(
        time=calls["time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        trace=[f"[{t[:12]}…]({trace_href(view, t)})" for t in calls["trace_id"]])
    return rows.to_dict("records")
