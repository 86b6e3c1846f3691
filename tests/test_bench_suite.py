"""``rlplast bench``: how the suite composes the measurements into figures, ratios and goals."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rlplast.bench import suite
from rlplast.bench.plugins import UpdateTime
from rlplast.bench.suite import Figure, SuiteSettings, run_suite, to_markdown, write_outputs
from rlplast.cli import main


def sim_rows(**_):
    info = {"num_envs": 4, "steps": 10, "threads": 2, "envs_per_run": 1, "repeats": 3}
    rows = [
        ("raw_mj_step", "env-steps/s", 1000.0, 900.0, 1100.0),
        ("cpu_vecenv", "env-steps/s", 900.0, 850.0, 950.0),
        ("gym_wrapper", "env-steps/s", 400.0, 350.0, 450.0),
        ("cpu_vecenv/raw_mj_step", "ratio", 0.9, 0.85, 0.95),
        ("cpu_vecenv/raw_mj_step (cpu time)", "ratio", 0.92, 0.9, 0.94),
    ]
    return [{"name": n, "unit": u, "median": m, "min": lo, "max": hi, **info} for n, u, m, lo, hi in rows]


def ppo_speed(task, method, steps, repeats, threads, group, overrides):
    ours = [1024.0, 2048.0, 1000.0] if group == 1 else [4000.0, 4100.0, 3900.0]
    theirs = [800.0, 1000.0, 1000.0]
    return {
        "steps": steps,
        "threads": 2,
        "rlplast_sps": ours,
        "rlplast_cpu_sps": [sps / 2 for sps in ours],
        "sb3_sps": theirs,
        "ratio": [a / b for a, b in zip(ours, theirs, strict=True)],
        "cpu_ratio": [1.0, 1.1, 1.2],
    }


SECONDS = {
    "ppo_tuned": [1.0, 2.0, 1.0, 1.0],
    "ppo_cbp": [1.1, 2.4, 1.3, 1.2],
    "ppo_upgd_protocol": [9.0, 2.0, 1.0, 1.0],
    "ppo_cbp (stale moments)": [1.0, 2.2, 1.1, 1.05],
}


def fake_updater(name, runs, device):
    """Wall seconds as SECONDS, CPU seconds twice them except CBP's last two repeats (+0.1 s)."""
    cpu_extra = {"ppo_cbp": [0.0, 0.0, 0.1, 0.1]}.get(name, [0.0] * 4)
    times = iter([UpdateTime(w, 2 * w + e) for w, e in zip(SECONDS[name], cpu_extra, strict=True)])
    return lambda: next(times)  # the first call is the warm-up


def metrics_overhead(num_runs, repeats, cpu_time):
    return [{"overhead_pct": 3.0, "metrics_ms_per_1000": 9.0}]


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(suite, "bench_simulation", sim_rows)
    monkeypatch.setattr(suite, "measure_ppo_speed", ppo_speed)
    monkeypatch.setattr(suite, "ppo_updater", fake_updater)
    monkeypatch.setattr(suite, "measure_metrics_overhead", metrics_overhead)
    monkeypatch.setattr(suite, "warp_available", lambda: False)
    monkeypatch.setattr(suite, "UPDATES_PER_REPEAT", 1)


def test_ratios_are_paired_within_repeats_then_summarised(fakes):
    result = run_suite(SuiteSettings(repeats=3))
    fig = result.figure
    # PPO: per-repeat ratios 1.28, 2.048, 1.0 -> median 1.28 (the ratio of medians would be 1.024)
    ppo = fig("rlplast / SB3, R = 1")
    assert (ppo.median, ppo.min, ppo.max, ppo.n) == pytest.approx((1.28, 1.0, 2.048, 3))
    assert fig("rlplast PPO, R = 1").median == 1024.0
    # plug-ins (after one warm-up call), wall clock: ratios 2.4/2, 1.3/1, 1.2/1 -> median 1.2, min 1.2, max 1.3
    cbp = fig("ppo_cbp / ppo_tuned (update)")
    assert (cbp.median, cbp.min, cbp.max) == pytest.approx((1.2, 1.2, 1.3))
    assert fig("ppo_cbp update").median == pytest.approx(1300.0) and fig("ppo_cbp update").unit == "ms"
    # CPU time: 4.8/4, 2.7/2, 2.5/2 -> 1.2, 1.35, 1.25
    cbp_cpu = fig("ppo_cbp / ppo_tuned (update, cpu time)")
    assert (cbp_cpu.median, cbp_cpu.min, cbp_cpu.max) == pytest.approx((1.25, 1.2, 1.35))
    # the stale-moments variant: 2.2/2, 1.1/1, 1.05/1; no end-to-end share of its own
    assert fig("ppo_cbp (stale moments) / ppo_tuned (update)").median == pytest.approx(1.1)
    assert fig("ppo_cbp (stale moments): added to an end-to-end iteration") is None
    # end to end, in CPU time: an iteration of 2048 steps at the median 512 steps per CPU second
    # takes 4 CPU s; CBP adds 0.8, 0.7, 0.5 CPU s in the three repeats: 20, 17.5, 12.5 %
    assert fig("rlplast PPO, R = 1 (cpu time)").median == 512.0
    share = fig("ppo_cbp: added to an end-to-end iteration")
    assert (share.median, share.min, share.max) == pytest.approx((17.5, 12.5, 20.0))
    assert fig("ppo_upgd_protocol / ppo_tuned (update)").median == pytest.approx(1.0)
    assert fig("cpu backend / raw mj_step").median == 0.9
    assert fig("metrics / PPO network work").median == 3.0
    warp = fig("warp backend")
    assert warp.n == 0 and warp.median is None and "not measured" in warp.note


