import numpy as np
import pytest
import torch

from rlplast.agents.storage import RolloutStorage, gae


def gae_reference(rewards, values, ended, bootstrap, last_value, gamma, lam):
    """Textbook GAE for one env, written with plain Python lists (an independent route)."""
    T = len(rewards)
    adv = [0.0] * T
    next_adv, next_value = 0.0, last_value
    for t in reversed(range(T)):
        cont = 0.0 if ended[t] else 1.0
        delta = rewards[t] + gamma * (cont * next_value + bootstrap[t]) - values[t]
        adv[t] = delta + gamma * lam * cont * next_adv
        next_adv, next_value = adv[t], values[t]
    return adv


def test_gae_hand_computed_single_env():
    # gamma = lam = 0.5, no episode end: deltas = r + 0.5 V' - V
    rewards = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1)
    values = torch.full((1, 3, 1), 0.5)
    no_end = torch.zeros(1, 3, 1, dtype=torch.bool)
    adv, ret = gae(rewards, values, no_end, torch.zeros(1, 3, 1), torch.tensor([[1.0]]), 0.5, 0.5)
    # delta_2 = 3 + 0.5*1 - 0.5 = 3; delta_1 = 2 + 0.5*0.5 - 0.5 = 1.75; delta_0 = 1 + 0.25 - 0.5 = 0.75
    # A_2 = 3; A_1 = 1.75 + 0.25 * 3 = 2.5; A_0 = 0.75 + 0.25 * 2.5 = 1.375
    torch.testing.assert_close(adv.flatten(), torch.tensor([1.375, 2.5, 3.0]))
    torch.testing.assert_close(ret, adv + values)


def test_gae_termination_and_truncation_bootstrap_by_hand():
    # episode ends at t = 0; at t = 0 the end is a truncation whose final obs has V = 4
    rewards = torch.tensor([1.0, 1.0]).view(1, 2, 1)
    values = torch.tensor([2.0, 3.0]).view(1, 2, 1)
    ended = torch.tensor([True, False]).view(1, 2, 1)
    boot = torch.tensor([4.0, 0.0]).view(1, 2, 1)
    adv, _ = gae(rewards, values, ended, boot, torch.tensor([[5.0]]), 0.9, 0.8)
    # t=1: 1 + 0.9*5 - 3 = 2.5; t=0: 1 + 0.9*4 - 2 = 2.6 (no carry across the end)
    torch.testing.assert_close(adv.flatten(), torch.tensor([2.6, 2.5]))
    # the reference treatment (terminal): no bootstrap, 1 - 2 = -1
    adv_terminal, _ = gae(rewards, values, ended, torch.zeros_like(boot), torch.tensor([[5.0]]), 0.9, 0.8)
    torch.testing.assert_close(adv_terminal.flatten(), torch.tensor([-1.0, 2.5]))


def test_gae_matches_reference_loop_on_random_batch():
    rng = np.random.default_rng(0)
    R, T, E = 2, 17, 3
    rewards = rng.normal(size=(R, T, E))
    values = rng.normal(size=(R, T, E))
    ended = rng.random((R, T, E)) < 0.2
    bootstrap = np.where(ended & (rng.random((R, T, E)) < 0.5), rng.normal(size=(R, T, E)), 0.0)
    last = rng.normal(size=(R, E))
    to_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    adv, _ = gae(to_t(rewards), to_t(values), torch.tensor(ended), to_t(bootstrap), to_t(last), 0.99, 0.95)
    for r in range(R):
        for e in range(E):
            cols = (a[r, :, e] for a in (rewards, values, ended, bootstrap))
            ref = gae_reference(*cols, last[r, e], 0.99, 0.95)
            np.testing.assert_allclose(adv[r, :, e].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_storage_layout_and_flat_view_are_run_major():
    s = RolloutStorage(num_runs=2, envs_per_run=3, steps=4, obs_dim=5, act_dim=1)
    for t in range(4):
        obs = torch.arange(6, dtype=torch.float32).view(2, 3, 1).expand(2, 3, 5) + 100 * t
        s.add_action(obs, torch.zeros(2, 3, 1), torch.zeros(2, 3), torch.zeros(2, 3))
        s.add_outcome(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool))
    assert s.full
    flat = s.flat("obs")
    assert flat.shape == (2, 12, 5)
    # run 1's batch holds env ids 3, 4, 5 only, step-major within the run
    assert flat[1, :, 0].tolist() == [3, 4, 5, 103, 104, 105, 203, 204, 205, 303, 304, 305]
    with pytest.raises(RuntimeError, match="full"):
        s.add_action(obs, torch.zeros(2, 3, 1), torch.zeros(2, 3), torch.zeros(2, 3))


def test_truncated_flag_excludes_terminations():
    s = RolloutStorage(num_runs=1, envs_per_run=3, steps=1, obs_dim=1, act_dim=1)
    term = torch.tensor([[True, False, True]])
    trunc = torch.tensor([[False, True, True]])
    s.add_action(torch.zeros(1, 3, 1), torch.zeros(1, 3, 1), torch.zeros(1, 3), torch.zeros(1, 3))
    s.add_outcome(torch.zeros(1, 3), term, trunc)
    assert s.full
    assert s.ended[0, 0].tolist() == [True, True, True]
    assert s.truncated[0, 0].tolist() == [False, True, False]


def test_out_of_order_recording_is_refused():
    s = RolloutStorage(num_runs=1, envs_per_run=1, steps=2, obs_dim=1, act_dim=1)
    never = torch.zeros(1, 1, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="add_action first"):
        s.add_outcome(torch.zeros(1, 1), never, never)
    s.add_action(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1), torch.zeros(1, 1))
    with pytest.raises(RuntimeError, match="twice"):
        s.add_action(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1), torch.zeros(1, 1))
    assert s.step == 1 and not s.full
