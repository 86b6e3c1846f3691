"""The experiment file: several methods x several seeds on one task.

An experiment file (``configs/experiments/*.yaml``) names the task, the methods, the seeds, the
env steps per run, the simulator backend and dotted config overrides applied to every method.
:class:`ExperimentConfig` is its model and :func:`load_experiment` reads it, with command-line
flags replacing its fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlplast.cli_types import parse_seeds, parse_steps
from rlplast.config_files import UnknownConfigError, available, resolve


class ExperimentConfig(BaseModel):
    """One experiment file.

    Attributes:
        name: the results folder name (``results/<name>``).
        task: a task of configs/tasks (e.g. ``slippery_ant``).
        methods: methods of configs/methods, trained in this order (one run group each).
        seeds: run seeds, a list or a string such as ``"0-9"`` or ``"0,3,5"``.
        steps: env steps per run, an integer or a string such as ``"20M"``, ``"2e6"``, ``"300k"``.
        backend: the simulator: ``cpu`` (MuJoCo C), ``warp`` (mujoco_warp on a GPU), ``gym``
            (the Gymnasium adapter) or ``auto`` (resolved by the command as ``train`` does it:
            :func:`rlplast.commands.options.resolve_backend_device`).
        device: where the networks live (``cpu``, ``cuda``, ``cuda:1``); ``auto`` is ``cuda`` for
            the warp backend, else ``cpu``.
        parallel: run groups trained at once; ``auto`` is 1 on the CPU, and on a GPU as many as
            fit ``gpu_memory_per_group_gb`` each into the free memory.
        gpu_memory_per_group_gb: the memory one run group is assumed to need on a GPU.
        overrides: dotted config keys applied to every method, e.g.
            ``{"env.friction.schedule.every": 200000}``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    task: str = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    steps: int = Field(gt=0)
    backend: Literal["auto", "cpu", "warp", "gym"] = "auto"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    parallel: int | Literal["auto"] = "auto"
    gpu_memory_per_group_gb: float = Field(4.0, gt=0)
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, value: Any) -> Any:
        methods = [m.strip() for m in value.split(",")] if isinstance(value, str) else value
        if isinstance(methods, list):
            repeated = sorted({m for m in methods if methods.count(m) > 1})
            if repeated:
                raise ValueError(f"methods repeat {repeated}")
        return methods

    @field_validator("seeds", mode="before")
    @classmethod
    def _parse_seeds(cls, value: Any) -> Any:
        if isinstance(value, str | int) and not isinstance(value, bool):
            return parse_seeds(str(value))
        if isinstance(value, list) and all(isinstance(s, int) for s in value):
            return parse_seeds(",".join(map(str, value)))  # same checks (non-negative, no repeats)
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _parse_steps(cls, value: Any) -> Any:
        return parse_steps(value) if isinstance(value, str) else value

    @field_validator("parallel")
    @classmethod
    def _positive_parallel(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"parallel must be 'auto' or a positive integer, got {value}")
        return value

    @field_validator("overrides")
    @classmethod
    def _dotted_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key or any(not part for part in key.split(".")) or "=" in key:
                raise ValueError(f"override key {key!r} must be a dotted config key like 'agent.lr'")
        return value

    def resolved_device(self) -> str:
        """The device the networks train on."""
        if self.device != "auto":
            return self.device
        return "cuda" if self.backend == "warp" else "cpu"

    def override_args(self) -> list[str]:
        """The overrides as ``key=value`` strings for ``load_config`` (values as JSON, which YAML
        reads back unchanged)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]


def _validation_message(err: ValidationError) -> str:
    """One line per bad field: ``field: problem (got value)``."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown field; allowed: {', '.join(ExperimentConfig.model_fields)}")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required")
        else:
            lines.append(f"  {key}: {e['msg'].removeprefix('Value error, ')} (got {e['input']!r})")
    return "\n".join(lines)


def load_experiment(path: Path | None = None, **changes: Any) -> ExperimentConfig:
    """An experiment from a file, from ``changes`` alone (``path`` None), or a file with
    ``changes`` (e.g. command-line flags; None values are ignored) replacing its fields; changed
    ``overrides`` are added to the file's. ``path`` may also name a shipped experiment
    (``demo`` for ``configs/experiments/demo.yaml``; see :func:`rlplast.config_files.resolve`).

    Raises:
        FileNotFoundError: if there is no such file or shipped experiment.
        ValueError: if it is not a YAML mapping or a field is bad (the message names the source
            and each bad field).
    """
    data: dict[str, Any] = {}
    source = "experiment"
    if path is not None:
        try:
            path = resolve(path, "experiments")
        except UnknownConfigError:
            shipped = ", ".join(available("experiments"))
            raise FileNotFoundError(f"no experiment file at {path}; shipped experiments: {shipped}") from None
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: an experiment file is a YAML mapping with {list(ExperimentConfig.model_fields)}")
    changes = {k: v for k, v in changes.items() if v is not None}
    if isinstance(data.get("overrides"), dict) and "overrides" in changes:
        changes["overrides"] = {**data["overrides"], **changes["overrides"]}  # flags add to the file's
    data.update(changes)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"invalid {source}:\n{_validation_message(err)}") from None
