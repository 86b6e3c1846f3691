"""The experiment's figures (PNG), drawn from a :class:`Summary` with matplotlib's Agg backend.

- ``return.png``: episodic return vs env steps, mean and 95% bootstrap band per method (with more
  than three methods, one panel per method over the others' means in grey), each seed's friction
  changes marked at the step they took effect, and a strip of the friction each seed saw underneath.
- ``curves.png``: return, stable rank, dormant units, weight magnitude side by side (the layout of
  the Nature paper's figure 4), the critic's metrics below the actor's.
- ``scores.png``: final return, peak return, area under the curve and (from 5 finished runs per
  method) probability of improvement per method, as points with 95% intervals (rliable's
  interval plots).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

from rlplast.report.friction_marks import change_lines
from rlplast.report.stats import Estimate
from rlplast.report.style import method_colours, method_label, step_scale
from rlplast.report.summary import CRITIC_PANELS, PLASTICITY_PANELS, RETURN_PANEL, Panel, Summary

DPI = 150
FIGURES = ("return.png", "curves.png", "scores.png")
FRICTION_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# With more methods than this, return.png draws one panel per method (overlapping bands of five
# methods cannot be told apart).
METHODS_PER_RETURN_PANEL = 3
CONTEXT_GREY = "0.7"


def _title(summary: Summary) -> str:
    res = summary.results
    seeds = max(len(runs) for runs in res.runs.values())
    task = res.meta.get("task")
    parts = [res.name, f"task {task}" if task else None, f"up to {seeds} seeds per method"]
    return ", ".join(p for p in parts if p)


def _seed_greys(summary: Summary) -> dict[int, tuple]:
    """The shade of each seed's friction in the strip and its change lines."""
    greys = plt.cm.Greys(np.linspace(0.45, 0.85, max(len(summary.friction), 1)))
    return {seed: tuple(colour) for (seed, _), colour in zip(summary.friction, greys, strict=False)}


def _mark_changes(ax: Axes, summary: Summary, label: bool) -> None:
    """Dotted lines where each seed's friction changed (one set when all seeds agree)."""
    scale, _ = step_scale(summary.results.total_steps)
    lines = change_lines(summary.friction_changes, summary.results.total_steps)
    greys = _seed_greys(summary)
    text = "friction change" if None in lines else "friction change (per seed, shades as in the strip)"
    for i, (seed, steps) in enumerate(lines.items()):
        colour = "0.45" if seed is None else greys[seed]
        for j, step in enumerate(steps):
            first = label and i == 0 and j == 0
            ax.axvline(step / scale, color=colour, ls=":", lw=0.9, label=text if first else None)


def draw_panel(ax: Axes, summary: Summary, panel: Panel, mark_changes: bool = True, only: str | None = None) -> None:
    """Mean line and 95% band per method on ``ax``; a 'not logged' note when no run has the tag.

    With ``only``, that method is drawn in colour over the other methods' means in grey.
    """
    scale, xlabel = step_scale(summary.results.total_steps)
    x = summary.centers / scale
    colours = method_colours(summary.results.methods)
    ax.set_title(panel.spec.title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(panel.spec.ylabel)
    ax.set_xlim(0, summary.results.total_steps / scale)
    ax.grid(alpha=0.3)
    if panel.tag is None:
        ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=12)
        ax.text(0.5, 0.4, panel.spec.tags[0], transform=ax.transAxes, ha="center", va="center", color="0.6", fontsize=7)
        ax.set_yticks([])
        return
    for method, band in panel.bands.items():
        if only is not None and method != only:
            ax.plot(x, band.mean, color=CONTEXT_GREY, lw=0.9, zorder=1)
    for method, band in panel.bands.items():
        if only is not None and method != only:
            continue
        colour = colours[method]
        ax.plot(x, band.mean, color=colour, lw=1.6, label=f"{method_label(method)} (n={band.n_runs})")
        ax.fill_between(x, band.low, band.high, color=colour, alpha=0.2, lw=0)
    if mark_changes:
        _mark_changes(ax, summary, label=True)


def friction_ticks(low: float, high: float) -> list[float]:
    """The round values of FRICTION_TICKS within [low, high]; with fewer than two there, the
    range's ends (two significant digits) join them, so the axis reads at least two labels."""
    inside = [t for t in FRICTION_TICKS if low <= t <= high]
    if len(inside) >= 2:
        return inside
    return sorted({*inside, float(f"{low:.2g}"), float(f"{high:.2g}")})


def _friction_strip(ax: Axes, summary: Summary) -> None:
    scale, xlabel = step_scale(summary.results.total_steps)
    greys = _seed_greys(summary)
    for seed, series in summary.friction:
        colour = greys[seed]
        ax.plot(series.steps / scale, series.values, drawstyle="steps-post", color=colour, lw=1.0, alpha=0.8)
    ax.set_yscale("log")
    # Plain numbers at round values instead of 6x10^-1 style labels.
    values = np.concatenate([series.values for _, series in summary.friction])
    ax.yaxis.set_major_locator(FixedLocator(friction_ticks(float(values.min()), float(values.max()))))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("friction")
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"friction per seed ({len(summary.friction)} seeds)", fontsize=9, loc="left")


