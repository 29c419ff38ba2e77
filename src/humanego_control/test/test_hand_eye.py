"""Hand-eye calibration: AX = XB in closed form, and the whole command on synthetic views of a ChArUco board that
this test renders (board held by a simulated panda, seen by a camera with a known pose): the written
camera-to-base transform is the known one within bounds. The extrinsics file: round trip and errors."""

import math

import cv2
import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from humanego_control import hand_eye
from humanego_control.hand_eye import (
    BoardConfig,
    CameraExtrinsics,
    HandEyeError,
    load_camera_extrinsics,
    save_camera_extrinsics,
    solve_ax_xb,
)
from humanego_control.ik import InverseKinematics
from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.config import ConfigError
from humanego_core.kinematics import RobotKinematics

WIDTH, HEIGHT, FOCAL = 640, 480, 600.0
BOARD = BoardConfig(squares_x=5, squares_y=7, square_m=0.04, marker_m=0.03, dictionary="DICT_5X5_100")
BOARD_CENTRE = np.array([0.1, 0.14, 0.0])  # of the 5x7 board of 4 cm squares, in its frame
SUPERSAMPLE = 2
PX_PER_M = 3000
PLATE_PX = 60  # white plate around the printed board


def rigid(rotvec, translation):
    return geometry.make_transform(Rotation.from_rotvec(rotvec).as_matrix(), translation)


def camera_pose():
    """T_base_camera: 1.3 m in front of the robot, 0.55 m up, looking back at it and slightly down."""
    z = np.array([-1.0, 0.0, -0.15])
    z /= np.linalg.norm(z)
    y = np.array([0.0, 0.0, -1.0])
    y -= (y @ z) * z
    y /= np.linalg.norm(y)
    return geometry.make_transform(np.column_stack([np.cross(y, z), y, z]), [1.3, 0.05, 0.55])


# T_ee_board: the board in front of the fingers, facing where the gripper points (board z = -ee z).
T_EE_BOARD = geometry.make_transform(Rotation.from_euler("x", np.pi).as_matrix(),
                                     [0.0, 0.0, 0.06] - Rotation.from_euler("x", np.pi).apply(BOARD_CENTRE))


