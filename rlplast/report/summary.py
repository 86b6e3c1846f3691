"""The numbers behind an experiment's figures and report, computed once from its results.

``summarize`` bins every run's curves on one step grid, averages them across seeds with
bootstrap bands, scores each method's return (final, peak, area under the curve) over its
finished runs, and compares methods with rliable-style aggregates (IQM, probability of
improvement over a baseline, standard PPO by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rlplast.report.aggregate import (
    FRICTION_TAG,
    RETURN_TAG,
    ExperimentResults,
    Run,
    Series,
    binned,
    change_steps,
    step_edges,
)
from rlplast.report.stats import Estimate, curve_ci, iqm_ci, mean_ci, prob_improvement, run_scores

DEFAULT_BASELINE = "ppo"
FINAL_FRACTION = 0.1
MIN_BINS, MAX_BINS, EPISODES_PER_BIN = 10, 100, 5


@dataclass(frozen=True)
class PanelSpec:
    """One plotted quantity: the tags that may hold it (the first one logged is used), its
    title and axis label, and a factor applied to the logged values (e.g. fraction -> %)."""

    key: str
    title: str
    ylabel: str
    tags: tuple[str, ...]
    scale: float = 1.0


RETURN_PANEL = PanelSpec("return", "Episodic return", "episodic return", (RETURN_TAG,))

# The paper's figure 4 panels, on the actor's last hidden layer / its 256x256 weights.
PLASTICITY_PANELS = (
    PanelSpec(
        "stable_rank",
        "Stable rank",
        "stable rank (% of units)",
        ("plasticity/actor/stable_rank_pct", "plasticity/actor/layer1/stable_rank_pct"),
    ),
    PanelSpec(
        "dormant",
        "Dormant units",
        "dormant units (%)",
        ("plasticity/actor/dormant_fraction",),
        scale=100.0,
    ),
    PanelSpec(
        "weight_magnitude",
        "Weight magnitude",
        "mean |weight|",
        ("plasticity/actor/layer1/weight_magnitude", "plasticity/actor/weight_magnitude"),
    ),
)

# The same on the critic, drawn beside the actor's: its features lose rank too (Dohare et al.'s
# figures show the actor only).
CRITIC_PANELS = tuple(
    PanelSpec(
        f"critic_{p.key}",
        f"Critic: {p.title.lower()}",
        p.ylabel,
        tuple(t.replace("plasticity/actor/", "plasticity/critic/") for t in p.tags),
        p.scale,
    )
    for p in PLASTICITY_PANELS
)

# Every tag the report reads; reading only these keeps large metrics.csv files cheap.
REPORT_TAGS = frozenset(
    {FRICTION_TAG, *RETURN_PANEL.tags, *(t for p in (*PLASTICITY_PANELS, *CRITIC_PANELS) for t in p.tags)}
)

# rliable's aggregates (IQM, probability of improvement) are shown from this many finished runs
# per method on; with fewer, the report says so instead (Agarwal et al. 2021 use 5 or more).
MIN_RUNS_FOR_AGGREGATES = 5


@dataclass(frozen=True)
class Band:
    """Mean across runs and its 95% bootstrap band on the step grid, each ``[n_bins]``."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_runs: int


@dataclass
class Panel:
    """A quantity for every method: ``tag`` is None when no run logged any of the spec's tags."""

    spec: PanelSpec
    tag: str | None
    bands: dict[str, Band] = field(default_factory=dict)
    final: dict[str, Estimate] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodScores:
    """A method's return scores over its finished runs (``n`` in each estimate).

    Attributes:
        final, peak, auc: means with 95% bootstrap intervals (see :class:`stats.RunScores`).
        final_iqm: interquartile mean of the final returns.
        improvement: P(a run of this method ends higher than a baseline run), None for the
            baseline itself or when there is no baseline.
        finished, unfinished: the seeds with and without done.json.
    """

    final: Estimate
    peak: Estimate
    auc: Estimate
    final_iqm: Estimate
    improvement: Estimate | None
    finished: list[int]
    unfinished: list[int]


