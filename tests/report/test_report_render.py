"""Figures and report.md from hand-made results, with numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlplast.report.aggregate import load_results
from rlplast.report.plots import FIGURES, friction_ticks
from rlplast.report.report import REPORT_FILE, build_report, fmt_estimate, fmt_number
from rlplast.report.stats import Estimate
from rlplast.report.summary import auto_bins, summarize
from rlplast.report.synthetic import write_synthetic_experiment

R = "charts/episodic_return"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tables(text: str) -> list[list[list[str]]]:
    """The markdown tables of a report: each a list of rows (header first), each a list of cells."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip("|").split(" | ")])
        elif current:
            tables.append(current)
            current = []
    return tables


def _table_with(text: str, heading: str) -> dict[str, list[str]]:
    """The table whose header has a cell starting with ``heading``, as first cell -> row."""
    table = next(t for t in _tables(text) if any(c.startswith(heading) for c in t[0]))
    return {row[0]: row for row in table}


def _constant_run(level: float, steps: int = 1000, every: int = 100, extra=()) -> list:
    rows = [(s, R, level) for s in range(every, steps + 1, every)]
    rows += [(s, "env/friction", 1.0 if s < 500 else 0.1) for s in range(0, steps + 1, 250)]
    return rows + list(extra)


@pytest.fixture
def experiment(tmp_path, make_run, make_meta):
    """PPO runs at constant returns 100/200/300, CBP at 150/250/350 plus an unfinished seed 3."""
    exp = tmp_path / "handmade"
    dormant = [(s, "plasticity/actor/dormant_fraction", 0.25) for s in range(0, 1001, 100)]
    for seed, level in enumerate((100.0, 200.0, 300.0)):
        make_run(exp / "ppo" / f"seed{seed}", _constant_run(level, extra=dormant))
        make_run(exp / "ppo_cbp" / f"seed{seed}", _constant_run(level + 50))
    make_run(exp / "ppo_cbp" / "seed3", _constant_run(9999.0, steps=400), done=False)
    make_meta(exp, name="handmade", task="slippery_ant", methods=["ppo", "ppo_cbp"], steps=1000)
    return exp


def test_build_report_writes_figures_and_report(experiment):
    summary, written = build_report(experiment, num_bins=10)
    tables = [f"{m}_seed{k}.csv" for m, ks in (("ppo", (0, 1, 2)), ("ppo_cbp", (0, 1, 2, 3))) for k in ks]
    assert [p.name for p in written] == [*FIGURES, *tables, REPORT_FILE]
    for png in written[: len(FIGURES)]:
        assert png.read_bytes()[:8] == PNG_MAGIC
    text = (experiment / REPORT_FILE).read_text()
    scores = _table_with(text, "final return")
    # Finished runs only: PPO final 100/200/300 -> 200; CBP 150/250/350 -> 250 (seed 3 left out).
    assert scores["PPO"][1:3] == ["3", "200 [100, 300]"] and scores["PPO"][-1] == "baseline"
    assert scores["CBP + L2"][1] == "3" and scores["CBP + L2"][2].startswith("250 [")
    # P(CBP ends above PPO): 150 > 100; 250 > 100, 200; 350 > all three -> 6 of 9 pairs;
    # computed, but with 3 runs per method neither it nor the IQM is shown, and the report warns
    assert summary.scores["ppo_cbp"].improvement.value == pytest.approx(6 / 9)
    assert scores["CBP + L2"][-2:] == ["n/a (< 5 runs)", "n/a (< 5 runs)"]
    assert "**Warning: fewer than 5 finished runs per method.**" in text
    assert _table_with(text, "finished seeds")["CBP + L2"] == ["CBP + L2", "0, 1, 2", "3"]
    # Dormant fraction 0.25 logged by PPO only -> 25 %; stable rank logged by nobody.
    plasticity = _table_with(text, "dormant")
    assert plasticity["PPO"] == ["PPO", "not logged", "25 [25, 25]", "not logged", *["not logged"] * 3]
    assert plasticity["CBP + L2"][2] == "n/a"
    assert "mean \\|weight\\|" in text  # a '|' in a header must not split the markdown cell
    assert "![episodic return](return.png)" in text


def test_binned_csv_holds_each_runs_curves_on_the_grid(experiment):
    """Returns logged every 100 steps at a constant level bin to that level in each of the 10
    bins of 100 steps; dormant 0.25 reads 25 (%); an unfinished run's bins past its end are empty."""
    build_report(experiment, num_bins=10)
    lines = (experiment / "binned" / "ppo_seed1.csv").read_text().splitlines()
    critic = "critic_stable_rank,critic_dormant,critic_weight_magnitude"
    assert lines[0] == f"step,return,stable_rank,dormant,weight_magnitude,{critic}"
    assert lines[1:] == [f"{s},200,,25,,,," for s in range(100, 1001, 100)]
    short = (experiment / "binned" / "ppo_cbp_seed3.csv").read_text().splitlines()
    assert short[1:5] == [f"{s},9999,,,,,," for s in range(100, 401, 100)] and short[5] == "500,,,,,,,"


