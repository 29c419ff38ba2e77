"""The virtual two-finger gripper and the object keypoint dots drawn into images, the same way for a human hand
and for the robot's end effector, so that both look alike to the policy.

Gripper frame = HumanEgo's hand frame (DESIGN.md section 5): origin between the fingertips (the pinch point),
x the closing axis (thumb to index), y the approach direction (wrist to fingertips), z = x cross y. The
fingers sit at x = +-opening/2 and reach back along -y to a palm bar, with a stem behind it. For the human,
the pose is the hand frame in the camera; for the robot, ``T_camera_ee @ ee_to_gripper`` (the alignment,
HumanEgo's T_align). The parts are boxes, projected with the camera model (pinhole or fisheye) and filled
face by face from the farthest to the nearest (painter's order: the boxes are convex and do not
interpenetrate), shaded by how squarely each face looks at the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from humanego_core import geometry
from humanego_core.camera_models import CameraModel
from humanego_core.config import option

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions
# Box corners as signs, and its 6 faces as corner indices in order around each face.
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
_FACES = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])


@dataclass
class GripperConfig:
    finger_length_m: float = option(0.05, help="finger length from the tip back to the palm bar (m)", minimum=0.005)
    finger_thickness_m: float = option(0.012, help="finger thickness along the closing axis (m)", minimum=0.001)
    finger_width_m: float = option(0.02, help="finger width across the closing axis (m)", minimum=0.001)
    palm_height_m: float = option(0.02, help="palm bar height along the approach axis (m)", minimum=0.001)
    stem_length_m: float = option(0.07, help="stem behind the palm bar (m); 0: none", minimum=0.0)
    stem_width_m: float = option(0.03, help="stem width (m)", minimum=0.001)
    colour: list[int] = option(default_factory=lambda: [40, 200, 255], help="RGB colour of the gripper",
                               minimum=0, maximum=255)
    open_width_m: float = option(0.08, help="finger gap drawn for a human hand that is not grasping (m)",
                                 minimum=0.0, maximum=0.3)
    closed_width_m: float = option(0.04, help="finger gap drawn for a grasping human hand (m)",
                                   minimum=0.0, maximum=0.3)
    ee_to_gripper: list[list[float]] = option(
        default_factory=lambda: [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0, 0, 0, 1.0]],
        help="T_ee_gripper: the gripper frame in the robot's ee frame (4x4). Default: ee z = approach, fingers "
             "moving along ee y (panda/ur5e in urdf/), TCP between the finger pads")
    near_m: float = option(0.02, help="faces closer to the camera than this are not drawn (m)", minimum=1e-4)

    def __post_init__(self):
        if len(self.colour) != 3:
            raise ValueError(f"gripper colour must be 3 values (RGB), got {self.colour}")
        geometry.check_transform(np.array(self.ee_to_gripper, dtype=np.float64), "gripper.ee_to_gripper", tol=1e-6)


@dataclass
class KeypointStyle:
    radius_px: int = option(3, help="radius of an object keypoint dot (px)", minimum=1, maximum=50)
    colours: list[list[int]] = option(
        default_factory=lambda: [[255, 40, 40], [40, 255, 80], [255, 0, 255], [255, 255, 0]],
        help="RGB colour of each object's dots, by object index (cycled)", minimum=0, maximum=255)


def gripper_boxes(config: GripperConfig, opening_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, half extents) of the gripper's boxes in the gripper frame."""
    c, half = config, max(float(opening_m), 0.0) / 2.0
    t, fl = c.finger_thickness_m, c.finger_length_m
    boxes = [(np.array([s * (half + t / 2), -fl / 2, 0.0]), np.array([t / 2, fl / 2, c.finger_width_m / 2]))
             for s in (-1.0, 1.0)]
    palm_y = -fl - c.palm_height_m / 2
    boxes.append((np.array([0.0, palm_y, 0.0]), np.array([half + t, c.palm_height_m / 2, c.finger_width_m / 2])))
    if c.stem_length_m > 0:
        boxes.append((np.array([0.0, -fl - c.palm_height_m - c.stem_length_m / 2, 0.0]),
                      np.array([c.stem_width_m / 2, c.stem_length_m / 2, c.stem_width_m / 2])))
    return boxes


class GripperOverlay:
    def __init__(self, config: GripperConfig):
        self.config = config

    def draw(self, image: np.ndarray, camera: CameraModel, T_camera_gripper: np.ndarray,
             opening_m: float) -> np.ndarray:
        """A copy of ``image`` (RGB uint8) with the gripper at ``T_camera_gripper`` (4x4, camera optical frame)."""
        T = geometry.check_transform(T_camera_gripper, "T_camera_gripper", tol=1e-5)
        if not np.isfinite(opening_m):
            raise ValueError(f"gripper opening must be finite, got {opening_m}")
        out = image.copy()
        faces = []
        for centre, half in gripper_boxes(self.config, opening_m):
            corners = geometry.transform_points(T, centre + _CORNERS * half)
            for face in _FACES:
                quad = corners[face]
                if np.any(quad[:, 2] < self.config.near_m):
                    continue
                normal = np.cross(quad[1] - quad[0], quad[3] - quad[0])
                centroid = quad.mean(axis=0)
                facing = abs(np.dot(normal, centroid)) / (np.linalg.norm(normal) * np.linalg.norm(centroid) + 1e-12)
                shade = 0.45 + 0.55 * facing
                faces.append((float(np.linalg.norm(centroid)), quad, shade))
        colour = np.array(self.config.colour, dtype=np.float64)
        for _, quad, shade in sorted(faces, key=lambda f: -f[0]):
            uv = camera.project_no_checks(quad)
            if not np.all(np.isfinite(uv)) or np.any(np.abs(uv) > 1e5):
                continue
            pts = np.round(uv * (1 << _SHIFT)).astype(np.int32)
            cv2.fillConvexPoly(out, pts, tuple(float(v) for v in colour * shade), cv2.LINE_AA, _SHIFT)
        return out


def draw_keypoints(image: np.ndarray, uv: np.ndarray, style: KeypointStyle, index: int = 0) -> np.ndarray:
    """A copy of ``image`` with filled dots at the pixels ``uv`` (N, 2) in the colour of object ``index``."""
    out = image.copy()
    colour = tuple(int(v) for v in style.colours[index % len(style.colours)])
    for u, v in np.asarray(uv, dtype=np.float64).reshape(-1, 2):
        if np.isfinite(u) and np.isfinite(v):
            centre = (int(round(u * (1 << _SHIFT))), int(round(v * (1 << _SHIFT))))
            cv2.circle(out, centre, style.radius_px << _SHIFT, colour, -1, cv2.LINE_AA, _SHIFT)
    return out