@dataclass
class Summary:
    """Everything the figures and the report show.

    Attributes:
        results: the runs read from disk.
        edges: step-grid edges ``[n_bins + 1]``; ``centers`` their midpoints.
        panels: ``"return"`` and the plasticity panels, by key.
        scores: method -> its return scores.
        baseline: the method others are compared with (None if it did not run).
        friction: (seed, friction series) of the runs of the first method that logged the
            friction, for the friction strip and the change lines (a seed's schedule is the same
            under every method).
    """

    results: ExperimentResults
    edges: np.ndarray
    panels: dict[str, Panel]
    scores: dict[str, MethodScores]
    baseline: str | None
    friction: list[tuple[int, Series]]

    @property
    def friction_changes(self) -> dict[int, np.ndarray]:
        """Seed -> the env steps at which its friction changed (seeds without changes left out)."""
        changes = {seed: change_steps(series) for seed, series in self.friction}
        return {seed: steps for seed, steps in changes.items() if len(steps)}

    @property
    def aggregates_supported(self) -> bool:
        """Whether every method has enough finished runs for IQM and P(improvement)."""
        return min((len(s.finished) for s in self.scores.values()), default=0) >= MIN_RUNS_FOR_AGGREGATES

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])


def _panel(results: ExperimentResults, spec: PanelSpec, edges: np.ndarray) -> Panel:
    tag = next((t for t in spec.tags if results.has_tag(t)), None)
    panel = Panel(spec=spec, tag=tag)
    if tag is None:
        return panel
    for method in results.methods:
        runs = [run for run in results.runs[method] if tag in run.scalars]
        if not runs:
            continue
        curves = binned(runs, tag, edges) * spec.scale
        mean, low, high = curve_ci(curves)
        panel.bands[method] = Band(mean, low, high, len(runs))
        finished = [i for i, run in enumerate(runs) if run.done]
        panel.final[method] = mean_ci(run_scores(curves[finished], FINAL_FRACTION).final) if finished else _none()
    return panel


def _none() -> Estimate:
    return Estimate(float("nan"), float("nan"), float("nan"), 0)


def _final_curves(runs: Sequence[Run], edges: np.ndarray) -> np.ndarray:
    """Binned return curves of the finished runs, ``[n_finished, n_bins]``."""
    done = [run for run in runs if run.done]
    return binned(done, RETURN_TAG, edges) if done else np.zeros((0, len(edges) - 1))


def auto_bins(results: ExperimentResults) -> int:
    """Bins for the step grid: about ``EPISODES_PER_BIN`` episodes of a typical run per bin, so a
    short run's curve is not one noisy episode per point, between ``MIN_BINS`` and ``MAX_BINS``."""
    counts = [len(run.scalars[RETURN_TAG].steps) for run in results.all_runs() if RETURN_TAG in run.scalars]
    if not counts:
        return MAX_BINS
    return int(np.clip(np.median(counts) // EPISODES_PER_BIN, MIN_BINS, MAX_BINS))


def summarize(results: ExperimentResults, num_bins: int | None = None, baseline: str = DEFAULT_BASELINE) -> Summary:
    """Compute the curves, scores and comparisons of an experiment.

    Args:
        results: from :func:`aggregate.load_results`.
        num_bins: points on the common step grid (each run's values are averaged per bin);
            None: :func:`auto_bins`.
        baseline: the method others are compared with by probability of improvement.
    """
    edges = step_edges(results.total_steps, num_bins or auto_bins(results))
    specs = (RETURN_PANEL, *PLASTICITY_PANELS, *CRITIC_PANELS)
    panels = {spec.key: _panel(results, spec, edges) for spec in specs}
    base = baseline if baseline in results.methods else None
    base_final = run_scores(_final_curves(results.runs[base], edges), FINAL_FRACTION).final if base else None
    scores = {}
    for method in results.methods:
        runs = results.runs[method]
        sc = run_scores(_final_curves(runs, edges), FINAL_FRACTION)
        scores[method] = MethodScores(
            final=mean_ci(sc.final),
            peak=mean_ci(sc.peak),
            auc=mean_ci(sc.auc),
            final_iqm=iqm_ci(sc.final),
            improvement=None if base is None or method == base else prob_improvement(sc.final, base_final),
            finished=[r.seed for r in runs if r.done],
            unfinished=[r.seed for r in runs if not r.done],
        )
    logged = ([r for r in results.runs[m] if FRICTION_TAG in r.scalars] for m in results.methods)
    friction_runs = next((runs for runs in logged if runs), [])  # the first method that logged it
    return Summary(
        results=results,
        edges=edges,
        panels=panels,
        scores=scores,
        baseline=base,
        friction=[(r.seed, r.scalars[FRICTION_TAG]) for r in friction_runs],
    )
