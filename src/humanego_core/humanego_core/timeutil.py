"""Timestamps without rclpy.

All times inside the stack are integer nanoseconds (int64) on one clock: device time for Aria
recordings, ROS time on the robot. ROS ``builtin_interfaces/Time`` is (sec, nanosec); conversion
to and from it lives here so that node code and offline code agree to the nanosecond.
"""

from __future__ import annotations

import numpy as np

NS_PER_S = 1_000_000_000


def stamp_to_ns(sec: int, nanosec: int) -> int:
    """(sec, nanosec) of a ROS stamp to integer nanoseconds."""
    if not 0 <= nanosec < NS_PER_S:
        raise ValueError(f"nanosec must be in [0, 1e9), got {nanosec}")
    return int(sec) * NS_PER_S + int(nanosec)


def ns_to_stamp(ns: int) -> tuple[int, int]:
    """Integer nanoseconds to (sec, nanosec) with 0 <= nanosec < 1e9 (also for negative times)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec


def seconds_to_ns(seconds: float) -> int:
    return int(round(float(seconds) * NS_PER_S))


def ns_to_seconds(ns):
    """Nanoseconds (int or int array) to float seconds."""
    return np.asarray(ns, dtype=np.int64) / NS_PER_S


def nearest_index(sorted_ns, query_ns: int, tolerance_ns: int | None = None) -> int | None:
    """Index of the sample closest to query_ns in a sorted array, or None if further than tolerance_ns."""
    ts = np.asarray(sorted_ns, dtype=np.int64)
    if ts.size == 0:
        return None
    i = int(np.searchsorted(ts, query_ns))
    candidates = [j for j in (i - 1, i) if 0 <= j < ts.size]
    best = min(candidates, key=lambda j: abs(int(ts[j]) - int(query_ns)))
    if tolerance_ns is not None and abs(int(ts[best]) - int(query_ns)) > tolerance_ns:
        return None
    return best


def bracket(sorted_ns, query_ns) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the left index i and weight w so that value = (1 - w) * v[i] + w * v[i + 1].

    Queries outside the sampled range raise: callers decide whether to clamp or drop, rather than
    silently extrapolating a trajectory.
    """
    ts = np.asarray(sorted_ns, dtype=np.int64)
    q = np.atleast_1d(np.asarray(query_ns, dtype=np.int64))
    if ts.size < 2:
        raise ValueError("need at least two samples to interpolate")
    if np.any(np.diff(ts) <= 0):
        raise ValueError("sample times must be strictly increasing")
    if q.min() < ts[0] or q.max() > ts[-1]:
        raise ValueError(
            f"query times [{q.min()}, {q.max()}] ns fall outside the samples [{ts[0]}, {ts[-1]}] ns")
    i = np.clip(np.searchsorted(ts, q, side="right") - 1, 0, ts.size - 2)
    w = (q - ts[i]).astype(np.float64) / (ts[i + 1] - ts[i]).astype(np.float64)
    return i, w


class Backoff:
    """Delays between retries of something that keeps failing (a camera that disappeared): they grow
    by ``factor`` from ``initial_s`` up to ``max_s``, and start over after a success (:meth:`reset`)."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 10.0, factor: float = 2.0):
        if not (0 < initial_s <= max_s and factor >= 1):
            raise ValueError(f"need 0 < initial_s <= max_s and factor >= 1, got {initial_s}, {max_s}, {factor}")
        self.initial_s, self.max_s, self.factor = initial_s, max_s, factor
        self.failures = 0

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        delay = min(self.max_s, self.initial_s * self.factor ** self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
