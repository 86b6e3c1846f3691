"""``report.md``: the experiment's figures and its tables of scores with confidence intervals.

:func:`build_report` is what ``rlplast compare`` (after training) and ``rlplast plot`` (from the
saved files alone) call: read the results folder, compute the summary, draw the figures, write
the report next to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from rlplast.report.aggregate import load_results
from rlplast.report.binned_csv import write_binned_csvs
from rlplast.report.plots import FIGURES, plot_all
from rlplast.report.stats import Estimate
from rlplast.report.style import method_label
from rlplast.report.summary import (
    CRITIC_PANELS,
    DEFAULT_BASELINE,
    FINAL_FRACTION,
    MIN_RUNS_FOR_AGGREGATES,
    PLASTICITY_PANELS,
    REPORT_TAGS,
    Summary,
    summarize,
)

REPORT_FILE = "report.md"


def fmt_number(value: float) -> str:
    """Thousands separators and no decimals from 100 up; three significant digits below."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_probability(value: float) -> str:
    """Two decimals (a probability in [0, 1])."""
    return f"{value:.2f}" if math.isfinite(value) else "n/a"


def fmt_estimate(est: Estimate | None, fmt: Callable[[float], str] = fmt_number) -> str:
    """``value [low, high]``; just the value when there is no interval; "n/a" without runs."""
    if est is None or est.n == 0 or not math.isfinite(est.value):
        return "n/a"
    if not math.isfinite(est.low):
        return fmt(est.value)
    return f"{fmt(est.value)} [{fmt(est.low)}, {fmt(est.high)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; a '|' inside a cell is escaped so it does not split the cell."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|"] + [line(row) for row in rows]


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds)) if seeds else "none"


def _header(summary: Summary) -> list[str]:
    res = summary.results
    meta = res.meta
    lines = [f"# {res.name}", ""]
    facts = []
    if meta.get("task"):
        facts.append(f"task `{meta['task']}`")
    facts.append(f"{res.total_steps:,} env steps per run")
    facts.append("methods " + ", ".join(f"`{m}`" for m in res.methods))
    if meta.get("overrides"):
        facts.append("overrides " + ", ".join(f"`{k}={v}`" for k, v in meta["overrides"].items()))
    lines += ["; ".join(facts) + ".", ""]
    lines += _table(
        ["method", "finished seeds", "unfinished seeds"],
        [[method_label(m), _seeds(s.finished), _seeds(s.unfinished)] for m, s in summary.scores.items()],
    )
    if any(s.unfinished for s in summary.scores.values()):
        lines += ["", "Unfinished runs appear in the curves as far as they got and are left out of every table."]
    return lines


def _return_section(summary: Summary) -> list[str]:
    base = summary.baseline
    header = [
        "method",
        "runs with a final return",
        "final return (last 10%)",
        "peak return",
        "AUC (mean return)",
        "IQM final return",
    ]
    if base is not None:
        header.append(f"P(final > {method_label(base)})")
    supported = summary.aggregates_supported
    too_few = f"n/a (< {MIN_RUNS_FOR_AGGREGATES} runs)"
    rows = []
    for method, sc in summary.scores.items():
        row = [method_label(method), str(sc.final.n), *map(fmt_estimate, (sc.final, sc.peak, sc.auc))]
        row.append(fmt_estimate(sc.final_iqm) if supported else too_few)
        if base is not None:
            row.append(
                "baseline"
                if method == base
                else fmt_estimate(sc.improvement, fmt_probability)
                if supported
                else too_few
            )
        rows.append(row)
    lines = ["## Episodic return", "", f"![episodic return]({FIGURES[0]})", ""]
    if not supported:
        lines += [
            f"**Warning: fewer than {MIN_RUNS_FOR_AGGREGATES} finished runs per method.** The intervals below "
            "are wide and unreliable (a bootstrap over 2-4 runs), and the interquartile mean and probability "
            "of improvement are not shown; read the per-seed curves (binned/*.csv, TensorBoard) before "
            "drawing a conclusion.",
            "",
        ]
    lines += _table(header, rows)
    lines += [
        "",
        f"Each run's returns are averaged in {len(summary.edges) - 1} equal bins of env steps; the tables use "
        "finished runs only. Mean over runs with a 95% percentile-bootstrap interval [low, high]. "
        f"Final return: the last {FINAL_FRACTION:.0%} of the bins (a run in which no episode ended there has "
        "none). Peak: the highest bin. "
        "AUC: the area under the binned curve divided by the steps, i.e. the mean return over training. "
        "IQM: interquartile mean of the final returns (rliable; with fewer than 4 runs it is the mean)."
        + (
            f" P(final > {method_label(base)}): the probability that a run of the method ends higher than a "
            "run of the baseline (Mann-Whitney U / pairs; 0.5 is no difference)."
            if base is not None
            else ""
        ),
    ]
    if summary.friction_changes:
        lines += [
            "",
            "Dotted lines: the env steps at which each seed's friction changed (in the runs of the first "
            "method that logged it), one set of lines where all seeds changed together.",
        ]
    return lines


