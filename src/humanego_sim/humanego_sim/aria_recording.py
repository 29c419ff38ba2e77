"""Synthetic egocentric recordings in the layout and schemas of a real Aria recording processed by MPS.

One folder per demonstration::

    metadata.json                          task, instruction, seed, fps, RGB size, synthetic: true, format version
    calibration/device_calibration.json    Aria device calibration (RGB camera 1408x1408, like the device)
    rgb/video.mp4                          RGB frames through the Fisheye624 model, H.264; smaller than 1408,
                                           so readers rescale the calibration as for a binned Aria recording
    rgb/frame_timestamps.csv               frame_index, device_timestamp_ns
    slam/closed_loop_trajectory.csv        MPS closed-loop trajectory: every column of the real file, same order
    hand_tracking/hand_tracking_results.csv  MPS hand tracking, v2 schema (landmarks, wrist pose, normals)
    hand_tracking/summary.json             like MPS's summary
    gt/                                    simulator ground truth, never read by preprocessing:
      frames.npz                           per-frame arrays stacked over frames (t_ns, T_world_device,
                                           T_world_rgb, and whatever the generator adds)
      masks/<key>/<frame:06d>.png          per-frame image-sized masks (label maps, arm mask), lossless
      manifest.json                        the keys above, their shapes and dtypes
      episode.json                         outcome: success, predicates, placements, seed, ...

Conventions (as MPS): device time in integer nanoseconds; CSV ``tracking_timestamp_us`` is device
time in microseconds (floor of ns / 1000); poses ``T_world_device`` with the world z up and gravity
(0, 0, -9.81); linear and angular velocities of the device expressed in the device frame, here from
central differences of the written poses; hand landmarks, wrist pose and normals in the device
frame, landmarks in projectaria's ``HandLandmark`` order; a hand not seen has confidence -1 and zeros.
``T_world_rgb`` is the RGB camera's optical frame (z forward, x right, y down), which is projectaria's
camera frame: ``T_world_device @ T_device_rgb``.

:class:`RecordingWriter` writes a recording (into ``<root>.incomplete``, renamed when finished, so a
folder named like a demo is always complete). :class:`Recording` opens one: it is the workspace's
:class:`humanego_drivers.recording.RecordingFolder` (calibration, frames, MPS files through
:mod:`humanego_drivers.mps`) plus what only a synthetic recording has: metadata.json, MPS files with
exactly the writer's headers, the hand summary and gt/. The files' paths and the shared column names
come from humanego_drivers, so the writer and the workspace's readers agree by construction.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_core.ament_index import resource_path
from humanego_core.camera_models import CameraModel
from humanego_core.hand import NUM_LANDMARKS
from humanego_drivers.mps import (
    HAND_TRACKING_CANDIDATES,
    HAND_TRACKING_V2_COLUMNS,
    HANDS,
    TRAJECTORY_CANDIDATES,
    MpsError,
)
from humanego_drivers.recording import (  # re-exported: the layout's shared names
    CALIBRATION,
    FRAME_TIMESTAMP_COLUMNS,
    FRAME_TIMESTAMPS,
    VIDEO,
    RecordingError,
    RecordingFolder,
    rescaled_calibration,
    rgb_calibration_from_json,
)
from humanego_drivers.vrs import RGB_LABEL

FORMAT = "humanego-synthetic-aria-recording"
FORMAT_VERSION = 1
GRAVITY_WORLD = (0.0, 0.0, -9.81)
# H.264 settings: constant quality, visually lossless; yuv420p so that every player decodes it.
VIDEO_CODEC = "libx264"
VIDEO_CRF = 17
VIDEO_PRESET = "medium"
VIDEO_PIX_FMT = "yuv420p"

METADATA = "metadata.json"
# The MPS files at the paths humanego_drivers.mps looks at first (newest MPS layout).
TRAJECTORY = TRAJECTORY_CANDIDATES[0]  # slam/closed_loop_trajectory.csv
HAND_TRACKING = HAND_TRACKING_CANDIDATES[0]  # hand_tracking/hand_tracking_results.csv
HAND_SUMMARY = "hand_tracking/summary.json"
GT_FRAMES = "gt/frames.npz"
GT_MASKS = "gt/masks"
GT_MANIFEST = "gt/manifest.json"
GT_EPISODE = "gt/episode.json"

# Every column of the real closed_loop_trajectory.csv in its order (humanego_drivers.mps requires a subset).
TRAJECTORY_COLUMNS = [
    "graph_uid", "tracking_timestamp_us", "utc_timestamp_ns",
    "tx_world_device", "ty_world_device", "tz_world_device",
    "qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device",
    "device_linear_velocity_x_device", "device_linear_velocity_y_device", "device_linear_velocity_z_device",
    "angular_velocity_x_device", "angular_velocity_y_device", "angular_velocity_z_device",
    "gravity_x_world", "gravity_y_world", "gravity_z_world",
    "quality_score", "geo_available",
    "tx_ecef_device", "ty_ecef_device", "tz_ecef_device",
    "qx_ecef_device", "qy_ecef_device", "qz_ecef_device", "qw_ecef_device",
]

# The v2 schema in the order of the real hand_tracking_results.csv (humanego_drivers.mps defines it so).
HAND_TRACKING_COLUMNS = list(HAND_TRACKING_V2_COLUMNS)
# The row of a hand that was not seen, as MPS writes it: confidence -1, zeros, identity wrist rotation.
_MISSING_HAND = {"confidence": "-1", "landmarks": ["0"] * 3 * NUM_LANDMARKS,
                 "wrist": ["0", "0", "0", "0", "0", "0", "1"], "normals": ["0"] * 6}

_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*$")


def default_calibration_path() -> Path:
    """The shipped Aria device calibration (``config/sim/aria_device_calibration.json``)."""
    return resource_path("config", "sim", "aria_device_calibration.json")


def _calibration_text(calibration_json: str | Path | None) -> tuple[str, str]:
    """(JSON text, where it came from) of a writer's ``calibration_json`` argument."""
    if calibration_json is None:
        calibration_json = default_calibration_path()
    if isinstance(calibration_json, Path) or not calibration_json.lstrip().startswith("{"):
        path = Path(calibration_json)
        if not path.is_file():
            raise FileNotFoundError(f"device calibration {path} not found")
        return path.read_text(), str(path)
    return calibration_json, "calibration_json"


