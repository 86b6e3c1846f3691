"""Helpers of the env tests: a busy config, seeded random actions, and the exact-resume check."""

import io

import numpy as np
import torch

from rlplast.envs.clock import FrictionClock

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
        clock.episode_end((res.terminated | res.truncated).numpy())
        np.testing.assert_allclose(res.info["friction"].numpy(), clock.friction, rtol=1e-6)
        assert res.info["run_steps"].tolist() == clock.run_steps.tolist()
        seen.update(res.info["friction"].tolist())
        assert all(torch.equal(x, y) for x, y in zip(outputs(res), outputs(ref), strict=True))
        sliding = geom_sliding(env)
        torch.testing.assert_close(sliding, (res.info["friction"][:, None] * own).expand_as(sliding))
    assert seen == {0.5, 1.0, 1.5}
