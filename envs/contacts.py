"""Contact queries that success checks use: which geoms touch which bodies."""

from __future__ import annotations

from collections.abc import Iterable

import mujoco
import numpy as np


def touching_geoms(model: mujoco.MjModel, data: mujoco.MjData, body: int) -> set[int]:
    """Geoms of other bodies currently in contact with ``body``."""
    geom1, geom2 = data.contact.geom1[: data.ncon], data.contact.geom2[: data.ncon]
    body1, body2 = model.geom_bodyid[geom1], model.geom_bodyid[geom2]
    other = np.concatenate(
        [geom2[(body1 == body) & (body2 != body)], geom1[(body2 == body) & (body1 != body)]]
    )
    return set(other.tolist())


def touches_any(
    model: mujoco.MjModel, data: mujoco.MjData, body: int, geoms: Iterable[int]
) -> bool:
    return not touching_geoms(model, data, body).isdisjoint(geoms)


def touches_both(
    model: mujoco.MjModel, data: mujoco.MjData, body: int, geoms: Iterable[int]
) -> bool:
    """True if every geom in ``geoms`` (e.g. both finger pads of one gripper) touches ``body``."""
    return set(geoms) <= touching_geoms(model, data, body)
