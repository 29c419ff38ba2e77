"""Preprocessing with the keypoints object-pose method (objects.pose_method: keypoints) end to end on a short
synthetic recording: keypoints on the object masks, LK tracks, triangulation with the SLAM poses, 6-DoF poses
from the 3D keypoints; the training frames validate, and the object poses follow the simulator's."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from humanego_core import training_data
from humanego_perception.object_keypoints import KeypointPoseConfig
from humanego_sim.aria_recording import Recording
from humanego_sim.tasks import load_task
from humanego_training.image_io import read_rgb
from humanego_training.preprocess import CACHE, Preprocessor, load_preprocess_config
from humanego_training.report import REPORT_JSON

from .conftest import SIZE


@pytest.mark.slow
@pytest.mark.timeout(900)  # generating the demos and a whole preprocess: ~1 min of CPU, minutes on a busy machine
def test_keypoints_pose_method_through_the_preprocessor(demos_dir, tmp_path):
    recording = Path(shutil.copytree(demos_dir / "demo_0000", tmp_path / "demo"))
    config = load_preprocess_config(None)
    config.image.width = config.image.height = SIZE
    config.objects.pose_method = "keypoints"
    pre = Preprocessor(load_task("serve_bread"), config, progress=False)
    result = pre.run(recording)
    assert result.kept > 20, result.dropped

    # The objects' tracks are the keypoints method's: triangulated keypoints (not a shape's 8 corners / rims),
    # a reprojection error of tracked points, timings of tracking and triangulation in the report.
    for name, track in result.objects.items():
        assert track.valid.mean() > 0.9, (name, set(track.reason))
        assert len(track.keypoints_world) >= KeypointPoseConfig().min_keypoints
        assert np.isfinite(track.reprojection_error_px) and track.reprojection_error_px < 2.0
        assert np.all(np.isfinite(track.T_world_obj))
        first = np.flatnonzero(track.valid)[0]  # before any grasp: standing upright on the table
        np.testing.assert_allclose(track.T_world_obj[first, :3, 2], [0.0, 0.0, 1.0], atol=1e-9)
    report = json.loads((recording / "preprocess" / REPORT_JSON).read_text())
    assert report["config"]["objects"]["pose_method"] == "keypoints"
    assert (recording / CACHE / "objects.json").is_file()

    # Every kept frame validates, with its images, and the objects lie where the simulator put them. Measured
    # at 320 px on this recording: median 7 mm (bread), 15 mm (plate).
    gt = Recording.open(recording).gt(masks=False)
    files = sorted((recording / training_data.ALL_DATA).glob(f"[0-9]*/{training_data.FILE_NAME}"))
    assert len(files) == result.kept
    errors = {"bread": [], "plate": []}
    for path in files:
        data = training_data.load(path, recording)
        frame = data["metadata"]["frame_index"]
        for entity in data["entities"]["objects"].values():
            T = np.array(entity["T_obj_to_world"])
            errors[entity["name"]].append(np.linalg.norm(T[:3, 3] - gt[f"T_world_{entity['name']}"][frame][:3, 3]))
        assert read_rgb(recording / data["obs"]["rgb_WoArm_WArmObjKpts_path"]).shape == (SIZE, SIZE, 3)
    medians = {name: float(np.median(e)) for name, e in errors.items()}
    print(medians)
    assert medians["bread"] < 0.04 and medians["plate"] < 0.06
