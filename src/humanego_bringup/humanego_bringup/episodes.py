"""Closed-loop episodes on the robot graph: the bookkeeping, without ROS (the runner that talks to the graph is
:mod:`humanego_bringup.episode_runner`).

**Latency.** Every message of the pipeline carries the stamp of the camera frame it derives from (DESIGN.md
section 3); a probe records when each stage's message arrives (``time.monotonic()``). Stamps are sim time
(``/clock``), arrivals are wall time: :class:`SimClockMap` keeps the probe's ``/clock`` samples (arrival time,
sim time) and gives, by linear interpolation, the wall time at which the simulator's clock reached a stamp.
A stage's latency is then ``arrival - wall time of the stamp``: wall-clock seconds, what a CPU spends, whatever
the simulator's real-time factor. It includes the delivery to the probe and is biased low by ``/clock``'s own
delivery delay (a ms or two on an idle machine). Stages (:data:`STAGES`) are cumulative from the camera stamp;
``hop`` is the part of a stage after its inputs reached the probe (clean view and ICT both start from the
camera image; the policy needs both).

**Episodes.** :class:`EpisodeResult` per seed; :func:`counter_delta` turns two snapshots of a node's cumulative
``/diagnostics`` counters into what happened in between (the trajectory controller's safety interventions:
``limited_<kind>`` ticks, ``hold_<reason>`` entries, ``rejected_<reason>`` chunks).

**Video.** :func:`project_points` / :func:`draw_path`: paths in the robot base frame drawn into the camera image.
"""

from __future__ import annotations

import bisect
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from humanego_core.camera_models import CameraModel

# Pipeline stages in order: name -> (topic relative to the robot namespace, stages whose output it consumes).
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "camera": ("camera/image_raw", ()),
    "clean_view": ("camera/image_clean", ("camera",)),
    "ict": ("ict", ("camera",)),
    "chunk": ("action_chunk", ("clean_view", "ict")),
    "joint_chunk": ("joint_chunk", ("chunk",)),
}
# Counter families of the trajectory controller's /diagnostics that are safety interventions.
INTERVENTION_PREFIXES = ("limited_", "hold_", "rejected_")


class SimClockMap:
    """Wall time (``time.monotonic()`` of the probe) <-> sim time, from the ``/clock`` samples the probe received.

    Samples must come in arrival order; a clock that goes back (a restarted simulator) starts a new history.
    """

    def __init__(self):
        self._mono: list[float] = []
        self._sim: list[int] = []

    def observe(self, mono_s: float, sim_ns: int) -> None:
        if self._sim and sim_ns < self._sim[-1]:
            self._mono.clear()
            self._sim.clear()
        if self._sim and sim_ns == self._sim[-1]:
            return
        self._mono.append(mono_s)
        self._sim.append(sim_ns)

    def __len__(self) -> int:
        return len(self._sim)

    @property
    def latest_sim_ns(self) -> int | None:
        return self._sim[-1] if self._sim else None

    def wall_of(self, sim_ns) -> np.ndarray:
        """Wall time (s) at which the clock reached each of ``sim_ns``; NaN outside the samples' span."""
        sim_ns = np.asarray(sim_ns, dtype=np.float64)
        if len(self._sim) < 2:
            return np.full(sim_ns.shape, np.nan)
        sims = np.asarray(self._sim, dtype=np.float64)
        out = np.interp(sim_ns, sims, np.asarray(self._mono))
        return np.where((sim_ns < sims[0]) | (sim_ns > sims[-1]), np.nan, out)

    def sim_of(self, mono_s: float) -> int | None:
        """Sim time (ns) at wall time ``mono_s``: interpolated between samples, the last sample's value after them
        (None before the first)."""
        if not self._mono or mono_s < self._mono[0]:
            return None
        i = bisect.bisect_right(self._mono, mono_s)
        if i == len(self._mono):
            return self._sim[-1]
        m0, m1, s0, s1 = self._mono[i - 1], self._mono[i], self._sim[i - 1], self._sim[i]
        return round(s0 + (s1 - s0) * (mono_s - m0) / (m1 - m0)) if m1 > m0 else s1

    def real_time_factor(self, start_ns: int, end_ns: int) -> float:
        """Sim seconds per wall second between two sim times (NaN when not covered by samples)."""
        w0, w1 = self.wall_of([start_ns, end_ns])
        return float((end_ns - start_ns) * 1e-9 / (w1 - w0)) if w1 > w0 else math.nan


