"""Tabletop tasks: schema of ``config/tasks/<name>.yaml``, scene randomisation and success predicates.

A task names its objects (primitive shapes with colour, mass and friction), where each may be
placed (ranges in the world frame, on the table), which object is manipulated and where it must
end up, and the language instruction. Everything here is plain Python + numpy so the predicates can
be checked against closed-form cases without a simulator.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from humanego_core.ament_index import resource_path
from humanego_core.config import ConfigError, load_config, option


@dataclass
class ObjectSpec:
    shape: Literal["box", "cylinder", "bowl", "marker"] = option(
        help="box: size = full extents x y z; cylinder: radius height; bowl: radius height wall; "
             "marker: radius (a flat disc drawn on the table, no collision)")
    size: list[float] = option(help="dimensions in metres, see shape", minimum=0.001, maximum=1.0)
    rgba: list[float] = option(help="colour, 4 values in 0..1", minimum=0.0, maximum=1.0)
    mass: float = option(0.1, help="kg (movable objects)", minimum=0.001, maximum=10.0)
    friction: float = option(1.0, help="sliding friction coefficient", minimum=0.0, maximum=5.0)
    movable: bool = option(True, help="free body (true) or fixed to the table (false)")


@dataclass
class PlacementRange:
    x: list[float] = option(help="[min, max] of the object centre, world x (m)")
    y: list[float] = option(help="[min, max] of the object centre, world y (m)")
    yaw: list[float] = option(default_factory=lambda: [0.0, 0.0], help="[min, max] rotation about z (rad)")


@dataclass
class SuccessSpec:
    max_xy_distance: float = option(help="object centre within this horizontal distance of the goal centre (m)",
                                    minimum=0.001, maximum=1.0)
    max_height_above_goal: float = option(0.03, help="object bottom at most this far above the goal's "
                                          "supporting surface (m): it rests there, it is not held over it",
                                          minimum=0.0, maximum=0.5)
    max_speed: float = option(0.05, help="object speed below this (m/s): it has come to rest", minimum=0.0)


@dataclass
class Task:
    name: str = option(help="task name, equal to the file name")
    kind: Literal["pick_place", "push"] = option(help="pick_place: grasp, carry, place; push: slide to the goal")
    instruction: str = option(help="language instruction given to the policy")
    objects: dict[str, ObjectSpec] = option(help="objects by name")
    placement: dict[str, PlacementRange] = option(help="randomised placement range of every object")
    manipulated: str = option(help="the object the hand or gripper moves")
    goal: str = option(help="the object that marks where the manipulated object must end up")
    success: SuccessSpec = option(help="when the task counts as done")
    min_separation: float = option(0.12, help="minimum distance between object centres (m)", minimum=0.0)
    episode_seconds: float = option(20.0, help="time limit of a robot episode (s)", minimum=1.0)


@dataclass
class Table:
    size: list[float] = option(default_factory=lambda: [0.9, 1.2], help="table top x, y extents (m)")
    centre: list[float] = option(default_factory=lambda: [0.45, 0.0], help="table top centre, world x y (m)")
    height: float = option(0.75, help="table top height above the floor (m)", minimum=0.1, maximum=2.0)


TASKS_DIR = ("config", "tasks")


def tasks_dir() -> Path:
    return resource_path(*TASKS_DIR)


def available_tasks(directory: Path | None = None) -> list[str]:
    directory = directory or tasks_dir()
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_task(name_or_path: str, table: Table | None = None, directory: Path | None = None) -> Task:
    """Load and validate a task by name (from config/tasks) or from a YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        directory = directory or tasks_dir()
        path = directory / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(available_tasks(directory)) or "none"
            raise ConfigError(str(path), "", f"unknown task '{name_or_path}'; available tasks: {known}")
    task = load_config(path, Task)
    validate_task(task, str(path), table or Table())
    return task


