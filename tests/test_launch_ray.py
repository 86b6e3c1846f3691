"""The Ray launcher: options and resources, the missing-Ray message, and a real local Ray cluster
that trains a tiny Ant experiment, loses a worker midway, and still ends with results identical
to the local launcher's."""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console
from rich.progress import Progress

from rlplast import runner
from rlplast.agents.ppo import PPO
from rlplast.cli import main
from rlplast.compare import ExperimentConfig, plan_experiment
from rlplast.launchers import launch, ray_cluster
from rlplast.launchers.ray_cluster import RayOptions, ResultsNotShared, group_resources, import_ray, train_task
from rlplast.report.synthetic import write_synthetic_run

UPDATE = 32  # env steps per run per update
STEPS = 5 * UPDATE
TINY = {  # a small Ant run: checkpoints at steps 64, 128 and 160
    "agent.hidden": [16, 16],
    "agent.steps_per_update": UPDATE,
    "agent.minibatches": 2,
    "agent.epochs": 2,
    "metrics.interval": 32,
    "metrics.rank_interval": 64,
    "metrics.window": 40,
    "run.checkpoint_every": 64,
    "run.torch_threads": 1,  # one thread in both launchers: bitwise equal results
    "env.friction.schedule.every": 48,
    "env.max_episode_steps": 20,
}


def _plan(root: Path, **changes):
    exp = {"name": "t", "task": "slippery_ant", "methods": "ppo,ppo_tuned", "seeds": "0-1", "steps": STEPS}
    return plan_experiment(ExperimentConfig.model_validate({**exp, "overrides": TINY, **changes}), root)


# -- without Ray ---------------------------------------------------------------------------------


def test_missing_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r"pip install 'rlplast\[ray\]'"):
        import_ray()
    with pytest.raises(ImportError, match=r"pip install 'rlplast\[ray\]'"):
        launch(_plan(tmp_path), launcher="ray")


def test_resources_follow_the_device_and_the_options(tmp_path):
    cpu = _plan(tmp_path)
    group = cpu.groups[0]
    assert group_resources(cpu, group, RayOptions()) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert group_resources(cpu, group, RayOptions(cpus_per_group=3)) == {"num_cpus": 3.0, "num_gpus": 0.0}
    threads = _plan(tmp_path, overrides={**TINY, "run.torch_threads": 4})
    assert group_resources(threads, threads.groups[0], RayOptions())["num_cpus"] == 4.0
    gpu = _plan(tmp_path, device="cuda")
    assert group_resources(gpu, gpu.groups[0], RayOptions()) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert group_resources(gpu, gpu.groups[0], RayOptions(gpus_per_group=0.25))["num_gpus"] == 0.25
    with pytest.raises(ValueError, match=r"trains on cuda: .* need gpus_per_group \(--gpus-per-group\) > 0"):
        group_resources(gpu, gpu.groups[0], RayOptions(gpus_per_group=0))
    with pytest.raises(ValueError, match="trains on the CPU"):
        group_resources(cpu, group, RayOptions(gpus_per_group=0.5))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"cpus_per_group": 0}, "cpus_per_group must be positive"),
        ({"gpus_per_group": 1.5}, "a fraction up to 1 or a whole number"),
        ({"max_retries": -1}, "max_retries must be 0 or more"),
    ],
)
def test_bad_ray_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        RayOptions(**options)


def test_bad_launcher_arguments_are_named(tmp_path):
    plan = _plan(tmp_path)
    with pytest.raises(ValueError, match="address apply only to the ray launcher"):
        launch(plan, launcher="local", address="auto")
    with pytest.raises(ValueError, match="unknown launcher 'slurm'; available: local, ray"):
        launch(plan, launcher="slurm")
    with pytest.raises(ValueError, match=r"unknown ray launcher options \['gpus'\]; allowed: address"):
        launch(plan, launcher="ray", gpus=1)