def test_goals_are_judged_on_the_medians(fakes):
    goals = {g.name: g for g in run_suite(SuiteSettings(repeats=3)).goals}
    backend = goals["cpu backend >= 0.85 x raw mj_step"]
    assert (backend.met, backend.verdict) == (True, "yes")  # min 0.85
    one = goals["rlplast PPO >= 1.5 x SB3 PPO, one run"]
    assert (one.met, one.verdict) == (False, "unclear")  # 1.28 [1.0, 2.048]: repeats on both sides of 1.5
    group = goals["rlplast PPO >= 1.5 x SB3 PPO, run group"]
    assert group.met is True and group.median == pytest.approx(4.1)  # 4000 / 800, 4100 / 1000, 3900 / 1000
    cbp = goals["ppo_cbp update <= 1.15 x ppo_tuned"]
    assert (cbp.met, cbp.verdict) == (False, "no")  # 1.2 [1.2, 1.3]: even the fastest repeat is above
    upgd = goals["ppo_upgd_protocol update <= 1.15 x ppo_tuned"]
    assert (upgd.met, upgd.verdict) == (True, "yes") and upgd.median == pytest.approx(1.0)
    metrics = goals["metrics <= 5% of the PPO network work"]
    assert (metrics.met, metrics.verdict) == (True, "yes")  # 3 %
    only_sim = run_suite(SuiteSettings(repeats=3, sections=("simulation",))).goals
    assert [(g.met, g.verdict) for g in only_sim] == [(True, "yes"), (None, "not measured")]


@pytest.mark.parametrize(
    ("low", "median", "high", "expected"),
    [(1.5, 1.6, 2.0, (True, "yes")), (1.0, 1.2, 1.49, (False, "no")), (1.4, 1.5, 1.6, (True, "unclear"))],
)
def test_judge_looks_at_the_spread(low, median, high, expected):
    assert suite.judge(Figure("ppo", "r", "ratio", median, low, high, 3), 1.5) == expected


@pytest.mark.parametrize(
    ("low", "median", "high", "expected"),
    [
        (1.0, 1.1, 1.15, (True, "yes")),  # even the slowest repeat is at the bound
        (1.16, 1.2, 1.3, (False, "no")),
        (1.15, 1.2, 1.3, (False, "unclear")),  # the fastest repeat is at the bound
        (1.1, 1.16, 1.2, (False, "unclear")),
        (1.1, 1.14, 1.2, (True, "unclear")),
    ],
)
def test_judge_an_upper_bound(low, median, high, expected):
    assert suite.judge(Figure("plugins", "r", "ratio", median, low, high, 3), 1.15, at_most=True) == expected


def test_a_plugin_repeat_averages_its_updates_taken_in_turns(fakes, monkeypatch):
    calls = []

    def updater(name, runs, device):
        table = {"ppo_tuned": [9, 1, 3, 2, 2], "ppo_cbp": [9, 2, 4, 2, 4], "ppo_cbp (stale moments)": [9, 1, 3, 2, 2]}
        walls = iter(table[name])  # warm-up first

        def update():
            calls.append(name)
            wall = next(walls)
            return UpdateTime(wall, wall)

        return update

    monkeypatch.setattr(suite, "ppo_updater", updater)
    monkeypatch.setattr(suite, "UPDATES_PER_REPEAT", 2)
    settings = SuiteSettings(repeats=2, sections=("plugins",), plugin_methods=("ppo_cbp",))
    result = run_suite(settings)
    # repeat 1: tuned (1 + 3) / 2 = 2, CBP (2 + 4) / 2 = 3 -> 1.5; repeat 2: 2 and 3 -> 1.5
    assert result.figure("ppo_tuned update").median == pytest.approx(2000.0)
    ratio = result.figure("ppo_cbp / ppo_tuned (update)")
    assert (ratio.median, ratio.n) == (pytest.approx(1.5), 2)
    timed = [name for name in calls[3:] if name in ("ppo_tuned", "ppo_cbp")]
    assert timed[:4] == ["ppo_tuned", "ppo_cbp", "ppo_tuned", "ppo_cbp"]  # in turns