def validate_task(task: Task, source: str, table: Table) -> None:
    """Cross-field checks the schema cannot express: names resolve, ranges are ordered and on the table."""
    for role in ("manipulated", "goal"):
        name = getattr(task, role)
        if name not in task.objects:
            raise ConfigError(source, role, f"'{name}' is not one of the objects ({', '.join(task.objects)})")
    if task.objects[task.manipulated].shape == "marker" or not task.objects[task.manipulated].movable:
        raise ConfigError(source, "manipulated", f"'{task.manipulated}' must be a movable solid object")
    expected = {"box": 3, "cylinder": 2, "bowl": 3, "marker": 1}
    for name, spec in task.objects.items():
        if len(spec.size) != expected[spec.shape]:
            raise ConfigError(source, f"objects.{name}.size",
                              f"a {spec.shape} needs {expected[spec.shape]} values, got {len(spec.size)}")
        if len(spec.rgba) != 4:
            raise ConfigError(source, f"objects.{name}.rgba", f"needs 4 values, got {len(spec.rgba)}")
        if name not in task.placement:
            raise ConfigError(source, f"placement.{name}", "missing: every object needs a placement range")
    for name in task.placement:
        if name not in task.objects:
            raise ConfigError(source, f"placement.{name}", f"no object named '{name}'")
    lo = np.array(table.centre) - np.array(table.size) / 2
    hi = np.array(table.centre) + np.array(table.size) / 2
    for name, rng in task.placement.items():
        radius = footprint_radius(task.objects[name])
        for axis, values in (("x", rng.x), ("y", rng.y), ("yaw", rng.yaw)):
            key = f"placement.{name}.{axis}"
            if len(values) != 2 or values[0] > values[1]:
                raise ConfigError(source, key, f"must be [min, max] with min <= max, got {values}")
            if axis == "yaw":
                continue
            i = "xy".index(axis)
            if values[0] - radius < lo[i] - 1e-9 or values[1] + radius > hi[i] + 1e-9:
                raise ConfigError(source, key, f"{values} does not fit on the table: with the object's "
                                  f"footprint radius {radius:.3f} m it must stay within "
                                  f"[{lo[i] + radius:.3f}, {hi[i] - radius:.3f}]")
    # Fail at load time, not after thousands of rejected samples, when two ranges can never be apart enough.
    for a, b in itertools.combinations(task.placement, 2):
        ra, rb = task.placement[a], task.placement[b]
        dx = max(ra.x[1] - rb.x[0], rb.x[1] - ra.x[0])
        dy = max(ra.y[1] - rb.y[0], rb.y[1] - ra.y[0])
        if math.hypot(dx, dy) < task.min_separation:
            raise ConfigError(source, f"placement.{a}",
                              f"cannot fit: no point of it is {task.min_separation} m (min_separation) from "
                              f"placement.{b}; widen or move the ranges")


def footprint_radius(spec: ObjectSpec) -> float:
    """Radius of the object's footprint on the table (m)."""
    if spec.shape == "box":
        return 0.5 * math.hypot(spec.size[0], spec.size[1])
    return spec.size[0]


def object_height(spec: ObjectSpec) -> float:
    """Height of the object's top above its base (m); 0 for a marker."""
    if spec.shape == "box":
        return spec.size[2]
    if spec.shape in ("cylinder", "bowl"):
        return spec.size[1]
    return 0.0


def support_height(spec: ObjectSpec) -> float:
    """Height, above the goal's base, of the surface an object placed on/in the goal rests on."""
    if spec.shape == "bowl":
        return spec.size[2]  # the bowl's floor is as thick as its wall
    return object_height(spec)


@dataclass(frozen=True)
class Placement:
    """Sampled planar pose of an object: centre x, y on the table and yaw."""

    x: float
    y: float
    yaw: float


class PlacementError(RuntimeError):
    pass


def sample_placements(task: Task, rng: np.random.Generator, max_tries: int = 1000) -> dict[str, Placement]:
    """Uniform placements within the ranges, rejection-sampled to respect min_separation."""
    names = list(task.placement)
    for _ in range(max_tries):
        poses = {}
        for name in names:
            r = task.placement[name]
            poses[name] = Placement(float(rng.uniform(*r.x)), float(rng.uniform(*r.y)), float(rng.uniform(*r.yaw)))
        if all(math.hypot(poses[a].x - poses[b].x, poses[a].y - poses[b].y) >= task.min_separation
               for a, b in itertools.combinations(names, 2)):
            return poses
    raise PlacementError(f"task {task.name}: no placement with objects {task.min_separation} m apart found in "
                         f"{max_tries} tries; widen the placement ranges or lower min_separation")


@dataclass(frozen=True)
class SuccessCheck:
    success: bool
    xy_distance: float
    height_above_goal: float
    speed: float


def check_success(task: Task, table_height: float, object_position: np.ndarray, goal_position: np.ndarray,
                  object_speed: float) -> SuccessCheck:
    """Evaluate the task's predicate from the manipulated object's and the goal's centre positions.

    Positions are the centres of the objects' bases (z = bottom), in the world frame.
    """
    obj = np.asarray(object_position, dtype=float)
    goal = np.asarray(goal_position, dtype=float)
    if not (np.all(np.isfinite(obj)) and np.all(np.isfinite(goal)) and math.isfinite(object_speed)):
        return SuccessCheck(False, math.inf, math.inf, math.inf)
    goal_spec = task.objects[task.goal]
    surface = table_height if task.kind == "push" else goal[2] + support_height(goal_spec)
    xy = float(np.hypot(*(obj[:2] - goal[:2])))
    height = float(obj[2] - surface)
    s = task.success
    ok = xy <= s.max_xy_distance and -0.01 <= height <= s.max_height_above_goal and object_speed <= s.max_speed
    return SuccessCheck(bool(ok), xy, height, float(object_speed))


def task_summary(task: Task) -> dict:
    """Plain description written next to recordings (metadata) and results."""
    return {"name": task.name, "kind": task.kind, "instruction": task.instruction,
            "manipulated": task.manipulated, "goal": task.goal,
            "objects": {n: dataclasses.asdict(o) for n, o in task.objects.items()}}
