"""Launching an experiment: which groups train, failures, interrupts, the progress display and the
command line, with a stand-in trainer that writes results in the on-disk format."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.progress import Progress

import rlplast.runner
from rlplast.cli import main
from rlplast.compare import ExperimentConfig, plan_experiment, run_plan
from rlplast.config import load_config
from rlplast.report.synthetic import write_synthetic_run


def fake_train(cfg, seeds, out_dir, steps, backend, device, progress=None):
    """Writes finished runs like ``train_group`` does, and reports progress like the runner."""
    task = progress.add_task(f"{cfg.method} seeds {seeds}", total=steps) if progress else None
    for seed in seeds:
        run = write_synthetic_run(Path(out_dir) / f"seed{seed}", cfg.method, seed, steps, friction_every=steps // 2)
        (run / "config.yaml").write_text(cfg.to_yaml())
        (run / "calls.log").open("a").write(f"{backend} {device}\n")
    if progress:
        progress.update(task, completed=steps // 2, sps=1.0, ret=None, friction=None)
        progress.update(task, completed=steps, sps=1.0, ret=None, friction=None)
        progress.console.print(f"{cfg.method} finished")
        progress.stop_task(task)


def failing_train(cfg, seeds, out_dir, steps, backend, device, progress=None):
    if cfg.method == "ppo":
        raise RuntimeError("diverged")
    fake_train(cfg, seeds, out_dir, steps, backend, device, progress)


def interrupted_train(cfg, seeds, out_dir, steps, backend, device, progress=None):
    raise rlplast.runner.Interrupted("stopped at step 2048")


def _plan(tmp_path, **changes):
    exp = {
        "name": "t",
        "task": "slippery_ant",
        "methods": "ppo,ppo_tuned",
        "seeds": "0-1",
        "steps": 10_000,
        "backend": "cpu",
    }
    return plan_experiment(ExperimentConfig.model_validate(exp | changes), tmp_path)


def _progress() -> Progress:
    return Progress(console=Console(file=io.StringIO(), width=200), auto_refresh=False)


def test_sequential_run_trains_pending_seeds_and_sums_progress(tmp_path):
    done = write_synthetic_run(tmp_path / "t" / "ppo" / "seed0", "ppo", 0, 10_000)
    (done / "config.yaml").write_text(load_config("slippery_ant", "ppo").to_yaml())
    plan = _plan(tmp_path)
    calls = []

    def recording(**kwargs):
        calls.append((kwargs["cfg"].method, kwargs["seeds"]))
        fake_train(**kwargs)

    progress = _progress()
    assert run_plan(plan, progress, recording) == []
    assert calls == [("ppo", [1]), ("ppo_tuned", [0, 1])]
    overall = progress.tasks[0]
    assert (overall.total, overall.completed) == (20_000, 20_000)  # two groups x 10k steps per run
    assert [t.description for t in progress.tasks[1:]] == ["ppo seeds [1]", "ppo_tuned seeds [0, 1]"]
    assert (tmp_path / "t" / "experiment.yaml").is_file()
    assert (tmp_path / "t" / "ppo_tuned" / "seed1" / "calls.log").read_text() == "cpu cpu\n"


def test_a_failing_method_does_not_stop_the_others(tmp_path):
    failures = run_plan(_plan(tmp_path), None, failing_train)
    assert failures == ["ppo: RuntimeError: diverged"]
    assert (tmp_path / "t" / "ppo_tuned" / "seed1" / "done.json").is_file()


def test_an_interrupt_stops_the_experiment(tmp_path):
    with pytest.raises(rlplast.runner.Interrupted):
        run_plan(_plan(tmp_path), None, interrupted_train)


@pytest.mark.slow  # spawns worker processes: several seconds
def test_parallel_groups_report_to_one_display(tmp_path):
    progress = _progress()
    plan = _plan(tmp_path, parallel=2)
    assert run_plan(plan, progress, fake_train) == []
    for method in ("ppo", "ppo_tuned"):
        for seed in (0, 1):
            assert (tmp_path / "t" / method / f"seed{seed}" / "done.json").is_file()
    descriptions = sorted(t.description for t in progress.tasks[1:])
    assert descriptions == ["ppo seeds [0, 1]", "ppo_tuned seeds [0, 1]"]
    assert all(t.completed == 10_000 for t in progress.tasks[1:])
    assert progress.tasks[0].completed == 20_000
    assert "ppo_tuned finished" in progress.console.file.getvalue()


def test_cli_compare_trains_then_reports_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(rlplast.runner, "train_group", fake_train)
    args = ["compare", "--task", "slippery_ant", "--methods", "ppo,ppo_l2", "--seeds", "0-2", "--steps", "20k"]
    args += ["--results-dir", str(tmp_path), "--set", "env.friction.schedule.every=5000"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    exp_dir = tmp_path / "slippery_ant"
    for name in ("report.md", "return.png", "curves.png", "scores.png"):
        assert (exp_dir / name).is_file()
    assert "P(final > PPO)" in (exp_dir / "report.md").read_text()
    # Rerun: everything is done, nothing trains, the report is redrawn.
    monkeypatch.setattr(rlplast.runner, "train_group", interrupted_train)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "│ ppo    │ -     │ -      │ 0-2  │" in again.output


def test_cli_compare_refuses_mixed_configs(tmp_path, monkeypatch):
    monkeypatch.setattr(rlplast.runner, "train_group", fake_train)
    args = ["compare", "--task", "slippery_ant", "--methods", "ppo", "--seeds", "0", "--steps", "4k"]
    args += ["--results-dir", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, [*args, "--set", "agent.epochs=3"])
    assert result.exit_code == 1
    assert "refusing to mix" in result.output and "agent.epochs: 10 -> 3" in result.output
    moved = CliRunner().invoke(main, [*args, "--set", "agent.epochs=3", "--on-conflict", "new-folder"])
    assert moved.exit_code == 0, moved.output
    assert json.loads((tmp_path / "slippery_ant_2" / "ppo" / "seed0" / "done.json").read_text())["steps"] == 4000


def test_cli_interrupt_exits_130(tmp_path, monkeypatch):
    monkeypatch.setattr(rlplast.runner, "train_group", interrupted_train)
    args = ["compare", "--task", "ant", "--methods", "ppo", "--seeds", "0", "--steps", "4k"]
    result = CliRunner().invoke(main, [*args, "--results-dir", str(tmp_path)])
    assert result.exit_code == 130 and "stopped at step 2048" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "ppo,nope"], "unknown method 'nope'; available: ppo, ppo_cbp"),
        (["--task", "nope"], "unknown task 'nope'; available: ant, halfcheetah, hopper"),
        (["--seeds", "5-2"], "seed range '5-2' is descending"),
        (["--steps", "abc"], "bad step count 'abc'"),
        (["--parallel", "0"], "expected a positive number or auto"),
        (["--set", "agent.epochs"], "expected KEY=VALUE"),
        (["--set", "agent.epochz=3"], "agent.epochz"),
        (["--baseline", "ppo_tuned"], "--baseline 'ppo_tuned' is not one of the methods: ppo"),
    ],
)
def test_cli_bad_input_is_named(tmp_path, args, message):
    base = ["--task", "ant", "--methods", "ppo", "--seeds", "0", "--steps", "4k", "--results-dir", str(tmp_path)]
    # A repeated option takes its last value, so ``args`` replace the good ones.
    result = CliRunner().invoke(main, ["compare", *base, *args, "--dry-run"])
    assert result.exit_code == 2  # a usage error, as in train
    assert message in result.output


def test_cli_names_damaged_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethods: [ppo\n")
    result = CliRunner().invoke(main, ["compare", str(bad), "--results-dir", str(tmp_path), "--dry-run"])
    assert result.exit_code != 0 and "bad.yaml: not valid YAML" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # an error, not a traceback
    good = tmp_path / "good.yaml"
    good.write_text("name: x\ntask: ant\nmethods: [ppo]\nseeds: 0\nsteps: 4096\n")
    args = ["compare", str(good), "--results-dir", str(tmp_path / "res"), "--dry-run"]
    assert CliRunner().invoke(main, args).exit_code == 0
    (tmp_path / "res" / "x").mkdir(parents=True)
    (tmp_path / "res" / "x" / "experiment.yaml").write_text("methods: [\n")  # the saved one of an earlier call
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "experiment.yaml is damaged, not valid YAML" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_baseline_may_be_a_method_of_an_earlier_call(tmp_path):
    write_synthetic_run(tmp_path / "ant" / "ppo" / "seed0", "ppo", 0, 20_000, 5_000)
    args = ["compare", "--task", "ant", "--methods", "ppo_cbp", "--seeds", "0", "--steps", "4k"]
    result = CliRunner().invoke(main, [*args, "--results-dir", str(tmp_path), "--baseline", "ppo", "--dry-run"])
    assert result.exit_code == 0, result.output


def test_cli_without_file_or_task_says_what_is_missing(tmp_path):
    result = CliRunner().invoke(main, ["compare", "--methods", "ppo", "--seeds", "0", "--steps", "4k", "--dry-run"])
    assert result.exit_code == 2 and "give an EXPERIMENT_FILE, or --task" in result.output


def test_cli_plot_redraws_from_files(tmp_path):
    for method in ("ppo", "ppo_cbp"):
        for seed in (0, 1):
            write_synthetic_run(tmp_path / "exp" / method / f"seed{seed}", method, seed, 20_000, 5_000)
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "exp"), "--bins", "20"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "exp" / "report.md").is_file()
    unknown = CliRunner().invoke(main, ["plot", str(tmp_path / "exp"), "--baseline", "ppo_tuned"])
    assert unknown.exit_code == 1 and "baseline 'ppo_tuned' has no runs" in unknown.output
    missing = CliRunner().invoke(main, ["plot", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "no experiment folder" in missing.output


STOPPABLE_SCRIPT = '''
import os, sys, time
from pathlib import Path
from rlplast import runner
from rlplast.compare import ExperimentConfig, plan_experiment, run_plan

def stoppable_train(cfg, seeds, out_dir, steps, backend, device, progress=None):
    """Trains "forever" like the runner: stops on a signal, saving first."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with runner.stop_on_signals() as stop:
        (out / "started").write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.05)
        (out / "saved").write_text(str(stop.signum))
        raise runner.Interrupted("stopped", stop.signum)

