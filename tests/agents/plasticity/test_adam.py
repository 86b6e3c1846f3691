"""Our Adam against torch.optim.Adam, and its per-element restart after a reset."""

from __future__ import annotations

import copy

import pytest
import torch

from rlplast.agents.plasticity.adam import Adam


def twin_runs(tiny, decay: float, materialise: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The same learner stepped by torch's Adam and ours (optionally on the per-element path)."""
    mlp = tiny.make_mlp([4], hidden=(16, 8))
    twin = copy.deepcopy(mlp)
    settings = {"lr": 3e-3, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": decay}
    ref, ours = torch.optim.Adam(mlp.parameters(), **settings), Adam(twin.parameters(), **settings)
    stream = tiny.Stream([4])
    for step in range(25):
        x, y = stream.next()
        for net, opt in ((mlp, ref), (twin, ours)):
            opt.zero_grad()
            (net(x) - y).pow(2).mean().backward()
            opt.step()
        if materialise and step == 3:  # switch every tensor to per-slice corrections, resetting nothing
            none = torch.tensor([], dtype=torch.long)
            for p in twin.parameters():
                for dim in range(1, p.dim()):
                    ours.reset_units(p, dim, none, none)
            assert all(ours.state[p]["reset_dims"] for p in twin.parameters())
    return list(mlp.parameters()), list(twin.parameters())


@pytest.mark.parametrize("decay", [0.0, 1e-2])
@pytest.mark.parametrize("materialise", [False, True])
def test_matches_torch_adam(tiny, decay, materialise):
    ref, ours = twin_runs(tiny, decay, materialise)
    for a, b in zip(ref, ours, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    moved = sum((a - b).abs().sum() for a, b in zip(ref, tiny.make_mlp([4], hidden=(16, 8)).parameters(), strict=True))
    assert moved > 0.1  # the comparison is not between untouched weights


def test_reset_element_restarts_like_a_fresh_adam():
    w = torch.nn.Parameter(torch.tensor([[1.0, -2.0, 0.5]]))  # [R=1, 3]
    opt = Adam([w], lr=0.1, betas=(0.9, 0.999))
    grads = [torch.tensor([[0.3, -0.2, 0.1]]), torch.tensor([[-0.1, 0.4, 0.2]]), torch.tensor([[0.5, 0.5, -0.3]])]
    for g in grads[:2]:
        w.grad = g.clone()
        opt.step()
    opt.reset_units(w, 1, torch.tensor([0]), torch.tensor([1]))
    before = w.detach().clone()
    w.grad = grads[2].clone()
    opt.step()
    # element 1: moments and step start over, so its first step is lr * g / (|g| + eps)
    torch.testing.assert_close(w[0, 1] - before[0, 1], torch.tensor(-0.1 * 0.5 / (0.5 + 1e-8)))
    # elements 0 and 2 are on their third step: replay them with torch's Adam
    ref = torch.nn.Parameter(torch.tensor([[1.0, -2.0, 0.5]]))
    ref_opt = torch.optim.Adam([ref], lr=0.1, betas=(0.9, 0.999))
    for g in grads:
        ref.grad = g.clone()
        ref_opt.step()
    torch.testing.assert_close(w[0, [0, 2]], ref[0, [0, 2]])


def test_state_dict_round_trip_keeps_per_element_corrections(tiny):
    w = torch.nn.Parameter(torch.ones(2, 3))
    opt = Adam([w], lr=0.1)
    w.grad = torch.ones(2, 3)
    opt.step()
    opt.reset_units(w, 1, torch.tensor([1, 1, 1]), torch.tensor([0, 1, 2]))  # all of run 1
    saved = tiny.roundtrip(opt.state_dict())
    w2 = torch.nn.Parameter(w.detach().clone())
    opt2 = Adam([w2], lr=0.1)
    opt2.load_state_dict(saved)
    for p, o in ((w, opt), (w2, opt2)):
        p.grad = torch.full((2, 3), 0.5)
        o.step()
    assert torch.equal(w, w2)
    assert torch.equal(opt2.bias_corrections(w2)[0][1], torch.full((3,), 0.1))
    torch.testing.assert_close(opt2.bias_corrections(w2)[0][0], torch.full((3,), 1 - 0.9**2))


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="betas"):
        Adam([torch.nn.Parameter(torch.ones(1, 1))], betas=(0.9, 1.0))


def test_an_element_restarts_with_its_latest_row_or_column_reset():
    w = torch.nn.Parameter(torch.zeros(1, 2, 2))
    opt = Adam([w], lr=0.1, betas=(0.5, 0.75))
    w.grad = torch.ones(1, 2, 2)
    for _ in range(3):
        opt.step()
    opt.reset_units(w, 1, torch.tensor([0]), torch.tensor([0]))  # row 0: steps restart
    opt.step()
    opt.reset_units(w, 2, torch.tensor([0]), torch.tensor([1]))  # column 1, one step later
    opt.step()
    # own step counts: [[2, 1], [5, 1]]
    steps = torch.tensor([[[2.0, 1.0], [5.0, 1.0]]])
    for beta, corr in zip((0.5, 0.75), opt.bias_corrections(w), strict=True):
        torch.testing.assert_close(corr, 1 - beta**steps)
    with pytest.raises(ValueError, match=r"dim must be in 1\.\.2"):
        opt.reset_units(w, 3, torch.tensor([0]), torch.tensor([0]))
