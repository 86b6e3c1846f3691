import os

import pytest
import torch

from rlplast import checkpoint
from rlplast.atomic import atomic_write_text
from rlplast.checkpoint import (
    CheckpointMismatch,
    config_diff,
    config_hash,
    flatten,
    load_checkpoint,
    save_checkpoint,
)

CFG = {"agent": {"clip": 0.2, "hidden": [256, 256]}, "optimizer": {"lr": 1e-4}}


def test_round_trip_with_weights_only_content(tmp_path):
    gen = torch.Generator().manual_seed(3)
    state = {"w": torch.randn(2, 3), "gens": [gen.get_state()], "step": 7, "nested": {"x": [1.5, None]}}
    path = tmp_path / "ck.pt"
    save_checkpoint(path, state, CFG)
    loaded = load_checkpoint(path, CFG)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 7 and loaded["nested"] == {"x": [1.5, None]}
    restored = torch.Generator()
    restored.set_state(loaded["gens"][0])
    assert torch.equal(torch.rand(4, generator=restored), torch.rand(4, generator=gen))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_other_config_is_refused_naming_the_keys(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"step": 1}, CFG)
    other = {"agent": {"clip": 0.3, "hidden": [256, 256]}, "optimizer": {"lr": 1e-4}}
    with pytest.raises(CheckpointMismatch, match=r"agent\.clip: 0\.2 -> 0\.3"):
        load_checkpoint(path, other)


def test_hash_is_order_independent_and_sensitive_to_values():
    reordered = {"optimizer": {"lr": 1e-4}, "agent": {"hidden": [256, 256], "clip": 0.2}}
    assert config_hash(CFG) == config_hash(reordered)
    assert config_hash(CFG) != config_hash({**CFG, "optimizer": {"lr": 2e-4}})


def test_flatten_and_diff_by_hand():
    assert flatten({"a": {"b": 1}, "c": [2, {"d": 3}]}) == {"a.b": 1, "c.0": 2, "c.1.d": 3}
    assert config_diff({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["b: 2 -> '<absent>'", "c: '<absent>' -> 3"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"step": 1}, CFG)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2}, CFG)
    monkeypatch.undo()
    assert load_checkpoint(path, CFG)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_atomic_write_text_replaces(tmp_path):
    path = tmp_path / "sub" / "done.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and os.listdir(path.parent) == ["done.json"]


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    # a temporary file is owner-only (0o600); results on a shared filesystem must stay readable
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    text, ckpt = tmp_path / "config.yaml", tmp_path / "ck.pt"
    atomic_write_text(text, "x")
    save_checkpoint(ckpt, {"step": 1}, CFG)
    expected = 0o666 & ~_current_umask()
    assert (plain.stat().st_mode & 0o777) == expected
    assert (text.stat().st_mode & 0o777) == expected and (ckpt.stat().st_mode & 0o777) == expected


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_unsafe_pickle_is_rejected(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "obj": object()}, path)
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        load_checkpoint(path, CFG)


def test_checkpoint_from_before_a_new_config_key_resumes_and_other_values_are_still_refused(tmp_path):
    """A checkpoint whose saved config lacks a key added since (here agent.init_fan_in, at its
    default) resumes under today's config; one with a real difference is still refused."""
    from rlplast.config import load_config

    today = load_config("ant", "ppo", ["agent.init_fan_in=null"]).training_dict()
    old = {**today, "agent": {k: v for k, v in today["agent"].items() if k != "init_fan_in"}}
    assert config_hash(old) != config_hash(today)
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"step": 1}, old)
    assert load_checkpoint(path, today)["step"] == 1
    changed = {**today, "agent": {**today["agent"], "init_fan_in": 111}}
    with pytest.raises(CheckpointMismatch, match=r"agent\.init_fan_in: '<absent>' -> 111"):
        load_checkpoint(path, changed)
