"""Cost page: where the money goes, per product feature over time and per feature and model."""

from __future__ import annotations

import dash
import plotly.express as px
import plotly.graph_objects as go
from dash import Input, Output, dash_table, dcc, html
from dash.dash_table import FormatTemplate
from dash.dash_table.Format import Format, Group, Scheme

from infersight_dashboard import queries
from infersight_dashboard.app import get_store, time_window

dash.register_page(__name__, path="/", name="Cost", title="Cost · Infersight")

REFRESH_MS = 10_000

_COLUMNS = [
    {"id": "feature", "name": "Feature"},
    {"id": "model", "name": "Model"},
    {"id": "calls", "name": "Calls", "type": "numeric", "format": Format(group=Group.yes)},
    {"id": "errors", "name": "Errors", "type": "numeric", "format": Format(group=Group.yes)},
    {"id": "cost_usd", "name": "Cost (USD)", "type": "numeric",
     "format": FormatTemplate.money(4)},
    {"id": "input_tokens", "name": "Input tokens", "type": "numeric",
     "format": Format(group=Group.yes)},
    {"id": "output_tokens", "name": "Output tokens", "type": "numeric",
     "format": Format(group=Group.yes)},
    {"id": "p95_latency_ms", "name": "p95 latency (ms)", "type": "numeric",
     "format": Format(precision=1, scheme=Scheme.fixed)},
]

layout = html.Div([
    dcc.Interval(id="cost-refresh", interval=REFRESH_MS),
    html.Div(
        id="cost-empty",
        hidden=True,
        children=[
            html.H3("No AI calls in this time range yet"),
            html.P([
                "Run ", html.Code("infersight demo"), " to send sample traffic, or add ",
                html.Code("import infersight; infersight.instrument()"),
                " to a service that calls a model.",
            ]),
        ],
    ),
    html.Div(id="cost-content", children=[
        html.H3("Cost per feature over time"),
        dcc.Graph(id="cost-chart"),
        html.H3("Cost by feature and model"),
        dash_table.DataTable(
            id="cost-table",
            columns=_COLUMNS,
            sort_action="native",
            page_size=25,
            style_cell={"fontFamily": "inherit", "padding": "0.3em 0.75em"},
            style_header={"fontWeight": "bold"},
        ),
    ]),
])


@dash.callback(
    Output("cost-chart", "figure"),
    Output("cost-table", "data"),
    Output("cost-empty", "hidden"),
    Output("cost-content", "hidden"),
    Input("time-range", "value"),
    Input("cost-refresh", "n_intervals"),
)
def update(time_range, _n_intervals):
    """Figure, table rows, and which of the empty state and the content to hide."""
    store = get_store()
    start, end = time_window(time_range)
    table = queries.feature_model_table(store, start, end)
    if table.empty:
        return go.Figure(), [], False, True
    series = queries.cost_per_feature_over_time(
        store, start, end, queries.choose_bucket_seconds(start, end))
    figure = px.bar(
        series, x="bucket", y="cost_usd", color="feature", hover_data=["calls"],
        labels={"bucket": "", "cost_usd": "Cost (USD)", "feature": "Feature", "calls": "Calls"},
    )
    figure.update_layout(barmode="stack", xaxis_range=[start, end], yaxis_tickprefix="$",
                         margin={"t": 10}, legend_title_text="Feature")
    return figure, table.to_dict("records"), True, False
