"""The slowly-changing regression: problem by hand, learner gradients, run slices, the claim."""

from __future__ import annotations

import itertools

import pytest
import torch

from rlplast import sanity
from rlplast.agents.plasticity.cbp import CBPConfig
from rlplast.sanity import METHODS, OnlineLearner, SanityMethod, run_sanity
from rlplast.sanity_problem import ProblemConfig, SlowlyChangingRegression

SMALL = ProblemConfig(num_bits=5, flipping_bits=3, target_hidden=4, beta=0.7, flip_every=50)


def test_target_is_the_ltu_network_by_hand():
    stream = SlowlyChangingRegression(SMALL, [3])
    w, b = stream.weight[0].tolist(), stream.bias[0].tolist()
    v, c = stream.out_weight[0].tolist(), float(stream.out_bias[0])
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)))  # all 32 inputs
    y = stream.target(x.unsqueeze(0))[0]
    for k, bits in enumerate(x.tolist()):
        total = c
        for i in range(4):
            negatives = sum(wij < 0 for wij in w[i]) + (b[i] < 0)
            fires = sum(wij * xj for wij, xj in zip(w[i], bits, strict=True)) + b[i] > 6 * 0.7 - negatives
            total += v[i] * fires
        assert y[k].item() == pytest.approx(total)
    assert all(abs(value) == 1 for value in [*(wij for row in w for wij in row), *b, *v, c])


def test_one_slow_bit_flips_per_period_and_the_rest_is_fresh():
    stream = SlowlyChangingRegression(SMALL, [0, 1])
    previous = None
    for _ in range(6):
        x, y = stream.next_period()
        assert x.shape == (2, 50, 5) and y.shape == (2, 50)
        slow = x[:, :, :3]
        assert torch.equal(slow, slow[:, :1].expand_as(slow))  # constant within a period
        if previous is not None:
            assert ((slow[:, 0] != previous).sum(1) == 1).all()  # exactly one flipped bit per stream
        previous = slow[:, 0]
        assert 0 < x[:, :, 3:].mean() < 1


def test_a_stream_depends_only_on_its_seed():
    group, alone = SlowlyChangingRegression(SMALL, [4, 9]), SlowlyChangingRegression(SMALL, [9])
    for _ in range(3):
        (xg, yg), (xa, ya) = group.next_period(), alone.next_period()
        assert torch.equal(xg[1], xa[0]) and torch.equal(yg[1], ya[0])


def test_hand_written_gradients_match_autograd():
    learner = OnlineLearner(["backprop", "cbp"], [0, 1], SMALL, hidden=4)
    x = torch.randint(0, 2, (4, 1, 5)).float()
    y = torch.randn(4, 1, 1)
    diff = learner.forward_backward(x, y)
    manual = [p.grad.clone() for p in learner.mlp.parameters()]
    params = list(learner.mlp.parameters())
    auto = torch.autograd.grad((learner.mlp(x) - y).square().sum(), params)
    torch.testing.assert_close(diff, (learner.mlp(x) - y).detach())
    for m, a in zip(manual, auto, strict=True):
        torch.testing.assert_close(m, a)
    assert sum(a.abs().sum() for a in auto) > 0


@pytest.fixture
def quick_cbp(monkeypatch):
    """CBP replacing within a few hundred examples, so the short runs exercise replacements."""
    fast = CBPConfig(replacement_rate=0.01, maturity_threshold=10, init_gain=sanity.RELU_GAIN)
    monkeypatch.setitem(METHODS, "cbp", SanityMethod(optimizer=sanity.SGD, plugins=[fast]))


def test_each_method_and_seed_in_the_group_equals_it_alone(quick_cbp):
    everything = run_sanity(["cbp", "backprop", "upgd", "l2", "snp"], [0, 1], 400, bins=4, problem=SMALL)
    learner = OnlineLearner(["cbp", "backprop", "upgd", "l2", "snp"], [0, 1], SMALL, hidden=5)
    assert [len(g.methods) for g in learner.groups] == [3, 1, 1]  # cbp, backprop and snp share SGD
    for i, name in enumerate(everything.methods):
        alone = run_sanity([name], [1], 400, bins=4, problem=SMALL)
        torch.testing.assert_close(everything.errors[i, 1], alone.errors[0, 0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(everything.tail[i, 1], alone.tail[0, 0], rtol=1e-5, atol=1e-6)


def test_cbp_replaces_units_in_its_slice_only(quick_cbp):
    learner = OnlineLearner(["backprop", "cbp"], [0], SMALL, hidden=5)
    stream = SlowlyChangingRegression(SMALL, [0])
    for _ in range(6):
        x, y = stream.next_period()
        learner.learn(x.repeat(2, 1, 1), y.repeat(2, 1))
    (group,) = learner.groups
    cbp = group.methods[1].plugins[0]
    assert cbp.stats()["cbp/replaced"].item() > 0
    # a replaced unit's outgoing weight is exactly 0 right after; backprop (run 0) never has one
    out = learner.mlp.layers[1].weight
    assert (out[0] != 0).all()


def test_result_table_and_files(tmp_path):
    result = run_sanity(["backprop"], [0, 1], 120, bins=3, problem=SMALL)
    assert result.bin_ends == [40, 80, 120]
    # the last 10% is examples 108..119, inside the last bin
    assert result.tail.shape == (1, 2) and result.errors.shape == (1, 2, 3)
    lines = result.table().splitlines()
    assert lines[0].split() == ["examples", "backprop"] and lines[-1].startswith("    last 10%")
    result.write_csv(tmp_path / "e.csv")
    rows = (tmp_path / "e.csv").read_text().splitlines()
    assert rows[0] == "method,seed,examples,mse" and len(rows) == 1 + 2 * 3
    result.plot(tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_bad_requests_are_errors():
    with pytest.raises(ValueError, match="known: backprop, l2, snp, cbp, upgd"):
        run_sanity(["adam"], [0], 100)
    with pytest.raises(ValueError, match="bins"):
        run_sanity(["backprop"], [0], 10, bins=11)


@pytest.mark.slow
def test_cbp_keeps_learning_where_backprop_loses_plasticity():
    """A shortened sanity run: 600k examples (a fifth of the paper's), 3 seeds (about 3 minutes)."""
    result = run_sanity(["backprop", "cbp"], [0, 1, 2], 600_000, bins=10)
    backprop, cbp = result.tail.mean(1).tolist()
    assert cbp < 0.8 * backprop, result.table()


@pytest.mark.parametrize(
    ("methods", "message"),
    [("backprop,nope", "unknown ['nope']"), ("backprop,cbp,backprop", "repeated backprop")],
)
def test_cli_refuses_bad_methods(methods, message):
    from click.testing import CliRunner

    from rlplast.cli import main

    result = CliRunner().invoke(main, ["sanity", "--methods", methods, "--examples", "1000"])
    assert result.exit_code == 2 and message in result.output
