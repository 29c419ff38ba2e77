"""Robot demos as EgoMimic's robot domain: arrays by hand, a tiny rosbag2 written here, the sim oracle."""

import json

import h5py
import numpy as np
import pytest
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import JointState

from humanego_sim.tasks import load_task
from humanego_sim.world import World
from humanego_training import robot_episodes
from humanego_training.robot_episodes import BagError, RobotEpisode, bag_episode, demo_arrays

ARM = [f"joint{i}" for i in range(1, 8)]
GRIPPER = "finger_joint1"
Q0 = np.array([0.0, -0.5, 0.0, -2.2, 0.0, 1.7, 0.8])
Q_RATE = np.array([0.1, 0.05, -0.1, 0.08, 0.2, -0.1, 0.3])  # rad/s: joints move linearly in time
GRIP0, GRIP_RATE = 0.04, -0.02


def pose(rotvec, translation) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = translation
    return T


# --------------------------------------------------------------------------- arrays, by hand
def linear_episode(T_camera_base=None) -> RobotEpisode:
    """ee moving at (1, 2, 0) m/s for 1 s from (0.5, 0, 0.3), one joint + gripper ramping; frames at 10 Hz."""
    state_times = np.linspace(0.0, 1.0, 101)
    ee = np.array([0.5, 0.0, 0.3]) + state_times[:, None] * [1.0, 2.0, 0.0]
    joints = np.stack([state_times * 0.5, 0.04 - 0.04 * state_times], axis=1)
    frame_times = np.array([0.0, 0.1, 0.5, 0.95])
    T = np.eye(4) if T_camera_base is None else T_camera_base
    return RobotEpisode("linear", ["j", "g"], frame_times, np.zeros((4, 6, 8, 3), np.uint8),
                        np.repeat(T[None], 4, axis=0), state_times, ee, joints)


def test_demo_arrays_sample_the_future_at_fps_in_the_camera_at_t():
    T_cb = pose([0.3, -0.2, 1.0], [0.1, -0.2, 0.9])
    arrays = demo_arrays(linear_episode(T_cb), horizon=5, fps=10.0)
    assert arrays["actions_xyz_act"].shape == (4, 5, 3) and arrays["actions_joints_act"].shape == (4, 5, 2)
    # Frame at 0.5 s: ee at 0.5 + k/10 s, k = 1..5, in the camera.
    t = 0.5 + np.arange(1, 6) / 10
    ee_base = np.array([0.5, 0.0, 0.3]) + t[:, None] * [1.0, 2.0, 0.0]
    expected = (T_cb[:3, :3] @ ee_base.T).T + T_cb[:3, 3]
    np.testing.assert_allclose(arrays["actions_xyz_act"][2], expected, atol=1e-6)
    np.testing.assert_allclose(arrays["ee_pose"][2], T_cb[:3, :3] @ [1.0, 1.0, 0.3] + T_cb[:3, 3], atol=1e-6)
    np.testing.assert_allclose(arrays["joint_positions"][1], [0.05, 0.036], atol=1e-6)
    # Frame at 0.95 s: 1.05 s and later lie past the last state (1.0 s), which is repeated.
    np.testing.assert_allclose(arrays["actions_joints_act"][3], [[0.5, 0.0]] * 5, atol=1e-6)
    assert arrays["actions_xyz_act"].dtype == np.float32


def test_episode_refuses_inconsistent_arrays():
    good = linear_episode()
    with pytest.raises(ValueError, match="outside the states"):
        RobotEpisode("x", good.joint_names, good.frame_times + 0.5, good.images, good.T_camera_base,
                     good.state_times, good.ee_in_base, good.joints)
    with pytest.raises(ValueError, match="joints"):
        RobotEpisode("x", ["only_one"], good.frame_times, good.images, good.T_camera_base, good.state_times,
                     good.ee_in_base, good.joints)


def test_write_stores_the_robot_domain(tmp_path):
    out = tmp_path / "robot.hdf5"
    summary = robot_episodes.write([linear_episode(), linear_episode()], out, horizon=5, fps=10.0)
    assert summary["demos"] == 2 and summary["samples"] == 8
    with h5py.File(out) as f:
        assert f["data"].attrs["domain"] == "robot"
        assert json.loads(f["data"].attrs["joint_names"]) == ["j", "g"]
        assert f["data"].attrs["fps"] == 10.0
        demo = f["data/demo_1"]
        assert demo["obs/front_img_1"].shape == (4, 6, 8, 3)
        assert demo["obs/joint_positions"].shape == (4, 2)
        assert demo["actions_joints_act"].shape == (4, 5, 2)
        assert demo["actions_xyz_act"].shape == (4, 5, 3)
    other = linear_episode()
    other.joint_names = ["a", "b"]
    with pytest.raises(ValueError, match="one robot"):
        robot_episodes.write([linear_episode(), other], tmp_path / "mixed.hdf5", horizon=5, fps=10.0)


