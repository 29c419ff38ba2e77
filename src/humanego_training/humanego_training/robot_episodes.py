"""Robot demonstrations as EgoMimic's robot domain (DESIGN.md section 5), from two sources:

- a **rosbag2** recorded on the robot (sqlite3 or MCAP, read with the ``rosbags`` library): images of
  ``camera/image_raw`` (or ``camera/image_clean``), ``joint_states``, ``/tf`` + ``/tf_static`` (the
  camera <- robot base transform) and ``camera/camera_info`` (only to clean raw images);
- the simulator's **scripted oracle** (:mod:`humanego_sim.oracle`: real MuJoCo physics, the robot's ego
  camera rendered while it solves the task): ``oracle_episodes``.

Both give a :class:`RobotEpisode` (frames with their times and camera pose, plus the densely sampled
robot state), turned into the HDF5 arrays by :func:`demo_arrays`::

    obs/front_img_1        (T, H, W, 3) uint8  the camera image (cleaned: arm removed, virtual gripper drawn,
                                              the view the policy gets online, see humanego_perception.robot_view)
    obs/ee_pose            (T, 3)              ee position in the camera optical frame at t
    obs/joint_positions    (T, J)              arm joints then the gripper joint (opening per finger, m);
                                              J = arm joints + 1 (EgoMimic's 7 is its 6-joint arm + gripper)
    actions_xyz_act        (T, 100, 3)         ee positions at t + k/fps, k = 1..100, in the camera at t
    actions_joints_act     (T, 100, J)         joint positions at the same times

Future times past the episode's last state repeat the last state (as the human export repeats its last
frame). The file's data attributes add ``joint_names`` (JSON) and ``fps``.

Command line: ``humanego run humanego_training robot_episodes {oracle,bag} ... --out robot.hdf5``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.geometry import invert, transform_from_pos_quat, transform_points
from humanego_core.timeutil import NS_PER_S
from humanego_core.transform_tree import TransformLookupError, TransformTree
from humanego_training import egomimic

FPS = 30.0
ACTION_HORIZON = egomimic.ACTION_HORIZON


class BagError(ValueError):
    """A bag that cannot give a robot demo; the message names the bag and the topic or frame."""


@dataclass
class RobotEpisode:
    """One robot demonstration: camera frames and the robot's state sampled densely in time."""

    source: str
    joint_names: list[str]          # arm joints, then the gripper joint
    frame_times: np.ndarray         # (T,) s, increasing
    images: np.ndarray              # (T, H, W, 3) uint8 RGB
    T_camera_base: np.ndarray       # (T, 4, 4) camera optical frame <- robot base, at each frame
    state_times: np.ndarray         # (M,) s, increasing, covering the frame times
    ee_in_base: np.ndarray          # (M, 3) ee position in the robot base frame
    joints: np.ndarray              # (M, J) joint positions (gripper: opening per finger, m)
    dropped: Counter = field(default_factory=Counter)  # frames left out, by reason

    def __post_init__(self):
        T, M = len(self.frame_times), len(self.state_times)
        if T == 0:
            raise ValueError(f"{self.source}: no frames")
        shapes = {"images": (self.images.shape[0], self.images.ndim, self.images.shape[-1]),
                  "T_camera_base": self.T_camera_base.shape, "ee_in_base": self.ee_in_base.shape,
                  "joints": self.joints.shape}
        expected = {"images": (T, 4, 3), "T_camera_base": (T, 4, 4), "ee_in_base": (M, 3),
                    "joints": (M, len(self.joint_names))}
        wrong = [f"{k} {shapes[k]} (expected {expected[k]})" for k in shapes if shapes[k] != expected[k]]
        if wrong:
            raise ValueError(f"{self.source}: inconsistent episode arrays: {', '.join(wrong)}")
        if M < 2 or np.any(np.diff(self.state_times) <= 0) or np.any(np.diff(self.frame_times) <= 0):
            raise ValueError(f"{self.source}: state and frame times must increase strictly (and >= 2 states)")
        if self.frame_times[0] < self.state_times[0] or self.frame_times[-1] > self.state_times[-1]:
            raise ValueError(f"{self.source}: frames at {self.frame_times[0]:.3f}..{self.frame_times[-1]:.3f} s lie "
                             f"outside the states at {self.state_times[0]:.3f}..{self.state_times[-1]:.3f} s")


