"""Locks that keep two processes off the same runs (rlplast.locks, runner.claim_runs)."""

import subprocess
import sys
import threading
import time

import pytest

from rlplast import runner
from rlplast.checkpoint import CheckpointMismatch
from rlplast.locks import RunBusy, hold
from tests.test_runner import UPDATE, point_env, tiny_cfg  # noqa: F401 (point_env: the fixture)

HOLD_AND_WAIT = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_run_being_trained_by_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, str(tmp_path / ".seed1.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunBusy, match=r"run seed1 of .* is being trained by another process"):
            runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=UPDATE)
        assert not (tmp_path / "seed0" / "done.json").exists()  # nothing trained, no run touched
    finally:
        holder.kill()  # as a crash would: the OS drops its lock
        holder.wait()
    runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=UPDATE)
    assert (tmp_path / "seed1" / "done.json").exists()


def test_a_claim_writes_the_config_so_the_next_process_with_another_config_is_refused(tmp_path):
    """Two processes starting on one empty folder: the claim leaves config.yaml before any
    training, so the second one's check (after the first's, under the config lock) fails."""
    with runner.contextlib.ExitStack() as locks:
        assert runner.claim_runs(tiny_cfg(), tmp_path, [0], UPDATE, locks) == [0]
        assert (tmp_path / "seed0" / "config.yaml").is_file()
        other = tiny_cfg().model_copy(update={"agent": tiny_cfg().agent.model_copy(update={"epochs": 1})})
        with pytest.raises(CheckpointMismatch, match=r"seed0: agent\.epochs: 2 -> 1"):
            runner.train_group(other, [1], tmp_path, steps=UPDATE)


def test_the_config_check_waits_for_the_lock(tmp_path):
    done = threading.Event()

    def claim():
        with runner.contextlib.ExitStack() as locks:
            runner.claim_runs(tiny_cfg(), tmp_path, [0], UPDATE, locks)
        done.set()

    with hold(tmp_path / runner.CONFIG_LOCK, "the configs"):
        thread = threading.Thread(target=claim)
        thread.start()
        time.sleep(0.3)
        assert not done.is_set()  # blocked on the held lock
    thread.join(timeout=10)
    assert done.is_set()


def test_a_start_that_fails_leaves_no_config_to_refuse_a_corrected_one(tmp_path, monkeypatch):
    def broken_env(*args, **kwargs):
        raise RuntimeError("no such backend here")

    monkeypatch.setattr(runner, "make_vec_env", broken_env)
    with pytest.raises(RuntimeError, match="no such backend"):
        runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=UPDATE)
    assert not (tmp_path / "seed0").exists() and not (tmp_path / "seed1").exists()
    monkeypatch.undo()
    other = tiny_cfg().model_copy(update={"agent": tiny_cfg().agent.model_copy(update={"epochs": 1})})
    runner.train_group(other, [0], tmp_path, steps=UPDATE)  # not refused: nothing of the first config is left
    assert (tmp_path / "seed0" / "done.json").exists()


def test_finished_runs_are_only_read(tmp_path):
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=UPDATE)
    for lock in tmp_path.glob(".*.lock"):
        lock.unlink()
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=UPDATE)  # finished: nothing to claim
    assert not list(tmp_path.glob(".*.lock"))
    other = tiny_cfg().model_copy(update={"agent": tiny_cfg().agent.model_copy(update={"epochs": 1})})
    with pytest.raises(CheckpointMismatch):  # still checked
        runner.train_group(other, [0], tmp_path, steps=UPDATE)
