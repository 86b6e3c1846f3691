"""Exact Adam steps for the weights of recently reset units, on top of one fused pass.

After a reset, an element's Adam update is ``lr m / (d1 (sqrt(v) / sqrt(d2) + eps))`` with its own
bias corrections ``d_j = 1 - beta_j^s`` (s: steps since its most recent reset; corrections.py).
Once s reaches the saturation step (``beta^s`` below half a float ulp: 1,725 steps for beta 0.99
in float32) both corrections are 1 to the float precision, as the parameter-wide step count
gives them. So only the elements of units reset in the last saturation-step steps ("fresh")
need their own correction: at the steady state of CBP about a sixth of the units of a layer.

:class:`FreshElements` lets torch's fused Adam kernel update every element with the parameter's
step count (one pass, as plain Adam), having saved the fresh elements' values first, and then
redoes those from the saved values with their own corrections, which a lookup table indexed by s
gives. That is a few gathers and one scatter on flat buffers: on a CPU an elementwise op costs
mostly its dispatch, so the parameters (their ``.data``) and the two moments become views of one
flat buffer each, and the work is ten ops whatever the number of tensors. A parameter's part of
the fresh set is rebuilt when one of its units is reset and when its oldest element saturates,
so the set is always exactly the elements younger than the saturation step: a function of the
optimizer state alone, which a resumed optimizer therefore rebuilds the same (the redo rounds
differently from the fused kernel, so an element must not be in the set in one run and out of it
in the other).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlplast.agents.plasticity.corrections import bias_correction, last_reset_steps, saturation_step
from rlplast.agents.plasticity.flat import BoundParameters

MOMENTS = ("exp_avg", "exp_avg_sq")


class FreshElements:
    """The fresh elements of one parameter group of an Adam optimizer and their exact step.

    Args:
        params: the group's parameters (one device and dtype), each with its Adam state in
            ``states`` (step count, ``exp_avg``, ``exp_avg_sq``; reset steps once reset).
        states: the optimizer state of each parameter.
        betas: Adam's decay rates.
        eps: Adam's denominator term.
    """

    def __init__(self, params: Sequence[Tensor], states: Sequence[dict[str, Any]], betas: Sequence[float], eps: float):
        kinds = {(p.device, p.dtype) for p in params}
        if len(kinds) != 1:
            raise ValueError(f"resetting units needs the group's parameters on one device with one dtype; got {kinds}")
        self.params, self.states = list(params), list(states)
        ref = self.params[0]
        sizes = [p.numel() for p in self.params]
        self.starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.pieces: list[tuple[Tensor, Tensor] | None] = [None] * len(self.params)  # local index, reset step
        self.expiry = [0] * len(self.params)  # step at which the oldest element of the piece saturates
        self.settings: tuple[tuple[float, ...], float] | None = None
        self.configure(betas, eps)
        self.index = self.since_base = torch.empty(0, dtype=torch.int64, device=ref.device)
        self.base = 0  # the earliest reset step in the set; since_base: each element's reset step - base
        self.flat = {"param": ref.new_empty(sum(sizes))}
        self.bound = BoundParameters(self.params, self._views_of(self.flat["param"]))
        self._attach_moments()

    def configure(self, betas: Sequence[float], eps: float) -> None:
        """Tables and horizon for these Adam settings (a scheduler may change them between steps;
        then every piece is rebuilt)."""
        if self.settings == (tuple(betas), eps):
            return
        self.settings = (tuple(betas), eps)
        ref = self.params[0]
        self.horizon = saturation_step(betas, ref.dtype)
        # Per age, m / (d1 (sqrt(v) / sqrt(d2) + eps)) = m / (sqrt(v) * scale + offset): tables of
        # offset and scale for ages L-1 down to 0, so that the entries of the elements reset at
        # steps base + k are entries k of views starting at L-1 - (step - base) (no per-element
        # subtraction). Ages in the set stay below the horizon (see _piece).
        ages = torch.arange(self.horizon, -1, -1)
        d1, d2 = (bias_correction(beta, ages, torch.float64) for beta in betas)
        self.offset = (eps * d1).to(ref.device, ref.dtype)
        self.scale = (d1 / d2.sqrt()).to(ref.device, ref.dtype)
        self.dirty = set(range(len(self.params)))

    # --- the flat buffers ------------------------------------------------------------------------

    def _views_of(self, flat: Tensor) -> list[Tensor]:
        return [flat[start : start + p.numel()].view_as(p) for p, start in zip(self.params, self.starts, strict=True)]

    def _attach_moments(self) -> None:
        """Make the moments views of flat buffers, keeping their values."""
        for name in MOMENTS:
            self.flat[name] = torch.cat([s[name].reshape(-1) for s in self.states])
            for state, view in zip(self.states, self._views_of(self.flat[name]), strict=True):
                state[name] = view
        self._moments = [(s["exp_avg"], s["exp_avg_sq"]) for s in self.states]

    def _moments_attached(self) -> bool:
        """Whether the moments are still the flat buffers' views (a loaded state replaces them)."""
        for state, (exp_avg, exp_avg_sq) in zip(self.states, self._moments, strict=True):
            if state["exp_avg"] is not exp_avg or state["exp_avg_sq"] is not exp_avg_sq:
                return False
        return True

    # --- the fresh set ---------------------------------------------------------------------------

    def reset(self, index: int) -> None:
        """Units of parameter ``index`` were reset: rebuild its piece before its next step."""
        self.dirty.add(index)

    def _piece(self, i: int, step: int) -> tuple[Tensor, Tensor] | None:
        """Parameter i's elements whose own step count at ``step`` is below the horizon: their
        flat index within the parameter and their reset step, or None. The piece is rebuilt
        when its oldest element reaches the horizon (``expiry``), so every age it holds stays
        below the horizon."""
        state = self.states[i]
        if not state.get("reset_dims"):
            return None
        param = self.params[i]
        last = last_reset_steps(param, state).expand_as(param).reshape(-1)
        index = torch.nonzero(last > max(step - self.horizon, 0)).flatten()  # 0: never reset
        if not len(index):
            return None
        resets = last[index]
        self.expiry[i] = int(resets.min()) + self.horizon
        return index, resets

    def _refresh(self, steps: Sequence[int | None]) -> None:
        """Rebuild the pieces of the stepped parameters that were reset or whose oldest element
        saturated."""
        changed = False
        for i, step in enumerate(steps):
            if step is not None and (i in self.dirty or (self.pieces[i] is not None and step >= self.expiry[i])):
                self.pieces[i] = self._piece(i, step)
                self.dirty.discard(i)
                changed = True
        if changed:
            built = [(piece[0] + self.starts[i], piece[1]) for i, piece in enumerate(self.pieces) if piece is not None]
            self.index = self.since_base = torch.empty(0, dtype=torch.int64, device=self.params[0].device)
            if built:
                self.index = torch.cat([index for index, _ in built])
                self.base, self.since_base = _relative(torch.cat([resets for _, resets in built]))

    # --- the step ----------------------------------------------------------------------------------

    def save(self, steps: Sequence[int | None], betas: Sequence[float], eps: float) -> list[_Redo]:
        """Before the fused step: save the fresh elements of the parameters about to be stepped.

        Args:
            steps: per parameter, the step count the coming update uses, or None if it is not
                stepped (no gradient).
            betas, eps: the Adam settings of this step.

        Returns:
            What :meth:`redo` needs: one entry over the flat buffers when every parameter is
            stepped with one step count (always, in PPO), else one per stepped parameter.
        """
        self.configure(betas, eps)
        self.bound.ensure()
        if not self._moments_attached():
            self._attach_moments()
        self._refresh(steps)
        if None not in steps and len(set(steps)) == 1:
            flat = self.flat
            ages = (self.index, self.base, self.since_base, steps[0])
            work = [(flat["param"], flat["exp_avg"], flat["exp_avg_sq"], *ages)]
        else:
            work = [
                (p.view(-1), s["exp_avg"].view(-1), s["exp_avg_sq"].view(-1), piece[0], *_relative(piece[1]), step)
                for p, s, piece, step in zip(self.params, self.states, self.pieces, steps, strict=True)
                if step is not None and piece is not None
            ]
        return [_Redo(*w, saved=w[0].index_select(0, w[3])) for w in work if len(w[3])]

    def redo(self, pending: list[_Redo], lr: float) -> None:
        """After the fused step: the saved elements' update with their own bias corrections
        (the moments, which do not depend on the step count, are already updated)."""
        last = len(self.scale) - 1
        for r in pending:
            start = last - (r.step - r.base)  # the row of age step - base
            if start < 0:
                raise RuntimeError(f"fresh weights aged past the table ({r.step - r.base} > {last} steps)")
            exp_avg = r.exp_avg.index_select(0, r.index)
            root = r.exp_avg_sq.index_select(0, r.index).sqrt_()
            offset = self.offset[start:].index_select(0, r.since_base)
            denominator = torch.addcmul(offset, root, self.scale[start:].index_select(0, r.since_base))
            r.saved.addcdiv_(exp_avg, denominator, value=-lr)
            r.param.scatter_(0, r.index, r.saved)  # the indices are unique; faster than index_copy_ on a CPU


def _relative(resets: Tensor) -> tuple[int, Tensor]:
    """``(base, resets - base)`` with base the earliest reset step."""
    base = int(resets.min())
    return base, resets - base


@dataclass
class _Redo:
    """The fresh elements of (flat views of) a parameter set, saved before a fused step."""

    param: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    index: Tensor
    base: int  # reset steps are base + since_base
    since_base: Tensor
    step: int
    saved: Tensor
