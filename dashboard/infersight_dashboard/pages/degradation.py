"""Degradation: is a model's version B worse than A, and since when?

Per version of one model over time: confidence and its drift from a reference (the previous
version, or a pinned baseline window) by PSI on reference-decile bins and KS distance; latency
p50/p95/p99; error rate (only where a bucket has enough calls); tokens per call; user feedback
(mean score, share negative) where there is any. Then two versions side by side. Each time
chart marks where a version took over.

The page's controls live in the URL with the global filters, so a view can be linked:
`dmodel` (the model), `ref=baseline` with `base_from` / `base_to` (UTC days), and `a` / `b`
(the compared versions). A control left unset, or naming a model or version the window does not
hold, means the automatic choice, which its placeholder shows; automatic choices are never
written to the URL, so the Back button never lands on a page that rewrites its own URL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

import dash
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from dash import Input, Output, State, dash_table, dcc, html, no_update

from infersight_collector import drift
from infersight_dashboard import queries
from infersight_dashboard.app import get_store
from infersight_dashboard.components import (
    empty_state, mark_alert_periods, mark_version_changes, style_figure,
)
from infersight_dashboard.filters import View

dash.register_page(__name__, path="/degradation", name="Degradation",
                   title="Degradation · Infersight", order=2)

PREVIOUS_VERSION, BASELINE_WINDOW = "previous", "baseline"
# The page's parameters in the URL's query string, in the order of its controls.
URL_KEYS = ("dmodel", "ref", "base_from", "base_to", "a", "b")
_HIST_STEP = 0.02  # width of the confidence distribution's bars
# Side-by-side rows: (column of `queries.version_stats`'s summary, label, format).
COMPARED = (
    ("calls", "Calls", "{:,.0f}"),
    ("error_rate", "Error rate", "{:.2%}"),
    ("p50_ms", "Latency p50 (ms)", "{:,.1f}"),
    ("p95_ms", "Latency p95 (ms)", "{:,.1f}"),
    ("p99_ms", "Latency p99 (ms)", "{:,.1f}"),
    ("tokens_per_call", "Tokens per call", "{:,.1f}"),
    ("cost_per_call", "Cost per call (USD)", "${:,.5f}"),
    ("mean_confidence", "Mean confidence", "{:.3f}"),
    ("mean_score", "Mean feedback score", "{:.3f}"),
    ("negative_share", "Negative feedback", "{:.1%}"),
)
_DRIFT_COLUMNS = [{"id": c, "name": n} for c, n in [
    ("version", "Version"), ("reference", "Reference"), ("calls", "Calls with confidence"),
    ("psi", "PSI"), ("ks", "KS distance"), ("level", "Drift")]]


def layout(**query):
    def labelled(text, control):
        return html.Label([text, control])

    model, reference, base_from, base_to, _a, _b = url_controls(View.from_params(query))
    return html.Div([
        html.Div(className="controls", children=[
            labelled("Model", dcc.Dropdown(id="degradation-model", value=model,
                                           style={"width": "20em"})),
            labelled("Drift reference", dcc.RadioItems(
                id="degradation-reference", value=reference, inline=True,
                options=[{"label": " previous version ", "value": PREVIOUS_VERSION},
                         {"label": " pinned baseline window ", "value": BASELINE_WINDOW}])),
            labelled("Baseline window (UTC days; default: the previous period)",
                     dcc.DatePickerRange(id="degradation-baseline", clearable=True,
                                         start_date=base_from, end_date=base_to)),
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
            html.H3("User feedback per version"),
            html.P(f"Negative: a score below {queries.NEGATIVE_SCORE_BELOW} (scores run from 0, "
                   f"thumbs down, to 1, thumbs up) or a label among "
                   f"{', '.join(queries.NEGATIVE_LABELS)}. A verdict about a whole trace counts "
                   f"for each version in it; points are placed at the time of the call.",
                   className="note"),
            html.P(id="degradation-feedback-none", className="note", hidden=True, children=[
                "No feedback on this model's calls in this time range. Record a verdict with ",
                html.Code("infersight.feedback(score=0, label=\"hallucination\")"),
                " in the service, or POST it to the collector's /v1/feedback."]),
            html.Div(id="degradation-feedback-charts", className="grid2", children=[
                html.Div([html.H3("Mean feedback score"),
                          dcc.Graph(id="degradation-feedback-score")]),
                html.Div([html.H3(f"Share of negative feedback (buckets of "
                                  f"{queries.MIN_FEEDBACK_FOR_SHARE}+ verdicts)"),
                          dcc.Graph(id="degradation-feedback-negative")]),
            ]),
            html.H3("Side by side"),
            html.Div(className="controls", children=[
                labelled("Version A", dcc.Dropdown(id="degradation-a", style={"width": "24em"})),
                labelled("Version B", dcc.Dropdown(id="degradation-b", style={"width": "24em"})),
            ]),
            html.Div(className="table-and-chart", children=[
                dash_table.DataTable(id="degradation-compare",
                                     style_cell={"fontFamily": "inherit",
                                                 "padding": "0.3em 0.75em"}),
                dcc.Graph(id="degradation-compare-confidence"),
            ]),
        ]),
    ])


class Loaded(NamedTuple):
    """What the page reads for one view, each query once: the models in the window (most
    versions first), the one shown, and that model's versions, series, histograms, version
    changes, feedback and alert periods. (Not a dataclass: Dash runs page modules without
    registering them in sys.modules, which dataclasses need.)"""

    window: tuple[datetime, datetime]
    models: list[str]
    model: str | None = None
    summary: pd.DataFrame | None = None
    series: pd.DataFrame | None = None
    hist: pd.DataFrame | None = None
    baseline: pd.DataFrame | None = None
    changes: pd.DataFrame | None = None
    feedback_summary: pd.DataFrame | None = None
    feedback_series: pd.DataFrame | None = None
    alerts: pd.DataFrame | None = None


def load(view: View) -> Loaded:
    """Every query the page needs for `view`, each run once."""
    store = get_store()
    start, end = view.window()
    # Every model's versions in one read: it ranks the models, and the chosen one's rows are
    # its side-by-side summary and charts.
    bucket = queries.choose_bucket_seconds(start, end)
    versions, series = queries.version_stats(store, start, end, bucket,
                                             replace(view.filters, version=""))
    ranked = (versions.groupby("model").agg(versions=("version", "size"), calls=("calls", "sum"))
              .sort_values(["versions", "calls"], ascending=False))
    models = list(ranked.index)
    wanted, reference, baseline_start, baseline_end = url_controls(view)[:4]
    model = wanted if wanted in models else (models[0] if models else None)
    if model is None:
        return Loaded((start, end), models)
    filters = replace(view.filters, model=model, version="")
    baseline = None
    if reference == BASELINE_WINDOW:
        b_start, b_end = baseline_window(baseline_start, baseline_end, start, end)
        baseline = queries.confidence_histogram(store, b_start, b_end, filters)
    feedback_summary, feedback_series = queries.feedback_stats(store, start, end, bucket, filters)
    return Loaded(
        (start, end), models, model,
        summary=versions[versions["model"] == model].reset_index(drop=True),
        series=series[series["model"] == model].reset_index(drop=True),
        hist=queries.confidence_histogram(store, start, end, filters),
        baseline=baseline,
        changes=queries.version_changes(store, start, end, filters),
        feedback_summary=feedback_summary, feedback_series=feedback_series,
        alerts=queries.alert_periods(store, start, end, exclude_kinds=queries.COST_ALERT_KINDS))


# The page's outputs, in the order `update` returns them: the controls, the drift table and
# charts, the side-by-side comparison, the feedback charts.
CONTROL_OUTPUTS = (("degradation-model", "options"), ("degradation-model", "value"),
                   ("degradation-model", "placeholder"), ("degradation-reference", "value"),
                   ("degradation-baseline", "start_date"), ("degradation-baseline", "end_date"))
MAIN_OUTPUTS = (
    ("degradation-drift", "data"), ("degradation-confidence", "figure"),
    ("degradation-confidence-time", "figure"), ("degradation-latency", "figure"),
    ("degradation-errors", "figure"), ("degradation-tokens", "figure"),
    ("degradation-a", "options"), ("degradation-a", "value"), ("degradation-b", "options"),
    ("degradation-b", "value"), ("degradation-a", "placeholder"),
    ("degradation-b", "placeholder"), ("degradation-empty", "hidden"),
    ("degradation-content", "hidden"))
COMPARE_OUTPUTS = (("degradation-compare", "columns"), ("degradation-compare", "data"),
                   ("degradation-compare-confidence", "figure"))
FEEDBACK_OUTPUTS = (("degradation-feedback-score", "figure"),
                    ("degradation-feedback-negative", "figure"),
                    ("degradation-feedback-none", "hidden"),
                    ("degradation-feedback-charts", "hidden"))


@dash.callback(
    *[Output(i, p) for i, p in CONTROL_OUTPUTS + MAIN_OUTPUTS + COMPARE_OUTPUTS
      + FEEDBACK_OUTPUTS],
    Input("url", "search"),
    Input("refresh-timer", "n_intervals"),
)
def update(search, _n_intervals):
    """The whole page for the URL (see the module docstring): one read of the store (`load`),
    then the controls, drift table and charts, comparison and feedback charts from it."""
    view = View.from_query(search)
    data = load(view)
    return (*controls(view, data), *main(view, data), *compare(view, data),
            *feedback(view, data))


def controls(view: View, data: Loaded) -> tuple:
    """The controls as the URL says (Back and Forward, a linked view): the models in the window
    (only the global model filter's, when set), most versions (then calls) first; the model
    chosen, or None with the automatic choice as placeholder; reference; baseline dates."""
    model, reference, base_from, base_to, _a, _b = url_controls(view)
    placeholder = f"{data.models[0]} (most versions)" if data.models else "No model in this range"
    return (data.models, model if model in data.models else None, placeholder, reference,
            base_from, base_to)


@dash.callback(
    Output("url", "search", allow_duplicate=True),
    Input("degradation-model", "value"),
    Input("degradation-reference", "value"),
    Input("degradation-baseline", "start_date"),
    Input("degradation-baseline", "end_date"),
    Input("degradation-a", "value"),
    Input("degradation-b", "value"),
    State("url", "search"),
    State("degradation-model", "options"),
    State("degradation-a", "options"),
    prevent_initial_call=True,
)
def remember(model, reference, base_from, base_to, a, b, search, models, versions):
    """Put what the controls say in the URL (see the module docstring)."""
    return controls_query(search, [model, reference, base_from, base_to, a, b],
                          models or [], [o["value"] for o in versions or []])


def url_controls(view: View) -> tuple:
    """(model, reference, baseline from, baseline to, a, b) as the URL says; None where unset
    or unreadable. Whether a model or version exists is for the caller to check."""
    model, ref, base_from, base_to, a, b = (view.get(k) or None for k in URL_KEYS)
    return (model, BASELINE_WINDOW if ref == BASELINE_WINDOW else PREVIOUS_VERSION,
            _day(base_from), _day(base_to), a, b)


def controls_query(search: str | None, values: list, models: list[str],
                   versions: list[str]):
    """The URL's query string with the controls' `values` (in `URL_KEYS` order), or
    `no_update` when they mean what the URL already says. A URL value the controls could not
    take (a model or version not in the window) reads as unset, so a dropdown clearing it does
    not rewrite the URL; choosing another model forgets the compared versions."""
    view = View.from_query(search)
    model, ref, base_from, base_to, a, b = url_controls(view)
    now = [model if model in models else None, ref, base_from, base_to,
           a if a in versions else None, b if b in versions else None]
    wanted = [values[0] or None, values[1] or PREVIOUS_VERSION, _day(values[2]),
              _day(values[3]), values[4] or None, values[5] or None]
    if wanted == now:
        return no_update
    if wanted[0] != now[0]:
        wanted[4] = wanted[5] = None
    wanted[1] = "" if wanted[1] == PREVIOUS_VERSION else wanted[1]
    return view.with_extra(**{k: v or "" for k, v in zip(URL_KEYS, wanted)}).to_query()


def _day(value: str | None) -> str | None:
    """A date picker's or the URL's day as YYYY-MM-DD; None if it is not one."""
    try:
        return date.fromisoformat((value or "")[:10]).isoformat()
    except ValueError:
        return None


def main(view: View, data: Loaded) -> tuple:
    """Drift table, the five figures, the A/B choices (the URL's, else None with the automatic
    pair as placeholders), and empty state / content visibility."""
    if not data.model:
        return ([], *[go.Figure()] * 5, [], None, [], None, "", "", False, True)
    url_a, url_b = url_controls(view)[4:]
    versions = list(data.summary["version"])
    rows = drift_rows(data.hist, versions, data.baseline)
    window = data.window

    def timeline(frame, y, title, **kw):
        return version_timeline(frame, y, title, window, data.changes, data.alerts, **kw)

    series = data.series
    latency = series.melt(id_vars=["bucket", "version"], value_vars=["p50_ms", "p95_ms", "p99_ms"],
                          var_name="quantile", value_name="ms")
    latency["quantile"] = latency["quantile"].str.removesuffix("_ms")
    options = [{"label": v, "value": v} for v in versions]
    auto_a, auto_b = default_pair(versions, view.filters.version)
    return (
        rows,
        confidence_figure(data.hist),
        timeline(series, "mean_confidence", "Mean confidence"),
        timeline(latency, "ms", "Latency (ms)", line_dash="quantile"),
        timeline(series, "error_rate", "Error rate").update_yaxes(tickformat=".0%",
                                                                  rangemode="nonnegative"),
        timeline(series, "tokens_per_call", "Tokens per call"),
        options, url_a if url_a in versions else None,
        options, url_b if url_b in versions else None,
        f"{auto_a} (auto)", f"{auto_b} (newest)", True, False,
    )


def compare(view: View, data: Loaded) -> tuple:
    """Version A and version B of the shown model side by side (the URL's, else the newest
    against the one before), with B's drift from A and feedback where there is any."""
    if not data.model:
        return [], [], go.Figure()
    summary = data.summary.set_index("version")
    versions = list(summary.index)
    version_a, version_b = default_pair(versions, view.filters.version)
    url_a, url_b = url_controls(view)[4:]
    version_a = url_a if url_a in versions else version_a
    version_b = url_b if url_b in versions else version_b
    summary = summary.join(data.feedback_summary.set_index("version")[
        ["mean_score", "negative_share"]])
    hist = data.hist[data.hist["version"].isin([version_a, version_b])]
    rows = comparison_rows(summary, version_a, version_b, hist)
    columns = [{"id": "metric", "name": ""}, {"id": "a", "name": f"A: {version_a}"},
               {"id": "b", "name": f"B: {version_b}"}, {"id": "change", "name": "B vs A"}]
    return columns, rows, confidence_figure(hist)


def feedback(view: View, data: Loaded) -> tuple:
    """Mean feedback score and share of negative feedback per version over time; a note
    instead of the charts when the shown model has no feedback in the window."""
    series = data.feedback_series
    if not data.model or series.empty:
        return go.Figure(), go.Figure(), False, True
    window = data.window
    score = version_timeline(series, "mean_score", "Mean score", window, data.changes,
                             data.alerts, hover_data=["scored"])
    negative = version_timeline(series, "negative_share", "Negative share", window,
                                data.changes, data.alerts, hover_data=["feedback", "negative"])
    return (score, negative.update_yaxes(tickformat=".0%", rangemode="nonnegative"), True,
            False)


def version_timeline(frame: pd.DataFrame, y: str, title: str, x_range, changes: pd.DataFrame,
                     alerts: pd.DataFrame, **kw) -> go.Figure:
    """One line per version of `y` over the buckets, version changes and alert periods
    marked."""
    figure = px.line(frame, x="bucket", y=y, color="version", markers=True,
                     labels={"bucket": "", y: title, "version": "Version"}, **kw)
    style_figure(figure, x_range, height=300, legend_title_text="")
    mark_alert_periods(figure, alerts)
    return mark_version_changes(figure, changes)


def default_pair(versions: list[str], preferred_b: str = "") -> tuple[str | None, str | None]:
    """The automatic comparison in `versions` (oldest first): the newest version (or the global
    version filter's) against the one before it; "(none)" is no version."""
    if not versions:
        return None, None
    known = [v for v in versions if v != queries.NO_VALUE] or versions
    b = preferred_b if preferred_b in versions else known[-1]
    return next((v for v in reversed(known) if v != b), b), b


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
    """One row per compared metric either version has (values formatted), plus B's confidence
    drift from A."""
    rows = []
    for key, label, fmt in COMPARED:
        va, vb = (summary[key].get(v, np.nan) for v in (a, b))
        if not (np.isfinite(va) or np.isfinite(vb)):
            continue  # neither version has it (no confidence reported, no feedback)
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
