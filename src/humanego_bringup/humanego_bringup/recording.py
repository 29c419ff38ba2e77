"""Recording the robot graph as a rosbag2 MCAP bag (``humanego record``), without ``ros2 bag``.

One topic set, :data:`RECORDED_TOPICS` (names relative to the robot namespace unless absolute), is what
``humanego record`` writes and what :func:`ros2_bag_command` prints for machines with ROS 2, so a run
recorded either way holds the same topics: the camera, joint states, interaction tokens, action and joint
chunks, the commands sent to the robot, TF, the sim's task state and the diagnostics.

:class:`BagRecorder` subscribes to each of those topics once a publisher of it appears (the graph is
polled, so topics that start later are picked up), with the QoS ``ros2 bag`` would choose (reliable and
transient-local only when every publisher offers it), and writes the serialized messages unchanged with
the receive time (``rosbags`` writer, rosbag2 format 9, MCAP storage). Message definitions come from the
``.msg`` files of the installed packages, so custom messages (humanego_interfaces) are recorded with their
schema and any rosbag2/MCAP reader can decode the bag.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Nodetype, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from humanego_core import ament_index
from humanego_ros.participant import leave_graph

# What a robot run is made of (DESIGN.md section 3). Relative names live under the robot namespace.
RECORDED_TOPICS: tuple[str, ...] = (
    "camera/image_raw", "camera/camera_info", "camera/image_clean",
    "joint_states",
    "ict", "action_chunk", "joint_chunk",
    "joint_trajectory", "gripper_command", "estop", "heartbeat",
    # trajectory_controller's output to a ros2_control arm (its default controller names)
    "joint_trajectory_controller/joint_trajectory", "gripper_controller/commands",
    "task_state",
    "/tf", "/tf_static",
    "/diagnostics",
)

# Publishers are looked for this often (s), so topics that appear after the recorder started are recorded.
DISCOVERY_PERIOD_S = 0.5
# Subscription queue depth: a burst (e.g. /tf_static from several publishers) is kept whole.
QUEUE_DEPTH = 100
# rmw's "infinite" duration as rosbag2 writes it into metadata.yaml.
INFINITE = QosTime(sec=2147483647, nsec=4294967295)


def resolve_topics(topics: Sequence[str], namespace: str = "") -> list[str]:
    """Absolute topic names: relative ones under ``namespace`` ('' or 'robot1' or '/robot1')."""
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return [t if t.startswith("/") else f"{prefix}/{t}" for t in topics]


def ros2_bag_command(output: str | Path, topics: Sequence[str]) -> list[str]:
    """The ``ros2 bag record`` command recording the same topics as MCAP on a machine with ROS 2."""
    return ["ros2", "bag", "record", "--storage", "mcap", "--output", str(output), *topics]


class MessageDefinitionError(LookupError):
    """A message type whose definition (.msg) is not installed."""


class MessageDefinitions:
    """A rosbags typestore filled from the installed ``share/<pkg>/msg/<Name>.msg`` files, dependencies included."""

    def __init__(self):
        self.typestore = get_typestore(Stores.EMPTY)

    def register(self, msgtype: str) -> None:
        """Register ``pkg/msg/Name`` and every message type it uses."""
        pending = [msgtype]
        while pending:
            name = pending.pop()
            if name in self.typestore.fielddefs:
                continue
            types = get_types_from_msg(self._read(name), name)
            self.typestore.register(types)
            for _, fields in types.values():
                pending.extend(_field_types(fields))

    @staticmethod
    def _read(msgtype: str) -> str:
        package, kind, name = msgtype.split("/")
        try:
            path = ament_index.package_share(package) / kind / f"{name}.msg"
        except ament_index.PackageNotFoundError as exc:
            raise MessageDefinitionError(f"no definition of {msgtype}: {exc}") from None
        if not path.is_file():
            raise MessageDefinitionError(f"no definition of {msgtype}: {path} not found")
        return path.read_text(encoding="utf-8")


def _field_types(fields) -> list[str]:
    """Message type names a rosbags field list refers to (nested, in sequences and arrays)."""
    names = []
    for _, (nodetype, detail) in fields:
        while nodetype in (Nodetype.SEQUENCE, Nodetype.ARRAY):
            nodetype, detail = detail[0]
        if nodetype == Nodetype.NAME:
            names.append(detail)
    return names


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name``."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def subscription_qos(publisher_profiles: Sequence[QoSProfile]) -> QoSProfile:
    """The QoS ``ros2 bag`` picks: what every publisher offers (reliable / transient local), else the weaker."""
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in publisher_profiles)
    latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publisher_profiles)
    return QoSProfile(depth=QUEUE_DEPTH, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def _qos_time(duration) -> QosTime:
    if duration.nanoseconds >= 2**63 - 1:
        return INFINITE
    sec, nsec = divmod(duration.nanoseconds, 1_000_000_000)
    return QosTime(sec=sec, nsec=nsec)


def offered_qos(profile: QoSProfile) -> Qos:
    """A publisher's QoS in the bag's metadata (what ``ros2 bag play`` offers again)."""
    return Qos(history=QosHistory(int(profile.history)), depth=profile.depth,
               reliability=QosReliability(int(profile.reliability)),
               durability=QosDurability(int(profile.durability)), deadline=_qos_time(profile.deadline),
               lifespan=_qos_time(profile.lifespan), liveliness=QosLiveliness(int(profile.liveliness)),
               liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=profile.avoid_ros_namespace_conventions)


class BagRecorder:
    """Records ``topics`` (absolute names) into a new MCAP bag at ``output`` until :meth:`close`.

    ``log``: receives one line per event (topic subscribed, problems); default print.
    """

    def __init__(self, output: str | Path, topics: Sequence[str], log: Callable[[str], None] = print):
        self.output = Path(output)
        if self.output.exists():
            raise FileExistsError(f"{self.output} exists; choose a new --output folder")
        self.topics = list(dict.fromkeys(topics))
        self.log = log
        self.definitions = MessageDefinitions()
        self.counts: dict[str, int] = {}
        self._connections = {}
        self._subscriptions = {}
        self._skipped: set[str] = set()
        self.writer = Writer(self.output, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("humanego_recorder", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.discover()
        self.node.create_timer(DISCOVERY_PERIOD_S, self.discover)

    def discover(self) -> None:
        """Subscribe to every wanted topic that has a publisher now."""
        types = dict(self.node.get_topic_names_and_types())
        for topic in self.topics:
            if topic in self._subscriptions or topic in self._skipped or topic not in types:
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            msgtype = types[topic][0]
            if len(types[topic]) > 1:
                self.log(f"{topic} is published with several types ({', '.join(types[topic])}); recording {msgtype}")
            try:
                self.definitions.register(msgtype)
                msg_class = message_class(msgtype)
            except (MessageDefinitionError, ImportError, AttributeError) as exc:
                self._skipped.add(topic)
                self.log(f"not recording {topic}: {exc}")
                continue
            profiles = [p.qos_profile for p in publishers]
            connection = self.writer.add_connection(topic, msgtype, typestore=self.definitions.typestore,
                                                    offered_qos_profiles=[offered_qos(p) for p in profiles])
            self._connections[topic] = connection
            self.counts[topic] = 0
            self._subscriptions[topic] = self.node.create_subscription(
                msg_class, topic, lambda data, topic=topic: self._write(topic, data), subscription_qos(profiles),
                raw=True)
            self.log(f"recording {topic} ({msgtype})")

    def _write(self, topic: str, data: bytes) -> None:
        self.writer.write(self._connections[topic], self.node.get_clock().now().nanoseconds, data)
        self.counts[topic] += 1

    def spin(self, duration_s: float | None = None, stop: threading.Event | None = None) -> None:
        """Record for ``duration_s`` (None: until ``stop`` is set)."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while (deadline is None or time.monotonic() < deadline) and not (stop is not None and stop.is_set()):
            self.executor.spin_once(timeout_sec=0.05)

    def missing(self) -> list[str]:
        """Wanted topics that never had a publisher (or could not be recorded)."""
        return [t for t in self.topics if t not in self._subscriptions]

    def close(self) -> None:
        """Finish the bag (metadata.yaml is written here), then leave the ROS graph: a teardown that fails or
        hangs (and gets the recorder killed) no longer costs the bag. Nothing writes meanwhile: messages are
        written only while :meth:`spin` runs the executor."""
        self.writer.close()
        if not leave_graph(self.node, self.context):
            self.log("the recorder's DDS teardown did not return; left behind (the bag is complete)")
