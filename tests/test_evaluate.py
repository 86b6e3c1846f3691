"""rlplast evaluate: its returns are those of an independent rollout through Gymnasium's own Ant."""

import csv
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner
from tiny_ant import MAX_EPISODE_STEPS, OVERRIDES, checkpoint_mean, train_tiny

from rlplast.cli import main
from rlplast.config import load_config
from rlplast.envs.seeding import env_rng
from rlplast.evaluation import evaluation_reset_seed, trained_friction

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    exp = tmp_path_factory.mktemp("exp")
    train_tiny(exp / "ppo", SEEDS)
    return exp


def gymnasium_return(method_dir, seed: int, friction: float, episode: int) -> tuple[float, int]:
    """Episode ``episode`` of an evaluation, played by Gymnasium's Ant-v5 with the actor's mean
    computed from the checkpoint in numpy."""
    env = gym.make(
        "Ant-v5", include_cfrc_ext_in_observation=False, max_episode_steps=MAX_EPISODE_STEPS, disable_env_checker=True
    )
    env.unwrapped.model.geom_friction[:, 0] = friction  # Ant's geoms all have sliding friction 1
    env.unwrapped.np_random = env_rng(evaluation_reset_seed(seed), episode)  # the evaluation's reset stream
    obs, _ = env.reset()
    total, length, done = 0.0, 0, False
    while not done:
        action = checkpoint_mean(method_dir, SEEDS, seed, obs[None])[0].astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action.astype(np.float64))
        total, length, done = total + reward, length + 1, terminated or truncated
    return total, length


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_evaluate_matches_an_independent_gymnasium_rollout(experiment):
    result = CliRunner().invoke(main, ["evaluate", str(experiment), "--episodes", "2", "--friction", "0.7"])
    assert result.exit_code == 0, result.output
    rows = read_csv(experiment / "evaluation.csv")
    assert [(r["method"], r["seed"], r["episode"]) for r in rows] == [
        ("ppo", str(s), str(e)) for s in SEEDS for e in range(2)
    ]
    for row in rows:
        assert int(row["step"]) == 96 and float(row["friction"]) == 0.7
        expected, length = gymnasium_return(experiment / "ppo", int(row["seed"]), 0.7, int(row["episode"]))
        assert int(row["length"]) == length
        assert float(row["return"]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    # the table: one line per seed and friction, with the mean return of its episodes
    line = next(line for line in result.output.splitlines() if line.startswith("ppo") and " 1 " in line)
    mean = np.mean([float(r["return"]) for r in rows if r["seed"] == "1"])
    assert f"{mean:.1f} +-" in line


def test_final_and_schedule_frictions_of_a_seed_folder(experiment, tmp_path):
    out = tmp_path / "eval.csv"
    args = ["evaluate", str(experiment / "ppo" / "seed1"), "--episodes", "1", "--friction", "final"]
    result = CliRunner().invoke(main, [*args, "--friction", "schedule", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    env_cfg = load_config("slippery_ant", "ppo", OVERRIDES).env
    schedule = env_cfg.friction.schedule
    final = trained_friction(env_cfg, 1, 96)
    assert final == schedule.at(1, 95)
    # 96 steps of a schedule changing every 48: the final value, then the two pieces' values
    pieces = [schedule.at(1, 0), schedule.at(1, 48)]
    expected = list(dict.fromkeys([final, *pieces]))
    assert [float(r["friction"]) for r in rows] == pytest.approx(expected)
    assert {r["seed"] for r in rows} == {"1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--friction", "slippery"], "bad friction 'slippery'"),
        (["--friction", "-1"], "bad friction '-1'"),
        (["--episodes", "0"], "--episodes"),
        (["--video", "out.avi"], "must end in .mp4 or .gif"),
    ],
)
def test_bad_options_are_usage_errors(experiment, args, message):
    result = CliRunner().invoke(main, ["evaluate", str(experiment), *args])
    assert result.exit_code == 2 and message in result.output


def test_a_folder_without_runs_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {tmp_path} holds no runs (an experiment, <method> or seed<k> folder of rlplast)"
    ]


def test_video_renders_episode_zero_offscreen(experiment, tmp_path):
    """In a fresh process (MuJoCo picks its GL backend at import); skipped only without EGL and OSMesa."""
    video = tmp_path / "seed0.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    cmd = [sys.executable, "-m", "rlplast", "evaluate", str(experiment / "ppo" / "seed0"), "--episodes", "1"]
    done = subprocess.run(
        [*cmd, "--friction", "0.7", "--out", str(tmp_path / "e.csv"), "--video", str(video)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 and "no offscreen OpenGL for MuJoCo" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    import imageio.v2 as imageio

    reader = imageio.get_reader(video)
    row = read_csv(tmp_path / "e.csv")[0]
    assert reader.count_frames() == int(row["length"]) + 1  # the reset frame and one per step
    frame = reader.get_data(1)
    assert frame.shape == (360, 480, 3) and frame.std() > 5  # a picture, not a blank
    # the video's episode is the table's episode 0
    said = done.stdout.split(", return ")[1].split(",")[0]
    assert float(said) == pytest.approx(float(row["return"]), abs=0.06)
