"""The typed config of a training run: YAML files composed (task + method) plus dotted overrides.

``load_config("slippery_ant", "ppo_tuned", ["agent.epochs=5"])`` reads
``configs/tasks/slippery_ant.yaml``, merges ``configs/methods/ppo_tuned.yaml`` over it (a method
file holds only what differs from the PPO defaults), applies the overrides and validates the
result into a :class:`Config`. Dicts merge key by key; lists and scalars are replaced. A task or
method may also be given as a path to a YAML file. (The configs ship inside the package:
``rlplast.config_files`` finds them.)

Unknown keys and bad values raise :class:`ConfigError`, whose message names each offending key
(``agent.lr: unknown key; allowed: ...``).
"""

from __future__ import annotations

import copy
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from rlplast.agents.plasticity import OptimizerConfig, PluginConfig
from rlplast.agents.ppo import PPOConfig
from rlplast.cli_types import parse_steps
from rlplast.config_files import CONFIG_DIR, UnknownConfigError, available, resolve  # noqa: F401 (re-exported)
from rlplast.envs.vec import EnvConfig
from rlplast.evaluation import EvalConfig
from rlplast.nested import flatten
from rlplast.tracking import MetricsConfig

_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_STEPS_RE = re.compile(r"^\d+(\.\d+)?[kKmMgG]$")


class ConfigError(ValueError):
    """A config that cannot be composed or validated; the message names the keys."""


class RunConfig(BaseModel):
    """The ``run:`` section: how long to train and how often to save (not part of the config hash)."""

    model_config = ConfigDict(extra="forbid")

    steps: PositiveInt = Field(20_000_000, description="env steps per run; the CLI's --steps overrides it")
    checkpoint_every: PositiveInt = Field(500_000, description="env steps per run between checkpoints")
    torch_threads: PositiveInt | None = Field(None, description="torch.set_num_threads; null = torch's default")
    act_threads: PositiveInt | None = Field(
        1,
        description="torch threads while acting on the CPU (tiny matmuls run fastest on one); null = as torch_threads",
    )


class Config(BaseModel):
    """A resolved training config: one task, one method."""

    model_config = ConfigDict(extra="forbid")

    task: str = "custom"
    method: str = "custom"
    env: EnvConfig = Field(default_factory=EnvConfig)
    agent: PPOConfig = Field(default_factory=PPOConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    plugins: list[PluginConfig] = Field(default_factory=list)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    implementation: Literal["rlplast", "sb3"] = Field(
        "rlplast", description="who trains: rlplast's PPO, or stable-baselines3's PPO (rlplast.sb3) as a reference"
    )

    @model_validator(mode="after")
    def _check_rollout(self) -> Config:
        if self.agent.steps_per_update % self.env.envs_per_run:
            raise ValueError(
                f"agent.steps_per_update ({self.agent.steps_per_update}) must be a multiple of "
                f"env.envs_per_run ({self.env.envs_per_run})"
            )
        return self

    def training_dict(self) -> dict[str, Any]:
        """What determines the training (hashed into checkpoints): all but names, ``run`` and
        ``eval`` (which only adds logged evaluations).

        ``implementation`` is left out at its default, so that checkpoints written before the
        field existed still resume."""
        exclude = {"task", "method", "run", "eval"} | (
            {"implementation"} if self.implementation == "rlplast" else set()
        )
        return self.model_dump(mode="json", exclude=exclude)

    def to_yaml(self) -> str:
        """The resolved config (every default filled in) as YAML that :func:`validate` reads back."""
        data: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, list):
                data[name] = [_loadable_dump(v) if isinstance(v, BaseModel) else v for v in value]
            else:
                data[name] = _loadable_dump(value) if isinstance(value, BaseModel) else value
        return yaml.safe_dump(data, sort_keys=False)


def _loadable_dump(model: BaseModel) -> dict[str, Any]:
    """Every field of ``model``, unless a validator of the section rejects fields it was not given
    (e.g. UPGD-only optimizer fields under Adam): then only the fields that were set."""
    full = model.model_dump(mode="json")
    try:
        type(model).model_validate(full)
    except ValidationError:
        return model.model_dump(mode="json", exclude_unset=True)
    return full


# -- composition --------------------------------------------------------------------------------


def _resolve(name: str, kind: str) -> Path:
    try:
        return resolve(name, kind)
    except UnknownConfigError as err:
        raise ConfigError(str(err)) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file's mapping (an empty file is ``{}``).

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 or not valid YAML (one line naming it).
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge recursively, everything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """An override's value: YAML (numbers, booleans, null, lists, mappings), plus ``3e-4``
    (which YAML 1.1 reads as a string) and step counts like ``500k`` or ``2M``.

    Raises:
        ConfigError: ``text`` is not valid YAML (e.g. ``[64,abc``).
    """
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "unreadable"
        raise ConfigError(
            f"value {text!r} is not valid YAML ({problem}); write lists as [64, 64], and quote a string "
            "that holds brackets or a colon"
        ) from None
    if isinstance(value, str):
        if _NUMBER_RE.match(value):
            return float(value)
        if _STEPS_RE.match(value):
            return parse_steps(value)
    return value


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``"a.b.c=value"`` to ``data`` in place (list items by index: ``plugins.0.tau=0.2``)."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"bad override {override!r}: expected key=value, e.g. agent.epochs=5")
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key!r}: {where} is not an index of a list of {len(node)} items")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])} is a value, not a section")
        if last:
            try:
                node[part] = parse_value(text)
            except ConfigError as err:
                raise ConfigError(f"override {key!r}: {err}") from None
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}  # a section the files left at its defaults
            node = node[part]


