"""Statistics across seeds: bootstrap confidence intervals, IQM, probability of improvement.

All intervals are 95% percentile-bootstrap intervals from ``scipy.stats.bootstrap`` with a fixed
generator, so a report redrawn from the same files gives the same numbers. The aggregate
statistics follow rliable (Agarwal et al., 2021): the interquartile mean (``trim_mean`` with 25%
cut from each end) and the probability of improvement P(X > Y) + P(X = Y) / 2, which is the
Mann-Whitney U statistic divided by the number of pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval over ``n`` runs (``low``/``high`` are NaN
    when there are too few runs for an interval)."""

    value: float
    low: float
    high: float
    n: int


def _interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray]) -> tuple[float, float]:
    """Percentile-bootstrap interval of a vectorized ``statistic(*samples, axis=-1)``; NaN when a
    sample has fewer than two values (a single run has no spread to resample)."""
    if min(len(s) for s in samples) < 2:
        return float("nan"), float("nan")
    if all(np.ptp(s) == 0 for s in samples):
        # No spread at all: every resample gives the point estimate.
        value = float(statistic(*samples, axis=-1))
        return value, value
    res = stats.bootstrap(
        samples,
        statistic,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    return x[np.isfinite(x)]


def mean_ci(x: np.ndarray) -> Estimate:
    """Mean of the finite values of ``x`` (one per run) with its bootstrap interval."""
    x = _finite(x)
    if len(x) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    low, high = _interval((x,), np.mean)
    return Estimate(float(np.mean(x)), low, high, len(x))


def _iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(x, 0.25, axis=axis)


def iqm_ci(x: np.ndarray) -> Estimate:
    """Interquartile mean (mean of the middle 50%) of the finite values of ``x``, with interval."""
    x = _finite(x)
    if len(x) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    low, high = _interval((x,), _iqm)
    return Estimate(float(_iqm(x)), low, high, len(x))


def _prob_improvement(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    u = stats.mannwhitneyu(x, y, alternative="two-sided", axis=axis).statistic
    return u / (x.shape[axis] * y.shape[axis])


def prob_improvement(x: np.ndarray, y: np.ndarray) -> Estimate:
    """P(X > Y) + P(X = Y) / 2 for a run X of one method and a run Y of another, from their
    finite per-run scores, with a bootstrap interval resampling each method's runs independently.

    ``n`` is the smaller of the two run counts.
    """
    x, y = _finite(x), _finite(y)
    if len(x) == 0 or len(y) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    low, high = _interval((x, y), _prob_improvement)
    return Estimate(float(_prob_improvement(x, y)), low, high, min(len(x), len(y)))


def curve_ci(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean across runs and its bootstrap interval at every grid point.

    Args:
        curves: ``[n_runs, n_bins]``, NaN where a run has no value (not started, not logged).

    Returns:
        ``(mean, low, high)``, each ``[n_bins]``; NaN where no run has a value, and ``low`` and
        ``high`` NaN where fewer than two runs have one.
    """
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    n_bins = curves.shape[1]
    valid = np.isfinite(curves)
    counts = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.nansum(curves, axis=0) / counts, np.nan)
    low, high = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    full = np.flatnonzero(counts == curves.shape[0])
    if curves.shape[0] >= 2 and len(full):
        # Columns every run has: one vectorized bootstrap resampling whole runs.
        block = curves[:, full]
        spread = np.ptp(block, axis=0) > 0
        low[full], high[full] = mean[full], mean[full]
        cols = full[spread]
        if len(cols):
            res = stats.bootstrap(
                (curves[:, cols],),
                np.mean,
                axis=0,
                n_resamples=N_RESAMPLES,
                confidence_level=CONFIDENCE,
                method="percentile",
                vectorized=True,
                rng=np.random.default_rng(BOOTSTRAP_SEED),
            )
            low[cols], high[cols] = res.confidence_interval.low, res.confidence_interval.high
    for col in np.flatnonzero((counts >= 2) & (counts < curves.shape[0])):
        # Columns only some runs reach (a run still going): bootstrap those runs alone.
        low[col], high[col] = _interval((curves[valid[:, col], col],), np.mean)
    return mean, low, high


@dataclass(frozen=True)
class RunScores:
    """Per-run summaries of a binned return curve, each ``[n_runs]``.

    Attributes:
        final: mean over the last ``final_fraction`` of the step grid.
        peak: the highest bin (bins average many episodes, so one lucky episode is not a peak).
        auc: area under the curve divided by the steps it covers, i.e. the mean return over
            training, so runs of different lengths stay comparable.
    """

    final: np.ndarray
    peak: np.ndarray
    auc: np.ndarray


def run_scores(curves: np.ndarray, final_fraction: float = 0.1) -> RunScores:
    """Final, peak and area-under-curve scores of each run's binned curve ``[n_runs, n_bins]``.

    Raises:
        ValueError: if ``final_fraction`` is not in (0, 1].
    """
    if not 0 < final_fraction <= 1:
        raise ValueError(f"final_fraction must be in (0, 1], got {final_fraction}")
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    n_final = max(1, int(np.ceil(curves.shape[1] * final_fraction - 1e-9)))

    def _reduce(fn: Callable[..., np.ndarray], block: np.ndarray) -> np.ndarray:
        # All-NaN rows (a run without the tag) give NaN without a warning.
        out = np.full(block.shape[0], np.nan)
        rows = np.isfinite(block).any(axis=1)
        out[rows] = fn(block[rows], axis=1)
        return out

    return RunScores(
        final=_reduce(np.nanmean, curves[:, -n_final:]),
        peak=_reduce(np.nanmax, curves),
        auc=_reduce(np.nanmean, curves),
    )
