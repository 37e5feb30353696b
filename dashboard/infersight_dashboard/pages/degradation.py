"""Degradation: is a model's version B worse than A, and since when?

Per version of one model over time: confidence and its drift from a reference (the previous
version, or a pinned baseline window) by PSI on reference-decile bins and KS distance; latency
p50/p95/p99; error rate (only where a bucket has enough calls); tokens per call. Then two
versions side by side. Each time chart marks where a version took over.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import dash
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from dash import Input, Output, State, dash_table, dcc, html

from infersight_dashboard import drift, queries
from infersight_dashboard.app import get_store
from infersight_dashboard.components import (
    empty_state, mark_version_changes, style_figure,
)
from infersight_dashboard.filters import View

dash.register_page(__name__, path="/degradation", name="Degradation",
                   title="Degradation · Infersight", order=2)

PREVIOUS_VERSION, BASELINE_WINDOW = "previous", "baseline"
_HIST_STEP = 0.02  # width of the confidence distribution's bars
# Side-by-side rows: (column of `queries.version_summary`, label, format).
COMPARED = (
    ("calls", "Calls", "{:,.0f}"),
    ("error_rate", "Error rate", "{:.2%}"),
    ("p50_ms", "Latency p50 (ms)", "{:,.1f}"),
    ("p95_ms", "Latency p95 (ms)", "{:,.1f}"),
    ("p99_ms", "Latency p99 (ms)", "{:,.1f}"),
    ("tokens_per_call", "Tokens per call", "{:,.1f}"),
    ("cost_per_call", "Cost per call (USD)", "${:,.5f}"),
    ("mean_confidence", "Mean confidence", "{:.3f}"),
)
_DRIFT_COLUMNS = [{"id": c, "name": n} for c, n in [
    ("version", "Version"), ("reference", "Reference"), ("calls", "Calls with confidence"),
    ("psi", "PSI"), ("ks", "KS distance"), ("level", "Drift")]]


def layout(**query):
    def labelled(text, control):
        return html.Label([text, control])

    return html.Div([
        html.Div(className="controls", children=[
            labelled("Model", dcc.Dropdown(id="degradation-model", clearable=False,
                                           style={"width": "16em"})),
            labelled("Drift reference", dcc.RadioItems(
                id="degradation-reference", value=PREVIOUS_VERSION, inline=True,
                options=[{"label": " previous version ", "value": PREVIOUS_VERSION},
                         {"label": " pinned baseline window ", "value": BASELINE_WINDOW}])),
            labelled("Baseline window (UTC days; default: the previous period)",
                     dcc.DatePickerRange(id="degradation-baseline", clearable=True)),
        ]),
        empty_state("degradation"),
        html.Div(id="degradation-content", children=[
            html.H3("Confidence drift per version"),
            dash_table.DataTable(
                id="degradation-drift", columns=_DRIFT_COLUMNS,
                style_cell={"fontFamily": "inherit", "padding": "0.3em 0.75em"},
                style_data_conditional=[
                    {"if": {"filter_query": f'{{level}} = "{lvl}"', "column_id": "level"},
                     "color": color, "fontWeight": "bold"}
                    for lvl, color in (("warn", "#b45309"), ("alert", "#b91c1c"))]),
            html.P(f"PSI on the reference's decile bins: under {drift.PSI_WARN} no real change, "
                   f"{drift.PSI_WARN}-{drift.PSI_ALERT} worth a look (warn), over "
                   f"{drift.PSI_ALERT} a significant shift (alert).", className="note"),
            html.Div(className="grid2", children=[
                html.Div([html.H3("Confidence distribution"),
                          dcc.Graph(id="degradation-confidence")]),
                html.Div([html.H3("Mean confidence over time"),
                          dcc.Graph(id="degradation-confidence-time")]),
                html.Div([html.H3("Latency p50 / p95 / p99"),
                          dcc.Graph(id="degradation-latency")]),
                html.Div([html.H3(f"Error rate (buckets of {queries.MIN_CALLS_FOR_RATE}+ calls)"),
                          dcc.Graph(id="degradation-errors")]),
                html.Div([html.H3("Tokens per call"), dcc.Graph(id="degradation-tokens")]),
            ]),
            html.H3("Side by side"),
            html.Div(className="controls", children=[
                labelled("Version A", dcc.Dropdown(id="degradation-a", style={"width": "18em"})),
                labelled("Version B", dcc.Dropdown(id="degradation-b", style={"width": "18em"})),
            ]),
            html.Div(className="grid2", children=[
                dash_table.DataTable(id="degradation-compare",
                                     style_cell={"fontFamily": "inherit",
                                                 "padding": "0.3em 0.75em"}),
                dcc.Graph(id="degradation-compare-confidence"),
            ]),
        ]),
    ])


@dash.callback(
    Output("degradation-model", "options"),
    Output("degradation-model", "value"),
    Input("url", "search"),
    State("degradation-model", "value"),
)
def choose_model(search, current):
    """The models in the window; the global model filter, else the one kept, else the model
    with the most versions (then calls) is shown first."""
    view = View.from_query(search)
    start, end = view.window()
    versions = queries.version_first_seen(get_store(), start, end,
                                          replace(view.filters, model="", version=""))
    ranked = (versions.groupby("model").agg(versions=("version", "size"), calls=("calls", "sum"))
              .sort_values(["versions", "calls"], ascending=False))
    models = list(ranked.index)
    for wanted in (view.filters.model, current):
        if wanted in models:
            return models, wanted
    return models, models[0] if models else None


@dash.callback(
    Output("degradation-drift", "data"),
    Output("degradation-confidence", "figure"),
    Output("degradation-confidence-time", "figure"),
    Output("degradation-latency", "figure"),
    Output("degradation-errors", "figure"),
    Output("degradation-tokens", "figure"),
    Output("degradation-a", "options"),
    Output("degradation-a", "value"),
    Output("degradation-b", "options"),
    Output("degradation-b", "value"),
    Output("degradation-empty", "hidden"),
    Output("degradation-content", "hidden"),
    Input("url", "search"),
    Input("refresh-timer", "n_intervals"),
    Input("degradation-model", "value"),
    Input("degradation-reference", "value"),
    Input("degradation-baseline", "start_date"),
    Input("degradation-baseline", "end_date"),
)
def update(search, _n_intervals, model, reference, baseline_start, baseline_end):
    """Drift table, the five figures, the A/B choices, and empty state / content visibility."""
    store, view = get_store(), View.from_query(search)
    start, end = view.window()
    if not model:
        return ([], *[go.Figure()] * 5, [], None, [], None, False, True)
    filters = replace(view.filters, model=model, version="")
    summary = queries.version_summary(store, start, end, filters)
    series = queries.version_timeseries(store, start, end,
                                        queries.choose_bucket_seconds(start, end), filters)
    hist = queries.confidence_histogram(store, start, end, filters)
    changes = queries.version_changes(store, start, end, filters)
    baseline = None
    if reference == BASELINE_WINDOW:
        b_start, b_end = baseline_window(baseline_start, baseline_end, start, end)
        baseline = queries.confidence_histogram(store, b_start, b_end, filters)
    versions = list(summary["version"])
    rows = drift_rows(hist, versions, baseline)

    def timeline(frame, y, title, **kw):
        figure = px.line(frame, x="bucket", y=y, color="version", markers=True,
                         labels={"bucket": "", y: title, "version": "Version"}, **kw)
        style_figure(figure, (start, end), height=300, legend_title_text="")
        return mark_version_changes(figure, changes)

    latency = series.melt(id_vars=["bucket", "version"], value_vars=["p50_ms", "p95_ms", "p99_ms"],
                          var_name="quantile", value_name="ms")
    latency["quantile"] = latency["quantile"].str.removesuffix("_ms")
    options = [{"label": v, "value": v} for v in versions]
    # Default comparison: the newest version against the one before it ("(none)" is no version).
    known = [v for v in versions if v != queries.NO_VALUE] or versions
    b = view.filters.version if view.filters.version in versions else known[-1]
    a = next((v for v in reversed(known) if v != b), b)
    return (
        rows,
        confidence_figure(hist),
        timeline(series, "mean_confidence", "Mean confidence"),
        timeline(latency, "ms", "Latency (ms)", line_dash="quantile"),
        timeline(series, "error_rate", "Error rate").update_yaxes(tickformat=".0%"),
        timeline(series, "tokens_per_call", "Tokens per call"),
        options, a, options, b, True, False,
    )


@dash.callback(
    Output("degradation-compare", "columns"),
    Output("degradation-compare", "data"),
    Output("degradation-compare-confidence", "figure"),
    Input("url", "search"),
    Input("degradation-model", "value"),
    Input("degradation-a", "value"),
    Input("degradation-b", "value"),
)
def compare(search, model, version_a, version_b):
    """Version A and version B of one model side by side, with B's drift from A."""
    if not (model and version_a and version_b):
        return [], [], go.Figure()
    view = View.from_query(search)
    start, end = view.window()
    filters = replace(view.filters, model=model, version="")
    store = get_store()
    summary = queries.version_summary(store, start, end, filters).set_index("version")
    hist = queries.confidence_histogram(store, start, end, filters)
    hist = hist[hist["version"].isin([version_a, version_b])]
    rows = comparison_rows(summary, version_a, version_b, hist)
    columns = [{"id": "metric", "name": ""}, {"id": "a", "name": f"A: {version_a}"},
               {"id": "b", "name": f"B: {version_b}"}, {"id": "change", "name": "B vs A"}]
    return columns, rows, confidence_figure(hist)


