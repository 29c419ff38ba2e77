"""The virtual two-finger gripper and the object keypoint dots, drawn the same way into human and robot images.

Gripper frame = HumanEgo's hand frame (DESIGN.md section 5): origin between the fingertips (the pinch point),
x the closing axis (thumb to index), y the approach direction (wrist to fingertips), z = x cross y. The two
fingers are boxes whose inner faces are at x = +-opening/2, reaching from the fingertips (y = 0) back along
-y to a palm bar that joins them, with a stem further back along -y.

- Human: ``T_camera_gripper`` = the hand frame in the camera (:func:`humanego_core.hand.hand_frame` of the
  landmarks in the camera frame), opening = ``open_width_m`` or ``closed_width_m`` by the grasp state.
- Robot: ``T_camera_gripper = T_camera_ee @ ee_to_gripper`` (the alignment, HumanEgo's T_align; the default
  maps the ee frame of urdf/panda.urdf and urdf/ur5e.urdf, z = approach and fingers moving along y, onto this
  convention), opening = the measured finger opening.

Drawing: each box face that looks at the camera (back faces culled) is clipped at the near plane (what is
behind the camera is not drawn), projected with the camera model (pinhole or Fisheye624; with a distorting
model the edges are subdivided so that they bend like the image does) and filled, shaded by how squarely it
faces the camera (a headlight), from the farthest face to the nearest (painter's order by face depth: the
boxes are convex and do not interpenetrate).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.config import option

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions
_MAX_PX = 1.0e6  # projected coordinates are clipped here, well inside int32 with _SHIFT bits
# Box corners as signs, and its 6 faces as corner indices, counter-clockwise seen from outside.
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
_FACES = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
# Edges of faces are cut into this many pieces before a distorting (non-pinhole) projection.
_CURVED_EDGE_PIECES = 8


@dataclass
class GripperConfig:
    finger_length_m: float = option(0.05, help="finger length from the tip back to the palm bar (m)",
                                    minimum=0.005, maximum=0.5)
    finger_thickness_m: float = option(0.012, help="finger thickness along the closing axis x (m)",
                                       minimum=0.001, maximum=0.1)
    finger_width_m: float = option(0.02, help="finger width along z (m)", minimum=0.001, maximum=0.2)
    palm_height_m: float = option(0.02, help="palm bar height along the approach axis y (m)",
                                  minimum=0.001, maximum=0.2)
    stem_length_m: float = option(0.07, help="stem behind the palm bar along -y (m); 0: none", minimum=0.0, maximum=0.5)
    stem_width_m: float = option(0.03, help="stem width along x and z (m)", minimum=0.001, maximum=0.2)
    colour: list[int] = option(default_factory=lambda: [40, 200, 255], help="RGB colour of the gripper",
                               minimum=0, maximum=255)
    ambient: float = option(0.45, help="brightness of a face seen edge-on; a face looking straight at the camera "
                            "has the full colour", minimum=0.0, maximum=1.0)
    open_width_m: float = option(0.08, help="finger gap drawn for a human hand that is not grasping (m)",
                                 minimum=0.0, maximum=0.3)
    closed_width_m: float = option(0.04, help="finger gap drawn for a grasping human hand (m)",
                                   minimum=0.0, maximum=0.3)
    ee_to_gripper: list[list[float]] = option(
        default_factory=lambda: [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0, 0, 0, 1.0]],
        help="T_ee_gripper (4x4, rigid): the gripper frame in the robot's ee frame. Default: ee z = approach, "
             "fingers moving along ee y (urdf/panda.urdf, urdf/ur5e.urdf), the TCP between the fingertips")
    near_m: float = option(0.01, help="near plane: the parts closer to the camera than this are cut off (m)",
                           minimum=1e-4, maximum=1.0)

    def problems(self) -> list[tuple[str, str]]:
        """(key, problem) for what the schema's types and bounds cannot check."""
        out = []
        if len(self.colour) != 3:
            out.append(("colour", f"must be 3 values (R, G, B), got {len(self.colour)}"))
        if self.closed_width_m > self.open_width_m:
            out.append(("closed_width_m", f"{self.closed_width_m} is wider than open_width_m {self.open_width_m}"))
        try:
            geometry.check_transform(np.array(self.ee_to_gripper, dtype=np.float64), "ee_to_gripper")
        except (ValueError, geometry.GeometryError) as e:
            out.append(("ee_to_gripper", f"must be a 4x4 rigid transform: {e}"))
        return out

    @property
    def T_ee_gripper(self) -> np.ndarray:
        return np.array(self.ee_to_gripper, dtype=np.float64)


