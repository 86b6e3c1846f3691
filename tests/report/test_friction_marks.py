"""Friction-change lines: per seed at the logged change steps, merged where a figure cannot tell
them apart, and drawn per seed in return.png (with one panel per method from four methods)."""

from __future__ import annotations

import numpy as np
import pytest

from rlplast.report.aggregate import load_results
from rlplast.report.friction_marks import MAX_LINES_PER_SEED, change_lines, merge_close
from rlplast.report.plots import return_figure
from rlplast.report.style import method_label
from rlplast.report.summary import summarize

R = "charts/episodic_return"
F = "env/friction"


def as_lists(lines):
    return {seed: steps.tolist() for seed, steps in lines.items()}


def test_merge_close_keeps_the_first_of_each_cluster():
    assert merge_close(np.array([5000, 100, 104, 109, 111]), width=10).tolist() == [100, 111, 5000]


def test_seeds_that_changed_together_share_one_set_of_lines():
    # 1M steps: resolution 2,000 steps. Changes an episode apart (300 steps) are the same line.
    changes = {0: np.array([250_000, 500_000]), 1: np.array([250_300, 500_900])}
    assert as_lists(change_lines(changes, 1_000_000)) == {None: [250_000, 500_000]}


def test_seeds_that_changed_apart_get_their_own_lines():
    changes = {0: np.array([250_000]), 1: np.array([400_000]), 2: np.array([], dtype=np.int64)}
    assert as_lists(change_lines(changes, 1_000_000)) == {0: [250_000], 1: [400_000]}
    # a seed with more changes than the others is not 'the same lines' either
    changes = {0: np.array([250_000]), 1: np.array([250_000, 600_000])}
    assert as_lists(change_lines(changes, 1_000_000)) == {0: [250_000], 1: [250_000, 600_000]}


def test_a_schedule_that_moves_all_the_time_gets_no_lines():
    steps = np.arange(1, MAX_LINES_PER_SEED + 2) * 10_000  # one more than the limit, all distinct
    assert change_lines({0: steps}, 1_000_000) == {}
    assert len(change_lines({0: steps[:-1]}, 1_000_000)[None]) == MAX_LINES_PER_SEED
    assert change_lines({}, 1_000_000) == {} and change_lines({0: np.zeros(0, dtype=np.int64)}, 10) == {}


def dotted(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == ":"]


def write_methods(make_run, exp, methods, change_at):
    """Each method's seeds 0 and 1 at a constant return; seed k's friction changes at change_at[k]."""
    for m, method in enumerate(methods):
        for seed, step in enumerate(change_at):
            rows = [(s, R, 100.0 * (m + 1) + seed) for s in range(100, 1001, 100)]
            rows += [(0, F, 1.0), (step, F, 0.5), (1000, F, 0.5)]
            make_run(exp / method / f"seed{seed}", rows)


def test_return_panel_marks_each_seeds_change_in_its_shade(tmp_path, make_run):
    write_methods(make_run, tmp_path / "e", ["ppo", "ppo_cbp"], change_at=(300, 700))
    fig = return_figure(summarize(load_results(tmp_path / "e"), num_bins=10))
    panel, strip = fig.axes
    lines = dotted(panel)
    assert sorted(line.get_xdata()[0] for line in lines) == [0.3, 0.7]  # thousands of steps
    assert len({tuple(line.get_color()) for line in lines}) == 2  # a shade per seed
    assert sorted(line.get_xdata()[0] for line in dotted(strip)) == [0.3, 0.7]  # and under the strip
    assert len(panel.collections) == 2  # one band per method in the single panel
    assert [t.get_text() for t in panel.get_legend().get_texts()][-1].startswith("friction change (per seed")


def test_five_methods_get_a_panel_each(tmp_path, make_run):
    methods = ["ppo", "ppo_tuned", "ppo_cbp", "ppo_l2", "ppo_redo"]
    write_methods(make_run, tmp_path / "e", methods, change_at=(500, 500))
    summary = summarize(load_results(tmp_path / "e"), num_bins=10)
    fig = return_figure(summary)
    *panels, strip = fig.axes
    assert sorted(summary.results.methods) == sorted(methods)
    assert [ax.get_title() for ax in panels] == [f"{method_label(m)} (n=2)" for m in summary.results.methods]
    for ax in panels:
        # its own band in colour, the four other methods' means in grey, one change line for both seeds
        assert len(ax.collections) == 1
        greys = [line for line in ax.get_lines() if line.get_color() == "0.7"]
        assert len(greys) == 4
        assert [line.get_xdata()[0] for line in dotted(ax)] == [0.5]
    assert strip.get_ylabel() == "friction"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["the other methods' means", "friction change"]


@pytest.mark.parametrize("count", [1, 3])
def test_up_to_three_methods_share_one_panel(tmp_path, make_run, count):
    write_methods(make_run, tmp_path / "e", ["ppo", "ppo_tuned", "ppo_cbp"][:count], change_at=(500, 500))
    fig = return_figure(summarize(load_results(tmp_path / "e"), num_bins=10))
    assert len(fig.axes) == 2 and len(fig.axes[0].collections) == count
