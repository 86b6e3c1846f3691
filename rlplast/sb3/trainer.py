"""Training stable-baselines3's PPO into rlplast's results layout (``implementation: sb3``).

``train_sb3(cfg, seeds, out_dir, steps)`` trains one SB3 PPO per seed, one after another (SB3 has
no run groups), on the task's Gymnasium env (rlplast.sb3.env) with the config's network and
hyperparameters (rlplast.sb3.model), and writes what rlplast's runner writes, per seed,
``out_dir/seed<k>/``: ``config.yaml``, ``meta.json``, TensorBoard events, ``metrics.csv`` (long
format ``step,tag,value``) and ``done.json`` at the end. ``rlplast compare`` and ``rlplast plot``
therefore read SB3 runs like any other method's.

Logged, at the same steps as the runner: ``charts/episodic_return`` and ``charts/episodic_length``
at the env step each episode ended; the plasticity tracker's ``plasticity/actor/...`` and
``plasticity/critic/...`` on the acting features (forward hooks on SB3's ``mlp_extractor``,
rlplast.sb3.layers); ``env/friction`` at each episode end that changed it and after each update;
after each update ``charts/sps``, ``losses/*`` (SB3's
policy, value, approx-KL, clip fraction, explained variance; entropy and mean log_std; the mean
gradient norms, rlplast.sb3.grad_norms) and, with a ``cbp`` plug-in, ``plasticity/cbp/replaced``.

Checkpoints (``out_dir/checkpoints/sb3_seed<k>.pt``, every ``run.checkpoint_every`` steps and at
the end) hold the policy and optimizer state dicts, the step and update counters, the tracker, the
CBP state, the friction schedule's position and the torch and NumPy RNG states. Resuming is exact
for all of these, but SB3 does not save its env: the resumed run starts a fresh episode (the
interrupted one is not logged) with the schedule where it was. Finished seeds are skipped; Ctrl-C
saves after the current update, as the runner does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch
from rich.progress import Progress
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv

import rlplast
from rlplast import log_writer as tags
from rlplast.atomic import atomic_write_json, atomic_write_text
from rlplast.checkpoint import load_checkpoint, save_checkpoint
from rlplast.config import Config
from rlplast.hparams import write_final_metrics, write_hparams
from rlplast.log_writer import GroupLog
from rlplast.progress import GroupProgress
from rlplast.run_support import (
    CHECKPOINT_DIR,
    CONFIG_NAME,
    DONE_NAME,
    NETWORK_TAGS,
    finished_steps,
    git_info,
    resolve_device,
    run_dir,
    save_after_update,
    stop_on_signals,
    train_with_progress,
)
from rlplast.sb3.cbp import PolicyCBP
from rlplast.sb3.env import make_env
from rlplast.sb3.grad_norms import GradNormMeter, actor_critic_parameters
from rlplast.sb3.layers import policy_networks
from rlplast.sb3.model import build_sb3_ppo, check_supported
from rlplast.tracking import PlasticityTracker

# SB3 logger keys -> our loss names (losses/<name>)
SB3_LOSSES = {
    "train/policy_gradient_loss": "policy_loss",
    "train/value_loss": "value_loss",
    "train/approx_kl": "approx_kl",
    "train/clip_fraction": "clip_fraction",
    "train/explained_variance": "explained_variance",
}
RESET_SALT = 0x5E5


def checkpoint_path(out_dir: Path, seed: int) -> Path:
    """``out_dir/checkpoints/sb3_seed<k>.pt`` (apart from the runner's ``seeds_<list>.pt``)."""
    return Path(out_dir) / CHECKPOINT_DIR / f"sb3_seed{seed}.pt"


class _StepLogger(BaseCallback):
    """Per env step: feeds the tracker, logs finished episodes, friction changes and due metrics."""

    def __init__(self, tracker: PlasticityTracker, logs: GroupLog):
        super().__init__()
        self.tracker, self.logs = tracker, logs
        self.returns: list[float] = []
        self.friction: float | None = None  # the friction in effect, to log a change at its step

    def _on_training_start(self) -> None:
        if self.friction is None:
            self.friction = float(self.training_env.get_attr("friction")[0])

    def _on_step(self) -> bool:
        step = self.num_timesteps
        self.tracker.observe()
        values = self.tracker.maybe_compute(step)
        if values:
            self.logs.scalars(values, step)
        run = self.logs.runs[0]
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None:
                run.scalar(tags.EPISODIC_RETURN, episode["r"], step)
                run.scalar(tags.EPISODIC_LENGTH, episode["l"], step)
                self.returns.append(float(episode["r"]))
                # a schedule change takes effect at the reset that follows an episode end
                friction = float(self.training_env.get_attr("friction")[0])
                if friction != self.friction:
                    run.scalar(tags.FRICTION, friction, step)
                    self.friction = friction
        return True


def _numpy_rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "gauss": [has_gauss, gauss]}


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, int(state["pos"]), int(state["gauss"][0]), float(state["gauss"][1])))


