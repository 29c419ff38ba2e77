"""The robot graph started for real: `humanego launch robot` / RobotGraph start every node of the description,
stop on Ctrl-C or when a required node dies, and refuse bad arguments and missing files before starting."""

import importlib
import io
import os
import re
import signal
import subprocess
import threading
import time
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
import yaml
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory

from humanego_bringup.launcher import RobotGraph
from humanego_bringup.robot_graph import NODES, PreflightError, launch_args, node_pattern_matches, parameter_value, plan
from humanego_control.hand_eye import save_camera_extrinsics
from humanego_core.actions import NormStats
from humanego_core.ict import MAX_TOKENS, token_dim
from humanego_interfaces.msg import ActionChunk, InteractionTokens
from humanego_policy.checkpoint import TokenLayout, save_checkpoint
from humanego_policy.policies import build_policy
from humanego_ros import qos
from humanego_ros.conversions import transform_to_matrix
from humanego_ros.parameters import parameter_file_problems
from humanego_training.export import export_bundle

# The nodes of the default graph (sim:=true camera:=sim policy:=flow).
DEFAULT_GRAPH = ["sim_robot", "clean_view", "state_estimator", "policy", "ik_retarget", "trajectory_controller",
                 "heartbeat"]
# A flow-matching policy small enough to export in seconds (random weights: the graph test checks wiring, not skill).
TINY_FLOW = {"image_size": [32, 32], "image_channels": 8, "dim": 32, "heads": 2, "encoder_layers": 1,
             "decoder_layers": 1, "ffn_dim": 64, "num_steps": 2}


def humanego(*args, timeout=60):
    return subprocess.run(["humanego", *args], capture_output=True, text=True, timeout=timeout)


class Output(io.TextIOBase):
    """A thread-safe text sink for the graph's prefixed output."""

    def __init__(self):
        self.lines, self._lock = [], threading.Lock()

    def write(self, text):
        with self._lock:
            self.lines.extend(text.splitlines())
        return len(text)

    def text(self):
        with self._lock:
            return "\n".join(self.lines)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A real policy bundle (exported like the shipped ones) for the sim's single right arm, camera frame."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layout = TokenLayout(token_dim(dual_hand=False), MAX_TOKENS, "camera_frame", False, "right")
    policy = build_policy("flow", TINY_FLOW, layout.token_dim, layout.max_tokens)
    stats = NormStats(np.array([0.0, 0.1, 0.7]), np.array([0.2, 0.15, 0.2]))
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "latest.pt", policy, layout, stats.to_dict(), dt=1 / 30)
    return export_bundle(run, tmp_path_factory.mktemp("models") / "tiny_flow", progress=False).path


def node_names(probe_node) -> set[str]:
    return {f"{ns.rstrip('/')}/{name}" for name, ns in probe_node.get_node_names_and_namespaces()}


# Node configs meant to list every declared parameter: the IK's tuning is read there, not from the code's defaults.
COMPLETE_CONFIGS = {"ik_retarget"}


@pytest.mark.slow
@pytest.mark.parametrize("spec", [spec for spec in NODES if spec.config], ids=lambda spec: spec.name)
def test_each_shipped_parameter_file_sets_declared_parameters_with_their_types(workspace, spec):
    """A misspelt or mistyped entry in config/<node>.yaml would fail the node at start (or be ignored)."""
    [entry_point] = entry_points(group="console_scripts", name=spec.executable)
    specs = importlib.import_module(entry_point.module).parameters()
    path = workspace / "config" / spec.config
    sections = [key for key in yaml.safe_load(path.read_text()) if node_pattern_matches(key, f"/{spec.name}")]
    assert sections, f"{path} has no section for /{spec.name}"
    for section in sections:
        assert parameter_file_problems(path, section, specs, complete=spec.name in COMPLETE_CONFIGS) == []


