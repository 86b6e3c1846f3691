"""``rlplast train``: one method on one task for a group of seeds (a thin layer over the runner)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rlplast.cli_types import SEEDS, STEPS, format_seeds, format_steps

BACKENDS = ("auto", "cpu", "gym", "warp")


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
@click.option(
    "--seeds", type=SEEDS, default="0", show_default=True, help="Seeds of the run group: '0-29', '0,3,5', '0-3,10'."
)
@click.option(
    "--steps",
    type=STEPS,
    default=None,
    help="Env steps per run: 2048, 300k, 2M, 2e6, 50M. [default: the task's run.steps]",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="Simulator: cpu (MuJoCo C, threads), warp (mujoco_warp on CUDA), gym (any Gymnasium id), auto.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Torch device of the networks: auto (CUDA if present), cpu, cuda, cuda:1.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Experiment folder; runs go to OUT/<method>/seed<k>/. [default: results/<task>]",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value by its dotted key (repeatable), e.g. --set agent.epochs=5.",
)
@click.option(
    "--agent",
    type=click.Choice(("rlplast", "sb3")),
    default=None,
    help="Who trains: rlplast's PPO, or stable-baselines3's PPO with the same network and hyperparameters "
    "(one model per seed). [default: the method's implementation, rlplast unless it says sb3]",
)
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit without training.")
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. for log files).")
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
    out_dir = (out or Path("results") / cfg.task) / cfg.method
    try:
        refuse_other_configs(cfg, out_dir)  # before saying what will be trained
        finished = [s for s in seeds if (reached_steps(out_dir, s) or 0) >= steps]
        if finished:
            click.echo(f"seeds {format_seeds(finished)} already finished {format_steps(steps)} steps: skipped")
        if len(finished) < len(seeds):
            todo = format_seeds([s for s in seeds if s not in finished])
            click.echo(
                f"training {cfg.method} on {cfg.task}: seeds {todo}, {format_steps(steps)} steps per run "
                f"-> {out_dir}/seed<k>/"
            )
        if no_progress:
            train_group(cfg, seeds, out_dir, steps, backend=backend, device=device)
        else:
            with make_progress() as progress:
                train_group(cfg, seeds, out_dir, steps, backend=backend, device=device, progress=progress)
    except Interrupted as err:
        click.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except (CheckpointMismatch, RunBusy, ValueError, DiskFull) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"done: {out_dir}  (tensorboard --logdir {out_dir.parent})")
