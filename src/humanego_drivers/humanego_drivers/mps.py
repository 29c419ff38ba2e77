"""Project Aria MPS outputs (SLAM trajectory, hand tracking) read with validation.

The one MPS reader of the workspace, for camera replay nodes and offline preprocessing alike; plain
Python (numpy), no ROS. It parses the CSVs itself rather than through projectaria_tools' readers,
which skip or default what they cannot find instead of saying which column of which file is missing.

Conventions:

- **Time** is device time in integer nanoseconds (``t_ns``, int64). MPS CSVs hold
  ``tracking_timestamp_us`` (device time in microseconds, floor of ns / 1000), so ``t_ns`` is that
  times 1000 and lookups allow 1 us of slack at both ends of a time range.
- **Poses** are 4x4 float64 homogeneous transforms ``T_a_b`` (maps points from frame b to frame a).
  The trajectory gives ``T_world_device``: the MPS world frame, z up (gravity (0, 0, -9.81)), and
  the Aria device frame (the reference frame of the device calibration).
- **Hand tracking** is in the device frame: per hand ``T_device_wrist``, 21 landmarks in MPS order
  (projectaria's ``HandLandmark``, index constants in :mod:`humanego_core.hand`), and for schema v2
  the palm and wrist normals. A hand not seen in a row has confidence -1 (anything < 0 counts).
- **Schemas**: ``hand_tracking_results.csv`` exists as v1 (landmarks, wrist pose, confidence) and v2
  (v1 plus ``n{x,y,z}_{side}_{palm,wrist}_device`` normals); the schema is detected from the header.
  The older ``wrist_and_palm_poses.csv`` product (wrist/palm positions only) is refused with a
  message saying so. Columns may come in any order and unknown extra columns are ignored (MPS adds
  columns over versions), but every required column must be present.
- **Layout**: newer MPS folders hold ``slam/closed_loop_trajectory.csv``, older ones
  ``trajectory/closed_loop_trajectory.csv``; hands in ``hand_tracking/hand_tracking_results.csv``
  (:func:`find_mps_files`).

Every problem raises :class:`MpsError` naming the file, and the column and line when there is one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanego_core import geometry
from humanego_core.hand import NUM_LANDMARKS

HANDS = ("left", "right")

# A quaternion whose norm is within this of 1 is normalised (CSV rounding); further off is an error.
QUATERNION_NORM_TOLERANCE = 1e-3
# tracking_timestamp_us truncates device time to microseconds: lookups allow this much past either end.
TIME_SLACK_NS = 1000

TRAJECTORY_NAME = "closed_loop_trajectory.csv"
TRAJECTORY_CANDIDATES = ("slam/" + TRAJECTORY_NAME, "trajectory/" + TRAJECTORY_NAME)
HAND_TRACKING_CANDIDATES = ("hand_tracking/hand_tracking_results.csv", "hand_tracking/hand_tracking_results_v2.csv",
                            "hand_tracking/hand_tracking_results_v1.csv")

TIMESTAMP_COLUMN = "tracking_timestamp_us"
TRAJECTORY_POSITION_COLUMNS = ("tx_world_device", "ty_world_device", "tz_world_device")
TRAJECTORY_QUATERNION_COLUMNS = ("qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device")
TRAJECTORY_COLUMNS = (TIMESTAMP_COLUMN, *TRAJECTORY_POSITION_COLUMNS, *TRAJECTORY_QUATERNION_COLUMNS,
                      "quality_score")


def _confidence_column(side: str) -> str:
    return f"{side}_tracking_confidence"


def _landmark_columns(side: str) -> list[str]:
    return [f"{a}_{side}_landmark_{i}_device" for i in range(NUM_LANDMARKS) for a in ("tx", "ty", "tz")]


def _wrist_columns(side: str) -> list[str]:
    return [f"{a}_{side}_device_wrist" for a in ("tx", "ty", "tz", "qx", "qy", "qz", "qw")]


def _normal_columns(side: str, part: str) -> list[str]:
    return [f"n{a}_{side}_{part}_device" for a in "xyz"]


HAND_TRACKING_V1_COLUMNS = (TIMESTAMP_COLUMN,
                            *(c for s in HANDS for c in [_confidence_column(s), *_landmark_columns(s)]),
                            *(c for s in HANDS for c in _wrist_columns(s)))
HAND_NORMAL_COLUMNS = tuple(c for s in HANDS for p in ("palm", "wrist") for c in _normal_columns(s, p))
HAND_TRACKING_V2_COLUMNS = HAND_TRACKING_V1_COLUMNS + HAND_NORMAL_COLUMNS


class MpsError(ValueError):
    """An MPS file or folder that is missing or malformed; the message names the file (and column, line)."""


# ----- CSV parsing -----
class _Table:
    """A CSV read as text: header, rows (all with the header's field count) and each row's line number."""

    def __init__(self, path: Path, header: list[str], rows: list[list[str]], lines: list[int]):
        self.path, self.header, self.rows, self.lines = path, header, rows, lines
        self.index = {name: i for i, name in enumerate(header)}

    def has(self, column: str) -> bool:
        return column in self.index

    def require(self, columns, what: str) -> None:
        missing = [c for c in columns if c not in self.index]
        if missing:
            shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
            raise MpsError(f"{self.path}: missing column(s) {shown} (required in {what})")

    def numbers(self, column: str, integer: bool = False) -> np.ndarray:
        """One column as int64 or finite float64; raises naming the column and line of a bad value."""
        i = self.index[column]
        values = [row[i] for row in self.rows]
        try:
            out = np.array(values, dtype=np.int64 if integer else np.float64)
        except (ValueError, OverflowError):
            k = next(k for k, v in enumerate(values) if not _parses(v, integer))
            raise MpsError(f"{self.path}: column {column}, line {self.lines[k]}: {values[k]!r} is not "
                           f"{'an integer' if integer else 'a number'}") from None
        if not integer and not np.all(np.isfinite(out)):
            k = int(np.argmax(~np.isfinite(out)))
            raise MpsError(f"{self.path}: column {column}, line {self.lines[k]}: {values[k]!r} (NaN or inf)")
        return out

    def stack(self, columns) -> np.ndarray:
        return np.stack([self.numbers(c) for c in columns], axis=-1)

    def line(self, row: int) -> int:
        return self.lines[row]


def _parses(value: str, integer: bool) -> bool:
    try:
        int(value) if integer else float(value)
    except (ValueError, OverflowError):
        return False
    return True


def _read_table(path, what: str) -> _Table:
    path = Path(path)
    if path.is_dir():
        raise MpsError(f"{path}: is a folder, expected the {what} CSV file")
    if not path.is_file():
        raise MpsError(f"{path}: missing (the {what} CSV file)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows, lines = [], []
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as e:
        raise MpsError(f"{path}: not a CSV text file ({e})") from e
    except OSError as e:
        raise MpsError(f"{path}: cannot be read ({e})") from e
    while rows and not rows[-1]:  # blank lines at the end of the file
        rows.pop()
        lines.pop()
    if not rows:
        raise MpsError(f"{path}: empty, expected an MPS {what} CSV with a header line")
    header = [name.strip() for name in rows[0]]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise MpsError(f"{path}: duplicate column(s) {', '.join(duplicates)} in the header")
    if len(rows) < 2:
        raise MpsError(f"{path}: header only, no data rows")
    for row, line in zip(rows[1:], lines[1:], strict=True):
        if len(row) != len(header):
            raise MpsError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)} "
                           f"(truncated file?)")
    return _Table(path, header, rows[1:], lines[1:])


def _timestamps_ns(table: _Table) -> np.ndarray:
    us = table.numbers(TIMESTAMP_COLUMN, integer=True)
    steps = np.diff(us)
    if np.any(steps <= 0):
        k = int(np.argmax(steps <= 0)) + 1
        raise MpsError(f"{table.path}: column {TIMESTAMP_COLUMN}, line {table.line(k)}: {us[k]} is not after the "
                       f"previous row's {us[k - 1]} (timestamps must strictly increase)")
    return us * 1000


def _unit_quaternions(table: _Table, columns, check: np.ndarray | None = None) -> np.ndarray:
    """(N, 4) quaternions [x, y, z, w] normalised; rows in ``check`` (all if None) must have norm 1 within
    the tolerance, other rows that do not are replaced by the identity."""
    q = table.stack(columns)
    norm = np.linalg.norm(q, axis=-1)
    off = np.abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE
    bad = off if check is None else off & check
    if np.any(bad):
        k = int(np.argmax(bad))
        raise MpsError(f"{table.path}: line {table.line(k)}: quaternion ({', '.join(columns)}) has norm "
                       f"{norm[k]:.6g}, not 1 within {QUATERNION_NORM_TOLERANCE:g}")
    q[off] = (0.0, 0.0, 0.0, 1.0)
    norm[off] = 1.0
    return q / norm[:, None]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _seconds(range_ns: tuple[int, int]) -> str:
    return f"{range_ns[0] * 1e-9:.6f}..{range_ns[1] * 1e-9:.6f} s"


# ----- trajectory -----
@dataclass(frozen=True, eq=False)
class Trajectory:
    """MPS closed-loop trajectory: device poses in the MPS world frame (z up). Arrays are read-only."""

    path: Path
    t_ns: np.ndarray  # (N,) int64 device time, strictly increasing
    T_world_device: np.ndarray  # (N, 4, 4) float64
    quality: np.ndarray  # (N,) float64 quality_score

    @property
    def time_range_ns(self) -> tuple[int, int]:
        return int(self.t_ns[0]), int(self.t_ns[-1])

    def contains(self, t_ns) -> np.ndarray:
        """Bool mask (shape of ``t_ns``): within the time range, with 1 us of slack at both ends."""
        t = np.asarray(t_ns, dtype=np.int64)
        first, last = self.time_range_ns
        return (t >= first - TIME_SLACK_NS) & (t <= last + TIME_SLACK_NS)

    def at(self, t_ns) -> np.ndarray:
        """T_world_device (..., 4, 4) at device times ``t_ns`` (...,): SLERP on rotation, linear on position.

        Times up to 1 us outside the range are clamped to its ends; further out raises :class:`MpsError`.
        """
        t = np.asarray(t_ns, dtype=np.int64)
        inside = self.contains(t)
        if not np.all(inside):
            outside = t[~inside]
            lo, hi = int(outside.min()), int(outside.max())
            requested = f"{lo * 1e-9:.6f} s" if lo == hi else _seconds((lo, hi))
            raise MpsError(f"{self.path}: {outside.size} requested device time(s) outside the trajectory: "
                           f"{requested}, the trajectory covers {_seconds(self.time_range_ns)}")
        if len(self.t_ns) == 1:
            return np.broadcast_to(self.T_world_device[0], t.shape + (4, 4)).copy()
        t0 = self.t_ns[0]
        T = geometry.interpolate_trajectory((self.t_ns - t0) * 1e-9, self.T_world_device,
                                            (t.reshape(-1) - t0) * 1e-9)
        return T.reshape(t.shape + (4, 4))


def read_closed_loop_trajectory(path) -> Trajectory:
    """Read an MPS ``closed_loop_trajectory.csv`` (any column order; extra columns ignored)."""
    table = _read_table(path, "closed-loop trajectory")
    if not table.has("tx_world_device") and table.has("tx_odometry_device"):
        raise MpsError(f"{table.path}: an open-loop trajectory (poses in the odometry frame); "
                       f"use {TRAJECTORY_NAME}, whose poses are in the world frame")
    table.require(TRAJECTORY_COLUMNS, f"an MPS {TRAJECTORY_NAME}")
    t_ns = _timestamps_ns(table)
    q = _unit_quaternions(table, TRAJECTORY_QUATERNION_COLUMNS)
    T = geometry.transform_from_pos_quat(table.stack(TRAJECTORY_POSITION_COLUMNS), q)
    return Trajectory(path=table.path, t_ns=_readonly(t_ns), T_world_device=_readonly(T),
                      quality=_readonly(table.numbers("quality_score")))


# ----- hand tracking -----
@dataclass(frozen=True, eq=False)
class HandTracking:
    """MPS hand tracking, one row per tracked frame, everything in the device frame. Arrays are read-only.

    Rows where a hand is not seen (``seen(side)`` False) hold what the file holds there (MPS writes
    zeros), except that ``T_device_wrist`` always is a valid rigid transform: the file's translation
    with the identity rotation where its quaternion is not a unit one (MPS writes 0,0,0,1 or zeros).
    Such rows carry no information: mask them with :meth:`seen`.
    """

    path: Path
    schema: str  # "v1" or "v2" (v2 has palm and wrist normals)
    t_ns: np.ndarray  # (N,) int64 device time, strictly increasing
    confidence: dict[str, np.ndarray]  # side -> (N,) float64; < 0 (MPS: -1) = not seen
    T_device_wrist: dict[str, np.ndarray]  # side -> (N, 4, 4)
    landmarks: dict[str, np.ndarray]  # side -> (N, 21, 3), MPS landmark order
    palm_normal: dict[str, np.ndarray] | None  # side -> (N, 3); None for v1
    wrist_normal: dict[str, np.ndarray] | None  # side -> (N, 3); None for v1

    def seen(self, side: str) -> np.ndarray:
        """(N,) bool: rows where hand ``side`` ("left" or "right") was tracked."""
        if side not in HANDS:
            raise ValueError(f"side must be one of {HANDS}, got {side!r}")
        return self.confidence[side] >= 0.0

    @property
    def time_range_ns(self) -> tuple[int, int]:
        return int(self.t_ns[0]), int(self.t_ns[-1])


def read_hand_tracking(path) -> HandTracking:
    """Read an MPS ``hand_tracking_results.csv``, schema v1 or v2 (any column order; extra columns ignored)."""
    table = _read_table(path, "hand tracking")
    if table.has("tx_left_wrist_device") and not table.has("tx_left_landmark_0_device"):
        raise MpsError(f"{table.path}: the older wrist/palm-only MPS hand tracking output (wrist_and_palm_poses), "
                       f"which has no landmarks or wrist orientation; hand_tracking_results.csv is needed "
                       f"(re-run MPS hand tracking)")
    v2 = any(table.has(c) for c in HAND_NORMAL_COLUMNS)
    table.require(HAND_TRACKING_V2_COLUMNS if v2 else HAND_TRACKING_V1_COLUMNS,
                  f"MPS hand_tracking_results.csv {'v2 (it has normal columns)' if v2 else 'v1'}")
    t_ns = _timestamps_ns(table)
    n = len(t_ns)
    confidence, wrist, landmarks, palm_normal, wrist_normal = {}, {}, {}, {}, {}
    for side in HANDS:
        confidence[side] = _readonly(table.numbers(_confidence_column(side)))
        columns = _wrist_columns(side)
        q = _unit_quaternions(table, columns[3:], check=confidence[side] >= 0.0)
        wrist[side] = _readonly(geometry.transform_from_pos_quat(table.stack(columns[:3]), q))
        landmarks[side] = _readonly(table.stack(_landmark_columns(side)).reshape(n, NUM_LANDMARKS, 3))
        if v2:
            palm_normal[side] = _readonly(table.stack(_normal_columns(side, "palm")))
            wrist_normal[side] = _readonly(table.stack(_normal_columns(side, "wrist")))
    return HandTracking(path=table.path, schema="v2" if v2 else "v1", t_ns=_readonly(t_ns), confidence=confidence,
                        T_device_wrist=wrist, landmarks=landmarks, palm_normal=palm_normal if v2 else None,
                        wrist_normal=wrist_normal if v2 else None)


# ----- folders and time ranges -----
@dataclass(frozen=True)
class MpsFolder:
    """Where the MPS files of one recording are; a path is None when that output is absent."""

    root: Path
    trajectory_path: Path | None
    hand_tracking_path: Path | None


def find_mps_files(root) -> MpsFolder:
    """Locate the closed-loop trajectory and hand tracking in an MPS output folder.

    Trajectory: ``slam/closed_loop_trajectory.csv`` (newer MPS) or ``trajectory/closed_loop_trajectory.csv``
    (older). Hands: ``hand_tracking/hand_tracking_results.csv``, else ``..._v2.csv``, else ``..._v1.csv``.
    Raises :class:`MpsError` if ``root`` is not a folder or holds neither.
    """
    root = Path(root)
    if not root.exists():
        raise MpsError(f"{root}: MPS folder does not exist")
    if not root.is_dir():
        raise MpsError(f"{root}: not a folder (expected an MPS output folder)")

    def first(candidates):
        return next((root / c for c in candidates if (root / c).is_file()), None)

    folder = MpsFolder(root, first(TRAJECTORY_CANDIDATES), first(HAND_TRACKING_CANDIDATES))
    if folder.trajectory_path is None and folder.hand_tracking_path is None:
        looked = ", ".join(str(root / c) for c in TRAJECTORY_CANDIDATES + HAND_TRACKING_CANDIDATES)
        raise MpsError(f"{root}: no MPS trajectory or hand tracking found (looked for {looked})")
    return folder


def check_overlap(frames_range_ns: tuple[int, int], frames_source: str, mps_range_ns: tuple[int, int],
                  mps_source: str) -> None:
    """Raise :class:`MpsError` if two device-time ranges (first, last ns, inclusive) do not overlap at all."""
    for name, (first, last) in (("frames_range_ns", frames_range_ns), ("mps_range_ns", mps_range_ns)):
        if first > last:
            raise ValueError(f"{name} must be (first, last) with first <= last, got ({first}, {last})")
    if frames_range_ns[0] <= mps_range_ns[1] and mps_range_ns[0] <= frames_range_ns[1]:
        return
    raise MpsError(f"{frames_source} spans device time {_seconds(frames_range_ns)} but {mps_source} spans "
                   f"{_seconds(mps_range_ns)}: no overlap at all; the MPS folder probably belongs to another "
                   f"recording")
