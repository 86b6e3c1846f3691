"""How methods are named and coloured in every figure and table, so a method looks the same in
each experiment's figures."""

from __future__ import annotations

from collections.abc import Sequence

# Display names; CBP runs with L2, and the paper plots it as "CBP + L2".
METHOD_LABELS = {
    "ppo": "PPO",
    "ppo_tuned": "Tuned PPO",
    "ppo_l2": "PPO + L2",
    "ppo_l1": "PPO + L1",
    "ppo_cbp": "CBP + L2",
    "ppo_upgd_protocol": "UPGD (protocol's Adam)",
    "ppo_upgd_paper": "UPGD (paper's settings)",
    "ppo_redo": "ReDo",
    "ppo_snp": "Shrink & perturb",
}

METHOD_COLOURS = {
    "ppo": "#d62728",
    "ppo_tuned": "#ff7f0e",
    "ppo_l2": "#2ca02c",
    "ppo_cbp": "#1f77b4",
    "ppo_upgd_protocol": "#9467bd",
    "ppo_upgd_paper": "#bcbd22",
    "ppo_redo": "#8c564b",
    "ppo_snp": "#e377c2",
    "ppo_l1": "#17becf",
}

# For methods not listed above, in order of appearance.
SPARE_COLOURS = ("#7f7f7f", "#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173")


def method_label(method: str) -> str:
    """The display name of a method (its config name when it has none)."""
    return METHOD_LABELS.get(method, method)


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """A colour per method: the fixed one for known methods, spare ones for the rest."""
    spare = iter(SPARE_COLOURS * (len(methods) // len(SPARE_COLOURS) + 1))
    return {m: METHOD_COLOURS[m] if m in METHOD_COLOURS else next(spare) for m in methods}


def step_scale(total_steps: int) -> tuple[float, str]:
    """Divisor and axis label for env steps: millions from 1M steps up, else thousands."""
    if total_steps >= 1_000_000:
        return 1e6, "environment steps (millions)"
    return 1e3, "environment steps (thousands)"
