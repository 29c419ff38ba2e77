"""humanego_core.config: every error names the file and the dotted key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from humanego_core.config import ConfigError, describe_schema, from_dict, load_config, option, to_dict


@dataclass
class Camera:
    width: int = option(320, help="image width (px)", minimum=16)
    focal: float = option(150.0, help="focal length (px)", minimum=1.0)


@dataclass
class Experiment:
    task: str = option(help="task name")
    policy: Literal["flow", "act"] = option("flow", help="policy family")
    seeds: list[int] = option(default_factory=lambda: [0], help="random seeds")
    lr: float = option(1e-4, help="learning rate", minimum=0.0, maximum=1.0)
    use_ema: bool = option(True, help="keep an EMA of the weights")
    camera: Camera = field(default_factory=Camera, metadata={"help": "camera"})
    note: str | None = option(None, help="free text")


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_valid_file_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "task: serve_bread\nlr: 0.001\ncamera: {width: 640}\n"), Experiment)
    assert cfg.task == "serve_bread" and cfg.lr == 0.001 and cfg.camera.width == 640
    assert cfg.camera.focal == 150.0 and cfg.policy == "flow" and cfg.seeds == [0]
    assert to_dict(cfg)["camera"] == {"width": 640, "focal": 150.0}


def test_int_is_accepted_for_float_but_not_bool_for_int(tmp_path):
    assert load_config(write(tmp_path, "task: t\nlr: 1\n"), Experiment).lr == 1.0
    with pytest.raises(ConfigError, match=r"camera.width: must be an integer, got bool True"):
        load_config(write(tmp_path, "task: t\ncamera: {width: true}\n"), Experiment)


@pytest.mark.parametrize("text, key, problem", [
    ("task: t\ncamera: {widht: 3}\n", "camera.widht", "did you mean 'width'"),
    ("task: t\nzzz: 1\n", "zzz", "valid keys: camera, lr, note, policy, seeds, task, use_ema"),
    ("lr: 0.1\n", "task", "required key is missing"),
    ("task: t\npolicy: vla\n", "policy", "must be one of 'flow', 'act'"),
    ("task: t\nlr: 2.0\n", "lr", "must be <= 1.0"),
    ("task: t\ncamera: {width: 8}\n", "camera.width", "must be >= 16"),
    ("task: t\nseeds: [1, x]\n", r"seeds\[1\]", "must be an integer"),
    ("task: t\nlr: .nan\n", "lr", "must be finite"),
    ("task: t\ncamera: 5\n", "camera", "must be a mapping"),
])
def test_errors_name_file_key_and_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"{path}: {key}: .*{problem}"):
        load_config(path, Experiment)


def test_missing_file_and_bad_yaml_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml", Experiment)
    with pytest.raises(ConfigError, match=r"exp.yaml: invalid YAML: line \d+, column \d+: expected"):
        load_config(write(tmp_path, "task: t\nlr: [1, 2\n"), Experiment)
    with pytest.raises(ConfigError, match="top level must be a mapping, got list"):
        load_config(write(tmp_path, "- 1\n- 2\n"), Experiment)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="bin.yaml: not UTF-8"):
        load_config(tmp_path / "bin.yaml", Experiment)


def test_from_dict_without_file_and_describe():
    cfg = from_dict(Experiment, {"task": "push_box", "note": None})
    assert cfg.note is None
    lines = describe_schema(Experiment)
    assert "camera.width (int, default 320): image width (px)" in lines
    assert "task (str, required): task name" in lines


def test_describe_shows_the_defaults_a_section_factory_sets():
    @dataclass
    class Rig:
        main: Camera = field(default_factory=lambda: Camera(width=640), metadata={"help": "main camera"})

    lines = describe_schema(Rig)
    assert any(line.startswith("main.width (int, default 640)") for line in lines)
