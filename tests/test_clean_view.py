"""`humanego run humanego_perception clean_view` as a real process next to the simulated robot (`sim_robot`),
listened to over DDS from this one: cleaned images and arm masks carry their input's header, and the mask
is the robot as MuJoCo draws it at the joint state of the same stamp; without joint states, frames are
dropped and reported, never published with a guessed mask."""

import os
import subprocess

import mujoco
import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_sim.robot_sim import RobotSim
from humanego_sim.tasks import load_task

ARM = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7"]
TARGET = np.array([0.3, 0.2, 0.0, -2.0, 0.0, 2.2, 0.8])  # gripper 25 cm over the table, clear of the objects
WIDTH, HEIGHT = 320, 240
SEED = 4


def start_graph(processes, probe, *clean_view_args: str):
    ns = f"/cleanview_{os.getpid()}"
    sim = processes.start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}",
                           "-p", "robot:=panda", "-p", "task:=serve_bread", "-p", f"seed:={SEED}",
                           "-p", "real_time_factor:=1.0", "-p", "camera_rate_hz:=5.0", "-p", "depth:=false",
                           "-p", f"camera_width:={WIDTH}", "-p", f"camera_height:={HEIGHT}"])
    node = processes.start(["humanego", "run", "humanego_perception", "clean_view", "--ros-args",
                            "-r", f"__ns:={ns}", "-p", "robot:=panda", "-p", "use_sim_time:=true",
                            *clean_view_args])
    peer = probe("clean_view_probe", {
        "raw": (Image, f"{ns}/camera/image_raw", qos.SENSOR), "clean": (Image, f"{ns}/camera/image_clean", qos.SENSOR),
        "mask": (Image, f"{ns}/camera/arm_mask", qos.SENSOR), "joints": (JointState, f"{ns}/joint_states", qos.COMMAND),
        "diagnostics": (DiagnosticArray, "/diagnostics", qos.COMMAND)})
    peer.trajectory = peer.node.create_publisher(JointTrajectory, f"{ns}/joint_trajectory", qos.COMMAND)
    return peer, sim, node


def stamp(msg) -> int:
    return conv.time_to_ns(msg.header.stamp)


def clean_view_status(msg: DiagnosticArray) -> dict | None:
    status = next((s for s in msg.status if s.name.startswith("clean_view")), None)
    return None if status is None else {"message": status.message, **{kv.key: kv.value for kv in status.values}}


def robot_pixels(joint_state: JointState) -> np.ndarray:
    """MuJoCo's robot label in the ego camera, in the same scene (task and seed) at this joint state."""
    sim = RobotSim(load_task("serve_bread"), "panda", seed=SEED)
    try:
        position = dict(zip(joint_state.name, joint_state.position, strict=True))
        r = sim.robot
        sim.data.qpos[r.arm_qpos] = [position[j] for j in r.arm_joints]
        sim.data.qpos[r.finger_qpos] = [position[j] for j in r.finger_joints]
        mujoco.mj_kinematics(sim.model, sim.data)
        return sim.render(WIDTH, HEIGHT, "labels") == 1
    finally:
        sim.close()


def test_clean_view_masks_the_simulated_arm(processes, probe):
    peer, sim, node = start_graph(processes, probe, "-p", "padding_px:=0")
    got = peer.got
    peer.wait(lambda: got["joints"] and peer.trajectory.get_subscription_count() > 0, "the sim", sim)
    peer.trajectory.publish(JointTrajectory(joint_names=ARM, points=[JointTrajectoryPoint(
        positions=TARGET.tolist(), time_from_start=Duration(sec=1))]))

    def settled():
        return next((stamp(m) for m in got["joints"][-3:]
                     if np.allclose([m.position[m.name.index(j)] for j in ARM], TARGET, atol=2e-3)), None)

    reached = peer.wait(settled, "the arm at its target", sim)

    def outputs():
        """(raw, clean, mask, joint state) of frames after the arm arrived, matched by stamp."""
        raw = {stamp(m): m for m in got["raw"]}
        clean = {stamp(m): m for m in got["clean"]}
        joints = {stamp(m): m for m in got["joints"]}
        matched = [(raw[t], clean[t], m, joints[t]) for m in got["mask"]
                   if (t := stamp(m)) > reached and t in raw and t in clean and t in joints]
        return matched if len(matched) >= 2 else None

    frames = peer.wait(outputs, "cleaned frames of the arm at its target", node)

    for raw, clean, mask, _ in frames:
        assert clean.header == raw.header and mask.header == raw.header
        assert (clean.encoding, clean.width, clean.height) == ("rgb8", WIDTH, HEIGHT)
        assert (mask.encoding, mask.width, mask.height) == ("mono8", WIDTH, HEIGHT)
        assert set(np.unique(conv.image_to_numpy(mask))) <= {0, 255}

    raw, clean, mask, joint_state = frames[-1]
    ours = conv.image_to_numpy(mask) == 255
    truth = robot_pixels(joint_state)
    assert truth.sum() > 1000
    assert (truth & ~ours).sum() <= 0.005 * truth.sum(), "robot pixels left unmasked"
    assert (ours & truth).sum() / (ours | truth).sum() >= 0.95
    # The arm was painted over; what is outside the mask mostly stayed (the virtual gripper is drawn there too).
    before, after = conv.image_to_numpy(raw), conv.image_to_numpy(clean)
    changed = np.any(before != after, axis=-1)
    assert changed[ours].mean() > 0.5
    assert changed[~ours].mean() < 0.05

    def processed_report():
        # (the node's first status, "starting", has no counters yet)
        return next((s for m in got["diagnostics"] if (s := clean_view_status(m)) is not None
                     and int(s.get("frames_processed", 0)) >= 2 and "latency_p50_ms" in s), None)

    report = peer.wait(processed_report, "diagnostics with processed frames", node)
    assert float(report["latency_p99_ms"]) >= float(report["latency_p50_ms"]) > 0


def test_without_joint_states_frames_are_dropped_and_reported(processes, probe):
    peer, sim, node = start_graph(processes, probe, "-r", "joint_states:=silent_joint_states")
    got = peer.got

    def dropped():
        for m in got["diagnostics"]:
            s = clean_view_status(m)
            if s is not None and int(s.get("dropped_stale_joint_state", 0)) >= 2:
                return s
        return None

    status = peer.wait(dropped, "frames dropped for stale joint states", node)
    assert status["message"] == "dropping frames: stale_joint_state" and status["frames_processed"] == "0"
    # The probe's own image subscription may connect after the node's did (Fast DDS opens the large-data
    # connection late), so wait for the camera's images rather than expect them to be there already.
    assert peer.wait(lambda: got["raw"], "the camera's images", sim), "the camera was publishing"
    assert not got["clean"] and not got["mask"]


@pytest.mark.parametrize("argument, named", [("robot:=kuka", "'robot'"), ("padding_px:=-1", "'padding_px'"),
                                             ("urdf:=/nonexistent/robot.urdf", "/nonexistent/robot.urdf")])
def test_bad_parameters_fail_at_start_naming_them(argument, named):
    out = subprocess.run(["humanego", "run", "humanego_perception", "clean_view", "--ros-args", "-p", argument],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot start" in out.stderr and named in out.stderr
