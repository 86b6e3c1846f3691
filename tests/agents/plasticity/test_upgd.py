"""UPGD / AdaUPGD against hand computations (sigmoid written out with math.exp)."""

from __future__ import annotations

import math

import pytest
import torch

from rlplast.agents.plasticity.upgd import UPGD


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def params_with_grads(values: list[tuple[list, list]]) -> list[torch.nn.Parameter]:
    params = []
    for w, g in values:
        p = torch.nn.Parameter(torch.tensor(w))
        p.grad = torch.tensor(g)
        params.append(p)
    return params


def test_equal_utilities_scale_sgd_by_one_minus_sigmoid_one():
    # -g * w = 0.6 for every weight of both tensors
    w = [[[1.0, 2.0], [-3.0, 0.5]]]
    g = [[[-0.6, -0.3], [0.2, -1.2]]]
    params = params_with_grads([(w, g), ([[2.0, -4.0]], [[-0.3, 0.15]])])
    start = [p.detach().clone() for p in params]
    UPGD(params, [0], lr=0.1, beta_utility=0.9, sigma=0.0).step()
    for p, w0 in zip(params, start, strict=True):
        torch.testing.assert_close(p, w0 - 0.1 * p.grad * (1 - sig(1.0)))


def test_two_by_two_by_hand_with_a_global_per_run_max():
    # run 0: U = -g*w = [[-.5, .5], [.5, 0]] on W and [1, 0] on b -> eta_0 = 1
    # run 1: U = [[1, 2], [3, 4]] on W and [0, 0] on b -> eta_1 = 4
    w = [[[0.5, -1.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]
    g = [[[1.0, 0.5], [-0.25, 2.0]], [[-1.0, -2.0], [-3.0, -4.0]]]
    b, gb = [[1.0, 0.0], [0.0, 0.0]], [[-1.0, 0.0], [0.0, 0.0]]
    weight, bias = params_with_grads([(w, g), (b, gb)])
    lr, decay = 0.1, 0.01
    UPGD([weight, bias], [0, 1], lr=lr, beta_utility=0.9, sigma=0.0, weight_decay=decay).step()
    utilities = [[[-0.5, 0.5], [0.5, 0.0]], [[1.0, 2.0], [3.0, 4.0]]]
    etas = [1.0, 4.0]
    for r in range(2):
        for i in range(2):
            for j in range(2):
                keep = 1 - sig(utilities[r][i][j] / etas[r])
                expected = (1 - lr * decay) * w[r][i][j] - lr * g[r][i][j] * keep
                assert weight[r, i, j].item() == pytest.approx(expected, rel=1e-6)
    assert bias[0, 0].item() == pytest.approx((1 - lr * decay) * 1.0 + lr * 1.0 * (1 - sig(1.0)), rel=1e-6)


def test_highest_utility_weight_moves_least():
    (w,) = params_with_grads([([[1.0, 2.0, 3.0]], [[-1.0, -1.0, -1.0]])])  # utilities 1, 2, 3
    start = w.detach().clone()
    UPGD([w], [0], lr=0.1, sigma=0.0).step()
    moved = (w - start).abs()[0]
    assert moved[0] > moved[1] > moved[2] > 0


def test_non_positive_utilities_get_no_protection():
    # every -g*w <= 0: eta <= 0 would flip the scaling; the guard makes it a plain SGD step
    (w,) = params_with_grads([([[1.0, -2.0, 0.0]], [[1.0, -0.5, 3.0]])])
    start = w.detach().clone()
    UPGD([w], [0], lr=0.1, sigma=0.0).step()
    torch.testing.assert_close(w, start - 0.1 * w.grad)


def test_vanishing_utilities_get_no_protection_and_no_nan():
    # utilities 1e-40 (below the smallest normal float) and 0: 1 / eta would overflow
    (w,) = params_with_grads([([[1e-20, 0.0, 2.0]], [[-1e-20, 0.5, 0.0]])])
    start = w.detach().clone()
    UPGD([w], [0], lr=0.1, sigma=0.0).step()
    torch.testing.assert_close(w, start - 0.1 * w.grad)


def test_adaupgd_first_step_is_sign_times_protection():
    (w,) = params_with_grads([([[1.0, 2.0]], [[-0.5, -2.0]])])  # utilities 0.5, 4 -> eta 4
    start = w.detach().clone()
    UPGD([w], [0], lr=0.01, sigma=0.0, weight_decay=0.1, adaptive=True, betas=(0.9, 0.99)).step()
    # m_hat = g, v_hat = g^2 on the first step: direction g / (|g| + eps) = sign(g)
    for j, u in enumerate((0.5, 4.0)):
        expected = (1 - 0.01 * 0.1) * start[0, j].item() + 0.01 * (1 - sig(u / 4.0))
        assert w[0, j].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("adaptive", [False, True])
def test_noisy_run_group_equals_runs_alone_and_resumes_exactly(tiny, adaptive):
    seeds = [6, 1]

    def build(group_seeds):
        mlp = tiny.make_mlp(group_seeds)
        return mlp, UPGD(mlp.parameters(), group_seeds, lr=1e-2, sigma=0.05, weight_decay=1e-3, adaptive=adaptive)

    group, opt = build(seeds)
    stream = tiny.Stream(seeds)
    tiny.train(group, opt, [], stream, 10)
    saved = tiny.roundtrip({"mlp": group.state_dict(), "opt": opt.state_dict()})
    gens = [g.get_state() for g in stream.gens]
    tiny.train(group, opt, [], stream, 10)
    for r, seed in enumerate(seeds):
        alone, alone_opt = build([seed])
        tiny.train(alone, alone_opt, [], tiny.Stream([seed]), 20)
        for a, b in zip(group.parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(a[r], b[0], rtol=1e-5, atol=1e-6)

    resumed, resumed_opt = build(seeds)
    resumed.load_state_dict(saved["mlp"])
    resumed_opt.load_state_dict(saved["opt"])
    for g, s in zip(stream.gens, gens, strict=True):
        g.set_state(s)
    tiny.train(resumed, resumed_opt, [], stream, 10)
    for a, b in zip(group.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_reset_units_forgets_the_utility():
    (w,) = params_with_grads([([[1.0, 2.0]], [[-1.0, -1.0]])])
    opt = UPGD([w], [0], lr=0.1, sigma=0.0)
    opt.step()
    opt.reset_units(w, 1, torch.tensor([0]), torch.tensor([1]))
    assert opt.state[w]["utility"][0, 1] == 0 and opt.state[w]["utility"][0, 0] != 0
    assert opt.bias_corrections(w)[0].tolist() == [[pytest.approx(0.001), 0.0]]


def test_parameters_must_lead_with_the_run_dimension():
    with pytest.raises(ValueError, match="run dimension 2"):
        UPGD([torch.nn.Parameter(torch.ones(3, 4))], [0, 1], lr=0.1)
