"""humanego_core.actions: layout, round trip against scipy, statistics files and bad input."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import actions as A
from humanego_core import geometry as g

STATS = A.NormStats(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.25, 2.0]))


def test_layout_by_hand():
    # 90 deg about z at (0.6, 0.7, 0.1), grasp 0.25: xyz z-scored, rot6d = first two columns row by row.
    T = g.make_transform([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [0.6, 0.7, 0.1])
    a = A.encode_actions(T, 0.25, STATS)
    assert a.dtype == np.float32 and a.shape == (A.ACTION_DIM,)
    np.testing.assert_allclose(a, [1.0, 2.0, -0.1, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.25], atol=1e-7)


def test_round_trip_against_scipy():
    rot = Rotation.random(60, random_state=4)
    pos = np.random.default_rng(4).normal(size=(60, 3))
    T = g.make_transform(rot.as_matrix(), pos).reshape(3, 20, 4, 4)
    grasp = np.linspace(0, 1, 60).reshape(3, 20)
    a = A.encode_actions(T, grasp, STATS)
    assert a.shape == (3, 20, 10)
    R = rot.as_matrix().reshape(3, 20, 3, 3)
    np.testing.assert_allclose(a[..., 3:9], R[..., :, :2].reshape(3, 20, 6), atol=1e-6)
    T_back, grasp_back = A.decode_actions(a, STATS)
    np.testing.assert_allclose(T_back[..., :3, :3], R, atol=1e-5)
    np.testing.assert_allclose(T_back[..., :3, 3], pos.reshape(3, 20, 3), atol=1e-5)
    np.testing.assert_allclose(grasp_back, grasp, atol=1e-6)


def test_decode_orthonormalises_and_clips():
    R = Rotation.from_euler("xyz", [0.3, -0.2, 1.1]).as_matrix()
    a = np.zeros(10)
    a[3:9] = (R[:, :2] * [3.0, 0.5]).ravel()  # scaled columns
    a[9] = 1.4
    T, grasp = A.decode_actions(a, STATS)
    np.testing.assert_allclose(T[:3, :3], R, atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], STATS.pos_mean)
    assert grasp == 1.0
    # A second column that is not orthogonal to the first: Gram-Schmidt keeps the first column's direction.
    a[3:9] = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    T, _ = A.decode_actions(a, STATS)
    np.testing.assert_allclose(T[:3, :3], np.eye(3), atol=1e-12)


def test_compute_stats_floors_std():
    p = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 2.001]])
    s = A.compute_stats(p)
    np.testing.assert_allclose(s.pos_mean, [1.0, 1.0, 2.0005])
    np.testing.assert_allclose(s.pos_std, [1.0, A.MIN_POS_STD, A.MIN_POS_STD])


def test_stats_file_round_trip_keeps_other_keys(tmp_path):
    path = tmp_path / "dataset_stats.json"
    A.NormStats(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3]), {"num_samples": 12}).save(path)
    data = json.loads(path.read_text())
    assert data == {"pos": {"mean": [1.0, 2.0, 3.0], "std": [0.1, 0.2, 0.3]}, "num_samples": 12}
    s = A.NormStats.load(path)
    np.testing.assert_array_equal(s.pos_std, [0.1, 0.2, 0.3])
    assert s.extra == {"num_samples": 12}


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ('{"std": 1}', "pos: required"),
    ('{"pos": {"mean": [0, 0], "std": [1, 1, 1]}}', "pos.mean"),
    ('{"pos": {"mean": [0, 0, 0], "std": [1, 0, 1]}}', "pos.std: must be positive"),
    ('{"pos": {"mean": [0, 0, 0], "std": [1, 1, 1], "min": 0}}', "unknown keys"),
])
def test_stats_file_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "dataset_stats.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        A.NormStats.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        A.NormStats.load(tmp_path / "missing.json")


def test_bad_input():
    T = np.eye(4)
    with pytest.raises(ValueError, match="NaN"):
        A.encode_actions(np.full((4, 4), np.nan), 0.0, STATS)
    scaled = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="orthonormal"):
        A.encode_actions(scaled, 0.0, STATS)
    with pytest.raises(ValueError, match="grasp must have shape"):
        A.encode_actions(np.stack([T, T]), 0.0, STATS)
    with pytest.raises(ValueError, match="lie in"):
        A.encode_actions(T, 1.5, STATS)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 10\)"):
        A.decode_actions(np.zeros(9), STATS)
    with pytest.raises(ValueError, match="NaN"):
        A.decode_actions(np.full(10, np.inf), STATS)
    with pytest.raises(ValueError, match="zero norm"):
        A.decode_actions(np.zeros(10), STATS)
    with pytest.raises(ValueError, match="N, 3"):
        A.compute_stats(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="positive"):
        A.NormStats(np.zeros(3), np.array([1.0, -1.0, 1.0]))
