"""rlplast.load_policy: predict() is the checkpoint's mean action; exports load and act the same."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny_ant import checkpoint_mean, train_tiny

import rlplast
from rlplast.cli import main
from rlplast.policy import GaussianActor, PolicyNotFound, load_policy

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def method_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "ppo"
    train_tiny(out, SEEDS)
    return out


def observations(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 27)).astype(np.float32)


def test_predict_is_the_checkpoints_mean_action_single_and_batched(method_dir):
    obs = observations()
    for seed in SEEDS:
        policy = rlplast.load_policy(method_dir, seed=seed)
        assert (policy.seed, policy.step, policy.obs_dim, policy.act_dim) == (seed, 96, 27, 8)
        expected = checkpoint_mean(method_dir, SEEDS, seed, obs)
        actions, state = policy.predict(obs, deterministic=True)
        assert state is None and actions.shape == (6, 8) and actions.dtype == np.float32
        np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)
        single, _ = policy.predict(obs[2])
        assert single.shape == (8,)
        np.testing.assert_allclose(single, expected[2], rtol=1e-5, atol=1e-6)
    # the two seeds are different networks
    a = load_policy(method_dir / "seed0").predict(obs)[0]
    b = load_policy(method_dir / "seed1").predict(obs)[0]
    assert not np.allclose(a, b)


def test_stochastic_predict_draws_around_the_mean_with_the_actors_std(method_dir):
    policy = load_policy(method_dir, seed=0)
    obs = np.repeat(observations(1), 4000, axis=0)
    mean, _ = policy.predict(obs)
    draws, _ = policy.predict(obs, deterministic=False)
    std = np.exp(policy.actor.log_std.numpy())
    np.testing.assert_allclose((draws - mean).std(0), std, rtol=0.08)
    assert np.abs((draws - mean).mean(0)).max() < 0.1


def test_load_policy_from_a_checkpoint_file_and_bad_paths(method_dir):
    ckpt = method_dir / "checkpoints" / "seeds_0-1.pt"
    assert load_policy(ckpt, seed=1).seed == 1
    with pytest.raises(PolicyNotFound, match="holds seeds \\[0, 1\\]; choose one"):
        load_policy(method_dir)
    with pytest.raises(PolicyNotFound, match="not seed 7"):
        load_policy(method_dir, seed=7)
    with pytest.raises(PolicyNotFound, match="not a run folder"):
        load_policy(method_dir / "checkpoints")
    with pytest.raises(ValueError, match="observation must have shape"):
        load_policy(ckpt, seed=0).predict(np.zeros(5))


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript"])
def test_exported_actor_gives_the_checkpoints_actions(method_dir, tmp_path, fmt):
    out = tmp_path / f"actor_{fmt}.pt"
    result = CliRunner().invoke(main, ["export", str(method_dir), "--seed", "1", "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "seed 1 (step 96" in result.output
    obs = observations()
    if fmt == "torchscript":
        module = torch.jit.load(str(out))
    else:
        state = torch.load(out, weights_only=True)
        assert set(state) == {
            "net.0.weight",
            "net.0.bias",
            "net.2.weight",
            "net.2.bias",
            "net.4.weight",
            "net.4.bias",
            "log_std",
        }
        module = GaussianActor(27, [16, 16], 8)
        module.load_state_dict(state)
    with torch.no_grad():
        actions = module(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(actions, checkpoint_mean(method_dir, SEEDS, 1, obs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(actions, load_policy(method_dir, seed=1).predict(obs)[0])


def test_export_of_a_folder_without_runs_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "not a run folder" in result.output
    assert len(result.output.strip().splitlines()) == 1
