import pytest

from rlplast.bench.simulation import bench_simulation, format_rows


def test_bench_simulation_rows_and_ratios():
    rows = bench_simulation(num_envs=2, steps=3, threads=2, repeats=2)
    by_name = {r["name"]: r for r in rows}
    assert list(by_name) == [
        "raw_mj_step",
        "cpu_vecenv",
        "gym_wrapper",
        "cpu_vecenv/raw_mj_step",
        "cpu_vecenv/raw_mj_step (cpu time)",
        "gym_wrapper/raw_mj_step",
        "gym_wrapper/raw_mj_step (cpu time)",
    ]
    for r in rows:
        assert 0 < r["min"] <= r["median"] <= r["max"]
        assert (r["num_envs"], r["threads"], r["steps"], r["repeats"]) == (2, 2, 3, 2)
    # a ratio summarises per-repeat ratios, so it lies within the spread of rate ratios
    raw, vec = by_name["raw_mj_step"], by_name["cpu_vecenv"]
    ratio = by_name["cpu_vecenv/raw_mj_step"]
    assert vec["min"] / raw["max"] <= ratio["min"] <= ratio["max"] <= vec["max"] / raw["min"]
    assert "cpu_vecenv/raw_mj_step" in format_rows(rows)


def test_bench_simulation_bad_input():
    with pytest.raises(ValueError, match="must be >= 1"):
        bench_simulation(num_envs=0)
