import math

import pytest
import torch

from rlplast.agents.networks import MLP, BatchedLinear, run_generators


def test_batched_linear_equals_per_run_linear():
    layer = BatchedLinear(num_runs=3, in_features=4, out_features=2)
    torch.nn.init.normal_(layer.weight)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(3, 5, 4)
    out = layer(x)
    for r in range(3):
        expected = x[r] @ layer.weight[r].T + layer.bias[r]
        torch.testing.assert_close(out[r], expected)


def test_mlp_gradients_equal_per_run_linear_and_come_in_the_weights_layout():
    """The feature-major forward gives each run the gradients of an ordinary MLP (torch's
    F.linear, run by run), and hands every gradient over in its parameter's layout: a weight
    gradient in another layout would be copied into it when accumulated (slow for 256 x 256)."""
    net = MLP(num_runs=2, in_dim=3, hidden=[5, 4], out_dim=2)
    net.reset_parameters(run_generators([0, 1], salt=1))
    x = torch.randn(2, 6, 3)
    arriving = {}  # the gradient as autograd hands it over, before it is accumulated into .grad
    for name, param in net.named_parameters():
        param.register_hook(lambda grad, name=name: arriving.update({name: grad.stride()}))
    net(x).square().sum().backward()
    for r in range(2):
        weights = [layer.weight[r].detach().clone().requires_grad_() for layer in net.layers]
        biases = [layer.bias[r].detach().clone().requires_grad_() for layer in net.layers]
        h = x[r]
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = torch.nn.functional.linear(h, w, b)
            h = torch.relu(h) if i < len(weights) - 1 else h
        h.square().sum().backward()
        for layer, w, b in zip(net.layers, weights, biases, strict=True):
            torch.testing.assert_close(layer.weight.grad[r], w.grad)
            torch.testing.assert_close(layer.bias.grad[r], b.grad)
    assert arriving == {name: param.stride() for name, param in net.named_parameters()}


def test_lecun_init_bounds_and_run_independence():
    group = MLP(num_runs=3, in_dim=27, hidden=[256, 256], out_dim=8)
    group.reset_parameters(run_generators([0, 1, 2], salt=7))
    alone = MLP(num_runs=1, in_dim=27, hidden=[256, 256], out_dim=8)
    alone.reset_parameters(run_generators([1], salt=7))
    for lg, la in zip(group.layers, alone.layers, strict=True):
        bound = math.sqrt(3.0 / lg.in_features)
        assert lg.weight.abs().max() <= bound
        # a uniform on [-b, b] has mean |w| = b / 2; 0.055 for the 256x256 layer (PROTOCOL.md)
        assert abs(lg.weight.abs().mean().item() - bound / 2) < 0.02 * bound
        assert torch.equal(lg.weight[1], la.weight[0])
        assert torch.all(lg.bias == 0)
    assert abs(group.layers[1].weight.abs().mean().item() - 0.054) < 0.002


def test_hidden_layers_expose_features_of_last_forward():
    net = MLP(num_runs=2, in_dim=3, hidden=[5, 4], out_dim=1)
    net.reset_parameters(run_generators([0, 1], salt=0))
    x = torch.randn(2, 6, 3)
    net(x)
    hidden = net.hidden_layers()
    assert [h.width for h in hidden] == [5, 4]
    assert hidden[0].outgoing is hidden[1].incoming
    expected = torch.relu(net.layers[0](x))
    torch.testing.assert_close(hidden[0].features(), expected)


def test_acting_path_equals_forward_and_sees_weight_updates():
    net = MLP(2, 5, [7, 7], 3, name="actor")
    net.reset_parameters(run_generators([0, 1], salt=3))
    x = torch.randn(2, 4, 5)
    with pytest.raises(RuntimeError, match="freeze_for_acting"), torch.inference_mode():
        net.act(x)
    net.freeze_for_acting()
    for _ in range(2):
        with torch.inference_mode():
            acted, acted_feats = net.act(x), net.features
        torch.testing.assert_close(acted, net(x))
        for a, b in zip(acted_feats, net.features, strict=True):
            torch.testing.assert_close(a, b)
        with torch.no_grad():  # an in-place update (as optimizers do) shows through the cached views
            net.layers[0].weight.mul_(0.5)


def test_init_fan_in_reproduces_the_reference_first_layer_scale():
    """agent.init_fan_in = 111: the first layers of actor and critic draw from U(+-sqrt(3/111))
    (the reference's Ant-v3 network), later layers keep their own fan-in, and CBP's reinit of a
    first-layer unit draws from the same bound."""
    from rlplast.agents.plasticity.reinit import sample_incoming
    from rlplast.agents.ppo import PPO, PPOConfig

    agent = PPO(PPOConfig(init_fan_in=111), obs_dim=27, act_dim=8, seeds=[0, 1])
    plain = PPO(PPOConfig(), obs_dim=27, act_dim=8, seeds=[0, 1])
    for net, ref in ((agent.actor.mlp, plain.actor.mlp), (agent.critic.mlp, plain.critic.mlp)):
        first = net.layers[0].weight
        bound = math.sqrt(3 / 111)  # 0.1644
        assert first.abs().max() <= bound and first.abs().max() > 0.99 * bound
        assert first.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        # the same draws scaled: sqrt(27 / 111) times the default init, same generator stream
        torch.testing.assert_close(first, ref.layers[0].weight * math.sqrt(27 / 111))
        for layer, ref_layer in zip(net.layers[1:], ref.layers[1:], strict=True):
            torch.testing.assert_close(layer.weight, ref_layer.weight)
    layer0 = agent.actor.mlp.hidden_layers()[0]
    assert layer0.incoming.init_bound() == pytest.approx(math.sqrt(3 / 111))
    fresh = sample_incoming(layer0, torch.zeros(500, dtype=torch.long), run_generators([0], 7), gain=1.0)
    assert fresh.shape == (500, 27) and fresh.abs().max() <= math.sqrt(3 / 111)
    assert fresh.abs().max() > 0.99 * math.sqrt(3 / 111)
