"""The training loop on a tiny seeded VecEnv: files, run groups, interrupt and exact resume."""

import csv
import json
import signal

import pytest
import torch
import yaml

from rlplast import runner
from rlplast.agents.ppo import PPO, PPOConfig
from rlplast.checkpoint import CheckpointMismatch
from rlplast.config import Config, RunConfig, validate
from rlplast.envs.schedules import schedule_value
from rlplast.envs.vec import EnvConfig, StepResult, VecEnv
from rlplast.log_writer import RunLog
from rlplast.tracking import MetricsConfig

UPDATE = 16  # env steps per run per update in these tests


class PointVecEnv(VecEnv):
    """A seeded toy task obeying the VecEnv contract: obs 3, act 2, reward -|a - obs[:2]|^2 * friction,
    truncation at ``max_episode_steps``, termination when obs[2] > 1.2. Run r uses only seeds[r]."""

    def __init__(self, cfg: EnvConfig, num_runs: int, device="cpu"):
        super().__init__(num_runs, cfg.envs_per_run, 3, 2, device)
        self.cfg = cfg

    def _draw(self):
        return torch.cat([torch.randn(self.envs_per_run, 3, generator=g) for g in self.gens])

    def _friction(self):
        steps = self.run_steps.tolist()
        values = [schedule_value(self.cfg.friction.schedule, s, t) for s, t in zip(self.seeds, steps, strict=True)]
        return torch.tensor(values).repeat_interleave(self.envs_per_run)

    def reset(self, seeds):
        self.seeds = list(seeds)
        self.gens = [torch.Generator().manual_seed(1000 + s) for s in self.seeds]
        self.state = self._draw()
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        self.ret = torch.zeros(self.num_envs)
        self.run_steps = torch.zeros(self.num_runs, dtype=torch.long)
        return self.state.clone()

    def step(self, actions):
        actions = self.check_actions(actions)
        friction = self._friction()
        reward = -(actions.clamp(-1, 1) - self.state[:, :2]).square().sum(1) * friction
        self.state = 0.7 * self.state + 0.6 * self._draw()
        self.t += 1
        self.ret += reward
        self.run_steps += self.envs_per_run
        terminated = self.state[:, 2] > 1.2
        truncated = (self.t >= self.cfg.max_episode_steps) & ~terminated
        done = terminated | truncated
        final_obs = self.state.clone()
        info = {
            "final_obs": final_obs,
            "episode_return": torch.where(done, self.ret, 0.0),
            "episode_length": torch.where(done, self.t, 0),
            "friction": self._friction(),
            "run_steps": self.run_steps.clone(),
            "nonfinite_resets": torch.zeros(self.num_envs, dtype=torch.long),
        }
        self.state = torch.where(done.unsqueeze(1), self._draw(), self.state)
        self.t = torch.where(done, 0, self.t)
        self.ret = torch.where(done, 0.0, self.ret)
        return StepResult(self.state.clone(), reward, terminated, truncated, info)

    def state_dict(self):
        return {
            "seeds": self.seeds,
            "gens": [g.get_state() for g in self.gens],
            "state": self.state.clone(),
            "t": self.t.clone(),
            "ret": self.ret.clone(),
            "run_steps": self.run_steps.clone(),
        }

    def load_state_dict(self, state):
        self.seeds = list(state["seeds"])
        self.gens = [torch.Generator().manual_seed(0) for _ in self.seeds]
        for g, s in zip(self.gens, state["gens"], strict=True):
            g.set_state(s)
        for key in ("state", "t", "ret", "run_steps"):
            setattr(self, key, state[key].clone())


@pytest.fixture(autouse=True)
def point_env(monkeypatch):
    monkeypatch.setattr(runner, "make_vec_env", lambda cfg, num_runs, backend, device: PointVecEnv(cfg, num_runs))


def tiny_cfg(**run) -> Config:
    return Config(
        task="point",
        method="ppo",
        env=EnvConfig(max_episode_steps=6, friction={"schedule": {"kind": "piecewise", "every": 40}}),
        agent=PPOConfig(hidden=[8, 8], steps_per_update=UPDATE, epochs=2, minibatches=2),
        metrics=MetricsConfig(window=12, interval=16, rank_interval=32),
        run=RunConfig(**{"checkpoint_every": 32, **run}),
    )


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def comparable(rows):
    """Every row but the wall-clock speed, as (step, tag, value) tuples."""
    return [(r["step"], r["tag"], r["value"]) for r in rows if r["tag"] != "charts/sps"]


