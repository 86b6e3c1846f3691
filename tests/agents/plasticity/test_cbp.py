"""CBP against hand computations on a 2-4-1 ReLU network, and its run-group / resume contracts."""

from __future__ import annotations

import math

import pytest
import torch

from rlplast.agents.networks import MLP
from rlplast.agents.plasticity.adam import Adam
from rlplast.agents.plasticity.base import StepContext
from rlplast.agents.plasticity.cbp import CBP, SALT, CBPConfig

SEED = 5
X = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [R=1, B=2, 2]
W1 = torch.tensor([[1.0, 1.0], [0.5, 0.5], [2.0, 0.0], [1.0, -1.0]])
# h(x1) = [1, .5, 2, 1], h(x2) = [1, .5, 0, 0]: mean h = [1, .5, 1, .5]
W2 = torch.tensor([[1.0, 2.0, 0.25, -1.0]])
# contribution y = mean|h| * |w_out| = [1, 1, .25, .5]: unit 2 lowest, then unit 3
B2 = 0.3


def hand_net() -> MLP:
    mlp = MLP(1, 2, [4], 1)
    with torch.no_grad():
        mlp.layers[0].weight.copy_(W1.unsqueeze(0))
        mlp.layers[1].weight.copy_(W2.unsqueeze(0))
        mlp.layers[1].bias.fill_(B2)
    return mlp


def frozen_step(mlp: MLP, cbp: CBP, step: int) -> torch.Tensor:
    """Forward the fixed batch and run CBP's hook without changing the weights by gradient."""
    out = mlp(X)
    cbp.after_step(StepContext(step=step))
    return out.detach()


def expected_sample(count: int) -> torch.Tensor:
    """The first ``count`` rows CBP draws for run SEED: U(+-sqrt(3/2)) from an independent generator."""
    gen = torch.Generator().manual_seed(SEED * 1_000_003 + SALT)
    return (torch.rand(count, 2, generator=gen) * 2 - 1) * math.sqrt(3 / 2)


def test_utility_trace_matches_hand_computation():
    mlp = hand_net()
    cbp = CBP(CBPConfig(maturity_threshold=100), mlp.hidden_layers(), Adam(mlp.parameters()), [SEED])
    eta = 0.99
    for k in range(1, 4):
        frozen_step(mlp, cbp, k)
        expected = (1 - eta**k) * torch.tensor([1.0, 1.0, 0.25, 0.5])
        torch.testing.assert_close(cbp.state[0].utility[0], expected)
        torch.testing.assert_close(cbp.state[0].mean_act[0], (1 - eta**k) * torch.tensor([1.0, 0.5, 1.0, 0.5]))


def test_lowest_utility_mature_unit_is_replaced_at_the_expected_step():
    # m = 3, rho = 1/8: from step 4 all 4 units are eligible, the count grows .5 per step -> step 5
    mlp = hand_net()
    cfg = CBPConfig(maturity_threshold=3, replacement_rate=1 / 8, decay_rate=0.99)
    cbp = CBP(cfg, mlp.hidden_layers(), Adam(mlp.parameters()), [SEED])
    inc, out = mlp.layers
    for step in range(1, 5):
        frozen_step(mlp, cbp, step)
        torch.testing.assert_close(inc.weight[0], W1, rtol=0, atol=0)
    before = mlp(X).detach()
    frozen_step(mlp, cbp, 5)

    new_rows = expected_sample(1)
    torch.testing.assert_close(inc.weight[0, 2], new_rows[0])  # unit 2 resampled ...
    torch.testing.assert_close(inc.weight[0, [0, 1, 3]], W1[[0, 1, 3]], rtol=0, atol=0)  # ... only unit 2
    assert inc.bias[0, 2] == 0
    assert out.weight[0, 0, 2] == 0
    torch.testing.assert_close(out.weight[0, 0, [0, 1, 3]], W2[0, [0, 1, 3]], rtol=0, atol=0)
    # the bias absorbs f_hat * w_out = 1.0 * 0.25 (f constant, so f_hat = mean h exactly)
    torch.testing.assert_close(out.bias[0, 0], torch.tensor(B2 + 0.25))
    # so the mean output over the batch does not move (unit 2's contribution was [.5, 0])
    after = mlp(X).detach()
    torch.testing.assert_close(after.mean(), before.mean())
    assert cbp.stats()["cbp/replaced"].tolist() == [1.0]

    # 3 eligible now: the count grows 3/8 per step and reaches 1 at step 8. The new unit 2 has
    # utility 0 (outgoing weights 0) but is immature (age 3 at step 8), so unit 3 goes.
    unit2 = inc.weight[0, 2].clone()
    for step in (6, 7):
        frozen_step(mlp, cbp, step)
    assert cbp.stats()["cbp/replaced"].tolist() == [1.0]
    frozen_step(mlp, cbp, 8)
    torch.testing.assert_close(inc.weight[0, 2], unit2, rtol=0, atol=0)
    torch.testing.assert_close(inc.weight[0, 3], expected_sample(2)[1])
    assert out.weight[0, 0, 3] == 0
    torch.testing.assert_close(out.bias[0, 0], torch.tensor(B2 + 0.25 - 1.0 * 0.5))
    assert cbp.stats()["cbp/replaced"].tolist() == [2.0]