def return_figure(summary: Summary) -> Figure:
    """Episodic return with friction changes marked, and the friction strip when it changes: one
    panel for up to :data:`METHODS_PER_RETURN_PANEL` methods, else one panel per method."""
    methods = [m for m in summary.results.methods if m in summary.panels[RETURN_PANEL.key].bands]
    strip = bool(summary.friction_changes)
    single = len(methods) <= METHODS_PER_RETURN_PANEL
    cols = 1 if single else min(len(methods), 3)
    rows = 1 if single else -(-len(methods) // cols)
    width, height = (9.0, 5.0) if single else (4.4 * cols, 3.3 * rows)
    fig = plt.figure(figsize=(width, height + (1.3 if strip else 0.0)), layout="constrained")
    grid = fig.add_gridspec(rows + strip, cols, height_ratios=[4] * rows + ([1.2 * rows] if strip else []))
    panel = summary.panels[RETURN_PANEL.key]
    axes: list[Axes] = []
    for i, method in enumerate([None] if single else methods):
        share = axes[0] if axes else None
        ax = fig.add_subplot(grid[i // cols, i % cols], sharex=share, sharey=share)
        draw_panel(ax, summary, panel, only=method)
        handles, labels = ax.get_legend_handles_labels()
        if single:
            ax.set_title("")
            ax.legend(loc="best", fontsize=9, framealpha=0.9)
        else:  # the method (with its run count) is the title; the grey lines and changes in one legend
            ax.set_title(labels[0], fontsize=10, color=method_colours(methods)[method])
            if i == 0:
                context = Line2D([], [], color=CONTEXT_GREY, lw=0.9, label="the other methods' means")
                fig.legend([context, *handles[1:]], [context.get_label(), *labels[1:]], loc="outside lower center")
        axes.append(ax)
    if strip:
        ax_f = fig.add_subplot(grid[rows, :], sharex=axes[0])
        _friction_strip(ax_f, summary)
        _mark_changes(ax_f, summary, label=False)
        for ax in axes:
            ax.set_xlabel("")
    fig.suptitle(f"Episodic return (mean and 95% bootstrap CI across seeds): {_title(summary)}", fontsize=11)
    return fig


def plot_return(summary: Summary, path: Path) -> Path:
    """Write :func:`return_figure` to ``path``."""
    return _save(return_figure(summary), path)


def plot_curves(summary: Summary, path: Path) -> Path:
    """Return, stable rank, dormant units and weight magnitude of the actor in the top row (the
    layout of the paper's figure 4), the critic's metrics below them, one legend."""
    top = [RETURN_PANEL.key, *(p.key for p in PLASTICITY_PANELS)]
    fig, grid = plt.subplots(2, len(top), figsize=(4.2 * len(top), 7.6), layout="constrained")
    for ax, key in zip(grid[0], top, strict=True):
        draw_panel(ax, summary, summary.panels[key])
    for ax, spec in zip(grid[1][1:], CRITIC_PANELS, strict=True):
        draw_panel(ax, summary, summary.panels[spec.key])
    if summary.friction_changes:
        _friction_strip(grid[1][0], summary)
    else:
        grid[1][0].axis("off")
    axes = [*grid[0], *grid[1][1:]]
    handles, labels = {}, {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
            labels[lab] = lab
    fig.legend(list(handles.values()), list(labels), loc="outside lower center", ncols=min(len(labels), 6))
    fig.suptitle(f"Mean and 95% bootstrap CI across seeds: {_title(summary)}", fontsize=11)
    return _save(fig, path)


def _interval_panel(ax: Axes, title: str, estimates: dict[str, Estimate], colours: dict[str, str]) -> None:
    methods = list(estimates)
    y = np.arange(len(methods))[::-1]
    for yi, method in zip(y, methods, strict=True):
        est = estimates[method]
        if not np.isfinite(est.value):
            axis_x = ax.get_yaxis_transform()  # x in axes fraction, y in data
            ax.text(0.02, yi, "no finished runs", va="center", color="0.5", fontsize=8, transform=axis_x)
            continue
        if np.isfinite(est.low):
            ax.plot([est.low, est.high], [yi, yi], color=colours[method], lw=6, alpha=0.35, solid_capstyle="butt")
        ax.plot([est.value], [yi], "o", color=colours[method], ms=6)
    ax.set_yticks(y, [method_label(m) for m in methods])
    ax.set_ylim(-0.6, len(methods) - 0.4)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")


def plot_scores(summary: Summary, path: Path) -> Path:
    """Per-method point estimates with 95% intervals over finished runs."""
    colours = method_colours(summary.results.methods)
    scores = summary.scores
    panels = [
        ("Final return (last 10%)", {m: s.final for m, s in scores.items()}),
        ("Peak return", {m: s.peak for m, s in scores.items()}),
        ("AUC (mean return over training)", {m: s.auc for m, s in scores.items()}),
    ]
    if summary.baseline is not None and summary.aggregates_supported:
        others = {m: s.improvement for m, s in scores.items() if s.improvement is not None}
        if others:
            panels.append((f"P(final return > {method_label(summary.baseline)})", others))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 0.5 * len(scores) + 1.6), layout="constrained")
    for i, (ax, (title, estimates)) in enumerate(zip(np.atleast_1d(axes), panels, strict=True)):
        _interval_panel(ax, title, estimates, colours)
        if i > 0:
            ax.tick_params(labelleft=i == 3)
        if title.startswith("P("):
            ax.axvline(0.5, color="0.4", ls="--", lw=0.9)
            ax.set_xlim(-0.02, 1.02)
    fig.suptitle(f"Scores over finished runs, 95% bootstrap CIs: {_title(summary)}", fontsize=11)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_all(summary: Summary, out_dir: Path) -> list[Path]:
    """Write every figure into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    return [
        plot_return(summary, out_dir / FIGURES[0]),
        plot_curves(summary, out_dir / FIGURES[1]),
        plot_scores(summary, out_dir / FIGURES[2]),
    ]
