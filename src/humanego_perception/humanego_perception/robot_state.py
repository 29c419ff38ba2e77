"""The robot's interaction tokens (no rclpy; the ``state_estimator`` node wires it to ROS).

The ICT of a robot observation come from the same :func:`humanego_core.ict.build_tokens` as the training
data's, with the robot standing in for the human:

- **The hand is the gripper.** ``T_base_hand = fk(q) @ T_ee_gripper``: the URDF forward kinematics of the arm
  (:class:`humanego_core.kinematics.RobotKinematics`, pinocchio) to the ``ee`` frame, then the hand<->gripper
  alignment ``gripper.ee_to_gripper`` of ``config/views.yaml`` (HumanEgo's T_align, the one the virtual
  gripper of ``clean_view`` is drawn with), which maps the ee frame onto the human hand frame (origin between
  the fingertips, x closing axis, y approach).
- **Grasp** from the finger joint: 1 when the opening per finger is below ``closed_below_fraction`` of the
  gripper's full opening (a gripper closed on an object stops at the object's width, far from 0), else 0.
  The token flag only asks grasp > 0.5, so the human grasp signal and this one agree on what "closed" is.
- **The world is the robot's base frame**: camera and object poses are expressed in it (from TF and the object
  backend) before :func:`humanego_core.ict.reference_transform` picks the reference frame: the robot's fixed
  camera (``camera_frame``, the image's optical frame, like the human clip's first camera) or the anchor
  object (``anchor_frame``).
- **Objects** are the task's, in the task's order (the order the training data lists them), the anchor
  being the task's goal unless configured; every configured object must have a pose or the frame is
  refused (:class:`MissingObjectError`), never built with an entity left out.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from humanego_core import geometry
from humanego_core.actions import NormStats
from humanego_core.ict import HandState, ICTConfig, ObjectState, Tokens, build_tokens, reference_transform
from humanego_core.kinematics import RobotKinematics
from humanego_core.timeutil import NS_PER_S, nearest_index

# Frame name prefix under which the estimated object poses are published in TF (the anchor's is the ICT's
# reference frame in anchor_frame mode, so downstream nodes can transform action chunks from it).
OBJECT_FRAME_PREFIX = "object/"


class StaleDataError(LookupError):
    """No sample close enough in time to the observation."""


class MissingObjectError(LookupError):
    """A configured object has no pose for this observation."""


def object_frame(name: str) -> str:
    return OBJECT_FRAME_PREFIX + name


class StampedBuffer:
    """The last ``capacity`` samples by stamp (ns), queried for the one nearest to a time within a bound."""

    def __init__(self, what: str, capacity: int = 100):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.what = what
        self.capacity = capacity
        self._stamps: list[int] = []
        self._values: list = []

    def add(self, stamp_ns: int, value) -> None:
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            self._values[i] = value
            return
        self._stamps.insert(i, stamp_ns)
        self._values.insert(i, value)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._values[0]

    @property
    def newest_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def nearest(self, stamp_ns: int, max_age_ns: int):
        """The value nearest to ``stamp_ns``; StaleDataError when none lies within ``max_age_ns``."""
        if not self._stamps:
            raise StaleDataError(f"no {self.what} received")
        best = nearest_index(self._stamps, stamp_ns)
        offset = self._stamps[best] - stamp_ns
        if abs(offset) > max_age_ns:
            raise StaleDataError(f"the nearest {self.what} is {offset / NS_PER_S:+.3f} s from the observation "
                                 f"(limit {max_age_ns / NS_PER_S:.3f} s)")
        return self._values[best]


class GripperHand:
    """The robot's gripper as an ICT hand: pose in the base frame and grasp from a joint state."""

    def __init__(self, kinematics: RobotKinematics, T_ee_gripper, side: str = "right",
                 closed_below_fraction: float = 0.85):
        try:
            self.T_ee_gripper = geometry.check_transform(T_ee_gripper, "ee_to_gripper")
        except geometry.GeometryError as exc:
            raise ValueError(str(exc)) from None
        if self.T_ee_gripper.shape != (4, 4):
            raise ValueError(f"ee_to_gripper must be one 4x4 transform, got {self.T_ee_gripper.shape}")
        if not 0.0 < closed_below_fraction < 1.0:
            raise ValueError(f"closed_below_fraction must lie in (0, 1), got {closed_below_fraction}")
        if kinematics.gripper_range[1] <= 0:
            raise ValueError(f"{kinematics.urdf_path}: gripper joint {kinematics.gripper_joint_name} has no opening "
                             f"range {kinematics.gripper_range}")
        self.kinematics = kinematics
        self.side = side
        self.closed_below_m = closed_below_fraction * kinematics.gripper_range[1]

    @property
    def joint_names(self) -> list[str]:
        return [*self.kinematics.arm_joint_names, self.kinematics.gripper_joint_name]

    def state(self, positions: Mapping[str, float]) -> HandState:
        """HandState in the base frame from joint positions by name; missing joints or NaN raise ValueError."""
        missing = [n for n in self.joint_names if n not in positions]
        if missing:
            raise ValueError(f"joint state lacks {', '.join(missing)} (robot {self.kinematics.urdf_path.name})")
        q = self.kinematics.check_q([positions[n] for n in self.kinematics.arm_joint_names])
        opening = float(positions[self.kinematics.gripper_joint_name])
        if not np.isfinite(opening):
            raise ValueError(f"gripper joint {self.kinematics.gripper_joint_name} position is NaN or inf")
        T_base_hand = self.kinematics.fk(q) @ self.T_ee_gripper
        return HandState(self.side, T_base_hand, 1.0 if opening < self.closed_below_m else 0.0)


