"""The ROS side of replaying a recording (an Aria ``.vrs`` + MPS, or a recording folder): what the
``aria_source`` and ``recording_source`` executables share.

Publishes   <stream>/image_raw, <stream>/camera_info (sensor data QoS): ``camera`` for the main camera, and
            ``slam_left``/``slam_right`` when replayed; rectified to a pinhole unless ``rectify`` is false
            (then camera_info carries the ``fisheye624`` model)
            /tf: world -> aria_device at every main-camera frame, from the MPS closed-loop trajectory
            interpolated at the frame time (frames outside the trajectory get none, and are counted)
            /tf_static: aria_device -> every camera's optical frame, from the device calibration
            hand_tracking (humanego_interfaces/HandTracking, reliable): the hands seen at each MPS row, in
            the aria_device frame
            /clock (when publish_clock): the device time of the replay, like ``ros2 bag play --clock``
Services    ~/pause (std_srvs/SetBool): pause (true) or resume; ~/step (std_srvs/Trigger): while paused,
            publish up to and including the next main-camera frame

Stamps are device time (what MPS uses) unless ``stamp:=now`` asks for the ROS time at publication, as a
live driver would. Frames are decoded and rectified by a reader thread ahead of the publishing thread.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import Point, Vector3
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_srvs.srv import SetBool, Trigger
from tf2_msgs.msg import TFMessage

from humanego_core.camera_models import CameraModel
from humanego_core.image_warp import Rectifier
from humanego_core.timeutil import NS_PER_S
from humanego_drivers.camera_topics import CameraTopics
from humanego_drivers.mps import HANDS as HAND_SIDES
from humanego_drivers.mps import HandTracking
from humanego_drivers.replay import FRAME, Event, Pacer, ReplaySource, timeline
from humanego_interfaces.msg import Hand
from humanego_interfaces.msg import HandTracking as HandTrackingMsg
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.parameters import ParameterError, ParamSpec, declare_parameters

PREFETCH = 4  # frames decoded ahead of publication
_END = object()


def output_parameters() -> list[ParamSpec]:
    """How camera images are published: shared by every Aria source (replay and live)."""
    return [
        ParamSpec("rectify", True, "Undistort the fisheye images to a linear pinhole camera (Aria's Fisheye624 "
                  "has no ROS distortion model, so downstream nodes expect rectified images)."),
        ParamSpec("width", 480, "Width (px) of the rectified main-camera image, after rotation.", minimum=16,
                  maximum=4096),
        ParamSpec("height", 480, "Height (px) of the rectified main-camera image, after rotation.", minimum=16,
                  maximum=4096),
        ParamSpec("focal", 0.0, "Focal length (px) of the rectified main camera; 0 = the recorded focal length "
                  "scaled by width / recorded width.", minimum=0.0, maximum=1e5),
        ParamSpec("rotate_cw90", False, "Rotate rectified images 90 degrees clockwise (Aria's sensor is mounted "
                  "sideways; HumanEgo and EgoMimic train on upright images). The optical frames turn with them."),
        ParamSpec("device_frame", "aria_device", "TF frame of the glasses (MPS's device frame)."),
        ParamSpec("stamp", "device", "Message stamps: 'device' = device time of the recording (the time base "
                  "of MPS), 'now' = ROS time at publication.", choices=("device", "now")),
    ]


def replay_parameters() -> list[ParamSpec]:
    return output_parameters() + [
        ParamSpec("playback_rate", 1.0, "Playback speed: 1 = as recorded, 2 = twice as fast, 0 = as fast as "
                  "possible.", minimum=0.0, maximum=1000.0),
        ParamSpec("start_paused", False, "Start paused; frames then advance with the ~/step service (one main-"
                  "camera frame per call) or all at once after ~/pause false."),
        ParamSpec("loop", False, "Start over after the last frame."),
        ParamSpec("exit_when_done", False, "Shut the node down after the last frame (unless looping)."),
        ParamSpec("wait_for_subscribers", 0, "Hold playback until every replayed camera topic has this many "
                  "subscribers (deterministic runs: nothing is published before the consumers are connected).",
                  minimum=0, maximum=100),
        ParamSpec("world_frame", "world", "TF frame of the MPS world (z up)."),
        ParamSpec("publish_clock", False, "Publish /clock with the device time being replayed (needs "
                  "stamp:=device); run the consumers with use_sim_time:=true."),
    ]


class CameraOutput:
    """One camera's publication: its rectifier, the published camera model, topics and CameraInfo."""

    def __init__(self, node: Node, name: str, frame_id: str, camera: CameraModel, p: dict, main: bool):
        if p["rectify"]:
            size = (p["width"], p["height"]) if main else (camera.width, camera.height)
            focal = (p["focal"] or None) if main else None
            self.rectifier = Rectifier(camera, *size, focal=focal, rotate_cw90=p["rotate_cw90"])
            self.camera = self.rectifier.target
        else:
            self.rectifier, self.camera = None, camera
        self.frame_id = frame_id
        self.info = conv.camera_info_from_model(self.camera, 0, frame_id)
        self.topics = CameraTopics(node, frame_id, namespace=name)

    def process(self, image: np.ndarray) -> np.ndarray:
        return image if self.rectifier is None else self.rectifier(image)

    def publish(self, stamp_ns: int, image: np.ndarray) -> None:
        self.topics.publish(stamp_ns, image, self.info)


