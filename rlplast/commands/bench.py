"""``rlplast bench``: throughput of the simulator, PPO against SB3, and the plug-in and metrics costs."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

SECTION_NAMES = ("simulation", "warp", "ppo", "plugins", "metrics")


def _sections(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in SECTION_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"unknown sections {unknown or [value]}; allowed: {', '.join(SECTION_NAMES)}")
    return names


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rlplast bench --quick                 (a minute or two)\n\n"
        "  rlplast bench --out results/bench     (full sizes; writes results/bench.json and results/bench.md)\n\n"
        "  rlplast bench --quick --only simulation,ppo --repeats 5"
    )
)
@click.option("--quick", is_flag=True, help="Small sizes and 3 repeats instead of the full sizes and 5 repeats.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write FILE.json and FILE.md (a .json or .md suffix is replaced by both).",
)
@click.option("--only", callback=_sections, default=None, help=f"Comma-separated sections: {', '.join(SECTION_NAMES)}.")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="Timed repeats of every figure.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Simulator and torch threads.")
@click.option("--group", type=click.IntRange(min=1), default=None, help="Runs of the run-group PPO measurement.")
def bench(
    quick: bool,
    out: Path | None,
    only: tuple[str, ...] | None,
    repeats: int | None,
    threads: int | None,
    group: int | None,
) -> None:
    """Measure throughput side by side in one process and print one table.

    Raw mujoco.mj_step on the same cores, the cpu backend and the Gymnasium wrapper; the warp
    backend on CUDA; end-to-end PPO SPS against stable-baselines3's PPO (one run and a run group);
    the cost of CBP, UPGD and the metrics relative to plain PPO. Medians with min and max.
    """
    from rlplast.bench.suite import FULL, QUICK, run_suite, to_markdown, write_outputs

    if out is not None:  # a folder that cannot take the results fails now, not after the measuring
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            message = f"cannot create the folder {out.parent}: {err.strerror}"
            raise click.BadParameter(message, param_hint="--out") from None
        if not os.access(out.parent, os.W_OK):
            raise click.BadParameter(f"cannot write to the folder {out.parent}", param_hint="--out")
    changes = {"sections": only, "repeats": repeats, "threads": threads, "group": group}
    base = (QUICK if quick else FULL).model_dump()
    settings = type(QUICK).model_validate(base | {k: v for k, v in changes.items() if v is not None})
    command = shlex.join(["rlplast", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "rlplast bench"
    result = run_suite(settings, log=lambda line: click.echo(line, err=True), command=command)
    click.echo(to_markdown(result), nl=False)
    if out is not None:
        for path in write_outputs(result, out):
            click.echo(f"wrote {path}", err=True)
