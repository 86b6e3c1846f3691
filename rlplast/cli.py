"""The ``rlplast`` console script: one click group, each command in ``rlplast/commands/``.

Commands are imported only when invoked, so ``rlplast --help`` stays fast and a command's heavy
imports (torch, mujoco, warp) cost nothing to the others.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click.Command
COMMANDS = {
    "train": "rlplast.commands.train:train",
    "compare": "rlplast.commands.compare:compare",
    "plot": "rlplast.commands.plot:plot",
    "bench": "rlplast.commands.bench:bench",
    "sanity": "rlplast.commands.sanity:sanity",
    "evaluate": "rlplast.commands.evaluate:evaluate",
    "export": "rlplast.commands.export:export",
}

HELP = {
    "train": "Train one method on one task for a group of seeds.",
    "compare": "Train several methods x seeds and write plots and a report.",
    "plot": "Redraw the figures and report of an experiment from its saved files.",
    "bench": "Measure throughput side by side (simulator, PPO, SB3, plug-in overheads).",
    "sanity": "Slowly-changing regression: a fast supervised check of the methods.",
    "evaluate": "Play deterministic episodes of trained policies: a table, a CSV, a video.",
    "export": "Export one seed's trained actor as a torch state dict or TorchScript.",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, HELP[name]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="rlplast")
def main() -> None:
    """rlplast: loss of plasticity in non-stationary control, as one command."""


if __name__ == "__main__":
    main()
