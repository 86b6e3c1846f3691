"""Metrics on matrices whose answers are known by construction or by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rlplast import metrics
from rlplast.agents.networks import MLP, BatchedLinear, run_generators


def with_singular_values(s: list[float], n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``U diag(s) V^T`` with orthonormal U [n, k], V [d, k] from QR: singular values exactly ``s``."""
    gen = torch.Generator().manual_seed(seed)
    k = len(s)
    u, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
    return (u * torch.tensor(s, dtype=torch.float64)) @ v.T


# Singular values (8, 4, 2, 1, 1): sum 16, cumulative sums 8, 12, 14, 15, 16.
SV = [8.0, 4.0, 2.0, 1.0, 1.0]


@pytest.mark.parametrize(("delta", "expected"), [(0.01, 5), (0.1, 4), (0.2, 3), (0.3, 2), (0.6, 1)])
def test_stable_rank_of_given_singular_values(delta: float, expected: int) -> None:
    # delta 0.1 -> target 14.4, first cumulative sum >= 14.4 is 15 at k = 4; and so on.
    x = with_singular_values(SV, n=40, d=12)
    assert metrics.stable_rank(x, delta).item() == expected
    assert metrics.stable_rank(x.float(), delta).item() == expected


def test_effective_rank_of_given_singular_values() -> None:
    # p = (1/2, 1/4, 1/8, 1/16, 1/16): entropy = (1/2 + 1/2 + 3/8 + 1/2) ln 2 = 1.875 ln 2.
    x = with_singular_values(SV, n=40, d=12)
    assert metrics.effective_rank(x).item() == pytest.approx(2**1.875, rel=1e-9)


def test_rank_three_matrix() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 3, generator=gen, dtype=torch.float64) @ torch.randn(3, 20, generator=gen, dtype=torch.float64)
    sv = torch.linalg.svdvals(x)
    assert (sv[:3] > 0.05 * sv.sum()).all()  # so that srank_0.01 must count all three
    assert metrics.stable_rank(x, 0.01).item() == 3
    p = sv[:3] / sv[:3].sum()
    assert metrics.effective_rank(x).item() == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-6)
    assert 1.0 < metrics.effective_rank(x).item() < 3.0


def test_rank_three_singular_values_three_two_one() -> None:
    # sum 6; cumulative 3, 5, 6. delta 0.01 -> 3; delta 0.2 (target 4.8) -> 2; delta 0.55 (2.7) -> 1.
    x = with_singular_values([3.0, 2.0, 1.0], n=30, d=30, seed=3)
    assert [metrics.stable_rank(x, d).item() for d in (0.01, 0.2, 0.55)] == [3, 2, 1]
    entropy = -sum(p * math.log(p) for p in (1 / 2, 1 / 3, 1 / 6))
    assert metrics.effective_rank(x).item() == pytest.approx(math.exp(entropy), rel=1e-9)


def test_identity_has_full_ranks_and_zero_matrix_has_zero() -> None:
    eye = torch.eye(7)
    assert metrics.stable_rank(eye).item() == 7
    assert metrics.effective_rank(eye).item() == pytest.approx(7.0, rel=1e-5)
    zero = torch.zeros(10, 4)
    assert metrics.stable_rank(zero).item() == 0
    assert metrics.effective_rank(zero).item() == 0.0


def test_batched_equals_per_run() -> None:
    gen = torch.Generator().manual_seed(2)
    # Runs of different rank so that the batch is not uniform.
    feats = torch.relu(torch.randn(4, 60, 16, generator=gen))
    feats[1, :, 8:] = 0
    feats[2] = feats[2, :, :1].expand(60, 16)
    batched = {
        "stable_rank": metrics.stable_rank(feats),
        "effective_rank": metrics.effective_rank(feats),
        "dormant": metrics.dormant_fraction(feats),
        "redo": metrics.redo_dormant_fraction(feats, 0.1),
        "norm": metrics.feature_norm(feats),
    }
    for r in range(4):
        f = feats[r]
        assert batched["stable_rank"][r] == metrics.stable_rank(f)
        assert batched["effective_rank"][r].item() == pytest.approx(metrics.effective_rank(f).item(), rel=1e-5)
        assert batched["dormant"][r] == metrics.dormant_fraction(f)
        assert batched["redo"][r] == metrics.redo_dormant_fraction(f, 0.1)
        assert batched["norm"][r].item() == pytest.approx(metrics.feature_norm(f).item(), rel=1e-6)
    assert batched["stable_rank"][2].item() == 1
    assert batched["dormant"][1].item() == pytest.approx(0.5)


