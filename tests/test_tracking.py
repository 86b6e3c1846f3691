"""The tracker against an independent route: all observed rows kept in a list, metrics on the tail."""

from __future__ import annotations

import io
import math

import pytest
import torch
from pydantic import ValidationError

from rlplast import metrics
from rlplast.agents.networks import MLP, Actor, Critic, run_generators
from rlplast.tracking import MetricsConfig, PlasticityTracker, tag

R = 2
WIDTHS = (4, 5)


def make_net(name: str = "actor") -> MLP:
    net = MLP(R, 3, list(WIDTHS), 2, name=name)
    net.reset_parameters(run_generators(range(R), salt=1))
    return net


def feed(net: MLP, rows: torch.Tensor) -> list[torch.Tensor]:
    """Set ``net.features`` as a forward pass would: layer i gets ``rows[..., :width_i]``, relu'd.

    Args:
        rows: ``[R, B, max width]``.
    """
    net.features = [torch.relu(rows[..., :w]).clone() for w in WIDTHS]
    return net.features


def random_rows(gen: torch.Generator, batch: int) -> torch.Tensor:
    return torch.randn(R, batch, max(WIDTHS), generator=gen)


def test_window_keeps_exactly_the_last_rows() -> None:
    net = make_net()
    tracker = PlasticityTracker(MetricsConfig(window=7, networks=("actor",)), {"actor": net}, R)
    gen = torch.Generator().manual_seed(0)
    history: list[list[torch.Tensor]] = [[], []]
    for batch in [3, 3, 3, 1, 9, 2, 1, 1, 1, 1, 1, 1, 1, 1]:  # one call larger than the window
        for i, f in enumerate(feed(net, random_rows(gen, batch))):
            history[i].append(f)
        tracker.observe()
        expected = [torch.cat(h, dim=1)[:, -7:] for h in history]
        for i in range(2):
            assert torch.equal(tracker.windows()["actor"][i], expected[i])
        # Memory stays bounded: the rows held cover the window, and the oldest call is needed.
        seen = sum(f.shape[1] for f in history[0])
        assert min(seen, 7) <= tracker._held < 7 + 9
        assert tracker._held - tracker._chunk_rows[0] < 7


def expected_metrics(rows: list[torch.Tensor], net: MLP) -> dict[str, torch.Tensor]:
    """The network-level values computed directly with rlplast.metrics on the window rows."""
    weights = [layer.weight.detach() for layer in net.layers]
    return {
        "stable_rank": metrics.stable_rank(rows[-1]).float(),
        "stable_rank_pct": metrics.stable_rank(rows[-1]).float() * 100 / WIDTHS[-1],
        "effective_rank": metrics.effective_rank(rows[-1]),
        "dormant_fraction": metrics.dormant_fraction(rows),
        "redo_dormant_fraction_tau0.0": metrics.redo_dormant_fraction(rows, 0.0),
        "redo_dormant_fraction_tau0.1": metrics.redo_dormant_fraction(rows, 0.1),
        "feature_norm": metrics.feature_norm(rows[-1]),
        "weight_magnitude": metrics.weight_magnitude(weights),
    }


def test_values_equal_the_pure_metrics_on_the_window() -> None:
    net = make_net()
    tracker = PlasticityTracker(MetricsConfig(window=12, networks=("actor",)), {"actor": net}, R)
    initial = [layer.weight.detach().clone() for layer in net.layers]
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        rows = random_rows(gen, 4)
        rows[1, :, 1] = -1.0  # run 1 has a dead unit in both layers
        feed(net, rows)
        tracker.observe()
    with torch.no_grad():
        net.layers[1].weight.add_(0.5)
    window = [tracker.windows()["actor"][i] for i in range(2)]
    out = tracker.compute()
    for metric, value in expected_metrics(window, net).items():
        assert torch.allclose(out[tag("actor", metric)], value.float(), rtol=1e-5), metric
    assert out[tag("actor", "dormant_fraction", 0)][1].item() >= 0.25
    # the weight change is per update (after_update), not per window computation
    assert not any("weight_change" in k for k in out)
    changed = tracker.after_update()
    expected = metrics.weight_change([layer.weight.detach() for layer in net.layers], initial)
    assert torch.allclose(changed[tag("actor", "weight_change")], expected)
    # Only layer 1 moved, by 0.5 everywhere: its own change is 0.5, pooled 0.5 * 20 / (12 + 20 + 10).
    assert changed[tag("actor", "weight_change", 1)].tolist() == pytest.approx([0.5, 0.5])
    assert changed[tag("actor", "weight_change")].tolist() == pytest.approx([0.5 * 20 / 42] * 2)
    assert tracker.after_update()[tag("actor", "weight_change")].tolist() == [0.0, 0.0]