def _sample(times: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` (M, D) at ``query`` (any shape), held constant past the ends."""
    flat = query.reshape(-1)
    out = np.stack([np.interp(flat, times, values[:, d]) for d in range(values.shape[1])], axis=-1)
    return out.reshape(*query.shape, values.shape[1])


def demo_arrays(episode: RobotEpisode, horizon: int = ACTION_HORIZON, fps: float = FPS) -> dict[str, np.ndarray]:
    """The EgoMimic robot-domain arrays of one episode (module docstring)."""
    if horizon < 1 or fps <= 0:
        raise ValueError(f"horizon must be >= 1 and fps > 0, got {horizon} and {fps}")
    t = episode.frame_times
    future = t[:, None] + np.arange(1, horizon + 1)[None, :] / fps           # (T, horizon)
    ee_now = _sample(episode.state_times, episode.ee_in_base, t)              # (T, 3)
    ee_future = _sample(episode.state_times, episode.ee_in_base, future)      # (T, horizon, 3)
    T_cb = episode.T_camera_base
    return {
        "front_img_1": episode.images,
        "ee_pose": transform_points(T_cb, ee_now[:, None, :])[:, 0].astype(np.float32),
        "joint_positions": _sample(episode.state_times, episode.joints, t).astype(np.float32),
        "actions_xyz_act": transform_points(T_cb, ee_future).astype(np.float32),
        "actions_joints_act": _sample(episode.state_times, episode.joints, future).astype(np.float32),
    }


def write(episodes: Iterable[RobotEpisode], out: Path, valid_fraction: float = 0.1, seed: int = 0,
          horizon: int = ACTION_HORIZON, fps: float = FPS, progress=None) -> dict:
    """Write the robot-domain HDF5 file ``out`` (atomically); returns egomimic.write_demos' summary."""
    joint_names: list[str] = []

    def demos():
        for episode in episodes:
            if joint_names and episode.joint_names != joint_names:
                raise ValueError(f"{episode.source}: joints {episode.joint_names} differ from the other episodes' "
                                 f"{joint_names}: one file holds one robot")
            joint_names[:] = episode.joint_names
            yield episode.source, demo_arrays(episode, horizon, fps)

    summary = egomimic.write_demos(out, demos(), "robot", valid_fraction, seed, progress,
                                   attrs={"joint_names": joint_names, "fps": fps})
    return summary


# ----------------------------------------------------------------------------------------------------
class CleanView:
    """The clean_view node's processing (arm masked from the URDF and inpainted, virtual gripper drawn) for
    recorded frames: so robot demos show what the policy sees online."""

    def __init__(self, urdf_path: str | Path, views_config: str | Path | None = None):
        from humanego_perception.robot_view import RobotCleanView
        from humanego_perception.views import load_views_config

        self.view = RobotCleanView.from_config(urdf_path, load_views_config(views_config))

    def __call__(self, image: np.ndarray, camera: CameraModel, T_camera_base: np.ndarray,
                 q: dict[str, float]) -> np.ndarray:
        return self.view.process(image, camera, T_camera_base, q)[0]


# ----------------------------------------------------------------------------------------------------
def oracle_episodes(task: str = "serve_bread", robot: str = "panda", seeds: Iterable[int] = (0,),
                    width: int = 160, height: int = 120, fps: float = FPS, clean: bool = True,
                    views_config: str | Path | None = None, failures: list | None = None) -> Iterator[RobotEpisode]:
    """Robot demos of ``task`` by the scripted oracle, one per seed that succeeds.

    The ego camera is rendered at ``fps`` (at the first control step at or after each tick, its sim time is
    the frame's time) and the state at every control step (50 Hz). Failed episodes are left out and their
    :class:`~humanego_sim.oracle.EpisodeResult` appended to ``failures``.
    """
    from humanego_sim.oracle import OracleController, run_episode
    from humanego_sim.robot_sim import EGO_CAMERA
    from humanego_sim.tasks import load_task
    from humanego_sim.world import World, robot_urdf

    world = World(load_task(task), robot=robot)
    try:
        controller = OracleController.for_world(world)
        info = world.robot
        joint_names = [*info.arm_joints, info.finger_joints[0]]
        cleaner = CleanView(robot_urdf(robot), views_config) if clean else None
        K = world.camera_matrix(EGO_CAMERA, width, height)
        camera = CameraModel(LINEAR, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], width, height)
        for seed in seeds:
            states, frames = [], []

            def record(w: World, states=states, frames=frames) -> None:
                w.forward()  # body poses of the new joint positions (mj_step leaves those of the step before)
                q = np.r_[w.arm_positions(), w.gripper_opening()]
                T_world_base = w.body_pose("base_link")
                ee = transform_points(invert(T_world_base), w.body_pose("ee")[:3, 3][None])[0]
                time = float(w.data.time)
                states.append((time, ee, q))
                if time >= len(frames) / fps:
                    T_camera_base = invert(w.camera_pose(EGO_CAMERA)) @ T_world_base
                    image = w.render(EGO_CAMERA, width, height)
                    if cleaner is not None:
                        image = cleaner(image, camera, T_camera_base, dict(zip(joint_names, q, strict=True)))
                    frames.append((time, image, T_camera_base))

            result = run_episode(world, controller, seed, on_step=record)
            if not result.success:
                if failures is not None:
                    failures.append(result)
                continue
            yield RobotEpisode(
                source=f"oracle:{task}/{robot}/seed{seed}", joint_names=joint_names,
                frame_times=np.array([f[0] for f in frames]), images=np.stack([f[1] for f in frames]),
                T_camera_base=np.stack([f[2] for f in frames]), state_times=np.array([s[0] for s in states]),
                ee_in_base=np.array([s[1] for s in states]), joints=np.array([s[2] for s in states]))
    finally:
        world.close()


# ----------------------------------------------------------------------------------------------------
def _deserialize(typestore, raw: bytes, msgtype: str):
    """rosbags' CDR decoding, tolerant of the alignment padding rclpy leaves after an empty trailing float64
    array (e.g. JointState.effort): rosbags' size check rejects such messages although every field decoded."""
    from rosbags.serde import SerdeError

    try:
        return typestore.deserialize_cdr(raw, msgtype)
    except SerdeError as exc:
        if "size mismatch" not in str(exc):
            raise
        msgdef = typestore.get_msgdef(msgtype)
        decode = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
        message, pos = decode(memoryview(raw)[4:], 0, msgdef.cls, typestore)
        if len(raw) - 4 - pos > 8:  # more than alignment padding left over: really malformed
            raise
        return message


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * NS_PER_S + int(header.stamp.nanosec)


def _image_rgb(msg, where: str) -> np.ndarray:
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}
    if msg.encoding not in channels:
        raise BagError(f"{where}: image encoding {msg.encoding!r} is not supported (rgb8, bgr8, rgba8, bgra8)")
    c = channels[msg.encoding]
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if msg.step < msg.width * c or data.size != msg.step * msg.height:
        raise BagError(f"{where}: {data.size} bytes do not fit {msg.height} rows of step {msg.step} "
                       f"({msg.width} px x {c})")
    image = data.reshape(msg.height, msg.step)[:, :msg.width * c].reshape(msg.height, msg.width, c)
    if msg.encoding.startswith("bgr"):
        image = image[..., [2, 1, 0]]
    return np.ascontiguousarray(image[..., :3])


def _covered(stamps: np.ndarray, stamp: int, max_gap: float) -> bool:
    """Whether ``stamp`` lies between two of the sorted ``stamps`` at most ``max_gap`` from each (or on one)."""
    i = int(np.searchsorted(stamps, stamp))  # stamps[i - 1] < stamp <= stamps[i]
    if i == len(stamps):
        return False
    return bool(stamps[i] == stamp or (i > 0 and stamp - stamps[i - 1] <= max_gap and stamps[i] - stamp <= max_gap))


def _topic(namespace: str, name: str) -> str:
    return name if name.startswith("/") else f"/{namespace.strip('/')}/{name}".replace("//", "/")


def bag_episode(bag: str | Path, robot: str | Path = "panda", namespace: str = "/",
                image_topic: str = "camera/image_raw", camera_info_topic: str = "camera/camera_info",
                joint_topic: str = "joint_states", fps: float = FPS, clean: bool = False,
                views_config: str | Path | None = None, max_state_gap_s: float = 0.1) -> RobotEpisode:
    """A robot demo from a rosbag2 recorded on the robot (one bag = one demo).

    Frames: the images of ``image_topic`` thinned to ``fps`` (by stamp). State: the arm and gripper joints
    of ``joint_topic`` (joint roles from the robot's URDF, :class:`humanego_core.kinematics.RobotKinematics`),
    the ee position by forward kinematics of that URDF; camera <- base from ``/tf`` + ``/tf_static`` at
    each frame's stamp (frame ids from the image header and the URDF's root link). ``clean``: apply the
    clean_view processing to raw images (needs ``camera_info_topic``). Frames without a joint state within
    ``max_state_gap_s`` on both sides, or without the camera transform, are dropped and counted
    (``RobotEpisode.dropped``); a bag without usable frames raises :class:`BagError`.
    """
    from rosbags.highlevel import AnyReader

    from humanego_core.kinematics import RobotKinematics

    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag {bag} not found")
    kin = RobotKinematics.load(robot)
    joint_names = [*kin.arm_joint_names, kin.gripper_joint_name]
    topics = {"image": _topic(namespace, image_topic), "info": _topic(namespace, camera_info_topic),
              "joints": _topic(namespace, joint_topic)}
    tree = TransformTree(buffer_duration_ns=2**62)
    images, state_ns, states, info, bad = [], [], [], None, Counter()
    with AnyReader([bag]) as reader:
        present = {c.topic for c in reader.connections}
        needed = [topics["image"], topics["joints"]] + ([topics["info"]] if clean else [])
        missing = [t for t in needed if t not in present]
        if missing:
            raise BagError(f"bag {bag}: no topic {', '.join(missing)} (topics: {', '.join(sorted(present))})")
        wanted = [c for c in reader.connections if c.topic in {*topics.values(), "/tf", "/tf_static"}]
        for connection, _, raw in reader.messages(connections=wanted):
            msg = _deserialize(reader.typestore, raw, connection.msgtype)
            if connection.topic in ("/tf", "/tf_static"):
                for t in msg.transforms:
                    r, p = t.transform.rotation, t.transform.translation
                    T = transform_from_pos_quat([p.x, p.y, p.z], [r.x, r.y, r.z, r.w])
                    tree.set(t.header.frame_id, t.child_frame_id, T, _stamp_ns(t.header),
                             static=connection.topic == "/tf_static")
            elif connection.topic == topics["joints"]:
                index = {name: i for i, name in enumerate(msg.name)}
                if any(name not in index for name in joint_names):
                    continue  # another publisher's subset (e.g. a separate gripper driver) is not a full state
                q = np.array([msg.position[index[name]] for name in joint_names], float)
                if not np.all(np.isfinite(q)):
                    bad["joint_state_not_finite"] += 1
                    continue
                state_ns.append(_stamp_ns(msg.header))
                states.append(q)
            elif connection.topic == topics["info"]:
                info = info or msg
            else:
                images.append((_stamp_ns(msg.header), msg))
    if len(states) < 2:
        raise BagError(f"bag {bag}: {len(states)} joint states on {topics['joints']} with all of "
                       f"{', '.join(joint_names)}; need at least 2")
    order = np.argsort(state_ns, kind="stable")
    state_ns = np.asarray(state_ns)[order]
    keep = np.r_[True, np.diff(state_ns) > 0]
    state_ns, states = state_ns[keep], np.asarray(states)[order][keep]
    t0 = int(state_ns[0])
    ee = np.array([kin.fk(q[:-1])[:3, 3] for q in states])
    camera, cleaner = None, None
    if clean:
        from humanego_ros.conversions import camera_model_from_info

        camera = camera_model_from_info(info)
        cleaner = CleanView(kin.urdf_path, views_config)
    frames, dropped, next_ns = [], bad, None
    period_ns = NS_PER_S / fps
    for stamp, msg in sorted(images, key=lambda item: item[0]):
        if next_ns is not None and stamp < next_ns:
            continue
        if not _covered(state_ns, stamp, max_state_gap_s * NS_PER_S):
            dropped["no_joint_state"] += 1
            continue
        try:
            T_camera_base = tree.lookup(msg.header.frame_id, kin.base_frame, stamp)
        except TransformLookupError:
            dropped["no_camera_transform"] += 1
            continue
        image = _image_rgb(msg, f"bag {bag}, {topics['image']}")
        if cleaner is not None:
            if (image.shape[1], image.shape[0]) != (camera.width, camera.height):
                raise BagError(f"bag {bag}: images of {image.shape[1]}x{image.shape[0]} but camera_info says "
                               f"{camera.width}x{camera.height}")
            q = _sample((state_ns - t0) / NS_PER_S, states, np.array([(stamp - t0) / NS_PER_S]))[0]
            image = cleaner(image, camera, T_camera_base, dict(zip(joint_names, q, strict=True)))
        frames.append(((stamp - t0) / NS_PER_S, image, T_camera_base))
        next_ns = stamp + 0.75 * period_ns  # a camera's jitter tolerated, every other frame of twice the rate skipped
    if not frames:
        raise BagError(f"bag {bag}: none of {len(images)} images on {topics['image']} has a joint state and the "
                       f"camera transform {kin.base_frame} -> camera ({dict(dropped)})")
    return RobotEpisode(source=str(bag), joint_names=joint_names, frame_times=np.array([f[0] for f in frames]),
                        images=np.stack([f[1] for f in frames]), T_camera_base=np.stack([f[2] for f in frames]),
                        state_times=(state_ns - t0) / NS_PER_S, ee_in_base=ee, joints=states, dropped=dropped)


# ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(
        prog="humanego run humanego_training robot_episodes",
        description="Write robot demonstrations as the robot domain of EgoMimic's HDF5 (for co-training with the "
                    "human export of `humanego_training preprocess --hdf5`): from the simulator's scripted oracle "
                    "or from rosbag2 recordings made on the robot.")
    sub = parser.add_subparsers(dest="source", required=True)
    oracle = sub.add_parser("oracle", help="demos by the sim's ground-truth oracle (failed seeds are left out)")
    oracle.add_argument("--task", default="serve_bread", help="task (config/tasks/<task>.yaml)")
    oracle.add_argument("--robot", default="panda", choices=["panda", "ur5e"])
    oracle.add_argument("--episodes", type=int, default=10, help="number of seeds tried")
    oracle.add_argument("--first-seed", type=int, default=0)
    oracle.add_argument("--width", type=int, default=160, help="image width (px)")
    oracle.add_argument("--height", type=int, default=120, help="image height (px)")
    bags = sub.add_parser("bag", help="one demo per rosbag2 folder or .mcap/.db3 file")
    bags.add_argument("bags", nargs="+", help="bag folders (rosbag2) recorded on the robot")
    bags.add_argument("--robot", default="panda", help="robot name (panda, ur5e) or URDF path: joint roles and FK")
    bags.add_argument("--namespace", default="/", help="robot namespace of the topics")
    bags.add_argument("--image-topic", default="camera/image_raw",
                      help="camera topic (camera/image_clean when the clean_view node ran during the recording)")
    for p in (oracle, bags):
        p.add_argument("--out", required=True, help="HDF5 file to write")
        p.add_argument("--fps", type=float, default=FPS, help="frame and action rate (Hz)")
        p.add_argument("--horizon", type=int, default=ACTION_HORIZON, help="action chunk length (steps)")
        p.add_argument("--valid-fraction", type=float, default=0.1, help="share of demos in mask/valid")
        p.add_argument("--views-config", help="views configuration of the cleaning (default config/views.yaml)")
    oracle.add_argument("--raw", action="store_true", help="keep the raw camera images (no arm removal)")
    bags.add_argument("--clean", action="store_true",
                      help="remove the arm and draw the virtual gripper on raw images (as the clean_view node)")
    args = parser.parse_args(argv)
    if args.fps <= 0 or args.horizon < 1:
        parser.error("--fps must be > 0 and --horizon >= 1")
    if args.source == "oracle":
        if args.episodes < 1:
            parser.error("--episodes must be >= 1")
        failures: list = []
        seeds = range(args.first_seed, args.first_seed + args.episodes)
        episodes = oracle_episodes(args.task, args.robot, seeds, args.width, args.height, args.fps,
                                   clean=not args.raw, views_config=args.views_config, failures=failures)
        total = args.episodes
    else:
        failures = []
        episodes = (bag_episode(b, args.robot, args.namespace, args.image_topic, fps=args.fps, clean=args.clean,
                                views_config=args.views_config) for b in args.bags)
        total = len(args.bags)
    with tqdm(total=total, unit="demo", file=sys.stderr) as bar:
        def counted():
            for written, episode in enumerate(episodes, 1):
                bar.update(written + len(failures) - bar.n)  # this demo and the failed seeds before it
                if episode.dropped:
                    tqdm.write(f"{episode.source}: dropped frames {dict(episode.dropped)}", file=sys.stderr)
                yield episode

        try:
            summary = write(counted(), Path(args.out), args.valid_fraction, 0, args.horizon, args.fps)
        except BagError as exc:
            parser.exit(1, f"error: {exc}\n")
    print(f"{summary['path']}: {summary['demos']} demos, {summary['samples']} samples "
          f"(train {len(summary['train'])}, valid {len(summary['valid'])})")
    for failure in failures:
        print(f"  oracle seed {failure.seed} failed, left out: {failure.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
