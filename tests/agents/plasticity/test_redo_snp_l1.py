"""ReDo, shrink-and-perturb and L1 on hand-built cases."""

from __future__ import annotations

import math

import pytest
import torch

from rlplast.agents.networks import MLP
from rlplast.agents.plasticity import redo, shrink_perturb
from rlplast.agents.plasticity.adam import Adam
from rlplast.agents.plasticity.base import StepContext
from rlplast.agents.plasticity.l1 import L1, L1Config
from rlplast.agents.plasticity.noise import noise_table, table_size
from rlplast.agents.plasticity.redo import ReDo, ReDoConfig, dormant_scores
from rlplast.agents.plasticity.shrink_perturb import ShrinkPerturb, ShrinkPerturbConfig

SEED = 4
X = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [R=1, B=2, 2]
W1 = torch.tensor([[1.0, 1.0], [0.2, 0.2], [-1.0, -1.0]])  # activity per unit: 1, 0.2, 0 (dead)
W2 = torch.tensor([[0.5, -2.0, 3.0]])


def hand_net() -> MLP:
    mlp = MLP(1, 2, [3], 1)
    with torch.no_grad():
        mlp.layers[0].weight.copy_(W1.unsqueeze(0))
        mlp.layers[1].weight.copy_(W2.unsqueeze(0))
        mlp.layers[1].bias.fill_(0.7)
    return mlp


def test_dormant_scores_by_hand():
    mlp = hand_net()
    mlp(X)
    # activity [1, .2, 0], layer mean .4
    torch.testing.assert_close(dormant_scores(mlp.features[0]), torch.tensor([[2.5, 0.5, 0.0]]))
    assert torch.equal(dormant_scores(torch.zeros(2, 5, 3)), torch.zeros(2, 3))  # all silent: all dormant


def test_redo_resets_dormant_units_every_period():
    mlp = hand_net()
    opt = Adam(mlp.parameters(), lr=1e-3)
    opt.zero_grad()
    mlp(X).sum().backward()
    opt.step()  # moments everywhere
    weights = [p.detach().clone() for p in mlp.parameters()]
    plugin = ReDo(ReDoConfig(tau=0.6, period=3), mlp.hidden_layers(), opt, [SEED])
    for step in (1, 2):
        mlp(X)
        plugin.after_step(StepContext(step=step))
        assert all(torch.equal(p, w) for p, w in zip(mlp.parameters(), weights, strict=True))
    mlp(X)
    plugin.after_step(StepContext(step=3))
    inc, out = mlp.layers
    gen = torch.Generator().manual_seed(SEED * 1_000_003 + redo.SALT)
    expected = (torch.rand(2, 2, generator=gen) * 2 - 1) * math.sqrt(3 / 2)
    torch.testing.assert_close(inc.weight[0, 1:], expected)  # scores ~.5 and 0 are <= tau
    assert torch.equal(inc.weight[0, 0], weights[0][0, 0])  # score 2.5 is not
    assert torch.equal(inc.bias[0, 1:], torch.zeros(2))
    assert torch.equal(out.weight[0, 0], torch.stack([weights[2][0, 0, 0], torch.tensor(0.0), torch.tensor(0.0)]))
    assert torch.equal(out.bias, weights[3])  # ReDo absorbs nothing
    assert (opt.state[inc.weight]["exp_avg"][0, 1:] == 0).all()
    assert (opt.state[out.weight]["exp_avg"][0, 0, 1:] == 0).all()
    assert plugin.stats()["redo/reset"].tolist() == [2.0]


