"""Walker2d-v5: walk forward in the plane, upright (rlplast.envs.tasks.planar)."""

from __future__ import annotations

from rlplast.envs.tasks.planar import PlanarWalkerSpec, PlanarWalkerTask


class Walker2dSpec(PlanarWalkerSpec):
    """Walker2d-v5's keyword arguments (Gymnasium's names and defaults)."""

    xml_file: str = "walker2d_v5.xml"
    frame_skip: int = 4
    healthy_z_range: tuple[float, float] = (0.8, 2.0)
    healthy_angle_range: tuple[float, float] = (-1.0, 1.0)


class Walker2dTask(PlanarWalkerTask):
    """Walker2d-v5."""

    env_id = "Walker2d-v5"
    Spec = Walker2dSpec
    spec: Walker2dSpec
