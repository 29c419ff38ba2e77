"""Node parameters made from a core module's options dataclass, and the shipped parameter files."""

from dataclasses import dataclass

import pytest

from humanego_core.config import option
from humanego_ros.parameters import ParamSpec, option_specs, options_from, shipped_parameters


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
