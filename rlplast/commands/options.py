"""The options ``train`` and ``compare`` share: one name, one set of choices and one default each.

``compare`` takes most of them from an experiment file as well; there a flag left out means the
file's value, and the file's default is the default shown here.
"""

from __future__ import annotations

from pathlib import Path

import click

from rlplast.cli_types import DEVICE, SEEDS, STEPS

BACKENDS = ("auto", "cpu", "gym", "warp")

BACKEND_HELP = (
    "Simulator: cpu (MuJoCo C, threads), warp (mujoco_warp on CUDA), gym (any Gymnasium id), auto "
    "(warp where a CUDA GPU and Warp are, else cpu; gym for envs the cpu backend does not rebuild)."
)
DEVICE_HELP = "Torch device of the networks: auto (cuda with the warp backend, else cpu), cpu, cuda, cuda:1."
OUT_HELP = "Experiment folder; runs go to OUT/<method>/seed<k>/."
SET_HELP = "Override a config value by its dotted key (repeatable), e.g. --set agent.epochs=5."
PRINT_CONFIG_HELP = "Print the resolved config and exit without training."
NO_PROGRESS_HELP = (
    "No progress display: only what starts, resumes and ends (a file or pipe gets a plain line every 30 s otherwise)."
)


def seeds_option(default: str | None, shown: str | None = None):
    return click.option(
        "--seeds",
        type=SEEDS,
        default=default,
        help=f"Seeds of the run group: '0-29', '0,3,5', '0-3,10'. [default: {shown or default}]",
    )


def steps_option(shown: str):
    return click.option(
        "--steps", type=STEPS, default=None, help=f"Env steps per run: 2048, 300k, 2M, 2e6, 50M. [default: {shown}]"
    )


def backend_option(default: str | None):
    """``default`` None: the experiment file's, whose default is auto too."""
    return click.option(
        "--backend", type=click.Choice(BACKENDS), default=default, help=f"{BACKEND_HELP} [default: auto]"
    )


def device_option(default: str | None):
    """``default`` None: the experiment file's, whose default is auto too."""
    return click.option("--device", type=DEVICE, default=default, help=f"{DEVICE_HELP} [default: auto]")


def out_option(shown: str):
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"{OUT_HELP} [default: {shown}]",
    )


def set_option():
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)


def print_config_option():
    return click.option("--print-config", is_flag=True, help=PRINT_CONFIG_HELP)


def no_progress_option():
    return click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP)


def resolve_backend_device(backend: str, device: str, env_id: str) -> tuple[str, str]:
    """The concrete backend and device of ``auto`` ones, the same in every command.

    ``backend`` auto: as :func:`rlplast.envs.factory.choose_backend` picks it for a GPU device
    (warp where a CUDA GPU that Warp sees is present), or for the CPU when ``device`` is cpu.
    ``device`` auto: cuda with the warp backend (the simulator's tensors stay on the GPU), else
    cpu (small networks beside a CPU simulator run fastest there)."""
    if backend == "auto":
        from rlplast.envs.factory import choose_backend

        backend = choose_backend(env_id, "auto", "cpu" if device == "cpu" else "cuda")
    if device == "auto":
        device = "cuda" if backend == "warp" else "cpu"
    elif device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError(f"--device {device}: torch sees no CUDA GPU here; use --device cpu (or auto)")
    return backend, device
