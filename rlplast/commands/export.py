"""``rlplast export``: one seed's trained actor as a plain torch state dict or as TorchScript."""

from __future__ import annotations

from pathlib import Path

import click

FORMATS = ("state_dict", "torchscript")


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rlplast export results/demo/ppo/seed0 --out actor.pt\n\n"
        "  rlplast export results/demo/ppo --seed 3 --format torchscript --out actor_ts.pt\n\n"
        "state_dict: torch.load(FILE) gives net.<i>.weight, net.<i>.bias (Linear layers, an activation "
        "between them) and log_std, loadable into rlplast.policy.GaussianActor. torchscript: "
        "torch.jit.load(FILE)(obs [B, obs_dim]) gives the mean action [B, act_dim], without rlplast."
    )
)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Which run, when PATH holds several.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="state_dict", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
def export(path: Path, seed: int | None, fmt: str, out: Path) -> None:
    """Export the actor of one run under PATH (a seed or method folder, or a group checkpoint)."""
    from rlplast.atomic import DiskFull
    from rlplast.checkpoint import CheckpointMismatch, CheckpointUnreadable
    from rlplast.policy import PolicyNotFound, load_policy

    try:
        policy = load_policy(path, seed)
        if fmt == "torchscript":
            policy.export_torchscript(out)
        else:
            policy.export_state_dict(out)
    except (PolicyNotFound, CheckpointMismatch, CheckpointUnreadable, DiskFull) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"{err.filename or out}: {err.strerror}") from None
    click.echo(
        f"actor of {policy.config.method} seed {policy.seed} (step {policy.step}, obs {policy.obs_dim} -> "
        f"action {policy.act_dim}) written to {out} as {fmt}"
    )
