"""The training loop of a run group, with logging, checkpoints and exact resume.

``train_group(cfg, seeds, out_dir, steps)`` trains one method for several seeds as one run group
(every weight ``[R, ...]``, one VecEnv of R x E envs) and writes, per seed,
``out_dir/seed<k>/``: ``config.yaml``, ``meta.json`` (code version), TensorBoard events,
``metrics.csv`` and, once finished, ``done.json``. The group's checkpoint (weights, optimizer and
plug-in state, tracker windows, simulator state, RNG states, counters) is
``out_dir/checkpoints/seeds_<list>.pt``: one file per group, since the simulator state of a
group's envs is one object.

Calling it again with the same arguments resumes every unfinished group from its checkpoint and
skips finished seeds; a larger ``steps`` continues finished runs from their final checkpoint.
Ctrl-C or SIGTERM finishes the current update, saves a checkpoint and raises
:class:`Interrupted`; a second Ctrl-C aborts at once (the previous checkpoint stays valid).
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from torch import Tensor

import rlplast
from rlplast import log_writer as tags
from rlplast.agents.ppo import PPO
from rlplast.atomic import atomic_write_json, atomic_write_text
from rlplast.checkpoint import load_checkpoint, save_checkpoint
from rlplast.cli_types import format_seeds
from rlplast.config import Config
from rlplast.envs.vec import VecEnv, make_vec_env
from rlplast.evaluation import PeriodicEvaluation
from rlplast.hparams import write_final_metrics, write_hparams
from rlplast.locks import hold, run_lock
from rlplast.log_writer import GroupLog
from rlplast.progress import GroupProgress
from rlplast.run_support import (  # noqa: F401  (re-exported: rlplast.runner.<name> stays valid)
    CONFIG_LOCK,
    CONFIG_NAME,
    DONE_NAME,
    NETWORK_TAGS,
    Interrupted,
    _StopFlag,
    checkpoint_path,
    default_rng_seed,
    finished_steps,
    git_info,
    has_checkpoint,
    paused_gc,
    reached_steps,
    refuse_other_configs,
    resolve_device,
    run_dir,
    save_after_update,
    saved_groups,
    stop_on_signals,
    stopped_group_record,
    torch_threads,
    train_with_progress,
)
from rlplast.tracking import PlasticityTracker


class RunGroup:
    """One run group: env, agent, tracker and logs of R seeds trained in lockstep.

    Args:
        cfg: the resolved config.
        seeds: one per run (R = len(seeds)).
        out_dir: the method's results folder (``<out_dir>/seed<k>/`` per run).
        backend: VecEnv backend (``cpu``, ``gym``, ``warp``, ``auto``).
        device: where the networks (and the env's tensors) live.
    """

    def __init__(self, cfg: Config, seeds: Sequence[int], out_dir: Path, backend: str, device: torch.device):
        self.cfg = cfg
        self.seeds = list(seeds)
        self.out_dir = Path(out_dir)
        self.device = device
        self.run_dirs = [run_dir(out_dir, s) for s in self.seeds]
        self.ckpt_path = checkpoint_path(out_dir, self.seeds)
        self.resolved = cfg.training_dict()
        torch.manual_seed(default_rng_seed(self.seeds))  # a resume restores the saved state below

        self.env: VecEnv = make_vec_env(cfg.env, len(self.seeds), backend, device)
        E = self.env.envs_per_run
        self.agent = PPO(
            cfg.agent, self.env.obs_dim, self.env.act_dim, self.seeds, E, cfg.optimizer, cfg.plugins, device
        )
        nets = {"actor": self.agent.actor.mlp, "critic": self.agent.critic.mlp}
        self.tracker = PlasticityTracker(cfg.metrics, nets, len(self.seeds), device)
        self.evaluation = PeriodicEvaluation(cfg.eval, cfg.env, self.seeds) if cfg.eval.every else None
        self.run_step = 0
        self.friction_before: Tensor | None = None  # [R]: each run's friction before the next rollout
        self.obs: Tensor | None = None
        self.last_return: float | None = None
        resume_step = self._restore() if self.ckpt_path.exists() else None
        if resume_step is None:
            self.obs = self.env.reset(self.seeds).to(device)
        self.logs = GroupLog(self.run_dirs, resume_step)
        self._write_run_files(fresh=resume_step is None, backend=backend)
        self._ep_return = self._ep_length = torch.empty(0)  # [T, N] each, of the last rollout
        self._friction = torch.empty(0)  # [T, R]: each run's mean friction after each step of the last rollout

    # -- files ----------------------------------------------------------------------------------

    def _write_run_files(self, fresh: bool, backend: str) -> None:
        meta = {
            **git_info(),
            "rlplast_version": rlplast.__version__,
            "torch_version": torch.__version__,
            "group_seeds": self.seeds,
            "backend": backend,
            "device": str(self.device),
        }
        text = self.cfg.to_yaml()
        for d in self.run_dirs:
            (d / DONE_NAME).unlink(missing_ok=True)  # continuing a finished run to more steps
            atomic_write_text(d / CONFIG_NAME, text)
            atomic_write_json(d / "meta.json", meta)
        if fresh:
            block = "    " + text.replace("\n", "\n    ")  # markdown code block for TensorBoard
            self.logs.text("config", [block] * len(self.seeds))
            self.logs.text("meta", [f"    {json.dumps(meta)}"] * len(self.seeds))
            for seed, run in zip(self.seeds, self.logs.runs, strict=True):
                write_hparams(run.tb, self.cfg, seed)

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "run_step": self.run_step,
            "obs": self.obs.cpu(),
            "agent": self.agent.state_dict(),
            "env": self.env.state_dict(),
            "tracker": self.tracker.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "last_return": self.last_return,
            "friction_before": self.friction_before,
        }

    def save(self) -> None:
        # logs first: a crash between the two then leaves rows past the checkpoint, which a
        # resume truncates, never a checkpoint past rows that are lost
        self.logs.flush(durable=True)
        save_checkpoint(self.ckpt_path, self.state_dict(), self.resolved)

    def _restore(self) -> int:
        state = load_checkpoint(self.ckpt_path, self.resolved)
        if list(state["seeds"]) != self.seeds:
            raise ValueError(f"{self.ckpt_path} holds seeds {state['seeds']}, expected {self.seeds}")
        self.agent.load_state_dict(state["agent"])
        self.env.load_state_dict(state["env"])
        self.tracker.load_state_dict(state["tracker"])
        torch.set_rng_state(state["torch_rng"])
        self.obs = state["obs"].to(self.device)
        self.run_step = int(state["run_step"])
        self.last_return = state["last_return"]
        self.friction_before = state.get("friction_before")  # absent from checkpoints before it was kept
        return self.run_step

    # -- training -------------------------------------------------------------------------------

    def _rollout(self) -> Tensor:
        """One rollout into the agent's storage; returns the friction of the last step ``[N]``."""
        agent, env, tracker = self.agent, self.env, self.tracker
        E, step0 = env.envs_per_run, self.run_step
        obs = self.obs
        threads = self.cfg.run.act_threads if self.device.type == "cpu" else None
        ep_returns: list[Tensor] = []
        ep_lengths: list[Tensor] = []
        frictions: list[Tensor] = []
        update_threads = torch.get_num_threads()
        same_device = env.device == self.device  # then no .to() calls per step (each costs a dispatch)
        with torch.inference_mode(), torch_threads(threads), paused_gc():
            for t in range(agent.rollout_len):
                actions = agent.act(obs)
                tracker.observe()
                result = env.step(actions if same_device else actions.to(env.device))
                info = result.info
                outcome = (result.obs, result.reward, result.terminated, result.truncated, info["final_obs"])
                if not same_device:
                    outcome = tuple(x.to(self.device) for x in outcome)
                obs = outcome[0]
                agent.process_step(*outcome[1:])
                # an ended episode has a length >= 1, the others 0 (stacked once per rollout)
                ep_returns.append(info["episode_return"])
                ep_lengths.append(info["episode_length"])
                frictions.append(info["friction"].view(len(self.seeds), E).double().mean(1))
                if tracker.due(step0 + (t + 1) * E):  # metrics (SVDs) on every thread
                    with torch_threads(update_threads):
                        self.logs.scalars(tracker.maybe_compute(step0 + (t + 1) * E), step0 + (t + 1) * E)
            agent.compute_returns(obs)
        self._ep_return = torch.stack(ep_returns).to(self.device)  # [T, N]
        self._ep_length = torch.stack(ep_lengths).to(self.device)
        self._friction = torch.stack(frictions).cpu()
        self.obs = obs
        self.nonfinite = info["nonfinite_resets"].view(-1, E).sum(1)
        return info["friction"]

    def _log_episodes(self) -> None:
        """Each finished episode's return and length, at the env step (of its run) it ended."""
        E, step0 = self.env.envs_per_run, self.run_step
        t_idx, n_idx = (self._ep_length > 0).nonzero(as_tuple=True)
        if not len(t_idx):
            return
        returns = self._ep_return[t_idx, n_idx].tolist()
        lengths = self._ep_length[t_idx, n_idx].tolist()
        per_run: dict[int, list[float]] = {}
        for t, n, ret, length in zip(t_idx.tolist(), n_idx.tolist(), returns, lengths, strict=True):
            r, step = n // E, step0 + (t + 1) * E
            self.logs.runs[r].scalar(tags.EPISODIC_RETURN, ret, step)
            self.logs.runs[r].scalar(tags.EPISODIC_LENGTH, length, step)
            per_run.setdefault(r, []).append(ret)
        self.last_return = sum(sum(v) / len(v) for v in per_run.values()) / len(per_run)

    def _log_friction_changes(self) -> None:
        """Each run's friction at the env steps of the last rollout where it changed.

        The update's own row gives the friction once per update; these rows place a change at the
        step it took effect (an episode end, or the change point with ``apply: immediate``), which
        the figures mark per seed. A schedule that moves at every step (linear or sine applied
        immediately) is left to the update's rows, which would otherwise log every step.
        """
        per_step = self._friction  # [T, R]
        before, self.friction_before = self.friction_before, per_step[-1].clone()
        friction_cfg = self.cfg.env.friction
        if friction_cfg.apply == "immediate" and friction_cfg.schedule.moves_every_step:
            return
        previous = torch.cat([(per_step[0] if before is None else before)[None], per_step[:-1]])
        E, step0, last = self.env.envs_per_run, self.run_step, len(per_step) - 1
        for t, r in zip(*(per_step != previous).nonzero(as_tuple=True), strict=True):
            if t < last:  # the change at the rollout's last step is the update's own row
                self.logs.runs[int(r)].scalar(tags.FRICTION, float(per_step[t, r]), step0 + (int(t) + 1) * E)

    def _log_update(self, losses: dict[str, Tensor], friction: Tensor, sps: float) -> None:
        R = len(self.seeds)
        values: dict[str, Any] = {NETWORK_TAGS.get(k, tags.loss_tag(k)): v for k, v in losses.items()}
        values[tags.SPS] = [sps] * R
        values[tags.FRICTION] = friction.view(R, -1).float().mean(1)
        values[tags.NONFINITE_RESETS] = self.nonfinite
        values |= self.tracker.after_update()  # weight change per update
        for plugin in self.agent.plugins:
            for name, v in plugin.stats().items():
                values[name if name.startswith("plasticity/") else f"plasticity/{name}"] = v
        self.logs.scalars(values, self.run_step)

    def train(self, steps: int, stop: _StopFlag, progress: GroupProgress) -> None:
        """Train until every run has taken at least ``steps`` env steps (whole updates)."""
        every = self.cfg.run.checkpoint_every
        per_update = self.agent.rollout_len * self.env.envs_per_run
        # Exempt everything alive now (modules, networks, env) from the cyclic garbage collector:
        # its first full pass over them costs ~0.2 s, and the later ones scan only new objects.
        gc.freeze()
        while self.run_step < steps:
            start = time.perf_counter()
            friction = self._rollout()
            self._log_episodes()
            self._log_friction_changes()
            losses = self.agent.update()
            previous, self.run_step = self.run_step, self.run_step + per_update
            sps = per_update / (time.perf_counter() - start)
            self._log_update(losses, friction, sps)
            if self.evaluation is not None and self.evaluation.due(previous, self.run_step):
                self.logs.scalars(self.evaluation(self.agent.actor, self.run_step), self.run_step)
            progress.update(self.run_step, sps * len(self.seeds), self.last_return, friction.float().mean().item())
            save_after_update(self, stop, previous, every, steps)
        # everything gathered first (git runs a process), so that the writes follow each other
        # closely; a stop between them is completed by the next call (see stopped_group_record)
        record = {"steps": self.run_step, "group_seeds": self.seeds, **git_info()}
        for seed, run in zip(self.seeds, self.logs.runs, strict=True):
            write_final_metrics(run, self.cfg, seed, self.run_step)
        for d in self.run_dirs:
            atomic_write_json(d / DONE_NAME, record)

    def close(self) -> None:
        self.logs.close()
        self.env.close()


def _plan_groups(out_dir: Path, pending: list[int]) -> list[list[int]]:
    """Split the unfinished seeds into groups: those with a checkpoint resume as saved."""
    groups, rest = [], list(pending)
    for path, saved in saved_groups(out_dir):
        overlap = set(saved) & set(rest)
        if not overlap:
            continue
        if not set(saved) <= set(rest):
            raise ValueError(
                f"{path} holds the group of seeds {format_seeds(saved)}, of which only "
                f"{format_seeds(sorted(overlap))} are requested and unfinished; resume with --seeds "
                f"{format_seeds(saved)} first, or delete that checkpoint"
            )
        groups.append(saved)
        rest = [s for s in rest if s not in saved]
    return [*groups, rest] if rest else groups


def train_group(
    cfg: Config,
    seeds: Sequence[int],
    out_dir: Path,
    steps: int,
    backend: str = "cpu",
    device: str = "cpu",
    progress: Progress | None = None,
) -> None:
    """Train ``cfg`` for every seed to ``steps`` env steps per run, as one run group.

    Writes or resumes ``out_dir/seed<k>/`` for each seed (see the module doc). Seeds already
    finished to at least ``steps`` are skipped. A config with ``implementation: sb3`` trains
    stable-baselines3's PPO instead, one seed after another, into the same layout
    (:func:`rlplast.sb3.trainer.train_sb3`; ``backend`` does not apply).

    Args:
        cfg: the resolved config.
        seeds: run seeds (distinct).
        out_dir: the method's results folder, e.g. ``results/<experiment>/<method>``.
        steps: env steps per run (rounded up to whole updates).
        backend: VecEnv backend.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        progress: a display from :func:`rlplast.progress.make_progress`, or None for silence.

    Raises:
        Interrupted: on SIGINT/SIGTERM, after saving a checkpoint.
        rlplast.checkpoint.CheckpointMismatch: a run or checkpoint in ``out_dir`` has another
            config.
        rlplast.locks.RunBusy: another process is training one of these runs now.
    """
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": steps})})  # as saved with each run
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    # what can fail cheaply fails before any run is claimed
    if cfg.implementation == "sb3":
        from rlplast.sb3.model import check_supported

        check_supported(cfg)
    dev = resolve_device(device) if cfg.implementation != "sb3" else None
    with contextlib.ExitStack() as locks:
        pending = claim_runs(cfg, Path(out_dir), seeds, steps, locks)
        if cfg.implementation == "sb3":  # stable-baselines3's PPO, one model per seed (no run groups)
            from rlplast.sb3.trainer import train_sb3

            return train_sb3(cfg, seeds, out_dir, steps, device=device, progress=progress)
        _train_pending(cfg, pending, Path(out_dir), steps, backend, dev, progress)


def claim_runs(cfg: Config, out_dir: Path, seeds: list[int], steps: int, locks: contextlib.ExitStack) -> list[int]:
    """Check the method folder's configs and claim the unfinished runs for this process (see
    rlplast.locks): their locks enter ``locks`` and their config.yaml is written, so that a
    process starting next sees this config. Leaving ``locks`` releases them and takes back the
    claim of a run that got no further (its folder holds nothing but that config.yaml), so a start
    that fails does not leave its config behind to refuse a corrected one. Returns the unfinished
    seeds; with none, the folder is only read (finished results may be read-only).

    Raises:
        CheckpointMismatch: the folder holds runs of another config.
        rlplast.locks.RunBusy: another process is training one of these runs.
    """
    if all((finished_steps(out_dir, s) or 0) >= steps for s in seeds):
        refuse_other_configs(cfg, out_dir)
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    with hold(out_dir / CONFIG_LOCK, f"the configs of {out_dir}", wait=True):
        refuse_other_configs(cfg, out_dir)
        pending = [s for s in seeds if (finished_steps(out_dir, s) or 0) < steps]
        stranded = [s for s in pending if finished_steps(out_dir, s) is not None and not has_checkpoint(out_dir, s)]
        if stranded:
            reached = sorted({finished_steps(out_dir, s) for s in stranded})
            raise ValueError(
                f"runs {format_seeds(stranded)} of {out_dir} finished at {reached} steps and their checkpoints "
                f"are gone, so they cannot be extended to {steps} steps: training them again would replace "
                "their results. Restore the checkpoints, ask for no more steps than they reached, or delete "
                "those run folders to retrain them from the start."
            )
        for seed in pending:
            locks.enter_context(hold(run_lock(out_dir, seed), f"run seed{seed} of {out_dir}"))
        pending = [s for s in pending if not _complete_stopped_group(out_dir, s, steps)]
        text = cfg.to_yaml()
        for seed in pending:
            folder = run_dir(out_dir, seed)
            folder.mkdir(exist_ok=True)
            # only a new run's: an existing run keeps its config.yaml until its training starts
            # (RunGroup writes it then), so a start that fails leaves every file as it was
            if not (folder / CONFIG_NAME).exists():
                atomic_write_text(folder / CONFIG_NAME, text)
                locks.callback(_unclaim_if_unused, folder)  # runs before the run's lock is released
    return pending


def _complete_stopped_group(out_dir: Path, seed: int, steps: int) -> bool:
    """Write the done.json of a run whose group finished but was stopped before writing it (see
    :func:`stopped_group_record`); True when the run is thereby finished to ``steps``. The run's
    lock must be held."""
    record = stopped_group_record(out_dir, seed)
    if record is None:
        return False
    atomic_write_json(run_dir(out_dir, seed) / DONE_NAME, record)
    return int(record["steps"]) >= steps


def _unclaim_if_unused(folder: Path) -> None:
    """Remove a claimed run folder that holds nothing but its config.yaml (nothing trained)."""
    try:
        if [p.name for p in folder.iterdir()] == [CONFIG_NAME]:
            (folder / CONFIG_NAME).unlink()
            folder.rmdir()
    except OSError:  # gone already, or not ours to remove: leave it
        pass


def _train_pending(
    cfg: Config, pending: list[int], out_dir: Path, steps: int, backend: str, dev: torch.device, progress: Any
) -> None:
    """Train the unfinished seeds, in groups as their checkpoints were saved (see _plan_groups)."""
    with stop_on_signals() as stop:
        for group_seeds in _plan_groups(out_dir, pending):
            group = RunGroup(cfg, group_seeds, out_dir, backend, dev)
            train_with_progress(group, f"{cfg.method} seeds {format_seeds(group_seeds)}", steps, stop, progress, cfg)