@dataclass
class HandObservation:
    """One hand in one frame, in the DEVICE frame (MPS hand tracking)."""

    landmarks: np.ndarray  # (21, 3) MPS landmark order (projectaria HandLandmark)
    T_device_wrist: np.ndarray  # (4, 4)
    palm_normal: np.ndarray  # (3,)
    wrist_normal: np.ndarray  # (3,)
    confidence: float

    def __post_init__(self):
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64)
        if self.landmarks.shape != (NUM_LANDMARKS, 3) or not np.all(np.isfinite(self.landmarks)):
            raise ValueError(f"landmarks must be finite with shape ({NUM_LANDMARKS}, 3), got {self.landmarks.shape}")
        self.T_device_wrist = geometry.check_transform(self.T_device_wrist, "T_device_wrist")
        for name in ("palm_normal", "wrist_normal"):
            n = np.asarray(getattr(self, name), dtype=np.float64)
            if n.shape != (3,) or not abs(np.linalg.norm(n) - 1.0) < 1e-4:
                raise ValueError(f"{name} must be a unit 3-vector, got {n}")
            setattr(self, name, n)
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence of a seen hand must be in [0, 1], got {self.confidence}")


def _fmt(values, precision: int) -> list[str]:
    return [f"{v:.{precision}f}" for v in np.asarray(values, dtype=np.float64).ravel()]