def baseline_window(start_date: str | None, end_date: str | None, start: datetime,
                    end: datetime) -> tuple[datetime, datetime]:
    """The pinned baseline (whole UTC days from the date picker, end day included), or the
    period just before `[start, end)` when no dates are pinned."""
    if start_date and end_date:
        first = datetime.fromisoformat(start_date[:10]).replace(tzinfo=timezone.utc)
        last = datetime.fromisoformat(end_date[:10]).replace(tzinfo=timezone.utc)
        return first, last + timedelta(days=1)
    return start - (end - start), start


def drift_rows(hist: pd.DataFrame, versions: list[str],
               baseline: pd.DataFrame | None = None) -> list[dict]:
    """PSI and KS distance of each version's confidence against its reference: the nearest
    older version in `versions` (oldest first) that reported confidence, or the pooled
    `baseline` histogram when given.
    A version without a reference, or without confidence values, gets no numbers."""
    samples = {v: (g["confidence"].to_numpy(), g["calls"].to_numpy())
               for v, g in hist.groupby("version")}
    rows = []
    for i, version in enumerate(versions):
        if baseline is not None:
            ref_name = "baseline window"
            ref = (baseline["confidence"].to_numpy(), baseline["calls"].to_numpy())
        else:
            ref_name = next((v for v in reversed(versions[:i]) if v in samples), "—")
            ref = samples.get(ref_name)
        cur = samples.get(version)
        row = {"version": version, "reference": ref_name,
               "calls": int(cur[1].sum()) if cur else 0, "psi": "—", "ks": "—", "level": "—"}
        if cur and ref is not None and len(ref[0]) and ref[1].sum() > 0:
            psi = drift.psi(ref[0], cur[0], ref[1], cur[1])
            ks = drift.ks_distance(ref[0], cur[0], ref[1], cur[1])
            row.update(psi=round(psi, 4), ks=round(ks, 4), level=drift.level(psi))
        rows.append(row)
    return rows


