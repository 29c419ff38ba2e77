"""Fixtures of the workspace-level tests: real processes in the workspace environment."""

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from humanego_ros.participant import leave_graph, stuck_teardowns

WORKSPACE = Path(__file__).resolve().parents[1]
EXIT_STATUS = pytest.StashKey[int]()


class DrainedPipe:
    """A child's stdout or stderr read by a thread as it comes, so that a chatty node never blocks on a full
    pipe (64 KiB) while its test is busy elsewhere; the test reads it as it would the pipe."""

    def __init__(self, pipe):
        self.lines: list[str] = []
        self.closed = False
        self.position = 0
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self.thread.start()

    def _drain(self, pipe):
        for line in iter(pipe.readline, ""):
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def readline(self) -> str:
        """The next line, waiting for it; "" at the end of the output."""
        with self.changed:
            self.changed.wait_for(lambda: self.position < len(self.lines) or self.closed)
            if self.position == len(self.lines):
                return ""
            self.position += 1
            return self.lines[self.position - 1]

    def read(self, wait_s: float = 10.0) -> str:
        """The lines not read yet: up to the end of the output if it ends within ``wait_s`` (the process has
        exited), else those that came so far."""
        with self.changed:
            self.changed.wait_for(lambda: self.closed, timeout=wait_s)
            text = "".join(self.lines[self.position:])
            self.position = len(self.lines)
            return text

    def tail(self, n: int = 30) -> str:
        with self.changed:
            return "".join(self.lines[-n:])


class Processes:
    """Starts real processes and makes sure none outlives its test. Their stdout and stderr are drained as they
    come (:class:`DrainedPipe`)."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=os.environ.copy(), **kwargs)
        proc.stdout, proc.stderr = DrainedPipe(proc.stdout), DrainedPipe(proc.stderr)
        self.procs.append(proc)
        return proc

    def python(self, script, *args) -> subprocess.Popen:
        return self.start([sys.executable, str(script), *map(str, args)])

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Probe:
    """The test's side of a node test: a node in its own context whose subscriptions keep what arrives
    (``got[key]``), and waiting on conditions (never on fixed sleeps)."""

    TIMEOUT_S = 60.0

    def __init__(self, name: str, subscriptions: dict):
        """``subscriptions``: key -> (message type, topic, QoS profile)."""
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.got = {key: [] for key in subscriptions}
        self.subscriptions = {key: self.node.create_subscription(msg_type, topic, self.got[key].append, profile)
                              for key, (msg_type, topic, profile) in subscriptions.items()}

    def wait(self, condition, what: str, proc=None, timeout_s: float | None = None):
        """Spin until ``condition()`` is truthy and return its value; fail if ``proc`` exits first."""
        deadline = time.monotonic() + (timeout_s or self.TIMEOUT_S)
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"node exited ({proc.returncode}) while waiting for {what}: {proc.stderr.read()}")
            self.executor.spin_once(timeout_sec=0.05)
        received = {key: len(values) for key, values in self.got.items()}
        drained = isinstance(getattr(proc, "stderr", None), DrainedPipe)
        output = f"; the node's last output:\n{proc.stderr.tail()}" if drained else ""
        raise AssertionError(f"timed out waiting for {what}; received: {received}{output}")

    def wait_connected(self, proc=None, keys=None):
        """Until each subscription (of ``keys``, default all) has matched a publisher: a best-effort sample sent
        before the reader side matched is lost, so deterministic tests start the flow only after this."""
        subs = [self.subscriptions[k] for k in (keys or self.subscriptions)]
        self.wait(lambda: all(sub.get_publisher_count() > 0 for sub in subs), "publishers to match", proc)

    def call(self, client, request, proc=None):
        assert client.wait_for_service(timeout_sec=self.TIMEOUT_S), f"no service {client.srv_name}"
        future = client.call_async(request)
        self.wait(future.done, client.srv_name, proc)
        return future.result()

    def close(self):
        if not leave_graph(self.node, self.context):
            warnings.warn(f"the probe {self.node.get_name()}'s DDS teardown did not return; left behind",
                          RuntimeWarning, stacklevel=2)


def pytest_collection_modifyitems(items):
    """Tests of real processes over DDS get one rerun (reported as R in the summary): on a loaded 2-core CI
    machine, a pair of DDS participants now and then never matches within the test's wait (two such tests in
    each of the last clean-clone CI runs, each time other tests and other pairs); a second failure fails."""
    for item in items:
        if {"probe", "processes"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.flaky(reruns=1))


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[EXIT_STATUS] = int(exitstatus)


def pytest_unconfigure(config):
    """A probe teardown that never returned (see humanego_ros.participant) can hold Fast DDS locks that the
    interpreter's own exit would wait for; end the process with pytest's exit status instead."""
    stuck = stuck_teardowns()
    if stuck:
        print(f"{stuck} DDS teardown(s) never returned; exiting without waiting for them", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(config.stash.get(EXIT_STATUS, 1))


@pytest.fixture
def probe():
    """``probe(name, subscriptions)`` makes a :class:`Probe`; all are closed after the test."""
    made = []

    def make(name: str, subscriptions: dict) -> Probe:
        made.append(Probe(name, subscriptions))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.fixture
def processes():
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def workspace() -> Path:
    return WORKSPACE