def test_redo_run_group_equals_runs_alone_and_resumes(tiny):
    seeds = [5, 2]
    cfg = ReDoConfig(tau=0.3, period=4)

    def run(group_seeds, steps):
        mlp = tiny.make_mlp(group_seeds, hidden=(12,))
        opt = Adam(mlp.parameters(), lr=5e-2)
        plugin = ReDo(cfg, mlp.hidden_layers(), opt, group_seeds)
        tiny.train(mlp, opt, [plugin], tiny.Stream(group_seeds), steps)
        return mlp, opt, plugin

    group, _, plugin = run(seeds, 40)
    assert plugin.stats()["redo/reset"].min() > 0
    for r, seed in enumerate(seeds):
        alone = run([seed], 40)[0]
        for a, b in zip(group.parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(a[r], b[0], rtol=1e-5, atol=1e-6)
    _, _, half = run(seeds, 6)
    state = tiny.roundtrip(half.state_dict())
    fresh = ReDo(cfg, half.layers, half.optimizer, seeds)
    fresh.load_state_dict(state)
    assert fresh.steps == 6 and torch.equal(fresh.reset, half.reset)
    assert torch.equal(fresh.generators[1].get_state(), half.generators[1].get_state())


@pytest.mark.parametrize("source", ["exact", "table"])
def test_shrink_and_perturb_by_hand(source):
    mlp = hand_net()
    before = [p.detach().clone() for p in mlp.parameters()]
    cfg = ShrinkPerturbConfig(shrink=0.1, noise_std=0.5, noise=source)
    ShrinkPerturb(cfg, mlp.hidden_layers(), Adam(mlp.parameters()), [SEED]).after_step(StepContext(step=1))
    # one draw of all 3*2 + 3 + 1*3 + 1 = 13 numbers per run, in parameter order: fresh normals
    # from the run's generator, or the table's slice at an offset drawn from it
    gen = torch.Generator().manual_seed(SEED * 1_000_003 + shrink_perturb.SALT)
    if source == "exact":
        noise = torch.randn(13, generator=gen) * 0.5
    else:
        table = noise_table(table_size(13), torch.device("cpu"), torch.float32)
        start = int(torch.randint(len(table) - 13 + 1, (1,), generator=gen))
        noise = table[start : start + 13] * 0.5
    offset = 0
    for p, b in zip(mlp.parameters(), before, strict=True):
        n = b.numel()
        torch.testing.assert_close(p, 0.9 * b + noise[offset : offset + n].view_as(b))
        offset += n


def test_shrink_only():
    mlp = hand_net()
    before = [p.detach().clone() for p in mlp.parameters()]
    cfg = ShrinkPerturbConfig(shrink=0.25, noise_std=0.0)
    ShrinkPerturb(cfg, mlp.hidden_layers(), Adam(mlp.parameters()), [SEED]).after_step(StepContext(step=1))
    for p, b in zip(mlp.parameters(), before, strict=True):
        assert torch.equal(p, 0.75 * b)


def test_l1_adds_strength_times_sign_to_weight_gradients_only():
    mlp = hand_net()
    with torch.no_grad():
        mlp.layers[0].weight[0, 1, 0] = 0.0  # sign 0: no push
    for p in mlp.parameters():
        p.grad = torch.ones_like(p)
    L1(L1Config(strength=0.01), mlp.hidden_layers(), Adam(mlp.parameters()), [SEED]).before_step(StepContext(step=0))
    inc, out = mlp.layers
    torch.testing.assert_close(inc.weight.grad[0], torch.tensor([[1.01, 1.01], [1.0, 1.01], [0.99, 0.99]]))
    torch.testing.assert_close(out.weight.grad[0], torch.tensor([[1.01, 0.99, 1.01]]))
    assert torch.equal(inc.bias.grad, torch.ones_like(inc.bias))


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (ReDoConfig, "tau", -0.1),
        (ReDoConfig, "period", 0),
        (ShrinkPerturbConfig, "shrink", 1.0),
        (ShrinkPerturbConfig, "noise", "gaussian"),
        (L1Config, "strength", 0),
    ],
)
def test_bad_values_are_rejected(model, field, value):
    with pytest.raises(ValueError, match=field):
        model(**{field: value})
