"""Fixtures of the workspace-level tests: real processes in the workspace environment."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture
def processes():
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def workspace() -> Path:
    return WORKSPACE
