"""RobotCleanView on the simulated robot's camera (arm removed: compared with MuJoCo's render of the same
scene without the arm; virtual gripper drawn at the end effector), and JointStateBuffer's choice of the
joint state for an image."""

import math

import mujoco
import numpy as np
import pytest

from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.transform_tree import TransformTree
from humanego_perception.arm_mask import dilate_mask
from humanego_perception.gripper_overlay import GripperOverlay
from humanego_perception.inpaint import OpenCVInpainter
from humanego_perception.robot_mask import RobotSelfMask
from humanego_perception.robot_view import (
    ONLINE_INPAINT_SCALE,
    JointStateBuffer,
    RobotCleanView,
    StaleJointStateError,
)
from humanego_perception.views import build_inpainter, load_views_config
from humanego_sim.robot_sim import CAMERA_OPTICAL_FRAME, RobotSim
from humanego_sim.tasks import load_task
from humanego_sim.world import robot_urdf

WIDTH, HEIGHT = 320, 240
MS = 1_000_000


# ----- JointStateBuffer -----
def test_nearest_joint_state_within_the_age_limit():
    buffer = JointStateBuffer()
    for t in (30, 10, 20):  # out of order
        buffer.add(t * MS, ["a", "b"], [t, -t])
    assert buffer.newest_ns == 30 * MS
    assert buffer.nearest(14 * MS, 5 * MS) == ({"a": 10.0, "b": -10.0}, -4 * MS)
    assert buffer.nearest(16 * MS, 5 * MS) == ({"a": 20.0, "b": -20.0}, 4 * MS)
    assert buffer.nearest(33 * MS, 5 * MS)[0]["a"] == 30.0
    with pytest.raises(StaleJointStateError, match=r"nearest joint state is -0\.010 s from the image \(limit 0\.005"):
        buffer.nearest(40 * MS, 5 * MS)
    with pytest.raises(StaleJointStateError, match=r"\+0\.006 s"):
        buffer.nearest(4 * MS, 5 * MS)
    with pytest.raises(StaleJointStateError, match="no joint states received"):
        JointStateBuffer().nearest(0, MS)


def test_joint_states_of_one_stamp_merge_and_old_ones_leave():
    buffer = JointStateBuffer(capacity=3)
    buffer.add(1, ["arm"], [0.5])
    buffer.add(1, ["finger"], [0.02])  # a gripper driver publishing its own joint state at the same stamp
    assert buffer.nearest(1, 0) == ({"arm": 0.5, "finger": 0.02}, 0)
    for t in (2, 3, 4):
        buffer.add(t, ["arm"], [t])
    with pytest.raises(StaleJointStateError):
        buffer.nearest(1, 0)


def test_bad_joint_states_are_refused():
    buffer = JointStateBuffer()
    with pytest.raises(ValueError, match="NaN or inf for b"):
        buffer.add(0, ["a", "b"], [0.0, math.nan])
    with pytest.raises(ValueError, match="2 names .* 1 positions"):
        buffer.add(0, ["a", "b"], [0.0])
    with pytest.raises(ValueError, match="unique: 1"):
        buffer.add(0, ["a", "a"], [0.0, 1.0])
    assert buffer.newest_ns is None


# ----- RobotCleanView -----
@pytest.fixture(scope="module")
def scene():
    """The simulated panda at a pose over the table, its ego camera image, and the same image without the arm."""
    sim = RobotSim(load_task("serve_bread"), "panda", seed=2)
    r = sim.robot
    arm = np.array([0.3, 0.2, 0.0, -2.0, 0.0, 2.2, 0.8])
    sim.data.qpos[r.arm_qpos], sim.data.qpos[r.finger_qpos] = arm, 0.03
    mujoco.mj_kinematics(sim.model, sim.data)
    image = sim.render(WIDTH, HEIGHT, "rgb")
    robot = sim.render(WIDTH, HEIGHT, "labels") == 1
    m, robot_bodies = sim.model, set(r.link_bodies)
    for g in range(m.ngeom):
        if m.body(m.geom_bodyid[g]).name in robot_bodies:
            m.geom_group[g] = 3  # not drawn: mjvOption shows groups 0-2 by default
    without_arm = sim.render(WIDTH, HEIGHT, "rgb")
    tree = TransformTree()
    for parent, child, T in sim.static_transforms():
        tree.set(parent, child, T, 0, static=True)
    K = sim.camera_matrix(WIDTH, HEIGHT)
    camera = CameraModel(LINEAR, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], WIDTH, HEIGHT)
    q = dict(zip(sim.joint_names, np.r_[arm, 0.03, 0.03], strict=True))
    sim.close()
    return dict(image=image, robot=robot, without_arm=without_arm, camera=camera,
                T_camera_base=tree.lookup(CAMERA_OPTICAL_FRAME, "base_link"), q=q)


