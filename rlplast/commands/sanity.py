"""``rlplast sanity``: the plasticity methods on the slowly-changing regression (a thin layer over
:mod:`rlplast.sanity`)."""

from __future__ import annotations

from pathlib import Path

import click

from rlplast.cli_types import SEEDS, STEPS, format_steps

DEFAULT_METHODS = "backprop,l2,snp,cbp,upgd"


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rlplast sanity --methods backprop,l2,snp,cbp,upgd --examples 3M --seeds 0-4 --out results/sanity\n\n"
        "  rlplast sanity --methods backprop,cbp --examples 300k\n\n"
        "Every method learns the same per-seed streams online (batch 1); all methods x seeds form one run "
        "group. Expect CBP's error over the last 10% of a 3M stream to be clearly below backprop's. "
        "Time grows with examples (all methods together: roughly 0.3-0.8 ms per example on one CPU core)."
    )
)
@click.option(
    "--methods",
    default=DEFAULT_METHODS,
    show_default=True,
    help="Comma-separated methods: backprop, l2, snp, cbp, upgd.",
)
@click.option(
    "--examples", type=STEPS, default="1M", show_default=True, help="Stream length: 300k, 1M, 3M (the paper's)."
)
@click.option("--seeds", type=SEEDS, default="0-4", show_default=True, help="One stream per seed: '0-4', '0,3'.")
@click.option("--bins", type=click.IntRange(1), default=30, show_default=True, help="Bins of examples in the table.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for errors.csv and errors.png (not written if omitted).",
)
@click.option(
    "--threads", type=click.IntRange(1), default=1, show_default=True, help="torch threads (tiny ops: 1 is fastest)."
)
def sanity(methods: str, examples: int, seeds: list[int], bins: int, out: Path | None, threads: int) -> None:
    """Slowly-changing regression: error per bin of examples for each method."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from rlplast.sanity import METHODS, run_sanity

    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise click.BadParameter(f"unknown {unknown or names}; known: {', '.join(METHODS)}", param_hint="--methods")
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise click.BadParameter(f"repeated {', '.join(repeated)}", param_hint="--methods")
    if bins > examples:
        raise click.BadParameter(f"{bins} bins for {examples} examples", param_hint="--bins")
    torch.set_num_threads(threads)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"))
    with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as progress:
        task = progress.add_task("examples", total=examples)
        result = run_sanity(
            names, seeds, examples, bins, progress=lambda done, total: progress.update(task, completed=done)
        )
    click.echo(f"slowly-changing regression: {format_steps(examples)} examples, seeds {seeds}, mean squared error")
    click.echo(result.table())
    click.echo(f"wall time {result.seconds:.1f} s ({result.seconds / examples * 1e6:.0f} us per example)")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        result.write_csv(out / "errors.csv")
        result.plot(out / "errors.png")
        click.echo(f"wrote {out / 'errors.csv'} and {out / 'errors.png'}")
