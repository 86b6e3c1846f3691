"""The locomotion tasks: each Gymnasium MuJoCo env id the fast backends rebuild, by its module.

``task_class("Hopper-v5")`` imports the task's module on first use. Adding a task: a module in
this package (see rlplast.envs.tasks.base), a line here, and a YAML in ``configs/tasks/``.
"""

from __future__ import annotations

import importlib

from rlplast.envs.tasks.base import LocomotionTask

# env id -> "module:class"
TASKS = {
    "Ant-v5": "rlplast.envs.tasks.ant:AntTask",
    "HalfCheetah-v5": "rlplast.envs.tasks.halfcheetah:HalfCheetahTask",
    "Hopper-v5": "rlplast.envs.tasks.hopper:HopperTask",
    "Walker2d-v5": "rlplast.envs.tasks.walker2d:Walker2dTask",
    "Humanoid-v5": "rlplast.envs.tasks.humanoid:HumanoidTask",
}


def task_class(env_id: str) -> type[LocomotionTask]:
    """The task of ``env_id``, or a ValueError listing the ids there are tasks for."""
    if env_id not in TASKS:
        raise ValueError(f"no task rebuilds {env_id!r}; tasks exist for {', '.join(TASKS)} (any id: backend 'gym')")
    module, name = TASKS[env_id].split(":")
    return getattr(importlib.import_module(module), name)


def friction_scales_own(env_id: str | None) -> bool:
    """Whether a friction value multiplies each geom's own friction on ``env_id`` (True for every
    env but Ant, where it is each geom's friction; see rlplast.envs.tasks.base)."""
    return env_id not in TASKS or task_class(env_id).friction_scales_own
