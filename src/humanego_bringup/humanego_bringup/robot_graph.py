"""The robot graph, described once: arguments, nodes, parameters, remaps and the conditions that pick them.

Used by ``launch/robot.launch.py`` (``ros2 launch humanego_bringup robot.launch.py`` on a machine with ROS 2)
and by ``humanego launch robot`` (:mod:`humanego_bringup.launcher`, no ROS install needed), so the node list
and its parameters exist in one place. This module is plain Python: it never imports ``launch``.

    camera source -> clean_view -> state_estimator -> policy -> ik_retarget -> trajectory_controller -> robot

:func:`plan` turns launch arguments into the exact node commands after checking, before anything starts,
every file the graph needs (executables, ``config/<node>.yaml`` parameter files, the policy bundle, the
replayed recording, the camera calibration): a problem is a :class:`PreflightError` naming the file, and
nothing starts, so a missing bundle never leaves an arm running without its policy.

Parameters of a node come from ``config/<node>.yaml`` (``ros__parameters``; write the section key as
``/**`` so it applies under any namespace), then the values the launch arguments set (robot, bundle, ...),
which win. With ``sim:=true`` every node but the simulator runs on its ``/clock`` (``use_sim_time``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from humanego_bringup import rviz
from humanego_core import ament_index
from humanego_core.config import ConfigError
from humanego_policy.bundle import DEFAULT_BUNDLES, Bundle, BundleError
from humanego_sim.tasks import available_tasks

BOOLEAN = ("true", "false")


class LaunchArgumentError(ValueError):
    """An unknown launch argument, or a value outside its choices or the rules between arguments."""


class PreflightError(RuntimeError):
    """A file or executable the graph needs is missing or invalid; nothing was started."""


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


def arguments() -> tuple[Argument, ...]:
    """The launch arguments, in the order ``--show-args`` lists them."""
    return (
        Argument("robot", "panda", "Robot arm (urdf/<robot>.urdf).", ("panda", "ur5e")),
        Argument("sim", "true", "Simulated arm and camera (humanego_sim sim_robot); false = a ros2_control arm, "
                 "with the camera pose published from config/camera_extrinsics.yaml.", BOOLEAN),
        Argument("camera", "sim", "Camera source: the simulator's ego camera (needs sim:=true), Aria glasses, "
                 "a RealSense, or a recording folder (these need sim:=false).",
                 ("sim", "aria", "realsense", "recording")),
        Argument("camera_input", "", "What the camera source plays: camera:=recording a recording folder (required); "
                 "camera:=realsense a .db3 recording (empty = the live camera); camera:=aria a .vrs (empty = the "
                 "live glasses)."),
        Argument("policy", "flow", "Policy: a flow-matching, ACT or EgoMimic bundle (flow and act have a shipped "
                 "default), or replay of a recorded human demonstration (needs recording:=...).",
                 ("flow", "act", "egomimic", "replay")),
        Argument("bundle", "", "Policy bundle folder (bundle.json, dataset_stats.json, ONNX/weights); empty = the "
                 "shipped one of the policy (models/)."),
        Argument("recording", "", "policy:=replay: the preprocessed recording whose hand trajectory is replayed."),
        Argument("task", "serve_bread", "Task scene of the simulator (config/tasks/<task>.yaml).",
                 tuple(available_tasks())),
        Argument("namespace", "", "ROS namespace of every node and relative topic, e.g. robot1."),
        Argument("heartbeat", "true", "Start the operator heartbeat with the graph; false when the operator station "
                 "runs 'humanego run humanego_control heartbeat' itself (the controller stops without it).", BOOLEAN),
        Argument("extrinsics", "", "sim:=false: camera calibration file; empty = config/camera_extrinsics.yaml."),
        Argument("rviz", "false", "Start RViz (config/rviz/robot.rviz) where rviz2 is installed.", BOOLEAN),
    )


@dataclass(frozen=True)
class LaunchArgs:
    """Validated launch arguments; paths are absolute."""

    robot: str = "panda"
    sim: bool = True
    camera: str = "sim"
    camera_input: Path | None = None
    policy: str = "flow"
    bundle: Path | None = None
    recording: Path | None = None
    task: str = "serve_bread"
    namespace: str = ""
    heartbeat: bool = True
    extrinsics: Path | None = None
    rviz: bool = False


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["robot:=ur5e", "sim:=false"]`` -> ``{"robot": "ur5e", "sim": "false"}`` (the ``ros2 launch`` syntax)."""
    values = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchArgumentError(f"'{item}' is not an argument assignment; write name:=value "
                                      f"(arguments: {', '.join(a.name for a in arguments())})")
        if name in values:
            raise LaunchArgumentError(f"argument '{name}' is given twice")
        values[name] = value
    return values


