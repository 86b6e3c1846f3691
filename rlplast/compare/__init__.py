"""An experiment: several methods x several seeds on one task, trained as one run group per method.

The code lives in :mod:`rlplast.compare.plan`; this package re-exports what other modules use.
"""

from rlplast.compare.plan import (
    ConfigConflict,
    ExperimentConfig,
    ExperimentPlan,
    GroupPlan,
    TrainFn,
    describe_plan,
    group_kwargs,
    load_experiment,
    overall_progress,
    plan_experiment,
    replay,
    run_plan,
    train_worker,
    write_experiment_file,
)

__all__ = [
    "ConfigConflict",
    "ExperimentConfig",
    "ExperimentPlan",
    "GroupPlan",
    "TrainFn",
    "describe_plan",
    "group_kwargs",
    "load_experiment",
    "overall_progress",
    "plan_experiment",
    "replay",
    "run_plan",
    "train_worker",
    "write_experiment_file",
]