# --------------------------------------------------------------------------- a tiny rosbag2
T_WORLD_BASE = pose([0.0, 0.0, 0.3], [0.1, -0.05, 0.0])
T_WORLD_LINK = pose([0.0, 0.6, 0.2], [-0.2, 0.1, 0.7])
T_LINK_OPTICAL = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)
BAG_START = 100 * 10**9
W, H = 16, 12


def q_at(t: float) -> np.ndarray:
    return np.r_[Q0 + Q_RATE * t, GRIP0 + GRIP_RATE * t]


def image_at(k: int) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = k, 2 * k, 255 - k
    return image


def write_bag(path, image_times, joint_times, encoding="bgr8", with_tf=True):
    """A rosbag2 (MCAP) like `humanego record` writes: JointState serialized by rclpy (empty effort, which
    rosbags' size check dislikes), the rest by rosbags."""
    store = get_typestore(Stores.ROS2_JAZZY)
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    Image = store.types["sensor_msgs/msg/Image"]
    TFMessage = store.types["tf2_msgs/msg/TFMessage"]
    TransformStamped = store.types["geometry_msgs/msg/TransformStamped"]
    Transform, Vector3 = store.types["geometry_msgs/msg/Transform"], store.types["geometry_msgs/msg/Vector3"]
    Quaternion = store.types["geometry_msgs/msg/Quaternion"]

    def header(ns: int, frame: str):
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame)

    def transform(parent, child, T):
        x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
        return TransformStamped(header=header(BAG_START, parent), child_frame_id=child,
                                transform=Transform(translation=Vector3(x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                                                    rotation=Quaternion(x=x, y=y, z=z, w=w)))

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        tf_static = writer.add_connection("/tf_static", TFMessage.__msgtype__, typestore=store)
        joints = writer.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=store)
        images = writer.add_connection("/camera/image_raw", Image.__msgtype__, typestore=store)
        if with_tf:
            static = TFMessage(transforms=[transform("world", "base_link", T_WORLD_BASE),
                                           transform("world", "camera_link", T_WORLD_LINK),
                                           transform("camera_link", "camera_optical_frame", T_LINK_OPTICAL)])
            writer.write(tf_static, BAG_START, store.serialize_cdr(static, TFMessage.__msgtype__))
        for t in joint_times:
            ns = BAG_START + round(t * 1e9)
            msg = JointState()
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 10**9, ns % 10**9
            q = q_at(t)
            msg.name = [*ARM, GRIPPER, "finger_joint2"]
            msg.position = [*q.tolist(), float(q[-1])]
            msg.velocity = [0.0] * 9
            writer.write(joints, ns, serialize_message(msg))
        for k, t in enumerate(image_times):
            ns = BAG_START + round(t * 1e9)
            rgb = image_at(k)
            data = rgb[..., ::-1] if encoding == "bgr8" else rgb
            msg = Image(header=header(ns, "camera_optical_frame"), height=H, width=W, encoding=encoding,
                        is_bigendian=0, step=W * 3, data=np.ascontiguousarray(data).reshape(-1))
            writer.write(images, ns, store.serialize_cdr(msg, Image.__msgtype__))


@pytest.fixture(scope="module")
def mujoco_panda():
    world = World(load_task("serve_bread"), robot="panda")
    yield world
    world.close()


def ee_in_camera(world: World, q: np.ndarray) -> np.ndarray:
    """The ee position in the camera optical frame by MuJoCo's FK (an independent reference to pinocchio)."""
    world.data.qpos[world.robot.arm_qpos] = q[:7]
    world.data.qpos[world.robot.finger_qpos] = q[7]
    world.forward()
    T_world_optical = T_WORLD_LINK @ T_LINK_OPTICAL
    p_base = np.linalg.inv(world.body_pose("base_link")) @ np.r_[world.body_pose("ee")[:3, 3], 1.0]
    return (np.linalg.inv(T_world_optical) @ T_WORLD_BASE @ p_base)[:3]


