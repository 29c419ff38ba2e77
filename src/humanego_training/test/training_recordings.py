"""Tiny preprocessed recordings written by the tests (training_data.json + images, the schema of
humanego_core.training_data): a hand moving along a known path over a table with a bread and a plate."""

import json
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from humanego_core import training_data
from humanego_training.image_io import write_image

SIZE = 48
FPS = 30.0
K = np.array([[40.0, 0.0, 23.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]])


def pose(rotvec, translation) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = translation
    return T


CAM0 = pose([np.pi, 0.0, 0.0], [0.1, -0.2, 0.8])  # looking down at the table
PLATE = pose([0.0, 0.0, 0.3], [0.05, 0.1, 0.0])
BREAD = pose([0.0, 0.0, -0.2], [-0.1, 0.0, 0.02])


def hand_at(t: float, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """The tests' hand: moves 0.3 m/s along x and turns 1 rad/s about z, from (0, 0, 0.2)."""
    return pose([0.0, 0.0, t], np.array([0.3 * t, 0.0, 0.2]) + offset)


def write_recording(root: Path, frames: list[int], finished_from: int = 10**9, grasp_from: int = 10**9,
                    offset=(0.0, 0.0, 0.0), nan_frame: int | None = None, seed: int = 0) -> Path:
    """Kept frames ``frames`` (indices at 30 Hz) of a synthetic recording, in the training_data.json schema."""
    rng = np.random.default_rng(seed)
    for idx, i in enumerate(frames):
        folder = training_data.frame_folder(root, idx)
        folder.mkdir(parents=True)
        t = i / FPS
        obs = {}
        for key in training_data.IMAGE_KEYS:
            name = f"{key[:-len('_path')]}.png"
            image = rng.integers(0, 255, (SIZE, SIZE) if key.startswith("mask") else (SIZE, SIZE, 3), dtype=np.uint8)
            write_image(folder / name, image)
            obs[key] = str((folder / name).relative_to(root))
        c2w = CAM0 @ pose([0.0, 0.02 * t, 0.0], [0.01 * t, 0.0, 0.0])  # the head moves a little
        record = {
            "metadata": {"idx": idx, "ts": t - frames[0] / FPS, "w": SIZE, "h": SIZE, "fps": FPS, "k": K.tolist(),
                         "c2w": c2w.tolist(), "anchor_key": "obj1", "is_finished": i >= finished_from,
                         "world_transforms": {"cam0": CAM0.tolist(), "virtual_static_anchor": PLATE.tolist()}},
            "obs": obs,
            "entities": {
                "hands": {"right": {"T_hand_to_world": hand_at(t, offset).tolist(),
                                    "grasp": 1.0 if i >= grasp_from else 0.0}},
                "objects": {"obj0": {"T_obj_to_world": BREAD.tolist(), "is_dynamic": True, "name": "bread"},
                            "obj1": {"T_obj_to_world": PLATE.tolist(), "is_dynamic": False, "name": "plate"}},
            },
        }
        text = json.dumps(record)
        if idx == nan_frame:
            text = text.replace('"grasp": 0.0', '"grasp": NaN')
        (folder / training_data.FILE_NAME).write_text(text)
    (root / "preprocess" / "report.json").write_text("{}")
    return root