def test_instantaneous_utility_ranks_units_by_y_whatever_their_age():
    # m = 0, rho = 1/4, 4 units: one replacement per step. Step 1 replaces unit 2 (y = .25); then
    # its outgoing weight is set so that its y is .4, below unit 3's .5. At step 2 unit 2 is 1 step
    # old and the others 2: by u = y unit 2 goes again. (A trace's correction 1 - .99^age would
    # score it .4 / .01 = 40 against unit 3's .5 / .0199 = 25 and replace unit 3.)
    mlp = hand_net()
    cfg = CBPConfig(utility="instantaneous", maturity_threshold=0, replacement_rate=1 / 4)
    cbp = CBP(cfg, mlp.hidden_layers(), Adam(mlp.parameters()), [SEED])
    inc, out = mlp.layers
    frozen_step(mlp, cbp, 1)
    new_row = expected_sample(1)[0]
    torch.testing.assert_close(inc.weight[0, 2], new_row)
    mean_h = new_row.clamp_min(0).mean()  # relu(W x) for x = e1, e2, bias 0
    assert mean_h > 0
    with torch.no_grad():
        out.weight[0, 0, 2] = 0.4 / mean_h
    frozen_step(mlp, cbp, 2)
    torch.testing.assert_close(inc.weight[0, 3], W1[3], rtol=0, atol=0)  # unit 3 kept
    torch.testing.assert_close(inc.weight[0, 2], expected_sample(2)[1])  # unit 2 replaced again


def test_reinit_initial_rewinds_to_the_units_initial_weights():
    mlp = hand_net()
    cfg = CBPConfig(maturity_threshold=0, replacement_rate=1 / 4, reinit="initial")
    cbp = CBP(cfg, mlp.hidden_layers(), Adam(mlp.parameters()), [SEED])
    with torch.no_grad():
        mlp.layers[0].weight.mul_(3.0)  # "learning" moved every weight
    frozen_step(mlp, cbp, 1)  # one unit replaced: unit 2, the lowest utility
    torch.testing.assert_close(mlp.layers[0].weight[0, 2], W1[2], rtol=0, atol=0)
    torch.testing.assert_close(mlp.layers[0].weight[0, 0], 3 * W1[0], rtol=0, atol=0)


def test_reset_weights_get_zero_moments_and_a_fresh_bias_correction():
    torch.manual_seed(0)
    mlp = hand_net()
    opt = Adam(mlp.parameters(), lr=1e-3, betas=(0.9, 0.99))
    y = torch.tensor([[[1.0], [-1.0]]])
    for _ in range(5):  # build up moments everywhere
        opt.zero_grad()
        (mlp(X) - y).pow(2).mean().backward()
        opt.step()
    cfg = CBPConfig(maturity_threshold=0, replacement_rate=1 / 4)
    cbp = CBP(cfg, mlp.hidden_layers(), opt, [SEED])
    replaced_before = mlp.layers[0].weight.detach().clone()
    frozen_step(mlp, cbp, 1)
    (unit,) = torch.nonzero((mlp.layers[0].weight[0] != replaced_before[0]).any(1)).flatten().tolist()

    inc, out = mlp.layers
    for param, index in ((inc.weight, (0, unit)), (inc.bias, (0, unit)), (out.weight, (0, slice(None), unit))):
        state = opt.state[param]
        corrections = opt.bias_corrections(param)
        for value in (state["exp_avg"], state["exp_avg_sq"], *corrections):
            assert (value[index] == 0).all()
        others = torch.ones_like(param, dtype=torch.bool)
        others[index] = False
        assert state["exp_avg_sq"][others].abs().sum() > 0
        # the other elements keep the tensor's 5 steps of bias correction
        torch.testing.assert_close(corrections[0][others], torch.full_like(param[others], 1 - 0.9**5))
        torch.testing.assert_close(corrections[1][others], torch.full_like(param[others], 1 - 0.99**5))

    # first step after the reset: m_hat = g and v_hat = g^2 exactly, so w moves by lr * g / (|g| + eps)
    opt.zero_grad()
    (mlp(X) - y).pow(2).mean().backward()
    grad = out.weight.grad[0, 0, unit].clone()
    assert grad != 0
    opt.step()
    torch.testing.assert_close(out.weight[0, 0, unit], -1e-3 * grad / (grad.abs() + 1e-8))


