"""Interaction tokens of the robot's observations (``humanego run humanego_perception state_estimator``).

Wires :mod:`humanego_perception.robot_state` (and, with ``object_backend:=rgbd``,
:mod:`humanego_perception.rgbd_objects`) to ROS. Per camera frame (its camera_info, which every camera source
publishes with the image's stamp), the ICT are built by :func:`humanego_core.ict.build_tokens`, the function
the training data go through, from the gripper pose (joint state nearest to the frame + URDF FK + the
``ee_to_gripper`` alignment of config/views.yaml), its grasp (finger opening), the camera pose from TF and the
object poses, all in the robot's base frame. The token layout and the position statistics are the policy
bundle's (``bundle`` parameter: bundle.json's token_layout, dataset_stats.json).

Subscribes  camera/camera_info (sensor QoS): one observation per message; frame_id = the camera's optical
            frame in TF (the reference frame in camera_frame mode)
            joint_states (best effort depth 100, so reliable publishers match too): arm + gripper joints
            /tf, /tf_static: T_base_camera at the frame's stamp, the task_state frame
            task_state (humanego_interfaces/TaskState; object_backend sim_truth): simulator ground truth
            camera/image_raw, camera/depth/image_raw (object_backend rgbd; depth aligned, 32FC1 m or 16UC1 mm)
Publishes   ict (humanego_interfaces/InteractionTokens, reliable): header.stamp = the camera frame's stamp,
            frame_id = the reference frame (the camera's optical frame, or object/<anchor> in anchor_frame mode)
            /tf: base_frame -> object/<name> for every object at the frame's stamp (so the anchor frame of
            anchor_frame tokens, and the objects, can be looked up downstream and seen in RViz)
            /diagnostics: frames published, dropped by reason, inputs rejected, latency p50/p99

A frame waits until a joint state at or after its stamp has arrived (its nearest is then known; older waiting
frames are dropped as superseded) or for at most ``max_wait_s`` (joint states trail the camera when the
executor falls behind: rclpy takes one message per subscription and wait, and joint states come ten times as
often as frames). It is then built from the joint state nearest to it if within ``max_joint_state_age_s`` and
the objects nearest to it within ``max_object_age_s``, or dropped and counted: stale joint states or objects, a
frame missing from TF (camera or object frame), an object without a pose, objects still being estimated
(rgbd), bad inputs. NaN is never published (the builder and the message conversion refuse it). The rgbd
backend estimates the objects in the executor thread over its first frames (a few seconds of shape fitting,
frames dropped as objects_not_ready meanwhile) and only carries them with the gripper after.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import typing
from collections import Counter, deque
from pathlib import Path

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState
from tf2_msgs.msg import TFMessage

from humanego_core.camera_models import LINEAR
from humanego_core.kinematics import ROBOTS, RobotKinematics, robot_description
from humanego_core.timeutil import seconds_to_ns
from humanego_core.transform_tree import TransformLookupError
from humanego_interfaces.msg import InteractionTokens, TaskState
from humanego_perception.objects import DetectorConfig, make_detector, prompts_from_task
from humanego_perception.rgbd_objects import RgbdObjectEstimator, RgbdObjectsConfig, depth_in_metres
from humanego_perception.robot_mask import RobotSelfMask
from humanego_perception.robot_state import (
    GripperHand,
    MissingObjectError,
    RobotTokenBuilder,
    StaleDataError,
    StampedBuffer,
    load_bundle_tokens,
    object_frame,
)
from humanego_perception.robot_view import JointStateBuffer, StaleJointStateError
from humanego_perception.views import load_views_config
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import OK, WARN, DiagnosticsReporter
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import run_node
from humanego_ros.tf_listener import TfListener
from humanego_sim.tasks import available_tasks, load_task

BACKENDS = ("sim_truth", "rgbd")
LATENCY_WINDOW = 300
MAX_PENDING = 30  # frames waiting for their joint state, at most (memory bound; max_wait_s decides first)
LOG_PERIOD_S = 5.0
IMAGE_BUFFER = 10  # rgb / depth frames kept for pairing by stamp (rgbd backend, while estimating)
JOINT_STATES = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)


def rgbd_parameters() -> list[ParamSpec]:
    """``rgbd.<key>`` for every key of :class:`RgbdObjectsConfig` (its defaults, help and bounds)."""
    hints = typing.get_type_hints(RgbdObjectsConfig)
    specs = []
    for f in dataclasses.fields(RgbdObjectsConfig):
        default = hints[f.name](f.default)
        specs.append(ParamSpec(f"rgbd.{f.name}", default, f.metadata["help"], f.metadata["minimum"],
                               f.metadata["maximum"]))
    return specs


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("bundle", "", "Policy bundle folder: the token layout (bundle.json) and the position statistics "
                  "(dataset_stats.json) the tokens are built with. Required."),
        ParamSpec("robot", "panda", "Robot whose shipped URDF (urdf/<robot>.urdf) is used unless 'urdf' is given.",
                  choices=ROBOTS),
        ParamSpec("urdf", "", "Robot description; empty = the shipped one of 'robot'."),
        ParamSpec("views_config", "", "Views configuration holding gripper.ee_to_gripper, the hand<->gripper "
                  "alignment; empty = config/views.yaml."),
        ParamSpec("base_frame", "base_link", "TF frame of the URDF's root link: the frame everything is gathered in."),
        ParamSpec("ee_frame", "ee", "URDF frame of the end effector (tool centre point)."),
        ParamSpec("task", "serve_bread", "Task (config/tasks/<task>.yaml): its objects, in its order, are the "
                  "object tokens; its goal is the anchor unless anchor_object is set.",
                  choices=tuple(available_tasks())),
        ParamSpec("anchor_object", "", "The anchor object (reference frame of anchor_frame tokens); empty = the "
                  "task's goal, as in preprocessing."),
        ParamSpec("object_backend", "sim_truth", "Where object poses come from: the simulator's task_state, or "
                  "estimated from the RGB-D camera.", choices=BACKENDS),
        ParamSpec("closed_below_fraction", 0.85, "Grasp = 1 while the finger opening is below this fraction of the "
                  "gripper's full opening.", minimum=0.05, maximum=0.99),
        ParamSpec("max_joint_state_age_s", 0.05, "Largest time between a camera frame and the joint state it is "
                  "built with; frames without one as close are dropped.", minimum=0.0, maximum=1.0),
        ParamSpec("max_object_age_s", 0.2, "Largest time between a camera frame and the object poses it is built "
                  "with (sim_truth); frames without them are dropped.", minimum=0.0, maximum=5.0),
        ParamSpec("max_wait_s", 0.5, "Longest a camera frame waits (wall time) for the joint state of its stamp "
                  "before it is decided with what has arrived.", minimum=0.0, maximum=5.0),
        ParamSpec("robot_mask_padding_px", 3, "Dilation (px) of the robot's self-mask removed from object "
                  "detections (rgbd).", minimum=0, maximum=50),
        *rgbd_parameters(),
    ]


class StateEstimatorNode(Node):
    def __init__(self):
        super().__init__("state_estimator")
        p = self.params = declare_parameters(self, parameters())
        if not p["bundle"]:
            raise ValueError("parameter 'bundle' is required: the policy bundle folder whose bundle.json and "
                             "dataset_stats.json the tokens must match")
        ict_config, stats = load_bundle_tokens(Path(p["bundle"]))
        task = load_task(p["task"])
        anchor = p["anchor_object"] or task.goal
        self.builder = RobotTokenBuilder(ict_config, stats, list(task.objects), anchor)
        urdf = Path(p["urdf"]) if p["urdf"] else robot_description(p["robot"])
        views = load_views_config(p["views_config"] or None)
        self.hand = GripperHand(RobotKinematics(urdf, p["ee_frame"]), views.gripper.T_ee_gripper,
                                ict_config.hand_side, p["closed_below_fraction"])
        self.base_frame = p["base_frame"]
        self.max_joint_age_ns = seconds_to_ns(p["max_joint_state_age_s"])
        self.max_object_age_ns = seconds_to_ns(p["max_object_age_s"])
        self.max_wait_s = p["max_wait_s"]

        self.tf = TfListener(self)
        self.joints = JointStateBuffer()
        self.task_states = StampedBuffer("task_state", capacity=50)
        self.pending: deque[tuple[CameraInfo, float]] = deque()
        self.published = 0
        self.dropped: Counter = Counter()
        self.rejected_inputs: Counter = Counter()
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._logged: dict[str, float] = {}

        self.pub_ict = self.create_publisher(InteractionTokens, "ict", qos.COMMAND)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", qos.TF)
        self.diagnostics = DiagnosticsReporter(self, "state estimator")
        self.create_subscription(JointState, "joint_states", self.on_joint_state, JOINT_STATES)
        self.create_subscription(CameraInfo, "camera/camera_info", self.on_camera_info, qos.SENSOR)
        self.rgbd = None
        if p["object_backend"] == "sim_truth":
            self.create_subscription(TaskState, "task_state", self.on_task_state, qos.COMMAND)
        else:
            rgbd_config = RgbdObjectsConfig(**{f.name: p[f"rgbd.{f.name}"]
                                               for f in dataclasses.fields(RgbdObjectsConfig)})
            self.rgbd = RgbdObjectEstimator(prompts_from_task(task), make_detector(DetectorConfig()), rgbd_config)
            self.self_mask = RobotSelfMask(urdf, padding_px=p["robot_mask_padding_px"])
            self.images: dict[str, dict[int, Image]] = {"rgb": {}, "depth": {}}
            self.create_subscription(Image, "camera/image_raw", lambda m: self.on_image("rgb", m), qos.SENSOR)
            self.create_subscription(Image, "camera/depth/image_raw", lambda m: self.on_image("depth", m), qos.SENSOR)
        self.get_logger().info(
            f"tokens {ict_config.max_tokens}x{ict_config.token_dim} ({ict_config.frame_mode}, hand "
            f"{ict_config.hand_side}{', dual' if ict_config.dual_hand else ''}) with the stats of {p['bundle']}; "
            f"objects {', '.join(task.objects)} (anchor {anchor}) from {p['object_backend']}; gripper of {urdf}")

    # ----- inputs -----
    def on_joint_state(self, msg: JointState) -> None:
        try:
            self.joints.add(conv.time_to_ns(msg.header.stamp), msg.name, msg.position)
        except ValueError as exc:
            self._reject_input("joint_states", exc)
            return
        self._settle()

    def on_task_state(self, msg: TaskState) -> None:
        try:
            if len(msg.object_names) != len(msg.object_poses):
                raise ValueError(f"{len(msg.object_names)} object names, {len(msg.object_poses)} poses")
            poses = {name: conv.pose_to_matrix(pose) for name, pose in zip(msg.object_names, msg.object_poses,
                                                                           strict=True)}
        except ValueError as exc:
            self._reject_input("task_state", exc)
            return
        self.task_states.add(conv.time_to_ns(msg.header.stamp), (msg.header.frame_id, poses))

    def on_image(self, kind: str, msg: Image) -> None:
        if self.rgbd.ready:
            return
        frames = self.images[kind]
        frames[conv.time_to_ns(msg.header.stamp)] = msg
        while len(frames) > IMAGE_BUFFER:
            del frames[min(frames)]
        self._settle()

    def on_camera_info(self, msg: CameraInfo) -> None:
        self.pending.append((msg, time.monotonic()))
        self._settle()

    def _ready(self, stamp: int) -> bool:
        """The frame's joint state is known and, while the rgbd backend estimates, its images have arrived."""
        newest = self.joints.newest_ns
        if newest is None or newest < stamp:
            return False
        return self.rgbd is None or self.rgbd.ready or all(stamp in self.images[k] for k in ("rgb", "depth"))

    def _settle(self) -> None:
        """Build the newest frame that is ready (older waiting ones are superseded); decide the frames that
        waited too long with what there is."""
        now = time.monotonic()
        while self.pending and (len(self.pending) > MAX_PENDING or now - self.pending[0][1] > self.max_wait_s):
            self._process(*self.pending.popleft())
        ready = [i for i, (msg, _) in enumerate(self.pending) if self._ready(conv.time_to_ns(msg.header.stamp))]
        if not ready:
            return
        for _ in range(ready[-1]):
            self.pending.popleft()
            self._drop("superseded", "a newer frame was ready first")
        self._process(*self.pending.popleft())

    def _reject_input(self, topic: str, exc: Exception) -> None:
        self.rejected_inputs[topic] += 1
        self._log_now_and_then(topic, self.get_logger().error,
                               f"{topic} rejected ({self.rejected_inputs[topic]} so far): {exc}")

    # ----- one frame -----
    def _process(self, info: CameraInfo, received: float) -> None:
        stamp = conv.time_to_ns(info.header.stamp)
        camera_frame = info.header.frame_id
        try:
            positions, _ = self.joints.nearest(stamp, self.max_joint_age_ns)
        except StaleJointStateError as exc:
            return self._drop("stale_joint_state", str(exc))
        try:
            hand = self.hand.state(positions)
        except ValueError as exc:
            return self._drop("bad_input", str(exc))
        try:
            T_base_camera = self.tf.lookup(self.base_frame, camera_frame, stamp)
            objects = self._objects(stamp, info, T_base_camera, positions, hand)
        except TransformLookupError as exc:
            return self._drop("no_transform", str(exc))
        except StaleDataError as exc:
            return self._drop("stale_objects", str(exc))
        except ValueError as exc:
            return self._drop("bad_input", str(exc))
        if objects is None:
            return self._drop("objects_not_ready", f"estimating {', '.join(self.rgbd.pending)} from the first frames")
        try:
            tokens, T_base_ref = self.builder.build(T_base_camera, [hand], objects)
            msg = conv.tokens_to_msg(tokens.tokens, tokens.mask, tokens.entity_ids, self.builder.config.frame_mode,
                                     stamp, self.builder.reference_frame_id(camera_frame))
        except MissingObjectError as exc:
            return self._drop("missing_object", str(exc))
        except ValueError as exc:
            return self._drop("bad_input", str(exc))
        self.pub_tf.publish(TFMessage(transforms=[
            conv.matrix_to_transform_stamped(T, self.base_frame, object_frame(name), stamp)
            for name, T in objects.items() if name in self.builder.object_names]))
        self.pub_ict.publish(msg)
        self.published += 1
        self.latencies.append(time.monotonic() - received)
        self._report(OK, "publishing interaction tokens")

    def _objects(self, stamp: int, info: CameraInfo, T_base_camera, positions, hand) -> dict | None:
        """Object poses in the base frame at the frame's stamp; None while the rgbd backend still estimates."""
        if self.rgbd is None:
            frame, poses = self.task_states.nearest(stamp, self.max_object_age_ns)
            T_base_frame = self.tf.lookup(self.base_frame, frame, stamp)
            return {name: T_base_frame @ T for name, T in poses.items()}
        if not self.rgbd.ready:
            self._estimate(stamp, info, T_base_camera, positions)
            if not self.rgbd.ready:
                return None
        return dict(self.rgbd.update(hand))

    def _estimate(self, stamp: int, info: CameraInfo, T_base_camera, positions) -> None:
        rgb_msg, depth_msg = (self.images[k].pop(stamp, None) for k in ("rgb", "depth"))
        if rgb_msg is None or depth_msg is None:
            return
        camera = conv.camera_model_from_info(info)
        if camera.model != LINEAR:
            raise ValueError("the rgbd object backend needs rectified (pinhole) images")
        rgb = conv.image_to_numpy(rgb_msg)
        if rgb_msg.encoding == "bgr8":
            rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
        elif rgb_msg.encoding != "rgb8":
            raise ValueError(f"image encoding {rgb_msg.encoding!r}; the rgbd backend takes rgb8 or bgr8")
        depth = depth_in_metres(conv.image_to_numpy(depth_msg), depth_msg.encoding)
        exclude = self.self_mask.mask(camera, np.linalg.inv(T_base_camera), positions)
        done = self.rgbd.add_view(rgb, depth, camera, T_base_camera, exclude)
        for name in done:
            self.get_logger().info(f"{name} estimated at {np.round(self.rgbd.poses[name][:3, 3], 3).tolist()} "
                                   f"(base frame), size {np.round(self.rgbd.sizes[name], 3).tolist()} m, outline "
                                   f"fit {self.rgbd.fit_rms_px[name]:.2f} px rms")

    # ----- reporting -----
    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        self._log_now_and_then(reason, self.get_logger().warn,
                               f"frame dropped ({reason}, {self.dropped[reason]} so far): {detail}")
        self._report(WARN, f"dropping frames: {reason}")

    def _log_now_and_then(self, key: str, log, text: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_PERIOD_S) >= LOG_PERIOD_S:
            self._logged[key] = now
            log(text)

    def _report(self, level, message: str) -> None:
        values = {"frames_published": self.published, "frames_dropped": sum(self.dropped.values())}
        values.update({f"dropped_{reason}": n for reason, n in sorted(self.dropped.items())})
        values.update({f"rejected_{topic}": n for topic, n in sorted(self.rejected_inputs.items())})
        if self.latencies:
            p50, p99 = np.percentile(np.asarray(self.latencies) * 1e3, [50, 99])
            values.update(latency_p50_ms=f"{p50:.2f}", latency_p99_ms=f"{p99:.2f}")
        self.diagnostics.set(level, message, **values)


def main(args=None):
    sys.exit(run_node(StateEstimatorNode, args))
