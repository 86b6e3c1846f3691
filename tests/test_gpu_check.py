"""scripts/gpu_check.sh, scripts/gpu_wheels.sh and their helper scripts/gpu_check.py: the shell
parses, the wheel list is constraints.txt's, the summary's numbers; and (slow) the whole check,
tiny, on Warp's CPU device."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def _load_helper():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPTS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load_helper()


@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_wheels.sh"])
def test_shell_scripts_parse(script):
    subprocess.run(["bash", "-n", str(SCRIPTS / script)], check=True)


def test_requirements_are_the_pinned_constraints_less_torch(tmp_path):
    pinned = dict(line.split("==") for line in gpu_check.pinned_requirements())
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    assert all(f"{name}=={version}" in constraints for name, version in pinned.items())
    assert {"mujoco-warp", "warp-lang", "gymnasium", "pytest", "stable_baselines3"} <= set(pinned)
    assert "torch" not in pinned and "ray" not in pinned
    fake = tmp_path / "constraints.txt"
    fake.write_text("# comment\ntorch==9.9\nnvidia-cublas-cu12==1.0\nWarp_Lang==1.2.3  # note\n\n")
    assert gpu_check.pinned_requirements(fake) == ["Warp_Lang==1.2.3"]
    fake.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match="not pinned"):
        gpu_check.pinned_requirements(fake)


def test_wheels_script_downloads_exactly_that_list_for_cpython_312(tmp_path):
    # a stand-in python: runs the helper, records what pip would have been asked
    record = tmp_path / "pip-args"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = -m ]; then echo "$@" > {record}; else exec {sys.executable} "$@"; fi\n')
    fake.chmod(0o755)
    out = subprocess.run(
        ["bash", str(SCRIPTS / "gpu_wheels.sh"), str(tmp_path / "wheels")],
        env={**os.environ, "PYTHON": str(fake)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    args = record.read_text().split()
    assert args[:4] == ["-m", "pip", "download", "--no-deps"]
    assert {"--only-binary=:all:", "manylinux_2_28_x86_64"} <= set(args)
    assert args[args.index("--python-version") + 1] == "3.12"
    assert [a for a in args if "==" in a] == gpu_check.pinned_requirements()
    assert "in all" in out


def _metrics(path: Path, rows: list[tuple[int, str, float]]) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("step,tag,value\n" + "".join(f"{s},{t},{v}\n" for s, t, v in rows))


def test_training_numbers_and_summary(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):  # updates of 2048 steps; the run was stopped at 4096 and resumed to 8192
        rows = [(s, "charts/sps", 100.0 if s in (2048, 6144) else 400.0) for s in range(2048, 8193, 2048)]
        rows += [(1000, "charts/episodic_return", -50.0), (7500, "charts/episodic_return", 10.0 + seed)]
        rows += [(8000, "charts/episodic_return", 20.0 + seed)]
        _metrics(runs / f"seed{seed}" / "metrics.csv", rows)
    logs = ("stopped at step 4096 of 8192; checkpoint saved", "resuming ppo seeds 0-1 from step 4096\ndone: x")
    report = gpu_check.train_report(runs, logs, (143, 0), (30.0, 31.0), 4096)
    assert report["resumed_from_checkpoint"] and report["finished"]
    assert report["seeds"]["seed1"]["final_return"] == pytest.approx(16.0)  # steps > 0.9 x 8192
    assert report["group_sps_median"] == [800.0, 800.0]  # the first update of each run left out
    assert report["run_sps_median"] == 400.0
    assert report["seconds_for_50M_per_run"] == pytest.approx(50e6 / 400)
    # a resume that started over: rows repeated, and no "resuming" line
    assert not gpu_check.train_report(runs, (logs[0], "done: x"), (143, 0), (1, 1), 4096)["resumed_from_checkpoint"]

    out = tmp_path / "out"
    out.mkdir()
    (out / "train.json").write_text(json.dumps(report))
    table = "warp backend, Ant-v5, device cuda\n  worlds  sim  vecenv\n    4096  1,200,000  900,000  3.4  20  300\n"
    (out / "bench.txt").write_text("== bench\n" + table)
    (out / "tests.log").write_text("boom\n")
    steps = "install-packages\t12.5\t0\tinstall.log\t\nparity-tests\t80.0\t1\ttests.log\t\n"
    (out / "steps.tsv").write_text(steps)
    assert not gpu_check.write_summary(out)
    summary = (out / "summary.md").read_text()
    assert "| parity-tests | 80.0 | FAIL (exit 1) |" in summary and "boom" in summary
    assert "4096 worlds on an H100: met" in summary
    assert "resume continued from the checkpoint: **yes**" in summary and "34:43" in summary  # 125,000 s
    (out / "steps.tsv").write_text(steps.replace("\t1\t", "\t0\t"))
    assert gpu_check.write_summary(out)


@pytest.mark.slow
@pytest.mark.warp
def test_the_whole_check_runs_tiny_on_warps_cpu_device(tmp_path):
    pytest.importorskip("mujoco_warp")
    # packages from WHEELHOUSE if set (for this Python's version), else from the index
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "GPU_CHECK_PYTHON": sys.executable,
        "GPU_CHECK_DEVICE": "cpu",
        "GPU_CHECK_WORLDS": "4 8",
        "GPU_CHECK_BENCH_STEPS": "5",
        "GPU_CHECK_SEEDS": "0-1",
        "GPU_CHECK_STEPS": "4096",
        "GPU_CHECK_TERM_AFTER": "0",
        "GPU_CHECK_TIMEOUT_INSTALL": "600",
        "GPU_CHECK_TIMEOUT_TESTS": "900",
        "GPU_CHECK_TIMEOUT_TRAIN": "900",
    }
    run = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8 and "summary.md" in files
    report = json.loads((tmp_path / "out" / "train.json").read_text())
    assert report["resumed_from_checkpoint"] and report["finished"] and report["stopped_at"] == 2048
