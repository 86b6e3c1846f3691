"""Progress where no terminal is: plain lines (steps, SPS, ETA, return) every N seconds, a resume
announced, and nothing but messages with --no-progress."""

import io

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console
from rich.progress import Progress

from rlplast import runner
from rlplast.cli import main
from rlplast.progress import GroupProgress, PlainProgress, make_progress
from tests.test_runner import UPDATE, interrupt_after, point_env, tiny_cfg  # noqa: F401 (point_env: the fixture)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def plain(every=30.0):
    out, clock = io.StringIO(), Clock()
    return PlainProgress(Console(file=out, width=300), every=every, clock=clock), out, clock


def test_plain_lines_at_the_first_update_every_n_seconds_and_at_the_end():
    progress, out, clock = plain(every=30)
    task = progress.add_task("ppo seeds 0-1", total=10_000, completed=2_000)  # resumed at 2000
    for now, steps in ((10, 4_000), (20, 6_000), (41, 8_000), (50, 10_000)):
        clock.now = now
        progress.update(task, completed=steps, sps=400.0, ret=-12.34, friction=1.0)
    progress.stop_task(task)
    assert out.getvalue().splitlines() == [
        "ppo seeds 0-1: 4k/10k steps (40%), 400 sps, eta 0:00:30, return -12.3",  # 200 steps/s since the start
        "ppo seeds 0-1: 8k/10k steps (80%), 400 sps, eta 0:00:14, return -12.3",  # the 6000 at 20 s: not due
        "ppo seeds 0-1: 10k/10k steps (100%), 400 sps, eta 0:00:00, return -12.3",  # the end, whenever it comes
    ]


def test_stop_shows_the_last_state_once():
    progress, out, clock = plain(every=30)
    task = progress.add_task("x", total=100)
    clock.now = 1
    progress.update(task, completed=10)
    clock.now = 2
    progress.update(task, completed=20)  # not due
    progress.stop_task(task)
    progress.stop_task(task)
    assert [line.split(":")[1].split(",")[0] for line in out.getvalue().splitlines()] == [
        " 10/100 steps (10%)",
        " 20/100 steps (20%)",
    ]


def test_quiet_progress_prints_messages_only():
    progress, out, clock = plain(every=None)
    bar = GroupProgress(progress, "ppo seeds 0", 100)
    clock.now = 100
    bar.update(100, 50.0, 1.0, 1.0)
    bar.message("resuming ppo seeds 0 from step 32")
    bar.finish()
    assert out.getvalue() == "resuming ppo seeds 0 from step 32\n"


def test_make_progress_is_plain_where_no_terminal_is():
    assert isinstance(make_progress(Console(file=io.StringIO())), PlainProgress)
    assert isinstance(make_progress(Console(file=io.StringIO(), force_terminal=True)), Progress)
    quiet = make_progress(Console(file=io.StringIO(), force_terminal=True), quiet=True)
    assert isinstance(quiet, PlainProgress) and quiet.every is None


def test_a_resume_is_announced(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_after(m, 2, "signal")
        with pytest.raises(runner.Interrupted):
            runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=4 * UPDATE)
    saved = torch.load(runner.checkpoint_path(tmp_path, [0, 1]), weights_only=True)["run_step"]
    assert 0 < saved < 4 * UPDATE
    progress, out, _ = plain()
    runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=4 * UPDATE, progress=progress)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"resuming ppo seeds 0-1 from step {saved}"
    assert lines[-1].startswith("ppo seeds 0-1: 64/64 steps (100%)")


def test_train_prints_plain_progress_into_a_file(tmp_path):
    args = ["train", "--task", "ant", "--seeds", "0", "--steps", "64", "--out", str(tmp_path), "--device", "cpu"]
    args += ["--set", "agent.hidden=[16]", "--set", "agent.steps_per_update=32", "--set", "agent.minibatches=2"]
    args += ["--set", "agent.epochs=1", "--set", "metrics.rank_interval=32", "--set", "metrics.interval=32"]
    result = CliRunner().invoke(main, args)  # its output is not a terminal
    assert result.exit_code == 0, result.output
    assert "ppo seeds 0: 32/64 steps (50%)" in result.output and "ppo seeds 0: 64/64 steps (100%)" in result.output
    assert " sps, eta " in result.output and "return" in result.output
