"""The human recordings that preprocessing reads, whatever their form, behind one interface.

Two forms (DESIGN.md section 5):

- a real Aria recording: a folder with one ``*.vrs`` and its MPS output, either in the folder itself, in
  ``mps/``, or in ``mps_<vrs name>_vrs/`` (the MPS CLI's default);
- a recording folder (``calibration/device_calibration.json``, ``rgb/`` frames with
  ``rgb/frame_timestamps.csv``, MPS CSVs), which is what the synthetic demos are; their ``gt/`` folder is
  never read here.

Preprocessing needs the closed-loop trajectory and the hand tracking: a recording without either is
refused with the path of the missing file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanego_core.camera_models import CameraModel
from humanego_drivers.mps import (
    HAND_TRACKING_CANDIDATES,
    TRAJECTORY_CANDIDATES,
    HandTracking,
    MpsError,
    Trajectory,
    check_overlap,
    find_mps_files,
    read_closed_loop_trajectory,
    read_hand_tracking,
)
from humanego_drivers.recording import CALIBRATION, RecordingError, RecordingFolder
from humanego_drivers.vrs import VrsReader


class HumanRecordingError(ValueError):
    """A recording that preprocessing cannot use; the message names the file and what is wrong."""


@dataclass
class HumanRecording:
    """A recording's RGB camera, frame times and MPS outputs, plus sequential frame access."""

    root: Path
    kind: str  # "vrs" or "folder"
    camera: CameraModel  # the RGB camera at the frames' resolution (Fisheye624 for Aria)
    frame_t_ns: np.ndarray  # (F,) device time of each RGB frame
    trajectory: Trajectory
    hand_tracking: HandTracking
    _frames: object  # VrsReader or RecordingFolder

    @property
    def num_frames(self) -> int:
        return len(self.frame_t_ns)

    @property
    def fps(self) -> float:
        """The frame rate from the median frame interval."""
        if self.num_frames < 2:
            return 0.0
        return float(1e9 / np.median(np.diff(self.frame_t_ns)))

    def frames(self, indices) -> Iterator[tuple[int, np.ndarray]]:
        """(index, RGB uint8 image) for the increasing frame ``indices``."""
        indices = [int(i) for i in indices]
        if not indices:
            return
        if isinstance(self._frames, VrsReader):
            for i in indices:
                yield i, self._frames.read(i)
            return
        wanted = set(indices)
        for i, image in enumerate(self._frames.read_frames(indices[0], indices[-1] + 1), start=indices[0]):
            if i in wanted:
                yield i, image

    def inputs(self) -> list[Path]:
        """The files whose content the preprocessing result depends on (for the stage caches)."""
        paths = [self.trajectory.path, self.hand_tracking.path]
        if isinstance(self._frames, VrsReader):
            paths.append(Path(self._frames.path))
        else:
            paths += [self.root / CALIBRATION, self.root / "rgb"]
        return paths


def is_recording(folder: Path) -> bool:
    """Whether ``folder`` looks like a recording (rather than a folder of recordings)."""
    return (folder / CALIBRATION).is_file() or any(folder.glob("*.vrs"))


def find_recordings(path: str | Path) -> list[Path]:
    """``path`` itself if it is a recording, else its sub-folders that are (sorted); error if none."""
    path = Path(path)
    if not path.is_dir():
        raise HumanRecordingError(f"{path}: no such folder")
    if is_recording(path):
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and is_recording(p))
    if not found:
        raise HumanRecordingError(
            f"{path}: neither a recording (a *.vrs with its MPS folder, or {CALIBRATION} with rgb/ frames) nor a "
            f"folder of recordings")
    return found


def open_human_recording(path: str | Path) -> HumanRecording:
    """Open a recording for preprocessing; every problem is a HumanRecordingError naming the file."""
    root = Path(path)
    vrs_files = sorted(root.glob("*.vrs")) if root.is_dir() else []
    try:
        if len(vrs_files) > 1:
            raise HumanRecordingError(f"{root}: {len(vrs_files)} .vrs files ({', '.join(p.name for p in vrs_files)});"
                                      f" put each recording in its own folder")
        if vrs_files:
            reader = VrsReader(vrs_files[0])
            mps_root = _mps_folder(root, vrs_files[0])
            camera, t_ns, frames, source = reader.camera_model, np.asarray(reader.timestamps_ns), reader, vrs_files[0]
            kind = "vrs"
        else:
            folder = RecordingFolder.open(root)
            mps_root = root
            camera, t_ns, frames, source = folder.camera_model(), folder.frame_timestamps_ns, folder, root / "rgb"
            kind = "folder"
        trajectory, hands = _read_mps(mps_root)
        check_overlap((int(t_ns[0]), int(t_ns[-1])), str(source), trajectory.time_range_ns, str(trajectory.path))
        check_overlap((int(t_ns[0]), int(t_ns[-1])), str(source), hands.time_range_ns, str(hands.path))
    except (RecordingError, MpsError) as exc:
        raise HumanRecordingError(str(exc)) from None
    except ValueError as exc:  # projectaria / VRS problems
        raise HumanRecordingError(f"{root}: {exc}") from None
    return HumanRecording(root, kind, camera, np.asarray(t_ns, dtype=np.int64), trajectory, hands, frames)


def _mps_folder(root: Path, vrs: Path) -> Path:
    for candidate in (root, root / "mps", root / f"mps_{vrs.stem}_vrs"):
        if any((candidate / c).is_file() for c in TRAJECTORY_CANDIDATES + HAND_TRACKING_CANDIDATES):
            return candidate
    raise HumanRecordingError(
        f"{root}: no MPS output next to {vrs.name} (looked in {root}, {root / 'mps'} and "
        f"{root / f'mps_{vrs.stem}_vrs'} for {TRAJECTORY_CANDIDATES[0]} and {HAND_TRACKING_CANDIDATES[0]}); run "
        f"MPS SLAM and hand tracking on the recording and put the output there")


def _read_mps(mps_root: Path) -> tuple[Trajectory, HandTracking]:
    files = find_mps_files(mps_root)
    if files.trajectory_path is None:
        raise HumanRecordingError(
            f"{mps_root / TRAJECTORY_CANDIDATES[0]}: missing (the MPS closed-loop trajectory, also looked for "
            f"{', '.join(TRAJECTORY_CANDIDATES[1:])}); preprocessing needs the camera poses: run MPS SLAM")
    if files.hand_tracking_path is None:
        raise HumanRecordingError(
            f"{mps_root / HAND_TRACKING_CANDIDATES[0]}: missing (the MPS hand tracking, also looked for "
            f"{', '.join(HAND_TRACKING_CANDIDATES[1:])}); preprocessing needs the hands: run MPS hand tracking")
    return read_closed_loop_trajectory(files.trajectory_path), read_hand_tracking(files.hand_tracking_path)