class RobotTokenBuilder:
    """ICT of one robot observation from poses in the base frame."""

    def __init__(self, config: ICTConfig, stats: NormStats, object_names: Sequence[str], anchor: str | None):
        names = list(object_names)
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"object names must be unique and non-empty, got {names}")
        if anchor is not None and anchor not in names:
            raise ValueError(f"anchor object {anchor!r} is not one of the objects {names}")
        if config.frame_mode == "anchor_frame" and anchor is None:
            raise ValueError("anchor_frame mode needs an anchor object")
        self.config = config
        self.stats = stats
        self.object_names = names
        self.anchor = anchor

    def reference_frame_id(self, camera_frame: str) -> str:
        """TF frame of the tokens' reference: the camera's optical frame, or the anchor object's frame."""
        return camera_frame if self.config.frame_mode == "camera_frame" else object_frame(self.anchor)

    def objects(self, T_base_objects: Mapping[str, np.ndarray]) -> list[ObjectState]:
        missing = [n for n in self.object_names if n not in T_base_objects]
        if missing:
            raise MissingObjectError(f"no pose for {', '.join(missing)}")
        return [ObjectState(n, T_base_objects[n], n == self.anchor) for n in self.object_names]

    def build(self, T_base_camera, hands: Sequence[HandState],
              T_base_objects: Mapping[str, np.ndarray]) -> tuple[Tokens, np.ndarray]:
        """(tokens, T_base_ref); bad poses raise ValueError, a missing object MissingObjectError."""
        objects = self.objects(T_base_objects)
        T_base_ref = reference_transform(self.config, T_base_camera, objects)
        return build_tokens(self.config, T_base_ref, hands, objects, self.stats), T_base_ref


def load_bundle_tokens(bundle_dir: str | Path) -> tuple[ICTConfig, NormStats]:
    """The token layout and normalisation of a policy bundle (humanego_policy.bundle): ``bundle.json``'s
    ``token_layout`` ({token_dim, max_tokens, frame_mode, dual_hand, hand_side}, humanego_policy.checkpoint's
    TokenLayout) and the stats file it names (``dataset_stats``, default dataset_stats.json). The robot's tokens
    must be the ones the policy was trained on, so both come from the bundle and nowhere else; errors name the
    file. Only these two entries are read (humanego_policy.bundle.Bundle.load would import torch, which this
    node has no use for); the policy node loads and checks the whole bundle."""
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise FileNotFoundError(f"policy bundle {bundle} is not a folder (export one with "
                                "'humanego run humanego_training export')")
    path = bundle / "bundle.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a policy bundle holds bundle.json and dataset_stats.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    layout = data.get("token_layout") if isinstance(data, dict) else None
    keys = {"token_dim", "max_tokens", "frame_mode", "dual_hand", "hand_side"}
    if not isinstance(layout, dict) or set(layout) != keys:
        raise ValueError(f"{path}: token_layout must be a mapping with exactly the keys {', '.join(sorted(keys))}, "
                         f"got {layout!r}")
    try:
        config = ICTConfig(layout["frame_mode"], bool(layout["dual_hand"]), layout["hand_side"], layout["max_tokens"])
    except ValueError as exc:
        raise ValueError(f"{path}: token_layout: {exc}") from None
    if layout["token_dim"] != config.token_dim:
        raise ValueError(f"{path}: token_layout.token_dim {layout['token_dim']} does not fit its layout "
                         f"({config.token_dim} floats per token)")
    stats_name = data.get("dataset_stats", "dataset_stats.json")
    if not isinstance(stats_name, str) or not stats_name:
        raise ValueError(f"{path}: dataset_stats must name the stats file, got {stats_name!r}")
    return config, NormStats.load(bundle / stats_name)
