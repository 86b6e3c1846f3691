"""Every bad input the CLI is tested with, in one table: each is a usage error (exit code 2) whose
message names the problem, with no traceback, and writes nothing.

``{tmp}`` in an argument is the test's folder, which holds the bad files made by ``bad_files``.
A row's condition simulates the machine: ``no_warp`` (warp-lang and mujoco-warp not installed),
``no_cuda`` (no CUDA GPU).
"""

import sys

import pytest
import torch
from click.testing import CliRunner

from rlplast.cli import main

EXPERIMENT = ["compare", "--task", "ant", "--methods", "ppo", "--seeds", "0", "--steps", "1k", "--dry-run"]

# (arguments, a part of the message, condition)
BAD_INPUTS = [
    # train: values of its options
    (["train", "--seeds", "5-2"], "descending", None),
    (["train", "--seeds", ""], "bad seed", None),
    (["train", "--seeds", "1,1"], "seeds '1,1' repeat [1]", None),
    (["train", "--steps", "abc"], "bad step count", None),
    (["train", "--steps", "1.5"], "is not a whole number of steps", None),
    (["train", "--steps", "0"], "must be positive", None),
    (["train", "--backend", "nope"], "Invalid value for '--backend'", None),
    (["train", "--agent", "nope"], "Invalid value for '--agent'", None),
    (["train", "--device", "gpu"], "bad device 'gpu': expected auto, cpu, cuda or cuda:<index>", None),
    (["train", "--device", "cuda:x"], "bad device 'cuda:x'", None),
    # train: tasks, methods and their files
    (["train", "--task", "nope"], "unknown task 'nope'; available: ant, halfcheetah, hopper", None),
    (["train", "--method", "{tmp}/latin1.yaml"], "latin1.yaml: not UTF-8 text (byte 17); save it as UTF-8", None),
    (["train", "--task", "{tmp}/latin1.yaml"], "latin1.yaml: not UTF-8 text", None),
    (["train", "--method", "{tmp}/broken.yaml"], "broken.yaml: not valid YAML (while parsing a flow sequence", None),
    (["train", "--method", "{tmp}/list.yaml"], "list.yaml: expected a mapping at the top level, got list", None),
    # train: overrides
    (["train", "--set", "agent.lr=1"], "agent.lr: unknown key", None),
    (["train", "--set", "agent.clip=-1"], "agent.clip: Input should be greater than 0", None),
    (["train", "--set", "agent.epochs"], "expected key=value", None),
    (["train", "--set", "=5"], "expected key=value", None),
    (["train", "--set", "method=ppo_cbp"], "choose the method itself with --method", None),
    (["train", "--set", "optimizer.lr=.inf"], "optimizer.lr: inf is not a finite number", None),
    (["train", "--set", "agent=5"], "agent: Input should be a valid dictionary", None),
    (["train", "--set", "env.friction.schedule.every=abc"], "env.friction.schedule.every: Input should be", None),
    (["train", "--set", "agent.hidden=[64,abc"], "override 'agent.hidden': value '[64,abc' is not valid YAML", None),
    (["train", "--set", "agent.hidden=!!python/object:os.system"], "is not valid YAML (could not determine", None),
    # train: where results go
    (["train", "--out", "{tmp}/afile/x"], "--out {tmp}/afile/x: {tmp}/afile is a file, not a folder", None),
    (["train", "--out", "/proc/x"], "--out /proc/x: cannot create that folder", None),
    (["train", "--out", "{tmp}/" + "x" * 300], "cannot create that folder (File name too long)", None),
    # train: the warp backend where it cannot run as asked
    (["train", "--backend", "warp", "--steps", "64"], "--backend warp needs warp-lang and mujoco-warp", "no_warp"),
    (
        ["train", "--backend", "warp", "--steps", "64"],
        "there is no CUDA GPU here, so Warp would simulate on its CPU",
        "no_cuda",
    ),
    # compare
    (["compare"], "give an EXPERIMENT_FILE, or --task with --methods, --seeds and --steps", None),
    (["compare", "{tmp}/missing.yaml"], "no experiment file at {tmp}/missing.yaml", None),
    (["compare", "{tmp}/latin1.yaml", "--dry-run"], "latin1.yaml: not valid YAML", None),
    ([*EXPERIMENT, "--set", "agent.hidden=[64,abc"], "value '[64,abc' is not valid YAML", None),
    ([*EXPERIMENT, "--set", "agent.lr=1"], "agent.lr: unknown key", None),
    ([*EXPERIMENT, "--set", "novalue"], "expected KEY=VALUE", None),
    ([*EXPERIMENT, "--methods", "ppo,nope"], "unknown method 'nope'", None),
    ([*EXPERIMENT, "--methods", "ppo,ppo"], "methods repeat ['ppo']", None),
    ([*EXPERIMENT, "--task", "nope"], "unknown task 'nope'", None),
    ([*EXPERIMENT, "--seeds", "1,1"], "repeat", None),
    ([*EXPERIMENT, "--parallel", "0"], "'0': expected a positive number or auto", None),
    ([*EXPERIMENT, "--device", "gpu"], "bad device 'gpu'", None),
    ([*EXPERIMENT, "--baseline", "nope"], "--baseline 'nope' is not one of the methods: ppo", None),
    ([*EXPERIMENT, "--out", "{tmp}/afile/x"], "--out {tmp}/afile/x: {tmp}/afile is a file, not a folder", None),
    ([*EXPERIMENT, "--out", "{tmp}/a", "--results-dir", "{tmp}"], "give --out (the experiment folder) or", None),
    ([*EXPERIMENT, "--out", "{tmp}/a", "--name", "b"], "names the experiment 'a', but --name says 'b'", None),
    ([*EXPERIMENT, "--backend", "warp"], "--backend warp needs warp-lang and mujoco-warp", "no_warp"),
    ([*EXPERIMENT, "--backend", "warp"], "there is no CUDA GPU here", "no_cuda"),
    (["train", "--device", "cuda", "--backend", "cpu"], "--device cuda: torch sees no CUDA GPU here", "no_cuda"),
    ([*EXPERIMENT, "--device", "cuda", "--backend", "cpu"], "--device cuda: torch sees no CUDA GPU here", "no_cuda"),
]


@pytest.fixture
def bad_files(tmp_path, monkeypatch):
    """The test's folder as the working directory, with the bad files the table names."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "latin1.yaml").write_bytes(b"agent:\n  epochs: \xff\n")
    (tmp_path / "broken.yaml").write_text("agent: [1\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    return tmp_path


def simulate(condition, monkeypatch):
    if condition == "no_warp":
        for module in ("warp", "mujoco_warp"):
            monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    elif condition == "no_cuda":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def files_under(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("args", "message", "condition"), BAD_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_bad_input_is_a_one_line_usage_error_that_writes_nothing(bad_files, monkeypatch, args, message, condition):
    simulate(condition, monkeypatch)
    before = files_under(bad_files)
    result = CliRunner().invoke(main, [a.format(tmp=bad_files) for a in args])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    error = next(line for line in result.output.splitlines() if line.startswith("Error:"))
    multi_line = error.endswith(":")  # a config's validation errors: one line per bad key below it
    assert message.format(tmp=bad_files) in (result.output if multi_line else error)
    assert files_under(bad_files) == before
