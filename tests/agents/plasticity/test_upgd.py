"""UPGD / AdaUPGD against hand computations (sigmoid written out with math.exp)."""

from __future__ import annotations

import math

import pytest
import torch

from rlplast.agents.plasticity import OptimizerConfig, build_optimizer, upgd
from rlplast.agents.plasticity.noise import noise_table, table_size
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


@pytest.mark.parametrize("noise", ["table", "exact"])
@pytest.mark.parametrize("adaptive", [False, True])
def test_noisy_run_group_equals_runs_alone_and_resumes_exactly(tiny, adaptive, noise):
    seeds = [6, 1]

    def build(group_seeds):
        mlp = tiny.make_mlp(group_seeds)
        opt = UPGD(
            mlp.parameters(), group_seeds, lr=1e-2, sigma=0.05, weight_decay=1e-3, adaptive=adaptive, noise=noise
        )
        return mlp, opt

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


@pytest.mark.parametrize("noise", ["table", "exact"])
def test_the_perturbation_is_the_runs_noise_by_hand(noise):
    # zero gradients: no utility (eta = 0, no protection) and no Adam direction (0 / eps), so
    # w <- (1 - lr lambda) w - lr sigma xi with xi the run's draw of all 2*3 + 2 numbers
    weight, bias = params_with_grads(
        [([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], [[[0.0] * 3] * 2]), ([[1.0, -1.0]], [[0.0, 0.0]])]
    )
    start = [weight.detach().clone(), bias.detach().clone()]
    opt = UPGD([weight, bias], [7], lr=0.5, sigma=0.1, weight_decay=0.01, adaptive=True, noise=noise)
    opt.step()
    gen = torch.Generator().manual_seed(7 * 1_000_003 + upgd.SALT)
    if noise == "exact":
        xi = torch.randn(8, generator=gen)
    else:
        table = noise_table(table_size(8), torch.device("cpu"), torch.float32)
        offset = int(torch.randint(len(table) - 8 + 1, (1,), generator=gen))
        xi = table[offset : offset + 8]
    torch.testing.assert_close(weight[0].flatten(), (1 - 0.005) * start[0][0].flatten() - 0.05 * xi[:6])
    torch.testing.assert_close(bias[0], (1 - 0.005) * start[1][0] - 0.05 * xi[6:])


@pytest.mark.parametrize("decay", [0.0, 1e-3])
@pytest.mark.parametrize("adaptive", [False, True])
def test_the_whole_buffer_step_equals_the_tensor_by_tensor_step(tiny, adaptive, decay):
    # a reset of no unit gives every parameter per-element bias corrections (all equal to the
    # shared one), which sends each step down the tensor-by-tensor path
    seeds = [3, 8]
    nets, opts = [], []
    for _ in range(2):
        mlp = tiny.make_mlp(seeds, hidden=(8, 8))
        nets.append(mlp)
        opts.append(UPGD(mlp.parameters(), seeds, lr=1e-2, sigma=0.05, weight_decay=decay, adaptive=adaptive))
    none = torch.zeros(0, dtype=torch.long)
    for p in nets[1].parameters():
        opts[1].reset_units(p, 1, none, none)
    for mlp, opt in zip(nets, opts, strict=True):
        tiny.train(mlp, opt, [], tiny.Stream(seeds), 15)
    assert all(opts[1].state[p].get("reset_dims") for p in nets[1].parameters())
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for name in opts[0].state_keys:
        for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
            torch.testing.assert_close(opts[0].state[a][name], opts[1].state[b][name], rtol=1e-4, atol=1e-6)


def test_state_tensors_are_views_of_the_flat_buffers_before_and_after_a_load(tiny):
    mlp = tiny.make_mlp([0, 1])
    opt = UPGD(mlp.parameters(), [0, 1], lr=1e-2, adaptive=True)
    tiny.train(mlp, opt, [], tiny.Stream([0, 1]), 3)
    saved = tiny.roundtrip(opt.state_dict())
    fresh = UPGD(mlp.parameters(), [0, 1], lr=1e-2, adaptive=True)
    fresh.load_state_dict(saved)
    for o in (opt, fresh):
        for i, p in enumerate(mlp.parameters()):
            for name in o.state_keys:
                assert o.state[p][name].data_ptr() == o.views[name][i].data_ptr()
    for p in mlp.parameters():
        assert fresh.state[p]["step"] == 3
        for name in opt.state_keys:
            assert torch.equal(fresh.state[p][name], opt.state[p][name])


def test_a_parameter_without_a_gradient_is_left_alone():
    w, b = params_with_grads([([[1.0, 2.0]], [[-0.5, -2.0]]), ([[3.0]], [[0.0]])])
    b.grad = None
    opt = UPGD([w, b], [0], lr=0.01, sigma=0.1, weight_decay=0.1, adaptive=True)
    opt.step()
    assert torch.equal(b, torch.tensor([[3.0]])) and opt.state[b]["step"] == 0 and opt.state[w]["step"] == 1
    assert not torch.equal(w, torch.tensor([[1.0, 2.0]]))


