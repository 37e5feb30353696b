"""How far a distribution (a model version's confidence) has moved from a reference one.

PSI on fixed bins: the reference's deciles cut the line into (at most) ten bins, and
    PSI = sum over bins of (cur% - ref%) * ln(cur% / ref%)
with empty bins floored at `EPSILON` so the logarithm stays finite. Read it as: below 0.1 no
real change, 0.1 to 0.2 a moderate shift worth a look, above 0.2 a significant shift.
KS distance: the largest gap between the two empirical CDFs (0 = identical, 1 = disjoint).

Samples come as values with optional weights (counts), so a histogram from SQL (the
dashboard's `queries.confidence_histogram`) or evenly spaced quantiles read from the rollup's
confidence state (the collector's drift alert rule) are as good an input as raw values. Lives
in the collector so both the dashboard and the alert evaluator use this one copy.
"""

from __future__ import annotations

import numpy as np

PSI_WARN = 0.1
PSI_ALERT = 0.2
EPSILON = 1e-4
_DECILES = np.arange(1, 10) / 10


def decile_edges(values, weights=None) -> np.ndarray:
    """The distinct inner bin edges at the reference's deciles (fewer than 9 when values tie)."""
    v, w = _sample(values, weights)
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order])
    # The q-quantile is the smallest value whose cumulative weight reaches q of the total.
    idx = np.searchsorted(cum, _DECILES * cum[-1], side="left")
    edges = np.unique(v[np.minimum(idx, len(v) - 1)])
    return edges[edges < v[-1]]  # an edge at the maximum would leave its bin empty


def bin_shares(values, edges: np.ndarray, weights=None) -> np.ndarray:
    """Share of the weight in each bin (-inf, e1], (e1, e2], ..., (ek, inf)."""
    v, w = _sample(values, weights)
    counts = np.bincount(np.searchsorted(edges, v, side="left"), weights=w,
                         minlength=len(edges) + 1)
    return counts / counts.sum()


def psi(reference, current, reference_weights=None, current_weights=None) -> float:
    """Population stability index of `current` against `reference` on reference-decile bins."""
    edges = decile_edges(reference, reference_weights)
    ref = np.maximum(bin_shares(reference, edges, reference_weights), EPSILON)
    cur = np.maximum(bin_shares(current, edges, current_weights), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_distance(reference, current, reference_weights=None, current_weights=None) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |F_ref(x) - F_cur(x)|."""
    a, wa = _sample(reference, reference_weights)
    b, wb = _sample(current, current_weights)
    grid = np.union1d(a, b)
    return float(np.max(np.abs(_cdf(a, wa, grid) - _cdf(b, wb, grid))))


def level(psi_value: float) -> str:
    """'ok', 'warn' (PSI >= 0.1) or 'alert' (PSI >= 0.2)."""
    if psi_value >= PSI_ALERT:
        return "alert"
    return "warn" if psi_value >= PSI_WARN else "ok"


def _cdf(values: np.ndarray, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(weights[order])])
    return cum[np.searchsorted(values[order], grid, side="right")] / cum[-1]


def _sample(values, weights) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    if v.size == 0 or w.sum() <= 0:
        raise ValueError("drift needs a non-empty sample on each side")
    if v.shape != w.shape:
        raise ValueError(f"{v.size} values but {w.size} weights")
    return v, w
