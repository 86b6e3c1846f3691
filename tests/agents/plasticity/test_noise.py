"""Per-run Gaussian noise: the shared noise table and exact draws."""

from __future__ import annotations

import pytest
import torch

from rlplast.agents.plasticity.noise import TABLE_SIZE, RunNoise, noise_table, table_size

SALT = 0x123
CPU = torch.device("cpu")


def tensors(runs: int) -> list[torch.Tensor]:
    return [torch.zeros(runs, 3, 4), torch.zeros(runs, 5)]  # 17 numbers per run


def rows(noise: RunNoise) -> torch.Tensor:
    """One draw, run r's numbers of every tensor concatenated in row r: ``[R, 17]``."""
    return torch.cat([v.flatten(1) for v in noise.draw()], 1).clone()


def run_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + SALT)


def test_the_table_is_a_fixed_set_of_standard_normals():
    table = noise_table(TABLE_SIZE, CPU, torch.float32)
    assert table.shape == (1 << 22,) and noise_table(TABLE_SIZE, CPU, torch.float32) is table  # cached
    assert torch.equal(noise_table.__wrapped__(TABLE_SIZE, CPU, torch.float32), table)  # regenerated alike
    assert torch.equal(noise_table(TABLE_SIZE, CPU, torch.float64), table.double())  # one table, cast
    assert abs(table.mean().item()) < 2e-3 and abs(table.std().item() - 1) < 2e-3
    assert abs(table.pow(3).mean().item()) < 1e-2 and abs(table.pow(4).mean().item() - 3) < 2e-2
    assert table_size(17) == TABLE_SIZE and table_size(1_000_000) == 1 << 23  # at least 8 draws long


def test_table_draws_are_slices_at_offsets_from_each_runs_own_generator():
    seeds = [1, 2]
    noise = RunNoise(tensors(2), seeds, SALT)
    table = noise_table(TABLE_SIZE, CPU, torch.float32)
    gens = [run_generator(s) for s in seeds]
    for _ in range(3):
        drawn = rows(noise)
        starts = [int(torch.randint(TABLE_SIZE - 17 + 1, (1,), generator=g)) for g in gens]
        assert starts[0] != starts[1]  # the runs' offsets differ
        for r, start in enumerate(starts):
            assert torch.equal(drawn[r], table[start : start + 17])


def test_a_table_draw_looks_standard_normal():
    (drawn,) = RunNoise([torch.zeros(2, 100_000)], [0, 1], SALT).draw()
    assert drawn.mean(1).abs().max() < 0.02 and (drawn.std(1) - 1).abs().max() < 0.02
    assert not torch.equal(drawn[0], drawn[1])


def test_exact_draws_are_torch_randn_from_each_runs_generator():
    seeds = [3, 4]
    noise = RunNoise(tensors(2), seeds, SALT, source="exact")
    gens = [run_generator(s) for s in seeds]
    for _ in range(2):
        drawn = rows(noise)
        for r, gen in enumerate(gens):
            assert torch.equal(drawn[r], torch.randn(17, generator=gen))


@pytest.mark.parametrize("source", ["table", "exact"])
def test_a_run_in_a_group_draws_what_it_draws_alone_and_resumes(source):
    group, alone = RunNoise(tensors(3), [5, 9, 2], SALT, source), RunNoise(tensors(1), [9], SALT, source)
    for _ in range(3):
        assert torch.equal(rows(group)[1], rows(alone)[0])
    saved = group.state_dict()
    ahead = [rows(group) for _ in range(2)]
    resumed = RunNoise(tensors(3), [5, 9, 2], SALT, source)
    resumed.load_state_dict(saved)
    for expected in ahead:
        assert torch.equal(rows(resumed), expected)


@pytest.mark.parametrize("source", ["table", "exact"])
def test_draw_into_writes_the_scaled_draw(source):
    a, b = RunNoise(tensors(2), [0, 1], SALT, source), RunNoise(tensors(2), [0, 1], SALT, source)
    out = torch.empty(2, 17)
    a.draw_into(out, -0.5)
    torch.testing.assert_close(out, -0.5 * rows(b))


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="noise source 'gauss'"):
        RunNoise(tensors(1), [0], SALT, source="gauss")
