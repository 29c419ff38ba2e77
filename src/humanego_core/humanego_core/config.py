"""Typed configuration files: YAML in, validated dataclasses out.

A schema is a dataclass whose fields carry types and, through :func:`option`, a help text and
bounds. Loading checks every key against it and fails with a :class:`ConfigError` that names the
file, the dotted key and what is wrong (unknown key with close matches, wrong type, out of range,
missing), so a tired user can fix the file without reading code.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or value that does not match its schema."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


def option(default: Any = dataclasses.MISSING, *, help: str, minimum: float | None = None,
           maximum: float | None = None, default_factory: Any = dataclasses.MISSING):
    """A schema field with a help text and optional inclusive numeric bounds."""
    metadata = {"help": help, "minimum": minimum, "maximum": maximum}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; missing file, syntax error or non-mapping content raise ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found" if not path.exists() else "not a regular file")
    try:
        with path.open("r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(str(path), "", f"invalid YAML: {where}{getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not UTF-8 text ({exc.reason})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path, schema: type[T]) -> T:
    """Load a YAML file and validate it against the dataclass ``schema``."""
    return from_dict(schema, load_yaml(path), source=str(path))


def from_dict(schema: type[T], data: Any, source: str = "<config>", prefix: str = "") -> T:
    """Validate a mapping against a dataclass schema, recursively; raise ConfigError on the first problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, prefix, f"must be a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(fields))}"
            raise ConfigError(source, _join(prefix, str(key)), f"unknown key{hint}")
    values = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(source, key, "required key is missing")
            continue
        value = _convert(hints[name], data[name], source, key)
        _check_bounds(f, value, source, key)
        values[name] = value
    return schema(**values)


def to_dict(config: Any) -> dict:
    """Plain dict of a schema instance (for writing config.json next to results)."""
    return dataclasses.asdict(config)


def describe_schema(schema: type, prefix: str = "", defaults: Any = None) -> list[str]:
    """One line per key with its type, default and help: the text behind ``--help`` of config-driven tools.

    ``defaults``: an instance whose values are the defaults to show (a nested section's factory may set
    values other than its class's own defaults).
    """
    lines = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = _join(prefix, f.name)
        tp = hints[f.name]
        default_value = _field_default(f, defaults)
        if dataclasses.is_dataclass(tp):
            lines.extend(describe_schema(tp, key, None if default_value is dataclasses.MISSING else default_value))
            continue
        default = "required" if default_value is dataclasses.MISSING else f"default {default_value!r}"
        lines.append(f"{key} ({_type_name(tp)}, {default}): {f.metadata.get('help', '')}")
    return lines


def _field_default(f: dataclasses.Field, defaults: Any) -> Any:
    if defaults is not None:
        return getattr(defaults, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(source, key, f"must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(source, key, " or ".join(errors))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(source, key, f"must be a list, got {_describe(value)}")
        return [_convert(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"must be a mapping, got {_describe(value)}")
        return {_convert(args[0], k, source, f"{key}.{k}"): _convert(args[1], v, source, f"{key}.{k}")
                for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"must be an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(source, key, f"must be finite, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"must be a string, got {_describe(value)}")
        return value
    raise TypeError(f"schema type {tp!r} of {key} is not supported by humanego_core.config")


def _check_bounds(f: dataclasses.Field, value: Any, source: str, key: str) -> None:
    lo, hi = f.metadata.get("minimum"), f.metadata.get("maximum")
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if lo is not None and item < lo:
            raise ConfigError(source, key, f"must be >= {lo}, got {item}")
        if hi is not None and item > hi:
            raise ConfigError(source, key, f"must be <= {hi}, got {item}")
