"""A recording folder as a camera source (``humanego run humanego_drivers recording_source``).

Replays the synthetic recordings of ``humanego_sim generate_demos``, and any folder of RGB frames with
device timestamps, an Aria device calibration and MPS CSVs (layout in :mod:`humanego_drivers.recording`),
through the same topics, TF and hand tracking as ``aria_source`` (see :mod:`humanego_drivers.replay_node`).
"""

from __future__ import annotations

import sys

from humanego_drivers.recording import open_recording_replay
from humanego_drivers.replay_node import ReplayNode, replay_parameters
from humanego_ros.parameters import ParameterError, ParamSpec
from humanego_ros.runner import run_node

NODE_NAME = "recording_source"


def parameters() -> list[ParamSpec]:
    """Everything recording_source declares: the recording, and how it is replayed and published."""
    return [ParamSpec("recording", "", "Recording folder to replay (rgb/, calibration/, slam/ or trajectory/, "
                      "hand_tracking/).")] + replay_parameters()


def open_source(p: dict):
    if not p["recording"]:
        raise ParameterError(f"parameter 'recording' of node '{NODE_NAME}' is empty: give a recording folder "
                             f"(recording:=/path/to/demo_000)")
    return open_recording_replay(p["recording"])


def main(args=None):
    sys.exit(run_node(lambda: ReplayNode(NODE_NAME, parameters(), open_source), args))
