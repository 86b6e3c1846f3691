"""When CBP replaces units: ages, eligibility and the replacement count, kept on the CPU.

Per hidden layer l and run r, a unit is eligible at step t when its age ``t - birth`` exceeds the
maturity threshold m, and the count of units to replace grows by ``rho * n_eligible`` per step
(PROTOCOL.md section 4). The paper keeps a fractional accumulator ``c += rho * n_eligible``; here
the same count is kept exactly: ``credit`` is the integer sum of ``n_eligible`` over the steps,
and ``floor(rho * credit) - settled`` units are due, ``settled`` counting those already handled
(replaced, or dropped when fewer units were eligible). Being a function of integers, the count
does not depend on when it is evaluated, so it is evaluated lazily: ``step()`` is a Python integer
comparison until the next event (a unit maturing, or a replacement falling due, both computed
ahead), and a run of a group behaves exactly as alone.

``mode="probability"`` is the reference code's rule instead: each step, with
``rho * n_eligible < 1``, one unit is due with that probability (drawn from run r's generator),
else ``int(rho * n_eligible)``; it draws every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor


class ReplacementClock:
    """Ages and due replacements of every unit of L layers x R runs.

    Args:
        widths: units per layer, length L.
        num_runs: R.
        maturity: m, a unit is eligible once its age exceeds m steps.
        rate: rho, units due per eligible unit per step.
        mode: ``accumulate`` (the paper) or ``probability`` (the reference code).
        generators: one CPU generator per run (``probability`` mode draws from them).
    """

    def __init__(
        self,
        widths: Sequence[int],
        num_runs: int,
        maturity: int,
        rate: float,
        mode: Literal["accumulate", "probability"],
        generators: Sequence[torch.Generator],
    ):
        self.maturity, self.rate, self.mode, self.generators = maturity, rate, mode, generators
        self.steps = 0
        self.birth = [torch.zeros(num_runs, w, dtype=torch.int64) for w in widths]  # [R, W] each
        self.credit = torch.zeros(len(widths), num_runs, dtype=torch.int64)  # [L, R], up to credit_step
        self.credit_step = 0
        self.settled = torch.zeros(len(widths), num_runs, dtype=torch.int64)
        self._refresh(1)
        self._schedule()

    # --- queries ---------------------------------------------------------------------------------

    def ages(self, layer: int) -> Tensor:
        """``[R, W]`` steps since each unit of ``layer`` was (re)initialised."""
        return self.steps - self.birth[layer]

    def eligible_mask(self, layer: int) -> Tensor:
        """``[R, W]`` units of ``layer`` older than the maturity threshold."""
        return self.ages(layer) > self.maturity

    # --- the clock -------------------------------------------------------------------------------

    def step(self) -> Tensor | None:
        """Advance one step; the units due now, ``[L, R]`` (at most the eligible ones), or None."""
        self.steps += 1
        if self.steps < self.next_event:
            return None
        if self.steps >= self.next_maturity:
            self._add_credit(self.steps - 1)  # the steps before, at the old eligibility
            self._refresh(self.steps)
        self._add_credit(self.steps)
        due = self._probability_draws() if self.mode == "probability" else self._accumulated()
        self.settled += due
        counts = torch.minimum(due, self.eligible)
        self._schedule()
        return counts if bool(counts.any()) else None

    def born(self, layer: int, runs: Tensor, units: Tensor) -> None:
        """Units ``(runs[k], units[k])`` of ``layer`` were reinitialised at the current step."""
        self.birth[layer][runs, units] = self.steps

    def start_mature(self) -> None:
        """Age every unit past the maturity threshold now, as after a run's first m steps
        (benchmarks measure the steady state of replacement without running those steps)."""
        self._add_credit(self.steps)
        for birth in self.birth:
            birth.fill_(self.steps - self.maturity - 1)
        self._refresh(self.steps + 1)
        self._schedule()

    def replaced(self) -> None:
        """Call after :meth:`born` calls of a step: eligibility changes from the next step on."""
        self._refresh(self.steps + 1)
        self._schedule()

    # --- internals -------------------------------------------------------------------------------

    def _refresh(self, step: int) -> None:
        """Eligible counts as of ``step`` and the first later step at which one grows."""
        counts, first = [], math.inf
        for birth in self.birth:
            matures = birth + self.maturity + 1  # first step at which the unit is eligible
            counts.append((matures <= step).sum(1))
            later = matures[matures > step]
            if later.numel():
                first = min(first, int(later.min()))
        self.eligible = torch.stack(counts) if counts else self.credit.clone()
        self.next_maturity = first

    def _add_credit(self, step: int) -> None:
        """Count the eligible units of every step up to ``step`` (eligibility constant since)."""
        self.credit += (step - self.credit_step) * self.eligible
        self.credit_step = step

    def _accumulated(self) -> Tensor:
        return (self.credit.double() * self.rate).floor().long() - self.settled

    def _probability_draws(self) -> Tensor:
        expected = self.eligible.double() * self.rate
        due = expected.floor()
        for layer, run in torch.nonzero((expected > 0) & (expected < 1)).tolist():
            draw = torch.rand((), generator=self.generators[run], dtype=torch.float64)
            due[layer, run] = float(draw <= expected[layer, run])
        return due.long()

    def _schedule(self) -> None:
        """The next step at which a maturity or a replacement can happen."""
        if self.mode == "probability":
            self.next_event = self.steps + 1
            return
        self.next_event = min(self.next_maturity, self.steps + self._steps_to_due())

    def _steps_to_due(self) -> float:
        """Fewest steps k >= 1 after which some layer and run has a unit due (inf if none),
        given ``credit`` up to now and the current eligible counts."""
        active = self.eligible > 0
        if self.rate == 0 or not bool(active.any()):
            return math.inf
        credit, per_step, target = self.credit[active], self.eligible[active], self.settled[active] + 1

        def due(k: Tensor) -> Tensor:  # exactly as _accumulated() will compute it
            return ((credit + k * per_step).double() * self.rate).floor().long() >= target

        guess = ((target.double() / self.rate - credit.double()) / per_step.double()).ceil()
        k = guess.clamp(1, 2**50).long()
        while not bool(due(k).all()):  # float rounding may leave the guess a step short ...
            k = torch.where(due(k), k, k + 1)
        while bool(((k > 1) & due(k - 1)).any()):  # ... or a step long
            k = torch.where((k > 1) & due(k - 1), k - 1, k)
        return int(k.min())

    # --- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        credit = self.credit + (self.steps - self.credit_step) * self.eligible  # up to now
        return {
            "steps": self.steps,
            "credit": credit,
            "settled": self.settled.clone(),
            "birth": [b.clone() for b in self.birth],
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.credit.copy_(state["credit"])
        self.credit_step = self.steps
        self.settled.copy_(state["settled"])
        for mine, saved in zip(self.birth, state["birth"], strict=True):
            mine.copy_(saved)
        self._refresh(self.steps + 1)
        self._schedule()