_NAMESPACE_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _namespace(value: str) -> str:
    tokens = value.strip("/").split("/") if value.strip("/") else []
    bad = [t for t in tokens if not _NAMESPACE_TOKEN.match(t)]
    if bad:
        raise LaunchArgumentError(f"namespace:={value} is not a ROS namespace: '{bad[0]}' must start with a letter or "
                                  f"'_' and hold only letters, digits and '_' (e.g. namespace:=robot1)")
    return "/" + "/".join(tokens) if tokens else ""


def _path(value: str) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


def launch_args(values: Mapping[str, str] | None = None) -> LaunchArgs:
    """Validate ``name -> value`` strings (unknown names, values outside the choices, contradicting arguments
    raise LaunchArgumentError listing what is valid) and return typed arguments with defaults filled in."""
    specs = {a.name: a for a in arguments()}
    values = dict(values or {})
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise LaunchArgumentError(f"unknown launch argument{'s' if len(unknown) > 1 else ''} "
                                  f"{', '.join(unknown)}; valid arguments: {', '.join(specs)}")
    merged = {name: values.get(name, spec.default) for name, spec in specs.items()}
    for name, value in merged.items():
        choices = specs[name].choices
        if choices and value not in choices:
            raise LaunchArgumentError(f"{name}:={value} is not valid; valid values of '{name}': {', '.join(choices)}")
    args = LaunchArgs(
        robot=merged["robot"], sim=merged["sim"] == "true", camera=merged["camera"],
        camera_input=_path(merged["camera_input"]), policy=merged["policy"], bundle=_path(merged["bundle"]),
        recording=_path(merged["recording"]), task=merged["task"], namespace=_namespace(merged["namespace"]),
        heartbeat=merged["heartbeat"] == "true", extrinsics=_path(merged["extrinsics"]), rviz=merged["rviz"] == "true")
    _check_combination(args)
    return args


def _check_combination(a: LaunchArgs) -> None:
    if a.sim and a.camera != "sim":
        raise LaunchArgumentError(f"camera:={a.camera} needs sim:=false; with sim:=true the camera is the "
                                  f"simulator's ego camera (camera:=sim)")
    if not a.sim and a.camera == "sim":
        raise LaunchArgumentError("camera:=sim needs sim:=true; with sim:=false choose camera:=aria, realsense or "
                                  "recording")
    if a.camera == "sim" and a.camera_input is not None:
        raise LaunchArgumentError("camera_input:=... is for camera:=aria, realsense or recording, not the simulator")
    if a.camera == "recording" and a.camera_input is None:
        raise LaunchArgumentError("camera:=recording needs camera_input:=<recording folder>")
    if a.policy == "replay" and a.recording is None:
        raise LaunchArgumentError("policy:=replay needs recording:=<preprocessed recording folder>")
    if a.policy != "replay" and a.recording is not None:
        raise LaunchArgumentError(f"recording:=... is only used by policy:=replay (policy is {a.policy})")
    if a.policy == "replay" and a.bundle is not None:
        raise LaunchArgumentError("bundle:=... is not used by policy:=replay")
    if a.policy != "replay" and a.bundle is None and a.policy not in DEFAULT_BUNDLES:
        raise LaunchArgumentError(f"policy:={a.policy} has no shipped bundle; give bundle:=<folder written by "
                                  f"'humanego run humanego_training export'>")
    if a.sim and a.extrinsics is not None:
        raise LaunchArgumentError("extrinsics:=... is for sim:=false (the simulator publishes its camera pose)")


