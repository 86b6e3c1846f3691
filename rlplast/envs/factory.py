"""make_vec_env: the backend that runs an env config (the one module that imports the backends).

* ``cpu``: the locomotion tasks of rlplast.envs.tasks on MuJoCo C in threads (rlplast.envs.cpu_mujoco).
* ``gym``: any Gymnasium MuJoCo id, one Python env each (rlplast.envs.gym_vec).
* ``warp``: the tasks whose model mujoco_warp simulates, on mujoco_warp: Ant-v5 by its own kernels
  (rlplast.envs.warp_ant), the others by the task's functions on torch (rlplast.envs.warp_mujoco);
  imported only when asked for.
* ``auto``: warp when the networks sit on CUDA and mujoco_warp sees it, for the ids warp runs;
  else cpu for the ids of a task; else gym.
"""

from __future__ import annotations

import importlib.util

import torch

from rlplast.envs.tasks import TASKS
from rlplast.envs.vec import ANT_IDS, EnvConfig, VecEnv

BACKENDS = ("cpu", "gym", "warp", "auto")
# Tasks whose model mujoco_warp cannot simulate, and why.
WARP_UNSUPPORTED = {"Humanoid-v5": "humanoid.xml uses the PGS solver, which mujoco_warp does not implement"}
# The ids each rebuilding backend supports.
BACKEND_IDS = {"cpu": tuple(TASKS), "warp": tuple(i for i in TASKS if i not in WARP_UNSUPPORTED)}


def warp_available() -> bool:
    """True when mujoco_warp, warp and a CUDA GPU that both torch and Warp see are present."""
    if importlib.util.find_spec("mujoco_warp") is None or not torch.cuda.is_available():
        return False
    from rlplast.envs.warp_runtime import warp_available as warp_sees_cuda

    return warp_sees_cuda()


def choose_backend(env_id: str, backend: str = "auto", device: str | torch.device = "cpu") -> str:
    """``backend`` checked against ``env_id``, with ``auto`` resolved (see the module docstring).

    Raises:
        ValueError: an unknown backend, or one that does not rebuild ``env_id`` (one line naming
            the ids it supports).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "auto":
        # warp only where it simulates on a GPU: on Warp's CPU device the cpu backend is far faster
        on_cuda = torch.device(device).type == "cuda"
        if env_id in BACKEND_IDS["warp"] and on_cuda and warp_available():
            return "warp"
        return "cpu" if env_id in BACKEND_IDS["cpu"] else "gym"
    if backend == "warp" and env_id in WARP_UNSUPPORTED:
        raise ValueError(f"backend 'warp' cannot run {env_id}: {WARP_UNSUPPORTED[env_id]} (use backend 'cpu')")
    if backend in BACKEND_IDS and env_id not in BACKEND_IDS[backend]:
        supported = ", ".join(BACKEND_IDS[backend])
        raise ValueError(f"backend {backend!r} supports env ids {supported}; got {env_id!r} (use backend 'gym')")
    return backend


def make_vec_env(cfg: EnvConfig, num_runs: int, backend: str = "auto", device: str | torch.device = "cpu") -> VecEnv:
    """Build the VecEnv of ``num_runs`` runs x ``cfg.envs_per_run`` envs on a backend.

    Args:
        cfg: the env config.
        num_runs: R.
        backend: ``cpu``, ``gym``, ``warp`` or ``auto``.
        device: device of the returned tensors (the warp backend also simulates there).
    """
    backend = choose_backend(cfg.id, backend, device)
    if backend == "warp":
        if cfg.id in ANT_IDS:
            from rlplast.envs.warp_ant import WarpAntVecEnv  # Ant's own kernels: the fast path

            return WarpAntVecEnv(cfg, num_runs, device)
        from rlplast.envs.warp_mujoco import WarpTaskVecEnv

        return WarpTaskVecEnv(cfg, num_runs, device)
    if backend == "cpu":
        if cfg.id in ANT_IDS:
            from rlplast.envs.cpu_ant import CpuAntVecEnv  # Ant's cpu env under its known name

            return CpuAntVecEnv(cfg, num_runs, device)
        from rlplast.envs.cpu_mujoco import CpuVecEnv

        return CpuVecEnv(cfg, num_runs, device)
    from rlplast.envs.gym_vec import GymVecEnv

    return GymVecEnv(cfg, num_runs, device)