@dataclass
class KeypointsConfig:
    radius_px: int = option(3, help="radius of an object keypoint dot (px)", minimum=1, maximum=50)
    colours: list[list[int]] = option(
        default_factory=lambda: [[255, 40, 40], [40, 255, 80], [255, 0, 255], [255, 255, 0]],
        help="RGB colour of the dots of object 0, 1, ... (cycled)", minimum=0, maximum=255)

    def problems(self) -> list[tuple[str, str]]:
        if not self.colours:
            return [("colours", "needs at least one colour")]
        return [(f"colours[{i}]", f"must be 3 values (R, G, B), got {len(c)}")
                for i, c in enumerate(self.colours) if len(c) != 3]


def _raise_problems(config, section: str) -> None:
    problems = config.problems()
    if problems:
        raise ValueError("; ".join(f"{section}.{key}: {problem}" for key, problem in problems))


def gripper_boxes(config: GripperConfig, opening_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, half extents) of the gripper's boxes in the gripper frame: two fingers, palm bar, stem."""
    c, half = config, max(float(opening_m), 0.0) / 2.0
    t, length = c.finger_thickness_m, c.finger_length_m
    boxes = [(np.array([side * (half + t / 2), -length / 2, 0.0]), np.array([t / 2, length / 2, c.finger_width_m / 2]))
             for side in (-1.0, 1.0)]
    boxes.append((np.array([0.0, -length - c.palm_height_m / 2, 0.0]),
                  np.array([half + t, c.palm_height_m / 2, c.finger_width_m / 2])))
    if c.stem_length_m > 0:
        boxes.append((np.array([0.0, -length - c.palm_height_m - c.stem_length_m / 2, 0.0]),
                      np.array([c.stem_width_m / 2, c.stem_length_m / 2, c.stem_width_m / 2])))
    return boxes


def clip_near(polygon: np.ndarray, near: float) -> np.ndarray:
    """The part of a convex 3D polygon (N, 3) with z >= near (Sutherland-Hodgman against one plane)."""
    out = []
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            out.append(a + (near - a[2]) / (b[2] - a[2]) * (b - a))
    return np.array(out).reshape(-1, 3)


def _subdivided(polygon: np.ndarray, pieces: int) -> np.ndarray:
    t = np.arange(pieces)[:, None, None] / pieces
    nxt = np.roll(polygon, -1, axis=0)
    return (polygon[None] + t * (nxt - polygon)[None]).transpose(1, 0, 2).reshape(-1, 3)


