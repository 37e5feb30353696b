"""Pieces every page uses: the empty state, the look of a chart, version-change and alert
marks, KPIs."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from dash import html

from infersight_dashboard.filters import View

# What a new user types to see data: `infersight demo`, or these lines in their own service.
INSTRUMENT_LINES = "pip install infersight\nimport infersight\ninfersight.instrument()"

_VERSION_MARK_COLOR = "#7c3aed"


def empty_state(page: str) -> html.Div:
    """Shown instead of a page's charts when its window holds no AI call (hidden otherwise)."""
    return html.Div(id=f"{page}-empty", hidden=True, className="empty", children=[
        html.H3("No AI calls in this time range and filter yet"),
        html.P(["Try a longer time range or clear the filters. To send data, run ",
                html.Code("infersight demo"), " next to ", html.Code("infersight serve"),
                ", or add these three lines to a service that calls a model:"]),
        html.Pre(INSTRUMENT_LINES),
    ])


def style_figure(figure: go.Figure, x_range=None, **layout) -> go.Figure:
    figure.update_layout(**{"margin": {"t": 10, "b": 30, "l": 50, "r": 10},
                            "template": "plotly_white",
                            "legend": {"orientation": "h", "y": -0.2}, **layout})
    if x_range is not None:
        figure.update_xaxes(range=list(x_range))
    return figure


def mark_version_changes(figure: go.Figure, changes: pd.DataFrame,
                         labels: bool = True) -> go.Figure:
    """A dashed vertical line, labelled with the new version unless `labels` is off (a
    sparkline), where each version took over (`queries.version_changes`)."""
    for row in changes.itertuples(index=False):
        at = row.first_seen.to_pydatetime()
        figure.add_shape(type="line", xref="x", yref="paper", x0=at, x1=at, y0=0, y1=1,
                         line={"dash": "dash", "width": 1, "color": _VERSION_MARK_COLOR},
                         name=f"version {row.version}")
        if labels:
            figure.add_annotation(x=at, xref="x", y=1, yref="paper", text=str(row.version),
                                  showarrow=False, xanchor="left", yanchor="top",
                                  font={"size": 10, "color": _VERSION_MARK_COLOR})
    return figure


_ALERT_PERIOD_COLORS = {"ALERT": "#dc2626", "WARNING": "#f59e0b"}


def mark_alert_periods(figure: go.Figure, periods: pd.DataFrame) -> go.Figure:
    """A shaded band, red for ALERT and amber for WARNING, over each period an alert rule was
    in that state (`queries.alert_periods`), behind the data."""
    for row in periods.itertuples(index=False):
        figure.add_vrect(x0=row.start.to_pydatetime(), x1=row.end.to_pydatetime(),
                         fillcolor=_ALERT_PERIOD_COLORS[row.state], opacity=0.12, line_width=0,
                         layer="below", name=f"{row.state} {row.rule} {row.group}".strip())
    return figure


def change_ratio(now: float, before: float) -> float | None:
    """Relative change from the previous period; None where there is nothing to compare."""
    if before is None or now is None or math.isnan(before) or math.isnan(now) or before == 0:
        return None
    return now / before - 1


def trace_href(view: View, trace_id: str) -> str:
    """The Traces page showing one trace, under the same global filters."""
    return "/traces" + view.with_extra(trace=trace_id).to_query()
