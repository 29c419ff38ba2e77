"""Node parameters made from a core module's options dataclass, and the shipped parameter files."""

from dataclasses import dataclass

import pytest

from humanego_core.config import option
from humanego_ros.parameters import (
    ParamSpec,
    option_specs,
    options_from,
    parameter_file_problems,
    section_values,
    shipped_parameters,
)


@dataclass(frozen=True)
class Options:
    gain: float = option(0.5, help="how hard it pulls", minimum=0.0, maximum=2.0)
    steps: int = option(3, help="how many times", minimum=1, maximum=10)


def test_option_specs_carry_default_help_and_bounds_and_options_come_back():
    specs = option_specs(Options, "Solver: ")
    assert [(s.name, s.default, s.description, s.minimum, s.maximum) for s in specs] == [
        ("gain", 0.5, "Solver: how hard it pulls.", 0.0, 2.0), ("steps", 3, "Solver: how many times.", 1, 10)]
    assert options_from(Options, {"gain": 1.5, "steps": 4, "unrelated": "x"}) == Options(1.5, 4)
    with pytest.raises(KeyError):
        options_from(Options, {"gain": 1.5})


def test_shipped_parameters_are_the_config_file_over_the_declared_defaults():
    specs = [ParamSpec("control_rate_hz", 1.0, "rate"), ParamSpec("not_in_the_file", "kept", "default")]
    shipped = shipped_parameters("trajectory_controller", specs)
    assert shipped["not_in_the_file"] == "kept"
    assert shipped["control_rate_hz"] == 100.0  # config/trajectory_controller.yaml
    # config/clean_view.yaml has a /** section (every node), no /**/clean_view one
    assert shipped_parameters("clean_view", [ParamSpec("inpaint_scale", 1.0, "scale")])["inpaint_scale"] == 0.5


def test_parameter_file_problems_name_each_bad_entry(tmp_path):
    specs = [ParamSpec("rate_hz", 10.0, "rate", minimum=1.0, maximum=100.0), ParamSpec("mode", "a", "mode",
             choices=("a", "b")), ParamSpec("frames", ["ee"], "frames"), ParamSpec("left_out", 1, "count")]
    path = tmp_path / "node.yaml"
    path.write_text("/**/node:\n  ros__parameters:\n    rate_hz: 10\n    mode: c\n    frames: [ee, flange]\n"
                    "    typo: 1.0\n")
    assert parameter_file_problems(path, "/**/node", specs) == [
        f"{path}: typo is not a declared parameter",
        f"{path}: rate_hz is 10 (int), declared float (default 10.0)",
        f"{path}: mode is 'c', not one of a, b"]
    assert f"{path}: left_out is missing" in parameter_file_problems(path, "/**/node", specs, complete=True)
    path.write_text("/**/node:\n  ros__parameters:\n    rate_hz: 500.0\n    nested:\n      gain: 1.0\n")
    specs.append(ParamSpec("nested.gain", 0.5, "a parameter of a group, as rcl names it"))
    assert parameter_file_problems(path, "/**/node", specs) == [f"{path}: rate_hz is 500.0, outside [1.0, 100.0]"]
    assert parameter_file_problems(path, "/**", specs) == [f"{path}: no /**: ros__parameters section"]


def test_section_values_flatten_groups_and_say_when_the_section_is_missing(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("/**/node:\n  ros__parameters:\n    rate_hz: 5.0\n    limits:\n      joint1: {max: 1.0}\n")
    assert section_values(path, "/**/node") == {"rate_hz": 5.0, "limits.joint1.max": 1.0}
    assert section_values(path, "/**") is None
