"""`humanego run humanego_control trajectory_controller` as a real process driving the simulated robot
(`sim_robot`, sim time), fed joint chunks over DDS from this process the way ik_retarget sends them: chunks
move the arm; NaN chunks are rejected, out-of-limit targets stop at the narrowed joint limit and
below-the-table targets at the workspace box, each counted on /diagnostics; when chunks stop coming or the
e-stop is pressed, the arm decelerates and holds."""

import math
import os
import subprocess
import time

import numpy as np
import pinocchio as pin
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Path
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from humanego_ros import qos

ARM = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7"]
GRIPPER = "finger_joint1"
HOME = np.array([0.0, -0.3, 0.0, -2.5, 0.0, 2.2, 0.785398])
JOINT7_UPPER = 2.8973  # URDF
MARGIN = 0.02          # position_margin_rad (the default)
TABLE_MARGIN = 0.03    # workspace_min z in these tests: the ee stays 3 cm above the table top
DT = 1.0 / 30.0        # chunk step, as the policy's
STEPS = 50


def start_graph(processes, probe, *controller_args: str):
    ns = f"/trajctl_{os.getpid()}"
    sim = processes.start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}",
                           "-p", "robot:=panda", "-p", "task:=serve_bread", "-p", "seed:=1",
                           "-p", "real_time_factor:=1.0", "-p", "camera_rate_hz:=0.0"])
    node = processes.start(["humanego", "run", "humanego_control", "trajectory_controller", "--ros-args",
                            "-r", f"__ns:={ns}", "-p", "robot:=panda", "-p", "use_sim_time:=true",
                            "-p", "output:=sim", "-p", "joint_state_timeout_s:=0.5", *controller_args])
    peer = probe("trajectory_controller_probe", {
        "joints": (JointState, f"{ns}/joint_states", qos.COMMAND),
        "commands": (JointTrajectory, f"{ns}/joint_trajectory", qos.COMMAND),
        "gripper": (Float64, f"{ns}/gripper_command", qos.COMMAND),
        "path": (Path, f"{ns}/viz/executed_path", qos.COMMAND),
        "diagnostics": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    peer.chunk = peer.node.create_publisher(JointTrajectory, f"{ns}/joint_chunk", qos.COMMAND)
    peer.estop = peer.node.create_publisher(Bool, f"{ns}/estop", qos.COMMAND)
    peer.wait(lambda: peer.got["joints"] and peer.chunk.get_subscription_count() > 0
              and peer.estop.get_subscription_count() > 0 and status(peer) is not None, "the graph", node)
    return peer, sim, node


def arm(msg: JointState) -> np.ndarray:
    index = {name: i for i, name in enumerate(msg.name)}
    return np.array([msg.position[index[j]] for j in ARM])


def status(peer) -> dict | None:
    """The controller's latest diagnostics: message and values."""
    for msg in reversed(peer.got["diagnostics"]):
        s = next((s for s in msg.status if s.name.startswith("trajectory_controller")), None)
        if s is not None:
            return {"message": s.message, **{kv.key: kv.value for kv in s.values}}
    return None


def count(peer, key: str) -> int:
    s = status(peer)
    return int(s.get(key, 0)) if s else 0


def chunk(latest: JointState, target, speed=0.6, gripper=0.04, **overrides) -> JointTrajectory:
    """A chunk as ik_retarget makes it from the ``latest`` joint state (its stamp, its positions as the start),
    towards ``target`` at ``speed`` rad/s per joint."""
    q0 = arm(latest)
    step = np.clip(np.asarray(target) - q0, -speed * DT, speed * DT)
    points = []
    for k in range(STEPS):
        q = q0 + np.clip(np.asarray(target) - q0, -np.abs(step) * (k + 1), np.abs(step) * (k + 1))
        ns = round((k + 1) * DT * 1e9)
        points.append(JointTrajectoryPoint(positions=[*q.tolist(), gripper],
                                           time_from_start=Duration(sec=ns // 10**9, nanosec=ns % 10**9)))
    msg = JointTrajectory(joint_names=[*ARM, GRIPPER], points=points)
    msg.header.stamp = latest.header.stamp
    msg.header.frame_id = overrides.get("frame_id", "base_link")
    return msg


def drive(peer, target, condition, what, proc, timeout_s=40.0, **chunk_args):
    """Send chunks towards ``target`` at 10 Hz (a policy's rate) until ``condition()``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        peer.chunk.publish(chunk(peer.got["joints"][-1], target, **chunk_args))
        next_chunk = time.monotonic() + 0.1
        while time.monotonic() < next_chunk:
            peer.executor.spin_once(timeout_sec=0.02)
        if proc.poll() is not None:
            raise AssertionError(f"the controller exited ({proc.returncode}): {proc.stderr.read()}")
    raise AssertionError(f"timed out driving towards {what}; controller status: {status(peer)}")


def near(peer, target, atol):
    return lambda: np.allclose(arm(peer.got["joints"][-1]), target, atol=atol)


def ee_heights(joint_states) -> np.ndarray:
    """The ee's height above the table (base frame z) at each joint state, by pinocchio on the URDF."""
    model = pin.buildModelFromUrdf(os.path.join(os.environ["HUMANEGO_WS"], "urdf", "panda.urdf"))
    data, ee = model.createData(), model.getFrameId("ee")
    heights = []
    for msg in joint_states:
        config = pin.neutral(model)
        config[:7] = arm(msg)
        pin.framesForwardKinematics(model, data, config)
        heights.append(data.oMf[ee].translation[2])
    return np.array(heights)


def settled(peer, n=20, atol=2e-4) -> bool:
    """The last ``n`` joint states agree within ``atol``: the arm stands still."""
    recent = peer.got["joints"][-n:]
    return len(recent) == n and np.ptp([arm(m) for m in recent], axis=0).max() < atol


@pytest.mark.slow
def test_chunks_move_the_arm_and_bad_targets_are_clamped_or_rejected(processes, probe):
    peer, sim, node = start_graph(processes, probe, "-p", f"workspace_min:=[-0.3,-0.75,{TABLE_MARGIN}]")
    got = peer.got

    # A chunk moves the arm towards its target; the commands are single points one period ahead.
    target = HOME + np.array([0.3, 0.2, 0.0, 0.2, 0.0, 0.0, 0.3])
    drive(peer, target, near(peer, target, 0.01), "the first target", node)
    peer.wait(lambda: count(peer, "chunks_accepted") > 0 and status(peer)["message"] == "following",
              "following on /diagnostics", node)
    command = got["commands"][-1]
    assert command.joint_names == ARM and len(command.points) == 1 and len(command.points[0].velocities) == 7
    assert got["gripper"] and got["gripper"][-1].data == pytest.approx(0.04)
    path = peer.wait(lambda: got["path"] and len(got["path"][-1].poses) > 10 and got["path"][-1], "executed path", node)
    assert path.header.frame_id == "base_link"

    # NaN: rejected whole, never followed.
    bad = chunk(got["joints"][-1], target)
    bad.points[3].positions[2] = math.nan
    peer.chunk.publish(bad)
    peer.wait(lambda: count(peer, "rejected_non_finite") == 1, "the NaN chunk's rejection", node)
    # A wrong frame: rejected.
    peer.chunk.publish(chunk(got["joints"][-1], target, frame_id="camera_optical_frame"))
    peer.wait(lambda: count(peer, "rejected_wrong_frame") == 1, "the wrong-frame chunk's rejection", node)

    # Beyond joint 7's limit (it only turns the hand): the command stops at the narrowed limit.
    beyond = target.copy()
    beyond[6] = 3.5
    limit = JOINT7_UPPER - MARGIN
    n = len(got["joints"])
    drive(peer, beyond, lambda: abs(arm(got["joints"][-1])[6] - limit) < 0.005 and settled(peer), "joint 7's limit",
          node, speed=1.0)
    assert max(arm(m)[6] for m in got["joints"][n:]) < limit + 0.003
    peer.wait(lambda: count(peer, "limited_position_limited") > 0, "position limiting on /diagnostics", node)

    # Below the table, beside the objects, gripper pointing down: the ee stops at the workspace box instead.
    above = np.array([-0.9, -0.3, 0.0, -2.5, 0.0, 2.2, -0.115])
    below = np.array([-0.9, 0.59, 0.0, -2.51, 0.0, 3.1, -0.115])  # pinocchio: the ee 4 cm below the table top
    assert ee_heights([JointState(name=ARM, position=below.tolist())])[0] < -0.035
    drive(peer, above, near(peer, above, 0.01), "the start of the descent", node)
    n = len(got["joints"])
    drive(peer, below, lambda: count(peer, "limited_workspace_limited") > 0 and settled(peer), "the table", node)
    heights = ee_heights(got["joints"][n:])
    assert heights.min() > TABLE_MARGIN - 0.003, f"ee {heights.min():.4f} m above the table"
    assert heights[-1] < TABLE_MARGIN + 0.003
    assert count(peer, "rejected_non_finite") == 1
    assert all(np.all(np.isfinite(m.points[0].positions)) for m in got["commands"])


@pytest.mark.slow
def test_stale_chunks_and_estop_decelerate_and_hold(processes, probe):
    peer, sim, node = start_graph(processes, probe, "-p", "chunk_timeout_s:=0.3")
    got = peer.got
    far = HOME + np.array([1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # joint 1 turns the arm over the table

    # Chunks stop coming mid-motion: the arm stops short of the target and holds.
    drive(peer, far, lambda: arm(got["joints"][-1])[0] > HOME[0] + 0.3, "motion", node)
    peer.wait(lambda: count(peer, "hold_stale_chunk") == 1 and settled(peer), "the stale-chunk hold", node)
    assert status(peer)["message"] == "holding: stale_chunk"
    stopped = arm(got["joints"][-1])
    assert stopped[0] < far[0] - 0.3
    commands, joint_states = len(got["commands"]), len(got["joints"])
    peer.wait(lambda: len(got["joints"]) >= joint_states + 50, "half a second of joint states", node)
    assert len(got["commands"]) == commands, "no commands while holding"
    np.testing.assert_allclose(arm(got["joints"][-1]), stopped, atol=1e-3)

    # Fresh chunks resume the motion; the e-stop stops it although chunks keep coming.
    drive(peer, far, lambda: arm(got["joints"][-1])[0] > stopped[0] + 0.2, "resumed motion", node)
    peer.estop.publish(Bool(data=True))
    drive(peer, far, lambda: count(peer, "hold_estop") == 1 and settled(peer, n=50), "the e-stop hold", node)
    assert status(peer)["message"] == "holding: estop"
    held = arm(got["joints"][-1])
    assert held[0] < far[0] - 0.1
    peer.estop.publish(Bool(data=False))
    drive(peer, far, lambda: arm(got["joints"][-1])[0] > held[0] + 0.1, "motion after the release", node)


def test_ros2_control_output_and_the_heartbeat(processes, probe):
    """With the shipped parameter file, towards a joint_trajectory_controller (here this process, which also plays
    the arm's joint_states on the wall clock): commands on <controller>/joint_trajectory, the gripper on a
    forward-command topic, and nothing at all until heartbeats arrive, nor after they stop."""
    ns = f"/trajctl_jtc_{os.getpid()}"
    params = os.path.join(os.environ["HUMANEGO_WS"], "config", "trajectory_controller.yaml")
    node = processes.start(["humanego", "run", "humanego_control", "trajectory_controller", "--ros-args",
                            "--params-file", params,
                            "-r", f"__ns:={ns}", "-p", "output:=ros2_control", "-p", "controller_name:=arm_controller",
                            "-p", "gripper_command_topic:=hand_controller/commands", "-p", "heartbeat_timeout_s:=0.3",
                            "-p", "joint_state_timeout_s:=0.5"])
    peer = probe("jtc_probe", {"commands": (JointTrajectory, f"{ns}/arm_controller/joint_trajectory", qos.COMMAND),
                               "gripper": (Float64MultiArray, f"{ns}/hand_controller/commands", qos.COMMAND),
                               "diagnostics": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    got = peer.got
    chunks = peer.node.create_publisher(JointTrajectory, f"{ns}/joint_chunk", qos.COMMAND)
    heartbeat = peer.node.create_publisher(Header, f"{ns}/heartbeat", qos.COMMAND)
    states = peer.node.create_publisher(JointState, f"{ns}/joint_states", qos.COMMAND)
    position = HOME.copy()
    beating = [False]

    def tick():
        """The arm: at its last command; the operator station: beating while asked to."""
        if got["commands"]:
            position[:] = got["commands"][-1].points[0].positions
        msg = JointState(name=[*ARM, GRIPPER], position=[*position.tolist(), 0.04])
        msg.header.stamp = peer.node.get_clock().now().to_msg()
        states.publish(msg)
        if beating[0]:
            heartbeat.publish(Header(stamp=msg.header.stamp, frame_id="test"))

    peer.node.create_timer(0.02, tick)
    peer.wait(lambda: chunks.get_subscription_count() > 0 and status(peer) is not None, "the controller", node)
    target = HOME + 0.1

    def send_chunks(until, what):
        deadline = time.monotonic() + 30.0
        while not until():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; status {status(peer)}"
            now = JointState(name=ARM, position=position.tolist(),
                             header=Header(stamp=peer.node.get_clock().now().to_msg()))
            chunks.publish(chunk(now, target, gripper=0.01))
            next_chunk = time.monotonic() + 0.1
            while time.monotonic() < next_chunk:
                peer.executor.spin_once(timeout_sec=0.02)

    send_chunks(lambda: status(peer)["message"] == "holding: no_heartbeat", "the missing heartbeat")
    assert not got["commands"] and not got["gripper"]
    assert status(peer)["heartbeats_received"] == "0"  # what the episode runner checks before it starts
    beating[0] = True
    send_chunks(lambda: np.allclose(position, target, atol=1e-3), "the target")
    assert int(status(peer)["heartbeats_received"]) > 0
    assert got["commands"][-1].joint_names == ARM
    assert got["gripper"][-1].data.tolist() == pytest.approx([0.01])
    beating[0] = False
    send_chunks(lambda: status(peer)["message"] == "holding: heartbeat_lost", "the lost heartbeat")


@pytest.mark.parametrize("argument, named", [("output:=gazebo", "'output'"),
                                             ("control_rate_hz:=50.0", "'control_rate_hz'"),
                                             ("workspace_frames:=[ee,wrist]", "wrist")])
def test_bad_parameters_fail_at_start_naming_them(argument, named):
    out = subprocess.run(["humanego", "run", "humanego_control", "trajectory_controller", "--ros-args",
                          "-p", argument], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot start" in out.stderr and named in out.stderr