CLI = ["compare", "--task", "slippery_ant", "--methods", "ppo,ppo_l2", "--seeds", "0-1", "--steps", "4k"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--address", "auto"], "address apply only to the ray launcher"),
        (["--launcher", "ray", "--gpus-per-group", "0.5"], "is 0.5, but the experiment trains on the CPU"),
        (["--launcher", "ray", "--cpus-per-group", "0"], "0.0 is not in the range x>0"),
        (["--launcher", "slurm"], "'slurm' is not one of 'local', 'ray'"),
    ],
)
def test_cli_bad_launcher_options_are_named(tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(runner, "train_group", never_called)
    result = CliRunner().invoke(main, [*CLI, "--results-dir", str(tmp_path), *args])
    assert result.exit_code != 0
    assert message in result.output


def test_cli_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr(runner, "train_group", never_called)
    result = CliRunner().invoke(main, [*CLI, "--results-dir", str(tmp_path), "--launcher", "ray"])
    assert result.exit_code == 1
    assert "pip install 'rlplast[ray]'" in result.output


def test_an_unreachable_cluster_says_how_to_start_one(tmp_path, monkeypatch):
    class NoCluster:
        """Stands in for the ray module where no cluster runs."""

        def is_initialized(self) -> bool:
            return False

        def init(self, address: str | None = None) -> None:
            raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray_cluster, "import_ray", NoCluster)
    with pytest.raises(ConnectionError, match=r"no Ray cluster at auto \(Could not find .*\)\. Start one with `ray"):
        launch(_plan(tmp_path), launcher="ray", address="auto")


def test_a_task_that_cannot_see_the_results_folder_says_so(tmp_path):
    kwargs = {"out_dir": tmp_path / "elsewhere" / "t" / "ppo"}  # no experiment.yaml above it
    with pytest.raises(ResultsNotShared, match="filesystem that every Ray node mounts"):
        train_task(runner.train_group, kwargs, None, 0)


def test_a_task_that_finds_its_run_locked_waits_then_asks_ray_for_a_retry(tmp_path, monkeypatch):
    from rlplast.locks import RunBusy
    from rlplast.report.aggregate import EXPERIMENT_FILE

    (tmp_path / EXPERIMENT_FILE).write_text("name: t\n")
    waits = []
    monkeypatch.setattr(ray_cluster.time, "sleep", waits.append)

    def busy(*args, **kwargs):
        raise RunBusy("run seed0 is being trained by another process now")

    monkeypatch.setattr(ray_cluster, "train_worker", busy)
    with pytest.raises(RunBusy):
        train_task(runner.train_group, {"out_dir": tmp_path / "ppo"}, None, 0)
    assert waits == [ray_cluster.BUSY_RETRY_DELAY_S]


# -- on a local Ray cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance of 2 CPUs for this module; this module's functions travel to its workers by
    value (the workers cannot import the tests folder)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'rlplast[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(module)
    ray.shutdown()


def train_stopped_once(log_dir: str, stops: dict[str, str], **kwargs) -> None:
    """``train_group``, logging the step each attempt starts from (its checkpoint's). The first
    attempt of each method in ``stops`` is stopped in the first update after its first
    checkpoint: ``kill`` ends its process at once (no cleanup, like a lost node), ``sigterm``
    sends it SIGTERM (a preemption notice: the runner saves a checkpoint and stops)."""
    out_dir, seeds, method = Path(kwargs["out_dir"]), kwargs["seeds"], kwargs["cfg"].method
    ckpt = runner.checkpoint_path(out_dir, seeds)
    start = torch.load(ckpt, weights_only=True)["run_step"] if ckpt.exists() else 0
    with open(Path(log_dir) / f"{method}.attempts", "a") as f:
        f.write(f"{start}\n")
    marker = Path(log_dir) / f"{method}.stopped"
    original = PPO.update

    def update(self: PPO) -> dict:
        out = original(self)
        if ckpt.exists() and not marker.exists():
            marker.touch()
            if stops[method] == "kill":
                os._exit(1)
            signal.raise_signal(signal.SIGTERM)
        return out

    if method in stops:
        PPO.update = update
    try:
        runner.train_group(**kwargs)
    finally:
        PPO.update = original


