"""The lazy replacement clock against the paper's per-step accumulator, simulated naively."""

from __future__ import annotations

import pytest
import torch

from rlplast.agents.plasticity.replacement import ReplacementClock


@pytest.mark.parametrize(("maturity", "rate"), [(5, 1 / 64), (0, 1 / 8), (40, 3 / 128)])
def test_matches_the_per_step_accumulator(tiny, maturity, rate):
    # rates with short binary fractions keep the naive float accumulator exact
    widths, runs = [6, 3], 2
    clock = ReplacementClock(widths, runs, maturity, rate, "accumulate", [])
    ages = [torch.zeros(runs, w, dtype=torch.int64) for w in widths]
    acc = torch.zeros(len(widths), runs, dtype=torch.float64)
    pick = torch.Generator().manual_seed(0)
    total = 0
    for step in range(1, 1201):
        if step == 600:  # resume half-way from a checkpoint
            state = tiny.roundtrip(clock.state_dict())
            clock = ReplacementClock(widths, runs, maturity, rate, "accumulate", [])
            clock.load_state_dict(state)
        counts = clock.step()
        for a in ages:
            a += 1
        eligible = torch.stack([(a > maturity).sum(1) for a in ages])
        acc += eligible.double() * rate
        due = acc.floor()
        acc -= due
        expected = torch.minimum(due.long(), eligible)
        got = counts if counts is not None else torch.zeros_like(expected)
        assert torch.equal(got, expected), step
        for layer, a in enumerate(ages):
            for run in range(runs):
                n = int(expected[layer, run])
                if n:
                    units = torch.nonzero(a[run] > maturity).flatten()
                    chosen = units[torch.randperm(len(units), generator=pick)[:n]]
                    torch.testing.assert_close(clock.eligible_mask(layer)[run, chosen], torch.ones(n, dtype=torch.bool))
                    clock.born(layer, torch.full((n,), run), chosen)
                    a[run, chosen] = 0
                    total += n
        if counts is not None:
            clock.replaced()
        for layer, a in enumerate(ages):
            assert torch.equal(clock.ages(layer), a)
    assert total > 20


def test_probability_mode_draws_from_each_runs_generator():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    clock = ReplacementClock([4], 2, 0, 0.1, "probability", gens)  # expected 0.4 per step
    replay = [torch.Generator().manual_seed(s) for s in (1, 2)]
    for _ in range(50):
        counts = clock.step()
        draws = [float(torch.rand((), generator=g, dtype=torch.float64)) for g in replay]
        expected = torch.tensor([[int(d <= 0.4) for d in draws]])
        assert torch.equal(counts if counts is not None else torch.zeros_like(expected), expected)


def test_start_mature_makes_every_unit_eligible_at_once():
    # maturity 1000, rate 1/16, 8 units: nothing would be due for 1000 steps; started mature,
    # 8 eligible units give floor(8 t / 16) replacements by step t, from the first steps on
    clock = ReplacementClock([8], 1, 1000, 1 / 16, "accumulate", [])
    clock.step()
    clock.start_mature()
    assert clock.eligible_mask(0).all()
    total = 0
    for step in range(2, 34):
        counts = clock.step()
        if counts is not None:
            total += int(counts.sum())
            clock.replaced()  # nothing reborn: all stay eligible
        assert total == (8 * (step - 1)) // 16, step
    assert total == 16
