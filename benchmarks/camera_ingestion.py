#!/usr/bin/env python3
"""Camera ingestion: Aria VRS decode and rectification, `aria_source` publish throughput and latency.

    python benchmarks/camera_ingestion.py [--seconds 10] [--warmup 2] [--sizes 480x480 320x240] [--skip-node]
                                          [--vrs ../shared/data/aria/recording.vrs]

Prints three tables (nothing is asserted: these are the figures of the camera-ingestion issue):

1. library, pinned to one core: VrsReader.read (decode of a 1408x1408 RGB frame) and Rectifier (fisheye
   1408x1408 -> pinhole WxH, and 240x320 rotated 90 degrees clockwise), p50/p99 ms per frame over
   --iterations calls cycling the recording's frames;
2. node throughput: ``humanego run humanego_drivers aria_source`` in its own process with loop:=true
   playback_rate:=0.0 (as fast as possible) per --sizes; frames/s received by a subscriber in this process
   over --seconds after --warmup, and frames/s the node published, inferred from the device stamps of the
   received frames (the recording's frames come round in order, so gaps in their index are frames the
   subscriber lost). Goal: >= 30 frames/s received;
3. latency: the node at the first of --sizes with stamp:=now playback_rate:=1.0 (recorded speed, 20 Hz)
   loop:=true; per frame, the subscriber's ROS time at the callback minus header.stamp. stamp:=now stamps
   at publication, after decoding and rectifying, so this is DDS transport + deserialization + executor
   dispatch to a Python subscriber. Goal: p50 <= 10 ms.

The nodes run on a private ROS_DOMAIN_ID (from this process' pid) with the workspace's discovery settings
(source scripts/env.sh first: FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA); they are killed at the end, on
Ctrl-C too.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VRS = ROOT / ".." / "shared" / "data" / "aria" / "recording.vrs"
# (width, height, rotate_cw90) measured in the library table besides --sizes
LIBRARY_SIZES = [(480, 480, False), (320, 240, False), (240, 320, True)]
START_TIMEOUT_S = 60.0
# After the subscription has matched the publisher, Fast DDS' LARGE_DATA transport opens its data connection
# a little later; best-effort frames sent before then are lost (humanego_drivers.camera_topics).
SETTLE_S = 2.0

_children: list[subprocess.Popen] = []


# ----- helpers -----
def parse_size(text: str) -> tuple[int, int, bool]:
    """'480x480' -> (480, 480, False); a trailing 'r' ('240x320r') asks for rotate_cw90."""
    rotate = text.endswith("r")
    try:
        w, h = (int(v) for v in text.rstrip("r").lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 480x480, 240x320r)") from None
    return w, h, rotate


def size_label(w: int, h: int, rotate: bool) -> str:
    return f"{w}x{h}{' rotated' if rotate else ''}"


def percentiles_ms(seconds) -> tuple[float, float, float]:
    a = np.asarray(seconds) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def timed(fn, n: int, warmup: int = 3) -> np.ndarray:
    for i in range(warmup):
        fn(i)
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - t
    return out


def stop_children() -> None:
    for proc in _children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for proc in _children:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        if getattr(proc, "log", None) is not None:
            proc.log.close()
    _children.clear()


# ----- 1. library -----
def library(args, reader) -> None:
    from humanego_core.image_warp import Rectifier

    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one core: cv2's thread pool then has one core to run on
    try:
        src = reader.camera_model
        print(f"\n1. library, one core (pinned to CPU {min(cpus)}), {args.iterations} iterations cycling "
              f"{reader.num_frames} frames")
        print(f"   {'step':52s} | {'p50 ms':>8s} | {'p99 ms':>8s} | {'frames/s (p50)':>14s}")

        def row(name: str, seconds: np.ndarray) -> None:
            p50, p99, _ = percentiles_ms(seconds)
            print(f"   {name:52s} | {p50:8.2f} | {p99:8.2f} | {1e3 / p50:14.1f}", flush=True)

        row(f"VrsReader.read {src.width}x{src.height} rgb",
            timed(lambda i: reader.read(i % reader.num_frames), args.iterations))
        frames = [reader.read(i) for i in range(reader.num_frames)]
        sizes = LIBRARY_SIZES + [s for s in args.sizes if s not in LIBRARY_SIZES]
        for w, h, rotate in sizes:
            rectifier = Rectifier(src, w, h, rotate_cw90=rotate)
            seconds = timed(lambda i, r=rectifier: r(frames[i % len(frames)]), args.iterations)
            row(f"Rectifier {src.width} -> {size_label(w, h, rotate)} (1/{rectifier.shrink} area first)", seconds)
    finally:
        os.sched_setaffinity(0, cpus)


# ----- 2. and 3. the node -----
class Probe:
    """A subscriber to the node's camera/image_raw in this process; per frame: receive time, stamp."""

    def __init__(self, ns: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import Image

        from humanego_ros import qos

        self.rclpy = rclpy
        self.context = rclpy.Context()
        # no rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt, which stops the nodes started here
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("camera_ingestion_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.clock = self.node.get_clock()
        self.received: list[tuple[int, int]] = []  # (receive ROS time ns, header stamp ns)
        self.sub = self.node.create_subscription(Image, f"{ns}/camera/image_raw", self._on_image, qos.SENSOR)
        self.ns = ns

    def _on_image(self, msg) -> None:
        now = self.clock.now().nanoseconds
        self.received.append((now, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))

    def spin_until(self, condition, what: str, proc: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if proc.poll() is not None:
                raise SystemExit(f"aria_source exited ({proc.returncode}) while waiting for {what}:\n"
                                 f"{node_log(proc)}")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float, proc: subprocess.Popen) -> None:
        end = time.monotonic() + seconds
        self.spin_until(lambda: time.monotonic() >= end, "the measurement window", proc, seconds + 5)

    def resume(self, proc: subprocess.Popen) -> None:
        from std_srvs.srv import SetBool

        client = self.node.create_client(SetBool, f"{self.ns}/aria_source/pause")
        self.spin_until(client.service_is_ready, "the ~/pause service", proc)
        future = client.call_async(SetBool.Request(data=False))
        self.spin_until(future.done, "~/pause false", proc)
        if not future.result().success:
            raise SystemExit(f"~/pause false was refused: {future.result().message}")

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


def run_node(args, label: str, width: int, height: int, rotate: bool, *params: str):
    """Starts aria_source paused, connects, resumes, warms up, and returns (probe, proc, window start index,
    window seconds) after measuring; the caller reads probe.received[start:]."""
    ns = f"/camera_ingestion_{os.getpid()}_{label}"
    argv = ["humanego", "run", "humanego_drivers", "aria_source", "--ros-args", "-r", f"__ns:={ns}",
            "-p", f"vrs:={args.vrs}", "-p", f"width:={width}", "-p", f"height:={height}",
            "-p", f"rotate_cw90:={str(rotate).lower()}", "-p", "loop:=true", "-p", "start_paused:=true"]
    for param in params:
        argv += ["-p", param]
    # the node's log goes to a file, not a pipe nobody reads while measuring (a full pipe would stall it)
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)
    proc.log = log
    _children.append(proc)
    probe = Probe(ns)
    try:
        probe.spin_until(lambda: probe.sub.get_publisher_count() > 0, "the subscription to match", proc)
        probe.spin_for(SETTLE_S, proc)
        probe.resume(proc)
        probe.spin_until(lambda: probe.received, "the first frame", proc)
        probe.spin_for(args.warmup, proc)
        start, t0 = len(probe.received), time.monotonic()
        probe.spin_for(args.seconds, proc)
        return probe.received[start:], time.monotonic() - t0, proc
    finally:
        probe.close()


def node_log(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def throughput(args, reader) -> None:
    stamps = reader.timestamps_ns
    index = {int(t): i for i, t in enumerate(stamps)}
    n = len(stamps)
    print(f"\n2. aria_source throughput: loop:=true playback_rate:=0.0 (stamp:=device), {args.seconds:.0f} s "
          f"after {args.warmup:.0f} s warm-up; goal >= 30 frames/s received")
    print(f"   {'size':16s} | {'received/s':>10s} | {'published/s (inferred)':>22s} | {'lost':>6s}")
    for w, h, rotate in args.sizes:
        got, seconds, proc = run_node(args, f"rate_{w}x{h}{'r' if rotate else ''}", w, h, rotate,
                                      "playback_rate:=0.0")
        stop(proc)
        idx = [index.get(stamp, -1) for _, stamp in got]
        # frames the node published between consecutive received ones: the index difference modulo the
        # number of frames (a full turn when equal; more than n - 1 frames lost in a row count as fewer)
        published = 1 + sum(((b - a) % n) or n for a, b in itertools.pairwise(idx)) if got else 0
        if -1 in idx:
            published_text = "(unknown stamps)"
        else:
            published_text = f"{published / seconds:22.1f}"
        lost = f"{100 * (1 - len(got) / published):5.1f}%" if published else "-"
        print(f"   {size_label(w, h, rotate):16s} | {len(got) / seconds:10.1f} | {published_text:>22s} | {lost:>6s}",
              flush=True)


def latency(args, reader) -> None:
    w, h, rotate = args.sizes[0]
    print(f"\n3. publish -> receive latency at {size_label(w, h, rotate)}: stamp:=now playback_rate:=1.0 loop:=true, "
          f"{args.seconds:.0f} s after {args.warmup:.0f} s warm-up; goal p50 <= 10 ms")
    print(f"   (the recording is {reader.nominal_rate_hz:.0f} Hz; a loop starts over at once after its last frame, "
          f"so {reader.num_frames} frames come every {reader.num_frames - 1} periods)")
    got, seconds, proc = run_node(args, f"latency_{w}x{h}", w, h, rotate, "playback_rate:=1.0", "stamp:=now")
    stop(proc)
    if not got:
        print("   no frames received")
        return
    p50, p99, worst = percentiles_ms([(now - stamp) * 1e-9 for now, stamp in got])
    print(f"   {'frames received':16s} | {'frames/s':>8s} | {'p50 ms':>8s} | {'p99 ms':>8s} | {'max ms':>8s}")
    print(f"   {len(got):16d} | {len(got) / seconds:8.1f} | {p50:8.2f} | {p99:8.2f} | {worst:8.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per node run (s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="wall seconds after the first frame before "
                        "the window opens")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(480, 480, False), (320, 240, False)],
                        metavar="WxH[r]", help="published sizes (width x height, 'r' = rotate_cw90) of the node "
                        "throughput runs, the first one also for latency; also added to the library table")
    parser.add_argument("--iterations", type=int, default=200, help="library calls per row")
    parser.add_argument("--vrs", type=Path, default=DEFAULT_VRS.resolve(), help="Aria recording")
    parser.add_argument("--skip-node", action="store_true", help="library figures only (no ROS processes)")
    args = parser.parse_args()
    if not args.vrs.is_file():
        parser.error(f"{args.vrs}: no such file (give --vrs)")

    # A private domain: the nodes started here neither see nor disturb anyone else's.
    os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cmd = " ".join(["python", "benchmarks/camera_ingestion.py", *sys.argv[1:]])
    print(f"camera ingestion: {cmd}")
    print(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} usable), Python {platform.python_version()}; recording {args.vrs.name}; "
          f"RMW {os.environ.get('RMW_IMPLEMENTATION', '?')}, FASTDDS_BUILTIN_TRANSPORTS="
          f"{os.environ.get('FASTDDS_BUILTIN_TRANSPORTS', '-')}, ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}")
    from humanego_drivers.vrs import VrsReader

    reader = VrsReader(args.vrs)
    try:
        library(args, reader)
        if not args.skip_node:
            throughput(args, reader)
            latency(args, reader)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_children()
    return 0


if __name__ == "__main__":
    sys.exit(main())
