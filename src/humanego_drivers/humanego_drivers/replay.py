"""Replaying recorded camera streams and MPS data in device-time order (no ROS here).

A :class:`ReplaySource` is what a replay node publishes: one or more camera streams (the first is the
main camera, the one TF and hand tracking are replayed along), and optionally the MPS closed-loop
trajectory and hand tracking of the same recording. :func:`timeline` merges everything into one list
of :class:`Event` in device time; :class:`Pacer` says how long to wait before each event to play at the
recorded speed, faster or slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from humanego_core.camera_models import CameraModel
from humanego_core.timeutil import NS_PER_S
from humanego_drivers.mps import HandTracking, Trajectory, check_overlap

FRAME = "frame"
HANDS = "hands"

# Behind schedule by more than this, pacing restarts from now instead of racing to catch up.
MAX_LAG_S = 0.5


@dataclass
class CameraStream:
    """One recorded camera: ``frames(start)`` yields its images from frame ``start`` on, in order."""

    name: str                      # topic namespace of the stream, e.g. "camera", "slam_left"
    frame_id: str                  # its optical frame
    camera: CameraModel            # calibration of the recorded images
    timestamps_ns: np.ndarray      # (N,) int64 device time of each frame
    frames: Callable[[int], Iterator[np.ndarray]]
    encoding: str = "rgb8"         # rgb8 (H, W, 3) or mono8 (H, W)

    @property
    def num_frames(self) -> int:
        return len(self.timestamps_ns)


@dataclass
class ReplaySource:
    description: str
    streams: list[CameraStream]
    trajectory: Trajectory | None = None
    hands: HandTracking | None = None
    notes: list[str] = field(default_factory=list)  # things the user should know (e.g. partial MPS coverage)

    @property
    def main(self) -> CameraStream:
        return self.streams[0]

    @property
    def time_range_ns(self) -> tuple[int, int]:
        t = self.main.timestamps_ns
        return int(t[0]), int(t[-1])

    def check_mps(self) -> None:
        """MPS data must overlap the main camera's frames: a folder of another recording is refused with both
        ranges; partial coverage is allowed and noted (frames outside the trajectory get no pose)."""
        for data in (self.trajectory, self.hands):
            if data is None:
                continue
            check_overlap(self.time_range_ns, self.description, data.time_range_ns, str(data.path))
            lo, hi = data.time_range_ns
            t = self.main.timestamps_ns
            outside = int(np.count_nonzero((t < lo - 1000) | (t > hi + 1000)))
            if outside:
                self.notes.append(f"{outside} of {len(t)} {self.main.name} frames lie outside {data.path.name} "
                                  f"({lo / NS_PER_S:.3f}..{hi / NS_PER_S:.3f} s)")


@dataclass(frozen=True, order=True)
class Event:
    t_ns: int
    kind: str        # FRAME or HANDS
    stream: int      # index into ReplaySource.streams (FRAME), -1 for HANDS
    index: int       # frame index in the stream, or row of the hand tracking


def timeline(source: ReplaySource) -> list[Event]:
    """Every frame of every stream, and the hand-tracking rows within the main camera's time span (plus half
    a frame period on either side), in device-time order."""
    events = [Event(int(t), FRAME, s, i) for s, stream in enumerate(source.streams)
              for i, t in enumerate(stream.timestamps_ns)]
    if source.hands is not None:
        t = source.main.timestamps_ns
        margin = int(np.median(np.diff(t)) // 2) if len(t) > 1 else 0
        lo, hi = int(t[0]) - margin, int(t[-1]) + margin
        events += [Event(int(th), HANDS, -1, i) for i, th in enumerate(source.hands.t_ns) if lo <= th <= hi]
    return sorted(events)


class Pacer:
    """Wall-clock deadlines of device times played at ``rate`` (1 = recorded speed, 0 = as fast as possible)."""

    def __init__(self, rate: float):
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"playback rate must be >= 0, got {rate}")
        self.rate = rate
        self._anchor: tuple[int, float] | None = None

    def restart(self) -> None:
        """Forget the schedule (after a pause, a loop, a step): the next event is due at once."""
        self._anchor = None

    def delay(self, t_ns: int, now_s: float) -> float:
        """Seconds to wait from ``now_s`` (a monotonic clock) before the event at device time ``t_ns``."""
        if self.rate == 0:
            return 0.0
        if self._anchor is None:
            self._anchor = (t_ns, now_s)
        t0, wall0 = self._anchor
        wait = wall0 + (t_ns - t0) / NS_PER_S / self.rate - now_s
        if wait < -MAX_LAG_S:
            self._anchor = (t_ns, now_s)
            return 0.0
        return max(0.0, wait)
