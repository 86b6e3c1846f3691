import io
import math

import pytest
import torch
from pydantic import ValidationError

from rlplast.agents.plasticity import OptimizerConfig, Plugin
from rlplast.agents.ppo import PPO, PPOConfig, explained_variance
from rlplast.metrics import grad_norm

OBS, ACT = 3, 2


class FakeVecEnv:
    """A tiny seeded VecEnv (run-major, same-step autoreset): reward -|a - obs[:2]|^2, episodes
    truncated after 5 steps or terminated when obs[2] > 1. Run r's data depends only on its seed."""

    def __init__(self, num_runs: int, envs_per_run: int):
        self.num_runs, self.envs_per_run = num_runs, envs_per_run
        self.num_envs = num_runs * envs_per_run
        self.obs_dim, self.act_dim = OBS, ACT

    def _draw(self, shape_per_run):
        return torch.cat([torch.randn(self.envs_per_run, *shape_per_run, generator=g) for g in self.gens])

    def reset(self, seeds):
        self.gens = [torch.Generator().manual_seed(100 + s) for s in seeds]
        self.state = self._draw((OBS,))
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        return self.state.clone()

    def step(self, actions):
        reward = -(actions - self.state[:, :2]).square().sum(1)
        self.state = 0.8 * self.state + 0.5 * self._draw((OBS,))
        self.t += 1
        terminated = self.state[:, 2] > 1.0
        truncated = self.t >= 5
        done = terminated | truncated
        final_obs = self.state.clone()
        fresh = self._draw((OBS,))
        self.state = torch.where(done.unsqueeze(1), fresh, self.state)
        self.t = torch.where(done, 0, self.t)
        return self.state.clone(), reward, terminated, truncated, final_obs


def small_cfg(**kw) -> PPOConfig:
    base = dict(hidden=[8, 8], steps_per_update=16, epochs=2, minibatches=4)
    return PPOConfig(**{**base, **kw})


def rollout_and_update(agent: PPO, env: FakeVecEnv, obs: torch.Tensor) -> tuple[torch.Tensor, dict]:
    with torch.inference_mode():
        for _ in range(agent.rollout_len):
            obs_next, reward, term, trunc, final = env.step(agent.act(obs))
            agent.process_step(reward, term, trunc, final)
            obs = obs_next
        agent.compute_returns(obs)
    return obs, agent.update()


def train(seeds, updates, envs_per_run=2, **kw):
    agent = PPO(small_cfg(**kw), OBS, ACT, seeds, envs_per_run, OptimizerConfig(lr=1e-2))
    env = FakeVecEnv(len(seeds), envs_per_run)
    obs = env.reset(seeds)
    stats = []
    for _ in range(updates):
        obs, out = rollout_and_update(agent, env, obs)
        stats.append(out)
    return agent, stats


def test_group_gives_each_run_the_same_update_as_alone():
    group, group_stats = train([5, 7, 9], updates=2)
    alone, alone_stats = train([7], updates=2)
    for pg, pa in zip(group.parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(pg[1], pa[0], rtol=1e-5, atol=1e-6)
    for name, value in alone_stats[-1].items():
        torch.testing.assert_close(group_stats[-1][name][1], value[0], rtol=1e-4, atol=1e-6, msg=name)
    # and the runs did differ from each other
    assert not torch.allclose(group.actor.mlp.layers[0].weight[0], group.actor.mlp.layers[0].weight[1])


def test_loss_matches_torch_distributions_for_one_run():
    agent = PPO(small_cfg(clip=0.1, value_coef=0.7, entropy_coef=0.05), OBS, ACT, [0, 1])
    with torch.no_grad():
        agent.actor.log_std.copy_(torch.tensor([[0.3, -0.2], [0.1, 0.0]]))
    g = torch.Generator().manual_seed(0)
    batch = {
        "obs": torch.randn(2, 6, OBS, generator=g),
        "actions": torch.randn(2, 6, ACT, generator=g),
        "logprobs": torch.randn(2, 6, generator=g) - 2,
        "advantages": torch.randn(2, 6, generator=g),
        "returns": torch.randn(2, 6, generator=g),
    }
    loss, parts = agent._loss(batch)
    r = 1
    mean = agent.actor.mlp(batch["obs"])[r]
    dist = torch.distributions.Normal(mean, agent.actor.log_std[r].exp())
    ratio = (dist.log_prob(batch["actions"][r]).sum(-1) - batch["logprobs"][r]).exp()
    adv = batch["advantages"][r]
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(0.9, 1.1)).mean()
    v = agent.critic(batch["obs"])[r]
    vl = ((v - batch["returns"][r]) ** 2).mean()
    ent = dist.entropy().sum(-1).mean()
    torch.testing.assert_close(loss[r], pg + 0.7 * vl - 0.05 * ent)
    torch.testing.assert_close(parts["logratio"][r].exp(), ratio)
    torch.testing.assert_close(parts["policy_loss"][r], pg)
    torch.testing.assert_close(parts["value_loss"][r], vl)


