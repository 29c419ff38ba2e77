"""The robot drawn into its camera's image with the configured camera-to-base transform: a wrong one is obvious.

HumanEgo's authors name a wrong camera-to-base transform the #1 deployment bug. The check draws, at the arm's
joint state, the forward-kinematics skeleton (the URDF link origins from the base to the ee, joined by lines,
with a dot per link), the base frame's axes (x red, y green, z blue, ``axes_length_m``) and the virtual gripper
exactly as the clean view draws it (``config/views.yaml`` gripper at ``T_camera_ee @ ee_to_gripper``, opened
like the fingers) — so with a right calibration the skeleton runs along the real arm and the virtual gripper
covers the real one; a centimetre or a degree off shows as a visible offset.

- ``ExtrinsicsOverlay.draw``: the drawing, for the node (``extrinsics_check``, live on camera/extrinsics_check)
  and the command below;
- ``humanego run humanego_control draw_extrinsics --image IMG --camera-info CAM.yaml --joints ...
  --extrinsics config/camera_extrinsics.yaml --output check.png``: one image and joint state to a PNG.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from humanego_control.hand_eye import load_camera_extrinsics, load_camera_info_yaml, read_image_rgb
from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.config import ConfigError, load_yaml
from humanego_core.kinematics import ROBOTS, KinematicsError, RobotKinematics
from humanego_perception.gripper_overlay import GripperConfig, GripperOverlay
from humanego_perception.views import load_views_config

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions
_MAX_PX = 1.0e6


@dataclass(frozen=True)
class OverlayStyle:
    skeleton_rgb: tuple[int, int, int] = (255, 0, 255)  # magenta: neither skin, table, objects nor the gripper
    line_px: int = 3
    dot_px: int = 5
    axes_length_m: float = 0.1
    near_m: float = 0.01  # what is closer to the camera than this is cut off


class ExtrinsicsOverlay:
    def __init__(self, kinematics: RobotKinematics, gripper: GripperConfig, style: OverlayStyle | None = None):
        self.kin = kinematics
        self.links = kinematics.chain_links()
        self.gripper = GripperOverlay(gripper)
        self.T_ee_gripper = gripper.T_ee_gripper
        self.style = style or OverlayStyle()

    def skeleton(self, q, gripper_opening: float = 0.0) -> np.ndarray:
        """(N, 3) link origins from the base to the ee in the base frame, coinciding neighbours merged."""
        transforms = self.kin.link_transforms(q, gripper_opening)
        points = [transforms[name][:3, 3] for name in self.links]
        kept = [points[0]]
        for p in points[1:]:
            if np.linalg.norm(p - kept[-1]) > 1e-6:
                kept.append(p)
        return np.array(kept)

    def draw(self, image_rgb: np.ndarray, camera: CameraModel, T_camera_base, q,
             gripper_opening: float = 0.0) -> np.ndarray:
        """A copy of ``image_rgb`` with the robot at arm joints ``q`` and ``gripper_opening`` (per finger, m) drawn
        as ``camera`` at ``T_camera_base`` would see it."""
        T_camera_base = geometry.check_transform(T_camera_base, "T_camera_base", tol=1e-5)
        T_camera_gripper = T_camera_base @ self.kin.fk(q) @ self.T_ee_gripper
        out = self.gripper.draw(image_rgb, camera, T_camera_gripper, 2.0 * gripper_opening)
        style = self.style
        points = geometry.transform_points(T_camera_base, self.skeleton(q, gripper_opening))
        for a, b in zip(points[:-1], points[1:], strict=True):
            self._line(out, camera, a, b, style.skeleton_rgb)
        for p in points:
            if p[2] > style.near_m:
                cv2.circle(out, self._pixel(camera, p), style.dot_px << _SHIFT, style.skeleton_rgb, -1, cv2.LINE_AA,
                           _SHIFT)
        origin = T_camera_base[:3, 3]
        for axis, colour in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            self._line(out, camera, origin, origin + style.axes_length_m * T_camera_base[:3, axis], colour)
        return out

    def _line(self, image, camera: CameraModel, a: np.ndarray, b: np.ndarray, colour) -> None:
        """The segment a-b (camera frame) clipped at the near plane, bent like the image for a fisheye."""
        near = self.style.near_m
        if a[2] < near and b[2] < near:
            return
        if a[2] < near or b[2] < near:  # move the hidden end onto the near plane
            t = (near - a[2]) / (b[2] - a[2])
            cut = a + t * (b - a)
            a, b = (cut, b) if a[2] < near else (a, cut)
        pieces = 1 if camera.model == LINEAR else 16
        samples = a + np.linspace(0.0, 1.0, pieces + 1)[:, None] * (b - a)
        uv = camera.project_no_checks(samples)
        if not np.all(np.isfinite(uv)):
            return
        pts = np.round(np.clip(uv, -_MAX_PX, _MAX_PX) * (1 << _SHIFT)).astype(np.int32)
        cv2.polylines(image, [pts], False, colour, self.style.line_px, cv2.LINE_AA, _SHIFT)

    @staticmethod
    def _pixel(camera: CameraModel, p: np.ndarray) -> tuple[int, int]:
        u, v = np.clip(camera.project_no_checks(p[None])[0], -_MAX_PX, _MAX_PX)
        return int(round(u * (1 << _SHIFT))), int(round(v * (1 << _SHIFT)))


def joint_positions(spec: str) -> dict[str, float]:
    """Joint positions from ``name=value,name=value`` or from a YAML file mapping names to values."""
    if "=" in spec:
        positions = {}
        for item in spec.split(","):
            name, _, value = item.partition("=")
            try:
                positions[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"--joints: {item!r} is not name=number") from None
        return positions
    data = load_yaml(spec)
    bad = [k for k, v in data.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ConfigError(spec, bad[0], "must be a joint position (number)")
    return {str(k): float(v) for k, v in data.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="draw_extrinsics", description="Draw the robot (FK skeleton, base axes, virtual gripper) into a camera "
        "image with the configured camera-to-base transform and write a PNG: with a right calibration the drawing "
        "lies on the arm.")
    parser.add_argument("--image", required=True, help="the camera image (PNG/JPEG)")
    parser.add_argument("--camera-info", required=True, help="its intrinsics, ROS camera_calibration YAML")
    parser.add_argument("--joints", required=True,
                        help="joint positions when it was taken: 'joint1=0.1,joint2=...' or a YAML file name: value")
    parser.add_argument("--extrinsics", default="config/camera_extrinsics.yaml",
                        help="camera-to-base transform (hand_eye's file; default config/camera_extrinsics.yaml)")
    parser.add_argument("--robot", default="panda", help=f"{' | '.join(ROBOTS)} or a URDF path (default panda)")
    parser.add_argument("--views-config", default=None, help="views configuration with the gripper (default: the "
                        "shipped config/views.yaml)")
    parser.add_argument("--output", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        kin = RobotKinematics.load(args.robot)
        extrinsics, T_base_camera = load_camera_extrinsics(args.extrinsics)
        if extrinsics.parent_frame != kin.base_frame:
            raise ConfigError(args.extrinsics, "parent_frame", f"{extrinsics.parent_frame!r} is not the base "
                              f"{kin.base_frame!r} of {kin.urdf_path.name}")
        camera = load_camera_info_yaml(args.camera_info)
        image = read_image_rgb(Path(args.image))
        positions = joint_positions(args.joints)
        q = kin.arm_positions(list(positions), list(positions.values()))
        overlay = ExtrinsicsOverlay(kin, load_views_config(args.views_config).gripper)
        if image.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"{args.image} is {image.shape[1]}x{image.shape[0]}, {args.camera_info} says "
                             f"{camera.width}x{camera.height}")
        drawn = overlay.draw(image, camera, geometry.invert(T_base_camera), q,
                             positions.get(kin.gripper_joint_name, 0.0))
    except (ConfigError, KinematicsError, ValueError, FileNotFoundError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.output, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
