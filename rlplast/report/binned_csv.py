"""Each run's curves on the report's step grid, one small CSV per method and seed.

The raw ``metrics.csv`` of a long run holds millions of rows; these files hold what the figures
show, one row per bin of the common step grid (closed on the right, see
:func:`rlplast.report.aggregate.bin_series`), so a reader can check a published figure, or
redraw it, without the raw logs. Columns: ``step`` (the bin's right edge, env steps), then one
column per panel of the report (return, stable rank %, dormant units %, weight magnitude), in
the panel's units; empty where the run had not reached the bin or did not log the quantity.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from rlplast.atomic import atomic_write_text
from rlplast.report.aggregate import Run, bin_series
from rlplast.report.summary import Summary

BINNED_DIR = "binned"


def binned_table(summary: Summary, run: Run) -> tuple[list[str], np.ndarray]:
    """The header and the ``[n_bins, 1 + n_panels]`` table of one run (NaN: no value)."""
    header, columns = ["step"], [summary.edges[1:]]
    for key, panel in summary.panels.items():
        header.append(key)
        series = run.scalars.get(panel.tag) if panel.tag else None
        columns.append(
            bin_series(series, summary.edges) * panel.spec.scale
            if series is not None
            else np.full(len(summary.edges) - 1, np.nan)
        )
    return header, np.column_stack(columns)


def write_binned_csvs(summary: Summary, out_dir: Path) -> list[Path]:
    """Write ``out_dir/binned/<method>_seed<k>.csv`` for every run; returns the paths."""
    folder = Path(out_dir) / BINNED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for method, runs in summary.results.runs.items():
        for run in runs:
            header, table = binned_table(summary, run)
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(header)
            for row in table:
                writer.writerow([int(row[0]), *("" if np.isnan(v) else f"{v:.6g}" for v in row[1:])])
            path = folder / f"{method}_seed{run.seed}.csv"
            atomic_write_text(path, buffer.getvalue())
            written.append(path)
    return written
