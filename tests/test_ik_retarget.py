"""`humanego run humanego_control ik_retarget` as a real process next to the simulated robot (`sim_robot`), fed
ActionChunks over DDS from this one: the joint trajectory it publishes reaches the chunk's gripper poses
(through TF from the camera frame and views.yaml's alignment) when evaluated with the URDF's forward
kinematics; NaN chunks and chunks in a frame TF does not know are rejected and counted, not published."""

import math
import os
import subprocess

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Path
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from humanego_core.kinematics import RobotKinematics
from humanego_core.transform_tree import TransformLookupError
from humanego_interfaces.msg import ActionChunk
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.tf_listener import TfListener

HORIZON = 12
DT = 1 / 30


def start_graph(processes, probe):
    ns = f"/ikretarget_{os.getpid()}"
    sim = processes.start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}",
                           "-p", "robot:=panda", "-p", "task:=serve_bread", "-p", "seed:=1",
                           "-p", "real_time_factor:=1.0", "-p", "camera_rate_hz:=0.0"])
    node = processes.start(["humanego", "run", "humanego_control", "ik_retarget", "--ros-args", "-r", f"__ns:={ns}",
                            "-p", "robot:=panda", "-p", "use_sim_time:=true"])
    peer = probe("ik_retarget_probe", {
        "joints": (JointState, f"{ns}/joint_states", qos.COMMAND),
        "chunk": (JointTrajectory, f"{ns}/joint_chunk", qos.COMMAND),
        "path": (Path, f"{ns}/viz/predicted_path", qos.COMMAND),
        "markers": (MarkerArray, f"{ns}/viz/markers", qos.COMMAND),
        "diagnostics": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    peer.actions = peer.node.create_publisher(ActionChunk, f"{ns}/action_chunk", qos.COMMAND)
    peer.tf = TfListener(peer.node)
    return peer, sim, node


def status_of(peer) -> dict | None:
    for m in reversed(peer.got["diagnostics"]):
        s = next((s for s in m.status if s.name.startswith("ik_retarget")), None)
        if s is not None:
            return {"message": s.message, **{kv.key: kv.value for kv in s.values}}
    return None


def wait_status(peer, predicate, what: str, proc) -> dict:
    """``predicate(status)`` of the node's latest status once it is truthy; a failure shows the last status."""
    try:
        return peer.wait(lambda: (s := status_of(peer)) is not None and predicate(s), what, proc)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {status_of(peer)}") from None


def duration_s(d) -> float:
    return d.sec + d.nanosec * 1e-9


def camera_from_base(peer) -> list | None:
    """[T_camera_base] once TF has it (a list: the probe waits on a truthy value)."""
    try:
        return [peer.tf.lookup("camera_optical_frame", "base_link")]
    except TransformLookupError:
        return None


def test_chunks_become_joint_trajectories_reaching_their_poses(processes, probe):
    peer, sim, node = start_graph(processes, probe)
    got = peer.got
    kin = RobotKinematics.load("panda")
    T_ee_gripper = load_views_config().gripper.T_ee_gripper
    peer.wait(lambda: got["joints"] and peer.actions.get_subscription_count() > 0, "the sim and the node", node)
    [T_camera_base] = peer.wait(lambda: camera_from_base(peer), "TF from the camera to the base", sim)
    peer.wait_connected(node, keys=["chunk", "path", "markers"])

    def chunk_now(frame="camera_optical_frame"):
        """A chunk from the arm's measured state: the gripper moving 6 cm sideways and rolling, closing midway."""
        state = got["joints"][-1]
        q0 = kin.arm_positions(list(state.name), list(state.position))
        T_base_gripper = []
        for k in range(HORIZON):
            q = q0 + (k + 1) / HORIZON * np.array([0.15, 0.05, -0.1, 0.1, 0.1, -0.05, 0.3])
            T_base_gripper.append(kin.fk(q) @ T_ee_gripper)
        T_base_gripper = np.stack(T_base_gripper)
        grasp = (np.arange(HORIZON) >= HORIZON // 2).astype(np.float32)
        msg = conv.chunk_to_msg((T_camera_base @ T_base_gripper)[:, None], grasp[:, None], ["right"], DT, 0.0,
                                conv.time_to_ns(state.header.stamp), frame, "test")
        return msg, T_base_gripper, grasp

    # Until the node's subscriptions have matched us and the sim's /tf_static (Fast DDS discovery is neither
    # symmetric nor ordered), a chunk can be lost on the way or rightly rejected for lack of TF: send fresh ones
    # until the first goes through; any other rejection fails the test.
    sent = {}
    trajectory = None
    for _ in range(20):
        msg, T_base_gripper, grasp = chunk_now()
        sent[conv.time_to_ns(msg.header.stamp)] = msg, T_base_gripper, grasp
        peer.actions.publish(msg)
        try:
            trajectory = peer.wait(lambda: got["chunk"] and got["chunk"][0], "a joint chunk", node, timeout_s=10.0)
            break
        except AssertionError:
            if node.poll() is not None:
                raise
            status = status_of(peer)
            assert status is None or status["chunks_rejected"] == status.get("rejected_no_transform", "0"), status
    assert trajectory is not None, f"no chunk went through; last status: {status_of(peer)}"
    msg, T_base_gripper, grasp = sent[conv.time_to_ns(trajectory.header.stamp)]
    assert trajectory.header.stamp == msg.header.stamp and trajectory.header.frame_id == "base_link"
    assert list(trajectory.joint_names) == [*kin.arm_joint_names, "finger_joint1"]
    # From the first step not yet due when the node solved it (the chunk is as old as the joint state it was made
    # from, plus the time on the way).
    first = round(duration_s(trajectory.points[0].time_from_start) / DT) - 1
    assert 0 <= first <= HORIZON - 2 and len(trajectory.points) == HORIZON - first
    for k, point in enumerate(trajectory.points, start=first):
        assert duration_s(point.time_from_start) == pytest.approx((k + 1) * DT, abs=1e-9)
        q = np.array(point.positions[:7])
        assert np.all(q >= kin.lower) and np.all(q <= kin.upper)
        T = kin.fk(q) @ T_ee_gripper
        # Bounds: the quaternions of the Pose messages (float64) and the IK's tolerance, far below a millimetre.
        assert np.linalg.norm(T[:3, 3] - T_base_gripper[k][:3, 3]) < 1e-4
        cos = (np.trace(T[:3, :3].T @ T_base_gripper[k][:3, :3]) - 1) / 2
        assert math.degrees(math.acos(min(1.0, cos))) < 0.05
        assert point.positions[7] == (0.0 if grasp[k] >= 0.5 else 0.04)

    path = peer.wait(lambda: got["path"] and got["path"][-1], "the predicted path", node)
    assert path.header.frame_id == "base_link" and len(path.poses) == HORIZON - first
    T_base_ee = T_base_gripper[-1] @ np.linalg.inv(T_ee_gripper)
    np.testing.assert_allclose(conv.pose_to_matrix(path.poses[-1].pose), T_base_ee, atol=1e-4)
    markers = peer.wait(lambda: got["markers"] and got["markers"][-1], "the markers", node)
    assert len(markers.markers[0].points) == (HORIZON - first) * 8  # 4 segments of a gripper per step

    # A NaN pose, and a frame TF does not know: rejected and counted, nothing published for them. One at a time:
    # a chunk that arrives while the solver is busy supersedes the one waiting, which then is never checked.
    before = wait_status(peer, lambda s: s["chunks_published"] == "1" and s, "the status after one chunk", node)
    tf_rejections = int(before.get("rejected_no_transform", 0))
    bad, _, _ = chunk_now()
    bad.poses[3].position.x = float("nan")
    peer.actions.publish(bad)
    wait_status(peer, lambda s: s.get("rejected_invalid") == "1", "the NaN chunk's rejection", node)
    lost, _, _ = chunk_now(frame="nowhere")
    peer.actions.publish(lost)
    wait_status(peer, lambda s: s.get("rejected_no_transform") == str(tf_rejections + 1),
                "the unknown frame's rejection", node)
    assert len(got["chunk"]) == 1
    # The node keeps working after them.
    again, _, _ = chunk_now()
    peer.actions.publish(again)
    peer.wait(lambda: len(got["chunk"]) == 2, "the next joint chunk", node)
    assert got["chunk"][-1].header.stamp == again.header.stamp
    status = wait_status(peer, lambda s: s["chunks_published"] == "2" and s, "the count", node)
    assert int(status["chunks_received"]) == 2 + int(status["chunks_rejected"]) and status["steps_flagged"] == "0"
    assert float(status["last_position_residual_max_mm"]) < 0.1


def test_bad_parameters_fail_at_start_naming_them():
    out = subprocess.run(["humanego", "run", "humanego_control", "ik_retarget", "--ros-args", "-p", "robot:=kuka"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot start" in out.stderr and "'robot'" in out.stderr


def test_the_shipped_ik_stays_within_the_controllers_position_margin():
    """A solution at a URDF limit would be clamped by the controller's margin: the arm would miss its pose."""
    from humanego_control import ik_retarget_node, trajectory_controller_node
    from humanego_ros.parameters import shipped_parameters

    ik = shipped_parameters("ik_retarget", ik_retarget_node.parameters())
    control = shipped_parameters("trajectory_controller", trajectory_controller_node.parameters())
    assert ik["position_margin_rad"] >= control["position_margin_rad"] > 0
