"""An experiment: several methods x several seeds on one task, trained as one run group per method.

The package, in the order a ``rlplast compare`` goes through it:

- ``experiment``: the experiment file's model (:class:`ExperimentConfig`) and :func:`load_experiment`.
- ``plan``: :func:`plan_experiment` decides per run whether to train, resume or skip it, and refuses
  (or moves to a new folder) results of another config; :func:`write_experiment_file` saves it.
- ``execute``: :func:`run_plan` trains the pending runs on this machine, one process or several.
- ``display``: one progress display for the whole experiment, fed by groups in any process.

The launchers (:mod:`rlplast.launchers`) run the same plan elsewhere (e.g. on a Ray cluster).
"""

from rlplast.compare.display import overall_progress, replay
from rlplast.compare.execute import TrainFn, group_kwargs, run_plan, train_worker
from rlplast.compare.experiment import ExperimentConfig, load_experiment
from rlplast.compare.plan import (
    ConfigConflict,
    ExperimentPlan,
    GroupPlan,
    describe_plan,
    plan_experiment,
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
