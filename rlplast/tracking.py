"""The plasticity tracker: the stateful part of the metrics that the training loop feeds.

Usage in a training loop (``networks`` are the :class:`~rlplast.agents.networks.MLP` s of the
actor and critic; every tensor has a leading run dimension R)::

    tracker = PlasticityTracker(cfg, {"actor": actor.mlp, "critic": critic.mlp}, num_runs=R)
    for each vector step:
        action = actor(obs); value = critic(obs)      # the acting forward passes
        tracker.observe()                             # keeps net.features in the window
        ... env step; run_step += E ...               # E envs per run
        for tag, values in tracker.maybe_compute(run_step).items():
            log(tag, values)                          # values: [R], one per run
    after each update:
        for tag, values in tracker.after_update().items():
            log(tag, values)                          # the weight change of that update

``observe()`` takes ``net.features`` (``[R, E, width]`` per hidden layer, the post-activation
outputs of the last forward pass) of every tracked network into the window of the last
``window`` rows (env steps) of each run. It is called every env step, so it copies nothing: it
keeps references to the feature tensors the forward pass made anyway (at most ``window + E - 1``
rows per layer are held) and concatenates them only when metrics are computed. A copy per step
into a preallocated ring buffer measured 7-10 us per step for four layers, 3-5 % of PPO's own cost
at R = 1; observe() with references costs 2-3 us (``python -m rlplast.bench.metrics``). The
forward pass must therefore hand out new tensors each time (as :class:`MLP` does); a features
tensor written in place at the same address is detected and refused. ``observe()`` must follow
a fresh forward pass of every tracked network: calling it twice on the same features is an
error, since it would count the same steps twice.

``maybe_compute(run_step)`` takes the env steps taken by each run so far and returns the metrics
whose interval boundary was crossed since the previous call (``run_step`` advances by E per
vector step, so a boundary fires when a multiple of the interval is crossed, not only when hit):
every ``interval`` steps the cheap metrics, every ``rank_interval`` steps the ranks, which need an
SVD per layer (one batched ``svdvals`` over the run group). The effective rank comes from the
same singular values as the stable rank, so it shares ``rank_interval`` rather than paying an
SVD every ``interval``. Before the window is full, the metrics use the rows seen so far.

Tags (``tag(network, metric, layer)`` builds them), values ``[R]`` on the tracker's device:

``plasticity/<net>/<metric>``, network level:
    - ``stable_rank``, ``stable_rank_pct`` (percent of width), ``effective_rank``: on the LAST
      hidden layer's window (every ``rank_interval``).
    - ``dormant_fraction``: fraction in [0, 1] (not percent) of all hidden units of the network
      active (h > 0) on at most ``dormant_threshold`` of the window's rows.
    - ``redo_dormant_fraction_tau<tau>`` (e.g. ``..._tau0.0``, ``..._tau0.1``): fraction in
      [0, 1] of all hidden units whose ReDo score is <= tau (each layer normalised by its own mean).
    - ``feature_norm``: mean L2 norm of the last hidden layer's feature vectors.
    - ``weight_magnitude``: mean |w| over every weight of every Linear layer (biases excluded).
    - ``weight_change``: mean |w - w_prev| over the same weights per update (PROTOCOL.md
      section 6): :meth:`PlasticityTracker.after_update`, called by the learner after each
      update, compares the weights with those at the previous call (at construction for the
      first), so the value is what one update (its optimizer steps and plug-ins) moved them.

``plasticity/<net>/layer<i>/<metric>``, per layer when ``per_layer``: layer i is the i-th Linear
layer of the MLP (0-based, the output layer last) and, for a hidden layer, its post-activation
output. Hidden layers get every metric above (ranks of that layer; ``dormant_fraction`` and the
ReDo fractions of that layer's units); the output layer gets ``weight_magnitude`` and
``weight_change``. The paper's weight-magnitude plot is ``plasticity/actor/layer1/weight_magnitude``
(the 256 x 256 layer).

Gradient norm, policy entropy and UPGD's p(Z) are per update, not per window: the learner
computes them with :mod:`rlplast.metrics` (``grad_norm``, ``gaussian_entropy``,
``upgd_plasticity``) and logs them under ``tag(net, "grad_norm")``, ``losses/entropy`` and
``tag("critic", "upgd_plasticity")`` (p(Z) of the critic's value loss, which is non-negative as
p(Z) needs; rlplast's PPO only, not the SB3 rows).

``state_dict()`` holds the window contents, the weight snapshot and the step counter (tensors and
ints only, ``torch.load(weights_only=True)`` safe), about 4 MB per run for two 256-256 networks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

from rlplast import metrics
from rlplast.agents.networks import MLP

PREFIX = "plasticity"


class MetricsConfig(BaseModel):
    """How and when the plasticity metrics are computed (steps are env steps of each run)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    networks: tuple[str, ...] = Field(("actor", "critic"), min_length=1)
    window: int = Field(1000, ge=1, description="rows (env steps) per run kept for the feature metrics")
    interval: int = Field(1000, ge=1, description="env steps per run between the cheap metrics")
    rank_interval: int = Field(10_000, ge=1, description="env steps per run between stable/effective ranks")
    stable_rank_delta: float = Field(0.01, ge=0, lt=1)
    dormant_threshold: float = Field(0.01, ge=0, le=1)
    redo_taus: tuple[Annotated[float, Field(ge=0)], ...] = (0.0, 0.1)
    per_layer: bool = True

    @field_validator("networks", "redo_taus")
    @classmethod
    def _unique(cls, value: tuple) -> tuple:
        if len(set(value)) != len(value):
            raise ValueError(f"entries must be unique, got {list(value)}")
        return value