def test_bag_episode_gives_frames_state_and_actions(tmp_path, mujoco_panda):
    # Images at 60 Hz (thinned to 30), the first two before any joint state; joints at 100 Hz for 2 s.
    image_times = [-0.04, -0.02] + list(np.arange(0, 120) / 60.0 + 0.001)
    joint_times = np.arange(0, 201) / 100.0
    bag = tmp_path / "demo_bag"
    write_bag(bag, image_times, joint_times)
    episode = bag_episode(bag, "panda")
    assert episode.dropped == {"no_joint_state": 2}
    assert episode.joint_names == [*ARM, GRIPPER]
    assert len(episode.frame_times) == 60
    np.testing.assert_allclose(np.diff(episode.frame_times), 1 / 30, atol=1e-6)
    # bgr8 converted to RGB; every other image of the 60 Hz stream kept.
    np.testing.assert_array_equal(episode.images[1], image_at(2 + 2))
    arrays = demo_arrays(episode, horizon=100, fps=30.0)
    t = episode.frame_times[10]
    np.testing.assert_allclose(arrays["joint_positions"][10], q_at(t), atol=1e-5)
    np.testing.assert_allclose(arrays["actions_joints_act"][10, 4], q_at(t + 5 / 30), atol=1e-5)
    np.testing.assert_allclose(arrays["actions_joints_act"][10, -1], q_at(2.0), atol=1e-5)  # past the end
    np.testing.assert_allclose(arrays["ee_pose"][10], ee_in_camera(mujoco_panda, q_at(t)), atol=1e-4)
    np.testing.assert_allclose(arrays["actions_xyz_act"][10, 29], ee_in_camera(mujoco_panda, q_at(t + 1.0)),
                               atol=1e-4)


def test_bag_without_what_is_needed_is_refused(tmp_path):
    bag = tmp_path / "no_joints"
    write_bag(bag, [0.0, 0.1], [])
    with pytest.raises(BagError, match="0 joint states on /joint_states"):
        bag_episode(bag)
    bag = tmp_path / "no_tf"
    write_bag(bag, [0.0, 0.1], [0.0, 0.05, 0.1], with_tf=False)
    with pytest.raises(BagError, match="no_camera_transform"):
        bag_episode(bag)
    bag = tmp_path / "mono"
    write_bag(bag, [0.05], [0.0, 0.1], encoding="rgb8")
    with pytest.raises(BagError, match="no topic /robot/camera/image_raw"):
        bag_episode(bag, namespace="robot")
    with pytest.raises(FileNotFoundError, match="missing_bag"):
        bag_episode(tmp_path / "missing_bag")


def test_the_command_names_the_bag_and_what_it_lacks_and_writes_nothing(tmp_path, capsys):
    bag = tmp_path / "no_joints"
    write_bag(bag, [0.0, 0.1], [])
    out = tmp_path / "robot.hdf5"
    with pytest.raises(SystemExit) as exit_info:
        robot_episodes.main(["bag", str(bag), "--out", str(out)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"error: bag {bag}" in err and "0 joint states on /joint_states" in err
    assert not out.exists()


# --------------------------------------------------------------------------- the sim oracle
def test_oracle_demo_of_serve_bread(tmp_path):
    failures = []
    episodes = list(robot_episodes.oracle_episodes("serve_bread", "panda", [0], width=64, height=48,
                                                   failures=failures))
    assert not failures and len(episodes) == 1
    episode = episodes[0]
    assert episode.images.shape[1:] == (48, 64, 3)
    np.testing.assert_allclose(np.diff(episode.frame_times), 1 / 30, atol=0.021)  # control steps are 20 ms
    arrays = demo_arrays(episode)
    # The gripper closes on the bread and opens over the plate; the ee goes down to the bread and back up.
    grip = arrays["joint_positions"][:, -1]
    assert grip.max() > 0.03 and grip.min() < 0.03
    depth = arrays["ee_pose"][:, 2]
    assert depth.max() - depth.min() > 0.05
    # The step-k action of frame t is the state k/30 s later: frame t+k when frames fall on the 30 Hz ticks.
    on_tick = np.abs(episode.frame_times * 30 - np.round(episode.frame_times * 30)) < 1e-6
    i = int(np.flatnonzero(on_tick[:-3] & on_tick[3:])[0])
    np.testing.assert_allclose(arrays["actions_xyz_act"][i, 2], arrays["ee_pose"][i + 3], atol=1e-5)
    summary = robot_episodes.write(episodes, tmp_path / "robot.hdf5")
    assert summary["demos"] == 1
