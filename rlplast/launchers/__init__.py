"""Launchers: who runs an experiment's run groups.

``local`` (the default) trains them on this machine, one after another or ``parallel`` at once
(:func:`rlplast.compare.run_plan`). ``ray`` hands each run group to a Ray cluster as one task
(:mod:`rlplast.launchers.ray_cluster`); Ray is an optional dependency, imported only then.
"""

from __future__ import annotations

from typing import Any, Literal

from rlplast.compare import ExperimentPlan, TrainFn

LAUNCHERS = ("local", "ray")
Launcher = Literal["local", "ray"]


def launch(
    plan: ExperimentPlan,
    progress: Any = None,
    launcher: Launcher = "local",
    train_fn: TrainFn | None = None,
    **options: Any,
) -> list[str]:
    """Train the plan's pending run groups with ``launcher``.

    Args:
        plan: from :func:`rlplast.compare.plan_experiment`.
        progress: a rich display (None: silent).
        launcher: ``local`` or ``ray``.
        train_fn: the trainer (``train_group`` by default).
        **options: the ray launcher's settings, fields of
            :class:`rlplast.launchers.ray_cluster.RayOptions` (the local launcher takes none).

    Returns:
        One line per failed group, ``"<method>: <error>"``; empty when all finished.

    Raises:
        ValueError: an unknown launcher, or options it does not take.
        ImportError: ``ray`` without Ray installed (the message says how to install it).
        rlplast.runner.Interrupted: Ctrl-C, after the runs saved their checkpoints.
    """
    if launcher == "local":
        if options:
            raise ValueError(f"{', '.join(sorted(options))} apply only to the ray launcher")
        from rlplast.compare import run_plan

        return run_plan(plan, progress, train_fn)
    if launcher == "ray":
        import dataclasses

        from rlplast.launchers.ray_cluster import RayOptions, run_plan_ray

        unknown = set(options) - {f.name for f in dataclasses.fields(RayOptions)}
        if unknown:
            allowed = ", ".join(f.name for f in dataclasses.fields(RayOptions))
            raise ValueError(f"unknown ray launcher options {sorted(unknown)}; allowed: {allowed}")
        return run_plan_ray(plan, progress, RayOptions(**options), train_fn)
    raise ValueError(f"unknown launcher {launcher!r}; available: {', '.join(LAUNCHERS)}")