def tag(network: str, metric: str, layer: int | None = None) -> str:
    """``plasticity/<network>/<metric>`` or ``plasticity/<network>/layer<layer>/<metric>``."""
    return f"{PREFIX}/{network}/{metric}" if layer is None else f"{PREFIX}/{network}/layer{layer}/{metric}"


def redo_metric(tau: float) -> str:
    """Metric name of the ReDo dormant fraction at ``tau``, e.g. ``redo_dormant_fraction_tau0.1``."""
    return f"redo_dormant_fraction_tau{tau}"


class PlasticityTracker:
    """Rolling feature windows and weight snapshots of a run group's networks; see the module doc.

    Args:
        cfg: the metrics config; ``cfg.networks`` names the entries of ``networks`` to track.
        networks: name -> MLP with ``num_runs`` runs (e.g. ``{"actor": actor.mlp, ...}``).
        num_runs: R, the leading dimension of every weight and feature.
        device: where the weight snapshots and a loaded window live; defaults to the networks'
            device. Observed features stay where the forward pass made them.
    """

    def __init__(
        self,
        cfg: MetricsConfig,
        networks: Mapping[str, MLP],
        num_runs: int,
        device: torch.device | str | None = None,
    ):
        missing = [n for n in cfg.networks if n not in networks]
        if cfg.enabled and missing:
            raise ValueError(f"metrics.networks names {missing}, not among the networks given: {sorted(networks)}")
        self.cfg = cfg
        self.num_runs = num_runs
        self.networks = {n: networks[n] for n in cfg.networks} if cfg.enabled else {}
        for name, net in self.networks.items():
            if not net.hidden_layers():
                raise ValueError(f"network {name!r} has no hidden layer to track")
            if net.num_runs != num_runs:
                raise ValueError(f"network {name!r} has {net.num_runs} runs, expected num_runs={num_runs}")
        if device is None:
            nets = list(self.networks.values())
            device = nets[0].layers[0].weight.device if nets else "cpu"
        self.device = torch.device(device)
        self._widths = {name: [layer.width for layer in net.hidden_layers()] for name, net in self.networks.items()}
        self._last_weights = {
            name: [layer.weight.detach().to(self.device, copy=True) for layer in net.layers]
            for name, net in self.networks.items()
        }
        # One chunk per observe(): the features of every network and layer, flat, [R, B, width] each.
        self._chunks: deque[tuple[Tensor, ...]] = deque()
        self._chunk_rows: deque[int] = deque()
        self._held = 0  # rows held, window <= held < window + B once enough were seen
        self._cache: dict[str, list[Tensor]] | None = None
        self._last_step = 0
        self._seen: dict[str, list[Tensor] | None] = dict.fromkeys(self.networks)
        self._checked: dict[str, torch.Size | None] = dict.fromkeys(self.networks)

    # ---- fed every env step -------------------------------------------------------------------

    def observe(self) -> None:
        """Add the features of every tracked network's last forward pass to the window.

        Each ``net.features[i]`` is ``[R, B, width_i]``; B (envs per run) may vary between calls.
        The shapes are checked in full when the first layer's shape changes (an MLP fixes the
        rest), so the common call costs a few attribute reads and one deque append.
        """
        chunk: list[Tensor] = []
        seen, checked, rechecked = self._seen, self._checked, False
        for name, net in self.networks.items():
            feats = net.features
            if feats is seen[name] or not feats or feats[0].shape != checked[name]:
                self._check(name, feats)
                rechecked = True
            seen[name] = feats
            chunk += feats
        if not chunk:
            return
        if rechecked:  # every network's rows agree with the others' (their shapes are the checked ones)
            rows = {name: shape[1] for name, shape in checked.items()}
            if len(set(rows.values())) > 1:
                raise ValueError(f"features of the networks have different numbers of rows B: {rows}")
        last = self._chunks[-1] if self._chunks else None
        if last is not None and chunk[0].data_ptr() == last[0].data_ptr():
            raise RuntimeError("features were written in place over the last observed ones; hand out new tensors")
        rows = chunk[0].shape[1]
        self._chunks.append(tuple(chunk))
        self._chunk_rows.append(rows)
        self._held += rows
        window, chunk_rows = self.cfg.window, self._chunk_rows
        while self._held - chunk_rows[0] >= window:  # the oldest chunk is out of the window
            self._chunks.popleft()
            self._held -= chunk_rows.popleft()
        self._cache = None

    def _check(self, name: str, feats: list[Tensor]) -> None:
        """Raise if ``feats`` is stale or not ``[R, B, width_i]``; else remember its first shape."""
        if not feats:
            raise RuntimeError(f"network {name!r} has no features: run its forward pass before observe()")
        if feats is self._seen[name]:
            raise RuntimeError(f"network {name!r} has run no forward pass since the last observe()")
        shapes = [tuple(f.shape) for f in feats]
        rows = shapes[0][1] if len(shapes[0]) == 3 else -1
        widths = self._widths[name]
        if shapes != [(self.num_runs, rows, w) for w in widths]:
            raise ValueError(
                f"features of {name!r} have shapes {shapes}; expected [R, B, width] per hidden layer with "
                f"R={self.num_runs} and widths {widths}"
            )
        self._checked[name] = feats[0].shape

    def windows(self) -> dict[str, list[Tensor]]:
        """The window of every hidden layer, rows in the order they were observed (oldest first).

        Returns:
            ``{network: [[R, n, width_i] per hidden layer]}`` with n = min(rows observed, window).
        """
        if self._cache is None:
            if self._chunks:
                flat = [torch.cat(column, dim=1)[:, -self.cfg.window :] for column in zip(*self._chunks, strict=True)]
            else:
                flat = [
                    torch.zeros(self.num_runs, 0, w, device=self.device) for ws in self._widths.values() for w in ws
                ]
            layers = iter(flat)
            self._cache = {name: [next(layers) for _ in ws] for name, ws in self._widths.items()}
        return self._cache

    # ---- fed at the logging points ------------------------------------------------------------

    def maybe_compute(self, run_step: int) -> dict[str, Tensor]:
        """The metrics whose interval boundary lies in (previous run_step, run_step].

        Args:
            run_step: env steps taken by each run so far (non-decreasing between calls).

        Returns:
            ``{tag: [R]}``; empty when nothing is due.
        """
        if run_step < self._last_step:
            raise ValueError(f"run_step went back from {self._last_step} to {run_step}")
        cheap, ranks = self._crossed(run_step, self.cfg.interval), self._crossed(run_step, self.cfg.rank_interval)
        self._last_step = run_step
        return self.compute(cheap=cheap, ranks=ranks) if cheap or ranks else {}

    def due(self, run_step: int) -> bool:
        """Whether :meth:`maybe_compute` at ``run_step`` would compute anything."""
        return self._crossed(run_step, self.cfg.interval) or self._crossed(run_step, self.cfg.rank_interval)

    def _crossed(self, run_step: int, interval: int) -> bool:
        return run_step // interval > self._last_step // interval

    @torch.no_grad()
    def compute(self, cheap: bool = True, ranks: bool = True) -> dict[str, Tensor]:
        """Compute now, whatever the step: the cheap metrics and/or the ranks. Feature metrics
        are skipped while the window is empty. Returns ``{tag: [R]}`` (float32)."""
        out: dict[str, Tensor] = {}
        windows = self.windows() if self._held else {}
        for name, net in self.networks.items():
            if cheap:
                weights = [layer.weight.detach() for layer in net.layers]
                out |= self._per_weight(name, "weight_magnitude", [metrics.weight_magnitude(w) for w in weights])
            if cheap and name in windows:
                out |= self._feature_metrics(name, windows[name])
            if ranks and name in windows:
                out |= self._rank_metrics(name, windows[name])
        return {k: v.float() for k, v in out.items()}

    @torch.no_grad()
    def after_update(self) -> dict[str, Tensor]:
        """``weight_change``: what the weights moved since the previous call (the learner calls
        this after every update, so one update's change; at construction for the first call).
        Returns ``{tag: [R]}`` (float32), empty when metrics are off."""
        out: dict[str, Tensor] = {}
        for name, net in self.networks.items():
            weights = [layer.weight.detach() for layer in net.layers]
            previous = self._last_weights[name]
            changes = [metrics.weight_change(w, p) for w, p in zip(weights, previous, strict=True)]
            out |= self._per_weight(name, "weight_change", changes)
            for p, w in zip(previous, weights, strict=True):
                p.copy_(w)  # in place: the snapshot stays a normal tensor even under inference_mode
        return {k: v.float() for k, v in out.items()}

    def _per_weight(self, name: str, metric: str, per_layer: list[Tensor]) -> dict[str, Tensor]:
        """A mean over the weights of each Linear layer (``[R]`` each) as tags: pooled over the
        network by layer size (every weight counts once), and per layer when ``per_layer``."""
        values = torch.stack(per_layer)  # [L, R]
        sizes = [layer.weight[0].numel() for layer in self.networks[name].layers]
        share = torch.tensor(sizes, dtype=values.dtype, device=values.device)
        out = {tag(name, metric): (values * (share / share.sum()).unsqueeze(1)).sum(0)}
        if self.cfg.per_layer:
            out |= {tag(name, metric, i): v for i, v in enumerate(values)}
        return out

    def _feature_metrics(self, name: str, feats: list[Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        # Per-layer unit masks [R, width_i], pooled over layers for the network-level share.
        masks = {"dormant_fraction": [metrics.dormant_mask(f, cfg.dormant_threshold) for f in feats]}
        scores = [metrics.redo_scores(f) for f in feats]
        for tau in cfg.redo_taus:
            masks[redo_metric(tau)] = [s <= tau for s in scores]
        out = {tag(name, m): torch.cat(per_layer, dim=-1).float().mean(-1) for m, per_layer in masks.items()}
        norms = [metrics.feature_norm(f) for f in (feats if cfg.per_layer else feats[-1:])]
        out[tag(name, "feature_norm")] = norms[-1]  # the last hidden layer's
        if cfg.per_layer:
            for i, norm in enumerate(norms):
                out |= {tag(name, m, i): per_layer[i].float().mean(-1) for m, per_layer in masks.items()}
                out[tag(name, "feature_norm", i)] = norm
        return out

    def _rank_metrics(self, name: str, feats: list[Tensor]) -> dict[str, Tensor]:
        last = len(feats) - 1
        out = {}
        for i in range(len(feats)) if self.cfg.per_layer else [last]:
            sv = metrics.singular_values(feats[i])
            srank = metrics.stable_rank_from_singular_values(sv, self.cfg.stable_rank_delta)
            values = {
                "stable_rank": srank,
                "stable_rank_pct": 100.0 * srank / feats[i].shape[-1],
                "effective_rank": metrics.effective_rank_from_singular_values(sv),
            }
            if self.cfg.per_layer:
                out |= {tag(name, m, i): v for m, v in values.items()}
            if i == last:
                out |= {tag(name, m): v for m, v in values.items()}
        return out

    # ---- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Window contents (oldest row first), weight snapshot and step counter (tensors and ints)."""
        return {
            "last_step": self._last_step,
            "windows": {n: [w.clone() for w in ws] for n, ws in self.windows().items()},
            "last_weights": {n: [w.clone() for w in ws] for n, ws in self._last_weights.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same networks, widths and window)."""
        rows = {w.shape[1] for ws in state["windows"].values() for w in ws}
        expected = {n: [(self.num_runs, w) for w in ws] for n, ws in self._widths.items()}
        given = {n: [(w.shape[0], w.shape[2]) for w in ws] for n, ws in state["windows"].items()}
        if given != expected or len(rows) > 1 or max(rows, default=0) > self.cfg.window:
            raise ValueError(
                f"tracker state has windows {self._shapes(state['windows'])}; this tracker expects "
                f"[R, n, width] with {expected} (R, width) pairs and one n <= window={self.cfg.window}"
            )
        if self._shapes(state["last_weights"]) != self._shapes(self._last_weights):
            raise ValueError(
                f"tracker state has last_weights {self._shapes(state['last_weights'])}; "
                f"this tracker expects {self._shapes(self._last_weights)}"
            )
        for name, tensors in self._last_weights.items():
            for dst, src in zip(tensors, state["last_weights"][name], strict=True):
                dst.copy_(src)
        held = rows.pop() if rows else 0
        chunk = tuple(w.to(self.device) for n in self._widths for w in state["windows"][n])
        self._chunks, self._chunk_rows = (deque([chunk]), deque([held])) if held else (deque(), deque())
        self._held, self._cache = held, None
        self._last_step = int(state["last_step"])
        self._seen = dict.fromkeys(self.networks)

    @staticmethod
    def _shapes(tensors: Mapping[str, list[Tensor]]) -> dict[str, list[tuple[int, ...]]]:
        return {n: [tuple(t.shape) for t in ts] for n, ts in tensors.items()}
