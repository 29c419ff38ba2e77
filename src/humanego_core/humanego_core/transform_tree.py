"""A TF buffer without tf2_ros: a tree of timed rigid transforms and lookups through it.

The PyPI ROS wheels have no tf2_ros, so nodes fill a :class:`TransformTree` from ``/tf`` and
``/tf_static`` (``humanego_ros.tf_listener``) and look transforms up through it, with tf2's semantics
where they matter:

- every frame has at most one parent; an edge ``parent -> child`` holds ``T_parent_child``;
- static edges hold one transform, valid at every time; dynamic edges keep a time-ordered buffer of
  the last ``buffer_duration_ns`` (newest stamp minus the oldest kept) and are interpolated between
  samples (SLERP + linear, :func:`humanego_core.geometry.interpolate`), never extrapolated;
- ``lookup(target, source, stamp_ns)`` chains through the lowest common ancestor of the two frames,
  in either direction, and returns ``T_target_source`` (maps points in ``source`` to ``target``);
  ``stamp_ns=None`` is tf2's "time 0": the latest time at which every dynamic edge on the chain has data.

What tf2 would quietly accept is refused here with an error naming the frames: a frame given a second
parent (reparenting), an edge that would close a cycle, an edge switching between static and dynamic.
Lookups fail with :class:`UnknownFrameError`, :class:`ConnectivityError` or :class:`ExtrapolationError`
(saying how far the time is outside the buffer). Thread-safe: a listener's callbacks may fill the tree
while another thread looks up.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from humanego_core import geometry
from humanego_core.timeutil import NS_PER_S

DEFAULT_BUFFER_DURATION_NS = 10 * NS_PER_S  # tf2's default cache time


class TransformLookupError(LookupError):
    """A lookup that cannot be answered (base class of the specific reasons)."""


class UnknownFrameError(TransformLookupError):
    pass


class ConnectivityError(TransformLookupError):
    """The two frames are in different trees."""


class ExtrapolationError(TransformLookupError):
    """The requested time lies outside the buffered samples of an edge on the chain."""


class TreeStructureError(ValueError):
    """An edge that would break the tree: reparenting, a cycle, or a change between static and dynamic."""


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)          # sorted; one entry for a static edge
    transforms: list[np.ndarray] = field(default_factory=list)

    def insert(self, T: np.ndarray, stamp_ns: int, buffer_duration_ns: int) -> None:
        if self.static:
            self.stamps, self.transforms = [stamp_ns], [T]
            return
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.transforms[i] = T  # a republished sample replaces the old one
        else:
            self.stamps.insert(i, stamp_ns)
            self.transforms.insert(i, T)
        oldest_kept = bisect.bisect_left(self.stamps, self.stamps[-1] - buffer_duration_ns)
        if oldest_kept:
            del self.stamps[:oldest_kept], self.transforms[:oldest_kept]

    def at(self, stamp_ns: int, child: str) -> np.ndarray:
        if self.static:
            return self.transforms[0]
        stamps = self.stamps
        if stamp_ns < stamps[0] or stamp_ns > stamps[-1]:
            before = stamp_ns < stamps[0]
            gap_s = (stamps[0] - stamp_ns if before else stamp_ns - stamps[-1]) / NS_PER_S
            raise ExtrapolationError(
                f"{self.parent} -> {child}: time {stamp_ns} ns is {gap_s:.6f} s "
                f"{'before the oldest' if before else 'after the newest'} transform buffered "
                f"({len(stamps)} samples in [{stamps[0]}, {stamps[-1]}] ns)")
        i = bisect.bisect_left(stamps, stamp_ns)
        if stamps[i] == stamp_ns:
            return self.transforms[i]
        alpha = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        return geometry.interpolate(self.transforms[i - 1], self.transforms[i], alpha)


class TransformTree:
    """Frames connected by static and timed dynamic transforms; see the module docstring."""

    def __init__(self, buffer_duration_ns: int = DEFAULT_BUFFER_DURATION_NS):
        if buffer_duration_ns <= 0:
            raise ValueError(f"buffer_duration_ns must be positive, got {buffer_duration_ns}")
        self.buffer_duration_ns = int(buffer_duration_ns)
        self._edges: dict[str, _Edge] = {}   # child -> edge to its parent
        self._frames: set[str] = set()
        self._lock = threading.Lock()

    # ----- filling -----
    def set(self, parent: str, child: str, T_parent_child, stamp_ns: int, static: bool = False) -> None:
        """Add ``T_parent_child`` at ``stamp_ns`` (ignored for lookups of a static edge, which holds at all
        times and is replaced by a newer ``set``). Raises TreeStructureError or GeometryError."""
        self._add(parent, child, geometry.check_transform(T_parent_child, f"transform {parent} -> {child}"),
                  stamp_ns, static)

    def set_many(self, edges, static: bool = False) -> list[tuple[int, ValueError]]:
        """Add the (parent, child, T_parent_child, stamp_ns) of ``edges`` (what one TF message carries), checked
        as one batch; returns the (index, error) of the edges refused, having added all the others."""
        edges = list(edges)
        try:
            geometry.check_transform(np.stack([T for _, _, T, _ in edges]), "transforms")
            checked = True
        except ValueError:  # some transform is bad: check them one by one to find it
            checked = False
        refused = []
        for i, (parent, child, T, stamp_ns) in enumerate(edges):
            try:
                if checked:
                    self._add(parent, child, np.asarray(T, dtype=np.float64), stamp_ns, static)
                else:
                    self.set(parent, child, T, stamp_ns, static)
            except ValueError as exc:  # GeometryError, TreeStructureError
                refused.append((i, exc))
        return refused

    def _add(self, parent: str, child: str, T: np.ndarray, stamp_ns: int, static: bool) -> None:
        if not parent or not child:
            raise TreeStructureError(f"frame names must not be empty (parent {parent!r}, child {child!r})")
        if parent == child:
            raise TreeStructureError(f"transform from frame {child!r} to itself")
        stamp_ns = int(stamp_ns)
        with self._lock:
            edge = self._edges.get(child)
            if edge is None:
                if self._is_ancestor(child, parent):
                    raise TreeStructureError(
                        f"{parent} -> {child} would close a cycle: {child} is already an ancestor of {parent} "
                        f"({' -> '.join(reversed(self._chain(parent)))})")
                edge = self._edges[child] = _Edge(parent, bool(static))
                self._frames.update((parent, child))
            elif edge.parent != parent:
                raise TreeStructureError(
                    f"frame {child!r} already has parent {edge.parent!r}; refusing to reparent it to {parent!r} "
                    "(two publishers disagree about the tree)")
            elif edge.static != bool(static):
                kinds = ("static", "dynamic")
                raise TreeStructureError(
                    f"{parent} -> {child} is {kinds[not edge.static]} and was now given as "
                    f"{kinds[not static]} (/tf and /tf_static publishers disagree)")
            edge.insert(T, stamp_ns, self.buffer_duration_ns)

    # ----- queries -----
    @property
    def frames(self) -> list[str]:
        with self._lock:
            return sorted(self._frames)

    def parent(self, frame: str) -> str | None:
        """The parent of ``frame``; None for a root. Raises UnknownFrameError."""
        with self._lock:
            self._require(frame)
            edge = self._edges.get(frame)
            return None if edge is None else edge.parent

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """``T_target_source`` at ``stamp_ns`` (None: the latest time the whole chain has data)."""
        with self._lock:
            self._require(target_frame)
            self._require(source_frame)
            up_source, up_target = self._path_to_common_ancestor(target_frame, source_frame)
            edges = [self._edges[f] for f in up_source + up_target]
            if stamp_ns is None:
                dynamic = [e.stamps[-1] for e in edges if not e.static]
                stamp_ns = min(dynamic) if dynamic else 0
            T_common_source = self._compose_up(up_source, stamp_ns)
            T_common_target = self._compose_up(up_target, stamp_ns)
        return geometry.invert(T_common_target) @ T_common_source

    # ----- internals (called with the lock held) -----
    def _require(self, frame: str) -> None:
        if frame not in self._frames:
            known = ", ".join(sorted(self._frames)) or "none yet"
            raise UnknownFrameError(f"unknown frame {frame!r} (known frames: {known})")

    def _chain(self, frame: str) -> list[str]:
        """``frame`` and its ancestors up to its root."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _is_ancestor(self, ancestor: str, frame: str) -> bool:
        return ancestor in self._chain(frame)

    def _path_to_common_ancestor(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Frames whose parent edges lead from source and from target up to their lowest common ancestor."""
        source_chain, target_chain = self._chain(source), self._chain(target)
        in_target = set(target_chain)
        common = next((f for f in source_chain if f in in_target), None)
        if common is None:
            raise ConnectivityError(
                f"{source!r} and {target!r} are not connected: {source!r} is in the tree of {source_chain[-1]!r}, "
                f"{target!r} in the tree of {target_chain[-1]!r}")
        return source_chain[:source_chain.index(common)], target_chain[:target_chain.index(common)]

    def _compose_up(self, frames: list[str], stamp_ns: int) -> np.ndarray:
        """T_ancestor_frame for the chain ``frames[0] -> ... -> parent of frames[-1]``."""
        T = np.eye(4)
        for frame in frames:
            T = self._edges[frame].at(stamp_ns, frame) @ T
        return T