def _plasticity_section(summary: Summary) -> list[str]:
    panels = [summary.panels[spec.key] for spec in (*PLASTICITY_PANELS, *CRITIC_PANELS)]
    header = ["method", *(f"{'critic ' if p.spec in CRITIC_PANELS else ''}{p.spec.ylabel}" for p in panels)]
    rows = [
        [method_label(m), *("not logged" if p.tag is None else fmt_estimate(p.final.get(m)) for p in panels)]
        for m in summary.results.methods
    ]
    lines = ["## Plasticity", "", f"![return and plasticity metrics]({FIGURES[1]})", ""]
    lines += [
        f"Values over the last {FINAL_FRACTION:.0%} of training (finished runs), mean [95% CI]; actor, then critic:",
        "",
    ]
    lines += _table(header, rows)
    logged = [f"{p.spec.title.lower()}: `{p.tag}`" for p in panels if p.tag is not None]
    if logged:
        lines += ["", "Tags: " + "; ".join(logged) + "."]
    return lines


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (reports stay portable)."""
    resolved, cwd = Path(path).resolve(), Path.cwd().resolve()
    return (resolved.relative_to(cwd) if resolved.is_relative_to(cwd) else resolved).as_posix()


def render_report(summary: Summary) -> str:
    """The report as markdown text."""
    where = _display_path(summary.results.path)
    lines = [*_header(summary), "", *_return_section(summary), "", *_plasticity_section(summary)]
    lines += ["", "## Scores", "", f"![scores]({FIGURES[2]})", ""]
    lines += [
        "## Reproduce",
        "",
        f"Redraw the figures and this report: `rlplast plot {where}`. "
        f"Every curve of every seed: `tensorboard --logdir {where}`.",
        "",
    ]
    return "\n".join(lines)


def build_report(exp_dir: Path, num_bins: int | None = None, baseline: str | None = None) -> tuple[Summary, list[Path]]:
    """Read ``exp_dir``, draw its figures and write its report.md there.

    Args:
        baseline: the method the others are compared with; None: standard PPO when it ran.

    Returns:
        The summary the report shows, and the written files: the figures, the binned CSVs
        (``binned/<method>_seed<k>.csv``), then report.md.

    Raises:
        FileNotFoundError: if ``exp_dir`` holds no run folders.
        ValueError: ``baseline`` names a method that has no runs there.
    """
    exp_dir = Path(exp_dir)
    results = load_results(exp_dir, REPORT_TAGS)
    if baseline is not None and baseline not in results.methods:
        raise ValueError(f"baseline {baseline!r} has no runs in {exp_dir}; methods: {', '.join(results.methods)}")
    summary = summarize(results, num_bins=num_bins, baseline=baseline or DEFAULT_BASELINE)
    figures = plot_all(summary, exp_dir)
    tables = write_binned_csvs(summary, exp_dir)
    report = exp_dir / REPORT_FILE
    report.write_text(render_report(summary), encoding="utf-8")
    return summary, [*figures, *tables, report]
