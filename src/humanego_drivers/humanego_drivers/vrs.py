"""Reading Project Aria ``.vrs`` recordings with projectaria-tools, with errors a user can act on.

projectaria-tools returns ``None`` for a file it cannot open, raises bare ``RuntimeError`` for some
damaged ones, and silently drops the records of a truncated file (it only logs a warning from C++).
:class:`VrsReader` turns all of these into a :class:`VrsError` naming the file and what is wrong. A
truncated file (an interrupted copy, a full SD card) is refused unless ``allow_truncated`` asks for
the frames that are still complete.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from projectaria_tools.core import calibration as aria_calibration
from projectaria_tools.core import data_provider
from projectaria_tools.core.sensor_data import TimeDomain

from humanego_core.camera_models import CameraModel

RGB_LABEL = "camera-rgb"
SLAM_LABELS = ("camera-slam-left", "camera-slam-right")
VRS_MAGIC_HINT = "an Aria .vrs recording"
_DROPPED = re.compile(r"(\d+) records are beyond the end of the file")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CHATTER = re.compile(r"\]\[(INFO|DEBUG)\]|^\s*$")


class VrsError(ValueError):
    """A .vrs file that cannot be read as asked; the message names the file."""


@contextmanager
def _native_stderr(sink: list[str]):
    """Collect what native code writes to file descriptor 2; show the user its warnings and errors, not the
    INFO lines projectaria-tools prints for every stream it opens."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            sink.append(text)
            shown = [line for line in text.splitlines(keepends=True) if not _CHATTER.search(_ANSI.sub("", line))]
            os.write(2, "".join(shown).encode())


class VrsReader:
    """One camera stream of an Aria recording: frames, device timestamps and the factory calibration."""

    def __init__(self, path: str | Path, label: str = RGB_LABEL, allow_truncated: bool = False):
        self.path = Path(path)
        self.label = label
        if not self.path.exists():
            raise VrsError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise VrsError(f"{self.path}: not a file (expected {VRS_MAGIC_HINT})")
        if self.path.stat().st_size == 0:
            raise VrsError(f"{self.path}: the file is empty")
        log: list[str] = []
        try:
            with _native_stderr(log):
                provider = data_provider.create_vrs_data_provider(str(self.path))
        except RuntimeError as exc:
            raise VrsError(f"{self.path}: damaged or truncated VRS file ({exc})") from None
        if provider is None:
            raise VrsError(f"{self.path}: not {VRS_MAGIC_HINT} (projectaria-tools cannot open it)")
        self.provider = provider
        calibration = provider.get_device_calibration()
        labels = list(calibration.get_camera_labels()) if calibration is not None else []
        if label not in labels:
            raise VrsError(f"{self.path}: no camera {label!r} in the device calibration "
                           f"(cameras: {', '.join(labels) or 'none'})")
        self.stream_id = provider.get_stream_id_from_label(label)
        if self.stream_id is None or not provider.check_stream_is_active(self.stream_id):
            raise VrsError(f"{self.path}: the recording has no {label!r} stream (was it recorded with a profile "
                           f"that turns the camera off?)")
        self.num_frames = provider.get_num_data(self.stream_id)
        dropped = _DROPPED.search("".join(log))
        if dropped and not allow_truncated:
            raise VrsError(f"{self.path}: the file is truncated ({dropped.group(1)} records lie beyond its end: an "
                           f"interrupted copy?); {self.num_frames} {label} frames are complete. Copy it again, or "
                           f"allow truncated files to use those frames")
        self.truncated = bool(dropped)
        if self.num_frames == 0:
            raise VrsError(f"{self.path}: the {label!r} stream has no frames")
        self.timestamps_ns = np.asarray(provider.get_timestamps_ns(self.stream_id, TimeDomain.DEVICE_TIME),
                                        dtype=np.int64)
        if len(self.timestamps_ns) != self.num_frames or np.any(np.diff(self.timestamps_ns) <= 0):
            raise VrsError(f"{self.path}: the {label!r} frame timestamps are not strictly increasing")
        self.device_calibration = calibration
        self.calibration = calibration.get_camera_calib(label)
        self.camera_model = CameraModel.from_projectaria(self.calibration)

    @property
    def time_range_ns(self) -> tuple[int, int]:
        return int(self.timestamps_ns[0]), int(self.timestamps_ns[-1])

    @property
    def nominal_rate_hz(self) -> float:
        return float(self.provider.get_nominal_rate_hz(self.stream_id))

    def device_calibration_json(self) -> str:
        return aria_calibration.device_calibration_to_json_string(self.device_calibration)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index``: (H, W, 3) uint8 RGB for the RGB camera, (H, W) uint8 for the grey ones."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} of {self.num_frames} in {self.path}")
        image, record = self.provider.get_image_data_by_index(self.stream_id, index)
        array = image.to_numpy_array() if image.is_valid() else None
        if array is None or array.size == 0 or record.capture_timestamp_ns != self.timestamps_ns[index]:
            raise VrsError(f"{self.path}: {self.label} frame {index} cannot be decoded")
        expected = (self.camera_model.height, self.camera_model.width)
        if array.shape[:2] != expected:
            raise VrsError(f"{self.path}: {self.label} frame {index} is {array.shape[1]}x{array.shape[0]}, its "
                           f"calibration is for {expected[1]}x{expected[0]}")
        return array
