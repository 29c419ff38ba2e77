"""humanego_perception.robot_state: the gripper as the ICT hand (checked against the URDF's finger geometry),
grasp from the finger opening, stamped buffers, the token builder and the policy bundle's layout; and
humanego_perception.rgbd_objects on the simulator's RGB-D camera against its ground truth."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry, ict
from humanego_core.actions import NormStats
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.kinematics import RobotKinematics
from humanego_perception.objects import ColourShapeDetector, prompts_from_task
from humanego_perception.rgbd_objects import RgbdObjectEstimator, RgbdObjectsConfig, depth_in_metres
from humanego_perception.robot_mask import RobotSelfMask
from humanego_perception.robot_state import (
    GripperHand,
    MissingObjectError,
    RobotTokenBuilder,
    StaleDataError,
    StampedBuffer,
    load_bundle_tokens,
)
from humanego_perception.views import load_views_config
from humanego_sim.robot_sim import CAMERA_OPTICAL_FRAME, RobotSim
from humanego_sim.tasks import load_task

STATS = NormStats(np.array([0.5, 0.0, 0.1]), np.array([0.2, 0.25, 0.15]))
T_EE_GRIPPER = load_views_config().gripper.T_ee_gripper


@pytest.mark.parametrize("robot", ["panda", "ur5e"])
def test_gripper_hand_frame_is_the_ee_through_the_alignment(robot):
    """Hand frame = the ee through views.yaml's alignment (measured against a ee frame whose y is the fingers'
    closing axis and z the approach, from the fingers' base towards the tips), origin at the TCP."""
    kinematics = RobotKinematics.load(robot)
    hand = GripperHand(kinematics, T_EE_GRIPPER)
    rng = np.random.default_rng(3)
    opening = kinematics.gripper_range[1]
    for _ in range(5):
        q = rng.uniform(kinematics.lower, kinematics.upper)
        positions = dict(zip(kinematics.arm_joint_names, q, strict=True)) | {kinematics.gripper_joint_name: opening}
        state = hand.state(positions)
        T = state.T_world_hand
        geometry.check_transform(T)
        T_ee = kinematics.fk(q)
        np.testing.assert_allclose(T, T_ee @ T_EE_GRIPPER, atol=1e-12)
        left = kinematics.frame_transform(q, "leftfinger", opening)[:3, 3]
        right = kinematics.frame_transform(q, "rightfinger", opening)[:3, 3]
        base = kinematics.frame_transform(q, "leftfinger", 0.0)[:3, 3]  # where both fingers start, closed
        np.testing.assert_allclose(T[:3, 3], T_ee[:3, 3], atol=1e-12)
        closing = (left - right) / np.linalg.norm(left - right)
        assert abs(T_ee[:3, 1] @ closing) == pytest.approx(1.0, abs=1e-9)
        approach = (T_ee[:3, 3] - base) / np.linalg.norm(T_ee[:3, 3] - base)
        np.testing.assert_allclose(T_ee[:3, 2], approach, atol=1e-9)
        assert state.grasp == 0.0 and state.side == "right"


def test_grasp_from_the_finger_opening():
    kinematics = RobotKinematics.load("panda")  # full opening 0.04 m per finger
    hand = GripperHand(kinematics, T_EE_GRIPPER, side="left", closed_below_fraction=0.85)
    arm = dict.fromkeys(kinematics.arm_joint_names, 0.0) | {"joint4": -2.0}
    for opening, grasp in [(0.04, 0.0), (0.035, 0.0), (0.0339, 1.0), (0.025, 1.0), (0.0, 1.0)]:
        state = hand.state(arm | {"finger_joint1": opening})
        assert state.grasp == grasp and state.side == "left"
    with pytest.raises(ValueError, match="finger_joint1"):
        hand.state(arm)
    with pytest.raises(ValueError, match="NaN"):
        hand.state(arm | {"finger_joint1": 0.0, "joint3": float("nan")})
    with pytest.raises(ValueError, match="orthonormal"):
        GripperHand(kinematics, np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="closed_below_fraction"):
        GripperHand(kinematics, T_EE_GRIPPER, closed_below_fraction=1.0)


