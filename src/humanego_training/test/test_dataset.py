"""humanego_training.dataset on tiny recordings written by the tests: targets against hand-computed poses, the
split by recording, bad input, augmentation geometry and the image cache."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from humanego_core import training_data
from humanego_core.actions import decode_actions
from humanego_core.config import ConfigError, from_dict
from humanego_core.ict import TYPE_HAND_RIGHT, TYPE_OBJECT_ANCHOR, TYPE_OBJECT_OTHER
from humanego_training.dataset import (
    AugmentConfig,
    DataConfig,
    PolicyDataset,
    augment_batch,
    compute_dataset_stats,
    expand_recordings,
    future_targets,
    load_recording,
    split_recordings,
)
from humanego_training.image_io import write_image

from .training_recordings import CAM0, FPS, PLATE, SIZE, K, hand_at, write_recording

torch.set_num_threads(1)
def config(**overrides) -> DataConfig:
    values = {"recordings": [], "cache_dir": None, "ict": {"frame_mode": "camera_frame"}, **overrides}
    return from_dict(DataConfig, values, "test")


@pytest.fixture
def recording(tmp_path) -> Path:
    # Frame 4 was dropped by preprocessing: a 2-frame hole between frames 3 and 5.
    return write_recording(tmp_path / "rec", [0, 1, 2, 3, 5, 6], finished_from=6, grasp_from=2)


def test_targets_are_the_future_hand_in_the_reference_frame(recording):
    rec = load_recording(recording, config())
    T_ref, grasp, valid = future_targets(rec, horizon=4, rate_hz=FPS, max_gap_s=0.05)
    inv_cam0 = np.linalg.inv(CAM0)
    # Frame 1 (t = 1/30): steps at frames 2, 3, 4 (in the hole: interpolated) and 5.
    for k, i in enumerate([2, 3, 4, 5]):
        np.testing.assert_allclose(T_ref[1, k], inv_cam0 @ hand_at(i / FPS), atol=1e-12)
    np.testing.assert_array_equal(grasp[1], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(valid[1], [True, True, False, True])  # frames 3 and 5 are 2/30 s > 0.05 s apart
    np.testing.assert_allclose(grasp[0], [0.0, 1.0, 1.0, 1.0])
    # The last frames: the last pose repeats, marked invalid.
    np.testing.assert_array_equal(valid[4], [True, False, False, False])
    np.testing.assert_allclose(T_ref[4, 1:], np.broadcast_to(inv_cam0 @ hand_at(6 / FPS), (3, 4, 4)), atol=1e-12)
    assert not valid[5].any()
    _, _, wide = future_targets(rec, horizon=4, rate_hz=FPS, max_gap_s=0.1)
    assert wide[1, 2]


def test_anchor_frame_targets_and_tokens(recording):
    cfg = config(ict={"frame_mode": "anchor_frame"})
    rec = load_recording(recording, cfg)
    T_ref, _, _ = future_targets(rec, horizon=2, rate_hz=FPS, max_gap_s=0.1)
    np.testing.assert_allclose(T_ref[0, 0], np.linalg.inv(PLATE) @ hand_at(1 / FPS), atol=1e-12)
    stats = compute_dataset_stats([rec])
    ds = PolicyDataset([rec], cfg, stats, horizon=2, image_size=(16, 16))
    tokens = ds.tokens[0]
    assert tokens[:3, 0].tolist() == [TYPE_HAND_RIGHT, TYPE_OBJECT_ANCHOR, TYPE_OBJECT_OTHER]
    # The anchor is the reference: its token's position is the origin, normalised.
    np.testing.assert_allclose(tokens[1, 1:4], -stats.pos_mean / stats.pos_std, atol=1e-5)


def test_samples_encode_targets_stats_and_done(recording):
    cfg = config()
    rec = load_recording(recording, cfg)
    stats = compute_dataset_stats([rec])
    positions = np.array([(np.linalg.inv(CAM0) @ hand_at(i / FPS))[:3, 3] for i in [0, 1, 2, 3, 5, 6]])
    np.testing.assert_allclose(stats.pos_mean, positions.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(stats.pos_std, np.maximum(positions.std(axis=0), 0.01), atol=1e-12)
    ds = PolicyDataset([rec], cfg, stats, horizon=3, image_size=(16, 16))
    assert len(ds) == 6
    sample = ds[2]
    assert sample["image"].shape == (3, 16, 16) and sample["image"].dtype == torch.float32
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    T, g = decode_actions(sample["actions"].numpy(), stats)
    for k, i in enumerate([3, 4, 5]):
        np.testing.assert_allclose(T[k], np.linalg.inv(CAM0) @ hand_at(i / FPS), atol=1e-5)
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])
    assert ds.done.tolist() == [0, 0, 0, 0, 0, 1]
    np.testing.assert_allclose(sample["K"], [[40 / 3, 0, 7.5], [0, 40 / 3, 7.5], [0, 0, 1]],
                               atol=1e-5)
    stride = PolicyDataset([rec], from_dict(DataConfig, {"recordings": [], "cache_dir": None, "frame_stride": 2}),
                           stats, horizon=3, image_size=(16, 16))
    assert stride.frame.tolist() == [0, 2, 4]


def test_split_by_recording_keeps_held_out_frames_out_of_training(tmp_path):
    roots = [write_recording(tmp_path / f"rec{i}", [0, 1, 2], offset=(0.0, 0.0, 1.0 * i), seed=i) for i in range(5)]
    assert expand_recordings([tmp_path]) == roots
    train, held = split_recordings(roots, fraction=0.4, seed=3)
    assert len(held) == 2 and not set(train) & set(held) and sorted(train + held) == roots
    assert split_recordings(roots, fraction=0.4, seed=3) == (train, held)
    assert split_recordings(roots, held_out=["rec2"]) == (roots[:2] + roots[3:], [roots[2]])
    assert split_recordings(roots, held_out=[str(roots[4])])[1] == [roots[4]]
    with pytest.raises(ValueError, match="rec9"):
        split_recordings(roots, held_out=["rec9"])
    with pytest.raises(ValueError, match="nothing is left to train on"):
        split_recordings(roots[:1], held_out=["rec0"])
    cfg = config()
    frames = [load_recording(r, cfg) for r in train]
    stats = compute_dataset_stats(frames)
    ds = PolicyDataset(frames, cfg, stats, horizon=2, image_size=(16, 16))
    assert {ds.recordings[i] for i in set(ds.recording.tolist())} == set(train)
    # The held-out recordings (hands 1 m apart per recording) do not move the statistics.
    offsets = [float(r.name[-1]) for r in train]
    assert stats.pos_mean[2] == pytest.approx(np.mean([(np.linalg.inv(CAM0) @ hand_at(0.0, (0, 0, o)))[2, 3]
                                                        for o in offsets]), abs=0.02)


def test_missing_image_is_an_error_naming_it(recording):
    cfg = config()
    missing = next((recording / training_data.ALL_DATA).glob("00002/rgb_WoArm.png"))
    missing.unlink()
    rec = load_recording(recording, cfg)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        PolicyDataset([rec], cfg, compute_dataset_stats([rec]), horizon=2, image_size=(16, 16))


def test_nan_frames_are_rejected_and_counted(tmp_path):
    root = write_recording(tmp_path / "rec", [0, 1, 2, 3], nan_frame=1)
    cfg = config()
    rec = load_recording(root, cfg)
    assert len(rec) == 3 and rec.rejected == {"NaN/inf in entities.hands.right.grasp": 1}
    ds = PolicyDataset([rec], cfg, compute_dataset_stats([rec]), horizon=2, image_size=(16, 16))
    assert len(ds) == 3 and sum(ds.rejected.values()) == 1


def test_schema_errors_name_the_file_and_key(recording):
    with pytest.raises(training_data.TrainingDataError, match="no left hand"):
        load_recording(recording, config(ict={"hand_side": "left"}))
    path = training_data.frame_folder(recording, 3) / training_data.FILE_NAME
    data = json.loads(path.read_text())
    del data["entities"]["hands"]["right"]["grasp"]
    path.write_text(json.dumps(data))
    with pytest.raises(training_data.TrainingDataError, match=f"{path}: entities.hands.right.grasp"):
        load_recording(recording, config())
    with pytest.raises(ConfigError, match="test: ict.frame_mod: unknown key; did you mean 'frame_mode'"):
        config(ict={"frame_mod": "camera_frame"})


def test_augmentation_moves_the_intrinsics_with_the_pixels():
    h = w = 64
    Kb = torch.tensor([[50.0, 0.0, 31.5], [0.0, 50.0, 31.5], [0.0, 0.0, 1.0]]).repeat(8, 1, 1)
    point = np.array([0.05, -0.04, 1.0])  # a dot in the camera frame, inside every crop with its blur
    u, v, _ = Kb[0].numpy() @ point
    yy, xx = np.mgrid[0:h, 0:w]
    dot = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5 ** 2)).astype(np.float32)
    images = torch.from_numpy(np.repeat(dot[None, None], 8, axis=0).repeat(3, axis=1))
    cfg = AugmentConfig(crop_scale=0.8, brightness=0.0, contrast=0.0, saturation=0.0, noise_std=0.0)
    out, K_new = augment_batch(images, Kb, cfg, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and not torch.allclose(K_new, Kb)
    for b in range(8):
        projected = K_new[b].numpy().astype(np.float64) @ point
        weights = out[b, 0].numpy()
        centroid = np.array([(weights * xx).sum(), (weights * yy).sum()]) / weights.sum()
        np.testing.assert_allclose(centroid, projected[:2], atol=0.25)
    colour = AugmentConfig(crop_scale=1.0, brightness=0.3, contrast=0.3, saturation=0.3, noise_std=0.05)
    jittered, K_same = augment_batch(torch.full((4, 3, 8, 8), 0.5), Kb[:4], colour, torch.Generator().manual_seed(1))
    torch.testing.assert_close(K_same, Kb[:4])
    assert 0.0 <= float(jittered.min()) and float(jittered.max()) <= 1.0 and float(jittered.std()) > 0.01


def test_clean_view_draws_the_gripper_at_the_hand(recording):
    rec = load_recording(recording, config())
    stats = compute_dataset_stats([rec])
    clean = PolicyDataset([rec], config(), stats, horizon=2, image_size=(SIZE, SIZE))
    stored = PolicyDataset([rec], config(observation="rgb_WoArm_path"), stats, horizon=2, image_size=(SIZE, SIZE))
    changed = np.any(clean.images[0] != stored.images[0], axis=0)
    assert changed.sum() > 20
    c2w = np.array(rec.data[0]["metadata"]["c2w"])
    u, v, z = K @ (np.linalg.inv(c2w) @ rec.T_world_hand[0])[:3, 3]
    rows, cols = np.nonzero(changed)
    # The gripper is drawn around the hand's projection (its fingers and stem reach ~0.1 m, i.e. ~7 px here).
    assert np.hypot(cols.mean() - u / z, rows.mean() - v / z) < 8


def test_image_cache_is_used_and_invalidated(recording, tmp_path):
    cfg = config(cache_dir=str(tmp_path / "cache"))
    rec = load_recording(recording, cfg)
    stats = compute_dataset_stats([rec])
    first = PolicyDataset([rec], cfg, stats, horizon=2, image_size=(16, 16))
    assert len(list((tmp_path / "cache").rglob("images.npz"))) == 1
    again = PolicyDataset([rec], cfg, stats, horizon=2, image_size=(16, 16))
    np.testing.assert_array_equal(first.images, again.images)
    path = training_data.frame_folder(recording, 0) / "rgb_WoArm.png"
    write_image(path, np.zeros((SIZE, SIZE, 3), np.uint8))
    changed = PolicyDataset([load_recording(recording, cfg)], cfg, stats, horizon=2, image_size=(16, 16))
    assert not np.array_equal(first.images[0], changed.images[0])
    np.testing.assert_array_equal(first.images[1:], changed.images[1:])
