"""`humanego run humanego_sim sim_robot` as a real process, talked to over real DDS from this one.

The node runs as fast as possible with a small camera; everything is waited for by content (a
message, a pose reached, a service answer), never by sleeping a fixed time.
"""

import math
import os
import subprocess

import numpy as np
import pinocchio as pin
import pytest
from builtin_interfaces.msg import Duration
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from humanego_interfaces.msg import TaskState
from humanego_interfaces.srv import ResetEpisode
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_sim.world import intrinsics, load_world_config

ARM = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7"]
WIDTH, HEIGHT = 64, 48


def subscriptions(ns: str) -> dict:
    return {"joints": (JointState, f"{ns}/joint_states", qos.COMMAND),
            "image": (Image, f"{ns}/camera/image_raw", qos.SENSOR),
            "depth": (Image, f"{ns}/camera/depth/image_raw", qos.SENSOR),
            "info": (CameraInfo, f"{ns}/camera/camera_info", qos.SENSOR),
            "tf": (TFMessage, "/tf", qos.TF), "tf_static": (TFMessage, "/tf_static", qos.TF_STATIC),
            "task": (TaskState, f"{ns}/task_state", qos.COMMAND), "clock": (Clock, "/clock", qos.SENSOR)}


@pytest.fixture
def node(processes, probe):
    ns = f"/simtest_{os.getpid()}"
    proc = processes.start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args",
                            "-r", f"__ns:={ns}", "-p", "robot:=panda", "-p", "task:=serve_bread", "-p", "seed:=3",
                            "-p", "real_time_factor:=0.0", "-p", "publish_clock:=true",
                            "-p", "joint_state_rate_hz:=50.0", "-p", "task_state_rate_hz:=20.0",
                            "-p", "camera_rate_hz:=5.0", "-p", f"camera_width:={WIDTH}",
                            "-p", f"camera_height:={HEIGHT}"])
    peer = probe("sim_robot_probe", subscriptions(ns))
    peer.trajectory = peer.node.create_publisher(JointTrajectory, f"{ns}/joint_trajectory", qos.COMMAND)
    peer.reset = peer.node.create_client(ResetEpisode, f"{ns}/reset")
    yield peer, proc, processes


def arm_positions(msg: JointState) -> np.ndarray:
    index = {name: i for i, name in enumerate(msg.name)}
    return np.array([msg.position[index[j]] for j in ARM])


def tf_chain(transforms: dict, frame: str) -> np.ndarray:
    T = np.eye(4)
    while frame != "world":
        parent, T_parent_child = transforms[frame]
        T = T_parent_child @ T
        frame = parent
    return T


