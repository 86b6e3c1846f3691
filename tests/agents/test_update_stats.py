import math

import pytest
import torch

from rlplast.agents.update_stats import UpdateStats


def _params(*shapes: tuple[int, ...]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]


def _set_grads(params: list[torch.nn.Parameter], grads: list[list[float]]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g).view_as(p)


@pytest.mark.parametrize("runs", [1, 2])
def test_means_over_an_update_by_hand(runs: int) -> None:
    """Two minibatches of two samples; run 1 (if any) has twice run 0's gradients."""
    actor, critic = _params((runs, 2), (runs, 1)), _params((runs, 1))
    stats = UpdateStats([actor, critic], clip=0.2)
    # ratios 1.5, 1 then 0.5, 1.05: clipped (|r - 1| > 0.2) 1.5 and 0.5
    for ratios, grads in (
        ([1.5, 1.0], [[3.0, 4.0], [12.0], [1.0]]),  # actor sqrt(9 + 16 + 144) = 13, critic 1
        ([0.5, 1.05], [[0.0, 0.0], [5.0], [0.0]]),  # actor 5, critic 0
    ):
        logratio = torch.tensor(ratios).log().repeat(runs, 1)
        stats.add_losses(torch.full((runs,), 2.0), torch.full((runs,), 4.0), logratio)
        scale = [[1.0], [2.0]][:runs]
        _set_grads([*actor, *critic], [[s[0] * x for s in scale for x in g] for g in grads])
        stats.add_grads()
    out = stats.means()
    kl = [(r - 1) - math.log(r) for r in (1.5, 1.0, 0.5, 1.05)]
    expected = {
        "policy_loss": 2.0,
        "value_loss": 4.0,
        "approx_kl": sum(kl) / 4,  # 0.0722...
        "clip_fraction": 0.5,
        "actor_grad_norm": (13 + 5) / 2,
        "critic_grad_norm": (1 + 0) / 2,
        "grad_norm": (math.sqrt(170) + 5) / 2,
    }
    assert set(out) == set(expected)
    for name, value in expected.items():
        factor = [1.0, 2.0][:runs] if "grad" in name else [1.0] * runs
        assert out[name].tolist() == pytest.approx([value * f for f in factor], rel=1e-6), name


def test_a_missing_gradient_counts_as_zero() -> None:
    actor, critic = _params((1, 2)), _params((1, 1))
    stats = UpdateStats([actor, critic], clip=0.2)
    stats.add_losses(torch.zeros(1), torch.zeros(1), torch.zeros(1, 3))
    _set_grads(actor, [[3.0, 4.0]])
    norms = stats.add_grads()
    assert stats.network_norms(norms).view(-1).tolist() == pytest.approx([5.0, 0.0])
    assert stats.means()["grad_norm"].tolist() == pytest.approx([5.0])
