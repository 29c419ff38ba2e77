import shutil
from pathlib import Path

import numpy as np
import pytest

from humanego_core.camera_models import FISHEYE624
from humanego_training.human_recording import HumanRecordingError, find_recordings, open_human_recording

from .conftest import SIZE

ARIA = Path(__file__).resolve().parents[4] / "shared" / "data" / "aria"


def test_synthetic_recording_opens_with_its_mps_files(demos_dir):
    rec = open_human_recording(demos_dir / "demo_0000")
    assert rec.kind == "folder"
    assert rec.num_frames == len(rec.frame_t_ns) > 10
    assert rec.fps == pytest.approx(30.0, rel=1e-3)
    assert rec.camera.model == FISHEYE624 and rec.camera.width == SIZE
    frames = list(rec.frames([2, 5]))
    assert [i for i, _ in frames] == [2, 5]
    assert frames[0][1].shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(frames[1][1], next(rec.frames([5]))[1])


def test_folder_of_recordings_lists_each(demos_dir):
    assert [p.name for p in find_recordings(demos_dir)] == ["demo_0000", "demo_0001"]
    assert find_recordings(demos_dir / "demo_0001") == [demos_dir / "demo_0001"]


def test_missing_hand_tracking_or_trajectory_names_the_file(demos_dir, tmp_path):
    for folder, missing in (("hand_tracking", "hand_tracking/hand_tracking_results.csv"),
                            ("slam", "slam/closed_loop_trajectory.csv")):
        copy = Path(shutil.copytree(demos_dir / "demo_0000", tmp_path / folder))
        shutil.rmtree(copy / folder)
        with pytest.raises(HumanRecordingError, match=str(copy / missing).replace(".", r"\.")):
            open_human_recording(copy)


def test_not_a_recording(tmp_path):
    with pytest.raises(HumanRecordingError, match="neither a recording"):
        find_recordings(tmp_path)
    with pytest.raises(HumanRecordingError, match="no such folder"):
        find_recordings(tmp_path / "absent")


def test_real_vrs_without_mps_asks_for_it(tmp_path):
    (tmp_path / "recording.vrs").symlink_to(ARIA / "recording.vrs")
    with pytest.raises(HumanRecordingError, match="no MPS output next to recording.vrs"):
        open_human_recording(tmp_path)


def test_real_vrs_with_mps_of_another_recording_is_refused(tmp_path):
    # The shared MPS sample comes from a different recording than the VRS (see shared/data/aria/README.md).
    (tmp_path / "recording.vrs").symlink_to(ARIA / "recording.vrs")
    (tmp_path / "mps").mkdir()
    (tmp_path / "mps" / "slam").symlink_to(ARIA / "mps_sample" / "trajectory")
    (tmp_path / "mps" / "hand_tracking").mkdir()
    shutil.copy(ARIA / "mps_sample" / "hand_tracking" / "hand_tracking_results_v2.csv",
                tmp_path / "mps" / "hand_tracking" / "hand_tracking_results.csv")
    with pytest.raises(HumanRecordingError, match="no overlap at all"):
        open_human_recording(tmp_path)