def test_build_optimizer_passes_the_noise_source_and_adam_rejects_it(tiny):
    params = list(tiny.make_mlp([0]).parameters())
    assert build_optimizer(OptimizerConfig(kind="adaupgd"), params, [0]).noise.table is not None
    assert build_optimizer(OptimizerConfig(kind="upgd", noise="exact"), params, [0]).noise.table is None
    with pytest.raises(ValueError, match="noise"):
        OptimizerConfig(kind="adam", noise="exact")


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_one_run_protection_is_bit_identical_to_the_per_run_route(dtype):
    """One run on a CPU takes max U as a number; the keep factors must not move by an ulp
    (a run alone and the same run in a group then stay the same run)."""
    gen = torch.Generator().manual_seed(3)
    cases = [torch.randn(1, 4000, generator=gen, dtype=dtype) * 10.0**k for k in (-30, -7, 0, 3)]
    cases += [-cases[1].abs(), torch.zeros(1, 4000, dtype=dtype)]  # unprotected: all <= 0, all 0
    for utility in cases:
        one_run, per_run = torch.empty_like(utility), torch.empty_like(utility)
        UPGD._keep_one_run(utility, one_run)
        scale, offset = UPGD._keep_coefficients(utility.amax(1, keepdim=True))
        torch.mul(utility, scale, out=per_run).add_(offset).sigmoid_()
        assert torch.equal(one_run, per_run)


def reference_adaupgd_steps(weights, grads_per_step, lr, wd, beta_u, beta1, beta2, eps):
    """The UPGD paper's AdaptiveUPGD.step (core/run/rl/adaupgd.py) written out in float64 for
    one run, noise off: eta is the raw trace's max, the step 2 lr, the decay lr * wd."""
    w = [x.double().clone() for x in weights]
    util = [torch.zeros_like(x) for x in w]
    m1 = [torch.zeros_like(x) for x in w]
    m2 = [torch.zeros_like(x) for x in w]
    for t, grads in enumerate(grads_per_step, start=1):
        g = [x.double() for x in grads]
        for i in range(len(w)):
            util[i] = beta_u * util[i] + (1 - beta_u) * (-g[i] * w[i])
            m1[i] = beta1 * m1[i] + (1 - beta1) * g[i]
            m2[i] = beta2 * m2[i] + (1 - beta2) * g[i] ** 2
        eta = max(float(u.max()) for u in util)
        for i in range(len(w)):
            scaled = torch.sigmoid(util[i] / (1 - beta_u**t) / eta)
            m_hat, v_hat = m1[i] / (1 - beta1**t), m2[i] / (1 - beta2**t)
            w[i] = w[i] * (1 - lr * wd) - 2 * lr * (m_hat * (1 - scaled)) / (v_hat.sqrt() + eps)
    return w


@pytest.mark.parametrize("runs", [1, 2])
@pytest.mark.parametrize("one_without_grad", [False, True])
def test_paper_settings_follow_the_upgd_papers_own_adaupgd(runs, one_without_grad):
    """step_scale=2 and utility_max="raw" reproduce the reference AdaptiveUPGD (noise off) on the
    flat path (R = 1 and R = 2) and the per-tensor path (a parameter without a gradient)."""
    gen = torch.Generator().manual_seed(5)
    shapes = [(4, 3), (4,), (2, 4)]
    init = [torch.randn(runs, *s, generator=gen) for s in shapes]
    steps = [[torch.randn(runs, *s, generator=gen) for s in shapes] for _ in range(6)]
    params = [torch.nn.Parameter(x.clone()) for x in init]
    idle = torch.nn.Parameter(torch.ones(runs, 2))  # never gets a gradient: forces the list path
    cfg = OptimizerConfig(
        kind="adaupgd", lr=3e-2, betas=(0.9, 0.999), eps=1e-5, weight_decay=1e-3, beta_utility=0.999,
        sigma=0.0, step_scale=2.0, utility_max="raw",
    )  # fmt: skip
    opt = build_optimizer(cfg, [*params, *([idle] if one_without_grad else [])], list(range(runs)))
    for grads in steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    for r in range(runs):
        want = reference_adaupgd_steps(
            [x[r] for x in init], [[g[r] for g in grads] for grads in steps], 3e-2, 1e-3, 0.999, 0.9, 0.999, 1e-5
        )
        for p, w in zip(params, want, strict=True):
            torch.testing.assert_close(p[r].double(), w, rtol=1e-5, atol=1e-6)
    # the protocol's default (corrected eta, step lr) takes a different path: the options matter
    plain = [torch.nn.Parameter(x.clone()) for x in init]
    opt = build_optimizer(
        cfg.model_copy(update={"step_scale": 1.0, "utility_max": "corrected"}), plain, list(range(runs))
    )
    for grads in steps:
        for p, g in zip(plain, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    assert not torch.allclose(plain[0], params[0], rtol=1e-4, atol=1e-6)


def test_paper_options_are_refused_for_adam():
    with pytest.raises(ValueError, match="step_scale"):
        OptimizerConfig(kind="adam", step_scale=2.0)
