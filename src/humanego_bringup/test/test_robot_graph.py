"""The robot graph description: arguments, resolution into commands, preflight checks, RViz config."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from humanego_bringup import robot_graph, rviz
from humanego_bringup.robot_graph import (
    LaunchArgumentError,
    PreflightError,
    check_parameter_file,
    launch_args,
    node_pattern_matches,
    parse_assignments,
    plan,
)
from humanego_control.hand_eye import save_camera_extrinsics
from humanego_core.ament_index import resource_path

PACKAGE = Path(robot_graph.__file__).parent
LAUNCH_FILE = Path(__file__).resolve().parents[3] / "launch" / "robot.launch.py"


def test_defaults():
    a = launch_args()
    assert (a.robot, a.sim, a.camera, a.policy, a.rviz, a.namespace, a.heartbeat) == \
        ("panda", True, "sim", "flow", False, "", True)
    assert robot_graph.bundle_dir(a) == resource_path("models") / "serve_bread_flow"
    assert robot_graph.bundle_dir(launch_args({"policy": "act"})) == resource_path("models") / "serve_bread_act"


def test_parse_assignments():
    assert parse_assignments(["robot:=ur5e", "bundle:=/a:=b"]) == {"robot": "ur5e", "bundle": "/a:=b"}
    with pytest.raises(LaunchArgumentError, match="write name:=value"):
        parse_assignments(["robot=ur5e"])
    with pytest.raises(LaunchArgumentError, match="given twice"):
        parse_assignments(["sim:=true", "sim:=false"])


def test_unknown_argument_lists_the_valid_ones():
    with pytest.raises(LaunchArgumentError) as err:
        launch_args({"robt": "ur5e"})
    message = str(err.value)
    assert "unknown launch argument robt" in message
    for a in robot_graph.arguments():
        assert a.name in message


@pytest.mark.parametrize("name, value, valid", [
    ("robot", "kuka", "panda, ur5e"),
    ("sim", "yes", "true, false"),
    ("camera", "webcam", "sim, aria, realsense, recording"),
    ("policy", "diffusion", "flow, act, egomimic, replay"),
    ("rviz", "1", "true, false"),
    ("task", "make_tea", "serve_bread"),
])
def test_bad_value_lists_the_valid_values(name, value, valid):
    with pytest.raises(LaunchArgumentError) as err:
        launch_args({name: value})
    assert f"{name}:={value} is not valid" in str(err.value) and valid in str(err.value)


@pytest.mark.parametrize("values, problem", [
    ({"camera": "aria"}, "camera:=aria needs sim:=false"),
    ({"sim": "false"}, "camera:=sim needs sim:=true"),
    ({"camera_input": "x"}, "not the simulator"),
    ({"sim": "false", "camera": "recording"}, "camera:=recording needs camera_input"),
    ({"policy": "replay"}, "policy:=replay needs recording"),
    ({"recording": "demo"}, "only used by policy:=replay"),
    ({"policy": "replay", "recording": "demo", "bundle": "b"}, "not used by policy:=replay"),
    ({"extrinsics": "e.yaml"}, "extrinsics:=... is for sim:=false"),
    ({"policy": "egomimic"}, "policy:=egomimic has no shipped bundle; give bundle:="),
    ({"namespace": "robot-1"}, "not a ROS namespace"),
    ({"namespace": "1robot"}, "not a ROS namespace"),
])
def test_contradicting_arguments(values, problem):
    with pytest.raises(LaunchArgumentError, match=problem):
        launch_args(values)


def test_namespace_is_normalised():
    assert launch_args({"namespace": "robot1"}).namespace == "/robot1"
    assert launch_args({"namespace": "/a/b_2/"}).namespace == "/a/b_2"
    assert launch_args({"namespace": "/"}).namespace == ""


def test_nodes_selected_by_arguments():
    def names(**values):
        return [s.name for s in robot_graph.selected_specs(launch_args(values))]

    pipeline = ["clean_view", "state_estimator", "policy", "ik_retarget", "trajectory_controller"]
    assert names() == ["sim_robot", *pipeline, "heartbeat"]
    assert names(heartbeat="false") == ["sim_robot", *pipeline]
    real = ["camera_extrinsics", "realsense_source", "clean_view", "extrinsics_check", *pipeline[1:], "heartbeat"]
    assert names(sim="false", camera="realsense") == real
    assert names(sim="false", camera="aria")[1] == "aria_live"
    assert names(sim="false", camera="aria", camera_input="r.vrs")[1] == "aria_source"
    assert names(sim="false", camera="recording", camera_input="rec")[1] == "recording_source"
    # Replay needs no tokens: no state estimator (and no bundle).
    assert "state_estimator" not in names(policy="replay", recording="demo")


def test_bundle_missing_names_the_file_and_starts_nothing(tmp_path):
    with pytest.raises(PreflightError) as err:
        plan(launch_args({"bundle": str(tmp_path / "nope")}))
    assert str(tmp_path / "nope") in str(err.value) and "the arm is not started" in str(err.value)
    with pytest.raises(PreflightError, match=str(tmp_path / "bundle.json")):
        plan(launch_args({"bundle": str(tmp_path)}))
    (tmp_path / "bundle.json").write_text(json.dumps({}))
    with pytest.raises(PreflightError, match=f"{tmp_path / 'bundle.json'}: format: required key is missing"):
        plan(launch_args({"bundle": str(tmp_path)}))


def test_replay_recording_must_be_preprocessed(tmp_path):
    with pytest.raises(PreflightError, match=str(tmp_path / "preprocess" / "all_data")):
        plan(launch_args({"policy": "replay", "recording": str(tmp_path)}))


def test_real_robot_needs_a_valid_calibration(tmp_path):
    base = {"sim": "false", "camera": "realsense"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("translation: [0, 0, 0]\nrotation_xyzw: [0, 0, 0, 3]\n")
    with pytest.raises(PreflightError, match=f"{bad}: rotation_xyzw: must be a unit quaternion"):
        plan(launch_args({**base, "extrinsics": str(bad)}), only=["camera_extrinsics"])
    good = tmp_path / "good.yaml"
    save_camera_extrinsics(good, np.eye(4), "base_link", "camera_optical_frame", {"method": "test"})
    graph = plan(launch_args({**base, "extrinsics": str(good)}), only=["camera_extrinsics"])
    assert graph.node("camera_extrinsics").parameters == {"file": str(good)}


def test_camera_input_must_exist(tmp_path):
    with pytest.raises(PreflightError, match="no such file"):
        plan(launch_args({"sim": "false", "camera": "recording", "camera_input": str(tmp_path / "x")}),
             only=["recording_source"])


def test_resolved_command_of_a_node():
    args = launch_args({"robot": "ur5e", "task": "push_box", "namespace": "r2"})
    graph = plan(args, only=["sim_robot", "clean_view"])
    sim, clean = graph.node("sim_robot"), graph.node("clean_view")
    config = resource_path("config")
    assert sim.ros_args() == ["--ros-args", "-r", "__node:=sim_robot", "-r", "__ns:=/r2", "--params-file",
                              str(config / "sim_robot.yaml"), "-p", "robot:=ur5e", "-p", "task:=push_box"]
    # Every node but the simulator runs on the simulator's clock.
    assert clean.parameters == {"robot": "ur5e", "use_sim_time": True}
    assert clean.launch_ros_kwargs() == {
        "package": "humanego_perception", "executable": "clean_view", "name": "clean_view", "namespace": "/r2",
        "output": "screen", "parameters": [str(config / "clean_view.yaml"), {"robot": "ur5e", "use_sim_time": True}],
        "remappings": []}


def test_only_names_nodes_of_the_graph():
    with pytest.raises(LaunchArgumentError, match="no node aria_live in this graph"):
        plan(launch_args(), only=["aria_live"])


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (3, "3"), (0.0, "0.0"), (0.05, "0.05"), ("panda", "panda"),
    ("true", '"true"'), ("", '""'), ("1.5", '"1.5"'), ("/a b/c", "/a b/c"), ("a: b", '"a: b"'), ("[x]", '"[x]"'),
])
def test_parameter_values_parse_back_as_yaml(value, text):
    assert robot_graph.parameter_value(value) == text
    assert yaml.safe_load(text) == value and type(yaml.safe_load(text)) is type(value)


@pytest.mark.parametrize("pattern, name, matches", [
    ("/**", "/policy", True), ("/**", "/a/b/policy", True), ("/**/policy", "/policy", True),
    ("/**/policy", "/r1/policy", True), ("/**/policy", "/r1/clean_view", False), ("policy", "/policy", True),
    ("policy", "/r1/policy", False), ("/r1/policy", "/r1/policy", True), ("/*/policy", "/r1/policy", True),
    ("/*/policy", "/policy", False), ("/*", "/r1/policy", False), ("/r1/*", "/r1/policy", True),
])
def test_parameter_file_section_patterns(pattern, name, matches):
    assert node_pattern_matches(pattern, name) is matches


def test_parameter_file_checks(tmp_path):
    path = tmp_path / "policy.yaml"
    with pytest.raises(PreflightError, match="parameter file missing"):
        check_parameter_file(path, "/policy")
    path.write_text("policy:\n  ros__parameters:\n    a: 1\n")
    check_parameter_file(path, "/policy")
    with pytest.raises(PreflightError, match=r"no section applies to node /r1/policy .*name the section '/\*\*'"):
        check_parameter_file(path, "/r1/policy")
    path.write_text("/**:\n  parameters:\n    a: 1\n")
    with pytest.raises(PreflightError, match="no 'ros__parameters'"):
        check_parameter_file(path, "/policy")


def test_every_config_file_of_the_graph_applies_in_a_namespace():
    for spec in robot_graph.NODES:
        if spec.config is not None:
            check_parameter_file(resource_path("config") / spec.config, f"/some/ns/{spec.name}")


def test_rviz_config_resolves_topics_and_urdf():
    config = yaml.safe_load(rviz.render_config("/r1", "ur5e").read_text())
    displays = {d["Name"]: d for d in config["Visualization Manager"]["Displays"]}
    topics = {d["Topic"]["Value"] for d in displays.values() if "Topic" in d}
    assert topics == {"/r1/camera/image_clean", "/r1/camera/extrinsics_check", "/r1/viz/predicted_path",
                      "/r1/viz/executed_path", "/r1/viz/markers"}
    robot = displays["RobotModel"]
    assert robot["Description Source"] == "File"
    assert robot["Description File"] == str(resource_path("urdf", "ur5e.urdf"))
    assert "rviz_default_plugins/TF" in {d["Class"] for d in displays.values()}
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
    assert rviz.resolve_topic("/tf", "/r1") == "/tf" and rviz.resolve_topic("viz/markers", "") == "/viz/markers"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_launch_file_imports_ros_launch():
    for module in PACKAGE.glob("*.py"):
        assert not imported_modules(module) & {"launch", "launch_ros"}, module
    assert imported_modules(LAUNCH_FILE) == {"launch", "launch_ros", "humanego_bringup"}
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")
