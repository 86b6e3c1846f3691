"""``rlplast sanity``: the plasticity methods on the slowly-changing regression (PROTOCOL.md 8).

Every method learns the same per-seed streams online (batch 1, squared error) with the paper's
learner: one hidden layer of 5 ReLU units, Kaiming-uniform init (U(+-sqrt(2) sqrt(3/fan_in)) for
the hidden layer, U(+-sqrt(3/5)) for the linear output, biases 0). The methods use the same
``MLP`` / ``BatchedLinear`` networks, optimizers and plug-ins as PPO.

Speed: online learning is a loop of tiny steps, so Python and per-op overhead set the cost, not
arithmetic. All methods x all seeds are therefore one run group: one batched forward pass and
hand-written backward pass per example (about a dozen tensor ops, checked against autograd in
the tests), written into gradient buffers allocated once. Each method owns a slice of the run
dimension and its plug-ins act on views of the group's parameters (:class:`RunSlice`), so a run
behaves exactly as alone; methods with the same stateless optimizer (plain SGD) share one
optimizer step over their joint slice.

Method settings (Dohare et al. 2024 use step size 0.01 for backprop on this problem and CBP with
replacement rate 1e-4, maturity threshold 100, decay 0.99; the other values are our reading of the
paper's sweeps, e.g. the reference configs ``cfg/sgd/bp/relu_wd.json`` / ``relu_snp.json``):

- ``backprop``: SGD, step size 0.01.
- ``l2``: SGD 0.01 with coupled L2 (weight decay) 1e-3.
- ``snp``: SGD 0.01, then shrink 1e-4 (= weight decay 1e-2 x step size) and noise N(0, 1e-4^2)
  on every weight and bias after each step.
- ``cbp``: SGD 0.01 with continual backprop (contribution utility, rho 1e-4, m 100, eta 0.99,
  new weights from the Kaiming init).
- ``upgd``: UPGD (SGD form), step size 0.01, utility decay 0.999, perturbation sigma 1e-3.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from rlplast.agents.networks import MLP, BatchedLinear, HiddenLayer, run_generators
from rlplast.agents.plasticity import (
    OptimizerConfig,
    Plugin,
    PluginConfig,
    StepContext,
    build_optimizer,
    build_plugins,
)
from rlplast.agents.plasticity.cbp import CBPConfig
from rlplast.agents.plasticity.shrink_perturb import ShrinkPerturbConfig
from rlplast.sanity_problem import ProblemConfig, SlowlyChangingRegression

SALT_INIT = 0x1E4
RELU_GAIN = math.sqrt(2.0)
TAIL = 0.1  # the comparison's window: the last 10% of the stream


class SanityMethod(BaseModel):
    """A method of the sanity check: its optimizer and plug-ins."""

    model_config = ConfigDict(extra="forbid")

    optimizer: OptimizerConfig
    plugins: list[PluginConfig] = Field(default_factory=list)


SGD = OptimizerConfig(kind="sgd", lr=0.01)
METHODS: dict[str, SanityMethod] = {
    "backprop": SanityMethod(optimizer=SGD),
    "l2": SanityMethod(optimizer=SGD.model_copy(update={"weight_decay": 1e-3})),
    "snp": SanityMethod(optimizer=SGD, plugins=[ShrinkPerturbConfig(shrink=1e-4, noise_std=1e-4)]),
    "cbp": SanityMethod(
        optimizer=SGD,
        plugins=[CBPConfig(replacement_rate=1e-4, maturity_threshold=100, decay_rate=0.99, init_gain=RELU_GAIN)],
    ),
    "upgd": SanityMethod(optimizer=OptimizerConfig(kind="upgd", lr=0.01, beta_utility=0.999, sigma=1e-3)),
}


class RunSlice:
    """Runs ``[start, stop)`` of a batched MLP, seen as a network of their own.

    Its parameters are views of the MLP's (an optimizer stepping them updates the MLP), its
    ``features`` are slices of the MLP's last forward pass, and its gradients are slices of the
    MLP's gradient buffers (allocated before the slice). Plug-ins and optimizers built on it act
    on these runs only.
    """

    def __init__(self, mlp: MLP, start: int, stop: int, name: str):
        self.mlp, self.start, self.stop, self.name = mlp, start, stop, name
        self.linears = []
        for layer in mlp.layers:
            view = BatchedLinear(stop - start, layer.in_features, layer.out_features)
            view.weight = nn.Parameter(layer.weight.detach()[start:stop])
            view.bias = nn.Parameter(layer.bias.detach()[start:stop])
            self.linears.append(view)
        self.params = [p for lin in self.linears for p in (lin.weight, lin.bias)]
        for view, full in zip(self.params, mlp.parameters(), strict=True):
            if full.grad is not None:  # the MLP's gradient buffers, shared
                view.grad = full.grad[start:stop]

    @property
    def features(self) -> list[Tensor]:
        """This slice's part of the MLP's last hidden features, ``[stop - start, B, width]`` each."""
        return [f[self.start : self.stop] for f in self.mlp.features]

    def parameters(self) -> list[nn.Parameter]:
        return self.params

    def hidden_layers(self) -> list[HiddenLayer]:
        return [
            HiddenLayer(f"{self.name}.{i}", self, i, self.linears[i], self.linears[i + 1], self.mlp.activation)
            for i in range(len(self.linears) - 1)
        ]


@dataclass
class _Method:
    """A method's runs and plug-ins."""

    view: RunSlice
    plugins: list[Plugin]


