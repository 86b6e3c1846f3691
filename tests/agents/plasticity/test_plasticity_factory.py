"""Config models, builders, the method files, and every method inside PPO with a run group."""

from __future__ import annotations

import pytest
import torch

from rlplast.agents.plasticity import OptimizerConfig, build_optimizer, build_plugins
from rlplast.agents.plasticity.adam import Adam
from rlplast.agents.plasticity.cbp import CBP
from rlplast.agents.plasticity.l1 import L1
from rlplast.agents.plasticity.redo import ReDo
from rlplast.agents.plasticity.shrink_perturb import ShrinkPerturb
from rlplast.agents.plasticity.upgd import UPGD
from rlplast.agents.ppo import PPO
from rlplast.config import load_config

METHODS = ["ppo_cbp", "ppo_upgd_protocol", "ppo_upgd_paper", "ppo_redo", "ppo_snp", "ppo_l1"]


def test_build_plugins_from_dicts_in_order(tiny):
    mlp = tiny.make_mlp([0])
    cfgs = [{"kind": "l1"}, {"kind": "cbp", "maturity_threshold": 5}, {"kind": "redo"}, {"kind": "snp"}]
    plugins = build_plugins(cfgs, mlp.hidden_layers(), Adam(mlp.parameters()), [0])
    assert [type(p) for p in plugins] == [L1, CBP, ReDo, ShrinkPerturb]
    assert plugins[1].cfg.maturity_threshold == 5


def test_unknown_plugin_kind_names_the_known_ones(tiny):
    mlp = tiny.make_mlp([0])
    with pytest.raises(ValueError, match="'cbp', 'redo', 'snp', 'l1'"):
        build_plugins([{"kind": "cpb"}], mlp.hidden_layers(), Adam(mlp.parameters()), [0])
    with pytest.raises(ValueError, match="replacement_rate"):
        build_plugins([{"kind": "cbp", "replacement_rate": 2}], mlp.hidden_layers(), Adam(mlp.parameters()), [0])


def test_build_optimizer_kinds(tiny):
    params = list(tiny.make_mlp([0, 1]).parameters())
    assert type(build_optimizer(OptimizerConfig(), params, [0, 1])) is Adam
    assert type(build_optimizer(OptimizerConfig(kind="sgd"), params, [0, 1])) is torch.optim.SGD
    ada = build_optimizer(OptimizerConfig(kind="adaupgd", sigma=0.0), params, [0, 1])
    assert isinstance(ada, UPGD) and ada.adaptive and ada.defaults["sigma"] == 0.0
    assert not build_optimizer(OptimizerConfig(kind="upgd"), params, [0, 1]).adaptive


def test_upgd_fields_need_an_upgd_kind():
    with pytest.raises(ValueError, match=r"\['sigma'\] apply to kinds \['upgd', 'adaupgd'\]"):
        OptimizerConfig(kind="adam", sigma=0.1)
    full = OptimizerConfig(kind="adam").model_dump()
    assert OptimizerConfig(**full).kind == "adam"  # a full dump validates again