def final_weights(out_dir, seeds):
    state = torch.load(runner.checkpoint_path(out_dir, seeds), weights_only=True)
    return state["agent"]["actor"] | {f"critic.{k}": v for k, v in state["agent"]["critic"].items()}


def test_fresh_run_writes_every_result_file(tmp_path):
    cfg = tiny_cfg()
    runner.train_group(cfg, [0, 1], tmp_path, steps=3 * UPDATE)
    for seed in (0, 1):
        d = tmp_path / f"seed{seed}"
        done = json.loads((d / "done.json").read_text())
        assert done["steps"] == 48 and done["group_seeds"] == [0, 1]
        saved = validate(yaml.safe_load((d / "config.yaml").read_text()))
        assert saved.run.steps == 3 * UPDATE  # the steps asked for, not the config file's default
        assert saved == cfg.model_copy(update={"run": cfg.run.model_copy(update={"steps": 3 * UPDATE})})
        assert "git_commit" in json.loads((d / "meta.json").read_text())
        assert list((d).glob("events.out.tfevents.*"))
        rows = read_rows(d / "metrics.csv")
        found = {r["tag"] for r in rows}
        for expected in (
            "charts/episodic_return",
            "charts/episodic_length",
            "charts/sps",
            "env/friction",
            "losses/policy_loss",
            "losses/value_loss",
            "losses/approx_kl",
            "losses/clip_fraction",
            "losses/explained_variance",
            "losses/entropy",
            "losses/grad_norm",
            "plasticity/actor/grad_norm",
            "plasticity/actor/dormant_fraction",
            "plasticity/actor/stable_rank",
            "plasticity/critic/weight_magnitude",
            "plasticity/critic/weight_change",
        ):
            assert expected in found, expected
        assert "plasticity/critic/upgd_plasticity" not in found  # logged under a UPGD optimizer only
        losses = [int(r["step"]) for r in rows if r["tag"] == "losses/policy_loss"]
        assert losses == [16, 32, 48]
        # the weight change is logged once per update, at its step, and an update moves weights
        changes = [(int(r["step"]), float(r["value"])) for r in rows if r["tag"] == "plasticity/actor/weight_change"]
        assert [step for step, _ in changes] == [16, 32, 48] and all(value > 0 for _, value in changes)
        # episodes of 6 steps at most, one env per run: the first ends by step 6
        ep_steps = [int(r["step"]) for r in rows if r["tag"] == "charts/episodic_length"]
        assert ep_steps[0] <= 6 and ep_steps == sorted(ep_steps)
    # the logged friction follows the seeded schedule: step 48 is in the second 40-step piece
    friction = [float(r["value"]) for r in read_rows(tmp_path / "seed1/metrics.csv") if r["tag"] == "env/friction"]
    schedule = tiny_cfg().env.friction.schedule
    assert friction[-1] == pytest.approx(schedule_value(schedule, 1, 48))
    assert friction[0] == pytest.approx(schedule_value(schedule, 1, 16)) != friction[-1]


def test_group_runs_match_single_runs(tmp_path):
    runner.train_group(tiny_cfg(), [3, 4], tmp_path / "group", steps=2 * UPDATE)
    runner.train_group(tiny_cfg(), [4], tmp_path / "alone", steps=2 * UPDATE)
    group, alone = final_weights(tmp_path / "group", [3, 4]), final_weights(tmp_path / "alone", [4])
    for name, value in alone.items():
        torch.testing.assert_close(group[name][1], value[0], rtol=1e-5, atol=1e-6)
    g_rows = comparable(read_rows(tmp_path / "group/seed4/metrics.csv"))
    a_rows = comparable(read_rows(tmp_path / "alone/seed4/metrics.csv"))
    assert [r[:2] for r in g_rows] == [r[:2] for r in a_rows]
    for g, a in zip(g_rows, a_rows, strict=True):
        assert float(g[2]) == pytest.approx(float(a[2]), rel=1e-4, abs=1e-5), g[:2]