def test_graph_starts_every_node_and_stops_them(probe, tiny_bundle):
    ns = f"launch_{os.getpid()}"
    output = Output()
    graph = RobotGraph({"namespace": ns, "bundle": str(tiny_bundle)}, output=output)
    assert [n.name for n in graph.plan.nodes] == DEFAULT_GRAPH
    p = probe("launch_probe", {"clean": (Image, f"/{ns}/camera/image_clean", qos.SENSOR),
                               "ict": (InteractionTokens, f"/{ns}/ict", qos.COMMAND),
                               "chunk": (ActionChunk, f"/{ns}/action_chunk", qos.COMMAND),
                               "joint_chunk": (JointTrajectory, f"/{ns}/joint_chunk", qos.COMMAND),
                               "command": (JointTrajectory, f"/{ns}/joint_trajectory", qos.COMMAND),
                               "beat": (Header, f"/{ns}/heartbeat", qos.COMMAND)})
    try:
        graph.start()
        expected = {f"/{ns}/{name}" for name in DEFAULT_GRAPH}
        p.wait(lambda: expected <= node_names(p.node) or graph.poll() is not None, "every node in the ROS graph")
        assert graph.poll() is None, output.text()
        # The nodes work together, each stage's output reaching the next (sim time, TF, parameters all wired):
        # camera -> clean view -> tokens -> chunk -> joint chunk -> commands to the sim; the heartbeat carries the
        # source set in config/heartbeat.yaml (the parameter file applies in the namespace).
        stages = ("clean", "ict", "chunk", "joint_chunk", "command", "beat")
        try:
            p.wait(lambda: all(p.got[key] for key in stages) or graph.poll() is not None, f"messages on {stages}")
        except AssertionError as exc:  # the nodes' own words on why a stage stayed silent
            tail = "\n".join(output.text().splitlines()[-40:])
            raise AssertionError(f"{exc}\nthe graph's last output:\n{tail}") from None
        assert graph.poll() is None, output.text()
        assert p.got["ict"][0].token_dim == token_dim(dual_hand=False)
        assert p.got["chunk"][0].policy_id == "tiny_flow" and p.got["chunk"][0].header.frame_id == \
            p.got["ict"][0].header.frame_id
        assert p.got["beat"][0].frame_id == "launch"
        assert {f"[{name}]" for name in DEFAULT_GRAPH} <= {line.split(" ")[0] for line in output.lines}
    finally:
        graph.stop()
    assert graph.exit_code == 0 and graph.failed is None
    assert not graph.running()
    assert all(proc.returncode is not None for proc in graph.processes.values())


@pytest.mark.slow
def test_a_required_node_that_dies_stops_the_graph():
    output = Output()
    with RobotGraph({"namespace": f"die_{os.getpid()}"}, only=["sim_robot", "heartbeat"], output=output) as graph:
        os.killpg(graph.processes["heartbeat"].pid, signal.SIGKILL)
        code = graph.wait(timeout_s=60)
    assert code == 1 and graph.failed == "heartbeat"
    assert "required node 'heartbeat' exited with code -9" in graph.message
    assert graph.processes["sim_robot"].returncode is not None
    assert "stopping the graph" in output.text()


@pytest.mark.slow
def test_cli_ctrl_c_stops_every_node(processes):
    proc = processes.start(["humanego", "launch", "robot", "--only", "heartbeat", f"namespace:=cli_{os.getpid()}"])
    lines = []
    deadline = time.monotonic() + 60
    while not any(line.startswith("[heartbeat] [INFO]") for line in lines) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    assert any(line.startswith("[heartbeat] [INFO]") for line in lines), "".join(lines) + proc.stderr.read()
    [pid] = [int(m.group(1)) for line in lines if (m := re.search(r"started heartbeat \(pid (\d+)\)", line))]
    os.killpg(proc.pid, signal.SIGINT)  # the launcher's own group: it must pass the stop on
    assert proc.wait(timeout=60) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bundle_of_another_policy_type_is_refused(tiny_bundle):
    with pytest.raises(PreflightError, match=f"policy:=act but {tiny_bundle / 'bundle.json'} holds a 'flow' policy"):
        plan(launch_args({"policy": "act", "bundle": str(tiny_bundle)}))
    graph = plan(launch_args({"bundle": str(tiny_bundle)}), only=["state_estimator"])
    assert graph.node("state_estimator").parameters["bundle"] == str(tiny_bundle)


