"""Closed-loop episodes on the real robot graph: ``make demo`` and ``benchmarks/closed_loop.py`` run this.

The graph is started with :class:`humanego_bringup.launcher.RobotGraph` (every node a real process, as
``humanego launch robot``); a probe node in this process watches it. Per seed:

1. e-stop on (the trajectory controller decelerates and holds, dropping every chunk), then the simulator's
   ``reset`` service with the seed (new placement, arm at home);
2. ``policy:=replay``: e-stop off (no chunk moves the arm yet), then the policy node is started for this
   seed's recording (a replayed hand only fits the scene it was recorded in; playback starts when the node's
   first subscriber appears, so after the reset, with the arm free to follow it); learned policies keep
   running;
3. once an ``action_chunk`` stamped after the reset arrived (the policy acts on the new scene), e-stop off
   (learned policies): the episode starts; it ends at the first ``task_state`` with ``success`` or after
   ``timeout_s`` of sim time; then e-stop on again.

What is measured (see :mod:`humanego_bringup.episodes` for the definitions): success and time, the trajectory
controller's safety interventions in the episode (from its cumulative ``/diagnostics`` counters; its
``hold_estop`` entries are this runner's own e-stops and left out), per-stage latency from message stamps, the
controller's own observation -> command latency (sim time) and control period jitter. Optionally a rosbag2
(``humanego record`` in its own process) and an mp4 of the ego camera with the predicted path (ik_retarget's
``viz/predicted_path``, green) and the executed path (``viz/executed_path``, orange) drawn in.
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Bool
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory

from humanego_bringup import episodes
from humanego_bringup.launcher import RobotGraph
from humanego_bringup.recording import RECORDED_TOPICS
from humanego_bringup.robot_graph import launch_args, selected_specs
from humanego_core import ament_index
from humanego_core.transform_tree import TransformLookupError, TransformTree
from humanego_interfaces.msg import ActionChunk, InteractionTokens, TaskState
from humanego_interfaces.srv import ResetEpisode
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.participant import leave_graph

CONTROLLER = "trajectory_controller"
# Counters of the other nodes reported per episode (prefixes of their /diagnostics keys).
OTHER_COUNTERS = {"ik_retarget": ("chunks_rejected", "steps_flagged", "steps_too_fast"),
                  "policy": ("dropped_", "rejected_"), "state_estimator": ("dropped_", "rejected_")}
IMAGE_TOPICS = ("camera/image_raw", "camera/image_clean")
PREDICTED_RGB, EXECUTED_RGB = (40, 230, 40), (255, 150, 0)
# Start-up: a condition the probe waits for that stays false this long gets the probe a new DDS participant
# (GraphProbe.reconnect); a slow start costs one reconnection, a reader that never matched no longer costs the
# whole start-up timeout.
PROBE_RECONNECT_S = 30.0
# The heartbeat node publishes at 10 Hz from its start: a controller that got none this long after reporting
# never will (seen once in 20 closed-loop tests: it held on no_heartbeat through the episode).
HEARTBEAT_WAIT_S = 20.0
# A start-up step still missing this long after the previous one (the probe reconnected once meanwhile) gets the
# graph started again, once (seen: a controller whose /diagnostics and estop no new participant ever matched).
STEP_PATIENCE_S = 2 * PROBE_RECONNECT_S
VIDEO_QUEUE = 90  # camera frames waiting to be drawn; older ones are dropped when the writer falls behind


class GraphError(RuntimeError):
    """The graph did not come up, or a required node died."""


class WaitTimeout(GraphError):
    """What the runner waited for did not happen in time (the graph is still running)."""


class GraphNotReady(WaitTimeout):
    """Running nodes that do not talk to each other (or to the probe) where they should have long ago."""


@dataclass
class RunConfig:
    policy: str = "replay"                 # flow | act | replay
    seeds: Sequence[int] = (0,)
    bundle: Path | None = None             # flow/act: None = the shipped bundle
    recordings: Path | None = None         # replay: folder of preprocessed recordings (metadata.json seed)
    timeout_s: float = 20.0                # sim seconds per episode
    startup_timeout_s: float = 300.0       # wall seconds for the graph to come up (many processes, small machines)
    first_chunk_timeout_s: float = 60.0    # wall seconds from the reset to the policy's first chunk
    namespace: str = ""
    out_dir: Path | None = None            # graph.log, bag/, camera.mp4 go here
    bag: bool = False
    bag_images: bool = False
    video: bool = False
    extra_args: dict[str, str] = field(default_factory=dict)  # more launch arguments (robot:=..., task:=...)
    # Node parameters over config/<node>.yaml and the launch arguments' values, per node name, e.g.
    # {"policy": {"replay_speed": 0.5}, "sim_robot": {"real_time_factor": 0.5}}
    node_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunResult:
    config: RunConfig
    episodes: list[episodes.EpisodeResult]
    latency: dict[str, dict[str, float]]             # per stage (episodes.latency_summary)
    latency_ms: dict[str, dict[str, np.ndarray]]     # the samples
    controller: dict[str, str]                       # the controller's last status values
    statuses: dict[str, dict[str, str]]              # every node's last /diagnostics values
    controller_latency_ms: list[tuple[float, float]]  # per episode: its observation -> command p50, p99 (sim time)
    interventions: dict[str, int]
    other_counts: dict[str, int]
    notes: list[str]

    @property
    def success_rate(self) -> float:
        return episodes.success_rate(self.episodes)

    def to_dict(self) -> dict:
        """Everything but the latency samples, JSON-ready."""
        c = self.config
        return {"policy": c.policy, "node_parameters": c.node_parameters, "seeds": list(c.seeds),
                "bundle": str(c.bundle or ""),
                "recordings": str(c.recordings or ""), "timeout_s": c.timeout_s,
                "episodes": [r.to_dict() for r in self.episodes], "success_rate": self.success_rate,
                "latency": self.latency, "controller": self.controller, "statuses": self.statuses,
                "controller_latency_ms": [list(x) for x in self.controller_latency_ms],
                "interventions": self.interventions, "other_counts": self.other_counts, "notes": self.notes,
                "load_average": list(os.getloadavg()), "cpus": os.cpu_count()}


def node_parameters(assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["policy.replay_speed=0.5", "sim_robot.real_time_factor=0.5"]`` -> parameters per node (values read as
    YAML, as ``-p name:=value`` does: write 3.0 for a float parameter)."""
    out: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        node, dot, name = key.partition(".")
        if not sep or not dot or not node or not name:
            raise ValueError(f"'{item}' is not NODE.NAME=VALUE (e.g. policy.replay_speed=0.5)")
        out.setdefault(node, {})[name] = yaml.safe_load(value)
    return out


