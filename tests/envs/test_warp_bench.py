"""The warp throughput benchmark runs end to end (on Warp's CPU device, tiny sizes)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("mujoco_warp")

from rlplast.bench import warp as bench

pytestmark = pytest.mark.warp


def test_measure_and_table_on_the_cpu(capsys):
    row = bench.measure(2, steps=2, repeats=1, device="cpu", warmup=2)
    assert row["worlds"] == 2 and row["sim"] > 0 and row["vecenv"] > 0
    assert math.isnan(row["torch_mib"]) and math.isnan(row["warp_mib"])  # GPU memory: CUDA only
    bench.main(["--device", "cpu", "--worlds", "3", "--steps", "2", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("warp backend, Ant-v5, device cpu")
    assert [line.split()[0] for line in lines[2:]] == ["3"]
    assert lines[2].split()[-2:] == ["n/a", "n/a"]


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(bench, "warp_available", lambda: False)
    with pytest.raises(SystemExit):
        bench.main(["--worlds", "2"])
