"""Cost of the plasticity methods next to plain Adam, per optimizer step and per PPO update.

* ``step``: one PPO-sized minibatch step: actor obs 27 -> 256 -> 256 -> 8 and critic
  27 -> 256 -> 256 -> 1 on a minibatch of 128 per run (R runs), forward, backward (of a loss
  that, as PPO's, gives every parameter a gradient, ``log_std`` included),
  ``before_step`` hooks, optimizer step, ``after_step`` hooks. Rows: each method file; each
  method with plug-ins again without them (``(optimizer only)``: e.g. ppo_cbp's Adam has an L2
  term that ppo_tuned's has not, so the plug-in's own cost is the difference of the two rows);
  and ``torch.optim.Adam`` in place of our Adam (the optimizer kind ``adam`` uses).
* ``update``: ``PPO.update()`` (10 epochs x 16 minibatches of a 2048-step rollout of random
  observations and rewards; the rollout itself is not timed).
* ``(stale moments)`` rows: a CBP method with ``reset_optimizer_state: false`` (the reference's
  Adam state, kept stale at a reset): what the per-weight bias correction of reset weights costs
  is the difference to the method's own row.

Methods come from configs/methods; the baseline is ``ppo_tuned`` (Adam, betas 0.99 like the
others). CBP is measured at its steady state: every unit starts mature (as after the first 10,000
steps, where nothing is replaced), and each timer first runs past the Adam saturation horizon
(1,725 steps for betas 0.99), so the weights reset within it, which Adam redoes with their own
bias corrections (rlplast/agents/plasticity/fresh.py), are as many as in a long run: about 44
units per layer at one replacement every 39 steps.

Methods take turns within each repeat, so load from other processes hits all alike; a row's time
is the median over repeats and its ratio the median of the per-repeat ratios to the baseline.
On the CPU the clock is the process's CPU time (``time.process_time``), which a busy machine
disturbs far less than wall time; on CUDA it is wall time with the device synchronised.

Run ``python -m rlplast.bench.plugins`` (``--update`` adds the PPO-update rows).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from rlplast.agents.networks import Actor, Critic, run_generators
from rlplast.agents.plasticity import build_optimizer, build_plugins
from rlplast.agents.plasticity.base import Plugin, StepContext
from rlplast.agents.plasticity.cbp import CBP
from rlplast.agents.plasticity.corrections import saturation_step
from rlplast.agents.ppo import PPO
from rlplast.config import Config, load_config

BASELINE = "ppo_tuned"
METHODS = ("ppo_tuned", "ppo_cbp", "ppo_upgd_protocol", "ppo_redo", "ppo_snp", "ppo_l1")
TORCH_ADAM = "ppo_tuned (torch.optim.Adam)"
OPTIMIZER_ONLY = " (optimizer only)"  # a method without its plug-ins: what the plug-ins add is the difference
STALE_MOMENTS = " (stale moments)"  # CBP keeping the reference's stale Adam state at a reset
OBS, ACT, MINIBATCH = 27, 8, 128


def method_config(method: str) -> Config:
    """The method on slippery Ant; ``"<method> (optimizer only)"`` drops its plug-ins,
    ``"<method> (stale moments)"`` turns off CBP's reset of the optimizer state."""
    if method.endswith(OPTIMIZER_ONLY):
        return load_config("slippery_ant", method.removesuffix(OPTIMIZER_ONLY)).model_copy(update={"plugins": []})
    if method.endswith(STALE_MOMENTS):
        cfg = load_config("slippery_ant", method.removesuffix(STALE_MOMENTS))
        stale = [p.model_copy(update={"reset_optimizer_state": False}) if p.kind == "cbp" else p for p in cfg.plugins]
        return cfg.model_copy(update={"plugins": stale})
    return load_config("slippery_ant", method)


def resets_optimizer_state(method: str) -> bool:
    """Whether ``method`` has a CBP plug-in that resets the optimizer state of replaced units."""
    return any(p.kind == "cbp" and p.reset_optimizer_state for p in load_config("slippery_ant", method).plugins)


