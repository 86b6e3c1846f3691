"""Offscreen video of a policy: one deterministic episode rendered by MuJoCo, written as MP4 or GIF.

MuJoCo renders without a display through EGL (a GPU or Mesa's EGL) or OSMesa (software), chosen
by the ``MUJOCO_GL`` environment variable when ``mujoco`` is first imported. :func:`offscreen_gl`
picks one that works before that import (each is tried in a child process, since a failed
context can leave the process unusable), or names what to install when neither does.

The episode is episode 0 of ``rlplast evaluate``'s table for the same run and friction: a
Gymnasium env of the run's id, at that friction, reset from the evaluation's seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

GL_BACKENDS = ("egl", "osmesa")
_PROBE = "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()"


class NoOffscreenGL(RuntimeError):
    """Neither EGL nor OSMesa can render offscreen here (the message says what to install)."""


def _probe(backend: str) -> str | None:
    """None when MuJoCo can make an offscreen context with ``backend``, else the error's last line."""
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"


def offscreen_gl() -> str:
    """The offscreen OpenGL backend MuJoCo will use (``egl`` or ``osmesa``), set in the environment.

    ``MUJOCO_GL`` if set, else the first of :data:`GL_BACKENDS` that works. Once ``mujoco`` is
    imported its choice is fixed, so then only a ``MUJOCO_GL`` already set can be used.

    Raises:
        NoOffscreenGL: none works (one line naming each backend's error and what to install).
    """
    chosen = os.environ.get("MUJOCO_GL", "").lower()
    if "mujoco" in sys.modules and chosen not in GL_BACKENDS:
        raise NoOffscreenGL("offscreen rendering needs MUJOCO_GL=egl or MUJOCO_GL=osmesa set before MuJoCo is imported")
    errors = []
    for backend in [chosen] if chosen else GL_BACKENDS:
        error = _probe(backend)
        if error is None:
            os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
        errors.append(f"MUJOCO_GL={backend}: {error}")
    raise NoOffscreenGL(
        "no offscreen OpenGL for MuJoCo (" + "; ".join(errors) + "); install EGL (libegl1, with a GPU driver "
        "or Mesa) or OSMesa (libosmesa6), or set MUJOCO_GL to one that works"
    )


def render_episode(
    actor, env_cfg, friction: float, run_seed: int, width: int = 480, height: int = 360
) -> tuple[list[np.ndarray], float, float]:
    """Frames ``[height, width, 3]`` uint8 of one deterministic episode, its return, and the fps.

    Args:
        actor: obs ``[B, obs_dim]`` tensor -> mean action ``[B, act_dim]`` (e.g. a GaussianActor).
        env_cfg: the run's env config (id, kwargs, friction mode, episode length).
        friction: the sliding friction of the episode.
        run_seed: the trained run's seed (the reset state is evaluation episode 0's).
    """
    import gymnasium as gym
    import torch

    from rlplast.envs.friction import FrictionSetter, mujoco_model_of
    from rlplast.envs.tasks import friction_scales_own
    from rlplast.evaluation import evaluation_reset_seed

    env = gym.make(
        env_cfg.id,
        render_mode="rgb_array",
        width=width,
        height=height,
        max_episode_steps=env_cfg.max_episode_steps,
        **env_cfg.env_kwargs(),
    )
    try:
        scales_own = friction_scales_own(env_cfg.id)  # as the training's backends set it
        FrictionSetter(mujoco_model_of(env), env_cfg.friction.mode, scales_own=scales_own).set(friction)
        obs, _ = env.reset(seed=evaluation_reset_seed(run_seed))  # env 0's stream (rlplast.envs.seeding)
        frames, total, done = [env.render()], 0.0, False
        while not done:
            with torch.inference_mode():
                action = actor(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0]
            obs, reward, terminated, truncated, _ = env.step(action.double().numpy())
            total += float(reward)
            done = terminated or truncated
            frames.append(env.render())
        fps = 1.0 / env.unwrapped.dt
    finally:
        env.close()
    return frames, total, fps


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write ``frames`` to ``path`` (``.mp4`` through imageio-ffmpeg, ``.gif`` through Pillow),
    atomically: a temporary file in the same folder, renamed over ``path``."""
    import tempfile

    import imageio.v2 as imageio

    from rlplast.atomic import FILE_MODE

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if path.suffix.lower() == ".gif":
            imageio.mimwrite(tmp, frames, duration=1000.0 / fps, loop=0)
        else:
            imageio.mimwrite(tmp, frames, fps=fps, macro_block_size=1)
        os.chmod(tmp, FILE_MODE)  # a plain open()'s mode, not the temporary file's owner-only one
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