# --- the node list ---------------------------------------------------------------------------------------------
Condition = Callable[[LaunchArgs], bool]
Values = Callable[[LaunchArgs], dict[str, Any]]


def _always(_: LaunchArgs) -> bool:
    return True


def _none(_: LaunchArgs) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph. ``config``: its parameter file under config/ (None: it has none); ``parameters``:
    values set from the launch arguments (they override the file); ``when``: whether the arguments include it;
    ``required``: its exit shuts the whole graph down."""

    package: str
    executable: str
    name: str
    config: str | None = None
    parameters: Values = _none
    when: Condition = _always
    remaps: tuple[tuple[str, str], ...] = ()
    required: bool = True


def bundle_dir(a: LaunchArgs) -> Path:
    """The policy bundle the arguments select: bundle:=... or the shipped default of the policy."""
    if a.bundle is not None:
        return a.bundle
    return ament_index.package_share(ament_index.RESOURCE_PACKAGE) / "models" / DEFAULT_BUNDLES[a.policy]


def _policy_parameters(a: LaunchArgs) -> dict[str, Any]:
    if a.policy == "replay":
        return {"policy": "replay", "recording": str(a.recording)}
    return {"policy": a.policy, "bundle": str(bundle_dir(a))}


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("humanego_sim", "sim_robot", "sim_robot", "sim_robot.yaml",
             parameters=lambda a: {"robot": a.robot, "task": a.task}, when=lambda a: a.sim),
    NodeSpec("humanego_bringup", "camera_extrinsics", "camera_extrinsics",
             parameters=lambda a: {"file": str(a.extrinsics)} if a.extrinsics else {}, when=lambda a: not a.sim),
    NodeSpec("humanego_drivers", "aria_live", "aria_live", "aria_live.yaml",
             when=lambda a: a.camera == "aria" and a.camera_input is None),
    NodeSpec("humanego_drivers", "aria_source", "aria_source", "aria_source.yaml",
             parameters=lambda a: {"vrs": str(a.camera_input)},
             when=lambda a: a.camera == "aria" and a.camera_input is not None),
    NodeSpec("humanego_drivers", "realsense_source", "realsense_source", "realsense_source.yaml",
             parameters=lambda a: {"recording": str(a.camera_input)} if a.camera_input else {},
             when=lambda a: a.camera == "realsense"),
    NodeSpec("humanego_drivers", "recording_source", "recording_source", "recording_source.yaml",
             parameters=lambda a: {"recording": str(a.camera_input)}, when=lambda a: a.camera == "recording"),
    NodeSpec("humanego_perception", "clean_view", "clean_view", "clean_view.yaml",
             parameters=lambda a: {"robot": a.robot}),
    # The calibration check of a real robot (the simulator's camera pose is exact): a view, not required.
    NodeSpec("humanego_control", "extrinsics_check", "extrinsics_check", "extrinsics_check.yaml",
             parameters=lambda a: {"robot": a.robot}, when=lambda a: not a.sim, required=False),
    NodeSpec("humanego_perception", "state_estimator", "state_estimator", "state_estimator.yaml",
             parameters=lambda a: {"robot": a.robot, "task": a.task, "bundle": str(bundle_dir(a))},
             when=lambda a: a.policy != "replay"),
    NodeSpec("humanego_policy", "policy", "policy", "policy.yaml", parameters=_policy_parameters),
    NodeSpec("humanego_control", "ik_retarget", "ik_retarget", "ik_retarget.yaml",
             parameters=lambda a: {"robot": a.robot}),
    NodeSpec("humanego_control", "trajectory_controller", "trajectory_controller", "trajectory_controller.yaml",
             parameters=lambda a: {"robot": a.robot, "output": "sim" if a.sim else "ros2_control"}),
    NodeSpec("humanego_control", "heartbeat", "heartbeat", "heartbeat.yaml", when=lambda a: a.heartbeat),
)

RVIZ = NodeSpec("rviz2", "rviz2", "rviz2", when=lambda a: a.rviz, required=False)


# --- resolved commands -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeLaunch:
    """One node as it will be started: everything resolved to paths and values."""

    package: str
    executable: str
    name: str
    namespace: str
    parameter_files: tuple[Path, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    remaps: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    required: bool = True

    @property
    def fully_qualified_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ros_args(self) -> list[str]:
        """Command-line arguments after the executable, as ``ros2 run`` / ``humanego run`` take them."""
        argv = list(self.arguments) + ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            argv += ["-r", f"__ns:={self.namespace}"]
        for path in self.parameter_files:
            argv += ["--params-file", str(path)]
        for name, value in self.parameters.items():
            argv += ["-p", f"{name}:={parameter_value(value)}"]
        for source, target in self.remaps:
            argv += ["-r", f"{source}:={target}"]
        return argv

    def launch_ros_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``launch_ros.actions.Node`` for the same node (used by robot.launch.py)."""
        kwargs: dict[str, Any] = {
            "package": self.package, "executable": self.executable, "name": self.name,
            "namespace": self.namespace or "", "output": "screen",
            "parameters": [str(p) for p in self.parameter_files] + ([dict(self.parameters)] if self.parameters else []),
            "remappings": list(self.remaps)}
        if self.arguments:
            kwargs["arguments"] = list(self.arguments)
        return kwargs


