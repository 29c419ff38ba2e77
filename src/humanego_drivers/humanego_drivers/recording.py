"""Recording folders: RGB frames with device timestamps, an Aria device calibration and MPS outputs.

The layout (DESIGN.md section 5; the synthetic recordings of ``humanego_sim`` are one case of it)::

    calibration/device_calibration.json   Aria device calibration (projectaria's JSON; camera-rgb is used)
    rgb/video.mp4                         the RGB frames as a video ...
    rgb/*.png | rgb/*.jpg                 ... or as images, in file-name order
    rgb/frame_timestamps.csv              frame_index, device_timestamp_ns: one row per frame
    slam/ or trajectory/closed_loop_trajectory.csv    MPS closed-loop trajectory (optional)
    hand_tracking/hand_tracking_results.csv           MPS hand tracking (optional)

Frames may be smaller than the calibrated sensor (binned, or a smaller video): the calibration is
rescaled to the frame size, which must keep the sensor's aspect ratio. The device calibration of a real
recording can be written from its VRS with projectaria-tools
(``calibration.device_calibration_to_json_string(provider.get_device_calibration())``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
from projectaria_tools.core import calibration as aria_calibration

from humanego_core.camera_models import CameraModel
from humanego_drivers.aria import STREAMS
from humanego_drivers.mps import (
    HandTracking,
    MpsError,
    Trajectory,
    find_mps_files,
    read_closed_loop_trajectory,
    read_hand_tracking,
)
from humanego_drivers.replay import CameraStream, ReplaySource
from humanego_drivers.vrs import RGB_LABEL

CALIBRATION = "calibration/device_calibration.json"
VIDEO = "rgb/video.mp4"
FRAME_TIMESTAMPS = "rgb/frame_timestamps.csv"
FRAME_TIMESTAMP_COLUMNS = ["frame_index", "device_timestamp_ns"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class RecordingError(ValueError):
    """A file of a recording is missing or malformed; the message names the file (and column, line)."""


def rgb_calibration_from_json(text: str, source: str):
    """projectaria ``CameraCalibration`` of camera-rgb in the device calibration JSON ``text`` (from ``source``)."""
    try:
        json.loads(text)
        device = aria_calibration.device_calibration_from_json_string(text)
    except json.JSONDecodeError as e:
        raise RecordingError(f"{source}: not valid JSON ({e})") from e
    except RuntimeError as e:  # projectaria's parser raises on missing fields
        raise RecordingError(f"{source}: not a device calibration projectaria_tools can parse ({e})") from e
    if device is None:
        raise RecordingError(f"{source}: not a device calibration projectaria_tools can parse")
    rgb = device.get_camera_calib(RGB_LABEL)
    if rgb is None:
        raise RecordingError(f"{source}: no camera '{RGB_LABEL}' (cameras: {', '.join(device.get_camera_labels())})")
    return rgb


def rescaled_calibration(rgb, width: int, height: int, source: str):
    """``rgb`` (a projectaria ``CameraCalibration``) for frames of ``width`` x ``height``."""
    full_w, full_h = (int(v) for v in rgb.get_image_size())
    if width * full_h != height * full_w:
        raise RecordingError(f"{source}: {width}x{height} does not have the aspect ratio of the {full_w}x{full_h} "
                             f"'{RGB_LABEL}' calibration")
    return rgb.rescale(np.array([width, height]), width / full_w)


def read_frame_timestamps(root: Path) -> np.ndarray:
    """Device times (ns) of ``rgb/frame_timestamps.csv``: exactly its two columns, frame_index 0, 1, 2, ...,
    strictly increasing times."""
    path = root / FRAME_TIMESTAMPS
    if not path.is_file():
        raise RecordingError(f"{path}: missing")
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows or rows[0] != FRAME_TIMESTAMP_COLUMNS:
        missing = [c for c in FRAME_TIMESTAMP_COLUMNS if not rows or c not in rows[0]]
        what = f"missing column(s) {', '.join(missing)}" if missing else "columns in the wrong order"
        raise RecordingError(f"{path}: {what}; the header must be {','.join(FRAME_TIMESTAMP_COLUMNS)}")
    if len(rows) < 2:
        raise RecordingError(f"{path}: no data rows")
    values = np.empty((len(rows) - 1, 2), dtype=np.int64)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise RecordingError(f"{path}: line {line} has {len(row)} fields, expected 2 (truncated file?)")
        try:
            values[line - 2] = [int(v) for v in row]
        except ValueError:
            raise RecordingError(f"{path}: line {line}: {row!r} are not integers") from None
    if not np.array_equal(values[:, 0], np.arange(len(values))):
        raise RecordingError(f"{path}: column frame_index must count 0, 1, 2, ...")
    bad = np.flatnonzero(np.diff(values[:, 1]) <= 0)
    if bad.size:
        raise RecordingError(f"{path}: column device_timestamp_ns must increase (line {bad[0] + 3})")
    return values[:, 1]


class RecordingFolder:
    """A recording folder opened for reading; :meth:`open` checks every file it finds before any use."""

    def __init__(self, root: Path, calibration_json: str, frame_timestamps_ns: np.ndarray, width: int, height: int,
                 images: list[Path] | None):
        self.root = root
        self.calibration_json = calibration_json
        self.frame_timestamps_ns = frame_timestamps_ns
        self.width, self.height = width, height
        self._images = images  # None: frames are the video
        try:
            self.mps = find_mps_files(root)
        except MpsError:  # a folder of frames only
            self.mps = None

    @classmethod
    def open(cls, root: str | Path) -> RecordingFolder:
        root = Path(root)
        if not root.is_dir():
            raise RecordingError(f"{root}: not a recording folder (no such directory)")
        path = root / CALIBRATION
        if not path.is_file():
            raise RecordingError(f"{path}: missing (the Aria device calibration; see humanego_drivers.recording)")
        calibration_json = path.read_text()
        rgb = rgb_calibration_from_json(calibration_json, str(path))  # cheap: before the frames are probed
        t = read_frame_timestamps(root)
        video = root / VIDEO
        if video.is_file():
            try:
                count, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
                reader = imageio_ffmpeg.read_frames(str(video))
                try:
                    meta = next(reader)
                finally:
                    reader.close()  # ends the ffmpeg process now, not whenever the generator is collected
            except (RuntimeError, StopIteration, OSError) as e:
                raise RecordingError(f"{video}: not a readable video ({e})") from e
            width, height = meta["size"]
            images = None
        else:
            images = sorted(p for p in (root / "rgb").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
                if (root / "rgb").is_dir() else []
            if not images:
                raise RecordingError(f"{root / 'rgb'}: no frames (neither video.mp4 nor .png/.jpg images)")
            count = len(images)
            first = cv2.imread(str(images[0]), cv2.IMREAD_COLOR)
            if first is None:
                raise RecordingError(f"{images[0]}: not a readable image")
            height, width = first.shape[:2]
        if count != len(t):
            frames = video if images is None else root / "rgb"
            raise RecordingError(f"{frames}: {count} frames, {root / FRAME_TIMESTAMPS} has {len(t)} rows")
        rescaled_calibration(rgb, width, height, str(path))
        return cls(root, calibration_json, t, int(width), int(height), images)

    @property
    def num_frames(self) -> int:
        return len(self.frame_timestamps_ns)

    @cached_property
    def device_calibration(self):
        return aria_calibration.device_calibration_from_json_string(self.calibration_json)

    def rgb_calibration(self):
        """projectaria ``CameraCalibration`` of ``camera-rgb`` rescaled to the frame size."""
        return rescaled_calibration(self.device_calibration.get_camera_calib(RGB_LABEL), self.width, self.height,
                                    str(self.root / CALIBRATION))

    def camera_model(self) -> CameraModel:
        return CameraModel.from_projectaria(self.rgb_calibration())

    def read_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """RGB frames ``start..stop-1`` as (H, W, 3) uint8."""
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if self._images is not None:
            for index in range(start, stop):
                yield self._read_image(index)
            return
        reader = imageio_ffmpeg.read_frames(str(self.root / VIDEO), pix_fmt="rgb24")
        try:
            next(reader)
            for i, data in enumerate(reader):
                if i >= stop:
                    break
                if i >= start:
                    yield np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)
        finally:
            reader.close()

    def read_frame(self, index: int) -> np.ndarray:
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} of a recording with {self.num_frames} frames")
        return next(self.read_frames(index, index + 1))

    def _read_image(self, index: int) -> np.ndarray:
        path = self._images[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RecordingError(f"{path}: not a readable image")
        if bgr.shape[:2] != (self.height, self.width):
            raise RecordingError(f"{path}: {bgr.shape[1]}x{bgr.shape[0]}, the first frame is "
                                 f"{self.width}x{self.height}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    @cached_property
    def trajectory(self) -> Trajectory | None:
        """The MPS closed-loop trajectory, if the folder has one."""
        path = self.mps.trajectory_path if self.mps else None
        return read_closed_loop_trajectory(path) if path else None

    @cached_property
    def hand_tracking(self) -> HandTracking | None:
        """The MPS hand tracking, if the folder has it."""
        path = self.mps.hand_tracking_path if self.mps else None
        return read_hand_tracking(path) if path else None


def open_recording_replay(root: str | Path) -> ReplaySource:
    """A recording folder as a replay source: its RGB frames, trajectory and hand tracking."""
    recording = RecordingFolder.open(root)
    name, frame_id = STREAMS[RGB_LABEL]
    stream = CameraStream(name=name, frame_id=frame_id, camera=recording.camera_model(),
                          timestamps_ns=recording.frame_timestamps_ns, frames=recording.read_frames)
    source = ReplaySource(description=str(recording.root), streams=[stream], trajectory=recording.trajectory,
                          hands=recording.hand_tracking)
    source.check_mps()
    return source