# --- the probe ---------------------------------------------------------------------------------------------------
class GraphProbe:
    """A node in its own context, spun in a background thread, that records what the graph publishes."""

    def __init__(self, namespace: str = "", video: bool = False):
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.topic = lambda name: name if name.startswith("/") else f"{ns}/{name}"
        self.lock = threading.Lock()
        self.camera = None
        self.tf_static = TransformTree()
        self.frames: collections.deque | None = collections.deque(maxlen=VIDEO_QUEUE) if video else None
        self.video = video
        self.reconnections = 0
        self.forget_graph()
        self._connect()

    def forget_graph(self) -> None:
        """Drop what the graph has published so far: a graph started again starts its clock again, and its nodes'
        statuses must not pass for the old ones'."""
        with self.lock:
            self.clock = episodes.SimClockMap()
            self.stages = episodes.StageTimes()
            self.task_state: TaskState | None = None
            self.status: dict[str, dict[str, str]] = {}  # node name -> its latest /diagnostics values
            self.status_seen: dict[str, int] = collections.Counter()
            self.chunk_stamps: list[int] = []           # action_chunk stamps, arrival order
            self.joint_chunks = 0
            self.joint_chunk_stamp: int | None = None   # the newest joint_chunk's
            # The latest viz paths: (points (N, 3) in the base frame, stamps (N,) ns)
            self.predicted: tuple[np.ndarray, np.ndarray] | None = None
            self.executed: tuple[np.ndarray, np.ndarray] | None = None
            if self.frames is not None:
                self.frames.clear()

    def _connect(self) -> None:
        """A fresh participant: context, node, subscriptions, publisher, client and the spinning thread."""
        video = self.video
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("closed_loop_probe", context=self.context)
        sub = self.node.create_subscription
        self.clock_subscription = sub(Clock, "/clock", self._on_clock, qos.CLOCK)
        self.stage_subscriptions = {}
        for stage, (topic, _) in episodes.STAGES.items():
            msg_type, profile = {"camera": (Image, qos.SENSOR), "clean_view": (Image, qos.SENSOR),
                                 "ict": (InteractionTokens, qos.COMMAND), "chunk": (ActionChunk, qos.COMMAND),
                                 "joint_chunk": (JointTrajectory, qos.COMMAND)}[stage]
            # raw: only the stamp is read (images are deserialized for the video only, in the main thread)
            self.stage_subscriptions[stage] = sub(msg_type, self.topic(topic),
                                                  lambda data, stage=stage: self._on_stage(stage, data), profile,
                                                  raw=True)
        sub(TaskState, self.topic("task_state"), self._on_task_state, qos.COMMAND)
        sub(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos.COMMAND)
        if video:
            sub(PathMsg, self.topic("viz/predicted_path"), lambda m: self._on_path("predicted", m), qos.COMMAND)
            sub(PathMsg, self.topic("viz/executed_path"), lambda m: self._on_path("executed", m), qos.COMMAND)
            sub(CameraInfo, self.topic("camera/camera_info"), self._on_camera_info, qos.SENSOR)
            sub(TFMessage, "/tf_static", self._on_tf_static, qos.TF_STATIC)
        self.estop_pub = self.node.create_publisher(Bool, self.topic("estop"), qos.COMMAND)
        self.reset_client = self.node.create_client(ResetEpisode, self.topic("reset"))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="probe", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> bool:
        """Leave the graph; False if the DDS teardown did not return (:func:`leave_graph`)."""
        self._stop.set()
        self._thread.join(timeout=5)
        return leave_graph(self.node, self.context)

    def reconnect(self) -> None:
        """Replace this probe's DDS participant, keeping what it has recorded. Fast DDS now and then leaves one
        reader of a new participant without data from a writer that other readers get (seen as a start-up
        waiting minutes for /clock that a fresh process received at once); a new participant matches again."""
        self.close()
        self._connect()
        self.reconnections += 1

    # ----- callbacks (probe thread) -----
    def _on_clock(self, msg: Clock) -> None:
        mono = time.monotonic()
        with self.lock:
            self.clock.observe(mono, conv.time_to_ns(msg.clock))

    def _on_stage(self, stage: str, data: bytes) -> None:
        mono = time.monotonic()
        stamp = episodes.header_stamp_ns(data)
        with self.lock:
            self.stages.arrived(stage, stamp, mono)
            if stage == "chunk":
                self.chunk_stamps.append(stamp)
            elif stage == "joint_chunk":
                self.joint_chunks += 1
                self.joint_chunk_stamp = stamp
        if stage == "camera" and self.frames is not None:
            self.frames.append(data)

    def _on_task_state(self, msg: TaskState) -> None:
        with self.lock:
            self.task_state = msg

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                node = status.name.split(":", 1)[0]
                self.status[node] = episodes.status_values(status)
                self.status_seen[node] += 1

    def _on_path(self, which: str, msg: PathMsg) -> None:
        points = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in msg.poses])
        stamps = np.array([conv.time_to_ns(p.header.stamp) for p in msg.poses], dtype=np.int64)
        with self.lock:
            setattr(self, which, (points.reshape(-1, 3), stamps))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if self.camera is None:
            try:
                self.camera = conv.camera_model_from_info(msg)
            except ValueError:
                pass
            self.camera_frame = msg.header.frame_id

    def _on_tf_static(self, msg: TFMessage) -> None:
        edges = []
        for t in msg.transforms:
            try:
                edges.append((t.header.frame_id, t.child_frame_id, conv.transform_to_matrix(t.transform), 0))
            except ValueError:
                continue
        self.tf_static.set_many(edges, static=True)

    # ----- queries (main thread) -----
    def sim_now_ns(self) -> int | None:
        with self.lock:
            return self.clock.latest_sim_ns

    def controller_status(self) -> dict[str, str] | None:
        with self.lock:
            return dict(self.status[CONTROLLER]) if CONTROLLER in self.status else None

    def statuses(self) -> dict[str, dict[str, str]]:
        with self.lock:
            return {k: dict(v) for k, v in self.status.items()}

    def unmatched(self, stages: Sequence[str]) -> list[str]:
        """The topics of ``stages`` whose publishers this probe has not matched (yet)."""
        return [self.stage_subscriptions[s].topic_name for s in stages
                if self.stage_subscriptions[s].get_publisher_count() == 0]

    def estop(self, on: bool) -> None:
        self.estop_pub.publish(Bool(data=on))