def device_velocities(t_ns: np.ndarray, T_world_device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear and angular velocity of the device in the device frame (as MPS), by central differences.

    Angular: ``log(R[i+1] R[i-1]^T) / (t[i+1] - t[i-1])`` is the world-frame rate to second order,
    rotated into the device frame by ``R[i]^T``; one-sided differences at the ends.
    """
    t = (np.asarray(t_ns, dtype=np.int64) - int(t_ns[0])) * 1e-9
    idx = np.arange(len(t))
    before, after = np.maximum(idx - 1, 0), np.minimum(idx + 1, len(t) - 1)
    dt = (t[after] - t[before])[:, None]
    R = T_world_device[:, :3, :3]
    v_world = (T_world_device[after, :3, 3] - T_world_device[before, :3, 3]) / dt
    w_world = Rotation.from_matrix(R[after] @ np.swapaxes(R[before], 1, 2)).as_rotvec() / dt
    R_t = np.swapaxes(R, 1, 2)
    return np.einsum("nij,nj->ni", R_t, v_world), np.einsum("nij,nj->ni", R_t, w_world)


class RecordingWriter:
    """Writes one synthetic recording; frames are streamed, everything else is written by :meth:`finish`.

    ``metadata`` must hold ``task``, ``instruction`` and ``seed`` and is stored in metadata.json with
    what the writer adds. ``calibration_json``: the device calibration as JSON text, or a path to
    it (``Path``, or a ``str`` not starting with ``{``); None = the shipped one. ``utc_offset_ns`` is
    added to device time for the trajectory's ``utc_timestamp_ns`` (synthetic data has no wall
    clock: 0 unless the caller has one).

    Use as a context manager: an exception before :meth:`finish` removes the incomplete folder.
    """

    def __init__(self, root: Path, *, width: int, height: int, fps: float, metadata: dict,
                 calibration_json: str | Path | None = None, utc_offset_ns: int = 0):
        self.root = Path(root)
        if self.root.exists():
            raise FileExistsError(f"{self.root} exists already: a recording is never overwritten")
        missing = [k for k in ("task", "instruction", "seed") if k not in metadata]
        if missing:
            raise ValueError(f"metadata is missing {', '.join(missing)}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"video size must be positive and even (H.264 4:2:0), got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.metadata = dict(metadata)
        self.utc_offset_ns = int(utc_offset_ns)
        self.calibration_json, source = _calibration_text(calibration_json)
        self._rgb_full = rgb_calibration_from_json(self.calibration_json, source)
        self._rgb = rescaled_calibration(self._rgb_full, self.width, self.height, source)
        self._t_ns: list[int] = []
        self._metadata_record()  # checked now: a conflicting key should not cost a rendered demo
        self._hand_rows: list[list[str]] = []
        self._hand_confidences: list[list[float]] = []
        self._gt: dict[str, list[np.ndarray]] = {}
        self._gt_spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._masks: dict[str, str] = {}
        self._trajectory: tuple[np.ndarray, np.ndarray] | None = None

        self.work = self.root.with_name(self.root.name + ".incomplete")
        if self.work.exists():
            shutil.rmtree(self.work)  # left by a writer that crashed; ours by its name
        for sub in ("calibration", "rgb", "slam", "hand_tracking", GT_MASKS):
            (self.work / sub).mkdir(parents=True)
        self._video = imageio_ffmpeg.write_frames(
            str(self.work / VIDEO), (self.width, self.height), fps=self.fps, codec=VIDEO_CODEC,
            pix_fmt_out=VIDEO_PIX_FMT, quality=None, macro_block_size=1,
            output_params=["-crf", str(VIDEO_CRF), "-preset", VIDEO_PRESET])
        self._video.send(None)  # starts ffmpeg
        self._finished = False

    @staticmethod
    def camera_for(width: int, height: int, calibration_json: str | Path | None = None) -> CameraModel:
        """The RGB camera a writer with these arguments records through, before creating one."""
        text, source = _calibration_text(calibration_json)
        return CameraModel.from_projectaria(rescaled_calibration(rgb_calibration_from_json(text, source), width, height,
                                                                 source))

    # ----- calibration -----
    def rgb_calibration(self):
        """projectaria ``CameraCalibration`` of ``camera-rgb`` rescaled to the video size."""
        return self._rgb

    def camera_model(self) -> CameraModel:
        """The same camera as a numpy :class:`CameraModel` (for ``FisheyeRenderer.from_camera_model``)."""
        return CameraModel.from_projectaria(self._rgb)

    @property
    def fisheye_params(self) -> np.ndarray:
        return np.array(self._rgb.get_projection_params(), dtype=np.float64)

    @property
    def T_device_rgb(self) -> np.ndarray:
        """Pose of the RGB camera's optical frame in the device frame (4x4)."""
        return np.array(self._rgb.get_transform_device_camera().to_matrix())

    # ----- streaming -----
    def add_frame(self, t_ns: int, rgb: np.ndarray, hands: dict[str, HandObservation | None],
                  gt: dict[str, np.ndarray]) -> None:
        """Append a video frame at device time ``t_ns`` with its hand tracking and ground truth.

        ``hands``: "left"/"right" -> observation, or None (or absent) when the hand is not seen.
        ``gt``: per-frame arrays with the same keys, shapes and dtypes every frame, stacked by
        :meth:`finish`. Arrays of the video's (height, width) with a bool or integer dtype are
        masks (label maps 0..65535, arm mask): written as PNG each frame, never held in memory.
        """
        if self._finished:
            raise RuntimeError("add_frame after finish")
        frame = len(self._t_ns)
        t_ns = int(t_ns)
        if self._t_ns and t_ns <= self._t_ns[-1]:
            raise ValueError(f"frame {frame}: t_ns {t_ns} is not after the previous frame's {self._t_ns[-1]}")
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame {frame}: rgb must be uint8 ({self.height}, {self.width}, 3), "
                             f"got {rgb.dtype} {rgb.shape}")
        unknown = set(hands) - set(HANDS)
        if unknown:
            raise ValueError(f"frame {frame}: hands must be keyed 'left'/'right', got {sorted(unknown)}")
        self._check_gt(frame, gt)

        self._video.send(np.ascontiguousarray(rgb))
        self._t_ns.append(t_ns)
        self._add_hands(t_ns, hands)
        for key, value in gt.items():
            value = np.asarray(value)
            if key in self._masks:
                self._write_mask(key, frame, value)
            else:
                self._gt[key].append(value.copy())

    def _check_gt(self, frame: int, gt: dict[str, np.ndarray]) -> None:
        for key, value in gt.items():
            if key in ("t_ns", "episode"):
                raise ValueError(f"frame {frame}: gt key '{key}' is reserved (written by the recording writer)")
            if not _KEY.match(key):
                raise ValueError(f"frame {frame}: gt key '{key}' must be letters, digits, _ . - separated by /")
            if np.asarray(value).dtype.kind not in "biufU":
                raise ValueError(f"frame {frame}: gt '{key}' has dtype {np.asarray(value).dtype}: "
                                 "only bool, numbers and strings are stored")
        if frame == 0:
            for key, value in gt.items():
                value = np.asarray(value)
                is_mask = value.shape == (self.height, self.width) and (value.dtype == bool
                                                                         or np.issubdtype(value.dtype, np.integer))
                if is_mask:
                    if "/" in key:
                        raise ValueError(f"frame 0: mask key '{key}' must not contain '/'")
                    self._masks[key] = value.dtype.str
                    (self.work / GT_MASKS / key).mkdir()
                else:
                    self._gt[key] = []
                self._gt_spec[key] = (value.shape, value.dtype)
            return
        if set(gt) != set(self._gt_spec):
            raise ValueError(f"frame {frame}: gt keys {sorted(gt)} differ from frame 0's {sorted(self._gt_spec)}")
        for key, value in gt.items():
            value = np.asarray(value)
            shape, dtype = self._gt_spec[key]
            # Strings may vary in length (numpy's dtype holds it); everything else must match exactly.
            if value.shape != shape or (value.dtype != dtype and not value.dtype.kind == dtype.kind == "U"):
                raise ValueError(f"frame {frame}: gt '{key}' is {value.dtype} {value.shape}, "
                                 f"frame 0 had {dtype} {shape}")

    def _write_mask(self, key: str, frame: int, value: np.ndarray) -> None:
        if value.dtype == bool:
            image = value.astype(np.uint8) * 255
        else:
            if value.min() < 0 or value.max() > np.iinfo(np.uint16).max:
                raise ValueError(f"frame {frame}: mask '{key}' has values outside 0..65535")
            image = value.astype(np.uint8 if value.max() <= 255 else np.uint16)
        path = self.work / GT_MASKS / key / f"{frame:06d}.png"
        if not cv2.imwrite(str(path), image):
            raise OSError(f"could not write {path}")

    def _add_hands(self, t_ns: int, hands: dict[str, HandObservation | None]) -> None:
        conf, landmarks, wrists, normals, seen = [], [], [], [], []
        for side in HANDS:
            hand = hands.get(side)
            if hand is None:
                conf.append(_MISSING_HAND["confidence"])
                landmarks += _MISSING_HAND["landmarks"]
                wrists += _MISSING_HAND["wrist"]
                normals += _MISSING_HAND["normals"]
                continue
            position, quat = geometry.pos_quat_from_transform(hand.T_device_wrist)
            conf += _fmt([hand.confidence], 6)
            landmarks += _fmt(hand.landmarks, 7)
            wrists += _fmt(position, 7) + _fmt(quat, 9)
            normals += _fmt(hand.palm_normal, 9) + _fmt(hand.wrist_normal, 9)
            seen.append(hand.confidence)
        # Column order of the v2 file: per hand confidence + landmarks, then wrists, then normals.
        row = [str(t_ns // 1000), conf[0], *landmarks[:63], conf[1], *landmarks[63:], *wrists, *normals]
        self._hand_rows.append(row)
        self._hand_confidences.append(seen)

    def set_trajectory(self, t_ns: np.ndarray, T_world_device: np.ndarray) -> None:
        """High-rate device poses (e.g. 200 Hz or MPS's 1 kHz) covering every frame time."""
        t = np.asarray(t_ns)
        if t.ndim != 1 or len(t) < 2 or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"t_ns must be a 1-D integer array of at least 2 stamps, got {t.dtype} {t.shape}")
        if np.any(np.diff(t // 1000) <= 0):
            raise ValueError("trajectory stamps must increase by at least 1 us (MPS stores microseconds)")
        T = geometry.check_transform(T_world_device, "T_world_device")
        if T.shape != (len(t), 4, 4):
            raise ValueError(f"T_world_device must have shape ({len(t)}, 4, 4), got {T.shape}")
        self._trajectory = (t.astype(np.int64), T)

    # ----- finishing -----
    def finish(self, episode: dict) -> None:
        """Write the CSVs, ground truth and summaries, close the video and move the folder into place."""
        if self._finished:
            raise RuntimeError("finish called twice")
        if not self._t_ns:
            raise ValueError("a recording needs at least one frame")
        if self._trajectory is None:
            raise ValueError("set_trajectory was not called")
        t_traj, T_traj = self._trajectory
        frames = np.array(self._t_ns, dtype=np.int64)
        if frames[0] < t_traj[0] or frames[-1] > t_traj[-1]:
            raise ValueError(f"frames span {frames[0]}..{frames[-1]} ns, the trajectory only "
                             f"{t_traj[0]}..{t_traj[-1]} ns")
        self._video.close()
        self._finished = True

        w = self.work
        (w / CALIBRATION).write_text(self.calibration_json)
        _write_csv(w / FRAME_TIMESTAMPS, FRAME_TIMESTAMP_COLUMNS, [[str(i), str(t)] for i, t in enumerate(frames)])
        self._write_trajectory(w / TRAJECTORY, t_traj, T_traj)
        _write_csv(w / HAND_TRACKING, HAND_TRACKING_COLUMNS, self._hand_rows)
        seen = [c for frame in self._hand_confidences for c in frame]
        _write_json(w / HAND_SUMMARY, {
            "mean_confidence": float(np.mean(seen)) if seen else 0.0,
            "total_frames": len(frames),
            "valid_frame_fraction": sum(1 for f in self._hand_confidences if f) / len(frames),
            "version": f"{FORMAT}-{FORMAT_VERSION}"})

        arrays = {"t_ns": frames, **{k: np.stack(v) for k, v in self._gt.items()}}
        # Device and camera poses are always there: as given, else one from the other, else from the trajectory.
        if "T_world_device" not in arrays:
            if "T_world_rgb" in arrays:
                arrays["T_world_device"] = geometry.compose(arrays["T_world_rgb"], geometry.invert(self.T_device_rgb))
            else:
                t0 = t_traj[0]
                arrays["T_world_device"] = geometry.interpolate_trajectory((t_traj - t0) * 1e-9, T_traj,
                                                                           (frames - t0) * 1e-9)
        if "T_world_rgb" not in arrays:
            arrays["T_world_rgb"] = geometry.compose(arrays["T_world_device"], self.T_device_rgb)
        np.savez_compressed(w / GT_FRAMES, **arrays)
        _write_json(w / GT_MANIFEST, {
            "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str} for k, v in arrays.items()},
            "masks": {k: {"dtype": d, "files": f"{GT_MASKS}/{k}/<frame:06d>.png"} for k, d in self._masks.items()}})
        _write_json(w / GT_EPISODE, episode)

        _write_json(w / METADATA, self._metadata_record())
        w.rename(self.root)

    def _metadata_record(self) -> dict:
        frames = self._t_ns
        own = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "synthetic": True, "fps": self.fps,
            "rgb_width": self.width, "rgb_height": self.height, "rgb_camera_label": RGB_LABEL,
            "rgb_scale": self.width / int(self._rgb_full.get_image_size()[0]), "num_frames": len(frames),
            "start_device_timestamp_ns": frames[0] if frames else None,
            "end_device_timestamp_ns": frames[-1] if frames else None, "utc_offset_ns": self.utc_offset_ns,
            "video": {"codec": "h264", "encoder": VIDEO_CODEC, "crf": VIDEO_CRF, "pix_fmt": VIDEO_PIX_FMT}}
        # The caller may state what the writer writes (fps, synthetic) only if it agrees.
        for key in own.keys() & self.metadata.keys():
            if self.metadata[key] != own[key]:
                raise ValueError(f"metadata '{key}' is written by the recording writer as {own[key]!r}, "
                                 f"got {self.metadata[key]!r}")
        return {**self.metadata, **own}

    def _write_trajectory(self, path: Path, t_ns: np.ndarray, T: np.ndarray) -> None:
        # One graph, like a single-session MPS run; the id is derived from the demo, so reruns are identical.
        demo = json.dumps(self.metadata, sort_keys=True, default=_json_default)
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"humanego-sim:{demo}"))
        position, quat = geometry.pos_quat_from_transform(T)
        v, omega = device_velocities(t_ns, T)
        fixed = [*_fmt(GRAVITY_WORLD, 6), "1.0", "0", *_fmt([0, 0, 0], 6), *_fmt([0, 0, 0, 1], 9)]
        rows = [[uid, str(t // 1000), str(t + self.utc_offset_ns), *_fmt(p, 6), *_fmt(q, 9), *_fmt(vi, 6),
                 *_fmt(wi, 6), *fixed] for t, p, q, vi, wi in zip(t_ns, position, quat, v, omega, strict=True)]
        _write_csv(path, TRAJECTORY_COLUMNS, rows)

    def abort(self) -> None:
        """Stop writing and remove the incomplete folder."""
        if not self._finished:
            self._video.close()
            self._finished = True
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(row) + "\n" for row in rows)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ----- reading -----
def _read_json(root: Path, name: str, required: tuple[str, ...] = ()) -> dict:
    path = root / name
    if not path.is_file():
        raise RecordingError(f"{path}: missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordingError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise RecordingError(f"{path}: must hold a JSON object")
    missing = [k for k in required if k not in data]
    if missing:
        raise RecordingError(f"{path}: missing key(s) {', '.join(missing)}")
    return data


def _check_header(path: Path, columns: list[str]) -> None:
    """The writer writes MPS's exact header; humanego_drivers.mps accepts any order and extra columns."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    for what, names in (("missing", [c for c in columns if c not in header]),
                        ("unexpected", [c for c in header if c not in columns])):
        if names:
            raise RecordingError(f"{path}: {what} column(s) {', '.join(names)}")
    if header != columns:
        raise RecordingError(f"{path}: columns are not in the MPS order ({','.join(columns[:4])},...)")


class Recording(RecordingFolder):
    """A synthetic recording opened for reading; :meth:`open` validates every file first.

    A :class:`RecordingFolder` (calibration, video, frame timestamps; ``trajectory`` and ``hand_tracking``
    are :mod:`humanego_drivers.mps` objects) with ``metadata`` and ``hand_summary``, and the ground truth.
    """

    metadata: dict
    hand_summary: dict

    @classmethod
    def open(cls, root: str | Path) -> Recording:
        root = Path(root)
        if not root.is_dir():
            raise RecordingError(f"{root}: not a recording folder (does not exist)")
        metadata = _read_json(root, METADATA, ("format", "format_version", "fps", "rgb_width", "rgb_height",
                                               "num_frames", "task", "instruction", "seed"))
        if metadata["format"] != FORMAT or metadata["format_version"] != FORMAT_VERSION:
            raise RecordingError(f"{root / METADATA}: format {metadata['format']!r} version "
                                 f"{metadata['format_version']!r}, this reader reads {FORMAT!r} {FORMAT_VERSION}")
        size, n = (metadata["rgb_width"], metadata["rgb_height"]), metadata["num_frames"]
        if not all(isinstance(v, int) and v > 0 for v in (*size, n)):
            raise RecordingError(f"{root / METADATA}: rgb_width, rgb_height, num_frames must be positive integers")
        # A synthetic recording has its frames as a video and both MPS files, where the writer puts them.
        for name in (VIDEO, TRAJECTORY, HAND_TRACKING):
            if not (root / name).is_file():
                raise RecordingError(f"{root / name}: missing")

        recording = super().open(root)
        recording.metadata = metadata
        if recording.num_frames != n:
            raise RecordingError(f"{root / FRAME_TIMESTAMPS}: {recording.num_frames} frames, {METADATA} says {n}")
        if (recording.width, recording.height) != size:
            raise RecordingError(f"{root / VIDEO}: frames are {recording.width}x{recording.height}, {METADATA} "
                                 f"says {size[0]}x{size[1]}")
        try:  # parsed and checked by humanego_drivers.mps, the trajectory first
            trajectory, hands = recording.trajectory, recording.hand_tracking
        except MpsError as e:
            raise RecordingError(str(e)) from e
        _check_header(trajectory.path, TRAJECTORY_COLUMNS)
        _check_header(hands.path, HAND_TRACKING_COLUMNS)
        if not np.array_equal(hands.t_ns, recording.frame_timestamps_ns // 1000 * 1000):
            raise RecordingError(f"{root / HAND_TRACKING}: column tracking_timestamp_us must hold the frame times "
                                 f"of {FRAME_TIMESTAMPS} in us, one row per frame ({n})")
        recording.hand_summary = _read_json(root, HAND_SUMMARY, ("mean_confidence", "total_frames",
                                                                 "valid_frame_fraction", "version"))
        return recording

    @property
    def fps(self) -> float:
        return float(self.metadata["fps"])

    # ----- MPS -----
    def device_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """Trajectory as arrays: device time (ns, from the CSV's microseconds) and T_world_device (N, 4, 4)."""
        return self.trajectory.t_ns.copy(), self.trajectory.T_world_device.copy()

    def device_pose_at(self, t_ns) -> np.ndarray:
        """T_world_device (..., 4, 4) at device times ``t_ns`` from the trajectory (SLERP + linear).

        The CSV holds microseconds, so times up to 1 us past either end are clamped to it; further out
        raises :class:`humanego_drivers.mps.MpsError` (a ``ValueError``).
        """
        return self.trajectory.at(t_ns)

    # ----- ground truth -----
    def gt(self, masks: bool = True) -> dict:
        """Per-frame ground-truth arrays (N, ...), masks (N, H, W) if ``masks``, and ``episode``."""
        manifest = _read_json(self.root, GT_MANIFEST, ("arrays", "masks"))
        path = self.root / GT_FRAMES
        if not path.is_file():
            raise RecordingError(f"{path}: missing")
        with np.load(path) as npz:
            out = {k: npz[k] for k in npz.files}
        for key, spec in manifest["arrays"].items():
            if key not in out:
                raise RecordingError(f"{path}: missing array {key} (listed in {GT_MANIFEST})")
            if list(out[key].shape) != spec["shape"]:
                raise RecordingError(f"{path}: array {key} has shape {out[key].shape}, "
                                     f"{GT_MANIFEST} says {spec['shape']}")
        if masks:
            for key in manifest["masks"]:
                out[key] = np.stack([self.gt_mask(key, i, manifest) for i in range(self.num_frames)])
        out["episode"] = _read_json(self.root, GT_EPISODE)
        return out

    def gt_mask(self, key: str, index: int, manifest: dict | None = None) -> np.ndarray:
        """One frame's mask ``key`` (H, W) in the dtype it was given to the writer."""
        manifest = manifest or _read_json(self.root, GT_MANIFEST, ("arrays", "masks"))
        if key not in manifest["masks"]:
            raise KeyError(f"no mask {key!r} in {self.root / GT_MANIFEST} (masks: {', '.join(manifest['masks'])})")
        path = self.root / GT_MASKS / key / f"{index:06d}.png"
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise RecordingError(f"{path}: missing or not a PNG")
        if image.shape != (self.height, self.width):
            raise RecordingError(f"{path}: {image.shape}, expected ({self.height}, {self.width})")
        dtype = np.dtype(manifest["masks"][key]["dtype"])
        return image > 0 if dtype.kind == "b" else image.astype(dtype)
