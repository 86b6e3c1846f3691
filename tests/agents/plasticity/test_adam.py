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
        if materialise and step == 3:  # register every tensor for per-element restarts, resetting nothing
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


class PerElementAdam:
    """An independent reference: Adam in float64 with an explicit step count per element."""

    def __init__(self, params, lr, betas, eps, weight_decay):
        self.params = [p.detach().double().clone() for p in params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros_like(p) for p in self.params]
        self.lr, self.betas, self.eps, self.decay = lr, betas, eps, weight_decay

    def step(self, grads, stepped):
        (b1, b2), lr = self.betas, self.lr
        for i in stepped:
            p, g = self.params[i], grads[i].double() + self.decay * self.params[i]
            self.steps[i] += 1
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat = self.m[i] / (1 - b1 ** self.steps[i])
            v_hat = self.v[i] / (1 - b2 ** self.steps[i])
            p -= lr * m_hat / (v_hat.sqrt() + self.eps)

    def reset(self, i, dim, runs, units):
        index = (runs, *[slice(None)] * (dim - 1), units)
        for buf in (self.m[i], self.v[i], self.steps[i]):
            buf[index] = 0


@pytest.mark.parametrize("skip_some", [False, True])
def test_random_resets_match_a_per_element_reference(skip_some):
    """Rows and columns reset at random steps, short saturation (betas 0.5, 0.75: the fresh set
    fills, is rebuilt and expires within the run), optionally a parameter without a gradient on
    some steps (the per-parameter path): every element follows its own step count."""
    gen = torch.Generator().manual_seed(3)
    weight = torch.nn.Parameter(torch.randn(2, 4, 3, generator=gen))
    bias = torch.nn.Parameter(torch.randn(2, 4, generator=gen))
    settings = {"lr": 0.05, "betas": (0.5, 0.75), "eps": 1e-8, "weight_decay": 1e-2}
    ours, ref = Adam([weight, bias], **settings), PerElementAdam([weight, bias], **settings)
    for step in range(200):
        grads = [torch.randn(2, 4, 3, generator=gen), torch.randn(2, 4, generator=gen)]
        stepped = [0] if skip_some and step % 7 == 3 else [0, 1]
        weight.grad, bias.grad = grads[0].clone(), grads[1].clone() if 1 in stepped else None
        ours.step()
        ref.step(grads, stepped)
        if step % 9 == 4 and step < 100:  # resets stop at 100: the fresh set must empty by itself
            dim = 1 + (step // 9) % 2
            runs = torch.randint(0, 2, (2,), generator=gen)
            units = torch.randint(0, weight.shape[dim], (2,), generator=gen)
            ours.reset_units(weight, dim, runs, units)
            ref.reset(0, dim, runs, units)
            if dim == 1:
                ours.reset_units(bias, 1, runs, units)
                ref.reset(1, 1, runs, units)
        for mine, theirs in zip((weight, bias), ref.params, strict=True):
            torch.testing.assert_close(mine.detach().double(), theirs, rtol=1e-5, atol=1e-6)
    assert all(ref.m[0].flatten() != 0)  # every element stepped since its last reset
    fresh = ours._fresh_by_group[id(ours.param_groups[0])]
    assert len(fresh.index) == 0  # 100 steps after the last reset (horizon 61) every element is saturated again


def test_resets_survive_replaced_parameter_data_and_a_state_round_trip(tiny):
    """A module's ``.to()`` (here: assigning .data) replaces the storage the optimizer flattened;
    the step must still update the live parameters exactly, and a saved state resumes exactly."""
    w = torch.nn.Parameter(torch.ones(1, 3, 2))
    opt = Adam([w], lr=0.1, betas=(0.9, 0.99))
    w.grad = torch.full((1, 3, 2), 0.5)
    opt.step()
    opt.reset_units(w, 1, torch.tensor([0]), torch.tensor([1]))
    w.data = w.data.clone()  # no longer a view of the optimizer's flat buffer
    saved = tiny.roundtrip(opt.state_dict())
    twin = torch.nn.Parameter(w.detach().clone())
    resumed = Adam([twin], lr=0.1, betas=(0.9, 0.99))
    resumed.load_state_dict(saved)
    assert resumed.state[twin]["reset_step_dim1"].dtype == torch.int64
    for p, o in ((w, opt), (twin, resumed)):
        before = p.detach().clone()
        p.grad = torch.full((1, 3, 2), 0.5)
        o.step()
        # row 1 restarted: m_hat = g and v_hat = g^2, so it moves by lr * g / (|g| + eps)
        torch.testing.assert_close(p[0, 1] - before[0, 1], torch.full((2,), -0.1 * 0.5 / (0.5 + 1e-8)))
        assert (p[0, 0] != before[0, 0]).all()
    assert torch.equal(w, twin)


def test_refuses_the_per_slice_corrections_of_older_versions():
    w = torch.nn.Parameter(torch.ones(1, 2))
    opt = Adam([w])
    state = {
        "state": {0: {"step": 3, "bias_correction0_dim1": torch.ones(1, 2)}},
        "param_groups": opt.state_dict()["param_groups"],
    }
    with pytest.raises(ValueError, match="older rlplast"):
        opt.load_state_dict(state)


def test_a_parameter_moved_after_the_first_reset_is_refused_by_name():
    w = torch.nn.Parameter(torch.ones(1, 3, 2))
    opt = Adam([w], lr=0.1)
    w.grad = torch.ones(1, 3, 2)
    opt.step()
    opt.reset_units(w, 1, torch.tensor([0]), torch.tensor([1]))
    w.data = w.data.double()  # as a module's .double() would
    w.grad = torch.ones(1, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="build the optimizer after moving the model"):
        opt.step()


def test_resume_is_exact_while_saturated_weights_share_a_parameter_with_fresh_ones(tiny):
    """The fresh set must be a function of the state: rows 0..31 saturate while row 40 (reset
    later) is still fresh; an optimizer resumed then must redo exactly the same weights."""
    horizon = 61  # saturation step of betas (0.5, 0.75) in float32
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(1, 64, 64, generator=gen))
    opt = Adam([w], lr=1e-2, betas=(0.5, 0.75), weight_decay=0.01)
    grads = [torch.randn(1, 64, 64, generator=gen) for _ in range(horizon + 70)]

    def step(o, p, t):
        if t == 10:
            o.reset_units(p, 1, torch.zeros(32, dtype=torch.long), torch.arange(32))
        if t == 10 + horizon - 5:
            o.reset_units(p, 1, torch.tensor([0]), torch.tensor([40]))
        p.grad = grads[t].clone()
        o.step()

    for t in range(10 + horizon + 2):
        step(opt, w, t)
    twin = torch.nn.Parameter(w.detach().clone())
    resumed = Adam([twin], lr=1e-2, betas=(0.5, 0.75), weight_decay=0.01)
    resumed.load_state_dict(tiny.roundtrip(opt.state_dict()))
    for t in range(10 + horizon + 2, len(grads)):
        step(opt, w, t)
        step(resumed, twin, t)
    assert torch.equal(w, twin)


