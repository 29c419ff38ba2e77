"""The extrinsics check on the simulator's ego camera: with the true camera-to-base transform the drawn skeleton
and gripper lie on the robot as MuJoCo renders it; with one a few centimetres or degrees off they visibly do
not. The draw_extrinsics command writes that image from files."""

import cv2
import mujoco
import numpy as np
import pytest
import yaml

from humanego_control.extrinsics_check import ExtrinsicsOverlay, OverlayStyle, main
from humanego_control.hand_eye import save_camera_extrinsics
from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.kinematics import RobotKinematics
from humanego_perception.views import load_views_config
from humanego_sim.robot_sim import EGO_CAMERA, RobotSim
from humanego_sim.tasks import load_task

WIDTH, HEIGHT = 320, 240
Q = np.array([0.3, 0.2, 0.0, -2.0, 0.0, 2.2, 0.8])  # gripper over the table, in the ego camera's view
SKELETON = (255, 0, 255)  # OverlayStyle's default


@pytest.fixture(scope="module")
def scene():
    """The sim's rendered robot at Q: (rgb, robot mask, camera, T_camera_base, MuJoCo's link origins in the
    camera frame by name)."""
    sim = RobotSim(load_task("serve_bread"), "panda", seed=0)
    try:
        r = sim.robot
        sim.data.qpos[r.arm_qpos] = Q
        sim.data.qpos[r.finger_qpos] = 0.04
        mujoco.mj_kinematics(sim.model, sim.data)
        K = sim.camera_matrix(WIDTH, HEIGHT)
        camera = CameraModel(LINEAR, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], WIDTH, HEIGHT)
        T_camera_world = geometry.invert(sim.world.camera_pose(EGO_CAMERA))
        base = sim.data.body("base_link")
        T_camera_base = T_camera_world @ geometry.make_transform(base.xmat.reshape(3, 3), base.xpos)
        links = {sim.model.body(i).name: geometry.transform_points(T_camera_world, sim.data.xpos[i])
                 for i in range(1, sim.model.nbody)}
        return sim.render(WIDTH, HEIGHT, "rgb"), sim.render(WIDTH, HEIGHT, "labels") == 1, camera, T_camera_base, links
    finally:
        sim.close()


@pytest.fixture(scope="module")
def overlay():
    gripper = load_views_config().gripper
    return ExtrinsicsOverlay(RobotKinematics.load("panda"), gripper, OverlayStyle(line_px=1, dot_px=1,
                                                                                 axes_length_m=0.0))


def test_the_skeleton_is_where_the_simulator_draws_the_links(overlay, scene):
    _, robot, camera, T_camera_base, mujoco_links = scene
    transforms = overlay.kin.link_transforms(Q, 0.04)
    for name in overlay.links:
        ours = camera.project_no_checks(geometry.transform_points(T_camera_base, transforms[name][:3, 3])[None])[0]
        theirs = camera.project_no_checks(mujoco_links[name][None])[0]
        assert np.linalg.norm(ours - theirs) < 0.05, name
    drawn = overlay.draw(np.zeros((HEIGHT, WIDTH, 3), np.uint8), camera, T_camera_base, Q, 0.04).astype(int)
    skeleton = (drawn[..., 0] > 100) & (drawn[..., 2] > 100) & (drawn[..., 1] == 0)  # magenta, anti-aliased
    assert skeleton.sum() > 200
    assert (skeleton & robot).sum() / skeleton.sum() > 0.9  # the lines run through the rendered arm


@pytest.mark.parametrize("error, T_error, min_px", [
    ("3 cm sideways", geometry.make_transform(np.eye(3), [0.03, 0, 0]), 8.0),
    ("3 deg about the optical axis", geometry.make_transform(cv2.Rodrigues(np.array([0, 0, np.radians(3.0)]))[0],
                                                             [0, 0, 0]), 3.0),
    ("3 deg of tilt", geometry.make_transform(cv2.Rodrigues(np.array([np.radians(3.0), 0, 0]))[0], [0, 0, 0]), 8.0)])
def test_a_wrong_transform_moves_the_drawing_off_the_arm(overlay, scene, error, T_error, min_px):
    """How far (px, 320x240 ego camera) the drawn link origins move for a small calibration error."""
    _, _, camera, T_camera_base, _ = scene
    skeleton = overlay.skeleton(Q, 0.04)
    right = camera.project_no_checks(geometry.transform_points(T_camera_base, skeleton))
    wrong = camera.project_no_checks(geometry.transform_points(T_error @ T_camera_base, skeleton))
    assert np.linalg.norm(wrong - right, axis=1).mean() > min_px, error


def test_the_gripper_covers_the_real_one(overlay, scene):
    rgb, robot, camera, T_camera_base, _ = scene
    drawn = overlay.draw(rgb, camera, T_camera_base, Q, 0.04)
    gripper = np.all(drawn != rgb, axis=-1) & ~np.all(drawn == SKELETON, axis=-1)
    assert gripper.sum() > 100
    assert (gripper & robot).sum() / gripper.sum() > 0.6


def test_draw_extrinsics_writes_the_png(tmp_path, scene):
    rgb, _, camera, T_camera_base, _ = scene
    cv2.imwrite(str(tmp_path / "image.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (tmp_path / "camera_info.yaml").write_text(yaml.safe_dump({
        "image_width": WIDTH, "image_height": HEIGHT,
        "camera_matrix": {"data": camera.intrinsic_matrix().ravel().tolist()}}))
    save_camera_extrinsics(tmp_path / "extrinsics.yaml", geometry.invert(T_camera_base), "base_link",
                           "camera_optical_frame", {})
    joints = ",".join(f"joint{i + 1}={v}" for i, v in enumerate(Q)) + ",finger_joint1=0.04"
    args = ["--image", str(tmp_path / "image.png"), "--camera-info", str(tmp_path / "camera_info.yaml"),
            "--joints", joints, "--extrinsics", str(tmp_path / "extrinsics.yaml"), "--output", str(tmp_path / "o.png")]
    assert main(args) == 0
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "o.png")), cv2.COLOR_BGR2RGB)
    expected = ExtrinsicsOverlay(RobotKinematics.load("panda"), load_views_config().gripper).draw(
        rgb, camera, T_camera_base, Q, 0.04)
    assert np.abs(written.astype(int) - expected).max() <= 1  # the same drawing (extrinsics file rounded to 1e-6)
    assert main([*args[:5], "joint1=0.1", *args[6:]]) == 2  # joints missing: an error, not a drawing
