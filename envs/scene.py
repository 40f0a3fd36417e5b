"""The shared tabletop scene: table, floor, lights, cameras, arms and distractor slots.

A scene is compiled once per task; the ``clean`` and ``randomized`` settings then differ only
in model fields changed at reset (table material and height, light, distractors), so one
compiled model and one renderer serve every episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from envs import robot

SETTINGS = ("clean", "randomized")
TABLE_HALF = np.array([0.40, 0.30])  # m, half extents of the table top in x and y
TABLE_THICKNESS = 0.04
TABLE_HEIGHT_JITTER = 0.025  # m, randomized setting: table top in [-j, +j] around z = 0
MAX_DISTRACTORS = 6
HEAD_CAMERA = "head_cam"
VIEW_CAMERA = "view_cam"  # an oblique 3/4 view of the table and both arms, for videos only
VIEW_SIZE = (256, 256)  # (H, W) the viewing camera's default render size
CAMERAS = (HEAD_CAMERA, "left/wrist_cam", "right/wrist_cam", VIEW_CAMERA)
CAMERA_ALIASES = {
    "head": HEAD_CAMERA,
    "view": VIEW_CAMERA,
    "left_wrist": "left/wrist_cam",
    "right_wrist": "right/wrist_cam",
}
_CLEAN_TABLE_RGBA = (0.62, 0.52, 0.42, 1.0)
_TABLE_TEXTURES = (  # builtin texture, rgb1, rgb2
    (mujoco.mjtBuiltin.mjBUILTIN_FLAT, (0.62, 0.52, 0.42), (0.62, 0.52, 0.42)),
    (mujoco.mjtBuiltin.mjBUILTIN_CHECKER, (0.75, 0.75, 0.72), (0.45, 0.45, 0.48)),
    (mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, (0.55, 0.40, 0.28), (0.30, 0.20, 0.12)),
    (mujoco.mjtBuiltin.mjBUILTIN_CHECKER, (0.30, 0.45, 0.35), (0.20, 0.30, 0.25)),
)
_DISTRACTOR_SHAPES = (  # geom type, size
    (mujoco.mjtGeom.mjGEOM_BOX, (0.025, 0.02, 0.02)),
    (mujoco.mjtGeom.mjGEOM_CYLINDER, (0.022, 0.03, 0.0)),
    (mujoco.mjtGeom.mjGEOM_SPHERE, (0.024, 0.0, 0.0)),
    (mujoco.mjtGeom.mjGEOM_CAPSULE, (0.015, 0.02, 0.0)),
    (mujoco.mjtGeom.mjGEOM_ELLIPSOID, (0.03, 0.018, 0.018)),
    (mujoco.mjtGeom.mjGEOM_BOX, (0.015, 0.035, 0.012)),
)
_HIDDEN = np.array([0.0, 0.0, -5.0])


def build_scene_spec(render_size: tuple[int, int]) -> mujoco.MjSpec:
    """The scene without task objects; tasks add theirs before compiling."""
    spec = mujoco.MjSpec()
    spec.modelname = "wmbench"
    spec.compiler.degree = False  # every angle in this package is in radians
    spec.option.timestep = 0.002
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offheight = max(480, render_size[0])
    spec.visual.global_.offwidth = max(640, render_size[1])
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.45, 0.45, 0.45]

    sky = spec.add_texture(
        name="sky",
        type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        rgb1=[0.55, 0.65, 0.75],
        rgb2=[0.1, 0.12, 0.15],
        width=64,
        height=64,
    )
    del sky
    spec.add_texture(
        name="floor",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.28, 0.3, 0.33],
        rgb2=[0.22, 0.24, 0.27],
        width=64,
        height=64,
    )
    spec.add_material(name="floor", textures=["", "floor"], texrepeat=[8, 8])
    for index, (builtin, rgb1, rgb2) in enumerate(_TABLE_TEXTURES):
        spec.add_texture(
            name=f"table_{index}",
            type=mujoco.mjtTexture.mjTEXTURE_2D,
            builtin=builtin,
            rgb1=rgb1,
            rgb2=rgb2,
            width=64,
            height=64,
        )
        spec.add_material(name=f"table_{index}", textures=["", f"table_{index}"], texrepeat=[4, 3])

    world = spec.worldbody
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[2, 2, 0.1],
        pos=[0, 0, -0.75],
        material="floor",
        contype=0,
        conaffinity=0,
    )
    table = world.add_body(name="table", pos=[0, 0, 0])
    table.add_geom(
        name="table_top",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[TABLE_HALF[0], TABLE_HALF[1], TABLE_THICKNESS / 2],
        pos=[0, 0, -TABLE_THICKNESS / 2],
        material="table_0",
        contype=robot.OBJECT_GROUP,
        conaffinity=robot.OBJECT_GROUP | robot.ARM_GROUP,
        condim=3,
        friction=[0.8, 0.01, 0.001],
    )
    for sx in (-1, 1):
        for sy in (-1, 1):
            table.add_geom(
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[0.025, 0.025, 0.35],
                pos=[sx * (TABLE_HALF[0] - 0.04), sy * (TABLE_HALF[1] - 0.04), -0.39],
                rgba=[0.3, 0.25, 0.2, 1],
                contype=0,
                conaffinity=0,
            )
    world.add_light(
        name="key_light",
        pos=[0.3, -0.4, 1.5],
        dir=[-0.2, 0.26, -1.0],
        diffuse=[0.6, 0.6, 0.6],
        specular=[0.1, 0.1, 0.1],
        castshadow=False,
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
    )
    head_eye, head_target = np.array([0.0, -0.62, 0.52]), np.array([0.0, 0.0, 0.0])
    world.add_camera(
        name=HEAD_CAMERA, pos=head_eye, quat=_look_at_quat(head_eye, head_target), fovy=55
    )
    view_eye, view_target = np.array([0.38, -0.92, 0.68]), np.array([0.0, 0.02, 0.08])
    world.add_camera(
        name=VIEW_CAMERA, pos=view_eye, quat=_look_at_quat(view_eye, view_target), fovy=52
    )
    for slot, (geom_type, size) in enumerate(_DISTRACTOR_SHAPES):
        body = world.add_body(name=f"distractor_{slot}", mocap=True, pos=_HIDDEN)
        body.add_geom(
            name=f"distractor_{slot}",
            type=geom_type,
            size=size,
            rgba=[0.5, 0.5, 0.5, 1],
            contype=robot.OBJECT_GROUP,
            conaffinity=robot.OBJECT_GROUP | robot.ARM_GROUP,
            condim=3,
        )
    robot.add_arm(spec, "left", rgba=(0.82, 0.82, 0.85, 1.0))
    robot.add_arm(spec, "right", rgba=(0.82, 0.82, 0.85, 1.0))
    return spec


def _look_at_quat(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera orientation at ``eye`` looking at ``target`` with world +z roughly up."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return robot.mat_to_quat(np.column_stack([right, up, -forward]))


@dataclass(frozen=True)
class Footprint:
    """A disc on the table that objects and distractors must not overlap."""

    xy: np.ndarray
    radius: float


def side_region(
    sign: float, x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The (low, high) xy box at |x| in ``x_range`` on the left (sign -1) or right (+1) side."""
    x_low, x_high = sorted((sign * x_range[0], sign * x_range[1]))
    return (x_low, y_range[0]), (x_high, y_range[1])


