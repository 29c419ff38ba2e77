"""Camera-to-robot-base calibration (eye-to-hand) from a ChArUco board held by the gripper, and its file.

HumanEgo's authors call a wrong camera-to-base transform the #1 deployment failure: this command measures it,
``extrinsics_check`` shows it. ``humanego run humanego_control hand_eye --samples views.yaml`` reads images of
a ChArUco board (OpenCV's aruco dictionaries, AprilTag ones included: ``DICT_APRILTAG_36h11``, ...) rigidly
attached to the gripper, each with the arm's joint state, and writes ``config/camera_extrinsics.yaml``.

Method. Per view i the forward kinematics give E_i = T_base_ee and the board detection (ChArUco corners,
``solvePnP``) C_i = T_camera_board. The unknowns are X = T_base_camera and Y = T_ee_board, with
E_i Y = X C_i. For every pair of views, A = E_i E_j^-1 and B = C_i C_j^-1 satisfy A X = X B; X is solved in
closed form by Park & Martin's method (the rotation aligns the rotation vectors of the A's with those of
the B's, the translation is the linear least-squares solution of (R_A - I) t_X = R_X t_B - t_A) — the method
of OpenCV's ``calibrateHandEye(..., CALIB_HAND_EYE_PARK)`` in its eye-to-hand use, which the pinned OpenCV
5.0.0 wheel does not expose to Python (opencv/opencv#29565). Y follows from X; both are then refined together
by minimising the reprojection error of every detected corner in every view (scipy ``least_squares``), which
weighs views by what was actually seen and absorbs the noise of single-view board poses.

Samples file (YAML; paths relative to it)::

    camera_info: camera_info.yaml     # ROS camera_calibration format of the images (rectified pinhole,
                                      # or fisheye624): image_width, image_height, camera_matrix.data, ...
    board: {squares_x: 5, squares_y: 7, square_m: 0.04, marker_m: 0.03, dictionary: DICT_5X5_100}
    samples:
      - image: view_00.png
        joints: {joint1: 0.1, joint2: -0.4, ...}   # the arm's joint positions when the image was taken
      - ...

Use at least 8 views with the board turned about different axes (two rotation axes are the minimum);
the result prints the reprojection error per view.

Extrinsics file (``config/camera_extrinsics.yaml``, read by ``load_camera_extrinsics``; bringup publishes it
as the static transform parent_frame -> child_frame when sim:=false)::

    parent_frame: base_link               # the robot base, the URDF's root link
    child_frame: camera_optical_frame     # the frame_id of the camera's images (z forward, x right, y down)
    translation: [x, y, z]                # T_parent_child: the camera's origin in the base frame (m)
    rotation_xyzw: [x, y, z, w]           # and its orientation (unit quaternion, ROS order)
    calibration: {...}                    # how it was obtained (informational: method, views, errors, date)
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_core.camera_models import CameraModel
from humanego_core.config import ConfigError, load_config, load_yaml, option
from humanego_core.kinematics import ROBOTS, KinematicsError, RobotKinematics
from humanego_ros import conversions as conv

MIN_CORNERS = 6           # fewer ChArUco corners give unstable single-view poses
MIN_VIEWS = 3             # two motions, the least that determines X
MIN_AXIS_SPREAD_DEG = 5.0  # motion rotation axes must differ by this much for the rotation to be determined


class HandEyeError(ValueError):
    """Samples that cannot determine the camera-to-base transform (too few, degenerate, undetected)."""


# ----- the extrinsics file ---------------------------------------------------------------------------------
@dataclass
class CameraExtrinsics:
    translation: list[float] = option(help="T_parent_child translation: the camera's origin in the base frame (m)")
    rotation_xyzw: list[float] = option(help="T_parent_child rotation as a unit quaternion x, y, z, w")
    parent_frame: str = option("base_link", help="TF parent: the robot base (the URDF's root link)")
    child_frame: str = option("camera_optical_frame", help="TF child: the frame_id of the camera's images")
    calibration: dict[str, Any] = option(default_factory=dict, help="how the transform was obtained "
                                         "(informational)")

    def transform(self, source: str = "<camera extrinsics>") -> np.ndarray:
        """T_parent_child (4, 4); raises ConfigError naming ``source`` on a malformed translation or rotation."""
        if len(self.translation) != 3:
            raise ConfigError(source, "translation", f"needs 3 values (m), got {len(self.translation)}")
        if len(self.rotation_xyzw) != 4:
            raise ConfigError(source, "rotation_xyzw", f"needs 4 values (x, y, z, w), got {len(self.rotation_xyzw)}")
        norm = float(np.linalg.norm(self.rotation_xyzw))
        if abs(norm - 1.0) > 1e-3:
            raise ConfigError(source, "rotation_xyzw", f"must be a unit quaternion, has norm {norm:.6f}")
        return geometry.transform_from_pos_quat(self.translation, np.asarray(self.rotation_xyzw) / norm)


def load_camera_extrinsics(path: str | Path) -> tuple[CameraExtrinsics, np.ndarray]:
    """The extrinsics file and its T_parent_child; errors name the file and the key."""
    extrinsics = load_config(path, CameraExtrinsics)
    return extrinsics, extrinsics.transform(str(path))


def save_camera_extrinsics(path: str | Path, T_parent_child, parent_frame: str, child_frame: str,
                           calibration: dict[str, Any]) -> None:
    position, quaternion = geometry.pos_quat_from_transform(geometry.check_transform(T_parent_child))
    content = {"parent_frame": parent_frame, "child_frame": child_frame,
               "translation": [round(float(v), 6) for v in position],
               "rotation_xyzw": [round(float(v), 8) for v in quaternion], "calibration": calibration}
    header = ("# Camera extrinsics: T_parent_child, the camera's optical frame in the robot base frame.\n"
              "# Written by `humanego run humanego_control hand_eye`; format: humanego_control/hand_eye.py.\n"
              "# Check it with `humanego run humanego_control extrinsics_check` (the robot drawn into the image).\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(content, sort_keys=False))


# ----- the board -------------------------------------------------------------------------------------------
@dataclass
class BoardConfig:
    squares_x: int = option(5, help="chessboard squares along the board's x (image right)", minimum=3, maximum=100)
    squares_y: int = option(7, help="chessboard squares along the board's y (image down)", minimum=3, maximum=100)
    square_m: float = option(0.04, help="side of a chessboard square (m), as printed", minimum=1e-3, maximum=1.0)
    marker_m: float = option(0.03, help="side of an ArUco/AprilTag marker (m), as printed", minimum=1e-3, maximum=1.0)
    dictionary: str = option("DICT_5X5_100", help="OpenCV aruco dictionary, e.g. DICT_5X5_100, DICT_APRILTAG_36h11")

    def board(self, source: str = "<board>") -> cv2.aruco.CharucoBoard:
        if self.marker_m >= self.square_m:
            raise ConfigError(source, "board.marker_m", f"{self.marker_m} must be smaller than square_m "
                              f"{self.square_m}")
        code = getattr(cv2.aruco, self.dictionary, None)
        if not self.dictionary.startswith("DICT_") or not isinstance(code, int):
            known = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_"))
            raise ConfigError(source, "board.dictionary", f"unknown {self.dictionary!r}; OpenCV has {', '.join(known)}")
        dictionary = cv2.aruco.getPredefinedDictionary(code)
        needed = (self.squares_x * self.squares_y) // 2
        if dictionary.bytesList.shape[0] < needed:
            raise ConfigError(source, "board.dictionary", f"{self.dictionary} has {dictionary.bytesList.shape[0]} "
                              f"markers, the board needs {needed}")
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, dictionary)


@dataclass(frozen=True)
class BoardDetection:
    ids: np.ndarray            # (N,) ChArUco corner ids
    pixels: np.ndarray         # (N, 2) in the image
    board_points: np.ndarray   # (N, 3) the same corners in the board frame (m; origin at the top-left corner)


def detect_board(image: np.ndarray, board: cv2.aruco.CharucoBoard) -> BoardDetection | None:
    """The board's ChArUco corners in an RGB or grey image, or None with fewer than MIN_CORNERS."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    corners, ids, _, _ = cv2.aruco.CharucoDetector(board).detectBoard(grey)
    if ids is None or len(ids) < MIN_CORNERS:
        return None
    board_points, pixels = board.matchImagePoints(corners, ids)
    return BoardDetection(ids=ids.ravel(), pixels=pixels.reshape(-1, 2).astype(np.float64),
                          board_points=board_points.reshape(-1, 3).astype(np.float64))