def window_with_silent_units() -> torch.Tensor:
    """20 samples x 10 units; units 1, 4, 6, 9 never fire (zero or negative), the rest often."""
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(20, 10, generator=gen) + 0.1
    x[:, [1, 4]] = 0.0
    x[:, [6, 9]] = -torch.rand(20, 2, generator=gen)
    return x


def test_dormant_fraction_four_of_ten() -> None:
    x = window_with_silent_units()
    assert metrics.dormant_fraction(x).item() == pytest.approx(0.4)
    assert metrics.dormant_mask(x).nonzero().flatten().tolist() == [1, 4, 6, 9]


def test_dormant_threshold_is_inclusive() -> None:
    # 100 samples: unit 0 active once (1% -> dormant at 0.01), unit 1 twice (2% -> not), unit 2 never.
    x = torch.zeros(100, 3)
    x[5, 0] = 1.0
    x[[5, 50], 1] = 1.0
    assert metrics.dormant_mask(x, 0.01).tolist() == [True, False, True]
    assert metrics.dormant_mask(x, 0.0).tolist() == [False, False, True]


def test_dormant_fraction_pools_layers() -> None:
    a = window_with_silent_units()  # 4 of 10 dormant
    b = torch.ones(20, 6)
    b[:, 2] = 0.0  # 1 of 6 dormant
    assert metrics.dormant_fraction([a, b]).item() == pytest.approx(5 / 16)


def test_redo_scores_by_hand() -> None:
    # Constant columns with |h| = 0, 0.05, 1, 2, 2 -> layer mean 1.01 -> scores 0, 0.0495, 0.99, 1.98, 1.98.
    x = torch.tensor([0.0, -0.05, 1.0, 2.0, -2.0]).expand(8, 5)
    assert metrics.redo_scores(x).tolist() == pytest.approx([0, 0.05 / 1.01, 1 / 1.01, 2 / 1.01, 2 / 1.01])
    assert metrics.redo_dormant_fraction(x, 0.0).item() == pytest.approx(1 / 5)
    assert metrics.redo_dormant_fraction(x, 0.1).item() == pytest.approx(2 / 5)
    assert metrics.redo_dormant_fraction(torch.zeros(8, 5), 0.0).item() == 1.0


def test_feature_norm_by_hand() -> None:
    x = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]]])
    assert metrics.feature_norm(x).tolist() == pytest.approx([2.5, 1.5])


def test_weight_magnitude_and_change_by_hand() -> None:
    first, second = BatchedLinear(2, 3, 2), BatchedLinear(2, 2, 1)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[[1.0, -2.0, 3.0], [0.0, 0.0, -6.0]], [[1.0] * 3] * 2]))
        second.weight.copy_(torch.tensor([[[-4.0, 4.0]], [[0.0, 0.5]]]))
    # Run 0: |w| sums 12 + 8 over 6 + 2 elements -> 20 / 8; run 1: (6 + 0.5) / 8.
    assert metrics.weight_magnitude([first.weight, second.weight]).tolist() == pytest.approx([2.5, 6.5 / 8])
    assert metrics.weight_magnitude(first.weight).tolist() == pytest.approx([2.0, 1.0])
    model = torch.nn.ModuleDict({"a": first, "b": second})
    assert metrics.weight_magnitude(model).tolist() == pytest.approx([2.5, 6.5 / 8])
    previous = [first.weight.detach() + 1.0, second.weight.detach() * 0.0]
    # Run 0: 6 * 1 + 8 over 8 elements; run 1: 6 * 1 + 0.5.
    assert metrics.weight_change([first.weight, second.weight], previous).tolist() == pytest.approx([14 / 8, 6.5 / 8])


