"""The host side of the GPU Ant: Ant-v5's MJCF and keyword arguments, the friction mode's model
edit, and contact/constraint buffer sizes that Ant cannot overflow.

mujoco_warp preallocates its contact and constraint buffers: ``nconmax`` contacts per world
(pooled over worlds) and ``njmax`` constraint rows per world. :func:`contact_capacity` computes
the worst case of a model from its geometry, so the defaults can never overflow on Ant; smaller
values run faster and are checked at run time (see ``WarpAntVecEnv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import expand_model_path
from pydantic import ValidationError

from rlplast.envs.ant_math import AntSpec
from rlplast.envs.friction import FrictionSetter

GEOM = mujoco.mjtGeom
# Most contacts MuJoCo (C and mujoco_warp) makes between two primitive geoms of these types.
MAX_CONTACTS = {
    (GEOM.mjGEOM_PLANE, GEOM.mjGEOM_SPHERE): 1,
    (GEOM.mjGEOM_PLANE, GEOM.mjGEOM_CAPSULE): 2,
    (GEOM.mjGEOM_SPHERE, GEOM.mjGEOM_SPHERE): 1,
    (GEOM.mjGEOM_SPHERE, GEOM.mjGEOM_CAPSULE): 1,
    (GEOM.mjGEOM_CAPSULE, GEOM.mjGEOM_CAPSULE): 2,
}


def parse_ant_spec(kwargs: dict[str, Any]) -> AntSpec:
    """AntSpec from Ant-v5 keyword arguments, or a ValueError listing the allowed keys."""
    try:
        return AntSpec.model_validate(kwargs)
    except ValidationError as err:
        raise ValueError(
            f"bad Ant-v5 kwargs for the warp backend: {err}\nallowed keys: {', '.join(AntSpec.model_fields)}"
        ) from None


@dataclass(frozen=True)
class AntModel:
    """The MuJoCo model of the GPU Ant and what the kernels need to know about it.

    Attributes:
        mjm: the host model (friction mode already applied: floor priority raised).
        friction_geoms: ``[G]`` geoms whose sliding friction the schedule sets.
        main_body: body whose x velocity is rewarded.
        root_qadr: qpos address of main_body's free joint.
        dt: env step duration, timestep x frame_skip.
    """

    mjm: mujoco.MjModel
    friction_geoms: np.ndarray
    main_body: int
    root_qadr: int
    dt: float


def load_ant_model(spec: AntSpec, friction_mode: str) -> AntModel:
    """Load ``spec.xml_file`` (Gymnasium's ant.xml by default) and apply the friction mode.

    Raises:
        ValueError: main_body is not a body with a free joint (the reset needs its xpos = qpos).
        NotImplementedError: the model has contact pairs (their friction is not batched here).
    """
    mjm = mujoco.MjModel.from_xml_path(expand_model_path(spec.xml_file))
    setter = FrictionSetter(mjm, friction_mode)
    if mjm.npair:
        raise NotImplementedError(f"the warp backend does not batch <pair> friction; {spec.xml_file} has {mjm.npair}")
    body = spec.main_body
    body_id = body if isinstance(body, int) else mujoco.mj_name2id(mjm, mujoco.mjtObj.mjOBJ_BODY, body)
    free = [
        j for j in range(mjm.njnt) if mjm.jnt_bodyid[j] == body_id and mjm.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE
    ]
    if not 0 < body_id < mjm.nbody or not free:
        names = [mjm.body(int(mjm.jnt_bodyid[j])).name for j in range(mjm.njnt) if mjm.jnt_type[j] == 0]
        raise ValueError(f"main_body {body!r} must be a body with a free joint; allowed: {names}")
    return AntModel(
        mjm=mjm,
        friction_geoms=np.asarray(setter.geoms, dtype=np.int32),
        main_body=int(body_id),
        root_qadr=int(mjm.jnt_qposadr[free[0]]),
        dt=float(mjm.opt.timestep * spec.frame_skip),
    )


def _colliding_pairs(mjm: mujoco.MjModel) -> list[tuple[int, int]]:
    """Geom pairs that may collide (contype/conaffinity; an upper bound: no parent filter)."""
    pairs = []
    for i in range(mjm.ngeom):
        for j in range(i + 1, mjm.ngeom):
            bi, bj = mjm.geom_bodyid[i], mjm.geom_bodyid[j]
            if bi == bj or (mjm.body_weldid[bi] == 0 and mjm.body_weldid[bj] == 0):
                continue
            if (mjm.geom_contype[i] & mjm.geom_conaffinity[j]) or (mjm.geom_contype[j] & mjm.geom_conaffinity[i]):
                pairs.append((i, j))
    return pairs


def contact_capacity(mjm: mujoco.MjModel) -> tuple[int, int]:
    """Worst-case ``(nconmax, njmax)`` per world: every colliding pair at its most contacts.

    Rows: a contact of dimension c takes 2(c - 1) rows in a pyramidal cone (1 if c = 1), c in an
    elliptic one; a limited hinge or slide joint at most 2 (both sides), a ball joint 1; a dof
    with friction loss 1. For Ant: 1 sphere + 12 capsules against the floor = 25 contacts,
    25 x 4 + 8 hinges x 2 = 116 rows.

    Raises:
        NotImplementedError: geom types or constraints this bound does not cover.
    """
    if mjm.neq or mjm.ntendon or mjm.nflex:
        raise NotImplementedError("contact_capacity covers joints and primitive contacts only (no eq, tendon, flex)")
    elliptic = mjm.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    ncon = nrows = 0
    for i, j in _colliding_pairs(mjm):
        key = tuple(sorted((int(mjm.geom_type[i]), int(mjm.geom_type[j]))))
        types = tuple(GEOM(t) for t in key)
        if types not in MAX_CONTACTS:
            raise NotImplementedError(f"no contact bound for geom types {[t.name for t in types]}")
        condim = int(max(mjm.geom_condim[i], mjm.geom_condim[j]))
        per_contact = condim if elliptic else (1 if condim == 1 else 2 * (condim - 1))
        ncon += MAX_CONTACTS[types]
        nrows += MAX_CONTACTS[types] * per_contact
    for j in range(mjm.njnt):
        if mjm.jnt_limited[j]:
            nrows += 1 if mjm.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL else 2
    nrows += int(np.count_nonzero(mjm.dof_frictionloss > 0))
    return ncon, nrows