def write_runs(**kwargs) -> None:
    """Finishes a run group at once: synthetic results in the on-disk format."""
    cfg, out_dir, steps = kwargs["cfg"], Path(kwargs["out_dir"]), kwargs["steps"]
    for seed in kwargs["seeds"]:
        run = write_synthetic_run(out_dir / f"seed{seed}", cfg.method, seed, steps, friction_every=steps // 2)
        (run / "config.yaml").write_text(cfg.to_yaml())


def fail_ppo(log_dir: str, **kwargs) -> None:
    """Fails the ``ppo`` group, logging each attempt; finishes the others at once."""
    if kwargs["cfg"].method == "ppo":
        with open(Path(log_dir) / "ppo.attempts", "a") as f:
            f.write("attempt\n")
        raise RuntimeError("diverged")
    write_runs(**kwargs)


def never_called(**kwargs) -> None:
    raise AssertionError(f"trained {kwargs['cfg'].method} again")


def _rows(path: Path) -> list[tuple[str, str, str]]:
    """metrics.csv without the wall-clock speed."""
    with path.open() as f:
        return [(r["step"], r["tag"], r["value"]) for r in csv.DictReader(f) if r["tag"] != "charts/sps"]


def test_ray_run_survives_a_killed_worker_and_matches_the_local_launcher(tmp_path, local_ray):
    assert launch(_plan(tmp_path / "local"), launcher="local") == []

    logs = tmp_path / "logs"
    logs.mkdir()
    progress = Progress(console=Console(file=io.StringIO(), width=200), auto_refresh=False)
    stop = partial(train_stopped_once, str(logs), {"ppo": "kill", "ppo_tuned": "sigterm"})
    assert launch(_plan(tmp_path / "ray"), progress, launcher="ray", train_fn=stop) == []

    # Ray retried both: ppo's worker died after the checkpoint of step 64 and resumed from it;
    # ppo_tuned saved at step 96 on SIGTERM and resumed from there
    assert (logs / "ppo.attempts").read_text().split() == ["0", "64"]
    assert (logs / "ppo_tuned.attempts").read_text().split() == ["0", "96"]
    for method in ("ppo", "ppo_tuned"):
        local, remote = tmp_path / "local" / "t" / method, tmp_path / "ray" / "t" / method
        a = torch.load(runner.checkpoint_path(local, [0, 1]), weights_only=True)
        b = torch.load(runner.checkpoint_path(remote, [0, 1]), weights_only=True)
        assert a["run_step"] == b["run_step"] == STEPS
        for net in ("actor", "critic"):
            for name, value in a["agent"][net].items():
                assert torch.equal(b["agent"][net][name], value), (method, net, name)
        for seed in (0, 1):
            assert runner.finished_steps(remote, seed) == STEPS
            rows = _rows(remote / f"seed{seed}" / "metrics.csv")
            assert rows == _rows(local / f"seed{seed}" / "metrics.csv")
            assert {r[1] for r in rows} >= {"losses/policy_loss", "env/friction", "plasticity/actor/stable_rank"}
    # one display line per method (each retry replaced its first), each complete, and the overall line
    assert sorted(t.description for t in progress.tasks[1:]) == ["ppo seeds 0-1", "ppo_tuned seeds 0-1"]
    assert [t.completed for t in progress.tasks] == [2 * STEPS, STEPS, STEPS]

    # run again: every run is finished, nothing trains
    again = _plan(tmp_path / "ray")
    assert all(r.status == "done" for g in again.groups for r in g.runs)
    assert launch(again, launcher="ray", train_fn=never_called) == []


def test_a_failing_group_is_reported_and_the_others_finish(tmp_path, local_ray):
    failures = launch(_plan(tmp_path), launcher="ray", train_fn=partial(fail_ppo, str(tmp_path)))
    assert failures == ["ppo: RuntimeError: diverged"]
    assert (tmp_path / "ppo.attempts").read_text() == "attempt\n"  # an error of the run is not retried
    assert runner.finished_steps(tmp_path / "t" / "ppo_tuned", 1) == STEPS
    assert runner.finished_steps(tmp_path / "t" / "ppo", 0) is None


def test_cli_compare_on_ray_writes_results_and_report(tmp_path, monkeypatch, local_ray):
    monkeypatch.setattr(runner, "train_group", write_runs)
    args = [*CLI, "--results-dir", str(tmp_path), "--launcher", "ray", "--cpus-per-group", "1", "--max-retries", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for method in ("ppo", "ppo_l2"):
        assert runner.finished_steps(tmp_path / "slippery_ant" / method, 1) == 4000
    assert "P(final > PPO)" in (tmp_path / "slippery_ant" / "report.md").read_text()