def steady_state(cfg: Config, plugins: Sequence[Plugin]) -> int:
    """Put CBP plug-ins past their maturity threshold; the optimizer steps to run before timing
    (CBP: the Adam saturation horizon, over which its fresh set of reset weights fills up)."""
    cbps = [p for p in plugins if isinstance(p, CBP)]
    for cbp in cbps:
        cbp.clock.start_mature()
    resets = any(cbp.cfg.reset_optimizer_state for cbp in cbps)
    return saturation_step(cfg.optimizer.betas, torch.float32) + 1 if resets else 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device, wall: bool = False) -> Callable[[], float]:
    """CPU time of this process on the CPU (unless ``wall``), wall time (after synchronising) on CUDA."""
    return time.perf_counter if wall or device.type == "cuda" else time.process_time


def minibatch_stepper(method: str, runs: int, device: torch.device) -> Callable[[], None]:
    """A function doing one full minibatch step of ``method`` on PPO-sized networks."""
    cfg = method_config(BASELINE if method == TORCH_ADAM else method)
    seeds = list(range(runs))
    actor, critic = Actor(runs, OBS, ACT, cfg.agent.hidden, "relu"), Critic(runs, OBS, cfg.agent.hidden, "relu")
    actor.mlp.reset_parameters(run_generators(seeds, 1))
    critic.mlp.reset_parameters(run_generators(seeds, 2))
    actor.to(device)
    critic.to(device)
    params = [*actor.parameters(), *critic.parameters()]
    if method == TORCH_ADAM:
        o = cfg.optimizer
        optimizer = torch.optim.Adam(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    else:
        optimizer = build_optimizer(cfg.optimizer, params, seeds)
    plugins = build_plugins(cfg.plugins, [*actor.mlp.hidden_layers(), *critic.mlp.hidden_layers()], optimizer, seeds)
    settle = steady_state(cfg, plugins)
    obs = torch.randn(runs, MINIBATCH, OBS, device=device)
    target = torch.randn(runs, MINIBATCH, ACT, device=device)
    ctx = StepContext(step=0)

    def step() -> None:
        mean, std = actor(obs)
        # a Gaussian negative log-likelihood: every parameter has a gradient (log_std too), as in PPO
        loss = ((mean - target) / std).square().mean() + std.log().mean() + critic(obs).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for plugin in plugins:
            plugin.before_step(ctx)
        optimizer.step()
        ctx.step += 1
        for plugin in plugins:
            plugin.after_step(ctx)

    for _ in range(settle):
        step()
    return step


class UpdateTime(NamedTuple):
    """Seconds one ``PPO.update()`` took: by wall clock (the device synchronised) and in this
    process's CPU time (every thread's)."""

    wall: float
    cpu: float


def ppo_updater(method: str, runs: int, device: torch.device) -> Callable[[], UpdateTime]:
    """A function filling a PPO rollout with random data (untimed) and timing ``update()``."""
    cfg = method_config(method)
    seeds = list(range(runs))
    agent = PPO(cfg.agent, OBS, ACT, seeds, 1, cfg.optimizer, cfg.plugins, device)
    settle = steady_state(cfg, agent.plugins)
    gen = torch.Generator().manual_seed(0)
    never = torch.zeros(runs, dtype=torch.bool, device=device)

    def update() -> UpdateTime:
        with torch.inference_mode():
            for _ in range(agent.rollout_len):
                obs = torch.randn(runs, OBS, generator=gen).to(device)
                agent.act(obs)
                agent.process_step(torch.randn(runs, generator=gen).to(device), never, never, obs)
            agent.compute_returns(torch.randn(runs, OBS, generator=gen).to(device))
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        agent.update()
        _sync(device)
        return UpdateTime(time.perf_counter() - wall, time.process_time() - cpu)

    while agent.optimizer_steps < settle:
        update()
    return update


def _alternate(timers: dict[str, Callable[[], float]], repeats: int, baseline: str) -> list[dict[str, Any]]:
    """Run the timers in turns ``repeats`` times; median seconds and median ratio to ``baseline``."""
    seconds: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            seconds[name].append(timer())
    rows = []
    for name, values in seconds.items():
        ratios = [v / b for v, b in zip(values, seconds[baseline], strict=True)]
        rows.append({"method": name, "seconds": statistics.median(values), "ratio": statistics.median(ratios)})
    return rows


def measure_plugin_overhead(
    methods: Sequence[str] = METHODS,
    runs: int = 1,
    steps: int = 200,
    repeats: int = 5,
    updates: bool = False,
    device: str = "cpu",
    warmup: int = 100,
    wall: bool = False,
) -> list[dict[str, Any]]:
    """Per-step (and optionally per-update) cost of each method, side by side with the baseline
    (``wall``: by wall clock also on the CPU, where process CPU time is the default).

    Returns:
        One dict per (bench, method): ``bench`` ("step" or "update"), ``method``, ``runs``,
        ``ms`` (median per step or per update), ``ratio`` (to ``ppo_tuned``), ``device``,
        ``clock`` ("cpu" process time or "wall").
    """
    dev = torch.device(device)
    names = [BASELINE, *[m for m in methods if m != BASELINE]]
    names += [m + STALE_MOMENTS for m in names if resets_optimizer_state(m)]
    names += [m + OPTIMIZER_ONLY for m in names if method_config(m).plugins and not m.endswith(STALE_MOMENTS)]
    names += [TORCH_ADAM]
    steppers = {name: minibatch_stepper(name, runs, dev) for name in names}
    clock = _clock(dev, wall)
    clock_name = "wall" if wall or dev.type == "cuda" else "cpu"

    def timed(step: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            _sync(dev)
            start = clock()
            for _ in range(steps):
                step()
            _sync(dev)
            return (clock() - start) / steps

        return run

    for step in steppers.values():  # warm up (CBP has run to its steady state already)
        for _ in range(warmup):
            step()
    meta = {"runs": runs, "device": device, "clock": clock_name}
    rows = [
        {"bench": "step", "method": r["method"], "ms": r["seconds"] * 1e3, "ratio": r["ratio"], **meta}
        for r in _alternate({n: timed(s) for n, s in steppers.items()}, repeats, BASELINE)
    ]
    if updates:
        updaters = {name: ppo_updater(name, runs, dev) for name in names if name != TORCH_ADAM}
        for update in updaters.values():
            update()  # warm up
        pick = {name: _picking(update, clock_name) for name, update in updaters.items()}
        rows += [
            {"bench": "update", "method": r["method"], "ms": r["seconds"] * 1e3, "ratio": r["ratio"], **meta}
            for r in _alternate(pick, max(1, repeats // 2), BASELINE)
        ]
    return rows


def _picking(update: Callable[[], UpdateTime], clock: str) -> Callable[[], float]:
    """``update`` returning the seconds of one clock: ``"wall"`` or ``"cpu"``."""
    return lambda: getattr(update(), clock)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs in the group (R)")
    parser.add_argument("--steps", type=int, default=200, help="minibatch steps per timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--update", action="store_true", help="also time PPO.update() per method")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--wall", action="store_true", help="wall clock on the CPU too (default: process CPU time)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure_plugin_overhead(
        runs=args.runs,
        steps=args.steps,
        repeats=args.repeats,
        updates=args.update,
        device=args.device,
        wall=args.wall,
    )
    clock = rows[0]["clock"]
    print(f"{'bench':8} {'method':30} {'ms':>9} {'x ' + BASELINE:>14}   (R={args.runs}, {args.device}, {clock} time)")
    for row in rows:
        print(f"{row['bench']:8} {row['method']:30} {row['ms']:9.3f} {row['ratio']:14.3f}")


if __name__ == "__main__":
    main()