def test_changed_betas_after_a_reset_give_the_new_corrections():
    """A scheduler may change betas between steps: the redo must use the new ones."""
    gen = torch.Generator().manual_seed(1)
    w = torch.nn.Parameter(torch.randn(1, 3, 4, generator=gen))
    settings = {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    ours, ref = Adam([w], **settings), PerElementAdam([w], **settings)
    for step in range(12):
        grad = torch.randn(1, 3, 4, generator=gen)
        w.grad = grad.clone()
        ours.step()
        ref.step([grad], [0])
        if step == 4:
            ours.reset_units(w, 1, torch.tensor([0]), torch.tensor([1]))
            ref.reset(0, 1, torch.tensor([0]), torch.tensor([1]))
        if step == 6:
            ours.param_groups[0]["betas"] = ref.betas = (0.8, 0.99)
        torch.testing.assert_close(w.detach().double(), ref.params[0], rtol=1e-5, atol=1e-6)


def test_a_state_loaded_in_memory_does_not_share_reset_steps_with_its_source():
    w = torch.nn.Parameter(torch.ones(1, 3))
    opt = Adam([w], lr=0.1)
    w.grad = torch.ones(1, 3)
    opt.step()
    opt.reset_units(w, 1, torch.tensor([0]), torch.tensor([0]))
    twin = torch.nn.Parameter(torch.ones(1, 3))
    other = Adam([twin], lr=0.1)
    other.load_state_dict(opt.state_dict())
    twin.grad = torch.ones(1, 3)
    other.step()
    other.reset_units(twin, 1, torch.tensor([0]), torch.tensor([2]))
    assert opt.state[w]["reset_step_dim1"].tolist() == [[1, 0, 0]]
