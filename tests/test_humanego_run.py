"""`humanego run` starts installed executables like `ros2 run`, --ros-args included."""

import os
import subprocess
import time

import rclpy
from rcl_interfaces.srv import GetParameters
from std_msgs.msg import Header

from humanego_ros import qos
from humanego_ros.participant import leave_graph


def humanego(*args, timeout=60):
    return subprocess.run(["humanego", *args], capture_output=True, text=True, timeout=timeout)


def test_node_sees_ros_args_parameters_and_remaps(processes):
    name = f"hb_{os.getpid()}"
    proc = processes.start(["humanego", "run", "humanego_control", "heartbeat", "--ros-args",
                            "-p", "rate_hz:=40.0", "-p", "source:=station_7", "-r", f"__node:={name}",
                            "-r", f"heartbeat:=/{name}/beat"])
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("run_test_probe", context=context)
    try:
        beats = []
        node.create_subscription(Header, f"/{name}/beat", beats.append, qos.COMMAND)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 60
        while not beats and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert beats, f"no heartbeat received; node output: {proc.stderr.read() if proc.poll() is not None else ''}"
        assert beats[0].frame_id == "station_7"

        client = node.create_client(GetParameters, f"/{name}/get_parameters")
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(GetParameters.Request(names=["rate_hz", "source"]))
        executor.spin_until_future_complete(future, timeout_sec=30)
        rate, source = future.result().values
        assert rate.double_value == 40.0
        assert source.string_value == "station_7"
    finally:
        leave_graph(node, context)


def test_out_of_range_parameter_is_a_clear_start_error():
    out = humanego("run", "humanego_control", "heartbeat", "--ros-args", "-p", "rate_hz:=0.1")
    assert out.returncode == 2
    assert "cannot start" in out.stderr and "rate_hz" in out.stderr


def test_wrong_parameter_type_says_what_to_write():
    out = humanego("run", "humanego_control", "heartbeat", "--ros-args", "-p", "rate_hz:=20")
    assert out.returncode == 2
    assert "'rate_hz'" in out.stderr and "write e.g. 10.0" in out.stderr


def test_unknown_package_and_executable():
    out = humanego("run", "no_such_pkg", "x")
    assert out.returncode == 1 and "package 'no_such_pkg' not found" in out.stderr
    out = humanego("run", "humanego_control", "nope")
    assert out.returncode == 1 and "heartbeat, ik_retarget" in out.stderr


def test_prefix_and_arguments_pass_through():
    out = humanego("run", "--prefix", "echo PREFIXED", "humanego_control", "heartbeat", "--ros-args", "-p", "a:=1")
    assert out.returncode == 0
    assert out.stdout.split() == ["PREFIXED", out.stdout.split()[1], "--ros-args", "-p", "a:=1"]
    assert out.stdout.split()[1].endswith("lib/humanego_control/heartbeat")


def test_pkg_listing():
    out = humanego("pkg", "executables", "humanego_control")
    assert "humanego_control heartbeat" in out.stdout.split("\n")
    assert "humanego_interfaces" in humanego("pkg", "list").stdout.split()
