"""``humanego``: the workspace's command line, for machines with or without a ROS 2 install.

  humanego run [--prefix CMD] <package> <executable> [args ...]   like ``ros2 run``
  humanego pkg list | prefix <package> | executables [<package>]  like ``ros2 pkg``
  humanego launch robot [name:=value ...]                          like ``ros2 launch humanego_bringup robot.launch.py``
  humanego record [--output DIR] [--topics T ...]                  like ``ros2 bag record -s mcap``
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time

from humanego_core import ament_index


def cmd_run(args: argparse.Namespace) -> int:
    path = ament_index.executable_path(args.package, args.executable)
    argv = (shlex.split(args.prefix) if args.prefix else []) + [str(path)] + args.argv
    sys.stdout.flush()
    # Replace this process, as ros2 run does: signals and the exit code reach the caller unchanged.
    os.execvp(argv[0], argv)


def cmd_pkg(args: argparse.Namespace) -> int:
    if args.pkg_command == "list":
        print("\n".join(ament_index.package_names()))
    elif args.pkg_command == "prefix":
        print(ament_index.package_prefix(args.package))
    else:
        packages = [args.package] if args.package else ament_index.package_names()
        for package in packages:
            for exe in ament_index.executables(package):
                print(f"{package} {exe}")
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    # Imported here: `humanego run` (every node start) need not load the graph and its dependencies.
    from humanego_bringup.launcher import RobotGraph
    from humanego_bringup.robot_graph import LaunchArgumentError, PreflightError, describe_arguments, parse_assignments

    if args.show_args:
        print(f"Arguments of 'humanego launch {args.graph}' (name:=value, default shown):")
        print(describe_arguments())
        return 0
    try:
        graph = RobotGraph(parse_assignments(args.assignments), only=args.only)
    except (LaunchArgumentError, PreflightError) as exc:
        print(f"humanego launch: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for note in graph.plan.notes:
            print(f"# {note}")
        for node in graph.plan.nodes:
            print(shlex.join(graph.command(node)))
        return 0

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            graph.kill()  # a second Ctrl-C: no more waiting for clean shutdowns
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    graph.start()
    code = None
    while code is None and not stop.is_set():
        code = graph.wait(0.1)
    if code is None:
        graph.stop()
    if graph.exit_code:
        print(f"humanego launch: {graph.message}", file=sys.stderr)
    return graph.exit_code


def cmd_record(args: argparse.Namespace) -> int:
    from humanego_bringup.recording import RECORDED_TOPICS, BagRecorder, resolve_topics, ros2_bag_command

    topics = resolve_topics(args.topics or RECORDED_TOPICS, args.namespace)
    output = args.output or f"humanego_{time.strftime('%Y_%m_%d-%H_%M_%S')}"
    if args.print_ros2_command:
        print(shlex.join(ros2_bag_command(output, topics)))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        recorder = BagRecorder(output, topics, log=lambda line: print(f"[record] {line}", flush=True))
    except FileExistsError as exc:
        print(f"humanego record: {exc}", file=sys.stderr)
        return 2
    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
    print(f"[record] writing {output} (MCAP) {until}; topics: {' '.join(topics)}", flush=True)
    try:
        recorder.spin(args.duration, stop)
    finally:
        recorder.close()
    for topic, count in recorder.counts.items():
        print(f"[record] {topic}: {count} messages")
    missing = recorder.missing()
    if missing:
        print(f"[record] never published: {' '.join(missing)}")
    print(f"[record] bag: {output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanego", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an executable of a built package (like ros2 run)",
                         description="Run an executable of a package, passing every following argument "
                                     "(including --ros-args ...) to it unchanged.")
    run.add_argument("--prefix", help="command to prefix the executable with, e.g. 'gdb -ex run --args'")
    run.add_argument("package")
    run.add_argument("executable")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="arguments for the executable")
    run.set_defaults(func=cmd_run)

    pkg = sub.add_parser("pkg", help="list packages and executables (like ros2 pkg)")
    pkg_sub = pkg.add_subparsers(dest="pkg_command", required=True, metavar="SUBCOMMAND")
    pkg_sub.add_parser("list", help="all packages in the ament index")
    prefix = pkg_sub.add_parser("prefix", help="install prefix of a package")
    prefix.add_argument("package")
    exes = pkg_sub.add_parser("executables", help="executables of one or all packages")
    exes.add_argument("package", nargs="?")
    pkg.set_defaults(func=cmd_pkg)

    launch = sub.add_parser(
        "launch", help="start the robot graph (like ros2 launch humanego_bringup robot.launch.py)",
        description="Start every node of the robot graph as its own process (the description in "
                    "humanego_bringup.robot_graph, also used by robot.launch.py). Output lines are prefixed with "
                    "the node name; Ctrl-C stops all nodes; a required node that exits stops the graph and the "
                    "command exits non-zero naming it. See --show-args for the arguments.")
    launch.add_argument("graph", choices=["robot"], help="the graph to start")
    launch.add_argument("assignments", nargs="*", metavar="name:=value", help="launch arguments, e.g. sim:=true")
    launch.add_argument("--show-args", action="store_true", help="list the arguments with defaults and choices")
    launch.add_argument("--dry-run", action="store_true", help="check everything and print the node commands")
    launch.add_argument("--only", type=lambda s: [n for n in s.split(",") if n], metavar="NODE[,NODE...]",
                        help="start only these nodes of the graph, e.g. --only sim_robot,clean_view")
    launch.set_defaults(func=cmd_launch)

    record = sub.add_parser(
        "record", help="record the robot's topics into a rosbag2 MCAP bag (like ros2 bag record)",
        description="Record the documented topic set (camera, joint states, ICT, chunks, commands, TF, task "
                    "state, diagnostics; humanego_bringup.recording.RECORDED_TOPICS) into a rosbag2 bag with MCAP "
                    "storage. Topics are picked up when their publishers appear; stop with Ctrl-C or --duration.")
    record.add_argument("--output", "-o", help="bag folder to create (default humanego_<date-time>)")
    record.add_argument("--topics", nargs="+", metavar="TOPIC",
                        help="record these topics instead (relative names are under --namespace)")
    record.add_argument("--namespace", default="", help="robot namespace of the relative topic names")
    record.add_argument("--duration", type=float, help="stop after this many seconds")
    record.add_argument("--print-ros2-command", action="store_true",
                        help="print the equivalent 'ros2 bag record' command (for machines with ROS 2) and exit")
    record.set_defaults(func=cmd_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "launch":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        # Assignments after an option (`--only x sim:=false`): argparse leaves them over.
        args.assignments += extra
    try:
        return args.func(args)
    except ament_index.PackageNotFoundError as exc:
        print(f"humanego: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
