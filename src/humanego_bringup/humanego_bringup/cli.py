"""``humanego``: the workspace's command line, for machines with or without a ROS 2 install.

  humanego run [--prefix CMD] <package> <executable> [args ...]   like ``ros2 run``
  humanego pkg list | prefix <package> | executables [<package>]  like ``ros2 pkg``
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ament_index.PackageNotFoundError as exc:
        print(f"humanego: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
