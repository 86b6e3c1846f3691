"""The plug-in overhead benchmark runs and reports one row per method (numbers are not checked)."""

from __future__ import annotations

from rlplast.bench.plugins import BASELINE, OPTIMIZER_ONLY, TORCH_ADAM, measure_plugin_overhead


def test_rows_for_each_method_with_the_baseline_at_one():
    rows = measure_plugin_overhead(methods=("ppo_tuned", "ppo_cbp"), steps=1, repeats=1, warmup=0)
    names = [BASELINE, "ppo_cbp", "ppo_cbp" + OPTIMIZER_ONLY, TORCH_ADAM]
    assert [(r["bench"], r["method"]) for r in rows] == [("step", name) for name in names]
    assert rows[0]["ratio"] == 1.0
    assert all(r["ms"] > 0 and r["runs"] == 1 and r["clock"] == "cpu" for r in rows)
