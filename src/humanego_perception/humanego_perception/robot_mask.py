"""The robot's own pixels in a camera image, rasterised from its URDF at the measured joint state.

On the robot, the camera sees the arm; the human training images had the human arm removed. The arm's
pixels follow from geometry alone: forward kinematics of the URDF (pinocchio) at the joint state,
the camera pose relative to the robot base, and the URDF's VISUAL primitives (box, cylinder, sphere).
Each primitive is tessellated into convex pieces; a piece's corners are moved into the camera frame,
clipped against a near plane (a piece reaching behind the camera keeps its part in front), projected
with the camera model, and the convex hull of the projected points is filled. A convex body projects
through a pinhole to a convex region, so for LINEAR cameras one piece per primitive is exact up to the
tessellation of round surfaces; for distorting cameras (Aria's Fisheye624) the primitives are cut into
pieces of at most ``fisheye_piece_m``, small enough that the distortion over one piece is negligible.
The mask is finally dilated by ``padding_px`` to cover calibration and timing errors.

Meshes are not supported: a URDF whose visual geometry uses one is refused, naming the link.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pinocchio as pin

from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel

SUPPORTED_SHAPES = ("box", "cylinder", "sphere")
# Points closer to the camera plane than this are clipped away: they would project arbitrarily far.
NEAR_CLIP_M = 0.01
# Sub-pixel precision of the filled polygons (cv2's fixed-point shift): 1/16 px.
_SHIFT = 4
# Projections are clamped to this many pixels from the origin, so fixed-point coordinates fit in int32; at
# that distance the clamp turns a polygon's edges by under 1e-4 rad, well below a pixel inside the image.
_MAX_PIXEL = 1e7
# Distorting cameras see at most this far off their axis (rad): their models are calibrated within a cone.
_MAX_VIEW_ANGLE = math.radians(89.0)
# Bisection steps locating where a segment leaves the view: 2^-30 of its length.
_BISECTIONS = 30


class RobotDescriptionError(ValueError):
    """A URDF the self-mask cannot use (unreadable, a mesh, ...): the message names the file and link."""


@dataclass(frozen=True)
class VisualPiece:
    """A convex part of a visual primitive: its corners in the frame of its parent joint."""

    link: str
    joint: int            # pinocchio joint index the primitive moves with
    points: np.ndarray    # (N, 3) in the joint frame


def _ring(radius: float, z: float, segments: int) -> np.ndarray:
    a = np.linspace(0.0, 2 * math.pi, segments, endpoint=False)
    return np.column_stack([radius * np.cos(a), radius * np.sin(a), np.full(segments, z)])


def _cuts(half_length: float, max_piece: float | None) -> np.ndarray:
    """Boundaries of the pieces of [-half_length, half_length], each at most max_piece long."""
    n = 1 if max_piece is None else max(1, math.ceil(2 * half_length / max_piece))
    return np.linspace(-half_length, half_length, n + 1)


def primitive_pieces(shape: str, dims: np.ndarray, segments: int, max_piece: float | None) -> list[np.ndarray]:
    """Corners of the convex pieces of a primitive in its own frame (cylinder axis z, box centred).

    ``dims``: box half sides (3), cylinder (radius, half length), sphere (radius,). ``max_piece``: largest
    extent of a piece along the cut axes (None: the whole primitive is one piece).
    """
    if shape == "box":
        edges = [_cuts(h, max_piece) for h in dims]
        pieces = []
        for x0, x1 in zip(edges[0][:-1], edges[0][1:], strict=True):
            for y0, y1 in zip(edges[1][:-1], edges[1][1:], strict=True):
                for z0, z1 in zip(edges[2][:-1], edges[2][1:], strict=True):
                    pieces.append(np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)]))
        return pieces
    if shape == "cylinder":
        radius, half_length = dims
        cuts = _cuts(half_length, max_piece)
        return [np.vstack([_ring(radius, z0, segments), _ring(radius, z1, segments)])
                for z0, z1 in zip(cuts[:-1], cuts[1:], strict=True)]
    if shape == "sphere":
        (radius,) = dims
        # Slabs between latitude circles; each slab is the hull of its two circles and, at the poles, the pole.
        n = max(segments // 2, 1 if max_piece is None else math.ceil(2 * radius / max_piece))
        z = radius * np.cos(np.linspace(math.pi, 0.0, n + 1))
        rings = [np.sqrt(max(radius**2 - zi**2, 0.0)) for zi in z]
        pieces = [np.vstack([_ring(r0, z0, segments), _ring(r1, z1, segments)])
                  for z0, z1, r0, r1 in zip(z[:-1], z[1:], rings[:-1], rings[1:], strict=True)]
        if max_piece is None:
            return [np.vstack(pieces)]
        return pieces
    raise RobotDescriptionError(f"unsupported primitive {shape!r}")


def _coal_dims(geom) -> tuple[str, np.ndarray]:
    kind = type(geom).__name__
    if kind == "Box":
        return "box", np.asarray(geom.halfSide, float)
    if kind == "Cylinder":
        return "cylinder", np.array([geom.radius, geom.halfLength])
    if kind == "Sphere":
        return "sphere", np.array([geom.radius])
    raise RobotDescriptionError(f"unsupported geometry {kind}")


def _read_urdf(path: Path) -> tuple[str, dict[str, tuple[str, float, float]]]:
    """The root link's name and the mimic joints (name -> (master, multiplier, offset)); refuses meshes."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise RobotDescriptionError(f"{path}: not a readable URDF ({exc})") from None
    for link in root.iter("link"):
        for visual in link.iter("visual"):
            geometry_element = visual.find("geometry")
            shapes = [child.tag for child in (geometry_element if geometry_element is not None else [])]
            unsupported = [s for s in shapes if s not in SUPPORTED_SHAPES]
            if unsupported:
                raise RobotDescriptionError(
                    f"{path}: link {link.get('name')!r} has a visual {unsupported[0]}; the robot self-mask supports "
                    f"only {', '.join(SUPPORTED_SHAPES)} (approximate the link with primitives)")
    children = {j.find("child").get("link") for j in root.iter("joint")}
    roots = [link.get("name") for link in root.iter("link") if link.get("name") not in children]
    if len(roots) != 1:
        raise RobotDescriptionError(f"{path}: expected one root link, found {roots}")
    mimic = {}
    for joint in root.iter("joint"):
        m = joint.find("mimic")
        if m is not None:
            mimic[joint.get("name")] = (m.get("joint"), float(m.get("multiplier", 1.0)), float(m.get("offset", 0.0)))
    return roots[0], mimic


