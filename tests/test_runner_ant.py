"""Kill and resume on the real cpu Ant backend: the simulator state travels in the checkpoint."""

import pytest
from test_runner import comparable, final_weights, interrupt_after, read_rows
from tiny_ant import OVERRIDES as TINY_ANT

from rlplast import runner
from rlplast.config import load_config

OVERRIDES = list(TINY_ANT)  # a friction change inside the run, applied at episode ends


def test_crash_and_resume_on_ant_equals_straight_run(tmp_path, monkeypatch):
    cfg = load_config("slippery_ant", "ppo", OVERRIDES)
    steps = 5 * 32
    runner.train_group(cfg, [0, 1], tmp_path / "straight", steps=steps, backend="cpu")
    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        interrupt_after(m, 3, "crash")
        with pytest.raises(RuntimeError, match="simulated crash"):
            runner.train_group(cfg, [0, 1], out, steps=steps, backend="cpu")
    runner.train_group(cfg, [0, 1], out, steps=steps, backend="cpu")

    straight, resumed = final_weights(tmp_path / "straight", [0, 1]), final_weights(out, [0, 1])
    for name, value in straight.items():
        assert (resumed[name] == value).all(), name
    for seed in (0, 1):
        a = comparable(read_rows(tmp_path / f"straight/seed{seed}/metrics.csv"))
        b = comparable(read_rows(out / f"seed{seed}/metrics.csv"))
        assert a == b
        frictions = [(int(s), float(v)) for s, t, v in a if t == "env/friction"]
        assert len({v for _, v in frictions}) >= 2  # the schedule (a new value every 48 steps) changed
        # one env per run, changes applied at episode ends: the first change is logged at the
        # first episode end from the change point (48) on, not at the next update (64)
        ends = [int(s) for s, t, _ in a if t == "charts/episodic_length"]
        first_change = next(s for s, v in frictions if v != frictions[0][1])
        assert first_change == min(e for e in ends if e >= 48)