def interrupt_after(monkeypatch, updates: int, how: str):
    """Make the agent's n-th update end with SIGINT or SIGTERM (a clean stop) or an exception (a crash)."""
    original, count = PPO.update, {"n": 0}

    def update(self):
        out = original(self)
        count["n"] += 1
        if count["n"] == updates:
            if how in ("signal", "sigterm"):
                signal.raise_signal(signal.SIGINT if how == "signal" else signal.SIGTERM)
            else:
                raise RuntimeError("simulated crash")
        return out

    monkeypatch.setattr(PPO, "update", update)


@pytest.mark.parametrize("how", ["signal", "crash"])
def test_interrupt_and_resume_equals_straight_run(tmp_path, monkeypatch, how):
    steps = 6 * UPDATE
    runner.train_group(tiny_cfg(), [0, 1], tmp_path / "straight", steps=steps)

    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        # stop in update 3: a signal saves at 48; a crash leaves the checkpoint of step 32
        interrupt_after(m, 3, how)
        error = runner.Interrupted if how == "signal" else RuntimeError
        with pytest.raises(error):
            runner.train_group(tiny_cfg(), [0, 1], out, steps=steps)
    saved = torch.load(runner.checkpoint_path(out, [0, 1]), weights_only=True)["run_step"]
    assert saved == (48 if how == "signal" else 32)
    assert not (out / "seed0/done.json").exists()
    runner.train_group(tiny_cfg(), [0, 1], out, steps=steps)

    straight, resumed = final_weights(tmp_path / "straight", [0, 1]), final_weights(out, [0, 1])
    for name, value in straight.items():
        assert torch.equal(resumed[name], value), name
    for seed in (0, 1):
        a = comparable(read_rows(tmp_path / f"straight/seed{seed}/metrics.csv"))
        b = comparable(read_rows(out / f"seed{seed}/metrics.csv"))
        assert a == b


def friction_rows(run_dir):
    return [
        (int(r["step"]), float(r["value"])) for r in read_rows(run_dir / "metrics.csv") if r["tag"] == "env/friction"
    ]


def test_friction_is_logged_at_the_step_it_changed(tmp_path):
    # the schedule changes at step 40, inside the update of steps 33-48: a row at 40 besides the
    # update rows at 16, 32, 48; the point env takes a change at once, one env per run
    runner.train_group(tiny_cfg(), [1], tmp_path, steps=3 * UPDATE)
    schedule = tiny_cfg().env.friction.schedule
    expected = [(step, schedule_value(schedule, 1, step)) for step in (16, 32, 40, 48)]
    rows = friction_rows(tmp_path / "seed1")
    assert [step for step, _ in rows] == [step for step, _ in expected]
    assert [value for _, value in rows] == pytest.approx([value for _, value in expected])
    assert expected[1][1] != expected[2][1]


def test_friction_of_a_schedule_that_moves_every_step_is_logged_per_update(tmp_path):
    cfg = tiny_cfg()
    cfg.env.friction = cfg.env.friction.model_validate(
        {"apply": "immediate", "schedule": {"kind": "sine", "mean": 1.0, "amplitude": 0.5, "period": 64}}
    )
    runner.train_group(cfg, [1], tmp_path, steps=3 * UPDATE)
    assert [step for step, _ in friction_rows(tmp_path / "seed1")] == [16, 32, 48]


def test_a_friction_change_right_after_a_resume_is_logged(tmp_path, monkeypatch):
    # a change at step 17, the first step after the checkpoint of step 16: the resumed run knows
    # the friction before it from the checkpoint
    cfg = tiny_cfg(checkpoint_every=16)
    cfg.env.friction.schedule = cfg.env.friction.schedule.model_copy(update={"every": 17})
    runner.train_group(cfg, [1], tmp_path / "straight", steps=3 * UPDATE)
    with monkeypatch.context() as m:
        interrupt_after(m, 2, "crash")
        with pytest.raises(RuntimeError):
            runner.train_group(cfg, [1], tmp_path / "resumed", steps=3 * UPDATE)
    runner.train_group(cfg, [1], tmp_path / "resumed", steps=3 * UPDATE)
    straight = friction_rows(tmp_path / "straight/seed1")
    assert 17 in [step for step, _ in straight]
    assert friction_rows(tmp_path / "resumed/seed1") == straight