@dataclass
class _OptimizerGroup:
    """Methods stepped by one optimizer (over the union of their runs)."""

    optimizer: torch.optim.Optimizer
    methods: list[_Method]
    ctx: StepContext = field(default_factory=lambda: StepContext(step=0))

    def step(self) -> None:
        """The learner's hook order: plug-ins' before_step, the step, plug-ins' after_step."""
        ctx = self.ctx
        for method in self.methods:
            for plugin in method.plugins:
                plugin.before_step(ctx)
        self.optimizer.step()
        ctx.step += 1
        for method in self.methods:
            for plugin in method.plugins:
                plugin.after_step(ctx)


@dataclass
class SanityResult:
    """Errors of a sanity run.

    Attributes:
        methods: method names, length M.
        seeds: seeds, length S.
        bin_ends: ``[bins]`` examples seen at the end of each bin.
        errors: ``[M, S, bins]`` mean squared error per bin.
        tail: ``[M, S]`` mean squared error over the last 10% of the stream.
        seconds: wall time of the learning.
    """

    methods: list[str]
    seeds: list[int]
    bin_ends: list[int]
    errors: Tensor
    tail: Tensor
    seconds: float

    def table(self) -> str:
        """Mean error over seeds per bin, one column per method, and the last-10% row."""
        width = max(12, *(len(m) + 2 for m in self.methods))
        head = f"{'examples':>12}" + "".join(f"{m:>{width}}" for m in self.methods)
        mean = self.errors.mean(1)  # [M, bins]
        rows = [
            f"{end:>12,}" + "".join(f"{v:>{width}.4f}" for v in mean[:, b].tolist())
            for b, end in enumerate(self.bin_ends)
        ]
        tail = f"{'last 10%':>12}" + "".join(f"{v:>{width}.4f}" for v in self.tail.mean(1).tolist())
        return "\n".join([head, *rows, tail])

    def write_csv(self, path: str | Path) -> None:
        """One row per method, seed and bin: ``method,seed,examples,mse``."""
        lines = ["method,seed,examples,mse"]
        for i, name in enumerate(self.methods):
            for j, seed in enumerate(self.seeds):
                for b, end in enumerate(self.bin_ends):
                    lines.append(f"{name},{seed},{end},{self.errors[i, j, b].item():.6g}")
        Path(path).write_text("\n".join(lines) + "\n")

    def plot(self, path: str | Path) -> None:
        """Error per bin (mean over seeds, shaded +-1 standard error) for every method."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for i, name in enumerate(self.methods):
            mean = self.errors[i].mean(0)
            err = self.errors[i].std(0) / math.sqrt(len(self.seeds)) if len(self.seeds) > 1 else 0 * mean
            ax.plot(self.bin_ends, mean, label=name)
            ax.fill_between(self.bin_ends, mean - err, mean + err, alpha=0.2)
        ax.set_xlabel("examples")
        ax.set_ylabel("mean squared error per bin")
        ax.set_title(f"slowly-changing regression, {len(self.seeds)} seeds")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


class OnlineLearner:
    """Every method x seed of a sanity run as one batched one-hidden-layer ReLU MLP.

    Runs are laid out method by method (methods sharing a stateless optimizer next to each
    other); ``order[i]`` is the position in the layout of the i-th requested method.

    Args:
        methods: names from :data:`METHODS`.
        seeds: the seeds (every method runs every seed).
        problem: the regression problem (its ``num_bits`` is the input size).
        hidden: hidden units.
    """

    def __init__(self, methods: Sequence[str], seeds: Sequence[int], problem: ProblemConfig, hidden: int):
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"unknown sanity methods {unknown or methods}; known: {', '.join(METHODS)}")
        # plain SGD holds no per-weight state, so methods with the same SGD can share its step
        shared: dict[str, list[str]] = {}
        for name in methods:
            cfg = METHODS[name].optimizer
            key = cfg.model_dump_json() if cfg.kind == "sgd" else name
            shared.setdefault(key, []).append(name)
        layout = [name for names in shared.values() for name in names]
        self.order = [layout.index(name) for name in methods]
        num_seeds = len(seeds)
        group_seeds = [s for _ in layout for s in seeds]
        self.mlp = MLP(len(group_seeds), problem.num_bits, [hidden], 1, "relu", name="learner")
        self.mlp.reset_parameters(run_generators(group_seeds, SALT_INIT))
        with torch.no_grad():
            self.mlp.layers[0].weight.mul_(RELU_GAIN)  # Kaiming uniform for ReLU; the output stays LeCun
        for p in self.mlp.parameters():
            p.grad = torch.zeros_like(p)  # written in place by forward_backward
        self.groups = []
        for names in shared.values():
            start = layout.index(names[0]) * num_seeds
            union = RunSlice(self.mlp, start, start + len(names) * num_seeds, "+".join(names))
            optimizer = build_optimizer(METHODS[names[0]].optimizer, union.parameters(), seeds * len(names))
            members = []
            for k, name in enumerate(names):
                view = (
                    union
                    if len(names) == 1
                    else RunSlice(self.mlp, start + k * num_seeds, start + (k + 1) * num_seeds, name)
                )
                members.append(
                    _Method(view, build_plugins(METHODS[name].plugins, view.hidden_layers(), optimizer, seeds))
                )
            self.groups.append(_OptimizerGroup(optimizer, members))

    @torch.no_grad()
    def forward_backward(self, x: Tensor, y: Tensor) -> Tensor:
        """Prediction error and squared-error gradients for one example per run.

        Args:
            x: ``[R, 1, m]`` inputs.
            y: ``[R, 1, 1]`` targets.

        Returns:
            ``[R, 1, 1]`` prediction minus target; the gradients of the squared error are in
            the parameters' ``.grad`` and the hidden features in ``mlp.features``.
        """
        (inc, out) = self.mlp.layers
        pre = torch.baddbmm(inc.bias.unsqueeze(1), x, inc.weight.transpose(1, 2))  # [R, 1, H]
        hidden = pre.relu()
        self.mlp.features = [hidden]
        diff = torch.baddbmm(out.bias.unsqueeze(1), hidden, out.weight.transpose(1, 2)) - y
        grad_out = diff * 2  # d(diff^2) / d(prediction)
        torch.mul(grad_out, hidden, out=out.weight.grad)  # [R, 1, H]
        out.bias.grad.copy_(grad_out.view_as(out.bias))
        grad_pre = (out.weight * grad_out).mul_(pre > 0)  # [R, 1, H]
        torch.mul(grad_pre.transpose(1, 2), x, out=inc.weight.grad)  # [R, H, m]
        inc.bias.grad.copy_(grad_pre.view_as(inc.bias))
        return diff

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        """Online learning on ``x [R, n, m]``, ``y [R, n]``, one example at a time; returns the
        errors ``[R, n]`` (prediction minus target, before each step)."""
        n = x.shape[1]
        diffs = torch.empty(x.shape[0], n)
        y = y.unsqueeze(-1)
        for t in range(n):
            diffs[:, t] = self.forward_backward(x[:, t : t + 1], y[:, t : t + 1]).view(-1)
            for group in self.groups:
                group.step()
        return diffs


def run_sanity(
    methods: Sequence[str],
    seeds: Sequence[int],
    examples: int,
    bins: int = 30,
    problem: ProblemConfig | None = None,
    hidden: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> SanityResult:
    """Every method on every seed's stream of ``examples`` examples.

    Args:
        methods: names from :data:`METHODS`.
        seeds: one stream (and one learner init) per seed, shared by the methods.
        examples: stream length.
        bins: the error is averaged over ``bins`` equal bins of examples.
        problem: the regression problem (default: the paper's).
        hidden: the learner's hidden units.
        progress: called as ``progress(done, examples)`` after each flip period.
    """
    if examples < 1 or bins < 1 or bins > examples:
        raise ValueError(f"need 1 <= bins <= examples, got bins={bins}, examples={examples}")
    problem = problem or ProblemConfig()
    methods, seeds = list(methods), [int(s) for s in seeds]
    learner = OnlineLearner(methods, seeds, problem, hidden)
    stream = SlowlyChangingRegression(problem, seeds)
    num_runs = len(methods) * len(seeds)
    bin_size = math.ceil(examples / bins)
    bins = math.ceil(examples / bin_size)  # no empty bin at the end
    tail_start = examples - max(1, round(TAIL * examples))
    sums = torch.zeros(num_runs, bins, dtype=torch.float64)
    counts = torch.zeros(bins, dtype=torch.float64)
    tail = torch.zeros(num_runs, dtype=torch.float64)
    done, start = 0, time.perf_counter()
    while done < examples:
        x, y = stream.next_period()
        n = min(x.shape[1], examples - done)
        x, y = x[:, :n].repeat(len(methods), 1, 1), y[:, :n].repeat(len(methods), 1)
        squared = learner.learn(x, y).double().square()  # [R, n], runs in the learner's layout
        index = torch.arange(done, done + n)
        sums.index_add_(1, index // bin_size, squared)
        counts.index_add_(0, index // bin_size, torch.ones(n, dtype=torch.float64))
        tail += squared[:, index >= tail_start].sum(1)
        done += n
        if progress is not None:
            progress(done, examples)
    seconds = time.perf_counter() - start
    shape = (len(methods), len(seeds))
    order = torch.tensor(learner.order)
    return SanityResult(
        methods=methods,
        seeds=seeds,
        bin_ends=[min(examples, (b + 1) * bin_size) for b in range(bins)],
        errors=(sums / counts.clamp_min(1)).float().view(*shape, bins)[order],
        tail=(tail / (examples - tail_start)).float().view(shape)[order],
        seconds=seconds,
    )