class SB3Run:
    """One seed's SB3 PPO with rlplast's logging, metrics and checkpoints.

    Args:
        cfg: the resolved config (``implementation: sb3``).
        seed: the run seed (SB3's seed, the schedule's seed, the init's seed).
        out_dir: the method's results folder.
        device: torch device of the policy.
    """

    def __init__(self, cfg: Config, seed: int, out_dir: Path, device: torch.device):
        self.cfg, self.seed, self.device = cfg, int(seed), device
        self.dir = run_dir(out_dir, seed)
        self.ckpt_path = checkpoint_path(out_dir, seed)
        self.resolved = cfg.training_dict()
        self.env = DummyVecEnv([lambda: make_env(cfg.env, self.seed)])
        self.model = build_sb3_ppo(cfg, self.env, self.seed, device)
        self.model.set_logger(Logger(folder=None, output_formats=[]))  # no SB3 files or prints
        networks = policy_networks(self.model.policy)
        self.tracker = PlasticityTracker(cfg.metrics, networks, 1, device)
        cbps = [p for p in cfg.plugins if p.kind == "cbp"]
        self.cbp = PolicyCBP(self.model.policy, cbps[0], self.seed, networks) if cbps else None
        resume_step = self._restore() if self.ckpt_path.exists() else None
        self.logs = GroupLog([self.dir], resume_step)
        self.callback = _StepLogger(self.tracker, self.logs)
        self.grad_norms = GradNormMeter(self.model.policy.optimizer, actor_critic_parameters(self.model.policy))
        self._write_run_files(fresh=resume_step is None)

    @property
    def run_step(self) -> int:
        return int(self.model.num_timesteps)

    def _write_run_files(self, fresh: bool) -> None:
        meta = {
            **git_info(),
            "rlplast_version": rlplast.__version__,
            "torch_version": torch.__version__,
            "sb3_version": stable_baselines3.__version__,
            "implementation": "sb3",
            "group_seeds": [self.seed],
            "backend": "gymnasium",
            "device": str(self.device),
        }
        text = self.cfg.to_yaml()
        (self.dir / DONE_NAME).unlink(missing_ok=True)  # continuing a finished run to more steps
        atomic_write_text(self.dir / CONFIG_NAME, text)
        atomic_write_json(self.dir / "meta.json", meta)
        if fresh:
            self.logs.text("config", ["    " + text.replace("\n", "\n    ")])
            write_hparams(self.logs.runs[0].tb, self.cfg, self.seed)

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        model = self.model
        return {
            "seed": self.seed,
            "num_timesteps": self.run_step,
            "n_updates": int(model._n_updates),
            "policy": model.policy.state_dict(),
            "optimizer": model.policy.optimizer.state_dict(),
            "tracker": self.tracker.state_dict(),
            "cbp": self.cbp.state_dict() if self.cbp is not None else {},
            "schedule": self.env.env_method("schedule_state")[0],
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": _numpy_rng_state(),
        }

    def save(self) -> None:
        # logs first: a crash between the two then leaves rows past the checkpoint, which a
        # resume truncates, never a checkpoint past rows that are lost
        self.logs.flush(durable=True)
        save_checkpoint(self.ckpt_path, self.state_dict(), self.resolved)

    def _restore(self) -> int:
        state = load_checkpoint(self.ckpt_path, self.resolved)
        model = self.model
        model.policy.load_state_dict(state["policy"])
        model.policy.optimizer.load_state_dict(state["optimizer"])
        self.tracker.load_state_dict(state["tracker"])
        if self.cbp is not None:
            self.cbp.load_state_dict(state["cbp"])
        step = int(state["num_timesteps"])
        model.num_timesteps, model._n_updates = step, int(state["n_updates"])
        # a fresh episode (SB3 keeps no env state), its reset noise seeded by (seed, step)
        self.env.seed(self.seed * 1_000_003 + RESET_SALT + step)
        model._last_obs = self.env.reset()
        model._last_episode_starts = np.ones(1, dtype=bool)
        self.env.env_method("load_schedule_state", state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        _set_numpy_rng_state(state["numpy_rng"])
        return step

    # -- training -------------------------------------------------------------------------------

    def _log_update(self, sps: float) -> float:
        """Losses, friction, SPS and CBP counts after an update; returns the friction."""
        model, values = self.model, {}
        logged = model.logger.name_to_value
        for key, name in SB3_LOSSES.items():
            if key in logged:
                values[tags.loss_tag(name)] = [float(logged[key])]
        log_std = model.policy.log_std.detach()
        values[tags.loss_tag("log_std")] = [float(log_std.mean())]
        values[tags.loss_tag("entropy")] = [float((log_std + 0.5 * (1.0 + np.log(2 * np.pi))).sum())]
        friction = float(self.env.get_attr("friction")[0])
        norms = self.grad_norms.pop_means()
        if norms:
            values[tags.loss_tag("grad_norm")] = [norms["total"]]
            values[NETWORK_TAGS["actor_grad_norm"]] = [norms["actor"]]
            values[NETWORK_TAGS["critic_grad_norm"]] = [norms["critic"]]
        values[tags.FRICTION] = [friction]
        values[tags.SPS] = [sps]
        values |= self.tracker.after_update()  # weight change per update
        if self.cbp is not None:
            for name, v in self.cbp.stats().items():
                values[f"plasticity/{name}"] = v
        self.logs.scalars(values, self.run_step)
        return friction

    def train(self, steps: int, stop: Any, progress: GroupProgress) -> None:
        """Train until ``steps`` env steps (whole updates), then write ``done.json``."""
        every = self.cfg.run.checkpoint_every
        per_update = self.model.n_steps * self.env.num_envs
        while self.run_step < steps:
            start = time.perf_counter()
            previous = self.run_step
            self.model.learn(per_update, callback=self.callback, reset_num_timesteps=False, log_interval=None)
            sps = (self.run_step - previous) / (time.perf_counter() - start)
            friction = self._log_update(sps)
            recent = self.callback.returns[-10:]
            progress.update(self.run_step, sps, sum(recent) / len(recent) if recent else None, friction)
            save_after_update(self, stop, previous, every, steps)
        write_final_metrics(self.logs.runs[0], self.cfg, self.seed, self.run_step)
        atomic_write_json(self.dir / DONE_NAME, {"steps": self.run_step, "group_seeds": [self.seed], **git_info()})

    def close(self) -> None:
        self.grad_norms.remove()
        if self.cbp is not None:
            self.cbp.detach()
        self.logs.close()
        self.env.close()


def train_sb3(
    cfg: Config,
    seeds: Sequence[int],
    out_dir: Path,
    steps: int,
    device: str = "cpu",
    progress: Progress | None = None,
) -> None:
    """Train SB3's PPO for each seed to ``steps`` env steps (see the module doc).

    Args:
        cfg: the resolved config; must pass :func:`rlplast.sb3.model.check_supported`.
        seeds: run seeds (distinct); one SB3 model each, trained in turn.
        out_dir: the method's results folder, e.g. ``results/<experiment>/<method>``.
        steps: env steps per run (rounded up to whole updates).
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: a display from :func:`rlplast.progress.make_progress`, or None.

    Raises:
        ValueError: bad seeds or steps, or a config SB3 cannot follow.
        Interrupted: on SIGINT/SIGTERM, after saving a checkpoint.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    check_supported(cfg)
    dev = resolve_device(device)
    pending = [s for s in seeds if (finished_steps(out_dir, s) or 0) < steps]
    with stop_on_signals() as stop:
        for seed in pending:
            run = SB3Run(cfg, seed, Path(out_dir), dev)
            train_with_progress(run, f"{cfg.method} seed {seed} (sb3)", steps, stop, progress, cfg)