def test_tensorboard_has_no_duplicate_steps_after_resume(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with monkeypatch.context() as m:
        interrupt_after(m, 3, "crash")
        with pytest.raises(RuntimeError):
            runner.train_group(tiny_cfg(), [0], tmp_path, steps=5 * UPDATE)
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=5 * UPDATE)
    acc = EventAccumulator(str(tmp_path / "seed0"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("losses/policy_loss")]
    assert steps == [16, 32, 48, 64, 80]


def test_finished_runs_are_not_retrained_and_can_be_extended(tmp_path):
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=2 * UPDATE)
    ckpt = runner.checkpoint_path(tmp_path, [0])
    mtime = ckpt.stat().st_mtime_ns
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=2 * UPDATE)
    assert ckpt.stat().st_mtime_ns == mtime
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=3 * UPDATE)
    assert json.loads((tmp_path / "seed0/done.json").read_text())["steps"] == 48
    rows = read_rows(tmp_path / "seed0/metrics.csv")
    assert [int(r["step"]) for r in rows if r["tag"] == "losses/policy_loss"] == [16, 32, 48]


def test_a_crash_right_after_a_checkpoint_loses_no_log_rows(tmp_path, monkeypatch):
    steps = 4 * UPDATE
    runner.train_group(tiny_cfg(), [0], tmp_path / "straight", steps=steps)
    out, saves = tmp_path / "crashed", []
    original, flush = runner.save_checkpoint, RunLog.flush

    def save_then_die(*args, **kwargs):
        original(*args, **kwargs)
        saves.append(1)
        if len(saves) == 1:  # the checkpoint of step 32 is on disk; the process dies now
            raise RuntimeError("simulated crash")

    def flush_while_alive(log, *args, **kwargs):  # a killed process writes nothing more
        if not saves:
            flush(log, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(runner, "save_checkpoint", save_then_die)
        m.setattr(RunLog, "flush", flush_while_alive)
        with pytest.raises(RuntimeError, match="simulated"):
            runner.train_group(tiny_cfg(), [0], out, steps=steps)
    rows = read_rows(out / "seed0/metrics.csv")
    assert [int(r["step"]) for r in rows if r["tag"] == "losses/policy_loss"] == [16, 32]
    runner.train_group(tiny_cfg(), [0], out, steps=steps)
    a, b = (comparable(read_rows(d / "seed0/metrics.csv")) for d in (tmp_path / "straight", out))
    assert a == b


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 cut short", b"\x80\x02 not a checkpoint"])
def test_an_unreadable_checkpoint_is_named(tmp_path, monkeypatch, damage):
    with monkeypatch.context() as m:
        interrupt_after(m, 1, "signal")
        with pytest.raises(runner.Interrupted):
            runner.train_group(tiny_cfg(), [0], tmp_path, steps=4 * UPDATE)
    ckpt = runner.checkpoint_path(tmp_path, [0])
    ckpt.write_bytes(damage)
    with pytest.raises(ValueError, match=rf"{ckpt.name} cannot be read .*delete it to train these seeds"):
        runner.train_group(tiny_cfg(), [0], tmp_path, steps=4 * UPDATE)
    assert ckpt.read_bytes() == damage  # left as it was, for the user to look at


def test_a_damaged_done_file_is_named(tmp_path):
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=UPDATE)
    done = tmp_path / "seed0/done.json"
    for text in ('{"steps": 1', '{"group_seeds": [0]}'):
        done.write_text(text)
        with pytest.raises(ValueError, match=r"done\.json is damaged"):
            runner.train_group(tiny_cfg(), [0], tmp_path, steps=UPDATE)


def test_a_finished_run_without_its_checkpoint_is_not_extended(tmp_path):
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=2 * UPDATE)
    before = (tmp_path / "seed0/metrics.csv").read_text()
    runner.checkpoint_path(tmp_path, [0]).unlink()
    with pytest.raises(ValueError, match=r"runs 0 of .* finished at \[32\] steps and their checkpoints are gone"):
        runner.train_group(tiny_cfg(), [0], tmp_path, steps=3 * UPDATE)
    assert (tmp_path / "seed0/metrics.csv").read_text() == before
    assert (tmp_path / "seed0/done.json").exists()
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=2 * UPDATE)  # no more steps: nothing to do