def render_board(T_camera_board) -> np.ndarray:
    """RGB image of the board (on a white plate, grey background) seen by the pinhole camera, anti-aliased."""
    board = BOARD.board()
    width_px, height_px = BOARD.squares_x * BOARD.square_m * PX_PER_M, BOARD.squares_y * BOARD.square_m * PX_PER_M
    texture = board.generateImage((int(width_px) + 2 * PLATE_PX, int(height_px) + 2 * PLATE_PX), marginSize=PLATE_PX)
    s = 1.0 / PX_PER_M
    texture_to_board = np.array([[s, 0, (0.5 - PLATE_PX) * s], [0, s, (0.5 - PLATE_PX) * s], [0, 0, 1]])
    K = np.array([[FOCAL * SUPERSAMPLE, 0, (WIDTH * SUPERSAMPLE - 1) / 2],
                  [0, FOCAL * SUPERSAMPLE, (HEIGHT * SUPERSAMPLE - 1) / 2], [0, 0, 1]])
    H = K @ np.column_stack([T_camera_board[:3, 0], T_camera_board[:3, 1], T_camera_board[:3, 3]]) @ texture_to_board
    big = cv2.warpPerspective(texture, H, (WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE), flags=cv2.INTER_LINEAR,
                              borderValue=110)
    grey = cv2.resize(big, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def camera() -> CameraModel:
    # The supersampled render's pixel centres map onto these after the area downsampling.
    return CameraModel(LINEAR, [FOCAL, FOCAL, (WIDTH - 1) / 2, (HEIGHT - 1) / 2], WIDTH, HEIGHT)


def synthetic_views(count: int, seed: int):
    """Joint states whose board faces the camera, tilted differently in each view, and the rendered images."""
    kin = RobotKinematics.load("panda")
    ik = InverseKinematics(kin)
    X = camera_pose()
    rng = np.random.default_rng(seed)
    q_seed = np.array([0.0, 0.2, 0.0, -1.6, 0.0, 1.9, 0.8])
    views = []
    while len(views) < count:
        centre = np.array([rng.uniform(-0.12, 0.12), rng.uniform(-0.08, 0.08), rng.uniform(0.65, 0.85)])
        R = Rotation.from_rotvec(rng.normal(0, 0.3, 3)).as_matrix()
        T_camera_board = geometry.make_transform(R, centre - R @ BOARD_CENTRE)
        solution = ik.solve(X @ T_camera_board @ geometry.invert(T_EE_BOARD), q_seed, extra_seeds=[kin.lower / 2])
        if not solution.reached:
            continue
        E = kin.fk(solution.q)
        image = render_board(geometry.invert(X) @ E @ T_EE_BOARD)  # exactly what these joints show
        views.append((dict(zip(kin.arm_joint_names, solution.q.tolist(), strict=True)), image))
    return views


def write_samples(tmp_path, views, board=BOARD) -> str:
    cam = camera()
    (tmp_path / "camera_info.yaml").write_text(yaml.safe_dump({
        "image_width": WIDTH, "image_height": HEIGHT, "distortion_model": "plumb_bob",
        "camera_matrix": {"rows": 3, "cols": 3, "data": cam.intrinsic_matrix().ravel().tolist()},
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5}}))
    samples = []
    for i, (joints, image) in enumerate(views):
        cv2.imwrite(str(tmp_path / f"view_{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        samples.append({"image": f"view_{i:02d}.png", "joints": joints})
    path = tmp_path / "samples.yaml"
    path.write_text(yaml.safe_dump({"camera_info": "camera_info.yaml", "board": board.__dict__, "samples": samples}))
    return str(path)


def test_the_command_recovers_the_camera_pose_from_rendered_views(tmp_path, capsys):
    views = synthetic_views(10, seed=0)
    output = tmp_path / "config" / "camera_extrinsics.yaml"
    assert hand_eye.main(["--samples", write_samples(tmp_path, views), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "10 views" in printed
    extrinsics, T = load_camera_extrinsics(output)
    assert (extrinsics.parent_frame, extrinsics.child_frame) == ("base_link", "camera_optical_frame")
    X = camera_pose()
    # Measured: 0.05 mm and 0.004 deg off (the closed form alone: 2.1 mm, 0.10 deg); RMS 0.1 px.
    assert np.linalg.norm(T[:3, 3] - X[:3, 3]) < 0.0005
    assert math.degrees(float(geometry.geodesic_angle(T[:3, :3], X[:3, :3]))) < 0.05
    assert extrinsics.calibration["views"] == 10 and extrinsics.calibration["reprojection_rms_px"] < 0.3


def test_one_view_of_the_rendered_board_gives_its_pose():
    [(joints, image)] = synthetic_views(1, seed=1)
    kin = RobotKinematics.load("panda")
    truth = geometry.invert(camera_pose()) @ kin.fk(kin.arm_positions(list(joints), list(joints.values()))) @ T_EE_BOARD
    detection = hand_eye.detect_board(image, BOARD.board())
    assert detection is not None and len(detection.ids) == 24  # every inner corner of the 5x7 board
    pose = hand_eye.board_pose(detection, camera())
    assert np.linalg.norm(pose[:3, 3] - truth[:3, 3]) < 0.005
    assert math.degrees(float(geometry.geodesic_angle(pose[:3, :3], truth[:3, :3]))) < 1.0


def test_ax_xb_in_closed_form_on_exact_motions():
    rng = np.random.default_rng(3)
    X = rigid(rng.normal(size=3), rng.normal(size=3))
    A, B = [], []
    for _ in range(6):
        motion = rigid(rng.normal(size=3), rng.normal(size=3))
        A.append(motion)
        B.append(geometry.invert(X) @ motion @ X)  # A X = X B
    np.testing.assert_allclose(solve_ax_xb(np.stack(A), np.stack(B)), X, atol=1e-9)


def test_motions_about_one_axis_only_are_refused():
    X = rigid([0.1, 0.2, 0.3], [0.5, 0.0, 0.2])
    A = np.stack([rigid([0, 0, angle], [0.1 * angle, 0, 0]) for angle in (0.2, 0.5, -0.4)])
    B = geometry.invert(X) @ A @ X
    with pytest.raises(HandEyeError, match="at least two different axes"):
        solve_ax_xb(A, B)


def test_too_few_views_and_undetected_boards(tmp_path):
    blank = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    assert hand_eye.detect_board(blank, BOARD.board()) is None
    views = synthetic_views(2, seed=2)
    views.append((views[0][0], blank))
    assert hand_eye.main(["--samples", write_samples(tmp_path, views), "--output", str(tmp_path / "x.yaml")]) == 2
    assert not (tmp_path / "x.yaml").exists()


def test_extrinsics_file_round_trip_and_errors(tmp_path):
    T = rigid([0.3, -1.2, 2.0], [1.2, -0.1, 0.6])
    path = tmp_path / "camera_extrinsics.yaml"
    save_camera_extrinsics(path, T, "base_link", "camera_optical_frame", {"views": 3})
    extrinsics, loaded = load_camera_extrinsics(path)
    np.testing.assert_allclose(loaded, T, atol=1e-6)
    assert extrinsics.calibration == {"views": 3}
    with pytest.raises(ConfigError, match="rotation_xyzw: must be a unit quaternion"):
        CameraExtrinsics(translation=[0, 0, 0], rotation_xyzw=[0, 0, 0, 2]).transform()
    path.write_text("translation: [0, 0]\nrotation_xyzw: [0, 0, 0, 1]\n")
    with pytest.raises(ConfigError, match="translation: needs 3 values"):
        load_camera_extrinsics(path)
    path.write_text("translation: [0, 0, 0]\nrotation_xyzw: [0, 0, 0, 1]\nparent: world\n")
    with pytest.raises(ConfigError, match="parent: unknown key; did you mean 'parent_frame'"):
        load_camera_extrinsics(path)


def test_board_config_errors():
    with pytest.raises(ConfigError, match="board.dictionary: unknown 'DICT_NOPE'"):
        BoardConfig(dictionary="DICT_NOPE").board()
    with pytest.raises(ConfigError, match="marker_m"):
        BoardConfig(marker_m=0.05).board()
    assert BoardConfig(dictionary="DICT_APRILTAG_36h11").board() is not None