if __name__ == "__main__":
    exp = {"name": "t", "task": "slippery_ant", "methods": "ppo,ppo_tuned,ppo_l2", "seeds": "0", "steps": 10_000,
           "parallel": 2}
    plan = plan_experiment(ExperimentConfig.model_validate(exp), Path(sys.argv[1]))
    try:
        run_plan(plan, None, stoppable_train)
    except runner.Interrupted as err:
        print("INTERRUPTED", err.exit_code, flush=True)
        sys.exit(err.exit_code)
'''


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_stop_signal_to_a_parallel_compare_stops_its_workers(tmp_path, signum):
    """``kill`` of the main process only (as a batch scheduler or ``docker stop`` does): the
    running workers save and stop, the group not started is cancelled, no process is left."""
    script = tmp_path / "stoppable.py"
    script.write_text(STOPPABLE_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    started = [tmp_path / "t" / m / "started" for m in ("ppo", "ppo_tuned", "ppo_l2")]
    deadline = time.monotonic() + 60
    while sum(p.exists() for p in started) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(p.exists() for p in started) == 2, "two workers should have started their groups"
    time.sleep(0.3)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and f"INTERRUPTED {128 + signum}" in out
    saved = [p.with_name("saved") for p in started if p.exists()]
    assert len(saved) == 2 and all(p.exists() for p in saved)
    assert not started[2].exists()  # the third group never started
    time.sleep(0.5)
    for pid in (int(p.read_text()) for p in started if p.exists()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the worker is gone