def parameter_value(value: Any) -> str:
    """A ``-p name:=value`` value that rcl parses (as YAML) back to exactly ``value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        try:
            plain = yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        return value if plain and value else yaml.safe_dump(value, default_style='"').strip()
    raise TypeError(f"launch parameter values are bool, int, float or str, got {type(value).__name__}")


@dataclass(frozen=True)
class GraphPlan:
    args: LaunchArgs
    nodes: tuple[NodeLaunch, ...]
    notes: tuple[str, ...] = ()  # things the user should know that do not stop the launch (no rviz2, ...)

    def node(self, name: str) -> NodeLaunch:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node '{name}' in this graph (nodes: {', '.join(n.name for n in self.nodes)})")


def selected_specs(args: LaunchArgs) -> list[NodeSpec]:
    """The node specs the arguments include (rviz2 aside), in start order."""
    return [spec for spec in NODES if spec.when(args)]


def plan(args: LaunchArgs, only: Sequence[str] | None = None) -> GraphPlan:
    """Resolve the graph for ``args`` and check everything it needs; raise PreflightError on the first problem.

    ``only``: start just these nodes of the graph (by name), e.g. to bring up the perception half alone.
    """
    specs = selected_specs(args)
    if only is not None:
        names = [s.name for s in specs]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise LaunchArgumentError(f"no node {', '.join(unknown)} in this graph; its nodes: {', '.join(names)}")
        specs = [s for s in specs if s.name in only]
    notes = []
    if args.rviz and (only is None or RVIZ.name in only):
        if _installed(RVIZ):
            specs.append(RVIZ)
        else:
            notes.append("rviz:=true but rviz2 is not installed here (it comes with a ROS 2 desktop install); "
                         "RViz is not started")
    names = {s.name for s in specs}
    _check_policy_inputs(args, names)
    if "camera_extrinsics" in names:
        _check_extrinsics(args)
    if args.camera_input is not None and not args.camera_input.exists():
        raise PreflightError(f"camera_input:={args.camera_input}: no such file or folder")
    nodes = tuple(_resolve(spec, args) for spec in specs)
    return GraphPlan(args, nodes, tuple(notes))


def _installed(spec: NodeSpec) -> bool:
    try:
        ament_index.executable_path(spec.package, spec.executable)
    except ament_index.PackageNotFoundError:
        return False
    return True


def _check_policy_inputs(args: LaunchArgs, names: set[str]) -> None:
    if not names & {"policy", "state_estimator"}:
        return
    if args.policy == "replay":
        frames = args.recording / "preprocess" / "all_data"
        if not frames.is_dir():
            raise PreflightError(f"policy:=replay: {frames} not found (recording:= must be a recording preprocessed "
                                 f"with 'humanego run humanego_training preprocess'); the arm is not started")
        return
    try:
        bundle = Bundle.load(bundle_dir(args))
    except (FileNotFoundError, BundleError) as exc:
        raise PreflightError(f"policy bundle: {exc} (give bundle:=<folder written by 'humanego run "
                             f"humanego_training export'); the arm is not started") from None
    if bundle.manifest.policy_type != args.policy:
        raise PreflightError(f"policy:={args.policy} but {bundle.path / 'bundle.json'} holds a "
                             f"'{bundle.manifest.policy_type}' policy; the arm is not started")


def _check_extrinsics(args: LaunchArgs) -> None:
    # Imported here: the calibration module brings OpenCV, which only a real-robot graph needs.
    from humanego_control.hand_eye import load_camera_extrinsics

    path = args.extrinsics or ament_index.package_share(ament_index.RESOURCE_PACKAGE) / "config" / \
        "camera_extrinsics.yaml"
    try:
        load_camera_extrinsics(path)
    except ConfigError as exc:
        raise PreflightError(f"camera calibration: {exc} (sim:=false publishes the camera pose from it: calibrate "
                             f"with the hand-eye tool or pass extrinsics:=<file>); the arm is not started") from None


def _resolve(spec: NodeSpec, args: LaunchArgs) -> NodeLaunch:
    try:
        ament_index.executable_path(spec.package, spec.executable)
    except ament_index.PackageNotFoundError as exc:
        raise PreflightError(f"node '{spec.name}': {exc}") from None
    fqn = f"{args.namespace}/{spec.name}"
    files = ()
    if spec.config is not None:
        path = ament_index.package_share(ament_index.RESOURCE_PACKAGE) / "config" / spec.config
        check_parameter_file(path, fqn)
        files = (path,)
    parameters = dict(spec.parameters(args))
    if args.sim and spec.name != "sim_robot":
        parameters["use_sim_time"] = True
    arguments: tuple[str, ...] = ()
    if spec is RVIZ:
        arguments = ("-d", str(rviz.render_config(args.namespace, args.robot)))
    return NodeLaunch(spec.package, spec.executable, spec.name, args.namespace, files, parameters, spec.remaps,
                      arguments, spec.required)


# --- parameter files ---------------------------------------------------------------------------------------------
def node_pattern_matches(pattern: str, fully_qualified_name: str) -> bool:
    """Whether a parameter-file section key applies to a node, as rcl decides: a key is a fully qualified
    node name ('/' added in front when missing) in which ``*`` stands for one name token and ``**`` for any
    number of them (``/**`` = every node; ``/**/policy`` = a node named policy in any namespace)."""
    pattern_tokens = [t for t in ("/" + pattern.lstrip("/")).split("/") if t]
    name_tokens = [t for t in fully_qualified_name.split("/") if t]

    def match(p: int, n: int) -> bool:
        if p == len(pattern_tokens):
            return n == len(name_tokens)
        if pattern_tokens[p] == "**":
            return any(match(p + 1, k) for k in range(n, len(name_tokens) + 1))
        return n < len(name_tokens) and fnmatch.fnmatchcase(name_tokens[n], pattern_tokens[p]) and match(p + 1, n + 1)

    return match(0, 0)


def check_parameter_file(path: Path, fully_qualified_name: str) -> None:
    """A node's parameter file must exist, be a ``ros__parameters`` file and have a section for the node."""
    if not path.is_file():
        raise PreflightError(f"parameter file missing: {path} (is it in config/ and installed? run 'make setup')")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PreflightError(f"parameter file {path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise PreflightError(f"parameter file {path}: expected sections like '/**: {{ros__parameters: {{...}}}}'")
    for key, section in data.items():
        if not (isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict)):
            raise PreflightError(f"parameter file {path}: section '{key}' has no 'ros__parameters' mapping")
    if not any(node_pattern_matches(str(key), fully_qualified_name) for key in data):
        raise PreflightError(f"parameter file {path}: no section applies to node {fully_qualified_name} (sections: "
                             f"{', '.join(map(str, data))}); name the section '/**' so it applies in any namespace")


def describe_arguments() -> str:
    """The ``--show-args`` text."""
    lines = []
    for a in arguments():
        choices = f" [{'|'.join(a.choices)}]" if a.choices else ""
        lines.append(f"  {a.name}:={a.default!s}{choices}\n      {a.description}")
    return "\n".join(lines)
