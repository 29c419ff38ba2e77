"""The preprocessing pipeline end to end on synthetic recordings, through its command line (another process)."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from humanego_core import training_data
from humanego_sim.aria_recording import Recording
from humanego_sim.tasks import load_task
from humanego_training.image_io import read_rgb, write_image
from humanego_training.preprocess import CACHE, FRAMES, Preprocessor, load_preprocess_config
from humanego_training.report import REPORT_JSON, REPORT_PNG

from .conftest import SIZE

CONFIG = f"""
image: {{width: {SIZE}, height: {SIZE}, rotate_cw90: true, format: png}}
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "preprocess.yaml"
    path.write_text(CONFIG)
    return path


def preprocess(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["humanego", "run", "humanego_training", "preprocess", "--task", "serve_bread",
                           "--no-progress", *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def processed(demos_dir, config_file, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, Path]:
    """Both demos preprocessed (a folder of recordings) and exported to HDF5."""
    root = Path(shutil.copytree(demos_dir, tmp_path_factory.mktemp("processed") / "demos"))
    hdf5 = root / "egomimic.hdf5"
    result = preprocess("--recording", root, "--config", config_file, "--hdf5", hdf5)
    return root, result, hdf5


def frames_of(recording: Path) -> list[Path]:
    return sorted((recording / training_data.ALL_DATA).glob(f"[0-9]*/{training_data.FILE_NAME}"))


def test_every_kept_frame_validates_with_its_images_and_no_nan(processed):
    root, result, _ = processed
    assert result.returncode == 0, result.stderr
    for demo in ("demo_0000", "demo_0001"):
        recording = root / demo
        files = frames_of(recording)
        assert len(files) > 20, result.stdout
        gt = Recording.open(recording).gt(masks=False)
        for path in files:
            data = training_data.load(path, recording)  # schema, rigid transforms, finite numbers, files exist
            meta = data["metadata"]
            assert (meta["w"], meta["h"]) == (SIZE, SIZE)
            frame = meta["frame_index"]
            # The camera is the rectified camera at the frame: same centre as the simulator's RGB camera.
            np.testing.assert_allclose(np.array(meta["c2w"])[:3, 3], gt["T_world_rgb"][frame][:3, 3], atol=1e-3)
            for key in training_data.IMAGE_KEYS:
                image = read_rgb(recording / data["obs"][key])
                assert image.shape[:2] == (SIZE, SIZE)
            assert data["entities"]["objects"][meta["anchor_key"]]["name"] == "plate"
        report = json.loads((recording / "preprocess" / REPORT_JSON).read_text())
        assert report["kept"] == len(files)
        assert report["kept"] + sum(report["dropped"].values()) == report["frames"]
        assert (recording / "preprocess" / REPORT_PNG).stat().st_size > 10_000
        assert f"{recording}: kept {len(files)}/" in result.stdout


def test_hand_poses_and_grasp_follow_the_ground_truth(processed):
    root, _, _ = processed
    recording = root / "demo_0000"
    gt = Recording.open(recording).gt(masks=False)
    errors, agree = [], []
    for path in frames_of(recording):
        data = json.loads(path.read_text())
        frame = data["metadata"]["frame_index"]
        hand = data["entities"]["hands"]["right"]
        errors.append(np.linalg.norm(np.array(hand["T_hand_to_world"])[:3, 3] - gt["T_world_hand"][frame][:3, 3]))
        agree.append((hand["grasp"] >= 0.5) == bool(gt["grasped"][frame]))
    assert np.median(errors) < 0.01
    assert np.mean(agree) > 0.9


def test_egomimic_hdf5_holds_one_demo_per_recording(processed):
    root, _, hdf5 = processed
    with h5py.File(hdf5) as f:
        assert sorted(f["data"]) == ["demo_0", "demo_1"]
        for name in ("demo_0", "demo_1"):
            demo = f["data"][name]
            T = demo.attrs["num_samples"]
            assert demo["obs/front_img_1"].shape == (T, SIZE, SIZE, 3)
            assert demo["obs/front_img_1"].dtype == np.uint8
            assert demo["obs/ee_pose"].shape == (T, 3)
            actions = demo["actions_xyz_act"][()]
            assert actions.shape == (T, 100, 3) and np.all(np.isfinite(actions))
            # Step 1 of the action chunk at t is the hand at t+1, in the camera at t.
            assert np.linalg.norm(actions[0, 0] - demo["obs/ee_pose"][0]) < 0.05
        names = sorted([n.decode() for n in f["mask/train"]] + [n.decode() for n in f["mask/valid"]])
        assert names == ["demo_0", "demo_1"]
        assert f["data"].attrs["total"] == sum(f["data"][n].attrs["num_samples"] for n in ("demo_0", "demo_1"))


def test_rerun_resumes_from_the_caches(processed, config_file):
    root, _, _ = processed
    recording = root / "demo_0000"
    before = {p: p.stat().st_mtime_ns for p in frames_of(recording)}
    frame_files = {p: p.stat().st_mtime_ns for p in (recording / CACHE / FRAMES).iterdir()}
    result = preprocess("--recording", recording, "--config", config_file)
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in frames_of(recording)} == before
    assert {p: p.stat().st_mtime_ns for p in (recording / CACHE / FRAMES).iterdir()} == frame_files
    report = json.loads((recording / "preprocess" / REPORT_JSON).read_text())
    assert report["stages"]["hands"]["seconds"] < 1.0  # loaded, not recomputed


def lose_hand(recording: Path, first_s: float, last_s: float) -> None:
    """Mark the hands not seen (MPS: confidence -1) between two times after the first frame."""
    path = recording / "hand_tracking" / "hand_tracking_results.csv"
    with path.open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    t0 = int(body[0][header.index("tracking_timestamp_us")])
    for row in body:
        t = (int(row[header.index("tracking_timestamp_us")]) - t0) * 1e-6
        if first_s <= t <= last_s:
            for side in ("left", "right"):
                row[header.index(f"{side}_tracking_confidence")] = "-1"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *body])