def test_summary_marks_friction_changes_and_ignores_unfinished_runs(experiment):
    summary = summarize(load_results(experiment), num_bins=10)
    # the first method's runs, each changing at 500 (the unfinished CBP seed 3 is not among them)
    assert {seed: steps.tolist() for seed, steps in summary.friction_changes.items()} == {0: [500], 1: [500], 2: [500]}
    cbp = summary.scores["ppo_cbp"]
    assert (cbp.finished, cbp.unfinished) == ([0, 1, 2], [3])
    assert cbp.peak.value == pytest.approx(250.0) and cbp.auc.value == pytest.approx(250.0)
    # The unfinished run (returns logged at steps 100-400) counts in the curve where it has
    # data: bins 0-3 of (0, 100], (100, 200], ... (a value logged at an edge closes that bin).
    band = summary.panels["return"].bands["ppo_cbp"]
    assert band.n_runs == 4
    np.testing.assert_allclose(band.mean[:4], (150 + 250 + 350 + 9999) / 4)
    np.testing.assert_allclose(band.mean[4:], 250.0)
    assert summary.panels["stable_rank"].tag is None


def test_report_without_baseline_or_friction(tmp_path, make_run):
    exp = tmp_path / "nobase"
    make_run(exp / "ppo_l2" / "seed0", [(s, R, 5.0) for s in range(10, 101, 10)])
    build_report(exp, num_bins=5)
    text = (exp / REPORT_FILE).read_text()
    assert "P(final >" not in text and "friction changes" not in text
    assert _table_with(text, "final return")["PPO + L2"][1:3] == ["1", "5"]  # one run: no interval
    # a baseline asked for by name must have run: an error, before any file is rewritten
    report_time = (exp / REPORT_FILE).stat().st_mtime_ns
    with pytest.raises(ValueError, match=r"baseline 'ppo_tuned' has no runs in .*; methods: ppo_l2"):
        build_report(exp, num_bins=5, baseline="ppo_tuned")
    assert (exp / REPORT_FILE).stat().st_mtime_ns == report_time


def test_synthetic_experiment_reports_cbp_above_ppo(tmp_path):
    exp = write_synthetic_experiment(tmp_path / "syn", ["ppo", "ppo_cbp"], [0, 1], 200_000, friction_every=50_000)
    summary = summarize(load_results(exp), num_bins=20)
    assert summary.scores["ppo_cbp"].final.value > summary.scores["ppo"].final.value
    for seed in (0, 1):
        np.testing.assert_array_equal(summary.friction_changes[seed], [50_000, 100_000, 150_000, 200_000])


@pytest.mark.parametrize(
    ("value", "text"), [(1234.7, "1,235"), (-250.2, "-250"), (0.05534, "0.0553"), (12.345, "12.3"), (math.nan, "n/a")]
)
def test_fmt_number(value, text):
    assert fmt_number(value) == text


def test_fmt_estimate():
    assert fmt_estimate(Estimate(200.0, 150.0, 250.0, 3)) == "200 [150, 250]"
    assert fmt_estimate(Estimate(2.0, math.nan, math.nan, 1)) == "2"
    assert fmt_estimate(Estimate(math.nan, math.nan, math.nan, 0)) == "n/a"
    assert fmt_estimate(None) == "n/a"


@pytest.mark.parametrize(("episodes", "bins"), [(30, 10), (200, 40), (203, 40), (5000, 100)])
def test_auto_bins_aims_at_five_episodes_per_bin(tmp_path, make_run, episodes, bins):
    for seed, count in enumerate((episodes, episodes, 3 * episodes)):  # the median run decides
        make_run(tmp_path / "e" / "ppo" / f"seed{seed}", [(s, R, 1.0) for s in range(1, count + 1)])
    assert auto_bins(load_results(tmp_path / "e")) == bins
    assert len(summarize(load_results(tmp_path / "e")).edges) == bins + 1


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (0.02, 2.0, [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),  # the slippery-Ant range: round values only
        (0.3, 0.9, [0.3, 0.5, 0.9]),  # one round value inside: the ends join it
        (0.61, 0.93, [0.61, 0.93]),  # none inside
        (0.123456, 0.5, [0.2, 0.5]),  # two round values inside are enough
    ],
)
def test_the_friction_axis_reads_at_least_two_labels(low, high, ticks):
    assert friction_ticks(low, high) == ticks


def test_iqm_and_improvement_are_shown_from_five_runs(tmp_path, make_run, make_meta):
    exp = tmp_path / "five"
    for seed in range(5):
        make_run(exp / "ppo" / f"seed{seed}", _constant_run(100.0 * seed))
        make_run(exp / "ppo_cbp" / f"seed{seed}", _constant_run(100.0 * seed + 1000))
    make_meta(exp, name="five", task="ant", methods=["ppo", "ppo_cbp"], steps=1000)
    build_report(exp, num_bins=10)
    text = (exp / REPORT_FILE).read_text()
    scores = _table_with(text, "final return")
    # IQM of 1000..1400 drops the outer quarters: mean of 1100, 1200, 1300 (and rliable's
    # fractional weights of 1000 and 1400, symmetric) -> 1200; every CBP run ends above every PPO run
    assert scores["CBP + L2"][-2].startswith("1,200 [") and scores["CBP + L2"][-1].startswith("1.00 [")
    assert "Warning" not in text