# --- video -------------------------------------------------------------------------------------------------------
def sim_camera_rate_hz() -> float:
    """The simulated camera's rate in the graph (config/sim_robot.yaml): the video plays in sim time."""
    path = ament_index.resource_path("config", "sim_robot.yaml")
    data = yaml.safe_load(path.read_text())
    try:
        return float(data["/**"]["ros__parameters"]["camera_rate_hz"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: no /**.ros__parameters.camera_rate_hz (the ego camera's rate)") from None


class CameraVideo:
    """The ego camera as an mp4, with the predicted and executed paths and a caption drawn in."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio  # only runs that write a video need it

        self.path = path
        self.writer = imageio.get_writer(str(path), fps=fps, macro_block_size=1, quality=7)
        self.frames = 0

    def write_pending(self, probe: GraphProbe, caption: Sequence[str], since_ns: int,
                      base_frame: str = "base_link") -> None:
        """Draw and write the frames the probe received; the executed path from ``since_ns`` on."""
        T_camera_base = None
        if probe.camera is not None:
            try:
                T_camera_base = probe.tf_static.lookup(probe.camera_frame, base_frame)
            except TransformLookupError:
                pass
        with probe.lock:
            predicted, executed = probe.predicted, probe.executed
        paths = []
        if executed is not None:
            paths.append((executed[0][executed[1] >= since_ns], EXECUTED_RGB))
        if predicted is not None:
            paths.append((predicted[0], PREDICTED_RGB))
        while probe.frames:
            msg = deserialize_message(probe.frames.popleft(), Image)
            image = conv.image_to_numpy(msg)
            image = np.array(image if msg.encoding == "rgb8" else image[..., ::-1])
            if T_camera_base is not None:
                for points, rgb in paths:
                    if len(points) > 1:
                        episodes.draw_path(image, points, T_camera_base, probe.camera, rgb, dot_px=3)
            self.writer.append_data(episodes.draw_caption(image, caption))
            self.frames += 1

    def close(self) -> None:
        self.writer.close()


# --- the runner --------------------------------------------------------------------------------------------------
class ClosedLoopRunner:
    """Runs ``config.seeds`` as episodes; ``log`` receives progress lines."""

    def __init__(self, config: RunConfig, log: Callable[[str], None] = print,
                 on_episode: Callable[[episodes.EpisodeResult], None] | None = None):
        self.config = config
        self.log = log
        self.on_episode = on_episode
        self.notes: list[str] = []
        c = config
        if c.policy == "replay":
            if c.recordings is None:
                raise ValueError("policy replay needs the folder of preprocessed recordings (recordings)")
            self.recordings, missing = episodes.replay_recordings(c.recordings, c.seeds)
            if missing:
                raise FileNotFoundError(
                    f"{c.recordings} holds no preprocessed recording of seed{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(map(str, missing))} (make them with scripts/make_training_data.sh "
                    f"{max(missing) + 1} {c.recordings})")
        self.launch = self._launch_values(c.seeds[0] if c.seeds else 0)
        self.args = launch_args(self.launch)  # bad arguments fail here, before anything starts
        names = [s.name for s in selected_specs(self.args)]
        unknown = sorted(set(c.node_parameters) - set(names))
        if unknown:
            raise ValueError(f"parameters for {', '.join(unknown)}: no such node in this graph ({', '.join(names)})")

    def _launch_values(self, seed: int) -> dict[str, str]:
        c = self.config
        values = {"policy": c.policy, "namespace": c.namespace, **c.extra_args}
        if c.policy == "replay":
            values["recording"] = str(self.recordings[seed])
        elif c.bundle is not None:
            values["bundle"] = str(c.bundle)
        return values

    def run(self) -> RunResult:
        c = self.config
        out = c.out_dir
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        graph_log: TextIO = open(out / "graph.log", "w") if out is not None else open(os.devnull, "w")  # noqa: SIM115
        names = [s.name for s in selected_specs(self.args)]
        base_nodes = [n for n in names if n != "policy"] if c.policy == "replay" else names
        graph = policy_graph = recorder = video = probe = None
        results: list[episodes.EpisodeResult] = []
        windows, latencies, controller_latency = [], [], []
        try:
            self.log(f"starting the robot graph: {', '.join(base_nodes)}"
                     + (" (the replay policy per episode)" if c.policy == "replay" else "")
                     + (f"; node output in {out / 'graph.log'}" if out is not None else ""))
            graph = self._graph(self.args, base_nodes, graph_log).start()
            probe = GraphProbe(c.namespace, video=c.video)
            if c.bag and out is not None:
                recorder = self._start_recorder(out / "bag", graph_log)
            try:
                self._wait_ready(graph, probe, patience_s=STEP_PATIENCE_S)
            except GraphNotReady as exc:
                # Readers between running nodes that get nothing: new processes match anew.
                self.notes.append(f"{exc}: the graph was started again")
                self.log(f"  {exc}: starting the graph again")
                graph.stop()
                probe.forget_graph()
                graph = self._graph(self.args, base_nodes, graph_log).start()
                self._wait_ready(graph, probe)
            if c.video and out is not None:
                video = CameraVideo(out / "camera.mp4", fps=sim_camera_rate_hz())
            for i, seed in enumerate(c.seeds):
                if c.policy == "replay" and policy_graph is not None:
                    policy_graph.stop()
                    policy_graph = None
                result, window, policy_graph = self._episode(i, seed, graph, probe, video, graph_log)
                results.append(result)
                if window is not None:
                    windows.append(window)
                status = probe.controller_status() or {}
                controller_latency.append(tuple(episodes.as_number(status.get(f"command_latency_{q}_ms"))
                                                or math.nan for q in ("p50", "p99")))
                self.log(self._progress(i, result, results))
                if self.on_episode is not None:
                    self.on_episode(result)
        finally:
            if policy_graph is not None:
                policy_graph.stop()
            if recorder is not None:
                self._stop_recorder(recorder)
            if graph is not None:
                graph.stop()
            statuses = probe.statuses() if probe is not None else {}
            if probe is not None:
                with probe.lock:  # now, so that messages of an episode that arrived after its end count too
                    latencies = [probe.stages.latencies_ms(probe.clock, *w) for w in windows]
                if not probe.close():
                    self.log("the probe's DDS teardown did not return; left behind")
            if video is not None:
                video.close()
                self.log(f"video: {video.path} ({video.frames} frames)")
            graph_log.close()
        merged = episodes.merge_latencies(latencies)
        interventions, others = {}, {}
        for r in results:
            episodes.add_counts(interventions, r.interventions)
            episodes.add_counts(others, r.other_counts)
        return RunResult(c, results, episodes.latency_summary(merged), merged, statuses.get(CONTROLLER, {}),
                         statuses, controller_latency, interventions, others, self.notes)

    # ----- start-up -----
    def _graph(self, args, nodes: Sequence[str], graph_log: TextIO) -> RobotGraph:
        """The graph of ``nodes``, with ``node_parameters`` set."""
        graph = RobotGraph(args, only=nodes, output=graph_log)
        extra = self.config.node_parameters
        graph.plan = replace(graph.plan, nodes=tuple(
            replace(n, parameters={**n.parameters, **extra[n.name]}) if n.name in extra else n
            for n in graph.plan.nodes))
        return graph

    def _start_recorder(self, path: Path, graph_log: TextIO) -> subprocess.Popen:
        exe = shutil.which("humanego")
        if exe is None:
            raise GraphError("the humanego CLI is not on PATH (source scripts/env.sh)")
        topics = [t for t in RECORDED_TOPICS if self.config.bag_images or t not in IMAGE_TOPICS]
        self.log(f"recording {len(topics)} topics to {path}" + ("" if self.config.bag_images else
                 " (camera images left out: they are in the video; --bag-images records them)"))
        return subprocess.Popen([exe, "record", "--output", str(path), "--namespace", self.config.namespace,
                                 "--topics", *topics], stdout=graph_log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def _stop_recorder(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.notes.append("the bag recorder did not stop within 30 s and was killed; the bag may be incomplete")

    def _wait(self, condition: Callable[[], object], what: str, timeout_s: float, graphs: Sequence[RobotGraph],
              tick: Callable[[], None] | None = None) -> object:
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            for g in graphs:
                if g is not None and g.poll() is not None:
                    raise GraphError(f"the graph stopped while waiting for {what}: {g.message} "
                                     f"(its output is in graph.log)")
            if time.monotonic() > deadline:
                raise WaitTimeout(f"waited {timeout_s:.0f} s for {what} in vain")
            if tick is not None:
                tick()
            time.sleep(0.05)

    def _wait_ready(self, graph: RobotGraph, probe: GraphProbe, patience_s: float = math.inf) -> None:
        """Wait until the graph is up and talks to the probe, within the start-up timeout. A step (or the
        controller's first heartbeat) missing after ``patience_s`` raises GraphNotReady: the caller may start
        the graph again."""
        t0 = time.monotonic()
        timeout = self.config.startup_timeout_s
        stages = [s for s in episodes.STAGES if s in self._stages_before_policy()]
        steps = [("the simulator's /clock", lambda: len(probe.clock) > 1),
                 ("the reset service", lambda: probe.reset_client.service_is_ready()),
                 ("the trajectory controller on /diagnostics and estop",
                  lambda: probe.controller_status() is not None and probe.estop_pub.get_subscription_count() > 0),
                 # Without a match the latency of a stage would silently be missing.
                 ("the probe to match the pipeline's publishers", lambda: not probe.unmatched(stages))]
        if self.config.policy != "replay":
            # Matched is not delivered: a reader in the pipeline that never gets a sample (seen in `make demo`: the
            # policy's images, ik_retarget's chunks; 3 episodes without a command) is only mended by new processes.
            steps.append(("the first joint chunk (camera to policy to ik_retarget)", lambda: probe.joint_chunks > 0))
        for what, condition in steps:
            left = max(1.0, timeout - (time.monotonic() - t0))
            try:
                self._wait_reconnecting(condition, what, min(left, patience_s), graph, probe)
            except WaitTimeout as exc:
                unmatched = probe.unmatched(stages)
                clock = probe.clock_subscription
                error = GraphNotReady if patience_s < left else WaitTimeout
                raise error(f"{exc}; /clock: {len(probe.clock)} messages from {clock.get_publisher_count()} "
                            f"matched publisher(s) of {probe.node.count_publishers('/clock')} in the graph"
                            + (f"; no publisher matched yet on {', '.join(unmatched)}" if unmatched else "")) from None
            self.log(f"  {what}: ready after {time.monotonic() - t0:.0f} s")
        self._wait(lambda: (probe.controller_status() or {}).get("message") == "holding: estop",
                   "the controller holding on e-stop", 30.0, [graph], tick=lambda: probe.estop(True))
        try:
            self._wait(lambda: int((probe.controller_status() or {}).get("heartbeats_received", 1)) > 0,
                       "the trajectory controller's first heartbeat", HEARTBEAT_WAIT_S, [graph])
        except WaitTimeout as exc:
            raise (GraphNotReady if math.isfinite(patience_s) else WaitTimeout)(str(exc)) from None

    def _wait_reconnecting(self, condition: Callable[[], object], what: str, timeout_s: float, graph: RobotGraph,
                           probe: GraphProbe) -> None:
        """:meth:`_wait`, giving the probe a new participant each ``PROBE_RECONNECT_S`` that the condition (a
        message or match the probe waits for) stays false (:meth:`GraphProbe.reconnect`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                self._wait(condition, what, min(PROBE_RECONNECT_S, max(left, 0.0)), [graph])
                return
            except WaitTimeout:
                if left <= PROBE_RECONNECT_S:
                    raise WaitTimeout(f"waited {timeout_s:.0f} s for {what} in vain") from None
            self.log(f"  still waiting for {what} after {PROBE_RECONNECT_S:.0f} s: the probe reconnects")
            self.notes.append(f"the probe got a new DDS participant after waiting {PROBE_RECONNECT_S:.0f} s for "
                              f"{what}")
            probe.reconnect()

    def _stages_before_policy(self) -> list[str]:
        """The pipeline stages published by the long-running graph (the replay policy comes per episode and runs
        without a state estimator)."""
        if self.config.policy == "replay":
            return ["camera", "clean_view", "joint_chunk"]
        return list(episodes.STAGES)

    # ----- one episode -----
    def _episode(self, index: int, seed: int, graph: RobotGraph, probe: GraphProbe, video: CameraVideo | None,
                 graph_log: TextIO):
        c = self.config
        started_wall = time.monotonic()
        policy_graph = None

        def failed(reason: str):
            self.log(f"  seed {seed}: {reason}")
            return episodes.EpisodeResult(seed, False, 0.0, time.monotonic() - started_wall, reason), None, \
                policy_graph

        probe.estop(True)
        request = ResetEpisode.Request(seed=seed)
        future = probe.reset_client.call_async(request)
        try:
            self._wait(future.done, f"the reset of seed {seed}", 30.0, [graph])
        except WaitTimeout as exc:
            return failed(str(exc))
        response = future.result()
        if not response.success:
            return failed(f"reset refused: {response.message}")
        reset_ns = probe.sim_now_ns()
        if c.policy == "replay":
            # The replay's clock starts with its node: the arm must be free to move by then, or the lead-in it
            # has to reach the first pose passes while the controller still holds. Without chunks the released
            # controller keeps the arm where the reset put it.
            self._release_estop(probe, graph)
        # Seen once in about ten starts at load 15 on 2 cores: no chunk of a freshly started replay node reached the
        # probe in time; and in runs of the closed-loop test: its chunks reached the probe but no joint chunk did.
        # A Fast DDS reader now and then gets nothing from a writer (the cause is not found). The node is started
        # once more and the probe reconnected; the miss is reported either way.
        for attempt in range(2 if c.policy == "replay" else 1):
            if c.policy == "replay":
                if policy_graph is not None:
                    policy_graph.stop()
                policy_graph = self._graph(launch_args(self._launch_values(seed)), ["policy"], graph_log).start()
            try:
                self._wait(lambda: self._chunk_after(probe, reset_ns) and self._joint_chunk_after(probe, reset_ns)
                           and self._task_state_after(probe, reset_ns, seed),
                           f"a chunk after the reset of seed {seed}", c.first_chunk_timeout_s, [graph, policy_graph])
                break
            except WaitTimeout as exc:
                status = probe.statuses().get("policy", {})
                reason = (f"{exc}: {self._missing_after_reset(probe, reset_ns, seed)} (the policy node's last "
                          f"/diagnostics: {status.get('message', 'none')}, chunks_published "
                          f"{status.get('chunks_published', '?')})")
                if attempt == 0 and c.policy == "replay":
                    # Either side of the reader that got nothing is replaced: the policy node's writer and the
                    # probe's readers (ik_retarget's reader stays; the new writer is what it matches anew).
                    self.notes.append(f"seed {seed}: {reason}; the policy node was started again and the probe "
                                      "reconnected")
                    self.log(f"  seed {seed}: {reason}; starting the policy node again, reconnecting the probe")
                    probe.reconnect()
                    continue
                return failed(reason)
        before = probe.statuses()
        if probe.frames is not None:
            probe.frames.clear()
        start_ns = probe.sim_now_ns()
        start_wall = time.monotonic()
        if c.policy != "replay":
            self._release_estop(probe, graph)
        with probe.lock:
            chunks_before, joint_chunks_before = len(probe.chunk_stamps), probe.joint_chunks
        outcome: dict = {}
        last_print = [time.monotonic()]

        def finished():
            with probe.lock:
                state = probe.task_state
            if state is None or conv.time_to_ns(state.header.stamp) < start_ns:
                return False
            elapsed = (conv.time_to_ns(state.header.stamp) - start_ns) * 1e-9
            outcome.update(state=state, elapsed=elapsed)
            return state.success or elapsed >= c.timeout_s

        def tick():
            state = outcome.get("state")
            elapsed = outcome.get("elapsed", 0.0)
            if video is not None:
                video.write_pending(probe, [f"{c.policy} policy | seed {seed} | episode {index + 1}/{len(c.seeds)}",
                                            f"t {elapsed:4.1f} s | goal distance "
                                            + (f"{state.goal_distance * 100:.1f} cm" if state else "?")], start_ns)
            if time.monotonic() - last_print[0] > 10.0:
                last_print[0] = time.monotonic()
                self.log(f"  seed {seed}: t {elapsed:.1f} s (sim), bread {state.goal_distance * 100:.1f} cm from the "
                         f"plate" if state else f"  seed {seed}: waiting for task_state")

        try:
            self._wait(finished, f"the end of episode {seed}", c.timeout_s * 20 + 600, [graph, policy_graph], tick)
        except GraphError as exc:
            if graph.poll() is not None or "state" not in outcome:
                raise
            self.notes.append(f"seed {seed}: {exc}")
            outcome["state"].success = False
        end_ns = conv.time_to_ns(outcome["state"].header.stamp)
        wall = time.monotonic() - start_wall
        try:
            self._wait(lambda: (probe.controller_status() or {}).get("message") == "holding: estop",
                       "the controller holding on e-stop", 30.0, [graph], tick=lambda: probe.estop(True))
        except GraphError as exc:
            self.notes.append(f"seed {seed}: {exc}; its intervention counts may miss the last second")
        tick()
        after = probe.statuses()
        state = outcome["state"]
        with probe.lock:
            chunks = len(probe.chunk_stamps) - chunks_before
            joint_chunks = probe.joint_chunks - joint_chunks_before
            rtf = probe.clock.real_time_factor(start_ns, end_ns)
        interventions = episodes.counter_delta(before.get(CONTROLLER, {}), after.get(CONTROLLER, {}),
                                               episodes.INTERVENTION_PREFIXES, exclude=("hold_estop",))
        others = {}
        for node, prefixes in OTHER_COUNTERS.items():
            delta = episodes.counter_delta(before.get(node, {}), after.get(node, {}), prefixes)
            others.update({f"{node}.{k}": n for k, n in delta.items()})
        elapsed = (end_ns - start_ns) * 1e-9
        reason = "" if state.success else (f"time limit {c.timeout_s:.0f} s: bread {state.goal_distance * 100:.1f} cm "
                                           f"from the plate centre")
        result = episodes.EpisodeResult(seed, bool(state.success), elapsed, wall, reason, float(state.goal_distance),
                                        chunks, joint_chunks, rtf, interventions, others)
        return result, (start_ns, end_ns), policy_graph

    def _release_estop(self, probe: GraphProbe, graph: RobotGraph) -> None:
        probe.estop(False)
        self._wait(lambda: (probe.controller_status() or {}).get("message") != "holding: estop",
                   "the controller to release the e-stop", 30.0, [graph], tick=lambda: probe.estop(False))

    @staticmethod
    def _chunk_after(probe: GraphProbe, stamp_ns: int) -> bool:
        with probe.lock:
            return bool(probe.chunk_stamps) and probe.chunk_stamps[-1] >= stamp_ns

    @staticmethod
    def _joint_chunk_after(probe: GraphProbe, stamp_ns: int) -> bool:
        with probe.lock:
            return probe.joint_chunk_stamp is not None and probe.joint_chunk_stamp >= stamp_ns

    @staticmethod
    def _missing_after_reset(probe: GraphProbe, reset_ns: int, seed: int) -> str:
        """What the probe lacks of a chunk, a joint chunk and a task_state after the reset (the start's three
        conditions), with the newest it has."""
        with probe.lock:
            stamps, state = list(probe.chunk_stamps), probe.task_state
            joint_chunks, joint_stamp = probe.joint_chunks, probe.joint_chunk_stamp
        missing = []
        if not ClosedLoopRunner._chunk_after(probe, reset_ns):
            newest = f"newest stamped {(stamps[-1] - reset_ns) * 1e-9:+.1f} s from it" if stamps else "none yet"
            missing.append(f"no action_chunk stamped after the reset ({len(stamps)} received, {newest})")
        if not ClosedLoopRunner._joint_chunk_after(probe, reset_ns):
            newest = (f"newest stamped {(joint_stamp - reset_ns) * 1e-9:+.1f} s from it" if joint_stamp is not None
                      else "none yet")
            missing.append(f"no joint_chunk stamped after the reset ({joint_chunks} received, {newest})")
        if not ClosedLoopRunner._task_state_after(probe, reset_ns, seed):
            newest = (f"newest of seed {state.seed}, {(conv.time_to_ns(state.header.stamp) - reset_ns) * 1e-9:+.1f} s "
                      "from it" if state is not None else "none yet")
            missing.append(f"no task_state of seed {seed} after the reset ({newest})")
        return "; ".join(missing) or "all arrived as the wait ended"

    @staticmethod
    def _task_state_after(probe: GraphProbe, stamp_ns: int, seed: int) -> bool:
        with probe.lock:
            s = probe.task_state
        return s is not None and s.seed == seed and conv.time_to_ns(s.header.stamp) >= stamp_ns

    def _progress(self, index: int, r: episodes.EpisodeResult, results: Sequence[episodes.EpisodeResult]) -> str:
        limited = sum(n for k, n in r.interventions.items() if k.startswith("limited_"))
        holds = sum(n for k, n in r.interventions.items() if k.startswith("hold_"))
        outcome = f"success in {r.seconds:.1f} s" if r.success else f"failed ({r.reason})"
        return (f"episode {index + 1}/{len(self.config.seeds)} seed {r.seed}: {outcome}; {r.chunks} chunks, "
                f"{limited} limited ticks, {holds} holds; wall {r.wall_seconds:.0f} s (RTF {r.real_time_factor:.2f}); "
                f"success so far {sum(x.success for x in results)}/{len(results)}")


def format_report(result: RunResult) -> str:
    """What ``make demo`` and the benchmark print at the end."""
    lines = [f"\nSuccess: {sum(r.success for r in result.episodes)}/{len(result.episodes)} "
             f"({100 * result.success_rate:.0f} %), policy {result.config.policy}", "",
             episodes.format_episodes(result.episodes), "",
             "Per-stage latency (wall clock; camera stamp = sim time of the frame, see humanego_bringup.episodes):",
             episodes.format_latency(result.latency)]
    if result.config.policy == "replay":
        lines.append("(replay: chunks are stamped when published, from no camera frame: the chunk stage is publication "
                     "-> arrival and joint_chunk counts from there; no state estimator runs, so no ICT)")
    c = result.controller
    ctrl = [(p50, p99) for p50, p99 in result.controller_latency_ms if math.isfinite(p50)]
    if ctrl:
        lines.append(f"trajectory_controller observation -> first command using it (its own figure, sim time, last "
                     f"<= 500 chunks at each episode end): p50 {np.median([x[0] for x in ctrl]):.1f} ms (median over "
                     f"episodes), p99 {max(x[1] for x in ctrl):.1f} ms (worst episode)")
    if c:
        lines.append(f"control period jitter |period - control period|: p50 {c.get('period_jitter_p50_ms', 'n/a')} ms, "
                     f"p99 {c.get('period_jitter_p99_ms', 'n/a')} ms, longest period {c.get('period_max_ms', 'n/a')} "
                     f"ms (last 2000 ticks); {c.get('overruns', 'n/a')} ticks skipped since the start (overruns)")
    ik, policy = result.statuses.get("ik_retarget", {}), result.statuses.get("policy", {})
    if "solve_p50_ms" in ik:
        lines.append(f"ik_retarget solve time (its figure): p50 {ik['solve_p50_ms']} ms, "
                     f"p99 {ik.get('solve_p99_ms')} ms")
    if "inference_p50_ms" in policy:
        lines.append(f"policy inference (its figure): p50 {policy['inference_p50_ms']} ms, p99 "
                     f"{policy.get('inference_p99_ms')} ms; pairing -> publication p50 "
                     f"{policy.get('latency_p50_ms')} ms")
    total = result.interventions
    lines.append("Safety interventions (trajectory_controller, all episodes): "
                 + (", ".join(f"{k} {n}" for k, n in total.items()) or "none"))
    if result.other_counts:
        lines.append("Other nodes: " + ", ".join(f"{k} {n}" for k, n in sorted(result.other_counts.items())))
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)
