"""One CLI vocabulary: train and compare share option names, choices, defaults and help; compare's
older --results-dir still works; --help loads no heavy module; compare prints configs and the runs
another process holds."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rlplast.cli import COMMANDS, main
from rlplast.commands.compare import compare
from rlplast.commands.train import train
from rlplast.compare.experiment import ExperimentConfig
from rlplast.locks import hold, run_lock
from rlplast.report.summary import DEFAULT_BASELINE

SHARED = ("--seeds", "--steps", "--backend", "--device", "--out", "--set", "--print-config", "--no-progress")
HEAVY = ("matplotlib", "scipy", "torch", "mujoco", "warp", "mujoco_warp", "ray", "pandas", "stable_baselines3")
WIDE = {"COLUMNS": "500"}  # the console's lines unwrapped
EXPERIMENT = ["compare", "--task", "ant", "--methods", "ppo,ppo_l2", "--seeds", "0-1", "--steps", "1k"]


def option(command, name):
    return next(p for p in command.params if name in p.opts)


@pytest.mark.parametrize("name", SHARED)
def test_train_and_compare_share_each_option(name):
    a, b = option(train, name), option(compare, name)
    assert a.opts == b.opts and a.name == b.name
    assert type(a.type) is type(b.type) and getattr(a.type, "choices", None) == getattr(b.type, "choices", None)
    assert a.is_flag == b.is_flag and a.multiple == b.multiple
    # the same help, up to where each says what its default is
    assert a.help.partition("[default:")[0] == b.help.partition("[default:")[0]


def test_compare_defaults_are_trains():
    """compare takes them from the experiment file, whose defaults must be train's."""
    fields = ExperimentConfig.model_fields
    assert option(train, "--backend").default == fields["backend"].default == "auto"
    assert option(train, "--device").default == fields["device"].default == "auto"
    assert (
        "[default: auto]" in option(compare, "--backend").help and "[default: auto]" in option(train, "--backend").help
    )


def test_help_loads_no_heavy_module():
    code = (
        "import sys, json\n"
        "from rlplast.cli import main\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        main([name, '--help'], standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"    out[name] = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print('RESULT', json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *COMMANDS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert loaded == {name: [] for name in COMMANDS}


def test_the_baseline_help_states_the_reports_default():
    assert f"[default: {DEFAULT_BASELINE}," in option(compare, "--baseline").help


def test_compare_print_config_shows_every_method_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*EXPERIMENT, "--set", "agent.epochs=3", "--print-config"])
    assert result.exit_code == 0, result.output
    assert "# ppo (backend cpu, device cpu)" in result.output and "# ppo_l2 (backend cpu" in result.output
    assert result.output.count("epochs: 3") == 2 and result.output.count("\n  steps: 1000\n") == 2  # run.steps
    assert "weight_decay: 0.001" in result.output  # ppo_l2's own setting
    assert not list(tmp_path.iterdir())


def test_out_and_the_hidden_results_dir_name_the_same_folder(tmp_path):
    by_out = CliRunner().invoke(main, [*EXPERIMENT, "--out", str(tmp_path / "exp"), "--dry-run"], env=WIDE)
    by_root = CliRunner().invoke(
        main, [*EXPERIMENT, "--results-dir", str(tmp_path), "--name", "exp", "--dry-run"], env=WIDE
    )
    assert by_out.exit_code == by_root.exit_code == 0, by_out.output + by_root.output
    for result in (by_out, by_root):
        assert f"results in {tmp_path / 'exp'}" in result.output
    assert "--results-dir" not in CliRunner().invoke(main, ["compare", "--help"]).output
    assert not (tmp_path / "exp").exists()  # a dry run writes nothing


def test_compare_dry_run_names_runs_another_process_holds(tmp_path):
    method_dir = tmp_path / "exp" / "ppo"
    method_dir.mkdir(parents=True)
    with hold(run_lock(method_dir, 1), "run seed1"):
        result = CliRunner().invoke(main, [*EXPERIMENT, "--out", str(tmp_path / "exp"), "--dry-run"], env=WIDE)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "ppo: seeds 1 are being trained by another process now" in text
    assert "ppo_l2: seeds" not in text
    free = CliRunner().invoke(main, [*EXPERIMENT, "--out", str(tmp_path / "exp"), "--dry-run"])
    assert "another process" not in free.output