class GripperOverlay:
    """Draws the virtual gripper (``draw``) into RGB images."""

    def __init__(self, config: GripperConfig):
        _raise_problems(config, "gripper")
        self.config = config

    def faces(self, T_camera_gripper: np.ndarray, opening_m: float) -> list[tuple[float, np.ndarray, float]]:
        """The visible faces, farthest first: (depth, polygon (N, 3) in the camera frame clipped at the near
        plane, shade factor)."""
        T = geometry.check_transform(T_camera_gripper, "T_camera_gripper", tol=1e-5)
        if not np.isfinite(opening_m) or opening_m < 0:
            raise ValueError(f"gripper opening must be a finite width >= 0 (m), got {opening_m}")
        boxes = gripper_boxes(self.config, opening_m)
        centres = np.array([centre for centre, _ in boxes])
        halves = np.array([half for _, half in boxes])
        corners = geometry.transform_points(T, centres[:, None] + _CORNERS[None] * halves[:, None])  # (B, 8, 3)
        quads = corners[:, _FACES].reshape(-1, 4, 3)  # every face of every box, one array: (B * 6, 4, 3)
        normals = np.cross(quads[:, 1] - quads[:, 0], quads[:, 3] - quads[:, 0])
        centroids = quads.mean(axis=1)
        facing = -np.einsum("ij,ij->i", normals, centroids) / (
            np.linalg.norm(normals, axis=1) * np.linalg.norm(centroids, axis=1) + 1e-12)
        faces = []
        for quad, face_facing in zip(quads[facing > 0], facing[facing > 0], strict=True):  # the others: far sides
            clipped = quad if np.all(quad[:, 2] >= self.config.near_m) else clip_near(quad, self.config.near_m)
            if len(clipped) < 3:
                continue
            shade = self.config.ambient + (1.0 - self.config.ambient) * float(face_facing)
            faces.append((float(np.linalg.norm(clipped.mean(axis=0))), clipped, shade))
        return sorted(faces, key=lambda f: -f[0])

    def draw(self, image_rgb: np.ndarray, camera: CameraModel, T_camera_gripper: np.ndarray,
             opening_m: float) -> np.ndarray:
        """A copy of ``image_rgb`` (uint8 HxWx3, sized like ``camera``) with the gripper at ``T_camera_gripper``
        (4x4, gripper frame in the camera's optical frame) opened ``opening_m`` (m) between the fingers."""
        if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(f"image must be uint8 HxWx3 RGB, got {image_rgb.dtype} {image_rgb.shape}")
        if image_rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"image is {image_rgb.shape[1]}x{image_rgb.shape[0]}, the camera model is "
                             f"{camera.width}x{camera.height}")
        out = image_rgb.copy()
        colour = np.array(self.config.colour, dtype=np.float64)
        faces = self.faces(T_camera_gripper, opening_m)
        if not faces:
            return out
        polygons = [polygon if camera.model == LINEAR else _subdivided(polygon, _CURVED_EDGE_PIECES)
                    for _, polygon, _ in faces]
        projected = np.split(camera.project_no_checks(np.concatenate(polygons)),
                             np.cumsum([len(p) for p in polygons])[:-1])  # one projection call for all faces
        for (_, _, shade), uv in zip(faces, projected, strict=True):
            if not np.all(np.isfinite(uv)):
                continue
            points = np.round(np.clip(uv, -_MAX_PX, _MAX_PX) * (1 << _SHIFT)).astype(np.int32)
            cv2.fillPoly(out, [points], tuple(float(v) for v in colour * shade), cv2.LINE_AA, _SHIFT)
        return out


def draw_keypoints(image_rgb: np.ndarray, uv: np.ndarray, config: KeypointsConfig, index: int = 0) -> np.ndarray:
    """A copy of ``image_rgb`` with filled dots at the pixels ``uv`` (N, 2), in the colour of object ``index``
    (``config.colours`` cycled). Raises on NaN or inf pixels: leave out the keypoints that are not visible."""
    _raise_problems(config, "keypoints")
    points = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(points)):
        raise ValueError("keypoint pixels contain NaN or inf (pass only the visible keypoints)")
    out = image_rgb.copy()
    colour = tuple(int(v) for v in config.colours[index % len(config.colours)])
    centres = np.round(np.clip(points, -_MAX_PX, _MAX_PX) * (1 << _SHIFT)).astype(np.int64)
    for u, v in centres.tolist():
        cv2.circle(out, (u, v), config.radius_px << _SHIFT, colour, -1, cv2.LINE_AA, _SHIFT)
    return out