def check_output_parameters(p: dict) -> None:
    if p["rotate_cw90"] and not p["rectify"]:
        raise ParameterError("parameter 'rotate_cw90' needs rectify:=true (the rotation is part of the rectified "
                             "camera model)")


def _vector3(v) -> Vector3:
    return Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def hand_tracking_msg(hands: HandTracking, row: int, stamp_ns: int, frame_id: str) -> HandTrackingMsg:
    """The hands seen in row ``row`` of MPS hand tracking (unseen hands are left out)."""
    msg = HandTrackingMsg(header=conv.make_header(stamp_ns, frame_id))
    for side in HAND_SIDES:
        if not hands.seen(side)[row]:
            continue
        hand = Hand(side=side, confidence=float(hands.confidence[side][row]),
                    wrist_pose=conv.matrix_to_pose(hands.T_device_wrist[side][row]),
                    landmarks=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in hands.landmarks[side][row]])
        if hands.palm_normal is not None:
            hand.palm_normal = _vector3(hands.palm_normal[side][row])
            hand.wrist_normal = _vector3(hands.wrist_normal[side][row])
        msg.hands.append(hand)
    return msg


class ReplayNode(Node):
    def __init__(self, name: str, parameters: list[ParamSpec], open_source: Callable[[dict], ReplaySource]):
        """``parameters``: everything the node declares, :func:`replay_parameters` and its source's."""
        super().__init__(name)
        p = self.params = declare_parameters(self, parameters)
        check_output_parameters(p)
        if p["publish_clock"] and p["stamp"] != "device":
            raise ParameterError("parameter 'publish_clock' needs stamp:=device (the clock is the device time)")
        self.source = open_source(p)
        self.events = timeline(self.source)
        self.outputs = [CameraOutput(self, s.name, s.frame_id, s.camera, p, main=i == 0)
                        for i, s in enumerate(self.source.streams)]
        self.pub_tf = self.create_publisher(TFMessage, "/tf", qos.TF)
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC)
        self.pub_hands = self.create_publisher(HandTrackingMsg, "hand_tracking", qos.COMMAND) \
            if self.source.hands is not None else None
        self.pub_clock = self.create_publisher(Clock, "/clock", qos.CLOCK) if p["publish_clock"] else None
        self.create_service(SetBool, "~/pause", self.on_pause)
        self.create_service(Trigger, "~/step", self.on_step)
        self.pub_tf_static.publish(TFMessage(transforms=[
            conv.matrix_to_transform_stamped(out.camera.T_device_camera, p["device_frame"], out.frame_id,
                                             self._stamp(self.source.time_range_ns[0]))
            for out in self.outputs]))

        self.counts = {"frames": [0] * len(self.outputs), "hands": 0, "without_pose": 0}
        self._paused = threading.Event()
        if p["start_paused"]:
            self._paused.set()
        self._steps = threading.Semaphore(0)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)
        self._thread.start()
        for note in self.source.notes:
            self.get_logger().warn(note)
        main = self.source.main
        duration = (main.timestamps_ns[-1] - main.timestamps_ns[0]) / NS_PER_S
        cam = self.outputs[0].camera
        self.get_logger().info(
            f"replaying {self.source.description}: {main.num_frames} frames over {duration:.2f} s"
            f"{' + ' + str(len(self.outputs) - 1) + ' more cameras' if len(self.outputs) > 1 else ''}, "
            f"{'trajectory' if self.source.trajectory is not None else 'no trajectory'}, "
            f"{'hand tracking' if self.source.hands is not None else 'no hand tracking'}; publishing "
            f"{cam.width}x{cam.height} {'rectified' if p['rectify'] else 'as recorded'} at rate "
            f"{p['playback_rate'] or 'max'}")

    # ----- services -----
    def on_pause(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data:
            self._paused.set()
        else:
            self._paused.clear()
        self._wake.set()
        response.success, response.message = True, "paused" if request.data else "playing"
        return response

    def on_step(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if not self._paused.is_set():
            response.success, response.message = False, "not paused: call ~/pause with data: true first"
            return response
        self._steps.release()
        self._wake.set()
        response.success, response.message = True, f"{self.counts['frames'][0]} frames published before this step"
        return response

    # ----- threads -----
    def _produce(self, events: list[Event], out: queue.Queue, stop: threading.Event) -> None:
        """Reader thread: decode and rectify frames in timeline order, ahead of publication."""
        try:
            iterators = [stream.frames(0) for stream in self.source.streams]
            for event in events:
                if stop.is_set():
                    return
                item = self.outputs[event.stream].process(next(iterators[event.stream])) if event.kind == FRAME \
                    else None
                while not stop.is_set():
                    try:
                        out.put((event, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
            out.put((_END, None))
        except Exception as exc:  # handed to the publishing thread, which reports and stops
            out.put((exc, traceback.format_exc()))

    def _run(self) -> None:
        p = self.params
        try:
            self._wait_for_subscribers()
            while not self._stop.is_set():
                self._play_once()
                if not p["loop"]:
                    break
            if self._stop.is_set():
                return
            self._log_summary()
            if p["exit_when_done"]:
                os.kill(os.getpid(), signal.SIGINT)
        except Exception:
            if self.context.ok():
                self.get_logger().fatal(f"replay failed, shutting down:\n{traceback.format_exc()}")
                os.kill(os.getpid(), signal.SIGINT)

    def _wait_for_subscribers(self) -> None:
        wanted = self.params["wait_for_subscribers"]
        if wanted == 0:
            return
        self.get_logger().info(f"waiting for {wanted} subscriber(s) of every image topic")
        for out in self.outputs:
            out.topics.wait_for_subscribers(wanted, self._stop)

    def _play_once(self) -> None:
        pacer = Pacer(self.params["playback_rate"])
        frames: queue.Queue = queue.Queue(maxsize=PREFETCH)
        stop_reader = threading.Event()
        reader = threading.Thread(target=self._produce, args=(self.events, frames, stop_reader), name="reader",
                                  daemon=True)
        reader.start()
        self._started = time.monotonic()
        try:
            while not self._stop.is_set():
                event, item = frames.get()
                if event is _END:
                    return
                if isinstance(event, Exception):
                    raise RuntimeError(f"reading {self.source.description} failed:\n{item}") from event
                if event.kind == FRAME and event.stream == 0 and not self._wait_while_paused(pacer):
                    return
                delay = pacer.delay(event.t_ns, time.monotonic())
                if delay > 0 and self._stop.wait(delay):
                    return
                self._publish(event, item)
        finally:
            stop_reader.set()
            reader.join(timeout=5)

    def _wait_while_paused(self, pacer: Pacer) -> bool:
        """Block while paused unless a step was asked for; False when the node stops."""
        if not self._paused.is_set():
            return True
        while not self._stop.is_set():
            if self._steps.acquire(blocking=False):
                pacer.restart()
                return True
            if not self._paused.is_set():
                pacer.restart()
                return True
            self._wake.wait(0.1)
            self._wake.clear()
        return False

    def _stamp(self, t_ns: int) -> int:
        return t_ns if self.params["stamp"] == "device" else self.get_clock().now().nanoseconds

    def _publish(self, event: Event, image) -> None:
        stamp = self._stamp(event.t_ns)
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=conv.ns_to_time(event.t_ns)))
        if event.kind != FRAME:
            hands = hand_tracking_msg(self.source.hands, event.index, stamp, self.params["device_frame"])
            self.pub_hands.publish(hands)
            self.counts["hands"] += 1
            return
        if event.stream == 0:
            self._publish_device_pose(event.t_ns, stamp)
        self.outputs[event.stream].publish(stamp, image)
        self.counts["frames"][event.stream] += 1

    def _publish_device_pose(self, t_ns: int, stamp: int) -> None:
        trajectory = self.source.trajectory
        if trajectory is None:
            return
        if not trajectory.contains(t_ns):
            self.counts["without_pose"] += 1
            return
        T = trajectory.at(t_ns)
        self.pub_tf.publish(TFMessage(transforms=[conv.matrix_to_transform_stamped(
            T, self.params["world_frame"], self.params["device_frame"], stamp)]))

    def _log_summary(self) -> None:
        seconds = time.monotonic() - self._started
        frames = self.counts["frames"]
        streams = ", ".join(f"{n} {s.name}" for n, s in zip(frames, self.source.streams, strict=True))
        extra = f", {self.counts['hands']} hand tracking" if self.pub_hands is not None else ""
        missing = f", {self.counts['without_pose']} frames without a pose" if self.counts["without_pose"] else ""
        self.get_logger().info(f"replay finished: {streams} frames{extra}{missing} in {seconds:.2f} s "
                               f"({frames[0] / max(seconds, 1e-9):.1f} frames/s)")

    def destroy_node(self):
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        return super().destroy_node()
