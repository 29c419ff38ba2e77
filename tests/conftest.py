"""Fixtures of the workspace-level tests: real processes in the workspace environment."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

WORKSPACE = Path(__file__).resolve().parents[1]


class Processes:
    """Starts real processes and makes sure none outlives its test."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=os.environ.copy(), **kwargs)
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
        raise AssertionError(f"timed out waiting for {what}; received: "
                             f"{ {key: len(values) for key, values in self.got.items()} }")

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
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


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
