"""Fixtures for the report tests: hand-made run folders in the on-disk results format."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml

Row = tuple[int, str, float]


def write_run(run_dir: Path, rows: Iterable[Row], done: bool = True) -> Path:
    """Write ``metrics.csv`` (``step,tag,value``), a config.yaml and, if ``done``, done.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = ["step,tag,value"] + [f"{s},{t},{v}" for s, t, v in rows]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run_dir / "config.yaml").write_text("seed: 0\n")
    if done:
        (run_dir / "done.json").write_text(json.dumps({"finished": True}))
    return run_dir


def write_meta(exp_dir: Path, **meta: object) -> None:
    """Write the experiment.yaml that ``rlplast compare`` leaves in an experiment folder."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "experiment.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


@pytest.fixture
def make_run() -> Callable[..., Path]:
    return write_run


@pytest.fixture
def make_meta() -> Callable[..., None]:
    return write_meta
