"""TensorBoard HParams for each run: method, task and key hyperparameters, with final metrics.

A fresh run writes the HParams plugin's experiment and session-start summaries into its own
event file (one session per run folder), so ``tensorboard --logdir results/<experiment>`` lists
every run in the HParams table with the same columns, whatever the method. The metric columns
are scalar tags the runs log; TensorBoard shows each one's last value. At the end of training a
run logs ``final/episodic_return`` (the mean return of its last :data:`FINAL_EPISODES`
episodes, read back from metrics.csv so that a resumed run counts the episodes before the
resume) and closes its session as a success.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from rlplast.config import Config
from rlplast.evaluation import EVAL_RETURN
from rlplast.log_writer import CSV_NAME, EPISODIC_RETURN, RunLog
from rlplast.tracking import tag

FINAL_RETURN = "final/episodic_return"
FINAL_EPISODES = 10
# the metric columns of the HParams table (tags every run logs; eval/return only with eval.every)
METRICS = (
    FINAL_RETURN,
    EPISODIC_RETURN,
    EVAL_RETURN,
    tag("actor", "stable_rank"),
    tag("actor", "dormant_fraction"),
    tag("critic", "stable_rank"),
    tag("critic", "dormant_fraction"),
    tag("actor", "weight_magnitude"),
)


def _describe(model: Any) -> str:
    """A config section as ``kind(key=value, ...)`` (defaults included), for a string column."""
    data = model.model_dump(mode="json")
    kind = data.pop("kind", type(model).__name__)
    return f"{kind}(" + ", ".join(f"{k}={v}" for k, v in data.items()) + ")"


def run_hparams(cfg: Config, seed: int) -> dict[str, str | float | int | bool]:
    """The HParams columns of a run: the same keys for every method (numbers, strings, booleans)."""
    agent, opt, env = cfg.agent, cfg.optimizer, cfg.env
    return {
        "method": cfg.method,
        "task": cfg.task,
        "seed": int(seed),
        "implementation": cfg.implementation,
        "env": env.id,
        "friction_schedule": _describe(env.friction.schedule),
        "friction_mode": env.friction.mode,
        "steps": int(cfg.run.steps),
        "envs_per_run": env.envs_per_run,
        "optimizer": opt.kind,
        "lr": opt.lr,
        "weight_decay": opt.weight_decay,
        "plugins": " + ".join(_describe(p) for p in cfg.plugins) or "none",
        "hidden": "x".join(str(h) for h in agent.hidden),
        "activation": agent.activation,
        "steps_per_update": agent.steps_per_update,
        "epochs": agent.epochs,
        "minibatches": agent.minibatches,
        "clip": agent.clip,
        "gamma": agent.gamma,
        "gae_lambda": agent.gae_lambda,
        "entropy_coef": agent.entropy_coef,
        "value_coef": agent.value_coef,
        "max_grad_norm": agent.max_grad_norm if agent.max_grad_norm is not None else 0.0,
        "eval_every": cfg.eval.every or 0,
    }


def _write(writer: SummaryWriter, summaries: Any) -> None:
    for summary in summaries:
        writer._get_file_writer().add_summary(summary)


def write_hparams(writer: SummaryWriter, cfg: Config, seed: int) -> None:
    """Start the run's HParams session (experiment and session-start summaries)."""
    experiment, start, _ = hparams(run_hparams(cfg, seed), dict.fromkeys(METRICS, 0.0))
    _write(writer, (experiment, start))


def final_return(run_dir: Path, episodes: int = FINAL_EPISODES) -> float | None:
    """Mean return of the last ``episodes`` episodes in the run's metrics.csv (None: none logged)."""
    from rlplast.report.metrics_csv import read_metrics

    series = read_metrics(Path(run_dir) / CSV_NAME, {EPISODIC_RETURN}).get(EPISODIC_RETURN)
    if series is None or not len(series.values):
        return None
    return float(np.mean(series.values[-episodes:]))


def write_final_metrics(run: RunLog, cfg: Config, seed: int, step: int) -> None:
    """Log ``final/episodic_return`` at ``step`` and end the run's HParams session as a success.

    The run's rows must be on disk (flushed) first."""
    value = final_return(run.run_dir)
    if value is not None:
        run.scalar(FINAL_RETURN, value, step)
    _, _, end = hparams(run_hparams(cfg, seed), {})
    _write(run.tb, (end,))
    run.flush()
