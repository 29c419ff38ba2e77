"""``ros2 launch humanego_bringup robot.launch.py [name:=value ...]``: the robot graph on a machine with ROS 2.

The arguments, the node list and the parameters live in :mod:`humanego_bringup.robot_graph`, shared with
``humanego launch robot`` (no ROS install needed); this file only translates them into launch actions. The
arguments are read when the launch runs, checked (unknown names, values outside the choices, missing
bundle or calibration: nothing starts, the error names what is wrong) and the resolved nodes are
started; a required node that exits shuts the launch down.
"""

from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch_ros.actions import Node

from humanego_bringup import robot_graph
from launch import LaunchDescription


def _nodes(context):
    given = dict(context.launch_configurations)
    names = {a.name for a in robot_graph.arguments()}
    unknown = sorted(set(given) - names)
    if unknown:
        raise robot_graph.LaunchArgumentError(f"unknown launch argument{'s' if len(unknown) > 1 else ''} "
                                              f"{', '.join(unknown)}; valid arguments: {', '.join(sorted(names))}")
    graph = robot_graph.plan(robot_graph.launch_args(given))
    actions = [LogInfo(msg=note) for note in graph.notes]
    for node in graph.nodes:
        on_exit = Shutdown(reason=f"required node '{node.name}' exited") if node.required else None
        actions.append(Node(**node.launch_ros_kwargs(), on_exit=on_exit))
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": list(a.choices)} if a.choices else {}))
                for a in robot_graph.arguments()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