def test_sim_robot_node_end_to_end(node, workspace):
    probe, proc, processes = node
    got = probe.got

    # Sensors: joint states, camera image/depth/info, TF, task state and /clock all arrive.
    for key in got:
        probe.wait(lambda key=key: got[key], key, proc)
    joints = got["joints"][-1]
    assert joints.name == ARM + ["finger_joint1", "finger_joint2"]
    image, depth, info = got["image"][-1], got["depth"][-1], got["info"][-1]
    assert (image.encoding, image.width, image.height) == ("rgb8", WIDTH, HEIGHT)
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", WIDTH, HEIGHT)
    assert image.header.frame_id == depth.header.frame_id == info.header.frame_id == "camera_optical_frame"
    rgb, z = conv.image_to_numpy(image), conv.image_to_numpy(depth)
    assert rgb.std() > 10, "the camera image is blank"
    table_z = z[HEIGHT // 2:, WIDTH // 2]
    assert np.all((table_z > 0.3) & (table_z < 2.5)), "depth below the image centre should hit the table"
    camera = load_world_config().ego_camera
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), intrinsics(camera.fovy_deg, WIDTH, HEIGHT))
    info_stamps = {conv.time_to_ns(m.header.stamp) for m in got["info"]}
    assert conv.time_to_ns(image.header.stamp) in info_stamps, "image and camera_info of one frame share a stamp"
    task = got["task"][-1]
    assert (task.task, task.seed, task.object_names) == ("serve_bread", 3, ["bread", "plate"])
    assert conv.time_to_ns(got["clock"][-1].clock) > 0

    # TF: static mount and camera frames, moving links stamped like the joint states they come from.
    static = {t.child_frame_id: (t.header.frame_id, conv.transform_to_matrix(t.transform))
              for m in got["tf_static"] for t in m.transforms}
    assert static["base_link"][0] == "world" and static["camera_optical_frame"][0] == "camera_link"
    np.testing.assert_allclose(static["base_link"][1][:3, 3], load_world_config().robot.position, atol=1e-9)
    T_world_optical = tf_chain(static, "camera_optical_frame")
    assert T_world_optical[2, 2] < -0.3, "the optical z axis looks down at the table"

    # Moving the arm: a JointTrajectory brings the joints (and the TF of the ee) where it says.
    target = np.array([0.4, 0.1, -0.2, -2.2, 0.1, 2.4, 0.5])
    bad = JointTrajectory(joint_names=ARM, points=[JointTrajectoryPoint(
        positions=[math.nan] * 7, time_from_start=Duration(sec=1))])
    good = JointTrajectory(joint_names=ARM, points=[JointTrajectoryPoint(
        positions=target.tolist(), time_from_start=Duration(sec=1))])
    probe.wait(lambda: probe.trajectory.get_subscription_count() > 0, "trajectory subscriber", proc)
    probe.trajectory.publish(bad)
    probe.trajectory.publish(good)
    probe.wait(lambda: any(np.allclose(arm_positions(m), target, atol=5e-3) for m in got["joints"][-5:]),
               "the trajectory's target", proc)
    assert all(np.all(np.isfinite(m.position)) for m in got["joints"])

    # The TF of the links agrees with the URDF's kinematics at the joint positions of the same stamp.
    def pair():
        tf_stamps = {conv.time_to_ns(m.transforms[0].header.stamp): m for m in got["tf"][-50:]}
        return next(((js, tf_stamps[conv.time_to_ns(js.header.stamp)]) for js in got["joints"][-50:]
                     if conv.time_to_ns(js.header.stamp) in tf_stamps), None)

    joint_state, tf = probe.wait(pair, "TF and joint states with equal stamps", proc)
    model = pin.buildModelFromUrdf(str(workspace / "urdf" / "panda.urdf"))
    data = model.createData()
    q = np.zeros(model.nq)
    for name, value in zip(joint_state.name, joint_state.position, strict=True):
        q[model.joints[model.getJointId(name)].idx_q] = value
    pin.framesForwardKinematics(model, data, q)
    T_base_ee = data.oMf[model.getFrameId("ee")].homogeneous
    moving = {t.child_frame_id: (t.header.frame_id, conv.transform_to_matrix(t.transform)) for t in tf.transforms}
    np.testing.assert_allclose(tf_chain({**static, **moving}, "ee"), static["base_link"][1] @ T_base_ee, atol=1e-6)

    # Reset: a seed re-randomises the scene, the same seed gives the same scene, the arm goes home.
    def scene_after_reset(seed):
        response = probe.call(probe.reset, ResetEpisode.Request(seed=seed), proc)
        assert response.success, response.message
        n = len(got["task"])
        state = probe.wait(lambda: next((m for m in got["task"][n:] if m.seed == seed), None), f"seed {seed}", proc)
        return np.array([[p.position.x, p.position.y, p.position.z] for p in state.object_poses])

    first, other, again = scene_after_reset(11), scene_after_reset(12), scene_after_reset(11)
    assert np.linalg.norm(first - other) > 0.01
    np.testing.assert_allclose(first, again, atol=1e-3)
    home = np.array(load_world_config().robot.home["panda"])
    n = len(got["joints"])
    probe.wait(lambda: any(np.allclose(arm_positions(m), home, atol=5e-3) for m in got["joints"][n:]), "home", proc)
    assert not probe.call(probe.reset, ResetEpisode.Request(seed=-1), proc).success

    # The NaN trajectory was rejected with a reason, never applied.
    processes.stop_all()
    assert "joint_trajectory rejected" in proc.stderr.read()


@pytest.mark.parametrize("argument, named", [("robot:=kuka", "'robot'"), ("task:=fold_laundry", "'task'")])
def test_bad_parameters_fail_at_start_naming_the_parameter(argument, named):
    out = subprocess.run(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-p", argument],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "cannot start" in out.stderr and named in out.stderr