def header_stamp_ns(serialized: bytes) -> int:
    """``header.stamp`` (ns) of a serialized message whose first field is a std_msgs/Header, read straight from
    its CDR bytes (4 bytes encapsulation, then int32 sec and uint32 nanosec), so that a probe timing large
    messages (images) does not pay for deserializing them."""
    if len(serialized) < 12 or serialized[0] != 0 or serialized[1] not in (0, 1):
        raise ValueError(f"not a CDR-serialized message ({len(serialized)} bytes, encapsulation "
                         f"{bytes(serialized[:2]).hex()})")
    sec, nanosec = struct.unpack_from("<iI" if serialized[1] == 1 else ">iI", serialized, 4)
    return sec * 1_000_000_000 + nanosec


class StageTimes:
    """First arrival (wall s) of each stage's message per observation stamp."""

    def __init__(self, stages: Iterable[str] = STAGES):
        self.arrivals: dict[str, dict[int, float]] = {s: {} for s in stages}

    def arrived(self, stage: str, stamp_ns: int, mono_s: float) -> None:
        self.arrivals[stage].setdefault(stamp_ns, mono_s)

    def latencies_ms(self, clock: SimClockMap, start_ns: int, end_ns: int) -> dict[str, dict[str, np.ndarray]]:
        """Per stage: ``total`` (camera stamp -> arrival) and ``hop`` (the latest of its inputs' arrivals ->
        arrival, where every input of that stamp arrived) in ms, over stamps in ``[start_ns, end_ns)``."""
        out = {}
        for stage, arrivals in self.arrivals.items():
            stamps = np.array([s for s in arrivals if start_ns <= s < end_ns], dtype=np.int64)
            arrived = np.array([arrivals[s] for s in stamps], dtype=np.float64)
            total = (arrived - clock.wall_of(stamps)) * 1e3
            hops = []
            inputs = [self.arrivals[i] for i in STAGES.get(stage, ("", ()))[1] if i in self.arrivals]
            if inputs:
                for stamp, t in zip(stamps.tolist(), arrived.tolist(), strict=True):
                    before = [a[stamp] for a in inputs if stamp in a]
                    if len(before) == len(inputs):
                        hops.append((t - max(before)) * 1e3)
            out[stage] = {"total": total[np.isfinite(total)], "hop": np.asarray(hops, dtype=np.float64)}
        return out


def percentiles(values: Sequence[float] | np.ndarray, qs=(50, 99)) -> list[float]:
    """Percentiles (numpy's linear definition) of the finite values; NaN each when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return [float(x) for x in np.percentile(v, qs)] if v.size else [math.nan] * len(qs)


def merge_latencies(parts: Iterable[Mapping[str, Mapping[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Concatenate the per-stage arrays of several episodes."""
    merged: dict[str, dict[str, list[np.ndarray]]] = {}
    for part in parts:
        for stage, kinds in part.items():
            for kind, values in kinds.items():
                merged.setdefault(stage, {}).setdefault(kind, []).append(np.asarray(values, dtype=np.float64))
    return {stage: {kind: np.concatenate(arrays) for kind, arrays in kinds.items()} for stage, kinds in merged.items()}


