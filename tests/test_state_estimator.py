"""`humanego run humanego_perception state_estimator` as a real process next to the simulated robot
(`sim_robot`), listened to over DDS: the ict message of a camera frame equals the tokens built by
humanego_core.ict from the simulator's ground truth at that stamp (the world->base and camera mounts of the
scene, the joint state's forward kinematics through views.yaml's ee_to_gripper, the task_state object poses),
in both frame modes; the objects are published in TF; without object poses frames are dropped and reported,
never published."""

import json
import os

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from humanego_core import ict
from humanego_core.actions import NormStats
from humanego_core.kinematics import RobotKinematics
from humanego_interfaces.msg import InteractionTokens, TaskState
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_sim.robot_sim import CAMERA_OPTICAL_FRAME, RobotSim
from humanego_sim.tasks import load_task

ARM = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7"]
TARGET = np.array([0.3, 0.2, 0.0, -2.0, 0.0, 2.2, 0.8])  # gripper 25 cm over the table, clear of the objects
SEED = 4
STARTUP_S = 180.0  # two processes importing MuJoCo, pinocchio and scipy on a busy 2-core machine
STATS = NormStats(np.array([0.5, 0.0, 0.1]), np.array([0.2, 0.25, 0.15]))


def make_bundle(folder, frame_mode: str):
    folder.mkdir()
    layout = {"token_dim": 20, "max_tokens": 8, "frame_mode": frame_mode, "dual_hand": False, "hand_side": "right"}
    (folder / "bundle.json").write_text(json.dumps({"token_layout": layout}))
    STATS.save(folder / "dataset_stats.json")
    return folder


@pytest.fixture(scope="module")
def scene():
    """T_base_camera (optical frame) of the simulated scene, from the simulator's own mounts."""
    sim = RobotSim(load_task("serve_bread"), "panda", seed=SEED)
    try:
        static = {child: (parent, T) for parent, child, T in sim.static_transforms()}
    finally:
        sim.close()

    def in_world(frame):
        parent, T = static[frame]
        return T if parent == "world" else in_world(parent) @ T

    T_world_base = in_world("base_link")
    return {"T_world_base": T_world_base,
            "T_base_camera": np.linalg.inv(T_world_base) @ in_world(CAMERA_OPTICAL_FRAME)}


def expected(scene, frame_mode: str, joints: JointState, task: TaskState) -> ict.Tokens:
    kinematics = RobotKinematics.load("panda")
    position = dict(zip(joints.name, joints.position, strict=True))
    T_base_hand = kinematics.fk([position[j] for j in ARM]) @ load_views_config().gripper.T_ee_gripper
    grasp = float(position["finger_joint1"] < 0.85 * kinematics.gripper_range[1])
    T_base_world = np.linalg.inv(scene["T_world_base"])
    poses = dict(zip(task.object_names, task.object_poses, strict=True))
    objects = [ict.ObjectState(n, T_base_world @ conv.pose_to_matrix(poses[n]), n == "plate")
               for n in ("bread", "plate")]
    config = ict.ICTConfig(frame_mode=frame_mode)
    T_base_ref = ict.reference_transform(config, scene["T_base_camera"], objects)
    return ict.build_tokens(config, T_base_ref, [ict.HandState("right", T_base_hand, grasp)], objects, STATS)


CAMERA_ONLY_INFO = ("camera_rate_hz:=10.0", "depth:=false", "camera_width:=160", "camera_height:=120")


