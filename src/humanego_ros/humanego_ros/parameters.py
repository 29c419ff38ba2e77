"""Declared, described and validated node parameters.

Every node declares its parameters from a list of :class:`ParamSpec` (one source of truth for
names, defaults, descriptions and bounds) and gets them back validated. Numeric bounds become
ROS ranges in the descriptor, so they are enforced for later ``set_parameters`` calls too, and a
bad value given on the command line fails at start with a message naming the parameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from humanego_core.ament_index import resource_path


class ParameterError(ValueError):
    """A node parameter with a value outside its declared contract."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = field(default_factory=tuple)
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        extra = f" One of: {', '.join(map(str, self.choices))}." if self.choices else ""
        desc = ParameterDescriptor(name=self.name, description=self.description + extra,
                                   read_only=self.read_only)
        bounded = self.minimum is not None or self.maximum is not None
        if bounded and isinstance(self.default, int) and not isinstance(self.default, bool):
            lo = int(self.minimum) if self.minimum is not None else -2**63
            hi = int(self.maximum) if self.maximum is not None else 2**63 - 1
            desc.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=0)]
        elif bounded and isinstance(self.default, float):
            lo = float(self.minimum) if self.minimum is not None else -float("inf")
            hi = float(self.maximum) if self.maximum is not None else float("inf")
            desc.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
        return desc


def declare_parameters(node: Node, specs: list[ParamSpec]) -> dict[str, Any]:
    """Declare every spec on ``node`` and return {name: value}; bad values raise ParameterError."""
    values = {}
    for spec in specs:
        try:
            param = node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except InvalidParameterValueException as exc:
            raise ParameterError(f"parameter '{spec.name}' of node '{node.get_name()}': {exc}") from None
        except InvalidParameterTypeException:
            kind = type(spec.default).__name__
            hint = " (write e.g. 10.0, not 10)" if isinstance(spec.default, float) else ""
            raise ParameterError(
                f"parameter '{spec.name}' of node '{node.get_name()}' must be of type {kind}{hint}") from None
        value = param.value
        if spec.choices and value not in spec.choices:
            raise ParameterError(
                f"parameter '{spec.name}' of node '{node.get_name()}' is {value!r}; "
                f"valid values: {', '.join(map(str, spec.choices))}")
        values[spec.name] = value
    return values


def option_specs(schema: type, prefix: str = "") -> list[ParamSpec]:
    """One spec per field of an options dataclass (fields made with humanego_core.config.option), with its
    default, help and bounds: a core module's options exposed as node parameters without a second copy."""
    return [ParamSpec(f.name, f.default, prefix + f.metadata["help"] + ".", f.metadata.get("minimum"),
                      f.metadata.get("maximum")) for f in dataclasses.fields(schema)]


def options_from(schema: type, values: dict[str, Any]):
    """The options dataclass ``schema`` with its fields taken from node parameter ``values``."""
    return schema(**{f.name: values[f.name] for f in dataclasses.fields(schema)})


def parameter_file_problems(path, section: str, specs: list[ParamSpec], complete: bool = False) -> list[str]:
    """What is wrong with the ``section`` (``/**/<node>`` or ``/**``) of the parameter file ``path`` against the
    node's declared ``specs`` (what would fail, or be ignored, at start): unknown names, values of another type
    than the default's, outside the choices or bounds; with ``complete`` also the declared parameters it leaves
    out. Empty when it is fine."""
    values = section_values(path, section)
    if values is None:
        return [f"{path}: no {section}: ros__parameters section"]
    by_name = {spec.name: spec for spec in specs}
    problems = [f"{path}: {name} is not a declared parameter" for name in values if name not in by_name]
    if complete:
        problems += [f"{path}: {name} is missing" for name in by_name if name not in values]
    for name, value in values.items():
        spec = by_name.get(name)
        if spec is None:
            continue
        if type(value) is not type(spec.default):
            problems.append(f"{path}: {name} is {value!r} ({type(value).__name__}), declared "
                            f"{type(spec.default).__name__} (default {spec.default!r})")
        elif spec.choices and value not in spec.choices:
            problems.append(f"{path}: {name} is {value!r}, not one of {', '.join(map(str, spec.choices))}")
        elif not isinstance(value, list) and (spec.minimum is not None and value < spec.minimum
                                              or spec.maximum is not None and value > spec.maximum):
            problems.append(f"{path}: {name} is {value!r}, outside [{spec.minimum}, {spec.maximum}]")
    return problems


def _flattened(values: dict, prefix: str = "") -> dict[str, Any]:
    """Nested parameter mappings as rcl names them: ``{"a": {"b": 1}}`` is the parameter ``a.b``."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flattened(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def shipped_parameters(node: str, specs: list[ParamSpec]) -> dict[str, Any]:
    """The parameters the robot graph runs ``node`` with: the declared defaults, then config/<node>.yaml's
    ``/**`` and ``/**/<node>`` sections, the two the shipped files use, the second over the first (for running
    the same parts without ROS: benchmarks)."""
    path = resource_path("config", f"{node}.yaml")
    sections = [section_values(path, key) for key in ("/**", f"/**/{node}")]
    if sections == [None, None]:
        raise ValueError(f"{path}: neither a /** nor a /**/{node}: ros__parameters section")
    values = {spec.name: spec.default for spec in specs}
    for section in sections:
        values |= section or {}
    return values


def section_values(path, section: str) -> dict[str, Any] | None:
    """The ``ros__parameters`` of ``section`` in the parameter file ``path``, nested groups flattened as rcl
    names them (``{"a": {"b": 1}}`` is the parameter ``a.b``); None when the file has no such section."""
    values = ((yaml.safe_load(Path(path).read_text()) or {}).get(section) or {}).get("ros__parameters")
    return _flattened(values) if isinstance(values, dict) else None
