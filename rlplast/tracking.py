"""The plasticity tracker: the stateful part of the metrics that the training loop feeds.

Usage in a training loop (``networks`` are the :class:`~rlplast.agents.networks.MLP` s of the
actor and critic; every tensor has a leading run dimension R)::

    tracker = PlasticityTracker(cfg, {"actor": actor.mlp, "critic": critic.mlp}, num_runs=R)
    for each vector step:
        action = actor(obs); value = critic(obs)      # the acting forward passes
        tracker.observe()                             # copies net.features into the window
        ... env step; run_step += E ...               # E envs per run
        for tag, values in tracker.maybe_compute(run_step).items():
            log(tag, values)                          # values: [R], one per run

``observe()`` reads ``net.features`` (``[R, E, width]`` per hidden layer, the post-activation
outputs of the last forward pass) of every tracked network into a preallocated ring buffer
``[R, window, width]`` per layer, so the window always holds the last ``window`` rows (env steps)
of each run. It must follow a fresh forward pass of every tracked network: calling it twice on
the same features is an error, since it would count the same steps twice.

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
    - ``weight_change``: mean |w - w_prev| over the same weights, w_prev the weights at the
      previous computation of these metrics (at construction for the first one).

``plasticity/<net>/layer<i>/<metric>``, per layer when ``per_layer``: layer i is the i-th Linear
layer of the MLP (0-based, the output layer last) and, for a hidden layer, its post-activation
output. Hidden layers get every metric above (ranks of that layer; ``dormant_fraction`` and the
ReDo fractions of that layer's units); the output layer gets ``weight_magnitude`` and
``weight_change``. The paper's weight-magnitude plot is ``plasticity/actor/layer1/weight_magnitude``
(the 256 x 256 layer).

Gradient norm, policy entropy and UPGD's p(Z) are per update, not per window: the learner
computes them with :mod:`rlplast.metrics` (``grad_norm``, ``gaussian_entropy``,
``upgd_plasticity``) and logs them under ``tag(net, "grad_norm")``, ``tag("actor", "entropy")``
and ``tag("actor", "upgd_plasticity")``.

``state_dict()`` holds the window contents, the weight snapshot and the counters (tensors and
ints only, ``torch.load(weights_only=True)`` safe), about 4 MB per run for two 256-256 networks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
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


def tag(network: str, metric: str, layer: int | None = None) -> str:
    """``plasticity/<network>/<metric>`` or ``plasticity/<network>/layer<layer>/<metric>``."""
    return f"{PREFIX}/{network}/{metric}" if layer is None else f"{PREFIX}/{network}/layer{layer}/{metric}"


def redo_metric(tau: float) -> str:
    """Metric name of the ReDo dormant fraction at ``tau``, e.g. ``redo_dormant_fraction_tau0.1``."""
    return f"redo_dormant_fraction_tau{tau}"


def ring_write(buffer: Tensor, rows: Tensor, pos: int) -> int:
    """Write ``rows [R, B, d]`` into ``buffer [R, W, d]`` at ``pos``, wrapping; keep the last W.

    Two slice copies at most, no allocation. Returns the next write position.
    """
    width = buffer.shape[1]
    rows = rows[:, -width:]  # more rows than the window: only the last W can survive
    count = rows.shape[1]
    first = min(count, width - pos)
    buffer[:, pos : pos + first].copy_(rows[:, :first])
    if first < count:
        buffer[:, : count - first].copy_(rows[:, first:])
    return (pos + count) % width


class PlasticityTracker:
    """Rolling feature windows and weight snapshots of a run group's networks; see the module doc.

    Args:
        cfg: the metrics config; ``cfg.networks`` names the entries of ``networks`` to track.
        networks: name -> MLP with ``num_runs`` runs (e.g. ``{"actor": actor.mlp, ...}``).
        num_runs: R, the leading dimension of every weight and feature.
        device: where the window lives; defaults to the networks' device (keep it there: a
            copy across devices per env step would cost a synchronisation).
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
        self._windows = {
            name: [torch.zeros(num_runs, cfg.window, layer.width, device=self.device) for layer in net.hidden_layers()]
            for name, net in self.networks.items()
        }
        self._last_weights = {
            name: [layer.weight.detach().to(self.device, copy=True) for layer in net.layers]
            for name, net in self.networks.items()
        }
        self._pos = 0  # next row to write (shared: every network is observed at every step)
        self._count = 0  # rows filled, at most cfg.window
        self._last_step = 0
        self._seen: dict[str, list[Tensor] | None] = dict.fromkeys(self.networks)

    # ---- fed every env step -------------------------------------------------------------------

    def observe(self) -> None:
        """Append the features of every tracked network's last forward pass to the window.

        Each ``net.features[i]`` is ``[R, B, width_i]``; B (envs per run) may vary between calls.
        """
        pos, rows = self._pos, None
        for name, net in self.networks.items():
            feats = net.features
            if not feats:
                raise RuntimeError(f"network {name!r} has no features: run its forward pass before observe()")
            if feats is self._seen[name]:
                raise RuntimeError(f"network {name!r} has run no forward pass since the last observe()")
            self._seen[name] = feats
            for i, (window, f) in enumerate(zip(self._windows[name], feats, strict=True)):
                if (
                    f.dim() != 3
                    or (f.shape[0], f.shape[2]) != (self.num_runs, window.shape[2])
                    or rows not in (None, f.shape[1])
                ):
                    raise ValueError(
                        f"features of {name} layer {i} have shape {tuple(f.shape)}; expected "
                        f"[{self.num_runs}, {rows or 'B'}, {window.shape[2]}]"
                    )
                rows = f.shape[1]
                with torch.no_grad():
                    self._pos = ring_write(window, f, pos)
        if rows is not None:
            self._count = min(self._count + rows, self.cfg.window)

    def window(self, network: str, layer: int) -> Tensor:
        """The rows of one hidden layer's window in the order they were observed, oldest first.

        Returns:
            ``[R, n, width]`` with n = min(rows observed, window) (a copy once wrapped).
        """
        buf = self._windows[network][layer]
        if self._count < self.cfg.window:
            return buf[:, : self._count]
        return torch.cat([buf[:, self._pos :], buf[:, : self._pos]], dim=1)

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
        last, self._last_step = self._last_step, run_step
        cheap = run_step // self.cfg.interval > last // self.cfg.interval
        ranks = run_step // self.cfg.rank_interval > last // self.cfg.rank_interval
        return self.compute(cheap=cheap, ranks=ranks) if cheap or ranks else {}

    @torch.no_grad()
    def compute(self, cheap: bool = True, ranks: bool = True) -> dict[str, Tensor]:
        """Compute now, whatever the step: the cheap metrics (and update the weight snapshot used
        by ``weight_change``) and/or the ranks. Feature metrics are skipped while the window is
        empty. Returns ``{tag: [R]}`` (float32)."""
        out: dict[str, Tensor] = {}
        for name, net in self.networks.items():
            feats = [w[:, : self._count] for w in self._windows[name]]  # row order does not matter
            if cheap:
                out |= self._weight_metrics(name, net)
                if self._count:
                    out |= self._feature_metrics(name, feats)
            if ranks and self._count:
                out |= self._rank_metrics(name, feats)
        return {k: v.float() for k, v in out.items()}

    def _weight_metrics(self, name: str, net: MLP) -> dict[str, Tensor]:
        weights = [layer.weight.detach() for layer in net.layers]
        previous = self._last_weights[name]
        out = {
            tag(name, "weight_magnitude"): metrics.weight_magnitude(weights),
            tag(name, "weight_change"): metrics.weight_change(weights, previous),
        }
        if self.cfg.per_layer:
            for i, (w, p) in enumerate(zip(weights, previous, strict=True)):
                out[tag(name, "weight_magnitude", i)] = metrics.weight_magnitude(w)
                out[tag(name, "weight_change", i)] = metrics.weight_change(w, p)
        for p, w in zip(previous, weights, strict=True):
            p.copy_(w)  # in place: the snapshot stays a normal tensor even under inference_mode
        return out

    def _feature_metrics(self, name: str, feats: list[Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        # Per-layer unit masks [R, width_i], pooled over layers for the network-level share.
        masks = {"dormant_fraction": [metrics.dormant_mask(f, cfg.dormant_threshold) for f in feats]}
        scores = [metrics.redo_scores(f) for f in feats]
        for tau in cfg.redo_taus:
            masks[redo_metric(tau)] = [s <= tau for s in scores]
        out = {tag(name, m): torch.cat(per_layer, dim=-1).float().mean(-1) for m, per_layer in masks.items()}
        out[tag(name, "feature_norm")] = metrics.feature_norm(feats[-1])
        if cfg.per_layer:
            for i, f in enumerate(feats):
                out |= {tag(name, m, i): per_layer[i].float().mean(-1) for m, per_layer in masks.items()}
                out[tag(name, "feature_norm", i)] = metrics.feature_norm(f)
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
        """Window contents, weight snapshot and counters (tensors and ints only)."""
        return {
            "pos": self._pos,
            "count": self._count,
            "last_step": self._last_step,
            "windows": {n: [w.clone() for w in ws] for n, ws in self._windows.items()},
            "last_weights": {n: [w.clone() for w in ws] for n, ws in self._last_weights.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, into this tracker's buffers (same shapes)."""
        for key in ("windows", "last_weights"):
            mine, theirs = self._shapes(getattr(self, f"_{key}")), self._shapes(state[key])
            if mine != theirs:
                raise ValueError(f"tracker state {key!r} has shapes {theirs}, this tracker expects {mine}")
            for name, tensors in getattr(self, f"_{key}").items():
                for dst, src in zip(tensors, state[key][name], strict=True):
                    dst.copy_(src)
        self._pos, self._count, self._last_step = int(state["pos"]), int(state["count"]), int(state["last_step"])
        self._seen = dict.fromkeys(self.networks)

    @staticmethod
    def _shapes(tensors: Mapping[str, list[Tensor]]) -> dict[str, list[tuple[int, ...]]]:
        return {n: [tuple(t.shape) for t in ts] for n, ts in tensors.items()}
