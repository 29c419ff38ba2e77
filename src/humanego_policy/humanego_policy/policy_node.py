"""The policy on the robot (``humanego run humanego_policy policy``): observations in, action chunks out.

``policy:=flow`` (default; or ``act``, ``egomimic``: the bundle's policy type must match) runs an exported
bundle (humanego_policy.runtime.PolicyRuntime: onnxruntime with the CUDA provider when available, else CPU;
torch as fallback):

Subscribes  camera/image_clean (rgb8 or bgr8, sensor data QoS): the view the policy was trained on
            ict (InteractionTokens): the tokens of the same camera frame (same header.stamp)
Publishes   action_chunk (ActionChunk): poses decoded into the ict message's reference frame (header.frame_id =
            the ict frame_id), header.stamp = the observation's stamp, dt, grasp, done_prob, policy_id
            /diagnostics: chunks published, drops and rejections by reason; p50/p99 of inference time
            (inference_*_ms), pairing to publication (latency_*_ms) and observation stamp to publication on the
            node clock (observation_age_*_ms: the camera-to-chunk latency when clocks agree)

An image and a token message with stamps within ``pair_tolerance_s`` form one observation; unpaired inputs
older than a formed pair are dropped (``unpaired``). Inference runs in its own thread on the latest
observation: one that arrives while another waits replaces it (``superseded``), and one older than
``max_observation_age_s`` when its turn comes is dropped (``stale``). Tokens with NaN/inf or of another layout
than the bundle's, images of other encodings, and non-finite policy outputs are rejected and counted; nothing
is published for them.

``policy:=replay`` plays a recorded demonstration's hand trajectory (humanego_policy.replay) through the same
output at ``replay_rate_hz`` chunks per second, stamped with the current time, in ``replay_frame_id`` (the
synthetic recordings' world is the simulator's ``world``): the input that checks retargeting without a policy.
By default as recorded; ``replay_approach_m``, ``replay_max_speed``, ``replay_max_turn``, ``replay_lead_in_s``,
``replay_settle_s`` and ``replay_grasp_dwell_s`` play it on a robot's timing
(:class:`humanego_policy.replay.ReplayTiming`; the robot graph's config/policy.yaml sets them).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass

import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from humanego_core.actions import ACTION_DIM
from humanego_core.ament_index import resource_path
from humanego_core.timeutil import seconds_to_ns
from humanego_interfaces.msg import ActionChunk, InteractionTokens
from humanego_policy.bundle import DEFAULT_BUNDLES
from humanego_policy.replay import DemoReplay, ReplayTiming
from humanego_policy.runtime import PolicyRuntime
from humanego_ros import conversions as conv
from humanego_ros import qos
from humanego_ros.diagnostics import OK, WARN, DiagnosticsReporter
from humanego_ros.latest_worker import LatestWorker
from humanego_ros.parameters import ParamSpec, declare_parameters
from humanego_ros.runner import StartupError, run_node

LATENCY_WINDOW = 300  # chunks the latency percentiles are taken over
MAX_BUFFERED = 30  # images / token messages kept while waiting for their partner
LOG_PERIOD_S = 5.0  # repeated warnings of one kind are logged at most this often


def parameters() -> list[ParamSpec]:
    return [
        ParamSpec("policy", "flow", "The policy type of 'bundle' (flow, act, egomimic: checked against bundle.json), "
                  "or replay: play the hand trajectory of the preprocessed recording in 'recording'.",
                  choices=("flow", "act", "egomimic", "replay"), read_only=True),
        ParamSpec("bundle", "", "Policy bundle folder; empty = the shipped one of the policy type (models/"
                  + ", models/".join(DEFAULT_BUNDLES.values()) + ").", read_only=True),
        ParamSpec("backend", "auto", "Inference backend: auto = onnxruntime (CUDA provider when available) if "
                  "installed, else torch.", choices=("auto", "onnxruntime", "torch"), read_only=True),
        ParamSpec("threads", 1, "CPU threads for inference (0 = the backend's default). Next to the other nodes on a "
                  "small CPU, one thread is faster than two (benchmarks/policy_latency.py).", minimum=0, maximum=64,
                  read_only=True),
        ParamSpec("seed", -1, "Seed of the sampling noise (-1: a random seed).", minimum=-1, read_only=True),
        ParamSpec("token_dim", 0, "Token size the state estimator publishes (20 single hand, 29 dual); a bundle for "
                  "another is refused at start. 0 = take the bundle's.", minimum=0, maximum=1024, read_only=True),
        ParamSpec("max_tokens", 0, "Token rows the state estimator publishes; a bundle for another number is refused "
                  "at start. 0 = take the bundle's.", minimum=0, maximum=1024, read_only=True),
        ParamSpec("pair_tolerance_s", 0.001, "Largest stamp difference between an image and the tokens of one "
                  "observation.", minimum=0.0, maximum=1.0),
        ParamSpec("max_observation_age_s", 0.5, "Observations older than this (node clock) when inference would start "
                  "are dropped as stale.", minimum=0.0, maximum=60.0),
        ParamSpec("recording", "", "replay: the preprocessed recording folder (preprocess/all_data/*/"
                  "training_data.json).", read_only=True),
        ParamSpec("replay_hand", "right", "replay: the hand whose trajectory is played.", choices=("left", "right"),
                  read_only=True),
        ParamSpec("replay_horizon", 50, "replay: steps per chunk.", minimum=1, maximum=1000, read_only=True),
        ParamSpec("replay_rate_hz", 10.0, "replay: chunks per second.", minimum=0.1, maximum=200.0, read_only=True),
        ParamSpec("replay_speed", 1.0, "replay: playback speed (1 = as recorded).", minimum=0.01, maximum=100.0,
                  read_only=True),
        ParamSpec("replay_max_speed", 0.0, "replay: the hand's speed cap (m/s); faster stretches play slower "
                  "(0 = no cap).", minimum=0.0, maximum=10.0, read_only=True),
        ParamSpec("replay_max_turn", 0.0, "replay: the hand's turning speed cap (rad/s; 0 = no cap).",
                  minimum=0.0, maximum=100.0, read_only=True),
        ParamSpec("replay_lead_in_s", 0.0, "replay: the first pose is held this long before the motion starts "
                  "(the arm travels there).", minimum=0.0, maximum=60.0, read_only=True),
        ParamSpec("replay_settle_s", 0.0, "replay: at each grasp change the hand stands still this long before "
                  "the gripper moves ...", minimum=0.0, maximum=10.0, read_only=True),
        ParamSpec("replay_grasp_dwell_s", 0.0, "replay: ... and this long after (a gripper takes time to close "
                  "or open; a human hand is instant).", minimum=0.0, maximum=10.0, read_only=True),
        ParamSpec("replay_approach_m", 0.0, "replay: start this far (m of hand path) before the first grasp; a "
                  "person's reach from their body is not the robot's (0 = from the first frame).", minimum=0.0,
                  maximum=10.0, read_only=True),
        ParamSpec("replay_frame_id", "world", "replay: frame the recording's world poses are published in.",
                  read_only=True),
        ParamSpec("replay_loop", False, "replay: start over after the end instead of holding the last pose.",
                  read_only=True),
    ]


@dataclass
class Observation:
    stamp_ns: int
    image: Image
    tokens: np.ndarray
    mask: np.ndarray
    frame_id: str
    paired_at: float  # time.monotonic()


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy")
        p = self.params = declare_parameters(self, parameters())
        self.published = 0
        self.dropped: Counter = Counter()
        self.rejected: Counter = Counter()
        self.inference_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.end_to_end_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.age_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._stats_lock = threading.Lock()
        self._logged: dict[str, float] = {}
        self.pub = self.create_publisher(ActionChunk, "action_chunk", qos.COMMAND)
        self.diagnostics = DiagnosticsReporter(self, p["policy"])
        self._worker = None
        if p["policy"] == "replay":
            self._start_replay()
        else:
            self._start_bundle()

    # ----- bundle mode -----
    def _start_bundle(self) -> None:
        p = self.params
        if p["bundle"]:
            bundle = p["bundle"]
        elif p["policy"] in DEFAULT_BUNDLES:
            bundle = str(resource_path("models", DEFAULT_BUNDLES[p["policy"]]))
        else:
            raise StartupError(f"policy:={p['policy']} ships no bundle; give bundle:=<folder>")
        self.runtime = PolicyRuntime(bundle, p["backend"], threads=p["threads"],
                                     seed=None if p["seed"] < 0 else p["seed"])
        if self.runtime.bundle.manifest.policy_type != p["policy"]:
            raise StartupError(f"policy:={p['policy']} but {bundle}/bundle.json holds a "
                               f"'{self.runtime.bundle.manifest.policy_type}' policy")
        self.layout = self.runtime.bundle.token_layout
        expected = (p["max_tokens"] or self.layout.max_tokens, p["token_dim"] or self.layout.token_dim)
        if expected != self.layout.shape:
            raise StartupError(f"policy bundle {bundle} takes {self.layout.describe()}: tokens {self.layout.shape}, "
                               f"but this robot's tokens are {expected} (parameters max_tokens, token_dim)")
        self._warm_up()
        self.max_age_ns = seconds_to_ns(p["max_observation_age_s"])
        self.tolerance_ns = seconds_to_ns(p["pair_tolerance_s"])
        self.images: deque[Image] = deque()
        self.token_msgs: deque[tuple[int, np.ndarray, np.ndarray, str]] = deque()
        self.create_subscription(Image, "camera/image_clean", self.on_image, qos.SENSOR)
        self.create_subscription(InteractionTokens, "ict", self.on_tokens, qos.COMMAND)
        self._worker = LatestWorker(self._infer, self._inference_failed, name="policy")
        m = self.runtime.bundle.manifest
        self.get_logger().info(
            f"policy {m.policy_id} ({m.policy_type}, {self.layout.describe()}, horizon {m.horizon}) on "
            f"{self.runtime.backend} {', '.join(self.runtime.providers)}")
        self._report(OK, "waiting for observations")

    def _warm_up(self) -> None:
        """One inference before the first observation (first runs allocate); explicit noise keeps the runtime's
        noise sequence untouched, so a seeded node is reproducible from its first chunk."""
        h, w = self.runtime.image_size
        self.runtime.predict(np.zeros((h, w, 3), np.uint8), np.zeros(self.layout.shape, np.float32),
                             np.ones(self.layout.max_tokens, bool),
                             noise=np.zeros((self.runtime.horizon, ACTION_DIM), np.float32))

    def on_image(self, msg: Image) -> None:
        if msg.encoding not in ("rgb8", "bgr8"):
            return self._reject("image", f"encoding {msg.encoding!r}; the policy takes rgb8 or bgr8")
        self.images.append(msg)
        self._pair()

    def on_tokens(self, msg: InteractionTokens) -> None:
        try:
            tokens, mask, _ = conv.msg_to_tokens(msg)
        except ValueError as exc:  # NaN/inf or inconsistent sizes
            return self._reject("ict", str(exc))
        if tokens.shape != self.layout.shape or msg.frame_mode != self.layout.frame_mode:
            return self._reject("ict_layout", f"tokens {tokens.shape} in {msg.frame_mode}, the policy takes "
                                f"{self.layout.shape} in {self.layout.frame_mode}")
        self.token_msgs.append((conv.time_to_ns(msg.header.stamp), tokens, mask, msg.header.frame_id))
        self._pair()

    def _pair(self) -> None:
        """Form the newest observation whose image and tokens both arrived; older unpaired inputs are dropped."""
        for i in range(len(self.images) - 1, -1, -1):
            stamp = conv.time_to_ns(self.images[i].header.stamp)
            match = next((j for j in range(len(self.token_msgs) - 1, -1, -1)
                          if abs(self.token_msgs[j][0] - stamp) <= self.tolerance_ns), None)
            if match is None:
                continue
            image = self.images[i]
            _, tokens, mask, frame_id = self.token_msgs[match]
            unpaired = i + match  # everything before the pair in both buffers
            for _ in range(i + 1):
                self.images.popleft()
            for _ in range(match + 1):
                self.token_msgs.popleft()
            if unpaired:
                self._drop("unpaired", f"{unpaired} image/token messages without a partner", unpaired)
            return self._hand_over(Observation(stamp, image, tokens, mask, frame_id, time.monotonic()))
        while len(self.images) > MAX_BUFFERED:
            self.images.popleft()
            self._drop("unpaired", "an image without tokens of its stamp")
        while len(self.token_msgs) > MAX_BUFFERED:
            self.token_msgs.popleft()
            self._drop("unpaired", "tokens without an image of their stamp")

    def _hand_over(self, observation: Observation) -> None:
        if self._worker.submit(observation):
            self._drop("superseded", "a newer observation arrived before inference was free")

    def _inference_failed(self, exc: BaseException) -> None:
        # After Ctrl-C the context dies before the node and publishing fails: that is the normal end.
        if self.context.ok():
            self.get_logger().fatal("inference failed, shutting down:\n"
                                    + "".join(traceback.format_exception(exc)))
            os.kill(os.getpid(), signal.SIGINT)

    def _infer(self, obs: Observation) -> None:
        age_ns = self.get_clock().now().nanoseconds - obs.stamp_ns
        if age_ns > self.max_age_ns:
            return self._drop("stale", f"observation {age_ns * 1e-9:.3f} s old")
        image = conv.image_to_numpy(obs.image)
        if obs.image.encoding == "bgr8":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        start = time.monotonic()
        try:
            out = self.runtime.predict(image, obs.tokens, obs.mask)
        except ValueError as exc:  # a non-finite output
            return self._reject("output", str(exc))
        inference_ms = (time.monotonic() - start) * 1e3
        m = self.runtime.bundle.manifest
        msg = conv.chunk_to_msg(out.T_ref[:, None], out.grasp[:, None], [m.arm], m.dt, out.done_prob, obs.stamp_ns,
                                obs.frame_id, m.policy_id)
        self.pub.publish(msg)
        with self._stats_lock:
            self.published += 1
            self.inference_ms.append(inference_ms)
            self.end_to_end_ms.append((time.monotonic() - obs.paired_at) * 1e3)
            self.age_ms.append((self.get_clock().now().nanoseconds - obs.stamp_ns) * 1e-6)
        self._report(OK, "publishing chunks")

    # ----- replay mode -----
    def _start_replay(self) -> None:
        p = self.params
        if not p["recording"]:
            raise StartupError("policy:=replay needs the parameter 'recording' (a preprocessed recording folder)")
        self.replay = DemoReplay.load(p["recording"], p["replay_hand"]).retimed(ReplayTiming.from_parameters(p))
        self.replay_start_ns: int | None = None
        self.create_timer(1.0 / p["replay_rate_hz"], self._replay_tick)
        self.get_logger().info(f"replaying the {p['replay_hand']} hand of {p['recording']} "
                               f"({self.replay.duration:.1f} s) in frame {p['replay_frame_id']!r}")
        self._report(OK, "waiting for a subscriber" if self.pub.get_subscription_count() == 0 else "replaying")

    def _replay_tick(self) -> None:
        """Playback starts with the first subscriber, so that it sees the trajectory from its beginning."""
        p = self.params
        now = self.get_clock().now().nanoseconds
        if self.replay_start_ns is None:
            if self.pub.get_subscription_count() == 0:
                return
            self.replay_start_ns = now
        t = (now - self.replay_start_ns) * 1e-9
        if p["replay_loop"]:
            t %= self.replay.duration + self.replay.dt
        poses, grasp, done = self.replay.chunk(t, p["replay_horizon"])
        self.pub.publish(conv.chunk_to_msg(poses[:, None], grasp[:, None], [p["replay_hand"]],
                                           self.replay.dt, done, now, p["replay_frame_id"],
                                           "replay"))
        with self._stats_lock:
            self.published += 1
        self._report(OK, "replaying" if t < self.replay.duration else "replay finished, holding the last pose",
                     publish_now=False)

    # ----- bookkeeping -----
    def _drop(self, reason: str, detail: str, count: int = 1) -> None:
        with self._stats_lock:
            self.dropped[reason] += count
            total = self.dropped[reason]
        self._log_now_and_then(reason, self.get_logger().warn, f"observation dropped ({reason}, {total} so far): "
                               f"{detail}")
        self._report(WARN, f"dropping observations: {reason}")

    def _reject(self, what: str, detail: str) -> None:
        with self._stats_lock:
            self.rejected[what] += 1
            total = self.rejected[what]
        self._log_now_and_then(what, self.get_logger().error, f"{what} rejected ({total} so far): {detail}")
        self._report(WARN, f"rejecting {what}")

    def _log_now_and_then(self, key: str, log, text: str) -> None:
        now = time.monotonic()
        with self._stats_lock:
            due = now - self._logged.get(key, -LOG_PERIOD_S) >= LOG_PERIOD_S
            if due:
                self._logged[key] = now
        if due:
            log(text)

    def _report(self, level, message: str, publish_now: bool = True) -> None:
        with self._stats_lock:
            values = {"chunks_published": self.published, "observations_dropped": sum(self.dropped.values())}
            values.update({f"dropped_{reason}": n for reason, n in sorted(self.dropped.items())})
            values.update({f"rejected_{what}": n for what, n in sorted(self.rejected.items())})
            for name, window in (("inference", self.inference_ms), ("latency", self.end_to_end_ms),
                                 ("observation_age", self.age_ms)):
                if window:
                    p50, p99 = np.percentile(np.asarray(window), [50, 99])
                    values.update({f"{name}_p50_ms": f"{p50:.2f}", f"{name}_p99_ms": f"{p99:.2f}"})
        if self.params["policy"] != "replay":
            values["backend"] = f"{self.runtime.backend} ({', '.join(self.runtime.providers) or 'torch'})"
        self.diagnostics.set(level, message, publish_now, **values)

    def destroy_node(self):
        if self._worker is not None:
            self._worker.stop()
        return super().destroy_node()


def main(args=None):
    sys.exit(run_node(PolicyNode, args))
