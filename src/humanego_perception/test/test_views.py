"""humanego_perception.views: the shipped config/views.yaml (found through the install, every key present), the
factories, and configuration errors that name the file and the key."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from humanego_core.config import ConfigError
from humanego_perception.arm_mask import LandmarkSkinMasker, Sam2ArmMasker
from humanego_perception.inpaint import LamaInpainter, OpenCVInpainter
from humanego_perception.views import (
    ViewsConfig,
    build_human_arm_masker,
    build_inpainter,
    default_views_path,
    load_views_config,
)


def schema_keys(schema, prefix="") -> set[str]:
    keys = set()
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= schema_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def file_keys(data: dict, prefix="") -> set[str]:
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= file_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def write(tmp_path, text: str):
    path = tmp_path / "views.yaml"
    path.write_text(text)
    return path


def test_shipped_config_loads_and_lists_every_key():
    path = default_views_path()
    assert path.name == "views.yaml" and path.parent.name == "config"
    config = load_views_config()
    assert config == load_views_config(path)
    assert file_keys(yaml.safe_load(path.read_text())) == schema_keys(ViewsConfig)
    assert isinstance(build_human_arm_masker(config), LandmarkSkinMasker)
    inpainter = build_inpainter(config)
    assert isinstance(inpainter, OpenCVInpainter) and inpainter.method == config.inpaint.backend


def test_defaults_fill_what_a_file_leaves_out(tmp_path):
    config = load_views_config(write(tmp_path, "inpaint: {backend: ns, radius_px: 7}\n"))
    assert config.inpaint.backend == "ns" and config.inpaint.radius_px == 7
    assert config.arm_mask == ViewsConfig().arm_mask
    inpainter = build_inpainter(config)
    assert (inpainter.method, inpainter.radius_px) == ("ns", 7)


@pytest.mark.parametrize("text, key, problem", [
    ("arm_mask: {backend: grabcut}\n", "arm_mask.backend", "must be one of"),
    ("inpaint: {radius: 3}\n", "inpaint.radius", "unknown key; did you mean 'radius_px'"),
    ("gripper: {ee_to_gripper: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.1], [0, 0, 0.5, 1]]}\n",
     "gripper.ee_to_gripper", "rigid"),
    ("gripper: {ee_to_gripper: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}\n", "gripper.ee_to_gripper", "4x4"),
    ("gripper: {open_width_m: 0.03, closed_width_m: 0.05}\n", "gripper.closed_width_m", "wider"),
    ("gripper: {colour: [1, 2]}\n", "gripper.colour", "3 values"),
    ("keypoints: {colours: [[1, 2, 3], [4, 5]]}\n", "keypoints.colours[1]", "3 values"),
    ("arm_mask: {shoulder_distance_m: [0.4]}\n", "arm_mask.shoulder_distance_m", "nearest, farthest"),
    ("arm_mask: {backend: sam2}\n", "arm_mask.sam2_encoder", "set its path"),
    ("inpaint: {backend: lama}\n", "inpaint.lama_model", "set its path"),
])
def test_errors_name_the_file_and_the_key(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_views_config(path)
    assert info.value.source == str(path) and info.value.key == key
    assert problem in info.value.problem


def test_missing_model_files_are_named_with_their_key(tmp_path, sam2_models):
    encoder, _ = sam2_models
    path = write(tmp_path, f"arm_mask: {{backend: sam2, sam2_encoder: {encoder}, sam2_decoder: /nowhere/dec.onnx}}\n")
    with pytest.raises(ConfigError, match=r"arm_mask.sam2_decoder: model file /nowhere/dec.onnx does not exist"):
        load_views_config(path)
    path = write(tmp_path, "inpaint: {backend: lama, lama_model: /nowhere/lama.onnx}\n")
    with pytest.raises(ConfigError, match=r"inpaint.lama_model: model file /nowhere/lama.onnx does not exist"):
        load_views_config(path)
    # a model file that is not set is fine while its backend is not chosen
    assert load_views_config(write(tmp_path, "arm_mask: {sam2_decoder: /nowhere/dec.onnx}\n"))


def test_model_backends_are_built(tmp_path, sam2_models, lama_model):
    encoder, decoder = sam2_models
    config = load_views_config(write(tmp_path, f"arm_mask: {{backend: sam2, sam2_encoder: {encoder}, "
                                               f"sam2_decoder: {decoder}}}\n"
                                               f"inpaint: {{backend: lama, lama_model: {lama_model}}}\n"))
    assert isinstance(build_human_arm_masker(config), Sam2ArmMasker)
    assert isinstance(build_inpainter(config), LamaInpainter)
