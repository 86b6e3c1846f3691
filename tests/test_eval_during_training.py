"""eval.every: deterministic evaluations logged during training, which leave the training untouched."""

import csv

import pytest
import torch
from test_runner import interrupt_after
from tiny_ant import OVERRIDES, UPDATE, train_tiny

from rlplast import runner
from rlplast.config import ConfigError, load_config
from rlplast.evaluation import run_episodes, trained_friction
from rlplast.policy import load_policy

SEEDS = [0, 1]
STEPS = 4 * UPDATE
EVAL = ("eval.every=64", "eval.episodes=2")


def rows(path, keep=lambda tag: tag != "charts/sps"):
    with open(path) as f:
        return [(r["step"], r["tag"], r["value"]) for r in csv.DictReader(f) if keep(r["tag"])]


def assert_same_state(a, b, where="checkpoint"):
    """Every tensor, number and string of two checkpoints equal (bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def checkpoint(method_dir):
    return torch.load(runner.checkpoint_path(method_dir, SEEDS), weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    train_tiny(root / "off", SEEDS, STEPS)
    train_tiny(root / "on", SEEDS, STEPS, extra=EVAL)
    return root


def test_evaluating_changes_nothing_in_the_training(runs):
    # the whole checkpoint: weights, optimizer, generators, simulator, tracker, torch's RNG
    assert_same_state(checkpoint(runs / "off"), checkpoint(runs / "on"))
    for seed in SEEDS:
        not_eval = lambda tag: tag != "charts/sps" and not tag.startswith("eval/")  # noqa: E731
        assert rows(runs / f"off/seed{seed}/metrics.csv", not_eval) == rows(
            runs / f"on/seed{seed}/metrics.csv", not_eval
        )
        assert not [r for r in rows(runs / f"off/seed{seed}/metrics.csv") if r[1].startswith("eval/")]


def test_logged_evaluation_is_the_policys_deterministic_return(runs):
    for seed in SEEDS:
        evals = [r for r in rows(runs / f"on/seed{seed}/metrics.csv") if r[1] == "eval/return"]
        assert [int(step) for step, _, _ in evals] == [64, 128]
        policy = load_policy(runs / "on", seed=seed)  # the final weights, step 128
        friction = trained_friction(policy.config.env, seed, 128)
        episodes = run_episodes(policy.actor, policy.config.env, friction, 2, seed)
        assert float(evals[-1][2]) == pytest.approx(episodes.returns.mean(), rel=1e-6)
        lengths = [r for r in rows(runs / f"on/seed{seed}/metrics.csv") if r[1] == "eval/length"]
        assert float(lengths[-1][2]) == episodes.lengths.mean()


def test_resume_with_evaluation_is_exact(runs, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        interrupt_after(m, 3, "crash")  # the checkpoint of step 64 (every 32) survives
        with pytest.raises(RuntimeError, match="simulated crash"):
            train_tiny(out, SEEDS, STEPS, extra=EVAL)
    train_tiny(out, SEEDS, STEPS, extra=EVAL)
    assert_same_state(checkpoint(runs / "on"), checkpoint(out))
    for seed in SEEDS:
        assert rows(runs / f"on/seed{seed}/metrics.csv") == rows(out / f"seed{seed}/metrics.csv")


def test_eval_is_outside_the_config_hash_so_old_checkpoints_resume_with_it(tmp_path):
    plain = load_config("slippery_ant", "ppo", OVERRIDES)
    assert load_config("slippery_ant", "ppo", [*OVERRIDES, *EVAL]).training_dict() == plain.training_dict()
    assert "eval" not in plain.training_dict()
    train_tiny(tmp_path, SEEDS, 2 * UPDATE)  # no evaluation
    train_tiny(tmp_path, SEEDS, STEPS, extra=EVAL)  # continued with one
    evals = [r for r in rows(tmp_path / "seed0/metrics.csv") if r[1] == "eval/return"]
    assert [int(step) for step, _, _ in evals] == [128]


@pytest.mark.parametrize(("override", "message"), [("eval.every=0", "eval.every"), ("eval.often=5", "unknown key")])
def test_bad_eval_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("slippery_ant", "ppo", [override])


def test_sb3_runs_refuse_evaluation_during_training():
    from rlplast.sb3.model import check_supported

    with pytest.raises(ValueError, match=r"eval\.every must be null"):
        check_supported(load_config("slippery_ant", "ppo", ["implementation=sb3", "eval.every=1000"]))
