"""Statistics across seeds, checked against hand-computed values and independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rlplast.report.stats import curve_ci, iqm_ci, mean_ci, prob_improvement, run_scores


def _numpy_bootstrap(x: np.ndarray, n: int = 20000) -> tuple[float, float]:
    """Percentile bootstrap of the mean by direct resampling (an independent route to the CI)."""
    rng = np.random.default_rng(123)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_mean_ci_matches_direct_resampling():
    x = np.array([3.0, 9.0, 4.0, 12.0, 7.0, 1.0, 8.0, 6.0])
    est = mean_ci(x)
    low, high = _numpy_bootstrap(x)
    assert est.value == pytest.approx(6.25)
    assert est.n == 8
    assert est.low == pytest.approx(low, abs=0.3)
    assert est.high == pytest.approx(high, abs=0.3)


def test_mean_ci_ignores_nan_and_has_no_interval_for_one_run():
    est = mean_ci(np.array([np.nan, 4.0]))
    assert (est.value, est.n) == (4.0, 1)
    assert np.isnan(est.low) and np.isnan(est.high)
    assert mean_ci(np.array([np.nan])).n == 0


def test_constant_runs_have_a_zero_width_interval():
    est = mean_ci(np.full(4, 2.5))
    assert (est.low, est.value, est.high) == (2.5, 2.5, 2.5)


def test_iqm_is_the_mean_of_the_middle_half():
    # Sorted: 1 2 | 3 4 5 6 | 7 1000 -> the outlier does not move the IQM.
    est = iqm_ci(np.array([5.0, 1000.0, 3.0, 1.0, 6.0, 2.0, 7.0, 4.0]))
    assert est.value == pytest.approx(4.5)
    assert est.low <= 4.5 <= est.high


def test_prob_improvement_counts_pairs_with_ties_as_half():
    x = np.array([150.0, 250.0, 350.0, 200.0])
    y = np.array([100.0, 200.0, 300.0])
    wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(x, y))
    est = prob_improvement(x, y)
    assert est.value == pytest.approx(wins / 12)
    assert est.value == pytest.approx((1 + 2 + 3 + 1.5) / 12)  # 150, 250, 350, 200 vs y
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    assert prob_improvement(y, x).value == pytest.approx(1 - 7.5 / 12)
    assert est.n == 3


def test_curve_ci_handles_partial_and_missing_columns():
    curves = np.array(
        [
            [1.0, 2.0, 1.0, np.nan],
            [3.0, 2.0, 3.0, np.nan],
            [5.0, 2.0, np.nan, 4.0],
        ]
    )
    mean, low, high = curve_ci(curves)
    np.testing.assert_allclose(mean, [3.0, 2.0, 2.0, 4.0])
    # Column 0: full; its interval matches direct resampling of the three runs.
    ref_low, ref_high = _numpy_bootstrap(curves[:, 0])
    assert low[0] == pytest.approx(ref_low, abs=0.15) and high[0] == pytest.approx(ref_high, abs=0.15)
    assert (low[1], high[1]) == (2.0, 2.0)  # identical runs
    assert 1.0 <= low[2] < 2.0 < high[2] <= 3.0  # only two runs reached it
    assert np.isnan(low[3]) and np.isnan(high[3])  # one run: no interval


def test_run_scores_final_peak_auc():
    ramp = np.arange(1.0, 11.0)  # 1 .. 10 over ten bins
    curves = np.stack([ramp, np.r_[ramp[:5], [np.nan] * 5], np.full(10, np.nan)])
    sc = run_scores(curves, final_fraction=0.2)
    np.testing.assert_allclose(sc.final, [9.5, np.nan, np.nan])  # mean of the last two bins
    np.testing.assert_allclose(sc.peak, [10.0, 5.0, np.nan])
    np.testing.assert_allclose(sc.auc, [5.5, 3.0, np.nan])
    np.testing.assert_allclose(run_scores(curves[:1]).final, [10.0])  # default: last 10% = 1 bin


def test_run_scores_rejects_bad_fraction():
    with pytest.raises(ValueError, match="final_fraction"):
        run_scores(np.ones((1, 3)), final_fraction=0.0)