def test_act_logprob_matches_distribution_and_features_are_exposed():
    agent = PPO(small_cfg(steps_per_update=4), OBS, ACT, [3, 4], envs_per_run=2)
    obs = torch.randn(4, OBS)
    never = torch.zeros(4, dtype=torch.bool)
    with torch.inference_mode():
        actions = agent.act(obs)
        assert [f.shape for f in agent.acting_features["actor"]] == [(2, 2, 8), (2, 2, 8)]
        assert len(agent.acting_features["critic"]) == 2
        agent.process_step(torch.zeros(4), never, never, obs)
        agent.act(obs)
        agent.process_step(torch.zeros(4), never, never, obs)  # the rollout (2 steps) is full now
    assert actions.shape == (4, ACT)
    mean = agent.actor.mlp(obs.view(2, 2, OBS))
    logp = torch.distributions.Normal(mean, 1.0).log_prob(actions.view(2, 2, ACT)).sum(-1)
    torch.testing.assert_close(agent.storage.logprobs[:, 0], logp)
    torch.testing.assert_close(agent.storage.actions[:, 0], actions.view(2, 2, ACT))


def test_truncation_bootstraps_from_final_obs_value():
    agent = PPO(small_cfg(steps_per_update=4, minibatches=1, gamma=0.5), OBS, ACT, [0])
    final = torch.ones(1, OBS)
    with torch.inference_mode():
        for t in range(4):
            agent.act(torch.zeros(1, OBS))
            agent.process_step(torch.zeros(1), torch.tensor([False]), torch.tensor([t == 3]), final)
        agent.compute_returns(torch.full((1, OBS), 7.0))
        v_final = agent.critic(final.view(1, 1, OBS))[0, 0]
    s = agent.storage
    # last step truncated: A_3 = 0 + 0.5 * V(final) - V_3, not bootstrapped from V(last_obs)
    torch.testing.assert_close(s.advantages[0, 3, 0], 0.5 * v_final - s.values[0, 3, 0])

    ref = PPO(small_cfg(steps_per_update=4, minibatches=1, gamma=0.5, bootstrap_truncated=False), OBS, ACT, [0])
    with torch.inference_mode():
        for t in range(4):
            ref.act(torch.zeros(1, OBS))
            ref.process_step(torch.zeros(1), torch.tensor([False]), torch.tensor([t == 3]), final)
        ref.compute_returns(torch.full((1, OBS), 7.0))
    torch.testing.assert_close(ref.storage.advantages[0, 3, 0], -ref.storage.values[0, 3, 0])
    with pytest.raises(RuntimeError, match="full"), torch.inference_mode():
        agent.act(torch.zeros(1, OBS))  # the rollout is full until update()
    fresh = PPO(small_cfg(steps_per_update=4, minibatches=1), OBS, ACT, [0])
    with pytest.raises(ValueError, match="final observations"), torch.inference_mode():
        fresh.act(torch.zeros(1, OBS))
        fresh.process_step(torch.zeros(1), torch.tensor([False]), torch.tensor([True]))


class Recorder(Plugin):
    def __init__(self, layers, optimizer, seeds):
        super().__init__(layers, optimizer, seeds)
        self.calls = []

    def before_step(self, ctx):
        self.calls.append(("before", ctx.step))

    def after_step(self, ctx):
        shapes = [tuple(layer.features().shape) for layer in self.layers]
        self.calls.append(("after", ctx.step, shapes))
        reloss = ctx.recompute_loss()
        assert reloss.shape == ctx.loss.shape == (2,)
        assert not torch.equal(reloss, ctx.loss)  # the weights moved
        # the minibatch features survive the recomputation
        assert [tuple(layer.features().shape) for layer in self.layers] == shapes

    def after_update(self):
        self.calls.append(("update",))


def test_plugin_hooks_order_and_minibatch_features():
    agent = PPO(small_cfg(), OBS, ACT, [0, 1], envs_per_run=2, optimizer_cfg=OptimizerConfig(lr=1e-2))
    rec = Recorder(agent.hidden_layers(), agent.optimizer, agent.seeds)
    agent.plugins.append(rec)
    env = FakeVecEnv(2, 2)
    rollout_and_update(agent, env, env.reset([0, 1]))
    steps = 2 * 4
    assert len(rec.calls) == 2 * steps + 1
    assert rec.calls[0] == ("before", 0)
    assert rec.calls[1][:2] == ("after", 1)
    assert rec.calls[-2][:2] == ("after", steps)
    assert rec.calls[-1] == ("update",)
    # minibatch of 16 / 4 = 4 samples per run, widths 8 in all four hidden layers
    assert rec.calls[1][2] == [(2, 4, 8)] * 4