def test_checkpoint_of_another_config_is_refused(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_after(m, 1, "signal")
        with pytest.raises(runner.Interrupted):
            runner.train_group(tiny_cfg(), [0], tmp_path, steps=4 * UPDATE)
    other = tiny_cfg().model_copy(update={"agent": PPOConfig(hidden=[8, 8], steps_per_update=16, clip=0.3)})
    with pytest.raises(CheckpointMismatch, match=r"agent\.clip: 0\.2 -> 0\.3"):
        runner.train_group(other, [0], tmp_path, steps=4 * UPDATE)
    # run settings are not part of the hash: a different checkpoint interval resumes fine
    runner.train_group(tiny_cfg(checkpoint_every=16), [0], tmp_path, steps=4 * UPDATE)


def test_a_method_folder_takes_runs_of_one_config(tmp_path):
    runner.train_group(tiny_cfg(), [0], tmp_path, steps=UPDATE)
    other = tiny_cfg().model_copy(update={"agent": PPOConfig(hidden=[8, 8], steps_per_update=16, epochs=1)})
    # a finished run (no checkpoint to refuse it) and a new seed next to it are both refused
    for seeds in ([0], [1]):
        with pytest.raises(CheckpointMismatch, match=r"seed0: agent\.epochs: 2 -> 1"):
            runner.train_group(other, seeds, tmp_path, steps=2 * UPDATE)
    assert not (tmp_path / "seed1").exists()
    assert json.loads((tmp_path / "seed0/done.json").read_text())["steps"] == UPDATE  # untouched
    # names and run settings may differ
    runner.train_group(tiny_cfg(checkpoint_every=16).model_copy(update={"method": "renamed"}), [1], tmp_path, UPDATE)
    # folders that are not runs (the report reads seed<k> only) do not count; unreadable configs do
    backup = tmp_path / "seed0.bak"
    backup.mkdir()
    (backup / "config.yaml").write_text(other.to_yaml())
    runner.train_group(tiny_cfg(), [0, 1], tmp_path, 2 * UPDATE)
    (tmp_path / "seed1" / "config.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(CheckpointMismatch, match=r"seed1: .*seed1/config\.yaml is unreadable"):
        runner.train_group(tiny_cfg(), [0], tmp_path, 3 * UPDATE)


@pytest.mark.parametrize(("how", "code"), [("signal", 130), ("sigterm", 143)])
def test_a_stop_exits_with_the_shell_code_of_its_signal(tmp_path, monkeypatch, how, code):
    interrupt_after(monkeypatch, 1, how)
    with pytest.raises(runner.Interrupted) as stopped:
        runner.train_group(tiny_cfg(), [0], tmp_path, steps=3 * UPDATE)
    assert stopped.value.exit_code == code and runner.checkpoint_path(tmp_path, [0]).exists()


def test_groups_resume_as_saved_and_partial_overlap_is_an_error(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_after(m, 1, "signal")
        with pytest.raises(runner.Interrupted):
            runner.train_group(tiny_cfg(), [0, 1], tmp_path, steps=2 * UPDATE)
    with pytest.raises(ValueError, match="seeds 0-1"):
        runner.train_group(tiny_cfg(), [1, 2], tmp_path, steps=2 * UPDATE)
    runner.train_group(tiny_cfg(), [0, 1, 2], tmp_path, steps=2 * UPDATE)
    assert runner.checkpoint_path(tmp_path, [0, 1]).exists() and runner.checkpoint_path(tmp_path, [2]).exists()
    assert all((tmp_path / f"seed{s}/done.json").exists() for s in (0, 1, 2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="distinct"):
        runner.train_group(tiny_cfg(), [0, 0], "unused", steps=16)
    assert runner.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            runner.resolve_device("cuda")


def test_paused_gc_restores_the_collector():
    import gc

    assert gc.isenabled()
    with pytest.raises(RuntimeError), runner.paused_gc():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with runner.paused_gc():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
