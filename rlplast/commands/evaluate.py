"""``rlplast evaluate``: deterministic episodes of trained policies, as a table and a CSV (and a video)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from rlplast.cli_types import SEEDS, _Parsed

FRICTION_WORDS = ("final", "schedule")


def parse_friction(text: str) -> str | float:
    """``final``, ``schedule`` or a friction >= 0 (parsed here, without importing MuJoCo: a
    video's GL backend is chosen before that import).

    Raises:
        ValueError: anything else.
    """
    text = str(text).strip().lower()
    if text in FRICTION_WORDS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad friction {text!r}: expected a number >= 0, 'final' or 'schedule'")
    return value


FRICTION = _Parsed("friction", parse_friction)


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rlplast evaluate results/demo                    (every method and seed, 5 episodes each)\n\n"
        "  rlplast evaluate results/demo/ppo --seeds 0-2 --friction 0.1 --friction 2.0\n\n"
        "  rlplast evaluate results/demo/ppo/seed0 --friction schedule --video ppo_seed0.mp4\n\n"
        "The policy acts by its mean action. Episode e of a run starts from the same state at every "
        "friction and in every evaluation (seeded from the run's seed). Rows, one per episode, go to "
        "RESULTS_DIR/evaluation.csv (method, seed, step, friction, episode, return, length)."
    )
)
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--seeds", type=SEEDS, default=None, help="Only these seeds: '0-29', '0,3,5'. [default: all]")
@click.option(
    "--episodes", type=click.IntRange(min=1), default=5, show_default=True, help="Episodes per run and friction."
)
@click.option(
    "--friction",
    "frictions",
    type=FRICTION,
    multiple=True,
    help="A friction value, 'final' (the run's friction at its last step trained) or 'schedule' (every "
    "value its schedule took while training); repeatable. [default: final]",
)
@click.option(
    "--backend",
    type=click.Choice(("auto", "cpu", "gym")),
    default="auto",
    show_default=True,
    help="Simulator of the episodes: cpu (MuJoCo C), gym (Gymnasium), auto (cpu where it can).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV of the episodes. [default: RESULTS_DIR/evaluation.csv]",
)
@click.option(
    "--video",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also render episode 0 of the first run and friction offscreen to this .mp4 (or .gif) file.",
)
def evaluate(
    results_dir: Path,
    seeds: list[int] | None,
    episodes: int,
    frictions: tuple,
    backend: str,
    out: Path | None,
    video: Path | None,
) -> None:
    """Play deterministic episodes of the trained policies under RESULTS_DIR (an experiment, method or seed folder)."""
    if video is not None:
        if video.suffix.lower() not in (".mp4", ".gif"):
            raise click.BadParameter(f"{video}: the video must end in .mp4 or .gif", param_hint="--video")
        from rlplast.video import NoOffscreenGL, offscreen_gl

        try:
            gl = offscreen_gl()  # before MuJoCo is imported: it fixes its GL backend then
        except NoOffscreenGL as err:
            raise click.ClickException(str(err)) from None
    from rlplast.atomic import DiskFull
    from rlplast.checkpoint import CheckpointMismatch, CheckpointUnreadable
    from rlplast.evaluate_results import evaluate_folder, format_table, results_path, write_rows
    from rlplast.policy import PolicyNotFound

    try:
        rows, played = evaluate_folder(
            results_dir, seeds, episodes, frictions or ("final",), backend, on_skip=lambda m: click.echo(m, err=True)
        )
        click.echo(format_table(rows))
        target = out or results_path(results_dir)
        write_rows(target, rows)
        click.echo(f"episodes written to {target}")
    except (PolicyNotFound, CheckpointMismatch, CheckpointUnreadable, ValueError, DiskFull) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"{err.filename or results_dir}: {err.strerror}") from None
    if video is not None:
        from rlplast.video import render_episode, write_video

        actor, env_cfg, friction, seed = played[0]
        frames, total, fps = render_episode(actor, env_cfg, friction, seed)
        write_video(video, frames, fps)
        click.echo(
            f"video of {rows[0].method} seed {seed} at friction {friction:.3f} ({len(frames) - 1} steps, "
            f"return {total:.1f}, MUJOCO_GL={gl}) written to {video}"
        )
