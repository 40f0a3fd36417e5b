"""The two 6-DoF arms with parallel grippers, built into a ``mujoco.MjSpec``.

Each arm follows the ViperX/ALOHA joint layout: waist (z), shoulder (y), elbow (y),
forearm roll (x), wrist pitch (y), wrist roll (x). In its own frame an arm faces +x; the
gripper's local x is the approach direction and its fingers slide along local y.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

SIDES = ("left", "right")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll")
JOINT_RANGES = {
    "waist": (-np.pi, np.pi),
    "shoulder": (-1.9, 1.9),
    "elbow": (-2.7, 2.7),
    "forearm_roll": (-np.pi, np.pi),
    "wrist_pitch": (-2.2, 2.2),
    "wrist_roll": (-np.pi, np.pi),
}
JOINT_GAINS = {  # (kp [N m/rad], joint damping [N m s/rad])
    "waist": (400.0, 25.0),
    "shoulder": (600.0, 35.0),
    "elbow": (400.0, 25.0),
    "forearm_roll": (120.0, 6.0),
    "wrist_pitch": (120.0, 6.0),
    "wrist_roll": (60.0, 3.0),
}
FINGER_TRAVEL = 0.04  # m, per finger: gripper command 1 = fully open (8 cm between pads)
FINGER_FORCE = 12.0  # N, per finger; >= 3x m*g/mu for every task object
FINGER_KP = 600.0  # N/m
BASE_X = 0.47  # m, arms stand at x = -BASE_X (left) and +BASE_X (right), facing each other
SHOULDER_HEIGHT = 0.10  # m above the table top at nominal height
UPPER_ARM = 0.30
FOREARM = 0.30
# Home pose (solved by IK): gripper pointing down, fingers closing along y, tool centre 20 cm
# in front of the base and 20 cm above the table.
HOME = np.array([0.0, -0.3145, 0.5339, 0.0, 1.3514, 0.0])

ARM_GROUP, OBJECT_GROUP = 2, 1  # contype bits: arm geoms touch objects and table, not each other


@dataclass(frozen=True)
class ArmIds:
    """Indices of one arm's elements in a compiled model."""

    qpos: np.ndarray  # (6,) qpos addresses of the arm joints
    dof: np.ndarray  # (6,) dof addresses of the arm joints
    finger_qpos: np.ndarray  # (2,) qpos addresses of the two finger slides
    finger_dof: np.ndarray  # (2,)
    actuators: np.ndarray  # (6,) joint position actuators
    finger_actuators: np.ndarray  # (2,)
    tcp_site: int  # site between the finger pads (tool centre point)
    finger_geoms: frozenset[int]  # pad geoms of both fingers
    gripper_body: int


def _name(side: str, part: str) -> str:
    return f"{side}/{part}"


def _robot_geom(body, **kwargs):
    return body.add_geom(contype=ARM_GROUP, conaffinity=OBJECT_GROUP, condim=3, **kwargs)


