"""Faults around a run's files: a stop between done.json writes, a failed start, a full disk,
and checkpoints that two identical runs write alike."""

import errno
import json

import pytest
import torch

from rlplast import atomic, runner
from rlplast.checkpoint import CheckpointUnreadable
from tests.test_runner import UPDATE, point_env, tiny_cfg  # noqa: F401 (point_env: the fixture)


def snapshot(folder):
    """Every file under ``folder`` but the lock files, with its bytes."""
    return {
        p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".lock"
    }


def test_a_stop_between_the_done_files_is_completed_by_the_same_call(tmp_path):
    runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=2 * UPDATE)
    (tmp_path / "seed1/done.json").unlink()  # the stop came after seed 0's done.json
    seed0 = snapshot(tmp_path / "seed0")
    assert runner.reached_steps(tmp_path, 1) == 2 * UPDATE
    runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=2 * UPDATE)
    assert snapshot(tmp_path / "seed0") == seed0
    done = json.loads((tmp_path / "seed1/done.json").read_text())
    assert done == json.loads((tmp_path / "seed0/done.json").read_text()) and done["steps"] == 2 * UPDATE
    # and the group still extends as one
    runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=3 * UPDATE)
    assert all(json.loads((tmp_path / f"seed{s}/done.json").read_text())["steps"] == 48 for s in (0, 1))


def test_a_missing_done_file_of_an_unfinished_group_is_not_invented(tmp_path, monkeypatch):
    from tests.test_runner import interrupt_after

    runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=2 * UPDATE)
    with monkeypatch.context() as m:  # extending: the checkpoint moves past the done.json steps
        interrupt_after(m, 1, "signal")
        with pytest.raises(runner.Interrupted):
            runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=4 * UPDATE)
    assert runner.reached_steps(tmp_path, 0) is None and runner.reached_steps(tmp_path, 1) is None


def test_a_failed_start_leaves_finished_runs_as_they_were(tmp_path):
    runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=2 * UPDATE)
    ckpt = runner.checkpoint_path(tmp_path, [0, 1])
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # a truncated checkpoint
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointUnreadable):
        runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=3 * UPDATE)
    assert snapshot(tmp_path) == before


def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_path(tmp_path, monkeypatch):
    write_all = atomic.write_all

    def no_space(fd, data):
        if data[:2] == b"PK":  # a checkpoint (torch's zip format); the other files fit
            raise OSError(errno.ENOSPC, "No space left on device")
        write_all(fd, data)

    monkeypatch.setattr(atomic, "write_all", no_space)
    with pytest.raises(atomic.DiskFull) as full:
        runner.train_group(tiny_cfg(), [0], tmp_path, steps=2 * UPDATE)
    message = str(full.value)
    assert "\n" not in message and str(runner.checkpoint_path(tmp_path, [0])) in message
    assert "free" in message and "needs" in message
    assert not runner.checkpoint_path(tmp_path, [0]).exists()
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))  # no partial file left behind


def test_two_identical_runs_write_identical_checkpoints(tmp_path):
    torch.manual_seed(123)  # whatever the process did before must not matter
    runner.train_group(tiny_cfg(), [0, 1], tmp_path / "a", steps=2 * UPDATE)
    torch.rand(5)
    runner.train_group(tiny_cfg(), [0, 1], tmp_path / "b", steps=2 * UPDATE)
    a, b = (torch.load(runner.checkpoint_path(tmp_path / d, [0, 1]), weights_only=True) for d in "ab")
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert_same(a, b)


def assert_same(a, b, where="checkpoint"):
    """Equal nested dicts, lists and tensors."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}.{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where
