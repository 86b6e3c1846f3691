"""``rlplast compare``: train methods x seeds on one task, then write the figures and report.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from rlplast.cli_types import SEEDS, STEPS, format_seeds, format_steps
from rlplast.commands.plot import BASELINE_HELP, BINS_HELP, report
from rlplast.report.aggregate import seed_dirs


def _overrides(pairs: tuple[str, ...]) -> dict[str, object] | None:
    """``("a.b=1", ...)`` -> ``{"a.b": 1}`` (values read as by ``load_config``)."""
    if not pairs:
        return None
    from rlplast.config import parse_value

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE, e.g. agent.epochs=5", param_hint="--set")
        out[key.strip()] = parse_value(value)
    return out


def _parallel(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r}: expected a positive number or auto")
    return int(value)


@click.command()
@click.argument("experiment_file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", help="results folder name (default: the file's name field, else the task)")
@click.option("--task", help="task of configs/tasks, e.g. slippery_ant")
@click.option("--methods", help="comma-separated methods of configs/methods, e.g. ppo,ppo_tuned,ppo_cbp")
@click.option("--seeds", type=SEEDS, help="seeds, e.g. 0-9 or 0,3,5")
@click.option("--steps", type=STEPS, help="env steps per run, e.g. 20M, 2e6, 300k")
@click.option("--backend", type=click.Choice(["cpu", "warp", "gym"]), help="simulator backend")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="device of the networks")
@click.option("--parallel", callback=_parallel, help="run groups trained at once: a number, or auto")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="config override for every method")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "new-folder"]),
    default="error",
    show_default=True,
    help="when the folder holds runs of another config: stop, or write to <name>_2, <name>_3, ...",
)
@click.option("--dry-run", is_flag=True, help="show the plan (what trains, resumes, is done) and stop")
@click.option("--bins", type=click.IntRange(min=2), help=BINS_HELP)
@click.option("--baseline", help=BASELINE_HELP)
@click.option(
    "--launcher",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="who trains the run groups: this machine, or one Ray task per group on a Ray cluster",
)
@click.option("--address", help="[ray] cluster: auto, or HOST:PORT of its head (default: RAY_ADDRESS, else a new one)")
@click.option("--cpus-per-group", type=click.FloatRange(min=0, min_open=True), help="[ray] CPUs per run group")
@click.option("--gpus-per-group", type=click.FloatRange(min=0), help="[ray] GPUs per run group, e.g. 0.25 or 1")
@click.option("--max-retries", type=click.IntRange(min=0), help="[ray] reruns of a lost or preempted task (3)")
def compare(experiment_file: Path | None, sets: tuple[str, ...], **flags: object) -> None:
    """Train several methods x seeds on one task and write plots and report.md.

    Give an EXPERIMENT_FILE (configs/experiments/*.yaml), flags (--task --methods --seeds
    --steps), or both (flags replace the file's values). Each method trains as one run group of
    all its seeds; rerunning skips finished runs and resumes interrupted ones.

    With --launcher ray, each run group is one task on the Ray cluster at --address; Ray retries
    tasks that are lost or preempted, and they resume from their checkpoints. --results-dir must
    then be on a filesystem that every node of the cluster mounts at the same path.
    """
    from rlplast.compare import describe_plan, load_experiment, plan_experiment
    from rlplast.config import ConfigError
    from rlplast.progress import make_progress

    console = Console()
    results_dir, on_conflict, dry_run = flags.pop("results_dir"), flags.pop("on_conflict"), flags.pop("dry_run")
    bins, baseline = flags.pop("bins"), flags.pop("baseline")
    launcher = flags.pop("launcher")
    ray_keys = ("address", "cpus_per_group", "gpus_per_group", "max_retries")
    launch_options = {k: v for k in ray_keys if (v := flags.pop(k)) is not None}
    if experiment_file is None and flags["task"] is None:
        raise click.UsageError("give an EXPERIMENT_FILE, or --task with --methods, --seeds and --steps")
    if experiment_file is None and flags["name"] is None:
        flags["name"] = flags["task"]
    flags["overrides"] = _overrides(sets)
    try:
        exp = load_experiment(experiment_file, **flags)
    except (FileNotFoundError, ValueError) as err:  # bad input: a usage error, as in train
        raise click.UsageError(str(err)) from None
    try:
        plan = plan_experiment(exp, results_dir, on_conflict=on_conflict.replace("-", "_"))
    except ConfigError as err:  # an unknown method, a bad override: bad input, as in train
        raise click.UsageError(str(err)) from None
    except (FileNotFoundError, ValueError) as err:  # e.g. results of another config
        raise click.ClickException(str(err)) from None
    reported = {*exp.methods, *(d.name for d in plan.exp_dir.glob("*") if seed_dirs(d))}  # earlier calls' too
    if baseline is not None and baseline not in reported:  # before hours of training, not after
        raise click.UsageError(f"--baseline {baseline!r} is not one of the methods: {', '.join(sorted(reported))}")

    console.print(
        f"[bold]{exp.name}[/]: task {exp.task}, {format_steps(exp.steps)} env steps per run, seeds "
        f"{format_seeds(exp.seeds)}, backend {exp.backend}; results in {plan.exp_dir}"
    )
    table = Table()
    for column in ("method", "train", "resume", "done"):
        table.add_column(column)
    for row in describe_plan(plan):
        table.add_row(*row)
    console.print(table)
    if plan.exp_dir.name != exp.name:
        console.print(f"[yellow]{Path(results_dir) / exp.name} holds runs of another config; writing to {plan.exp_dir}")
    if dry_run:
        return

    from rlplast.launchers import launch
    from rlplast.runner import Interrupted

    try:
        with make_progress(console) as progress:
            failures = launch(plan, progress, launcher, **launch_options)
    except Interrupted as err:  # Ctrl-C: the runner saved a checkpoint
        console.print(f"[yellow]{err}")
        sys.exit(err.exit_code)
    except (ImportError, ValueError, ConnectionError) as err:  # no Ray or cluster, or options that do not fit
        raise click.ClickException(str(err)) from None
    if failures:  # said first: a failed method may also be why the report cannot be drawn
        console.print("[red]some methods failed (rerun to resume them):\n  " + "\n  ".join(failures))
    report(plan.exp_dir, bins, baseline, console)
    if failures:
        raise click.ClickException(f"{len(failures)} method(s) failed; see above")
