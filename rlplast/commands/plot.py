"""``rlplast plot results/<experiment>``: redraw the figures and report.md from the saved files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the report's modules load numpy, scipy and matplotlib: imported where used
    from rlplast.report.summary import Summary

BASELINE_HELP = "method the others are compared with [default: ppo, when it ran]"  # summary.DEFAULT_BASELINE
BINS_HELP = "points of the step grid each run's curves are averaged onto [default: 5 episodes a point, 10-100]"


def scores_table(summary: Summary) -> Table:
    """The return scores per method (finished runs, mean [95% CI]) as a console table."""
    from rlplast.report.report import fmt_estimate, fmt_probability
    from rlplast.report.style import method_label
    from rlplast.report.summary import MIN_RUNS_FOR_AGGREGATES

    # as in report.md: P(improvement) from enough finished runs per method only
    compare = summary.baseline is not None and summary.aggregates_supported
    caption = None if compare else f"fewer than {MIN_RUNS_FOR_AGGREGATES} finished runs per method: wide intervals"
    table = Table(title=f"{summary.results.name}: episodic return over finished runs, mean [95% CI]", caption=caption)
    for column in ("method", "runs with a final", "final (last 10%)", "peak", "AUC (mean return)"):
        table.add_column(column, justify="left" if column == "method" else "right")
    if compare:
        table.add_column(f"P(final > {method_label(summary.baseline)})", justify="right")
    for method, sc in summary.scores.items():
        row = [method_label(method), str(sc.final.n), *map(fmt_estimate, (sc.final, sc.peak, sc.auc))]
        if compare:
            row.append("baseline" if method == summary.baseline else fmt_estimate(sc.improvement, fmt_probability))
        table.add_row(*row)
    return table


def report(exp_dir: Path, bins: int | None, baseline: str | None, console: Console) -> None:
    """Build the figures and report of ``exp_dir`` and show where they are and the scores."""
    from rlplast.report.binned_csv import BINNED_DIR
    from rlplast.report.report import build_report

    try:
        summary, written = build_report(exp_dir, num_bins=bins, baseline=baseline)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    console.print(scores_table(summary))
    tables = [p for p in written if p.parent.name == BINNED_DIR]
    for path in written:
        if path not in tables:
            console.print(f"wrote {path}")
    if tables:
        console.print(f"wrote {tables[0].parent}/ ({len(tables)} per-run CSVs of the binned curves)")


@click.command()
@click.argument("experiment_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--bins", type=click.IntRange(min=2), help=BINS_HELP)
@click.option("--baseline", help=BASELINE_HELP)
def plot(experiment_dir: Path, bins: int | None, baseline: str | None) -> None:
    """Redraw the figures and report.md of EXPERIMENT_DIR (e.g. results/slippery_ant) from its
    saved files, without training."""
    report(experiment_dir, bins, baseline, Console())
