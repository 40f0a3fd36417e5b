"""Contact queries that success checks use: which geoms touch which bodies."""

from __future__ import annotations

from collections.abc import Iterable

import mujoco


def touching_geoms(model: mujoco.MjModel, data: mujoco.MjData, body: int) -> set[int]:
    """Geoms of other bodies currently in contact with ``body``."""
    touching = set()
    for contact in data.contact[: data.ncon]:
        body1, body2 = model.geom_bodyid[contact.geom1], model.geom_bodyid[contact.geom2]
        if body1 == body and body2 != body:
            touching.add(int(contact.geom2))
        elif body2 == body and body1 != body:
            touching.add(int(contact.geom1))
    return touching


def touches_any(model: mujoco.MjModel, data: mujoco.MjData, body: int,
                geoms: Iterable[int]) -> bool:
    return not touching_geoms(model, data, body).isdisjoint(geoms)


def touches_both(model: mujoco.MjModel, data: mujoco.MjData, body: int,
                 geoms: Iterable[int]) -> bool:
    """True if every geom in ``geoms`` (e.g. both finger pads of one gripper) touches ``body``."""
    return set(geoms) <= touching_geoms(model, data, body)