def sample_pair_on_one_side(
    rng: np.random.Generator,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    first_radius: float,
    second_radius: float,
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Two spots on a random side of the table: the first anywhere, the second clear of it."""
    low, high = side_region(rng.choice([-1.0, 1.0]), x_range, y_range)
    first = rng.uniform(low, high)
    second = sample_free_xy(
        rng, low, high, second_radius, [Footprint(first, first_radius)], margin=margin, tries=1000
    )
    if second is None:  # cannot happen for the tasks' ranges; keep the failure loud
        raise RuntimeError(f"no second position clear of the first in {x_range} x {y_range}")
    return first, second


def sample_free_xy(
    rng: np.random.Generator,
    low: tuple[float, float],
    high: tuple[float, float],
    radius: float,
    taken: list[Footprint],
    margin: float = 0.015,
    tries: int = 200,
) -> np.ndarray | None:
    """Rejection-sample a point in the box [low, high] whose disc clears every taken one."""
    for _ in range(tries):
        xy = rng.uniform(low, high)
        if all(np.linalg.norm(xy - f.xy) >= radius + f.radius + margin for f in taken):
            return xy
    return None


class SceneRandomizer:
    """Applies the clean or randomized setting to a compiled scene model at reset."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self.table_body = model.body("table").id
        self.table_geom = model.geom("table_top").id
        self.table_materials = [
            model.material(f"table_{i}").id for i in range(len(_TABLE_TEXTURES))
        ]
        self.light = model.light("key_light").id
        self.default_light = (
            model.light_dir[self.light].copy(),
            model.light_diffuse[self.light].copy(),
        )
        self.distractor_mocap = [
            model.body_mocapid[model.body(f"distractor_{i}").id] for i in range(MAX_DISTRACTORS)
        ]
        self.distractor_geoms = [model.geom(f"distractor_{i}").id for i in range(MAX_DISTRACTORS)]
        self.distractor_half_height = [
            _resting_half_height(model, g) for g in self.distractor_geoms
        ]

    def table_top_z(self, model: mujoco.MjModel) -> float:
        return float(model.body_pos[self.table_body][2])

    def apply_table_and_light(
        self, model: mujoco.MjModel, setting: str, rng: np.random.Generator
    ) -> None:
        """Table height, material and light; task objects are placed after this."""
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; valid: {', '.join(SETTINGS)}")
        light_dir, light_diffuse = self.default_light
        model.geom_matid[self.table_geom] = self.table_materials[0]
        model.mat_rgba[self.table_materials[0]] = _CLEAN_TABLE_RGBA
        model.body_pos[self.table_body][2] = 0.0
        model.light_dir[self.light] = light_dir
        model.light_diffuse[self.light] = light_diffuse
        if setting == "clean":
            return
        material = self.table_materials[rng.integers(len(self.table_materials))]
        model.geom_matid[self.table_geom] = material
        model.mat_rgba[material] = np.append(rng.uniform(0.6, 1.0, size=3), 1.0)
        model.body_pos[self.table_body][2] = rng.uniform(-TABLE_HEIGHT_JITTER, TABLE_HEIGHT_JITTER)
        direction = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), -1.0])
        model.light_dir[self.light] = direction / np.linalg.norm(direction)
        model.light_diffuse[self.light] = rng.uniform(0.4, 0.8) * rng.uniform(0.75, 1.0, size=3)

    def place_distractors(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        setting: str,
        rng: np.random.Generator,
        taken: list[Footprint],
    ) -> None:
        """Hide all distractors (clean) or put 3-6 of them on free table spots (randomized)."""
        for mocap in self.distractor_mocap:
            data.mocap_pos[mocap] = _HIDDEN
        if setting == "clean":
            return
        count = int(rng.integers(3, MAX_DISTRACTORS + 1))
        taken = list(taken)
        table_z = self.table_top_z(model)
        for slot in rng.permutation(MAX_DISTRACTORS)[:count]:
            radius = float(model.geom_rbound[self.distractor_geoms[slot]])
            xy = sample_free_xy(
                rng, -TABLE_HALF + 0.05, TABLE_HALF - 0.05, radius, taken, margin=0.03
            )
            if xy is None:
                continue
            taken.append(Footprint(xy, radius))
            yaw = rng.uniform(-np.pi, np.pi)
            data.mocap_pos[self.distractor_mocap[slot]] = [
                xy[0],
                xy[1],
                table_z + self.distractor_half_height[slot],
            ]
            data.mocap_quat[self.distractor_mocap[slot]] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
            model.geom_rgba[self.distractor_geoms[slot]] = np.append(rng.uniform(0.1, 0.95, 3), 1.0)


def _resting_half_height(model: mujoco.MjModel, geom: int) -> float:
    size = model.geom_size[geom]
    geom_type = model.geom_type[geom]
    if geom_type == mujoco.mjtGeom.mjGEOM_SPHERE:
        return float(size[0])
    if geom_type == mujoco.mjtGeom.mjGEOM_CAPSULE:
        return float(size[0] + size[1])
    if geom_type == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return float(size[1])
    return float(size[2])
