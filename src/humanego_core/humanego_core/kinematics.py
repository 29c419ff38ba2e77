"""Forward kinematics and Jacobians of the arm from ``urdf/<robot>.urdf`` (the single kinematic source), via pinocchio.

Joint roles are read from the description, not configured: the **arm joints** are the movable joints on the
chain from the root link to the ``ee`` frame (in chain order); the **gripper joint** is the prismatic joint
that no other joint mimics (``finger_joint1`` in the shipped URDFs) — its position is the opening *per
finger* in metres, the value ``joint_chunk`` and ``gripper_command`` carry. Fingers that mimic it follow it
(multiplier and offset from the URDF).

Not thread-safe (one pinocchio Data is reused): give each thread its own instance.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pinocchio as pin

from humanego_core.ament_index import resource_path

ROBOTS = ("panda", "ur5e")


class KinematicsError(ValueError):
    """A robot description that cannot serve as an arm + parallel gripper, or bad joint positions."""


def robot_description(robot: str | Path) -> Path:
    """The URDF of a shipped robot by name (``panda``, ``ur5e``) or a path to a URDF file."""
    if str(robot) in ROBOTS:
        return resource_path("urdf", f"{robot}.urdf")
    path = Path(robot)
    if path.suffix != ".urdf":
        raise KinematicsError(f"robot {str(robot)!r}: expected one of {', '.join(ROBOTS)} or a path to a .urdf file")
    if not path.is_file():
        raise FileNotFoundError(f"robot description {path} not found")
    return path


def _mimic_joints(path: Path) -> dict[str, tuple[str, float, float]]:
    """Mimic joints of the URDF: name -> (master, multiplier, offset)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise KinematicsError(f"{path}: not a readable URDF ({exc})") from None
    mimic = {}
    for joint in root.iter("joint"):
        m = joint.find("mimic")
        if m is not None:
            mimic[joint.get("name")] = (m.get("joint"), float(m.get("multiplier", 1.0)), float(m.get("offset", 0.0)))
    return mimic