def test_count_matches_rate_times_eligible_and_immature_units_are_never_replaced(tiny):
    mlp = tiny.make_mlp([1], hidden=(20,))
    opt = Adam(mlp.parameters(), lr=1e-2)
    m, rho = 10, 0.01
    cbp = CBP(CBPConfig(maturity_threshold=m, replacement_rate=rho), mlp.hidden_layers(), opt, [1])
    stream = tiny.Stream([1])
    ages = torch.zeros(20, dtype=torch.int64)  # tracked here from what happens to the weights
    expected, replaced = 0.0, 0
    for step in range(1, 1501):
        incoming = mlp.layers[0].weight[0].detach().clone()
        tiny.train(mlp, opt, [cbp], stream, 1, start=step - 1)
        ages += 1
        expected += rho * int((ages > m).sum())
        # a replaced unit has new incoming weights and zero outgoing ones; a learning unit moves
        # its outgoing weight too, and a fresh silent unit (zero moments, zero gradient) does not move
        changed = (mlp.layers[0].weight[0] != incoming).any(1)
        new = torch.nonzero(changed & (mlp.layers[1].weight[0, 0] == 0)).flatten()
        assert (ages[new] > m).all(), f"immature unit replaced at step {step}"
        ages[new] = 0
        replaced += len(new)
        assert replaced == math.floor(expected + 1e-9), step
    assert replaced >= 10
    assert cbp.stats()["cbp/replaced"].item() == replaced


@pytest.mark.parametrize("utility", ["contribution", "adaptation", "instantaneous"])
def test_run_group_equals_runs_alone(tiny, utility):
    seeds = [3, 8]
    cfg = CBPConfig(maturity_threshold=5, replacement_rate=0.05, utility=utility)

    def run(group_seeds):
        mlp = tiny.make_mlp(group_seeds, hidden=(6, 5))
        opt = Adam(mlp.parameters(), lr=1e-2)
        cbp = CBP(cfg, mlp.hidden_layers(), opt, group_seeds)
        tiny.train(mlp, opt, [cbp], tiny.Stream(group_seeds), 60)
        return mlp, cbp

    group, group_cbp = run(seeds)
    assert group_cbp.stats()["cbp/replaced"].min() > 0
    for r, seed in enumerate(seeds):
        alone, alone_cbp = run([seed])
        for a, b in zip(group.parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(a[r], b[0], rtol=1e-5, atol=1e-6)
        assert group_cbp.stats()["cbp/replaced"][r] == alone_cbp.stats()["cbp/replaced"][0]


@pytest.mark.parametrize(
    "cfg",
    [
        CBPConfig(maturity_threshold=4, replacement_rate=0.05),
        CBPConfig(maturity_threshold=4, replacement_rate=0.05, count="probability", reinit="initial"),
    ],
)
def test_state_dict_round_trip_continues_identically(tiny, cfg):
    seeds = [2, 9]

    def build():
        mlp = tiny.make_mlp(seeds, hidden=(6,))
        opt = Adam(mlp.parameters(), lr=1e-2)
        return mlp, opt, CBP(cfg, mlp.hidden_layers(), opt, seeds)

    mlp, opt, cbp = build()
    stream = tiny.Stream(seeds)
    tiny.train(mlp, opt, [cbp], stream, 30)
    saved = tiny.roundtrip({"mlp": mlp.state_dict(), "opt": opt.state_dict(), "cbp": cbp.state_dict()})
    stream_state = [g.get_state() for g in stream.gens]
    count_at_save = cbp.stats()["cbp/replaced"].sum()
    tiny.train(mlp, opt, [cbp], stream, 40, start=30)
    assert cbp.stats()["cbp/replaced"].sum() > count_at_save  # the continuation replaces units

    mlp2, opt2, cbp2 = build()
    mlp2.load_state_dict(saved["mlp"])
    opt2.load_state_dict(saved["opt"])
    cbp2.load_state_dict(saved["cbp"])
    for g, s in zip(stream.gens, stream_state, strict=True):
        g.set_state(s)
    tiny.train(mlp2, opt2, [cbp2], stream, 40, start=30)
    for a, b in zip(mlp.parameters(), mlp2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(cbp.stats()["cbp/replaced"], cbp2.stats()["cbp/replaced"])


def test_needs_features_and_matching_runs(tiny):
    mlp = tiny.make_mlp([1, 2])
    with pytest.raises(ValueError, match="2 runs but 1 seeds"):
        CBP(CBPConfig(), mlp.hidden_layers(), Adam(mlp.parameters()), [1])
    cbp = CBP(CBPConfig(), mlp.hidden_layers(), Adam(mlp.parameters()), [1, 2])
    with pytest.raises(RuntimeError, match="no features"):
        cbp.after_step(StepContext(step=1))