def test_hand_lost_for_a_while_is_kept_out_and_counted(demos_dir, config_file, tmp_path):
    recording = Path(shutil.copytree(demos_dir / "demo_0000", tmp_path / "demo"))
    gt = Recording.open(recording).gt(masks=False)
    t = (gt["t_ns"] - gt["t_ns"][0]) * 1e-9
    grasped = np.flatnonzero(gt["grasped"])
    lost_from, lost_to = t[grasped[0]] + 0.3, t[grasped[0]] + 0.9  # 0.6 s while carrying
    lose_hand(recording, lost_from, lost_to)
    result = preprocess("--recording", recording, "--config", config_file)
    assert result.returncode == 0, result.stderr
    report = json.loads((recording / "preprocess" / REPORT_JSON).read_text())
    assert report["dropped"].get("hand: gap_too_long", 0) + report["dropped"].get("hand: not_tracked", 0) >= 15
    lost = set(np.flatnonzero((t >= lost_from + 0.2) & (t <= lost_to - 0.2)))
    for path in frames_of(recording):
        data = json.loads(path.read_text())
        assert data["metadata"]["frame_index"] not in lost
        assert np.all(np.isfinite(data["entities"]["hands"]["right"]["T_hand_to_world"]))


def test_frames_without_the_object_are_dropped_and_reported(demos_dir, tmp_path):
    """The bread painted out of some cached frames: no mask there, those frames are dropped and counted."""
    recording = Path(shutil.copytree(demos_dir / "demo_0000", tmp_path / "demo"))
    config = load_preprocess_config(None)
    config.image.width = config.image.height = SIZE
    pre = Preprocessor(load_task("serve_bread"), config, progress=False)
    first = pre.run(recording)
    folder = recording / CACHE / FRAMES
    kept = [json.loads(p.read_text())["metadata"]["frame_index"] for p in frames_of(recording)]
    painted = kept[len(kept) // 2: len(kept) // 2 + 4]
    for i in painted:
        image = read_rgb(folder / f"{i:05d}.png")
        bread = pre.detector.detect(image, pre.prompts)["bread"]
        assert bread.any()
        covered = cv2.dilate(bread.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        ring = cv2.dilate(covered.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~covered
        image[covered] = np.median(image[ring], axis=0).astype(np.uint8)  # the table around it
        write_image(folder / f"{i:05d}.png", image)
    for stage in ("masks", "objects"):
        (recording / CACHE / f"{stage}.json").unlink()
    second = pre.run(recording)
    assert second.dropped.get("bread: empty mask", 0) >= first.dropped.get("bread: empty mask", 0) + len(painted)
    report = json.loads((recording / "preprocess" / REPORT_JSON).read_text())
    assert report["dropped"]["bread: empty mask"] == second.dropped["bread: empty mask"]
    still_kept = {json.loads(p.read_text())["metadata"]["frame_index"] for p in frames_of(recording)}
    assert not still_kept & set(painted)


def test_bad_input_is_an_error_that_names_the_file(demos_dir, tmp_path):
    recording = Path(shutil.copytree(demos_dir / "demo_0000", tmp_path / "demo"))
    shutil.rmtree(recording / "hand_tracking")
    result = preprocess("--recording", recording)
    assert result.returncode == 1  # that recording failed (the others of a folder would go on)
    assert str(recording / "hand_tracking" / "hand_tracking_results.csv") in result.stderr
    result = preprocess("--recording", tmp_path / "absent")
    assert result.returncode == 2 and "no such folder" in result.stderr
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("image: {widht: 64}\n")
    result = preprocess("--recording", recording, "--config", bad_config)
    assert result.returncode == 2 and "image.widht: unknown key; did you mean 'width'?" in result.stderr


def test_help_and_config_description():
    result = preprocess("--help")
    assert result.returncode == 0 and "--recording" in result.stdout and "training_data.json" in result.stdout
    result = preprocess("--describe-config")
    assert result.returncode == 0 and "hand.grasp_close_m" in result.stdout
