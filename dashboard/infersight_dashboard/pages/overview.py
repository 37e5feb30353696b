"""Overview: calls, errors, cost, tokens and p95 latency against the previous period, with their
trends, and the features and models that cost the most."""

from __future__ import annotations

import dash
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from infersight_dashboard import queries
from infersight_dashboard.app import get_store
from infersight_dashboard.components import (
    change_ratio, empty_state, mark_version_changes, style_figure,
)
from infersight_dashboard.filters import View

dash.register_page(__name__, path="/", name="Overview", title="Overview · Infersight", order=0)

# (column of `queries.summary` / `totals`, label, format, whether a rise is bad)
KPIS = (
    ("calls", "Calls", "{:,.0f}", False),
    ("errors", "Errors", "{:,.0f}", True),
    ("cost_usd", "Cost", "${:,.2f}", True),
    ("tokens", "Tokens", "{:,.0f}", True),
    ("p95_latency_ms", "p95 latency", "{:,.0f} ms", True),
)
TOP_N = 8


def layout(**query):
    return html.Div([
        empty_state("overview"),
        html.Div(id="overview-content", children=[
            html.Div(id="overview-kpis", className="kpis"),
            html.Div(className="grid2", children=[
                html.Div([html.H3("Top features by cost"), dcc.Graph(id="overview-features")]),
                html.Div([html.H3("Top models by cost"), dcc.Graph(id="overview-models")]),
            ]),
        ]),
    ])


@dash.callback(
    Output("overview-kpis", "children"),
    Output("overview-features", "figure"),
    Output("overview-models", "figure"),
    Output("overview-empty", "hidden"),
    Output("overview-content", "hidden"),
    Input("url", "search"),
    Input("refresh-timer", "n_intervals"),
)
def update(search, _n_intervals):
    """KPI cards, the two top-N figures, and which of the empty state and the content to hide."""
    store, view = get_store(), View.from_query(search)
    start, end = view.window()
    now, trend = queries.totals(store, start, end, queries.choose_bucket_seconds(start, end),
                                view.filters)
    now = now.iloc[0]
    if now["calls"] == 0:
        return [], go.Figure(), go.Figure(), False, True
    before = queries.summary(store, start - (end - start), start, view.filters).iloc[0]
    changes = queries.version_changes(store, start, end, view.filters)
    cards = [_card(key, label, fmt, rise_is_bad, now[key], before[key], trend, changes,
                   (start, end))
             for key, label, fmt, rise_is_bad in KPIS]
    top = queries.cost_by_each(store, start, end, ("feature", "model"), view.filters,
                               limit=TOP_N)
    features, models = (top[top["dimension"] == by] for by in ("feature", "model"))
    return cards, _top_figure(features), _top_figure(models), True, False


def _card(key, label, fmt, rise_is_bad, value, previous, trend, changes, x_range) -> html.Div:
    ratio = change_ratio(float(value), float(previous))
    if ratio is None:
        delta, tone = "no previous data", "flat"
    else:
        delta = f"{ratio:+.0%} vs previous period"
        tone = "flat" if abs(ratio) < 0.005 else ("bad" if (ratio > 0) == rise_is_bad else "good")
    spark = go.Figure(go.Scatter(x=trend["bucket"], y=trend[key], mode="lines",
                                 line={"width": 1.5}, fill="tozeroy", hoverinfo="x+y"))
    style_figure(spark, x_range, height=60, showlegend=False,
                 margin={"t": 0, "b": 0, "l": 0, "r": 0})
    spark.update_xaxes(visible=False)
    spark.update_yaxes(visible=False)
    mark_version_changes(spark, changes, labels=False)
    return html.Div(className="kpi", id=f"kpi-{key}", children=[
        html.Div(label, className="kpi-label"),
        html.Div("–" if pd.isna(value) else fmt.format(value), className="kpi-value"),
        html.Div(delta, className=f"kpi-delta {tone}"),
        dcc.Graph(figure=spark, config={"displayModeBar": False}, className="spark"),
    ])


def _top_figure(rows: pd.DataFrame) -> go.Figure:
    figure = px.bar(rows.iloc[::-1], x="cost_usd", y="key", orientation="h",
                    hover_data={"calls": ":,", "cost_per_call": ":$.5f"},
                    labels={"cost_usd": "Cost (USD)", "key": "", "calls": "Calls",
                            "cost_per_call": "Cost per call"})
    return style_figure(figure, height=300, xaxis_tickprefix="$")
