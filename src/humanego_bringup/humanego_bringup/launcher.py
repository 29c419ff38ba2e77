"""Starts the robot graph as real processes without ROS 2's ``launch`` (``humanego launch robot ...``).

Each node of :func:`humanego_bringup.robot_graph.plan` runs like ``humanego run <pkg> <exe> --ros-args ...``
in its own process group; its output (stdout and stderr) is printed line by line, prefixed with the node's
name. The graph stops (SIGINT to every node, then SIGTERM, then SIGKILL for the ones that do not exit in
time) on :meth:`RobotGraph.stop`, on Ctrl-C in the CLI, or when a required node exits: then
:attr:`RobotGraph.exit_code` is non-zero unless that node ended with 0 and :attr:`RobotGraph.failed`
names it. Python API::

    with RobotGraph({"policy": "replay", "recording": "demo_000"}) as graph:
        ...                      # the graph runs; graph.wait(timeout_s) returns an exit code once it stopped
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from humanego_bringup.robot_graph import GraphPlan, LaunchArgs, NodeLaunch, launch_args, plan
from humanego_core import ament_index

# How long nodes get to exit after SIGINT (then SIGTERM), and after SIGTERM (then SIGKILL).
STOP_TIMEOUT_S = 10.0
TERM_TIMEOUT_S = 3.0
POLL_S = 0.05


class RobotGraph:
    """The nodes of one robot graph as child processes.

    ``args``: validated :class:`LaunchArgs` or ``name -> value`` strings as on the command line; ``only``:
    start just these nodes (by name). Arguments and files are checked here, before anything starts
    (LaunchArgumentError, PreflightError).
    """

    def __init__(self, args: LaunchArgs | Mapping[str, str] | None = None, only: Sequence[str] | None = None,
                 output: TextIO | None = None):
        self.args = args if isinstance(args, LaunchArgs) else launch_args(args)
        self.plan: GraphPlan = plan(self.args, only)
        self.output = output if output is not None else sys.stdout
        self.processes: dict[str, subprocess.Popen] = {}
        self.exit_code: int | None = None
        self.failed: str | None = None  # the required node whose exit stopped the graph
        self.message = ""  # why the graph stopped, for the user
        self._print_lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        self._reported: set[str] = set()
        self._stopped = False

    # ----- starting -----
    def command(self, node: NodeLaunch) -> list[str]:
        return [str(ament_index.executable_path(node.package, node.executable)), *node.ros_args()]

    def start(self) -> RobotGraph:
        for note in self.plan.notes:
            self._print("launch", note)
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # node output reaches the prefixer line by line
        try:
            for node in self.plan.nodes:
                proc = subprocess.Popen(self.command(node), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, errors="replace", env=env,
                                        start_new_session=True)
                self.processes[node.name] = proc
                reader = threading.Thread(target=self._relay, args=(node.name, proc), daemon=True,
                                          name=f"output-{node.name}")
                reader.start()
                self._readers.append(reader)
                self._print("launch", f"started {node.name} (pid {proc.pid})")
        except BaseException:
            self.stop()
            raise
        return self

    def _relay(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._print(name, line.rstrip("\n"))

    def _print(self, name: str, text: str) -> None:
        with self._print_lock:
            self.output.write(f"[{name}] {text}\n")
            self.output.flush()

    # ----- supervision -----
    def poll(self) -> int | None:
        """Check the nodes once: a required node that exited stops the graph. The exit code once stopped."""
        if self.exit_code is not None:
            return self.exit_code
        for node in self.plan.nodes:
            proc = self.processes.get(node.name)
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            if not node.required:
                if node.name not in self._reported:
                    self._reported.add(node.name)
                    self._print("launch", f"{node.name} exited with code {code} (not required: the graph goes on)")
                continue
            self.failed = node.name
            self.message = f"required node '{node.name}' exited with code {code}" if code else \
                f"required node '{node.name}' finished"
            self._print("launch", f"{self.message}; stopping the graph")
            self.exit_code = 1 if code else 0
            self.stop()
            return self.exit_code
        return None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Supervise until the graph stops by itself (the exit code) or ``timeout_s`` passes (None)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                return code
            time.sleep(POLL_S)
        return self.poll()

    def running(self) -> list[str]:
        return [name for name, proc in self.processes.items() if proc.poll() is None]

    # ----- stopping -----
    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every node: SIGINT (their clean shutdown), SIGTERM after ``timeout_s``, then SIGKILL."""
        if self._stopped:
            return
        if self.running():
            self._print("launch", f"stopping {', '.join(self.running())}")
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, TERM_TIMEOUT_S),
                            (signal.SIGKILL, TERM_TIMEOUT_S)):
            alive = self._send(sig)
            if not alive:
                break
            if sig != signal.SIGINT:
                self._print("launch", f"{', '.join(alive)} still running: sent {sig.name}")
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self.running():
                time.sleep(POLL_S)
        for reader in self._readers:
            reader.join(timeout=1.0)
        for name, proc in self.processes.items():
            if proc.returncode:
                self._print("launch", f"{name} exited with code {proc.returncode}")
        if self.exit_code is None:
            self.exit_code = 0
            self.message = self.message or "stopped"
        self._stopped = True

    def kill(self) -> None:
        """SIGKILL every node still running (a second Ctrl-C while stopping)."""
        self._send(signal.SIGKILL)

    def _send(self, sig: signal.Signals) -> list[str]:
        """Send ``sig`` to the process group of every running node; their names."""
        alive = self.running()
        for name in alive:
            try:
                os.killpg(self.processes[name].pid, sig)
            except ProcessLookupError:
                pass
        return alive

    def __enter__(self) -> RobotGraph:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
