"""``rlplast compare``: train methods x seeds on one task, then write the figures and report.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from rlplast.cli_types import format_seeds, format_steps
from rlplast.commands import options
from rlplast.commands.checks import check_backend, check_out_folder
from rlplast.commands.plot import BASELINE_HELP, BINS_HELP

RESULTS_ROOT = Path("results")


def _overrides(pairs: tuple[str, ...]) -> dict[str, object] | None:
    """``("a.b=1", ...)`` -> ``{"a.b": 1}`` (values read as by ``load_config``)."""
    if not pairs:
        return None
    from rlplast.config import ConfigError, parse_value

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE, e.g. agent.epochs=5", param_hint="--set")
        try:
            out[key.strip()] = parse_value(value)
        except ConfigError as err:
            raise click.BadParameter(f"{pair!r}: {err}", param_hint="--set") from None
    return out


def _results_root(flags: dict) -> Path:
    """The folder that holds experiment folders: OUT's parent (OUT's name is the experiment's),
    else the older --results-dir, else ``results``. Pops both from ``flags``."""
    out, root = flags.pop("out"), flags.pop("results_dir")
    if out is None:
        return root or RESULTS_ROOT
    if root is not None:
        raise click.UsageError("give --out (the experiment folder) or --results-dir (the folder above it), not both")
    out = out.resolve() if out.name in ("", ".", "..") else out
    if flags["name"] is not None and flags["name"] != out.name:
        raise click.UsageError(f"--out {out} names the experiment {out.name!r}, but --name says {flags['name']!r}")
    flags["name"] = out.name
    return out.parent


def held_runs(plan) -> list[str]:
    """One line per method whose pending runs another process is training now (their locks are held)."""
    from rlplast.locks import is_held, run_lock

    lines = []
    for group in plan.groups:
        held = [s for s in group.pending if is_held(run_lock(group.out_dir, s))]
        if held:
            lines.append(
                f"{group.method}: seeds {format_seeds(held)} are being trained by another process now; "
                "training them here would stop at once, so wait for it to end"
            )
    return lines


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
@options.seeds_option(None, "the experiment file's")
@options.steps_option("the experiment file's")
@options.backend_option(None)
@options.device_option(None)
@options.out_option("results/<name>")
@click.option("--results-dir", type=click.Path(path_type=Path), hidden=True)  # before --out: OUT's parent
@click.option("--parallel", callback=_parallel, help="run groups trained at once: a number, or auto")
@options.set_option()
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "new-folder"]),
    default="error",
    show_default=True,
    help="when the folder holds runs of another config: stop, or write to <name>_2, <name>_3, ...",
)
@click.option("--dry-run", is_flag=True, help="show the plan (what trains, resumes, is done) and stop")
@options.print_config_option()
@options.no_progress_option()
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
def compare(experiment_file: Path | None, overrides: tuple[str, ...], **flags: object) -> None:
    """Train several methods x seeds on one task and write plots and report.md.

    Give an EXPERIMENT_FILE (configs/experiments/*.yaml), flags (--task --methods --seeds
    --steps), or both (flags replace the file's values). Each method trains as one run group of
    all its seeds; rerunning skips finished runs and resumes interrupted ones.

    With --launcher ray, each run group is one task on the Ray cluster at --address; Ray retries
    tasks that are lost or preempted, and they resume from their checkpoints. --out must then be
    on a filesystem that every node of the cluster mounts at the same path.
    """
    from rlplast.compare import describe_plan, load_experiment, plan_experiment
    from rlplast.config import ConfigError, load_config
    from rlplast.progress import make_progress
    from rlplast.report.aggregate import seed_dirs

    console = Console()
    results_root = _results_root(flags)
    on_conflict, dry_run = flags.pop("on_conflict"), flags.pop("dry_run")
    print_config, no_progress = flags.pop("print_config"), flags.pop("no_progress")
    bins, baseline = flags.pop("bins"), flags.pop("baseline")
    launcher = flags.pop("launcher")
    ray_keys = ("address", "cpus_per_group", "gpus_per_group", "max_retries")
    launch_options = {k: v for k in ray_keys if (v := flags.pop(k)) is not None}
    if experiment_file is None and flags["task"] is None:
        raise click.UsageError("give an EXPERIMENT_FILE, or --task with --methods, --seeds and --steps")
    if experiment_file is None and flags["name"] is None:
        flags["name"] = flags["task"]
    flags["overrides"] = _overrides(overrides)
    try:
        exp = load_experiment(experiment_file, **flags)
        configs = {method: load_config(exp.task, method, exp.override_args()) for method in exp.methods}
    except (FileNotFoundError, ValueError) as err:  # bad input (ConfigError too): a usage error, as in train
        raise click.UsageError(str(err)) from None
    check_backend(exp.backend, exp.device)
    backend, _ = options.resolve_backend_device(exp.backend, exp.device, next(iter(configs.values())).env.id)
    exp = exp.model_copy(update={"backend": backend})  # saved as resolved, so a rerun elsewhere sees a change
    if print_config:
        for method, cfg in configs.items():
            cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": exp.steps})})
            click.echo(f"# {method} (backend {exp.backend}, device {exp.resolved_device()})\n{cfg.to_yaml()}---")
        return
    check_out_folder(results_root / exp.name, "--out", create=not dry_run)
    try:
        plan = plan_experiment(exp, results_root, on_conflict=on_conflict.replace("-", "_"))
    except ConfigError as err:  # an unknown method, a bad override: bad input, as in train
        raise click.UsageError(str(err)) from None
    except (FileNotFoundError, ValueError) as err:  # e.g. results of another config
        raise click.ClickException(str(err)) from None
    reported = {*exp.methods, *(d.name for d in plan.exp_dir.glob("*") if seed_dirs(d))}  # earlier calls' too
    if baseline is not None and baseline not in reported:  # before hours of training, not after
        raise click.UsageError(f"--baseline {baseline!r} is not one of the methods: {', '.join(sorted(reported))}")

    console.print(
        f"[bold]{exp.name}[/]: task {exp.task}, {format_steps(exp.steps)} env steps per run, seeds "
        f"{format_seeds(exp.seeds)}, backend {exp.backend}, device {exp.resolved_device()}; results in {plan.exp_dir}"
    )
    table = Table()
    for column in ("method", "train", "resume", "done"):
        table.add_column(column)
    for row in describe_plan(plan):
        table.add_row(*row)
    console.print(table)
    for line in held_runs(plan):
        console.print(f"[yellow]{line}")
    if plan.exp_dir.name != exp.name:
        console.print(f"[yellow]{results_root / exp.name} holds runs of another config; writing to {plan.exp_dir}")
    if dry_run:
        return

    from rlplast.launchers import launch
    from rlplast.runner import Interrupted

    try:
        with make_progress(console, quiet=no_progress) as progress:
            failures = launch(plan, progress, launcher, **launch_options)
    except Interrupted as err:  # Ctrl-C: the runner saved a checkpoint
        console.print(f"[yellow]{err}")
        sys.exit(err.exit_code)
    except (ImportError, ValueError, ConnectionError) as err:  # no Ray or cluster, or options that do not fit
        raise click.ClickException(str(err)) from None
    if failures:  # said first: a failed method may also be why the report cannot be drawn
        console.print("[red]some methods failed (rerun to resume them):\n  " + "\n  ".join(failures))
    from rlplast.commands.plot import report

    report(plan.exp_dir, bins, baseline, console)
    if failures:
        raise click.ClickException(f"{len(failures)} method(s) failed; see above")
