"""The robot camera's image made to look like the preprocessed human images (no rclpy; the ``clean_view``
node wires it to ROS): the robot arm masked from its URDF at the measured joint state, inpainted, and the
virtual two-finger gripper drawn where the robot's end effector is, opened as far as its fingers are.

:class:`JointStateBuffer` keeps recent joint states so that each image is processed with the state
measured nearest to its stamp, and refuses (rather than guesses) when none is close enough.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from pathlib import Path

import numpy as np

from humanego_core.camera_models import CameraModel
from humanego_core.timeutil import NS_PER_S
from humanego_perception.gripper_overlay import GripperOverlay
from humanego_perception.robot_mask import RobotSelfMask
from humanego_perception.views import ViewsConfig, build_inpainter

# The clean_view node's default inpaint.scale: the robot arm is a large hole, OpenCV's inpainting costs in
# proportion to it, and its smooth fill looks the same at half resolution (config/views.yaml: 3x faster).
ONLINE_INPAINT_SCALE = 0.5


class StaleJointStateError(LookupError):
    """No joint state close enough in time to an image to mask the robot in it."""


class JointStateBuffer:
    """Joint states by stamp (the last ``capacity``), queried for the one nearest to a time."""

    def __init__(self, capacity: int = 500):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._stamps: list[int] = []
        self._states: list[dict[str, float]] = []

    def add(self, stamp_ns: int, names, positions) -> None:
        """Record positions by joint name; mismatched lengths, repeated names or NaN/inf raise ValueError."""
        names, positions = list(names), [float(p) for p in positions]
        if len(names) != len(positions) or len(set(names)) != len(names):
            raise ValueError(f"joint state with {len(names)} names (unique: {len(set(names))}) and "
                             f"{len(positions)} positions")
        bad = [n for n, p in zip(names, positions, strict=True) if not math.isfinite(p)]
        if bad:
            raise ValueError(f"joint state positions are NaN or inf for {', '.join(bad)}")
        i = bisect.bisect_left(self._stamps, stamp_ns)
        state = dict(zip(names, positions, strict=True))
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            self._states[i].update(state)  # several publishers (arm, gripper) may share a stamp
            return
        self._stamps.insert(i, stamp_ns)
        self._states.insert(i, state)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._states[0]

    @property
    def newest_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def nearest(self, stamp_ns: int, max_age_ns: int) -> tuple[dict[str, float], int]:
        """The joint state nearest to ``stamp_ns`` and its offset (ns, state minus query); raises
        StaleJointStateError when none lies within ``max_age_ns``."""
        if not self._stamps:
            raise StaleJointStateError("no joint states received")
        i = bisect.bisect_left(self._stamps, stamp_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self._stamps)),
                   key=lambda j: abs(self._stamps[j] - stamp_ns))
        offset = self._stamps[best] - stamp_ns
        if abs(offset) > max_age_ns:
            raise StaleJointStateError(
                f"the nearest joint state is {offset / NS_PER_S:+.3f} s from the image (limit "
                f"{max_age_ns / NS_PER_S:.3f} s; {len(self._stamps)} buffered from "
                f"{(self._stamps[0] - stamp_ns) / NS_PER_S:+.3f} to {(self._stamps[-1] - stamp_ns) / NS_PER_S:+.3f} s)")
        return self._states[best], offset


class RobotCleanView:
    """Robot arm out, virtual gripper in: one camera frame at a time."""

    def __init__(self, robot_mask: RobotSelfMask, inpainter, overlay: GripperOverlay, ee_frame: str = "ee",
                 ee_to_gripper=None):
        """``inpainter``: anything with ``inpaint(image_rgb, mask) -> image``; ``ee_to_gripper``: T_ee_gripper
        from the robot's end-effector frame to the overlay's gripper convention (identity if None)."""
        self.robot_mask = robot_mask
        self.inpainter = inpainter
        self.overlay = overlay
        self.robot_mask.fk(dict.fromkeys(robot_mask.joint_names, 0.0), ee_frame)  # an unknown frame fails now
        self.ee_frame = ee_frame
        self.T_ee_gripper = np.eye(4) if ee_to_gripper is None else np.asarray(ee_to_gripper, dtype=np.float64)
        if self.T_ee_gripper.shape != (4, 4):
            raise ValueError(f"ee_to_gripper must be 4x4, got shape {self.T_ee_gripper.shape}")

    @classmethod
    def from_config(cls, urdf_path: str | Path, views: ViewsConfig, padding_px: int = 3, ee_frame: str = "ee",
                    inpaint_scale: float | None = None) -> RobotCleanView:
        """The views configuration's inpainter and gripper; ``inpaint_scale`` (if given) replaces the views
        configuration's ``inpaint.scale`` (OpenCV backends; LaMa works at its model's size anyway)."""
        if inpaint_scale is not None:
            views = dataclasses.replace(views, inpaint=dataclasses.replace(views.inpaint, scale=inpaint_scale))
        return cls(RobotSelfMask(urdf_path, padding_px=padding_px), build_inpainter(views),
                   GripperOverlay(views.gripper), ee_frame, views.gripper.ee_to_gripper)

    def process(self, image: np.ndarray, camera: CameraModel, T_camera_base,
                q: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """(clean RGB image, bool robot mask) of an RGB uint8 image taken by ``camera`` at joint state ``q``."""
        if image.dtype != np.uint8 or image.shape != (camera.height, camera.width, 3):
            raise ValueError(f"image must be uint8 ({camera.height}, {camera.width}, 3) like its camera, got "
                             f"{image.dtype} {image.shape}")
        mask = self.robot_mask.mask(camera, T_camera_base, q)
        clean = self.inpainter.inpaint(image, mask) if mask.any() else image.copy()
        T_camera_gripper = np.asarray(T_camera_base) @ self.robot_mask.fk(q, self.ee_frame) @ self.T_ee_gripper
        clean = self.overlay.draw(clean, camera, T_camera_gripper, self.robot_mask.finger_opening(q))
        return clean, mask