class RobotSelfMask:
    """Forward kinematics and the image mask of a robot described by a URDF with primitive visuals.

    Not thread-safe (one pinocchio Data is reused): give each thread its own."""

    def __init__(self, urdf_path: str | Path, padding_px: int = 3, segments: int = 32,
                 fisheye_piece_m: float = 0.02):
        """``padding_px``: dilation of the mask (px); ``segments``: vertices per circle of round primitives;
        ``fisheye_piece_m``: largest piece of a primitive for distorting cameras."""
        path = Path(urdf_path)
        if not path.is_file():
            raise FileNotFoundError(f"robot description {path} not found")
        if padding_px < 0 or segments < 8 or fisheye_piece_m <= 0:
            raise ValueError(f"need padding_px >= 0, segments >= 8, fisheye_piece_m > 0; got {padding_px}, "
                             f"{segments}, {fisheye_piece_m}")
        self.urdf_path = path
        self.root_link, self._mimic = _read_urdf(path)
        try:
            self.model = pin.buildModelFromUrdf(str(path))
            visual = pin.buildGeomFromUrdf(self.model, str(path), pin.GeometryType.VISUAL,
                                           package_dirs=[str(path.parent)])
        except (RuntimeError, ValueError) as exc:
            raise RobotDescriptionError(f"{path}: pinocchio cannot load it: {exc}") from None
        self.data = self.model.createData()
        self.padding_px = int(padding_px)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.padding_px + 1,) * 2) \
            if self.padding_px else None

        model = self.model
        self.joint_names = [model.names[i] for i in range(1, model.njoints)]
        for i in range(1, model.njoints):
            if model.joints[i].nq != 1:
                raise RobotDescriptionError(f"{path}: joint {model.names[i]!r} has {model.joints[i].nq} position "
                                            "coordinates; only revolute and prismatic joints are supported")
        self._q_index = {model.names[i]: model.joints[i].idx_q for i in range(1, model.njoints)}
        self.finger_joints = [model.names[i] for i in range(1, model.njoints)
                              if model.joints[i].shortname().startswith("JointModelP")]

        self._pinhole_pieces = self._tessellate(visual, segments, None)
        self._distorting_pieces = self._tessellate(visual, segments, fisheye_piece_m)

    def _tessellate(self, visual, segments: int, max_piece: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(joint index per point, points in their joint frame, start offset of each piece) of every piece."""
        joints, points, starts = [], [], []
        n = 0
        for obj in visual.geometryObjects:
            link = self.model.frames[obj.parentFrame].name
            try:
                shape, dims = _coal_dims(obj.geometry)
            except RobotDescriptionError as exc:
                raise RobotDescriptionError(f"{self.urdf_path}: link {link!r}: {exc}") from None
            for piece in primitive_pieces(shape, dims, segments, max_piece):
                placed = geometry.transform_points(obj.placement.homogeneous, piece)
                joints.append(np.full(len(placed), obj.parentJoint))
                points.append(placed)
                starts.append(n)
                n += len(placed)
        if not points:
            raise RobotDescriptionError(f"{self.urdf_path} has no visual geometry")
        return np.concatenate(joints), np.vstack(points), np.array(starts + [n])

    # ----- kinematics -----
    def configuration(self, q: dict[str, float]) -> np.ndarray:
        """pinocchio's configuration vector from joint positions by name (extra names are ignored; a missing
        mimic joint follows its master)."""
        values = dict(q)
        for name, (master, multiplier, offset) in self._mimic.items():
            if name not in values and master in values:
                values[name] = multiplier * values[master] + offset
        missing = [name for name in self.joint_names if name not in values]
        if missing:
            raise ValueError(f"joint positions missing for {', '.join(missing)} (robot {self.urdf_path.name} has "
                             f"joints {', '.join(self.joint_names)})")
        config = np.empty(self.model.nq)
        for name, index in self._q_index.items():
            config[index] = values[name]
        if not np.all(np.isfinite(config)):
            bad = [name for name in self.joint_names if not math.isfinite(values[name])]
            raise ValueError(f"joint positions are NaN or inf for {', '.join(bad)}")
        return config

    def _forward(self, q: dict[str, float]) -> None:
        pin.framesForwardKinematics(self.model, self.data, self.configuration(q))

    def link_poses(self, q: dict[str, float]) -> dict[str, np.ndarray]:
        """T_base_link of every URDF link (base = the root link)."""
        self._forward(q)
        return {f.name: self.data.oMf[i].homogeneous.copy() for i, f in enumerate(self.model.frames)
                if f.type == pin.FrameType.BODY}

    def fk(self, q: dict[str, float], frame: str = "ee") -> np.ndarray:
        """T_base_frame of a URDF link or joint frame."""
        if not self.model.existFrame(frame):
            links = [f.name for f in self.model.frames if f.type == pin.FrameType.BODY]
            raise ValueError(f"frame {frame!r} is not in {self.urdf_path.name} (links: {', '.join(links)})")
        self._forward(q)
        return self.data.oMf[self.model.getFrameId(frame)].homogeneous.copy()

    def finger_opening(self, q: dict[str, float]) -> float:
        """Distance the fingers are apart beyond closed (m): the sum of the prismatic (finger) joints, at least 0
        (a simulated or measured gripper closed on nothing reads a few micrometres below its closed limit)."""
        config = self.configuration(q)
        return max(0.0, float(sum(config[self._q_index[name]] for name in self.finger_joints)))

    # ----- the mask -----
    def points_in_camera(self, T_camera_base, q: dict[str, float],
                         camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
        """Corners of every convex piece in the camera frame at ``q``, and the pieces' start offsets."""
        T_camera_base = geometry.check_transform(T_camera_base, "T_camera_base")
        pin.forwardKinematics(self.model, self.data, self.configuration(q))
        joint_of_point, local, starts = self._pinhole_pieces if camera.model == LINEAR else self._distorting_pieces
        T_base_joint = np.stack([M.homogeneous for M in self.data.oMi])
        T_camera_joint = T_camera_base @ T_base_joint
        R, t = T_camera_joint[joint_of_point, :3, :3], T_camera_joint[joint_of_point, :3, 3]
        return np.einsum("nij,nj->ni", R, local) + t, starts

    def mask(self, camera: CameraModel, T_camera_base, q: dict[str, float]) -> np.ndarray:
        """Bool (H, W) mask of the robot in ``camera``'s image (all links, occluded or not), padded."""
        points, starts = self.points_in_camera(T_camera_base, q, camera)
        canvas = np.zeros((camera.height, camera.width), np.uint8)
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            polygon = self._silhouette(points[a:b], camera)
            if polygon is not None:
                cv2.fillConvexPoly(canvas, polygon, 255, lineType=cv2.LINE_8, shift=_SHIFT)
        if self._kernel is not None:
            canvas = cv2.dilate(canvas, self._kernel)
        valid = _valid_area(camera)
        if valid is not None:
            canvas &= valid
        return canvas > 0

    @staticmethod
    def _silhouette(points: np.ndarray, camera: CameraModel) -> np.ndarray | None:
        """Fixed-point convex hull of a convex piece's projection, after clipping it to what the camera can see
        (z >= NEAR_CLIP_M, and within a distorting camera's field-of-view cone); None if nothing is left."""
        visible = _in_view(points, camera)
        if not visible.any():
            return None
        if not visible.all():
            # The clipped body is the hull of its corners in view and of where the segments between corners
            # leave the view (the segments lie inside the convex body; its edges are among them). The view
            # (a half-space, or its intersection with a cone narrower than 180 deg) is convex, so each segment
            # leaves it once: found by bisection.
            ahead, away = points[visible], points[~visible]
            p, r = np.repeat(ahead, len(away), axis=0), np.tile(away, (len(ahead), 1))
            lo, hi = np.zeros(len(p)), np.ones(len(p))
            for _ in range(_BISECTIONS):
                mid = 0.5 * (lo + hi)
                inside = _in_view(p + mid[:, None] * (r - p), camera)
                lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
            points = np.vstack([ahead, p + lo[:, None] * (r - p)])
        uv = np.clip(camera.project_no_checks(points), -_MAX_PIXEL, _MAX_PIXEL)
        fixed = np.round(uv * (1 << _SHIFT)).astype(np.int32)
        return cv2.convexHull(fixed)


def _in_view(points: np.ndarray, camera: CameraModel) -> np.ndarray:
    z = points[:, 2]
    visible = z >= NEAR_CLIP_M
    if camera.model != LINEAR:
        visible &= np.hypot(points[:, 0], points[:, 1]) <= math.tan(_view_angle(camera)) * z
    return visible


def _view_angle(camera: CameraModel) -> float:
    """Half-angle of a distorting camera's field of view: its calibrated cone, below 90 degrees."""
    return min(camera.max_solid_angle, _MAX_VIEW_ANGLE)


def _valid_area(camera: CameraModel) -> np.ndarray | None:
    """uint8 disc of a camera's valid radius (None when the whole sensor is valid)."""
    if camera.valid_radius is None:
        return None
    disc = np.zeros((camera.height, camera.width), np.uint8)
    cx, cy = camera.principal_point
    cv2.circle(disc, (round(cx * (1 << _SHIFT)), round(cy * (1 << _SHIFT))), round(camera.valid_radius * (1 << _SHIFT)),
               255, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)
    return disc