def test_weight_magnitude_of_lecun_init_matches_uniform_mean() -> None:
    # Mean |w| of U(-b, b) is b / 2 with b = sqrt(3 / 256): the paper's initial value of about 0.055.
    mlp = MLP(2, 256, [256], 1)
    mlp.reset_parameters(run_generators([0, 1], salt=0))
    expected = math.sqrt(3 / 256) / 2
    assert metrics.weight_magnitude(mlp.layers[0].weight).tolist() == pytest.approx([expected] * 2, rel=0.01)


def test_plain_linear_counts_as_one_run() -> None:
    lin = torch.nn.Linear(4, 3)
    assert metrics.weight_magnitude(lin).tolist() == pytest.approx([lin.weight.abs().mean().item()])


def test_grad_norm_by_hand() -> None:
    a = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(2, 1))
    c = torch.nn.Parameter(torch.zeros(2, 5))  # no gradient: skipped
    a.grad = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    b.grad = torch.tensor([[4.0], [1.0]])
    assert metrics.grad_norm([a, b, c]).tolist() == pytest.approx([5.0, 1.0])
    # one run (its own code path): run 0 alone
    one = [torch.nn.Parameter(torch.zeros(1, 3)), torch.nn.Parameter(torch.zeros(1, 1))]
    one[0].grad, one[1].grad = a.grad[:1].clone(), b.grad[:1].clone()
    assert metrics.grad_norm(one).tolist() == pytest.approx([5.0])
    with pytest.raises(ValueError, match="at least one parameter"):
        metrics.grad_norms([[a], []])


def test_grad_norms_of_groups_by_hand() -> None:
    for runs in (1, 2):
        a, b, c = (torch.nn.Parameter(torch.zeros(runs, n)) for n in (2, 1, 3))
        a.grad = torch.tensor([[3.0, 0.0]] * runs)
        b.grad = torch.tensor([[4.0]] * runs)
        c.grad = torch.tensor([[0.0, 12.0, 0.0]] * runs)
        norms = metrics.grad_norms([[a, b], [c]])
        assert norms.shape == (2, runs)
        assert norms.tolist() == [[5.0] * runs, [12.0] * runs]


def test_gaussian_entropy_matches_torch_distribution() -> None:
    log_std = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.5, 2.0]])
    expected = torch.distributions.Normal(torch.zeros(2, 3), log_std.exp()).entropy().sum(-1)
    assert metrics.gaussian_entropy(log_std).tolist() == pytest.approx(expected.tolist(), rel=1e-6)


def test_upgd_plasticity_by_hand() -> None:
    before = torch.tensor([2.0, 1.0, 0.0, 4.0])
    after = torch.tensor([1.0, 3.0, 0.0, 0.0])
    assert metrics.upgd_plasticity(before, after).tolist() == pytest.approx([0.5, 0.0, 1.0, 1.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.stable_rank(torch.ones(5)), "shape"),
        (lambda: metrics.stable_rank(torch.ones(3, 3), delta=1.0), "delta"),
        (lambda: metrics.dormant_fraction(torch.ones(3, 3), threshold=2.0), "threshold"),
        (lambda: metrics.dormant_fraction([]), "empty"),
        (lambda: metrics.redo_dormant_fraction(torch.ones(3, 3), tau=-0.1), "tau"),
        (lambda: metrics.weight_change(torch.ones(2, 3, 3), torch.ones(2, 3, 4)), "same shapes"),
        (lambda: metrics.weight_magnitude([torch.ones(2, 3), torch.ones(3, 3)]), "run dimension"),
        (lambda: metrics.weight_magnitude(torch.nn.ReLU()), "no BatchedLinear"),
        (lambda: metrics.upgd_plasticity(torch.ones(2), torch.ones(3)), "shapes differ"),
    ],
)
def test_bad_input_is_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