def test_stamped_buffer_nearest_within_bound():
    buffer = StampedBuffer("task_state", capacity=3)
    with pytest.raises(StaleDataError, match="no task_state"):
        buffer.nearest(0, 10)
    for t in (100, 300, 200, 400):
        buffer.add(t, f"v{t}")
    assert buffer.newest_ns == 400
    assert buffer.nearest(260, 50) == "v300" and buffer.nearest(240, 50) == "v200"
    with pytest.raises(StaleDataError, match="-0.000"):
        buffer.nearest(460, 50)
    with pytest.raises(StaleDataError):
        buffer.nearest(100, 50)  # dropped: capacity 3 keeps 200..400


def test_token_builder_and_frames():
    rng = np.random.default_rng(1)
    T = geometry.make_transform(Rotation.random(4, random_state=1).as_matrix(), rng.normal(size=(4, 3)))
    hand = ict.HandState("right", T[0], 1.0)
    objects = {"bread": T[1], "plate": T[2], "cup": T[3]}  # cup: not a task object, ignored
    for mode in ict.FRAME_MODES:
        config = ict.ICTConfig(frame_mode=mode)
        builder = RobotTokenBuilder(config, STATS, ["bread", "plate"], "plate")
        tokens, T_ref = builder.build(T[3], [hand], objects)
        np.testing.assert_array_equal(T_ref, T[3] if mode == "camera_frame" else T[2])
        direct = ict.build_tokens(config, T_ref, [hand], [ict.ObjectState("bread", T[1]),
                                                          ict.ObjectState("plate", T[2], True)], STATS)
        np.testing.assert_array_equal(tokens.tokens, direct.tokens)
        assert tokens.entity_ids[:3] == ["hand_right", "plate", "bread"]
        assert builder.reference_frame_id("cam") == ("cam" if mode == "camera_frame" else "object/plate")
        with pytest.raises(MissingObjectError, match="plate"):
            builder.build(T[3], [hand], {"bread": T[1]})
    with pytest.raises(ValueError, match="anchor object 'bowl'"):
        RobotTokenBuilder(ict.ICTConfig(), STATS, ["bread"], "bowl")
    with pytest.raises(ValueError, match="needs an anchor"):
        RobotTokenBuilder(ict.ICTConfig(frame_mode="anchor_frame"), STATS, ["bread"], None)


def write_bundle(folder, layout):
    folder.mkdir(exist_ok=True)
    (folder / "bundle.json").write_text(json.dumps({"token_layout": layout, "policy_type": "flow"}))
    STATS.save(folder / "dataset_stats.json")
    return folder


def test_bundle_token_layout_and_stats(tmp_path):
    layout = {"token_dim": 29, "max_tokens": 6, "frame_mode": "anchor_frame", "dual_hand": True, "hand_side": "left"}
    config, stats = load_bundle_tokens(write_bundle(tmp_path / "b", layout))
    assert config == ict.ICTConfig("anchor_frame", True, "left", 6)
    np.testing.assert_array_equal(stats.pos_std, STATS.pos_std)
    with pytest.raises(ValueError, match="token_dim 20 does not fit"):
        load_bundle_tokens(write_bundle(tmp_path / "b", layout | {"token_dim": 20}))
    with pytest.raises(ValueError, match="frame_mode"):
        load_bundle_tokens(write_bundle(tmp_path / "b", layout | {"frame_mode": "world"}))
    with pytest.raises(ValueError, match="exactly the keys"):
        load_bundle_tokens(write_bundle(tmp_path / "b", {"token_dim": 29}))
    write_bundle(tmp_path / "b", layout)
    (tmp_path / "b" / "dataset_stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="dataset_stats.json"):
        load_bundle_tokens(tmp_path / "b")
    # The stats file is the one the manifest names (humanego_policy.bundle's dataset_stats key).
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bundle.json").write_text(json.dumps({"token_layout": layout, "dataset_stats": "s.json"}))
    NormStats(np.zeros(3), np.full(3, 0.5)).save(tmp_path / "c" / "s.json")
    np.testing.assert_array_equal(load_bundle_tokens(tmp_path / "c")[1].pos_std, 0.5)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_bundle_tokens(tmp_path / "missing")


@pytest.fixture(scope="module")
def sim_view():
    """One RGB-D frame of the serve_bread scene from the robot's camera, with the truth in the base frame."""
    width, height = 320, 240
    task = load_task("serve_bread")
    sim = RobotSim(task, "panda", seed=2)
    try:
        sim.step(5)
        snap = sim.snapshot()
        static = {child: (parent, T) for parent, child, T in sim.static_transforms()}

        def in_world(frame):
            parent, T = static[frame]
            return T if parent == "world" else in_world(parent) @ T

        T_base_world = np.linalg.inv(in_world("base_link"))
        K = sim.camera_matrix(width, height)
        yield {"task": task, "rgb": sim.render(width, height, "rgb"), "depth": sim.render(width, height, "depth"),
               "camera": CameraModel(LINEAR, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], width, height),
               "T_base_camera": T_base_world @ in_world(CAMERA_OPTICAL_FRAME),
               "q": dict(zip(snap.joint_names, snap.positions, strict=True)),
               "truth": {n: T_base_world @ T for n, T in snap.object_poses.items()}}
    finally:
        sim.close()


