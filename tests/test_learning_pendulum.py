"""PPO learns in the default test run: InvertedPendulum-v5, 10 updates (about 20 s on one core).

The protocol's PPO (configs/methods/ppo.yaml: lr 1e-4, 2048 steps per update, 10 x 16
minibatches) through the gym backend and the whole runner. Measured for seeds 0, 1, 2: the mean
return of the first 20 episodes was 8.1, 12.5 and 5.3, of the last 20 episodes after 20,480
steps 92.0, 147.1 and 100.1. A random policy stays near 5-10; the thresholds below sit at about
half of the lowest measured gain, so only a PPO that stopped learning fails them.
"""

import pytest

from rlplast.config import load_config
from rlplast.report.aggregate import RETURN_TAG
from rlplast.report.metrics_csv import read_metrics
from rlplast.runner import train_group

TASK = """\
env:
  id: InvertedPendulum-v5
  friction:
    mode: all
    schedule: {kind: constant, value: 1.0}
"""


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ppo_learns_inverted_pendulum_in_ten_updates(tmp_path):
    task = tmp_path / "pendulum.yaml"
    task.write_text(TASK)
    cfg = load_config(str(task), "ppo")
    train_group(cfg, [0], tmp_path / "ppo", 10 * 2048, backend="gym", device="cpu")
    returns = read_metrics(tmp_path / "ppo" / "seed0" / "metrics.csv", {RETURN_TAG})[RETURN_TAG].values
    first, last = returns[:20].mean(), returns[-20:].mean()
    print(f"first 20 episodes {first:.1f}, last 20 {last:.1f}, {len(returns)} episodes")
    assert first < 20  # it starts as a poor balancer
    assert last >= 50 and last >= 4 * first
