"""SB3's PPO trained into rlplast's results layout: files, tags, resume, interrupt, the dispatch."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import rlplast.runner
from rlplast.checkpoint import CheckpointMismatch
from rlplast.cli import main
from rlplast.config import load_config
from rlplast.envs.schedules import PiecewiseSchedule
from rlplast.sb3 import trainer
from rlplast.sb3.model import build_sb3_ppo, policy_linears
from rlplast.sb3.trainer import SB3Run, checkpoint_path, train_sb3

TINY = (
    "agent.steps_per_update=64",
    "agent.minibatches=4",
    "agent.epochs=2",
    "agent.hidden=[16, 16]",
    "env.max_episode_steps=30",
    "env.friction.schedule.every=50",
    "metrics.window=50",
    "metrics.interval=32",
    "metrics.rank_interval=64",
    "run.checkpoint_every=64",
)


def tiny(method: str = "sb3_ppo", *extra: str):
    return load_config("slippery_ant", method, [*TINY, *extra])


def read_rows(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    rows = defaultdict(list)
    with (run_dir / "metrics.csv").open() as f:
        for r in csv.DictReader(f):
            rows[r["tag"]].append((int(r["step"]), float(r["value"])))
    return rows


def test_train_group_dispatches_and_writes_the_results_layout(tmp_path):
    cfg = tiny()
    rlplast.runner.train_group(cfg, [0, 1], tmp_path, 128, backend="cpu", device="cpu")
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        assert json.loads((run / "done.json").read_text())["steps"] == 128
        assert "implementation: sb3" in (run / "config.yaml").read_text()
        assert json.loads((run / "meta.json").read_text())["implementation"] == "sb3"
        assert list(run.glob("events.out.tfevents.*"))
        rows = read_rows(run)
        for tag in (
            "charts/sps",
            "losses/policy_loss",
            "losses/value_loss",
            "losses/entropy",
            "losses/grad_norm",
            "plasticity/actor/grad_norm",
            "plasticity/critic/grad_norm",
        ):
            assert [s for s, _ in rows[tag]] == [64, 128], tag
        for tag in ("plasticity/actor/stable_rank_pct", "plasticity/critic/dormant_fraction"):
            assert rows[tag], tag
        assert [s for s, _ in rows["plasticity/actor/weight_magnitude"]] == [32, 64, 96, 128]
        # episodes end at the sums of their lengths; friction follows the seed's schedule, taking
        # a new value at the first episode end after each change point (every 50 steps)
        ends = [s for s, _ in rows["charts/episodic_return"]]
        lengths = [int(v) for _, v in rows["charts/episodic_length"]]
        assert ends and ends == [sum(lengths[: i + 1]) for i in range(len(lengths))]
        schedule = PiecewiseSchedule(every=50)
        for step, friction in rows["env/friction"]:
            last_end = max([0, *[e for e in ends if e <= step]])
            assert friction == pytest.approx(schedule.at(seed, last_end))
        # logged after each update and at each episode end that took a new value, nowhere else
        takes_new = [
            e for e in ends if schedule.at(seed, e) != schedule.at(seed, max([0, *[x for x in ends if x < e]]))
        ]
        assert takes_new and sorted({s for s, _ in rows["env/friction"]}) == sorted({64, 128, *takes_new})
    assert checkpoint_path(tmp_path, 0).exists()


def test_same_seed_same_run(tmp_path):
    for name in ("a", "b"):
        train_sb3(tiny(), [3], tmp_path / name, 64)
    a, b = (read_rows(tmp_path / name / "seed3") for name in ("a", "b"))
    del a["charts/sps"], b["charts/sps"]
    assert a == b


def test_resume_continues_and_finished_seeds_are_skipped(tmp_path, monkeypatch):
    cfg = tiny()
    train_sb3(cfg, [0], tmp_path, 64)
    saved = torch.load(checkpoint_path(tmp_path, 0), weights_only=True)
    run = SB3Run(cfg, 0, tmp_path, torch.device("cpu"))  # resumes from the checkpoint
    try:
        assert run.run_step == 64 and run.model._n_updates == saved["n_updates"] == 2
        for key, value in saved["policy"].items():
            torch.testing.assert_close(run.model.policy.state_dict()[key], value)
        assert run.env.get_attr("env_steps")[0] == 64
    finally:
        run.close()

    train_sb3(cfg, [0], tmp_path, 192)  # continues the finished run to more steps
    rows = read_rows(tmp_path / "seed0")
    assert [s for s, _ in rows["charts/sps"]] == [64, 128, 192]
    assert json.loads((tmp_path / "seed0" / "done.json").read_text())["steps"] == 192

    monkeypatch.setattr(trainer, "SB3Run", None)  # a finished seed builds nothing
    train_sb3(cfg, [0], tmp_path, 192)

    monkeypatch.undo()
    with pytest.raises(CheckpointMismatch, match=r"agent\.epochs: 2 -> 3"):
        train_sb3(tiny("sb3_ppo", "agent.epochs=3"), [0], tmp_path, 256)


def test_ctrl_c_saves_after_the_update_and_the_rerun_resumes(tmp_path, monkeypatch):
    cfg = tiny()
    log_update = SB3Run._log_update

    def interrupt_once(self, sps):
        if self.run_step == 64:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; the handler only sets a flag
        return log_update(self, sps)

    monkeypatch.setattr(SB3Run, "_log_update", interrupt_once)
    with pytest.raises(rlplast.runner.Interrupted, match="stopped at step 64 of 128"):
        train_sb3(cfg, [5], tmp_path, 128)
    assert not (tmp_path / "seed5" / "done.json").exists()
    assert torch.load(checkpoint_path(tmp_path, 5), weights_only=True)["num_timesteps"] == 64
    monkeypatch.undo()
    train_sb3(cfg, [5], tmp_path, 128)
    assert [s for s, _ in read_rows(tmp_path / "seed5")["charts/sps"]] == [64, 128]


def test_cbp_plugin_runs_on_the_sb3_policy(tmp_path):
    cfg = tiny("ppo_cbp", "implementation=sb3", "plugins.0.maturity_threshold=3", "plugins.0.replacement_rate=0.05")
    train_sb3(cfg, [0], tmp_path, 128)
    replaced = read_rows(tmp_path / "seed0")["plasticity/cbp/replaced"]
    # 8 optimizer steps per update; per layer of 16 units with m = 3, rho = 0.05 the paper's rule
    # replaces 3 units in 8 steps and 9 in 16 (test_sb3_cbp.expected_replacements); 4 layers
    assert replaced == [(64, 12.0), (128, 36.0)]


def test_model_has_the_reference_network_and_hyperparameters():
    cfg = load_config("slippery_ant", "ppo_cbp", ["implementation=sb3", "env.max_episode_steps=5"])
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlplast.sb3.env import make_env

    model = build_sb3_ppo(cfg, DummyVecEnv([lambda: make_env(cfg.env, 0)]), seed=4)
    assert (model.n_steps, model.batch_size, model.n_epochs) == (2048, 128, 10)
    assert (model.gamma, model.gae_lambda, model.ent_coef, model.vf_coef) == (0.99, 0.95, 0.0, 1.0)
    assert model.clip_range(1.0) == 0.2 and model.max_grad_norm == 1e10 and model.normalize_advantage
    group = model.policy.optimizer.param_groups[0]
    assert type(model.policy.optimizer) is torch.optim.Adam
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1e-4, (0.99, 0.99), 1e-8, 1e-4)
    linears = policy_linears(model.policy)
    actor, critic = [(27, 256), (256, 256), (256, 8)], [(27, 256), (256, 256), (256, 1)]
    assert [(m.in_features, m.out_features) for m in linears] == [*actor, *critic]
    assert isinstance(model.policy.mlp_extractor.policy_net[1], torch.nn.ReLU)
    # LeCun uniform: |w| <= sqrt(3 / fan_in), std = sqrt(1 / fan_in); the Ant task sets the first
    # layers' fan-in to the reference's 111
    assert cfg.agent.init_fan_in == 111
    for m in linears:
        bound = math.sqrt(3 / (111 if m.in_features == 27 else m.in_features))
        assert m.weight.abs().max() <= bound and torch.all(m.bias == 0)
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    assert torch.all(model.policy.log_std == 0)
    again = build_sb3_ppo(cfg, DummyVecEnv([lambda: make_env(cfg.env, 0)]), seed=4)
    torch.testing.assert_close(policy_linears(again.policy)[1].weight, linears[1].weight)


def test_configs_sb3_cannot_follow_are_refused_with_every_reason(tmp_path):
    cfg = load_config(
        "slippery_ant",
        "ppo_upgd_protocol",
        ["implementation=sb3", "env.envs_per_run=2", "agent.bootstrap_truncated=false"],
    )
    with pytest.raises(ValueError, match="cannot train this config") as err:
        train_sb3(cfg, [0], tmp_path, 64)
    for reason in ("env.envs_per_run must be 1", "optimizer.kind must be adam", "bootstrap_truncated"):
        assert reason in str(err.value)
    with pytest.raises(ValueError, match="plugins \\['redo'\\] are not available"):
        train_sb3(load_config("slippery_ant", "ppo_redo", ["implementation=sb3"]), [0], tmp_path, 64)
    with pytest.raises(ValueError, match="distinct"):
        train_sb3(tiny(), [1, 1], tmp_path, 64)


def test_cli_agent_option_selects_sb3_and_its_results_folder():
    runner = CliRunner()
    out = runner.invoke(main, ["train", "--agent", "sb3", "--print-config"]).output
    assert "method: sb3_ppo\n" in out and "implementation: sb3\n" in out
    out = runner.invoke(main, ["train", "--agent", "sb3", "--method", "ppo_tuned", "--print-config"]).output
    assert "method: sb3_ppo_tuned\n" in out and "- 0.99\n" in out
    out = runner.invoke(main, ["train", "--method", "sb3_ppo", "--print-config"]).output
    assert "implementation: sb3\n" in out
    assert "implementation: rlplast\n" in runner.invoke(main, ["train", "--print-config"]).output


def test_compare_trains_sb3_as_a_reference_row(tmp_path):
    sets = [arg for key in TINY[:-1] for arg in ("--set", key)]
    args = ["compare", "--name", "t", "--task", "slippery_ant", "--methods", "sb3_ppo,ppo", "--seeds", "0"]
    result = CliRunner().invoke(main, [*args, "--steps", "64", *sets, "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for method in ("sb3_ppo", "ppo"):
        assert json.loads((tmp_path / "t" / method / "seed0" / "done.json").read_text())["steps"] == 64
    assert "| sb3_ppo |" in (tmp_path / "t" / "report.md").read_text()


def test_grad_norm_meter_by_hand():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlplast.sb3.env import make_env
    from rlplast.sb3.grad_norms import GradNormMeter, actor_critic_parameters
    from rlplast.sb3.model import build_sb3_ppo

    cfg = tiny()
    model = build_sb3_ppo(cfg, DummyVecEnv([lambda: make_env(cfg.env, 0)]), 0, "cpu")
    nets = actor_critic_parameters(model.policy)
    meter = GradNormMeter(model.policy.optimizer, nets)
    assert meter.pop_means() == {}
    counts = {name: sum(p.numel() for p in params) for name, params in nets.items()}
    assert counts["actor"] + counts["critic"] == sum(p.numel() for p in model.policy.parameters())
    for fill in (1.0, 3.0):  # every gradient element = fill: norm = fill * sqrt(count)
        for p in model.policy.parameters():
            p.grad = torch.full_like(p, fill)
        model.policy.optimizer.step()
    means = meter.pop_means()
    for name, count in counts.items():
        assert means[name] == pytest.approx(2.0 * count**0.5)
    assert means["total"] == pytest.approx(2.0 * (counts["actor"] + counts["critic"]) ** 0.5)
    meter.remove()
    model.policy.optimizer.step()
    assert meter.pop_means() == {}
