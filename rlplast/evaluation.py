"""Deterministic evaluation: episodes of a policy's mean action at a fixed friction.

Shared by ``rlplast evaluate`` (trained checkpoints) and the periodic evaluation during training
(the ``eval:`` config section, logged as ``eval/return``). An evaluation of one run builds its own
VecEnv of E = ``episodes`` envs at a constant friction, resets them from
:func:`evaluation_reset_seed` of the run's seed and steps them until each env has ended one
episode; env e's episode is episode e. Nothing is drawn from the training's generators, and the
result depends only on (weights, run seed, friction, episodes), so evaluating during training
changes nothing in the training and a resumed run logs the same values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import nn

from rlplast.envs import make_vec_env
from rlplast.envs.vec import EnvConfig

EVAL_RETURN = "eval/return"
EVAL_LENGTH = "eval/length"


class EvalConfig(BaseModel):
    """The ``eval:`` section: periodic deterministic evaluation during training (off by default).

    Not part of the config hash: it changes what is logged, never what is trained.
    """

    model_config = ConfigDict(extra="forbid")

    every: PositiveInt | None = Field(
        None, description="env steps per run between evaluations (at the first update past each multiple); null = off"
    )
    episodes: PositiveInt = Field(5, description="deterministic episodes per run and evaluation")


@dataclass
class Episodes:
    """Returns and lengths of E episodes, ``[E]`` each (float64, int64)."""

    returns: np.ndarray
    lengths: np.ndarray


def evaluation_reset_seed(run_seed: int) -> int:
    """The reset seed of the evaluation envs of the run seeded ``run_seed``: env e starts from
    ``rlplast.envs.seeding.env_rng(evaluation_reset_seed(run_seed), e)``. A stream of its own
    (never one of the training envs'), the same at every evaluation, so that evaluations at
    different steps start from the same states."""
    digest = hashlib.sha256(f"rlplast evaluation {int(run_seed)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def trained_friction(env_cfg: EnvConfig, run_seed: int, step: int) -> float:
    """The friction the run's schedule gave its last step trained, when it had trained ``step`` steps."""
    return env_cfg.friction.schedule.at(int(run_seed), max(int(step) - 1, 0))


def fixed_friction_env(env_cfg: EnvConfig, friction: float, episodes: int) -> EnvConfig:
    """``env_cfg`` at a constant ``friction`` with ``episodes`` envs (one per episode)."""
    data = env_cfg.model_dump()
    data["friction"] |= {"schedule": {"kind": "constant", "value": float(friction)}, "apply": "immediate"}
    return EnvConfig.model_validate(data | {"envs_per_run": episodes})


def run_episodes(
    actor: nn.Module, env_cfg: EnvConfig, friction: float, episodes: int, run_seed: int, backend: str = "auto"
) -> Episodes:
    """``episodes`` deterministic episodes of ``actor`` (obs ``[B, obs_dim]`` -> mean action
    ``[B, act_dim]``, on the CPU) at a constant ``friction``.

    Args:
        actor: e.g. :class:`rlplast.policy.GaussianActor`.
        env_cfg: the run's env config (its schedule is replaced by ``friction``).
        friction: the sliding friction of every episode.
        episodes: E, stepped side by side.
        run_seed: the trained run's seed (the reset states follow from it).
        backend: VecEnv backend; ``auto`` is the CPU simulator for Ant-v5, Gymnasium otherwise.
    """
    env = make_vec_env(fixed_friction_env(env_cfg, friction, episodes), 1, backend, "cpu")
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    ended = np.zeros(episodes, dtype=bool)
    try:
        obs = env.reset([evaluation_reset_seed(run_seed)])
        with torch.inference_mode():
            while not ended.all():  # every env ends within max_episode_steps
                result = env.step(actor(obs))
                obs = result.obs
                length = result.info["episode_length"].numpy()
                new = (length > 0) & ~ended
                returns[new] = result.info["episode_return"].double().numpy()[new]
                lengths[new] = length[new]
                ended |= new
    finally:
        env.close()
    return Episodes(returns, lengths)


class PeriodicEvaluation:
    """Evaluation of a run group every ``cfg.every`` env steps, at each run's friction of the moment.

    Args:
        cfg: the ``eval:`` section (``every`` set).
        env_cfg: the training's env config.
        seeds: the group's run seeds.
    """

    def __init__(self, cfg: EvalConfig, env_cfg: EnvConfig, seeds: Sequence[int]):
        if cfg.every is None:
            raise ValueError("eval.every is null: periodic evaluation is off")
        self.cfg = cfg
        self.env_cfg = env_cfg
        self.seeds = [int(s) for s in seeds]

    def due(self, previous: int, now: int) -> bool:
        """Whether an update that took the run from step ``previous`` to ``now`` crossed a multiple of ``every``."""
        return now // self.cfg.every > previous // self.cfg.every

    def __call__(self, actor: nn.Module, step: int) -> dict[str, list[float]]:
        """``{eval/return: [R], eval/length: [R]}``: each run's mean over its episodes, at the
        friction of its last step trained (:func:`trained_friction`). ``actor`` is the group's
        :class:`rlplast.agents.networks.Actor`."""
        from rlplast.policy import GaussianActor

        means: dict[str, list[float]] = {EVAL_RETURN: [], EVAL_LENGTH: []}
        for r, seed in enumerate(self.seeds):
            friction = trained_friction(self.env_cfg, seed, step)
            result = run_episodes(GaussianActor.from_group(actor, r), self.env_cfg, friction, self.cfg.episodes, seed)
            means[EVAL_RETURN].append(float(result.returns.mean()))
            means[EVAL_LENGTH].append(float(result.lengths.mean()))
        return means
