"""`humanego record` writes a rosbag2 MCAP bag of the robot's topics that other readers open and decode."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image

from humanego_bringup.recording import RECORDED_TOPICS, resolve_topics
from humanego_core.kinematics import RobotKinematics
from humanego_ros import qos
from humanego_sim.world import load_world_config

pytestmark = pytest.mark.slow

JOINT_STATE_PERIOD_NS = 10_000_000  # the sim's 100 Hz joint_states, in sim time


class OutputLines:
    """Collects a process's stdout lines in a thread, so a test can wait for some of them."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def wait_for(self, texts, timeout_s: float = 90.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            missing = {t for t in texts if not any(t in line for line in self.lines)}
            if not missing:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"never saw {missing} in the output: {''.join(self.lines)}")


def test_record_sim_robot_into_mcap(processes, probe, tmp_path):
    ns = f"rec_{os.getpid()}"
    processes.start(["humanego", "run", "humanego_sim", "sim_robot", "--ros-args", "-r", f"__ns:=/{ns}",
                     "-p", "camera_rate_hz:=10.0", "-p", "depth:=false"])
    processes.start(["humanego", "run", "humanego_control", "heartbeat", "--ros-args", "-r", f"__ns:=/{ns}",
                     "-p", "rate_hz:=20.0"])
    bag = tmp_path / "bag"
    recorder = processes.start(["humanego", "record", "--output", str(bag), "--namespace", ns])
    expected = [f"/{ns}/camera/image_raw", f"/{ns}/camera/camera_info", f"/{ns}/joint_states", f"/{ns}/task_state",
                f"/{ns}/heartbeat", "/tf", "/tf_static"]
    output = OutputLines(recorder)
    output.wait_for({f"recording {topic} " for topic in expected})
    # Record while some camera frames pass (seen by a probe too), then stop as a user would (Ctrl-C).
    p = probe("record_probe", {"image": (Image, f"/{ns}/camera/image_raw", qos.SENSOR)})
    p.wait(lambda: len(p.got["image"]) >= 5, "camera frames", recorder)
    os.killpg(recorder.pid, signal.SIGINT)
    assert recorder.wait(timeout=60) == 0, "".join(output.lines) + recorder.stderr.read()
    output.wait_for({f"bag: {bag}"})

    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap"
    [mcap_file] = [bag / p for p in metadata["relative_file_paths"]]
    assert mcap_file.suffix == ".mcap"

    with AnyReader([bag]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        assert set(expected) <= set(counts), counts
        assert all(counts[topic] > 0 for topic in expected), counts
        assert types[f"/{ns}/task_state"] == "humanego_interfaces/msg/TaskState"
        decoded = {topic: [] for topic in expected}
        for connection, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic in expected]):
            decoded[connection.topic].append(reader.deserialize(raw, connection.msgtype))

    # Reliable 100 Hz joint states: stamps increase on the sim's 10 ms grid.
    stamps = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in decoded[f"/{ns}/joint_states"]])
    assert np.all(np.diff(stamps) > 0) and np.all(np.diff(stamps) % JOINT_STATE_PERIOD_NS == 0)
    assert set(RobotKinematics.load("panda").arm_joint_names) <= set(decoded[f"/{ns}/joint_states"][0].name)
    image = decoded[f"/{ns}/camera/image_raw"][0]
    camera = load_world_config().ego_camera  # the sim camera's size (config/sim/world.yaml)
    assert (image.width, image.height, image.encoding) == (camera.width, camera.height, "rgb8")
    assert len(image.data) == camera.width * camera.height * 3
    static_children = {t.child_frame_id for m in decoded["/tf_static"] for t in m.transforms}
    assert {"base_link", "camera_link", "camera_optical_frame"} <= static_children

    # The custom message's schema travels with the bag: an independent MCAP decoder reads it the same way.
    with open(mcap_file, "rb") as f:
        mcap_states = [msg for _, _, _, msg in make_reader(f, decoder_factories=[DecoderFactory()])
                       .iter_decoded_messages(topics=[f"/{ns}/task_state"])]
    first = decoded[f"/{ns}/task_state"][0]
    assert len(mcap_states) == counts[f"/{ns}/task_state"]
    assert mcap_states[0].object_names == first.object_names == ["bread", "plate"]
    assert mcap_states[0].object_poses[0].position.x == first.object_poses[0].position.x


def test_topic_set_and_ros2_command():
    topics = resolve_topics(RECORDED_TOPICS, "robot1")
    assert "/robot1/joint_states" in topics and "/tf" in topics and "/diagnostics" in topics
    out = subprocess.run(["humanego", "record", "--print-ros2-command", "--output", "run1", "--namespace", "robot1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ros2", "bag", "record", "--storage", "mcap", "--output", "run1", *topics]
    out = subprocess.run(["humanego", "record", "--print-ros2-command", "-o", "x", "--topics", "ict", "/tf"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split()[-2:] == ["/ict", "/tf"]


def test_existing_output_is_refused(tmp_path):
    out = subprocess.run(["humanego", "record", "--output", str(tmp_path), "--duration", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"{tmp_path} exists" in out.stderr
    assert not any(Path(tmp_path).iterdir())
