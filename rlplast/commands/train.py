"""``rlplast train``: one method on one task for a group of seeds (a thin layer over the runner)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rlplast.cli_types import format_seeds, format_steps
from rlplast.commands import options
from rlplast.commands.checks import check_backend, check_out_folder


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rlplast train --task slippery_ant --method ppo_tuned --seeds 0-3 --steps 2M --out results/try\n\n"
        "  rlplast train --method ppo --seeds 0,3,5 --steps 300k --set optimizer.lr=3e-4 --set agent.epochs=5\n\n"
        "  rlplast train --agent sb3 --seeds 0-2 --steps 1M   (stable-baselines3's PPO, same hyperparameters)\n\n"
        "Results go to OUT/<method>/seed<k>/ (config.yaml, metrics.csv, TensorBoard events, done.json). "
        "Rerunning the same command resumes from the last checkpoint; finished seeds are skipped. "
        "Ctrl-C saves a checkpoint after the current update and exits."
    )
)
@click.option("--task", default="slippery_ant", show_default=True, help="Task name in configs/tasks/ or a YAML path.")
@click.option("--method", default="ppo", show_default=True, help="Method name in configs/methods/ or a YAML path.")
@options.seeds_option("0")
@options.steps_option("the task's run.steps")
@options.backend_option("auto")
@options.device_option("auto")
@options.out_option("results/<task>")
@options.set_option()
@click.option(
    "--agent",
    type=click.Choice(("rlplast", "sb3")),
    default=None,
    help="Who trains: rlplast's PPO, or stable-baselines3's PPO with the same network and hyperparameters "
    "(one model per seed). [default: the method's implementation, rlplast unless it says sb3]",
)
@options.print_config_option()
@options.no_progress_option()
def train(
    task: str,
    method: str,
    seeds: list[int],
    steps: int | None,
    backend: str,
    device: str,
    out: Path | None,
    overrides: tuple[str, ...],
    agent: str | None,
    print_config: bool,
    no_progress: bool,
) -> None:
    """Train one METHOD on one TASK for a group of seeds, all in one process.

    The seeds train together as a run group (every weight has a leading run dimension), each with
    its own friction sequence, optimizer state and logs, exactly as it would alone.
    """
    from rlplast.atomic import DiskFull
    from rlplast.checkpoint import CheckpointMismatch
    from rlplast.config import ConfigError, load_config
    from rlplast.locks import RunBusy
    from rlplast.progress import make_progress
    from rlplast.runner import Interrupted, reached_steps, refuse_other_configs, train_group

    try:
        cfg = load_config(task, method, [*overrides, *([f"implementation={agent}"] if agent else [])])
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    if cfg.implementation == "sb3" and not cfg.method.startswith("sb3"):
        cfg = cfg.model_copy(update={"method": f"sb3_{cfg.method}"})  # its own results folder: sb3_ppo, ...
    steps = steps or cfg.run.steps
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": steps})})
    if print_config:
        click.echo(cfg.to_yaml(), nl=False)
        return
    check_backend(backend, device)
    backend, device = options.resolve_backend_device(backend, device, cfg.env.id)
    out_root = out or Path("results") / cfg.task
    check_out_folder(out_root, "--out")
    out_dir = out_root / cfg.method
    try:
        refuse_other_configs(cfg, out_dir)  # before saying what will be trained
        finished = [s for s in seeds if (reached_steps(out_dir, s) or 0) >= steps]
        if finished:
            click.echo(f"seeds {format_seeds(finished)} already finished {format_steps(steps)} steps: skipped")
        if len(finished) < len(seeds):
            todo = format_seeds([s for s in seeds if s not in finished])
            click.echo(
                f"training {cfg.method} on {cfg.task}: seeds {todo}, {format_steps(steps)} steps per run, "
                f"backend {backend}, device {device} -> {out_dir}/seed<k>/"
            )
        with make_progress(quiet=no_progress) as progress:
            train_group(cfg, seeds, out_dir, steps, backend=backend, device=device, progress=progress)
    except Interrupted as err:
        click.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except (CheckpointMismatch, RunBusy, ValueError, DiskFull) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"done: {out_dir}  (tensorboard --logdir {out_dir.parent})")
