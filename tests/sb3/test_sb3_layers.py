"""Views of an SB3 policy's MLPs (features, weights) and resetting a torch optimizer's unit state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from rlplast.sb3.layers import LinearView, NetworkView, policy_networks
from rlplast.sb3.optim import TorchOptimizerResets


def tiny_policy(hidden=(4, 3)) -> ActorCriticPolicy:
    obs = spaces.Box(-1.0, 1.0, (2,), np.float32)
    act = spaces.Box(-1.0, 1.0, (1,), np.float32)
    arch = {"pi": list(hidden), "vf": list(hidden)}
    return ActorCriticPolicy(obs, act, lambda _: 1e-3, net_arch=arch, activation_fn=nn.ReLU)


def test_features_are_the_hidden_relu_outputs_of_the_last_pass():
    policy = tiny_policy()
    nets = policy_networks(policy)
    obs = torch.tensor([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
    policy.evaluate_actions(obs, torch.zeros(3, 1))
    pi = policy.mlp_extractor.policy_net
    h0 = torch.relu(obs @ pi[0].weight.T + pi[0].bias)
    h1 = torch.relu(h0 @ pi[2].weight.T + pi[2].bias)
    actor = nets["actor"]
    assert [tuple(f.shape) for f in actor.features] == [(1, 3, 4), (1, 3, 3)]
    torch.testing.assert_close(actor.features[0][0], h0.detach())
    torch.testing.assert_close(actor.features[1][0], h1.detach())
    assert not actor.features[0].requires_grad
    first = actor.features
    policy.predict_values(obs[:1])  # the critic alone: a new list for the critic only
    assert nets["actor"].features is first
    assert tuple(nets["critic"].features[0].shape) == (1, 1, 4)


def test_layer_views_share_the_linear_storage():
    policy = tiny_policy()
    actor = policy_networks(policy)["actor"]
    assert [layer.linear for layer in actor.layers] == [
        policy.mlp_extractor.policy_net[0],
        policy.mlp_extractor.policy_net[2],
        policy.action_net,
    ]
    hidden = actor.hidden_layers()
    assert [h.name for h in hidden] == ["actor.0", "actor.1"]
    assert hidden[1].incoming is actor.layers[1] and hidden[1].outgoing is actor.layers[2]
    assert hidden[0].width == 4 and hidden[0].activation == "relu"
    with torch.no_grad():
        actor.layers[1].weight[0, 2] = 7.0  # a row of [1, out, in]
        actor.layers[2].bias[0, 0] = -2.0
    assert torch.all(policy.mlp_extractor.policy_net[2].weight[2] == 7.0)
    assert policy.action_net.bias[0].item() == -2.0
    assert actor.layers[0].init_bound() == pytest.approx((3 / 2) ** 0.5)


def test_removed_hooks_record_nothing():
    policy = tiny_policy()
    nets = policy_networks(policy)
    for net in nets.values():
        net.remove_hooks()
    policy.evaluate_actions(torch.zeros(2, 2), torch.zeros(2, 1))
    assert nets["actor"].features == [] and nets["critic"].features == []


def test_bad_networks_are_named():
    with pytest.raises(TypeError, match=r"unusable mlp_extractor\.policy_net, mlp_extractor\.value_net"):
        policy_networks(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Linear 0 of the hidden network has no activation"):
        NetworkView("actor", nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3)), nn.Linear(3, 1))
    with pytest.raises(TypeError, match=r"needs an nn\.Linear"):
        LinearView(nn.ReLU())


def adam_with_state() -> tuple[nn.Linear, torch.optim.Adam]:
    linear = nn.Linear(3, 4)
    adam = torch.optim.Adam(linear.parameters())
    linear(torch.ones(1, 3)).sum().backward()
    adam.step()
    for state in adam.state.values():
        state["exp_avg"].fill_(1.0)
        state["exp_avg_sq"].fill_(2.0)
    return linear, adam


def test_optimizer_resets_zero_exactly_the_units_slices():
    linear, adam = adam_with_state()
    view = LinearView(linear)
    resets = TorchOptimizerResets(lambda: adam)
    runs = torch.zeros(2, dtype=torch.long)
    resets.reset_units(view.weight, 1, runs, torch.tensor([1, 3]))  # rows: incoming weights of units 1, 3
    resets.reset_units(view.weight, 2, runs[:1], torch.tensor([2]))  # column 2: outgoing weights of input 2
    resets.reset_units(view.bias, 1, runs[:1], torch.tensor([0]))
    expected = torch.ones(4, 3)
    expected[[1, 3]] = 0
    expected[:, 2] = 0
    state = adam.state[linear.weight]
    torch.testing.assert_close(state["exp_avg"], expected)
    torch.testing.assert_close(state["exp_avg_sq"], 2 * expected)
    assert state["step"].item() == 1  # one step count per tensor: left as it is
    torch.testing.assert_close(adam.state[linear.bias]["exp_avg"], torch.tensor([0.0, 1, 1, 1]))


def test_optimizer_resets_refuse_foreign_tensors_and_bad_dims():
    linear, adam = adam_with_state()
    resets = TorchOptimizerResets(lambda: adam)
    units = torch.tensor([0])
    with pytest.raises(ValueError, match="no parameter of the optimizer"):
        resets.reset_units(torch.zeros(1, 4, 3), 1, torch.zeros(1, dtype=torch.long), units)
    with pytest.raises(ValueError, match=r"dim must be in 1\.\.2"):
        resets.reset_units(LinearView(linear).weight, 3, torch.zeros(1, dtype=torch.long), units)
    with pytest.raises(ValueError, match="one run"):
        resets.reset_units(LinearView(linear).weight, 1, torch.ones(1, dtype=torch.long), units)
