"""Traces: find traces with AI calls (by the global filters, status and trace id) and read one as
a waterfall of its spans with their AI attributes, and the prompt and completion where the
service captured them (INFERSIGHT_CAPTURE_CONTENT=true)."""

from __future__ import annotations

import math

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dash_table, dcc, html

from infersight_dashboard import queries
from infersight_dashboard.app import get_store
from infersight_dashboard.components import empty_state, style_figure, trace_href
from infersight_dashboard.filters import View

dash.register_page(__name__, path="/traces", name="Traces", title="Traces · Infersight",
                   order=3)

STATUSES = ("Ok", "Error", "Unset")
_COLORS = {"Error": "#dc2626", "ai": "#2563eb", "other": "#9ca3af"}
_COLUMNS = [
    {"id": "time", "name": "Time (UTC)"},
    {"id": "trace", "name": "Trace", "presentation": "markdown"},
    {"id": "service", "name": "Service"},
    {"id": "feature", "name": "Feature"},
    {"id": "model", "name": "Model"},
    {"id": "calls", "name": "AI calls", "type": "numeric"},
    {"id": "errors", "name": "Errors", "type": "numeric"},
    {"id": "cost_usd", "name": "Cost (USD)", "type": "numeric"},
    {"id": "tokens", "name": "Tokens", "type": "numeric"},
    {"id": "duration_ms", "name": "Longest call (ms)", "type": "numeric"},
]
# (column of `queries.trace_spans`, label) shown for an AI span.
_AI_FIELDS = (("operation", "Operation"), ("provider", "Provider"), ("model", "Model"),
              ("version", "Version"), ("feature", "Feature"), ("input_tokens", "Input tokens"),
              ("output_tokens", "Output tokens"), ("cost_usd", "Cost (USD)"),
              ("confidence", "Confidence"), ("status_message", "Status message"))


def layout(**query):
    view = View.from_params(query)
    return html.Div([
        html.Div(className="controls", children=[
            html.Label(["Status", dcc.Dropdown(
                id="traces-status", options=list(STATUSES), placeholder="Any status",
                style={"width": "10em"})]),
            html.Label(["Trace id", dcc.Input(
                id="traces-trace-id", value=view.get("trace"), debounce=True,
                placeholder="32 hex digits", style={"width": "24em"})]),
        ]),
        empty_state("traces"),
        html.Div(id="traces-content", children=[
            dash_table.DataTable(
                id="traces-table", columns=_COLUMNS, page_size=20, sort_action="native",
                markdown_options={"link_target": "_self"}, style_table={"overflowX": "auto"},
                style_cell={"fontFamily": "inherit", "padding": "0.3em 0.75em"},
                style_header={"fontWeight": "bold"}),
            html.Div(id="traces-detail"),
        ]),
    ])


@dash.callback(
    Output("traces-table", "data"),
    Output("traces-detail", "children"),
    Output("traces-empty", "hidden"),
    Output("traces-content", "hidden"),
    Input("url", "search"),
    Input("refresh-timer", "n_intervals"),
    Input("traces-status", "value"),
    Input("traces-trace-id", "value"),
)
def update(search, _n_intervals, status, trace_id):
    """The matching traces, the chosen trace's waterfall and spans, and which of the empty state
    and the content to hide."""
    store, view = get_store(), View.from_query(search)
    start, end = view.window()
    trace_id = (trace_id or "").strip().lower()
    found = queries.search_traces(store, start, end, view.filters, status=status or "",
                                  trace_id=trace_id)
    detail = []
    if trace_id:
        spans = queries.trace_spans(store, start, end, trace_id)
        detail = trace_detail(trace_id, spans) if not spans.empty else [html.P(
            f"No span of trace {trace_id} in this time range; try a longer one.",
            className="note")]
    elif not found.empty:
        detail = [html.P("Open a trace to see its spans.", className="note")]
    if found.empty and not trace_id:
        return [], [], False, True
    rows = found.assign(
        time=found["time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        trace=[f"[{t}]({trace_href(view, t)})" for t in found["trace_id"]],
        cost_usd=found["cost_usd"].round(6), duration_ms=found["duration_ms"].round(1))
    return rows.to_dict("records"), detail, True, False


def trace_detail(trace_id: str, spans: pd.DataFrame) -> list:
    """A trace's waterfall figure and, per span, its AI attributes and captured text."""
    return [html.H3(f"Trace {trace_id}: {len(spans)} spans"),
            dcc.Graph(id="traces-waterfall", figure=waterfall(spans)),
            *[_span_details(row) for row in spans.to_dict("records")]]


def waterfall(spans: pd.DataFrame) -> go.Figure:
    """One bar per span from its start to its end (ms from the trace's first span), children
    indented under their parents, in start order."""
    t0 = spans["start_ns"].min()
    depth = span_depths(spans)
    labels = [f"{'  ' * depth[s]}{n} ·{i}" for i, (s, n) in
              enumerate(zip(spans["span_id"], spans["name"]))]
    colors = [_COLORS["Error"] if st == "Error" else _COLORS["ai" if op else "other"]
              for st, op in zip(spans["status"], spans["operation"])]
    figure = go.Figure(go.Bar(
        y=labels, x=spans["duration_ms"], base=(spans["start_ns"] - t0) / 1e6, orientation="h",
        marker_color=colors, customdata=spans[["model", "status"]].to_numpy(),
        hovertemplate="%{y}<br>%{x:.1f} ms from %{base:.1f} ms<br>%{customdata[0]} "
                      "%{customdata[1]}<extra></extra>"))
    style_figure(figure, height=max(160, 28 * len(spans) + 60), xaxis_title="ms from start",
                 showlegend=False)
    figure.update_yaxes(autorange="reversed")
    return figure


def span_depths(spans: pd.DataFrame) -> dict[str, int]:
    """Each span's nesting depth; a span whose parent is not in the trace (or is itself) is a
    root. Cycles, which a broken exporter could send, stop at the first repeat."""
    parent = dict(zip(spans["span_id"], spans["parent_span_id"]))
    depths = {}
    for span in parent:
        d, seen, p = 0, {span}, parent[span]
        while p in parent and p not in seen:
            seen.add(p)
            d += 1
            p = parent[p]
        depths[span] = d
    return depths


def _span_details(row: dict) -> html.Details:
    ai = bool(row["operation"])
    summary = f"{row['name']} · {row['duration_ms']:.1f} ms · {row['status']}"
    body = []
    if ai:
        cells = [html.Tr([html.Td(label), html.Td(_text(row[key]))])
                 for key, label in _AI_FIELDS if _text(row[key])]
        body.append(html.Table(cells))
        for key, label in (("input_messages", "Prompt"), ("output_messages", "Completion")):
            if row[key]:
                body += [html.Strong(label), html.Pre(row[key], className="span-text")]
        if not (row["input_messages"] or row["output_messages"]):
            body.append(html.P("Prompt and completion were not captured "
                               "(INFERSIGHT_CAPTURE_CONTENT=true turns capture on).",
                               className="note"))
    return html.Details([html.Summary(summary), *body], className="span-details",
                        id=f"span-{row['span_id']}")


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value in ("", 0) else str(value)