def test_method_files_hold_the_protocol_values():
    cbp = load_config("slippery_ant", "ppo_cbp")
    assert cbp.optimizer.betas == (0.99, 0.99) and cbp.optimizer.weight_decay == 1e-4
    (plugin,) = cbp.plugins
    assert (plugin.kind, plugin.replacement_rate, plugin.maturity_threshold, plugin.decay_rate) == (
        "cbp",
        1e-4,
        10_000,
        0.99,
    )
    redo = load_config("slippery_ant", "ppo_redo")
    assert redo.optimizer.weight_decay == 1e-4 and (redo.plugins[0].tau, redo.plugins[0].period) == (0.1, 100)
    upgd = load_config("slippery_ant", "ppo_upgd_protocol").optimizer
    assert (upgd.kind, upgd.weight_decay, upgd.beta_utility, upgd.sigma) == ("adaupgd", 1e-3, 0.999, 1e-3)
    assert (upgd.lr, upgd.step_scale, upgd.utility_max, upgd.betas, upgd.eps) == (
        1e-4,
        1.0,
        "corrected",
        (0.99, 0.99),
        1e-8,
    )
    # the UPGD paper's RL settings (mohmdelsayed/upgd, core/run/rl): 2 x lr 3e-4, raw-trace eta
    paper = load_config("slippery_ant", "ppo_upgd_paper").optimizer
    assert (paper.kind, paper.lr, paper.step_scale, paper.utility_max) == ("adaupgd", 3e-4, 2.0, "raw")
    assert (paper.betas, paper.eps, paper.weight_decay, paper.beta_utility, paper.sigma) == (
        (0.9, 0.999), 1e-5, 1e-3, 0.999, 1e-3,
    )  # fmt: skip
    snp = load_config("slippery_ant", "ppo_snp")
    assert snp.optimizer.weight_decay == 0 and snp.plugins[0].kind == "snp"
    assert load_config("slippery_ant", "ppo_l1").plugins[0].kind == "l1"


class RandomEnv:
    """Observations and rewards drawn per run from the run's own generator."""

    def __init__(self, seeds, envs: int, obs_dim: int = 3):
        self.gens = [torch.Generator().manual_seed(50 + s) for s in seeds]
        self.envs, self.obs_dim = envs, obs_dim

    def draw(self, *shape) -> torch.Tensor:
        return torch.cat([torch.randn(self.envs, *shape, generator=g) for g in self.gens])


def make_ppo(method: str, seeds: list[int]) -> PPO:
    """The method's PPO, shrunk: tiny networks and rollouts, CBP/ReDo acting within a few steps."""
    overrides = ["agent.hidden=[8,8]", "agent.steps_per_update=16", "agent.epochs=2", "agent.minibatches=2"]
    cfg = load_config("slippery_ant", method, overrides)
    quick = {"cbp": {"maturity_threshold": 2, "replacement_rate": 0.05}, "redo": {"period": 3, "tau": 0.5}}
    plugins = [p.model_copy(update=quick.get(p.kind, {})) for p in cfg.plugins]
    return PPO(cfg.agent, 3, 2, seeds, 2, cfg.optimizer.model_copy(update={"lr": 1e-2}), plugins)


def train(agent: PPO, env: RandomEnv, updates: int) -> None:
    for _ in range(updates):
        obs = env.draw(3)
        n = len(obs)
        never = torch.zeros(n, dtype=torch.bool)
        with torch.inference_mode():
            for _ in range(agent.rollout_len):
                agent.act(obs)
                obs = env.draw(3)
                agent.process_step(env.draw().view(n), never, never, obs)
            agent.compute_returns(obs)
        agent.update()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_in_ppo_as_a_run_group_and_resumes_exactly(tiny, method):
    seeds = [3, 4]
    group, env = make_ppo(method, seeds), RandomEnv(seeds, 2)
    train(group, env, 1)
    saved = tiny.roundtrip(group.state_dict())
    env_state = [g.get_state() for g in env.gens]
    train(group, env, 1)

    alone = make_ppo(method, [4])
    train(alone, RandomEnv([4], 2), 2)
    for a, b in zip(group.parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(a[1], b[0], rtol=1e-4, atol=1e-6)
    for plugin in group.plugins:
        for name, value in plugin.stats().items():
            assert value.shape == (2,), name
            if name.count("/") == 1:  # a plug-in's total (not one layer's)
                assert (value > 0).all(), f"{name}: the shrunk {method} should have acted"

    resumed, env2 = make_ppo(method, seeds), RandomEnv(seeds, 2)
    resumed.load_state_dict(saved)
    for g, s in zip(env2.gens, env_state, strict=True):
        g.set_state(s)
    train(resumed, env2, 1)
    for a, b in zip(group.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