def board_pose(detection: BoardDetection, camera: CameraModel) -> np.ndarray:
    """T_camera_board of one view: PnP on the corners' normalised rays (so any camera model works)."""
    rays = camera.unproject_no_checks(detection.pixels)
    normalised = (rays[:, :2] / rays[:, 2:3]).astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(detection.board_points, normalised, np.eye(3), None, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise HandEyeError("solvePnP failed on a detected board")
    return geometry.make_transform(Rotation.from_rotvec(rvec.ravel()).as_matrix(), tvec.ravel())


# ----- solving ---------------------------------------------------------------------------------------------
def solve_ax_xb(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """X (4, 4) with A_k X = X B_k for motion pairs A, B (K, 4, 4), least squares (Park & Martin 1994)."""
    alpha = Rotation.from_matrix(A[:, :3, :3]).as_rotvec()
    beta = Rotation.from_matrix(B[:, :3, :3]).as_rotvec()
    _check_axis_spread(alpha)
    R_X, _ = Rotation.align_vectors(alpha, beta)  # alpha_k = R_X beta_k
    R_X = R_X.as_matrix()
    lhs = (A[:, :3, :3] - np.eye(3)).reshape(-1, 3)
    rhs = (np.einsum("ij,kj->ki", R_X, B[:, :3, 3]) - A[:, :3, 3]).reshape(-1)
    t_X, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    return geometry.make_transform(R_X, t_X)


def _check_axis_spread(rotvecs: np.ndarray) -> None:
    angles = np.linalg.norm(rotvecs, axis=1)
    axes = rotvecs[angles > math.radians(1.0)] / angles[angles > math.radians(1.0), None]
    spread = 0.0
    for a, b in itertools.combinations(axes, 2):
        spread = max(spread, math.degrees(math.acos(min(1.0, abs(float(a @ b))))))
    if spread < MIN_AXIS_SPREAD_DEG:
        raise HandEyeError(f"the views' relative rotations turn about one axis only (largest spread {spread:.1f} "
                           f"deg): turn the board about at least two different axes between views")


@dataclass(frozen=True)
class HandEyeResult:
    T_base_camera: np.ndarray
    T_ee_board: np.ndarray
    T_base_camera_closed_form: np.ndarray   # Park & Martin, before the reprojection refinement
    view_rms_px: np.ndarray                 # (V,) reprojection RMS per view after refinement
    rms_px: float                           # over all corners


def _pack(T: np.ndarray) -> np.ndarray:
    return np.r_[Rotation.from_matrix(T[:3, :3]).as_rotvec(), T[:3, 3]]


def _unpack(p: np.ndarray) -> np.ndarray:
    return geometry.make_transform(Rotation.from_rotvec(p[:3]).as_matrix(), p[3:6])


def calibrate_eye_to_hand(T_base_ee, detections: list[BoardDetection], camera: CameraModel) -> HandEyeResult:
    """T_base_camera and T_ee_board from V >= 3 views: arm poses (V, 4, 4) and the board seen in each."""
    E = geometry.check_transform(np.asarray(T_base_ee, float), "arm poses")
    if len(E) != len(detections):
        raise ValueError(f"{len(E)} arm poses but {len(detections)} board detections")
    if len(E) < MIN_VIEWS:
        raise HandEyeError(f"{len(E)} views with the board detected; at least {MIN_VIEWS} are needed (8+ advised)")
    C = np.stack([board_pose(d, camera) for d in detections])
    pairs = list(itertools.combinations(range(len(E)), 2))
    A = np.stack([E[i] @ geometry.invert(E[j]) for i, j in pairs])
    B = np.stack([C[i] @ geometry.invert(C[j]) for i, j in pairs])
    X0 = solve_ax_xb(A, B)
    Y_views = geometry.invert(E) @ X0 @ C  # one Y per view; averaged
    Y0 = geometry.make_transform(Rotation.from_matrix(Y_views[:, :3, :3]).mean().as_matrix(), Y_views[:, :3, 3].mean(0))

    points = [d.board_points for d in detections]
    observed = np.concatenate([d.pixels for d in detections])

    def residuals(p):
        X, Y = _unpack(p[:6]), _unpack(p[6:])
        T_camera_board = geometry.invert(X) @ E @ Y
        projected = [camera.project_no_checks(geometry.transform_points(T, pts)) for T, pts in zip(T_camera_board,
                                                                                                   points, strict=True)]
        return (np.concatenate(projected) - observed).ravel()

    fit = least_squares(residuals, np.r_[_pack(X0), _pack(Y0)], method="lm", x_scale="jac")
    error = fit.fun.reshape(-1, 2)
    counts = np.cumsum([0] + [len(p) for p in points])
    view_rms = np.array([math.sqrt(np.mean(np.sum(error[a:b] ** 2, axis=1))) for a, b in itertools.pairwise(counts)])
    return HandEyeResult(T_base_camera=_unpack(fit.x[:6]), T_ee_board=_unpack(fit.x[6:]), T_base_camera_closed_form=X0,
                         view_rms_px=view_rms, rms_px=float(math.sqrt(np.mean(np.sum(error**2, axis=1)))))


# ----- the command -----------------------------------------------------------------------------------------
@dataclass
class Sample:
    image: str = option(help="image file, relative to the samples file")
    joints: dict[str, float] = option(help="the arm's joint positions (rad or m) by URDF name when it was taken")


@dataclass
class SamplesFile:
    camera_info: str = option(help="camera intrinsics of the images, ROS camera_calibration YAML (relative path)")
    board: BoardConfig = option(default_factory=BoardConfig, help="the ChArUco board")
    samples: list[Sample] = option(default_factory=list, help="views: an image and the joint state")


def load_camera_info_yaml(path: str | Path) -> CameraModel:
    """A camera from a ROS camera_calibration YAML (image_width, image_height, camera_matrix, distortion_model,
    distortion_coefficients): a rectified pinhole, or fisheye624."""
    data = load_yaml(path)
    try:
        K = np.asarray(data["camera_matrix"]["data"], float).reshape(3, 3)
        info = conv.make_camera_info(K, int(data["image_width"]), int(data["image_height"]), 0, "",
                                     data.get("distortion_coefficients", {}).get("data", []),
                                     data.get("distortion_model", "plumb_bob"))
        return conv.camera_model_from_info(info)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(str(path), "", f"not a usable camera_calibration YAML: {exc}") from None


def read_image_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def calibrate_from_samples(samples_path: str | Path, kinematics: RobotKinematics) -> tuple[HandEyeResult, list[str]]:
    """Calibrate from a samples file; returns the result and the names of the views used (others had no board)."""
    samples_path = Path(samples_path)
    spec = load_config(samples_path, SamplesFile)
    root = samples_path.parent
    camera = load_camera_info_yaml(root / spec.camera_info)
    board = spec.board.board(str(samples_path))
    poses, detections, used = [], [], []
    for i, sample in enumerate(spec.samples):
        try:
            q = kinematics.arm_positions(list(sample.joints), list(sample.joints.values()))
        except KinematicsError as exc:
            raise ConfigError(str(samples_path), f"samples[{i}].joints", str(exc)) from None
        image = read_image_rgb(root / sample.image)
        if image.shape[:2] != (camera.height, camera.width):
            raise ConfigError(str(samples_path), f"samples[{i}].image", f"{sample.image} is {image.shape[1]}x"
                              f"{image.shape[0]}, the camera_info {camera.width}x{camera.height}")
        detection = detect_board(image, board)
        if detection is None:
            print(f"  {sample.image}: board not found (fewer than {MIN_CORNERS} corners), view skipped")
            continue
        poses.append(kinematics.fk(q))
        detections.append(detection)
        used.append(sample.image)
    return calibrate_eye_to_hand(np.array(poses).reshape(-1, 4, 4), detections, camera), used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hand_eye", description="Camera-to-base calibration (camera fixed, ChArUco board on the gripper): "
        "writes the transform for TF. Samples file format: see the module docstring of humanego_control.hand_eye.")
    parser.add_argument("--samples", required=True, help="YAML listing camera_info, board and the views")
    parser.add_argument("--robot", default="panda", help=f"{' | '.join(ROBOTS)} or a URDF path (default panda)")
    parser.add_argument("--output", default="config/camera_extrinsics.yaml",
                        help="extrinsics file to write (default: config/camera_extrinsics.yaml of the working dir)")
    parser.add_argument("--camera-frame", default="camera_optical_frame", help="frame_id of the camera's images")
    parser.add_argument("--max-rms-px", type=float, default=2.0,
                        help="refuse to write a result whose reprojection RMS is above this (px; default 2)")
    args = parser.parse_args(argv)
    try:
        kinematics = RobotKinematics.load(args.robot)
        result, used = calibrate_from_samples(args.samples, kinematics)
    except (HandEyeError, ConfigError, KinematicsError, FileNotFoundError) as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    for name, rms in zip(used, result.view_rms_px, strict=True):
        print(f"  {name}: reprojection RMS {rms:.2f} px")
    closed = result.T_base_camera_closed_form
    shift_mm = 1e3 * np.linalg.norm(closed[:3, 3] - result.T_base_camera[:3, 3])
    turn_deg = math.degrees(float(geometry.geodesic_angle(closed[:3, :3], result.T_base_camera[:3, :3])))
    print(f"{len(used)} views, reprojection RMS {result.rms_px:.2f} px; refinement moved the closed-form solution by "
          f"{shift_mm:.1f} mm, {turn_deg:.2f} deg")
    if result.rms_px > args.max_rms_px:
        print(f"[ERROR] reprojection RMS {result.rms_px:.2f} px is above --max-rms-px {args.max_rms_px}: check the "
              "board dimensions, the camera_info and that joints match their images; nothing written", file=sys.stderr)
        return 1
    calibration = {"method": "Park-Martin AX=XB + reprojection refinement", "views": len(used),
                   "reprojection_rms_px": round(result.rms_px, 3), "robot": str(args.robot),
                   "samples": str(Path(args.samples).resolve()),
                   "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    save_camera_extrinsics(args.output, result.T_base_camera, kinematics.base_frame, args.camera_frame, calibration)
    position = result.T_base_camera[:3, 3]
    print(f"wrote {args.output}: {kinematics.base_frame} -> {args.camera_frame}, camera at "
          f"[{position[0]:.4f}, {position[1]:.4f}, {position[2]:.4f}] m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