def test_weight_change_is_what_each_update_moved() -> None:
    # Updates every 2048 steps move every weight by exactly 1e-3; the window metrics run every
    # 1000 steps in between. Each update's change is 1e-3, whatever the logging interval.
    net = make_net()
    tracker = PlasticityTracker(MetricsConfig(window=12, networks=("actor",)), {"actor": net}, R)
    feed(net, random_rows(torch.Generator().manual_seed(4), 4))
    tracker.observe()
    changes = []
    for update in range(1, 6):
        for step in range((update - 1) * 2048 + 1000, update * 2048, 1000):
            assert not any("weight_change" in k for k in tracker.maybe_compute(step))
        with torch.no_grad():
            for layer in net.layers:
                layer.weight.add_(1e-3 if update % 2 else -1e-3)
        changes.append(tracker.after_update()[tag("actor", "weight_change")])
    assert torch.allclose(torch.stack(changes), torch.full((5, R), 1e-3), rtol=1e-4)


def test_tags_of_a_two_layer_network() -> None:
    net = make_net()
    tracker = PlasticityTracker(MetricsConfig(networks=("actor",)), {"actor": net}, R)
    feed(net, random_rows(torch.Generator().manual_seed(2), 3))
    tracker.observe()
    out = tracker.compute()
    feature = ["dormant_fraction", "redo_dormant_fraction_tau0.0", "redo_dormant_fraction_tau0.1", "feature_norm"]
    ranks = ["stable_rank", "stable_rank_pct", "effective_rank"]
    weight = ["weight_magnitude"]
    expected = {f"plasticity/actor/{m}" for m in feature + ranks + weight}
    expected |= {f"plasticity/actor/layer{i}/{m}" for i in (0, 1) for m in feature + ranks + weight}
    expected |= {f"plasticity/actor/layer2/{m}" for m in weight}
    assert set(out) == expected
    change = "weight_change"
    assert set(tracker.after_update()) == {f"plasticity/actor/{change}"} | {
        f"plasticity/actor/layer{i}/{change}" for i in (0, 1, 2)
    }
    assert all(v.shape == (R,) and v.dtype == torch.float32 for v in out.values())
    assert {"plasticity/actor/stable_rank_pct", "plasticity/actor/dormant_fraction"} <= set(out)


def test_per_layer_off_gives_network_level_tags_only() -> None:
    net = make_net()
    tracker = PlasticityTracker(MetricsConfig(networks=("actor",), per_layer=False), {"actor": net}, R)
    feed(net, random_rows(torch.Generator().manual_seed(3), 3))
    tracker.observe()
    assert all("/layer" not in k for k in tracker.compute())
    assert len(tracker.compute()) == 8
    assert list(tracker.after_update()) == ["plasticity/actor/weight_change"]


