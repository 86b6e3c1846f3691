"""Reading results folders and binning curves onto a step grid, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from rlplast.report.aggregate import (
    Series,
    bin_series,
    binned,
    change_steps,
    load_results,
    read_metrics,
    step_edges,
)

R = "charts/episodic_return"


def test_read_metrics_groups_rows_by_tag(tmp_path, make_run):
    run = make_run(tmp_path / "r", [(1, R, 10.0), (1, "env/friction", 1.0), (5, R, 12.5)])
    got = read_metrics(run / "metrics.csv")
    assert sorted(got) == ["charts/episodic_return", "env/friction"]
    np.testing.assert_array_equal(got[R].steps, [1, 5])
    np.testing.assert_array_equal(got[R].values, [10.0, 12.5])


def test_read_metrics_keeps_only_requested_tags(tmp_path, make_run):
    run = make_run(tmp_path / "r", [(1, R, 10.0), (1, "losses/value_loss", 3.0)])
    assert list(read_metrics(run / "metrics.csv", tags={R})) == [R]


def test_read_metrics_resumed_run_later_rows_win(tmp_path, make_run):
    # Logged up to step 30, resumed from a checkpoint at step 15: rows from 20 on were logged again.
    rows = [(10, "a", 1), (20, "a", 2), (20, "b", 7), (30, "a", 3), (20, "a", 5), (40, "a", 6)]
    got = read_metrics(make_run(tmp_path / "r", rows) / "metrics.csv")
    np.testing.assert_array_equal(got["a"].steps, [10, 20, 40])
    np.testing.assert_array_equal(got["a"].values, [1, 5, 6])
    np.testing.assert_array_equal(got["b"].values, [7])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("step,name,value\n1,a,2\n", "header"),
        ("step,tag,value\n1,a\n", "3 fields"),
        ("step,tag,value\nx,a,2\n", "numbers"),
    ],
)
def test_read_metrics_rejects_bad_files(tmp_path, text, match):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_metrics(path)


def test_read_metrics_names_a_file_that_is_not_text(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"step,tag,value\n1,a,\xff\xfe\n")
    with pytest.raises(ValueError, match=r"metrics\.csv: not a UTF-8 text file"):
        read_metrics(path)


def test_bin_series_means_interpolates_gaps_and_counts_last_edge():
    edges = step_edges(40, 4)  # [0, 10, 20, 30, 40]
    series = Series(np.array([2, 8, 15, 38, 40]), np.array([1.0, 3.0, 10.0, 20.0, 30.0]))
    # bin 0: (1 + 3) / 2; bin 1: 10; bin 2: empty, between 10 and 25; bin 3: (20 + 30) / 2.
    np.testing.assert_allclose(bin_series(series, edges), [2.0, 10.0, 17.5, 25.0])


def test_bin_series_puts_a_value_logged_at_an_edge_in_the_bin_it_closes():
    # logged every 10 steps with bins 10 wide (a metric whose interval equals the bin width):
    # the value at step 10 summarises (0, 10], so bin k holds exactly the value logged at 10 (k + 1)
    steps = np.arange(10, 101, 10)
    np.testing.assert_allclose(bin_series(Series(steps, steps * 1.0), step_edges(100, 10)), steps * 1.0)
    # a value logged at step 0 (before any training) counts in the first bin
    at_start = Series(np.array([0, 10]), np.array([1.0, 3.0]))
    np.testing.assert_allclose(bin_series(at_start, step_edges(20, 2)), [2.0, np.nan])


def test_bin_series_leaves_out_steps_beyond_the_grid():
    series = Series(np.array([5, 15, 25, 35]), np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(bin_series(series, step_edges(20, 2)), [1.0, 2.0])


def test_bin_series_is_nan_outside_the_logged_range():
    got = bin_series(Series(np.array([25, 28]), np.array([4.0, 6.0])), step_edges(40, 4))
    np.testing.assert_allclose(got, [np.nan, np.nan, 5.0, np.nan])


def test_binned_gives_nan_rows_for_runs_without_the_tag(tmp_path, make_run):
    make_run(tmp_path / "e" / "ppo" / "seed0", [(5, R, 1.0), (15, R, 3.0)])
    make_run(tmp_path / "e" / "ppo" / "seed1", [(5, "env/friction", 1.0)])
    runs = load_results(tmp_path / "e").runs["ppo"]
    got = binned(runs, R, step_edges(20, 2))
    np.testing.assert_allclose(got, [[1.0, 3.0], [np.nan, np.nan]])


def test_change_steps_finds_where_the_value_moves():
    series = Series(np.array([0, 10, 20, 30, 40]), np.array([1.0, 1.0, 0.5, 0.5, 2.0]))
    np.testing.assert_array_equal(change_steps(series), [20, 40])


def test_load_results_orders_methods_and_reads_steps_from_experiment_file(tmp_path, make_run, make_meta):
    exp = tmp_path / "exp"
    for method in ("ppo_cbp", "ppo", "extra"):
        make_run(exp / method / "seed1", [(100, R, 1.0)])
    make_run(exp / "ppo" / "seed0", [(50, R, 1.0)], done=False)
    (exp / "ppo" / "notes").mkdir()
    make_meta(exp, name="exp", methods=["ppo", "ppo_cbp"], steps=1000)
    res = load_results(exp)
    assert res.methods == ["ppo", "ppo_cbp", "extra"]
    assert [(r.seed, r.done) for r in res.runs["ppo"]] == [(0, False), (1, True)]
    assert res.total_steps == 1000


def test_load_results_without_experiment_file_uses_the_last_logged_step(tmp_path, make_run):
    make_run(tmp_path / "exp" / "ppo" / "seed3", [(10, R, 1.0), (730, "env/friction", 1.0)])
    res = load_results(tmp_path / "exp")
    assert (res.name, res.total_steps, res.methods) == ("exp", 730, ["ppo"])


def test_load_results_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no experiment folder"):
        load_results(tmp_path / "missing")
    (tmp_path / "empty" / "ppo").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no run folders"):
        load_results(tmp_path / "empty")


def test_step_edges_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="positive"):
        step_edges(0, 10)