@pytest.fixture(scope="module")
def view():
    return RobotCleanView.from_config(robot_urdf("panda"), load_views_config(), padding_px=3,
                                      inpaint_scale=ONLINE_INPAINT_SCALE)


def test_the_arm_is_removed_and_the_gripper_drawn(scene, view):
    clean, mask = view.process(scene["image"], scene["camera"], scene["T_camera_base"], scene["q"])
    assert clean.shape == scene["image"].shape and clean.dtype == np.uint8
    assert mask.dtype == bool and np.all(mask[scene["robot"]]), "every robot pixel is masked"
    # The mask is the self-mask of the configured padding.
    np.testing.assert_array_equal(mask, view.robot_mask.mask(scene["camera"], scene["T_camera_base"], scene["q"]))

    # Arm removed: inside the mask, away from the drawn gripper, the clean image is much closer to the scene
    # rendered without the arm than the input was.
    without_gripper = view.inpainter.inpaint(scene["image"], mask)
    gripper = np.any(clean != without_gripper, axis=-1)
    region = mask & ~gripper
    error_before = np.abs(scene["image"][region].astype(float) - scene["without_arm"][region]).mean()
    error_after = np.abs(clean[region].astype(float) - scene["without_arm"][region]).mean()
    assert error_after < 0.5 * error_before, (error_before, error_after)
    # Outside the mask (grown by the views config's inpaint.dilate_px) and the gripper, nothing changed.
    kept = ~dilate_mask(mask, load_views_config().inpaint.dilate_px) & ~gripper
    np.testing.assert_array_equal(clean[kept], scene["image"][kept])

    # The virtual gripper is drawn around the end effector's projection.
    T_camera_ee = scene["T_camera_base"] @ view.robot_mask.fk(scene["q"], "ee")
    (u, v), _ = scene["camera"].project(T_camera_ee[:3, 3])
    rows, cols = np.nonzero(gripper)
    assert rows.size > 20
    assert cols.min() - 15 <= u <= cols.max() + 15 and rows.min() - 15 <= v <= rows.max() + 15


def test_inpaint_scale_sets_the_views_inpainter_and_its_fill_is_close_to_the_full_resolution_one(scene, view):
    views = load_views_config()
    assert isinstance(view.inpainter, OpenCVInpainter) and view.inpainter.scale == ONLINE_INPAINT_SCALE
    assert view.inpainter.method == views.inpaint.backend and view.inpainter.radius_px == views.inpaint.radius_px
    assert RobotCleanView.from_config(robot_urdf("panda"), views).inpainter.scale == views.inpaint.scale
    full = RobotCleanView.from_config(robot_urdf("panda"), views, inpaint_scale=1.0).inpainter
    mask = view.robot_mask.mask(scene["camera"], scene["T_camera_base"], scene["q"])
    truth = scene["without_arm"][mask].astype(float)
    filled = {scale: inpainter.inpaint(scene["image"], mask) for scale, inpainter in ((1.0, full),
                                                                                  (0.5, view.inpainter))}
    hole = dilate_mask(mask, views.inpaint.dilate_px)
    np.testing.assert_array_equal(filled[0.5][~hole], scene["image"][~hole])
    error_full, error_half = (np.abs(filled[s][mask].astype(float) - truth).mean() for s in (1.0, 0.5))
    assert error_half < 1.25 * error_full + 1.0, (error_full, error_half)


def test_the_drawn_gripper_opens_with_the_fingers(scene, view):
    closed = dict(scene["q"], finger_joint1=0.0, finger_joint2=0.0)
    open_clean, _ = view.process(scene["image"], scene["camera"], scene["T_camera_base"], scene["q"])
    closed_clean, _ = view.process(scene["image"], scene["camera"], scene["T_camera_base"], closed)
    assert np.any(open_clean != closed_clean)


def test_bad_inputs_are_refused(scene, view):
    with pytest.raises(ValueError, match=r"image must be uint8 \(240, 320, 3\)"):
        view.process(scene["image"][:100], scene["camera"], scene["T_camera_base"], scene["q"])
    with pytest.raises(ValueError, match="missing for joint1"):
        view.process(scene["image"], scene["camera"], scene["T_camera_base"],
                     {k: v for k, v in scene["q"].items() if k != "joint1"})
    views = load_views_config()
    with pytest.raises(ValueError, match="frame 'tool0' is not in panda.urdf"):
        RobotCleanView(RobotSelfMask(robot_urdf("panda")), build_inpainter(views), GripperOverlay(views.gripper),
                       ee_frame="tool0")