def latency_summary(latencies: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Per stage: count, total p50/p99 and hop p50/p99 (ms)."""
    out = {}
    for stage, kinds in latencies.items():
        t50, t99 = percentiles(kinds["total"])
        h50, h99 = percentiles(kinds["hop"])
        out[stage] = {"count": int(np.size(kinds["total"])), "total_p50_ms": t50, "total_p99_ms": t99,
                      "hop_p50_ms": h50, "hop_p99_ms": h99}
    return out


# --- /diagnostics ----------------------------------------------------------------------------------------------
def status_values(status) -> dict[str, str]:
    """A DiagnosticStatus's message and key/values as a dict (``message`` under that key)."""
    return {"message": status.message, **{kv.key: kv.value for kv in status.values}}


def as_number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def counter_delta(before: Mapping[str, str], after: Mapping[str, str], prefixes: Sequence[str],
                  exclude: Sequence[str] = ()) -> dict[str, int]:
    """Increase of every integer counter whose key starts with one of ``prefixes`` (a key missing before counts
    from 0); zero increases are left out."""
    out = {}
    for key, value in after.items():
        if not key.startswith(tuple(prefixes)) or key in exclude:
            continue
        a, b = as_number(value), as_number(before.get(key, "0"))
        if a is not None and b is not None and a > b:
            out[key] = int(round(a - b))
    return dict(sorted(out.items()))


def add_counts(total: dict[str, int], counts: Mapping[str, int]) -> dict[str, int]:
    for key, n in counts.items():
        total[key] = total.get(key, 0) + n
    return total


# --- episodes --------------------------------------------------------------------------------------------------
@dataclass
class EpisodeResult:
    seed: int
    success: bool
    seconds: float              # sim time from the start (e-stop released) to success or the end
    wall_seconds: float
    reason: str = ""            # why it failed
    goal_distance_m: float = math.nan  # the manipulated object's distance from the goal at the end
    chunks: int = 0             # action_chunk messages during the episode
    joint_chunks: int = 0
    real_time_factor: float = math.nan  # sim s per wall s during the episode
    interventions: dict[str, int] = field(default_factory=dict)  # trajectory controller, this episode
    other_counts: dict[str, int] = field(default_factory=dict)  # drops/rejections of the other nodes

    def to_dict(self) -> dict:
        return asdict(self)


def overload_hint(results: Sequence[EpisodeResult], load_average: float, cpus: int) -> str | None:
    """A line for a run whose machine was busier than its cores (load above twice their number): the graph then
    waits for CPU, and its figures are the machine's, not the stack's. None otherwise."""
    if load_average <= 2 * cpus or not results:
        return None
    rtfs = [r.real_time_factor for r in results if math.isfinite(r.real_time_factor)]
    half = max(0.05, round(float(np.median(rtfs)) / 2 / 0.05) * 0.05) if rtfs else 0.5  # a round value
    return (f"note: load average {load_average:.1f} on {cpus} CPUs: the nodes waited for CPU, so latency and success "
            f"here measure the machine; --param sim_robot.real_time_factor={half:g} slows the simulated world "
            "down so that the graph keeps up")


def success_rate(results: Sequence[EpisodeResult]) -> float:
    return sum(r.success for r in results) / len(results) if results else math.nan


def format_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    rows = [[str(v) for v in row] for row in rows]
    widths = [max([len(str(h))] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = [" | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f}"


def format_latency(summary: Mapping[str, Mapping[str, float]]) -> str:
    rows = []
    for stage, s in summary.items():
        topic, inputs = STAGES.get(stage, (stage, ()))
        hop = f"{_ms(s['hop_p50_ms'])} / {_ms(s['hop_p99_ms'])}" if inputs else "-"
        rows.append((stage, topic, s["count"], f"{_ms(s['total_p50_ms'])} / {_ms(s['total_p99_ms'])}",
                     f"{hop}  (after {' + '.join(inputs)})" if inputs else hop))
    return format_table(("stage", "topic", "messages", "camera stamp -> arrival p50 / p99 ms",
                         "after its inputs p50 / p99 ms"), rows)


def format_episodes(results: Sequence[EpisodeResult]) -> str:
    rows = []
    for r in results:
        limited = sum(n for k, n in r.interventions.items() if k.startswith("limited_"))
        holds = ", ".join(f"{k[5:]} {n}" for k, n in r.interventions.items() if k.startswith("hold_")) or "-"
        rows.append((r.seed, "yes" if r.success else "no", f"{r.seconds:.1f}", f"{r.wall_seconds:.0f}",
                     f"{r.real_time_factor:.2f}", f"{r.goal_distance_m * 100:.1f}", r.chunks, limited, holds,
                     r.reason or "-"))
    return format_table(("seed", "success", "sim s", "wall s", "RTF", "goal dist cm", "chunks", "limited ticks",
                         "holds", "reason"), rows)


# --- drawing ---------------------------------------------------------------------------------------------------
def project_points(points_base: np.ndarray, T_camera_base: np.ndarray, camera: CameraModel,
                   near_m: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 2) of points given in the base frame, and which of them lie in front of the camera (z > near)."""
    p = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    X = p @ T_camera_base[:3, :3].T + T_camera_base[:3, 3]
    front = X[:, 2] > near_m
    uv = np.full((len(p), 2), np.nan)
    if front.any():
        uv[front] = camera.project_no_checks(X[front])
    return uv, front


def draw_path(image: np.ndarray, points_base: np.ndarray, T_camera_base: np.ndarray, camera: CameraModel,
              rgb: tuple[int, int, int], thickness: int = 2, dot_px: int = 0) -> np.ndarray:
    """Draw a path (points in the base frame) into an RGB image in place, as connected segments of the points in
    front of the camera; ``dot_px`` > 0 also marks its last point."""
    uv, front = project_points(points_base, T_camera_base, camera)
    limit = 16 * 4 * max(image.shape[:2])  # far outside the image: cv2 would overflow on huge values
    pts = np.round(np.nan_to_num(uv * 16, nan=limit, posinf=limit, neginf=-limit)).astype(np.int64)
    for i in range(1, len(uv)):
        if front[i - 1] and front[i] and np.all(np.abs(pts[i - 1:i + 1]) < limit):
            cv2.line(image, tuple(map(int, pts[i - 1])), tuple(map(int, pts[i])), rgb, thickness, cv2.LINE_AA,
                     shift=4)
    if dot_px and front.size and front[-1] and np.all(np.abs(pts[-1]) < limit):
        cv2.circle(image, tuple(map(int, pts[-1])), dot_px * 16, rgb, -1, cv2.LINE_AA, shift=4)
    return image


def draw_caption(image: np.ndarray, lines: Sequence[str], rgb=(255, 255, 255)) -> np.ndarray:
    """Text lines at the top left, on a dark band so they read on any background."""
    scale, step = 0.4, 14
    band = 6 + step * len(lines)
    image[:band] = (image[:band].astype(np.uint16) * 2 // 5).astype(np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(image, line, (4, 14 + step * i), cv2.FONT_HERSHEY_SIMPLEX, scale, rgb, 1, cv2.LINE_AA)
    return image


# --- replay recordings -----------------------------------------------------------------------------------------
def replay_recordings(folder, seeds: Sequence[int]) -> tuple[dict[int, Path], list[int]]:
    """The preprocessed recordings under ``folder`` whose scene is each seed's (``metadata.json`` ``seed``, as
    humanego_sim generate_demos writes it; a replayed hand only fits the scene it was recorded in), and the
    seeds without one. A recording counts once its preprocessing finished (``preprocess/report.json``)."""
    found: dict[int, Path] = {}
    for meta in sorted(Path(folder).glob("*/metadata.json")):
        try:
            seed = json.loads(meta.read_text()).get("seed")
        except (OSError, ValueError):
            continue
        done = meta.parent / "preprocess" / "report.json"  # preprocessing writes it last
        if isinstance(seed, int) and done.is_file() and (meta.parent / "preprocess" / "all_data").is_dir():
            found.setdefault(seed, meta.parent)
    wanted = {s: found[s] for s in seeds if s in found}
    return wanted, [s for s in seeds if s not in found]