NAME_KEYS = ("task", "method")  # set by the files chosen, never by an override
DEFAULT_ENV_ID = EnvConfig.model_fields["id"].default


def load_config(task: str, method: str, overrides: Sequence[str] = ()) -> Config:
    """Compose ``configs/tasks/<task>.yaml``, ``configs/methods/<method>.yaml`` and the overrides.

    Raises:
        ConfigError: unknown task/method, bad YAML, bad override syntax, unknown keys or bad
            values (each named by its dotted key).
    """
    task_path, method_path = _resolve(task, "tasks"), _resolve(method, "methods")
    data = deep_merge(read_yaml(task_path), read_yaml(method_path))
    data.setdefault("task", task_path.stem)
    data.setdefault("method", method_path.stem)
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key in NAME_KEYS:
            raise ConfigError(
                f"override {key!r}: the {key} is a name, which would only relabel the run; "
                f"choose the {key} itself with --{key}"
            )
        apply_override(data, override)
    _refuse_other_env(task_path, data)
    return validate(data, source=f"task {task_path.stem!r} + method {method_path.stem!r}")


def _env_id(data: Mapping[str, Any]) -> Any:
    """The ``env.id`` of a task file's or a config's data (EnvConfig's default if unset)."""
    env = data.get("env")
    return env.get("id", DEFAULT_ENV_ID) if isinstance(env, Mapping) else DEFAULT_ENV_ID


def tasks_of_env(env_id: str) -> list[str]:
    """The shipped tasks that train ``env_id``."""
    return [name for name in available("tasks") if _env_id(read_yaml(resolve(name, "tasks"))) == env_id]


def _refuse_other_env(task_path: Path, data: Mapping[str, Any]) -> None:
    """A run is labelled with its task's name, so an override may not swap in another env.

    Raises:
        ConfigError: ``env.id`` differs from the task file's (one line naming the tasks of the
            new id, if any).
    """
    own, new = _env_id(read_yaml(task_path)), _env_id(data)
    if new == own:
        return
    matching = tasks_of_env(new) if isinstance(new, str) else []
    hint = (
        f"choose a task of {new}: {', '.join(matching)}"
        if matching
        else "write a task file for it (see configs/tasks/) and pass its path to --task"
    )
    raise ConfigError(
        f"override 'env.id': task {task_path.stem!r} trains {own}, and a run on {new} would carry its name; {hint}"
    )


def validate(data: Mapping[str, Any], source: str = "config") -> Config:
    """A :class:`Config` from a plain dict (e.g. a saved ``config.yaml``), with readable errors.

    Every number must be finite (YAML reads ``.inf`` and ``nan``; no setting means them)."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid {source}:\n" + format_errors(err)) from None
    values = flatten(cfg.model_dump())
    bad = [
        f"  {key}: {value} is not a finite number"
        for key, value in values.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]
    if bad:
        raise ConfigError(f"invalid {source}:\n" + "\n".join(bad))
    return cfg


# -- error messages -----------------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return []
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]
    elif origin not in (typing.Union, types.UnionType, list, tuple):
        return []
    return [m for a in args for m in _models_in(a)]


def _walk(loc: Sequence[Any]) -> tuple[type[BaseModel] | None, str]:
    """Follow an error location through the Config models.

    Returns:
        The model whose fields sit at ``loc`` (None if it cannot be told) and the dotted key, in
        which the tags pydantic inserts for discriminated unions (``schedule.piecewise.every``)
        are left out (``schedule.every``).
    """
    models: list[type[BaseModel]] = [Config]
    parts: list[str] = []
    for part in loc:
        tagged = [m for m in models if getattr(m.model_fields.get("kind"), "default", None) == part]
        if tagged:
            models = tagged
            continue
        parts.append(str(part))
        if isinstance(part, int):
            continue
        models = [
            m for model in models if part in model.model_fields for m in _models_in(model.model_fields[part].annotation)
        ]
    return (models[0] if len(models) == 1 else None), ".".join(parts)


def format_errors(err: ValidationError) -> str:
    """One line per error, ``dotted.key: message``; unknown keys list the allowed ones."""
    lines = []
    for e in err.errors():
        model, key = _walk(e["loc"][:-1])
        key = ".".join(p for p in (key, str(e["loc"][-1]) if e["loc"] else "") if p) or "<top>"
        if e["type"] == "extra_forbidden":
            allowed = f"; allowed: {', '.join(model.model_fields)}" if model else ""
            hint = " (the learning rate is optimizer.lr)" if key == "agent.lr" else ""
            lines.append(f"  {key}: unknown key{hint}{allowed}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e['input']!r})")
    return "\n".join(lines)
