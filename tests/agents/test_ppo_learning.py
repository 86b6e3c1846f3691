"""PPO learns as stable-baselines3 does with the same hyperparameters (slow). Speed is measured by
`rlplast bench`, side by side, not by tests."""

import pytest

from rlplast.bench.ppo import compare_learning


@pytest.mark.slow
def test_ppo_solves_inverted_pendulum_like_sb3():
    # InvertedPendulum-v5 (max return 1000), the reference PPO settings of PROTOCOL.md (lr 1e-4,
    # 2048 steps per update, 10 x 16 minibatches), 50 updates, seed 0, one torch thread.
    result = compare_learning("InvertedPendulum-v5", steps=50 * 2048, seed=0, last=20, threads=1)
    print(result)
    assert result["rlplast_return"] >= 950
    assert result["rlplast_return"] >= 0.9 * result["sb3_return"]


def test_steps_to_reach_by_hand():
    from rlplast.bench.ppo import steps_to_reach

    episodes = [(10, 0.0), (20, 0.0), (30, 10.0), (40, 10.0), (50, 10.0)]
    assert steps_to_reach(episodes, 10.0, window=2) == 40  # mean of episodes ending at 30 and 40
    assert steps_to_reach(episodes, 11.0, window=2) is None
