"""PSI and KS distance on distributions whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infersight_collector import drift

# 0.000, 0.001, ..., 0.999: each reference decile bin holds exactly 100 values.
REFERENCE = np.arange(1000) / 1000


def _bin_values(i: int) -> np.ndarray:
    return REFERENCE[i * 100:(i + 1) * 100]


def test_reference_deciles_cut_ten_equal_bins():
    edges = drift.decile_edges(REFERENCE)
    assert edges == pytest.approx([0.099, 0.199, 0.299, 0.399, 0.499, 0.599, 0.699, 0.799,
                                   0.899])
    assert drift.bin_shares(REFERENCE, edges) == pytest.approx([0.1] * 10)


def test_psi_of_a_shift_towards_the_low_bins():
    # 15% in each of the five low bins, 5% in each high one:
    # PSI = 5 * 0.05 * ln(1.5) + 5 * (-0.05) * ln(0.5) = 0.25 * ln 3.
    current = np.concatenate([np.resize(_bin_values(i), 150 if i < 5 else 50)
                              for i in range(10)])

    assert drift.psi(REFERENCE, current) == pytest.approx(0.25 * math.log(3))
    assert drift.level(drift.psi(REFERENCE, current)) == "alert"


def test_psi_of_the_same_distribution_is_zero_and_weights_mean_counts():
    values, counts = np.unique(np.round(REFERENCE * 4) / 4, return_counts=True)
    raw = np.repeat(values, counts)

    assert drift.psi(REFERENCE, REFERENCE) == pytest.approx(0.0)
    assert drift.psi(raw, raw[::-1]) == pytest.approx(0.0)
    assert drift.psi(values, REFERENCE, reference_weights=counts) == pytest.approx(
        drift.psi(raw, REFERENCE))


def test_empty_current_bins_are_floored_not_infinite():
    # Reference: half 0.2, half 0.8 -> bins (-inf, 0.2] and (0.2, inf), half each.
    reference = [0.2] * 50 + [0.8] * 50
    value = drift.psi(reference, [0.8] * 10)

    expected = (drift.EPSILON - 0.5) * math.log(drift.EPSILON / 0.5) + 0.5 * math.log(2)
    assert drift.decile_edges(reference) == pytest.approx([0.2])
    assert value == pytest.approx(expected)


def test_ks_distance_of_known_shifts():
    assert drift.ks_distance([0, 1, 2, 3], [2, 3, 4, 5]) == pytest.approx(0.5)
    assert drift.ks_distance(np.arange(1000), np.arange(300, 1300)) == pytest.approx(0.3)
    assert drift.ks_distance([0.1, 0.2], [0.7, 0.9]) == pytest.approx(1.0)
    assert drift.ks_distance(REFERENCE, REFERENCE[::-1]) == pytest.approx(0.0)
    assert drift.ks_distance([0.0, 1.0], [0.0, 1.0], [3, 1], [1, 1]) == pytest.approx(0.25)


@pytest.mark.parametrize("value, expected", [
    (0.0, "ok"), (0.0999, "ok"), (0.1, "warn"), (0.1999, "warn"), (0.2, "alert"), (3.0, "alert")])
def test_levels_at_the_warn_and_alert_thresholds(value, expected):
    assert drift.level(value) == expected


def test_an_empty_side_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="non-empty"):
        drift.psi([], [0.5])
