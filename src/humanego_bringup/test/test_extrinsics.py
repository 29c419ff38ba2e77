"""The camera calibration file: what is written reads back as the same transform; doubtful files are refused."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_bringup.extrinsics import load_camera_extrinsics, save_camera_extrinsics
from humanego_core.config import ConfigError


def random_transform(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    T[:3, 3] = rng.uniform(-1, 1, 3)
    return T


def write(tmp_path, text: str):
    path = tmp_path / "camera_extrinsics.yaml"
    path.write_text(text)
    return path


def test_save_then_load_gives_the_same_transform(tmp_path):
    for seed in range(5):
        T = random_transform(seed)
        path = tmp_path / f"ext_{seed}.yaml"
        save_camera_extrinsics(path, T, source="test")
        loaded = load_camera_extrinsics(path)
        np.testing.assert_allclose(loaded.matrix(), T, atol=1e-12)
        assert (loaded.parent_frame, loaded.child_frame, loaded.source) == ("base_link", "camera_optical_frame", "test")


def test_hand_written_file_matches_scipy(tmp_path):
    path = write(tmp_path, "parent_frame: base_link\nchild_frame: cam\ntranslation: [0.5, -0.25, 1.0]\n"
                           "rotation: [0.0, 0.0, 0.7071068, 0.7071068]\n")
    T = load_camera_extrinsics(path).matrix()
    np.testing.assert_allclose(T[:3, :3], Rotation.from_euler("z", 90, degrees=True).as_matrix(), atol=1e-6)
    np.testing.assert_allclose(T[:3, 3], [0.5, -0.25, 1.0])


@pytest.mark.parametrize("text, key, problem", [
    ("translation: [0, 0, 0]\nrotation: [0, 0, 0, 2]\n", "rotation", "unit quaternion"),
    ("translation: [0, 0, 0]\nrotation: [0, 0, 0.5, 0.5]\n", "rotation", "norm is 0.707107"),
    ("translation: [0, 0]\nrotation: [0, 0, 0, 1]\n", "translation", "must have 3 numbers"),
    ("translation: [0, .nan, 0]\nrotation: [0, 0, 0, 1]\n", "translation[1]", "finite"),
    ("translation: [0, 0, 0]\nrotation: [0, 0, 0, 1]\nparent_frame: cam\nchild_frame: cam\n", "child_frame",
     "must differ"),
    ("translation: [0, 0, 0]\nrotation: [0, 0, 0, 1]\nchild_frame: ' '\n", "child_frame", "must name a TF frame"),
    ("translation: [0, 0, 0]\nrotation: [0, 0, 0, 1]\nparent: base_link\n", "parent", "did you mean 'parent_frame'"),
    ("rotation: [0, 0, 0, 1]\n", "translation", "required key is missing"),
])
def test_doubtful_files_are_refused_naming_file_and_key(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_camera_extrinsics(path)
    assert err.value.key == key and problem in err.value.problem and str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_camera_extrinsics(tmp_path / "nope.yaml")


def test_saving_a_non_rigid_transform_fails(tmp_path):
    T = np.eye(4)
    T[0, 0] = 2.0
    with pytest.raises(ValueError):
        save_camera_extrinsics(tmp_path / "x.yaml", T)
    assert not (tmp_path / "x.yaml").exists()
