import csv
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rlplast.cli import main
from rlplast.cli_types import format_seeds, format_steps, parse_seeds, parse_steps


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-3", [0, 1, 2, 3]), ("0,3,5", [0, 3, 5]), ("0-2,10", [0, 1, 2, 10]), ("7", [7]), (" 1 , 2 ", [1, 2])],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds
    assert parse_seeds(format_seeds(seeds)) == seeds


@pytest.mark.parametrize(
    ("text", "message"),
    [("5-2", "descending"), ("abc", "bad seed"), ("", "bad seed"), ("1,1", "repeat"), ("-1", "bad seed")],
)
def test_parse_seeds_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


def test_format_seeds_compacts_runs():
    assert format_seeds([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"


@pytest.mark.parametrize(
    ("text", "steps"),
    [("50M", 50_000_000), ("2e6", 2_000_000), ("300k", 300_000), ("1.5M", 1_500_000), ("2048", 2048), ("2_000", 2000)],
)
def test_parse_steps(text, steps):
    assert parse_steps(text) == steps


@pytest.mark.parametrize("text", ["abc", "0", "1.5", "-5", "2e-3", "1.2345k", "5x"])
def test_parse_steps_errors(text):
    with pytest.raises(ValueError, match="step count"):
        parse_steps(text)


def test_format_steps():
    assert [format_steps(s) for s in (2_000_000, 2_500_000, 300_000, 2048)] == ["2M", "2.5M", "300k", "2048"]


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "rlplast", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("Usage: rlplast train")


def test_help_lists_every_option():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--task", "--method", "--seeds", "--steps", "--backend", "--device", "--out", "--set"):
        assert option in result.output


def test_print_config_applies_method_and_overrides():
    result = CliRunner().invoke(
        main, ["train", "--method", "ppo_l2", "--set", "agent.epochs=3", "--set", "optimizer.lr=3e-4", "--print-config"]
    )
    assert result.exit_code == 0, result.output
    assert "epochs: 3" in result.output
    assert "lr: 0.0003" in result.output
    assert "weight_decay: 0.001" in result.output
    steps = CliRunner().invoke(main, ["train", "--steps", "4k", "--print-config"])
    assert "steps: 4000" in steps.output  # what the run will record in its config.yaml


def test_train_then_rerun_skips(tmp_path):
    args = [
        "train",
        "--task",
        "ant",
        "--seeds",
        "0-1",
        "--steps",
        "64",
        "--backend",
        "cpu",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--set",
        "agent.hidden=[16]",
        "--set",
        "agent.steps_per_update=32",
        "--set",
        "agent.minibatches=2",
        "--set",
        "agent.epochs=1",
        "--set",
        "metrics.rank_interval=32",
        "--set",
        "metrics.interval=32",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        run = tmp_path / "ppo" / f"seed{seed}"
        assert json.loads((run / "done.json").read_text())["steps"] == 64
        with open(run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["step"] for r in rows if r["tag"] == "losses/value_loss"] == ["32", "64"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0
    assert "seeds 0-1 already finished 64 steps: skipped" in again.output and "training" not in again.output
    with open(tmp_path / "ppo/seed0/metrics.csv") as f:
        assert len([r for r in csv.DictReader(f) if r["tag"] == "losses/value_loss"]) == 2
    # another config into the same method folder: refused before anything is said to be trained
    other = CliRunner().invoke(main, [*args[:4], "0-2", *args[5:], "--set", "agent.epochs=2"])
    assert other.exit_code == 1
    assert "holds runs of another config" in other.output and "seed0, seed1: agent.epochs: 1 -> 2" in other.output
    assert "training" not in other.output and not (tmp_path / "ppo/seed2").exists()