@pytest.mark.slow
def test_cli_bad_arguments_start_nothing(tmp_path):
    out = humanego("launch", "robot", "robt:=ur5e")
    assert out.returncode == 2 and "unknown launch argument robt; valid arguments: robot, sim" in out.stderr
    out = humanego("launch", "robot", "camera:=webcam")
    assert out.returncode == 2 and "valid values of 'camera': sim, aria, realsense, recording" in out.stderr
    out = humanego("launch", "robot", f"bundle:={tmp_path}")
    assert out.returncode == 2 and f"policy bundle: {tmp_path / 'bundle.json'} does not exist" in out.stderr
    assert "started" not in out.stdout
    out = humanego("launch", "robot", "--show-args")
    assert out.returncode == 0 and "camera:=sim [sim|aria|realsense|recording]" in out.stdout


def test_cli_dry_run_prints_the_node_commands():
    out = humanego("launch", "robot", "--dry-run", "--only", "sim_robot,clean_view", "robot:=ur5e", "namespace:=r7")
    assert out.returncode == 0, out.stderr
    sim, clean = out.stdout.splitlines()
    assert re.fullmatch(r"\S+/lib/humanego_sim/sim_robot --ros-args -r __node:=sim_robot -r __ns:=/r7 "
                        r"--params-file \S+/config/sim_robot.yaml -p robot:=ur5e -p task:=serve_bread", sim)
    assert "clean_view --ros-args" in clean and "-p use_sim_time:=true" in clean


def started_line(proc) -> str:
    """The heartbeat node's start-up log line (it names the source parameter's value)."""
    for line in iter(proc.stderr.readline, ""):
        if "heartbeat '" in line:
            return line
    raise AssertionError(f"the heartbeat node exited ({proc.wait()}) without starting")


@pytest.mark.slow
def test_parameter_file_sections_and_values_as_rcl_reads_them(processes, tmp_path):
    """node_pattern_matches and parameter_value agree with what a real node gets (rcl is the reference)."""
    ns = f"/pat_{os.getpid()}"
    cases = {"heartbeat": False, "/**/heartbeat": True, "/*/heartbeat": True, "/**": True,
             f"{ns}/heartbeat": True, "/other/heartbeat": False}
    procs = {}
    for i, key in enumerate(cases):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(f"{key}:\n  ros__parameters:\n    source: from_file\n")
        procs[key] = processes.start(["humanego", "run", "humanego_control", "heartbeat", "--ros-args",
                                      "-r", f"__ns:={ns}", "-r", "__node:=heartbeat", "--params-file", str(path)])
    quoted = processes.start(["humanego", "run", "humanego_control", "heartbeat", "--ros-args", "-r", f"__ns:={ns}",
                              "-r", "__node:=quoted", "-p", f"source:={parameter_value('true')}"])
    for key, proc in procs.items():
        line = started_line(proc)
        assert ("'from_file'" in line) is cases[key] is node_pattern_matches(key, f"{ns}/heartbeat"), (key, line)
    assert "heartbeat 'true' at" in started_line(quoted)


@pytest.mark.slow
def test_camera_extrinsics_node_publishes_the_calibration(processes, probe, tmp_path):
    T = np.array([[0.0, -1.0, 0.0, 0.4], [0.0, 0.0, -1.0, -0.3], [1.0, 0.0, 0.0, 0.6], [0.0, 0.0, 0.0, 1.0]])
    path = tmp_path / "camera_extrinsics.yaml"
    child = f"cam_{os.getpid()}"
    save_camera_extrinsics(path, T, "base_link", child, {"method": "test"})
    p = probe("extrinsics_probe", {"static": (TFMessage, "/tf_static", qos.TF_STATIC)})
    proc = processes.start(["humanego", "run", "humanego_bringup", "camera_extrinsics", "--ros-args",
                            "-p", f"file:={path}"])
    [transform] = p.wait(lambda: [t for m in p.got["static"] for t in m.transforms if t.child_frame_id == child],
                         "the calibration on /tf_static", proc)
    assert transform.header.frame_id == "base_link"
    np.testing.assert_allclose(transform_to_matrix(transform.transform), T, atol=1e-9)


def test_camera_extrinsics_node_refuses_a_bad_file(tmp_path):
    path = tmp_path / "camera_extrinsics.yaml"
    path.write_text("translation: [0, 0, 0]\nrotation_xyzw: [0, 0, 0, 1.5]\n")
    out = humanego("run", "humanego_bringup", "camera_extrinsics", "--ros-args", "-p", f"file:={path}")
    assert out.returncode == 2
    assert "cannot start" in out.stderr and f"{path}: rotation_xyzw: must be a unit quaternion" in out.stderr
