"""CBP on SB3 policies: the same result as rlplast's CBP, the expected replacement rate, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from rlplast.agents.networks import MLP
from rlplast.agents.plasticity.base import StepContext
from rlplast.agents.plasticity.cbp import CBP, CBPConfig
from rlplast.sb3.cbp import CBPCallback, PolicyCBP


def tiny_policy(hidden=(6, 5), obs_dim=2, lr=1e-3) -> ActorCriticPolicy:
    obs = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
    act = spaces.Box(-1.0, 1.0, (1,), np.float32)
    arch = {"pi": list(hidden), "vf": list(hidden)}
    return ActorCriticPolicy(obs, act, lambda _: lr, net_arch=arch, activation_fn=nn.ReLU)


def rlplast_copy(policy: ActorCriticPolicy) -> MLP:
    """rlplast's one-run MLP with the SB3 actor's weights (policy_net, then action_net)."""
    linears = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)] + [policy.action_net]
    mlp = MLP(1, linears[0].in_features, [m.out_features for m in linears[:-1]], 1, "relu", name="actor")
    with torch.no_grad():
        for mine, theirs in zip(mlp.layers, linears, strict=True):
            mine.weight.copy_(theirs.weight.unsqueeze(0))
            mine.bias.copy_(theirs.bias.unsqueeze(0))
    return mlp


def test_policy_cbp_matches_rlplast_cbp_step_for_step():
    # plain SGD on both sides (no per-weight state), so any difference is CBP's
    cfg = CBPConfig(maturity_threshold=5, replacement_rate=0.05)
    policy = tiny_policy()
    policy.optimizer = torch.optim.SGD(policy.parameters(), lr=0.05)
    cbp = PolicyCBP(policy, cfg, seed=3, apply_to=("actor",))
    mlp = rlplast_copy(policy)
    sgd = torch.optim.SGD(mlp.parameters(), lr=0.05)
    reference = CBP(cfg, mlp.hidden_layers(), sgd, [3])
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 61):
        x = torch.randn(16, 2, generator=gen)
        y = x.sum(-1, keepdim=True).sin()
        out = policy.action_net(policy.mlp_extractor.forward_actor(x))
        policy.optimizer.zero_grad()
        (out - y).square().mean().backward()
        policy.optimizer.step()  # the post-step hook runs CBP

        ours = mlp(x.unsqueeze(0))
        sgd.zero_grad()
        (ours - y.unsqueeze(0)).square().mean().backward()
        sgd.step()
        reference.after_step(StepContext(step=step))
    assert cbp.steps == 60
    assert cbp.replaced()["all"] == int(reference.replaced.sum()) > 0
    assert cbp.replaced()["actor.0"] == int(reference.replaced[0, 0])
    sb3 = [*[m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)], policy.action_net]
    for mine, theirs in zip(mlp.layers, sb3, strict=True):
        torch.testing.assert_close(theirs.weight.detach(), mine.weight[0].detach())
        torch.testing.assert_close(theirs.bias.detach(), mine.bias[0].detach())


def expected_replacements(width: int, steps: int, maturity: int, rate: float) -> int:
    """The paper's rule by hand, for one layer whose units are all born at step 0: each step every
    unit ages; the credit grows by the eligible count (age > maturity); floor(rate * credit) units
    are due, the lowest-utility eligible ones are replaced (age 0). Which units does not matter here."""
    ages, credit, settled, replaced = np.zeros(width, dtype=int), 0, 0, 0
    for _ in range(steps):
        ages += 1
        eligible = np.flatnonzero(ages > maturity)
        credit += len(eligible)
        due = math.floor(rate * credit) - settled
        settled += due
        take = min(due, len(eligible))
        ages[eligible[:take]] = 0
        replaced += take
    return replaced


def test_callback_replaces_units_at_the_expected_rate_in_ppo():
    # 10 updates x 2 epochs x 4 minibatches = 80 optimizer steps, each must run CBP once
    model = PPO(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=64,
        batch_size=16,
        n_epochs=2,
        seed=0,
        policy_kwargs={"net_arch": {"pi": [16, 16], "vf": [16, 16]}},
    )
    callback = CBPCallback(replacement_rate=0.01, maturity_threshold=5, seed=1)
    model.learn(640, callback=callback)
    expected = expected_replacements(16, 80, 5, 0.01)
    assert callback.cbp.steps == 80
    assert callback.replaced() == {
        "actor.0": expected,
        "actor.1": expected,
        "critic.0": expected,
        "critic.1": expected,
        "all": 4 * expected,
    }
    assert expected == 11  # first at step 12 (floor(0.01 * 16 * 7) = 1), then about every 6-7 steps

    # the hooks are gone after learn(); a second learn() carries the state over
    model.policy.optimizer.step()
    assert callback.cbp.steps == 80
    model.learn(64, callback=callback, reset_num_timesteps=False)
    assert callback.cbp.steps == 88


def test_reset_units_forget_their_adam_moments():
    policy = tiny_policy(hidden=(8,))
    cbp = PolicyCBP(policy, CBPConfig(maturity_threshold=0, replacement_rate=0.5), seed=0, apply_to=("critic",))
    incoming, outgoing = policy.mlp_extractor.value_net[0], policy.value_net
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 2, generator=gen)
    policy.optimizer.zero_grad()
    policy.predict_values(x).square().mean().backward()
    policy.optimizer.step()  # every unit eligible: 4 replaced at once
    moments = policy.optimizer.state[incoming.weight]["exp_avg"]
    assert cbp.replaced()["critic.0"] == 4
    replaced = (outgoing.weight.detach()[0] == 0).nonzero().flatten()
    assert len(replaced) == 4
    assert torch.all(moments[replaced] == 0)
    kept = [i for i in range(8) if i not in replaced.tolist()]
    assert torch.all(moments[kept].abs().sum(1) > 0)
    assert torch.all(policy.optimizer.state[outgoing.weight]["exp_avg"][0, replaced] == 0)
    assert torch.all(policy.optimizer.state[incoming.bias]["exp_avg_sq"][replaced] == 0)
    assert torch.all(incoming.bias.detach()[replaced] == 0)


def test_a_policy_with_cbp_keeps_learning():
    # regression through the critic with SB3's Adam while CBP replaces a unit every few steps
    policy = tiny_policy(hidden=(32, 32), obs_dim=3, lr=3e-3)
    cfg = CBPConfig(maturity_threshold=20, replacement_rate=0.005)
    cbp = PolicyCBP(policy, cfg, seed=0, apply_to=("critic",))
    gen = torch.Generator().manual_seed(2)
    direction = torch.tensor([1.0, -2.0, 0.5])
    losses = []
    for _ in range(600):
        x = torch.randn(64, 3, generator=gen)
        loss = (policy.predict_values(x).squeeze(-1) - (x @ direction).sin()).square().mean()
        policy.optimizer.zero_grad()
        loss.backward()
        policy.optimizer.step()
        losses.append(loss.item())
    assert cbp.replaced()["critic.0"] >= 50
    assert np.mean(losses[-50:]) < 0.2 * np.mean(losses[:50])


def test_cbp_settings_are_validated():
    with pytest.raises(ValueError, match="replacement_rate"):
        CBPCallback(replacement_rate=2.0)
    with pytest.raises(ValueError, match="apply_to must name some of"):
        PolicyCBP(tiny_policy(), apply_to=("value",))


@pytest.mark.slow
def test_ppo_with_cbp_learns_cartpole():
    # CBP far more aggressive than the paper's (a unit every ~4 optimizer steps per layer) and PPO
    # still solves CartPole about as SB3's PPO does alone (mean return near 500 by 50k steps)
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs={"activation_fn": nn.ReLU})
    callback = CBPCallback(replacement_rate=4e-3, maturity_threshold=100)
    model.learn(50_000, callback=callback)
    returns = [info["r"] for info in model.ep_info_buffer]
    assert callback.replaced()["all"] > 1000
    assert np.mean(returns) > 200