def test_a_failing_section_is_reported_and_the_others_still_run(fakes, monkeypatch):
    def broken(**_):
        raise RuntimeError("no simulator")

    monkeypatch.setattr(suite, "bench_simulation", broken)
    result = run_suite(SuiteSettings(repeats=3, sections=("simulation", "metrics")))
    assert result.figures[0].note == "failed: RuntimeError: no simulator"
    assert result.figure("metrics / PPO network work").n == 3
    assert result.goals[0].met is None

    monkeypatch.setattr(suite, "ppo_updater", lambda *a: broken())
    plugins = {g.name: g for g in run_suite(SuiteSettings(repeats=3, sections=("plugins",))).goals}
    assert plugins["ppo_cbp update <= 1.15 x ppo_tuned"].verdict == "not measured"  # asked for, failed
    assert "metrics <= 5% of the PPO network work" not in plugins  # not asked for


def test_markdown_and_json_outputs(fakes, tmp_path):
    result = run_suite(SuiteSettings(repeats=3, sections=("simulation", "warp")), command="rlplast bench --quick")
    text = to_markdown(result)
    assert "`rlplast bench --quick`" in text
    assert "| simulation | raw mj_step | env-steps/s | 1,000 | 900 | 1,100 | 3 |" in text
    assert "| simulation | cpu backend / raw mj_step | ratio | 0.900 | 0.850 | 0.950 | 3 |" in text
    assert "| warp | warp backend |  | - | - | - | 0 | not measured" in text
    assert "| cpu backend >= 0.85 x raw mj_step | 0.900 | 0.850 | 0.950 | yes |" in text
    result.machine["load_average_before"] = [9.0, 1.0, 1.0]
    assert "**Warning: the machine was busy** (1-min load 9.0 on" in to_markdown(result)
    result.machine["load_average_before"] = [0.0, 1.0, 1.0]
    text = to_markdown(result)
    assert "busy" not in text
    paths = write_outputs(result, tmp_path / "out" / "bench.json")
    assert [p.name for p in paths] == ["bench.json", "bench.md"]
    data = json.loads(paths[0].read_text())
    assert data["figures"][0]["name"] == "raw mj_step" and data["machine"]["cores_available"] >= 1
    assert paths[1].read_text() == text


def test_figure_needs_values():
    with pytest.raises(ValueError, match="has no values"):
        Figure.of("x", "empty", "ms", [])
    with pytest.raises(ValueError, match="paired repeats"):
        suite.ratios([1.0], [1.0, 2.0])


def test_cli_options(fakes, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["bench", "--only", "simulation,gpu"])
    assert bad.exit_code == 2 and "unknown sections ['gpu']" in bad.output
    args = ["bench", "--quick", "--only", "metrics", "--repeats", "2", "--out", str(tmp_path / "b")]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| metrics | metrics / PPO network work | % | 3.0 | 3.0 | 3.0 | 2 |" in result.output
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["settings"]["preset"] == "quick" and saved["settings"]["sections"] == ["metrics"]
    # an --out folder that cannot exist (under a file) is refused before anything is measured
    under_file = runner.invoke(main, [*args[:-1], str(tmp_path / "b.json" / "x")])
    assert under_file.exit_code == 2 and "--out" in under_file.output
    assert "cannot create the folder" in under_file.output
    assert "metrics / PPO" not in under_file.output


def test_real_simulation_section_feeds_the_backend_goal():
    result = run_suite(SuiteSettings(repeats=1, sections=("simulation",), sim_envs=2, sim_steps=3, threads=1))
    names = [f.name for f in result.figures]
    assert names[:3] == ["raw mj_step", "cpu backend", "Gymnasium wrapper"]
    assert result.goals[0].median == result.figure("cpu backend / raw mj_step").median > 0


@pytest.mark.slow
def test_real_ppo_section_at_tiny_sizes():
    tiny = ("agent.steps_per_update=64", "agent.minibatches=4", "agent.epochs=1")
    result = run_suite(SuiteSettings(repeats=1, sections=("ppo",), ppo_steps=64, group=2, ppo_overrides=tiny))
    assert [g.median is not None for g in result.goals] == [False, True, True]
