"""The plug-in overhead benchmark runs and reports one row per method (numbers are not checked)."""

from __future__ import annotations

import torch

from rlplast.bench.plugins import (
    BASELINE,
    OPTIMIZER_ONLY,
    STALE_MOMENTS,
    TORCH_ADAM,
    measure_plugin_overhead,
    method_config,
    ppo_updater,
)


def test_rows_for_each_method_with_the_baseline_at_one():
    rows = measure_plugin_overhead(methods=("ppo_tuned", "ppo_cbp"), steps=1, repeats=1, warmup=0)
    names = [BASELINE, "ppo_cbp", "ppo_cbp" + STALE_MOMENTS, "ppo_cbp" + OPTIMIZER_ONLY, TORCH_ADAM]
    assert [(r["bench"], r["method"]) for r in rows] == [("step", name) for name in names]
    assert rows[0]["ratio"] == 1.0
    assert all(r["ms"] > 0 and r["runs"] == 1 and r["clock"] == "cpu" for r in rows)


def test_the_stale_moments_variant_differs_only_in_the_optimizer_reset():
    exact, stale = method_config("ppo_cbp"), method_config("ppo_cbp" + STALE_MOMENTS)
    assert exact.plugins[0].reset_optimizer_state and not stale.plugins[0].reset_optimizer_state
    assert stale.plugins[0].model_copy(update={"reset_optimizer_state": True}) == exact.plugins[0]
    assert stale.optimizer == exact.optimizer


def test_an_update_is_timed_by_both_clocks():
    timing = ppo_updater(BASELINE, 1, torch.device("cpu"))()
    assert timing.wall > 0 and timing.cpu > 0
