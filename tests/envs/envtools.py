"""Helpers of the env tests: a busy config, seeded random actions, the exact-resume check, and the
device of the warp simulators under test."""

import io
import os

import numpy as np
import torch

from rlplast.envs.clock import FrictionClock
from rlplast.envs.vec import StepResult

# The device of every warp simulator under test (tests/envs/test_warp_*.py): Warp's CPU device,
# or a CUDA GPU with RLPLAST_WARP_TEST_DEVICE=cuda (scripts/gpu_check.sh), for the same checks
# against MuJoCo C with the same tolerances (mujoco_warp computes in float32 on either device).
# The tests of the errors for a device (meta, cuda without a GPU) name theirs.
WARP_DEVICE = os.environ.get("RLPLAST_WARP_TEST_DEVICE", "cpu")

# A short schedule, episodes that end often (narrow healthy range) and a short time limit, so
# that friction changes, terminations and truncations all happen within a few hundred steps.
BUSY = {
    "kwargs": {"healthy_z_range": (0.4, 0.8)},
    "friction": {"schedule": {"kind": "piecewise", "every": 50}},
    "max_episode_steps": 40,
}


def random_actions(num_envs: int, steps: int, seed: int = 0, scale: float = 1.5, dim: int = 8) -> list[torch.Tensor]:
    """``steps`` float32 action batches ``[num_envs, dim]`` drawn U(-scale, scale) (beyond [-1, 1] too)."""
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.uniform(-scale, scale, size=(num_envs, dim)).astype(np.float32)) for _ in range(steps)]


def on_cpu(res: StepResult) -> StepResult:
    """``res`` with every tensor on the CPU, to compare with numpy (a no-op on Warp's CPU device)."""
    info = {key: value.cpu() for key, value in res.info.items()}
    return StepResult(res.obs.cpu(), res.reward.cpu(), res.terminated.cpu(), res.truncated.cpu(), info)


def outputs(res) -> list[torch.Tensor]:
    """Every tensor of a StepResult."""
    return [res.obs, res.reward, res.terminated, res.truncated, *res.info.values()]


def check_resumes_exactly(envs: list, seeds: list[int], actions: list[torch.Tensor]) -> None:
    """Two envs of one config: the first steps half of ``actions`` from ``seeds`` and saves; the
    second loads that (through a file, as a checkpoint: ``torch.load(weights_only=True)``), and
    so does the first again, in place (under its captured graphs, on warp); all three then give
    the same outputs, bit for bit, over the other half, with a time limit crossed (resets and
    their noise continue too)."""
    half = len(actions) // 2
    envs[0].reset(seeds)
    for a in actions[:half]:
        envs[0].step(a)
    buffer = io.BytesIO()
    torch.save(envs[0].state_dict(), buffer)
    envs[1].load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    first, second = ([env.step(a) for a in actions[half:]] for env in envs)
    envs[0].load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    third = [envs[0].step(a) for a in actions[half:]]
    for a, b, c in zip(first, second, third, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(outputs(a), outputs(b), strict=True))
        assert all(torch.equal(x, y) for x, y in zip(outputs(a), outputs(c), strict=True))
    assert any(r.truncated.any() for r in first)


def check_friction_follows_clock(envs: list, actions: list[torch.Tensor], geom_sliding, own: torch.Tensor) -> None:
    """Two warp envs of one config (a cycle schedule of 0.5, 1.0, 1.5), captured and with plain
    launches: every step's friction and run steps are FrictionClock's, each world's sliding
    frictions ``geom_sliding(env) [N, G]`` are its friction x ``own [G]``, both envs agree bit for
    bit, and every value of the cycle is met."""
    env, plain = envs
    clock = FrictionClock(env.cfg.friction, num_runs=env.num_runs, envs_per_run=env.envs_per_run)
    seeds = list(range(5, 5 + env.num_runs))
    for e in envs:
        e.reset(seeds)
    clock.reset(seeds)
    seen = set()
    for a in actions:
        res, ref = env.step(a), plain.step(a)
        clock.tick()
        clock.episode_end((res.terminated | res.truncated).cpu().numpy())
        np.testing.assert_allclose(res.info["friction"].cpu().numpy(), clock.friction, rtol=1e-6)
        assert res.info["run_steps"].tolist() == clock.run_steps.tolist()
        seen.update(res.info["friction"].tolist())
        assert all(torch.equal(x, y) for x, y in zip(outputs(res), outputs(ref), strict=True))
        sliding = geom_sliding(env)
        expected = res.info["friction"][:, None] * own.to(sliding.device)
        torch.testing.assert_close(sliding, expected.expand_as(sliding))
    assert seen == {0.5, 1.0, 1.5}
