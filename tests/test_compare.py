"""Experiment files and planning: parsing, run status, and the config check against saved runs."""

from __future__ import annotations

import json

import pytest
import yaml

from rlplast.compare import (
    ConfigConflict,
    ExperimentConfig,
    describe_plan,
    load_experiment,
    plan_experiment,
    write_experiment_file,
)
from rlplast.config import load_config, parse_value


def _exp(**changes) -> ExperimentConfig:
    base = {"name": "demo", "task": "slippery_ant", "methods": "ppo,ppo_tuned", "seeds": "0-1", "steps": "4k"}
    return ExperimentConfig.model_validate(base | changes)


def _write_run(exp_dir, method, seed, config_text=None, done_steps=None):
    run = exp_dir / method / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("step,tag,value\n")
    if config_text is not None:
        (run / "config.yaml").write_text(config_text)
    if done_steps is not None:
        (run / "done.json").write_text(json.dumps({"steps": done_steps}))
    return run


def test_experiment_parses_strings():
    exp = _exp(seeds="0-2,7", steps="2.5M", methods="ppo, ppo_cbp")
    assert exp.seeds == [0, 1, 2, 7]
    assert exp.steps == 2_500_000
    assert exp.methods == ["ppo", "ppo_cbp"]
    assert (exp.resolved_device(), _exp(backend="warp").resolved_device()) == ("cpu", "cuda")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"seeds": "5-2"}, "descending"),
        ({"seeds": [1, 1]}, "repeat"),
        ({"steps": "abc"}, "bad step count"),
        ({"steps": 0}, "greater than 0"),
        ({"methods": "ppo,ppo"}, "methods repeat"),
        ({"methods": []}, "at least 1"),
        ({"name": "a/b"}, "pattern"),
        ({"backend": "gpu"}, "'cpu', 'warp' or 'gym'"),
        ({"parallel": 0}, "positive"),
        ({"overrides": {"agent..lr": 1}}, "dotted config key"),
        ({"friction": 1}, "Extra inputs"),
    ],
)
def test_experiment_rejects_bad_fields(changes, match):
    with pytest.raises(ValueError, match=match):
        _exp(**changes)


def test_load_experiment_file_with_flags_and_readable_errors(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "e", "task": "ant", "methods": ["ppo"], "seeds": "0-3", "steps": "1M", "overrides": {"a.b": 1}}
        )
    )
    exp = load_experiment(path, seeds=[5], steps=None, overrides={"c.d": 2})
    assert (exp.seeds, exp.steps, exp.overrides) == ([5], 1_000_000, {"a.b": 1, "c.d": 2})
    with pytest.raises(ValueError, match=r"(?s)e\.yaml.*seeds: seed range '3-1' is descending"):
        load_experiment(path, seeds="3-1")
    with pytest.raises(ValueError, match="name: required"):
        load_experiment(None, task="ant")
    with pytest.raises(FileNotFoundError, match="no experiment file"):
        load_experiment(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        load_experiment(path)


def test_override_args_read_back_as_the_same_values():
    overrides = {"env.friction.schedule.every": 10_000, "agent.clip": 0.1, "x.name": "a b", "x.flag": False}
    exp = _exp(overrides=overrides)
    parsed = {k: parse_value(v) for k, _, v in (a.partition("=") for a in exp.override_args())}
    assert parsed == overrides


def test_plan_resolves_configs_with_overrides_and_statuses(tmp_path):
    exp = _exp(overrides={"env.friction.schedule.every": 10_000})
    home = tmp_path / "demo"
    _write_run(home, "ppo", 0, done_steps=4096)  # finished
    _write_run(home, "ppo", 1, done_steps=2048)  # finished, but to fewer steps: continue it
    _write_run(home, "ppo_tuned", 0)  # interrupted
    plan = plan_experiment(exp, tmp_path)
    assert plan.exp_dir == home
    assert [g.config.env.friction.schedule.every for g in plan.groups] == [10_000, 10_000]
    assert plan.groups[1].config.optimizer.betas == (0.99, 0.99)
    assert [[r.status for r in g.runs] for g in plan.groups] == [["done", "resume"], ["resume", "new"]]
    assert [g.pending for g in plan.groups] == [[1], [0, 1]]
    assert describe_plan(plan) == [("ppo", "-", "1", "0"), ("ppo_tuned", "1", "0", "-")]


def test_plan_names_the_known_methods_and_tasks(tmp_path):
    with pytest.raises(ValueError, match=r"unknown method 'nope'; available: .*ppo_cbp"):
        plan_experiment(_exp(methods="ppo,nope"), tmp_path)
    with pytest.raises(ValueError, match=r"unknown task 'nope'; available: ant, halfcheetah, hopper"):
        plan_experiment(_exp(task="nope"), tmp_path)


def test_matching_saved_config_is_resumed_even_with_other_run_settings(tmp_path):
    cfg = load_config("slippery_ant", "ppo")
    saved = cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": 123})})
    _write_run(tmp_path / "demo", "ppo", 0, config_text=saved.to_yaml())
    plan = plan_experiment(_exp(methods="ppo"), tmp_path)
    assert plan.exp_dir == tmp_path / "demo"
    assert plan.groups[0].runs[0].status == "resume"


def test_other_config_is_refused_or_sent_to_a_new_folder(tmp_path):
    other = load_config("slippery_ant", "ppo", ["agent.epochs=5"]).to_yaml()
    _write_run(tmp_path / "demo", "ppo", 1, config_text=other)
    with pytest.raises(ConfigConflict, match=r"(?s)refusing to mix.*ppo/seed1.*agent\.epochs: 5 -> 10"):
        plan_experiment(_exp(), tmp_path)
    _write_run(tmp_path / "demo_2", "ppo_tuned", 0, config_text=other)  # also taken
    plan = plan_experiment(_exp(), tmp_path, on_conflict="new_folder")
    assert plan.exp_dir == tmp_path / "demo_3"
    assert all(r.status == "new" for g in plan.groups for r in g.runs)


def test_a_run_of_another_config_outside_the_planned_seeds_is_refused_too(tmp_path):
    # the method folder holds one config: a report would read seed7 as one of ppo's runs
    other = load_config("slippery_ant", "ppo", ["agent.epochs=5"]).to_yaml()
    _write_run(tmp_path / "demo", "ppo", 7, config_text=other)
    with pytest.raises(ConfigConflict, match=r"ppo/seed7 \(saved -> planned\): agent\.epochs: 5 -> 10"):
        plan_experiment(_exp(methods="ppo"), tmp_path)


def test_other_backend_in_the_saved_experiment_is_refused(tmp_path):
    write_experiment_file(plan_experiment(_exp(backend="cpu"), tmp_path))
    with pytest.raises(ConfigConflict, match="backend is 'cpu' there, 'gym' now"):
        plan_experiment(_exp(backend="gym"), tmp_path)
    plan_experiment(_exp(backend="cpu", steps="8k"), tmp_path)  # more steps continue the same runs


def test_experiment_file_keeps_earlier_methods_and_seeds(tmp_path):
    write_experiment_file(plan_experiment(_exp(methods="ppo_tuned", seeds="2-3"), tmp_path))
    path = write_experiment_file(plan_experiment(_exp(methods="ppo,ppo_tuned", seeds="0"), tmp_path))
    saved = yaml.safe_load(path.read_text())
    assert (saved["methods"], saved["seeds"], saved["steps"]) == (["ppo_tuned", "ppo"], [0, 2, 3], 4000)
