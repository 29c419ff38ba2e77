"""`humanego run humanego_control extrinsics_check` as a real process next to the simulated robot: each image it
publishes on camera/extrinsics_check is the camera image with the robot drawn where TF and the joint states
put it — exactly what ExtrinsicsOverlay draws into that image (same stamp, same joint state)."""

import os

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, JointState

from humanego_control.extrinsics_check import ExtrinsicsOverlay
from humanego_core.kinematics import RobotKinematics
from humanego_core.transform_tree import TransformLookupError
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.tf_listener import TfListener


@pytest.mark.slow
def test_the_node_draws_the_robot_into_the_camera_images(processes, probe):
    ns = f"/extrinsics_{os.getpid()}"
    sim = processes.start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:={ns}",
                           "-p", "robot:=panda", "-p", "real_time_factor:=1.0", "-p", "camera_rate_hz:=5.0",
                           "-p", "depth:=false", "-p", "camera_width:=320", "-p", "camera_height:=240"])
    node = processes.start(["humanego", "run", "humanego_control", "extrinsics_check", "--ros-args",
                            "-r", f"__ns:={ns}", "-p", "use_sim_time:=true", "-p", "max_joint_state_age_s:=0.0"])
    peer = probe("extrinsics_probe", {
        "raw": (Image, f"{ns}/camera/image_raw", qos.SENSOR), "info": (CameraInfo, f"{ns}/camera/camera_info",
                                                                       qos.SENSOR),
        "drawn": (Image, f"{ns}/camera/extrinsics_check", qos.SENSOR),
        "joints": (JointState, f"{ns}/joint_states", qos.COMMAND)})
    tf = TfListener(peer.node)
    got = peer.got

    def matched():
        """(raw, drawn, joint state) of one frame; max_joint_state_age_s 0: the node drew the joint state of the
        image's own stamp (the sim publishes both at the same sim times)."""
        raw = {conv.time_to_ns(m.header.stamp): m for m in got["raw"]}
        joints = {conv.time_to_ns(m.header.stamp): m for m in got["joints"]}
        for drawn in got["drawn"]:
            t = conv.time_to_ns(drawn.header.stamp)
            if t in raw and t in joints and got["info"]:
                return raw[t], drawn, joints[t]
        return None

    raw, drawn, joint_state = peer.wait(matched, "a drawn frame with its image and joint state", node)
    assert drawn.header == raw.header and drawn.encoding == "rgb8"

    def camera_from_base():
        try:
            return [tf.lookup(raw.header.frame_id, "base_link")]  # static: the sim's camera does not move
        except TransformLookupError:
            return None

    [T_camera_base] = peer.wait(camera_from_base, "TF", sim)
    kin = RobotKinematics.load("panda")
    positions = dict(zip(joint_state.name, joint_state.position, strict=True))
    expected = ExtrinsicsOverlay(kin, load_views_config().gripper).draw(
        conv.image_to_numpy(raw), conv.camera_model_from_info(got["info"][-1]), T_camera_base,
        kin.arm_positions(list(positions), list(positions.values())), positions["finger_joint1"])
    ours = conv.image_to_numpy(drawn)
    assert np.any(ours != conv.image_to_numpy(raw))
    assert np.abs(ours.astype(int) - expected).max() <= 1
