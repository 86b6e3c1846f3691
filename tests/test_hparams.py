"""TensorBoard HParams of each run, read back from its event file."""

import csv

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from tiny_ant import UPDATE, train_tiny

from rlplast.hparams import FINAL_EPISODES, FINAL_RETURN, METRICS

EXTRA = ["optimizer.lr=3e-4", "env.max_episode_steps=5"]  # short episodes: more than FINAL_EPISODES of them


def hparams_of(run_dir) -> tuple[dict[str, HParamsPluginData], EventAccumulator]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    contents = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    return {tag: HParamsPluginData.FromString(content) for tag, content in contents.items()}, acc


def value(hparam):
    kind = hparam.WhichOneof("kind")
    return getattr(hparam, kind)


@pytest.fixture(scope="module")
def method_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hp") / "ppo"
    train_tiny(out, [0, 1], 3 * UPDATE, extra=EXTRA)
    return out


def test_each_run_has_its_hparams_and_the_metric_columns(method_dir):
    for seed in (0, 1):
        data, _ = hparams_of(method_dir / f"seed{seed}")
        assert set(data) == {metadata.EXPERIMENT_TAG, metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
        start = {k: value(v) for k, v in data[metadata.SESSION_START_INFO_TAG].session_start_info.hparams.items()}
        assert start["method"] == "ppo" and start["task"] == "slippery_ant" and start["seed"] == seed
        assert start["lr"] == pytest.approx(3e-4) and start["hidden"] == "16x16" and start["steps_per_update"] == UPDATE
        assert start["optimizer"] == "adam" and start["plugins"] == "none" and start["steps"] == 3 * UPDATE
        assert start["friction_schedule"].startswith("piecewise(") and "every=48" in start["friction_schedule"]
        experiment = data[metadata.EXPERIMENT_TAG].experiment
        assert {h.name for h in experiment.hparam_infos} == set(start)
        assert [m.name.tag for m in experiment.metric_infos] == list(METRICS)
        end = data[metadata.SESSION_END_INFO_TAG].session_end_info
        assert end.status == api_pb2.STATUS_SUCCESS


def test_final_return_is_the_mean_of_the_last_episodes(method_dir):
    for seed in (0, 1):
        with open(method_dir / f"seed{seed}/metrics.csv") as f:
            rows = list(csv.DictReader(f))
        returns = [float(r["value"]) for r in rows if r["tag"] == "charts/episodic_return"]
        final = [r for r in rows if r["tag"] == FINAL_RETURN]
        assert len(returns) > FINAL_EPISODES and len(final) == 1 and int(final[0]["step"]) == 3 * UPDATE
        assert float(final[0]["value"]) == pytest.approx(np.mean(returns[-FINAL_EPISODES:]))
        _, acc = hparams_of(method_dir / f"seed{seed}")
        [event] = acc.Scalars(FINAL_RETURN)
        assert event.step == 3 * UPDATE and event.value == pytest.approx(float(final[0]["value"]), rel=1e-6)


def test_a_continued_run_keeps_one_hparams_session(method_dir):
    train_tiny(method_dir, [0, 1], 4 * UPDATE, extra=EXTRA)
    data, acc = hparams_of(method_dir / "seed0")
    assert data[metadata.SESSION_START_INFO_TAG].session_start_info.hparams["seed"].number_value == 0
    assert [e.step for e in acc.Scalars(FINAL_RETURN)] == [3 * UPDATE, 4 * UPDATE]


def test_sb3_runs_have_hparams_too(tmp_path):
    train_tiny(tmp_path / "sb3_ppo", [0], 2 * UPDATE, extra=["implementation=sb3", "env.max_episode_steps=5"])
    data, acc = hparams_of(tmp_path / "sb3_ppo" / "seed0")
    start = data[metadata.SESSION_START_INFO_TAG].session_start_info.hparams
    assert start["implementation"].string_value == "sb3" and start["seed"].number_value == 0
    assert data[metadata.SESSION_END_INFO_TAG].session_end_info.status == api_pb2.STATUS_SUCCESS
    assert [e.step for e in acc.Scalars(FINAL_RETURN)] == [2 * UPDATE]