def test_grad_clipping_is_per_run():
    agent = PPO(small_cfg(max_grad_norm=2.0), OBS, ACT, [0, 1])
    for param in agent.parameters():
        param.grad = torch.ones_like(param)
        param.grad[1] *= 1e-3  # run 1's gradient is below the threshold and must stay as is
    before = grad_norm(agent.parameters())
    agent._clip_grads(before)
    after = grad_norm(agent.parameters())
    torch.testing.assert_close(after, torch.stack([torch.tensor(2.0), before[1]]), rtol=1e-5, atol=0)


def test_explained_variance_by_hand():
    returns = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    values = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    # run 0 perfect; run 1: residual [-1, 0, 1] has the variance of returns -> 0
    torch.testing.assert_close(explained_variance(values, returns), torch.tensor([1.0, 0.0]))


def test_update_diagnostics_shapes_and_entropy_at_init():
    _, stats = train([0, 1], updates=1)
    out = stats[0]
    expected = {"policy_loss", "value_loss", "approx_kl", "clip_fraction", "grad_norm", "actor_grad_norm"}
    expected |= {"critic_grad_norm"}
    assert expected | {"explained_variance", "entropy", "log_std"} == set(out)  # no p(Z) without UPGD
    assert all(v.shape == (2,) and torch.isfinite(v).all() for v in out.values())
    # one update moves log_std only a little; entropy = sum(log_std) + d/2 log(2 pi e)
    ent = out["log_std"] * ACT + ACT * 0.5 * (1 + math.log(2 * math.pi))
    torch.testing.assert_close(out["entropy"], ent)


def test_state_dict_resume_continues_exactly():
    agent, _ = train([2, 3], updates=1)
    env = FakeVecEnv(2, 2)
    obs = env.reset([2, 3])
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)  # state_dict holds live references: snapshot it
    rollout_and_update(agent, env, obs)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    other = PPO(small_cfg(), OBS, ACT, [2, 3], 2, OptimizerConfig(lr=1e-2))
    other.load_state_dict(state)
    env2 = FakeVecEnv(2, 2)
    rollout_and_update(other, env2, env2.reset([2, 3]))
    for pa, pb in zip(agent.parameters(), other.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert other.num_updates == 2 and other.optimizer_steps == 16


def test_config_errors_name_the_key():
    with pytest.raises(ValidationError, match="minibatches"):
        PPOConfig(steps_per_update=100, minibatches=16)
    with pytest.raises(ValidationError, match="clip"):
        PPOConfig(clip=-1)
    with pytest.raises(ValidationError, match="lr"):
        PPOConfig(lr=3e-4)  # the learning rate belongs to the optimizer section
    with pytest.raises(ValueError, match="envs_per_run"):
        PPO(small_cfg(), OBS, ACT, [0], envs_per_run=3)


def test_value_plasticity_is_the_share_of_the_value_loss_a_step_removed():
    agent = PPO(small_cfg(), OBS, ACT, [0, 1])
    with torch.no_grad():  # the critic predicts 3.0 everywhere: the output layer is its bias
        out = agent.critic.mlp.layers[-1]
        out.weight.zero_()
        out.bias.fill_(3.0)
    obs = torch.randn(2, 5, OBS)
    returns = torch.tensor([[3.0] * 5, [1.0] * 5])  # run 0 fit exactly, run 1 off by 2: loss 4
    features = agent.critic.mlp.features
    got = agent._value_plasticity({"obs": obs, "returns": returns}, torch.tensor([2.0, 8.0]))
    # run 0: 1 - 0 / 2 = 1; run 1: 1 - 4 / 8 = 0.5
    assert got.tolist() == pytest.approx([1.0, 0.5])
    assert agent.critic.mlp.features is features  # the update's features stay for the plug-ins
    # a step that made the loss worse has plasticity 0, not a negative share
    worse = agent._value_plasticity({"obs": obs, "returns": returns}, torch.tensor([1.0, 2.0]))
    assert worse[1].item() == 0.0  # run 1: its loss went from 2 to 4


def test_update_reports_value_plasticity_from_the_last_epoch_under_upgd_only():
    env = FakeVecEnv(2, 1)
    adam = PPO(small_cfg(), OBS, ACT, [0, 1], optimizer_cfg=OptimizerConfig(lr=1e-2))
    assert "value_plasticity" not in rollout_and_update(adam, env, env.reset([0, 1]))[1]
    upgd = OptimizerConfig(kind="adaupgd", lr=1e-2, sigma=0.0)
    agent = PPO(small_cfg(), OBS, ACT, [0, 1], optimizer_cfg=upgd)
    _, stats = rollout_and_update(agent, env, env.reset([0, 1]))
    assert stats["value_plasticity"].shape == (2,)
    assert ((stats["value_plasticity"] >= 0) & (stats["value_plasticity"] <= 1)).all()
    assert (stats["value_plasticity"] > 0).any()  # steps of lr 1e-2 lower the loss they step on
