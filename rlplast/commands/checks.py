"""Checks of command-line input that the commands share, made before anything is trained or
written: each failure is a one-line usage error (exit code 2) naming the option and what to do."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

WARP_MODULES = ("warp", "mujoco_warp")  # the packages warp-lang and mujoco-warp


def check_out_folder(path: Path, option: str, create: bool = True) -> None:
    """Refuse a results folder that cannot be made: under a regular file, or where the system
    refuses it. With ``create`` the folder is made (as training would); without, only its
    nearest existing parent is checked (a dry run writes nothing).

    Raises:
        click.UsageError: naming the folder and why.
    """
    path = Path(path)
    try:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise click.UsageError(f"{option} {path}: {existing} is a file, not a folder; choose another {option}")
        if create:
            path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise click.UsageError(
            f"{option} {path}: cannot create that folder ({reason}); choose another {option}"
        ) from None


def check_backend(backend: str, device: str) -> None:
    """Refuse ``--backend warp`` where it cannot run as asked: without warp-lang and mujoco-warp,
    or without a CUDA GPU unless ``device`` asks for Warp's CPU device (``cpu``) outright.

    Raises:
        click.UsageError: naming what is missing and what to do instead.
    """
    if backend != "warp":
        return
    missing = [name for name in WARP_MODULES if not _importable(name)]
    if missing:
        raise click.UsageError(
            f"--backend warp needs warp-lang and mujoco-warp ({', '.join(missing)} cannot be imported); "
            "install them with pip install 'rlplast[gpu]', or use --backend cpu"
        )
    if device == "auto":
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError(
                "--backend warp: there is no CUDA GPU here, so Warp would simulate on its CPU device, far "
                "slower than --backend cpu; use --backend cpu, or add --device cpu to run Warp on the CPU anyway"
            )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