def crossings(step: int, interval: int, total: int) -> list[int]:
    """First multiple of ``step`` at or past each multiple of ``interval`` up to ``total``."""
    return [math.ceil(k * interval / step) * step for k in range(1, total // interval + 1)]


def test_intervals_fire_when_a_multiple_is_crossed() -> None:
    net = make_net()
    cfg = MetricsConfig(networks=("actor",), interval=1000, rank_interval=10_000)
    tracker = PlasticityTracker(cfg, {"actor": net}, R)
    feed(net, random_rows(torch.Generator().manual_seed(4), 3))
    tracker.observe()
    cheap, ranked = [], []
    for step in range(3, 30_001, 3):  # 3 envs per run: steps 3, 6, ...; 1000 is never hit exactly
        due = tracker.due(step)
        out = tracker.maybe_compute(step)
        assert due == bool(out)
        if tag("actor", "dormant_fraction") in out:
            cheap.append(step)
        if tag("actor", "stable_rank") in out:
            ranked.append(step)
    assert cheap == crossings(3, 1000, 30_000)
    assert ranked == crossings(3, 10_000, 30_000) == [10_002, 20_001, 30_000]
    # asked only when due (as the runner does), it fires at the same steps
    lazy = PlasticityTracker(cfg, {"actor": net}, R)
    lazy.observe()
    fired = [step for step in range(3, 30_001, 3) if lazy.due(step) and lazy.maybe_compute(step)]
    assert fired == sorted(set(cheap) | set(ranked))


def test_a_long_jump_fires_once_and_going_back_is_an_error() -> None:
    net = make_net()
    tracker = PlasticityTracker(MetricsConfig(networks=("actor",)), {"actor": net}, R)
    assert tracker.maybe_compute(999) == {}
    assert tag("actor", "weight_magnitude") in tracker.maybe_compute(25_000)
    assert tracker.maybe_compute(25_500) == {}
    with pytest.raises(ValueError, match="went back"):
        tracker.maybe_compute(100)


def test_real_forward_passes_under_inference_mode() -> None:
    actor, critic = Actor(R, 5, 2, [8, 8], "relu"), Critic(R, 5, [8, 8], "relu")
    gens = run_generators(range(R), salt=0)
    actor.mlp.reset_parameters(gens)
    critic.mlp.reset_parameters(gens)
    tracker = PlasticityTracker(MetricsConfig(window=10), {"actor": actor.mlp, "critic": critic.mlp}, R)
    for _ in range(4):
        with torch.inference_mode():
            obs = torch.randn(R, 3, 5)
            actor(obs)
            critic(obs)
            tracker.observe()
            out = tracker.maybe_compute(1000)
    assert torch.equal(tracker.windows()["critic"][1][:, -3:], critic.mlp.features[1])
    assert tracker.compute()[tag("critic", "stable_rank")].shape == (R,)
    assert out == {}  # 1000 fired at the first call only
    # Weight snapshot updated under inference_mode can still be restored outside it.
    tracker.load_state_dict(tracker.state_dict())


def state_round_trip(tracker: PlasticityTracker) -> dict:
    buffer = io.BytesIO()
    torch.save(tracker.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_round_trip_continues_exactly() -> None:
    net = make_net()
    cfg = MetricsConfig(window=10, networks=("actor",), interval=7, rank_interval=21)
    first = PlasticityTracker(cfg, {"actor": net}, R)
    gen = torch.Generator().manual_seed(5)
    for step in range(3, 16, 3):
        feed(net, random_rows(gen, 3))
        first.observe()
        first.maybe_compute(step)
    with torch.no_grad():
        net.layers[0].weight.mul_(1.5)
    second = PlasticityTracker(cfg, {"actor": net}, R)
    second.load_state_dict(state_round_trip(first))
    for step in range(18, 60, 3):
        feed(net, random_rows(gen, 3))
        first.observe()
        second.observe()
        a, b = first.maybe_compute(step), second.maybe_compute(step)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(first.windows()["actor"][1], second.windows()["actor"][1])


def test_networks_must_share_the_rows_per_call() -> None:
    actor, critic = make_net("actor"), make_net("critic")
    tracker = PlasticityTracker(MetricsConfig(), {"actor": actor, "critic": critic}, R)
    gen = torch.Generator().manual_seed(8)
    feed(actor, random_rows(gen, 2))
    feed(critic, random_rows(gen, 3))
    with pytest.raises(ValueError, match=r"different numbers of rows B: \{'actor': 2, 'critic': 3\}"):
        tracker.observe()


def test_disabled_tracker_does_nothing() -> None:
    tracker = PlasticityTracker(MetricsConfig(enabled=False), {"actor": make_net()}, R)
    tracker.observe()
    assert tracker.maybe_compute(50_000) == {}
    assert tracker.compute() == {}


def test_usage_errors_are_named() -> None:
    net = make_net()
    with pytest.raises(ValueError, match=r"names \['critic'\].*\['actor'\]"):
        PlasticityTracker(MetricsConfig(), {"actor": net}, R)
    with pytest.raises(ValueError, match="num_runs=3"):
        PlasticityTracker(MetricsConfig(networks=("actor",)), {"actor": net}, 3)
    tracker = PlasticityTracker(MetricsConfig(networks=("actor",)), {"actor": net}, R)
    with pytest.raises(RuntimeError, match="no features"):
        tracker.observe()
    feed(net, random_rows(torch.Generator().manual_seed(6), 2))
    tracker.observe()
    with pytest.raises(RuntimeError, match="no forward pass since"):
        tracker.observe()
    net.features = [torch.zeros(R, 3, 4), torch.zeros(R, 3, 6)]  # B changed: a full check
    with pytest.raises(ValueError, match=r"shapes \[\(2, 3, 4\), \(2, 3, 6\)\].*widths \[4, 5\]"):
        tracker.observe()
    reused = feed(net, random_rows(torch.Generator().manual_seed(7), 2))
    tracker.observe()
    net.features = [f.view_as(f) for f in reused]  # same memory written in place, new list
    with pytest.raises(RuntimeError, match="in place"):
        tracker.observe()
    other = PlasticityTracker(MetricsConfig(networks=("actor",), window=3), {"actor": net}, R)
    with pytest.raises(ValueError, match="windows"):
        other.load_state_dict(tracker.state_dict())


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 0},
        {"interval": 0},
        {"redo_taus": (-0.1,)},
        {"stable_rank_delta": 1.0},
        {"windw": 5},
        {"networks": ("actor", "actor")},
    ],
)
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValidationError):
        MetricsConfig(**bad)


def test_overhead_benchmark_adds_up() -> None:
    from rlplast.bench.metrics import PPOShape, measure_metrics_overhead

    threads = torch.get_num_threads()
    cfg = MetricsConfig(window=20, interval=50, rank_interval=200)
    shape = PPOShape(obs_dim=3, act_dim=2, width=8, steps=32, epochs=2, minibatch=16)
    (row,) = measure_metrics_overhead((2,), cfg, shape, repeats=1, cpu_time=True)
    assert row["num_runs"] == 2
    per_1000 = row["observe_us"] + row["compute_ms"] * 1000 / 50 + row["rank_compute_ms"] * 1000 / 200
    assert row["metrics_ms_per_1000"] == pytest.approx(per_1000)
    assert row["overhead_pct"] == pytest.approx(100 * row["metrics_ms_per_1000"] / row["train_ms_per_1000"])
    assert all(value > 0 for value in row.values())
    assert torch.get_num_threads() == threads  # restored after timing on one thread