def add_arm(spec: mujoco.MjSpec, side: str, rgba: tuple[float, ...]) -> None:
    """Add one arm, its gripper, its wrist camera and its actuators to ``spec``."""
    x = BASE_X if side == "right" else -BASE_X
    yaw_quat = [0.0, 0.0, 0.0, 1.0] if side == "right" else [1.0, 0.0, 0.0, 0.0]
    n = lambda part: _name(side, part)  # noqa: E731
    grey = (0.25, 0.25, 0.27, 1.0)

    base = spec.worldbody.add_body(name=n("base"), pos=[x, 0.0, 0.0], quat=yaw_quat)
    base.add_geom(  # pedestal, welded to the world: decorative only
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[0.06, 0.05],
        pos=[0, 0, -0.01],
        rgba=grey,
        contype=0,
        conaffinity=0,
    )
    waist = base.add_body(name=n("waist_link"), pos=[0, 0, 0.05], gravcomp=1)
    _robot_geom(
        waist, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.045, 0.025], rgba=rgba, mass=0.8
    )
    upper = waist.add_body(name=n("upper_arm"), pos=[0, 0, SHOULDER_HEIGHT - 0.05], gravcomp=1)
    _robot_geom(
        upper,
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        fromto=[0, 0, 0, 0, 0, UPPER_ARM],
        size=[0.025, 0, 0],
        rgba=rgba,
        mass=0.6,
    )
    forearm = upper.add_body(name=n("forearm"), pos=[0, 0, UPPER_ARM], gravcomp=1)
    _robot_geom(
        forearm,
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        fromto=[0, 0, 0, 0.05, 0, 0],
        size=[0.024, 0, 0],
        rgba=grey,
        mass=0.2,
    )
    forearm_link = forearm.add_body(name=n("forearm_link"), pos=[0.05, 0, 0], gravcomp=1)
    _robot_geom(
        forearm_link,
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        fromto=[0, 0, 0, FOREARM - 0.05, 0, 0],
        size=[0.021, 0, 0],
        rgba=rgba,
        mass=0.4,
    )
    wrist = forearm_link.add_body(name=n("wrist"), pos=[FOREARM - 0.05, 0, 0], gravcomp=1)
    _robot_geom(
        wrist,
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[0.022, 0.024],
        quat=[0.7071068, 0.7071068, 0, 0],
        rgba=grey,
        mass=0.15,
    )
    gripper = wrist.add_body(name=n("gripper"), pos=[0.035, 0, 0], gravcomp=1)
    _robot_geom(
        gripper,
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.018, 0.05, 0.016],
        pos=[0.018, 0, 0],
        rgba=grey,
        mass=0.15,
    )
    gripper.add_site(name=n("tcp"), pos=[0.085, 0, 0], size=[0.006, 0, 0], rgba=[1, 0.2, 0.2, 0])
    # Wrist camera above the palm, looking along the fingers (camera looks along its -z).
    gripper.add_camera(
        name=n("wrist_cam"),
        pos=[-0.02, 0, 0.05],
        quat=_camera_quat_along_x(pitch_down=0.45),
        fovy=75,
    )

    joints = zip(
        ARM_JOINTS,
        (waist, upper, forearm, forearm_link, wrist, gripper),
        ([0, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]),
        strict=True,
    )
    for joint_name, body, axis in joints:
        kp, damping = JOINT_GAINS[joint_name]
        body.add_joint(
            name=n(joint_name),
            type=mujoco.mjtJoint.mjJNT_HINGE,
            axis=axis,
            range=JOINT_RANGES[joint_name],
            limited=mujoco.mjtLimited.mjLIMITED_TRUE,
            damping=damping,
            armature=0.02,
        )
        actuator = spec.add_actuator(
            name=n(joint_name), target=n(joint_name), trntype=mujoco.mjtTrn.mjTRN_JOINT
        )
        actuator.set_to_position(kp=kp)
        actuator.ctrlrange = JOINT_RANGES[joint_name]
        actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE

    for finger, sign in (("finger_a", 1.0), ("finger_b", -1.0)):
        body = gripper.add_body(name=n(finger), pos=[0.04, 0, 0], gravcomp=1)
        body.add_joint(
            name=n(finger),
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=[0, sign, 0],
            range=[0.0, FINGER_TRAVEL],
            limited=mujoco.mjtLimited.mjLIMITED_TRUE,
            damping=8.0,
            armature=0.01,
        )
        body.add_geom(
            name=n(f"{finger}_pad"),
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.026, 0.006, 0.013],
            pos=[0.028, sign * 0.006, 0],
            rgba=(0.12, 0.12, 0.12, 1.0),
            mass=0.04,
            contype=ARM_GROUP,
            conaffinity=OBJECT_GROUP,
            condim=4,
            friction=[1.6, 0.02, 0.002],
            solref=[0.004, 1.0],
            priority=1,
        )
        actuator = spec.add_actuator(
            name=n(finger), target=n(finger), trntype=mujoco.mjtTrn.mjTRN_JOINT
        )
        # force = kp * (ctrl * FINGER_TRAVEL - q): a command in [0, 1] maps to an opening.
        actuator.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        actuator.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        actuator.gainprm[0] = FINGER_KP * FINGER_TRAVEL
        actuator.biasprm[:3] = [0.0, -FINGER_KP, -20.0]
        actuator.ctrlrange = [0.0, 1.0]
        actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        actuator.forcerange = [-FINGER_FORCE, FINGER_FORCE]
        actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE


def _camera_quat_along_x(pitch_down: float) -> np.ndarray:
    """Camera orientation looking along the body's +x, image up = +z, tilted down by pitch."""
    look = np.array([np.cos(pitch_down), 0.0, -np.sin(pitch_down)])
    up = np.array([np.sin(pitch_down), 0.0, np.cos(pitch_down)])
    return mat_to_quat(np.column_stack([np.cross(up, -look), up, -look]))


def mat_to_quat(matrix: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(matrix, dtype=np.float64).reshape(9))
    return quat


def arm_ids(model: mujoco.MjModel, side: str) -> ArmIds:
    def joint(part: str) -> int:
        return model.joint(_name(side, part)).id

    arm_joint_ids = [joint(j) for j in ARM_JOINTS]
    finger_joint_ids = [joint("finger_a"), joint("finger_b")]
    return ArmIds(
        qpos=model.jnt_qposadr[arm_joint_ids].copy(),
        dof=model.jnt_dofadr[arm_joint_ids].copy(),
        finger_qpos=model.jnt_qposadr[finger_joint_ids].copy(),
        finger_dof=model.jnt_dofadr[finger_joint_ids].copy(),
        actuators=np.array([model.actuator(_name(side, j)).id for j in ARM_JOINTS]),
        finger_actuators=np.array(
            [model.actuator(_name(side, f)).id for f in ("finger_a", "finger_b")]
        ),
        tcp_site=model.site(_name(side, "tcp")).id,
        finger_geoms=frozenset(
            model.geom(_name(side, f"{f}_pad")).id for f in ("finger_a", "finger_b")
        ),
        gripper_body=model.body(_name(side, "gripper")).id,
    )