def test_rgbd_objects_against_the_simulator(sim_view):
    v = sim_view
    estimator = RgbdObjectEstimator(prompts_from_task(v["task"]), ColourShapeDetector(),
                                    RgbdObjectsConfig(init_frames=2))
    robot = RobotSelfMask(RobotKinematics.load("panda").urdf_path).mask(
        v["camera"], np.linalg.inv(v["T_base_camera"]), v["q"])
    depth = depth_in_metres(v["depth"], "32FC1")
    assert estimator.add_view(v["rgb"], depth, v["camera"], v["T_base_camera"], robot) == []
    assert not estimator.ready and estimator.pending == ["bread", "plate"]
    assert estimator.add_view(v["rgb"], depth, v["camera"], v["T_base_camera"], robot) == ["bread", "plate"]
    assert estimator.ready
    for name, tolerance_m in (("bread", 0.015), ("plate", 0.005)):
        T, truth = estimator.poses[name], v["truth"][name]
        assert np.linalg.norm(T[:3, 3] - truth[:3, 3]) < tolerance_m, name
        # Upright, and a box's yaw up to its 180-degree symmetry.
        yaw_error = np.degrees(geometry.geodesic_angle(T[:3, :3], truth[:3, :3]))
        assert min(yaw_error, 180 - yaw_error) < 3.0, name
    np.testing.assert_allclose(estimator.sizes["plate"], [0.09, 0.015], atol=0.005)

    # Tracking: a grasp onset at the bread takes it along with the hand; the release leaves it there.
    start = estimator.poses["bread"].copy()
    T_hand = geometry.make_transform(np.eye(3), estimator.centre("bread") + [0.0, 0.0, 0.01])
    far = geometry.make_transform(np.eye(3), T_hand[:3, 3] + [0.0, 0.0, 0.3])
    estimator.update(ict.HandState("right", far, 1.0))  # closed far away: takes nothing
    estimator.update(ict.HandState("right", T_hand, 1.0))  # still closed: no onset here
    np.testing.assert_array_equal(estimator.poses["bread"], start)
    estimator.update(ict.HandState("right", T_hand, 0.0))
    estimator.update(ict.HandState("right", T_hand, 1.0))  # onset at the bread
    lift = geometry.make_transform(Rotation.from_euler("z", 30, degrees=True).as_matrix(), [0.05, 0.0, 0.1])
    estimator.update(ict.HandState("right", T_hand @ lift, 1.0))
    np.testing.assert_allclose(estimator.poses["bread"], T_hand @ lift @ np.linalg.inv(T_hand) @ start, atol=1e-12)
    moved = estimator.poses["bread"].copy()
    plate = estimator.poses["plate"].copy()
    estimator.update(ict.HandState("right", T_hand, 0.0))  # released: stays where it was carried
    np.testing.assert_array_equal(estimator.poses["bread"], moved)
    np.testing.assert_array_equal(estimator.poses["plate"], plate)  # never grasped, never moved


def test_rgbd_bad_input(sim_view):
    v = sim_view
    estimator = RgbdObjectEstimator(prompts_from_task(v["task"]), ColourShapeDetector())
    with pytest.raises(ValueError, match="rgb uint8"):
        estimator.add_view(v["rgb"][:10], v["depth"], v["camera"], v["T_base_camera"])
    with pytest.raises(ValueError, match="NaN"):
        estimator.add_view(v["rgb"], v["depth"], v["camera"], np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="depth encoding"):
        depth_in_metres(v["depth"], "rgb8")
    mm = depth_in_metres(np.array([[0, 1500]], np.uint16), "16UC1")
    assert np.isnan(mm[0, 0]) and mm[0, 1] == 1.5
