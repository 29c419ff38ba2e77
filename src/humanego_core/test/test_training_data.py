import copy
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import training_data
from humanego_core.training_data import TrainingDataError, validate


def pose(seed: int) -> list:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    T[:3, 3] = [0.1 * seed, 0.2, 0.7]
    return T.tolist()


def record() -> dict:
    obs = {key: f"preprocess/all_data/00000/{key[:-5]}.png" for key in training_data.IMAGE_KEYS}
    return {
        "metadata": {"idx": 0, "ts": 0.0, "w": 64, "h": 48, "fps": 30.0,
                     "k": [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]], "c2w": pose(1), "anchor_key": "obj1",
                     "is_finished": False, "world_transforms": {"cam0": pose(1), "virtual_static_anchor": pose(2)}},
        "obs": obs,
        "entities": {"hands": {"right": {"T_hand_to_world": pose(3), "grasp": 1.0}},
                     "objects": {"obj0": {"T_obj_to_world": pose(4), "is_dynamic": True},
                                 "obj1": {"T_obj_to_world": pose(2), "is_dynamic": False}}},
    }


def test_a_valid_record_passes_and_its_images_must_exist(tmp_path):
    data = record()
    validate(data, "x.json")
    with pytest.raises(TrainingDataError, match="obs.mask_arm_path: .* does not exist"):
        validate(data, "x.json", tmp_path)
    folder = training_data.frame_folder(tmp_path, 0)
    folder.mkdir(parents=True)
    for key in training_data.IMAGE_KEYS:
        (tmp_path / data["obs"][key]).write_bytes(b"png")
    (folder / training_data.FILE_NAME).write_text(json.dumps(data))
    assert training_data.load(folder / training_data.FILE_NAME)["metadata"]["idx"] == 0


@pytest.mark.parametrize("path, value, message", [
    (("metadata", "k"), [[1, 0, 0], [0, 1, 0]], "metadata.k: must be 3x3"),
    (("metadata", "c2w"), np.diag([1.0, 1, -1, 1]).tolist(), "metadata.c2w: .*determinant"),
    (("metadata", "ts"), float("nan"), "metadata.ts: must be a finite number"),
    (("metadata", "anchor_key"), "obj7", "metadata.anchor_key: 'obj7' is not one of the objects"),
    (("entities", "hands", "right", "grasp"), 1.5, r"grasp: must lie in \[0, 1\]"),
    (("entities", "hands", "right", "T_hand_to_world"), [[float("inf")] * 4] * 4, "contains NaN or inf"),
    (("obs", "rgb_path"), "/abs/rgb.png", "obs.rgb_path: must be a path relative to the recording"),
    (("entities", "objects", "obj0", "is_dynamic"), 1, "is_dynamic: must be true or false"),
])
def test_departures_from_the_schema_name_the_key(path, value, message):
    data = copy.deepcopy(record())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(TrainingDataError, match=message):
        validate(data, "frame.json")


def test_missing_key_and_unreadable_file(tmp_path):
    data = record()
    del data["metadata"]["world_transforms"]["cam0"]
    with pytest.raises(TrainingDataError, match="metadata.world_transforms.cam0: required key is missing"):
        validate(data, "frame.json")
    bad = tmp_path / "training_data.json"
    bad.write_text("{not json")
    with pytest.raises(TrainingDataError, match="not JSON"):
        training_data.load(bad, tmp_path)
