"""The camera <-> robot base calibration file (``config/camera_extrinsics.yaml``): format, reader, writer.

On a real robot (``sim:=false``) the launch graph publishes this transform as static TF, so every node
(clean view, state estimation, retargeting) sees the camera where the calibration says it is. A wrong
camera-to-base transform is the most common real deployment failure HumanEgo's authors report, so the
reader refuses anything doubtful instead of guessing::

    # T_parent_child: the pose of child_frame expressed in parent_frame
    parent_frame: base_link
    child_frame: camera_optical_frame
    translation: [0.45, -0.32, 0.61]            # metres
    rotation: [0.70, -0.12, 0.11, 0.69]         # unit quaternion x, y, z, w
    source: "hand_eye, 14 views, 2025-11-22"    # optional: what produced it

The quaternion must be unit length within ``QUATERNION_NORM_TOLERANCE`` (a hand-typed or truncated
quaternion is an error, not silently normalised); values must be finite; the frames must differ.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import yaml

from humanego_core import geometry
from humanego_core.config import ConfigError, from_dict, load_yaml, option

# |q| may deviate from 1 by this much (rounding of printed digits), no more.
QUATERNION_NORM_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class CameraExtrinsics:
    translation: list[float] = option(help="origin of child_frame in parent_frame, metres [x, y, z]")
    rotation: list[float] = option(help="rotation parent_frame <- child_frame as a unit quaternion [x, y, z, w]")
    parent_frame: str = option("base_link", help="robot base frame (the URDF's root link)")
    child_frame: str = option("camera_optical_frame", help="camera frame the images are stamped with")
    source: str = option("", help="free text: what produced the calibration (tool, views, date)")

    def matrix(self) -> np.ndarray:
        """T_parent_child (4, 4)."""
        return geometry.transform_from_pos_quat(self.translation, self.rotation)


def validate_camera_extrinsics(data: dict, source: str) -> CameraExtrinsics:
    extrinsics = from_dict(CameraExtrinsics, data, source=source)
    for key, expected in (("translation", 3), ("rotation", 4)):
        values = getattr(extrinsics, key)
        if len(values) != expected:
            raise ConfigError(source, key, f"must have {expected} numbers, got {len(values)}")
    norm = math.sqrt(sum(v * v for v in extrinsics.rotation))
    if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
        raise ConfigError(source, "rotation", f"must be a unit quaternion [x, y, z, w], its norm is {norm:.6f}")
    for key in ("parent_frame", "child_frame"):
        if not getattr(extrinsics, key).strip():
            raise ConfigError(source, key, "must name a TF frame")
    if extrinsics.parent_frame == extrinsics.child_frame:
        raise ConfigError(source, "child_frame", f"must differ from parent_frame ('{extrinsics.parent_frame}')")
    return extrinsics


def load_camera_extrinsics(path: str | Path) -> CameraExtrinsics:
    """Read and validate a calibration file; any problem raises ConfigError naming the file and key."""
    return validate_camera_extrinsics(load_yaml(path), str(path))


def save_camera_extrinsics(path: str | Path, T_parent_child: np.ndarray, parent_frame: str = "base_link",
                           child_frame: str = "camera_optical_frame", source: str = "") -> CameraExtrinsics:
    """Write T_parent_child in the format above (validated first, so what is written can be read back)."""
    position, quat = geometry.pos_quat_from_transform(geometry.check_transform(T_parent_child, "T_parent_child"))
    data = {"parent_frame": parent_frame, "child_frame": child_frame,
            "translation": [float(v) for v in position], "rotation": [float(v) for v in quat], "source": source}
    extrinsics = validate_camera_extrinsics(data, str(path))
    header = "# T_parent_child: the pose of child_frame expressed in parent_frame (translation in m, " \
             "rotation as quaternion x, y, z, w)\n"
    Path(path).write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return extrinsics