class RobotKinematics:
    """FK, frame poses and the ee Jacobian over the arm joints; every pose is in ``base_frame`` (the root link)."""

    def __init__(self, urdf_path: str | Path, ee_frame: str = "ee"):
        path = Path(urdf_path)
        if not path.is_file():
            raise FileNotFoundError(f"robot description {path} not found")
        self.urdf_path = path
        mimic = _mimic_joints(path)
        try:
            self.model = pin.buildModelFromUrdf(str(path))
        except (RuntimeError, ValueError) as exc:
            raise KinematicsError(f"{path}: pinocchio cannot load it: {exc}") from None
        model = self.model
        self.data = model.createData()
        for i in range(1, model.njoints):
            if model.joints[i].nq != 1:
                raise KinematicsError(f"{path}: joint {model.names[i]!r} has {model.joints[i].nq} position "
                                      "coordinates; only revolute and prismatic joints are supported")
        if not model.existFrame(ee_frame):
            raise KinematicsError(f"{path}: no frame {ee_frame!r} (the tool centre point, DESIGN.md section 4)")
        self.ee_frame = ee_frame
        self.base_frame = next(f.name for f in model.frames if f.type == pin.FrameType.BODY)
        self._ee_id = model.getFrameId(ee_frame)

        chain = [j for j in model.supports[model.frames[self._ee_id].parentJoint] if j > 0]
        self._arm_joint_ids = chain
        self.arm_joint_names: list[str] = [model.names[j] for j in chain]
        self._arm_q = np.array([model.joints[j].idx_q for j in chain])
        self._arm_v = np.array([model.joints[j].idx_v for j in chain])

        prismatic = [model.names[j] for j in range(1, model.njoints)
                     if j not in chain and model.joints[j].shortname().startswith("JointModelP")]
        masters = [name for name in prismatic if name not in mimic]
        if len(masters) != 1:
            raise KinematicsError(f"{path}: expected one gripper joint (a prismatic joint no other joint mimics) off "
                                  f"the chain to {ee_frame!r}, found {masters or 'none'}")
        self.gripper_joint_name: str = masters[0]
        self._mimic = {name: spec for name, spec in mimic.items() if name in prismatic}
        unknown = [name for name in prismatic if name != self.gripper_joint_name and name not in self._mimic]
        if unknown:
            raise KinematicsError(f"{path}: prismatic joints {unknown} neither are the gripper joint nor mimic it")
        self._joint_q = {model.names[j]: model.joints[j].idx_q for j in range(1, model.njoints)}

        self.lower = model.lowerPositionLimit[self._arm_q].copy()
        self.upper = model.upperPositionLimit[self._arm_q].copy()
        self.velocity_limit = model.velocityLimit[self._arm_v].copy()
        g = self._joint_q[self.gripper_joint_name]
        self.gripper_range = (float(model.lowerPositionLimit[g]), float(model.upperPositionLimit[g]))
        self._neutral = pin.neutral(model)

    @classmethod
    def load(cls, robot: str | Path = "panda", ee_frame: str = "ee") -> RobotKinematics:
        """A shipped robot by name (``panda``, ``ur5e``) or a URDF path."""
        return cls(robot_description(robot), ee_frame)

    @property
    def n(self) -> int:
        """Number of arm joints."""
        return len(self.arm_joint_names)

    @property
    def frame_names(self) -> list[str]:
        """Every link frame of the description (URDF links)."""
        return [f.name for f in self.model.frames if f.type == pin.FrameType.BODY]

    def reach_sphere(self) -> tuple[np.ndarray, float]:
        """(centre, radius) of a ball holding every reachable ee position: centred at the first arm joint,
        whose origin is fixed in the base; the radius sums the distances between consecutive joint origins
        and on to the ee, each constant whatever the joint positions."""
        pin.forwardKinematics(self.model, self.data, self._neutral)
        ee = pin.updateFramePlacement(self.model, self.data, self._ee_id).translation
        origins = [self.data.oMi[j].translation.copy() for j in self._arm_joint_ids] + [ee.copy()]
        radius = sum(float(np.linalg.norm(b - a)) for a, b in zip(origins[:-1], origins[1:], strict=True))
        return origins[0], radius

    def chain_links(self) -> list[str]:
        """The URDF links from the base to the ee frame, in order (the arm's skeleton)."""
        links, i = [], self._ee_id
        while i > 0:
            frame = self.model.frames[i]
            if frame.type == pin.FrameType.BODY:
                links.append(frame.name)
            i = frame.parentFrame
        return links[::-1]

    def arm_positions(self, names: list[str], positions) -> np.ndarray:
        """The arm's joint vector from positions by name (e.g. a JointState); extra names are ignored."""
        index = {name: i for i, name in enumerate(names)}
        missing = [name for name in self.arm_joint_names if name not in index]
        if missing:
            raise KinematicsError(f"joint positions missing for {', '.join(missing)} (robot {self.urdf_path.name} "
                                  f"has arm joints {', '.join(self.arm_joint_names)})")
        return self.check_q(np.array([positions[index[name]] for name in self.arm_joint_names], float))

    def configuration(self, q, gripper_opening: float = 0.0) -> np.ndarray:
        """pinocchio's configuration vector: arm joints ``q``, every finger at ``gripper_opening`` (per finger, m)."""
        config = self._neutral.copy()
        config[self._arm_q] = self.check_q(q)
        config[self._joint_q[self.gripper_joint_name]] = gripper_opening
        for name, (_, multiplier, offset) in self._mimic.items():
            config[self._joint_q[name]] = multiplier * gripper_opening + offset
        return config

    def check_q(self, q) -> np.ndarray:
        """``q`` as a float array of the arm's size, finite; raises KinematicsError naming the bad joints."""
        q = np.asarray(q, float)
        if q.shape != (self.n,):
            raise KinematicsError(f"expected {self.n} arm joint positions ({', '.join(self.arm_joint_names)}), "
                                  f"got shape {q.shape}")
        if not np.all(np.isfinite(q)):
            bad = [name for name, v in zip(self.arm_joint_names, q, strict=True) if not math.isfinite(v)]
            raise KinematicsError(f"joint positions are NaN or inf for {', '.join(bad)}")
        return q

    def fk(self, q) -> np.ndarray:
        """T_base_ee (4, 4) at arm joints ``q``."""
        config = self.configuration(q)
        pin.forwardKinematics(self.model, self.data, config)
        return pin.updateFramePlacement(self.model, self.data, self._ee_id).homogeneous.copy()

    def frame_transform(self, q, frame: str, gripper_opening: float = 0.0) -> np.ndarray:
        """T_base_frame (4, 4) of any URDF link or joint frame."""
        if not self.model.existFrame(frame):
            raise KinematicsError(f"frame {frame!r} is not in {self.urdf_path.name} (links: "
                                  f"{', '.join(self.frame_names)})")
        pin.forwardKinematics(self.model, self.data, self.configuration(q, gripper_opening))
        return pin.updateFramePlacement(self.model, self.data, self.model.getFrameId(frame)).homogeneous.copy()

    def link_transforms(self, q, gripper_opening: float = 0.0) -> dict[str, np.ndarray]:
        """T_base_link of every URDF link (for drawing the robot)."""
        pin.framesForwardKinematics(self.model, self.data, self.configuration(q, gripper_opening))
        return {f.name: self.data.oMf[i].homogeneous.copy() for i, f in enumerate(self.model.frames)
                if f.type == pin.FrameType.BODY}

    def jacobian(self, q) -> np.ndarray:
        """(6, n) Jacobian of the ee over the arm joints: rows linear velocity of the ee origin then angular
        velocity, both expressed in the base frame (pinocchio's LOCAL_WORLD_ALIGNED)."""
        config = self.configuration(q)
        J = pin.computeFrameJacobian(self.model, self.data, config, self._ee_id, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)
        return J[:, self._arm_v].copy()

    def fk_and_jacobian(self, q) -> tuple[np.ndarray, np.ndarray]:
        """``fk(q)`` and ``jacobian(q)`` from one kinematics pass (the IK's inner loop)."""
        config = self.configuration(q)
        J = pin.computeFrameJacobian(self.model, self.data, config, self._ee_id, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)
        T = pin.updateFramePlacement(self.model, self.data, self._ee_id).homogeneous.copy()
        return T, J[:, self._arm_v].copy()