def comparison_rows(summary: pd.DataFrame, a: str, b: str, hist: pd.DataFrame) -> list[dict]:
    """One row per compared metric (values formatted), plus B's confidence drift from A."""
    rows = []
    for key, label, fmt in COMPARED:
        va, vb = (summary[key].get(v, np.nan) for v in (a, b))
        change = "—" if not (va and np.isfinite(va) and np.isfinite(vb)) else f"{vb / va - 1:+.1%}"
        rows.append({"metric": label, "a": _fmt(fmt, va), "b": _fmt(fmt, vb), "change": change})
    b_from_a = drift_rows(hist, [a, b])[-1] if a != b else None
    if b_from_a and b_from_a["level"] != "—":
        rows.append({"metric": "Confidence drift B vs A (PSI / KS)", "a": "",
                     "b": f"{b_from_a['psi']} / {b_from_a['ks']}", "change": b_from_a["level"]})
    return rows


def confidence_figure(hist: pd.DataFrame) -> go.Figure:
    """Each version's confidence as shares of its calls in bins of 0.02."""
    figure = go.Figure()
    for version, g in hist.groupby("version", sort=False):
        bins = (np.floor(g["confidence"] / _HIST_STEP + 1e-9) * _HIST_STEP).round(2)
        share = g.groupby(bins)["calls"].sum() / g["calls"].sum()
        figure.add_bar(x=share.index, y=share.values, name=str(version), opacity=0.6,
                       width=_HIST_STEP)
    return style_figure(figure, height=300, barmode="overlay", xaxis_title="Confidence",
                        yaxis_title="Share of calls", yaxis_tickformat=".0%",
                        xaxis_range=[0, 1 + _HIST_STEP])


def _fmt(fmt: str, value) -> str:
    return "—" if value is None or not np.isfinite(value) else fmt.format(value)