def start_graph(processes, probe, bundle, *estimator_args, camera=CAMERA_ONLY_INFO):
    """sim_robot (``camera``: its camera parameters; nobody subscribes to its images unless the estimator does)
    and the state estimator in one namespace, and the probe listening to them."""
    ns = f"/state_estimator_{os.getpid()}"
    sim = processes.start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}",
                           "-p", "robot:=panda", "-p", "task:=serve_bread", "-p", f"seed:={SEED}",
                           "-p", "task_state_rate_hz:=30.0", *[a for c in camera for a in ("-p", c)]])
    node = processes.start(["humanego", "run", "humanego_perception", "state_estimator", "--ros-args",
                            "-r", f"__ns:={ns}", "-p", "use_sim_time:=true", "-p", f"bundle:={bundle}",
                            *estimator_args])
    peer = probe("state_estimator_probe", {
        "ict": (InteractionTokens, f"{ns}/ict", qos.COMMAND), "joints": (JointState, f"{ns}/joint_states", qos.COMMAND),
        "task": (TaskState, f"{ns}/task_state", qos.COMMAND), "tf": (TFMessage, "/tf", qos.TF),
        "diagnostics": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    peer.trajectory = peer.node.create_publisher(JointTrajectory, f"{ns}/joint_trajectory", qos.COMMAND)
    peer.gripper = peer.node.create_publisher(Float64, f"{ns}/gripper_command", qos.COMMAND)
    return peer, sim, node


def stamp(msg) -> int:
    return conv.time_to_ns(msg.header.stamp)


def status(got) -> dict | None:
    found = None
    for msg in got["diagnostics"]:
        for s in msg.status:
            if s.name.startswith("state_estimator"):
                found = {"message": s.message, **{kv.key: kv.value for kv in s.values}}
    return found


def nearest(messages, t):
    return min(messages, key=lambda m: abs(stamp(m) - t))


@pytest.mark.parametrize("frame_mode", ["camera_frame", "anchor_frame"])
def test_tokens_equal_the_builder_on_sim_truth(processes, probe, tmp_path, scene, frame_mode):
    peer, sim, node = start_graph(processes, probe, make_bundle(tmp_path / "bundle", frame_mode))
    got = peer.got
    peer.wait(lambda: got["joints"] and peer.trajectory.get_subscription_count() > 0
              and peer.gripper.get_subscription_count() > 0, "the sim", sim, STARTUP_S)
    peer.trajectory.publish(JointTrajectory(joint_names=ARM, points=[JointTrajectoryPoint(
        positions=TARGET.tolist(), time_from_start=Duration(sec=1))]))
    peer.gripper.publish(Float64(data=0.0))  # closed: the hand token's flag turns 1

    def settled(m):
        position = dict(zip(m.name, m.position, strict=True))
        return np.allclose([position[j] for j in ARM], TARGET, atol=2e-3) and position["finger_joint1"] < 1e-3

    def frames():
        """ict messages of frames with the arm at its target and the gripper closed, with their joint state."""
        joints = {stamp(m): m for m in got["joints"]}
        out = [(m, joints[stamp(m)]) for m in got["ict"] if stamp(m) in joints and settled(joints[stamp(m)])]
        return out if len(out) >= 2 and got["task"] else None

    matched = peer.wait(frames, "tokens of the arm at its target", node, STARTUP_S)
    camera_frame = matched[0][0].header.frame_id
    for msg, joints in matched:
        want = expected(scene, frame_mode, joints, nearest(got["task"], stamp(msg)))
        tokens, mask, ids = conv.msg_to_tokens(msg)
        assert msg.frame_mode == frame_mode and msg.token_dim == 20
        assert msg.header.frame_id == (CAMERA_OPTICAL_FRAME if frame_mode == "camera_frame" else "object/plate")
        assert ids == ["hand_right", "plate", "bread"] + [""] * 5
        np.testing.assert_array_equal(mask, want.mask)
        np.testing.assert_allclose(tokens, want.tokens, atol=1e-4)
        assert tokens[0, -1] == 1.0 and tokens[0, 0] == ict.TYPE_HAND_RIGHT
    assert camera_frame

    # The objects are in TF (base_link -> object/<name>) at the stamps of the frames, where the tokens put them.
    ict_stamps = {stamp(m) for m in got["ict"]}

    def object_transforms():
        return next(({ts.child_frame_id: ts for ts in m.transforms} for m in reversed(got["tf"])
                     if any(ts.child_frame_id.startswith("object/") for ts in m.transforms)), None)

    found = peer.wait(object_transforms, "the objects in TF", node)
    assert set(found) == {"object/bread", "object/plate"}
    t = stamp(found["object/plate"])
    assert t in ict_stamps or t > max(ict_stamps)  # published with a frame's tokens (maybe one not received yet)
    T_base_world = np.linalg.inv(scene["T_world_base"])
    task = nearest(got["task"], t)
    for name, pose in zip(task.object_names, task.object_poses, strict=True):
        assert found[f"object/{name}"].header.frame_id == "base_link" and stamp(found[f"object/{name}"]) == t
        np.testing.assert_allclose(conv.transform_to_matrix(found[f"object/{name}"].transform),
                                   T_base_world @ conv.pose_to_matrix(pose), atol=1e-5)

    report = peer.wait(lambda: (s := status(got)) and int(s["frames_published"]) >= 2 and s, "diagnostics", node)
    assert float(report["latency_p99_ms"]) >= float(report["latency_p50_ms"]) > 0


def test_without_object_poses_frames_are_dropped_and_reported(processes, probe, tmp_path):
    peer, sim, node = start_graph(processes, probe, make_bundle(tmp_path / "bundle", "camera_frame"),
                                  "-r", "task_state:=silent_task_state")
    got = peer.got

    def dropped():
        s = status(got)
        return s if s is not None and int(s.get("dropped_stale_objects", 0)) >= 3 else None

    report = peer.wait(dropped, "frames dropped for stale objects", node, STARTUP_S)
    assert report["frames_published"] == "0" and "stale_objects" in report["message"]
    assert not got["ict"]


@pytest.mark.slow
def test_rgbd_backend_estimates_the_objects(processes, probe, tmp_path, scene):
    """Objects from the camera's colour + depth images (estimated over the first frames): their tokens come
    within a centimetre or two of the ones built from the simulator's truth."""
    bundle = make_bundle(tmp_path / "bundle", "camera_frame")
    peer, _, node = start_graph(processes, probe, bundle, "-p", "object_backend:=rgbd", "-p", "rgbd.init_frames:=2",
                                camera=("camera_rate_hz:=5.0", "depth:=true", "camera_width:=320",
                                        "camera_height:=240"))
    got = peer.got

    def frames():
        joints = {stamp(m): m for m in got["joints"]}
        out = [(m, joints[stamp(m)]) for m in got["ict"] if stamp(m) in joints]
        return out if out and got["task"] else None

    msg, joints = peer.wait(frames, "tokens from the rgbd backend", node, STARTUP_S)[-1]
    want = expected(scene, "camera_frame", joints, nearest(got["task"], stamp(msg)))
    tokens, mask, ids = conv.msg_to_tokens(msg)
    assert ids == want.entity_ids
    np.testing.assert_allclose(tokens[0], want.tokens[0], atol=1e-4)  # the gripper: no estimate involved
    for row in (1, 2):  # plate, bread: positions within 2 cm (normalised by the stats' std), upright
        error_m = (tokens[row, 1:4] - want.tokens[row, 1:4]) * STATS.pos_std
        assert np.linalg.norm(error_m) < 0.02, (ids[row], error_m)
